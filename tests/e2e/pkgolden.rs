//! Golden rc files: the installed pagekite.py writes them at test time
//! (`pagekite --clean … --settings`, never copied by hand), rkite runs them
//! against an rkite frontend on loopback (every kite serves, the password
//! option acts, a `service_off` kite is not served, a raw kite answers
//! through CONNECT), and `--settings` goes round: pagekite.py → rkite →
//! pagekite.py keeps every kite, secret and per-kite option. Service
//! defaults are checked with `--settings` only. pagekite.py (and rkite's
//! `--settings` here) run inside `unshare -n`, an empty network namespace,
//! so nothing can reach a network even by accident; without root (outside
//! CI) these tests are skipped with a message.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::fixture::{frontend, get, live};
use crate::origin::{EchoServer, INDEX_BODY, Origin};
use crate::raw::{connect_raw, echo_once};
use crate::util::{self, free_port};

/// Whether `unshare -n` can be used; under CI it must be.
fn can_isolate() -> bool {
    if !util::require_peer("pagekite") || !util::require_peer("unshare") {
        return false;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI runs as root so pagekite.py can run inside `unshare -n`");
        }
        eprintln!("SKIPPED: not root, so pagekite.py cannot be run inside `unshare -n`");
    }
    root
}

/// `program args…` inside an empty network namespace: its stdout, after
/// checking it exited 0.
fn isolated(program: &str, args: &[&str], home: &Path) -> String {
    let mut cmd = Command::new("unshare");
    util::no_proxy_env(&mut cmd);
    cmd.arg("-n").arg(program).args(args).env("HOME", home);
    let out = cmd.output().expect("run unshare");
    assert!(
        out.status.success(),
        "unshare -n {program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 settings")
}

/// pagekite.py's `--settings` for `args`, starting from nothing (`--clean`).
fn pagekite_settings(args: &[&str], home: &Path) -> String {
    let mut all = vec!["--clean"];
    all.extend_from_slice(args);
    all.push("--settings");
    isolated("pagekite", &all, home)
}

/// rkite's `--settings` for the option file `rc`.
fn rkite_settings(rc: &Path, home: &Path) -> String {
    let rc = rc.to_string_lossy();
    isolated(
        env!("CARGO_BIN_EXE_rkite"),
        &["-o", &rc, "--settings"],
        home,
    )
}

/// An option file as both programs read it: `name=value` arguments, blanks
/// around `=` and `:` removed, comments skipped, `END` stops.
fn options(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("END") {
            break;
        }
        let squeezed: String = {
            let mut s = String::new();
            let mut after = false;
            for c in line.chars() {
                if c == '=' || c == ':' {
                    s.truncate(s.trim_end().len());
                    s.push(c);
                    after = true;
                } else if !(after && c.is_whitespace()) {
                    after = false;
                    s.push(c);
                }
            }
            s
        };
        let (name, value) = squeezed.split_once('=').unwrap_or((&squeezed, ""));
        out.push((name.to_string(), value.to_string()));
    }
    out
}

