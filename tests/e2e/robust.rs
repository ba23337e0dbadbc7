//! Bad input gets a clear log line and a clean close of that one connection:
//! garbage, oversized or silent public connections, and a tunnel peer that
//! sends malformed chunks or bad signatures. Nothing else is disturbed. The
//! misbehaving backend here is hand-made with rkite's own protocol code.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rkite::proto::frame;
use rkite::proto::handshake::{self, KiteAnswer, KiteLine, TunnelReply};

use crate::fixture::{T, backend, frontend, get, kite, live};
use crate::origin::{INDEX_BODY, Origin};
use crate::util::{self, free_port, local};

/// Reads from `s` into `buf` until `done(buf)` says enough, or panics.
pub(crate) fn read_until(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    what: &str,
    done: impl Fn(&[u8]) -> bool,
) {
    let deadline = Instant::now() + T;
    let mut chunk = [0u8; 4096];
    while !done(buf) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        match s.read(&mut chunk) {
            Ok(0) => panic!(
                "EOF while waiting for {what}: {:?}",
                String::from_utf8_lossy(buf)
            ),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read failed waiting for {what}: {e}"),
        }
    }
}

/// True once the peer closed (EOF or reset) within the deadline.
fn closed_within(s: &mut TcpStream, timeout: Duration) -> bool {
    s.set_read_timeout(Some(timeout)).expect("timeout");
    let mut sink = [0u8; 4096];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// A backend made by hand: handshake (with `X-PageKite-Replace` if given),
/// in-band answer to the challenge. Returns the socket and the frontend's
/// in-band answer (kite results and the session id).
pub(crate) fn fake_backend_replacing(
    port: u16,
    domain: &str,
    secret: &str,
    replace: Option<&str>,
) -> (TcpStream, TunnelReply) {
    let mut s = TcpStream::connect(local(port)).expect("connect");
    let mut line = KiteLine {
        proto: "http".into(),
        domain: domain.into(),
        srand: "0123456789abcdef".into(),
        token: String::new(),
        sign: String::new(),
    };
    line.sign = handshake::sign(secret, &line.payload(), "1234abcd");
    s.write_all(handshake::build_request("fake", replace, std::slice::from_ref(&line)).as_bytes())
        .expect("send request");
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, "the reply head", |b| {
        frame::find(b, b"\r\n\r\n").is_some()
    });
    let end = frame::find(&buf, b"\r\n\r\n").expect("head") + 4;
    let (_, headers) = handshake::split_head(&buf[..end]).expect("text");
    let reply = handshake::parse_reply(headers);
    let Some(KiteAnswer::SignThis { challenge, .. }) = reply.answers.first() else {
        panic!("expected SignThis: {reply:?}");
    };
    line.token = challenge.clone();
    line.sign = handshake::sign(secret, &line.payload(), "5678abcd");
    let lines = handshake::inband_request_lines("fake", std::slice::from_ref(&line));
    let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    let mut out = Vec::new();
    frame::encode(&mut out, &lines, b"\r\n!");
    s.write_all(&out).expect("send signed kite");
    buf.drain(..end);
    read_until(&mut s, &mut buf, "the in-band answer", |b| {
        matches!(frame::decode(b), Ok(Some(_)))
    });
    let (f, _) = frame::decode(&buf).expect("frame").expect("whole");
    (s, handshake::parse_reply(f.headers()))
}

/// Registers one http kite over a hand-made tunnel (challenge answered in
/// band); returns the socket and the frontend's answers. Shared with `faults`.
pub(crate) fn fake_backend(port: u16, domain: &str, secret: &str) -> (TcpStream, Vec<KiteAnswer>) {
    let (s, reply) = fake_backend_replacing(port, domain, secret, None);
    (s, reply.answers)
}

#[test]
fn garbage_huge_and_silent_public_connections_are_closed_with_a_reason() {
    let port = free_port();
    let fe = frontend(&[port], &["http:x.test:s3cret"], &[]);

    let mut ssh = TcpStream::connect(local(port)).expect("connect");
    ssh.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").expect("send");
    assert!(closed_within(&mut ssh, T));
    fe.wait_for("closed: not an HTTP request", T);

    let mut huge = TcpStream::connect(local(port)).expect("connect");
    let mut head = b"GET / HTTP/1.1\r\nHost: x.test\r\n".to_vec();
    while head.len() < 20 * 1024 {
        head.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let _ = huge.write_all(&head);
    assert!(closed_within(&mut huge, T));
    fe.wait_for("16384", T);

    let started = Instant::now();
    let mut silent = TcpStream::connect(local(port)).expect("connect");
    assert!(
        closed_within(&mut silent, Duration::from_secs(15)),
        "a silent client is closed"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9),
        "closed after {waited:?}, before the 10 s grace"
    );
    fe.wait_for("closed: nothing recognisable (0 bytes) within 10s", T);
    assert!(fe.exit_status().is_none(), "the frontend is still running");
}

