//! Unit tests of `authdns`: names and verdicts against what Debian's
//! pagekite.py 1.5.2 computes (`scripts/authdns_golden.py` prints them),
//! the cache's bounds, and the look-up queue's.

use super::*;

fn domains() -> AuthDomains {
    let mut a = AuthDomains::default();
    a.apply("auth.example.net").unwrap();
    a.apply("example.org:org-auth.example.net").unwrap();
    a.apply("deep.example.org:deep-auth.example.net").unwrap();
    a
}

/// `scripts/authdns_golden.py`'s NAME lines: kite, then pagekite.py's name.
const GOLDEN_NAMES: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "http",
        "kite.example.com",
        "srand1",
        "t1234567abcdef",
        "a1b2c3d4e5f6",
        "srand1.t1234567abcdef.a1b2c3d4e5f6.http.kite.example.com.auth.example.net.",
    ),
    (
        "http-8080",
        "a.example.org",
        "abc",
        "tdeadbee",
        "0badc0de1234",
        "abc.tdeadbee.0badc0de1234.http-8080.a.example.org.org-auth.example.net.",
    ),
    (
        "raw-22",
        "x.deep.example.org",
        "s",
        "t",
        "g",
        "s.t.g.raw-22.x.deep.example.org.deep-auth.example.net.",
    ),
    (
        "http",
        "*.wild.example.com",
        "r",
        "tok",
        "sig",
        "r.tok.sig.http._any_.wild.example.com.auth.example.net.",
    ),
];

#[test]
fn names_match_pagekite_py() {
    let a = domains();
    for (proto, domain, srand, token, sign, want) in GOLDEN_NAMES {
        let adom = a.for_domain(domain).unwrap();
        let name = lookup_name(srand, token, sign, proto, domain, adom);
        assert_eq!(name.as_deref(), Some(*want), "{proto}:{domain}");
    }
}

#[test]
fn the_longest_per_domain_suffix_wins_and_a_plain_one_resets() {
    let mut a = domains();
    assert_eq!(
        a.for_domain("x.deep.example.org"),
        Some("deep-auth.example.net")
    );
    assert_eq!(
        a.for_domain("deep.example.org"),
        Some("org-auth.example.net")
    );
    // The suffix must be a whole label: notexample.org is not under it.
    assert_eq!(a.for_domain("notexample.org"), Some("auth.example.net"));
    assert_eq!(a.for_domain("example.org"), Some("auth.example.net"));
    a.apply("other.example.net").unwrap();
    assert_eq!(
        a.for_domain("x.deep.example.org"),
        Some("other.example.net")
    );
    assert_eq!(a.to_args(), vec!["other.example.net".to_string()]);
    let mut only = AuthDomains::default();
    only.apply("Example.ORG:a.test").unwrap();
    assert_eq!(only.for_domain("k.example.org"), Some("a.test"));
    assert_eq!(only.for_domain("k.example.com"), None);
    assert!(matches!(
        AuthDomains::default().apply("/usr/bin/auth-app"),
        Err(ConfigError::AuthApp(_))
    ));
    assert!(matches!(
        AuthDomains::default().apply("bad name"),
        Err(ConfigError::BadName(_))
    ));
}

#[test]
fn parts_that_would_move_the_fields_are_refused() {
    let ok = lookup_name("s", "t", "g", "http", "k.test", "a.test");
    assert_eq!(ok.as_deref(), Some("s.t.g.http.k.test.a.test."));
    for (srand, token, sign, proto, domain) in [
        ("", "t", "g", "http", "k.test"),
        ("s.evil", "t", "g", "http", "k.test"),
        ("s", "t", "g", "http", "k..test"),
        ("s", "t", "g", "http", "k test"),
        ("s", "t\0", "g", "http", "k.test"),
    ] {
        assert_eq!(
            lookup_name(srand, token, sign, proto, domain, "a.test"),
            None
        );
    }
    let long = "a".repeat(60);
    let domain = [long.as_str(); 4].join(".");
    assert_eq!(lookup_name("s", "t", "g", "http", &domain, "a.test"), None);
}

#[test]
fn answers_decode_as_pagekite_py_reads_them() {
    // scripts/authdns_golden.py's ANSWER lines (quota, reason).
    let ok = |q| Outcome::Ok { quota_kb: q };
    assert_eq!(decode(Ipv4Addr::new(127, 0, 0, 1)), ok(2_130_706_433));
    assert_eq!(decode(Ipv4Addr::new(1, 2, 3, 4)), ok(16_909_060));
    assert_eq!(decode(Ipv4Addr::new(255, 255, 254, 255)), ok(4_294_967_039));
    assert_eq!(
        decode(Ipv4Addr::new(0, 0, 0, 0)),
        Outcome::Refused(Refusal::Quota)
    );
    assert_eq!(
        decode(Ipv4Addr::new(255, 255, 255, 1)),
        Outcome::Refused(Refusal::Unauthorized)
    );
    assert_eq!(
        decode(Ipv4Addr::new(255, 255, 255, 2)),
        Outcome::Refused(Refusal::Quota)
    );
    // pagekite.py accepts this one (quota -1); rkite does not.
    assert_eq!(
        decode(Ipv4Addr::new(255, 255, 255, 0)),
        Outcome::Refused(Refusal::Unauthorized)
    );
}

#[test]
#[allow(clippy::disallowed_methods)] // a base instant for the test
fn the_cache_expires_and_stays_bounded() {
    let now = Instant::now();
    let mut c = Cache::default();
    let ok = Outcome::Ok { quota_kb: 1 };
    c.put("a.", ok, now);
    assert_eq!(c.get("a.", now + CACHE_TTL / 2), Some(ok));
    assert_eq!(c.hits, 1);
    assert_eq!(c.get("a.", now + CACHE_TTL), None);
    assert!(c.is_empty());
    for i in 0..CACHE_MAX + 10 {
        c.put(&format!("n{i}."), ok, now + Duration::from_millis(i as u64));
    }
    assert_eq!(c.len(), CACHE_MAX);
    // The oldest went first.
    assert!(!c.has("n0.", now));
    assert!(c.has(&format!("n{}.", CACHE_MAX + 9), now));
}

#[test]
fn lookups_are_bounded_and_shared() {
    let mut l: Lookups<u32> = Lookups::new(2, 2);
    assert_eq!(l.want("a", 1), Want::Start);
    assert_eq!(l.want("a", 2), Want::Joined);
    assert_eq!(l.want("b", 3), Want::Start);
    assert_eq!(l.want("c", 4), Want::Queued);
    assert_eq!(l.want("d", 5), Want::Queued);
    assert_eq!(l.want("e", 6), Want::Full);
    assert_eq!((l.running(), l.queued()), (2, 2));
    // Nobody waits for d any more: it never starts.
    l.forget(5);
    assert_eq!(l.queued(), 1);
    assert_eq!(l.done("a"), (vec![1, 2], Some("c".to_string())));
    assert_eq!(l.done("b"), (vec![3], None));
    assert_eq!(l.done("c"), (vec![4], None));
    assert_eq!((l.running(), l.queued()), (0, 0));
    // A running look-up whose waiters left still ends cleanly.
    assert_eq!(l.want("f", 7), Want::Start);
    l.forget(7);
    assert_eq!(l.done("f"), (vec![], None));
}
