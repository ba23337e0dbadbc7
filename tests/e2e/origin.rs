//! Test origin servers that sit behind the tunnel: `Origin`, a small threaded HTTP/1.1
//! server with routes made for checking a relay (`/`, `/echo`, `/bytes/<n>`, `/upload`,
//! `/close`, `/halfclose`), and `EchoServer`, a raw TCP echo for raw-stream tests. Also the
//! deterministic byte pattern served by `/bytes/<n>` and its checkers.
//!
//! Both servers listen on 127.0.0.1:0, run one thread per connection (at most
//! `MAX_CONNS` at a time; more are closed at once), time out idle connections after
//! `IDLE`, and stop accepting and close their live connections on Drop.

#![allow(dead_code)] // Shared by several test modules; not all use every route or helper.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Body of `GET /`.
pub const INDEX_BODY: &str = "<html><body>Hello from behind the kite</body></html>\n";
/// Body of `GET /close` (HTTP/1.0, EOF-delimited).
pub const CLOSE_BODY: &str = "closing\n";
/// Body of `GET /halfclose` (EOF-delimited, then the origin shuts down its write side).
pub const HALFCLOSE_BODY: &str = "half\n";

/// Most connections served at once; the rest are closed on accept.
const MAX_CONNS: usize = 256;
/// A connection that sends nothing for this long is closed.
const IDLE: Duration = Duration::from_secs(60);
/// Largest request head accepted (431 beyond it).
const MAX_HEAD: usize = 64 * 1024;
/// How long `/close` keeps reading after its FIN (see `lingering_close`).
const LINGER: Duration = Duration::from_secs(2);
/// Write size for `/bytes/<n>`.
const CHUNK: usize = 64 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------
// The byte pattern

/// SplitMix64 finaliser: a good 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Byte number `i` of every `/bytes/<n>` body: pseudo-random, no short period, so a
/// dropped, duplicated or reordered block shows up at its offset.
pub fn pattern_byte(i: u64) -> u8 {
    mix(i >> 3).to_le_bytes()[(i & 7) as usize]
}

/// Fills `buf` with the pattern bytes starting at stream offset `offset`.
pub fn fill_pattern(offset: u64, buf: &mut [u8]) {
    let mut i = offset;
    let mut pos = 0;
    while pos < buf.len() {
        let word = mix(i >> 3).to_le_bytes();
        let start = (i & 7) as usize;
        let n = (8 - start).min(buf.len() - pos);
        buf[pos..pos + n].copy_from_slice(&word[start..start + n]);
        pos += n;
        i += n as u64;
    }
}

/// Checks that `data` is the pattern starting at offset `offset`.
pub fn check_pattern_at(offset: u64, data: &[u8]) -> Result<(), String> {
    let mut expect = vec![0u8; CHUNK.min(data.len())];
    for (k, got) in data.chunks(CHUNK).enumerate() {
        let at = offset + (k * CHUNK) as u64;
        let exp = &mut expect[..got.len()];
        fill_pattern(at, exp);
        if got != &exp[..] {
            let j = got
                .iter()
                .zip(exp.iter())
                .position(|(a, b)| a != b)
                .expect("slices differ somewhere");
            let off = at + j as u64;
            return Err(format!(
                "pattern mismatch at offset {off}: got {:#04x}, expected {:#04x}",
                got[j], exp[j]
            ));
        }
    }
    Ok(())
}

/// Checks that `data` is the pattern from offset 0; the Err names the first bad offset.
pub fn check_pattern(data: &[u8]) -> Result<(), String> {
    check_pattern_at(0, data)
}

/// Checks a file against the pattern from offset 0 without loading it whole; returns its
/// length.
pub fn check_pattern_file(path: &Path) -> Result<u64, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut buf = vec![0u8; 1024 * 1024];
    let mut off = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => return Ok(off),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read {}: {e}", path.display())),
        };
        check_pattern_at(off, &buf[..n])?;
        off += n as u64;
    }
}

// ---------------------------------------------------------------------------------------
// Shared accept loop

