//! The static binary on its own (issue 7). `make static` leaves a fully static rkite in
//! `dist/` (`rkite-x86_64-unknown-linux-musl`, or the glibc `+crt-static` fallback
//! `rkite-x86_64-unknown-linux-gnu`; `RKITE_STATIC_BIN=PATH` picks another), and this file
//! owns the proof that it starts and works with nothing installed: each test builds an
//! empty chroot holding only `/rkite`, the PEM files it needs and an `/etc/hosts` that maps
//! `relay.test` and `origin.test` to 127.0.0.1 (no `/lib`, no `/etc/nsswitch.conf`, no
//! `/etc/resolv.conf`, no `/dev`, no CA bundle), and runs the frontend and the backend in
//! it. A dynamically linked binary cannot even start there, and the backend reaches its
//! frontend and its origin by those made-up names, so name resolution inside the static
//! binary is exercised too. One test relays plain HTTP, the other tunnels backend to
//! frontend over TLS (`--tls_endpoint`, `--fe_certname`, `--ca_certs`, certificates made
//! with the openssl CLI) and checks that a backend trusting another CA is refused.
//!
//! The origin is a std `TcpListener` thread outside the chroot, the client is curl; the
//! frontend listens on a port the kernel picks (`--ports=0`, read back from its `listening
//! on` line) and every wait polls a log with a deadline. Processes are killed on drop.
//! `chroot` needs root: without root, or without a static binary, or without curl/openssl,
//! a test prints a note and passes, except under `CI=true` where it fails.

#![allow(clippy::disallowed_methods)] // Instant::now: test deadlines, not the reactor's clock.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What `make static` builds, best first.
const CANDIDATES: [&str; 2] = [
    "dist/rkite-x86_64-unknown-linux-musl",
    "dist/rkite-x86_64-unknown-linux-gnu",
];

/// How long a process may take to print a line we wait for.
const READY: Duration = Duration::from_secs(20);

/// Poll interval for log lines.
const POLL: Duration = Duration::from_millis(10);

/// The chroot's whole name service.
const HOSTS: &str = "127.0.0.1 localhost relay.test origin.test\n";

const SECRET: &str = "static-bin-secret";

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Fails under `CI=true`, otherwise prints `SKIPPED: why`.
fn skip(why: &str) {
    assert!(!ci(), "{why} (under CI=true this is a failure)");
    eprintln!("SKIPPED: {why}");
}

/// The static binary and what the test needs to run it, or None (after `skip`).
fn setup(tools: &[&str]) -> Option<PathBuf> {
    let bin = match std::env::var_os("RKITE_STATIC_BIN") {
        Some(p) => Some(PathBuf::from(p)),
        None => CANDIDATES
            .iter()
            .map(|c| Path::new(env!("CARGO_MANIFEST_DIR")).join(c))
            .find(|p| p.is_file()),
    };
    let Some(bin) = bin else {
        skip("no static binary in dist/ (run `make static`)");
        return None;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        skip("chroot needs root");
        return None;
    }
    for tool in tools {
        if !on_path(tool) {
            skip(&format!("{tool} not installed"));
            return None;
        }
    }
    Some(bin)
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(cmd).is_file()))
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("rkite-static-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("RKITE_STATIC_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// An empty root with `/rkite`, `/etc/hosts` and whatever `files` (name, content) holds.
fn make_root(bin: &Path, files: &[(&str, Vec<u8>)]) -> TempDir {
    let root = TempDir::new("root");
    std::fs::copy(bin, root.path().join("rkite")).expect("copy the static binary");
    std::fs::create_dir(root.path().join("etc")).expect("mkdir etc");
    std::fs::write(root.path().join("etc/hosts"), HOSTS).expect("write etc/hosts");
    for (name, content) in files {
        std::fs::write(root.path().join(name), content).expect("write a file into the root");
    }
    let mut all = list(root.path(), root.path());
    all.sort();
    let mut want: Vec<String> = ["/etc", "/etc/hosts", "/rkite"]
        .iter()
        .map(|s| s.to_string())
        .chain(files.iter().map(|(n, _)| format!("/{n}")))
        .collect();
    want.sort();
    assert_eq!(all, want, "the chroot holds only what the test put there");
    root
}

fn list(base: &Path, dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("dir entry").path();
        let rel = p.strip_prefix(base).expect("under base").display();
        out.push(format!("/{rel}"));
        if p.is_dir() {
            out.extend(list(base, &p));
        }
    }
    out
}

