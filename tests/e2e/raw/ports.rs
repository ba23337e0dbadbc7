//! Raw kites reached without a client program: numeric `--rawports` listeners carry an
//! "iperf-like" bulk stream intact each way (64 MiB up into a checking sink, 32 MiB down
//! from a source) to the one kite that claims the port; when two kites claim it, the
//! one whose domain this client IP last asked for over HTTP gets the connection, and a
//! client that asked for neither is closed (§6.6). `CONNECT NAME:PORT` with
//! `--rawports=virtual` to a name or port nobody serves gets exactly
//! `HTTP/1.0 503 Unavailable` and a close; a served one works in any letter case, and
//! one whose local server is down gets its 200 and then the end of the stream. Debian's
//! pagekite.py, as the backend of a raw kite, works behind an rkite frontend.

use std::net::{Shutdown, TcpStream};
use std::time::Instant;

use super::{
    AT_ONCE, BULK_TIME, CONNECT_503, Incoming, SECRET, Server, assert_closed_silently,
    connect_head, connect_raw, echo_once, fed, feed, half_close, live, raw_frontend,
};
use crate::fixture::{T, backend, get, kite};
use crate::origin::{EchoServer, Origin};
use crate::peers::{self, PAGEKITE, PK_READY};
use crate::util::{self, free_port, local};

const MIB: u64 = 1024 * 1024;

/// A plain TCP connection to a frontend's raw port, with generous timeouts.
fn dial(port: u16) -> TcpStream {
    let s = TcpStream::connect_timeout(&local(port), T).expect("connect to the raw port");
    s.set_read_timeout(Some(BULK_TIME)).expect("read timeout");
    s.set_write_timeout(Some(BULK_TIME)).expect("write timeout");
    s
}

#[test]
fn dedicated_raw_ports_carry_bulk_streams_intact() {
    const UP: u64 = 64 * MIB;
    const DOWN: u64 = 32 * MIB;
    let (sink, source) = (Server::sink(), Server::source(DOWN));
    let (rp_up, rp_down) = (free_port(), free_port());
    let (port, fe) = raw_frontend(&[&format!("--rawports={rp_up},{rp_down}")]);
    // Probed before any kite exists: these connections are just closed.
    util::wait_port(local(rp_up), T);
    util::wait_port(local(rp_down), T);
    let up_id = format!("raw-{rp_up}:up.example.test");
    let down_id = format!("raw-{rp_down}:down.example.test");
    let be = backend(
        port,
        &[
            kite(
                &format!("raw-{rp_up}"),
                "up.example.test",
                sink.port(),
                SECRET,
            ),
            kite(
                &format!("raw-{rp_down}"),
                "down.example.test",
                source.port(),
                SECRET,
            ),
        ],
        &[],
    );
    for id in [&up_id, &down_id] {
        live(&be, id);
        live(&fe, id);
    }

    let s = dial(rp_up);
    let mut reply = Incoming::spawn("raw port up", s.try_clone().expect("clone"));
    let start = Instant::now();
    let feeding = feed(s, 0, UP, half_close);
    fed(&feeding, BULK_TIME);
    let answer = reply.until_eof(T);
    eprintln!("{UP} bytes up through a raw port in {:?}", start.elapsed());
    assert_eq!(String::from_utf8_lossy(&answer), format!("ok {UP}\n"));
    assert_eq!(sink.notes(), [format!("ok {UP}")]);
    assert_eq!(sink.accepted(), 1);

    let s = dial(rp_down);
    let mut down = Incoming::spawn("raw port down", s.try_clone().expect("clone"));
    let start = Instant::now();
    down.expect_pattern(0, DOWN, BULK_TIME);
    down.expect_eof(T);
    eprintln!(
        "{DOWN} bytes down through a raw port in {:?}",
        start.elapsed()
    );
    s.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(source.wait_notes(1, T), [format!("done {DOWN}")]);
    assert_eq!(source.accepted(), 1);
}

