//! Issue 6 end to end: raw kites and what surrounds them. SSH-like sessions through
//! `rkite --connect` (plain and TLS) and through socat's HTTP-proxy client (`client.rs`);
//! dedicated `--rawports` listeners, CONNECT to names and ports nobody serves, and a
//! pagekite.py raw kite behind an rkite frontend (`ports.rs`); WebSockets through
//! `websocket` and plain `http` kites with Python's `websockets` (`websocket.rs`); the
//! backend's per-kite options (`--be_config` and the `+key=value` short form: ip,
//! password, rewritehost, rawheaders, proxyproto v1/v2, the security filter and
//! insecure) (`options.rs`); and the frontend's `--client_acl`, `--tunnel_acl` and
//! `--max_conns_per_ip` (`acl.rs`). This file holds what they share: small raw TCP servers
//! (`Server::sink`, `Server::source`), bounded readers and writers for byte streams
//! (`Incoming`, `feed`), a client process with piped stdin and stdout (`Piped`), a raw
//! CONNECT client, and the check that a connection is closed without a reply.

mod acl;
mod client;
mod options;
mod ports;
mod websocket;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::fixture::T;
use crate::origin::{check_pattern_at, fill_pattern};
use crate::util::{self, local};

/// The kite secret every test here uses.
pub const SECRET: &str = "s3cret";

/// `--domain`s that accept every kite these tests register.
pub const DOMAINS: [&str; 2] = ["*:*.example.test:s3cret", "*:home.test:s3cret"];

/// Bound on moving tens of MiB through a debug build of both ends.
pub const BULK_TIME: Duration = Duration::from_secs(90);

/// How soon a refused connection must be closed: well under the frontend's 10 s limit for
/// a client that sends nothing useful, so a close by that timer does not pass for a refusal.
pub const AT_ONCE: Duration = Duration::from_secs(5);

/// Exactly what a frontend answers to a CONNECT it can serve.
pub const CONNECT_OK: &[u8] = b"HTTP/1.0 200 Connection Established\r\n\r\n";

/// Exactly what a frontend answers to a CONNECT nobody serves (then it closes).
pub const CONNECT_503: &[u8] = b"HTTP/1.0 503 Unavailable\r\n\r\n";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A frontend for `DOMAINS` with `extra` flags (e.g. `--rawports=virtual`) on a fresh port.
pub fn raw_frontend(extra: &[&str]) -> (u16, util::Proc) {
    let port = util::free_port();
    let fe = crate::fixture::frontend(&[port], &DOMAINS, extra);
    (port, fe)
}

/// Waits until `p` (frontend or backend) logs that kite `id` (e.g. `raw-22:home.test`) is
/// live.
pub fn live(p: &util::Proc, id: &str) {
    crate::fixture::live(p, id);
}

// ---------------------------------------------------------------------------------------
// Raw TCP test servers

/// A raw TCP server on 127.0.0.1:0 running a handler per connection on its own thread.
/// Handlers may leave notes (results) for the test. Stops on Drop.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    notes: Arc<Mutex<Vec<String>>>,
    socks: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

/// Where a handler leaves its result.
#[derive(Clone)]
pub struct Notes(Arc<Mutex<Vec<String>>>);

impl Notes {
    pub fn add(&self, note: String) {
        lock(&self.0).push(note);
    }
}

