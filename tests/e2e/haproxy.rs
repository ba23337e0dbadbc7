//! Issue 14, behind a load balancer: Debian's haproxy (`mode tcp`,
//! `send-proxy-v2`, its connections from 127.0.0.3) in front of two rkite
//! frontends started with `--proxyproto_from=127.0.0.3`, each with its own
//! tunnel from one rkite backend, the way the README documents growing past
//! one machine. Visitors connect from other loopback addresses (127.0.0.1,
//! .2, .4), so the origin can tell the visitor from the balancer: the
//! visitor's address reaches it as `X-Forwarded-For`; `--client_acl` and
//! `--max_conns_per_ip` act on the visitor, not on the balancer; a
//! connection from the balancer's address without a header is closed, and
//! a header from anyone else is refused. With the balancer on the backend's
//! address, `--proxyproto_ports` (from an option file) believes it on the
//! balanced port only, a SIGHUP reads the lists again, and v2 IPv6 visitors
//! and dedicated raw ports work the same way.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::fixture::{T, backend, frontend, kite, live};
use crate::origin::{EchoServer, INDEX_BODY, Origin};
use crate::raw::{AT_ONCE, DOMAINS, SECRET};
use crate::util::{self, Proc, RawResponse, free_port, local};

const HAPROXY: &str = "haproxy";
const KITE: &str = "pp.example.test";
/// The address haproxy connects to the frontends from (`source`).
const BALANCER: &str = "127.0.0.3";

/// A haproxy configuration: `balanced` spreads visitors over every rkite
/// frontend (the README's), and `only[i]` goes to frontend `i` alone so a
/// test knows which frontend counts a visitor. Both health-check every
/// frontend twice a second: with a LOCAL header (`check-send-proxy`) and
/// without one (plain `check`: connect, then reset).
fn haproxy_config(balanced: u16, only: &[(u16, u16)]) -> String {
    let mut cfg = format!(
        "global\n  maxconn 256\n\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\n\
         frontend public\n  bind 127.0.0.1:{balanced}\n  default_backend rkite\n\n\
         backend rkite\n  balance roundrobin\n  source {BALANCER}\n"
    );
    for (i, (_, fe)) in only.iter().enumerate() {
        cfg.push_str(&format!(
            "  server fe{i} 127.0.0.1:{fe} send-proxy-v2 check check-send-proxy inter 500ms\n"
        ));
    }
    for (i, (port, fe)) in only.iter().enumerate() {
        cfg.push_str(&format!(
            "\nlisten only{i}\n  bind 127.0.0.1:{port}\n  source {BALANCER}\n  \
             server fe{i} 127.0.0.1:{fe} send-proxy-v2 check inter 500ms\n"
        ));
    }
    cfg
}

/// haproxy in the foreground with `config`, once all its ports accept.
fn start_haproxy(dir: &Path, config: &str, ports: &[u16]) -> Proc {
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).expect("write haproxy.cfg");
    let mut cmd = Command::new(HAPROXY);
    cmd.arg("-db").arg("-f").arg(&path);
    let proc = Proc::spawn("haproxy", cmd);
    for port in ports {
        util::wait_port(local(*port), T);
    }
    proc
}

/// A TCP connection to `to` from the loopback address `from` (std can't
/// bind before connecting).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let from: IpAddr = from.parse().expect("source address");
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (from, to.ip()) else {
        panic!("IPv4 loopback only");
    };
    let sin = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns; the
    // addresses are valid sockaddr_in values of the given length.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let a = sin(src, 0);
        let rc = libc::bind(fd, (&a as *const libc::sockaddr_in).cast(), len);
        assert_eq!(rc, 0, "bind {from}: {}", std::io::Error::last_os_error());
        let b = sin(dst, to.port());
        let rc = libc::connect(fd, (&b as *const libc::sockaddr_in).cast(), len);
        assert_eq!(rc, 0, "connect {to}: {}", std::io::Error::last_os_error());
        stream
    }
}

/// Everything `s` answers until it closes, within `within`.
fn read_to_close(s: &mut TcpStream, within: Duration) -> Result<Vec<u8>, String> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(format!(
                "still open after {within:?} (got {:?})",
                String::from_utf8_lossy(&got)
            ));
        }
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Ok(got), // a reset: closed
        }
    }
}

