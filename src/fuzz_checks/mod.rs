//! The invariants the fuzz targets check, one function per target taking
//! the fuzzer's bytes, so that `fuzz/fuzz_targets/*.rs` are one-liners and
//! the stable test `tests/fuzz_corpus.rs` replays every committed corpus file
//! through exactly the same code. A broken invariant is a panic (that is how
//! libFuzzer learns of it); the parsers themselves must never panic. This
//! module holds checks only: it changes no parser and does no I/O.

mod acl_regex;
mod frame;
mod handshake;
mod proxy_protocol;
mod sniff;
mod webfiles;

pub use acl_regex::acl_regex;
pub use frame::frame;
pub use handshake::handshake;
pub use proxy_protocol::proxy_protocol;
pub use sniff::sniff;
pub use webfiles::webfiles;

/// Option files and flags (`config::offline`, which never touches the
/// filesystem or DNS).
pub fn config(data: &[u8]) {
    crate::config::offline::fuzz_check(data);
}

/// The backend's HTTP request guard (`proto::http_fuzz`, beside the guard).
pub fn request_guard(data: &[u8]) {
    crate::proto::http_fuzz::request_guard(data);
}

/// The outbound proxy handshakes and options (`proto::proxy_fuzz`).
pub fn proxy(data: &[u8]) {
    crate::proto::proxy_fuzz::check(data);
}

/// Dynamic DNS settings and replies (`proto::dyndns_fuzz`).
pub fn dyndns(data: &[u8]) {
    crate::proto::dyndns_fuzz::check(data);
}

/// The sans-IO tunnel core over arbitrary input (`proto::tunnel_fuzz`).
pub fn tunnel(data: &[u8]) {
    crate::proto::tunnel_fuzz::check(data);
}

/// Address-change announcements from the kernel (`proto::netlink`): any
/// datagram reads without a panic, and every address read is whole.
pub fn netlink(data: &[u8]) {
    let events = crate::proto::netlink::parse(data);
    assert!(events.len() <= data.len() / 24, "more events than messages");
}

/// What an ACME server sends (`proto::json`) and the certificates it
/// issues (`proto::der::validity`): no input panics, and every string read
/// quotes back to itself.
pub fn acme(data: &[u8]) {
    if let Ok(value) = crate::proto::json::parse(data) {
        let mut stack = vec![&value];
        while let Some(v) = stack.pop() {
            match v {
                crate::proto::json::Value::String(s) => {
                    let again = crate::proto::json::parse(crate::proto::json::quote(s).as_bytes());
                    assert_eq!(again, Ok(crate::proto::json::Value::String(s.clone())));
                }
                crate::proto::json::Value::Array(items) => stack.extend(items),
                crate::proto::json::Value::Object(members) => {
                    stack.extend(members.iter().map(|(_, v)| v));
                }
                _ => {}
            }
        }
    }
    if let Ok((not_before, not_after)) = crate::proto::der::validity(data) {
        // Four-digit years at most: within ±10 000 years of 1970.
        let bound = 10_000 * 366 * 86_400;
        assert!(not_before.abs() < bound && not_after.abs() < bound);
    }
}

/// A target's check: panics when an invariant breaks.
pub type Check = fn(&[u8]);

/// Every target by its `fuzz/fuzz_targets` (and corpus directory) name.
pub const TARGETS: &[(&str, Check)] = &[
    ("frame", frame),
    ("handshake", handshake),
    ("sniff", sniff),
    ("config", config),
    ("acl_regex", acl_regex),
    ("request_guard", request_guard),
    ("proxy", proxy),
    ("dyndns", dyndns),
    ("webfiles", webfiles),
    ("tunnel", tunnel),
    ("netlink", netlink),
    ("acme", acme),
    ("proxy_protocol", proxy_protocol),
];

/// The places to cut an input of `len` bytes for the "fed in pieces equals
/// fed whole" checks: all of them for short inputs, an even spread plus the
/// last few for long ones, so one run stays well under a millisecond.
pub fn cut_points(len: usize) -> impl Iterator<Item = usize> {
    const ALL_UP_TO: usize = 256;
    let step = if len <= ALL_UP_TO { 1 } else { len / ALL_UP_TO };
    let tail = len.saturating_sub(16);
    (0..=len)
        .step_by(step)
        .chain((tail..=len).filter(move |_| step > 1))
}
