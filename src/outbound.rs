//! One HTTP(S) exchange the program makes on its own behalf (a dynamic DNS
//! update, an ACME request): a non-blocking connect, the outbound proxy chain's handshake
//! (`--proxy`/`--socksify`/`--torify`), TLS to the server, one request
//! written, one reply read with a bounded reader. It moves bytes and says
//! when the exchange is over and how; it never judges the reply (that is
//! the caller's, from `proto`), never names the reactor or a role, and
//! holds no more than its request, 16 KiB of proxy replies and the reply
//! reader's bounded head and body.

use std::fmt;
use std::net::SocketAddr;

use mio::net::TcpStream;

use crate::net::{Failure, Io};
use crate::proto::http_reply::{ReplyError, ReplyReader, Response};
use crate::proto::proxy::{ChainHandshake, Progress, ProxyError};
use crate::timer::Deadlines;
use crate::tls::{ClientSetup, TlsError, TlsSession};
use crate::transport::{Transport, TransportError};

/// The largest proxy reply kept while its handshake runs.
const PROXY_REPLY_MAX: usize = 16 * 1024;
/// Reads or writes in one drive, so one exchange can't hold the reactor.
const MAX_STEPS: usize = 64;

/// Where an exchange is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Connecting,
    Proxy,
    Exchange,
}

/// One exchange on its socket.
pub struct Outbound {
    pub transport: Transport,
    pub deadlines: Deadlines,
    /// What the socket connected to (the first proxy, or the server).
    pub peer: SocketAddr,
    phase: Phase,
    chain: Option<Box<ChainHandshake>>,
    /// TLS to start once the chain is through: the setup and the name.
    tls: Option<(ClientSetup, String)>,
    request: Vec<u8>,
    sent: usize,
    /// Proxy requests not written yet.
    proxy_out: Vec<u8>,
    /// Proxy replies not consumed yet.
    inb: Vec<u8>,
    reader: ReplyReader,
}

/// What a drive came to.
#[derive(Debug)]
pub enum Step {
    /// Waiting for readiness.
    Wait,
    /// More to do after others had their turn.
    Again,
    /// Over: the reply, or why there is none.
    Done(Result<Response, ExchangeError>),
}

/// Why an exchange got no reply.
#[derive(Clone, Debug)]
pub enum ExchangeError {
    Connect(Failure),
    /// Hop `hop` (1-based) of the proxy chain refused or went away.
    Proxy {
        hop: usize,
        fault: ProxyStop,
    },
    Transport(TransportError),
    Tls(TlsError),
    Reply(ReplyError),
}

/// How a proxy hop failed.
#[derive(Clone, Debug)]
pub enum ProxyStop {
    Said(ProxyError),
    Closed,
    TooLong,
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeError::Connect(e) => write!(f, "cannot connect: {e}"),
            ExchangeError::Proxy { hop, fault } => match fault {
                ProxyStop::Said(e) => write!(f, "proxy {hop} refused: {e}"),
                ProxyStop::Closed => write!(f, "proxy {hop} closed during its handshake"),
                ProxyStop::TooLong => write!(f, "proxy {hop} sent an overlong reply"),
            },
            ExchangeError::Transport(e) => e.fmt(f),
            ExchangeError::Tls(e) => write!(f, "TLS error: {e}"),
            ExchangeError::Reply(e) => e.fmt(f),
        }
    }
}

impl Outbound {
    /// An exchange on a socket whose connect is under way: through `chain`
    /// (if any), then TLS to `tls`'s name (if any), then `request`.
    pub fn new(
        sock: TcpStream,
        peer: SocketAddr,
        chain: Option<Box<ChainHandshake>>,
        tls: Option<(ClientSetup, String)>,
        request: Vec<u8>,
        reply: ReplyReader,
    ) -> Outbound {
        let _ = sock.set_nodelay(true);
        Outbound {
            transport: Transport::plain(sock),
            deadlines: Deadlines::default(),
            peer,
            phase: Phase::Connecting,
            chain,
            tls,
            request,
            sent: 0,
            proxy_out: Vec::new(),
            inb: Vec::new(),
            reader: reply,
        }
    }

    /// Moves what readiness allows.
    pub fn drive(&mut self) -> Step {
        for _ in 0..MAX_STEPS {
            let progressed = match self.phase {
                Phase::Connecting => self.finish_connect(),
                Phase::Proxy => self.drive_proxy(),
                Phase::Exchange => self.drive_exchange(),
            };
            match progressed {
                Ok(true) => continue,
                Ok(false) => return Step::Wait,
                Err(done) => return Step::Done(done),
            }
        }
        Step::Again
    }