/// What both servers share: the listener thread, the stop flag and the live connections.
struct Acceptor {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<HashMap<u64, TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Binds 127.0.0.1:0 and serves each accepted connection with `serve` on its own thread.
    fn start<F>(name: &str, serve: F) -> Acceptor
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test server on 127.0.0.1:0");
        let addr = listener.local_addr().expect("test server local_addr");
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<HashMap<u64, TcpStream>>> = Arc::default();
        let serve = Arc::new(serve);
        let (stop2, conns2) = (stop.clone(), conns.clone());
        let tname = name.to_string();
        let thread = thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || accept_loop(&tname, listener, &stop2, &conns2, serve))
            .expect("spawn accept thread");
        Acceptor {
            addr,
            stop,
            conns,
            thread: Some(thread),
        }
    }
}

fn accept_loop<F>(
    name: &str,
    listener: TcpListener,
    stop: &AtomicBool,
    conns: &Arc<Mutex<HashMap<u64, TcpStream>>>,
    serve: Arc<F>,
) where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let next_id = AtomicU64::new(0);
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            // E.g. EMFILE: back off briefly instead of spinning.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        if active.load(Ordering::SeqCst) >= MAX_CONNS {
            continue; // dropped: closed at once
        }
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            lock(conns).insert(id, clone);
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (serve, conns2, active2) = (serve.clone(), conns.clone(), active.clone());
        let spawned = thread::Builder::new()
            .name(format!("{name}-conn{id}"))
            .spawn(move || {
                let _ = stream.set_read_timeout(Some(IDLE));
                let _ = stream.set_write_timeout(Some(IDLE));
                let _ = stream.set_nodelay(true);
                serve(stream);
                lock(&conns2).remove(&id);
                active2.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            lock(conns).remove(&id);
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept(); it then sees the flag and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for (_, s) in lock(&self.conns).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Origin: the HTTP/1.1 test server

#[derive(Default)]
struct OriginState {
    requests: Mutex<Vec<String>>,
    halfclose: Mutex<Vec<usize>>,
    halfclose_cv: Condvar,
}

/// A threaded HTTP/1.1 origin on 127.0.0.1 (keep-alive, Content-Length request bodies).
///
/// Routes: `GET /` (INDEX_BODY, text/html); any method on `/echo` (body = the exact
/// request head received, through the blank line); `GET /bytes/<n>` (n pattern bytes,
/// written in 64 KiB pieces); `POST /upload` (`len=<n> sum=<sum of bytes>`); `GET /close`
/// (HTTP/1.0 reply without Content-Length, then close); `GET /halfclose` (EOF-delimited
/// reply, shutdown(Write), then count the bytes that follow the request head until EOF);
/// anything else 404. A request with `Expect: 100-continue` and a body first gets
/// `100 Continue`; chunked request bodies get 501.
pub struct Origin {
    state: Arc<OriginState>,
    acceptor: Acceptor,
}

impl Origin {
    pub fn start() -> Origin {
        let state = Arc::new(OriginState::default());
        let st = state.clone();
        let acceptor = Acceptor::start("origin", move |s| serve_http(s, &st));
        Origin { state, acceptor }
    }

    pub fn addr(&self) -> SocketAddr {
        self.acceptor.addr
    }

    pub fn port(&self) -> u16 {
        self.acceptor.addr.port()
    }

    /// Request heads seen so far (through the blank line, lossy UTF-8), in arrival order.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state.requests).clone()
    }

    /// Waits until a `/halfclose` connection has seen EOF from its client and returns how
    /// many bytes arrived after the request head. Each call consumes the oldest such result.
    pub fn halfclose_bytes(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut v = lock(&self.state.halfclose);
        while v.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "timed out after {timeout:?} waiting for a /halfclose connection to see EOF \
                     (requests seen: {:?})",
                    self.requests()
                );
            }
            v = self
                .state
                .halfclose_cv
                .wait_timeout(v, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        v.remove(0)
    }
}

/// One parsed request head.
struct Head {
    raw: Vec<u8>,
    method: String,
    path: String,
    content_length: u64,
    chunked: bool,
    close: bool,
    /// `Expect: 100-continue` was sent: answer `100 Continue` before reading the body.
    expect_continue: bool,
}

fn parse_head(raw: Vec<u8>) -> Option<Head> {
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let version = first.next()?;
    let http10 = version == "HTTP/1.0";
    let (mut content_length, mut chunked, mut conn) = (0u64, false, String::new());
    let mut expect_continue = false;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            content_length = v.parse().ok()?;
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        } else if k.eq_ignore_ascii_case("connection") {
            conn = v.to_ascii_lowercase();
        } else if k.eq_ignore_ascii_case("expect") {
            expect_continue = v.eq_ignore_ascii_case("100-continue");
        }
    }
    let close = conn.contains("close") || (http10 && !conn.contains("keep-alive"));
    Some(Head {
        raw,
        method,
        path,
        content_length,
        chunked,
        close,
        expect_continue,
    })
}

