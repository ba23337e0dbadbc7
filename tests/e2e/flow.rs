//! Flow control and resource limits, seen from outside: a visitor that stops reading
//! while the origin sends 256 MiB costs each rkite about one window, not the download; a
//! bulk download does not starve small requests on the same tunnel; `--max_conns` and
//! `--buffers` refuse new work (with `connection limit` / `buffer budget` in the log)
//! while existing streams carry on, and work is accepted again once load drops.
//!
//! Memory is read from /proc/PID/status (VmRSS), buffered bytes from the SIGUSR2 `stats:`
//! line (see `meter`). Bodies are checked against the `/bytes/<n>` pattern as they arrive.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::fixture::{T, backend, frontend, get, kite, live};
use crate::meter::{
    self, End, closed_within, connect_small_rcvbuf, open_and_quiet, read_head, read_pattern,
    rss_kib, send_get, status_of,
};
use crate::origin::{HALFCLOSE_BODY, INDEX_BODY, Origin};
use crate::util::{self, Proc, free_port, local};

const SECRET: &str = "s3cret";
const MIB: u64 = 1024 * 1024;

/// An rkite frontend and backend for one http kite on a fresh origin, both live.
struct Pair {
    origin: Origin,
    port: u16,
    fe: Proc,
    be: Proc,
}

fn pair(domain: &str, fe_extra: &[&str], be_extra: &[&str]) -> Pair {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &[&format!("http:{domain}:{SECRET}")], fe_extra);
    let be = backend(
        port,
        &[kite("http", domain, origin.port(), SECRET)],
        be_extra,
    );
    live(&fe, &format!("http:{domain}"));
    live(&be, &format!("http:{domain}"));
    Pair {
        origin,
        port,
        fe,
        be,
    }
}

/// Reads a response head, panicking unless it is a 200.
fn head_200(s: &mut TcpStream, what: &str) -> Vec<u8> {
    match read_head(s, T) {
        Ok((head, rest)) => {
            assert_eq!(status_of(&head), 200, "{what}: {head}");
            rest
        }
        Err((end, got)) => panic!(
            "{what}: no response head ({end:?}) after {:?}",
            String::from_utf8_lossy(&got)
        ),
    }
}

#[test]
fn a_stalled_visitor_costs_a_window_not_the_whole_download() {
    // Measured on a debug build (2 CPUs): idle RSS about 6 MiB each, at most ~6.7 MiB
    // while stalled. 256 MiB, a thousand windows, is plenty to show the stall costs one
    // window and not the download; a whole gigabyte took 8-9 s on a quiet machine but
    // missed its 90 s under a loaded one (other builds and test runs alongside).
    const SIZE: u64 = 256 * MIB;
    const BOUND_KIB: u64 = 24 * 1024;
    let p = pair("slow.test", &[], &[]);
    assert_eq!(get(p.port, "slow.test", "/").body_str(), INDEX_BODY);
    let idle = (rss_kib(p.fe.pid()), rss_kib(p.be.pid()));
    eprintln!("idle RSS: frontend {} KiB, backend {} KiB", idle.0, idle.1);

    let started = Instant::now();
    let mut s = connect_small_rcvbuf(p.port, 4096);
    s.write_all(&meter::get_request(
        "slow.test",
        &format!("/bytes/{SIZE}"),
        true,
    ))
    .expect("send the request");
    let rest = head_200(&mut s, "the 256 MiB download");

    // The visitor now reads nothing for 2 s while the origin has 256 MiB to send.
    let mut peak = idle;
    let pause = Instant::now();
    while pause.elapsed() < Duration::from_secs(2) {
        peak.0 = peak.0.max(rss_kib(p.fe.pid()));
        peak.1 = peak.1.max(rss_kib(p.be.pid()));
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "peak RSS while stalled: frontend {} KiB, backend {} KiB",
        peak.0, peak.1
    );
    assert!(
        peak.0 < BOUND_KIB && peak.1 < BOUND_KIB,
        "a stalled visitor made rkite grow: frontend {} KiB, backend {} KiB (idle {} / {} KiB, \
         bound {BOUND_KIB} KiB)",
        peak.0,
        peak.1,
        idle.0,
        idle.1
    );

    // Then it reads everything, checking it as it goes.
    meter::set_rcvbuf(&s, 256 * 1024);
    origin_pattern_ok(&rest);
    let deadline = started + Duration::from_secs(90);
    let (got, end) = read_pattern(&mut s, rest.len() as u64, SIZE, deadline, 1 << 20, |_| {});
    assert!(
        matches!(end, End::Complete),
        "the download ended early ({end:?}) after {got} of {SIZE} bytes"
    );
    eprintln!("256 MiB relayed and checked in {:?}", started.elapsed());
}

/// Checks the body bytes that arrived with the head.
fn origin_pattern_ok(rest: &[u8]) {
    crate::origin::check_pattern(rest).expect("the first body bytes");
}

