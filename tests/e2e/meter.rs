//! Looking at a running rkite from outside, for the flow-control and fault tests: the
//! `stats:` line it logs on SIGUSR2 (`stats: conns=N tunnels=N streams=N timers=N
//! buffered=B`), its open descriptors (/proc/PID/fd) and resident memory (VmRSS), plus the
//! raw visitor sockets those tests need: a client with a small receive buffer (so the
//! kernel absorbs little of what a stalled visitor is sent), bounded reads of a response
//! head, and a body reader that checks the `/bytes/<n>` pattern piece by piece without
//! holding the body in memory.

#![allow(dead_code)] // Shared by `faults` and `flow`; not every test uses every helper.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

use crate::origin::check_pattern_at;
use crate::util::{Proc, find_subslice, local};

/// What the `stats:` line says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub conns: u64,
    pub tunnels: u64,
    pub streams: u64,
    pub timers: u64,
    pub buffered: u64,
    /// Pipes open for splicing (lent and kept for reuse).
    pub pipes: u64,
    pub pipes_lent: u64,
    /// Times a stream wanted a pipe and the pool had none left (it copied).
    pub pipes_exhausted: u64,
    /// Bytes moved by splice so far.
    pub spliced: u64,
}

/// The marker of the SIGUSR2 line.
const STATS: &str = "stats: conns=";

/// Parses `... stats: conns=N tunnels=N streams=N timers=N buffered=B`.
fn parse_stats(line: &str) -> Stats {
    let at = line.find("stats:").expect("a stats line");
    let mut st = Stats::default();
    for word in line[at + "stats:".len()..].split_whitespace() {
        let Some((k, v)) = word.split_once('=') else {
            continue;
        };
        let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
        let n: u64 = digits
            .parse()
            .unwrap_or_else(|_| panic!("bad number in stats line {line:?}"));
        match k {
            "conns" => st.conns = n,
            "tunnels" => st.tunnels = n,
            "streams" => st.streams = n,
            "timers" => st.timers = n,
            "buffered" => st.buffered = n,
            "pipes" => st.pipes = n,
            "pipes_lent" => st.pipes_lent = n,
            "pipes_exhausted" => st.pipes_exhausted = n,
            "spliced" => st.spliced = n,
            _ => {}
        }
    }
    st
}

/// Sends SIGUSR2 and returns the `stats:` line it produced (waits at most 5 s for it).
pub fn stats(p: &Proc) -> Stats {
    let before = p.count(STATS);
    p.signal(libc::SIGUSR2);
    let lines = p.wait_for_count(STATS, before + 1, Duration::from_secs(5));
    parse_stats(lines.last().expect("wait_for_count returns the lines"))
}

/// Samples `stats` (every 100 ms) until `ok(stats)` holds or `timeout` passes; returns the
/// last sample and whether it satisfied `ok`.
pub fn poll_stats(
    p: &Proc,
    timeout: Duration,
    mut ok: impl FnMut(&Stats) -> bool,
) -> (Stats, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let st = stats(p);
        if ok(&st) {
            return (st, true);
        }
        if Instant::now() >= deadline {
            return (st, false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Open descriptors of a process.
pub fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

/// Resident set size of a process in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB")
}

fn setsockopt_int(fd: libc::c_int, opt: libc::c_int, value: libc::c_int) {
    // SAFETY: setsockopt reads one c_int from the pointer we pass, of the stated length.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt({opt}): {}",
        std::io::Error::last_os_error()
    );
}

/// Connects to 127.0.0.1:`port` from a socket whose SO_RCVBUF was set to `rcvbuf` before
/// the connect (so the window it advertises stays small from the start).
pub fn connect_small_rcvbuf(port: u16, rcvbuf: usize) -> TcpStream {
    // SAFETY: socket(2) has no memory-safety preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh socket we own; TcpStream closes it when dropped.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    setsockopt_int(
        fd,
        libc::SO_RCVBUF,
        libc::c_int::try_from(rcvbuf).expect("rcvbuf fits"),
    );
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: connect reads a sockaddr_in of the stated length from the pointer.
    let rc = unsafe {
        libc::connect(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "connect 127.0.0.1:{port}: {}",
        std::io::Error::last_os_error()
    );
    stream
}

/// Sets SO_RCVBUF on a connected socket (to let a stalled reader catch up quickly).
pub fn set_rcvbuf(s: &TcpStream, rcvbuf: usize) {
    setsockopt_int(
        s.as_raw_fd(),
        libc::SO_RCVBUF,
        libc::c_int::try_from(rcvbuf).expect("rcvbuf fits"),
    );
}

/// `GET path` with a Host header, as bytes (`Connection: close` if `close`).
pub fn get_request(host: &str, path: &str, close: bool) -> Vec<u8> {
    let conn = if close { "Connection: close\r\n" } else { "" };
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{conn}\r\n").into_bytes()
}

/// Connects (plain std socket) and sends `GET path`.
pub fn send_get(port: u16, host: &str, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(local(port)).expect("connect to the frontend");
    s.write_all(&get_request(host, path, true))
        .expect("send the request");
    s
}

/// How a read of a response head or body ended.
#[derive(Debug)]
pub enum End {
    /// Everything expected arrived.
    Complete,
    /// EOF before that.
    Eof,
    /// A read error (e.g. a reset) before that.
    Error(std::io::Error),
    /// The deadline passed first.
    Timeout,
}

/// Reads in small pieces (256 bytes, so little body is consumed) until a whole response
/// head has arrived. Returns the head (through the blank line) and the body bytes read
/// after it, or how the connection ended first (with what had arrived).
pub fn read_head(
    s: &mut TcpStream,
    timeout: Duration,
) -> Result<(String, Vec<u8>), (End, Vec<u8>)> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut piece = [0u8; 256];
    loop {
        if let Some(p) = find_subslice(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p + 4]).into_owned();
            return Ok((head, buf[p + 4..].to_vec()));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err((End::Timeout, buf));
        }
        s.set_read_timeout(Some(left)).expect("set_read_timeout");
        match s.read(&mut piece) {
            Ok(0) => return Err((End::Eof, buf)),
            Ok(n) => buf.extend_from_slice(&piece[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err((End::Timeout, buf));
            }
            Err(e) => return Err((End::Error(e), buf)),
        }
    }
}

