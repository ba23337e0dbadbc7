//! Loose ends of process life and logging, each shown on a running rkite:
//! the open-files limit raised at start, a second SIGTERM that still
//! removes the pid file and writes the final status, a backend that takes
//! only an exact `HTTP/1.x 200` status line as the tunnel's reply, a failed
//! frontend reload that leaves every listener serving, stream log lines
//! tagged with the stream's own token, and a port taken on IPv6 that stops
//! the frontend instead of leaving it IPv4-only. Each test fails on the code before
//! its fix, except the reload one, which guards a case that already held
//! (its failing twin is a unit test, see there).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use crate::faults::pair;
use crate::fixture::{T, backend, frontend, get, kite, live};
use crate::meter::{read_head, status_of};
use crate::origin::{INDEX_BODY, Origin};
use crate::util::{self, Proc, free_port, local};

const SECRET: &str = "misc-secret";

/// The rkite binary with the environment `util::rkite` gives it, as a
/// `Command` the test can still adjust before it spawns.
fn rkite_command(args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rkite"));
    util::no_proxy_env(&mut cmd);
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "debug".to_string());
    cmd.args(args)
        .env("RUST_LOG", level)
        .env("RUST_BACKTRACE", "1");
    cmd
}

/// `Max open files` (soft, hard) from /proc/PID/limits.
fn nofile_limits(pid: u32) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open files line in {text}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields.as_slice() {
        [_, _, _, soft, hard, ..] => (soft.to_string(), hard.to_string()),
        _ => panic!("unexpected limits line {line:?}"),
    }
}

#[test]
fn the_soft_open_files_limit_is_raised_to_the_hard_limit() {
    const LOW: libc::rlim_t = 256;
    let mut hard: libc::rlimit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid resource and a pointer to a live rlimit.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) },
        0
    );
    if hard.rlim_max != libc::RLIM_INFINITY && hard.rlim_max <= LOW {
        eprintln!(
            "skipping: the hard open files limit is only {}",
            hard.rlim_max
        );
        return;
    }
    let port = free_port();
    let mut cmd = rkite_command(&[
        "--isfrontend".into(),
        "--host=127.0.0.1".into(),
        format!("--ports={port}"),
        format!("--domain=http:nofile.test:{SECRET}"),
    ]);
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            lim.rlim_cur = LOW;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let fe = Proc::spawn("rkite", cmd);
    fe.wait_for(&format!("listening on 127.0.0.1:{port}"), T);
    let (soft, hard_seen) = nofile_limits(fe.pid());
    assert_ne!(soft, LOW.to_string(), "the soft limit was left at {LOW}");
    if hard.rlim_max == libc::RLIM_INFINITY {
        assert_eq!(hard_seen, "unlimited");
        assert_eq!(soft, (1u64 << 20).to_string());
    } else {
        assert_eq!(soft, hard_seen, "soft limit raised to the hard one");
        assert_eq!(soft, hard.rlim_max.to_string());
    }
    let line = fe.wait_for("open files limit raised to", T);
    assert!(
        line.contains(&format!("raised to {soft} (was {LOW})")),
        "{line}"
    );
}

/// A stream that never ends by itself: the origin half-closes `/halfclose`
/// and the visitor keeps its own side open.
fn endless_stream(port: u16, host: &str) -> TcpStream {
    let mut v = TcpStream::connect(local(port)).expect("connect");
    v.write_all(&crate::meter::get_request(host, "/halfclose", false))
        .expect("send");
    let mut got = 0;
    assert!(
        crate::meter::closed_within(&mut v, T, &mut got),
        "the origin's half of the stream ends"
    );
    v
}

#[test]
fn a_second_sigterm_still_removes_the_pid_file_and_writes_the_final_status() {
    let origin = Origin::start();
    let dir = util::temp_dir("second-sigterm");
    let pidfile = dir.join("rkite.pid");
    let status = dir.join("status.json");
    let pid_arg = format!("--pidfile={}", pidfile.display());
    let status_arg = format!("--status_file={}", status.display());
    let (port, fe, _be) = pair(
        &origin,
        "twice.misc.test",
        &["--stop_grace=30", &pid_arg, &status_arg],
    );
    let _open = endless_stream(port, "twice.misc.test");
    let written = std::fs::read_to_string(&pidfile).expect("the pid file");
    assert_eq!(written.trim(), fe.pid().to_string());
    util::wait_until("the status file to say running", T, || {
        std::fs::read_to_string(&status).is_ok_and(|s| s.contains("\"running\": true"))
    });
    fe.signal(libc::SIGTERM);
    fe.wait_for("SIGTERM received", T);
    assert!(fe.exit_status().is_none(), "still finishing its stream");
    fe.signal(libc::SIGTERM);
    let exit = fe
        .wait_exit(Duration::from_secs(5))
        .expect("a second SIGTERM exits at once");
    assert_eq!(exit.code(), Some(0));
    assert!(
        !pidfile.exists(),
        "the pid file is removed by a fast exit too"
    );
    let last = std::fs::read_to_string(&status).expect("the status file");
    assert!(
        last.contains("\"running\": false"),
        "the final status is written by a fast exit too: {last}"
    );
}

