//! Tests of the harness itself, using only real peers (curl, sh, Debian pagekite.py): the
//! origin's routes, the echo server, `Proc`'s capture, waits and cleanup, and a
//! pagekite.py FE + BE pair relaying to the origin (the reference behaviour rkite must
//! match). If these fail, fix the harness before trusting any rkite test.

use crate::origin::{
    self, CLOSE_BODY, EchoServer, HALFCLOSE_BODY, INDEX_BODY, Origin, check_pattern,
    check_pattern_file, pattern_byte,
};
use crate::peers;
use crate::util::{
    self, Proc, RawResponse, curl, curl_to_file, free_port, http_request, http_request_half_close,
    require_peer, temp_dir, wait_port,
};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

fn sum(data: &[u8]) -> u64 {
    data.iter().map(|&b| u64::from(b)).sum()
}

#[test]
fn util_basics() {
    let a = free_port();
    assert_ne!(a, 0);
    let d1 = temp_dir("basics");
    let d2 = temp_dir("basics");
    assert!(d1.is_dir() && d2.is_dir());
    assert_ne!(d1, d2, "temp_dir must be unique per call");
    let o = Origin::start();
    wait_port(o.addr(), T);
    assert!(require_peer("sh"), "sh is on PATH");
    let _ = std::fs::remove_dir_all(d1);
    let _ = std::fs::remove_dir_all(d2);
}

#[test]
fn pattern_checkers_find_first_mismatch() {
    let mut v: Vec<u8> = (0..300_000u64).map(pattern_byte).collect();
    check_pattern(&v).expect("pattern_byte and fill_pattern agree");
    let mut w = vec![0u8; 1000];
    origin::fill_pattern(123_457, &mut w);
    origin::check_pattern_at(123_457, &w).expect("fill at an odd offset");
    v[200_001] ^= 0x55;
    let err = check_pattern(&v).expect_err("a flipped byte is found");
    assert!(err.contains("offset 200001"), "{err}");
    // A shifted stream (one byte lost) is caught right at the loss.
    let mut lost: Vec<u8> = (0..5000u64).map(pattern_byte).collect();
    lost.remove(4096);
    let err = check_pattern(&lost).expect_err("a lost byte is found");
    assert!(err.contains("offset 4096"), "{err}");
}

#[test]
fn origin_routes_via_curl() {
    let o = Origin::start();
    let base = format!("http://127.0.0.1:{}", o.port());

    let r = curl(&[&format!("{base}/")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(r.body_str(), INDEX_BODY);

    let r = curl(&["-H", "X-Test: one", &format!("{base}/echo?q=1")]);
    assert_eq!(r.status, 200);
    let head = r.body_str();
    assert!(head.starts_with("GET /echo?q=1 HTTP/1.1\r\n"), "{head:?}");
    assert!(head.contains("\r\nX-Test: one\r\n"), "{head:?}");
    assert!(
        head.ends_with("\r\n\r\n"),
        "echo returns the head through the blank line"
    );

    let dl = curl_to_file(&[&format!("{base}/bytes/5000000")]);
    assert_eq!(dl.status, 200);
    assert_eq!(dl.header("content-length"), Some("5000000"));
    assert_eq!(check_pattern_file(&dl.path), Ok(5_000_000));
    let r = curl(&[&format!("{base}/bytes/70000")]);
    assert_eq!(r.body.len(), 70_000);
    check_pattern(&r.body).expect("in-memory /bytes body");

    // A 2 MB upload (curl may send Expect: 100-continue; the origin answers it).
    let dir = temp_dir("upload");
    let file = dir.join("up.bin");
    let data: Vec<u8> = (0..2_000_000u64).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &data).expect("write upload file");
    let r = curl(&[
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{base}/upload"),
    ]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body_str(),
        format!("len={} sum={}", data.len(), sum(&data))
    );
    let _ = std::fs::remove_dir_all(dir);

    let r = curl(&[&format!("{base}/close")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.body_str(), CLOSE_BODY);

    let r = curl(&[&format!("{base}/nope")]);
    assert_eq!(r.status, 404);

    let reqs = o.requests();
    assert_eq!(reqs.len(), 7, "{reqs:?}");
    assert!(reqs[1].contains("X-Test: one"));
}

#[test]
fn origin_keepalive_and_raw_routes() {
    let o = Origin::start();
    // Two pipelined requests on one connection; the second asks to close.
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
                POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
    let out = http_request(o.addr(), raw, T);
    let first = RawResponse::parse(&out);
    assert_eq!(first.status, 200);
    let body = first.body_str();
    assert!(body.starts_with(INDEX_BODY), "{body:?}");
    let second = RawResponse::parse(&first.body[INDEX_BODY.len()..]);
    assert_eq!(second.status, 200);
    assert_eq!(second.header("connection"), Some("close"));
    let echoed = second.body_str();
    assert!(echoed.starts_with("POST /echo HTTP/1.1\r\n"), "{echoed:?}");
    assert!(!echoed.contains("abc"), "echo returns the head only");
    assert_eq!(o.requests().len(), 2);

    // HTTP/1.0 without keep-alive: the origin closes after the reply.
    let out = http_request(o.addr(), b"GET /close HTTP/1.0\r\n\r\n", T);
    let r = RawResponse::parse(&out);
    assert!(out.starts_with(b"HTTP/1.0 200 OK\r\n"));
    assert_eq!(r.body_str(), CLOSE_BODY);

    let out = http_request(o.addr(), b"GET /missing HTTP/1.0\r\n\r\n", T);
    assert_eq!(RawResponse::parse(&out).status, 404);

    // Expect: 100-continue gets the interim reply before the body is sent.
    let mut s = TcpStream::connect(o.addr()).expect("connect origin");
    s.set_read_timeout(Some(T)).expect("set read timeout");
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
    )
    .expect("write head");
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).expect("read 100 Continue");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"\x01\x02").expect("write body");
    s.shutdown(Shutdown::Write).expect("shutdown write");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("read final reply");
    let r = RawResponse::parse(&rest);
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "len=2 sum=3");
}

