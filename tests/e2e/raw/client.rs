//! SSH-like sessions over a raw kite (`ssh:home.test`, i.e. `raw-22`) to an echo server,
//! driven the way `ssh -o ProxyCommand=...` would: through `rkite --connect` with stdin
//! and stdout piped, and through socat's HTTP-proxy client (`PROXY:` address). Each
//! session types a line and sees it echoed while everything is still open, then pushes
//! 20 MiB through and reads the echo back concurrently, closes stdin (a half-close: the
//! echo still in flight must all arrive), and the client must exit 0 once the relay side
//! ends. `rkite --connect` also speaks TLS to a `--tls_endpoint` (certificate checked: a
//! relay certificate from another CA makes it fail before any stream opens), hands its
//! stdin EOF on so that a server answering only after EOF is still heard, and exits with
//! an error when the relay answers 503.

use std::io::Write;
use std::process::Command;

use super::{BULK_TIME, Piped, SECRET, Server, fed, feed, live, raw_frontend};
use crate::certs::{OPENSSL, other_pki, pki};
use crate::fixture::{T, backend, kite};
use crate::origin::EchoServer;
use crate::util::{self, Proc};

const MIB: u64 = 1024 * 1024;

/// Bytes pushed each way in a session.
const SESSION: u64 = 20 * MIB;

/// What the user "types" first.
const LINE: &[u8] = b"uname -a\n";

/// An echo server behind a raw kite `ssh:home.test` (= `raw-22`), relayed by an rkite
/// pair whose frontend has `--rawports=virtual` plus `fe_extra`.
fn echo_relay(fe_extra: &[&str]) -> (EchoServer, u16, Proc, Proc) {
    let echo = EchoServer::start();
    let mut extra = vec!["--rawports=virtual"];
    extra.extend_from_slice(fe_extra);
    let (port, fe) = raw_frontend(&extra);
    let be = backend(port, &[kite("ssh", "home.test", echo.port(), SECRET)], &[]);
    live(&be, "raw-22:home.test");
    live(&fe, "raw-22:home.test");
    (echo, port, fe, be)
}

/// An interactive line, then `bulk` bytes each way at once, then EOF on stdin: all the
/// echo arrives, then EOF on stdout, and the client exits 0. The echo server must have
/// seen one connection, every byte, and the EOF.
fn session(client: &mut Piped, echo: &EchoServer, bulk: u64) {
    let mut stdin = client.stdin();
    stdin.write_all(LINE).expect("type a line");
    stdin.flush().expect("flush stdin");
    assert_eq!(
        client.out.take(LINE.len(), T),
        LINE,
        "the typed line comes back while stdin is still open"
    );
    let feeding = feed(stdin, 0, bulk, drop);
    client.out.expect_pattern(0, bulk, BULK_TIME);
    fed(&feeding, T);
    client.out.expect_eof(T);
    let status = client.wait_exit(T);
    assert!(
        status.success(),
        "the client exits 0 after both directions ended: {status}\n{}",
        client.stderr_text()
    );
    util::wait_until("the echo server sees the client's EOF", T, || {
        echo.finished() == 1
    });
    assert_eq!(echo.connections(), 1);
    assert_eq!(echo.bytes_echoed(), LINE.len() as u64 + bulk);
}

#[test]
fn ssh_like_session_through_rkite_connect() {
    let (echo, port, _fe, _be) = echo_relay(&[]);
    let relay = format!("--connect=127.0.0.1:{port}");
    let mut client = Piped::rkite(&[&relay, "home.test:22"]);
    session(&mut client, &echo, SESSION);
}