/// Reads one request head into a Vec, leaving any bytes after it in `buf`. Ok(None) on a
/// clean EOF before the first byte; an InvalidData error if the head is too big or EOF
/// comes in the middle of it.
fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Vec<u8>>> {
    let mut scanned: usize = 0;
    let mut tmp = [0u8; 8192];
    loop {
        if let Some(p) = buf[scanned.saturating_sub(3)..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            let end = scanned.saturating_sub(3) + p + 4;
            let rest = buf.split_off(end);
            let head = std::mem::replace(buf, rest);
            return Ok(Some(head));
        }
        scanned = buf.len();
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::new(ErrorKind::InvalidData, "head too big"));
        }
        let n = read_some(s, &mut tmp)?;
        if n == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                "EOF inside head",
            ));
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

fn read_some(s: &mut TcpStream, tmp: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match s.read(tmp) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Consumes `len` body bytes (first from `buf`, then from the socket), feeding each piece
/// to `each`.
fn read_body(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    len: u64,
    mut each: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    let from_buf = (len.min(buf.len() as u64)) as usize;
    each(&buf[..from_buf]);
    buf.drain(..from_buf);
    let mut left = len - from_buf as u64;
    let mut tmp = vec![0u8; CHUNK];
    while left > 0 {
        let want = (left.min(CHUNK as u64)) as usize;
        let n = read_some(s, &mut tmp[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "EOF inside body",
            ));
        }
        each(&tmp[..n]);
        left -= n as u64;
    }
    Ok(())
}

fn respond(
    s: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &[u8],
    close: bool,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nServer: rkite-e2e-origin\r\nContent-Type: {ctype}\r\n\
         Content-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    s.write_all(&out)
}

fn serve_http(mut s: TcpStream, st: &OriginState) {
    let mut buf = Vec::new();
    // Errors (resets, timeouts) just end the connection: this is a test server.
    let _ = serve_http_inner(&mut s, &mut buf, st);
}

