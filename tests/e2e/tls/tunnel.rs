//! Tunnels over TLS: an rkite backend dialling an rkite frontend with a verified
//! certificate (`--fe_certname` + `--ca_certs`: CONNECT NAME:443 in clear, then TLS with
//! SNI NAME) or with none (`--fe_nocertcheck`: TLS at once, the frontend's `--tls_default`
//! answering a hello without SNI); the wrong CA and the wrong name refused, retried and
//! never live, while a certificate matching any one of several `--fe_certname`s is
//! accepted; and both directions against Debian pagekite.py. Where it matters a
//! `Recorder` between the two proves what went over the wire: TLS, and no tunnel protocol
//! or request data in clear.

use super::{
    Capture, Recorder, assert_no_cleartext, ca_certs, endpoint, fastest_suite, hello_sni,
    server_hello_suite,
};
use crate::certs::{OPENSSL, other_pki, pki};
use crate::fixture::{T, backend, frontend, get, kite, live};
use crate::origin::{INDEX_BODY, Origin};
use crate::peers::{self, PAGEKITE};
use crate::util::{self, Proc, find_subslice, free_port};

const SECRET: &str = "s3cret";
const DOMAINS: &str = "http:*.example.test:s3cret";

/// The recorded connections that carried a tunnel: not the backend's plain `HEAD /ping`s.
fn tunnels(rec: &Recorder) -> Vec<Capture> {
    rec.captures()
        .into_iter()
        .filter(|c| !c.up.is_empty() && !c.up.starts_with(b"HEAD ") && !c.up.starts_with(b"GET "))
        .collect()
}

/// Checks that every tunnel `rec` saw is `CONNECT NAME:443 HTTP/1.1` in clear, the
/// frontend's `HTTP/1.0 200 Connection Established`, then TLS both ways, the ClientHello
/// with SNI NAME; returns the tunnels.
fn connect_then_tls(rec: &Recorder, name: &str) -> Vec<Capture> {
    let caps = tunnels(rec);
    assert!(!caps.is_empty(), "the backend dialled through the recorder");
    let request = format!("CONNECT {name}:443 HTTP/1.1\r\n");
    let ok = b"HTTP/1.0 200 Connection Established\r\n\r\n";
    for cap in &caps {
        let shown = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned();
        assert!(
            cap.up.starts_with(request.as_bytes()),
            "the tunnel starts with a clear {request:?}: {:?}",
            shown(&cap.up)
        );
        let head_end = find_subslice(&cap.up, b"\r\n\r\n").expect("CONNECT head") + 4;
        assert_eq!(
            hello_sni(&cap.up[head_end..]),
            Ok(Some(name.to_string())),
            "then a ClientHello with SNI = --fe_certname"
        );
        assert!(cap.down.starts_with(ok), "{:?}", shown(&cap.down));
        assert_eq!(cap.down.get(ok.len()), Some(&0x16), "then the ServerHello");
    }
    caps
}

/// True if a backend logged a warning (or worse) that mentions certificates.
fn warned_about_certificates(be: &Proc) -> bool {
    be.lines().iter().any(|l| {
        let level = l.split_whitespace().nth(1).unwrap_or("");
        matches!(level, "WARN" | "ERROR") && l.to_ascii_lowercase().contains("cert")
    })
}

#[test]
fn backend_tunnels_over_verified_tls_and_nothing_is_in_clear() {
    if !util::require_peer(OPENSSL) {
        return;
    }
    let origin = Origin::start();
    let relay = pki().leaf(&["fe.example.test"]);
    let port = free_port();
    let fe = frontend(&[port], &[DOMAINS], &[&endpoint("fe.example.test", &relay)]);
    let rec = Recorder::start(port);
    let be = backend(
        rec.port(),
        &[kite("http", "tls.example.test", origin.port(), SECRET)],
        &["--fe_certname=fe.example.test", &ca_certs(pki())],
    );
    live(&be, "http:tls.example.test");
    live(&fe, "http:tls.example.test");

    let marker = "tunnel-marker-5d1c9e";
    let echo = util::curl(&[
        "-H",
        "Host: tls.example.test",
        "-H",
        &format!("X-Marker: {marker}"),
        &format!("http://127.0.0.1:{port}/echo"),
    ]);
    assert_eq!(echo.status, 200);
    assert!(echo.body_str().contains(marker), "{}", echo.body_str());
    assert_eq!(get(port, "tls.example.test", "/").body_str(), INDEX_BODY);

    let caps = connect_then_tls(&rec, "fe.example.test");
    assert_no_cleartext(&caps, &[marker, "tls.example.test"]);

    // The backend offers the cipher this CPU runs fastest first (ring lists
    // AES-256 first), and the frontend follows its client's order.
    let code = fastest_suite();
    let ok = b"HTTP/1.0 200 Connection Established\r\n\r\n";
    for cap in &caps {
        let hello = cap.down.get(ok.len()..).unwrap_or_default();
        assert_eq!(
            server_hello_suite(hello),
            Ok(code),
            "the ServerHello's suite"
        );
    }
}

