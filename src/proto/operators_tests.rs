//! Tests of the operator options' parsing and decisions against what
//! pagekite.py 1.5.2 does with the same inputs (values worked out from its
//! source, pk.py and proto/conns.py, and from Python's urllib).

use super::*;
use crate::proto::frame::header_lines;
use crate::proto::handshake::*;

#[allow(clippy::disallowed_methods)] // a base instant for the arithmetic
fn base() -> Instant {
    Instant::now()
}

#[test]
fn motd_is_stripped_and_cut_as_pagekite_loads_it() {
    assert_eq!(motd_from_file("\n  Hello, club!  \n\n"), "Hello, club!");
    let long = "é".repeat(MOTD_MAX + 10);
    assert_eq!(motd_from_file(&long).chars().count(), MOTD_MAX);
}

#[test]
fn misc_value_is_pythons_urlencode() {
    // urlencode({'motd': 'Hi there & welcome: 100% ~ok~\nbye'})
    assert_eq!(
        misc_value("Hi there & welcome: 100% ~ok~\nbye"),
        "motd=Hi+there+%26+welcome%3A+100%25+~ok~%0Abye"
    );
    assert_eq!(misc_value(""), "motd=");
    assert_eq!(misc_value("é"), "motd=%C3%A9");
}

#[test]
fn misc_value_round_trips_through_parse_qs() {
    for motd in ["", "x", "a b+c%d&e=f", "line1\nline2", "é ü", "100%"] {
        let value = misc_value(motd);
        let want = (!motd.is_empty()).then(|| motd.to_string());
        assert_eq!(motd_of_misc(&value), want, "{value}");
    }
    // parse_qs: a bad escape stays, other keys are ignored, blank is none.
    assert_eq!(motd_of_misc("a=1&motd=50%zz+x"), Some("50%zz x".into()));
    assert_eq!(motd_of_misc("motd="), None);
    assert_eq!(motd_of_misc("other=1"), None);
    assert_eq!(motd_of_misc("motd=%FF"), Some("\u{fffd}".into()));
}

#[test]
fn misc_value_decodes_at_every_cut_without_panic() {
    let value = misc_value("Wélcome % to + the relay");
    for cut in 0..=value.len() {
        let Some(part) = value.get(..cut) else {
            continue;
        };
        let _ = motd_of_misc(part);
    }
}

#[test]
fn motd_log_form_is_bounded_and_says_what_it_left_out() {
    assert_eq!(motd_for_log("short"), "short");
    let long = "x".repeat(MOTD_LOG_MAX + 7);
    let logged = motd_for_log(&long);
    assert!(logged.ends_with("... (7 more characters)"));
    assert!(logged.len() < MOTD_LOG_MAX + 40);
}

#[test]
fn ratelimit_syntax_is_pagekites() {
    assert_eq!(
        parse_ratelimit("5/3600"),
        Ok(("*".into(), RateLimit { ips: 5, secs: 3600 }))
    );
    assert_eq!(
        parse_ratelimit("Foo.Test:2/10"),
        Ok(("foo.test".into(), RateLimit { ips: 2, secs: 10 }))
    );
    for bad in ["", "5", "5/", "/5", "a/b", "x:y:1/2", "-1/5", "5/3.5"] {
        assert!(parse_ratelimit(bad).is_err(), "{bad}");
    }
    assert_eq!(
        parse_ratelimit("100000/1"),
        Err(OpsError::RateTooLarge(100_000))
    );
}

#[test]
fn ratelimit_domain_lookup_walks_parents_like_get_default_ips_per_second() {
    let limits = RateLimits::parse(&["9/6", "foo.test:2/10", "bar.foo.test:1/10"]).unwrap();
    assert_eq!(limits.default_limit(), Some(RateLimit { ips: 9, secs: 6 }));
    assert_eq!(
        limits.for_domain("foo.test"),
        Some(RateLimit { ips: 2, secs: 10 })
    );
    assert_eq!(
        limits.for_domain("x.foo.test"),
        Some(RateLimit { ips: 2, secs: 10 })
    );
    assert_eq!(
        limits.for_domain("a.bar.foo.test"),
        Some(RateLimit { ips: 1, secs: 10 })
    );
    assert_eq!(limits.for_domain("other.test"), None);
    // A one-label name is never looked up (pagekite.py stops at two).
    let tld = RateLimits::parse(&["test:1/1"]).unwrap();
    assert_eq!(tld.for_domain("foo.test"), None);
    // The strictest of the kites' own limits...
    let tunnel = limits.for_tunnel(["foo.test", "x.bar.foo.test", "other.test"].into_iter());
    assert_eq!(tunnel, Some(RateLimit { ips: 1, secs: 10 }));
    // ...which replaces the default, even a stricter one (pk.py sends the
    // kite's limit as IPsPerSec, and conns.py forces the first one)...
    let loose = RateLimits::parse(&["1/60", "foo.test:5/1"]).unwrap();
    assert_eq!(
        loose.for_tunnel(["foo.test"].into_iter()),
        Some(RateLimit { ips: 5, secs: 1 })
    );
    // ...and the default where no kite has its own.
    assert_eq!(
        loose.for_tunnel(["other.test"].into_iter()),
        Some(RateLimit { ips: 1, secs: 60 })
    );
    assert_eq!(
        RateLimits::default().for_tunnel(["a.test"].into_iter()),
        None
    );
    // A later rule for the same name wins.
    let again = RateLimits::parse(&["1/1", "3/3"]).unwrap();
    assert_eq!(again.default_limit(), Some(RateLimit { ips: 3, secs: 3 }));
}

