//! `--authdomain` against a real DNS server: Debian's dnsmasq, started by
//! the test on a random loopback address (127.x.y.z port 53; resolv.conf
//! cannot name a port) with `--address` records under the auth domain, and
//! the frontend in a mount namespace of its own whose /etc/resolv.conf and
//! /etc/nsswitch.conf point at it (as `reach.rs` does), so no look-up
//! leaves loopback. Kites are requested by real rkite and pagekite.py backends and by a
//! hand-made one (to repeat the very same signed request). Asserted: an OK
//! answer brings a kite up and its page through; a refusal reaches the
//! backend with pagekite.py's reason; the same request again is answered
//! from the cache (dnsmasq's `--log-queries` shows one query); with the DNS
//! server down a kite is accepted (pagekite.py fails open), refused with
//! `--authfail_closed`, and the failures are counted in the status file; a
//! SIGHUP keeps a kite the auth domain proved; a flood against a server
//! that never answers runs no more than 8 look-up threads.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rkite::proto::frame;
use rkite::proto::handshake::{self, KiteAnswer, KiteLine, TunnelReply};

use crate::fixture::{T, backend, get, kite, live};
use crate::origin::{INDEX_BODY, Origin};
use crate::peers;
use crate::util::{self, Proc, free_port, local};

const ADOM: &str = "auth.test";

/// A loopback address of its own for this test's DNS server.
fn dns_ip() -> String {
    let n = util::unique() as u32 + std::process::id();
    format!("127.{}.{}.{}", 53, (n >> 8) % 250 + 1, n % 250 + 1)
}

/// dnsmasq on `ip`:53 answering only from `records` (`NAME/ADDRESS`
/// under the auth domain), NXDOMAIN for the rest of it, queries logged.
fn dnsmasq(ip: &str, records: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--log-facility=-",
        "--log-queries",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--bind-interfaces",
        "--port=53",
        "--user=root",
        "--cache-size=0",
    ])
    .arg(format!("--listen-address={ip}"))
    .arg(format!("--local=/{ADOM}/"));
    for (name, addr) in records {
        cmd.arg(format!("--address=/{name}.{ADOM}/{addr}"));
    }
    let p = Proc::spawn("dnsmasq", cmd);
    p.wait_for("started, version", T);
    p
}

/// The frontend, its name service pointed at `dns` only.
fn frontend_in_namespace(dir: &Path, dns: &str, port: u16, extra: &[&str]) -> Proc {
    std::fs::write(dir.join("nsswitch.conf"), "hosts: dns\n").expect("write nsswitch");
    std::fs::write(
        dir.join("resolv.conf"),
        format!("nameserver {dns}\noptions timeout:1 attempts:1\n"),
    )
    .expect("write resolv.conf");
    let files = ["nsswitch.conf", "resolv.conf"].map(|f| dir.join(f));
    let mut cmd = Command::new("unshare");
    util::no_proxy_env(&mut cmd);
    cmd.args([
        "-m",
        "sh",
        "-c",
        "mount --bind \"$0\" /etc/nsswitch.conf && mount --bind \"$1\" /etc/resolv.conf && shift && \
         exec \"$@\"",
    ])
    .args(&files)
    .arg(env!("CARGO_BIN_EXE_rkite"))
    .args([
        "--isfrontend",
        "--host=127.0.0.1",
        &format!("--ports={port}"),
        "--protos=http,https,raw,websocket",
        &format!("--authdomain={ADOM}"),
        &format!("--status_file={}", dir.join("status.json").display()),
    ])
    .args(extra)
    .env("RUST_LOG", "debug")
    .env("RUST_BACKTRACE", "1");
    let fe = Proc::spawn("frontend", cmd);
    fe.wait_for(&format!("listening on 127.0.0.1:{port}"), T);
    fe
}