#[test]
fn backend_refuses_a_frontend_with_the_wrong_ca_or_name() {
    if !util::require_peer(OPENSSL) {
        return;
    }
    let origin = Origin::start();
    let relay = pki().leaf(&["fe.example.test"]);
    let port = free_port();
    // `mismatch.example.test` is an endpoint whose certificate is for fe.example.test only.
    let fe = frontend(
        &[port],
        &[DOMAINS],
        &[
            &endpoint("fe.example.test", &relay),
            &endpoint("mismatch.example.test", &relay),
        ],
    );
    let wrong_ca = backend(
        port,
        &[kite("http", "ca.example.test", origin.port(), SECRET)],
        &["--fe_certname=fe.example.test", &ca_certs(other_pki())],
    );
    let wrong_name = backend(
        port,
        &[kite("http", "name.example.test", origin.port(), SECRET)],
        &["--fe_certname=mismatch.example.test", &ca_certs(pki())],
    );
    for (be, what, why) in [
        (&wrong_ca, "a CA it does not trust", "unknownissuer"),
        (
            &wrong_name,
            "a name that is not the certificate's",
            "notvalidforname",
        ),
    ] {
        let line = be.wait_for("invalid peer certificate", T);
        assert!(line.contains("TLS"), "{what}: the failure says TLS: {line}");
        let squashed: String = line.to_ascii_lowercase().split_whitespace().collect();
        assert!(
            squashed.contains(why),
            "{what}: the failure says {why}: {line}"
        );
        be.wait_for_count("retrying in", 2, T);
        be.wait_for_count("invalid peer certificate", 2, T);
        assert!(!be.contains("is live"), "{what}: never live");
    }
    assert!(!fe.contains("kite http:ca.example.test is live"));
    assert!(!fe.contains("kite http:name.example.test is live"));
    assert_eq!(get(port, "ca.example.test", "/").status, 503);

    // The frontend is unharmed: a backend that trusts it goes live and serves.
    let good = backend(
        port,
        &[kite("http", "good.example.test", origin.port(), SECRET)],
        &["--fe_certname=fe.example.test", &ca_certs(pki())],
    );
    live(&good, "http:good.example.test");
    live(&fe, "http:good.example.test");
    assert_eq!(get(port, "good.example.test", "/").body_str(), INDEX_BODY);

    // Any of the --fe_certnames will do: SNI and CONNECT name the first
    // (mismatch.example.test, whose certificate is fe.example.test's), and the
    // second matches it.
    let either = backend(
        port,
        &[kite("http", "either.example.test", origin.port(), SECRET)],
        &[
            "--fe_certname=mismatch.example.test",
            "--fe_certname=fe.example.test",
            &ca_certs(pki()),
        ],
    );
    live(&either, "http:either.example.test");
    live(&fe, "http:either.example.test");
    assert!(!either.contains("invalid peer certificate"));
    assert!(fe.exit_status().is_none(), "the frontend is still running");
}

#[test]
fn nocertcheck_backends_use_direct_tls_and_warn() {
    if !util::require_peer(OPENSSL) {
        return;
    }
    let origin = Origin::start();
    let relay = pki().leaf(&["fe.example.test"]);
    let port = free_port();
    let fe = frontend(
        &[port],
        &[DOMAINS],
        &[
            &endpoint("fe.example.test", &relay),
            "--tls_default=fe.example.test",
        ],
    );
    // One without a name (no SNI: --tls_default answers), one with (SNI = that name).
    let (rec_plain, rec_named) = (Recorder::start(port), Recorder::start(port));
    let plain = backend(
        rec_plain.port(),
        &[kite("http", "nc.example.test", origin.port(), SECRET)],
        &["--fe_nocertcheck"],
    );
    let named = backend(
        rec_named.port(),
        &[kite("http", "sni.example.test", origin.port(), SECRET)],
        &["--fe_nocertcheck", "--fe_certname=fe.example.test"],
    );
    for (be, name) in [(&plain, "nc.example.test"), (&named, "sni.example.test")] {
        live(be, &format!("http:{name}"));
        live(&fe, &format!("http:{name}"));
        assert_eq!(get(port, name, "/").body_str(), INDEX_BODY);
        assert!(
            warned_about_certificates(be),
            "a loud warning about the missing certificate check"
        );
    }
    for (rec, sni) in [(&rec_plain, None), (&rec_named, Some("fe.example.test"))] {
        let caps = tunnels(rec);
        assert!(!caps.is_empty());
        for cap in &caps {
            assert_eq!(
                hello_sni(&cap.up),
                Ok(sni.map(String::from)),
                "direct TLS (no CONNECT) with SNI {sni:?}: {:?}",
                String::from_utf8_lossy(&cap.up[..cap.up.len().min(100)])
            );
        }
        assert_no_cleartext(&caps, &["nc.example.test", "sni.example.test"]);
    }
}

