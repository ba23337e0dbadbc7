//! pagekite.py's options for a relay run for other people, against real
//! rkite frontends and backends on loopback (and Debian's pagekite.py as a
//! backend where the option has a wire half): `--motd` reaches both kinds
//! of backend and follows a SIGHUP; `--ratelimit_ips` refuses the client
//! beyond the limit with the 503 page and admits it once the window has
//! passed, and holds against 300 new clients with at most 5 log lines;
//! `--portalias` serves a port-specific kite on the alias port;
//! `--accept_acl_file` closes connections by its rules and follows the
//! file after SIGHUP; `--overload` makes a backend with a `--frontends`
//! pool choose the relay that is not overloaded, rkite's backend and
//! pagekite.py's alike (both add an overload penalty to the ping time;
//! without the report pagekite.py picks the lower address, checked by
//! hand: the pagekite.py test fails with the overload file at 0).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::fixture::{self, T, kite};
use crate::origin::{INDEX_BODY, Origin};
use crate::peers;
use crate::util::{self, Proc, free_port};

const SECRET: &str = "ops-secret";

fn domain(name: &str) -> String {
    format!("http:{name}:{SECRET}")
}

/// GET `/` for `host` through `port`, with extra curl arguments; the
/// status, or `None` if the connection gave no HTTP answer.
fn status(port: u16, host: &str, extra: &[&str]) -> Option<u16> {
    let url = format!("http://127.0.0.1:{port}/");
    let host = format!("Host: {host}");
    let mut args = vec!["-sS", "--max-time", "5", "-H", host.as_str()];
    args.extend_from_slice(extra);
    args.push(&url);
    util::try_curl(&args).ok().map(|r| r.status)
}

#[test]
fn motd_reaches_rkite_and_pagekite_backends_and_follows_sighup() {
    let dir = util::temp_dir("ops-motd");
    let motd = dir.join("motd.txt");
    std::fs::write(
        &motd,
        "\n  Welcome to the club relay!\nBe nice & have fun.  \n",
    )
    .unwrap();
    let origin = Origin::start();
    let fe_port = free_port();
    let fe = fixture::frontend(
        &[fe_port],
        &[&format!("http:*.motd.test:{SECRET}")],
        &[&format!("--motd={}", motd.display())],
    );
    let be = fixture::backend(
        fe_port,
        &[kite("http", "a.motd.test", origin.port(), SECRET)],
        &[],
    );
    fixture::live(&be, "http:a.motd.test");
    let line = be.wait_for("message of the day: ", T);
    assert!(
        line.contains("message of the day: Welcome to the club relay!\\nBe nice & have fun."),
        "{line}"
    );
    assert_eq!(be.count("message of the day"), 1, "logged once per tunnel");

    if util::require_peer(peers::PAGEKITE) {
        let spec = peers::kite("http", "b.motd.test", origin.port(), SECRET);
        let pk = peers::pagekite_backend(fe_port, &[&spec], &[]);
        peers::wait_kite_up(&pk, "http", "b.motd.test");
        // pagekite.py logs each `X-PageKite-Misc` pair as it decoded it.
        let line = pk.wait_for("motd=Welcome to the club relay!", T);
        assert!(line.contains("Be nice & have fun."), "{line}");
        assert_eq!(fixture::get(fe_port, "b.motd.test", "/").status, 200);
    }

    // SIGHUP reads the file again; a new tunnel gets the new text.
    std::fs::write(&motd, "Maintenance at 22:00 UTC").unwrap();
    fe.signal(libc::SIGHUP);
    fe.wait_for("SIGHUP: the new configuration is in effect", T);
    let be2 = fixture::backend(
        fe_port,
        &[kite("http", "c.motd.test", origin.port(), SECRET)],
        &[],
    );
    be2.wait_for("message of the day: Maintenance at 22:00 UTC", T);
}