/// A whole request from `from` to `to`: the answer, read until the close.
fn request_from(from: &str, to: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = connect_from(from, to);
    // The peer may already have closed; a failed write is part of being refused.
    let _ = s.write_all(bytes);
    read_to_close(&mut s, T).unwrap_or_else(|e| panic!("{from} -> {to}: {e}"))
}

/// Asserts that `to` closes a connection from `from` that sends `bytes`
/// without a byte of answer, well before the sniffing timeout.
fn closed_silently_from(from: &str, to: SocketAddr, bytes: &[u8]) {
    let mut s = connect_from(from, to);
    let _ = s.write_all(bytes);
    let got = read_to_close(&mut s, AT_ONCE).unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
    assert!(
        got.is_empty(),
        "{from} -> {to} got an answer: {:?}",
        String::from_utf8_lossy(&got)
    );
}

fn echo_request() -> Vec<u8> {
    format!("GET /echo HTTP/1.1\r\nHost: {KITE}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// The origin's echo of a request through `to` from `from`: 200, and the
/// request head it saw.
fn echo_from(from: &str, to: SocketAddr) -> String {
    let raw = request_from(from, to, &echo_request());
    let r = RawResponse::parse(&raw);
    assert_eq!(r.status, 200, "{from}: {}", String::from_utf8_lossy(&raw));
    r.body_str()
}

#[test]
fn haproxy_in_front_of_two_frontends_passes_the_visitor_address_to_acls_limits_and_origin() {
    if !util::require_peer(HAPROXY) {
        return;
    }
    let origin = Origin::start();
    let (fe1_port, fe2_port) = (free_port(), free_port());
    let balancer_from = format!("--proxyproto_from={BALANCER}");
    let flags = [
        balancer_from.as_str(),
        r"--client_acl=deny:127\.0\.0\.2",
        "--client_acl=allow:any",
        "--max_conns_per_ip=2",
    ];
    let fe1 = frontend(&[fe1_port], &DOMAINS, &flags);
    let fe2 = frontend(&[fe2_port], &DOMAINS, &flags);
    // One backend, a tunnel to each frontend (from 127.0.0.1: not the
    // balancer's address, so no header is asked of it).
    let second = format!("--frontend=127.0.0.1:{fe2_port}");
    let _be = backend(
        fe1_port,
        &[kite("http", KITE, origin.port(), SECRET)],
        &[&second],
    );
    let name = format!("http:{KITE}");
    live(&fe1, &name);
    live(&fe2, &name);

    let (balanced, only1, only2) = (free_port(), free_port(), free_port());
    let dir = util::temp_dir("haproxy");
    let config = haproxy_config(balanced, &[(only1, fe1_port), (only2, fe2_port)]);
    let _haproxy = start_haproxy(&dir, &config, &[balanced, only1, only2]);

    // The visitor's address, not the balancer's, reaches the origin, from
    // either frontend.
    for (visitor, port) in [("127.0.0.4", only1), ("127.0.0.1", only2)] {
        let echo = echo_from(visitor, local(port));
        assert!(
            echo.contains(&format!("\r\nX-Forwarded-For: {visitor}\r\n")),
            "{echo}"
        );
    }
    fe1.wait_for("visitor 127.0.0.4:", T);
    fe2.wait_for("visitor 127.0.0.1:", T);
    // Round robin through the balanced port: both frontends serve.
    for _ in 0..2 {
        let echo = echo_from("127.0.0.4", local(balanced));
        assert!(
            echo.contains("\r\nX-Forwarded-For: 127.0.0.4\r\n"),
            "{echo}"
        );
    }
    fe2.wait_for("visitor 127.0.0.4:", T);
    assert!(
        !origin
            .requests()
            .iter()
            .any(|r| r.contains(BALANCER) || r.contains("127.0.0.2")),
        "{:?}",
        origin.requests()
    );

    // --client_acl judges the visitor: 127.0.0.2 is refused through the
    // balancer while 127.0.0.1 is served through the same one.
    closed_silently_from("127.0.0.2", local(only1), &echo_request());
    let denied = fe1.wait_for("denied by --client_acl", T);
    assert!(denied.contains("127.0.0.2:"), "{denied}");
    let echo = echo_from("127.0.0.1", local(only1));
    assert!(
        echo.contains("\r\nX-Forwarded-For: 127.0.0.1\r\n"),
        "{echo}"
    );

    // --max_conns_per_ip counts the visitor: two held requests from .4,
    // a third from .4 is refused, and .1 is still served by the same
    // balancer's connections.
    let before = fe1.count("visitor 127.0.0.4:");
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = connect_from("127.0.0.4", local(only1));
            s.write_all(b"GET / HTTP/1.1\r\n").expect("start a request");
            s
        })
        .collect();
    wait_counted(&fe1, "visitor 127.0.0.4:", before);
    closed_silently_from("127.0.0.4", local(only1), &echo_request());
    let limited = fe1.wait_for("per-IP limit of 2", T);
    assert!(
        limited.contains("127.0.0.4:") && limited.contains(BALANCER),
        "{limited}"
    );
    let echo = echo_from("127.0.0.1", local(only1));
    assert!(
        echo.contains("\r\nX-Forwarded-For: 127.0.0.1\r\n"),
        "{echo}"
    );
    for s in &mut held {
        s.write_all(format!("Host: {KITE}\r\nConnection: close\r\n\r\n").as_bytes())
            .expect("finish the request");
        let raw = read_to_close(s, T).expect("the held request's answer");
        let r = RawResponse::parse(&raw);
        assert_eq!((r.status, r.body_str().as_str()), (200, INDEX_BODY));
    }

    // A plain TCP health check (connect, close) is no refusal; the
    // balancer's address sending a request without a header is.
    drop(connect_from(BALANCER, local(fe1_port)));
    fe1.wait_for("closed before its PROXY header", T);
    closed_silently_from(BALANCER, local(fe1_port), &echo_request());
    let bare = fe1.wait_for("without a valid PROXY header", T);
    assert!(bare.contains(BALANCER), "{bare}");
    assert_eq!(fe1.count("denied by --proxyproto_from"), 1);
    // A header from an address that is not the balancer: refused, and the
    // address it claims goes nowhere.
    let spoof = [
        b"PROXY TCP4 6.6.6.6 127.0.0.1 1111 80\r\n".as_slice(),
        &echo_request(),
    ]
    .concat();
    closed_silently_from("127.0.0.1", local(fe2_port), &spoof);
    fe2.wait_for("a PROXY header from 127.0.0.1:", T);
    // Nor can a visitor behind the balancer add one of its own.
    closed_silently_from("127.0.0.4", local(only2), &spoof);
    fe2.wait_for("a second PROXY header from 127.0.0.4:", T);
    assert!(
        !origin.requests().iter().any(|r| r.contains("6.6.6.6")),
        "{:?}",
        origin.requests()
    );
    // The health checks, with a header and without, cost no log lines
    // above debug (nor the visitors' rate-limited ones).
    for fe in [&fe1, &fe2] {
        let noisy: Vec<String> = fe
            .lines()
            .into_iter()
            .filter(|l| l.contains(BALANCER) && !l.contains(" DEBUG "))
            .filter(|l| !l.contains(": refusing "))
            .collect();
        assert!(noisy.is_empty(), "{noisy:#?}");
    }
}

