//! The public side of a frontend that speaks TLS: an `https` kite is passed through
//! untouched to a real `openssl s_server` (the visitor sees the site's certificate, and
//! mutual TLS works end to end); a `--tls_endpoint` terminates TLS (wildcards too, also
//! after a public `CONNECT NAME:443`) and the origin sees `X-Forwarded-Proto: https`; an
//! https kite whose server is down answers with exactly the 7-byte alert; and bad
//! ClientHellos (garbage, an SNI over 255 bytes, one trickled in and stopped, a handshake
//! never finished) are each closed within a bound with one logged reason while other
//! visitors are served. The tunnels here are plain: `tunnel.rs` covers TLS tunnels.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use super::{
    ALERT, CLOSE_BOUND, assert_one_reason, client_hello, crafted_client_hello, endpoint,
    read_to_close,
};
use crate::certs::{Leaf, OPENSSL, SServer, pki, s_client};
use crate::fixture::{T, backend, frontend, get, kite, live};
use crate::origin::{INDEX_BODY, Origin};
use crate::util::{self, CurlResult, Proc, free_port, local};

const SECRET: &str = "s3cret";

/// `curl --cacert <CA> --resolve NAME:PORT:127.0.0.1 https://NAME:PORT/PATH EXTRA...`.
fn https(port: u16, name: &str, path: &str, extra: &[&str]) -> Result<CurlResult, String> {
    let resolve = format!("{name}:{port}:127.0.0.1");
    let url = format!("https://{name}:{port}{path}");
    let mut args = vec!["--cacert", pki().ca_cert_str(), "--resolve", &resolve];
    args.extend_from_slice(extra);
    args.push(&url);
    util::try_curl(&args)
}

/// A frontend for `*.example.test` (http and https kites) with `extra` flags, and a plain
/// rkite backend serving `kites`; waits until every kite is live at both ends.
fn relay(extra: &[&str], kites: &[(&str, &str, u16)]) -> (u16, Proc, Proc) {
    let port = free_port();
    let fe = frontend(&[port], &["http,https:*.example.test:s3cret"], extra);
    let specs: Vec<String> = kites
        .iter()
        .map(|(proto, name, local)| kite(proto, name, *local, SECRET))
        .collect();
    let be = backend(port, &specs, &[]);
    for (proto, name, _) in kites {
        live(&be, &format!("{proto}:{name}"));
        live(&fe, &format!("{proto}:{name}"));
    }
    (port, fe, be)
}

fn relay_leaf() -> Leaf {
    pki().leaf(&["fe.example.test"])
}

#[test]
fn https_kites_are_passed_through_untouched() {
    if !util::require_peer(OPENSSL) {
        return;
    }
    let site = SServer::start(&pki().leaf(&["site.example.test"]), &[]);
    let relay_cert = endpoint("fe.example.test", &relay_leaf());
    let (port, _fe, _be) = relay(
        &[&relay_cert],
        &[("https", "site.example.test", site.port())],
    );

    let page = https(port, "site.example.test", "/", &[]).expect("HTTPS through the relay");
    assert_eq!(page.status, 200);
    let body = page.body_str();
    let banner = format!("s_server -accept 127.0.0.1:{}", site.port());
    assert!(body.contains(&banner), "s_server itself answered: {body}");
    assert!(body.contains("no client certificate available"), "{body}");

    // The certificate the visitor sees is the site's, not the relay's.
    let check = s_client(
        &format!("127.0.0.1:{port}"),
        &[
            "-servername",
            "site.example.test",
            "-CAfile",
            pki().ca_cert_str(),
            "-verify_return_error",
            "-verify_hostname",
            "site.example.test",
        ],
    );
    assert!(check.ok, "{}", check.output);
    assert!(
        check
            .output
            .contains("Peer certificate: CN = site.example.test"),
        "{}",
        check.output
    );
}

