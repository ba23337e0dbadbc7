//! Tests of `acl.rs` (kept apart so the module itself stays readable).
use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn rules(specs: &[&str]) -> Acl {
    Acl::parse(specs).unwrap()
}

/// `(pattern, text, re.match(pattern + '$', text))`, the expected values
/// computed with CPython 3.11's `re`.
const PYTHON: &[(&str, &str, bool)] = &[
    (r"192\.168\.1\.7", "192.168.1.7", true),
    (r"192\.168\.1\.7", "192.168.1.70", false),
    (r"192\.168\.1\.7", "192x168.1.7", false),
    (r"192\.168\.1\.7", "10.0.0.1", false),
    (r"192.168.1.7", "192.168.1.7", true),
    (r"192.168.1.7", "192a168b1c7", true),
    (r"192.168.1.7", "192.168.1.71", false),
    (r"10\..*", "10.0.0.1", true),
    (r"10\..*", "10.255.255.255", true),
    (r"10\..*", "110.0.0.1", false),
    (r"10\..*", "10", false),
    (r"10\.|192\.168\.1\.1", "10.1.2.3", true),
    (r"10\.|192\.168\.1\.1", "192.168.1.1", true),
    (r"10\.|192\.168\.1\.1", "192.168.1.10", false),
    (r"10\.|192\.168\.1\.1", "10.", true),
    (r"(10\.|192\.168\.1\.1)", "10.1.2.3", false),
    (r"(10\.|192\.168\.1\.1)", "192.168.1.1", true),
    (r"(10\.|192\.168\.1\.1)", "192.168.1.10", false),
    (r"192\.168\.[0-9]+\.[0-9]+", "192.168.0.1", true),
    (r"192\.168\.[0-9]+\.[0-9]+", "192.168.12.34", true),
    (r"192\.168\.[0-9]+\.[0-9]+", "192.168..1", false),
    (r"192\.168\.[0-9]+\.[0-9]+", "192.168.1.a", false),
    (r"192\.168\.[^0]\d*\.\d+", "192.168.1.1", true),
    (r"192\.168\.[^0]\d*\.\d+", "192.168.0.1", false),
    (r"192\.168\.[^0]\d*\.\d+", "192.168.19.9", true),
    (
        r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
        "1.2.3.4",
        true,
    ),
    (
        r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
        "1234.1.1.1",
        false,
    ),
    (
        r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
        "255.255.255.255",
        true,
    ),
    (
        r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
        "1.2.3",
        false,
    ),
    (r"\d{1,3}(\.\d{1,3}){3}", "1.2.3.4", true),
    (r"\d{1,3}(\.\d{1,3}){3}", "1.2.3", false),
    (r"\d{1,3}(\.\d{1,3}){3}", "1.2.3.4.5", false),
    (r"2001:db8:.*", "2001:db8::1", true),
    (r"2001:db8:.*", "2001:db9::1", false),
    (r"2001:db8:.*", "2001:db8:1:2:3:4:5:6", true),
    (r"::1", "::1", true),
    (r"::1", "::11", false),
    (r"::1", "::", false),
    (r"::ffff:127\..*|127\..*", "127.0.0.1", true),
    (r"::ffff:127\..*|127\..*", "::ffff:127.0.0.1", true),
    (r"::ffff:127\..*|127\..*", "128.0.0.1", false),
    (r"fe80:(:[0-9a-f]{1,4})+", "fe80::1", true),
    (r"fe80:(:[0-9a-f]{1,4})+", "fe80::abcd:1", true),
    (r"fe80:(:[0-9a-f]{1,4})+", "fe80::g", false),
    (r"^10\.0\.0\.\d$", "10.0.0.5", true),
    (r"^10\.0\.0\.\d$", "10.0.0.55", false),
    (r"10\.0\.0\.\d\Z", "10.0.0.5", true),
    (r"10\.0\.0\.\d\Z", "10.0.0.55", false),
    (r"\A10\..*", "10.0.0.5", true),
    (r"\A10\..*", "110.0.0.5", false),
    (r"1?0?\.?.*", "", true),
    (r"1?0?\.?.*", "10.0.0.1", true),
    (r"1?0?\.?.*", "x", true),
    (r"(a*)*b", "aaaaaaaaaaaaaaaaaaaa", false),
    (r"(a*)*b", "aaab", true),
    (r"(a|aa)+$", "aaaaaaaaaaaaaab", false),
    (r"(a|aa)+$", "aaaa", true),
    (r"(?:1|2)\.3", "1.3", true),
    (r"(?:1|2)\.3", "2.3", true),
    (r"(?:1|2)\.3", "3.3", false),
    (r"1[.]2", "1.2", true),
    (r"1[.]2", "1x2", false),
    (r"1[^.]2", "1.2", false),
    (r"1[^.]2", "1x2", true),
    (r"[]x]1", "]1", true),
    (r"[]x]1", "x1", true),
    (r"[]x]1", "y1", false),
    (r"[a-]1", "a1", true),
    (r"[a-]1", "-1", true),
    (r"[a-]1", "b1", false),
    (r"[\d.]+", "1.2.3.4", true),
    (r"[\d.]+", "1.2.3.x", false),
    (r"[\D]", "a", true),
    (r"[\D]", "1", false),
    (r"\w+", "abc_1", true),
    (r"\w+", "a.b", false),
    (r"\W", ".", true),
    (r"\W", "a", false),
    (r"\S+", "1.2.3.4", true),
    (r"\s*1", "1", true),
    (r"\s*1", " 1", true),
    (r"1{2}", "11", true),
    (r"1{2}", "1", false),
    (r"1{2}", "111", false),
    (r"1{2,}", "11", true),
    (r"1{2,}", "1111", true),
    (r"1{2,}", "1", false),
    (r"1{,2}", "", true),
    (r"1{,2}", "1", true),
    (r"1{,2}", "11", true),
    (r"1{,2}", "111", false),
    (r"1{1,2}?", "1", true),
    (r"1{1,2}?", "11", true),
    (r"1{1,2}?", "111", false),
    (r"1{", "1{", true),
    (r"1{", "1", false),
    (r"1{}", "1{}", true),
    (r"1{a}", "1{a}", true),
    (r"1{,}", "", true),
    (r"1{,}", "111", true),
    (r"a}", "a}", true),
    (r"a]", "a]", true),
    (r"\x31\.2", "1.2", true),
    (r"\x31\.2", "x.2", false),
    (r"1*?2", "1112", true),
    (r"1*?2", "2", true),
    (r"1*?2", "113", false),
    (r"1+?", "1", true),
    (r"1+?", "111", true),
    (r"1??2", "12", true),
    (r"1??2", "2", true),
    (r"1??2", "112", false),
    (r"()", "", true),
    (r"()", "1", false),
    (r"|1", "", true),
    (r"|1", "1", true),
    (r"|1", "2", true),
    (r"1|", "1", true),
    (r"1|", "", true),
    (r"1|", "2", false),
    (r"1|2|3", "1", true),
    (r"1|2|3", "2", true),
    (r"1|2|3", "3", true),
    (r"1|2|3", "33", false),
    (r"(1|2)(3|4)", "13", true),
    (r"(1|2)(3|4)", "24", true),
    (r"(1|2)(3|4)", "14", true),
    (r"(1|2)(3|4)", "5", false),
    (r"\-\:\.", "-:.", true),
    (r"\-\:\.", "-:x", false),
    (r".*", "", true),
    (r".*", "anything", true),
    (r"(.)*1", "1", true),
    (r"(.)*1", "xx1", true),
    (r"(.)*1", "x1x", false),
    (r"((((1))))", "1", true),
    (r"((((1))))", "11", false),
    (r"[0-9a-fA-F:]+", "2001:DB8::1", true),
    (r"[0-9a-fA-F:]+", "2001:db8::g", false),
];

