//! The end-to-end test binary: real processes over real loopback sockets. It owns only the
//! module list; `util` (processes, waits, curl, raw client), `origin` (test origin servers)
//! and `peers` (Debian pagekite.py as FE/BE) are the harness, `harness_selftest` proves the
//! harness against real peers, and the test modules proper are added beside them.

// Test code waits on wall-clock deadlines; only the reactor itself is held
// to the one-clock-read rule.
#![allow(clippy::disallowed_methods)]

mod acme;
mod authdomain;
mod authfile;
mod certs;
mod chunk_tap;
mod cli;
mod dyndns;
mod faults;
mod fixture;
mod fleet;
mod flow;
mod guard;
mod haproxy;
mod harness_selftest;
mod hostile;
mod interop;
mod meter;
mod metrics;
mod misc;
mod operators;
mod ops;
mod origin;
mod pagekitec;
mod peers;
mod pkgolden;
mod proxy;
mod raw;
mod rcfiles;
mod reach;
mod relay;
mod robust;
mod sniffbuf;
mod splice;
mod tenants;
mod tls;
mod util;
mod webfiles;
mod wire;
