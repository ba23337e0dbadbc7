//! Tests of `dyndns.rs` and `dyndns_state.rs`. The expected URLs and
//! signatures were computed with the installed pagekite.py 1.5.2
//! (`signToken(token='0123abcd…', secret, payload, length=100)` and
//! `DYNDNS[provider] % args`).
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;
use crate::proto::http_reply::{ReplyError, ReplyReader, Response};

const SALT: &str = "0123abcd";

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn provider(arg: &str) -> Provider {
    Provider::parse_setting(arg).unwrap().unwrap()
}

#[test]
fn signatures_match_pagekite_py() {
    for (secret, payload, want) in [
        (
            "s3cret",
            "kite.example.com:192.0.2.1",
            "0123abcd449577f293d75113fdcbb3d3e86cd261cc2e073c",
        ),
        (
            "s3cret",
            "kite.example.com:192.0.2.1,2001:db8::2",
            "0123abcdac278102e8a4846a7a1b5dc60241beede005ff9e",
        ),
        (
            "pw with space",
            "a.b:10.0.0.1,10.0.0.2,10.0.0.3",
            "0123abcd11589e01c778ff224814d3867085b144bd03cb50",
        ),
    ] {
        assert_eq!(sign(secret, payload, SALT), want);
    }
}

#[test]
fn pagekite_net_updates_as_pagekite_py_sends_them() {
    let p = provider("pagekite.net");
    assert!(!p.tls() && p.signs());
    assert_eq!((p.host(), p.port()), ("up.pagekite.net", 80));
    let req = p
        .request(
            "kite.example.com",
            &ips(&["192.0.2.1", "2001:db8::2"]),
            "s3cret",
            SALT,
        )
        .unwrap();
    assert_eq!(
        req.path,
        "/?hostname=kite.example.com&myip=192.0.2.1,2001:db8::2\
         &sign=0123abcdac278102e8a4846a7a1b5dc60241beede005ff9e"
    );
    assert!(!req.has_credentials());
    assert_eq!(
        String::from_utf8(req.head("rkite/0.1")).unwrap(),
        format!(
            "GET {} HTTP/1.0\r\nHost: up.pagekite.net\r\nUser-Agent: rkite/0.1\r\n\
             Connection: close\r\n\r\n",
            req.path
        )
    );
    assert_eq!(
        req.to_string(),
        "http://up.pagekite.net kite.example.com:192.0.2.1,2001:db8::2"
    );
    let b = provider("beanstalks.net");
    assert_eq!(b.host(), "up.b5p.us");
}

