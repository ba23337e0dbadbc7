//! Issue 10, what crosses the wire: host names up to DNS's 253 bytes reach the
//! backend whole in the chunk header (never cut, so never routed to another kite),
//! with an rkite and a pagekite.py backend; IPv4 visitors of a dual-stack listener are
//! reported as plain IPv4 (`RIP`, hence `X-Forwarded-For`); `--client_acl` is judged at
//! accept (a denied client never gets a CONNECT 200, a 503 page or a ServerHello, while
//! a backend from that address still gets its tunnel under `--tunnel_acl`); and the
//! per-IP limit does not count a backend's tunnels.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::certs::{OPENSSL, pki};
use crate::fixture::{T, backend, frontend, get, kite, live};
use crate::origin::{INDEX_BODY, Origin};
use crate::peers::{self, PAGEKITE};
use crate::raw::{AT_ONCE, DOMAINS, SECRET, assert_closed_silently};
use crate::tls::{client_hello, endpoint};
use crate::util::{self, RawResponse, free_port, local};

/// A DNS name of exactly `len` bytes ending in `.example.test`, in 63-byte labels.
fn long_name(len: usize) -> String {
    let suffix = ".example.test";
    let mut name = String::new();
    let labels = ["x", "y", "z", "w"];
    let mut i = 0;
    while name.len() + suffix.len() < len {
        if !name.is_empty() {
            name.push('.');
        }
        let take = (len - suffix.len() - name.len()).min(63);
        name.push_str(&labels[i % labels.len()].repeat(take));
        i += 1;
    }
    name.push_str(suffix);
    assert_eq!(name.len(), len, "{name}");
    name
}

/// What the old 96-byte line left of `Host: NAME`: its first 90 bytes.
fn cut_name(name: &str) -> String {
    name[..90].trim_end_matches('.').to_string()
}

#[test]
fn host_names_up_to_253_bytes_reach_the_rkite_backend_whole() {
    let (whole, cut) = (Origin::start(), Origin::start());
    let port = free_port();
    let names = [long_name(200), long_name(253)];
    let short = cut_name(&names[1]);
    assert_eq!(short, cut_name(&names[0]));
    let fe = frontend(
        &[port],
        &[
            "http:*.example.test:s3cret",
            &format!("http:{short}:s3cret"),
        ],
        &[],
    );
    // The backend also serves the name the old 96-byte line cut both long
    // ones to: cut, their requests would land on that other kite.
    let be = backend(
        port,
        &[
            kite("http", &names[0], whole.port(), "s3cret"),
            kite("http", &names[1], whole.port(), "s3cret"),
            kite("http", &short, cut.port(), "s3cret"),
        ],
        &[],
    );
    for name in names.iter().chain([&short]) {
        live(&be, &format!("http:{name}"));
        live(&fe, &format!("http:{name}"));
    }
    for name in &names {
        let page = get(port, name, "/");
        assert_eq!(
            (page.status, page.body_str().as_str()),
            (200, INDEX_BODY),
            "{}-byte name",
            name.len()
        );
        let echo = get(port, name, "/echo").body_str();
        assert!(echo.contains(&format!("Host: {name}\r\n")), "{echo}");
    }
    assert!(cut.requests().is_empty(), "{:?}", cut.requests());
    assert_eq!(whole.requests().len(), 4);
}

#[test]
fn a_253_byte_host_name_reaches_a_pagekite_backend_whole() {
    if !util::require_peer(PAGEKITE) {
        return;
    }
    let (whole, cut) = (Origin::start(), Origin::start());
    let port = free_port();
    let name = long_name(253);
    let short = cut_name(&name);
    let fe = frontend(
        &[port],
        &[
            "http:*.example.test:s3cret",
            &format!("http:{short}:s3cret"),
        ],
        &[],
    );
    let long_kite = peers::kite("http", &name, whole.port(), "s3cret");
    let short_kite = peers::kite("http", &short, cut.port(), "s3cret");
    let be = peers::pagekite_backend(port, &[&long_kite, &short_kite], &[]);
    peers::wait_kite_up(&be, "http", &name);
    peers::wait_kite_up(&be, "http", &short);
    live(&fe, &format!("http:{name}"));
    let page = get(port, &name, "/");
    assert_eq!((page.status, page.body_str().as_str()), (200, INDEX_BODY));
    assert!(cut.requests().is_empty(), "{:?}", cut.requests());
    assert_eq!(whole.requests().len(), 1);
}