#[test]
fn a_tunnel_sending_bad_chunks_is_closed_alone() {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &["http:*.example.test:s3cret"], &[]);
    let good = backend(
        port,
        &[kite("http", "good.example.test", origin.port(), "s3cret")],
        &[],
    );
    live(&good, "http:good.example.test");

    for (i, bad) in [
        &b"zz\r\n"[..],
        b"ffffff\r\n",
        b"8\r\nSID: 1\r\n",
        b"a\r\nPROTO: x\r\n\r\n",
    ]
    .iter()
    .enumerate()
    {
        let domain = format!("evil{i}.example.test");
        let (mut tunnel, answers) = fake_backend(port, &domain, "s3cret");
        assert!(
            matches!(answers.as_slice(), [KiteAnswer::Ok { .. }]),
            "{answers:?}"
        );
        live(&fe, &format!("http:{domain}"));
        // A visitor whose stream rides the evil tunnel.
        let mut visitor = TcpStream::connect(local(port)).expect("connect");
        visitor
            .write_all(format!("GET / HTTP/1.1\r\nHost: {domain}\r\n\r\n").as_bytes())
            .expect("send");
        let mut buf = Vec::new();
        read_until(&mut tunnel, &mut buf, "the stream's first chunk", |b| {
            util::find_subslice(b, b"GET / HTTP/1.1").is_some()
        });
        tunnel.write_all(bad).expect("send a bad chunk");
        assert!(
            closed_within(&mut tunnel, T),
            "the frontend closes the bad tunnel"
        );
        assert!(closed_within(&mut visitor, T), "its stream gets EOF");
        fe.wait_for_count("protocol error", i + 1, T);
        fe.wait_for(&format!("kite http:{domain} is down"), T);
    }
    assert_eq!(get(port, "good.example.test", "/").body_str(), INDEX_BODY);
    assert!(fe.exit_status().is_none());
}

#[test]
fn a_bad_signature_gets_invalid_and_nothing_else_changes() {
    let port = free_port();
    let fe = frontend(&[port], &["http:*.example.test:s3cret"], &[]);
    let (mut tunnel, answers) = fake_backend(port, "forged.example.test", "not-the-secret");
    match answers.as_slice() {
        [KiteAnswer::Invalid { why, .. }] => assert_eq!(why, "signature"),
        other => panic!("expected Invalid: {other:?}"),
    }
    assert!(
        closed_within(&mut tunnel, T),
        "a tunnel with no kites is closed"
    );
    fe.wait_for("kite http:forged.example.test rejected: signature", T);
    assert_eq!(get(port, "forged.example.test", "/").status, 503);
}

/// Total CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat.rsplit_once(") ").expect("comm").1.split(' ').collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

#[test]
fn a_frozen_backend_is_found_dead_and_comes_back() {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &["http:frozen.test:s3cret"], &["--keepalive=5"]);
    let be = backend(
        port,
        &[kite("http", "frozen.test", origin.port(), "s3cret")],
        &[],
    );
    live(&be, "http:frozen.test");
    live(&fe, "http:frozen.test");
    be.signal(libc::SIGSTOP);
    // 5 s of silence, a PING, 5 s of grace: dead well within 20 s.
    fe.wait_for("no answer to PING", Duration::from_secs(20));
    fe.wait_for("kite http:frozen.test is down", T);
    be.signal(libc::SIGCONT);
    fe.wait_for_count("kite http:frozen.test is live", 2, T);
    be.wait_for_count("kite http:frozen.test is live", 2, T);
    assert_eq!(get(port, "frozen.test", "/").body_str(), INDEX_BODY);
}

#[test]
fn a_frozen_frontend_is_found_dead_by_the_backend() {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &["http:ice.test:s3cret"], &[]);
    let be = backend(
        port,
        &[kite("http", "ice.test", origin.port(), "s3cret")],
        &["--keepalive=5"],
    );
    live(&be, "http:ice.test");
    fe.signal(libc::SIGSTOP);
    be.wait_for("no answer to PING", Duration::from_secs(20));
    be.wait_for("kite http:ice.test is down", T);
    fe.signal(libc::SIGCONT);
    be.wait_for_count("kite http:ice.test is live", 2, Duration::from_secs(40));
}

