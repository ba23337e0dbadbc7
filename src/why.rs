//! Why a connection or tunnel ended (`Why`, with how a peer broke the
//! protocol in `ProtocolError`), or why new work is refused (`Limit`):
//! small enums whose `Display` is the reason in the log line and the status
//! file; callers decide by variant, never by these words. Only words, no
//! behaviour: the roles decide what each reason means for retries.

use std::fmt;

use crate::net::Failure;
use crate::proto::acl::AclError;
use crate::proto::frame::FrameError;
use crate::proto::handshake::HandshakeError;
use crate::proto::http::Refused;
use crate::proto::options::OptionError;
use crate::proto::proxy::ProxyError;
use crate::proto::status_line::BadStatus;
use crate::tls::{TlsConfigError, TlsError};
use crate::transport::TransportError;

/// Failures that stop the process at start-up, or refuse a reload (exit
/// code 2 at start). Returned boxed (`Result<_, Box<Fatal>>`): it is 72
/// bytes, and every `?` from the roles' set-up into `main` moved it.
#[derive(Debug)]
pub enum Fatal {
    /// A resource the reactor needs: the poll, the signal pipe, a waker.
    System {
        what: &'static str,
        error: std::io::Error,
    },
    /// A port cannot be listened on (or configured once bound).
    Listen {
        addr: std::net::SocketAddr,
        error: std::io::Error,
    },
    /// No address to listen on for this port.
    NoAddress(u16),
    /// A bound port cannot be watched by the reactor.
    Watch { port: u16, error: std::io::Error },
    /// TLS files or settings that cannot be used.
    Tls(TlsConfigError),
    /// An access list that does not parse.
    Acl { flag: &'static str, error: AclError },
    /// A kite's options that do not parse.
    KiteOptions(OptionError),
    /// The event loop itself failed, again and again.
    Poll(std::io::Error),
    /// A `--dyndns` setting that cannot be used.
    DynDns(crate::proto::dyndns::DynDnsError),
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fatal::System { what, error } => write!(f, "cannot {what}: {error}"),
            Fatal::Listen { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
            Fatal::NoAddress(port) => write!(f, "no address to listen on for port {port}"),
            Fatal::Watch { port, error } => write!(f, "cannot watch port {port}: {error}"),
            Fatal::Tls(e) => e.fmt(f),
            Fatal::Acl { flag, error } => write!(f, "{flag}: {error}"),
            Fatal::KiteOptions(e) => e.fmt(f),
            Fatal::Poll(e) => write!(f, "event loop failed: {e}"),
            Fatal::DynDns(e) => write!(f, "--dyndns: {e}"),
        }
    }
}

/// Why a connection was closed: decides the log line.
#[derive(Clone, Debug)]
pub enum Why {
    PeerClosed,
    Failed(Failure),
    /// A TLS session failed or could not start. Boxed, as the protocol
    /// error: rare, and `Result<_, Why>` is returned on every relay step.
    Tls(Box<TlsError>),
    Protocol(Box<ProtocolError>),
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
    /// An outbound proxy (`--proxy`) failed before the tunnel was through.
    Proxy(Box<ProxyFailure>),
}

/// Which hop of the proxy chain failed, and how.
#[derive(Clone, Debug)]
pub struct ProxyFailure {
    /// 1 for the first proxy.
    pub hop: usize,
    /// The proxy as `proto::proxy::ProxySpec` shows it (no password).
    pub proxy: String,
    pub fault: ProxyFault,
}

#[derive(Clone, Debug)]
pub enum ProxyFault {
    /// The proxy answered with a refusal or something that is no proxy.
    Said(ProxyError),
    /// The proxy closed the connection during the handshake.
    Closed,
    /// The connection to the (first) proxy failed.
    Socket(Failure),
}

impl fmt::Display for ProxyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (hop, proxy) = (self.hop, &self.proxy);
        match &self.fault {
            ProxyFault::Said(e) => write!(f, "proxy {hop} ({proxy}) refused: {e}"),
            ProxyFault::Closed => write!(
                f,
                "proxy {hop} ({proxy}) closed the connection during its handshake"
            ),
            ProxyFault::Socket(e) => write!(f, "proxy {hop} ({proxy}): {e}"),
        }
    }
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
            Why::Proxy(p) => p.fmt(f),
        }
    }
}

impl From<TransportError> for Why {
    fn from(e: TransportError) -> Why {
        match e {
            TransportError::Socket(f) => Why::Failed(f),
            TransportError::Tls(e) => Why::from(e),
        }
    }
}

impl From<TlsError> for Why {
    fn from(e: TlsError) -> Why {
        Why::Tls(Box::new(e))
    }
}

impl From<ProtocolError> for Why {
    fn from(e: ProtocolError) -> Why {
        Why::Protocol(Box::new(e))
    }
}

