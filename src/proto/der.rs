//! The DER rkite needs for ACME (RFC 8555): writing a PKCS#10 certificate
//! request for a kite's name with its ECDSA P-256 key, and reading a
//! certificate's validity period (to renew at two thirds of it). Nothing
//! more: rustls and webpki parse and check certificates; this never
//! decides whether one is trusted. The reader is bounded by its input and
//! refuses what it does not understand with a typed error. Pure: the
//! signature comes from the caller's signer.

use std::fmt;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0]` constructed: a certificate's version, a request's attributes.
const CONTEXT_0: u8 = 0xa0;
/// `[2]` IMPLICIT IA5String: a `dNSName` in GeneralNames.
const DNS_NAME: u8 = 0x82;

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_EXTENSION_REQUEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// RFC 5280's upper bound for a common name.
const MAX_CN: usize = 64;

/// One DER element: tag, length, content.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let significant = bytes.get(skip..).unwrap_or(&[]);
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

/// A BIT STRING with no unused bits.
fn bits(content: &[u8]) -> Vec<u8> {
    let mut inner = Vec::with_capacity(content.len() + 1);
    inner.push(0);
    inner.extend_from_slice(content);
    tlv(BIT_STRING, &inner)
}

/// The request's to-be-signed part for `names` (the first is also the
/// common name when it fits), with the uncompressed P-256 point `public`.
pub fn csr_info(names: &[&str], public: &[u8]) -> Vec<u8> {
    let version = tlv(INTEGER, &[0]);
    let subject = match names.first() {
        Some(first) if first.len() <= MAX_CN => {
            let atv = seq(&[
                &tlv(OID, OID_COMMON_NAME),
                &tlv(UTF8_STRING, first.as_bytes()),
            ]);
            seq(&[&tlv(SET, &atv)])
        }
        _ => seq(&[]),
    };
    let algorithm = seq(&[&tlv(OID, OID_EC_PUBLIC_KEY), &tlv(OID, OID_P256)]);
    let spki = seq(&[&algorithm, &bits(public)]);
    let general_names: Vec<u8> = names
        .iter()
        .flat_map(|n| tlv(DNS_NAME, n.as_bytes()))
        .collect();
    let san = seq(&[
        &tlv(OID, OID_SUBJECT_ALT_NAME),
        &tlv(OCTET_STRING, &tlv(SEQUENCE, &general_names)),
    ]);
    let extensions = seq(&[&san]);
    let attribute = seq(&[&tlv(OID, OID_EXTENSION_REQUEST), &tlv(SET, &extensions)]);
    let attributes = tlv(CONTEXT_0, &attribute);
    seq(&[&version, &subject, &spki, &attributes])
}

/// The whole request: `info` and its ECDSA-with-SHA256 signature (DER, as
/// ring's `ECDSA_P256_SHA256_ASN1_SIGNING` makes it).
pub fn csr(info: &[u8], signature: &[u8]) -> Vec<u8> {
    let algorithm = seq(&[&tlv(OID, OID_ECDSA_SHA256)]);
    seq(&[info, &algorithm, &bits(signature)])
}

/// `id-pe-acmeIdentifier` (RFC 8737 §6.1).
const OID_ACME_IDENTIFIER: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
const BOOLEAN_TRUE: &[u8] = &[0x01, 0x01, 0xff];
/// `[3]` constructed: a certificate's extensions.
const CONTEXT_3: u8 = 0xa3;

/// The to-be-signed part of TLS-ALPN-01's self-signed certificate (RFC
/// 8737 §3) for `name`: v3, the name as CN and only SAN, and the critical
/// acmeIdentifier extension holding SHA-256 of the key authorization. Its
/// validity is fixed (2020 to 2049): the CA looks at the extension, and
/// this module reads no clock.
pub fn alpn_certificate_info(name: &str, public: &[u8], key_auth_sha256: &[u8]) -> Vec<u8> {
    let version = tlv(CONTEXT_0, &tlv(INTEGER, &[2]));
    let serial = tlv(INTEGER, &[1]);
    let algorithm = seq(&[&tlv(OID, OID_ECDSA_SHA256)]);
    let cn = seq(&[
        &tlv(OID, OID_COMMON_NAME),
        &tlv(UTF8_STRING, name.as_bytes()),
    ]);
    let subject = if name.len() <= MAX_CN {
        seq(&[&tlv(SET, &cn)])
    } else {
        seq(&[])
    };
    let validity = seq(&[
        &tlv(UTC_TIME, b"200101000000Z"),
        &tlv(UTC_TIME, b"491231235959Z"),
    ]);
    let key_algorithm = seq(&[&tlv(OID, OID_EC_PUBLIC_KEY), &tlv(OID, OID_P256)]);
    let spki = seq(&[&key_algorithm, &bits(public)]);
    let san = seq(&[
        &tlv(OID, OID_SUBJECT_ALT_NAME),
        &tlv(
            OCTET_STRING,
            &tlv(SEQUENCE, &tlv(DNS_NAME, name.as_bytes())),
        ),
    ]);
    let acme = seq(&[
        &tlv(OID, OID_ACME_IDENTIFIER),
        BOOLEAN_TRUE,
        &tlv(OCTET_STRING, &tlv(OCTET_STRING, key_auth_sha256)),
    ]);
    let extensions = tlv(CONTEXT_3, &seq(&[&san, &acme]));
    seq(&[
        &version,
        &serial,
        &algorithm,
        &subject,
        &validity,
        &subject,
        &spki,
        &extensions,
    ])
}

/// A certificate: `info` and its ECDSA-with-SHA256 signature (DER).
#[inline(never)]
pub fn certificate(info: &[u8], signature: &[u8]) -> Vec<u8> {
    csr(info, signature)
}

/// Why a certificate's validity could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DerError {
    /// Ends inside an element.
    Truncated,
    /// Not the element expected here (the tag found).
    Unexpected(u8),
    /// A length form DER does not allow, or too large.
    BadLength,
    BadTime,
}

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DerError::Truncated => f.write_str("certificate ends inside an element"),
            DerError::Unexpected(tag) => write!(f, "unexpected DER tag {tag:#04x}"),
            DerError::BadLength => f.write_str("bad DER length"),
            DerError::BadTime => f.write_str("bad certificate validity time"),
        }
    }
}

impl std::error::Error for DerError {}

/// Reads one element off the front: (tag, content, rest).
fn take(input: &[u8]) -> Result<(u8, &[u8], &[u8]), DerError> {
    let (&tag, rest) = input.split_first().ok_or(DerError::Truncated)?;
    let (&first, mut rest) = rest.split_first().ok_or(DerError::Truncated)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return Err(DerError::BadLength);
        }
        let (bytes, after) = rest.split_at_checked(count).ok_or(DerError::Truncated)?;
        rest = after;
        let len = bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
        if len < 0x80 || bytes.first() == Some(&0) {
            return Err(DerError::BadLength);
        }
        len
    };
    let (content, rest) = rest.split_at_checked(len).ok_or(DerError::Truncated)?;
    Ok((tag, content, rest))
}

fn expect(input: &[u8], want: u8) -> Result<(&[u8], &[u8]), DerError> {
    let (tag, content, rest) = take(input)?;
    if tag != want {
        return Err(DerError::Unexpected(tag));
    }
    Ok((content, rest))
}

/// A certificate's `notBefore` and `notAfter`, in seconds since the Unix
/// epoch.
pub fn validity(cert: &[u8]) -> Result<(i64, i64), DerError> {
    let (certificate, _) = expect(cert, SEQUENCE)?;
    let (tbs, _) = expect(certificate, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&CONTEXT_0) {
        rest = take(rest)?.2;
    }
    rest = expect(rest, INTEGER)?.1; // serial
    rest = expect(rest, SEQUENCE)?.1; // signature algorithm
    rest = expect(rest, SEQUENCE)?.1; // issuer
    let (validity, _) = expect(rest, SEQUENCE)?;
    let (tag, not_before, rest) = take(validity)?;
    let not_before = time(tag, not_before)?;
    let (tag, not_after, _) = take(rest)?;
    Ok((not_before, time(tag, not_after)?))
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`), as RFC 5280 restricts them.
fn time(tag: u8, text: &[u8]) -> Result<i64, DerError> {
    let digits = text.strip_suffix(b"Z").ok_or(DerError::BadTime)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(DerError::BadTime);
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, DerError> {
        let part = digits.get(range).ok_or(DerError::BadTime)?;
        Ok(part.iter().fold(0i64, |n, &d| n * 10 + i64::from(d - b'0')))
    };
    let (year, at) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy = num(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (GENERALIZED_TIME, 14) => (num(0..4)?, 4),
        (UTC_TIME | GENERALIZED_TIME, _) => return Err(DerError::BadTime),
        (other, _) => return Err(DerError::Unexpected(other)),
    };
    let (month, day) = (num(at..at + 2)?, num(at + 2..at + 4)?);
    let (hour, minute, second) = (
        num(at + 4..at + 6)?,
        num(at + 6..at + 8)?,
        num(at + 8..at + 10)?,
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(DerError::BadTime);
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[path = "der_tests.rs"]
mod tests;