#[test]
fn out_of_descriptors_pauses_accepting_without_spinning() {
    let origin = Origin::start();
    let port = free_port();
    let fe = util::Proc::start(
        "rkite-fe-lowfd",
        "sh",
        &[
            "-c",
            &format!(
                "ulimit -n 24 && exec {} --isfrontend --host=127.0.0.1 --ports={port} --domain=http:fd.test:s3cret",
                env!("CARGO_BIN_EXE_rkite")
            ),
        ],
        &[("RUST_LOG", "debug")],
    );
    fe.wait_for(&format!("listening on 127.0.0.1:{port}"), T);
    let be = backend(
        port,
        &[kite("http", "fd.test", origin.port(), "s3cret")],
        &[],
    );
    live(&be, "http:fd.test");
    let hogs: Vec<TcpStream> = (0..40)
        .filter_map(|_| TcpStream::connect(local(port)).ok())
        .collect();
    fe.wait_for("out of file descriptors", T);
    let before = cpu_seconds(fe.pid());
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(1) {
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(50));
    }
    let used = cpu_seconds(fe.pid()) - before;
    assert!(
        used < 0.5,
        "the frontend used {used:.2} s of CPU in 1 s while out of descriptors"
    );
    drop(hogs);
    let mut ok = false;
    util::wait_until(
        "a request succeeds after the descriptors come back",
        T,
        || {
            ok = util::try_curl(&["-H", "Host: fd.test", &format!("http://127.0.0.1:{port}/")])
                .is_ok_and(|r| r.status == 200);
            ok
        },
    );
    assert!(ok);
}

#[test]
fn replace_takes_over_a_half_open_tunnel_instead_of_duplicate() {
    let port = free_port();
    let fe = frontend(&[port], &["http:*.example.test:s3cret"], &[]);
    let (mut old, reply) = fake_backend_replacing(port, "phoenix.example.test", "s3cret", None);
    assert!(matches!(reply.answers.as_slice(), [KiteAnswer::Ok { .. }]));
    let session = reply.session_id.expect("a session id");
    // Without Replace, a second tunnel for the same kite is a duplicate.
    let (_, dup) = fake_backend(port, "phoenix.example.test", "s3cret");
    assert!(
        matches!(dup.as_slice(), [KiteAnswer::Duplicate { .. }]),
        "{dup:?}"
    );
    // With the id of the first, it replaces it at once.
    let (_new, took_over) =
        fake_backend_replacing(port, "phoenix.example.test", "s3cret", Some(&session));
    assert!(
        matches!(took_over.answers.as_slice(), [KiteAnswer::Ok { .. }]),
        "{took_over:?}"
    );
    assert!(closed_within(&mut old, T), "the replaced tunnel is closed");
    fe.wait_for("replaces tunnel", T);
}

#[test]
fn a_peer_that_never_reads_is_dropped_not_buffered() {
    let port = free_port();
    let fe = frontend(&[port], &["http:*.example.test:s3cret"], &[]);
    let (mut tunnel, answers) = fake_backend(port, "deaf.example.test", "s3cret");
    assert!(matches!(answers.as_slice(), [KiteAnswer::Ok { .. }]));
    let mut pings = Vec::new();
    for _ in 0..4096 {
        frame::encode_ping(&mut pings, b"1795303899.5038");
    }
    // Each PING asks for a PONG; never reading them must end the tunnel
    // well before all of this is sent (bounded: at most 64 MiB).
    tunnel.set_write_timeout(Some(T)).expect("timeout");
    let mut sent = 0usize;
    while sent < 64 * 1024 * 1024 {
        if tunnel.write_all(&pings).is_err() {
            break;
        }
        sent += pings.len();
    }
    fe.wait_for("peer does not read", T);
    fe.wait_for("kite http:deaf.example.test is down", T);
    assert!(fe.exit_status().is_none());
}

#[test]
fn tls_clients_get_the_access_denied_alert_until_tls_lands() {
    let port = free_port();
    let fe = frontend(&[port], &["http:x.test:s3cret"], &[]);
    let hello = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/transcripts/mitm5-nocertcheck.raw.log"
    ))
    .expect("capture");
    // The capture's first record from the backend is a ClientHello.
    let line = hello
        .lines()
        .find(|l| l.contains("#3 BE->FE RAW["))
        .expect("a ClientHello line");
    let quoted = line.split_once("] b").expect("literal").1;
    let literal = &quoted[1..quoted.len() - 1];
    let mut bytes = Vec::new();
    let mut rest = literal.as_bytes();
    while let Some((&c, tail)) = rest.split_first() {
        if c == b'\\' && tail.first() == Some(&b'x') {
            bytes.push(
                u8::from_str_radix(std::str::from_utf8(&tail[1..3]).expect("hex"), 16)
                    .expect("hex"),
            );
            rest = &tail[3..];
        } else if c == b'\\' {
            bytes.push(match tail[0] {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                other => other,
            });
            rest = &tail[1..];
        } else {
            bytes.push(c);
            rest = tail;
        }
    }
    assert_eq!(bytes[0], 0x16, "a TLS handshake record");
    let reply = util::http_request(local(port), &bytes, T);
    assert_eq!(reply, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31]);
    fe.wait_for("sent an alert", T);

    // And a real TLS client with SNI hears "access denied".
    if util::require_peer("openssl") {
        let out = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-servername",
                "x.test",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run openssl");
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success());
        assert!(text.contains("alert access denied"), "{text}");
        fe.wait_for("TLS for x.test", T);
    }
}