/// Reads one HTTP head (up to the blank line) from `sock`, bounded in size.
fn read_request_head(sock: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 64 * 1024, "an endless request head");
        match sock.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("the tunnel request ended early: {other:?}"),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn a_backend_takes_only_http1_200_as_the_tunnel_reply() {
    // A fake frontend that refuses with a reason phrase that mentions 200,
    // and an OK line that a lenient backend would act on.
    let fake = TcpListener::bind("127.0.0.1:0").expect("bind the fake frontend");
    let port = fake.local_addr().expect("its port").port();
    let answer = std::thread::spawn(move || {
        let (mut sock, _) = fake.accept().expect("the backend dials");
        sock.set_read_timeout(Some(T)).expect("timeout");
        let request = read_request_head(&mut sock);
        sock.write_all(
            b"HTTP/1.1 404 Not 200 here\r\nX-PageKite-OK: http:no200.misc.test:x\r\n\r\n",
        )
        .expect("answer the backend");
        request
    });
    let origin = Origin::start();
    let be = backend(
        port,
        &[kite("http", "no200.misc.test", origin.port(), SECRET)],
        &[],
    );
    let request = answer.join().expect("the fake frontend");
    assert!(request.contains("X-PageKite:"), "{request}");
    let line = be.wait_for("retrying in", T);
    assert!(
        line.contains("the reply's status is 404, not 200")
            && line.contains("\"HTTP/1.1 404 Not 200 here\""),
        "a clear reason: {line}"
    );
    assert!(
        !be.contains("is live"),
        "no kite is live after a 404: {:?}",
        be.lines()
    );
}

/// `(tag, sid)` from a line holding `[s<tag> sid=<sid>]`.
fn stream_tag(line: &str) -> Option<(u32, u32)> {
    let rest = line.split("[s").nth(1)?;
    let (tag, rest) = rest.split_once(" sid=")?;
    let (sid, _) = rest.split_once(']')?;
    Some((tag.parse().ok()?, sid.parse().ok()?))
}

