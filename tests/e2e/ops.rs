//! Operating a running rkite the way an operator or a router's init system
//! does: option files on the command line, `--settings`, `--pidfile` and
//! `--runas`, SIGHUP reloads that add and remove kites, domains, ports and
//! TLS endpoints while another kite's stream keeps flowing (and refuse to
//! switch role), the log file reopened for logrotate, SIGUSR1 reconnects,
//! and the `--status_file` JSON before and after traffic.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::fixture::{T, get, kite, live};
use crate::meter::{read_head, status_of};
use crate::origin::{INDEX_BODY, Origin};
use crate::util::{self, Proc, free_port, local};

const SECRET: &str = "ops-secret";

/// A visitor's connection kept open across requests (HTTP keep-alive), to
/// show that a stream survives whatever happens between two requests.
struct HeldStream {
    sock: TcpStream,
    host: String,
}

impl HeldStream {
    fn open(port: u16, host: &str) -> HeldStream {
        let sock = TcpStream::connect(local(port)).expect("connect to the frontend");
        sock.set_read_timeout(Some(T)).expect("timeout");
        let mut held = HeldStream {
            sock,
            host: host.to_string(),
        };
        held.expect_index("the first request");
        held
    }

    /// One GET / on the same connection; the body must be the index page.
    fn expect_index(&mut self, when: &str) {
        let request = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.sock
            .write_all(request.as_bytes())
            .unwrap_or_else(|e| panic!("{when}: the held stream is gone: {e}"));
        let (head, mut body) = read_head(&mut self.sock, T)
            .unwrap_or_else(|(end, _)| panic!("{when}: the held stream ended: {end:?}"));
        assert_eq!(status_of(&head), 200, "{when}: {head}");
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("{when}: no Content-Length in {head}"));
        let more = length
            .checked_sub(body.len())
            .unwrap_or_else(|| panic!("{when}: more body than announced"));
        let mut rest = vec![0u8; more];
        self.sock
            .read_exact(&mut rest)
            .unwrap_or_else(|e| panic!("{when}: the held stream failed: {e}"));
        body.extend_from_slice(&rest);
        assert_eq!(String::from_utf8_lossy(&body), INDEX_BODY, "{when}");
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write the option file");
}

fn rkite_with(args: &[String]) -> Proc {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    util::rkite(&refs)
}

fn frontend_rc(port_list: &str, domains: &[&str]) -> String {
    let mut rc = format!(
        "# frontend for the ops tests\nisfrontend\nhost = 127.0.0.1\nports = {port_list}\nprotos = http,raw\n"
    );
    for d in domains {
        rc.push_str(&format!("domain = http:{d}:{SECRET}\n"));
    }
    rc
}

fn backend_rc(fe_port: u16, origin: u16, kites: &[&str]) -> String {
    let mut rc = format!("frontend = 127.0.0.1:{fe_port}\n");
    for k in kites {
        rc.push_str(&format!(
            "service_on = {}\n",
            kite("http", k, origin, SECRET)
        ));
    }
    rc
}

#[test]
fn sighup_on_a_backend_adds_and_removes_kites_while_a_stream_flows() {
    let origin = Origin::start();
    let dir = util::temp_dir("hup-backend");
    let port = free_port();
    let fe_rc = dir.join("fe.rc");
    write(&fe_rc, &frontend_rc(&port.to_string(), &["*.hup.test"]));
    let fe = rkite_with(&[format!("--optfile={}", fe_rc.display())]);
    fe.wait_for(&format!("listening on 127.0.0.1:{port}"), T);
    let be_rc = dir.join("be.rc");
    write(
        &be_rc,
        &backend_rc(port, origin.port(), &["a.hup.test", "c.hup.test"]),
    );
    let be = rkite_with(&["-o".to_string(), be_rc.display().to_string()]);
    live(&be, "http:a.hup.test");
    live(&be, "http:c.hup.test");
    let mut held = HeldStream::open(port, "a.hup.test");

    // Add b, remove c.
    write(
        &be_rc,
        &backend_rc(port, origin.port(), &["a.hup.test", "b.hup.test"]),
    );
    be.signal(libc::SIGHUP);
    be.wait_for("SIGHUP: the new configuration is in effect", T);
    live(&be, "http:b.hup.test");
    live(&fe, "http:b.hup.test");
    assert_eq!(get(port, "b.hup.test", "/").body_str(), INDEX_BODY);
    let gone = get(port, "c.hup.test", "/");
    assert_eq!(
        gone.status,
        503,
        "a removed kite is refused: {}",
        gone.body_str()
    );
    held.expect_index("after the reload");

    // One tunnel all along: added in band, nothing reconnected.
    assert_eq!(be.count("connecting to frontend"), 1, "{:?}", be.lines());
    assert!(!be.contains("tunnel closed"), "{:?}", be.lines());

    // A reload that cannot work changes nothing.
    write(&be_rc, "frontend = 127.0.0.1:1\nservice_on = nonsense\n");
    be.signal(libc::SIGHUP);
    be.wait_for("the running configuration stays", T);
    assert_eq!(get(port, "b.hup.test", "/").body_str(), INDEX_BODY);
    held.expect_index("after a failed reload");
}

