//! The backend's per-kite options, pagekite.py style: `--be_config=HOST/PORT:KEY:VALUE`
//! and the short command line `LOCALPORT KITENAME +key[=value] [AND ...]`. `ip/...`
//! (address, prefix, CIDR) serves listed visitors and gives others the `(be)` 503 without
//! touching the origin; `password/USER` wants HTTP Basic auth (401 with
//! `WWW-Authenticate: Basic realm=PageKite` when missing or wrong); `rewritehost` puts the
//! local host (or the given name) in `Host:` and keeps the old one as `X-Old-Host`;
//! `rawheaders` leaves the request head alone; `proxyproto` (v1 text, v2 binary) puts a
//! PROXY header naming the visitor before the request, parsed here by a small origin; the
//! default security filter answers dangerous paths with a 500 the origin never sees, and
//! `+insecure` / `--insecure` lift it. Malformed specs and unknown keys exit 1 naming
//! the flag.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::ExitStatus;

use super::{Notes, SECRET, Server, live, raw_frontend};
use crate::fixture::{T, backend, kite};
use crate::origin::{INDEX_BODY, Origin};
use crate::util::{self, CurlResult, Proc, RawResponse, free_port, local};

/// `--be_config=HOST_PORT:KEY:VALUE`.
fn cfg(host_port: &str, key: &str, value: &str) -> String {
    format!("--be_config={host_port}:{key}:{value}")
}

/// An rkite pair serving `http` kites `(name, local port)`, the backend with `be_extra`.
fn relay(kites: &[(&str, u16)], be_extra: &[String]) -> (u16, Proc, Proc) {
    let (port, fe) = raw_frontend(&[]);
    let specs: Vec<String> = kites
        .iter()
        .map(|(name, local)| kite("http", name, *local, SECRET))
        .collect();
    let extra: Vec<&str> = be_extra.iter().map(String::as_str).collect();
    let be = backend(port, &specs, &extra);
    for (name, _) in kites {
        live(&be, &format!("http:{name}"));
        live(&fe, &format!("http:{name}"));
    }
    (port, fe, be)
}

/// curl through the frontend on `port` with `Host: host` and extra arguments.
fn fetch(port: u16, host: &str, path: &str, extra: &[&str]) -> CurlResult {
    let url = format!("http://127.0.0.1:{port}{path}");
    let host = format!("Host: {host}");
    let mut args = vec!["-H", host.as_str()];
    args.extend_from_slice(extra);
    args.push(&url);
    util::curl(&args)
}

/// A request sent exactly as written (no path normalisation), answer parsed.
fn raw_get(port: u16, host: &str, path: &str) -> RawResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    RawResponse::parse(&util::http_request(local(port), req.as_bytes(), T))
}

