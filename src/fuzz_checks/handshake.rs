//! Invariants of the tunnel handshake (`proto::handshake`), both directions:
//! what the frontend parses from a backend's request, built again with the
//! backend's builder, parses to the same kites; what the backend parses from
//! a frontend's reply, built again with the frontend's builder, parses to the
//! same answers; kite lines survive a round trip; signatures and challenges
//! made for any text verify.

use crate::proto::frame::header_lines;
use crate::proto::handshake::{self as hs, FrontendInfo, KiteLine, MAX_KITES, Prefix};

pub fn handshake(data: &[u8]) {
    request(data);
    reply(data);
    if let Ok(text) = std::str::from_utf8(data) {
        // The same headers arriving in band, in a NOOP chunk.
        if let Ok(r) = hs::parse_kite_headers(header_lines(text)) {
            kites(&r.kites);
        }
        signatures(text);
    }
}

fn request(data: &[u8]) {
    let Ok(r) = hs::parse_request(data) else {
        return;
    };
    assert!(!r.kites.is_empty() && r.kites.len() <= MAX_KITES);
    kites(&r.kites);
    let version = r.version.as_deref().unwrap_or("");
    let built = hs::build_request(version, r.replace.as_deref(), &r.kites);
    let again = match hs::parse_request(built.as_bytes()) {
        Ok(again) => again,
        Err(e) => panic!("rebuilt request {built:?} fails: {e}"),
    };
    assert_eq!(again.kites, r.kites, "kites of {built:?}");
    assert_eq!(again.replace, r.replace, "replace of {built:?}");
    if r.version.is_some() {
        assert_eq!(again.version, r.version, "version of {built:?}");
    }
}

fn kites(kites: &[KiteLine]) {
    for kite in kites {
        assert!(
            !kite.proto.is_empty() && !kite.domain.is_empty(),
            "{kite:?}"
        );
        assert_eq!(kite.proto, kite.proto.to_ascii_lowercase());
        assert_eq!(kite.domain, kite.domain.to_ascii_lowercase());
        assert_eq!(
            KiteLine::parse(&kite.value()).as_ref(),
            Ok(kite),
            "kite line {:?} does not read back",
            kite.value()
        );
    }
}

fn reply(data: &[u8]) {
    let Some((_, headers)) = hs::split_head(data) else {
        return;
    };
    let r = hs::parse_reply(headers);
    if r.answers.iter().any(|a| a.what().contains(';')) {
        // `Invalid-Why: WHAT;WHY` cannot carry a `;` in WHAT unambiguously
        // (pagekite.py's format). Such a WHAT is never a valid kite, and only
        // the backend that sent it gets its reason mismatched. Found by this
        // target; documented, not "fixed".
        return;
    }
    let session = r.session_id.as_deref().unwrap_or("");
    let built = hs::build_reply(
        Prefix::PageKite,
        &FrontendInfo::default(),
        &r.answers,
        session,
    );
    let Some((status, headers)) = hs::split_head(built.as_bytes()) else {
        panic!("rebuilt reply {built:?} is not text");
    };
    assert_eq!(status, "HTTP/1.1 200 OK");
    let again = hs::parse_reply(headers);
    assert_eq!(again.answers, r.answers, "answers of {built:?}");
    if r.session_id.is_some() {
        assert_eq!(again.session_id, r.session_id, "session of {built:?}");
    }
    let lines = hs::inband_reply_lines(Prefix::Beanstalk, &r.answers, session);
    let block = lines.join("\r\n");
    assert_eq!(hs::parse_reply(header_lines(&block)).answers, r.answers);
}

/// A signature made over any payload verifies, with any other secret it
/// does not; a challenge verifies in its window.
fn signatures(text: &str) {
    let (secret, payload) = text.split_once('\n').unwrap_or((text, ""));
    let bytes = text.as_bytes();
    let random = [0, 1, 2, 3].map(|i| bytes.get(i).copied().unwrap_or(0));
    let salt = hs::salt8(random);
    let signature = hs::sign(secret, payload, &salt);
    assert_eq!(signature.len(), hs::TOKEN_LEN);
    assert!(hs::verify(secret, payload, &signature) != salt.starts_with('t'));
    assert!(!hs::verify(&format!("{secret}x"), payload, &signature));
    assert!(!hs::verify(secret, payload, text));
    let now = u64::from_le_bytes(std::array::from_fn(|i| bytes.get(i).copied().unwrap_or(0)));
    let tok = hs::tok8(random);
    let challenge = hs::challenge(secret, payload, now, &tok);
    assert!(hs::check_challenge(secret, payload, &challenge, now));
    assert!(!hs::check_challenge(secret, payload, text, now) || text == challenge);
}
