//! The frontend's access control. `--client_acl` rules (regex from the start of the IP,
//! `any`, `localhost`, CIDR; first match decides; rules and no match mean deny) close a
//! denied public client at once without a byte of reply and log `client_acl`, while the
//! backend's tunnel from the same address is not a public client and goes live;
//! `--tunnel_acl` keeps a denied backend from ever going live (log `tunnel_acl`), and an
//! allowing rule lets it in; `--max_conns_per_ip=3` refuses a fourth simultaneous
//! connection from 127.0.0.1 (log `per-IP limit`) while the first three are served, and
//! once they are gone a new one is served again.

use std::io::{Read, Write};
use std::net::TcpStream;

use super::{AT_ONCE, SECRET, assert_closed_silently, live, raw_frontend};
use crate::fixture::{T, backend, get, kite};
use crate::origin::{INDEX_BODY, Origin};
use crate::util::{self, Proc, RawResponse, local};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: acl.example.test\r\nConnection: close\r\n\r\n";

/// A frontend with `acl` flags and a backend serving `http:acl.example.test`, live.
fn guarded(acl: &[&str], origin: &Origin) -> (u16, Proc, Proc) {
    let (port, fe) = raw_frontend(acl);
    let be = backend(
        port,
        &[kite("http", "acl.example.test", origin.port(), SECRET)],
        &[],
    );
    live(&be, "http:acl.example.test");
    live(&fe, "http:acl.example.test");
    (port, fe, be)
}

#[test]
fn client_acl_denies_public_clients_without_a_reply() {
    let origin = Origin::start();
    for rules in [
        &[r"--client_acl=deny:127\.0\.0\.1"][..],
        &[r"--client_acl=allow:10\."][..], // rules, and none matches: denied
        &["--client_acl=deny:localhost", "--client_acl=allow:any"][..],
    ] {
        let (port, fe, _be) = guarded(rules, &origin);
        assert_closed_silently(local(port), REQUEST, AT_ONCE);
        fe.wait_for("client_acl", T);
    }
    assert!(origin.requests().is_empty(), "{:?}", origin.requests());
}

#[test]
fn client_acl_first_match_decides_and_allows() {
    let origin = Origin::start();
    for rules in [
        &["--client_acl=allow:127.0.0.0/8", "--client_acl=deny:any"][..],
        &[
            // pagekite.py matches the whole address (re.match(p + '$')).
            r"--client_acl=allow:127\..*",
            r"--client_acl=deny:127\.0\.0\.1",
        ][..],
        &["--client_acl=allow:localhost"][..],
    ] {
        let (port, _fe, _be) = guarded(rules, &origin);
        let page = get(port, "acl.example.test", "/");
        assert_eq!(
            (page.status, page.body_str().as_str()),
            (200, INDEX_BODY),
            "{rules:?}"
        );
    }
    assert_eq!(origin.requests().len(), 3);
}

#[test]
fn tunnel_acl_keeps_a_denied_backend_out() {
    let origin = Origin::start();
    let (port, fe) = raw_frontend(&[r"--tunnel_acl=deny:127\.0\.0\.1"]);
    let be = backend(
        port,
        &[kite("http", "acl.example.test", origin.port(), SECRET)],
        &[],
    );
    fe.wait_for("tunnel_acl", T);
    let page = get(port, "acl.example.test", "/");
    assert_eq!(page.status, 503);
    assert!(
        page.body_str().contains("Sorry! (fe)"),
        "{}",
        page.body_str()
    );
    assert!(!be.contains("is live"), "the denied backend went live");
    assert!(!fe.contains("is live"));
    assert!(origin.requests().is_empty());
    drop(be);

    let (port, fe) = raw_frontend(&["--tunnel_acl=allow:127.0.0.0/8"]);
    let be = backend(
        port,
        &[kite("http", "acl.example.test", origin.port(), SECRET)],
        &[],
    );
    live(&be, "http:acl.example.test");
    live(&fe, "http:acl.example.test");
    assert_eq!(get(port, "acl.example.test", "/").status, 200);
}

/// Sends the rest of a request on `s` (which sent its request line already) and returns
/// the frontend's answer.
fn finish(mut s: TcpStream) -> RawResponse {
    s.write_all(b"Host: nosuch.example.test\r\nConnection: close\r\n\r\n")
        .expect("finish the request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    RawResponse::parse(&raw)
}

#[test]
fn max_conns_per_ip_refuses_the_fourth_connection() {
    // No backend: nothing but these visitors from 127.0.0.1 (a tunnel would not count).
    let (port, fe) = raw_frontend(&["--max_conns_per_ip=3"]);
    let open: Vec<TcpStream> = crate::meter::half_requests(port, 3);
    let full = b"GET / HTTP/1.1\r\nHost: nosuch.example.test\r\nConnection: close\r\n\r\n";
    assert_closed_silently(local(port), full, AT_ONCE);
    fe.wait_for("per-IP limit", T);

    for s in open {
        let r = finish(s);
        assert_eq!(r.status, 503, "an earlier connection is still served");
        assert!(r.body_str().contains("Sorry! (fe)"));
    }
    // Once those are gone, the address may connect again.
    util::wait_until("a new connection is served again", T, || {
        util::raw_exchange(local(port), full, false, T)
            .is_ok_and(|raw| raw.starts_with(b"HTTP/1.1 503"))
    });
}