/// How a tunnel peer broke the protocol (or gave up on it): what
/// `Why::Protocol` carries.
#[derive(Clone, Debug)]
pub enum ProtocolError {
    /// The peer does not read: this many bytes of our output are queued.
    PeerDoesNotRead(usize),
    /// One chunk does not fit the largest input buffer.
    ChunkTooLarge,
    /// A chunk could not be decoded.
    Frame(FrameError),
    /// A stream's tunnel is gone.
    TunnelGone,
    /// The frontend answered this status line to our CONNECT for the TLS
    /// endpoint `name`.
    NoTlsEndpoint { name: String, status: String },
    /// The frontend's reply head is not UTF-8.
    ReplyNotText,
    /// The frontend's reply head exceeds the handshake limit.
    ReplyTooLarge,
    /// The frontend's reply status is not 200 (the line as sent).
    Rejected(BadStatus, String),
    /// The frontend (named for the log) accepted none of our kites.
    NoKiteAccepted(String),
    /// An in-band kite request (NOOP chunk) is malformed.
    InBand(HandshakeError),
    /// Too many in-band kite request rounds.
    Rounds(RoundRefusal),
    /// An unauthenticated tunnel holds buffers past this limit.
    Limit(Limit),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::PeerDoesNotRead(n) => {
                write!(f, "peer does not read: {n} bytes of output queued")
            }
            ProtocolError::ChunkTooLarge => f.write_str("chunk larger than the input buffer"),
            ProtocolError::Frame(e) => write!(f, "{e}"),
            ProtocolError::TunnelGone => f.write_str("tunnel gone"),
            ProtocolError::NoTlsEndpoint { name, status } => write!(
                f,
                "the frontend does not serve TLS for {name} (it answered {status:?} to CONNECT {name}:443); check --fe_certname"
            ),
            ProtocolError::ReplyNotText => f.write_str("reply is not text"),
            ProtocolError::ReplyTooLarge => f.write_str("reply head too large"),
            ProtocolError::Rejected(bad, status) => {
                write!(f, "{bad} (frontend answered {status:?})")
            }
            ProtocolError::NoKiteAccepted(fe) => write!(f, "{fe} accepted none of our kites"),
            ProtocolError::InBand(e) => write!(f, "in-band kite request: {e}"),
            ProtocolError::Rounds(r) => write!(f, "{r}"),
            ProtocolError::Limit(l) => write!(f, "{l}"),
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

/// Why a frontend refuses a backend's in-band kite round (the tunnel is then
/// closed), with the guard's limit that was passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundRefusal {
    /// More than `rounds` in-band requests without a valid kite.
    Unauthenticated { rounds: u32 },
    /// Requests faster than `burst` plus one per `refill_secs`.
    TooFast { burst: u32, refill_secs: u64 },
}

impl std::fmt::Display for RoundRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoundRefusal::Unauthenticated { rounds } => write!(
                f,
                "more than {rounds} in-band kite requests without a valid kite"
            ),
            RoundRefusal::TooFast { burst, refill_secs } => write!(
                f,
                "in-band kite requests faster than {burst} plus one per {refill_secs} s"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_become_typed_close_reasons() {
        let reset = Failure(std::io::ErrorKind::ConnectionReset, 104);
        let why = Why::from(TransportError::Socket(reset));
        assert!(matches!(why, Why::Failed(f) if f == reset));
        assert_eq!(
            why.to_string(),
            "socket error: connection reset (os error 104)"
        );
        let bad = TlsError::BadName("a b".into());
        assert_eq!(
            TransportError::Tls(bad.clone()).to_string(),
            "TLS error: \"a b\" is not a host name"
        );
        let why = Why::from(TransportError::Tls(bad));
        assert!(matches!(&why, Why::Tls(e) if matches!(**e, TlsError::BadName(_))));
        assert_eq!(why.to_string(), "TLS error: \"a b\" is not a host name");
    }

    #[test]
    fn protocol_errors_read_as_before() {
        let cases = [
            (
                ProtocolError::PeerDoesNotRead(5),
                "peer does not read: 5 bytes of output queued",
            ),
            (
                ProtocolError::ChunkTooLarge,
                "chunk larger than the input buffer",
            ),
            (
                ProtocolError::Frame(FrameError::ZeroLength),
                "zero-length chunk",
            ),
            (
                ProtocolError::NoTlsEndpoint {
                    name: "fe.test".into(),
                    status: "HTTP/1.1 503 x".into(),
                },
                "the frontend does not serve TLS for fe.test (it answered \"HTTP/1.1 503 x\" to CONNECT fe.test:443); check --fe_certname",
            ),
            (
                ProtocolError::Rejected(BadStatus::Empty, String::new()),
                "the reply's status line is empty (frontend answered \"\")",
            ),
            (
                ProtocolError::NoKiteAccepted("fe.test:443".into()),
                "fe.test:443 accepted none of our kites",
            ),
            (
                ProtocolError::Limit(Limit::Conns(3)),
                "connection limit of 3 reached",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
            assert_eq!(Why::from(e).to_string(), format!("protocol error: {text}"));
        }
    }

    #[test]
    fn close_reasons_stay_small() {
        // Returned by value on every relay step: the rare, large reasons
        // are boxed.
        assert!(
            std::mem::size_of::<Why>() <= 24,
            "{}",
            std::mem::size_of::<Why>()
        );
    }
}
