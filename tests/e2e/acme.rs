//! ACME's building blocks against real tools: the certificate request rkite
//! signs is one `openssl req` verifies and reads back with its name. (The
//! order flow against Debian's pebble comes with the frontend's `--acme`.)

use std::process::Command;

use ring::rand::SystemRandom;
use rkite::proto::jose::Key;

use crate::util;

#[test]
fn openssl_verifies_the_certificate_request() {
    if !util::require_peer("openssl") {
        return;
    }
    let rng = SystemRandom::new();
    let key = Key::generate(&rng).expect("a key");
    let long = format!("{}.example.test", "a".repeat(60));
    for names in [
        vec!["kite.example.test"],
        vec!["kite.example.test", "www.kite.example.test"],
        vec![long.as_str()],
    ] {
        let csr = key.csr(&rng, &names).expect("a request");
        let path = util::temp_dir("acme-csr").join("req.der");
        std::fs::write(&path, &csr).expect("write");
        let out = Command::new("openssl")
            .args(["req", "-inform", "DER", "-in"])
            .arg(&path)
            .args(["-noout", "-verify", "-text"])
            .output()
            .expect("openssl runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(text.contains("verify OK"), "{text}");
        assert!(text.contains("ASN1 OID: prime256v1"), "{text}");
        let sans: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        assert!(text.contains(&sans.join(", ")), "{text}");
    }
}
