use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

use super::*;
use crate::proto::json::{self, Value};

fn decode_url(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            other => panic!("not base64url: {other}"),
        }
    };
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | (value(c) << (18 - 6 * i)));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn the_jwk_is_the_public_point_and_the_thumbprint_its_hash() {
    let rng = SystemRandom::new();
    let key = Key::generate(&rng).unwrap();
    let jwk = json::parse(key.jwk().as_bytes()).unwrap();
    let x = decode_url(jwk.str_at("x").unwrap());
    let y = decode_url(jwk.str_at("y").unwrap());
    assert_eq!([&[4u8][..], &x, &y].concat(), key.public());
    assert_eq!(jwk.str_at("kty"), Some("EC"));
    assert!(key.jwk().starts_with(r#"{"crv":"P-256","kty":"EC","x":""#));
    let digest = ring::digest::digest(&ring::digest::SHA256, key.jwk().as_bytes());
    assert_eq!(decode_url(&key.thumbprint()), digest.as_ref());
    assert_eq!(key.thumbprint().len(), 43);
    assert_eq!(
        key.key_authorization("tok"),
        format!("tok.{}", key.thumbprint())
    );
    // The stored key reads back as the same key.
    let again = Key::from_pkcs8(key.pkcs8(), &rng).unwrap();
    assert_eq!(again.jwk(), key.jwk());
    assert!(matches!(
        Key::from_pkcs8(b"not a key", &rng),
        Err(KeyError::Rejected(_))
    ));
}

#[test]
fn requests_are_flattened_jws_that_verify() {
    let rng = SystemRandom::new();
    let key = Key::generate(&rng).unwrap();
    let url = "https://127.0.0.1:14000/sign-me-up";
    for (kid, payload) in [
        (None, Some(r#"{"termsOfServiceAgreed":true}"#)),
        (Some("https://127.0.0.1:14000/my-account/1"), None),
    ] {
        let jws = key.sign_jws(&rng, url, "nonce-1", kid, payload).unwrap();
        let jws = json::parse(jws.as_bytes()).unwrap();
        let protected = jws.str_at("protected").unwrap();
        let body = jws.str_at("payload").unwrap();
        let header = json::parse(&decode_url(protected)).unwrap();
        assert_eq!(header.str_at("alg"), Some("ES256"));
        assert_eq!(header.str_at("nonce"), Some("nonce-1"));
        assert_eq!(header.str_at("url"), Some(url));
        match kid {
            Some(kid) => {
                assert_eq!(header.str_at("kid"), Some(kid));
                assert_eq!(header.get("jwk"), None);
            }
            None => {
                assert_eq!(header.get("kid"), None);
                let jwk = header.get("jwk").unwrap();
                assert_eq!(jwk, &json::parse(key.jwk().as_bytes()).unwrap());
            }
        }
        assert_eq!(decode_url(body), payload.unwrap_or("").as_bytes());
        let signature = decode_url(jws.str_at("signature").unwrap());
        assert_eq!(signature.len(), 64, "r and s, 32 bytes each");
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public())
            .verify(format!("{protected}.{body}").as_bytes(), &signature)
            .expect("the signature verifies");
        assert!(matches!(jws, Value::Object(ref m) if m.len() == 3));
    }
}

#[test]
fn the_certificate_request_is_signed_by_its_key() {
    let rng = SystemRandom::new();
    let key = Key::generate(&rng).unwrap();
    let csr = key.csr(&rng, &["kite.example.test"]).unwrap();
    let info = der::csr_info(&["kite.example.test"], key.public());
    let at = csr.windows(info.len()).position(|w| w == info).unwrap();
    // After the info: the AlgorithmIdentifier (12 bytes), then the BIT
    // STRING's tag, length and unused-bits byte, then the signature.
    let signature = &csr[at + info.len() + 12 + 3..];
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public())
        .verify(&info, signature)
        .expect("the request's signature verifies");
}