#[test]
fn credentials_become_basic_auth() {
    for (arg, host, path) in [
        (
            "bob:pw@dyndns.org",
            "members.dyndns.org",
            "/nic/update?wildcard=NOCHG&backmx=NOCHG&hostname=a.b&myip=10.0.0.1",
        ),
        (
            "bob:pw@no-ip.com",
            "dynupdate.no-ip.com",
            "/nic/update?hostname=a.b&myip=10.0.0.1",
        ),
    ] {
        let p = provider(arg);
        assert!(p.tls() && !p.signs());
        assert_eq!((p.host(), p.port()), (host, 443));
        let req = p
            .request(
                "a.b",
                &ips(&["10.0.0.1", "10.0.0.2"]),
                "pw with space",
                SALT,
            )
            .unwrap();
        assert_eq!(req.path, path);
        let head = String::from_utf8(req.head("ua")).unwrap();
        assert!(
            head.contains("\r\nAuthorization: Basic Ym9iOnB3\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("\r\nHost: {host}\r\n")), "{head}");
        // Logs never carry the credentials.
        assert!(!format!("{req} {req:?} {p} {p:?}").contains("pw"));
    }
    // The template without credentials: no header.
    let req = provider("dyndns.org")
        .request("a.b", &ips(&["10.0.0.1"]), "", SALT)
        .unwrap();
    assert!(!req.has_credentials());
    // A user without a password, and a password with a colon.
    let req = provider("bob@dyndns.org")
        .request("a.b", &ips(&["10.0.0.1"]), "", SALT)
        .unwrap();
    assert!(
        String::from_utf8(req.head("ua"))
            .unwrap()
            .contains("Basic Ym9iOg==")
    );
    let req = provider("bob:a:b@dyndns.org")
        .request("a.b", &ips(&["10.0.0.1"]), "", SALT)
        .unwrap();
    assert!(
        String::from_utf8(req.head("ua"))
            .unwrap()
            .contains("Basic Ym9iOmE6Yg==")
    );
}

#[test]
fn templates() {
    let p = provider(
        "https://dns.example:8443/u?h=%(domain)s&a=%(ip)s&all=%(ips)s&s=%(sign)s&pct=100%%",
    );
    assert_eq!((p.host(), p.port(), p.tls()), ("dns.example", 8443, true));
    let req = p
        .request(
            "k.example",
            &ips(&["192.0.2.1", "192.0.2.2"]),
            "s3cret",
            SALT,
        )
        .unwrap();
    let sig = sign("s3cret", "k.example:192.0.2.1,192.0.2.2", SALT);
    assert_eq!(
        req.path,
        format!("/u?h=k.example&a=192.0.2.1&all=192.0.2.1,192.0.2.2&s={sig}&pct=100%")
    );
    assert!(
        String::from_utf8(req.head("ua"))
            .unwrap()
            .contains("\r\nHost: dns.example:8443\r\n")
    );
    // Values that would change the URL are escaped.
    let p = provider("me&x=1:p w@http://h/?u=%(user)s&p=%(pass)s");
    let req = p.request("d", &ips(&["::1"]), "", SALT).unwrap();
    assert_eq!(req.path, "/?u=me%26x%3D1&p=p%20w");
    // No path, a query without a path, IPv6 hosts.
    assert_eq!(
        provider("http://h")
            .request("d", &ips(&["::1"]), "", SALT)
            .unwrap()
            .path,
        "/"
    );
    assert_eq!(
        provider("http://h?x=%(ip)s")
            .request("d", &ips(&["::1"]), "", SALT)
            .unwrap()
            .path,
        "/?x=::1"
    );
    let p = provider("http://[::1]:8080/");
    assert_eq!((p.host(), p.port()), ("::1", 8080));
    assert_eq!(p.to_string(), "http://[::1]:8080");
    // Off.
    assert_eq!(Provider::parse_setting(""), Ok(None));
    assert_eq!(
        provider("pagekite.net").request("d", &[], "", SALT),
        Err(DynDnsError::NoAddresses)
    );
}

#[test]
fn refused_settings() {
    for (arg, want) in [
        ("example.com", DynDnsError::NotUrl("example.com".into())),
        (
            "bob:pw@example.com",
            DynDnsError::NotUrl("example.com".into()),
        ),
        ("ftp://h/", DynDnsError::NotUrl("ftp://h/".into())),
        ("http://h/?a=%(host)s", DynDnsError::BadField("host".into())),
        ("http://h/?a=%s", DynDnsError::BadField("s".into())),
        ("http://h/?a=%(ip)d", DynDnsError::BadField("(ip)d".into())),
        ("http://h/?a=%", DynDnsError::BadField(String::new())),
        ("http://h/a b", DynDnsError::BadByte(b' ')),
        ("http://h/a\r\nX: y", DynDnsError::BadByte(b'\r')),
        ("http:///x", DynDnsError::BadHost(String::new())),
        (
            "http://h%(domain)s/",
            DynDnsError::BadHost("h%(domain)s".into()),
        ),
        ("http://h:99999/", DynDnsError::BadHost("h:99999".into())),
    ] {
        assert_eq!(Provider::parse_setting(arg), Err(want), "{arg}");
    }
    assert_eq!(
        Provider::parse_setting(&format!("http://h/{}", "a".repeat(3000))),
        Err(DynDnsError::TooLong)
    );
    assert!(
        DynDnsError::NotUrl("x".into())
            .to_string()
            .contains("pagekite.net")
    );
}

/// Feeds `reply` split at every point; the outcome must not depend on it.
fn read(reply: &[u8]) -> Result<Response, ReplyError> {
    let whole = read_split(reply, reply.len());
    for cut in 0..=reply.len() {
        assert_eq!(read_split(reply, cut), whole, "cut at {cut}");
    }
    whole
}

fn read_split(reply: &[u8], cut: usize) -> Result<Response, ReplyError> {
    let mut r = ReplyReader::new(MAX_REPLY_BODY, false);
    for piece in [&reply[..cut], &reply[cut..]] {
        if let Some(done) = r.handle_input(piece)? {
            return Ok(done);
        }
    }
    r.finish()
}

#[test]
fn replies_and_their_verdicts() {
    let cases: Vec<(&[u8], Outcome)> = vec![
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\ngood 192.0.2.1",
            Outcome::Updated,
        ),
        (b"HTTP/1.0 200 OK\r\n\r\nnochg 192.0.2.1\n", Outcome::Unchanged),
        (b"HTTP/1.1 200 OK\n\ngood", Outcome::Updated),
        (b"HTTP/1.1 200 OK\r\n\r\nbadauth", Outcome::Failed(Failure::BadAuth)),
        (b"HTTP/1.1 200 OK\r\n\r\nnohost\n", Outcome::Failed(Failure::NoHost)),
        (b"HTTP/1.1 200 OK\r\n\r\nnotfqdn", Outcome::Failed(Failure::NotFqdn)),
        (b"HTTP/1.1 200 OK\r\n\r\nnumhost", Outcome::Failed(Failure::NumHost)),
        (b"HTTP/1.1 200 OK\r\n\r\nabuse", Outcome::Failed(Failure::Abuse)),
        (b"HTTP/1.1 200 OK\r\n\r\nbadagent", Outcome::Failed(Failure::BadAgent)),
        (b"HTTP/1.1 200 OK\r\n\r\n!donator", Outcome::Failed(Failure::NotDonator)),
        (b"HTTP/1.1 200 OK\r\n\r\n911", Outcome::Failed(Failure::ProviderError)),
        (b"HTTP/1.1 200 OK\r\n\r\ndnserr", Outcome::Failed(Failure::ProviderError)),
        (
            b"HTTP/1.1 200 OK\r\n\r\n<html>\x1b[2J\nmore",
            Outcome::Failed(Failure::Other("<html>\\x1b[2J".into())),
        ),
        (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ngood",
            Outcome::Failed(Failure::Http(503)),
        ),
        (b"HTTP/1.1 401 Unauthorized\r\n\r\n", Outcome::Failed(Failure::Http(401))),
    ];
    for (bytes, want) in cases {
        let reply = read(bytes).unwrap();
        assert_eq!(judge(&reply), want, "{}", bytes.escape_ascii());
    }
    // Content-Length ends the reply before the close.
    assert_eq!(
        read(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngoodEXTRA").map(|r| r.body),
        Ok(b"good".to_vec())
    );
    // A body over the limit is refused, never cut.
    let mut big = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    big.resize(big.len() + MAX_REPLY_BODY + 5, b'x');
    assert_eq!(read(&big), Err(ReplyError::BodyTooLarge(MAX_REPLY_BODY)));
    // Refusals.
    assert_eq!(read(b""), Err(ReplyError::Truncated));
    assert_eq!(read(b"HTTP/1.1 200 OK\r\n"), Err(ReplyError::Truncated));
    assert_eq!(read(b"SSH-2.0-x\r\n\r\n"), Err(ReplyError::NotHttp));
    assert_eq!(
        read(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
        Err(ReplyError::BadLength)
    );
}

#[allow(clippy::disallowed_methods)] // a base instant for the arithmetic
fn base() -> Instant {
    Instant::now()
}

fn wanted(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<IpAddr>> {
    list.iter().map(|(d, a)| (d.to_string(), ips(a))).collect()
}

#[test]
fn one_update_per_change() {
    let t0 = base();
    let mut st = DynDnsState::new();
    let w = wanted(&[
        ("a.example", &["192.0.2.1"]),
        ("b.example", &["192.0.2.1", "192.0.2.2"]),
    ]);
    let due = st.next_update(t0, &w).unwrap();
    assert_eq!(
        due,
        Due {
            domain: "a.example".into(),
            ips: ips(&["192.0.2.1"])
        }
    );
    // One at a time.
    assert_eq!(st.next_update(t0, &w), None);
    st.finished(Outcome::Updated, t0);
    let due = st.next_update(t0, &w).unwrap();
    assert_eq!(due.domain, "b.example");
    st.finished(Outcome::Unchanged, t0);
    // Nothing changed: nothing to send, however often asked.
    for _ in 0..3 {
        assert_eq!(st.next_update(t0 + Duration::from_secs(3600), &w), None);
    }
    assert_eq!(
        st.status(t0),
        [
            ("a.example".to_string(), "updated to 192.0.2.1".to_string()),
            (
                "b.example".to_string(),
                "already at 192.0.2.1,192.0.2.2".to_string()
            ),
        ]
    );
    // The same frontends in another order: still nothing.
    let w = wanted(&[
        ("a.example", &["192.0.2.1"]),
        ("b.example", &["192.0.2.2", "192.0.2.1"]),
    ]);
    assert_eq!(st.next_update(t0, &w), None);
    // A frontend more: one update, with the preferred order kept.
    let w = wanted(&[
        ("a.example", &["192.0.2.1"]),
        ("b.example", &["192.0.2.3", "192.0.2.2", "192.0.2.1"]),
    ]);
    assert_eq!(
        st.next_update(t0, &w).unwrap().ips,
        ips(&["192.0.2.3", "192.0.2.2", "192.0.2.1"])
    );
    st.finished(Outcome::Updated, t0);
    // A kite that went away and came back is updated again.
    let gone = wanted(&[("b.example", &["192.0.2.3", "192.0.2.2", "192.0.2.1"])]);
    assert_eq!(st.next_update(t0, &gone), None);
    let back = wanted(&[
        ("a.example", &["192.0.2.1"]),
        ("b.example", &["192.0.2.3", "192.0.2.2", "192.0.2.1"]),
    ]);
    assert_eq!(st.next_update(t0, &back).unwrap().domain, "a.example");
}

#[test]
fn failures_back_off_as_pagekite_py_does() {
    let t0 = base();
    let mut st = DynDnsState::new();
    let w = wanted(&[("a.example", &["192.0.2.1"])]);
    let mut now = t0;
    // 112 s, 224 s, … doubling to 56 s × 32 and staying there.
    for (n, wait) in [112u64, 224, 448, 896, 1792, 1792].into_iter().enumerate() {
        assert!(st.next_update(now, &w).is_some(), "attempt {n}");
        st.finished(Outcome::Failed(Failure::Http(503)), now);
        assert_eq!(st.next_wake(), Some(now + Duration::from_secs(wait)));
        assert_eq!(
            st.next_update(now + Duration::from_secs(wait - 1), &w),
            None
        );
        now += Duration::from_secs(wait);
    }
    assert_eq!(st.failures(), 6);
    let status = &st.status(now - Duration::from_secs(2))[0].1;
    assert_eq!(status, "update failed: HTTP status 503; retrying in 2 s");
    // Success ends the back-off.
    assert!(st.next_update(now, &w).is_some());
    assert_eq!(st.status(now)[0].1, "updating");
    st.finished(Outcome::Updated, now);
    assert_eq!((st.failures(), st.next_wake()), (0, None));
    // A short unit for tests.
    let mut quick = DynDnsState::with_backoff(Duration::from_millis(100));
    assert!(quick.next_update(t0, &w).is_some());
    quick.finished(Outcome::Failed(Failure::Transport("timed out".into())), t0);
    assert_eq!(quick.next_wake(), Some(t0 + Duration::from_millis(200)));
    assert!(
        quick
            .next_update(t0 + Duration::from_millis(200), &w)
            .is_some()
    );
}

#[test]
fn retry_now_lifts_the_back_off_but_keeps_the_count() {
    let t0 = base();
    let mut st = DynDnsState::new();
    let w = wanted(&[("a.example", &["192.0.2.1"])]);
    assert!(st.next_update(t0, &w).is_some());
    st.finished(Outcome::Failed(Failure::Http(503)), t0);
    assert_eq!(st.next_update(t0, &w), None, "backing off");
    st.retry_now();
    assert_eq!(st.next_wake(), None);
    assert!(st.next_update(t0, &w).is_some(), "tried again at once");
    st.finished(Outcome::Failed(Failure::Http(503)), t0);
    // The second failure in a row waits twice as long as the first.
    assert_eq!(st.next_wake(), Some(t0 + Duration::from_secs(224)));
}
