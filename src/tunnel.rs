//! A tunnel's data: its socket, buffers, phase, the map of its streams and
//! each role's bookkeeping of it (kites, session ids, slot). The types only,
//! with the few methods that read nothing but themselves: what a tunnel does
//! is `relay`'s (the pump) and the roles' (handshakes, kites). Nothing here
//! names the reactor or a role's logic, so every layer above can use it.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use mio::Token;

use crate::buf::{Buf, Pool};
use crate::proto::handshake::Prefix;
use crate::proto::keepalive::Keepalive;
use crate::proto::kite::KiteKey;
use crate::timer::Deadlines;
use crate::transport::Transport;
use crate::why::Why;

/// A tunnel's input buffer holds a couple of ordinary chunks; it grows (up
/// to the largest chunk a peer may send) only for a bigger one.
pub(crate) const TUNNEL_IN: usize = 34 * 1024;
/// A tunnel's output buffer between bursts; a burst may grow it.
pub(crate) const TUNNEL_OUT: usize = 32 * 1024;

/// Where a tunnel is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Backend: TCP connect in progress.
    Dialing,
    /// Backend: connected to the first outbound proxy (`--proxy`), its
    /// handshake (and the next hops') in progress.
    Proxy,
    /// Backend: `CONNECT name:443` sent in clear, waiting for its 200.
    ProxyConnect,
    /// Backend: request sent, reading the reply head.
    AwaitingReply,
    /// Chunks flow.
    Live,
    /// Write what is queued, then close.
    Closing,
}

/// Which role a tunnel plays, with that role's bookkeeping.
pub enum Side {
    Frontend(FrontendTunnel),
    Backend(BackendTunnel),
}

pub struct Tunnel {
    pub transport: Transport,
    pub deadlines: Deadlines,
    /// Received bytes not yet decoded.
    pub inb: Buf,
    pub core: TunnelCore,
}

/// The tunnel minus its input buffer, so frames borrowed from the input can
/// be handled with the rest of the tunnel mutable.
pub struct TunnelCore {
    pub peer: SocketAddr,
    pub phase: Phase,
    pub out: Buf,
    pub streams: HashMap<u32, Token>,
    /// Streams waiting for room in `out`.
    pub(crate) blocked: Vec<Token>,
    /// Streams written to in this batch that may owe an SKB.
    pub(crate) acks: Vec<Token>,
    pub keepalive: Keepalive,
    pub side: Side,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// When the tunnel went live (for the status file's uptime).
    pub live_since: Option<Instant>,
    /// Bytes its streams hold for their sockets, shared with each stream
    /// (single-threaded), so a tunnel can be held to its share of `--buffers`.
    pub held: Rc<Cell<usize>>,
    /// Reading from the peer is paused until its streams drain.
    pub paused: bool,
}

impl TunnelCore {
    /// True once at least one kite is live on this tunnel.
    pub fn is_serving(&self) -> bool {
        self.phase == Phase::Live
            && match &self.side {
                Side::Frontend(info) => info.has_kites(),
                Side::Backend(info) => info.has_kites(),
            }
    }
}

impl Tunnel {
    /// Whether a tunnel's non-blocking connect has finished, on its
    /// writable edge; not yet: wait for the next one.
    pub fn dial_finished(&mut self) -> Result<bool, Why> {
        if !self.transport.ready.write {
            return Ok(false);
        }
        match crate::net::connected(&self.transport.sock) {
            Ok(false) => {
                self.transport.ready.write = false;
                Ok(false)
            }
            Ok(true) => Ok(true),
            Err(f) => Err(Why::Failed(f)),
        }
    }

    pub fn new(
        pool: &Pool,
        transport: Transport,
        peer: SocketAddr,
        phase: Phase,
        side: Side,
        keepalive: Keepalive,
    ) -> Tunnel {
        Tunnel {
            transport,
            deadlines: Deadlines::default(),
            inb: Buf::uncounted(TUNNEL_IN),
            core: TunnelCore {
                peer,
                phase,
                out: pool.buf(TUNNEL_OUT),
                streams: HashMap::new(),
                blocked: Vec::new(),
                acks: Vec::new(),
                keepalive,
                side,
                bytes_in: 0,
                bytes_out: 0,
                live_since: None,
                held: Rc::new(Cell::new(0)),
                paused: false,
            },
        }
    }
}

/// Frontend bookkeeping of one tunnel.
pub struct FrontendTunnel {
    pub(crate) kites: Vec<KiteKey>,
    /// The newest session ids handed to this tunnel (at most `MAX_SESSIONS`).
    pub(crate) sessions: Vec<String>,
    pub(crate) prefix: Prefix,
    /// In-band kite rounds still allowed.
    pub(crate) rounds: Rounds,
}

/// Backend bookkeeping of one tunnel.
pub struct BackendTunnel {
    pub(crate) slot: usize,
    pub(crate) addkites: bool,
    pub(crate) live: Vec<KiteKey>,
    /// This connection already carried signed answers.
    pub(crate) signed: bool,
    /// A `--frontends` ping, not a tunnel (see `fleet`).
    pub(crate) probe: bool,
    /// The proxy chain's handshake, from connect until it is through
    /// (boxed: only proxied tunnels pay for it).
    pub(crate) proxy: Option<Box<crate::proto::proxy::ChainHandshake>>,
}

/// One tunnel's allowance of in-band kite rounds.
#[derive(Debug)]
pub struct Rounds {
    /// Rounds taken while the tunnel had no kite.
    pub(crate) unauthenticated: u32,
    /// Rounds an authenticated tunnel may still send at once.
    pub(crate) tokens: u32,
    /// When `tokens` was last topped up.
    pub(crate) refilled: Option<Instant>,
}