#[test]
fn mutual_tls_works_end_to_end_through_an_https_kite() {
    if !util::require_peer(OPENSSL) {
        return;
    }
    let ca = pki().ca_cert_str();
    let site = SServer::start(
        &pki().leaf(&["mtls.example.test"]),
        &["-Verify", "1", "-verify_return_error", "-CAfile", ca],
    );
    let (port, _fe, _be) = relay(&[], &[("https", "mtls.example.test", site.port())]);
    let visitor = pki().client("visitor-1");
    let page = https(
        port,
        "mtls.example.test",
        "/",
        &["--cert", visitor.cert_str(), "--key", visitor.key_str()],
    )
    .expect("a visitor with a client certificate gets through");
    let body = page.body_str();
    assert!(body.contains("Client certificate"), "{body}");
    assert!(body.contains("Subject: CN=visitor-1"), "{body}");
    let refused = https(port, "mtls.example.test", "/", &[]);
    assert!(
        refused.is_err(),
        "no client certificate, no page: {refused:?}"
    );
}

#[test]
fn tls_endpoints_terminate_and_mark_requests_as_https() {
    if !util::require_peer(OPENSSL) {
        return;
    }
    let origin = Origin::start();
    let app = endpoint("app.example.test", &pki().leaf(&["app.example.test"]));
    let wild = endpoint("*.wild.example.test", &pki().leaf(&["*.wild.example.test"]));
    let (port, _fe, _be) = relay(
        &[&app, &wild],
        &[
            ("http", "app.example.test", origin.port()),
            ("http", "a.wild.example.test", origin.port()),
        ],
    );
    for name in ["app.example.test", "a.wild.example.test"] {
        let echo = https(port, name, "/echo", &[]).expect("HTTPS terminated at the frontend");
        assert_eq!(echo.status, 200);
        let head = echo.body_str();
        assert!(head.starts_with("GET /echo HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nX-Forwarded-Proto: https\r\n"), "{head}");
        assert!(!head.contains("X-Forwarded-Proto: http\r\n"), "{head}");
        assert!(
            head.contains(&format!("\r\nHost: {name}:{port}\r\n")),
            "{head}"
        );
        assert_eq!(
            https(port, name, "/", &[]).expect("page").body_str(),
            INDEX_BODY
        );
    }
    let plain = get(port, "app.example.test", "/echo").body_str();
    assert!(plain.contains("X-Forwarded-Proto: http\r\n"), "{plain}");

    // A public CONNECT app.example.test:443: the TLS after it is app.example.test's,
    // whatever the SNI says.
    let check = s_client(
        "app.example.test:443",
        &[
            "-proxy",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "nosuch.example.test",
            "-CAfile",
            pki().ca_cert_str(),
            "-verify_return_error",
            "-verify_hostname",
            "app.example.test",
        ],
    );
    assert!(check.ok, "{}", check.output);
    assert!(
        check.output.contains("CN = app.example.test"),
        "{}",
        check.output
    );
}

#[test]
fn an_https_kite_whose_server_is_down_answers_with_the_alert() {
    if !util::require_peer(OPENSSL) {
        return;
    }
    let dead = free_port();
    let (port, _fe, be) = relay(&[], &[("https", "down.example.test", dead)]);
    let hello = client_hello(Some("down.example.test"));
    let reply = util::http_request(local(port), &hello, T);
    assert_eq!(reply, ALERT, "exactly the 7-byte alert, then EOF");
    be.wait_for("local server unavailable", T);
    let check = s_client(
        &format!("127.0.0.1:{port}"),
        &["-servername", "down.example.test"],
    );
    assert!(!check.ok);
    assert!(
        check.output.contains("alert access denied"),
        "{}",
        check.output
    );
}

/// A frontend with a wildcard endpoint and an http kite behind it, for the bad-input
/// tests; `normal` checks that plain and HTTPS visitors are served.
struct Victim {
    port: u16,
    fe: Proc,
    _be: Proc,
    _origin: Origin,
}

impl Victim {
    fn start() -> Victim {
        let origin = Origin::start();
        let wild = endpoint("*.example.test", &pki().leaf(&["*.example.test"]));
        let (port, fe, be) = relay(&[&wild], &[("http", "app.example.test", origin.port())]);
        Victim {
            port,
            fe,
            _be: be,
            _origin: origin,
        }
    }

    fn normal(&self) {
        assert_eq!(
            get(self.port, "app.example.test", "/").body_str(),
            INDEX_BODY
        );
        let page = https(self.port, "app.example.test", "/", &[]).expect("HTTPS meanwhile");
        assert_eq!(page.body_str(), INDEX_BODY);
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(local(self.port)).expect("connect");
        s.set_write_timeout(Some(T)).expect("timeout");
        s
    }
}

