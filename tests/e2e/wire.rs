//! Issue 10, what crosses the wire: host names up to DNS's 253 bytes reach the
//! backend whole in the chunk header (never cut, so never routed to another kite),
//! with an rkite and a pagekite.py backend; IPv4 visitors of a dual-stack listener are
//! reported as plain IPv4 (`RIP`, hence `X-Forwarded-For`); `--client_acl` is judged at
//! accept (a denied client never gets a CONNECT 200, a 503 page or a ServerHello, while
//! a backend from that address still gets its tunnel under `--tunnel_acl`); and the
//! per-IP limit does not count a backend's tunnels.

use crate::fixture::{backend, frontend, get, kite, live};
use crate::origin::{INDEX_BODY, Origin};
use crate::peers::{self, PAGEKITE};
use crate::util::{self, free_port};

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
