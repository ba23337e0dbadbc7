//! TLS everywhere (issue 3), end to end with real certificates (`certs.rs`), curl, openssl
//! and Debian pagekite.py: tunnels over TLS between every pairing of rkite and pagekite.py
//! (`tls/tunnel.rs`), and the public side of a frontend: HTTPS passthrough and mutual TLS,
//! termination at `--tls_endpoint`s, the alert for an https kite whose server is down, and
//! bad ClientHellos (`tls/public.rs`). This file holds what both share: a loopback
//! `Recorder` that sits between a backend and a frontend and keeps every byte, real
//! ClientHellos captured from `openssl s_client` and hand-made ones, a ClientHello SNI
//! parser (to check what went over the wire), and `reasons`, the frontend's log lines
//! about one client connection. A test of these helpers runs here.

mod public;
mod tunnel;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::certs::{self, OPENSSL};
use crate::fixture::T;
use crate::util::{self, Proc, local};

/// The alert every "no" to a TLS client is: access denied, in a TLS 1.2 record.
pub const ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31];

/// Bound on how long a frontend may keep a bad or stalled TLS client.
pub const CLOSE_BOUND: Duration = Duration::from_secs(25);

/// Most bytes a `Recorder` keeps per direction of one connection.
const RECORD_LIMIT: usize = 4 * 1024 * 1024;

/// `--tls_endpoint=NAME:<leaf's combined PEM>`.
pub fn endpoint(name: &str, leaf: &certs::Leaf) -> String {
    format!("--tls_endpoint={name}:{}", leaf.pem_str())
}

/// `--ca_certs=<the test CA>`.
pub fn ca_certs(pki: &certs::Pki) -> String {
    format!("--ca_certs={}", pki.ca_cert_str())
}

/// `s` lowercased (ASCII), for case-insensitive byte searches.
pub fn lower(s: &[u8]) -> Vec<u8> {
    s.to_ascii_lowercase()
}

/// True if `hay` contains `needle`, ignoring ASCII case.
pub fn contains_nocase(hay: &[u8], needle: &str) -> bool {
    util::find_subslice(&lower(hay), needle.to_ascii_lowercase().as_bytes()).is_some()
}

// ---------------------------------------------------------------------------------------
// Recorder