/// A child process with its stdout and stderr collected line by line; killed on drop.
struct Proc {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// `/rkite ARGS` chrooted into `root`, with an empty environment but `RUST_LOG=debug`.
    fn rkite_in(root: &Path, name: &str, args: &[&str]) -> Proc {
        let root_c = CString::new(root.as_os_str().as_bytes()).expect("root path has no NUL");
        let mut cmd = Command::new("/rkite");
        cmd.args(args).env_clear().env("RUST_LOG", "debug");
        // SAFETY: the closure runs in the forked child before exec and only makes two
        // async-signal-safe system calls on memory allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::chroot(root_c.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Proc::spawn(name, cmd)
    }

    fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {name} ({cmd:?}): {e} (in an empty chroot, a dynamically \
                     linked binary fails with ENOENT: its loader is missing)"
            )
        });
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        collect(out, Arc::clone(&lines));
        collect(err, Arc::clone(&lines));
        Proc {
            name: name.to_string(),
            child,
            lines,
        }
    }

    fn log(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// The first log line that contains every one of `needles`; panics, showing the log,
    /// if the process exits or `READY` passes first.
    fn wait_line(&mut self, needles: &[&str]) -> String {
        let deadline = Instant::now() + READY;
        loop {
            let found = self
                .lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                thread::sleep(Duration::from_millis(50)); // let the readers drain the pipes
                panic!(
                    "{} exited ({status}) before logging {needles:?}:\n{}",
                    self.name,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not log {needles:?} within {READY:?}:\n{}",
                self.name,
                self.log()
            );
            thread::sleep(POLL);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(pipe: impl Read + Send + 'static, lines: Arc<Mutex<Vec<String>>>) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    });
}

/// An origin on 127.0.0.1 (a free port) that answers every request with `body`. Its
/// thread lives as long as the test process.
fn origin(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the origin");
    let port = listener.local_addr().expect("origin address").port();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            thread::spawn(move || serve(conn, body));
        }
    });
    port
}

fn serve(mut conn: TcpStream, body: &str) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(reply.as_bytes());
}

/// `curl` for `http://127.0.0.1:port/` with `Host: foo.test`; its body, or a panic.
fn curl_foo(port: u16) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "15"])
        .args(["-H", "Host: foo.test"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl through the frontend on port {port} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 body")
}

/// Starts the frontend in `root` with `extra` flags; returns it and its port.
fn frontend(root: &Path, extra: &[&str]) -> (Proc, u16) {
    let domain = format!("--domain=http:foo.test:{SECRET}");
    let mut args = vec![
        "--isfrontend",
        "--host=127.0.0.1",
        "--ports=0",
        domain.as_str(),
    ];
    args.extend_from_slice(extra);
    let mut fe = Proc::rkite_in(root, "frontend", &args);
    let line = fe.wait_line(&["listening on 127.0.0.1:"]);
    let port = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (fe, port)
}

/// Starts a backend in `root` for `foo.test` -> `origin.test:origin_port` via
/// `relay.test:fe_port`, with `extra` flags.
fn backend(root: &Path, name: &str, fe_port: u16, origin_port: u16, extra: &[&str]) -> Proc {
    let fe = format!("--frontend=relay.test:{fe_port}");
    let kite = format!("--service_on=http:foo.test:origin.test:{origin_port}:{SECRET}");
    let mut args = vec![fe.as_str(), kite.as_str()];
    args.extend_from_slice(extra);
    Proc::rkite_in(root, name, &args)
}

#[test]
fn static_binary_relays_http_from_an_empty_chroot() {
    let Some(bin) = setup(&["curl"]) else { return };
    eprintln!("static binary: {}", bin.display());
    let root = make_root(&bin, &[]);

    let version = Command::new(&bin)
        .arg("--version")
        .output()
        .expect("run --version");
    assert!(version.status.success(), "--version: {version:?}");

    const BODY: &str = "hello from behind the static kite\n";
    let origin_port = origin(BODY);
    let (_fe, fe_port) = frontend(root.path(), &["--protos=http"]);
    let mut be = backend(root.path(), "backend", fe_port, origin_port, &[]);
    be.wait_line(&["kite", "foo.test", "is live"]);

    assert_eq!(curl_foo(fe_port), BODY);
}

/// `openssl WORDS... MORE...` in `dir` (WORDS split on whitespace); panics on failure.
fn openssl(dir: &Path, words: &str, more: &[&str]) {
    let args: Vec<&str> = words
        .split_whitespace()
        .chain(more.iter().copied())
        .collect();
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const REQ_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:relay.test
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

fn serial() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("0x{:016x}", nanos as u64)
}

/// A self-signed EC CA `NAME.key` / `NAME.pem` in `dir`.
fn make_ca(dir: &Path, name: &str) {
    let (key, pem, subj) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("/CN=rkite static {name} Test CA"),
    );
    openssl(
        dir,
        "req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
         -config req.cnf -extensions ca_ext",
        &[
            "-keyout",
            &key,
            "-out",
            &pem,
            "-subj",
            &subj,
            "-set_serial",
            &serial(),
        ],
    );
}