#[test]
fn sighup_on_a_frontend_changes_ports_and_domains_live() {
    let origin = Origin::start();
    let dir = util::temp_dir("hup-frontend");
    let (p1, p2) = (free_port(), free_port());
    let fe_rc = dir.join("fe.rc");
    write(
        &fe_rc,
        &frontend_rc(&p1.to_string(), &["a.fe.test", "c.fe.test"]),
    );
    let fe = rkite_with(&[format!("--optfile={}", fe_rc.display())]);
    fe.wait_for(&format!("listening on 127.0.0.1:{p1}"), T);
    let be = rkite_with(&[
        format!("--frontend=127.0.0.1:{p1}"),
        format!(
            "--service_on={}",
            kite("http", "a.fe.test", origin.port(), SECRET)
        ),
        format!(
            "--service_on={}",
            kite("http", "c.fe.test", origin.port(), SECRET)
        ),
    ]);
    live(&fe, "http:a.fe.test");
    live(&fe, "http:c.fe.test");
    let mut held = HeldStream::open(p1, "a.fe.test");

    // A second port; c's domain goes.
    write(&fe_rc, &frontend_rc(&format!("{p1},{p2}"), &["a.fe.test"]));
    fe.signal(libc::SIGHUP);
    fe.wait_for(&format!("listening on 127.0.0.1:{p2}"), T);
    fe.wait_for("SIGHUP: the new configuration is in effect", T);
    assert_eq!(get(p2, "a.fe.test", "/").body_str(), INDEX_BODY);
    let c = get(p1, "c.fe.test", "/");
    assert_ne!(c.status, 200, "c's domain is gone: {}", c.body_str());
    assert!(
        fe.contains("kite http:c.fe.test is down"),
        "{:?}",
        fe.lines()
    );
    held.expect_index("after the frontend's reload");
    assert!(!be.contains("tunnel closed"), "{:?}", be.lines());

    // The first port goes: new connections there are refused, the held
    // stream (accepted on it) carries on.
    write(&fe_rc, &frontend_rc(&p2.to_string(), &["a.fe.test"]));
    fe.signal(libc::SIGHUP);
    fe.wait_for(&format!("no longer listening on port {p1}"), T);
    util::wait_until("port 1 to refuse connections", T, || {
        TcpStream::connect(local(p1)).is_err()
    });
    held.expect_index("after its port closed");
    assert_eq!(get(p2, "a.fe.test", "/").body_str(), INDEX_BODY);
}

#[test]
fn sighup_that_turns_a_frontend_into_a_backend_is_refused_and_it_keeps_serving() {
    let origin = Origin::start();
    let dir = util::temp_dir("hup-role");
    let port = free_port();
    let fe_rc = dir.join("fe.rc");
    write(&fe_rc, &frontend_rc(&port.to_string(), &["a.role.test"]));
    let fe = rkite_with(&[format!("--optfile={}", fe_rc.display())]);
    fe.wait_for(&format!("listening on 127.0.0.1:{port}"), T);
    let _be = rkite_with(&[
        format!("--frontend=127.0.0.1:{port}"),
        format!(
            "--service_on={}",
            kite("http", "a.role.test", origin.port(), SECRET)
        ),
    ]);
    live(&fe, "http:a.role.test");

    // The frontend's option file now describes a backend.
    write(&fe_rc, &backend_rc(port, origin.port(), &["b.role.test"]));
    fe.signal(libc::SIGHUP);
    fe.wait_for(
        "SIGHUP: the configuration now runs a backend (--isfrontend removed), but this \
         process is a frontend; switching roles needs a restart; the running configuration stays",
        T,
    );
    assert_eq!(get(port, "a.role.test", "/").body_str(), INDEX_BODY);
    assert!(!fe.contains("connecting to frontend"), "{:?}", fe.lines());
}