#[test]
fn a_bulk_download_does_not_starve_small_requests() {
    const SIZE: u64 = 512 * MIB;
    let p = pair("share.test", &[], &[]);
    let port = p.port;
    let progress = Arc::new(AtomicU64::new(0));
    let prog = progress.clone();
    let bulk = std::thread::spawn(move || {
        let mut s = send_get(port, "share.test", &format!("/bytes/{SIZE}"));
        let rest = head_200(&mut s, "the bulk download");
        origin_pattern_ok(&rest);
        let deadline = Instant::now() + Duration::from_secs(90);
        read_pattern(&mut s, rest.len() as u64, SIZE, deadline, 1 << 20, |n| {
            prog.store(n, Ordering::SeqCst)
        })
    });
    util::wait_until("the bulk download to be under way", T, || {
        progress.load(Ordering::SeqCst) >= 8 * MIB || bulk.is_finished()
    });

    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let t0 = Instant::now();
        let raw = util::http_request(
            local(port),
            &meter::get_request("share.test", "/", true),
            Duration::from_secs(10),
        );
        let took = t0.elapsed();
        let resp = util::RawResponse::parse(&raw);
        assert_eq!(resp.status, 200, "small request {i}");
        assert_eq!(resp.body_str(), INDEX_BODY, "small request {i}");
        assert!(
            took < Duration::from_secs(1),
            "small request {i} took {took:?} beside the bulk download"
        );
        worst = worst.max(took);
    }
    let at_end = progress.load(Ordering::SeqCst);
    eprintln!(
        "slowest small request: {worst:?}; bulk at {} MiB",
        at_end / MIB
    );
    assert!(
        at_end < SIZE,
        "the bulk download finished before the small requests did: nothing was shared"
    );
    let (got, end) = bulk.join().expect("the bulk reader");
    assert!(
        matches!(end, End::Complete),
        "the bulk download ended early ({end:?}) after {got} of {SIZE} bytes"
    );
}

/// The frontend's `--max_conns` counts public connections and tunnels (not listeners):
/// with one backend tunnel and a limit of 10, nine public connections fit and the tenth
/// is refused (accepted and closed at once, without a response).
#[test]
fn max_conns_on_the_frontend_refuses_the_surplus_then_recovers() {
    let p = pair("cap.test", &["--max_conns=10"], &[]);
    let held: Vec<TcpStream> = (0..9)
        .map(|_| TcpStream::connect(local(p.port)).expect("connect"))
        .collect();
    for i in 0..3 {
        let mut extra = TcpStream::connect(local(p.port)).expect("connect");
        let mut got = 0;
        assert!(
            closed_within(&mut extra, Duration::from_secs(5), &mut got),
            "connection {} beyond the limit is closed promptly",
            i + 1
        );
        assert_eq!(got, 0, "a refused connection gets no response");
    }
    p.fe.wait_for("connection limit", T);
    // The surplus was refused after the held ones were accepted: those are still open.
    for (i, s) in held.iter().enumerate() {
        assert!(open_and_quiet(s), "held connection {i} is still open");
    }
    drop(held);
    util::wait_until(
        "a request succeeds once the held connections are gone",
        T,
        || {
            util::try_curl(&[
                "-H",
                "Host: cap.test",
                &format!("http://127.0.0.1:{}/", p.port),
            ])
            .is_ok_and(|r| r.status == 200 && r.body_str() == INDEX_BODY)
        },
    );
    assert!(p.fe.exit_status().is_none());
}

/// The backend's `--max_conns=4` caps its streams (its tunnel does not count): 4 streams
/// fit, the rest are refused (EOF, or an error page) without reaching the origin.
#[test]
fn max_conns_on_the_backend_refuses_streams_beyond_it() {
    let p = pair("becap.test", &[], &["--max_conns=4"]);
    let mut visitors = Vec::new();
    let mut served = 0;
    let mut refused = 0;
    for i in 0..8 {
        // /halfclose: the origin answers and half-closes; the stream stays open as long
        // as the visitor keeps its write side open.
        let mut v = send_get_keep(p.port, "becap.test", "/halfclose");
        let mut got = Vec::new();
        let closed = read_to_eof(&mut v, &mut got);
        assert!(closed, "stream {i}: the response ends (EOF or reset)");
        let text = String::from_utf8_lossy(&got).into_owned();
        if text.starts_with("HTTP/1.1 200") && text.ends_with(HALFCLOSE_BODY) {
            assert_eq!(
                refused, 0,
                "stream {i} served after one was refused: {text}"
            );
            served += 1;
        } else {
            refused += 1;
        }
        visitors.push(v);
    }
    eprintln!("backend --max_conns=4: {served} streams served, {refused} refused");
    assert_eq!(
        served, 4,
        "streams served with --max_conns=4 on the backend"
    );
    p.be.wait_for("connection limit", T);
    assert_eq!(
        p.origin.requests().len(),
        served,
        "refused streams never reach the origin"
    );
    drop(visitors);
    util::wait_until("a request succeeds once the streams are closed", T, || {
        util::try_curl(&[
            "-H",
            "Host: becap.test",
            &format!("http://127.0.0.1:{}/", p.port),
        ])
        .is_ok_and(|r| r.status == 200 && r.body_str() == INDEX_BODY)
    });
    assert!(p.be.exit_status().is_none());
}

