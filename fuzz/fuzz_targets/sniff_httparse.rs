#![no_main]
//! The sniffer against httparse on fuzzed heads: tests/httparse_diff.rs's
//! comparison, which fails on any difference RFC 9112 does not explain.
#[allow(dead_code)]
#[path = "../../tests/httparse_diff.rs"]
mod diff;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut unexplained = Vec::new();
    diff::compare(data, &mut unexplained, &mut Vec::new());
    assert!(unexplained.is_empty(), "{}", unexplained.join("\n"));
});
