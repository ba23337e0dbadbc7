//! What the reactor's table holds in this program: every kind of
//! connection ([`Conn`]), the data of those that belong to no other file
//! (a frontend's listening socket, a public connection still being sniffed,
//! the `--metrics` listener and its clients),
//! and the program's own timers ([`AppTimer`]). Data only: driving a
//! connection is the roles' and the relay's, dispatching is `app`'s. Nothing
//! here names the logic above it, so every part of it can name this.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;

use std::fs::File;

use mio::net::{TcpListener, UnixStream};

use crate::addrwatch::AddrWatch;
use crate::buf::Buf;
use crate::config::web::WebSettings;
use crate::engine::{Deadlines, Pollable, Ready};
use crate::outbound::Outbound;
use crate::proto::webfiles_page::Indexes;
use crate::reply::Reply;
use crate::stream::Stream;
use crate::transport::Transport;
use crate::tunnel::Tunnel;

/// The reactor as this program's connections and timers see it.
pub type Cx = crate::engine::Engine<Conn, AppTimer>;

/// Everything that owns a socket.
pub enum Conn {
    Listener(Listener),
    Sniff(Sniff),
    Reply(Reply),
    /// Boxed: tunnels are few and big; the table's entries stay small.
    Tunnel(Box<Tunnel>),
    Stream(Stream),
    /// A backend's watch on this host's addresses.
    AddrWatch(AddrWatch),
    /// The built-in file server's end of a `builtin` kite's stream.
    Web(Box<WebConn>),
    /// An HTTP(S) exchange of the program's own (a dynamic DNS update).
    Outbound(Box<Outbound>),
    /// `--metrics`: its listening socket, and one of its clients.
    MetricsListener(MetricsListener),
    Metrics(Box<MetricsConn>),
}

impl Pollable for Conn {
    fn ready_mut(&mut self) -> Option<&mut Ready> {
        match self {
            Conn::Listener(l) => Some(&mut l.ready),
            Conn::Sniff(s) => Some(&mut s.transport.ready),
            Conn::Reply(r) => Some(&mut r.transport.ready),
            Conn::Tunnel(t) => Some(&mut t.transport.ready),
            Conn::Stream(s) => Some(&mut s.transport.ready),
            Conn::Web(w) => Some(&mut w.ready),
            Conn::AddrWatch(w) => Some(&mut w.ready),
            Conn::Outbound(o) => Some(&mut o.transport.ready),
            Conn::MetricsListener(l) => Some(&mut l.ready),
            Conn::Metrics(m) => Some(&mut m.transport.ready),
        }
    }

    fn deadlines_mut(&mut self) -> Option<&mut Deadlines> {
        match self {
            Conn::Listener(_) => None,
            Conn::Sniff(s) => Some(&mut s.deadlines),
            Conn::Reply(r) => Some(&mut r.deadlines),
            Conn::Tunnel(t) => Some(&mut t.deadlines),
            Conn::Stream(s) => Some(&mut s.deadlines),
            // Ends when its stream does: it sees the pair close.
            Conn::Web(_) => None,
            Conn::AddrWatch(_) => None,
            Conn::Outbound(o) => Some(&mut o.deadlines),
            Conn::MetricsListener(_) => None,
            Conn::Metrics(m) => Some(&mut m.deadlines),
        }
    }
}

/// The program's timers, beside the connections' own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AppTimer {
    /// A backend's frontend slot: reconnect after back-off.
    Slot(usize),
    /// Resume accepting after EMFILE/ENFILE.
    AcceptResume,
    /// Graceful stop: the running streams' time is up.
    StopGrace,
    /// Graceful stop: the last EOFs had their chance; exit.
    StopFinal,
    /// A backend's `--dyndns`: settled changes, or a back-off's end.
    DynDns,
    /// A frontend's `--acme`: an order's next step, or a renewal due.
    Acme,
}