/// A CA (`ca.pem`), a server certificate for relay.test issued by it, combined as key +
/// certificate + CA into `relay.pem` (what `--tls_endpoint` reads), and an unrelated CA
/// (`other.pem`). Returns (ca.pem, relay.pem, other.pem) contents.
fn make_certs() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let tmp = TempDir::new("pki");
    let dir = tmp.path();
    std::fs::write(dir.join("req.cnf"), REQ_CNF).expect("write req.cnf");
    make_ca(dir, "ca");
    make_ca(dir, "other");
    openssl(
        dir,
        "req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -config req.cnf \
         -keyout relay.key -out relay.csr -subj /CN=relay.test",
        &[],
    );
    openssl(
        dir,
        "x509 -req -in relay.csr -CA ca.pem -CAkey ca.key -days 2 -extfile req.cnf \
         -extensions leaf_ext -out relay.crt",
        &["-set_serial", &serial()],
    );
    let read = |n: &str| std::fs::read(dir.join(n)).expect("read a PEM");
    let ca = read("ca.pem");
    let mut relay = read("relay.key");
    relay.extend(read("relay.crt"));
    relay.extend(&ca);
    (ca, relay, read("other.pem"))
}

#[test]
fn static_binary_tunnels_over_verified_tls_from_an_empty_chroot() {
    let Some(bin) = setup(&["curl", "openssl"]) else {
        return;
    };
    eprintln!("static binary: {}", bin.display());
    let (ca, relay, other) = make_certs();
    let root = make_root(
        &bin,
        &[("ca.pem", ca), ("relay.pem", relay), ("other.pem", other)],
    );

    const BODY: &str = "hello over a verified TLS tunnel\n";
    let origin_port = origin(BODY);
    let (_fe, fe_port) = frontend(root.path(), &["--tls_endpoint=relay.test:/relay.pem"]);

    // A backend that trusts another CA must not get its kite up.
    let mut stranger = backend(
        root.path(),
        "backend trusting another CA",
        fe_port,
        origin_port,
        &["--fe_certname=relay.test", "--ca_certs=/other.pem"],
    );
    let refused = stranger.wait_line(&["ERROR", "relay.test", "TLS"]);
    eprintln!("refused as it should be: {refused}");
    assert!(
        !stranger.log().contains("is live"),
        "a backend trusting another CA went live:\n{}",
        stranger.log()
    );
    drop(stranger);

    let mut be = backend(
        root.path(),
        "backend",
        fe_port,
        origin_port,
        &["--fe_certname=relay.test", "--ca_certs=/ca.pem"],
    );
    be.wait_line(&["kite", "foo.test", "is live"]);

    assert_eq!(curl_foo(fe_port), BODY);
}
