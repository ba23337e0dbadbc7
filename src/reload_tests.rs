//! Tests of what SIGHUP decides, on real reactors with loopback listeners:
//! each role holds only its own settings and the engine only the common
//! ones, a reload that switches role is refused and changes nothing, and
//! restart-only settings keep their running values while the rest apply.
//! Only tests live here; the reload itself is `reload.rs`.

use std::time::Duration;

use super::*;

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

fn engine(list: &[&str]) -> Engine {
    Engine::new(parse(list)).expect("an engine")
}

#[test]
fn each_role_holds_its_own_settings_and_the_engine_the_common_ones() {
    let c = parse(FRONTEND);
    let (common, fe) = (c.common.clone(), c.frontend().cloned());
    assert!(fe.is_some() && c.backend().is_none());
    let eng = Engine::new(c).expect("a frontend");
    assert_eq!(eng.config, common);
    assert_eq!(frontend::settings(&eng), fe.as_ref());
    assert_eq!(backend::settings(&eng), None);
    drop(eng);

    let c = parse(BACKEND);
    let (common, be) = (c.common.clone(), c.backend().cloned());
    assert!(be.is_some() && c.frontend().is_none());
    let eng = Engine::new(c).expect("a backend");
    assert_eq!(eng.config, common);
    assert_eq!(backend::settings(&eng), be.as_ref());
    assert_eq!(frontend::settings(&eng), None);
    drop(eng);
    // Engine::new took over the stop signals for this test process.
    crate::signals::restore_defaults();
}

#[test]
fn a_reload_that_switches_role_is_refused_and_changes_nothing() {
    let mut eng = engine(FRONTEND);
    let before = (eng.config.clone(), frontend::settings(&eng).cloned());
    let err = apply(&mut eng, parse(BACKEND)).expect_err("a frontend stays one");
    assert!(matches!(err, ReloadError::RoleSwitch { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "the configuration now runs a backend (--isfrontend removed), but this process \
         is a frontend; switching roles needs a restart"
    );
    assert_eq!(
        (eng.config.clone(), frontend::settings(&eng).cloned()),
        before
    );
    assert_eq!(
        before.0.keepalive,
        Duration::from_secs(30),
        "not the backend's"
    );
    drop(eng);

    let mut eng = engine(BACKEND);
    let before = (eng.config.clone(), backend::settings(&eng).cloned());
    let err = apply(&mut eng, parse(FRONTEND)).expect_err("a backend stays one");
    assert!(
        err.to_string()
            .contains("now runs a frontend (--isfrontend added), but this process is a backend"),
        "{err}"
    );
    assert_eq!(
        (eng.config.clone(), backend::settings(&eng).cloned()),
        before
    );
    drop(eng);
    crate::signals::restore_defaults();
}

#[test]
fn a_reload_keeps_restart_only_settings_and_applies_the_rest() {
    let running = [FRONTEND, &["-v", "--logfile=/nonexistent/a.log"]].concat();
    let mut eng = engine(&running);
    let process = eng.config.process.clone();
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
    apply(&mut eng, new).expect("the reload applies");
    assert_eq!(eng.config.process, process, "restart-only settings stay");
    assert_eq!(eng.config.keepalive, Duration::from_secs(50));
    let fe = frontend::settings(&eng).expect("still a frontend");
    assert_eq!(fe.host, Some("127.0.0.1".parse().expect("an address")));
    let domains: Vec<&str> = fe.domain_secrets.keys().map(String::as_str).collect();
    assert_eq!(domains, ["http:b.test"]);
    drop(eng);
    crate::signals::restore_defaults();
}