#[test]
fn origin_halfclose_counts_bytes_after_head() {
    let o = Origin::start();
    let extra = b"0123456789-extra-bytes-after-the-head";
    let mut raw = b"GET /halfclose HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    raw.extend_from_slice(extra);
    let out = http_request_half_close(o.addr(), &raw, T);
    let r = RawResponse::parse(&out);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.body_str(), HALFCLOSE_BODY);
    assert_eq!(o.halfclose_bytes(T), extra.len());

    // Bytes sent after the response arrived also count, up to the client's EOF.
    let mut s = TcpStream::connect(o.addr()).expect("connect origin");
    s.set_read_timeout(Some(T)).expect("set read timeout");
    s.write_all(b"GET /halfclose HTTP/1.1\r\nHost: x\r\n\r\nab")
        .expect("write request");
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .expect("read until the origin's EOF");
    assert!(got.ends_with(HALFCLOSE_BODY.as_bytes()));
    s.write_all(b"cdef")
        .expect("write after the origin's half-close");
    s.shutdown(Shutdown::Write).expect("shutdown write");
    assert_eq!(o.halfclose_bytes(T), 6);
}

#[test]
fn echo_server_echoes_and_half_closes() {
    let e = EchoServer::start();
    let data: Vec<u8> = (0..200_000u64).map(pattern_byte).collect();
    let out = http_request_half_close(e.addr(), &data, T);
    assert_eq!(out.len(), data.len());
    check_pattern(&out).expect("echoed bytes");
    assert_eq!(e.connections(), 1);
    util::wait_until("echo server counts its finished connection", T, || {
        e.finished() == 1
    });
    assert_eq!(e.bytes_echoed(), 200_000);
}

#[test]
#[should_panic(expected = "timed out after")]
fn proc_wait_for_times_out_with_clear_panic() {
    let p = Proc::start("sh-hi", "sh", &["-c", "echo hi; exec sleep 5"], &[]);
    p.wait_for("hi", T);
    p.wait_for("never printed", Duration::from_millis(300));
}

#[test]
fn proc_wait_for_fails_fast_when_process_exits() {
    let started = Instant::now();
    let res = std::panic::catch_unwind(|| {
        let p = Proc::start("sh-exit", "sh", &["-c", "echo last words; exit 3"], &[]);
        p.wait_for("never printed", T);
    });
    let msg = res.expect_err("wait_for must panic when the process exits");
    let msg = msg
        .downcast_ref::<String>()
        .cloned()
        .expect("panic message is a String");
    assert!(msg.contains("exited"), "{msg}");
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert!(
        msg.contains("last words"),
        "the log is in the message: {msg}"
    );
    assert!(msg.contains("sh-exit"), "the process is named: {msg}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not wait for the timeout"
    );
}