/// Checks that `s` is closed within `CLOSE_BOUND` with nothing, or a TLS alert, said.
fn closed_with_at_most_an_alert(s: &mut TcpStream, what: &str) {
    let got = read_to_close(s, CLOSE_BOUND)
        .unwrap_or_else(|got| panic!("{what}: still open after {CLOSE_BOUND:?}; got {got:02x?}"));
    assert!(
        got.is_empty() || got == ALERT,
        "{what}: nothing or the alert, not {got:02x?}"
    );
}

#[test]
fn malformed_client_hellos_are_closed_with_one_reason() {
    if !util::require_peer(OPENSSL) {
        return;
    }
    let v = Victim::start();
    let mut junk = vec![0x16, 0x03, 0x01, 0x00, 0x2c, 0x01, 0x00, 0x00, 0x28];
    junk.extend([0xff; 40]);
    let mut text = vec![0x16, 0x03, 0x01];
    text.extend_from_slice(b"garbage, not a ClientHello at all\r\n\r\n");
    let long_name: Vec<String> = (0..5).map(|i| format!("{i}{}", "a".repeat(58))).collect();
    let long_name = format!("{}.invalid", long_name.join("."));
    assert!(long_name.len() > 255);
    let cases = [
        ("a ClientHello with a garbage body", junk),
        ("a text record after 16 03 01", text),
        (
            "an SNI over 255 bytes",
            crafted_client_hello(long_name.as_bytes()),
        ),
    ];
    let mut open = Vec::new();
    for (what, bytes) in cases {
        let mut s = v.connect();
        s.write_all(&bytes).expect("send");
        open.push((what, s));
    }
    v.normal();
    for (what, mut s) in open {
        closed_with_at_most_an_alert(&mut s, what);
        let peer = s.local_addr().expect("addr");
        assert_one_reason(&v.fe, peer, what);
    }
    v.normal();
    assert!(v.fe.exit_status().is_none());
}

#[test]
fn stalled_tls_clients_are_closed_in_bounded_time() {
    if !util::require_peer(OPENSSL) {
        return;
    }
    let v = Victim::start();
    let hello = client_hello(Some("app.example.test"));
    assert!(hello.len() > 100);

    // The first 100 bytes of a hello, one every 20 ms, then silence.
    let mut slow = v.connect();
    let mut writer = slow.try_clone().expect("clone");
    let head = hello[..100].to_vec();
    let trickle = thread::spawn(move || {
        for b in head {
            if writer.write_all(&[b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(20)); // the slowness under test
        }
    });
    // A whole hello for a name with an endpoint, then silence in the middle of the
    // handshake the frontend started.
    let mut stuck = v.connect();
    stuck.write_all(&hello).expect("send the hello");
    let mut first = [0u8; 5];
    stuck.set_read_timeout(Some(T)).expect("timeout");
    stuck.read_exact(&mut first).expect("the frontend answers");
    assert_eq!(
        first[..3],
        [0x16, 0x03, 0x03],
        "a ServerHello record: it terminates"
    );
    let since = Instant::now();

    v.normal();
    trickle.join().expect("trickle thread");
    let trickled = Instant::now();
    v.normal();

    let got = read_to_close(&mut slow, CLOSE_BOUND)
        .unwrap_or_else(|g| panic!("a trickled half hello is still open: {g:02x?}"));
    assert!(got.is_empty() || got == ALERT, "{got:02x?}");
    eprintln!(
        "trickled half hello closed {:?} after its last byte",
        trickled.elapsed()
    );
    let left = CLOSE_BOUND.saturating_sub(since.elapsed());
    read_to_close(&mut stuck, left.max(Duration::from_secs(1)))
        .unwrap_or_else(|_| panic!("a stalled handshake is still open after {CLOSE_BOUND:?}"));
    eprintln!(
        "stalled handshake closed {:?} after the hello",
        since.elapsed()
    );
    assert_one_reason(
        &v.fe,
        slow.local_addr().expect("addr"),
        "a trickled half hello",
    );
    assert_one_reason(
        &v.fe,
        stuck.local_addr().expect("addr"),
        "a stalled handshake",
    );
    v.normal();
}