fn serve_http_inner(s: &mut TcpStream, buf: &mut Vec<u8>, st: &OriginState) -> std::io::Result<()> {
    loop {
        let raw = match read_head(s, buf) {
            Ok(Some(raw)) => raw,
            Ok(None) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::InvalidData && buf.len() > MAX_HEAD => {
                return respond(
                    s,
                    "431 Request Header Fields Too Large",
                    "text/plain",
                    b"",
                    true,
                );
            }
            Err(e) => return Err(e),
        };
        lock(&st.requests).push(String::from_utf8_lossy(&raw).into_owned());
        let Some(h) = parse_head(raw) else {
            return respond(s, "400 Bad Request", "text/plain", b"bad request\n", true);
        };
        if h.chunked {
            let msg = b"chunked request bodies are not supported by the test origin\n";
            return respond(s, "501 Not Implemented", "text/plain", msg, true);
        }
        if h.expect_continue && h.content_length > 0 {
            s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let path = h.path.split('?').next().unwrap_or("").to_string();
        match (h.method.as_str(), path.as_str()) {
            (_, "/echo") => {
                read_body(s, buf, h.content_length, |_| {})?;
                respond(s, "200 OK", "text/plain", &h.raw, h.close)?;
            }
            ("POST", "/upload") => {
                let (mut n, mut sum) = (0u64, 0u64);
                read_body(s, buf, h.content_length, |d| {
                    n += d.len() as u64;
                    sum = d.iter().fold(sum, |a, &b| a.wrapping_add(u64::from(b)));
                })?;
                let body = format!("len={n} sum={sum}");
                respond(s, "200 OK", "text/plain", body.as_bytes(), h.close)?;
            }
            ("GET", "/") => {
                respond(s, "200 OK", "text/html", INDEX_BODY.as_bytes(), h.close)?;
            }
            ("GET", "/close") => {
                let head = "HTTP/1.0 200 OK\r\nServer: rkite-e2e-origin\r\n\
                            Content-Type: text/plain\r\n\r\n";
                s.write_all(head.as_bytes())?;
                s.write_all(CLOSE_BODY.as_bytes())?;
                lingering_close(s);
                return Ok(());
            }
            ("GET", "/halfclose") => return serve_halfclose(s, buf, st),
            ("GET", p) if p.starts_with("/bytes/") => {
                let Ok(n) = p["/bytes/".len()..].parse::<u64>() else {
                    respond(s, "400 Bad Request", "text/plain", b"bad length\n", true)?;
                    return Ok(());
                };
                serve_bytes(s, n, h.close)?;
            }
            _ => {
                read_body(s, buf, h.content_length, |_| {})?;
                respond(s, "404 Not Found", "text/plain", b"not found\n", h.close)?;
            }
        }
        if h.close {
            lingering_close(s);
            return Ok(());
        }
    }
}

/// Ends an EOF-delimited reply: FIN first, then read (and drop) whatever the client still
/// sends for up to `LINGER`, so that unread input does not turn the close into a reset
/// that could destroy the reply in flight.
fn lingering_close(s: &mut TcpStream) {
    let _ = s.shutdown(Shutdown::Write);
    let _ = s.set_read_timeout(Some(LINGER));
    let deadline = Instant::now() + LINGER;
    let mut tmp = [0u8; 8192];
    while Instant::now() < deadline {
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn serve_bytes(s: &mut TcpStream, n: u64, close: bool) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 200 OK\r\nServer: rkite-e2e-origin\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {n}\r\n"
    );
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    let mut chunk = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < n {
        let len = ((n - off).min(CHUNK as u64)) as usize;
        fill_pattern(off, &mut chunk[..len]);
        s.write_all(&chunk[..len])?;
        off += len as u64;
    }
    Ok(())
}

fn serve_halfclose(s: &mut TcpStream, buf: &mut Vec<u8>, st: &OriginState) -> std::io::Result<()> {
    let reply = format!(
        "HTTP/1.1 200 OK\r\nServer: rkite-e2e-origin\r\nContent-Type: text/plain\r\n\
         Connection: close\r\n\r\n{HALFCLOSE_BODY}"
    );
    s.write_all(reply.as_bytes())?;
    s.shutdown(Shutdown::Write)?;
    let mut count = buf.len();
    buf.clear();
    let mut tmp = [0u8; 8192];
    loop {
        let n = read_some(s, &mut tmp)?;
        if n == 0 {
            break;
        }
        count += n;
    }
    lock(&st.halfclose).push(count);
    st.halfclose_cv.notify_all();
    Ok(())
}

// ---------------------------------------------------------------------------------------
// EchoServer: raw TCP echo

/// Raw TCP echo on 127.0.0.1: every byte received is sent back; at EOF from the client
/// it shuts down its write side. Counts connections and echoed bytes.
pub struct EchoServer {
    stats: Arc<EchoStats>,
    acceptor: Acceptor,
}

#[derive(Default)]
struct EchoStats {
    connections: AtomicUsize,
    bytes: AtomicU64,
    /// Connections that have seen EOF from their client and shut down writing.
    finished: AtomicUsize,
}

impl EchoServer {
    pub fn start() -> EchoServer {
        let stats = Arc::new(EchoStats::default());
        let st = stats.clone();
        let acceptor = Acceptor::start("echo", move |mut s| {
            st.connections.fetch_add(1, Ordering::SeqCst);
            let mut tmp = vec![0u8; CHUNK];
            loop {
                match read_some(&mut s, &mut tmp) {
                    Ok(0) => {
                        let _ = s.shutdown(Shutdown::Write);
                        st.finished.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    Ok(n) => {
                        if s.write_all(&tmp[..n]).is_err() {
                            return;
                        }
                        st.bytes.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    Err(_) => return,
                }
            }
        });
        EchoServer { stats, acceptor }
    }

    pub fn addr(&self) -> SocketAddr {
        self.acceptor.addr
    }

    pub fn port(&self) -> u16 {
        self.acceptor.addr.port()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// Bytes echoed so far, over all connections.
    pub fn bytes_echoed(&self) -> u64 {
        self.stats.bytes.load(Ordering::SeqCst)
    }

    /// Connections that have seen the client's EOF and answered with their own.
    pub fn finished(&self) -> usize {
        self.stats.finished.load(Ordering::SeqCst)
    }
}