#[test]
fn regex_agrees_with_python() {
    for &(pattern, text, want) in PYTHON {
        let re = Regex::new(pattern).unwrap();
        assert_eq!(re.is_match(text), want, "{pattern:?} on {text:?}");
    }
}

/// Position and problem as CPython reports them, where it refuses too.
#[test]
fn regex_errors_name_the_problem() {
    let cases: &[(&str, usize, &str)] = &[
        ("(", 0, "missing ), unterminated subpattern"),
        ("((1)", 0, "missing ), unterminated subpattern"),
        ("1|(2", 2, "missing ), unterminated subpattern"),
        ("a)", 1, "unbalanced parenthesis"),
        ("\\", 0, "bad escape (end of pattern)"),
        ("[", 0, "unterminated character set"),
        ("[^]", 0, "unterminated character set"),
        ("[1-", 0, "unterminated character set"),
        ("*", 0, "nothing to repeat"),
        ("+1", 0, "nothing to repeat"),
        ("?", 0, "nothing to repeat"),
        ("{1}", 0, "nothing to repeat"),
        ("^*", 1, "nothing to repeat"),
        ("$?", 1, "nothing to repeat"),
        ("\\A+", 2, "nothing to repeat"),
        ("1**", 2, "multiple repeat"),
        ("1*?*", 3, "multiple repeat"),
        ("1{2}{3}", 4, "multiple repeat"),
        ("\\q", 0, "bad escape \\q"),
        ("[z-a]", 1, "bad character range"),
        ("[\\d-z]", 1, "bad character range"),
        ("[a-\\d]", 1, "bad character range"),
        ("1{3,2}", 1, "min repeat greater than max repeat"),
        ("\\x4", 0, "bad escape \\x"),
        ("\\xzz", 0, "bad escape \\x"),
        // Valid Python that rkite refuses rather than mis-handle.
        ("\\1", 0, "backreferences are not supported"),
        ("(a)\\1", 3, "backreferences are not supported"),
        ("\\0", 0, "octal escapes are not supported"),
        ("[\\1]", 1, "octal escapes are not supported"),
        ("(?=1)", 0, "only (?:...) groups are supported"),
        ("(?i)1", 0, "only (?:...) groups are supported"),
        ("(?P<x>1)", 0, "only (?:...) groups are supported"),
        ("\\b1", 0, "word boundaries are not supported"),
        ("[\\A]", 1, "bad escape \\A"),
        ("1*+", 2, "possessive quantifiers are not supported"),
        ("1{2}+", 4, "possessive quantifiers are not supported"),
        ("1{65}", 1, "repeat count over 64"),
        ("1{1,99999999999}", 1, "repeat count over 64"),
    ];
    for &(pattern, pos, problem) in cases {
        match Regex::new(pattern) {
            Err(AclError::BadPattern {
                pattern: p,
                pos: at,
                problem: what,
            }) => {
                assert_eq!((p.as_str(), at, what.as_str()), (pattern, pos, problem));
            }
            other => panic!("{pattern:?}: {other:?}"),
        }
    }
    let e = Regex::new("10\\.(").unwrap_err();
    assert_eq!(
        e.to_string(),
        "ACL pattern \"10\\\\.(\": missing ), unterminated subpattern at position 4"
    );
}