impl Server {
    pub fn start<F>(name: &str, handler: F) -> Server
    where
        F: Fn(TcpStream, &Notes) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test server");
        let addr = listener.local_addr().expect("test server addr");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let notes: Arc<Mutex<Vec<String>>> = Arc::default();
        let socks: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let handler = Arc::new(handler);
        let (stop2, acc2, notes2, socks2) = (
            stop.clone(),
            accepted.clone(),
            Notes(notes.clone()),
            socks.clone(),
        );
        let tname = name.to_string();
        let thread = thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    acc2.fetch_add(1, Ordering::SeqCst);
                    if let Ok(c) = conn.try_clone() {
                        lock(&socks2).push(c);
                    }
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
                    let _ = conn.set_write_timeout(Some(Duration::from_secs(60)));
                    let (h, n) = (handler.clone(), notes2.clone());
                    let _ = thread::Builder::new()
                        .name(format!("{tname}-conn"))
                        .spawn(move || h(conn, &n));
                }
            })
            .expect("spawn test server");
        Server {
            addr,
            stop,
            accepted,
            notes,
            socks,
            thread: Some(thread),
        }
    }

    /// Reads everything until EOF, checking it against the pattern from offset 0; then
    /// answers `ok <bytes>\n` (or `bad <bytes> <why>\n`), notes the same line, and closes.
    pub fn sink() -> Server {
        Server::start("sink", |mut s, notes| {
            let mut buf = vec![0u8; 64 * 1024];
            let (mut n, mut bad) = (0u64, None::<String>);
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => {
                        if bad.is_none() {
                            bad = check_pattern_at(n, &buf[..k]).err();
                        }
                        n += k as u64;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        notes.add(format!("error after {n} bytes: {e}"));
                        return;
                    }
                }
            }
            let line = match bad {
                None => format!("ok {n}\n"),
                Some(why) => format!("bad {n} {why}\n"),
            };
            notes.add(line.trim_end().to_string());
            let _ = s.write_all(line.as_bytes());
            let _ = s.shutdown(Shutdown::Write);
        })
    }

    /// Writes `n` pattern bytes at once, shuts down its write side, then reads until EOF
    /// and notes `done <bytes it wrote>`.
    pub fn source(n: u64) -> Server {
        Server::start("source", move |mut s, notes| {
            let mut buf = vec![0u8; 64 * 1024];
            let mut off = 0u64;
            while off < n {
                let k = (n - off).min(buf.len() as u64) as usize;
                fill_pattern(off, &mut buf[..k]);
                if let Err(e) = s.write_all(&buf[..k]) {
                    notes.add(format!("error after {off} bytes: {e}"));
                    return;
                }
                off += k as u64;
            }
            let _ = s.shutdown(Shutdown::Write);
            while matches!(s.read(&mut buf), Ok(k) if k > 0) {}
            notes.add(format!("done {off}"));
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn notes(&self) -> Vec<String> {
        lock(&self.notes).clone()
    }

    /// Waits until `n` notes are there and returns them.
    pub fn wait_notes(&self, n: usize, timeout: Duration) -> Vec<String> {
        util::wait_until(&format!("{n} note(s) from a test server"), timeout, || {
            lock(&self.notes).len() >= n
        });
        self.notes()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for s in lock(&self.socks).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Bounded byte streams

/// The bytes a reader thread receives (from a socket or a child's stdout), consumed with
/// bounded waits. The thread ends at EOF or on an error.
pub struct Incoming {
    what: String,
    rx: Receiver<Result<Vec<u8>, String>>,
    buf: Vec<u8>,
    eof: bool,
    consumed: u64,
}

impl Incoming {
    pub fn spawn<R: Read + Send + 'static>(what: &str, mut r: R) -> Incoming {
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name(format!("incoming-{what}"))
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match r.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            if tx.send(Ok(buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    }
                }
            })
            .expect("spawn reader thread");
        Incoming {
            what: what.to_string(),
            rx,
            buf: Vec::new(),
            eof: false,
            consumed: 0,
        }
    }

    /// Receives one more piece into the buffer; false at EOF. Panics on a read error or
    /// at `deadline`.
    fn fill(&mut self, deadline: Instant, waiting_for: &str) -> bool {
        if self.eof {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(Ok(data)) => {
                self.buf.extend_from_slice(&data);
                true
            }
            Ok(Err(e)) => panic!(
                "{}: read error after {} bytes while waiting for {waiting_for}: {e}",
                self.what,
                self.consumed + self.buf.len() as u64
            ),
            Err(RecvTimeoutError::Disconnected) => {
                self.eof = true;
                false
            }
            Err(RecvTimeoutError::Timeout) => panic!(
                "{}: timed out waiting for {waiting_for} ({} bytes consumed, {} buffered: {:?})",
                self.what,
                self.consumed,
                self.buf.len(),
                String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
            ),
        }
    }

    /// Exactly `n` bytes; panics on EOF before them or after `timeout`.
    pub fn take(&mut self, n: usize, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        while self.buf.len() < n {
            if !self.fill(deadline, &format!("{n} bytes")) {
                panic!(
                    "{}: EOF after {} of {n} bytes: {:?}",
                    self.what,
                    self.buf.len(),
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
        self.consumed += n as u64;
        self.buf.drain(..n).collect()
    }

    /// Consumes `n` bytes that must be the pattern from stream offset `offset`, checking
    /// each piece as it arrives (nothing large is kept).
    pub fn expect_pattern(&mut self, offset: u64, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut got = 0u64;
        while got < n {
            if self.buf.is_empty() && !self.fill(deadline, &format!("{n} pattern bytes")) {
                panic!("{}: EOF after {got} of {n} pattern bytes", self.what);
            }
            let k = (n - got).min(self.buf.len() as u64) as usize;
            if let Err(e) = check_pattern_at(offset + got, &self.buf[..k]) {
                panic!("{}: {e}", self.what);
            }
            self.buf.drain(..k);
            got += k as u64;
            self.consumed += k as u64;
        }
    }

    /// Everything until EOF.
    pub fn until_eof(&mut self, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        while self.fill(deadline, "EOF") {}
        self.consumed += self.buf.len() as u64;
        std::mem::take(&mut self.buf)
    }

    /// EOF with nothing more before it.
    pub fn expect_eof(&mut self, timeout: Duration) {
        let rest = self.until_eof(timeout);
        assert!(
            rest.is_empty(),
            "{}: expected EOF, got {} more bytes: {:?}",
            self.what,
            rest.len(),
            String::from_utf8_lossy(&rest[..rest.len().min(200)])
        );
    }
}

/// Writes `n` pattern bytes from stream offset `offset` to `w` on a thread, then hands `w`
/// to `finish` (drop it, or shut down its write side). Wait with `fed`.
pub fn feed<W, F>(mut w: W, offset: u64, n: u64, finish: F) -> Receiver<Result<(), String>>
where
    W: Write + Send + 'static,
    F: FnOnce(W) + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("feeder".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut off = 0u64;
            while off < n {
                let k = (n - off).min(buf.len() as u64) as usize;
                fill_pattern(offset + off, &mut buf[..k]);
                if let Err(e) = w.write_all(&buf[..k]) {
                    let _ = tx.send(Err(format!("write failed after {off} bytes: {e}")));
                    return;
                }
                off += k as u64;
            }
            let _ = w.flush();
            finish(w);
            let _ = tx.send(Ok(()));
        })
        .expect("spawn feeder");
    rx
}

/// Waits for a `feed` to finish; panics on its error or after `timeout`.
pub fn fed(rx: &Receiver<Result<(), String>>, timeout: Duration) {
    match rx.recv_timeout(timeout) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("feeding the stream: {e}"),
        Err(e) => panic!("feeding the stream did not finish within {timeout:?}: {e}"),
    }
}

/// `feed`'s finish for sockets: shut down the write side (a half-close).
pub fn half_close(s: TcpStream) {
    s.shutdown(Shutdown::Write).expect("shutdown(Write)");
}

// ---------------------------------------------------------------------------------------
// Client processes with piped stdin and stdout

/// A client process (`rkite --connect`, socat) whose stdin the test writes and whose
/// stdout it reads (`out`); stderr is kept and shown if the test fails. Killed on Drop.
pub struct Piped {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    pub out: Incoming,
    err: Arc<Mutex<Vec<String>>>,
    status: Option<ExitStatus>,
}

impl Piped {
    pub fn spawn(name: &str, mut cmd: Command) -> Piped {
        util::no_proxy_env(&mut cmd);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("failed to spawn {name} ({cmd:?}): {e}"));
        let stdin = child.stdin.take();
        let out = Incoming::spawn(
            &format!("{name} stdout"),
            child.stdout.take().expect("piped stdout"),
        );
        let err: Arc<Mutex<Vec<String>>> = Arc::default();
        let (mut pipe, err2) = (child.stderr.take().expect("piped stderr"), err.clone());
        thread::Builder::new()
            .name(format!("{name}-stderr"))
            .spawn(move || {
                let mut all = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    all.extend_from_slice(&buf[..n]);
                    while let Some(p) = all.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = all.drain(..=p).collect();
                        lock(&err2).push(String::from_utf8_lossy(&line).trim_end().to_string());
                    }
                }
                if !all.is_empty() {
                    lock(&err2).push(String::from_utf8_lossy(&all).into_owned());
                }
            })
            .expect("spawn stderr reader");
        Piped {
            name: name.to_string(),
            child,
            stdin,
            out,
            err,
            status: None,
        }
    }

    /// `rkite ARGS...` with RUST_LOG=debug (its log goes to stderr).
    pub fn rkite(args: &[&str]) -> Piped {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rkite"));
        cmd.args(args)
            .env("RUST_LOG", "debug")
            .env("RUST_BACKTRACE", "1");
        Piped::spawn("rkite-connect", cmd)
    }

    /// The child's stdin (once).
    pub fn stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("stdin already taken")
    }

    pub fn stderr_text(&self) -> String {
        lock(&self.err).join("\n")
    }

    /// Waits up to `timeout` for the exit; panics with its stderr if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.status = Some(s);
                return s;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} still running after {timeout:?}; its stderr:\n{}",
                    self.name,
                    self.stderr_text()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "\n----- stderr of {} -----\n{}\n----- end of {} -----",
                self.name,
                self.stderr_text(),
                self.name
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Raw clients

