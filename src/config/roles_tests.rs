//! How a parse splits the flags by role: a frontend runs with the common
//! and frontend settings only, a backend with the common and backend ones;
//! the other role's flags are still read and checked (as pagekite.py reads
//! `--ports` on a backend and then never listens) and `--settings` still
//! shows them; `--connect` gets the client's settings.

use std::time::Duration;

use crate::config::{ClientSettings, Config, LogLevel, Parsed, parse};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn run(list: &[&str]) -> Config {
    match parse(&args(list)) {
        Ok(Parsed::Run(c)) => *c,
        other => panic!("{list:?}: {other:?}"),
    }
}

fn settings(list: &[&str]) -> String {
    match parse(&[args(list), args(&["--settings"])].concat()) {
        Ok(Parsed::Settings(text)) => text,
        other => panic!("{list:?}: {other:?}"),
    }
}

const BACKEND_FLAGS: &[&str] = &[
    "--frontend=127.0.0.1:9080",
    "--fe_certname=fe.test",
    "--kitename=k.test",
    "--insecure",
];

const FRONTEND_FLAGS: &[&str] = &[
    "--host=127.0.0.1",
    "--ports=9000",
    "--domain=http:b.test:pw",
    "--client_acl=deny:any",
    "--max_conns_per_ip=7",
];

#[test]
fn a_frontend_runs_with_the_common_and_frontend_settings_only() {
    let list = [
        &["--isfrontend", "--keepalive=30", "-v", "--buffers=100"][..],
        FRONTEND_FLAGS,
        BACKEND_FLAGS,
    ]
    .concat();
    let c = run(&list);
    assert!(c.is_frontend());
    assert!(
        c.backend().is_none(),
        "a frontend holds no backend settings"
    );
    let fe = c.frontend().expect("frontend settings");
    assert_eq!(fe.ports, [9000]);
    assert_eq!(fe.host, Some("127.0.0.1".parse().expect("an address")));
    assert_eq!(fe.client_acl, ["deny:any"]);
    assert_eq!(fe.max_conns_per_ip, 7);
    assert_eq!(fe.domain_secrets.len(), 1);
    assert_eq!(c.common.keepalive, Duration::from_secs(30));
    assert_eq!(c.common.buffer_budget, 100 * 1024);
    assert_eq!(c.common.process.log_level, LogLevel::Verbose);
    // --settings still shows the backend flags given, as before the split.
    let text = settings(&list);
    for line in [
        "isfrontend",
        "frontend = 127.0.0.1:9080",
        "fe_certname = fe.test",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
    }
}

#[test]
fn a_backend_reads_frontend_flags_then_runs_without_them() {
    let kite = "--service_on=http:k.test:127.0.0.1:80:pw";
    let list = [BACKEND_FLAGS, &[kite], FRONTEND_FLAGS].concat();
    let c = run(&list);
    assert!(!c.is_frontend());
    assert!(
        c.frontend().is_none(),
        "a backend holds no frontend settings"
    );
    let be = c.backend().expect("backend settings");
    assert_eq!(be.frontends, [("127.0.0.1".to_string(), 9080)]);
    assert_eq!(be.fe_certnames, ["fe.test"]);
    assert_eq!(be.kitename.as_deref(), Some("k.test"));
    assert!(be.insecure);
    assert_eq!(be.kites.len(), 1);
    // Read and checked all the same: a bad value is still an error.
    let err = match parse(&args(&[BACKEND_FLAGS, &[kite, "--ports=x"]].concat())) {
        Err(e) => e,
        other => panic!("--ports=x on a backend: {other:?}"),
    };
    assert_eq!(err.flag, "ports");
    // --settings still shows them, as before the split.
    let text = settings(&list);
    assert!(text.lines().any(|l| l == "ports = 9000"), "{text}");
    assert!(!text.lines().any(|l| l == "isfrontend"), "{text}");
}

#[test]
fn each_role_has_its_own_defaults_in_the_common_settings() {
    let fe = run(&["--isfrontend"]);
    assert_eq!(fe.common.buffer_budget, 128 << 20);
    assert_eq!(fe.common.max_conns, 16384);
    let be = run(&[
        "--frontend=127.0.0.1:1",
        "--service_on=http:a.test:localhost:80:pw",
    ]);
    assert_eq!(be.common.buffer_budget, 8 << 20);
    assert_eq!(be.common.max_conns, 4096);
}

#[test]
fn connect_gets_the_client_settings() {
    let client = |list: &[&str]| match parse(&args(list)) {
        Ok(Parsed::Connect(c)) => c,
        other => panic!("{list:?}: {other:?}"),
    };
    assert_eq!(
        client(&[
            "--connect=relay.test:443",
            "--fe_certname=relay.test",
            "--ca_certs=/etc/ca.pem",
            "target.test:22",
        ]),
        ClientSettings {
            relay: ("relay.test".to_string(), 443),
            target: "target.test:22".to_string(),
            tls: Some(Some(vec!["relay.test".to_string()])),
            ca_certs: Some("/etc/ca.pem".to_string()),
            proxies: Vec::new(),
        }
    );
    let c = client(&["--connect=127.0.0.1:80", "--fe_nocertcheck", "t.test:22"]);
    assert_eq!(c.tls, Some(None));
    let c = client(&["--connect=127.0.0.1:80", "t.test:22"]);
    assert_eq!(c.tls, None);
}
