//! The sans-IO PageKite core: framing, handshake, sniffing, kite names,
//! authentication policy, HTTP rewriting, flow accounting and canned pages.
//! Nothing below this module touches sockets, clocks, threads or TLS; time and
//! entropy come in as arguments, so every function is a pure, testable step.

pub mod acl;
pub mod acme;
pub mod auth;
pub mod authdns;
pub mod authfile;
pub mod backoff;
pub mod base64;
pub mod ct;
pub mod der;
pub mod dyndns;
#[doc(hidden)]
pub mod dyndns_fuzz;
mod dyndns_state;
pub mod fleet;
pub mod flow;
pub mod frame;
pub mod handshake;
pub mod http;
#[doc(hidden)]
pub mod http_fuzz;
pub mod http_head;
pub mod http_reply;
pub mod jose;
pub mod json;
pub mod keepalive;
pub mod kite;
pub mod metrics;
pub mod netlink;
pub mod operators;
pub mod options;
pub mod pages;
pub mod proxy;
mod proxy_client;
#[doc(hidden)]
pub mod proxy_fuzz;
pub mod proxy_protocol;
pub mod sid_hash;
pub mod sniff;
pub mod status_line;
pub mod stream;
pub mod tunnel;
#[doc(hidden)]
pub mod tunnel_fuzz;
pub mod webfiles;
pub mod webfiles_page;

#[cfg(test)]
mod golden_tests;
