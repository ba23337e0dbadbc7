//! Hostile peers against rkite: a hand-made backend that opens tunnels it
//! can never authenticate and floods them with in-band kite rounds (unsigned
//! and forged `X-PageKite:` lines), an authenticated one that floods rounds
//! too, peers whose version and kite names carry CR and ANSI escapes, and a
//! fake frontend that answers a backend with a pile of escaped rejections.
//! The frontend must keep its memory and its log bounded, close the
//! unauthenticated tunnel within its short deadline, keep only a tunnel's
//! newest session ids, log peer strings escaped, and keep serving a
//! legitimate backend's visitors all along. Limits are the constants below;
//! each test fails on rkite before the handshake caps and log throttles.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rkite::proto::frame;
use rkite::proto::handshake::{self, KiteAnswer, KiteLine};

use crate::fixture::{T, backend, get, kite, live};
use crate::origin::{INDEX_BODY, Origin};
use crate::util::{self, Proc, free_port, local};

/// How long the flood runs.
const FLOOD: Duration = Duration::from_secs(5);
/// At most this many in-band rounds are written (the time bound ends it first).
const MAX_ROUNDS: u64 = 100_000_000;
/// In-band rounds of the probe write on each tunnel (more than a frontend
/// should allow a tunnel without a kite), and how long it may take to close.
const PROBE_ROUNDS: u64 = 8;
const PROBE_WAIT: Duration = Duration::from_millis(200);
/// In-band rounds per write.
const BATCH: u64 = 256;
/// The frontend's resident memory may grow by at most this much during the flood.
const RSS_GROWTH_LIMIT_KIB: u64 = 4 * 1024;
/// The frontend's log (at the default level) may grow by at most this much.
const LOG_LIMIT_BYTES: usize = 64 * 1024;
/// A visitor of another tenant gets its page within this, during and after the flood.
const LATENCY_LIMIT: Duration = Duration::from_millis(1500);
/// The frontend's deadline for a tunnel without an authenticated kite
/// (`frontend::UNAUTHENTICATED_TIMEOUT`), plus slack for a loaded machine.
const UNAUTH_DEADLINE: Duration = Duration::from_secs(5);
const SLACK: Duration = Duration::from_secs(2);

/// A frontend at the default log level (what an operator runs), stderr captured.
fn frontend_info(port: u16) -> Proc {
    let fe = util::rkite_env(
        &[
            "--isfrontend",
            "--host=127.0.0.1",
            &format!("--ports={port}"),
            "--protos=http,https,raw,websocket",
            "--domain=http:*.example.test:s3cret",
        ],
        &[("RUST_LOG", "info")],
    );
    fe.wait_for(&format!("listening on 127.0.0.1:{port}"), T);
    fe
}

/// VmRSS of a process in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Bytes of log a process has written so far (lines plus newlines).
fn log_bytes(p: &Proc) -> usize {
    p.lines().iter().map(|l| l.len() + 1).sum()
}

/// A kite line the frontend must challenge (no token, no signature).
fn unsigned(domain: &str) -> KiteLine {
    KiteLine {
        proto: "http".into(),
        domain: domain.into(),
        srand: "0123456789abcdef".into(),
        token: String::new(),
        sign: String::new(),
    }
}

/// A kite line signed with the wrong secret (the frontend rejects it).
fn forged(domain: &str) -> KiteLine {
    let mut line = unsigned(domain);
    line.token = "t0000000000000000000000000000000000".into();
    line.sign = handshake::sign("not-the-secret", &line.payload(), "1234abcd");
    line
}

