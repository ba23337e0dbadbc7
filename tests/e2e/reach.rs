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
    if !util::require_namespaces("the reach test") {
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

/// Runs `ip` with `args`, panicking with its output if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two network namespaces joined by a veth pair, removed when dropped:
/// nothing of the host's own network is touched.
struct Netns {
    names: Vec<String>,
}

impl Netns {
    fn add(&mut self, name: &str) {
        ip(&["netns", "add", name]);
        self.names.push(name.to_string());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// A command run inside namespace `ns`.
fn in_ns(ns: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    util::no_proxy_env(&mut cmd);
    cmd.args(["netns", "exec", ns, program])
        .env("RUST_LOG", "debug")
        .env("RUST_BACKTRACE", "1");
    cmd
}

#[test]
fn a_tunnel_bound_to_an_address_that_went_is_replaced_at_once() {
    if !util::require_namespaces("the reach test") || !util::require_peer("ip") {
        return;
    }
    // A frontend namespace (10.213.0.1) and a backend namespace whose
    // address changes from .2 to .3, as on a new WAN lease.
    let tag = format!("rk{}", std::process::id() % 1_000_000);
    let (fe_ns, be_ns) = (format!("{tag}f"), format!("{tag}b"));
    let mut netns = Netns { names: Vec::new() };
    netns.add(&fe_ns);
    netns.add(&be_ns);
    let (fe_if, be_if) = (format!("{tag}a"), format!("{tag}z"));
    ip(&[
        "-n", &fe_ns, "link", "add", &fe_if, "type", "veth", "peer", "name", &be_if, "netns",
        &be_ns,
    ]);
    for (ns, ifname, addr) in [
        (&fe_ns, &fe_if, "10.213.0.1/24"),
        (&be_ns, &be_if, "10.213.0.2/24"),
    ] {
        ip(&["-n", ns, "addr", "add", addr, "dev", ifname]);
        ip(&["-n", ns, "link", "set", ifname, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    let dir = util::temp_dir("wan");
    std::fs::write(dir.join("index.html"), "through the new lease\n").expect("a page");
    let port = free_port().to_string();
    let rkite = env!("CARGO_BIN_EXE_rkite");
    let mut cmd = in_ns(&fe_ns, rkite);
    cmd.args([
        "--isfrontend",
        "--host=10.213.0.1",
        &format!("--ports={port}"),
        &format!("--domain=http:wan.test:{SECRET}"),
    ]);
    let fe = Proc::spawn("frontend", cmd);
    fe.wait_for(&format!("listening on 10.213.0.1:{port}"), T);
    let mut cmd = in_ns(&be_ns, rkite);
    cmd.args([
        format!("--frontend=10.213.0.1:{port}"),
        format!("--service_on=http:wan.test:localhost:builtin:{SECRET}"),
        format!("--webpath=wan.test:/:public:{}", dir.display()),
        // Without the watch, only a keepalive this slow would find out.
        "--keepalive=120".to_string(),
    ]);
    let be = Proc::spawn("backend", cmd);
    be.wait_for("kite http:wan.test is live", T);
    fe.wait_for("kite http:wan.test is live", T);

    // The new lease: .2 goes, then .3 comes. The old tunnel's packets would
    // never be answered again: it is dropped at once, not after minutes of
    // keepalive, and the new address is dialed from as soon as it appears
    // (not after the back-off the meanwhile unreachable network earned).
    let gone_at = Instant::now();
    ip(&["-n", &be_ns, "addr", "del", "10.213.0.2/24", "dev", &be_if]);
    be.wait_for(
        "the tunnel's local address 10.213.0.2 is gone: reconnecting",
        T,
    );
    be.wait_for("Network is unreachable", T);
    ip(&["-n", &be_ns, "addr", "add", "10.213.0.3/24", "dev", &be_if]);
    be.wait_for(
        "a host address appeared: dialing 1 waiting frontend(s) now",
        T,
    );
    be.wait_for_count("kite http:wan.test is live", 2, T);
    let took = gone_at.elapsed();
    assert!(took < Duration::from_secs(10), "replaced after {took:?}");
    let out = in_ns(&fe_ns, "curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-H",
            "Host: wan.test",
            &format!("http://10.213.0.1:{port}/"),
        ])
        .output()
        .expect("curl in the frontend's namespace");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "through the new lease\n"
    );
}