#[test]
fn ratelimit_ips_refuses_the_client_beyond_the_limit_until_the_window_passes() {
    let origin = Origin::start();
    let fe_port = free_port();
    // A loose default, and 2 clients per 2 s for the kite (and its
    // subdomains), which replaces the default for its tunnel.
    let fe = fixture::frontend(
        &[fe_port],
        &[&domain("rl.test"), &domain("free.test")],
        &["--ratelimit_ips=50/60", "--ratelimit_ips=rl.test:2/2"],
    );
    let be = fixture::backend(
        fe_port,
        &[kite("http", "rl.test", origin.port(), SECRET)],
        &[],
    );
    fixture::live(&be, "http:rl.test");
    // The frontend announces the kite's limit, as pagekite.py does.
    be.wait_for("limits visitors to 2/2", T);
    let ua = |name: &str| format!("User-Agent: {name}");
    let (a, b, c) = (ua("client-a"), ua("client-b"), ua("client-c"));
    assert_eq!(status(fe_port, "rl.test", &["-H", &a]), Some(200));
    assert_eq!(status(fe_port, "rl.test", &["-H", &b]), Some(200));
    // A known client is renewed, not counted again.
    let renewed = Instant::now();
    assert_eq!(status(fe_port, "rl.test", &["-H", &a]), Some(200));
    // The third distinct client within 2 s gets the relay's 503 page.
    let url = format!("http://127.0.0.1:{fe_port}/");
    let refused = util::curl(&["-sS", "-H", "Host: rl.test", "-H", &c, &url]);
    assert_eq!(refused.status, 503);
    assert!(
        refused.body_str().contains("Sorry! (fe)"),
        "{}",
        refused.body_str()
    );
    fe.wait_for("a new client beyond --ratelimit_ips 2/2", T);
    // Once a and b are older than the window, c is admitted.
    util::wait_until("client c admitted after the window", T, || {
        status(fe_port, "rl.test", &["-H", &c]) == Some(200)
    });
    let waited = renewed.elapsed();
    assert!(
        waited.as_secs_f64() >= 1.9,
        "admitted {waited:?} after client a's last visit, within the 2 s window"
    );
}

#[test]
fn portalias_serves_a_port_specific_kite_on_the_alias_port() {
    let origin = Origin::start();
    let fe_port = free_port();
    // The relay listens on fe_port and says it is port `alias` (as behind
    // a firewall forwarding alias -> fe_port).
    let alias = loop {
        let p = free_port();
        if p != fe_port {
            break p;
        }
    };
    let fe = fixture::frontend(
        &[fe_port],
        &[&domain("pa.test")],
        &[&format!("--portalias={fe_port}:{alias}")],
    );
    let proto = format!("http-{alias}");
    let be = fixture::backend(
        fe_port,
        &[kite(&proto, "pa.test", origin.port(), SECRET)],
        &[],
    );
    // The kite for the alias port is accepted (the reply's Ports says it)...
    fixture::live(&be, &format!("{proto}:pa.test"));
    fixture::live(&fe, &format!("{proto}:pa.test"));
    // ...and a visitor on the real port reaches it, the stream saying
    // Port: alias (the backend found the port-specific kite by it).
    let r = fixture::get(fe_port, "pa.test", "/");
    assert_eq!((r.status, r.body_str()), (200, INDEX_BODY.to_string()));
    assert_eq!(origin.requests().len(), 1);
}

#[test]
fn accept_acl_file_closes_connections_by_its_rules_and_follows_sighup() {
    let dir = util::temp_dir("ops-acl");
    let acl = dir.join("accept.acl");
    std::fs::write(
        &acl,
        "# visitors from 127.0.0.2 are banned\n127\\.0\\.0\\.2 deny Abuse report 17\n127.0.0.3 allow trusted\n",
    )
    .unwrap();
    let origin = Origin::start();
    let fe_port = free_port();
    let fe = fixture::frontend(
        &[fe_port],
        &[&domain("acl.test")],
        &[&format!("--accept_acl_file={}", acl.display())],
    );
    fe.wait_for("accept.acl: 2 rules", T);
    // The backend's tunnel comes from 127.0.0.1: no rule, allowed.
    let be = fixture::backend(
        fe_port,
        &[kite("http", "acl.test", origin.port(), SECRET)],
        &[],
    );
    fixture::live(&be, "http:acl.test");
    let from = |ip: &str| status(fe_port, "acl.test", &["--interface", ip]);
    assert_eq!(from("127.0.0.2"), None, "denied: closed without a reply");
    let line = fe.wait_for("denied by --accept_acl_file", T);
    assert!(line.contains("line 2: abuse report 17"), "{line}");
    assert_eq!(from("127.0.0.3"), Some(200));
    assert_eq!(from("127.0.0.1"), Some(200), "no rule: the default allows");

    std::fs::write(&acl, "127.0.0.2 allow forgiven\n127\\.0\\.0\\.[3-9] deny\n").unwrap();
    fe.signal(libc::SIGHUP);
    fe.wait_for("SIGHUP: the new configuration is in effect", T);
    assert_eq!(from("127.0.0.2"), Some(200));
    assert_eq!(from("127.0.0.3"), None);
    assert_eq!(origin.requests().len(), 3);

    // An edit is noticed without SIGHUP too (pagekite.py reads the file
    // for every connection; rkite looks at its time stamp once a second).
    std::fs::write(&acl, "127.0.0.2 deny again\n").unwrap();
    util::wait_until("the edited file in effect without SIGHUP", T, || {
        from("127.0.0.2").is_none()
    });
    assert_eq!(from("127.0.0.3"), Some(200));
    fe.wait_for("accept.acl: 1 rules", T);
}