/// Opens a tunnel that asks for an unsigned kite, so the frontend answers
/// with a challenge and keeps the tunnel for the in-band answer. Returns the
/// socket after the reply head.
fn open_unauthenticated(port: u16, domain: &str) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(local(port))?;
    s.write_all(handshake::build_request("hostile", None, &[unsigned(domain)]).as_bytes())?;
    let mut buf = Vec::new();
    let deadline = Instant::now() + T;
    let mut chunk = [0u8; 4096];
    s.set_read_timeout(Some(T))?;
    let end = loop {
        if let Some(end) = frame::find(&buf, b"\r\n\r\n") {
            break end + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 || Instant::now() > deadline {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let (_, headers) = handshake::split_head(&buf[..end]).expect("text");
    let reply = handshake::parse_reply(headers);
    assert!(
        matches!(reply.answers.first(), Some(KiteAnswer::SignThis { .. })),
        "expected a challenge: {reply:?}"
    );
    Ok(s)
}

/// One in-band round: a NOOP chunk with an unsigned kite (answered with a
/// fresh challenge and, on the old frontend, a fresh session id) and
/// `forged` kites with bad signatures (each one a rejection log line).
fn flood_round(out: &mut Vec<u8>, round: u64, forged_kites: usize) {
    let mut kites = vec![unsigned(&format!("u{round}.example.test"))];
    kites.extend((0..forged_kites).map(|i| forged(&format!("f{round}-{i}.example.test"))));
    let lines = handshake::inband_request_lines("hostile", &kites);
    let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    frame::encode(out, &lines, b"\r\n!");
}

/// True once the peer closed (EOF or reset) within `timeout`; reads and
/// discards whatever comes before.
fn closed_within(s: &mut TcpStream, timeout: Duration) -> bool {
    crate::meter::closed_within(s, timeout, &mut 0)
}

/// The attacker: for `FLOOD`, opens unauthenticated tunnels and writes
/// in-band rounds into each until the frontend closes it, reading (and
/// dropping) the answers so the frontend never sees a slow reader. Returns
/// (rounds sent, tunnels opened).
fn flood(port: u16, stop: Arc<AtomicBool>, rounds: Arc<AtomicU64>) -> u64 {
    // Built once: the attacker must not be slower than the frontend.
    let mut batch = Vec::new();
    for r in 0..BATCH {
        // Mostly cheap unsigned rounds (each a session id on the old
        // frontend); every 16th also forges kites (rejection log lines).
        flood_round(&mut batch, r, if r % 16 == 0 { 8 } else { 0 });
    }
    let batch = &batch;
    let mut probe = Vec::new();
    for r in 0..PROBE_ROUNDS {
        flood_round(&mut probe, r, if r == 0 { 8 } else { 0 });
    }
    let probe = &probe;
    let mut tunnels = 0;
    let started = Instant::now();
    while started.elapsed() < FLOOD
        && !stop.load(Ordering::Relaxed)
        && rounds.load(Ordering::Relaxed) < MAX_ROUNDS
    {
        let Ok(mut s) = open_unauthenticated(port, "flood.example.test") else {
            continue;
        };
        tunnels += 1;
        let Ok(mut reader) = s.try_clone() else {
            continue;
        };
        let closed = Arc::new(AtomicBool::new(false));
        let drain = {
            let closed = closed.clone();
            thread::spawn(move || {
                let mut sink = [0u8; 64 * 1024];
                let _ = reader.set_read_timeout(Some(FLOOD + T));
                while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
                closed.store(true, Ordering::Relaxed);
            })
        };
        let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
        // A probe of a few rounds first: a frontend that closes the tunnel
        // for them is not worth a bulk write (which only fills the kernel's
        // buffers and starves the other tests of CPU).
        rounds.fetch_add(PROBE_ROUNDS, Ordering::Relaxed);
        if s.write_all(probe).is_ok() {
            let probed = Instant::now();
            while !closed.load(Ordering::Relaxed) && probed.elapsed() < PROBE_WAIT {
                thread::sleep(Duration::from_millis(2));
            }
        }
        while started.elapsed() < FLOOD
            && !closed.load(Ordering::Relaxed)
            && rounds.load(Ordering::Relaxed) < MAX_ROUNDS
        {
            rounds.fetch_add(BATCH, Ordering::Relaxed);
            if s.write_all(batch).is_err() {
                break;
            }
        }
        let _ = s.shutdown(std::net::Shutdown::Both);
        let _ = drain.join();
    }
    tunnels
}

#[test]
fn an_in_band_flood_keeps_memory_log_and_other_tenants_within_limits() {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend_info(port);
    let good = backend(
        port,
        &[kite("http", "good.example.test", origin.port(), "s3cret")],
        &[],
    );
    live(&good, "http:good.example.test");
    assert_eq!(get(port, "good.example.test", "/").body_str(), INDEX_BODY);
    let rss_before = rss_kib(fe.pid());
    let log_before = log_bytes(&fe);

    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let attacker = {
        let (stop, rounds) = (stop.clone(), rounds.clone());
        thread::spawn(move || flood(port, stop, rounds))
    };
    let (mut rss_max, mut slowest, mut fetches) = (rss_before, Duration::ZERO, 0);
    let started = Instant::now();
    while started.elapsed() < FLOOD + SLACK && !attacker.is_finished() {
        let t0 = Instant::now();
        let page = get(port, "good.example.test", "/");
        slowest = slowest.max(t0.elapsed());
        fetches += 1;
        assert_eq!(page.body_str(), INDEX_BODY, "another tenant's visitor");
        rss_max = rss_max.max(rss_kib(fe.pid()));
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let tunnels = attacker.join().expect("attacker thread");
    let rounds = rounds.load(Ordering::Relaxed);
    rss_max = rss_max.max(rss_kib(fe.pid()));

    let t0 = Instant::now();
    assert_eq!(get(port, "good.example.test", "/").body_str(), INDEX_BODY);
    let after = t0.elapsed();
    let logged = log_bytes(&fe) - log_before;
    eprintln!(
        "flood: {rounds} rounds over {tunnels} tunnels; frontend RSS {rss_before} KiB -> max \
         {rss_max} KiB; log +{logged} bytes; {fetches} visitor fetches, slowest {slowest:?}, \
         after {after:?}"
    );
    assert!(rounds > 1000, "the flood ran ({rounds} rounds)");
    assert!(
        rss_max - rss_before <= RSS_GROWTH_LIMIT_KIB,
        "frontend RSS grew by {} KiB (limit {RSS_GROWTH_LIMIT_KIB} KiB)",
        rss_max - rss_before
    );
    assert!(
        logged <= LOG_LIMIT_BYTES,
        "the flood wrote {logged} bytes of log (limit {LOG_LIMIT_BYTES})"
    );
    assert!(fetches >= 3, "the visitor was served during the flood");
    assert!(
        slowest <= LATENCY_LIMIT && after <= LATENCY_LIMIT,
        "visitor latency {slowest:?} during, {after:?} after (limit {LATENCY_LIMIT:?})"
    );
    assert!(fe.exit_status().is_none(), "the frontend is still running");
}

#[test]
fn an_unauthenticated_tunnel_is_closed_within_its_deadline() {
    let port = free_port();
    let fe = frontend_info(port);
    let started = Instant::now();
    let mut s = open_unauthenticated(port, "slow.example.test").expect("tunnel");
    // One in-band round, then only PINGs: keepalive traffic buys no time.
    let mut out = Vec::new();
    flood_round(&mut out, 0, 0);
    s.write_all(&out).expect("one round");
    let mut closed = false;
    for _ in 0..40 {
        out.clear();
        frame::encode_ping(&mut out, b"1.0");
        if s.write_all(&out).is_err() || closed_within(&mut s, Duration::from_millis(500)) {
            closed = true;
            break;
        }
    }
    let waited = started.elapsed();
    assert!(closed, "the tunnel is still open after {waited:?}");
    assert!(
        waited <= UNAUTH_DEADLINE + SLACK,
        "closed after {waited:?} (deadline {UNAUTH_DEADLINE:?})"
    );
    assert!(fe.exit_status().is_none(), "the frontend is still running");
}

#[test]
fn peer_strings_with_control_bytes_are_logged_escaped() {
    let port = free_port();
    let fe = frontend_info(port);
    let mut line = forged("x.example.test");
    line.domain = "evil\u{1b}[31mred.example.test".into();
    let request = format!(
        "CONNECT PageKite:1 HTTP/1.0\r\nX-PageKite-Version: 1.0\rFAKE\u{1b}[2J\r\n\
         X-PageKite: {}\r\n\r\n",
        line.value()
    );
    let mut s = TcpStream::connect(local(port)).expect("connect");
    s.write_all(request.as_bytes()).expect("send");
    assert!(closed_within(&mut s, T), "the rejected tunnel is closed");
    fe.wait_for("red.example.test rejected", T);
    // The version is in the line after the rejection: wait for it too (the
    // log reader may not have reached it yet).
    fe.wait_for(r"1.0\rFAKE\x1b[2J", T);
    assert_no_raw_control_bytes(&fe);
    assert!(
        fe.contains(r"evil\x1b[31mred.example.test"),
        "the name, escaped"
    );
    assert!(fe.contains(r"1.0\rFAKE\x1b[2J"), "the version, escaped");
}

#[test]
fn a_hostile_frontends_rejections_reach_the_backend_log_escaped_and_throttled() {
    const ANSWERS: usize = 50;
    let listener = std::net::TcpListener::bind(local(0)).expect("bind the fake frontend");
    let fe_port = listener.local_addr().expect("addr").port();
    let be = backend(
        fe_port,
        &[kite("http", "a.example.test", free_port(), "s3cret")],
        &[],
    );
    let (mut s, _) = listener.accept().expect("the backend dials");
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    s.set_read_timeout(Some(T)).expect("timeout");
    while frame::find(&head, b"\r\n\r\n").is_none() {
        let n = s.read(&mut chunk).expect("the tunnel request");
        assert!(n > 0, "EOF before the tunnel request");
        head.extend_from_slice(&chunk[..n]);
    }
    let mut reply = String::from(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-PageKite-Features: AddKites\r\n",
    );
    for i in 0..ANSWERS {
        let what = format!("http:k{i}\u{1b}[31m.example.test:0123");
        reply.push_str(&format!(
            "X-PageKite-Invalid: {what}\r\nX-PageKite-Invalid-Why: {what};sig\u{1b}[2J\rnature\r\n"
        ));
    }
    reply.push_str("\r\n");
    s.write_all(reply.as_bytes()).expect("send the reply");
    be.wait_for("accepted none of our kites", T);
    let rejected = be.count("rejected by");
    assert!(
        (1..=5).contains(&rejected),
        "{rejected} rejection lines for {ANSWERS} rejections (at most 5 per 10 s)"
    );
    assert_no_raw_control_bytes(&be);
    assert!(
        be.contains(r"k0\x1b[31m.example.test rejected by"),
        "the name, escaped"
    );
    assert!(be.contains(r"sig\x1b[2J\rnature"), "the reason, escaped");
}

#[test]
fn an_authenticated_tunnel_may_not_flood_in_band_rounds_either() {
    let port = free_port();
    let fe = frontend_info(port);
    let (mut tunnel, answers) = crate::robust::fake_backend(port, "auth.example.test", "s3cret");
    assert!(
        matches!(answers.as_slice(), [KiteAnswer::Ok { .. }]),
        "{answers:?}"
    );
    // More rounds at once than any backend sends (16 is the burst).
    let mut out = Vec::new();
    for round in 0..40 {
        flood_round(&mut out, round, 0);
    }
    tunnel.write_all(&out).expect("send the rounds");
    assert!(
        closed_within(&mut tunnel, Duration::from_secs(5)),
        "the flooding tunnel is closed"
    );
    fe.wait_for("in-band kite requests faster than", T);
    fe.wait_for("kite http:auth.example.test is down", T);
}

/// The frontend's in-band answers in `buf`, as long as they are whole.
fn answers_in(buf: &[u8]) -> Vec<handshake::TunnelReply> {
    let mut replies = Vec::new();
    let mut at = 0;
    while let Ok(Some((f, used))) = frame::decode(buf.get(at..).unwrap_or_default()) {
        replies.push(handshake::parse_reply(f.headers()));
        at += used;
    }
    replies
}

#[test]
fn a_tunnel_keeps_only_its_newest_session_ids() {
    let port = free_port();
    let _fe = frontend_info(port);
    let domain = "sess.example.test";
    let (mut first, reply) = crate::robust::fake_backend_replacing(port, domain, "s3cret", None);
    assert!(matches!(reply.answers.as_slice(), [KiteAnswer::Ok { .. }]));
    let oldest = reply.session_id.expect("a session id");
    // Eight more rounds (within the in-band burst), eight more session ids.
    let mut out = Vec::new();
    for round in 0..8 {
        flood_round(&mut out, round, 0);
    }
    first.write_all(&out).expect("send the rounds");
    let mut buf = Vec::new();
    crate::robust::read_until(&mut first, &mut buf, "eight in-band answers", |b| {
        answers_in(b).len() >= 8
    });
    let newest = answers_in(&buf)
        .pop()
        .and_then(|r| r.session_id)
        .expect("the newest session id");

    // The oldest id no longer names the tunnel: the kite is a duplicate.
    let (_second, reply) =
        crate::robust::fake_backend_replacing(port, domain, "s3cret", Some(&oldest));
    assert!(
        matches!(reply.answers.as_slice(), [KiteAnswer::Duplicate { .. }]),
        "a forgotten session id replaced the tunnel: {reply:?}"
    );
    // The newest one still does.
    let (_third, reply) =
        crate::robust::fake_backend_replacing(port, domain, "s3cret", Some(&newest));
    assert!(
        matches!(reply.answers.as_slice(), [KiteAnswer::Ok { .. }]),
        "the newest session id replaces the tunnel: {reply:?}"
    );
    assert!(
        closed_within(&mut first, T),
        "the replaced tunnel is closed"
    );
}

/// No line `p` logged holds a raw ESC or CR: peer text was escaped.
fn assert_no_raw_control_bytes(p: &Proc) {
    for l in p.lines() {
        assert!(
            !l.contains('\u{1b}') && !l.contains('\r'),
            "a raw control byte reached the log: {l:?}"
        );
    }
}
