//! Invariants of the ACL regex engine (`proto::acl_regex`) and the ACL
//! around it: matching costs at most a few steps per instruction per
//! character whatever the pattern (no backtracking blow-up), programs stay
//! under their size limit, an escaped literal matches exactly itself (and
//! itself plus the newline Python's `$` allows), adding an alternative never
//! loses a match, and a rule naming an address's text matches that address.
//!
//! Input: `PATTERN \n TEXT \n OTHER-PATTERN`, each part optional.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::proto::acl::{Acl, Regex};

/// Longest text matched: ACLs match addresses (at most 45 characters), and
/// a short text keeps the worst case (8192 instructions) fast.
const MAX_TEXT: usize = 64;

pub fn acl_regex(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let pattern = parts.next().unwrap_or("");
    let subject: String = parts.next().unwrap_or("").chars().take(MAX_TEXT).collect();
    let other = parts.next().unwrap_or("");
    if let Ok(re) = Regex::new(pattern) {
        let matched = bounded(&re, &subject);
        if matched {
            alternatives(pattern, other, &subject);
        }
    }
    literal(&subject);
    address(data);
}

/// Matches with the step count held to the engine's promise: each of the
/// `n` instructions is visited at most once per position (plus the pushes
/// that find it visited, at most three per instruction) and stepped once.
fn bounded(re: &Regex, text: &str) -> bool {
    let n = re.program_len();
    assert!(n <= 8192, "program of {n} instructions");
    let (matched, steps) = re.is_match_counting(text);
    assert_eq!(matched, re.is_match(text));
    let positions = text.chars().count() + 2;
    let budget = 4 * n * positions + 4;
    assert!(
        steps <= budget,
        "{steps} steps for {n} instructions over {positions} positions"
    );
    matched
}

/// `re.match` of `P|Q` finds whatever `P` finds, and so does `(?:P)`'s.
fn alternatives(pattern: &str, other: &str, text: &str) {
    if let Ok(either) = Regex::new(&format!("(?:{pattern})|(?:{other})")) {
        assert!(
            bounded(&either, text),
            "(?:{pattern})|(?:{other}) lost {text:?}"
        );
    }
    if let Ok(grouped) = Regex::new(&format!("(?:{pattern})")) {
        if bounded(&grouped, text) {
            // The reverse: `(?:P)` is `P` with `$` over every alternative.
            assert!(Regex::new(pattern).is_ok_and(|re| re.is_match(text)));
        }
    }
}

/// Escapes every character that could be syntax (alphanumerics can't be
/// escaped in Python's `re`, and need not be).
fn escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if !c.is_ascii_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn literal(text: &str) {
    let Ok(re) = Regex::new(&escape(text)) else {
        return; // only too long
    };
    assert!(
        bounded(&re, text),
        "{text:?} as a literal does not match itself"
    );
    assert!(
        bounded(&re, &format!("{text}\n")),
        "$ before a final newline"
    );
    assert!(!bounded(&re, &format!("{text}x")), "{text:?} matches more");
    if let Some(shorter) = text.char_indices().last().and_then(|(i, _)| text.get(..i)) {
        assert!(!bounded(&re, shorter), "{text:?} matches {shorter:?}");
    }
}

/// A rule whose pattern is an address's own text matches that address, and
/// one for a different text does not.
fn address(data: &[u8]) {
    let ip = match data.get(..16).and_then(|b| <[u8; 16]>::try_from(b).ok()) {
        Some(b @ [first, ..]) if first & 1 == 0 => IpAddr::V6(Ipv6Addr::from(b)),
        Some([_, a, b, c, d, ..]) => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        None => return,
    };
    let text = ip.to_canonical().to_string();
    let acl = Acl::parse(&[format!("allow:{}", escape(&text))]);
    assert!(
        acl.as_ref().is_ok_and(|acl| acl.allows(ip)),
        "{ip} is not allowed by its own text {text:?}: {acl:?}"
    );
    let acl = Acl::parse(&[format!("allow:{}x", escape(&text))]);
    assert!(acl.is_ok_and(|acl| !acl.allows(ip)), "{ip} matched {text}x");
}