#[test]
fn hostile_patterns_stay_cheap() {
    let long = "a".repeat(45);
    // Exponential for a backtracking engine (CPython takes minutes).
    for pattern in ["(a|aa)+b", "(a*)*b", "((a+)+)+b", "(.*.*.*.*.*.*.*.*)*b"] {
        assert!(!Regex::new(pattern).unwrap().is_match(&long), "{pattern}");
    }
    // Nested counts would multiply the program's size.
    let e = Regex::new("((a{64}){64}){64}").unwrap_err();
    assert!(e.to_string().contains("pattern too complex"), "{e}");
    let deep = format!("{}1{}", "(".repeat(40), ")".repeat(40));
    assert!(
        Regex::new(&deep)
            .unwrap_err()
            .to_string()
            .contains("too many nested groups")
    );
    let big = "1".repeat(regex::MAX_PATTERN + 1);
    assert!(
        Regex::new(&big)
            .unwrap_err()
            .to_string()
            .contains("longer than")
    );
    assert!(Regex::new(&"1".repeat(regex::MAX_PATTERN)).is_ok());
}

#[test]
fn non_ascii_patterns_and_text() {
    let re = Regex::new("é.[ü-ÿ]").unwrap();
    assert!(re.is_match("éxü"));
    assert!(!re.is_match("exü"));
}

