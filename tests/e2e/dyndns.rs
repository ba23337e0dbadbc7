//! `--dyndns` end to end: a recorder on loopback plays the provider (it
//! records each request and answers from a script), rkite frontends on
//! 127.0.0.1 and 127.0.0.2 are the relays, and the backend under test tells
//! the recorder where its kite flies. Debian's pagekite.py, pointed at the
//! same recorder with the same configuration, is the oracle for the URL
//! and its signature. HTTPS goes through `socat` terminating TLS with a
//! certificate of the test's own CA, and through `microsocks` bound to
//! 127.0.0.3 so the recorder can tell the proxy's connections apart.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::certs;
use crate::fixture::{T, frontend, kite, live};
use crate::origin::Origin;
use crate::peers;
use crate::util::{self, Proc, free_port};

const SECRET: &str = "dd-s3cret";
const DOMAIN: &str = "dd.example.test";
/// pagekite.net's template, pointed at the recorder.
const TEMPLATE: &str = "/?hostname=%(domain)s&myip=%(ips)s&sign=%(sign)s";

/// One request the recorder saw.
#[derive(Clone, Debug)]
struct Seen {
    peer: IpAddr,
    /// The request line's target: path and query.
    target: String,
    head: String,
}

/// The provider: records every request head and answers the n-th request
/// with the n-th scripted reply (the last one repeats).
struct Recorder {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    fn start(script: &[(u16, &str)]) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        let script: Vec<(u16, String)> = script.iter().map(|(s, b)| (*s, b.to_string())).collect();
        thread::spawn(move || {
            for (n, conn) in listener.incoming().take(64).enumerate() {
                let Ok(conn) = conn else { continue };
                let reply = script
                    .get(n)
                    .or(script.last())
                    .cloned()
                    .unwrap_or((200, "good".into()));
                let _ = answer(conn, &reply, &log);
            }
        });
        Recorder { port, seen }
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until `n` requests have been seen; returns them all.
    fn wait_for(&self, n: usize) -> Vec<Seen> {
        util::wait_until(&format!("{n} dyndns request(s)"), T + T, || {
            self.requests().len() >= n
        });
        self.requests()
    }
}

fn answer(mut c: TcpStream, reply: &(u16, String), log: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    c.set_read_timeout(Some(T))?;
    let peer = c.peer_addr()?.ip();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = c.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let target = head.split(' ').nth(1).unwrap_or("").to_string();
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Seen { peer, target, head });
    let (status, body) = reply;
    write!(
        c,
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    c.flush()
}

/// The query's fields, in order.
fn fields(target: &str) -> Vec<(String, String)> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn field(target: &str, name: &str) -> String {
    fields(target)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// pagekite.py's `signToken(length=100)`: 8 characters of salt, then the
/// SHA-1 hex of secret, payload and salt; checked here with ring.
fn signature_ok(sign: &str, payload: &str) -> bool {
    let Some(salt) = sign.get(..8) else {
        return false;
    };
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{SECRET}{payload}{salt}").as_bytes(),
    );
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    sign == format!("{salt}{hex}")
}

