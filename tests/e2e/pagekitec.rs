//! libpagekite's `pagekitec` (the C backend that OpenWrt's `pagekitec` package runs) against
//! an rkite frontend: plain and TLS tunnels serve a kite and carry 20 MB intact, a wrong
//! secret is refused (logged by the frontend, visitors get the unavailable page), and
//! pagekitec comes back by itself after the frontend restarts on the same port. Speed is
//! measured in bench/pagekitec.py, never asserted here.
//!
//! pagekitec is built once per run from the vendored tarball (tests/data/libpagekite/) into
//! `<cargo target dir>/pagekitec-6222720/`, kept across runs, behind an flock so parallel
//! test binaries never build it twice. It looks up its frontend's and kite's names and,
//! when those fail, a public name, so it runs in a private mount namespace (`unshare -m`,
//! as root) where `/etc/hosts` maps every name it is given to 127.0.0.1 and
//! `/etc/resolv.conf` names only 127.0.0.1: nothing it does can leave loopback. Without
//! root, the build tools or a working build the tests are skipped, and fail under CI=true.
//!
//! What made pagekitec slow through rkite is also checked without it, by a hand-made
//! backend that writes a chunk's header alone and waits: the frontend must answer with an
//! SKB before the body comes (pagekitec, with Nagle on, holds the body until then).

use std::fs::File;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use rkite::proto::frame;
use rkite::proto::handshake::KiteAnswer;

use crate::certs::{OPENSSL, pki};
use crate::fixture::{self, T, frontend, get, live};
use crate::origin::{INDEX_BODY, Origin, check_pattern_file};
use crate::robust::{fake_backend, read_until};
use crate::util::{self, Proc, free_port, local};

/// libpagekite's commit, as in the tarball's name and its top directory.
pub const COMMIT: &str = "6222720";
const TARBALL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/libpagekite/libpagekite-6222720.tar.gz"
);
/// What the build may take at most (about a minute on two cores).
const BUILD_BOUND: Duration = Duration::from_secs(600);
/// pagekitec retries a lost frontend on its housekeeping tick, every 16–21 s.
const RECONNECT_BOUND: Duration = Duration::from_secs(90);
const KITE: &str = "a.test";
const FE_NAME: &str = "relay.test";
const SECRET: &str = "s3cret";
const BIG: usize = 20 * 1024 * 1024;

/// The commands and headers the build needs (Debian: build-essential pkg-config libtool
/// automake autoconf libev-dev libssl-dev; `make test` installs them).
const TOOLS: &[&str] = &[
    "tar",
    "make",
    "cc",
    "pkg-config",
    "autoreconf",
    "automake",
    "libtoolize",
    "unshare",
    "mount",
];
const HEADERS: &[&str] = &["/usr/include/ev.h", "/usr/include/openssl/ssl.h"];

static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The install prefix of a built pagekitec (`bin/pagekitec`, `lib/`), building it on first
/// use. None means skip: the reason was printed. Under CI=true it panics instead.
fn pagekitec() -> Option<&'static Path> {
    match BUILT.get_or_init(prepare) {
        Ok(prefix) => Some(prefix),
        Err(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("pagekitec unavailable under CI=true: {why}");
            }
            eprintln!("SKIPPED: pagekitec: {why}");
            None
        }
    }
}

fn has_command(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", "command -v \"$0\"", cmd])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn prepare() -> Result<PathBuf, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root for its private mount namespace (unshare -m)".into());
    }
    let missing: Vec<&str> = TOOLS.iter().copied().filter(|c| !has_command(c)).collect();
    let missing_headers: Vec<&str> = HEADERS
        .iter()
        .copied()
        .filter(|h| !Path::new(h).is_file())
        .collect();
    if !missing.is_empty() || !missing_headers.is_empty() {
        return Err(format!(
            "build tools missing: {missing:?} {missing_headers:?} (run `make deps`)"
        ));
    }
    let ns = Command::new("unshare")
        .args(["-m", "true"])
        .stderr(Stdio::null())
        .status();
    if !ns.is_ok_and(|s| s.success()) {
        return Err("`unshare -m true` fails here (no CAP_SYS_ADMIN?)".into());
    }
    // CARGO_BIN_EXE_rkite is <target dir>/<profile>/rkite.
    let target = Path::new(env!("CARGO_BIN_EXE_rkite"))
        .parent()
        .and_then(Path::parent)
        .ok_or("no cargo target dir")?;
    build_cached(target)
}