#[test]
fn stream_log_lines_carry_the_streams_own_tag() {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(
        &[port],
        &[
            &format!("http:ok.tag.misc.test:{SECRET}"),
            &format!("http:down.tag.misc.test:{SECRET}"),
        ],
        &[],
    );
    let be = backend(
        port,
        &[
            kite("http", "ok.tag.misc.test", origin.port(), SECRET),
            // Nothing listens there: the local connect fails.
            kite("http", "down.tag.misc.test", free_port(), SECRET),
        ],
        &[],
    );
    live(&fe, "http:ok.tag.misc.test");
    live(&be, "http:down.tag.misc.test");

    // A request the rewriter takes, then one it cannot parse (a leading
    // space): what the backend logs about it is about this stream.
    let mut v = TcpStream::connect(local(port)).expect("connect");
    v.write_all(&crate::meter::get_request("ok.tag.misc.test", "/", false))
        .expect("send");
    let (head, mut body) = read_head(&mut v, T).unwrap_or_else(|(end, _)| panic!("{end:?}"));
    assert_eq!(status_of(&head), 200, "{head}");
    while body.len() < INDEX_BODY.len() {
        let mut piece = [0u8; 256];
        match v.read(&mut piece) {
            Ok(n) if n > 0 => body.extend_from_slice(&piece[..n]),
            other => panic!("the index page was cut: {other:?}"),
        }
    }
    v.write_all(b" GET / HTTP/1.1\r\nHost: ok.tag.misc.test\r\n\r\n")
        .expect("send the second request");
    v.shutdown(std::net::Shutdown::Write).expect("half-close");
    let page = get(port, "down.tag.misc.test", "/");
    assert_eq!(page.status, 503, "{}", page.body_str());
    drop(v);
    util::wait_until("both streams to end on the backend", T, || {
        let lines = be.lines();
        ["ok.tag.misc.test", "down.tag.misc.test"].iter().all(|k| {
            lines
                .iter()
                .any(|l| l.contains(k) && l.contains(" closed ("))
        })
    });

    let lines = be.lines();
    let tunnel = lines
        .iter()
        .find_map(|l| {
            let rest = l.split("[t").nth(1)?;
            let (tag, _) = rest.split_once(']')?;
            l.contains("connecting to frontend")
                .then(|| tag.parse::<u32>().ok())?
        })
        .unwrap_or_else(|| panic!("no tunnel tag in {lines:?}"));
    // Each stream's own tag, from the line that opens it (it is logged
    // with the token the stream was just given).
    let own: Vec<(u32, u32)> = lines
        .iter()
        .filter(|l| l.contains(" from ") && l.contains(" -> "))
        .filter_map(|l| stream_tag(l))
        .collect();
    assert_eq!(own.len(), 2, "two streams opened: {lines:?}");
    for line in &lines {
        assert!(
            !line.contains("[sid="),
            "a stream line without a tag: {line}"
        );
        let Some((tag, sid)) = stream_tag(line) else {
            continue;
        };
        let want = own.iter().find(|(_, s)| *s == sid).map(|(t, _)| *t);
        assert_eq!(Some(tag), want, "stream sid={sid} logged as s{tag}: {line}");
        assert_ne!(
            tag, tunnel,
            "a stream tagged with its tunnel's token: {line}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("local server unavailable")),
        "{lines:?}"
    );
}

#[test]
fn a_frontend_reload_that_cannot_bind_a_new_port_keeps_the_old_one_serving() {
    // The fault-injected case (a listener that cannot join the reactor after
    // the old one would be gone) is the unit test in
    // src/frontend_reload_tests.rs; this is the operator's everyday one.
    let origin = Origin::start();
    let dir = util::temp_dir("reload-bind");
    let old = free_port();
    let held = TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let taken = held.local_addr().expect("its address").port();
    let rc = dir.join("fe.rc");
    let rc_text = |port: u16| {
        format!(
            "isfrontend\nhost = 127.0.0.1\nports = {port}\nprotos = http\n\
             domain = http:keep.misc.test:{SECRET}\n"
        )
    };
    std::fs::write(&rc, rc_text(old)).expect("write the rc file");
    let fe = util::rkite(&[&format!("--optfile={}", rc.display())]);
    fe.wait_for(&format!("listening on 127.0.0.1:{old}"), T);
    let be = backend(
        old,
        &[kite("http", "keep.misc.test", origin.port(), SECRET)],
        &[],
    );
    live(&be, "http:keep.misc.test");

    std::fs::write(&rc, rc_text(taken)).expect("rewrite the rc file");
    fe.signal(libc::SIGHUP);
    let line = fe.wait_for("the running configuration stays", T);
    assert!(line.contains(&taken.to_string()), "{line}");
    assert!(!fe.contains("no longer listening"), "{:?}", fe.lines());
    assert_eq!(get(old, "keep.misc.test", "/").body_str(), INDEX_BODY);
    drop(held);
}

/// A frontend listening on every interface binds `[::]` (IPv6 and IPv4 on
/// one socket). When that fails because the port is taken on IPv6, falling
/// back to 0.0.0.0 would quietly leave every IPv6 visitor out: rkite must
/// say so and exit 2. (Only a system without IPv6 falls back.)
#[test]
fn a_port_taken_on_ipv6_is_an_error_not_an_ipv4_fallback() {
    let Ok(taken) = TcpListener::bind("[::1]:0") else {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    };
    let port = taken.local_addr().expect("addr").port().to_string();
    let p = util::rkite(&["--isfrontend", "--ports", &port, "--domain=http:a.test:pw"]);
    let status = p.wait_exit(T);
    // The old code went on listening on 0.0.0.0 and never exited.
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{:?}", p.lines());
    assert!(
        p.contains(&format!("cannot listen on [::]:{port}")),
        "{:?}",
        p.lines()
    );
}

/// A frontend given as an IPv6 literal is named `[::1]:PORT` in the logs
/// (`::1:PORT` reads as an address with no port).
#[test]
fn an_ipv6_frontend_is_named_with_brackets() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let port = free_port();
    let fe = util::rkite(&[
        "--isfrontend",
        "--host=::1",
        &format!("--ports={port}"),
        &format!("--domain=http:six.test:{SECRET}"),
    ]);
    fe.wait_for("listening on", T);
    let origin = Origin::start();
    let be = util::rkite(&[
        &format!("--frontend=[::1]:{port}"),
        &format!(
            "--service_on={}",
            kite("http", "six.test", origin.port(), SECRET)
        ),
    ]);
    be.wait_for(&format!("kite http:six.test is live on [::1]:{port}"), T);
}