/// The `Host:` values in a request head (not `X-Old-Host:`).
fn host_lines(head: &str) -> Vec<String> {
    head.split("\r\n")
        .filter_map(|l| l.strip_prefix("Host: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn ip_option_serves_only_listed_visitors() {
    let origin = Origin::start();
    let rules = [
        ("exact.example.test", "ip/127.0.0.1"),
        ("prefix.example.test", "ip/127.0.0"),
        ("cidr.example.test", "ip/127.0.0.0/8"),
        ("other.example.test", "ip/10.1.2.3"),
    ];
    let kites: Vec<(&str, u16)> = rules.iter().map(|(n, _)| (*n, origin.port())).collect();
    let extra: Vec<String> = rules
        .iter()
        .map(|(n, key)| cfg(&format!("{n}/80"), key, "True"))
        .collect();
    let (port, _fe, _be) = relay(&kites, &extra);

    for (name, _) in &rules[..3] {
        let page = fetch(port, name, "/", &[]);
        assert_eq!(
            (page.status, page.body_str().as_str()),
            (200, INDEX_BODY),
            "{name}"
        );
    }
    assert_eq!(origin.requests().len(), 3);
    let refused = fetch(port, "other.example.test", "/", &[]);
    assert_eq!(refused.status, 503);
    assert!(
        refused.body_str().contains("Sorry! (be)"),
        "{}",
        refused.body_str()
    );
    assert_eq!(
        origin.requests().len(),
        3,
        "a refused visitor never reaches the origin"
    );
}

#[test]
fn password_option_wants_basic_auth() {
    let origin = Origin::start();
    let extra = [cfg("pw.example.test/80", "password/alice", "wonder")];
    let (port, _fe, _be) = relay(&[("pw.example.test", origin.port())], &extra);

    let ok = fetch(port, "pw.example.test", "/", &["-u", "alice:wonder"]);
    assert_eq!((ok.status, ok.body_str().as_str()), (200, INDEX_BODY));
    for creds in [None, Some("alice:nope"), Some("bob:wonder")] {
        let extra: Vec<&str> = creds.map(|c| vec!["-u", c]).unwrap_or_default();
        let denied = fetch(port, "pw.example.test", "/", &extra);
        assert_eq!(denied.status, 401, "{creds:?}");
        assert_eq!(
            denied.header("WWW-Authenticate"),
            Some("Basic realm=PageKite"),
            "{creds:?}"
        );
    }
    assert_eq!(
        origin.requests().len(),
        1,
        "only the right password got through"
    );
}

#[test]
fn rewritehost_and_rawheaders_change_what_the_origin_sees() {
    let origin = Origin::start();
    let o = origin.port();
    let extra = [
        cfg("rw1.example.test/80", "rewritehost", "True"),
        cfg("rw2.example.test/80", "rewritehost", "origin.internal"),
        cfg("rawh.example.test/80", "rawheaders", "True"),
    ];
    let names = [
        "rw1.example.test",
        "rw2.example.test",
        "rawh.example.test",
        "plain.example.test",
    ];
    let kites: Vec<(&str, u16)> = names.iter().map(|n| (*n, o)).collect();
    let (port, _fe, _be) = relay(&kites, &extra);
    let head = |name: &str| {
        let r = fetch(port, name, "/echo", &["-H", "X-Forwarded-For: 6.6.6.6"]);
        assert_eq!(r.status, 200, "{name}");
        r.body_str()
    };

    let rw1 = head("rw1.example.test");
    let local_host = ["127.0.0.1".to_string(), format!("127.0.0.1:{o}")];
    let hosts = host_lines(&rw1);
    assert!(
        hosts.len() == 1 && local_host.contains(&hosts[0]),
        "rewritehost: Host is the local server: {rw1}"
    );
    assert!(
        rw1.contains("\r\nX-Old-Host: rw1.example.test\r\n"),
        "{rw1}"
    );
    assert!(rw1.contains("\r\nX-Forwarded-For: 127.0.0.1\r\n"), "{rw1}");

    let rw2 = head("rw2.example.test");
    assert_eq!(host_lines(&rw2), ["origin.internal"], "{rw2}");
    assert!(
        rw2.contains("\r\nX-Old-Host: rw2.example.test\r\n"),
        "{rw2}"
    );

    let rawh = head("rawh.example.test");
    assert!(rawh.contains("\r\nX-Forwarded-For: 6.6.6.6\r\n"), "{rawh}");
    for absent in [
        "X-Old-",
        "X-Forwarded-Proto",
        "X-PageKite-Port",
        "127.0.0.1",
    ] {
        assert!(!rawh.contains(absent), "rawheaders added {absent}: {rawh}");
    }
    assert_eq!(host_lines(&rawh), ["rawh.example.test"]);

    let plain = head("plain.example.test");
    assert!(
        plain.contains("\r\nX-Forwarded-For: 127.0.0.1\r\n"),
        "{plain}"
    );
    assert!(
        plain.contains("\r\nX-Old-X-Forwarded-For: 6.6.6.6\r\n"),
        "{plain}"
    );
    assert_eq!(host_lines(&plain), ["plain.example.test"]);
}

// ---------------------------------------------------------------------------------------
// PROXY protocol

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fn read_exact(s: &mut TcpStream, n: usize) -> std::io::Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v)?;
    Ok(v)
}

/// Reads a PROXY header (v1 or v2) off `s`, described in one line; for no header,
/// "none" and the bytes already read (they belong to the request).
fn read_proxy_header(s: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let first = read_exact(s, 1)?;
    match first[0] {
        b'P' => {
            let mut line = first;
            while !line.ends_with(b"\r\n") {
                if line.len() > 107 {
                    return Err(std::io::Error::new(ErrorKind::InvalidData, "v1 too long"));
                }
                line.extend(read_exact(s, 1)?);
            }
            let text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
            Ok((format!("v1 {text}"), Vec::new()))
        }
        b'\r' => {
            let mut fixed = first;
            fixed.extend(read_exact(s, 15)?);
            if &fixed[..12] != V2_SIGNATURE {
                return Ok(("bad v2 signature".to_string(), Vec::new()));
            }
            let (cmd, fam) = (fixed[12], fixed[13]);
            let len = u16::from_be_bytes([fixed[14], fixed[15]]);
            let rest = read_exact(s, usize::from(len))?;
            let mut text = format!("v2 cmd={cmd:#04x} fam={fam:#04x} len={len}");
            if fam == 0x11 && rest.len() >= 12 {
                let ip = |b: &[u8]| format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]);
                let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
                text.push_str(&format!(
                    " src={}:{} dst={}:{}",
                    ip(&rest[0..4]),
                    port(&rest[8..10]),
                    ip(&rest[4..8]),
                    port(&rest[10..12])
                ));
            }
            Ok((text, Vec::new()))
        }
        _ => Ok(("none".to_string(), first)),
    }
}

