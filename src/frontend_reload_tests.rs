//! Tests of the frontend's SIGHUP reload on a real reactor over loopback
//! sockets, for what an end-to-end test cannot provoke: a listener that
//! cannot join the reactor after the old ones would have been removed.
//! Only tests live here; the reload itself is `frontend_control.rs`.

use std::net::TcpStream;
use std::os::fd::AsRawFd;

use super::*;
use crate::app::{Node, Role};
use crate::config::{FrontendSettings, Parsed, RoleConfig};

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe");
    probe.local_addr().expect("its address").port()
}

fn config(port: u16) -> crate::config::Config {
    let args: Vec<String> = [
        "--isfrontend".to_string(),
        "--host=127.0.0.1".to_string(),
        format!("--ports={port}"),
        "--domain=http:reload.test:secret".to_string(),
    ]
    .to_vec();
    match crate::config::parse(&args) {
        Ok(Parsed::Run(config)) => *config,
        _ => panic!("a frontend configuration"),
    }
}

/// The frontend's part of [`config`].
fn frontend_settings(port: u16) -> FrontendSettings {
    match config(port).role {
        RoleConfig::Frontend(fe) => fe,
        RoleConfig::Backend(_) => panic!("a frontend configuration"),
    }
}

fn listening_ports(node: &mut Node) -> Vec<u16> {
    let Role::Frontend(fe) = &node.role else {
        panic!("a frontend");
    };
    let eng = &mut node.eng;
    let tokens = fe.listeners.clone();
    tokens
        .into_iter()
        .filter_map(|t| match eng.conns.get_mut(t) {
            Some(Conn::Listener(l)) => Some(l.port),
            _ => None,
        })
        .collect()
}

#[test]
fn a_reload_whose_new_listener_cannot_be_watched_keeps_the_old_one() {
    // Port 0: any free one, so only the new port is chosen by a probe.
    let mut node = Node::new(config(0)).expect("an engine");
    node.start().expect("listening");
    let [old] = listening_ports(&mut node)[..] else {
        panic!("one listener");
    };
    let new = free_port();

    // The reactor refuses every new socket from now on: its epoll
    // descriptor becomes /dev/null, so epoll_ctl fails with EINVAL.
    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    // SAFETY: both descriptors are open; dup2 replaces the engine's epoll
    // descriptor in place, and the engine still owns (and closes) it.
    let replaced = unsafe { libc::dup2(null.as_raw_fd(), node.eng.poll_fd()) };
    assert!(replaced >= 0, "dup2: {}", std::io::Error::last_os_error());

    let Role::Frontend(fe) = &mut node.role else {
        panic!("a frontend");
    };
    let err = reload(&mut node.eng, fe, &frontend_settings(new))
        .expect_err("the new port cannot be watched");
    assert!(
        matches!(&err, crate::reload::ReloadError::Setup(fatal)
            if matches!(**fatal, crate::engine::Fatal::Watch { port, .. } if port == new)),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("cannot watch port {new}: Invalid argument (os error 22)")
    );
    assert_eq!(listening_ports(&mut node), [old], "the old listener stays");
    assert_eq!(
        match &node.role {
            Role::Frontend(fe) => Some(fe.settings()),
            Role::Backend(_) => None,
        },
        Some(&frontend_settings(0)),
        "the running settings stay"
    );
    TcpStream::connect(("127.0.0.1", old)).expect("the old port still accepts");
    assert!(
        TcpStream::connect(("127.0.0.1", new)).is_err(),
        "the new port was closed again"
    );
    drop(node);
    // Engine::new took over the stop signals for this test process; give
    // them back, so the test runner can still be stopped.
    crate::signals::restore_defaults();
}
