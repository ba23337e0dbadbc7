//! Faults stay local and leak nothing: hundreds of vanishing visitors, resetting origins,
//! garbage connections and tunnels that send bad chunks leave both rkite processes with
//! the descriptors, streams, timers, buffers and memory they had before (checked with
//! /proc and the SIGUSR2 `stats:` line); a frozen kite holder is pinged and replaced by a
//! new backend; a backend is back within seconds of its frontend's restart; a killed
//! backend ends its visitors' streams at once; and SIGTERM stops gracefully: listeners
//! close at once, running streams may finish within `--stop_grace`, and a second
//! SIGTERM exits at once.
//!
//! The resetting origin and the bad-chunk tunnel are made here by hand (the latter with
//! rkite's own protocol code, as in `robust`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rkite::proto::handshake::KiteAnswer;

use crate::fixture::{T, backend, frontend, get, kite, live};
use crate::meter::{
    self, End, Stats, closed_within, connect_refused, fds, read_head, read_pattern, rss_kib,
    send_get, status_of,
};
use crate::origin::{HALFCLOSE_BODY, INDEX_BODY, Origin, check_pattern, fill_pattern};
use crate::robust::{fake_backend, read_until};
use crate::util::{self, Proc, find_subslice, free_port, local};

const SECRET: &str = "s3cret";
const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// A resetting origin

/// Body length a `ResetOrigin` announces, and how much of it it sends before the reset.
const RESET_ANNOUNCED: usize = 100_000;
const RESET_SENT: usize = 1000;