/// What one connection through a `Recorder` carried: `up` from the connecting side (the
/// backend), `down` from the target (the frontend).
#[derive(Clone, Debug, Default)]
pub struct Capture {
    pub up: Vec<u8>,
    pub down: Vec<u8>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Shared<T> = Arc<Mutex<T>>;

/// A loopback TCP relay: listens on 127.0.0.1:<port>, connects each client to
/// 127.0.0.1:<target> and copies both ways, recording the bytes before it forwards them
/// (so whatever a peer has received is already in the capture). Stops on Drop.
pub struct Recorder {
    port: u16,
    stop: Arc<AtomicBool>,
    captures: Shared<Vec<Shared<Capture>>>,
    socks: Shared<Vec<TcpStream>>,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    pub fn start(target: u16) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recorder");
        let port = listener.local_addr().expect("recorder addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let captures: Shared<Vec<Shared<Capture>>> = Arc::default();
        let socks: Shared<Vec<TcpStream>> = Arc::default();
        let (stop2, caps2, socks2) = (stop.clone(), captures.clone(), socks.clone());
        let thread = thread::Builder::new()
            .name("recorder-accept".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect_timeout(&local(target), T) else {
                        continue; // the client sees a close, as if the target refused
                    };
                    let cap: Shared<Capture> = Arc::default();
                    lock(&caps2).push(cap.clone());
                    let clones = (client.try_clone(), server.try_clone());
                    let (Ok(c2), Ok(s2)) = clones else { continue };
                    lock(&socks2).extend([c2, s2]);
                    let (Ok(c3), Ok(s3)) = (client.try_clone(), server.try_clone()) else {
                        continue;
                    };
                    let up_cap = cap.clone();
                    let _ = thread::Builder::new()
                        .name("recorder-up".into())
                        .spawn(move || pump(c3, s3, &up_cap, true));
                    let _ = thread::Builder::new()
                        .name("recorder-down".into())
                        .spawn(move || pump(server, client, &cap, false));
                }
            })
            .expect("spawn recorder");
        Recorder {
            port,
            stop,
            captures,
            socks,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every connection so far, in accept order.
    pub fn captures(&self) -> Vec<Capture> {
        lock(&self.captures)
            .iter()
            .map(|c| lock(c).clone())
            .collect()
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, cap: &Mutex<Capture>, up: bool) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        {
            let mut c = lock(cap);
            let side = if up { &mut c.up } else { &mut c.down };
            if side.len() < RECORD_LIMIT {
                side.extend_from_slice(&buf[..n]);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            let _ = from.shutdown(Shutdown::Both);
            return;
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&local(self.port), Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for s in lock(&self.socks).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Panics if any recorded connection carries tunnel protocol or one of `secrets` in clear.
pub fn assert_no_cleartext(caps: &[Capture], secrets: &[&str]) {
    for (i, cap) in caps.iter().enumerate() {
        for needle in ["CONNECT PageKite:", "X-PageKite:"].iter().chain(secrets) {
            assert!(
                !contains_nocase(&cap.up, needle),
                "connection {i}: {needle:?} in clear from the backend: {:?}",
                String::from_utf8_lossy(&cap.up[..cap.up.len().min(600)])
            );
        }
        for needle in ["X-PageKite-OK:", "X-PageKite-SignThis:"]
            .iter()
            .chain(secrets)
        {
            assert!(
                !contains_nocase(&cap.down, needle),
                "connection {i}: {needle:?} in clear from the frontend: {:?}",
                String::from_utf8_lossy(&cap.down[..cap.down.len().min(600)])
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// ClientHellos

/// A real ClientHello from `openssl s_client` (TLS 1.3 and 1.2 offered), with SNI `sni`
/// or none: s_client connects to a listener here, the first TLS record is kept, and
/// s_client is killed.
pub fn client_hello(sni: Option<&str>) -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind hello catcher");
    listener.set_nonblocking(true).expect("nonblocking");
    let connect = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
    let mut args = vec!["s_client", "-connect", &connect];
    match sni {
        Some(name) => args.extend(["-servername", name]),
        None => args.push("-noservername"),
    }
    let s_client = Proc::start("s_client-hello", OPENSSL, &args, &[]);
    let mut conn = None;
    util::wait_until("s_client connects to the hello catcher", T, || {
        match listener.accept() {
            Ok((s, _)) => conn = Some(s),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        conn.is_some()
    });
    let mut s = conn.expect("accepted");
    s.set_nonblocking(false).expect("blocking");
    s.set_read_timeout(Some(T)).expect("timeout");
    let mut head = [0u8; 5];
    s.read_exact(&mut head).expect("a TLS record header");
    assert_eq!(head[0], 0x16, "s_client starts with a handshake record");
    let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
    let mut hello = head.to_vec();
    hello.resize(5 + len, 0);
    s.read_exact(&mut hello[5..])
        .expect("the whole ClientHello record");
    drop(s_client);
    hello
}

fn push_u16(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u16::try_from(n).expect("fits in u16").to_be_bytes());
}

fn push_ext(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    push_u16(out, data.len());
    out.extend_from_slice(data);
}

/// A well-formed TLS 1.3 ClientHello made by hand, whose server_name is `sni` whatever
/// its length (so it can be longer than DNS allows). Its key share is not a real key: it
/// is for parsers, not for finishing a handshake.
pub fn crafted_client_hello(sni: &[u8]) -> Vec<u8> {
    let mut list = vec![0u8];
    push_u16(&mut list, sni.len());
    list.extend_from_slice(sni);
    let mut server_name = Vec::new();
    push_u16(&mut server_name, list.len());
    server_name.extend(list);
    let mut ext = Vec::new();
    push_ext(&mut ext, 0, &server_name);
    push_ext(&mut ext, 10, &[0, 2, 0, 0x1d]); // supported_groups: x25519
    push_ext(&mut ext, 13, &[0, 4, 4, 3, 8, 4]); // signature_algorithms
    push_ext(&mut ext, 43, &[4, 3, 4, 3, 3]); // supported_versions: 1.3, 1.2
    let mut share = vec![0, 36, 0, 0x1d, 0, 32];
    share.extend([0x42; 32]);
    push_ext(&mut ext, 51, &share); // key_share
    let mut body = vec![3, 3];
    body.extend([0x5a; 32]); // random
    body.push(32);
    body.extend([0x33; 32]); // legacy session id
    body.extend([0, 6, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03]); // cipher suites
    body.extend([1, 0]); // compression: null
    push_u16(&mut body, ext.len());
    body.extend(ext);
    let len = u32::try_from(body.len()).expect("small").to_be_bytes();
    let mut hs = vec![1, len[1], len[2], len[3]];
    hs.extend(body);
    let mut record = vec![0x16, 3, 1];
    push_u16(&mut record, hs.len());
    record.extend(hs);
    record
}

/// A cursor for the hello parsers; every read fails with a message past the end.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let (head, tail) = self.0.split_at_checked(n).ok_or("truncated ClientHello")?;
        self.0 = tail;
        Ok(head)
    }
    fn vec(&mut self, width: usize) -> Result<&'a [u8], String> {
        let n = self
            .take(width)?
            .iter()
            .fold(0usize, |a, &b| a << 8 | usize::from(b));
        self.take(n)
    }
}

/// The body of the hello at the start of `bytes` (its first record), past the version,
/// random and session id both hellos begin with; Err unless it is a handshake message of
/// type `kind` (1 ClientHello, 2 ServerHello).
fn hello_body<'a>(bytes: &'a [u8], kind: u8, what: &str) -> Result<Cursor<'a>, String> {
    let mut r = Cursor(bytes);
    let header = r.take(5)?;
    if header[0] != 0x16 {
        return Err(format!("not a handshake record: {:#04x}", header[0]));
    }
    let mut rec = Cursor(r.take(usize::from(u16::from_be_bytes([header[3], header[4]])))?);
    if rec.take(1)? != [kind] {
        return Err(format!("not a {what}"));
    }
    let mut body = Cursor(rec.vec(3)?);
    body.take(34)?; // version, random
    body.vec(1)?; // session id
    Ok(body)
}

/// The SNI of the ClientHello at the start of `bytes` (its first record), None if it has
/// none; Err if `bytes` does not start with a ClientHello.
pub fn hello_sni(bytes: &[u8]) -> Result<Option<String>, String> {
    let mut body = hello_body(bytes, 1, "ClientHello")?;
    body.vec(2)?; // cipher suites
    body.vec(1)?; // compression
    let mut exts = Cursor(body.vec(2)?);
    while !exts.0.is_empty() {
        let kind = exts.take(2)?;
        let data = exts.vec(2)?;
        if kind == [0, 0] {
            let mut list = Cursor(Cursor(data).vec(2)?);
            list.take(1)?; // name type: host_name
            let name = list.vec(2)?;
            return Ok(Some(String::from_utf8_lossy(name).into_owned()));
        }
    }
    Ok(None)
}

/// The cipher suite (its two-byte code) of the ServerHello at the start of `bytes`,
/// which TLS sends in clear (in TLS 1.3 too): what the handshake agreed on.
pub fn server_hello_suite(bytes: &[u8]) -> Result<u16, String> {
    let suite = hello_body(bytes, 2, "ServerHello")?.take(2)?;
    Ok(u16::from_be_bytes([suite[0], suite[1]]))
}

/// The TLS 1.3 suite rkite offers first on this machine: AES-128-GCM (0x1301) with AES
/// instructions (x86 `aes` + `pclmulqdq`, ARM `aes` + `pmull`), ChaCha20-Poly1305
/// (0x1303) without.
pub fn fastest_suite() -> u16 {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let has = |flag: &str| {
        cpu.lines()
            .filter(|l| l.starts_with("flags") || l.starts_with("Features"))
            .any(|l| l.split_whitespace().any(|w| w == flag))
    };
    let aes = if cfg!(target_arch = "x86_64") {
        has("aes") && has("pclmulqdq")
    } else if cfg!(target_arch = "aarch64") {
        has("aes") && has("pmull")
    } else {
        false
    };
    if aes { 0x1301 } else { 0x1303 }
}

// ---------------------------------------------------------------------------------------
// Bad-client bookkeeping

/// Reads from `s` until the peer closes (EOF or reset): Ok(everything received). Err(what
/// had arrived) if it is still open after `timeout`.
pub fn read_to_close(s: &mut TcpStream, timeout: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(got);
        }
        s.set_read_timeout(Some(left)).expect("set timeout");
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Ok(got), // a reset closes it too
        }
    }
}

