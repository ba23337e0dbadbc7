//! rkite: a PageKite-compatible tunneled reverse proxy. The library holds
//! everything; `main.rs` only parses the command line and maps errors to exit
//! codes. `proto` is the sans-IO protocol core; `engine` is the reactor;
//! `relay` is the stream/tunnel pump both roles share; `frontend` and
//! `backend` are the roles.

pub mod addrwatch;
pub mod alloc_cache;
pub mod alloc_count;
pub mod app;
pub mod backend;
pub mod buf;
pub mod client;
pub mod config;
pub mod conn;
pub mod conns;
pub mod daemon;
pub mod engine;
pub mod frontend;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod kite_bytes;
pub mod local;
pub mod local_refusal;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod outbound;
pub mod proto;
pub mod public;
pub mod random;
pub mod relay;
pub mod relay_splice;
pub mod relay_stream;
pub mod reload;
pub mod reply;
pub mod report;
pub mod resolve;
pub mod signals;
pub mod splice;
pub mod splice_queue;
pub mod splice_state;
pub mod status;
pub mod stream;
pub mod timer;
pub mod tls;
pub mod tls_suites;
pub mod tls_text;
pub mod transport;
pub mod tunnel;
pub mod webserve;
pub mod why;
