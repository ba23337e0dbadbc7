//! Tests of what SIGHUP decides, on real reactors with loopback listeners:
//! each role holds only its own settings and the engine only the common
//! ones, a reload that switches role is refused and changes nothing, and
//! restart-only settings keep their running values while the rest apply.
//! Only tests live here; the reload itself is `reload.rs`.

use std::time::Duration;

use super::*;
use crate::app::Node;
use crate::config::{BackendSettings, FrontendSettings};

/// A frontend on any free loopback port.
const FRONTEND: &[&str] = &[
    "--isfrontend",
    "--host=127.0.0.1",
    "--ports=0",
    "--domain=http:a.test:pw",
    "--keepalive=30",
];

/// A backend; it dials nothing until started.
const BACKEND: &[&str] = &[
    "--frontend=127.0.0.1:9",
    "--service_on=http:a.test:127.0.0.1:80:pw",
    "--keepalive=40",
];

fn parse(list: &[&str]) -> Config {
    let args: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    match config::parse(&args) {
        Ok(Parsed::Run(c)) => *c,
        other => panic!("{list:?}: {other:?}"),
    }
}

fn engine(list: &[&str]) -> Node {
    Node::new(parse(list)).expect("an engine")
}

/// The running frontend's settings (none on a backend).
fn frontend_settings(node: &Node) -> Option<&FrontendSettings> {
    match &node.role {
        Role::Frontend(fe) => Some(fe.settings()),
        Role::Backend(_) => None,
    }
}

/// The running backend's settings (none on a frontend).
fn backend_settings(node: &Node) -> Option<&BackendSettings> {
    match &node.role {
        Role::Backend(be) => Some(be.settings()),
        Role::Frontend(_) => None,
    }
}

#[test]
fn each_role_holds_its_own_settings_and_the_engine_the_common_ones() {
    let c = parse(FRONTEND);
    let (common, fe) = (c.common.clone(), c.frontend().cloned());
    assert!(fe.is_some() && c.backend().is_none());
    let eng = Node::new(c).expect("a frontend");
    assert_eq!(eng.eng.config, common);
    assert_eq!(frontend_settings(&eng), fe.as_ref());
    assert_eq!(backend_settings(&eng), None);
    drop(eng);

    let c = parse(BACKEND);
    let (common, be) = (c.common.clone(), c.backend().cloned());
    assert!(be.is_some() && c.frontend().is_none());
    let eng = Node::new(c).expect("a backend");
    assert_eq!(eng.eng.config, common);
    assert_eq!(backend_settings(&eng), be.as_ref());
    assert_eq!(frontend_settings(&eng), None);
    drop(eng);
    // Node::new took over the stop signals for this test process.
    crate::signals::restore_defaults();
}

#[test]
fn a_reload_that_switches_role_is_refused_and_changes_nothing() {
    let mut eng = engine(FRONTEND);
    let before = (eng.eng.config.clone(), frontend_settings(&eng).cloned());
    let err = apply(&mut eng.eng, &mut eng.role, parse(BACKEND)).expect_err("a frontend stays one");
    assert!(matches!(err, ReloadError::RoleSwitch { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "the configuration now runs a backend (--isfrontend removed), but this process \
         is a frontend; switching roles needs a restart"
    );
    assert_eq!(
        (eng.eng.config.clone(), frontend_settings(&eng).cloned()),
        before
    );
    assert_eq!(
        before.0.keepalive,
        Duration::from_secs(30),
        "not the backend's"
    );
    drop(eng);

    let mut eng = engine(BACKEND);
    let before = (eng.eng.config.clone(), backend_settings(&eng).cloned());
    let err = apply(&mut eng.eng, &mut eng.role, parse(FRONTEND)).expect_err("a backend stays one");
    assert!(
        err.to_string()
            .contains("now runs a frontend (--isfrontend added), but this process is a backend"),
        "{err}"
    );
    assert_eq!(
        (eng.eng.config.clone(), backend_settings(&eng).cloned()),
        before
    );
    drop(eng);
    crate::signals::restore_defaults();
}

#[test]
fn a_reload_keeps_restart_only_settings_and_applies_the_rest() {
    let running = [FRONTEND, &["-v", "--logfile=/nonexistent/a.log"]].concat();
    let mut eng = engine(&running);
    let process = eng.eng.config.process.clone();
    assert_eq!(process.log_level, config::LogLevel::Verbose);
    // Port 0 again: the running listener is kept, so the new --host is
    // never bound; it is the running one that stays.
    let new = parse(&[
        "--isfrontend",
        "--host=127.0.0.2",
        "--ports=0",
        "--domain=http:b.test:pw2",
        "--keepalive=50",
        "-q",
        "--logfile=/nonexistent/b.log",
        "--status_file=/nonexistent/status.json",
    ]);
    apply(&mut eng.eng, &mut eng.role, new).expect("the reload applies");
    assert_eq!(
        eng.eng.config.process, process,
        "restart-only settings stay"
    );
    assert_eq!(eng.eng.config.keepalive, Duration::from_secs(50));
    let fe = frontend_settings(&eng).expect("still a frontend");
    assert_eq!(fe.host, Some("127.0.0.1".parse().expect("an address")));
    let domains: Vec<&str> = fe.domain_secrets.keys().map(String::as_str).collect();
    assert_eq!(domains, ["http:b.test"]);
    drop(eng);
    crate::signals::restore_defaults();
}

#[test]
fn sighup_gives_the_pool_its_new_budget() {
    let dir = std::env::temp_dir().join(format!("rkite-pool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let rc = dir.join("rc");
    std::fs::write(&rc, "buffers = 64\n").expect("an option file");
    let optfile = format!("--optfile={}", rc.display());
    let mut node = engine(&[FRONTEND, &[optfile.as_str()]].concat());
    assert_eq!(node.eng.pool.budget(), 64 * 1024);
    std::fs::write(&rc, "buffers = 256\n").expect("the option file again");
    reload(&mut node.eng, &mut node.role);
    assert_eq!(node.eng.pool.budget(), 256 * 1024);
    let _ = std::fs::remove_dir_all(&dir);
    drop(node);
    crate::signals::restore_defaults();
}