#[test]
fn proc_captures_stdout_and_stderr() {
    let script = "echo out-line; echo err-line >&2; for i in 1 2 3; do echo tick $i; done; \
                  printf 'no newline at end'";
    let p = Proc::start("sh-both", "sh", &["-c", script], &[]);
    assert_eq!(p.wait_for("out-", T), "out-line");
    assert_eq!(p.wait_for("err-", T), "err-line");
    let ticks = p.wait_for_count("tick", 3, T);
    assert_eq!(ticks, ["tick 1", "tick 2", "tick 3"]);
    p.wait_for("no newline", T);
    let status = p.wait_exit(T).expect("sh exits");
    assert!(status.success());
    assert!(p.contains("err-line") && p.contains("out-line"));
    assert_eq!(p.count("tick"), 3);
    assert_eq!(p.lines().len(), 6, "{:?}", p.lines());
}

#[test]
fn proc_signal_and_drop_kill() {
    // A process that ignores SIGTERM is SIGKILLed by Drop after the 2 s grace.
    let p = Proc::start(
        "sh-stubborn",
        "sh",
        &[
            "-c",
            "trap 'echo got-usr1' USR1; trap '' TERM; echo ready; \
                 while :; do sleep 0.05; done",
        ],
        &[],
    );
    p.wait_for("ready", T);
    p.signal(libc::SIGUSR1);
    p.wait_for("got-usr1", T);
    let pid = libc::pid_t::try_from(p.pid()).expect("pid fits");
    let started = Instant::now();
    drop(p);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "SIGTERM was ignored, so Drop waited: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "then SIGKILL: {took:?}");
    // SAFETY: kill(pid, 0) only checks for existence.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "the process was reaped");

    let p = Proc::start("sh-kill", "sh", &["-c", "echo up; exec sleep 30"], &[]);
    p.wait_for("up", T);
    let status = p.kill();
    assert!(!status.success());
    assert!(p.wait_exit(Duration::ZERO).is_some());
}

/// The reference behaviour: pagekite.py FE + pagekite.py BE + Origin, fetched with curl.
#[test]
fn pagekite_pair_relays_to_origin() {
    if !require_peer(peers::PAGEKITE) {
        return;
    }
    let o = Origin::start();
    let fe_port = free_port();
    let t0 = Instant::now();
    let fe = peers::pagekite_frontend(fe_port, &["--domain=http:foo.test:s3cret"]);
    peers::wait_frontend_ready(&fe, fe_port);
    let t_fe = t0.elapsed();
    let kite = peers::kite("http", "foo.test", o.port(), "s3cret");
    let be = peers::pagekite_backend(fe_port, &[&kite], &[]);
    peers::wait_kite_up(&be, "http", "foo.test");
    fe.wait_for(&peers::fe_kite_live("http", "foo.test"), T);
    let t_ready = t0.elapsed();
    eprintln!("TIMING pagekite.py FE listening after {t_fe:?}; kite up after {t_ready:?}");

    let url = format!("http://127.0.0.1:{fe_port}");
    let r = curl(&["-H", "Host: foo.test", &format!("{url}/")]);
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(r.body_str(), INDEX_BODY);
    be.wait_for("GET=/; on_port=", T);

    let r = curl(&[
        "-H",
        "Host: foo.test",
        "-H",
        "X-Forwarded-For: 6.6.6.6",
        &format!("{url}/echo"),
    ]);
    assert_eq!(r.status, 200);
    let head = r.body_str();
    assert!(
        head.contains("\r\nX-Forwarded-For: 127.0.0.1\r\n"),
        "{head:?}"
    );
    assert!(
        head.contains("\r\nX-Old-X-Forwarded-For: 6.6.6.6\r\n"),
        "{head:?}"
    );
    assert!(
        head.contains(&format!("\r\nX-PageKite-Port: {fe_port}\r\n")),
        "{head:?}"
    );

    let t1 = Instant::now();
    let dl = curl_to_file(&["-H", "Host: foo.test", &format!("{url}/bytes/16777216")]);
    let t_dl = t1.elapsed();
    assert_eq!(dl.status, 200);
    assert_eq!(check_pattern_file(&dl.path), Ok(16_777_216));
    eprintln!(
        "TIMING 16 MiB through pagekite.py pair: {t_dl:?} ({:.1} MiB/s)",
        16.0 / t_dl.as_secs_f64()
    );

    let r = curl(&["-H", "Host: nosuch.test", &format!("{url}/")]);
    assert_eq!(r.status, 503);
    assert!(r.body_str().contains("Sorry! (fe)"), "{}", r.body_str());
    assert!(
        r.body_str().contains("<b>nosuch.test</b>"),
        "{}",
        r.body_str()
    );
    eprintln!("TIMING pagekite pair test total {:?}", t0.elapsed());
}
