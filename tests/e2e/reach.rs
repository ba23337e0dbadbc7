//! A backend that starts before the network (issue 13 item 4): its
//! frontend's name does not resolve yet. The backend runs in its own mount
//! namespace (`unshare -m`) with a private /etc/hosts that lacks the name,
//! a private /etc/nsswitch.conf that looks names up in files only (glibc),
//! and a private /etc/resolv.conf whose only server is 127.0.0.9 (musl), so
//! no look-up ever leaves loopback. Then the name
//! appears: the kite must be live within the back-off's cap, and the whole
//! outage must have cost a couple of log lines, not one per attempt.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::fixture::{frontend, get, kite, live};
use crate::origin::{INDEX_BODY, Origin};
use crate::util::{self, Proc, free_port};

const SECRET: &str = "s3cret";
/// The longest wait between attempts (proto::backoff's cap).
const CAP: Duration = Duration::from_secs(30);

/// Root and `unshare` are needed for a private /etc/hosts; without them
/// the test skips, except under CI=true, where it fails.
fn can_run() -> bool {
    if !util::require_peer("unshare") {
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the reach test needs root (a mount namespace) under CI=true");
    }
    eprintln!("SKIPPED: the reach test needs root for a private /etc/hosts");
    false
}

/// The backend, with the private name-service files bind-mounted over the
/// system's.
fn backend_in_namespace(dir: &Path, args: &[String]) -> Proc {
    let files = ["hosts", "nsswitch.conf", "resolv.conf"].map(|f| dir.join(f));
    let mut cmd = Command::new("unshare");
    util::no_proxy_env(&mut cmd);
    cmd.args([
        "-m",
        "sh",
        "-c",
        "mount --bind \"$0\" /etc/hosts && mount --bind \"$1\" /etc/nsswitch.conf && \
         mount --bind \"$2\" /etc/resolv.conf && shift 2 && exec \"$@\"",
    ])
    .args(&files)
    .arg(env!("CARGO_BIN_EXE_rkite"))
    .args(args)
    .env("RUST_LOG", "debug")
    .env("RUST_BACKTRACE", "1");
    Proc::spawn("backend", cmd)
}

#[test]
fn a_backend_started_before_its_frontends_name_resolves_comes_up_within_the_cap() {
    if !can_run() {
        return;
    }
    let origin = Origin::start();
    let dir = util::temp_dir("reach");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").expect("write hosts");
    std::fs::write(dir.join("nsswitch.conf"), "hosts: files\n").expect("write nsswitch");
    std::fs::write(
        dir.join("resolv.conf"),
        "nameserver 127.0.0.9\noptions timeout:1 attempts:1\n",
    )
    .expect("write resolv.conf");
    let port = free_port();
    let be = backend_in_namespace(
        &dir,
        &[
            format!("--frontend=late-fe.test:{port}"),
            format!(
                "--service_on={}",
                kite("http", "early.test", origin.port(), SECRET)
            ),
        ],
    );
    // It keeps trying while the name does not resolve: five attempts.
    be.wait_for("cannot resolve late-fe.test", T);
    be.wait_for_count("retrying in", 5, CAP * 2);
    // The network comes up: the frontend listens and the name resolves
    // (written in place, so the bind mount sees it).
    let fe = frontend(&[port], &[&format!("http:early.test:{SECRET}")], &[]);
    fe.wait_for(&format!("listening on 127.0.0.1:{port}"), T);
    std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.1 late-fe.test\n").expect("rewrite hosts");
    let up = Instant::now();
    be.wait_for("kite http:early.test is live", CAP + T);
    let took = up.elapsed();
    assert!(took <= CAP, "live {took:?} after the network came up");
    live(&fe, "http:early.test");
    assert_eq!(get(port, "early.test", "/").body_str(), INDEX_BODY);

    // The outage said so once at WARN level and once at INFO when over;
    // every attempt was a DEBUG line.
    let lines = be.lines();
    let warned: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" WARN ") && l.contains("retrying in"))
        .collect();
    assert_eq!(warned.len(), 1, "one WARN line for the outage: {warned:#?}");
    assert!(
        warned[0].contains("name does not resolve: backing off"),
        "{warned:?}"
    );
    let attempts = lines.iter().filter(|l| l.contains("retrying in")).count();
    assert!(attempts >= 5, "{attempts} attempts");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" INFO ") && l.contains("back after")),
        "a line when it is back"
    );
}

/// How long a single step may take.
const T: Duration = Duration::from_secs(20);