/// A frontend's listening socket.
pub struct Listener {
    pub(crate) sock: TcpListener,
    /// The port as configured (0: any), for reloads to match.
    pub(crate) configured: u16,
    pub(crate) port: u16,
    /// A dedicated `--rawports` port: connections go to a raw kite as they are.
    pub(crate) raw: bool,
    pub ready: Ready,
}

/// A public connection that has not said what it is yet.
pub struct Sniff {
    pub transport: Transport,
    pub deadlines: Deadlines,
    /// Unclassified bytes (plaintext once TLS is terminated here).
    pub(crate) buf: Buf,
    pub(crate) peer: SocketAddr,
    /// The port it connected to.
    pub(crate) port: u16,
    /// The name and port a public `CONNECT` asked for: what follows belongs
    /// to them, whatever its SNI or Host say.
    pub(crate) target: Option<(String, u16)>,
    /// Bytes owed to the client before anything else (a CONNECT's 200).
    pub(crate) owed: Vec<u8>,
    pub(crate) layers: u8,
    /// The TLS handshake this frontend terminates has been counted (done or
    /// failed), for `--metrics`.
    pub(crate) tls_counted: bool,
    /// Accepted on a dedicated raw port: nothing to sniff.
    pub raw_port: bool,
    /// From a `--proxyproto_from` balancer: a PROXY protocol header must
    /// come first, and nothing is judged before it.
    pub(crate) proxy_header: bool,
    /// The balancer's address, once its header named the visitor (`peer`).
    pub(crate) via: Option<SocketAddr>,
}

/// What a built-in kite's stream is served from.
pub struct Site {
    pub web: WebSettings,
    /// The name the visitor asked for, and the kite's domain (they differ
    /// for a wildcard kite) and port, for the `--webpath` host match.
    pub host: String,
    pub domain: String,
    pub port: u16,
    /// The kite's `+indexes`, else `--webindexes`.
    pub indexes: Indexes,
}

/// The server end of one built-in kite stream.
pub struct WebConn {
    pub(crate) sock: UnixStream,
    pub ready: Ready,
    pub(crate) site: Box<Site>,
    /// Request bytes not answered yet.
    pub(crate) inb: Vec<u8>,
    /// Response bytes not written yet, from `out_at` (heads, pages).
    pub(crate) out: Vec<u8>,
    pub(crate) out_at: usize,
    /// File data read and not written yet: `chunk[chunk_at..chunk_end]`.
    pub(crate) chunk: Vec<u8>,
    pub(crate) chunk_at: usize,
    pub(crate) chunk_end: usize,
    /// The file (and bytes of it) still to send after `out`.
    pub(crate) body: Option<(File, u64)>,
    /// Close once `out` and `body` are written.
    pub(crate) close_after: bool,
    /// Our side is shut: only reading to the visitor's end is left.
    pub(crate) closing: bool,
    /// The request being answered is a HEAD.
    pub(crate) head_only: bool,
    pub(crate) label: String,
}

/// `--metrics`' listening socket (driven by `metrics`).
pub struct MetricsListener {
    pub(crate) sock: TcpListener,
    pub ready: Ready,
    /// Metrics connections open now (each one holds a count).
    pub(crate) open: Rc<Cell<usize>>,
}

/// One `--metrics` client (driven by `metrics`).
pub struct MetricsConn {
    pub transport: Transport,
    pub deadlines: Deadlines,
    pub(crate) peer: SocketAddr,
    /// Request bytes not answered yet (at most `MAX_HEAD`).
    pub(crate) inb: Vec<u8>,
    /// The response being written, from `out_at`.
    pub(crate) out: Vec<u8>,
    pub(crate) out_at: usize,
    /// Close once `out` is written.
    pub(crate) close_after: bool,
    /// The client closed its side.
    pub(crate) eof: bool,
    pub(crate) open: Rc<Cell<usize>>,
}

impl Drop for MetricsConn {
    fn drop(&mut self) {
        self.open.set(self.open.get().saturating_sub(1));
    }
}