#[test]
fn ssh_like_session_through_socat_http_proxy_client() {
    if !util::require_peer("socat") {
        return;
    }
    let (echo, port, _fe, _be) = echo_relay(&[]);
    let mut cmd = Command::new("socat");
    // -t: after stdin's EOF, wait this long for the relay side to end (default 0.5 s).
    cmd.args([
        "-t",
        "30",
        "-",
        &format!("PROXY:127.0.0.1:home.test:22,proxyport={port}"),
    ]);
    let mut client = Piped::spawn("socat", cmd);
    session(&mut client, &echo, SESSION);
}

#[test]
fn rkite_connect_passes_stdin_eof_on_and_still_hears_the_reply() {
    let sink = Server::sink();
    let (port, fe) = raw_frontend(&["--rawports=virtual"]);
    let be = backend(
        port,
        &[kite("raw-22", "sink.example.test", sink.port(), SECRET)],
        &[],
    );
    live(&be, "raw-22:sink.example.test");
    live(&fe, "raw-22:sink.example.test");
    let relay = format!("--connect=127.0.0.1:{port}");
    let mut client = Piped::rkite(&[&relay, "sink.example.test:22"]);
    let feeding = feed(client.stdin(), 0, MIB, drop);
    fed(&feeding, T);
    // The sink answers only once it has read EOF, so the answer proves that stdin's EOF
    // went through as a half-close and that the way back stayed open.
    let reply = client.out.until_eof(T);
    assert_eq!(String::from_utf8_lossy(&reply), format!("ok {MIB}\n"));
    let status = client.wait_exit(T);
    assert!(status.success(), "{status}\n{}", client.stderr_text());
    assert_eq!(sink.notes(), [format!("ok {MIB}")]);
}

#[test]
fn rkite_connect_over_tls_checks_the_relay_certificate() {
    if !util::require_peer(OPENSSL) {
        return;
    }
    let leaf = pki().leaf(&["fe.example.test"]);
    let endpoint = format!("--tls_endpoint=fe.example.test:{}", leaf.pem_str());
    let (echo, port, _fe, _be) = echo_relay(&[&endpoint, "--tls_default=fe.example.test"]);
    let relay = format!("--connect=127.0.0.1:{port}");
    let name = "--fe_certname=fe.example.test";

    let ca = format!("--ca_certs={}", pki().ca_cert_str());
    let mut client = Piped::rkite(&[&relay, name, &ca, "home.test:22"]);
    session(&mut client, &echo, 4 * MIB);

    // A relay whose certificate another CA signed: no stream, an error exit. Stdin stays
    // open, so the exit is the failed check and not the end of input.
    let wrong_ca = format!("--ca_certs={}", other_pki().ca_cert_str());
    let mut refused = Piped::rkite(&[&relay, name, &wrong_ca, "home.test:22"]);
    let status = refused.wait_exit(T);
    assert!(
        !status.success(),
        "an unverifiable relay must fail the client\n{}",
        refused.stderr_text()
    );
    refused.out.expect_eof(T);
    assert_eq!(echo.connections(), 1, "no stream reached the echo server");

    // --fe_nocertcheck: TLS without verification (no SNI: the relay's --tls_default).
    let mut unchecked = Piped::rkite(&[&relay, "--fe_nocertcheck", "home.test:22"]);
    let mut stdin = unchecked.stdin();
    stdin.write_all(LINE).expect("type a line");
    drop(stdin);
    assert_eq!(unchecked.out.until_eof(T), LINE);
    let status = unchecked.wait_exit(T);
    assert!(status.success(), "{status}\n{}", unchecked.stderr_text());
    assert_eq!(echo.connections(), 2);
}

#[test]
fn rkite_connect_fails_when_the_relay_answers_503() {
    let (port, _fe) = raw_frontend(&["--rawports=virtual"]);
    let relay = format!("--connect=127.0.0.1:{port}");
    let mut client = Piped::rkite(&[&relay, "nosuch.example.test:22"]);
    let status = client.wait_exit(T);
    assert!(
        !status.success(),
        "a 503 from the relay is an error exit\n{}",
        client.stderr_text()
    );
    client.out.expect_eof(T);
}