/// `GET path` without `Connection: close`; the socket stays open for writing.
fn send_get_keep(port: u16, host: &str, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(local(port)).expect("connect");
    s.write_all(&meter::get_request(host, path, false))
        .expect("send the request");
    s
}

/// Reads until EOF or reset (bounded by `T`); false on timeout.
fn read_to_eof(s: &mut TcpStream, out: &mut Vec<u8>) -> bool {
    let deadline = Instant::now() + T;
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
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

/// Outcome of a new request while the budget may be full.
enum Attempt {
    /// A 200 head arrived: a stream was opened (returned, with the body bytes so far).
    Open(TcpStream, Vec<u8>),
    /// Closed without a response, or answered with a 503.
    Refused(String),
}

fn slow_reader(port: u16, size: u64) -> Attempt {
    let mut s = connect_small_rcvbuf(port, 4096);
    s.write_all(&meter::get_request(
        "budget.test",
        &format!("/bytes/{size}"),
        true,
    ))
    .expect("send the request");
    match read_head(&mut s, T) {
        Ok((head, rest)) if status_of(&head) == 200 => Attempt::Open(s, rest),
        Ok((head, _)) => {
            assert_eq!(
                status_of(&head),
                503,
                "a refusal is a close or a 503: {head}"
            );
            Attempt::Refused(head)
        }
        Err((End::Eof | End::Error(_), got)) => {
            Attempt::Refused(String::from_utf8_lossy(&got).into_owned())
        }
        Err((end, got)) => panic!(
            "a new request neither served nor refused ({end:?}): {:?}",
            String::from_utf8_lossy(&got)
        ),
    }
}

#[test]
fn a_full_buffer_budget_refuses_new_requests_until_it_drains() {
    const SIZE: u64 = 16 * MIB;
    const BUDGET: u64 = 256 * 1024;
    let p = pair("budget.test", &["--buffers=256"], &[]);
    // Stalled readers, one at a time, each allowed to fill its window before the next,
    // until the frontend refuses one.
    let mut stalled: Vec<(TcpStream, Vec<u8>)> = Vec::new();
    let mut refusal = None;
    for _ in 0..16 {
        match slow_reader(p.port, SIZE) {
            Attempt::Open(s, rest) => {
                stalled.push((s, rest));
                let mut last = u64::MAX;
                // Until the frontend's buffered bytes stop growing (bounded).
                let _ = meter::poll_stats(&p.fe, Duration::from_secs(3), |st| {
                    let settled = st.buffered == last;
                    last = st.buffered;
                    settled
                });
            }
            Attempt::Refused(what) => {
                refusal = Some(what);
                break;
            }
        }
    }
    let Some(what) = refusal else {
        panic!(
            "16 stalled downloads and no refusal with --buffers=256 (frontend: {:?})",
            meter::stats(&p.fe)
        )
    };
    assert!(
        !stalled.is_empty(),
        "the first request was refused: {what:?}"
    );
    p.fe.wait_for("buffer budget", T);
    let st = meter::stats(&p.fe);
    eprintln!(
        "refused after {} stalled downloads; frontend {st:?} (budget {BUDGET} bytes)",
        stalled.len()
    );
    assert!(
        st.buffered >= BUDGET,
        "refused for the budget while only {} bytes are buffered",
        st.buffered
    );
    // Still full: the next one is refused too.
    assert!(
        matches!(slow_reader(p.port, 1000), Attempt::Refused(_)),
        "a request is refused while the budget is full"
    );

    // The stalled downloads carry on and finish intact.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, (mut s, rest)) in stalled.into_iter().enumerate() {
        meter::set_rcvbuf(&s, 256 * 1024);
        origin_pattern_ok(&rest);
        let (got, end) = read_pattern(&mut s, rest.len() as u64, SIZE, deadline, 1 << 20, |_| {});
        assert!(
            matches!(end, End::Complete),
            "stalled download {i} ended early ({end:?}) after {got} of {SIZE} bytes"
        );
    }
    util::wait_until("a request succeeds once the budget drained", T, || {
        util::try_curl(&[
            "-H",
            "Host: budget.test",
            &format!("http://127.0.0.1:{}/", p.port),
        ])
        .is_ok_and(|r| r.status == 200 && r.body_str() == INDEX_BODY)
    });
}