    /// Ok(true): moved on; Ok(false): wait; Err: over.
    fn finish_connect(&mut self) -> Result<bool, Result<Response, ExchangeError>> {
        match self.transport.connect_finished() {
            Ok(false) => Ok(false),
            Ok(true) => {
                if self.chain.is_some() {
                    self.phase = Phase::Proxy;
                } else {
                    self.begin_exchange(&[])?;
                }
                Ok(true)
            }
            Err(f) => Err(Err(ExchangeError::Connect(f))),
        }
    }

    /// TLS (if asked for) from here on; `early` are server bytes that came
    /// with the last proxy reply.
    fn begin_exchange(&mut self, early: &[u8]) -> Result<(), Result<Response, ExchangeError>> {
        if let Some((setup, name)) = self.tls.take() {
            let mut session = TlsSession::client(&setup, &name).map_err(|e| Err(e.into()))?;
            session.feed(early).map_err(|e| Err(e.into()))?;
            self.transport.start_tls(session);
        } else if !early.is_empty() {
            self.take_reply(early)?;
        }
        self.phase = Phase::Exchange;
        Ok(())
    }

    fn drive_proxy(&mut self) -> Result<bool, Result<Response, ExchangeError>> {
        let Some(hs) = self.chain.as_mut() else {
            self.begin_exchange(&[])?;
            return Ok(true);
        };
        let hop = hs.hop() + 1;
        let stop = |fault| Err(ExchangeError::Proxy { hop, fault });
        if let Some(bytes) = hs.poll_transmit() {
            self.proxy_out.extend_from_slice(&bytes);
        }
        if !self.proxy_out.is_empty() {
            match self.transport.write(&self.proxy_out) {
                Io::Done(n) => {
                    self.proxy_out.drain(..n.min(self.proxy_out.len()));
                    return Ok(true);
                }
                Io::WouldBlock | Io::Starved => return Ok(false),
                Io::Eof => return Err(stop(ProxyStop::Closed)),
                Io::Failed(f) => return Err(Err(ExchangeError::Connect(f))),
            }
        }
        if !self.inb.is_empty() {
            match hs.handle_input(&self.inb) {
                Ok(Progress::NeedMore) => {
                    // The hop may have its next request ready now.
                    self.inb.clear();
                    return Ok(true);
                }
                Ok(Progress::Done { leftover_from }) => {
                    let early = self.inb.split_off(leftover_from.min(self.inb.len()));
                    self.inb = Vec::new();
                    self.chain = None;
                    self.begin_exchange(&early)?;
                    return Ok(true);
                }
                Err(e) => return Err(stop(ProxyStop::Said(e))),
            }
        }
        let mut buf = [0u8; 2048];
        match self.transport.read(&mut buf) {
            Io::Done(n) => {
                if self.inb.len() + n > PROXY_REPLY_MAX {
                    return Err(stop(ProxyStop::TooLong));
                }
                self.inb.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                Ok(true)
            }
            Io::WouldBlock | Io::Starved => Ok(false),
            Io::Eof => Err(stop(ProxyStop::Closed)),
            Io::Failed(f) => Err(Err(ExchangeError::Connect(f))),
        }
    }

    fn drive_exchange(&mut self) -> Result<bool, Result<Response, ExchangeError>> {
        if self.sent < self.request.len() {
            let rest = self.request.get(self.sent..).unwrap_or(&[]);
            match self.transport.write(rest) {
                Io::Done(n) => {
                    self.sent += n;
                    return Ok(true);
                }
                Io::WouldBlock | Io::Starved => {}
                Io::Eof => return Err(Err(ExchangeError::Reply(ReplyError::Truncated))),
                Io::Failed(f) => return Err(Err(self.failure(f))),
            }
        }
        match self.transport.flush() {
            Io::Failed(f) => return Err(Err(self.failure(f))),
            Io::Done(n) if n > 0 => return Ok(true),
            _ => {}
        }
        let mut buf = [0u8; 4096];
        match self.transport.read(&mut buf) {
            Io::Done(n) => {
                self.take_reply(buf.get(..n).unwrap_or(&[]))?;
                Ok(true)
            }
            Io::WouldBlock | Io::Starved => Ok(false),
            Io::Eof => Err(self.reader.finish().map_err(ExchangeError::Reply)),
            Io::Failed(f) => Err(Err(self.failure(f))),
        }
    }

    /// Feeds reply bytes; Err(Ok(response)) once it is complete by its length.
    fn take_reply(&mut self, bytes: &[u8]) -> Result<(), Result<Response, ExchangeError>> {
        match self.reader.handle_input(bytes) {
            Ok(None) => Ok(()),
            Ok(Some(response)) => Err(Ok(response)),
            Err(e) => Err(Err(ExchangeError::Reply(e))),
        }
    }

    fn failure(&self, f: Failure) -> ExchangeError {
        ExchangeError::Transport(self.transport.failure(f))
    }
}

impl From<TlsError> for ExchangeError {
    fn from(e: TlsError) -> ExchangeError {
        ExchangeError::Tls(e)
    }
}
