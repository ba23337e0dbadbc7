//! JOSE as ACME (RFC 8555 §6.2) uses it: an ECDSA P-256 key (ring), its
//! public JWK and RFC 7638 thumbprint, the HTTP-01 key authorization, and
//! requests signed as flattened JWS with ES256. Also the certificate key
//! and its signed PKCS#10 request (the DER is `der`'s). Pure: entropy comes
//! in as ring's `SecureRandom`, keys as PKCS#8 bytes the caller keeps.

use std::fmt;

use ring::rand::SecureRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
};

use super::base64::encode_url;
use super::der;
use super::json::quote;

/// Why a key could not be made, read or used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    Generate,
    /// The stored PKCS#8 is not an ECDSA P-256 key.
    Rejected(String),
    Sign,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Generate => f.write_str("cannot generate an ECDSA P-256 key"),
            KeyError::Rejected(why) => write!(f, "not a usable ECDSA P-256 key: {why}"),
            KeyError::Sign => f.write_str("signing failed"),
        }
    }
}

impl std::error::Error for KeyError {}

/// An ECDSA P-256 key: an ACME account's, or a certificate's.
pub struct Key {
    /// Signs JWS (r‖s, 64 bytes).
    fixed: EcdsaKeyPair,
    /// Signs the certificate request (DER `ECDSA-Sig-Value`).
    asn1: EcdsaKeyPair,
    pkcs8: Vec<u8>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.thumbprint())
    }
}

impl Key {
    pub fn generate(rng: &dyn SecureRandom) -> Result<Key, KeyError> {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
            .map_err(|_| KeyError::Generate)?;
        Key::from_pkcs8(doc.as_ref(), rng)
    }

    pub fn from_pkcs8(pkcs8: &[u8], rng: &dyn SecureRandom) -> Result<Key, KeyError> {
        let reject = |e: ring::error::KeyRejected| KeyError::Rejected(e.to_string());
        Ok(Key {
            fixed: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, rng)
                .map_err(reject)?,
            asn1: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, rng)
                .map_err(reject)?,
            pkcs8: pkcs8.to_vec(),
        })
    }

    /// The key to store (PKCS#8 DER; secret).
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The uncompressed public point (0x04 ‖ x ‖ y).
    pub fn public(&self) -> &[u8] {
        self.fixed.public_key().as_ref()
    }

    /// The public JWK with its members in RFC 7638's order (so it is also
    /// the thumbprint's input).
    pub fn jwk(&self) -> String {
        let point = self.public();
        let x = point.get(1..33).unwrap_or(&[]);
        let y = point.get(33..65).unwrap_or(&[]);
        format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            encode_url(x),
            encode_url(y)
        )
    }

    /// RFC 7638: base64url(SHA-256(the JWK's required members)).
    pub fn thumbprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.jwk().as_bytes());
        encode_url(digest.as_ref())
    }

    /// HTTP-01's answer for `token` (RFC 8555 §8.1).
    pub fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", self.thumbprint())
    }

    /// A flattened JWS of `payload` (None: an empty payload, ACME's
    /// POST-as-GET) for `url`, with `nonce`, identified by the account URL
    /// `kid` or, before there is an account, by the JWK itself.
    pub fn sign_jws(
        &self,
        rng: &dyn SecureRandom,
        url: &str,
        nonce: &str,
        kid: Option<&str>,
        payload: Option<&str>,
    ) -> Result<String, KeyError> {
        let who = match kid {
            Some(kid) => format!(r#""kid":{}"#, quote(kid)),
            None => format!(r#""jwk":{}"#, self.jwk()),
        };
        let protected = format!(
            r#"{{"alg":"ES256",{who},"nonce":{},"url":{}}}"#,
            quote(nonce),
            quote(url)
        );
        let protected = encode_url(protected.as_bytes());
        let payload = payload.map_or_else(String::new, |p| encode_url(p.as_bytes()));
        let input = format!("{protected}.{payload}");
        let signature = self
            .fixed
            .sign(rng, input.as_bytes())
            .map_err(|_| KeyError::Sign)?;
        Ok(format!(
            r#"{{"protected":"{protected}","payload":"{payload}","signature":"{}"}}"#,
            encode_url(signature.as_ref())
        ))
    }

    /// TLS-ALPN-01's self-signed certificate for `name` (DER), proving
    /// `key_authorization` (RFC 8737 §3).
    #[inline(never)]
    pub fn alpn_certificate(
        &self,
        rng: &dyn SecureRandom,
        name: &str,
        key_authorization: &str,
    ) -> Result<Vec<u8>, KeyError> {
        let digest = ring::digest::digest(&ring::digest::SHA256, key_authorization.as_bytes());
        let info = der::alpn_certificate_info(name, self.public(), digest.as_ref());
        let signature = self.asn1.sign(rng, &info).map_err(|_| KeyError::Sign)?;
        Ok(der::certificate(&info, signature.as_ref()))
    }

    /// A signed PKCS#10 request for `names` with this key (DER).
    #[inline(never)]
    pub fn csr(&self, rng: &dyn SecureRandom, names: &[&str]) -> Result<Vec<u8>, KeyError> {
        let info = der::csr_info(names, self.public());
        let signature = self.asn1.sign(rng, &info).map_err(|_| KeyError::Sign)?;
        Ok(der::csr(&info, signature.as_ref()))
    }
}

#[cfg(test)]
#[path = "jose_tests.rs"]
mod tests;