#[test]
fn pagekite_backend_reaches_rkite_frontend_by_connect_and_tls() {
    if !util::require_peer(OPENSSL) || !util::require_peer(PAGEKITE) {
        return;
    }
    let origin = Origin::start();
    let relay = pki().leaf(&["fe.example.test"]);
    let site = pki().leaf(&["pk.example.test"]);
    let port = free_port();
    let fe = frontend(
        &[port],
        &[DOMAINS],
        &[
            &endpoint("fe.example.test", &relay),
            &endpoint("pk.example.test", &site),
        ],
    );
    let good = peers::kite("http", "pk.example.test", origin.port(), SECRET);
    let be = peers::pagekite_backend(
        port,
        &[&good],
        &["--fe_certname=fe.example.test", &ca_certs(pki())],
    );
    let up = peers::wait_kite_up(&be, "http", "pk.example.test");
    // pk.example.test has a --tls_endpoint, so the frontend said X-PageKite-SSL-OK.
    assert!(up.contains("ssl=True"), "{up}");
    live(&fe, "http:pk.example.test");
    assert_eq!(get(port, "pk.example.test", "/").body_str(), INDEX_BODY);
    // HTTPS to the kite's name, terminated at the frontend: pagekite.py saw RTLS.
    let resolve = format!("pk.example.test:{port}:127.0.0.1");
    let echo = util::curl(&[
        "--cacert",
        pki().ca_cert_str(),
        "--resolve",
        &resolve,
        &format!("https://pk.example.test:{port}/echo"),
    ]);
    assert_eq!(echo.status, 200);
    assert!(
        echo.body_str().contains("X-Forwarded-Proto: https\r\n"),
        "{}",
        echo.body_str()
    );
}

#[test]
fn pagekite_backend_with_nocertcheck_gets_the_default_certificate() {
    if !util::require_peer(OPENSSL) || !util::require_peer(PAGEKITE) {
        return;
    }
    let origin = Origin::start();
    let relay = pki().leaf(&["fe.example.test"]);
    let port = free_port();
    let fe = frontend(
        &[port],
        &[DOMAINS],
        &[
            &endpoint("fe.example.test", &relay),
            "--tls_default=fe.example.test",
        ],
    );
    let nc = peers::kite("http", "pknc.example.test", origin.port(), SECRET);
    let be = peers::pagekite_backend(port, &[&nc], &["--fe_nocertcheck"]);
    peers::wait_kite_up(&be, "http", "pknc.example.test");
    live(&fe, "http:pknc.example.test");
    let page = get(port, "pknc.example.test", "/");
    assert_eq!((page.status, page.body_str().as_str()), (200, INDEX_BODY));
}

#[test]
fn rkite_backend_reaches_pagekite_frontend_by_connect_and_tls() {
    if !util::require_peer(OPENSSL) || !util::require_peer(PAGEKITE) {
        return;
    }
    let origin = Origin::start();
    let relay = pki().leaf(&["fe.example.test"]);
    let port = free_port();
    let fe = peers::pagekite_frontend(
        port,
        &[
            "--protos=http,https,raw,websocket",
            "--domain=http:*.example.test:s3cret",
            &endpoint("fe.example.test", &relay),
        ],
    );
    peers::wait_frontend_ready(&fe, port);
    let rec = Recorder::start(port);
    let be = backend(
        rec.port(),
        &[kite("http", "rk.example.test", origin.port(), SECRET)],
        &["--fe_certname=fe.example.test", &ca_certs(pki())],
    );
    live(&be, "http:rk.example.test");
    fe.wait_for(&peers::fe_kite_live("http", "rk.example.test"), T);
    let page = get(port, "rk.example.test", "/");
    assert_eq!((page.status, page.body_str().as_str()), (200, INDEX_BODY));
    let caps = connect_then_tls(&rec, "fe.example.test");
    assert_no_cleartext(&caps, &["rk.example.test"]);
}