/// The status code of a response head.
pub fn status_of(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// Reads body bytes of a `/bytes/<n>` response, checking each piece against the pattern,
/// from body offset `from` until `total` bytes in all have arrived, EOF, an error, or
/// `deadline`. `each(received_so_far)` runs after every read (to publish progress or to
/// pace a slow reader). A pattern mismatch panics. Returns the bytes received (counting
/// `from`) and how it ended.
pub fn read_pattern(
    s: &mut TcpStream,
    from: u64,
    total: u64,
    deadline: Instant,
    piece: usize,
    mut each: impl FnMut(u64),
) -> (u64, End) {
    let mut got = from;
    let mut buf = vec![0u8; piece];
    while got < total {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (got, End::Timeout);
        }
        s.set_read_timeout(Some(left)).expect("set_read_timeout");
        let want = ((total - got).min(piece as u64)) as usize;
        match s.read(&mut buf[..want]) {
            Ok(0) => return (got, End::Eof),
            Ok(n) => {
                if let Err(e) = check_pattern_at(got, &buf[..n]) {
                    panic!("body corrupted: {e}");
                }
                got += n as u64;
                each(got);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (got, End::Timeout);
            }
            Err(e) => return (got, End::Error(e)),
        }
    }
    (got, End::Complete)
}

/// True once the peer closed `s` (EOF or reset) within `timeout`; counts the bytes that
/// arrived before that into `received`.
pub fn closed_within(s: &mut TcpStream, timeout: Duration, received: &mut usize) -> bool {
    let deadline = Instant::now() + timeout;
    let mut sink = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).expect("set_read_timeout");
        match s.read(&mut sink) {
            Ok(0) => return true,
            Ok(n) => *received += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// True if `s` is still open and has nothing to read right now (a non-blocking peek).
pub fn open_and_quiet(s: &TcpStream) -> bool {
    s.set_nonblocking(true).expect("set_nonblocking");
    let mut one = [0u8; 1];
    let r = s.peek(&mut one);
    s.set_nonblocking(false).expect("set_nonblocking");
    matches!(r, Err(ref e) if e.kind() == ErrorKind::WouldBlock)
}

/// True if a connect to `addr` is refused right now.
pub fn connect_refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)),
        Err(ref e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

#[test]
fn stats_lines_parse() {
    let st = parse_stats(
        "[2024-01-01T00:00:00Z INFO  rkite::engine] stats: conns=5 tunnels=1 streams=2 \
         timers=7 buffered=1024",
    );
    assert_eq!(
        st,
        Stats {
            conns: 5,
            tunnels: 1,
            streams: 2,
            timers: 7,
            buffered: 1024,
            ..Stats::default()
        }
    );
}

/// `n` visitors held open, each having sent only a request line, so each
/// keeps its place (per-IP limits, sniffing) until the test finishes it.
pub fn half_requests(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let addr = local(port);
            let mut s =
                TcpStream::connect_timeout(&addr, Duration::from_secs(20)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(20)))
                .expect("read timeout");
            s.write_all(b"GET / HTTP/1.1\r\n").expect("start a request");
            s
        })
        .collect()
}