#[test]
fn rule_syntax() {
    let mut acl = Acl::new();
    assert!(acl.is_empty());
    acl.parse_rule("ALLOW:10\\..*").unwrap();
    acl.parse_rule("Deny:any").unwrap();
    acl.parse_rule("allow:::1").unwrap();
    assert!(!acl.is_empty());
    let cases = [
        ("10.0.0.1", AclError::NoPolicy("10.0.0.1".into())),
        ("block:any", AclError::BadPolicy("block:any".into())),
        (":any", AclError::BadPolicy(":any".into())),
        ("allow:", AclError::EmptyPattern("allow:".into())),
        ("deny:10.0.0.0/33", AclError::BadCidr("10.0.0.0/33".into())),
        ("deny:10.0.0/8", AclError::BadCidr("10.0.0/8".into())),
        ("deny:10.0.0.0/", AclError::BadCidr("10.0.0.0/".into())),
        ("deny:10.0.0.0/+8", AclError::BadCidr("10.0.0.0/+8".into())),
        ("deny:/8", AclError::BadCidr("/8".into())),
        ("deny:::/129", AclError::BadCidr("::/129".into())),
        ("deny:10\\..*/8", AclError::BadCidr("10\\..*/8".into())),
    ];
    for (spec, want) in cases {
        assert_eq!(Acl::new().parse_rule(spec), Err(want), "{spec}");
    }
    assert_eq!(
        Acl::parse(&["allow:any", "deny"]).unwrap_err().to_string(),
        "ACL rule \"deny\" is not allow:PATTERN or deny:PATTERN"
    );
    assert_eq!(
        AclError::BadPolicy("x:y".into()).to_string(),
        "ACL rule \"x:y\": policy must be allow or deny"
    );
    assert_eq!(
        AclError::EmptyPattern("deny:".into()).to_string(),
        "ACL rule \"deny:\" has an empty pattern"
    );
    assert_eq!(
        AclError::BadCidr("1/2".into()).to_string(),
        "ACL pattern \"1/2\" is not a valid CIDR block"
    );
    let owned = vec!["allow:any".to_string()];
    assert!(!Acl::parse(&owned).unwrap().is_empty());
}

#[test]
fn first_match_decides_and_default_denies() {
    let acl = rules(&[
        "deny:10\\.0\\.0\\.1",
        "allow:10\\..*",
        "allow:192\\.168\\..*",
    ]);
    assert!(!acl.allows(ip("10.0.0.1")));
    assert!(acl.allows(ip("10.0.0.2")));
    assert!(acl.allows(ip("192.168.7.7")));
    assert!(!acl.allows(ip("172.16.0.1")), "no rule matched: deny");
    assert_eq!(
        acl.deciding_rule(ip("10.0.0.1")),
        Some((false, "deny:10\\.0\\.0\\.1"))
    );
    assert_eq!(
        acl.deciding_rule(ip("10.9.9.9")),
        Some((true, "allow:10\\..*"))
    );
    assert_eq!(acl.deciding_rule(ip("172.16.0.1")), None);
    // No rules: everyone.
    assert!(Acl::new().allows(ip("8.8.8.8")));
    assert_eq!(Acl::new().deciding_rule(ip("8.8.8.8")), None);
    let open = rules(&["deny:6\\.6\\.6\\.6", "allow:any"]);
    assert!(open.allows(ip("2001:db8::1")));
    assert!(!open.allows(ip("6.6.6.6")));
}

#[test]
fn regex_rules_are_anchored_like_pagekite() {
    // re.match anchors the start; the appended `$` the end.
    let acl = rules(&["allow:0\\.0\\.1"]);
    assert!(!acl.allows(ip("10.0.0.1")));
    let acl = rules(&["allow:10\\.0\\.0\\.1"]);
    assert!(!acl.allows(ip("10.0.0.12")));
    // ... but only the last alternative's end.
    let acl = rules(&["allow:10\\.|192\\.168\\.1\\.1"]);
    assert!(acl.allows(ip("10.20.30.40")));
    assert!(acl.allows(ip("192.168.1.1")));
    assert!(!acl.allows(ip("192.168.1.10")));
}

