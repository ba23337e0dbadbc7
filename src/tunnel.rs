//! A tunnel's data: its socket, its handshake buffers, the sans-IO tunnel
//! core ([`crate::proto::tunnel::Tunnel`]) once the tunnel request is out,
//! and each role's bookkeeping of it (kites, session ids, slot). The types
//! only, with the few methods that read nothing but themselves: what a
//! tunnel does is `relay`'s (the pump) and the roles' (handshakes, kites).
//! Nothing here names the reactor or a role's logic, so every layer above
//! can use it.

use std::net::SocketAddr;
use std::time::Instant;

use mio::Token;

use crate::buf::{Buf, Pool};
use crate::proto::handshake::Prefix;
use crate::proto::kite::KiteKey;
use crate::proto::tunnel as core;
use crate::timer::Deadlines;
use crate::transport::Transport;
use crate::why::Why;

/// The core as this program uses it: streams are known by their token.
pub type Link = core::Tunnel<Token>;

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

impl Side {
    fn has_kites(&self) -> bool {
        match self {
            Side::Frontend(info) => !info.kites.is_empty(),
            Side::Backend(info) => !info.live.is_empty(),
        }
    }
}

/// What a tunnel's core buffers hold, counted in `--buffers` like any
/// `Buf` (the core's queues are its own); uncounted when dropped.
pub struct Counted {
    pool: Pool,
    bytes: usize,
}

impl Counted {
    pub fn new(pool: &Pool) -> Counted {
        Counted {
            pool: pool.clone(),
            bytes: 0,
        }
    }

    pub fn set(&mut self, bytes: usize) {
        if bytes != self.bytes {
            self.pool.count_held(self.bytes, bytes);
            self.bytes = bytes;
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.pool.count_held(self.bytes, 0);
    }
}

pub struct Tunnel {
    pub transport: Transport,
    pub deadlines: Deadlines,
    pub peer: SocketAddr,
    /// The phase before the core exists (dialing, a proxy's CONNECT, a
    /// `--frontends` ping); with a core, its phase counts.
    pub pre: Phase,
    /// Handshake bytes read before the core took over.
    pub inb: Buf,
    /// Handshake bytes to write before the core's (a `CONNECT` line).
    pub out: Buf,
    /// The tunnel proper, from the tunnel request (backend) or its
    /// acceptance (frontend) on.
    pub link: Option<Box<Link>>,
    pub side: Side,
    /// When the tunnel went live (for the status file's uptime).
    pub live_since: Option<Instant>,
    /// The core's buffers as counted in the pool.
    pub counted: Counted,
    /// A chunk going out with a spliced body, before the core's output.
    pub splice_out: Option<crate::splice_state::SpliceOut>,
    /// How receiving finds the next chunk worth splicing
    /// (`relay_splice::read_limit`).
    pub splice_misses: Box<crate::splice_state::Streak>,
}

impl Tunnel {
    /// Whether a tunnel's non-blocking connect has finished, on its
    /// writable edge; not yet: wait for the next one.
    pub fn dial_finished(&mut self) -> Result<bool, Why> {
        self.transport.connect_finished().map_err(Why::Failed)
    }

    pub fn new(
        pool: &Pool,
        transport: Transport,
        peer: SocketAddr,
        pre: Phase,
        side: Side,
        link: Option<Box<Link>>,
    ) -> Tunnel {
        Tunnel {
            transport,
            deadlines: Deadlines::default(),
            peer,
            pre,
            inb: Buf::uncounted(0),
            out: Buf::uncounted(0),
            link,
            side,
            live_since: None,
            counted: Counted::new(pool),
            splice_out: None,
            splice_misses: Box::default(),
        }
    }

    /// Where the tunnel is: its core's phase once it has one.
    pub fn phase(&self) -> Phase {
        match self.link.as_deref().map(Link::phase) {
            None => self.pre,
            Some(core::Phase::AwaitingReply) => Phase::AwaitingReply,
            Some(core::Phase::Live) => Phase::Live,
            Some(core::Phase::Closing | core::Phase::Closed(_)) => Phase::Closing,
        }
    }

    /// True once at least one kite is live on this tunnel.
    pub fn is_serving(&self) -> bool {
        self.phase() == Phase::Live && self.side.has_kites()
    }

    /// Bytes received and sent so far.
    pub fn bytes(&self) -> (u64, u64) {
        self.link.as_deref().map_or((0, 0), Link::bytes)
    }

    pub fn stream_count(&self) -> usize {
        self.link.as_deref().map_or(0, Link::stream_count)
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
    /// The backend takes spliced chunks that fill whole TCP segments
    /// (`TunnelRequest::takes_whole_segment_chunks`).
    pub(crate) whole_segment_chunks: bool,
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
