//! Running the real reference peer, Debian's pagekite.py 1.5.2.201011 (`/usr/bin/pagekite`),
//! as a frontend (relay) or a backend (connector) under `Proc`, and the log lines it prints
//! that tell a test when it is ready.
//!
//! Every instance runs with `--clean` (no ~/.pagekite.rc), `--nullui`, `--logfile=stdio`
//! (log lines go to stdout, flushed per line, so `Proc` sees them at once),
//! `--loglevel=mach` (adds the FE's `BE=Live`/`BE=Dead` lines, see below), HOME set to a
//! fresh temp dir and the proxy variables removed. Nothing is ever given `--defaults`, so
//! pagekite.net is never contacted; every address is 127.0.0.1.
//!
//! What pagekite.py 1.5.2 prints (one `key=value; key=value` line per event, each line
//! starting with `ts=<hex>; t=<iso time>; ll=<hex line counter>; `). Found by running it:
//!
//! Frontend (`--isfrontend`):
//! * `listen=127.0.0.1:<port>; id=s1` — the listener is bound and listening (it is logged
//!   right after bind+listen). Printed about 0.15 s after the start.
//! * `BE=Live; proto=http; domain=foo.test; add_kites=True; version=1.5.2.201011; id=...`
//!   — a kite was accepted and registered (mach level; logged just before the tunnel is
//!   registered, and before the OK is sent to the BE).
//! * `err=Invalid signature for: bad.test (http)`, then `rejected=bad.test; quota=None;
//!   reason=signature` and `BE=Dead; proto=http; domain=bad.test; ...` — a kite rejected.
//! * `port=<port>; accept=~0.1:<client port>; id=s1` for each accepted connection, and
//!   `domain=foo.test; on_port=<port>; proto=http; is=FE; ...` for each relayed request.
//!
//! Backend (`--frontend=...`):
//! * `FE=127.0.0.1:<port>; http_ping_ms=23; ...` — it pinged the FE (before connecting).
//! * `connect=127.0.0.1:<port>` — the tunnel connection is being made.
//! * `FE=127.0.0.1:<port>; proto=http; domain=foo.test; ssl=False; id=s1` — the FE sent
//!   `X-PageKite-OK` for this kite: the kite is live at the FE (the FE registers it before
//!   answering). This is the line to wait for, also when the FE is rkite.
//! * `FE=127.0.0.1:<port>; err=Rejected; proto=http; reason=signature; domain=bad.test`
//!   — the FE refused a kite.
//! * `GET=/; on_port=<port>; proto=http; domain=foo.test; is=BE; remote_ip=127.0.0.1` for
//!   each request it forwards to the origin.
//!
//! Timing on loopback (2-core machine), measured:
//! * FE listening after 0.07–0.15 s; the BE pings, connects after ~1 s, and its kite is
//!   live ~2.3 s after the FE was started (the FE + BE pair is ready in ~2.4 s).
//! * The main loop of pagekite.py polls with a 1.1 s timeout and a new public connection
//!   is only served on the next wake-up, so a request to an otherwise idle pagekite.py FE
//!   takes ~1.1 s (even its own 503 page); while tunnel traffic flows it takes ~0.05 s.
//!   Budget ~1.1 s per fresh connection and prefer few, larger requests.
//! * Throughput of a pagekite.py FE + BE pair: ~4.5 MiB/s (16 MiB in ~3.5 s); pagekite.py
//!   caps per-tunnel reads on purpose (SELECT_LOOP_MIN_MS, see its pk.py).
//! * On SIGTERM both exit within ~20 ms and print nothing more.
//! * If the port is taken, the FE prints a help text and `Error: Configuring listeners:
//!   [Errno 98] Address already in use` and exits; `wait_for` then fails at once.

#![allow(dead_code)] // Shared by several test modules; not all use every helper.

use crate::util::{self, Proc};
use std::process::Command;
use std::time::Duration;

/// The program name, for `require_peer`.
pub const PAGEKITE: &str = "pagekite";

/// How long to wait for pagekite.py to become ready (generous: it usually takes ~2 s).
pub const PK_READY: Duration = Duration::from_secs(30);