#[test]
fn ipv4_visitors_of_the_default_dual_stack_listener_are_plain_ipv4() {
    if !util::require_peer(PAGEKITE) {
        return;
    }
    let origin = Origin::start();
    let port = free_port();
    // No --host: rkite binds [::] (IPv4 too, where the system allows) by default.
    let ports = format!("--ports={port}");
    let fe = util::rkite(&[
        "--isfrontend",
        &ports,
        "--protos=http",
        "--domain=http:*.example.test:s3cret",
    ]);
    let listening = fe.wait_for("listening on ", T);
    if !listening.contains(&format!("listening on [::]:{port}")) {
        eprintln!("SKIPPED: no dual-stack listener here: {listening}");
        return;
    }
    let pk = peers::kite("http", "dual.example.test", origin.port(), "s3cret");
    let be = peers::pagekite_backend(port, &[&pk], &[]);
    peers::wait_kite_up(&be, "http", "dual.example.test");
    let echo = get(port, "dual.example.test", "/echo").body_str();
    assert!(echo.contains("X-Forwarded-For: 127.0.0.1\r\n"), "{echo}");
    assert!(!echo.contains("::ffff:"), "{echo}");
    // The frontend's own lines about its peers use the same plain spelling.
    fe.wait_for("from 127.0.0.1:", T);
    let mapped: Vec<String> = fe
        .lines()
        .into_iter()
        .filter(|l| l.contains("::ffff:"))
        .collect();
    assert!(mapped.is_empty(), "{mapped:?}");
}

/// A public `CONNECT target` head.
fn connect(target: &str) -> Vec<u8> {
    format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").into_bytes()
}

#[test]
fn a_client_the_client_acl_denies_hears_nothing_while_its_backend_connects() {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &DOMAINS, &[r"--client_acl=deny:127\.0\.0\.1"]);
    // The backend's tunnel comes from the same address: only --tunnel_acl (no
    // rules: everyone) judges it.
    let be = backend(
        port,
        &[
            kite("http", "acl.example.test", origin.port(), SECRET),
            kite("https", "tls.example.test", origin.port(), SECRET),
        ],
        &[],
    );
    for name in ["http:acl.example.test", "https:tls.example.test"] {
        live(&be, name);
        live(&fe, name);
    }
    let probes: [(&str, Vec<u8>); 5] = [
        (
            "CONNECT to a served kite (was 200)",
            connect("acl.example.test:80"),
        ),
        (
            "CONNECT to no kite (was 503)",
            connect("nosuch.example.test:443"),
        ),
        (
            "GET for no kite",
            b"GET / HTTP/1.1\r\nHost: nosuch.example.test\r\n\r\n".to_vec(),
        ),
        ("PING (was PONG)", b"PING /x HTTP/1.1\r\n\r\n".to_vec()),
        (
            "TLS for an https kite",
            client_hello_or_stub("tls.example.test"),
        ),
    ];
    for (what, bytes) in &probes {
        eprintln!("probe: {what}");
        assert_closed_silently(local(port), bytes, AT_ONCE);
    }
    fe.wait_for("denied by --client_acl", T);
    assert!(origin.requests().is_empty(), "{:?}", origin.requests());
}

/// A real ClientHello for `sni` when openssl is installed, else a hand-made one.
fn client_hello_or_stub(sni: &str) -> Vec<u8> {
    if util::require_peer(OPENSSL) {
        client_hello(Some(sni))
    } else {
        crate::tls::crafted_client_hello(sni.as_bytes())
    }
}