#[test]
fn sigusr1_redials_a_waiting_backend_at_once_and_keeps_live_tunnels() {
    let origin = Origin::start();
    let dir = util::temp_dir("usr1");
    let port = free_port();
    let fe_rc = dir.join("fe.rc");
    // The frontend does not know the kite yet: the backend is rejected and
    // backs off, longer each time.
    write(&fe_rc, &frontend_rc(&port.to_string(), &["other.test"]));
    let fe = rkite_with(&[format!("--optfile={}", fe_rc.display())]);
    fe.wait_for(&format!("listening on 127.0.0.1:{port}"), T);
    let be = rkite_with(&[
        format!("--frontend=127.0.0.1:{port}"),
        format!(
            "--service_on={}",
            kite("http", "usr1.test", origin.port(), SECRET)
        ),
    ]);
    let mut retry_at = None;
    for n in 1..=8 {
        let line = be
            .wait_for_count("retrying in", n, T)
            .pop()
            .unwrap_or_default();
        let seconds: f64 = line
            .rsplit("retrying in ")
            .next()
            .and_then(|t| t.split_whitespace().next()?.parse().ok())
            .expect("a delay in the retry line");
        if seconds >= 3.0 {
            retry_at = Some((Instant::now() + Duration::from_secs_f64(seconds), seconds));
            break;
        }
    }
    let (retry_at, delay) = retry_at.expect("the back-off grows past 3 s");
    write(&fe_rc, &frontend_rc(&port.to_string(), &["usr1.test"]));
    fe.signal(libc::SIGHUP);
    fe.wait_for("SIGHUP: the new configuration is in effect", T);
    be.signal(libc::SIGUSR1);
    live(&be, "http:usr1.test");
    let early = retry_at.saturating_duration_since(Instant::now());
    assert!(
        early > Duration::from_millis(500),
        "live only {early:?} before the scheduled retry (back-off {delay} s)"
    );

    // On a live tunnel SIGUSR1 only checks: a PING, answered, nothing dropped.
    let mut held = HeldStream::open(port, "usr1.test");
    let (pongs, closed) = (be.count("PONG"), be.count("tunnel closed"));
    be.signal(libc::SIGUSR1);
    be.wait_for_count("SIGUSR1", 2, T);
    util::wait_until("the PONG", T, || be.count("PONG") > pongs);
    held.expect_index("after SIGUSR1");
    assert_eq!(be.count("tunnel closed"), closed, "{:?}", be.lines());
}