/// The frontend's log lines at INFO level or above that name the client `peer`
/// (`127.0.0.1:PORT`, not followed by another digit): why it dropped that client.
pub fn reasons(fe: &Proc, peer: SocketAddr) -> Vec<String> {
    let addr = peer.to_string();
    fe.lines()
        .into_iter()
        .filter(|l| {
            let level = l.split_whitespace().nth(1).unwrap_or("");
            matches!(level, "INFO" | "WARN" | "ERROR")
                && l.match_indices(&addr).any(|(at, _)| {
                    !l[at + addr.len()..]
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_digit())
                })
        })
        .collect()
}

/// Waits until the frontend has logged a reason for dropping `peer`, then insists that
/// it logged exactly one (INFO or above).
pub fn assert_one_reason(fe: &Proc, peer: SocketAddr, what: &str) -> String {
    util::wait_until(
        &format!("the frontend logs why it closed {what}"),
        T,
        || !reasons(fe, peer).is_empty(),
    );
    let found = reasons(fe, peer);
    assert_eq!(found.len(), 1, "{what}: one reason, not {found:#?}");
    eprintln!("{what}: {}", found[0]);
    found[0].clone()
}

#[test]
fn hello_helpers_agree_with_openssl() {
    if !util::require_peer(OPENSSL) {
        return;
    }
    let named = client_hello(Some("App.Example.test"));
    assert_eq!(hello_sni(&named), Ok(Some("App.Example.test".into())));
    assert_eq!(hello_sni(&client_hello(None)), Ok(None));
    let long = "a".repeat(300);
    let crafted = crafted_client_hello(long.as_bytes());
    assert_eq!(hello_sni(&crafted), Ok(Some(long)));
    assert_eq!(
        hello_sni(&crafted_client_hello(b"x.example.test")),
        Ok(Some("x.example.test".into()))
    );
    assert!(hello_sni(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00").is_err());
}