#[test]
fn limiter_counts_distinct_clients_in_the_window() {
    let t0 = base();
    let mut lim = Limiter::new(RateLimit { ips: 2, secs: 10 });
    assert_eq!(lim.admit("a", t0), Admit::New);
    assert_eq!(lim.admit("b", t0), Admit::New);
    assert_eq!(lim.admit("a", t0 + Duration::from_secs(1)), Admit::Known);
    assert_eq!(lim.admit("c", t0 + Duration::from_secs(2)), Admit::Refused);
    // b expires at t0+10; a was renewed at t0+1.
    assert_eq!(lim.admit("c", t0 + Duration::from_secs(11)), Admit::New);
    assert_eq!(lim.admit("d", t0 + Duration::from_secs(11)), Admit::Refused);
    assert_eq!(lim.admit("d", t0 + Duration::from_secs(22)), Admit::New);
    assert!(lim.len() <= 2);
}

#[test]
fn limiter_table_never_grows_past_the_limit() {
    let t0 = base();
    let mut lim = Limiter::new(RateLimit {
        ips: 100,
        secs: 3600,
    });
    let mut refused = 0;
    for i in 0..100_000u32 {
        let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        if lim.admit(&ip, t0) == Admit::Refused {
            refused += 1;
        }
    }
    assert_eq!(lim.len(), 100);
    assert_eq!(refused, 100_000 - 100);
    // Zero IPs is no limit at all, as in pagekite.py.
    let mut open = Limiter::new(RateLimit { ips: 0, secs: 5 });
    assert_eq!(open.admit("x", t0), Admit::New);
    assert!(open.is_empty());
}

#[test]
fn client_id_adds_user_agent_and_accept_language() {
    let head =
        b"GET / HTTP/1.1\r\nHost: a.test\r\nuser-agent: UA/1\r\nAccept-Language:  de \r\nUser-Agent: UA/2\r\n\r\nbody: no";
    assert_eq!(client_id("1.2.3.4", Some(head)), "1.2.3.4/UA/1/UA/2/de");
    assert_eq!(client_id("1.2.3.4", None), "1.2.3.4");
    // Any cut of the head is safe and only ever sees whole header lines
    // or a prefix of the last one.
    for cut in 0..=head.len() {
        let id = client_id("ip", Some(&head[..cut]));
        assert!(id.starts_with("ip"));
    }
}

#[test]
fn portalias_maps_one_port_to_another() {
    assert_eq!(parse_portalias("8080:80"), Ok((8080, 80)));
    for bad in ["8080", "a:80", "8080:", "70000:80", "1:2:3"] {
        assert!(parse_portalias(bad).is_err(), "{bad}");
    }
    let aliases = PortAliases::parse(&["8080:80", "8443:443", "8080:81"]).unwrap();
    assert_eq!(aliases.map(8080), 81);
    assert_eq!(aliases.map(8443), 443);
    assert_eq!(aliases.map(80), 80);
}

const ACL: &str = "# accept ACL\n\
    \n\
    127.0.0.2   deny   Abuse report #17\n\
    127\\.0\\.0\\.[3-5]  DENY  range\n\
    127\\.  allow local\n\
    10.0.0.1 reject\n";