#[test]
fn a_shared_raw_port_follows_the_clients_last_http_domain() {
    let origin = Origin::start();
    let (echo_a, echo_b) = (EchoServer::start(), EchoServer::start());
    let rp = free_port();
    let (port, fe) = raw_frontend(&[&format!("--rawports={rp}")]);
    util::wait_port(local(rp), T);
    let raw = format!("raw-{rp}");
    let be = backend(
        port,
        &[
            kite("http", "a.example.test", origin.port(), SECRET),
            kite("http", "b.example.test", origin.port(), SECRET),
            kite(&raw, "a.example.test", echo_a.port(), SECRET),
            kite(&raw, "b.example.test", echo_b.port(), SECRET),
        ],
        &[],
    );
    for id in [
        "http:a.example.test".to_string(),
        "http:b.example.test".to_string(),
        format!("{raw}:a.example.test"),
        format!("{raw}:b.example.test"),
    ] {
        live(&be, &id);
        live(&fe, &id);
    }

    // Two kites claim the port and this client has asked for neither: closed.
    assert_closed_silently(local(rp), b"", AT_ONCE);
    assert_eq!((echo_a.connections(), echo_b.connections()), (0, 0));

    assert_eq!(get(port, "a.example.test", "/").status, 200);
    let mut s = dial(rp);
    echo_once(&mut s, b"for a\n");
    assert_eq!((echo_a.connections(), echo_b.connections()), (1, 0));
    drop(s);

    assert_eq!(get(port, "b.example.test", "/").status, 200);
    let mut s = dial(rp);
    echo_once(&mut s, b"for b\n");
    assert_eq!((echo_a.connections(), echo_b.connections()), (1, 1));
}

#[test]
fn connect_to_names_or_ports_nobody_serves_gets_503_and_a_close() {
    let echo = EchoServer::start();
    let dead = free_port();
    let (port, fe) = raw_frontend(&["--rawports=virtual"]);
    let be = backend(
        port,
        &[
            kite("raw-22", "home.test", echo.port(), SECRET),
            kite("raw-2200", "down.example.test", dead, SECRET),
        ],
        &[],
    );
    for id in ["raw-22:home.test", "raw-2200:down.example.test"] {
        live(&be, id);
        live(&fe, id);
    }

    for target in [
        "nosuch.example.test:22",
        "home.test:23",
        "sub.home.test:22",
        "down.example.test:22",
    ] {
        let (s, head) = connect_head(port, target);
        assert_eq!(
            String::from_utf8_lossy(&head),
            String::from_utf8_lossy(CONNECT_503),
            "reply to CONNECT {target}"
        );
        Incoming::spawn(target, s).expect_eof(T);
    }
    assert_eq!(echo.connections(), 0);

    // The served name works, in any letter case.
    let mut s = connect_raw(port, "HOME.test:22");
    echo_once(&mut s, b"ping\n");
    assert_eq!(echo.connections(), 1);

    // A raw kite whose local server is down: the 200 comes first, then the stream ends.
    let s = connect_raw(port, "down.example.test:2200");
    let rest = Incoming::spawn("down kite", s).until_eof(T);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

#[test]
fn pagekite_py_raw_kite_behind_an_rkite_frontend() {
    if !util::require_peer(PAGEKITE) {
        return;
    }
    const N: u64 = MIB;
    let echo = EchoServer::start();
    let (port, fe) = raw_frontend(&["--rawports=virtual"]);
    let spec = peers::kite("raw-22", "home.test", echo.port(), SECRET);
    let _be = peers::pagekite_backend(port, &[&spec], &[]);
    fe.wait_for("kite raw-22:home.test is live", PK_READY);

    let mut s = connect_raw(port, "home.test:22");
    echo_once(&mut s, b"hello from pagekite.py\n");
    // More, then a half-close: every byte comes back before the EOF.
    let mut back = Incoming::spawn("pagekite.py echo", s.try_clone().expect("clone"));
    let feeding = feed(s, 0, N, half_close);
    back.expect_pattern(0, N, BULK_TIME);
    fed(&feeding, T);
    back.expect_eof(T);
    util::wait_until("the echo server sees the EOF", T, || echo.finished() == 1);
    assert_eq!(echo.bytes_echoed(), 23 + N);
}