/// An origin that answers every request with a 200 head announcing `RESET_ANNOUNCED`
/// bytes, sends the first `RESET_SENT` of them, then resets the connection (SO_LINGER
/// {on, 0}). One connection at a time; stops on Drop.
struct ResetOrigin {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ResetOrigin {
    fn start() -> ResetOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the resetting origin");
        let addr = listener.local_addr().expect("local_addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                match conn {
                    Ok(s) => reset_after_partial_reply(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ResetOrigin {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }
}

fn reset_after_partial_reply(mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while find_subslice(&head, b"\r\n\r\n").is_none() && head.len() < 64 * 1024 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let mut reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {RESET_ANNOUNCED}\r\n\r\n"
    )
    .into_bytes();
    let at = reply.len();
    reply.resize(at + RESET_SENT, 0);
    fill_pattern(0, &mut reply[at..]);
    let _ = s.write_all(&reply);
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads one `linger` of the stated length from the pointer.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s); // close with linger 0: a reset
}

impl Drop for ResetOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Fault cycles and leak checks

/// What a process looks like from outside at one moment.
#[derive(Debug)]
struct Snapshot {
    fds: usize,
    rss_kib: u64,
    stats: Stats,
}

/// Waits (bounded by `timeout`) until `p` has no streams. Given the `idle` snapshot, also
/// until `timers <= conns*4+64` (timers of closed connections, such as an hour-long
/// `--stream_idle` one, may linger until their deadline or the engine's sweep, which
/// keeps them within that bound), at most 2 more descriptors and at most 4 KiB
/// more buffer than then. (`buffered` counts buffer capacity: an idle tunnel keeps its
/// base buffers, so "back to about 0" means back to the idle value.) Returns the last
/// snapshot and whether all held.
fn settle(p: &Proc, idle: Option<&Snapshot>, timeout: Duration) -> (Snapshot, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let stats = meter::stats(p);
        let snap = Snapshot {
            fds: fds(p.pid()),
            rss_kib: rss_kib(p.pid()),
            stats,
        };
        let ok = stats.streams == 0
            && idle.is_none_or(|i| {
                stats.timers <= stats.conns * 4 + 64
                    && snap.fds <= i.fds + 2
                    && stats.buffered <= i.stats.buffered + 4096
            });
        if ok || Instant::now() >= deadline {
            return (snap, ok);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[derive(Default, Debug)]
struct Tally {
    vanished: usize,
    resets: usize,
    /// Reset cycles in which the visitor got the partial response before the end.
    partial_replies: usize,
    garbage: usize,
    bad_tunnels: usize,
}

/// One fault, chosen by `i % 4`, against a frontend on `port` whose backend serves
/// `ok.leak.test` (the Origin) and `reset.leak.test` (the ResetOrigin).
fn fault_cycle(i: usize, port: u16, fe: &Proc, tally: &mut Tally) {
    match i % 4 {
        0 => {
            // A visitor that vanishes mid-download.
            let mut v = send_get(port, "ok.leak.test", "/bytes/50000000");
            let mut got = Vec::new();
            read_until(&mut v, &mut got, "the start of the download", |b| {
                b.len() >= 32 * 1024
            });
            assert!(got.starts_with(b"HTTP/1.1 200"), "cycle {i}");
            drop(v); // unread data: a reset
            tally.vanished += 1;
        }
        1 => {
            // An origin that resets mid-response: the visitor's stream just ends.
            let req = meter::get_request("reset.leak.test", "/", false);
            match util::raw_exchange(local(port), &req, false, T) {
                Ok(data) => {
                    assert!(
                        data.len() < RESET_ANNOUNCED,
                        "cycle {i}: {} bytes from an origin that sent {RESET_SENT}",
                        data.len()
                    );
                    if !data.is_empty() {
                        assert!(data.starts_with(b"HTTP/1.1 200"), "cycle {i}: {data:?}");
                        tally.partial_replies += 1;
                    }
                }
                Err(e) => assert!(
                    e.kind() != std::io::ErrorKind::TimedOut,
                    "cycle {i}: the visitor's stream did not end: {e}"
                ),
            }
            tally.resets += 1;
        }
        2 => {
            // A garbage public connection.
            let mut g = TcpStream::connect(local(port)).expect("connect");
            g.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").expect("send");
            let mut got = 0;
            assert!(
                closed_within(&mut g, T, &mut got),
                "cycle {i}: garbage closed"
            );
            tally.garbage += 1;
        }
        _ => {
            // A tunnel that sends a bad chunk while a visitor's stream rides it.
            let domain = format!("evil{i}.leak.test");
            let (mut tunnel, answers) = fake_backend(port, &domain, SECRET);
            assert!(
                matches!(answers.as_slice(), [KiteAnswer::Ok { .. }]),
                "cycle {i}: {answers:?}"
            );
            live(fe, &format!("http:{domain}"));
            let mut v = send_get(port, &domain, "/");
            let mut buf = Vec::new();
            read_until(&mut tunnel, &mut buf, "the stream's first chunk", |b| {
                find_subslice(b, b"GET / HTTP/1.1").is_some()
            });
            tunnel.write_all(b"zz\r\n").expect("send a bad chunk");
            let mut got = 0;
            assert!(
                closed_within(&mut tunnel, T, &mut got),
                "cycle {i}: bad tunnel closed"
            );
            assert!(
                closed_within(&mut v, T, &mut got),
                "cycle {i}: its stream ended"
            );
            tally.bad_tunnels += 1;
        }
    }
}

#[test]
fn hundreds_of_faults_leak_nothing() {
    const WARM_UP: usize = 20;
    const CYCLES: usize = 300;
    let origin = Origin::start();
    let reset = ResetOrigin::start();
    let port = free_port();
    // --keepalive=5: a tunnel gives back what a burst grew its buffers to at its next
    // keepalive check after a quiet spell; 5 s keeps that within the settling wait.
    let fe = frontend(
        &[port],
        &[&format!("http:*.leak.test:{SECRET}")],
        &["--keepalive=5"],
    );
    let be = backend(
        port,
        &[
            kite("http", "ok.leak.test", origin.port(), SECRET),
            kite("http", "reset.leak.test", reset.port(), SECRET),
        ],
        &["--keepalive=5"],
    );
    for name in ["http:ok.leak.test", "http:reset.leak.test"] {
        live(&fe, name);
        live(&be, name);
    }
    let mut tally = Tally::default();
    for i in 0..WARM_UP {
        fault_cycle(i, port, &fe, &mut tally);
    }
    let (fe0, ok_fe) = settle(&fe, None, Duration::from_secs(30));
    let (be0, ok_be) = settle(&be, None, Duration::from_secs(30));
    assert!(ok_fe && ok_be, "idle after warm-up: {fe0:?} {be0:?}");

    let started = Instant::now();
    for i in WARM_UP..WARM_UP + CYCLES {
        fault_cycle(i, port, &fe, &mut tally);
    }
    let ran = started.elapsed();
    let settling = Instant::now();
    eprintln!(
        "right after the faults: frontend {:?}, backend {:?}",
        meter::stats(&fe),
        meter::stats(&be)
    );
    let (fe1, ok_fe) = settle(&fe, Some(&fe0), Duration::from_secs(30));
    let (be1, ok_be) = settle(&be, Some(&be0), Duration::from_secs(30));
    eprintln!(
        "{CYCLES} fault cycles in {ran:?} ({tally:?}); settled in {:?}\n\
         frontend before {fe0:?}\n         after  {fe1:?}\n\
         backend  before {be0:?}\n         after  {be1:?}",
        settling.elapsed()
    );
    for (who, before, after, ok) in [
        ("frontend", &fe0, &fe1, ok_fe),
        ("backend", &be0, &be1, ok_be),
    ] {
        assert!(
            ok,
            "{who} did not settle: before {before:?}, after {after:?} \
             (want streams=0, timers<=conns*4+64, buffered<=before+4096, fds<=before+2)"
        );
        assert!(
            after.stats.conns <= before.stats.conns + 2,
            "{who} holds more sockets: before {before:?}, after {after:?}"
        );
        assert!(
            after.rss_kib < before.rss_kib + 4 * 1024,
            "{who} grew by {} KiB over {CYCLES} faults",
            after.rss_kib.saturating_sub(before.rss_kib)
        );
    }
    // And it all still works.
    assert_eq!(get(port, "ok.leak.test", "/").body_str(), INDEX_BODY);
    let big = util::http_request(
        local(port),
        &meter::get_request("ok.leak.test", "/bytes/3000000", true),
        T,
    );
    let big = util::RawResponse::parse(&big);
    assert_eq!(big.body.len(), 3_000_000);
    check_pattern(&big.body).expect("a download after the faults");
    assert!(fe.exit_status().is_none() && be.exit_status().is_none());
}

// ---------------------------------------------------------------------------------------
// Tunnels lost, frozen and replaced

#[test]
fn a_killed_backend_ends_its_streams_and_leaves_nothing_behind() {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &[&format!("http:gone.test:{SECRET}")], &[]);
    let before = fds(fe.pid());
    let be = backend(
        port,
        &[kite("http", "gone.test", origin.port(), SECRET)],
        &[],
    );
    live(&fe, "http:gone.test");
    live(&be, "http:gone.test");

    let size = 1024 * MIB;
    let mut v = send_get(port, "gone.test", &format!("/bytes/{size}"));
    let rest = match read_head(&mut v, T) {
        Ok((head, rest)) => {
            assert_eq!(status_of(&head), 200, "{head}");
            rest
        }
        Err((end, _)) => panic!("no response head: {end:?}"),
    };
    check_pattern(&rest).expect("the first body bytes");
    let (got, end) = read_pattern(
        &mut v,
        rest.len() as u64,
        4 * MIB,
        Instant::now() + T,
        1 << 16,
        |_| {},
    );
    assert!(matches!(end, End::Complete), "{end:?} after {got} bytes");

    be.kill();
    let killed = Instant::now();
    let (got, end) = read_pattern(
        &mut v,
        got,
        size,
        killed + Duration::from_secs(10),
        1 << 20,
        |_| {},
    );
    let ended = killed.elapsed();
    eprintln!("the visitor's stream ended {ended:?} after the kill ({end:?}, {got} bytes)");
    assert!(
        matches!(end, End::Eof | End::Error(_)),
        "the visitor's stream did not end after the backend died: {end:?} after {got} bytes"
    );
    assert!(
        ended < Duration::from_secs(5),
        "the stream took {ended:?} to end"
    );
    fe.wait_for("tunnel closed", T);
    fe.wait_for("kite http:gone.test is down", T);
    drop(v);
    util::wait_until(
        "the frontend's descriptors to return to their number",
        T,
        || fds(fe.pid()) <= before,
    );

    let be2 = backend(
        port,
        &[kite("http", "gone.test", origin.port(), SECRET)],
        &[],
    );
    live(&be2, "http:gone.test");
    fe.wait_for_count("kite http:gone.test is live", 2, T);
    assert_eq!(get(port, "gone.test", "/").body_str(), INDEX_BODY);
}

#[test]
fn a_new_backend_takes_over_from_a_frozen_holder() {
    let (origin1, origin2) = (Origin::start(), Origin::start());
    let port = free_port();
    // --keepalive=10: the ping grace is max(5 s, 10 s / 2) = 5 s; found dead by keepalive
    // alone it would take ~15 s.
    let fe = frontend(
        &[port],
        &[&format!("http:dup.test:{SECRET}")],
        &["--keepalive=10"],
    );
    let be1 = backend(
        port,
        &[kite("http", "dup.test", origin1.port(), SECRET)],
        &[],
    );
    live(&be1, "http:dup.test");
    live(&fe, "http:dup.test");
    assert_eq!(get(port, "dup.test", "/").body_str(), INDEX_BODY);
    assert_eq!(origin1.requests().len(), 1);

    be1.signal(libc::SIGSTOP);
    let frozen = Instant::now();
    let be2 = backend(
        port,
        &[kite("http", "dup.test", origin2.port(), SECRET)],
        &["--keepalive=5"],
    );
    be2.wait_for("duplicate", T);
    let dup = frozen.elapsed();
    fe.wait_for("kite http:dup.test is down", Duration::from_secs(30));
    let down = frozen.elapsed();
    be2.wait_for(
        &format!("kite http:dup.test is live on 127.0.0.1:{port}"),
        Duration::from_secs(30),
    );
    let up = frozen.elapsed();
    eprintln!(
        "after SIGSTOP: duplicate at {dup:?}, old holder down at {down:?}, new backend live at {up:?}"
    );
    assert!(
        down - dup < Duration::from_secs(10),
        "the frozen holder was declared dead {:?} after the duplicate claim",
        down - dup
    );
    for _ in 0..3 {
        assert_eq!(get(port, "dup.test", "/").body_str(), INDEX_BODY);
    }
    assert_eq!(
        origin2.requests().len(),
        3,
        "requests go to the new backend"
    );
    assert_eq!(origin1.requests().len(), 1);

    // The old holder wakes up, finds its tunnel gone and tries again: it must not take
    // the kite back from the live new holder.
    be1.signal(libc::SIGCONT);
    be1.wait_for("duplicate", T);
    assert_eq!(get(port, "dup.test", "/").body_str(), INDEX_BODY);
    be1.kill();
    assert_eq!(get(port, "dup.test", "/").body_str(), INDEX_BODY);
    assert_eq!(origin2.requests().len(), 5);
    assert_eq!(origin1.requests().len(), 1);
    assert!(!be2.contains("is down"), "the new holder kept its kite");
}

#[test]
fn a_backend_is_back_within_seconds_of_a_frontend_restart() {
    let origin = Origin::start();
    let port = free_port();
    let domains = [format!("http:back.test:{SECRET}")];
    let domains: Vec<&str> = domains.iter().map(String::as_str).collect();
    let fe = frontend(&[port], &domains, &[]);
    let be = backend(
        port,
        &[kite("http", "back.test", origin.port(), SECRET)],
        &[],
    );
    live(&be, "http:back.test");
    fe.kill();
    be.wait_for("kite http:back.test is down", T);
    be.wait_for("retrying in", T);
    // The frontend stays away for a while; the backend keeps trying (refused).
    std::thread::sleep(Duration::from_secs(5));
    let fe2 = frontend(&[port], &domains, &[]);
    let listening = Instant::now();
    be.wait_for_count("kite http:back.test is live", 2, T);
    let back = listening.elapsed();
    let delays: Vec<f64> = be
        .lines()
        .iter()
        .filter_map(|l| {
            l.split_once("retrying in ")?
                .1
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    eprintln!("tunnel back {back:?} after the frontend listened; retry delays {delays:?}");
    assert!(
        back < Duration::from_secs(4),
        "the tunnel came back {back:?} after the frontend"
    );
    // A refused frontend is not knocked on every second for ever: the
    // delays grow (1.5x a time, less up to 25 % jitter), and the outage is
    // said at WARN level once per change (lost, then refused), not per try.
    let (first, last) = (delays.first().copied(), delays.last().copied());
    assert!(
        delays.len() >= 3 && first <= Some(1.0) && last >= Some(2.5),
        "growing delays: {delays:?}"
    );
    // (Counted for the refusals alone: while the port is free another
    // test's frontend may take it for a moment and reject our kites.)
    let warned = be
        .lines()
        .iter()
        .filter(|l| l.contains(" WARN ") && l.contains("connection refused"))
        .count();
    assert!(warned <= 1, "{warned} WARN lines for the refusals");
    live(&fe2, "http:back.test");
    assert_eq!(get(port, "back.test", "/").body_str(), INDEX_BODY);
}

// ---------------------------------------------------------------------------------------
// Graceful stop

/// A frontend and backend for `domain`, both live.
pub(crate) fn pair(origin: &Origin, domain: &str, fe_extra: &[&str]) -> (u16, Proc, Proc) {
    let port = free_port();
    let fe = frontend(&[port], &[&format!("http:{domain}:{SECRET}")], fe_extra);
    let be = backend(port, &[kite("http", domain, origin.port(), SECRET)], &[]);
    live(&fe, &format!("http:{domain}"));
    live(&be, &format!("http:{domain}"));
    (port, fe, be)
}

#[test]
fn sigterm_closes_listeners_at_once_and_lets_a_download_finish() {
    const SIZE: u64 = 4 * MIB;
    const RATE: f64 = 3.0 * MIB as f64; // bytes per second: ~1.3 s for the download
    let origin = Origin::start();
    let (port, fe, _be) = pair(&origin, "bye.test", &[]);
    let progress = Arc::new(AtomicU64::new(0));
    let prog = progress.clone();
    let reader = std::thread::spawn(move || {
        let mut v = send_get(port, "bye.test", &format!("/bytes/{SIZE}"));
        let rest = match read_head(&mut v, T) {
            Ok((head, rest)) => {
                assert_eq!(status_of(&head), 200, "{head}");
                rest
            }
            Err((end, _)) => panic!("no response head: {end:?}"),
        };
        check_pattern(&rest).expect("the first body bytes");
        let t0 = Instant::now();
        // Slowly but steadily: never ahead of RATE.
        read_pattern(
            &mut v,
            rest.len() as u64,
            SIZE,
            t0 + Duration::from_secs(30),
            1 << 16,
            |n| {
                prog.store(n, Ordering::SeqCst);
                let due = Duration::from_secs_f64(n as f64 / RATE);
                if let Some(wait) = due.checked_sub(t0.elapsed()) {
                    std::thread::sleep(wait);
                }
            },
        )
    });
    util::wait_until("the download to be under way", T, || {
        progress.load(Ordering::SeqCst) >= 256 * 1024 || reader.is_finished()
    });
    fe.signal(libc::SIGTERM);
    let term = Instant::now();
    fe.wait_for("SIGTERM received", T);
    util::wait_until("new connects to be refused", Duration::from_secs(2), || {
        connect_refused(local(port))
    });
    let refused = term.elapsed();
    let at_refusal = progress.load(Ordering::SeqCst);
    let (got, end) = reader.join().expect("the download");
    assert!(
        matches!(end, End::Complete),
        "the running download was cut ({end:?}) after {got} of {SIZE} bytes"
    );
    let finished = term.elapsed();
    let status = fe
        .wait_exit(Duration::from_secs(7).saturating_sub(term.elapsed()))
        .expect("the frontend exits within the grace time + 2 s");
    let exited = term.elapsed();
    eprintln!(
        "after SIGTERM: connects refused at {refused:?} (download at {at_refusal} bytes), \
         download done at {finished:?}, exit at {exited:?} ({status})"
    );
    assert!(at_refusal < SIZE, "the download was over before the check");
    assert_eq!(status.code(), Some(0));
}

/// Half-closes a `/halfclose` stream from the origin's side and keeps the visitor's
/// write side open: a stream that never ends by itself.
fn endless_stream(port: u16, host: &str) -> TcpStream {
    let mut v = TcpStream::connect(local(port)).expect("connect");
    v.write_all(&meter::get_request(host, "/halfclose", false))
        .expect("send");
    let mut got = 0;
    assert!(
        closed_within(&mut v, T, &mut got),
        "the origin's half of the stream ends"
    );
    assert!(got >= HALFCLOSE_BODY.len(), "the reply arrived");
    v
}

#[test]
fn sigterm_gives_up_on_endless_streams_after_stop_grace() {
    let origin = Origin::start();
    let (port, fe, _be) = pair(&origin, "linger.test", &["--stop_grace=2"]);
    let _open = endless_stream(port, "linger.test");
    fe.signal(libc::SIGTERM);
    let term = Instant::now();
    let status = fe
        .wait_exit(Duration::from_secs(6))
        .expect("the frontend exits about 2 s after SIGTERM");
    let took = term.elapsed();
    eprintln!("exited {took:?} after SIGTERM with --stop_grace=2 ({status})");
    assert_eq!(status.code(), Some(0));
    assert!(
        took >= Duration::from_millis(1500),
        "the running stream was not given its grace: exit after {took:?}"
    );
    assert!(fe.contains("SIGTERM received"));
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let origin = Origin::start();
    let (port, fe, _be) = pair(&origin, "twice.test", &["--stop_grace=30"]);
    let _open = endless_stream(port, "twice.test");
    fe.signal(libc::SIGTERM);
    fe.wait_for("SIGTERM received", T);
    assert!(fe.exit_status().is_none(), "still finishing its stream");
    fe.signal(libc::SIGTERM);
    let second = Instant::now();
    let status = fe
        .wait_exit(Duration::from_secs(2))
        .expect("a second SIGTERM exits at once");
    eprintln!(
        "exited {:?} after the second SIGTERM ({status})",
        second.elapsed()
    );
}