/// FE log line: listening on 127.0.0.1:`port`.
pub fn fe_listening(port: u16) -> String {
    format!("listen=127.0.0.1:{port};")
}

/// FE log line (mach level): kite `proto:domain` accepted and registered.
pub fn fe_kite_live(proto: &str, domain: &str) -> String {
    format!("BE=Live; proto={proto}; domain={domain};")
}

/// FE log line (mach level): kite `proto:domain` rejected or dropped.
pub fn fe_kite_dead(proto: &str, domain: &str) -> String {
    format!("BE=Dead; proto={proto}; domain={domain};")
}

/// BE log line: the FE confirmed kite `proto:domain` (X-PageKite-OK).
pub fn be_kite_up(proto: &str, domain: &str) -> String {
    format!("proto={proto}; domain={domain}; ssl=")
}

/// BE log line: the FE rejected kite `proto:domain` (X-PageKite-Invalid) for `reason`
/// (what the FE sent in X-PageKite-Invalid-Why, e.g. `signature`; `unknown` if none).
pub fn be_kite_rejected(proto: &str, domain: &str, reason: &str) -> String {
    format!("err=Rejected; proto={proto}; reason={reason}; domain={domain};")
}

/// A `--service_on` value: `PROTO:KITE:127.0.0.1:LOCALPORT:SECRET`. PROTO may carry a
/// port (`http-9082`, `raw-22`).
pub fn kite(proto: &str, domain: &str, local_port: u16, secret: &str) -> String {
    format!("{proto}:{domain}:127.0.0.1:{local_port}:{secret}")
}

/// Spawns `pagekite --clean --nullui --logfile=stdio --loglevel=mach ARGS...` with a fresh
/// HOME; `name` labels it in logs. Later options in ARGS override earlier ones.
pub fn pagekite(name: &str, args: &[&str]) -> Proc {
    let home = util::temp_dir(&format!("pk-home-{name}"));
    let mut cmd = Command::new(PAGEKITE);
    util::no_proxy_env(&mut cmd);
    cmd.env("HOME", &home)
        .env("PYTHONUNBUFFERED", "1")
        .args(["--clean", "--nullui", "--logfile=stdio", "--loglevel=mach"])
        .args(args);
    Proc::spawn(name, cmd)
}

/// pagekite.py as a frontend on 127.0.0.1:`port` (`--isfrontend --host=127.0.0.1
/// --ports=<port>`). Kite secrets come in `extra`, e.g. `--domain=http:foo.test:s3cret`
/// or `--domain=*:*.test:s3cret`; so do `--protos=...`, `--rawports=virtual`, etc.
/// Does not wait: use `wait_frontend_ready`.
pub fn pagekite_frontend(port: u16, extra: &[&str]) -> Proc {
    let host = "--host=127.0.0.1".to_string();
    let ports = format!("--ports={port}");
    let mut args = vec!["--isfrontend", host.as_str(), ports.as_str()];
    args.extend_from_slice(extra);
    pagekite("pagekite-fe", &args)
}

/// pagekite.py as a backend connecting to the frontend at 127.0.0.1:`frontend_port`, with
/// one `--service_on=<kite>` per entry of `kites` (see `kite()`); `extra` e.g.
/// `--nozchunks`. Does not wait: use `wait_kite_up`.
pub fn pagekite_backend(frontend_port: u16, kites: &[&str], extra: &[&str]) -> Proc {
    let mut owned = vec![format!("--frontend=127.0.0.1:{frontend_port}")];
    owned.extend(kites.iter().map(|k| format!("--service_on={k}")));
    let mut args: Vec<&str> = owned.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    pagekite("pagekite-be", &args)
}

/// Waits until a pagekite.py frontend logs that it listens on `port`.
pub fn wait_frontend_ready(fe: &Proc, port: u16) {
    fe.wait_for(&fe_listening(port), PK_READY);
}

/// Waits until a pagekite.py backend logs that the FE accepted kite `proto:domain`.
pub fn wait_kite_up(be: &Proc, proto: &str, domain: &str) -> String {
    be.wait_for(&be_kite_up(proto, domain), PK_READY)
}