/// What must survive a round trip: the frontends, every kite (on or off,
/// `@kitename`/`@kitesecret` expanded) and every per-kite option.
fn kites_secrets_options(text: &str) -> BTreeSet<String> {
    let opts = options(text);
    let get = |name: &str| {
        opts.iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (kitename, kitesecret) = (get("kitename"), get("kitesecret"));
    let mut set = BTreeSet::new();
    for (name, value) in &opts {
        match name.as_str() {
            "service_on" | "service_off" => {
                let spec = value
                    .replace("@kitename", &kitename)
                    .replace("@kitesecret", &kitesecret);
                set.insert(format!("{name} {spec}"));
            }
            "service_cfg" | "frontend" | "frontends" | "nofrontend" | "fe_certname" => {
                set.insert(format!("{name} {value}"));
            }
            _ => {}
        }
    }
    set
}

const HOME: &str = "home.golden.test";

#[test]
fn rc_files_pagekite_py_writes_run_on_rkite_and_go_round() {
    if !can_isolate() {
        return;
    }
    let dir = util::temp_dir("pkgolden");
    let origin = Origin::start();
    let echo = EchoServer::start();
    let (p1, p2) = (free_port(), free_port());
    let fe = frontend(
        &[p1, p2],
        &[
            &format!("http,raw:{HOME}:s3cret"),
            "http:blog.golden.test:blogpw",
            "http:off.golden.test:s3cret",
            "http:port.golden.test:portpw",
        ],
        &["--rawports=virtual"],
    );
    let (o, e) = (origin.port().to_string(), echo.port().to_string());
    // One file with a main kite (kitename/kitesecret), a raw kite, a kite
    // with its own secret and a password, and one switched off; one without
    // a kitename (pagekite.py picks one) whose kite is on a port of its own.
    let rc_main = pagekite_settings(
        &[
            &format!("--kitename={HOME}"),
            "--kitesecret=s3cret",
            &format!("--frontend=127.0.0.1:{p1}"),
            &format!("--service_on=http:@kitename:localhost:{o}:@kitesecret"),
            &format!("--service_on=raw/22:@kitename:localhost:{e}:@kitesecret"),
            &format!("--service_on=http:blog.golden.test:127.0.0.1:{o}:blogpw"),
            "--service_cfg=blog.golden.test/80:password/alice:wonder",
            &format!("--service_off=http:off.golden.test:localhost:{o}:@kitesecret"),
        ],
        &dir,
    );
    let rc_port = pagekite_settings(
        &[
            &format!("--frontend=127.0.0.1:{p1}"),
            &format!("--service_on=http/{p2}:port.golden.test:localhost:{o}:portpw"),
            &format!("--service_cfg=port.golden.test/{p2}:password/alice:wonder"),
        ],
        &dir,
    );
    // What pagekite.py wrote is what a user has: its own spellings.
    assert!(
        rc_main.contains("service_on  = http:@kitename ")
            && rc_main.contains("service_off = http:off.golden.test ")
            && rc_main.contains("service_cfg = blog.golden.test/80 "),
        "{rc_main}"
    );
    assert!(
        rc_port.contains("kitename   = port.golden.test"),
        "{rc_port}"
    );
    let main_path = dir.join("main.rc");
    let port_path = dir.join("port.rc");
    std::fs::write(&main_path, &rc_main).expect("write");
    std::fs::write(&port_path, &rc_port).expect("write");

    let be_main = util::rkite(&["-o", &main_path.to_string_lossy()]);
    let be_port = util::rkite(&["-o", &port_path.to_string_lossy()]);
    for kite in [
        format!("http:{HOME}"),
        format!("raw-22:{HOME}"),
        "http:blog.golden.test".to_string(),
        format!("http-{p2}:port.golden.test"),
    ] {
        live(&fe, &kite);
    }
    live(&be_main, &format!("http:{HOME}"));

    // Every kite serves.
    let home = get(p1, HOME, "/");
    assert_eq!((home.status, home.body_str().as_str()), (200, INDEX_BODY));
    // The password option acts: 401 without, 200 with the right credentials.
    let url = format!("http://127.0.0.1:{p1}/");
    let blog = "Host: blog.golden.test";
    assert_eq!(util::curl(&["-H", blog, &url]).status, 401);
    assert_eq!(
        util::curl(&["-u", "alice:nope", "-H", blog, &url]).status,
        401
    );
    let ok = util::curl(&["-u", "alice:wonder", "-H", blog, &url]);
    assert_eq!((ok.status, ok.body_str().as_str()), (200, INDEX_BODY));
    let url2 = format!("http://127.0.0.1:{p2}/");
    let port_host = format!("Host: port.golden.test:{p2}");
    assert_eq!(util::curl(&["-H", &port_host, &url2]).status, 401);
    let ok = util::curl(&["-u", "alice:wonder", "-H", &port_host, &url2]);
    assert_eq!((ok.status, ok.body_str().as_str()), (200, INDEX_BODY));
    // The raw kite answers through CONNECT.
    let mut raw = connect_raw(p1, &format!("{HOME}:22"));
    echo_once(&mut raw, b"hello through pagekite.py's rc file\n");
    // The service_off kite is not served: not flown, so nobody has it.
    assert_eq!(get(p1, "off.golden.test", "/").status, 503);
    assert!(!be_main.contains("off.golden.test is live"));
    assert!(!fe.contains("off.golden.test is live"));
    drop(be_port);

    // Round trip: rkite --settings of pagekite.py's file, then pagekite.py
    // --settings of rkite's: the same kites, secrets and per-kite options.
    for (name, rc, path) in [
        ("main", &rc_main, &main_path),
        ("port", &rc_port, &port_path),
    ] {
        let ours = rkite_settings(path, &dir);
        assert!(ours.contains("Secrets are written in clear"), "{ours}");
        let ours_path = dir.join(format!("{name}.rkite.rc"));
        std::fs::write(&ours_path, &ours).expect("write");
        let theirs = pagekite_settings(&["-o", &ours_path.to_string_lossy()], &dir);
        let before = kites_secrets_options(rc);
        assert!(before.len() >= 3, "{name}: {before:?}");
        assert_eq!(
            before,
            kites_secrets_options(&ours),
            "{name}: rkite wrote:\n{ours}"
        );
        assert_eq!(
            before,
            kites_secrets_options(&theirs),
            "{name}: pagekite.py read rkite's file back as:\n{theirs}"
        );
        // pagekite.py writes back exactly the file it wrote first.
        assert_eq!(options(rc), options(&theirs), "{name}");
    }
    eprintln!("pagekite.py's rc files: served by rkite, and round trip kept every kite");
}

/// `defaults` and `whitelabel`, as pagekite.py writes and expands them,
/// shown by rkite's `--settings` (nothing here is ever run: these would
/// dial pagekite.net).
#[test]
fn service_defaults_mean_what_they_mean_to_pagekite_py() {
    if !can_isolate() {
        return;
    }
    let dir = util::temp_dir("pkdefaults");
    let kite = "--service_on=http:home.example.com:localhost:8000:s3cret";
    let cases: &[(&[&str], &str)] = &[
        (&["--defaults"], "defaults"),
        (&["--whitelabel=example.com"], "whitelabel = example.com"),
        (&["--whitelabels=example.com"], "whitelabels = example.com"),
    ];
    for (i, (args, line)) in cases.iter().enumerate() {
        let rc = pagekite_settings(&[*args, &[kite]].concat(), &dir);
        assert!(rc.contains(&format!("\n{line}\n")), "{rc}");
        let path = dir.join(format!("defaults-{i}.rc"));
        std::fs::write(&path, &rc).expect("write");
        let ours = rkite_settings(&path, &dir);
        assert!(ours.contains(&format!("\n{line}\n")), "{ours}");
        assert!(ours.contains("#   frontends = 1:fe4_152."), "{ours}");
    }
    // With one value changed, pagekite.py writes every value out: rkite's
    // expansion must give the same lines, and pagekite.py reads them back.
    for (i, args) in [
        ["--defaults", "--fe_certname=mine.example.com"],
        [
            "--whitelabels=example.com",
            "--fe_certname=mine.example.com",
        ],
    ]
    .iter()
    .enumerate()
    {
        let rc = pagekite_settings(&[&args[..], &[kite]].concat(), &dir);
        let path = dir.join(format!("expanded-{i}.rc"));
        std::fs::write(&path, &rc).expect("write");
        // rkite given the same options as pagekite.py was:
        let direct = dir.join(format!("direct-{i}.rc"));
        let lines: Vec<String> = args
            .iter()
            .chain([&kite])
            .map(|a| a.trim_start_matches("--").to_string())
            .collect();
        std::fs::write(&direct, lines.join("\n")).expect("write");
        for source in [&path, &direct] {
            let ours = rkite_settings(source, &dir);
            let pick = |text: &str| -> BTreeSet<(String, String)> {
                options(text)
                    .into_iter()
                    .filter(|(n, _)| ["frontends", "fe_certname", "dyndns"].contains(&n.as_str()))
                    .collect()
            };
            let want = pick(&rc);
            // frontends, dyndns, and pagekite.net's 8 names with mine.
            assert!(want.len() >= 1 + 1 + 9, "{rc}");
            assert_eq!(want, pick(&ours), "{}:\n{ours}", source.display());
            let ours_path = dir.join(format!("expanded-{i}.rkite.rc"));
            std::fs::write(&ours_path, &ours).expect("write");
            let theirs = pagekite_settings(&["-o", &ours_path.to_string_lossy()], &dir);
            assert_eq!(want, pick(&theirs), "{theirs}");
        }
    }
}