/// An origin that reads a PROXY header, then an HTTP request head, and answers 200 with
/// the header's description on the first line of the body and the request head after.
fn proxy_origin() -> Server {
    Server::start("proxy-origin", |mut s, notes: &Notes| {
        let (header, mut head) = match read_proxy_header(&mut s) {
            Ok(h) => h,
            Err(e) => return notes.add(format!("error: {e}")),
        };
        while !head.ends_with(b"\r\n\r\n") {
            match read_exact(&mut s, 1) {
                Ok(b) => head.extend(b),
                Err(e) => return notes.add(format!("error in the request head: {e}")),
            }
        }
        notes.add(header.clone());
        let body = format!("{header}\n{}", String::from_utf8_lossy(&head));
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(reply.as_bytes());
        let _ = s.shutdown(Shutdown::Write);
    })
}

/// A request through kite `name` (whose origin is `proxy_origin`) from a client whose
/// port we know; returns (PROXY header description, request head, client port).
fn through_proxy_origin(port: u16, name: &str) -> (String, String, u16) {
    let mut s = TcpStream::connect_timeout(&local(port), T).expect("connect");
    s.set_read_timeout(Some(T)).expect("read timeout");
    let client_port = s.local_addr().expect("local addr").port();
    let req = format!("GET /pp HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the reply");
    let r = RawResponse::parse(&raw);
    assert_eq!(r.status, 200, "{}", r.body_str());
    let body = r.body_str();
    let (header, head) = body.split_once('\n').expect("two parts");
    (header.to_string(), head.to_string(), client_port)
}

#[test]
fn proxyproto_v1_puts_the_visitor_before_the_request() {
    let origin = proxy_origin();
    let extra = [cfg("pp1.example.test/80", "proxyproto", "True")];
    let (port, _fe, _be) = relay(&[("pp1.example.test", origin.port())], &extra);
    let (header, head, client_port) = through_proxy_origin(port, "pp1.example.test");
    assert_eq!(
        header,
        format!("v1 PROXY TCP4 127.0.0.1 0.0.0.0 {client_port} {port}")
    );
    assert!(head.starts_with("GET /pp HTTP/1.1\r\n"), "{head}");
    assert_eq!(origin.notes().len(), 1);
}

#[test]
fn proxyproto_v2_puts_a_binary_header_before_the_request() {
    let origin = proxy_origin();
    let extra = [cfg("pp2.example.test/80", "proxyproto", "2")];
    let (port, _fe, _be) = relay(&[("pp2.example.test", origin.port())], &extra);
    let (header, head, client_port) = through_proxy_origin(port, "pp2.example.test");
    assert!(
        header.starts_with("v2 cmd=0x21 fam=0x11 len="),
        "PROXY v2, PROXY command, TCP over IPv4: {header}"
    );
    let len: u16 = header["v2 cmd=0x21 fam=0x11 len=".len()..]
        .split(' ')
        .next()
        .and_then(|l| l.parse().ok())
        .expect("a length");
    assert!(len >= 12, "{header}");
    assert!(
        header.contains(&format!(" src=127.0.0.1:{client_port} ")),
        "the source is the visitor: {header}"
    );
    assert!(head.starts_with("GET /pp HTTP/1.1\r\n"), "{head}");
}