/// An rkite frontend listening on `ip:port` only.
fn relay(ip: &str, port: u16, extra: &[String]) -> Proc {
    let mut args = vec![
        "--isfrontend".to_string(),
        format!("--host={ip}"),
        format!("--ports={port}"),
        "--protos=http".to_string(),
        format!("--domain={}", domain("pool.test")),
    ];
    args.extend(extra.iter().cloned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let fe = util::rkite(&refs);
    fe.wait_for(&format!("listening on {ip}:{port}"), T);
    fe
}

/// An rkite backend in its own mount namespace where `pool.relays` is
/// 127.0.0.2 and 127.0.0.3, keeping one tunnel (`--frontends=1:...`).
fn pool_backend(dir: &Path, port: u16, origin: &Origin) -> Proc {
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n127.0.0.2 pool.relays\n127.0.0.3 pool.relays\n",
    )
    .unwrap();
    let mut cmd = Command::new("unshare");
    util::no_proxy_env(&mut cmd);
    cmd.args([
        "-m",
        "sh",
        "-c",
        "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
    ])
    .arg(&hosts)
    .arg(env!("CARGO_BIN_EXE_rkite"))
    .arg(format!("--frontends=1:pool.relays:{port}"))
    .arg(format!(
        "--service_on={}",
        kite("http", "pool.test", origin.port(), SECRET)
    ))
    .env("RUST_LOG", "debug")
    .env("RUST_BACKTRACE", "1");
    Proc::spawn("pool-backend", cmd)
}

/// Debian's pagekite.py as a backend with the same pool, in its own mount
/// namespace.
fn pagekite_pool_backend(dir: &Path, port: u16, origin: &Origin) -> Proc {
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n127.0.0.2 pool.relays\n127.0.0.3 pool.relays\n",
    )
    .unwrap();
    let home = util::temp_dir("ops-pk-home");
    let mut cmd = Command::new("unshare");
    util::no_proxy_env(&mut cmd);
    cmd.args([
        "-m",
        "sh",
        "-c",
        "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
    ])
    .arg(&hosts)
    .arg(peers::PAGEKITE)
    .args(["--clean", "--nullui", "--logfile=stdio", "--loglevel=mach"])
    .arg(format!("--frontends=1:pool.relays:{port}"))
    .arg(format!(
        "--service_on={}",
        peers::kite("http", "pool.test", origin.port(), SECRET)
    ))
    .env("HOME", &home)
    .env("PYTHONUNBUFFERED", "1");
    Proc::spawn("pagekite-pool-backend", cmd)
}

/// A port free on both 127.0.0.2 and 127.0.0.3.
fn common_port() -> u16 {
    (0..20)
        .find_map(|_| {
            let port = free_port();
            let ok = [2u8, 3].iter().all(|i| {
                let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, *i));
                TcpListener::bind(SocketAddr::new(ip, port)).is_ok()
            });
            ok.then_some(port)
        })
        .expect("a port free on 127.0.0.2 and .3")
}