/// Reads one field of a JSON file with python3's json module (which also
/// proves the file is valid JSON).
fn json_field(path: &Path, expr: &str) -> Option<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            &format!("import json,sys\nd=json.load(open(sys.argv[1]))\nprint(json.dumps({expr}))"),
            &path.display().to_string(),
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn the_status_file_shows_tunnels_kites_and_bytes_before_and_after_traffic() {
    assert!(util::require_peer("python3"), "python3 reads the JSON");
    let origin = Origin::start();
    let dir = util::temp_dir("status");
    let port = free_port();
    let fe_status = dir.join("fe.json");
    let be_status = dir.join("be.json");
    let fe = rkite_with(&[
        "--isfrontend".into(),
        "--host=127.0.0.1".into(),
        format!("--ports={port}"),
        format!("--domain=http:st.test:{SECRET}"),
        format!("--status_file={}", fe_status.display()),
    ]);
    fe.wait_for(&format!("listening on 127.0.0.1:{port}"), T);
    let be = rkite_with(&[
        format!("--frontend=127.0.0.1:{port}"),
        format!(
            "--service_on={}",
            kite("http", "st.test", origin.port(), SECRET)
        ),
        format!("--status_file={}", be_status.display()),
    ]);
    live(&be, "http:st.test");
    util::wait_until(
        "the backend's status to show the live kite and a round trip",
        T,
        || {
            json_field(
                &be_status,
                "[d['kites'][0]['state'], d['tunnels'][0]['rtt_ms'] is not None]",
            )
            .as_deref()
                == Some("[\"live\", true]")
        },
    );
    let field = |path: &Path, expr: &str| json_field(path, expr).unwrap_or_default();
    assert_eq!(field(&be_status, "d['role']"), "\"backend\"");
    assert_eq!(field(&be_status, "d['running']"), "true");
    assert_eq!(field(&be_status, "d['streams']"), "0");
    assert_eq!(
        field(&be_status, "d['kites'][0]['name']"),
        "\"http:st.test\""
    );
    assert_eq!(
        field(&be_status, "d['frontends'][0]['frontend']"),
        format!("\"127.0.0.1:{port}\"")
    );
    assert_eq!(field(&be_status, "d['tunnels'][0]['state']"), "\"live\"");
    let before: u64 = field(&be_status, "d['bytes_out']")
        .parse()
        .expect("bytes_out");
    util::wait_until("the frontend's status to show the kite", T, || {
        field(&fe_status, "[k['name'] for k in d['kites']]") == "[\"http:st.test\"]"
    });

    // Traffic: 1 MiB from the origin flows out of the backend's tunnel.
    let body = get(port, "st.test", "/bytes/1048576");
    assert_eq!(body.body.len(), 1 << 20);
    util::wait_until("the byte counters to include the download", T, || {
        field(&be_status, "d['bytes_out']")
            .parse::<u64>()
            .is_ok_and(|n| n >= before + (1 << 20))
    });
    util::wait_until("the frontend to count it too", T, || {
        field(&fe_status, "d['bytes_in']")
            .parse::<u64>()
            .is_ok_and(|n| n >= 1 << 20)
    });

    // A clean stop leaves a last word.
    be.signal(libc::SIGTERM);
    be.wait_exit(T).expect("the backend stops");
    assert_eq!(field(&be_status, "d['running']"), "false");
    drop(fe);
}

#[test]
fn pidfile_and_runas_drop_root_after_binding() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the --runas test needs root under CI"
        );
        eprintln!("skipping: --runas needs root");
        return;
    }
    let origin = Origin::start();
    let dir = util::temp_dir("runas");
    // A sticky, world-writable directory, like /tmp: the dropped user may
    // remove its own pid file there.
    Command::new("chmod")
        .args(["1777", &dir.display().to_string()])
        .status()
        .expect("chmod");
    let pidfile = dir.join("rkite.pid");
    let port = free_port();
    let fe = rkite_with(&[
        "--isfrontend".into(),
        "--host=127.0.0.1".into(),
        format!("--ports={port}"),
        format!("--domain=http:runas.test:{SECRET}"),
        "--runas=nobody".into(),
        format!("--pidfile={}", pidfile.display()),
    ]);
    fe.wait_for(&format!("listening on 127.0.0.1:{port}"), T);
    fe.wait_for("running as nobody", T);
    let written = std::fs::read_to_string(&pidfile).expect("the pid file");
    assert_eq!(written.trim(), fe.pid().to_string());
    let status = std::fs::read_to_string(format!("/proc/{}/status", fe.pid())).expect("status");
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or_default()
        .to_string();
    let uids: Vec<&str> = uid_line.split_whitespace().skip(1).collect();
    assert_eq!(
        uids, ["65534"; 4],
        "real, effective, saved and fs uid: {uid_line}"
    );
    let be = rkite_with(&[
        format!("--frontend=127.0.0.1:{port}"),
        format!(
            "--service_on={}",
            kite("http", "runas.test", origin.port(), SECRET)
        ),
    ]);
    live(&be, "http:runas.test");
    assert_eq!(get(port, "runas.test", "/").body_str(), INDEX_BODY);
    fe.signal(libc::SIGTERM);
    let exit = fe.wait_exit(T).expect("the frontend stops");
    assert_eq!(exit.code(), Some(0));
    assert!(!pidfile.exists(), "the pid file is removed at exit");
}