/// Sends one tunnel request with `line` on a fresh connection; the reply
/// and the socket (kept open: closing it would drop an accepted kite).
fn request(port: u16, line: &KiteLine) -> (TunnelReply, TcpStream) {
    let mut s = TcpStream::connect(local(port)).expect("connect");
    s.write_all(
        handshake::build_request("authdomain-test", None, std::slice::from_ref(line)).as_bytes(),
    )
    .expect("write request");
    s.set_read_timeout(Some(T)).expect("timeout");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + T;
    let end = loop {
        if let Some(end) = frame::find(&buf, b"\r\n\r\n") {
            break end + 4;
        }
        let n = s.read(&mut chunk).expect("read reply");
        assert!(n > 0 && Instant::now() < deadline, "no reply head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let (_, headers) = handshake::split_head(&buf[..end]).expect("text");
    (handshake::parse_reply(headers), s)
}

/// A kite line signed for `domain` after the frontend's challenge (the
/// secret is the auth server's business: any will do here).
fn signed(port: u16, domain: &str) -> KiteLine {
    let mut line = KiteLine {
        proto: "http".into(),
        domain: domain.into(),
        srand: "0123456789abcdef".into(),
        token: String::new(),
        sign: String::new(),
    };
    let (reply, _) = request(port, &line);
    let Some(KiteAnswer::SignThis { challenge, .. }) = reply.answers.first() else {
        panic!("expected a challenge: {reply:?}");
    };
    line.token = challenge.clone();
    line.sign = handshake::sign("whatever", &line.payload(), "1234abcd");
    line
}

fn invalid_why(reply: &TunnelReply) -> Option<String> {
    reply.answers.iter().find_map(|a| match a {
        KiteAnswer::Invalid { why, .. } => Some(why.clone()),
        _ => None,
    })
}

fn accepted(reply: &TunnelReply) -> bool {
    reply
        .answers
        .iter()
        .any(|a| matches!(a, KiteAnswer::Ok { .. }))
}

/// The name the frontend looks up for `line`.
fn lookup_name(line: &KiteLine) -> String {
    format!(
        "{}.{}.{}.{}.{}.{ADOM}",
        line.srand, line.token, line.sign, line.proto, line.domain
    )
}

fn status(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("status.json")).unwrap_or_default()
}

fn temp(name: &str) -> PathBuf {
    util::temp_dir(name)
}

#[test]
fn authdomain_answers_decide_kites_and_are_cached() {
    if !util::require_namespaces("the authdomain test") || !util::require_peer("dnsmasq") {
        return;
    }
    let ip = dns_ip();
    let dns = dnsmasq(
        &ip,
        &[
            ("ok.example.test", "10.1.2.3"),
            ("no.example.test", "255.255.255.1"),
            ("full.example.test", "255.255.255.2"),
        ],
    );
    let dir = temp("authdomain");
    let port = free_port();
    let metrics = free_port();
    let metrics_flag = format!("--metrics=127.0.0.1:{metrics}");
    let fe = frontend_in_namespace(&dir, &ip, port, &[&metrics_flag]);

    // An OK answer: a real backend's kite comes up and serves its page.
    let origin = Origin::start();
    let be = backend(
        port,
        &[kite("http", "ok.example.test", origin.port(), "any-secret")],
        &[],
    );
    live(&be, "http:ok.example.test");
    live(&fe, "http:ok.example.test");
    assert_eq!(get(port, "ok.example.test", "/").body_str(), INDEX_BODY);
    // A reload keeps a kite the auth domain proved (it has no local secret).
    fe.signal(libc::SIGHUP);
    fe.wait_for("SIGHUP: the new configuration is in effect", T);
    assert_eq!(get(port, "ok.example.test", "/").body_str(), INDEX_BODY);
    assert!(!fe.contains("kite http:ok.example.test is down"));

    // Refusals reach the backend with pagekite.py's reasons.
    let no = signed(port, "no.example.test");
    let (reply, _s) = request(port, &no);
    assert_eq!(
        invalid_why(&reply).as_deref(),
        Some("unauthorized"),
        "{reply:?}"
    );
    fe.wait_for("kite http:no.example.test rejected: unauthorized", T);
    let full = signed(port, "full.example.test");
    let (reply, _s) = request(port, &full);
    assert_eq!(invalid_why(&reply).as_deref(), Some("quota"), "{reply:?}");

    // The same signed request twice more: answered from the cache.
    for _ in 0..2 {
        let (reply, _s) = request(port, &no);
        assert_eq!(
            invalid_why(&reply).as_deref(),
            Some("unauthorized"),
            "{reply:?}"
        );
    }
    fe.wait_for_count("kite http:no.example.test rejected: unauthorized", 3, T);
    let asked = format!("query[A] {} from", lookup_name(&no));
    assert_eq!(
        dns.count(&asked),
        1,
        "dnsmasq log:\n{}",
        dns.lines().join("\n")
    );
    util::wait_until("the status file counts the cache hits", T, || {
        status(&dir).contains("\"auth_cache_hits\": 2")
    });
    let scraped = util::curl(&[&format!("http://127.0.0.1:{metrics}/metrics")]).body_str();
    assert!(
        scraped.contains("\nrkite_auth_cache_hits_total 2\n")
            && scraped.contains("\nrkite_auth_failures_total 0\n"),
        "{scraped}"
    );
    drop(be);
}

#[test]
fn with_the_dns_server_down_kites_fail_open_unless_authfail_closed() {
    if !util::require_namespaces("the authdomain test") || !util::require_peer("dnsmasq") {
        return;
    }
    // Nothing listens on this address: every look-up fails at once.
    let ip = dns_ip();
    let dir = temp("authfail-open");
    let port = free_port();
    let fe = frontend_in_namespace(&dir, &ip, port, &[]);
    let line = signed(port, "down.example.test");
    let (reply, _s) = request(port, &line);
    assert!(accepted(&reply), "pagekite.py fails open: {reply:?}");
    fe.wait_for("accepted without its --authdomain answer", T);
    fe.wait_for("auth look-up of", T);
    util::wait_until("the status file counts the failure", T, || {
        status(&dir).contains("\"auth_failures\": 1")
    });

    let dir = temp("authfail-closed");
    let port = free_port();
    let fe = frontend_in_namespace(&dir, &ip, port, &["--authfail_closed"]);
    let line = signed(port, "down.example.test");
    let (reply, _s) = request(port, &line);
    assert_eq!(
        invalid_why(&reply).as_deref(),
        Some("unauthorized"),
        "{reply:?}"
    );
    fe.wait_for("kite http:down.example.test rejected: unauthorized", T);
}

/// Threads of a process, from /proc.
fn threads(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn a_flood_of_requests_against_a_silent_dns_server_runs_a_bounded_number_of_look_ups() {
    if !util::require_namespaces("the authdomain test") {
        return;
    }
    // A DNS server that never answers: every look-up runs into its timeout.
    let ip = dns_ip();
    let _silent = std::net::UdpSocket::bind(format!("{ip}:53")).expect("bind the silent server");
    let dir = temp("authdomain-flood");
    let port = free_port();
    let fe = frontend_in_namespace(
        &dir,
        &ip,
        port,
        &["--authfail_closed", "--domain=http:local.example.test:pw"],
    );
    let base = threads(fe.pid());
    let line = signed(port, "flood.example.test");
    const FLOOD: usize = 200;
    let mut conns = Vec::new();
    let mut most = 0;
    for i in 0..FLOOD {
        // Another signature salt each time: a name nobody asked yet.
        let mut l = line.clone();
        l.sign = handshake::sign("whatever", &l.payload(), &format!("{:08x}", i + 1));
        let mut s = TcpStream::connect(local(port)).expect("connect");
        s.write_all(handshake::build_request("flood", None, &[l]).as_bytes())
            .expect("write request");
        conns.push(s);
        most = most.max(threads(fe.pid()));
    }
    // Meanwhile a kite with a local secret still gets its answer at once.
    let local_line = signed(port, "local.example.test");
    let mut ok = local_line.clone();
    ok.sign = handshake::sign("pw", &ok.payload(), "1234abcd");
    let t0 = Instant::now();
    let (reply, _keep) = request(port, &ok);
    assert!(accepted(&reply), "{reply:?}");
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        t0.elapsed()
    );
    let until = Instant::now() + std::time::Duration::from_secs(3);
    while Instant::now() < until {
        most = most.max(threads(fe.pid()));
        // A sampling interval, not a wait for anything.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    eprintln!("threads: base {base}, most {most} during a flood of {FLOOD} look-ups");
    // At most 8 look-ups run at once (a finishing thread may linger a moment).
    assert!(
        most <= base + 8 + 2,
        "{most} threads during the flood (base {base})"
    );
    assert!(most > base, "the look-ups ran on helper threads");
    drop(conns);
}

#[test]
fn pagekite_py_backends_are_judged_by_the_auth_domain() {
    if !util::require_namespaces("the authdomain test")
        || !util::require_peer("dnsmasq")
        || !util::require_peer("pagekite")
    {
        return;
    }
    let ip = dns_ip();
    let _dns = dnsmasq(
        &ip,
        &[
            ("pk.example.test", "10.9.9.9"),
            ("pkno.example.test", "255.255.255.1"),
        ],
    );
    let dir = temp("authdomain-pk");
    let port = free_port();
    let fe = frontend_in_namespace(&dir, &ip, port, &[]);
    let origin = Origin::start();
    let ok = peers::kite("http", "pk.example.test", origin.port(), "pk-secret");
    let no = peers::kite("http", "pkno.example.test", origin.port(), "pk-secret");
    let be = peers::pagekite_backend(port, &[&ok, &no], &[]);
    peers::wait_kite_up(&be, "http", "pk.example.test");
    be.wait_for(
        &peers::be_kite_rejected("http", "pkno.example.test", "unauthorized"),
        T,
    );
    live(&fe, "http:pk.example.test");
    assert_eq!(get(port, "pk.example.test", "/").body_str(), INDEX_BODY);
}