/// The request with the signature's salt and hash taken out: what must be
/// the same for pagekite.py and rkite.
fn unsalted(target: &str) -> String {
    fields(target)
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "sign" => format!("sign=<{} chars>", v.len()),
            _ => format!("{k}={v}"),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn dyndns_flag(port: u16) -> String {
    format!("--dyndns=http://127.0.0.1:{port}{TEMPLATE}")
}

#[test]
fn the_update_is_the_one_pagekite_py_sends() {
    if !util::require_peer(peers::PAGEKITE) {
        return;
    }
    let recorder = Recorder::start(&[(200, "good 127.0.0.1")]);
    let origin = Origin::start();
    let fe_port = free_port();
    let domain = format!("--domain=http:{DOMAIN}:{SECRET}");
    let _fe = frontend(&[fe_port], &[], &[&domain]);
    let k = peers::kite("http", DOMAIN, origin.port(), SECRET);
    let pk = peers::pagekite_backend(fe_port, &[&k], &[&dyndns_flag(recorder.port)]);
    peers::wait_kite_up(&pk, "http", DOMAIN);
    let from_pk = recorder.wait_for(1);
    drop(pk);
    let pk_target = &from_pk[0].target;

    let be = crate::fixture::backend(
        fe_port,
        &[kite("http", DOMAIN, origin.port(), SECRET)],
        &[&dyndns_flag(recorder.port)],
    );
    live(&be, &format!("http:{DOMAIN}"));
    let all = recorder.wait_for(2);
    let ours = &all[1].target;
    assert_eq!(unsalted(ours), unsalted(pk_target), "{ours} vs {pk_target}");
    assert_eq!(
        unsalted(ours),
        format!("hostname={DOMAIN}&myip=127.0.0.1&sign=<48 chars>")
    );
    let payload = format!("{DOMAIN}:127.0.0.1");
    assert!(
        signature_ok(&field(pk_target, "sign"), &payload),
        "{pk_target}"
    );
    assert!(signature_ok(&field(ours, "sign"), &payload), "{ours}");
    assert_ne!(field(ours, "sign"), field(pk_target, "sign"), "fresh salt");
    be.wait_for(
        &format!("dyndns: updated http://127.0.0.1:{}", recorder.port),
        T,
    );
}

/// A frontend on another loopback address, 127.0.0.`n`.
fn frontend_on(n: u8, port: u16) -> Proc {
    let fe = util::rkite(&[
        "--isfrontend",
        &format!("--host=127.0.0.{n}"),
        &format!("--ports={port}"),
        &format!("--domain=http:{DOMAIN}:{SECRET}"),
    ]);
    fe.wait_for(&format!("listening on 127.0.0.{n}:{port}"), T);
    fe
}

#[test]
fn one_update_per_change_of_frontends() {
    let recorder = Recorder::start(&[(200, "good")]);
    let origin = Origin::start();
    let (p1, p2) = (free_port(), free_port());
    let _fe1 = frontend_on(1, p1);
    let fe2 = frontend_on(2, p2);
    let status = util::temp_dir("dyndns-status").join("status.json");
    let be = util::rkite(&[
        &format!("--frontend=127.0.0.1:{p1}"),
        &format!("--frontend=127.0.0.2:{p2}"),
        &format!(
            "--service_on={}",
            kite("http", DOMAIN, origin.port(), SECRET)
        ),
        &dyndns_flag(recorder.port),
        &format!("--status_file={}", status.display()),
    ]);
    be.wait_for_count(&format!("kite http:{DOMAIN} is live"), 2, T);
    // Both tunnels come up within the settling time: one update, both
    // frontends, the configured (preferred) one first.
    let first = recorder.wait_for(1);
    be.wait_for("dyndns: updated", T);
    assert_eq!(field(&first[0].target, "myip"), "127.0.0.1,127.0.0.2");
    assert!(signature_ok(
        &field(&first[0].target, "sign"),
        &format!("{DOMAIN}:127.0.0.1,127.0.0.2")
    ));
    util::wait_until("the status file shows the update", T, || {
        std::fs::read_to_string(&status).is_ok_and(|s| {
            s.contains("\"dyndns\": {\"provider\": ")
                && s.contains("\"state\": \"updated to 127.0.0.1,127.0.0.2\"")
        })
    });
    // A frontend goes: one update without it.
    fe2.kill();
    be.wait_for(&format!("kite http:{DOMAIN} is down on 127.0.0.2:{p2}"), T);
    let second = recorder.wait_for(2);
    assert_eq!(field(&second[1].target, "myip"), "127.0.0.1");
    be.wait_for_count("dyndns: updated", 2, T);
    // It comes back: one more, with both again.
    let _fe2 = frontend_on(2, p2);
    be.signal(libc::SIGUSR1);
    let third = recorder.wait_for(3);
    assert_eq!(field(&third[2].target, "myip"), "127.0.0.1,127.0.0.2");
    be.wait_for_count("dyndns: updated", 3, T);
    assert_eq!(recorder.requests().len(), 3, "one update per change");
}

#[test]
fn a_failed_update_backs_off_and_sigusr1_retries_it() {
    let recorder = Recorder::start(&[(503, "busy"), (200, "badauth"), (200, "nochg 127.0.0.1")]);
    let origin = Origin::start();
    let fe_port = free_port();
    let domain = format!("--domain=http:{DOMAIN}:{SECRET}");
    let _fe = frontend(&[fe_port], &[], &[&domain]);
    let status = util::temp_dir("dyndns-retry").join("status.json");
    let be = crate::fixture::backend(
        fe_port,
        &[kite("http", DOMAIN, origin.port(), SECRET)],
        &[
            &dyndns_flag(recorder.port),
            &format!("--status_file={}", status.display()),
        ],
    );
    recorder.wait_for(1);
    be.wait_for("failed: HTTP status 503 (failure 1 in a row)", T);
    // pagekite.py's back-off: 56 s × 2 after the first failure.
    util::wait_until("the status file shows the back-off", T, || {
        std::fs::read_to_string(&status).is_ok_and(|s| {
            s.contains("update failed: HTTP status 503; retrying in 11")
                && s.contains("\"failures\": 1")
        })
    });
    assert_eq!(
        recorder.requests().len(),
        1,
        "nothing sent while backing off"
    );
    be.signal(libc::SIGUSR1);
    be.wait_for("dyndns: retrying the failed update now", T);
    recorder.wait_for(2);
    be.wait_for(
        "failed: badauth (wrong user name or password) (failure 2 in a row)",
        T,
    );
    be.signal(libc::SIGUSR1);
    recorder.wait_for(3);
    be.wait_for("(already so)", T);
    util::wait_until("the status file shows success", T, || {
        std::fs::read_to_string(&status)
            .is_ok_and(|s| s.contains("already at 127.0.0.1") && s.contains("\"failures\": 0"))
    });
}

/// socat terminating TLS with a certificate for 127.0.0.1 from `pki`, in
/// front of the recorder.
fn tls_in_front(pki: &certs::Pki, recorder: &Recorder) -> (u16, Proc) {
    let leaf = pki.leaf(&["127.0.0.1"]);
    let tls_port = free_port();
    let socat = Proc::start(
        "socat-tls",
        "socat",
        &[
            &format!(
                "OPENSSL-LISTEN:{tls_port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
                certs::path_str(&leaf.cert),
                certs::path_str(&leaf.key)
            ),
            &format!("TCP:127.0.0.1:{}", recorder.port),
        ],
        &[],
    );
    util::wait_port(util::local(tls_port), T);
    (tls_port, socat)
}

/// A frontend and a backend flying the kite with `extra` flags.
fn backend_with(extra: &[&str]) -> (Proc, Proc, Origin) {
    let origin = Origin::start();
    let fe_port = free_port();
    let domain = format!("--domain=http:{DOMAIN}:{SECRET}");
    let fe = frontend(&[fe_port], &[], &[&domain]);
    let be = crate::fixture::backend(
        fe_port,
        &[kite("http", DOMAIN, origin.port(), SECRET)],
        extra,
    );
    (fe, be, origin)
}

/// dyndns.org's way: https, credentials in the URL sent as Basic auth,
/// the server's certificate checked against --ca_certs.
#[test]
fn https_update_with_basic_auth() {
    if !util::require_peer("socat") {
        return;
    }
    let recorder = Recorder::start(&[(200, "good 127.0.0.1")]);
    let (tls_port, _socat) = tls_in_front(certs::pki(), &recorder);
    let (_fe, be, _origin) = backend_with(&[
        &format!(
            "--dyndns=https://bob:pa55word@127.0.0.1:{tls_port}/nic/update?hostname=%(domain)s&myip=%(ip)s"
        ),
        &format!("--ca_certs={}", certs::pki().ca_cert_str()),
    ]);
    let seen = recorder.wait_for(1);
    be.wait_for(&format!("dyndns: updated https://127.0.0.1:{tls_port}"), T);
    let req = &seen[0];
    assert_eq!(
        req.target,
        format!("/nic/update?hostname={DOMAIN}&myip=127.0.0.1")
    );
    // base64("bob:pa55word")
    assert!(
        req.head
            .contains("\r\nAuthorization: Basic Ym9iOnBhNTV3b3Jk\r\n"),
        "{}",
        req.head
    );
    assert!(
        req.head
            .contains(&format!("\r\nHost: 127.0.0.1:{tls_port}\r\n")),
        "{}",
        req.head
    );
    let lines = be.lines();
    assert!(!lines.iter().any(|l| l.contains("pa55word")), "{lines:?}");
}

/// With --socksify the update goes through the proxy like the tunnels:
/// microsocks connects out from 127.0.0.3, which the recorder sees.
#[test]
fn the_update_goes_through_the_socks_proxy() {
    if !util::require_peer("microsocks") {
        return;
    }
    let recorder = Recorder::start(&[(200, "good 127.0.0.1")]);
    let socks_port = free_port();
    let socks = socks_port.to_string();
    let _socks = Proc::start(
        "microsocks",
        "microsocks",
        &["-i", "127.0.0.1", "-p", &socks, "-b", "127.0.0.3"],
        &[],
    );
    util::wait_port(util::local(socks_port), T);
    let (_fe, be, _origin) = backend_with(&[
        &dyndns_flag(recorder.port),
        &format!("--socksify=127.0.0.1:{socks_port}"),
    ]);
    let seen = recorder.wait_for(1);
    be.wait_for("dyndns: updated", T);
    assert_eq!(seen[0].peer, IpAddr::from([127, 0, 0, 3]), "via the proxy");
    // The frontend's address is its own, not the proxy's.
    assert_eq!(field(&seen[0].target, "myip"), "127.0.0.1");
}

/// A certificate from another CA: the update fails with a TLS error and
/// nothing reaches the server.
#[test]
fn https_update_checks_the_certificate() {
    if !util::require_peer("socat") {
        return;
    }
    let recorder = Recorder::start(&[(200, "good")]);
    let (tls_port, _socat) = tls_in_front(certs::other_pki(), &recorder);
    let (_fe, be, _origin) = backend_with(&[
        &format!("--dyndns=https://127.0.0.1:{tls_port}{TEMPLATE}"),
        &format!("--ca_certs={}", certs::pki().ca_cert_str()),
    ]);
    be.wait_for(
        "failed: no answer: TLS error: invalid peer certificate: UnknownIssuer",
        T,
    );
    assert!(recorder.requests().is_empty(), "nothing reached the server");
}

/// `dyndns` in an option file, as pagekite.py's `--settings` writes it
/// (`dyndns = URL` for a template of one's own), with the frontend and the
/// kite there too: the same update as from the command line.
#[test]
fn dyndns_from_an_option_file_as_pagekite_py_writes_it() {
    let recorder = Recorder::start(&[(200, "good 127.0.0.1")]);
    let origin = Origin::start();
    let fe_port = free_port();
    let domain = format!("--domain=http:{DOMAIN}:{SECRET}");
    let _fe = frontend(&[fe_port], &[], &[&domain]);
    let rc = util::temp_dir("dyndns-rc").join("pagekite.rc");
    std::fs::write(
        &rc,
        format!(
            "###[ Current settings for pagekite.py v1.5.2.201011. ]#########\n\
             #\n## NOTE: This file may be rewritten/reordered by pagekite.py.\n#\n\n\
             ##[ Default kite and account details ]##\n\
             kitename   = {DOMAIN}\nkitesecret = {SECRET}\n\n\
             ##[ Front-end settings: use service defaults or specify manually ]##\n\
             frontend   = 127.0.0.1:{fe_port}\n\
             dyndns     = http://127.0.0.1:{}{TEMPLATE}\n\n\
             ##[ Back-ends and local services ]##\n\
             service_on = http:{DOMAIN}:127.0.0.1:{}:{SECRET}\n\nEND\n",
            recorder.port,
            origin.port()
        ),
    )
    .expect("write the option file");
    let be = util::rkite(&[&format!("--optfile={}", rc.display())]);
    live(&be, &format!("http:{DOMAIN}"));
    let seen = recorder.wait_for(1);
    assert_eq!(
        unsalted(&seen[0].target),
        format!("hostname={DOMAIN}&myip=127.0.0.1&sign=<48 chars>")
    );
    assert!(signature_ok(
        &field(&seen[0].target, "sign"),
        &format!("{DOMAIN}:127.0.0.1")
    ));
    be.wait_for("dyndns: updated", T);
}
