//! Generic plumbing for the end-to-end tests: free ports, per-test temp dirs, bounded
//! condition waits, peer detection and spawning the rkite binary. Child processes with
//! captured logs (`Proc`) live in `util/proc.rs`; the curl wrapper and the raw-TCP HTTP
//! client in `util/http.rs`; both are re-exported here, so tests just `use crate::util::..`.
//! Nothing here knows about PageKite: the peers are in `peers.rs`, origins in `origin.rs`.
//!
//! Every wait has a deadline and fails the test with a message saying what was awaited;
//! every spawned process is killed and reaped when its `Proc` is dropped. Scratch files
//! live under one directory per run, removed at exit (set RKITE_E2E_KEEP=1 to keep it).

#![allow(dead_code)] // Helpers are shared by several test modules; not all use all of them.

mod http;
mod proc;

#[allow(unused_imports)] // Re-exported for the test modules; not all use all of them.
pub use http::{
    CurlDownload, CurlResult, RawResponse, curl, curl_to_file, find_subslice, http_request,
    http_request_half_close, raw_exchange, try_curl,
};
pub use proc::Proc;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Polling interval for conditions that have no notification (ports, exit status).
const POLL: Duration = Duration::from_millis(10);

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

/// A process-unique number, for file and directory names.
pub fn unique() -> usize {
    UNIQUE.fetch_add(1, Ordering::Relaxed)
}

/// A TCP port that was free on 127.0.0.1 a moment ago (bind to port 0, read it, drop).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    l.local_addr().expect("local_addr of probe listener").port()
}

/// `127.0.0.1:port` as a SocketAddr.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

static RUN_ROOT: OnceLock<PathBuf> = OnceLock::new();

/// This run's scratch root: `<system temp>/rkite-e2e-<pid>/`. It is removed when the test
/// binary exits (an atexit handler), unless `RKITE_E2E_KEEP` is set in the environment.
pub fn run_root() -> &'static Path {
    RUN_ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("rkite-e2e-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root); // a leftover from a dead run with our pid
        std::fs::create_dir_all(&root).expect("create the run's temp root");
        if std::env::var_os("RKITE_E2E_KEEP").is_none() {
            // SAFETY: registers a plain extern "C" fn that captures nothing.
            unsafe {
                libc::atexit(remove_run_root);
            }
        }
        root
    })
}

extern "C" fn remove_run_root() {
    if let Some(root) = RUN_ROOT.get() {
        let _ = std::fs::remove_dir_all(root);
    }
}

/// A fresh, empty directory `<run_root>/<name>-<n>`, unique per call.
pub fn temp_dir(name: &str) -> PathBuf {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = run_root().join(format!("{clean}-{}", unique()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Waits until `cond()` is true, polling every 10 ms; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        thread::sleep(POLL);
    }
}

/// Waits until a TCP connect to `addr` succeeds (the connection is closed at once).
pub fn wait_port(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let err = match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return,
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            let last_err = err.to_string();
            panic!(
                "timed out after {timeout:?} waiting for {addr} to accept (last error: {last_err})"
            );
        }
        thread::sleep(POLL);
    }
}

/// True if `cmd` is an executable file in one of the PATH directories.
fn on_path(cmd: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(cmd))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// True if the peer program `cmd` is installed. When it is missing: under `CI=true` the
/// test fails; elsewhere it prints "SKIPPED: cmd not installed" and returns false, and the
/// caller returns early.
pub fn require_peer(cmd: &str) -> bool {
    if on_path(cmd) {
        return true;
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("peer {cmd} missing under CI=true (install it; see the Makefile / .ci/run)");
    }
    eprintln!("SKIPPED: {cmd} not installed");
    false
}

/// True if this test may make namespaces of its own (root and `unshare`,
/// for a private /etc/hosts or network). Without them: under `CI=true` the
/// test fails; elsewhere it says why `test` skips and returns false.
pub fn require_namespaces(test: &str) -> bool {
    if !require_peer("unshare") {
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} needs root (namespaces of its own) under CI=true");
    }
    eprintln!("SKIPPED: {test} needs root for namespaces of its own");
    false
}

/// Spawns the rkite binary under test with `RUST_LOG=debug` (or the RUST_LOG of the test
/// run, if set), `RUST_BACKTRACE=1` and no proxy variables. rkite logs to stderr, which
/// `Proc` captures.
pub fn rkite(args: &[&str]) -> Proc {
    rkite_env(args, &[])
}

/// Like `rkite`, with extra environment variables applied last (so `("RUST_LOG", "trace")`
/// overrides the default).
pub fn rkite_env(args: &[&str], envs: &[(&str, &str)]) -> Proc {
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "debug".to_string());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rkite"));
    no_proxy_env(&mut cmd);
    cmd.args(args)
        .env("RUST_LOG", level)
        .env("RUST_BACKTRACE", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    Proc::spawn("rkite", cmd)
}

/// Removes the proxy variables that curl and pagekite.py would otherwise honour.
pub fn no_proxy_env(cmd: &mut Command) {
    for v in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        cmd.env_remove(v);
    }
}
