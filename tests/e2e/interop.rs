//! Interoperability with the real peer, Debian's pagekite.py 1.5.2.201011:
//! its backend against an rkite frontend (in-band AddKites by default, the
//! reconnect flow with --nozchunks), and an rkite backend against its
//! frontend. Each checks status and body through curl, a 16 MiB download
//! and an unknown name; a SIGHUP'd rkite backend adds a kite in band to a
//! pagekite.py frontend's live tunnel. Under CI=true a missing pagekite
//! fails the run.

use crate::fixture::{T, backend, frontend, get, kite, live};
use crate::origin::{INDEX_BODY, Origin, check_pattern_file};
use crate::peers::{self, PAGEKITE};
use crate::util::{self, free_port};

const BIG: usize = 16 * 1024 * 1024;

fn download_big(port: u16, host: &str) {
    let url = format!("http://127.0.0.1:{port}/bytes/{BIG}");
    let dl = util::curl_to_file(&["--max-time", "120", "-H", &format!("Host: {host}"), &url]);
    assert_eq!(dl.status, 200);
    assert_eq!(check_pattern_file(&dl.path), Ok(BIG as u64));
}

fn pagekite_backend_against_rkite_frontend(extra: &[&str]) {
    if !util::require_peer(PAGEKITE) {
        return;
    }
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &["http:*.example.test:s3cret"], &[]);
    let good = peers::kite("http", "pk.example.test", origin.port(), "s3cret");
    let bad = peers::kite("http", "bad.example.test", origin.port(), "WRONG");
    let be = peers::pagekite_backend(port, &[&good, &bad], extra);
    peers::wait_kite_up(&be, "http", "pk.example.test");
    live(&fe, "http:pk.example.test");
    be.wait_for(
        &peers::be_kite_rejected("http", "bad.example.test", "signature"),
        T,
    );
    fe.wait_for("kite http:bad.example.test rejected: signature", T);

    let page = get(port, "pk.example.test", "/");
    assert_eq!((page.status, page.body_str().as_str()), (200, INDEX_BODY));
    let echo = get(port, "pk.example.test", "/echo").body_str();
    assert!(echo.contains("X-Forwarded-For: 127.0.0.1\r\n"), "{echo}");
    download_big(port, "pk.example.test");
    let unknown = get(port, "nosuch.example.test", "/");
    assert_eq!(unknown.status, 503);
    assert!(unknown.body_str().contains("Sorry! (fe)"));
    let rejected = get(port, "bad.example.test", "/");
    assert_eq!(rejected.status, 503);
}

#[test]
fn pagekite_backend_in_band_addkites() {
    pagekite_backend_against_rkite_frontend(&[]);
}

#[test]
fn pagekite_backend_reconnect_flow_nozchunks() {
    pagekite_backend_against_rkite_frontend(&["--nozchunks"]);
}

#[test]
fn rkite_backend_against_pagekite_frontend() {
    if !util::require_peer(PAGEKITE) {
        return;
    }
    let origin = Origin::start();
    let dead = free_port();
    let port = free_port();
    let fe = peers::pagekite_frontend(
        port,
        &[
            "--protos=http,https,raw,websocket",
            "--domain=http:*.example.test:s3cret",
        ],
    );
    peers::wait_frontend_ready(&fe, port);
    let be = backend(
        port,
        &[
            kite("http", "rk.example.test", origin.port(), "s3cret"),
            kite("http", "down.example.test", dead, "s3cret"),
        ],
        &[],
    );
    live(&be, "http:rk.example.test");
    live(&be, "http:down.example.test");
    fe.wait_for(&peers::fe_kite_live("http", "rk.example.test"), T);

    let page = get(port, "rk.example.test", "/");
    assert_eq!((page.status, page.body_str().as_str()), (200, INDEX_BODY));
    let echo = get(port, "rk.example.test", "/echo").body_str();
    assert!(
        echo.starts_with("GET /echo HTTP/1.1\r\nX-Forwarded-For: 127.0.0.1\r\n"),
        "{echo}"
    );
    assert!(
        echo.contains(&format!("X-PageKite-Port: {port}\r\n")),
        "{echo}"
    );
    download_big(port, "rk.example.test");
    let unknown = get(port, "nosuch.example.test", "/");
    assert_eq!(unknown.status, 503);
    assert!(unknown.body_str().contains("Sorry! (fe)"));
    let down = get(port, "down.example.test", "/");
    assert_eq!(down.status, 503);
    assert!(
        down.body_str().contains("Sorry! (be)"),
        "{}",
        down.body_str()
    );
}

#[test]
fn rkite_backend_adds_a_kite_in_band_on_sighup_against_pagekite_frontend() {
    if !util::require_peer(PAGEKITE) {
        return;
    }
    let origin = Origin::start();
    let port = free_port();
    let fe = peers::pagekite_frontend(
        port,
        &["--protos=http", "--domain=http:*.example.test:s3cret"],
    );
    peers::wait_frontend_ready(&fe, port);
    let dir = util::temp_dir("interop-hup");
    let rc = dir.join("be.rc");
    let line = |name: &str| {
        format!(
            "service_on = {}\n",
            kite("http", name, origin.port(), "s3cret")
        )
    };
    std::fs::write(
        &rc,
        format!("frontend = 127.0.0.1:{port}\n{}", line("one.example.test")),
    )
    .expect("write rc");
    let be = crate::util::rkite(&["-o", &rc.display().to_string()]);
    live(&be, "http:one.example.test");
    std::fs::write(
        &rc,
        format!(
            "frontend = 127.0.0.1:{port}\n{}{}",
            line("one.example.test"),
            line("two.example.test")
        ),
    )
    .expect("write rc");
    be.signal(libc::SIGHUP);
    live(&be, "http:two.example.test");
    fe.wait_for(&peers::fe_kite_live("http", "two.example.test"), T);
    let page = get(port, "two.example.test", "/");
    assert_eq!((page.status, page.body_str().as_str()), (200, INDEX_BODY));
    let page = get(port, "one.example.test", "/");
    assert_eq!((page.status, page.body_str().as_str()), (200, INDEX_BODY));
    assert_eq!(be.count("connecting to frontend"), 1, "{:?}", be.lines());
}