#[test]
fn option_file_mistakes_exit_1_naming_file_and_line() {
    let dir = util::temp_dir("optfile-errors");
    let rc = dir.join("bad.rc");
    write(&rc, "isfrontend\n# fine so far\nports = 80\nportz = 81\n");
    let out = Command::new(env!("CARGO_BIN_EXE_rkite"))
        .arg(format!("--optfile={}", rc.display()))
        .output()
        .expect("run rkite");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:4: unknown option \"portz\"", rc.display())),
        "{stderr}"
    );

    // --settings shows what the files and flags add up to, in pagekite.py's
    // format, secrets in clear as pagekite.py writes them.
    write(
        &rc,
        "isfrontend\nports = 80\ndomain = http:x.test:hunter2\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_rkite"))
        .args([
            "-o",
            &rc.display().to_string(),
            "--ports=8080",
            "--settings",
        ])
        .output()
        .expect("run rkite");
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ports = 8080\n"), "{stdout}");
    assert!(
        stdout.contains("domain = http:x.test:hunter2\n"),
        "{stdout}"
    );
}

#[test]
fn sighup_reopens_the_logfile_for_logrotate() {
    let dir = util::temp_dir("logrotate");
    let log = dir.join("rkite.log");
    let port = free_port();
    let fe = rkite_with(&[
        "--isfrontend".into(),
        "--host=127.0.0.1".into(),
        format!("--ports={port}"),
        format!("--domain=http:log.test:{SECRET}"),
        format!("--logfile={}", log.display()),
    ]);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    util::wait_until("the log file to say it listens", T, || {
        read(&log).contains(&format!("listening on 127.0.0.1:{port}"))
    });
    let rotated = dir.join("rkite.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    fe.signal(libc::SIGHUP);
    util::wait_until("a fresh log file after SIGHUP", T, || {
        read(&log).contains("SIGHUP: the new configuration is in effect")
    });
    assert!(!read(&rotated).contains("SIGHUP"), "{}", read(&rotated));
}

#[test]
fn sighup_on_a_frontend_loads_new_tls_endpoints() {
    if !util::require_peer("openssl") {
        return;
    }
    let pki = crate::certs::pki();
    let (a, b) = (pki.leaf(&["a.ep.test"]), pki.leaf(&["b.ep.test"]));
    let origin = Origin::start();
    let dir = util::temp_dir("hup-endpoints");
    let port = free_port();
    let fe_rc = dir.join("fe.rc");
    let rc = |endpoints: &[&crate::certs::Leaf]| {
        let mut text = frontend_rc(&port.to_string(), &["*.ep.test"]);
        for (leaf, name) in endpoints.iter().zip(["a.ep.test", "b.ep.test"]) {
            text.push_str(&format!("tls_endpoint = {name}:{}\n", leaf.pem_str()));
        }
        text
    };
    write(&fe_rc, &rc(&[&a]));
    let fe = rkite_with(&[format!("--optfile={}", fe_rc.display())]);
    fe.wait_for(&format!("listening on 127.0.0.1:{port}"), T);
    let be = rkite_with(&[
        format!("--frontend=127.0.0.1:{port}"),
        format!(
            "--service_on={}",
            kite("http", "a.ep.test", origin.port(), SECRET)
        ),
        format!(
            "--service_on={}",
            kite("http", "b.ep.test", origin.port(), SECRET)
        ),
    ]);
    live(&be, "http:a.ep.test");
    live(&be, "http:b.ep.test");
    let https = |name: &str| {
        let resolve = format!("{name}:{port}:127.0.0.1");
        util::try_curl(&[
            "--cacert",
            pki.ca_cert_str(),
            "--resolve",
            &resolve,
            &format!("https://{name}:{port}/"),
        ])
    };
    assert_eq!(
        https("a.ep.test").expect("a's endpoint").body_str(),
        INDEX_BODY
    );
    assert!(https("b.ep.test").is_err(), "no endpoint for b yet");
    write(&fe_rc, &rc(&[&a, &b]));
    fe.signal(libc::SIGHUP);
    fe.wait_for("SIGHUP: the new configuration is in effect", T);
    assert_eq!(
        https("b.ep.test").expect("b's new endpoint").body_str(),
        INDEX_BODY
    );
    assert_eq!(
        https("a.ep.test").expect("a's endpoint").body_str(),
        INDEX_BODY
    );
    assert!(!be.contains("tunnel closed"), "{:?}", be.lines());
}