/// Waits until `fe` has logged `needle` two more times than `before`: both
/// held connections are counted against the visitor before the next one.
fn wait_counted(fe: &Proc, needle: &str, before: usize) {
    util::wait_until("both held connections counted", T, || {
        fe.count(needle) >= before + 2
    });
}

#[test]
fn a_balancer_sharing_the_backends_address_is_believed_on_its_ports_only() {
    if !util::require_peer(HAPROXY) {
        return;
    }
    let origin = Origin::start();
    let echo_server = EchoServer::start();
    let (public, tunnels, raw_port) = (free_port(), free_port(), free_port());
    // The option file form, as an operator would write it.
    let dir = util::temp_dir("haproxy-ports");
    let rc = dir.join("frontend.rc");
    std::fs::write(
        &rc,
        format!("proxyproto_from = 127.0.0.1/32\nproxyproto_ports = {public}\n"),
    )
    .expect("write the option file");
    let optfile = format!("--optfile={}", rc.display());
    let rawports = format!("--rawports={raw_port}");
    let fe = frontend(&[public, tunnels], &DOMAINS, &[&optfile, &rawports]);
    // The backend on the balancer's address reaches the port that asks no
    // header of it.
    let raw_kite = format!("raw-{raw_port}");
    let _be = backend(
        tunnels,
        &[
            kite("http", KITE, origin.port(), SECRET),
            kite(&raw_kite, KITE, echo_server.port(), SECRET),
        ],
        &[],
    );
    live(&fe, &format!("http:{KITE}"));
    live(&fe, &format!("{raw_kite}:{KITE}"));

    // haproxy from 127.0.0.1 with version 1 headers.
    let lb = free_port();
    let config = format!(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\n\
         listen public\n  bind 127.0.0.1:{lb}\n  server fe 127.0.0.1:{public} send-proxy\n"
    );
    let _haproxy = start_haproxy(&dir, &config, &[lb]);
    let echo = echo_from("127.0.0.4", local(lb));
    assert!(
        echo.contains("\r\nX-Forwarded-For: 127.0.0.4\r\n"),
        "{echo}"
    );
    // (haproxy's readiness probe came through as a visitor 127.0.0.1.)
    let seen = fe.wait_for("visitor 127.0.0.4:", T);
    assert!(seen.contains("PROXY v1 header from 127.0.0.1:"), "{seen}");
    // Straight to the balanced port without a header: closed; to the
    // other port: served as 127.0.0.1.
    closed_silently_from("127.0.0.1", local(public), &echo_request());
    fe.wait_for("without a valid PROXY header", T);
    let echo = echo_from("127.0.0.1", local(tunnels));
    assert!(
        echo.contains("\r\nX-Forwarded-For: 127.0.0.1\r\n"),
        "{echo}"
    );
    // And there a header is a spoof like any other.
    let spoof = [
        b"PROXY TCP4 6.6.6.6 127.0.0.1 1111 80\r\n".as_slice(),
        &echo_request(),
    ]
    .concat();
    closed_silently_from("127.0.0.1", local(tunnels), &spoof);
    fe.wait_for("a PROXY header from 127.0.0.1:", T);

    // SIGHUP reads the lists again: the balancer on every port now.
    std::fs::write(&rc, "proxyproto_from = 127.0.0.1\n").expect("rewrite the option file");
    fe.signal(libc::SIGHUP);
    fe.wait_for("SIGHUP: the new configuration is in effect", T);
    let header = [
        b"PROXY TCP4 127.0.0.9 127.0.0.1 1111 80\r\n".as_slice(),
        &echo_request(),
    ]
    .concat();
    let raw = request_from("127.0.0.1", local(tunnels), &header);
    let r = RawResponse::parse(&raw);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&raw));
    assert!(
        r.body_str().contains("\r\nX-Forwarded-For: 127.0.0.9\r\n"),
        "{}",
        r.body_str()
    );
    // A version 2 header naming an IPv6 visitor behind an IPv4 balancer.
    let visitor: std::net::Ipv6Addr = "2001:db8::7".parse().expect("address");
    let mut v2 = b"\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x24".to_vec();
    v2.extend_from_slice(&visitor.octets());
    v2.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    v2.extend_from_slice(&[0x30, 0x39, 0, 80]);
    v2.extend_from_slice(&echo_request());
    let raw = request_from("127.0.0.1", local(tunnels), &v2);
    let r = RawResponse::parse(&raw);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&raw));
    assert!(
        r.body_str()
            .contains("\r\nX-Forwarded-For: 2001:db8::7\r\n"),
        "{}",
        r.body_str()
    );
    fe.wait_for("visitor [2001:db8::7]:12345", T);
    // A dedicated raw port behind the balancer: the header, then the
    // visitor's own bytes, relayed untouched.
    let mut s = connect_from("127.0.0.1", local(raw_port));
    s.write_all(b"PROXY TCP4 127.0.0.8 127.0.0.1 2222 22\r\nhello raw")
        .expect("send to the raw port");
    let mut got = [0u8; 9];
    s.set_read_timeout(Some(T)).expect("read timeout");
    s.read_exact(&mut got).expect("the echo");
    assert_eq!(&got, b"hello raw");
    fe.wait_for("visitor 127.0.0.8:2222", T);
}