#[test]
fn a_pool_backend_prefers_the_relay_that_is_not_overloaded() {
    if !util::require_namespaces("the overload test") {
        return;
    }
    let dir = util::temp_dir("ops-overload");
    let origin = Origin::start();
    let port = common_port();
    let files = [dir.join("overload-2"), dir.join("overload-3")];
    // Relay .2 is overloaded (level 1: any connection is too many), .3 is
    // not (level 0 from its file: never).
    std::fs::write(&files[0], "1\n").unwrap();
    std::fs::write(&files[1], "0\n").unwrap();
    let relays: Vec<Proc> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .zip(&files)
        .map(|(ip, f)| {
            relay(
                ip,
                port,
                &[
                    "--overload=100".to_string(),
                    format!("--overload_file={}", f.display()),
                ],
            )
        })
        .collect();
    let (two, three) = (format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}"));

    // The ping answers say so, in pagekite.py's place (first header).
    let ping = b"HEAD /ping HTTP/1.1\r\nHost: ping.pagekite\r\n\r\n";
    let answer = |addr: &str| {
        let addr: SocketAddr = addr.parse().unwrap();
        String::from_utf8_lossy(&util::http_request(addr, ping, T)).into_owned()
    };
    assert!(
        answer(&two).starts_with(
            "HTTP/1.1 503 Unavailable\r\nX-PageKite-Overloaded: Sorry\r\nX-PageKite-UUID: "
        ),
        "{}",
        answer(&two)
    );
    assert!(!answer(&three).contains("Overloaded"));
    relays[0].wait_for("overload level is now 1", T);

    let be = pool_backend(&dir, port, &origin);
    be.wait_for(&format!("{two} answered"), T);
    be.wait_for(&format!("{three} chosen"), T);
    be.wait_for(&format!("kite http:pool.test is live on {three}"), T);
    assert!(be.contains(", overloaded)"), "the backend saw the report");
    assert!(!be.contains(&format!("{two} chosen")));
    drop(be);

    // The other way round, after a SIGHUP makes each relay read its file.
    std::fs::write(&files[0], "0\n").unwrap();
    std::fs::write(&files[1], "1\n").unwrap();
    for r in &relays {
        r.signal(libc::SIGHUP);
        r.wait_for("SIGHUP: the new configuration is in effect", T);
    }
    assert!(answer(&three).contains("\r\nX-PageKite-Overloaded: Sorry\r\n"));
    assert!(!answer(&two).contains("Overloaded"));
    let be = pool_backend(&dir, port, &origin);
    be.wait_for(&format!("{two} chosen"), T);
    be.wait_for(&format!("kite http:pool.test is live on {two}"), T);
    assert!(!be.contains(&format!("{three} chosen")));
    let url = format!("http://{two}/");
    let r = util::curl(&["-sS", "-H", "Host: pool.test", &url]);
    assert_eq!((r.status, r.body_str()), (200, INDEX_BODY.to_string()));
}

#[test]
fn pagekite_py_with_a_pool_avoids_the_overloaded_rkite_relay() {
    if !util::require_namespaces("the overload test") || !util::require_peer(peers::PAGEKITE) {
        return;
    }
    let dir = util::temp_dir("ops-overload-pk");
    let origin = Origin::start();
    let port = common_port();
    // .2 has the lower address (pagekite.py's tie-break would pick it) and
    // is overloaded; .3 is not.
    let file = dir.join("overload");
    std::fs::write(&file, "1\n").unwrap();
    let overloaded = relay(
        "127.0.0.2",
        port,
        &[
            "--overload=100".to_string(),
            format!("--overload_file={}", file.display()),
        ],
    );
    let fine = relay("127.0.0.3", port, &["--overload=100".to_string()]);
    let pk = pagekite_pool_backend(&dir, port, &origin);
    pk.wait_for(&format!("connect=127.0.0.3:{port}"), peers::PK_READY);
    peers::wait_kite_up(&pk, "http", "pool.test");
    fixture::live(&fine, "http:pool.test");
    assert!(
        !pk.contains(&format!("connect=127.0.0.2:{port}")),
        "pagekite.py connected to the overloaded relay"
    );
    assert!(overloaded.contains("overload level is now 1"));
    let url = format!("http://127.0.0.3:{port}/");
    let r = util::curl(&["-sS", "-H", "Host: pool.test", &url]);
    assert_eq!(r.status, 200);
}

#[test]
fn ratelimit_ips_holds_against_a_flood_of_new_clients_with_few_log_lines() {
    let origin = Origin::start();
    let fe_port = free_port();
    let fe = fixture::frontend(
        &[fe_port],
        &[&domain("flood.test")],
        &["--ratelimit_ips=3/600"],
    );
    let be = fixture::backend(
        fe_port,
        &[kite("http", "flood.test", origin.port(), SECRET)],
        &[],
    );
    fixture::live(&be, "http:flood.test");
    let addr = util::local(fe_port);
    let (mut admitted, mut refused) = (0, 0);
    for i in 0..300 {
        let request = format!(
            "GET / HTTP/1.1\r\nHost: flood.test\r\nUser-Agent: flood-{i}\r\nConnection: close\r\n\r\n"
        );
        let reply = util::http_request(addr, request.as_bytes(), T);
        match util::RawResponse::parse(&reply).status {
            200 => admitted += 1,
            503 => refused += 1,
            other => panic!("status {other}"),
        }
    }
    assert_eq!((admitted, refused), (3, 297));
    // One of the first three is still known and renewed, not refused.
    let again =
        "GET / HTTP/1.1\r\nHost: flood.test\r\nUser-Agent: flood-1\r\nConnection: close\r\n\r\n";
    let reply = util::http_request(addr, again.as_bytes(), T);
    assert_eq!(util::RawResponse::parse(&reply).status, 200);
    // The refusals' log lines are rate-limited (5 per 10 s).
    let lines = fe.count("beyond --ratelimit_ips 3/600");
    assert!((1..=5).contains(&lines), "{lines} refusal lines");
}
