//! `--authfile`: a frontend with no `--domain` at all serves the users its
//! file lists, and a SIGHUP puts an edited file in effect. Real rkite
//! backends fly the kites; asserted: a listed user's kite comes up and
//! serves its page; a wrong secret is refused (`signature`); the user's
//! MAX_TUNNELS refuses one tunnel too many (`quota`); a user added to the
//! file plus SIGHUP lets a waiting backend in at its next attempt (SIGUSR1
//! makes that now); a user removed plus SIGHUP has their kite dropped.

use std::path::Path;

use crate::fixture::{T, backend, frontend, get, kite, live};
use crate::origin::{INDEX_BODY, Origin};
use crate::util::{self, free_port};

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write the authfile");
}

const ALICE: &str = "alice  alice-pw  alice.example.test,*.alice.example.test  http,websocket  1\n";
const BOB: &str = "bob bob-pw bob.example.test * # added later\n";

#[test]
fn authfile_users_are_served_capped_added_and_removed_live() {
    let origin = Origin::start();
    let dir = util::temp_dir("authfile");
    let file = dir.join("users");
    write(&file, &format!("# the club\n\n{ALICE}"));
    let port = free_port();
    let fe = frontend(&[port], &[], &[&format!("--authfile={}", file.display())]);

    // A listed user's kite, signed with their secret.
    let alice = backend(
        port,
        &[kite(
            "http",
            "alice.example.test",
            origin.port(),
            "alice-pw",
        )],
        &[],
    );
    live(&alice, "http:alice.example.test");
    assert_eq!(get(port, "alice.example.test", "/").body_str(), INDEX_BODY);

    // Alice's name with someone else's secret.
    let forger = backend(
        port,
        &[kite(
            "http",
            "www.alice.example.test",
            origin.port(),
            "guess",
        )],
        &[],
    );
    fe.wait_for("kite http:www.alice.example.test rejected: signature", T);
    drop(forger);

    // A second tunnel of alice's is one over her MAX_TUNNELS of 1.
    let second = backend(
        port,
        &[kite(
            "http",
            "blog.alice.example.test",
            origin.port(),
            "alice-pw",
        )],
        &[],
    );
    fe.wait_for("kite http:blog.alice.example.test rejected: quota", T);
    drop(second);

    // Bob is not listed yet: refused, and his backend keeps trying.
    let bob = backend(
        port,
        &[kite("http", "bob.example.test", origin.port(), "bob-pw")],
        &[],
    );
    fe.wait_for("kite http:bob.example.test rejected: unauthorized", T);
    bob.wait_for("retrying in", T);
    write(&file, &format!("{ALICE}{BOB}"));
    fe.signal(libc::SIGHUP);
    fe.wait_for("SIGHUP: the new configuration is in effect", T);
    bob.signal(libc::SIGUSR1);
    live(&bob, "http:bob.example.test");
    assert_eq!(get(port, "bob.example.test", "/").body_str(), INDEX_BODY);
    // Alice's kite was not touched by the reload.
    assert!(!fe.contains("kite http:alice.example.test is down"));

    // Alice is removed: her kite goes down at once, bob's stays.
    write(&file, BOB);
    fe.signal(libc::SIGHUP);
    fe.wait_for_count("SIGHUP: the new configuration is in effect", 2, T);
    fe.wait_for(
        "kite http:alice.example.test is down (the configuration no longer allows it)",
        T,
    );
    assert_ne!(get(port, "alice.example.test", "/").body_str(), INDEX_BODY);
    assert_eq!(get(port, "bob.example.test", "/").body_str(), INDEX_BODY);

    // A broken file is refused by name and line; the running users stay.
    write(&file, &format!("{BOB}carol pw-only-two-fields\n"));
    fe.signal(libc::SIGHUP);
    fe.wait_for(&format!("{}:2: expected NAME SECRET", file.display()), T);
    assert_eq!(get(port, "bob.example.test", "/").body_str(), INDEX_BODY);
}