/// Sends `CONNECT target HTTP/1.1` to 127.0.0.1:`fe_port` and reads the reply head byte
/// by byte (so nothing after it is consumed); returns the stream and the head.
pub fn connect_head(fe_port: u16, target: &str) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&local(fe_port), T).expect("connect to frontend");
    s.set_read_timeout(Some(T)).expect("read timeout");
    s.set_write_timeout(Some(T)).expect("write timeout");
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send CONNECT");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        match s.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "reading the reply to CONNECT {target}: {e} (got {:?})",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    (s, head)
}

/// A raw stream to `target` through a frontend: CONNECT, exactly `CONNECT_OK`, then the
/// stream (with read and write timeouts of `BULK_TIME`).
pub fn connect_raw(fe_port: u16, target: &str) -> TcpStream {
    let (s, head) = connect_head(fe_port, target);
    assert_eq!(
        String::from_utf8_lossy(&head),
        String::from_utf8_lossy(CONNECT_OK),
        "reply to CONNECT {target}"
    );
    s.set_read_timeout(Some(BULK_TIME)).expect("read timeout");
    s.set_write_timeout(Some(BULK_TIME)).expect("write timeout");
    s
}

/// Sends `line`, expects it echoed back within `T`.
pub fn echo_once(s: &mut TcpStream, line: &[u8]) {
    s.write_all(line).expect("send to echo");
    let mut got = vec![0u8; line.len()];
    s.set_read_timeout(Some(T)).expect("read timeout");
    s.read_exact(&mut got).expect("read echo");
    assert_eq!(got, line, "the echo");
}

/// Connects to `addr`, sends `send` and asserts that the connection is closed (EOF or a
/// reset) within `within` without a single byte of reply.
pub fn assert_closed_silently(addr: SocketAddr, send: &[u8], within: Duration) {
    let start = Instant::now();
    let mut s = match TcpStream::connect_timeout(&addr, within) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
        Err(e) => panic!("connect to {addr}: {e}"),
    };
    // The peer may already have closed; a failed write is part of being refused.
    let _ = s.set_write_timeout(Some(within));
    let _ = s.write_all(send);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.saturating_sub(start.elapsed());
        if left.is_zero() {
            panic!(
                "{addr}: still open after {within:?} (got {} bytes: {:?})",
                got.len(),
                String::from_utf8_lossy(&got)
            );
        }
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break, // a reset: closed
        }
    }
    assert!(
        got.is_empty(),
        "{addr}: expected a close without a reply, got {:?}",
        String::from_utf8_lossy(&got)
    );
}
