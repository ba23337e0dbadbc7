//! The backend's request guard against a real RFC 9112 origin (Debian's
//! nginx, two virtual hosts on one port): every request of a keep-alive
//! connection is matched to the stream's kite and judged by that kite's
//! options; a request for another kite gets 421, one that can't be parsed
//! gets 400, and neither reaches the origin. Each attack is first shown to
//! work against nginx directly, so the tests prove the guard, not nginx.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;

use crate::fixture::{T, backend, frontend, kite, live};
use crate::meter::{read_head, status_of};
use crate::origin::Origin;
use crate::util::{self, Proc, free_port, local};

const OPEN_PAGE: &str = "open page";
const SECRET_PAGE: &str = "SECRET page";
const ADMIN_PAGE: &str = "ADMIN page";
/// `bob:pw` for the locked kite.
const BOB: &str = "Authorization: Basic Ym9iOnB3\r\n";

/// nginx on 127.0.0.1 serving `open.test` (with a `/wp-admin/`) and
/// `locked.test` from one port, in the foreground, killed on drop.
struct Nginx {
    port: u16,
    _proc: Proc,
    _dir: PathBuf,
}

impl Nginx {
    fn start() -> Option<Nginx> {
        if !util::require_peer("nginx") {
            return None;
        }
        let dir = util::temp_dir("nginx");
        let port = free_port();
        let d = dir.display();
        let conf = format!(
            "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid;\n\
             error_log stderr;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off; default_type text/plain;\n\
               client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
               server {{ listen 127.0.0.1:{port}; server_name open.test;\n\
                 location / {{ return 200 \"{OPEN_PAGE}\\n\"; }}\n\
                 location /wp-admin/ {{ return 200 \"{ADMIN_PAGE}\\n\"; }} }}\n\
               server {{ listen 127.0.0.1:{port}; server_name locked.test;\n\
                 location / {{ return 200 \"{SECRET_PAGE}\\n\"; }} }}\n\
             }}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).expect("write nginx.conf");
        let mut cmd = Command::new("nginx");
        cmd.arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&path)
            .args(["-e", "stderr"]);
        let proc = Proc::spawn("nginx", cmd);
        util::wait_port(local(port), T);
        Some(Nginx {
            port,
            _proc: proc,
            _dir: dir,
        })
    }
}

/// Reads one response with a Content-Length body: (status, body).
fn response(s: &mut TcpStream) -> (u16, String) {
    let (head, mut body) = read_head(s, T).unwrap_or_else(|(end, got)| {
        panic!(
            "{end:?} before a response: {}",
            String::from_utf8_lossy(&got)
        )
    });
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while body.len() < len {
        let mut piece = [0u8; 4096];
        let n = s.read(&mut piece).expect("read body");
        assert!(n > 0, "EOF inside a body");
        body.extend_from_slice(&piece[..n]);
    }
    (
        status_of(&head),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Sends `requests` one after the other on one connection, reading each
/// response before the next; returns what each got. After a refusal the
/// connection must be closed by the relay.
fn exchange(port: u16, requests: &[String]) -> Vec<(u16, String)> {
    let mut s = TcpStream::connect(local(port)).expect("connect");
    let mut got = Vec::new();
    for req in requests {
        s.write_all(req.as_bytes()).expect("send");
        let (status, mut body) = response(&mut s);
        if status >= 400 {
            // Refusal pages end with the connection, which must end.
            let mut rest = Vec::new();
            s.set_read_timeout(Some(T)).expect("timeout");
            s.read_to_end(&mut rest)
                .expect("the relay closes after a refusal");
            body.push_str(&String::from_utf8_lossy(&rest));
            got.push((status, body));
            break;
        }
        got.push((status, body));
    }
    got
}

fn get(host: &str, target: &str, extra: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n")
}

/// A frontend and a backend serving both names from the one nginx, the
/// locked one with `+password/bob=pw`. Returns the public port.
fn relay(nginx: &Nginx) -> (u16, Proc, Proc) {
    let port = free_port();
    let fe = frontend(&[port], &["http:*.test:s3cret"], &[]);
    let be = backend(
        port,
        &[
            kite("http", "open.test", nginx.port, "s3cret"),
            kite("http", "locked.test", nginx.port, "s3cret"),
        ],
        &["--be_config=locked.test/80:password/bob:pw"],
    );
    live(&be, "http:open.test");
    live(&be, "http:locked.test");
    (port, fe, be)
}

#[test]
fn keep_alive_cannot_reach_another_kite() {
    let Some(nginx) = Nginx::start() else { return };
    // The attacks are real: nginx itself answers with the locked site.
    let direct = exchange(
        nginx.port,
        &[get("open.test", "/", ""), get("locked.test", "/", "")],
    );
    assert_eq!(direct[1], (200, format!("{SECRET_PAGE}\n")));
    let direct = exchange(nginx.port, &[get("open.test", "http://locked.test/", "")]);
    assert_eq!(direct[0], (200, format!("{SECRET_PAGE}\n")));

    let (port, _fe, be) = relay(&nginx);
    let open = (200, format!("{OPEN_PAGE}\n"));
    // Host switched on the second request.
    let got = exchange(
        port,
        &[get("open.test", "/", ""), get("locked.test", "/", "")],
    );
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], open);
    assert_eq!(got[1].0, 421, "{}", got[1].1);
    assert!(!got[1].1.contains(SECRET_PAGE));
    be.wait_for("request for another site", T);
    // One request whose absolute-form target names the locked site.
    let got = exchange(port, &[get("open.test", "http://locked.test/", "")]);
    assert_eq!(got[0].0, 421);
    // The other way round: in with credentials, then on to the open site.
    let got = exchange(
        port,
        &[get("locked.test", "/", BOB), get("open.test", "/", "")],
    );
    assert_eq!(got[0], (200, format!("{SECRET_PAGE}\n")));
    assert_eq!(got[1].0, 421);
    // Credentials are asked of every request, not only the first.
    let got = exchange(
        port,
        &[get("locked.test", "/", BOB), get("locked.test", "/", "")],
    );
    assert_eq!(got[1].0, 401);
    // The same site in absolute form, and upper case with a port, is fine.
    let got = exchange(
        port,
        &[
            get("open.test", "http://OPEN.test:80/", ""),
            get("Open.Test:80", "/", ""),
        ],
    );
    assert_eq!(got, [open.clone(), open]);
}

#[test]
fn unparseable_requests_are_refused_not_passed() {
    let Some(nginx) = Nginx::start() else { return };
    let (port, _fe, be) = relay(&nginx);
    let first = get("open.test", "/", "");
    let next = [
        // Leading whitespace, which some servers skip (Python's http.server).
        format!(" {}", get("open.test", "/wp-admin/", "")),
        format!("\t{}", get("open.test", "/wp-admin/", "")),
        "GET / HTTP/1.10\r\nHost: open.test\r\n\r\n".to_string(),
        get("open.test", "/", &format!("X-Big: {}\r\n", "a".repeat(17 * 1024))),
        get("open.test", "/", "X-Folded: a\r\n b\r\n"),
        "POST / HTTP/1.1\r\nHost: open.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_string(),
    ];
    for bad in &next {
        let got = exchange(port, &[first.clone(), bad.clone()]);
        assert_eq!(got[0], (200, format!("{OPEN_PAGE}\n")));
        assert_eq!(got.get(1).map(|g| g.0), Some(400), "{bad:.60?}");
        // The relay's own page (nginx refuses some of these itself).
        assert!(got[1].1.contains("Sorry! (be)"), "{}", got[1].1);
    }
    // The security filter sees requests after the first one too.
    let got = exchange(port, &[first.clone(), get("open.test", "/wp-admin/", "")]);
    assert_eq!(got[1].0, 500);
    assert!(!got[1].1.contains(ADMIN_PAGE));
    be.wait_for("bad request (not an HTTP/1.x request line)", T);
}

#[test]
fn every_spelling_of_forwarding_headers_is_renamed() {
    let origin = Origin::start();
    let port = free_port();
    let _fe = frontend(&[port], &["http:fwd.test:s3cret"], &[]);
    let be = backend(
        port,
        &[kite("http", "fwd.test", origin.port(), "s3cret")],
        &[],
    );
    live(&be, "http:fwd.test");
    let spoofed = "X-Forwarded-For: 6.6.6.6\r\nX_Forwarded_For: 6.6.6.6\r\n\
                   Forwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nx_real_ip: 6.6.6.6\r\n\
                   X-Forwarded-Host: evil.test\r\n";
    let req = |n: usize| {
        format!(
            "POST /echo HTTP/1.1\r\nHost: fwd.test\r\n{spoofed}Content-Length: {n}\r\n\r\n{}",
            "b".repeat(n)
        )
    };
    // Twice on one connection: the second head is rewritten the same way.
    let got = exchange(port, &[req(3), req(0)]);
    assert_eq!(got.len(), 2);
    for (status, echoed) in got {
        assert_eq!(status, 200);
        let lines: Vec<&str> = echoed.lines().collect();
        assert!(lines.contains(&"X-Forwarded-For: 127.0.0.1"), "{echoed}");
        for line in lines {
            let spoofed = line.contains("6.6.6.6") || line.contains("evil.test");
            assert!(!spoofed || line.starts_with("X-Old-"), "{echoed}");
        }
    }
}

#[test]
fn held_request_heads_count_in_the_buffer_budget() {
    let Some(nginx) = Nginx::start() else { return };
    let (port, _fe, be) = relay(&nginx);
    let before = crate::meter::stats(&be).buffered;
    // Each connection's second head stops short of its end: the backend
    // holds it, unjudged, and must count it.
    let pad = "a".repeat(12 * 1024);
    let mut conns = Vec::new();
    for _ in 0..16 {
        let mut s = TcpStream::connect(local(port)).expect("connect");
        s.write_all(get("open.test", "/", "").as_bytes())
            .expect("send");
        assert_eq!(response(&mut s).0, 200);
        let partial = format!("GET / HTTP/1.1\r\nHost: open.test\r\nX-Pad: {pad}");
        s.write_all(partial.as_bytes()).expect("send");
        conns.push(s);
    }
    let want = before + 16 * 12 * 1024;
    let (peak, ok) = crate::meter::poll_stats(&be, T, |st| st.buffered >= want);
    assert!(ok, "held heads not counted: {peak:?}, wanted {want}");
    drop(conns);
    // Released with their streams (the tunnel's own buffers may have grown
    // meanwhile, by less than the heads' half).
    let released = |st: &crate::meter::Stats| st.buffered + 8 * 12 * 1024 <= peak.buffered;
    let (st, ok) = crate::meter::poll_stats(&be, T, |st| st.streams == 0 && released(st));
    assert!(ok, "held heads not released: {st:?} after {peak:?}");
}

#[test]
fn idle_streams_are_closed() {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &["http:idle.test:s3cret"], &["--stream_idle=1"]);
    let be = backend(
        port,
        &[kite("http", "idle.test", origin.port(), "s3cret")],
        &["--stream_idle=1"],
    );
    live(&be, "http:idle.test");
    let started = std::time::Instant::now();
    let mut idle = TcpStream::connect(local(port)).expect("connect");
    idle.write_all(get("idle.test", "/", "").as_bytes())
        .expect("send");
    assert_eq!(response(&mut idle).0, 200);
    // A connection that keeps talking stays open meanwhile. Each round
    // also looks (for at most 300 ms) whether the idle one was closed.
    let mut busy = TcpStream::connect(local(port)).expect("connect");
    idle.set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .expect("timeout");
    let mut talks = 0;
    let mut closed = false;
    while !closed && started.elapsed() < std::time::Duration::from_secs(10) {
        busy.write_all(get("idle.test", "/", "").as_bytes())
            .expect("busy send");
        assert_eq!(response(&mut busy).0, 200, "a busy stream was cut");
        talks += 1;
        let mut probe = [0u8; 64];
        closed = matches!(idle.read(&mut probe), Ok(0));
    }
    assert!(closed, "the idle stream was not closed within 10 s");
    assert!(talks >= 3, "closed too early: after {talks} rounds");
    // Whichever side's timer fired first says so.
    let said = |p: &Proc| p.contains("idle (--stream_idle)");
    util::wait_until("the idle log line", T, || said(&fe) || said(&be));
    busy.write_all(get("idle.test", "/", "").as_bytes())
        .expect("busy send");
    assert_eq!(response(&mut busy).0, 200, "the busy stream survived");
}