#[test]
fn shorthands() {
    let local = rules(&["allow:localhost"]);
    for yes in ["127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"] {
        assert!(local.allows(ip(yes)), "{yes}");
    }
    for no in ["128.0.0.1", "10.0.0.1", "::2", "::", "::ffff:10.0.0.1"] {
        assert!(!local.allows(ip(no)), "{no}");
    }
    let any = rules(&["deny:any"]);
    assert!(!any.allows(ip("1.2.3.4")));
    assert!(!any.allows(ip("::")));
    // Only the exact words are shorthands.
    let words = rules(&["allow:Any"]);
    assert!(!words.allows(ip("1.2.3.4")));
}

#[test]
fn cidr_rules() {
    let acl = rules(&[
        "deny:10.1.0.0/16",
        "allow:10.0.0.0/8",
        "allow:2001:db8::/32",
    ]);
    assert!(acl.allows(ip("10.2.3.4")));
    assert!(!acl.allows(ip("10.1.3.4")));
    assert!(!acl.allows(ip("11.0.0.1")));
    assert!(acl.allows(ip("2001:db8:ffff::1")));
    assert!(!acl.allows(ip("2001:db9::1")));
    assert!(acl.allows(ip("::ffff:10.2.3.4")), "mapped peers are IPv4");
    assert!(!acl.allows(ip("::ffff:10.1.3.4")));
    let all = rules(&["allow:0.0.0.0/0", "deny:::/0"]);
    assert!(all.allows(ip("255.255.255.255")));
    assert!(!all.allows(ip("::1")));
}

#[test]
fn mapped_peers_match_in_ipv4_form() {
    let acl = rules(&["allow:10\\..*"]);
    assert!(acl.allows(ip("::ffff:10.0.0.1")));
    let acl = rules(&["allow:::ffff:.*"]);
    assert!(!acl.allows(ip("::ffff:10.0.0.1")));
    assert!(!acl.allows(ip("10.0.0.1")));
}

#[test]
fn ipv6_text_is_canonical() {
    let acl = rules(&["allow:2001:db8::1", "allow:fe80::.*"]);
    assert!(acl.allows(ip("2001:0db8:0:0:0:0:0:0001")));
    assert!(acl.allows(ip("FE80::ABCD")));
    assert!(!acl.allows(ip("2001:db8::2")));
}

#[test]
fn cidr_blocks() {
    let c = Cidr::parse("10.1.2.3/8").unwrap();
    assert_eq!(c.to_string(), "10.0.0.0/8");
    assert!(c.contains(ip("10.255.0.1")));
    assert_eq!(
        Cidr::parse("::ffff:192.168.0.0/112").unwrap().to_string(),
        "192.168.0.0/16"
    );
    assert_eq!(
        Cidr::parse("::ffff:0:0/95").unwrap().to_string(),
        "::fffe:0:0/95"
    );
    assert_eq!(
        Cidr::parse("2001:db8::1/128").unwrap().to_string(),
        "2001:db8::1/128"
    );
    assert_eq!(
        Cidr::parse("1.2.3.4/032").unwrap().to_string(),
        "1.2.3.4/32"
    );
    for bad in [
        "1.2.3.4",
        "1.2.3.4/33",
        "1.2.3.4/1000",
        "1.2.3/24",
        "x/1",
        "1.2.3.4/ 8",
        "::/129",
    ] {
        assert_eq!(Cidr::parse(bad), None, "{bad}");
    }
    let host = Cidr::host(ip("::ffff:1.2.3.4"));
    assert_eq!(host.to_string(), "1.2.3.4/32");
    assert!(host.contains(ip("1.2.3.4")));
    assert!(!host.contains(ip("1.2.3.5")));
    assert!(Cidr::host(ip("::1")).contains(ip("::1")));
    assert_eq!(Cidr::new(ip("1.2.3.4"), 33), None);
    assert!(!Cidr::parse("::/0").unwrap().contains(ip("1.2.3.4")));
}
