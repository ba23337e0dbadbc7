//! Why a connection or tunnel ended (`Why`), or why new work is refused
//! (`Limit`): small enums whose `Display` is the reason in the log line and
//! the status file. Only words, no behaviour: the roles decide what each
//! reason means for retries.

use std::fmt;

use crate::net::Failure;
use crate::proto::http::Refused;

/// Why a connection was closed: decides the log line.
#[derive(Clone, Debug)]
pub enum Why {
    PeerClosed,
    Failed(Failure),
    /// A TLS handshake or record failed; rustls' reason.
    Tls(String),
    Protocol(String),
    Timeout(&'static str),
    Done,
    Stopping,
    /// A keepalive PING went unanswered.
    NoAnswer,
    /// A reconnecting backend took over (X-PageKite-Replace).
    Replaced,
    /// The backend's request guard refused a request on this stream (the
    /// visitor gets the matching page).
    Refused(Refused),
    /// The peer sent this many bytes for one stream past any flow-control
    /// window a well-behaved sender keeps: it ignores flow control.
    Overrun(usize),
    /// The operator's doing: a reload removed it, SIGUSR1 found it stale.
    Operator(&'static str),
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::PeerClosed => f.write_str("closed by peer"),
            Why::Failed(e) => write!(f, "socket error: {e}"),
            Why::Tls(e) => write!(f, "TLS error: {e}"),
            Why::Protocol(what) => write!(f, "protocol error: {what}"),
            Why::Timeout(what) => write!(f, "timed out {what}"),
            Why::Done => f.write_str("done"),
            Why::Stopping => f.write_str("stopping"),
            Why::NoAnswer => f.write_str("no answer to PING: peer is gone"),
            Why::Replaced => f.write_str("replaced by a new tunnel"),
            Why::Refused(r) => write!(f, "request refused: {r}"),
            Why::Overrun(n) => write!(f, "peer ignores flow control: {n} bytes past the window"),
            Why::Operator(what) => f.write_str(what),
        }
    }
}

/// A limit that new work would exceed: what a refusal line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Conns(usize),
    Buffers {
        budget: usize,
        held: usize,
    },
    PerIp(usize),
    /// Denied by this access list flag.
    Acl(&'static str),
    /// The process is shutting down (SIGTERM): no new work.
    Stopping,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Conns(n) => write!(f, "connection limit of {n} reached"),
            Limit::Buffers { budget, held } => write!(
                f,
                "buffer budget of {} KiB reached ({} KiB held)",
                budget / 1024,
                held / 1024
            ),
            Limit::PerIp(n) => write!(f, "per-IP limit of {n} connections reached"),
            Limit::Acl(flag) => write!(f, "denied by {flag}"),
            Limit::Stopping => f.write_str("stopping"),
        }
    }
}