#[test]
fn security_filter_blocks_dangerous_paths_unless_insecure() {
    let (safe, open, global) = (Origin::start(), Origin::start(), Origin::start());
    let (port, fe) = raw_frontend(&[]);
    let be = backend(
        port,
        &[
            kite("http", "safe.example.test", safe.port(), SECRET),
            kite("http", "open.example.test", open.port(), SECRET),
        ],
        &[&cfg("open.example.test/80", "insecure", "True")],
    );
    let be_global = backend(
        port,
        &[kite("http", "global.example.test", global.port(), SECRET)],
        &["--insecure"],
    );
    for (p, id) in [
        (&be, "http:safe.example.test"),
        (&be, "http:open.example.test"),
        (&be_global, "http:global.example.test"),
    ] {
        live(p, id);
        live(&fe, id);
    }

    let dangerous = [
        "/wp-config.php",
        "/../etc/passwd",
        "/blog/wp-admin/options.php",
        "/phpmyadmin/index.php",
        "/.htaccess",
    ];
    for path in dangerous {
        assert_eq!(
            raw_get(port, "safe.example.test", path).status,
            500,
            "{path}"
        );
    }
    assert!(safe.requests().is_empty(), "{:?}", safe.requests());
    assert_eq!(raw_get(port, "safe.example.test", "/").status, 200);

    for (name, origin) in [
        ("open.example.test", &open),
        ("global.example.test", &global),
    ] {
        for path in dangerous {
            // The test origin has no such routes: its own 404 proves it was reached.
            assert_eq!(raw_get(port, name, path).status, 404, "{name}{path}");
        }
        let seen = origin.requests();
        assert_eq!(seen.len(), dangerous.len(), "{name}");
        assert!(
            seen[1].starts_with("GET /../etc/passwd HTTP/1.1\r\n"),
            "{}",
            seen[1]
        );
    }
}

#[test]
fn short_form_command_line_with_options() {
    let (o1, o2) = (Origin::start(), Origin::start());
    let (port, fe) = raw_frontend(&[]);
    let (p1, p2) = (o1.port().to_string(), o2.port().to_string());
    let be = util::rkite(&[
        &format!("--frontend=127.0.0.1:{port}"),
        &format!("--kitesecret={SECRET}"),
        &p1,
        "sf1.example.test",
        "+password/alice=wonder",
        "AND",
        &p2,
        "sf2.example.test",
        "+rawheaders",
        "+insecure",
        "+ip/127.0.0.1",
    ]);
    for id in ["http:sf1.example.test", "http:sf2.example.test"] {
        live(&be, id);
        live(&fe, id);
    }
    let denied = fetch(port, "sf1.example.test", "/", &[]);
    assert_eq!(denied.status, 401);
    assert_eq!(
        denied.header("WWW-Authenticate"),
        Some("Basic realm=PageKite")
    );
    let ok = fetch(port, "sf1.example.test", "/", &["-u", "alice:wonder"]);
    assert_eq!((ok.status, ok.body_str().as_str()), (200, INDEX_BODY));
    assert_eq!(o1.requests().len(), 1);

    let echo = fetch(
        port,
        "sf2.example.test",
        "/echo",
        &["-H", "X-Forwarded-For: 6.6.6.6"],
    );
    let head = echo.body_str();
    assert!(head.contains("\r\nX-Forwarded-For: 6.6.6.6\r\n"), "{head}");
    assert!(!head.contains("X-Old-"), "{head}");
    assert_eq!(
        raw_get(port, "sf2.example.test", "/wp-config.php").status,
        404
    );
}

/// Runs rkite with `args` and returns its exit status and log.
fn run(args: &[&str]) -> (ExitStatus, String) {
    let p = util::rkite(args);
    let status = p
        .wait_exit(T)
        .unwrap_or_else(|| panic!("rkite {args:?} did not exit:\n{}", p.lines().join("\n")));
    (status, p.lines().join("\n"))
}

#[test]
fn bad_option_specs_exit_one_naming_the_flag() {
    let be = [
        "--frontend=127.0.0.1:9",
        "--service_on=http:x.example.test:127.0.0.1:80:s",
    ];
    let fe_port = format!("--ports={}", free_port());
    let fe = [
        "--isfrontend",
        "--host=127.0.0.1",
        &fe_port,
        "--domain=*:x.test:s",
    ];
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &be,
            "--be_config=x.example.test/80:nosuchkey:True",
            "be_config",
        ),
        (&be, "--be_config=x.example.test", "be_config"),
        (
            &be,
            "--be_config=x.example.test/80:password/bob",
            "be_config",
        ),
        (&fe, "--client_acl=perhaps:127.0.0.1", "client_acl"),
        (&fe, "--client_acl=allow:(", "client_acl"),
        (&fe, "--tunnel_acl=deny", "tunnel_acl"),
        (&fe, "--max_conns_per_ip=lots", "max_conns_per_ip"),
        (&fe, "--rawports=virtual,twenty", "rawports"),
    ];
    for (base, bad, flag) in cases {
        let mut args = base.to_vec();
        args.push(bad);
        let (status, log) = run(&args);
        assert_eq!(status.code(), Some(1), "{bad}: {log}");
        assert!(log.contains(flag), "{bad} should name {flag}: {log}");
    }
    let (status, log) = run(&[
        "--frontend=127.0.0.1:9",
        "--kitesecret=s",
        "8080",
        "x.example.test",
        "+nosuchkey",
    ]);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("nosuchkey"), "{log}");
}