/// Builds into `<target>/pagekitec-<commit>/` unless it is there already. Another test
/// binary may be building it at the same moment: an exclusive flock on a lock file beside
/// it serialises them, and the finished tree appears by one atomic rename.
fn build_cached(target: &Path) -> Result<PathBuf, String> {
    let dir = target.join(format!("pagekitec-{COMMIT}"));
    let prefix = dir.join("inst");
    let lock_path = target.join(format!("pagekitec-{COMMIT}.lock"));
    let lock = File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    let deadline = Instant::now() + BUILD_BOUND;
    // SAFETY: flock on a descriptor we own; LOCK_NB so the wait stays bounded.
    while unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        if Instant::now() >= deadline {
            return Err("timed out waiting for another build of pagekitec".into());
        }
        thread::sleep(Duration::from_millis(100));
    }
    if prefix.join("bin/pagekitec").is_file() {
        return Ok(prefix);
    }
    let work = target.join(format!("pagekitec-{COMMIT}.build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let log = work.join("build.log");
    let started = Instant::now();
    // The recipe of tests/data/libpagekite/README.md; bench/pagekitec.py runs the same.
    let script = "tar xzf \"$1\" && cd libpagekite-* && ./autogen.sh && \
                  ./configure --prefix=\"$2/inst\" --without-java && make -j2 && make install";
    let work_str = work.to_str().ok_or("target dir is not UTF-8")?;
    run_bounded(
        Command::new("sh")
            .args(["-c", script, "build", TARBALL, work_str])
            .current_dir(&work),
        &log,
        deadline,
    )
    .map_err(|e| format!("{e}; see {}", log.display()))?;
    if !work.join("inst/bin/pagekitec").is_file() {
        return Err(format!(
            "no inst/bin/pagekitec after the build; see {}",
            log.display()
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&work, &dir).map_err(|e| format!("rename to {}: {e}", dir.display()))?;
    eprintln!("built pagekitec in {:.0?}", started.elapsed());
    Ok(prefix)
}

/// Runs `cmd` with stdout and stderr into `log`; Err if it fails or outlives `deadline`.
fn run_bounded(cmd: &mut Command, log: &Path, deadline: Instant) -> Result<(), String> {
    let out = File::create(log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("spawn the build: {e}"))?;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("the build failed ({status})")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the build took too long".into());
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// pagekitec flying `http:a.test` from 127.0.0.1:`origin` to the frontend `relay.test` on
/// port `fe_port`, in its own mount namespace; `tls` false adds `-I` (a plain tunnel).
fn spawn(prefix: &Path, fe_port: u16, origin: u16, secret: &str, tls: bool) -> Proc {
    let dir = util::temp_dir("pagekitec-ns");
    let hosts = dir.join("hosts");
    let resolv = dir.join("resolv.conf");
    std::fs::write(
        &hosts,
        format!("127.0.0.1 localhost\n127.0.0.1 {FE_NAME} {KITE}\n"),
    )
    .expect("write hosts");
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").expect("write resolv.conf");
    // unshare -m makes the mounts private to this namespace (util-linux's default
    // propagation); the script then execs pagekitec with its arguments as "$@".
    let script = "mount --bind \"$1\" /etc/hosts && mount --bind \"$2\" /etc/resolv.conf \
                  && shift 2 && exec \"$@\"";
    let mut cmd = Command::new("unshare");
    util::no_proxy_env(&mut cmd);
    cmd.args(["-m", "sh", "-c", script, "pagekitec"])
        .arg(&hosts)
        .arg(&resolv)
        .arg(prefix.join("bin/pagekitec"))
        .args(["-S", "-N", "-C", "-F", FE_NAME, "-P", &fe_port.to_string()]);
    if !tls {
        cmd.arg("-I");
    }
    cmd.args([&origin.to_string(), "http", KITE, "0", secret])
        .env("LD_LIBRARY_PATH", prefix.join("lib"));
    Proc::spawn("pagekitec", cmd)
}

fn check_served(port: u16) {
    let page = get(port, KITE, "/");
    assert_eq!((page.status, page.body_str().as_str()), (200, INDEX_BODY));
    let url = format!("http://127.0.0.1:{port}/bytes/{BIG}");
    let dl = util::curl_to_file(&["--max-time", "120", "-H", &format!("Host: {KITE}"), &url]);
    assert_eq!(dl.status, 200);
    assert_eq!(check_pattern_file(&dl.path), Ok(BIG as u64));
}

fn domain() -> String {
    format!("http:{KITE}:{SECRET}")
}

#[test]
fn plain_tunnel_serves_and_carries_20_mb_intact() {
    let Some(prefix) = pagekitec() else {
        return;
    };
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &[&domain()], &[]);
    let _be = spawn(prefix, port, origin.port(), SECRET, false);
    live(&fe, &format!("http:{KITE}"));
    check_served(port);
    // An upload is spliced into the plain tunnel, in bodies of at most
    // 16,320 bytes for a backend that is not rkite.
    fixture::upload_checked(port, KITE, 8_000_000);
    assert!(!fe.contains("the tunnel runs over TLS"));
}

#[test]
fn tls_tunnel_serves_and_carries_20_mb_intact() {
    if !util::require_peer(OPENSSL) {
        return;
    }
    let Some(prefix) = pagekitec() else {
        return;
    };
    let origin = Origin::start();
    let port = free_port();
    let cert = pki().leaf(&[FE_NAME]);
    let endpoint = crate::tls::endpoint(FE_NAME, &cert);
    let fe = frontend(&[port], &[&domain()], &[&endpoint]);
    let _be = spawn(prefix, port, origin.port(), SECRET, true);
    live(&fe, &format!("http:{KITE}"));
    // TLS at once, with -F's name as SNI, answered with --tls_endpoint's certificate.
    fe.wait_for(&format!("terminating TLS for {FE_NAME} as {FE_NAME}"), T);
    fe.wait_for("the tunnel runs over TLS", T);
    check_served(port);
}

#[test]
fn wrong_secret_is_rejected() {
    let Some(prefix) = pagekitec() else {
        return;
    };
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &[&domain()], &[]);
    let be = spawn(prefix, port, origin.port(), "WRONG", false);
    fe.wait_for(&format!("kite http:{KITE} rejected: signature"), T);
    be.wait_for("Rejected by front-end", T);
    let page = get(port, KITE, "/");
    assert_eq!(page.status, 503);
    assert!(
        page.body_str().contains("Sorry! (fe)"),
        "{}",
        page.body_str()
    );
    assert!(!fe.contains(&format!("kite http:{KITE} is live")));
}

#[test]
fn reconnects_after_the_frontend_restarts() {
    let Some(prefix) = pagekitec() else {
        return;
    };
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &[&domain()], &[]);
    let _be = spawn(prefix, port, origin.port(), SECRET, false);
    live(&fe, &format!("http:{KITE}"));
    let page = get(port, KITE, "/");
    assert_eq!((page.status, page.body_str().as_str()), (200, INDEX_BODY));
    drop(fe); // SIGTERM, and reaped: the port is free again.
    let fe = frontend(&[port], &[&domain()], &[]);
    fe.wait_for(&format!("kite http:{KITE} is live"), RECONNECT_BOUND);
    check_served(port);
}

/// Reads frames from a hand-made tunnel until one matches `want`; returns it (owned:
/// sid, skb, body). Other frames (PINGs, SKBs for other streams) are skipped.
fn next_frame(
    tunnel: &mut TcpStream,
    buf: &mut Vec<u8>,
    what: &str,
    want: impl Fn(&frame::Frame<'_>) -> bool,
) -> (Option<u32>, Option<u64>, Vec<u8>) {
    loop {
        read_until(tunnel, buf, what, |b| {
            matches!(frame::decode(b), Ok(Some(_)))
        });
        let (f, used) = frame::decode(buf).expect("frame").expect("whole");
        let found = want(&f).then(|| (f.sid, f.skb, f.body.to_vec()));
        buf.drain(..used);
        if let Some(found) = found {
            return found;
        }
    }
}

#[test]
fn a_chunk_header_that_arrives_alone_is_answered_before_its_body() {
    let port = free_port();
    let fe = frontend(&[port], &["http:hand.test:s3cret"], &[]);
    let (mut tunnel, answers) = fake_backend(port, "hand.test", "s3cret");
    assert!(
        matches!(answers.as_slice(), [KiteAnswer::Ok { .. }]),
        "{answers:?}"
    );
    live(&fe, "http:hand.test");
    let mut visitor = TcpStream::connect(local(port)).expect("connect");
    visitor
        .write_all(b"GET / HTTP/1.1\r\nHost: hand.test\r\nConnection: close\r\n\r\n")
        .expect("send request");
    let mut buf = Vec::new();
    let (sid, _, request) = next_frame(&mut tunnel, &mut buf, "the request", |f| {
        f.host == Some("hand.test")
    });
    let sid = sid.expect("a SID");
    assert!(request.starts_with(b"GET / HTTP/1.1\r\n"));

    // The reply as pagekitec writes it: the header, then (later) the body.
    let body = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    let head = format!("SID: {sid}\r\n\r\n");
    tunnel.set_nodelay(true).expect("nodelay");
    tunnel
        .write_all(format!("{:x}\r\n{head}", head.len() + body.len()).as_bytes())
        .expect("send the header");
    let (_, skb, _) = next_frame(&mut tunnel, &mut buf, "an SKB for the header alone", |f| {
        f.sid == Some(sid) && f.skb.is_some()
    });
    assert_eq!(skb, Some(0), "nothing was written to the visitor yet");
    tunnel.write_all(body).expect("send the body");
    let mut reply = Vec::new();
    read_until(&mut visitor, &mut reply, "the reply", |b| {
        b.ends_with(b"hello")
    });
    assert!(reply.starts_with(b"HTTP/1.1 200 OK\r\n"), "{reply:?}");
}