#[test]
fn an_address_both_acls_deny_gets_no_tls_handshake() {
    if !util::require_peer(OPENSSL) {
        return;
    }
    let port = free_port();
    let app = endpoint("app.example.test", &pki().leaf(&["app.example.test"]));
    let fe = frontend(
        &[port],
        &DOMAINS,
        &[
            &app,
            "--client_acl=deny:localhost",
            "--tunnel_acl=deny:localhost",
        ],
    );
    // It used to get the endpoint's ServerHello and certificate.
    assert_closed_silently(
        local(port),
        &client_hello(Some("app.example.test")),
        AT_ONCE,
    );
    fe.wait_for("denied by --client_acl and --tunnel_acl", T);
}

#[test]
fn an_address_only_the_tunnel_acl_allows_gets_no_request_through_a_tls_endpoint() {
    if !util::require_peer(OPENSSL) {
        return;
    }
    let origin = Origin::start();
    let port = free_port();
    let app = endpoint("app.example.test", &pki().leaf(&["app.example.test"]));
    let fe = frontend(&[port], &DOMAINS, &[&app, "--client_acl=deny:localhost"]);
    let be = backend(
        port,
        &[kite("http", "app.example.test", origin.port(), SECRET)],
        &[],
    );
    live(&be, "http:app.example.test");
    // A tunnel over TLS looks like this until it is decrypted, so the handshake
    // happens; the request inside is a visitor's and gets nothing.
    let resolve = format!("app.example.test:{port}:127.0.0.1");
    let url = format!("https://app.example.test:{port}/");
    let got = util::try_curl(&["--cacert", pki().ca_cert_str(), "--resolve", &resolve, &url]);
    assert!(got.is_err(), "{got:?}");
    fe.wait_for("denied by --client_acl", T);
    assert!(origin.requests().is_empty(), "{:?}", origin.requests());
}

#[test]
fn a_backends_tunnel_is_not_a_visitor_for_the_per_ip_limit() {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &DOMAINS, &["--max_conns_per_ip=2"]);
    let be = backend(
        port,
        &[kite("http", "acl.example.test", origin.port(), SECRET)],
        &[],
    );
    live(&be, "http:acl.example.test");
    live(&fe, "http:acl.example.test");
    // Two visitors from the tunnel's address, both held open: the tunnel used to
    // take one of their places.
    let open: Vec<TcpStream> = crate::meter::half_requests(port, 2);
    // The listener accepts in arrival order, so these two are in before the next.
    let full = b"GET / HTTP/1.1\r\nHost: acl.example.test\r\nConnection: close\r\n\r\n";
    // The limit still holds for visitors.
    assert_closed_silently(local(port), full, AT_ONCE);
    fe.wait_for("per-IP limit", T);
    for mut s in open {
        s.write_all(b"Host: acl.example.test\r\nConnection: close\r\n\r\n")
            .expect("finish the request");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read the answer");
        let r = RawResponse::parse(&raw);
        assert_eq!((r.status, r.body_str().as_str()), (200, INDEX_BODY));
    }
}

#[test]
fn a_pagekite_backend_from_an_address_the_client_acl_denies_still_pings_and_connects() {
    if !util::require_peer(PAGEKITE) {
        return;
    }
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &DOMAINS, &["--client_acl=deny:localhost"]);
    let pk = peers::kite("http", "acl.example.test", origin.port(), SECRET);
    let be = peers::pagekite_backend(port, &[&pk], &[]);
    // pagekite.py pings a relay (`Host: ping.pagekite`) before it connects.
    let ping = be.wait_for(&format!("FE=127.0.0.1:{port}; http_ping_ms="), T);
    // The uuid is from rkite's answer: the ping was answered, not refused.
    assert!(ping.contains("; uuid="), "{ping}");
    peers::wait_kite_up(&be, "http", "acl.example.test");
    live(&fe, "http:acl.example.test");
    assert_closed_silently(
        local(port),
        b"GET / HTTP/1.1\r\nHost: acl.example.test\r\n\r\n",
        AT_ONCE,
    );
    assert!(origin.requests().is_empty(), "{:?}", origin.requests());
}
