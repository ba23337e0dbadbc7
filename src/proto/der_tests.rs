use super::*;

/// Made with `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 90`
/// (UTCTime) and `-days 10000` (GeneralizedTime, past 2049); the times are
/// what `openssl x509 -startdate -enddate` prints, as Unix seconds.
const UTC: &[u8] = include_bytes!("../../tests/data/certs/utc-2027.der");
const GENERALIZED: &[u8] = include_bytes!("../../tests/data/certs/generalized-2054.der");

#[test]
fn reads_validity_as_openssl_does() {
    assert_eq!(validity(UTC), Ok((1_796_307_491, 1_804_083_491)));
    assert_eq!(validity(GENERALIZED), Ok((1_796_307_491, 2_660_307_491)));
}

#[test]
fn every_truncation_is_an_error() {
    for cert in [UTC, GENERALIZED] {
        // The validity sits early; cut everywhere up to well past it.
        for cut in 0..cert.len() {
            let got = validity(&cert[..cut]);
            assert!(got.is_err(), "{cut}: {got:?}");
        }
    }
}

#[test]
fn times_and_lengths_are_checked() {
    assert_eq!(time(UTC_TIME, b"491231235959Z"), Ok(2_524_607_999));
    assert_eq!(time(UTC_TIME, b"500101000000Z"), Ok(-631_152_000));
    assert_eq!(time(GENERALIZED_TIME, b"19700101000000Z"), Ok(0));
    for bad in [
        &b"700101000000"[..],
        b"7001010000Z",
        b"701301000000Z",
        b"700100000000Z",
        b"700101240000Z",
        b"70010100000aZ",
    ] {
        assert_eq!(time(UTC_TIME, bad), Err(DerError::BadTime), "{bad:?}");
    }
    assert_eq!(
        time(0x13, b"700101000000Z"),
        Err(DerError::Unexpected(0x13))
    );
    // Long-form lengths that DER forbids.
    assert_eq!(take(&[0x30, 0x81, 0x05]), Err(DerError::BadLength));
    assert_eq!(take(&[0x30, 0x80]), Err(DerError::BadLength));
    assert_eq!(take(&[0x30, 0x85, 1, 0, 0, 0, 0]), Err(DerError::BadLength));
}

#[test]
fn lengths_are_written_as_der_wants() {
    assert_eq!(tlv(0x04, &[]), [0x04, 0]);
    assert_eq!(tlv(0x04, &[7; 127])[..2], [0x04, 127]);
    assert_eq!(tlv(0x04, &[7; 128])[..3], [0x04, 0x81, 128]);
    assert_eq!(tlv(0x04, &[7; 256])[..4], [0x04, 0x82, 1, 0]);
    for len in [0, 1, 127, 128, 255, 256, 70_000] {
        let element = tlv(0x04, &vec![9; len]);
        assert_eq!(take(&element), Ok((0x04, &vec![9; len][..], &[][..])));
    }
}

#[test]
fn a_request_holds_the_names_and_the_key() {
    let point = [4u8; 65];
    let info = csr_info(&["kite.example.test", "www.kite.example.test"], &point);
    let (body, rest) = expect(&info, SEQUENCE).unwrap();
    assert!(rest.is_empty());
    let (version, rest) = expect(body, INTEGER).unwrap();
    assert_eq!(version, [0]);
    let (subject, rest) = expect(rest, SEQUENCE).unwrap();
    assert!(subject.windows(17).any(|w| w == b"kite.example.test"));
    let (spki, rest) = expect(rest, SEQUENCE).unwrap();
    assert!(spki.ends_with(&point));
    let (tag, attributes, rest) = take(rest).unwrap();
    assert_eq!((tag, rest.len()), (CONTEXT_0, 0));
    assert!(
        attributes
            .windows(23)
            .any(|w| w == b"\x82\x15www.kite.example.test")
    );
    // No common name for a name over 64 bytes: the SAN alone carries it.
    let long = format!("{}.example.test", "a".repeat(60));
    let info = csr_info(&[&long], &point);
    let (body, _) = expect(&info, SEQUENCE).unwrap();
    let (_, rest) = expect(body, INTEGER).unwrap();
    assert_eq!(expect(rest, SEQUENCE).unwrap().0, b"");
    let whole = csr(&info, &[1, 2, 3]);
    let (outer, _) = expect(&whole, SEQUENCE).unwrap();
    assert!(outer.starts_with(&info));
    assert!(outer.ends_with(&[BIT_STRING, 4, 0, 1, 2, 3]));
}