#[test]
fn accept_acl_file_reads_as_pagekite_does() {
    let acl = AcceptAcl::parse(ACL);
    assert_eq!(acl.rules(), 4);
    let v = acl.check("127.0.0.2");
    assert_eq!(
        (v.allow, v.line, v.reason.as_str()),
        (false, 3, "abuse report #17")
    );
    assert_eq!(acl.check("127.0.0.4").line, 4);
    assert!(!acl.check("127.0.0.4").allow);
    // A regex matches from the start only, but need not reach the end.
    let v = acl.check("127.0.0.9");
    assert_eq!((v.allow, v.line), (true, 5));
    assert!(!acl.check("10.0.0.1").allow);
    // "10.0.0.1" as a regex also matches 10.0.0.12 (re.match, no `$`).
    assert!(!acl.check("10.0.0.12").allow);
    let v = acl.check("192.0.2.1");
    assert_eq!((v.allow, v.line, v.reason.as_str()), (true, 0, "Default"));
}

#[test]
fn accept_acl_file_stops_where_pagekite_stops() {
    let acl = AcceptAcl::parse("1.1.1.1 deny\nlonely\n2.2.2.2 deny\n");
    assert_eq!(acl.broken_at, Some(2));
    assert!(!acl.check("1.1.1.1").allow);
    assert!(acl.check("2.2.2.2").allow);
    // A pattern that does not compile ends the reading too, unless the
    // address equals it.
    let acl = AcceptAcl::parse("3.3.3.3 deny\n(( deny\n4.4.4.4 deny\n");
    assert!(!acl.check("3.3.3.3").allow);
    assert!(acl.check("4.4.4.4").allow);
    assert!(!acl.check("((").allow);
}

#[test]
fn accept_acl_file_parses_every_prefix_without_panic() {
    for cut in 0..=ACL.len() {
        let Some(part) = ACL.get(..cut) else { continue };
        let acl = AcceptAcl::parse(part);
        assert!(acl.rules() <= 4);
        let _ = acl.check("127.0.0.3");
    }
}

const MEMINFO: &str = "MemTotal:        8000000 kB\n\
    MemFree:          500000 kB\n\
    MemAvailable:    4000000 kB\n\
    Buffers:          100000 kB\n\
    Cached:          2000000 kB\n";

#[test]
fn proc_files_read_as_pagekite_reads_them() {
    assert_eq!(parse_loadavg("0.52 1.25 2.00 1/234 5678\n"), Some(1.25));
    assert_eq!(parse_loadavg("0.52"), None);
    let mem = parse_meminfo(MEMINFO).unwrap();
    assert_eq!(
        mem,
        MemInfo {
            total: 8_000_000.0,
            free: 4_000_000.0
        }
    );
    let old = parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nCached: 50 kB\n").unwrap();
    assert_eq!(old.free, 150.0);
    assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
    for cut in 0..=MEMINFO.len() {
        let _ = parse_meminfo(&MEMINFO[..cut]);
    }
    assert_eq!(parse_overload_file(" 42\n"), Some(42));
    assert_eq!(parse_overload_file("-3"), Some(0));
    assert_eq!(parse_overload_file("lots"), None);
}

fn settings(baseline: u64) -> OverloadSettings {
    OverloadSettings {
        baseline,
        ..OverloadSettings::default()
    }
}

#[test]
fn overload_is_off_without_a_baseline() {
    let mut o = Overload::new(OverloadSettings {
        file: Some("f".into()),
        ..settings(0)
    });
    assert_eq!(o.recalc(Some(1), None, 1000), None);
    assert!(!o.overloaded(1_000_000));
}

#[test]
fn overload_file_overrides_everything() {
    let mut o = Overload::new(OverloadSettings {
        file: Some("f".into()),
        ..settings(100)
    });
    assert!(!o.overloaded(99) && o.overloaded(100));
    assert_eq!(o.recalc(Some(3), None, 1), Some(Recalc::FromFile(3)));
    assert_eq!(o.recalc(Some(3), None, 1), None);
    assert!(o.overloaded(3) && !o.overloaded(2));
    // 0 from the file: never overloaded (pagekite.py's `not overload_current`).
    o.recalc(Some(0), None, 1);
    assert!(!o.overloaded(1_000_000));
}

#[test]
fn overload_dynamic_matches_pagekites_arithmetic() {
    let mem = parse_meminfo(MEMINFO).unwrap();
    let mut o = Overload::new(settings(1000));
    // Under 50 connections nothing is recalculated (membase is noted).
    assert_eq!(o.recalc(None, Some((1.0, mem)), 10), None);
    assert_eq!(o.level(), 1000);
    // Python: membase = max(50000, 8e6-4e6) = 4e6; memtotal = 4e6;
    // munit = max(32, (4e6-4e6)/100) = 32; lunit = 2.0/100 = 0.02;
    // moverload = int(0.85*4e6/32) = 106250; loverload = int(0.75/0.02) = 37
    // (37.49...); new = max(500, min(106250, 37)) = 500;
    // current = int(0.8*1000 + 0.2*500) = 900.
    let r = o.recalc(None, Some((2.0, mem)), 100).unwrap();
    match r {
        Recalc::Dynamic {
            level,
            mem_level,
            cpu_level,
            load,
            ..
        } => {
            assert_eq!((level, mem_level, cpu_level, load), (900, 106_250, 37, 100));
        }
        other => panic!("{other:?}"),
    }
    assert!(o.overloaded(900) && !o.overloaded(899));
    // Both fractions 0: dynamic scaling off.
    let mut fixed = Overload::new(OverloadSettings {
        cpu: 0.0,
        mem: 0.0,
        ..settings(7)
    });
    assert_eq!(fixed.recalc(None, Some((9.0, mem)), 1000), None);
    assert_eq!(fixed.level(), 7);
    // An unreadable file falls through to the dynamic calculation.
    let mut fallback = Overload::new(OverloadSettings {
        file: Some("gone".into()),
        ..settings(1000)
    });
    assert!(matches!(
        fallback.recalc(None, Some((2.0, mem)), 100),
        Some(Recalc::Dynamic { level: 900, .. })
    ));
}

#[test]
fn fractions_are_clamped_as_pagekite_clamps_them() {
    assert_eq!(parse_fraction("2.5", 1.5), Ok(1.5));
    assert_eq!(parse_fraction("-1", f64::MAX), Ok(0.0));
    assert!(parse_fraction("x", 1.5).is_err());
    assert!(parse_fraction("nan", 1.5).is_err());
    for (text, want) in [
        ("0.75", 0.75),
        ("1", 1.0),
        (".5", 0.5),
        ("2.", 2.0),
        ("+0.1", 0.1),
    ] {
        let got = parse_decimal(text).unwrap();
        assert!((got - want).abs() < 1e-12, "{text}: {got}");
    }
    for bad in ["", ".", "-", "1.2.3", "1e3", "inf", " 1", "1x"] {
        assert_eq!(parse_decimal(bad), None, "{bad}");
    }
}

#[test]
fn overloaded_header_goes_first_as_in_pagekite() {
    let reply = b"HTTP/1.1 503 Unavailable\r\nX-PageKite-UUID: u\r\n\r\nbody".to_vec();
    assert_eq!(
        mark_overloaded(reply),
        b"HTTP/1.1 503 Unavailable\r\nX-PageKite-Overloaded: Sorry\r\nX-PageKite-UUID: u\r\n\r\nbody"
    );
    assert_eq!(mark_overloaded(b"junk".to_vec()), b"junk");
}

#[test]
fn motd_and_limit_go_out_in_the_tunnel_reply_and_come_back() {
    let info = FrontendInfo {
        motd: "Welcome, club & friends!\nBe nice.".into(),
        ..FrontendInfo::default()
    };
    let text = build_reply(Prefix::PageKite, &info, &[], "s");
    assert!(
        text.ends_with("X-PageKite-Misc: motd=Welcome%2C+club+%26+friends%21%0ABe+nice.\r\n\r\n"),
        "{text}"
    );
    let (_, headers) = split_head(text.as_bytes()).unwrap();
    assert_eq!(
        parse_reply(headers).motd.as_deref(),
        Some(info.motd.as_str())
    );
    let lines = inband_reply_lines_with(Prefix::PageKite, &[], "s", "hi there");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("X-PageKite-Misc: motd=hi+there")
    );
    let block = lines.join("\r\n");
    assert_eq!(
        parse_reply(header_lines(&block)).motd.as_deref(),
        Some("hi there")
    );
    let limit = RateLimit { ips: 2, secs: 10 };
    let limited = with_last_line(text.clone(), &ips_per_sec_line(Prefix::PageKite, &limit));
    assert!(limited.ends_with(
        "motd=Welcome%2C+club+%26+friends%21%0ABe+nice.\r\nX-PageKite-IPsPerSec: 2/10\r\n\r\n"
    ));
    let (_, headers) = split_head(limited.as_bytes()).unwrap();
    assert_eq!(parse_reply(headers).ips_per_sec.as_deref(), Some("2/10"));
    // pagekite.py's empty motd is none.
    let plain = build_reply(Prefix::PageKite, &FrontendInfo::default(), &[], "s");
    let (_, headers) = split_head(plain.as_bytes()).unwrap();
    assert_eq!(parse_reply(headers).motd, None);
}
