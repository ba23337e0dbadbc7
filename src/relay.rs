//! The relay path shared by both roles: the thin mapping between a tunnel's
//! sans-IO core (`proto::tunnel`: frames, SKB windows, EOFs, keepalive) and
//! sockets. A tunnel socket is read straight into the core's input slot;
//! data chunks the core hands over (still borrowed from that input) are
//! written to their stream's socket with one writev, and only what the
//! socket doesn't take is copied aside; the core's output goes to the
//! tunnel socket. What only a role knows (its handshake, NOOP chunks,
//! whether a new stream is welcome, what a closed tunnel leaves behind) the
//! relay asks through [`Hooks`], so it names neither role. Stream sockets
//! are `relay_stream`'s.

use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{debug, info};
use mio::Token;

use crate::buf::Buf;
use crate::conn::{Conn, Cx};
use crate::engine::TimerKind;
use crate::net::{Failure, Io};
use crate::proto::frame::Frame;
use crate::proto::tunnel::{
    CloseReason, Control, ControlError, Delivered, Event, NewStream, Next, Open, Sink, StreamEnd,
    StreamFault,
};
use crate::relay_splice::{self, Take, Took};
pub(crate) use crate::relay_stream::log_stream_end;
pub use crate::relay_stream::{
    close_stream, drive_stream, stream_gone, stream_shutdown, stream_timer,
};
pub use crate::stream::Stream;
use crate::transport::Transport;

/// Bytes read per socket per drive before others get a turn.
pub(crate) const READ_BUDGET: usize = 256 * 1024;
/// The part of a frontend's `--buffers` one tunnel's streams may fill before
/// it stops reading from that backend: one tenant whose visitors don't read
/// (or who ignores flow control) must not lock every other tenant out.
const TUNNEL_SHARE_DIVISOR: usize = 8;
/// ...but never less than this: a share of a few stream windows would stall
/// every download of a tenant behind its slowest visitors.
const TUNNEL_SHARE_MIN: usize = 4 * 1024 * 1024;
pub(crate) use crate::stream::STARVED_BACKOFF;

use crate::why::ProtocolError;
pub use crate::why::Why;

pub use crate::conns::tag;
pub use crate::tunnel::{Link, Phase, Side, Tunnel};

/// The wall clock, for the core's PING values.
pub fn unix_time() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// A tunnel core set up for this program: `--keepalive`, and the role's
/// share of the buffers.
pub fn link_config(eng: &Cx, role: crate::proto::tunnel::Role) -> crate::proto::tunnel::Config {
    let mut cfg = crate::proto::tunnel::Config::new(role);
    cfg.keepalive = eng.config.keepalive;
    let mut key = [0u8; 8];
    crate::random::fill(&mut key);
    cfg.stream_key = u64::from_ne_bytes(key);
    cfg
}

pub fn drive_tunnel(
    eng: &mut Cx,
    role: &mut dyn Hooks,
    token: Token,
    mut t: Box<Tunnel>,
) -> Option<Conn> {
    let result = if t.link.is_none() {
        role.handshake(eng, token, &mut t)
    } else {
        Ok(())
    };
    let result = result.and_then(|()| flush_pre(eng, token, &mut t));
    let mut closed = None;
    let result = result.and_then(|()| {
        if t.link.is_some() {
            closed = pump_tunnel(eng, role, token, &mut t)?;
        }
        Ok(())
    });
    if let Err(why) = result {
        tunnel_gone(eng, role, token, t, &why);
        return None;
    }
    if let Some(why) = closed {
        tunnel_gone(eng, role, token, t, &why);
        return None;
    }
    let pending = t.out.len()
        + t.link.as_deref().map_or(0, |l| l.poll_transmit().len())
        + usize::from(t.splice_out.is_some());
    if t.link.is_none() && t.pre == Phase::Closing && pending == 0 {
        tunnel_gone(eng, role, token, t, &Why::Done);
        return None;
    }
    if eng.stopping && t.stream_count() == 0 && pending == 0 {
        tunnel_gone(eng, role, token, t, &Why::Stopping);
        return None;
    }
    Some(Conn::Tunnel(t))
}

/// What the relay asks of the role a tunnel belongs to. The relay pumps
/// bytes; the handshake, what a NOOP chunk means, whether a new stream is
/// welcome and what a closed tunnel leaves behind are the role's.
pub trait Hooks {
    /// Drives a tunnel that has no core yet: still connecting, behind a
    /// proxy's CONNECT, or a `--frontends` ping (only a backend dials).
    fn handshake(&mut self, eng: &mut Cx, token: Token, t: &mut Tunnel) -> Result<(), Why>;
    /// A NOOP, PONG or ZRST chunk with `X-PageKite*` lines: in-band kites,
    /// a challenge's answer. Err ends the tunnel with that reason.
    fn on_noop(
        &mut self,
        eng: &mut Cx,
        token: Token,
        side: &mut Side,
        peer: SocketAddr,
        f: &Frame<'_>,
    ) -> Result<Control, Why>;
    /// Backend: the frontend's reply head (status line, header lines).
    fn reply(
        &mut self,
        eng: &mut Cx,
        token: Token,
        side: &mut Side,
        peer: SocketAddr,
        status: &str,
        headers: &str,
    ) -> Result<Control, Why> {
        let _ = (eng, token, side, peer, status, headers);
        Ok(Control::CONTINUE)
    }
    /// A chunk that opens a new stream (backend).
    fn open_stream(&mut self, eng: &mut Cx, token: Token, new: &NewStream<'_>) -> Open<Token>;
    /// The tunnel is gone (its streams already are).
    fn tunnel_closed(
        &mut self,
        eng: &mut Cx,
        token: Token,
        side: Side,
        summary: &str,
        why: &Why,
        live: bool,
    );
    /// The UUID the role's error pages show.
    fn uuid(&self) -> &str;
    /// How much one tunnel's streams may hold (of a `--buffers` budget of
    /// `budget`) before reading from it pauses.
    fn tunnel_share(&self, budget: usize) -> usize;
}

/// A frontend holds each tenant's tunnel to this part of its `--buffers`.
pub fn frontend_share(budget: usize) -> usize {
    (budget / TUNNEL_SHARE_DIVISOR).max(TUNNEL_SHARE_MIN)
}

/// The core's [`Sink`]: stream sockets and the role, while the core holds
/// frames borrowed from its input.
struct Pump<'a> {
    eng: &'a mut Cx,
    role: &'a mut dyn Hooks,
    token: Token,
    side: &'a mut Side,
    peer: SocketAddr,
    /// The role's own reason when it failed an in-band chunk or the reply.
    why: Option<Why>,
    /// Why streams failed, for their log lines.
    faults: Vec<(Token, Why)>,
}

impl Pump<'_> {
    fn control(&mut self, answer: Result<Control, Why>) -> Control {
        match answer {
            Ok(control) => control,
            Err(why) => {
                let e = match &why {
                    Why::Protocol(p) => match &**p {
                        ProtocolError::InBand(e) => ControlError::InBand(e.clone()),
                        ProtocolError::Rounds(_) => ControlError::TooManyRounds,
                        ProtocolError::Limit(_) => ControlError::OverBudget,
                        ProtocolError::NoKiteAccepted(_) => ControlError::NoKiteAccepted,
                        _ => ControlError::Rejected,
                    },
                    _ => ControlError::Rejected,
                };
                self.why = Some(why);
                Control {
                    reply: None,
                    next: Next::Fail(e),
                }
            }
        }
    }
}

impl Sink<Token> for Pump<'_> {
    fn open(&mut self, new: &NewStream<'_>) -> Open<Token> {
        self.role.open_stream(self.eng, self.token, new)
    }

    fn data(&mut self, handle: Token, _sid: u32, bodies: &[&[u8]]) -> Delivered {
        let Some(Conn::Stream(s)) = self.eng.conns.get_mut(handle) else {
            return Delivered {
                fault: Some(StreamFault::Failed),
                ..Delivered::default()
            };
        };
        let delivered = s.deliver(bodies);
        let written = s.take_written();
        let queued = s.queued();
        let fault = match delivered {
            Ok(()) => None,
            Err(Why::Refused(r)) => {
                let page = crate::local_refusal::refused_page(s, self.role.uuid(), r);
                self.faults.push((handle, Why::Refused(r)));
                Some(StreamFault::Refused { page })
            }
            Err(why) => {
                self.faults.push((handle, why));
                Some(StreamFault::Failed)
            }
        };
        if queued > 0 {
            // Whatever the socket didn't take goes out on its next writable edge.
            self.eng.mark_dirty(handle);
        }
        Delivered {
            written,
            queued,
            fault,
        }
    }

    fn control(&mut self, frame: &Frame<'_>) -> Control {
        let answer = self
            .role
            .on_noop(self.eng, self.token, self.side, self.peer, frame);
        self.control(answer)
    }

    fn reply(&mut self, status: &str, headers: &str) -> Control {
        let answer = self
            .role
            .reply(self.eng, self.token, self.side, self.peer, status, headers);
        self.control(answer)
    }
}

/// Writes the handshake bytes queued before the core (a proxy CONNECT).
fn flush_pre(eng: &mut Cx, token: Token, t: &mut Tunnel) -> Result<(), Why> {
    if t.pre == Phase::Dialing && t.link.is_none() {
        return Ok(());
    }
    while !t.out.is_empty() {
        match t.transport.write(t.out.data()) {
            Io::Done(n) => t.out.consume(n),
            Io::WouldBlock => break,
            Io::Starved => {
                eng.arm_taken(
                    token,
                    &mut t.deadlines,
                    TimerKind::Starved,
                    eng.now + STARVED_BACKOFF,
                );
                break;
            }
            Io::Failed(f) => return Err(failure(&t.transport, f)),
            Io::Eof => return Err(Why::PeerClosed),
        }
    }
    Ok(())
}

/// Drives a tunnel's core: what a pause kept queued, then reads, one batch
/// of acknowledgements, writes, events, the keepalive timer. `Ok(Some)`:
/// the core ended the tunnel.
fn pump_tunnel(
    eng: &mut Cx,
    role: &mut dyn Hooks,
    token: Token,
    t: &mut Tunnel,
) -> Result<Option<Why>, Why> {
    let now = eng.now;
    let was = t.phase();
    let share = role.tunnel_share(eng.pool.budget());
    let serving = t.is_serving();
    let Tunnel {
        transport,
        deadlines,
        peer,
        link,
        side,
        splice_out,
        splice_misses,
        ..
    } = t;
    let splice_misses = &mut **splice_misses;
    let Some(link) = link.as_deref_mut() else {
        return Ok(None);
    };
    link.set_share(share);
    link.set_serving(serving);
    let mut sink = Pump {
        eng: &mut *eng,
        role: &mut *role,
        token,
        side,
        peer: *peer,
        why: None,
        faults: Vec::new(),
    };
    // Chunks a pause kept: no new readiness edge may come to prompt them.
    link.process(now, &mut sink);
    let mut budget = READ_BUDGET;
    let mut failed = None;
    while budget > 0 && transport.can_read() {
        // A chunk body being spliced comes first (relay_splice).
        if link.splice_left().is_some() {
            match relay_splice::take_body(sink.eng, transport, link, now) {
                Ok(Took::Moved(n)) => {
                    budget -= n.min(budget);
                    continue;
                }
                Ok(Took::Drained) => break,
                Ok(Took::Copy) => link.process(now, &mut sink),
                Err(why) => {
                    failed = Some(why);
                    break;
                }
            }
        }
        // Stop at the end of a chunk head whose body may be spliced.
        let limit = relay_splice::read_limit(sink.eng, transport, link, splice_misses);
        let guessed = limit.is_some() && limit == splice_misses.guess;
        let Some(slot) = link.recv_slot() else {
            break;
        };
        let room = slot.len();
        let slot = match limit {
            Some(head) if head < room => slot.get_mut(..head).unwrap_or_default(),
            _ => slot,
        };
        match transport.read(slot) {
            Io::Done(n) => {
                link.commit_recv(now, n, room);
                budget -= n.min(budget);
                link.process(now, &mut sink);
                match begin_partial(&mut sink, transport, link) {
                    Some(head_len) => splice_misses.hit(head_len),
                    None if guessed => splice_misses.guess = None,
                    None if limit.is_none() => splice_misses.ordinary(n),
                    None => {}
                }
            }
            Io::WouldBlock => break,
            Io::Eof => {
                failed = Some(Why::PeerClosed);
                break;
            }
            Io::Starved => {
                sink.eng
                    .arm_taken(token, deadlines, TimerKind::Starved, now + STARVED_BACKOFF);
                break;
            }
            Io::Failed(f) => {
                failed = Some(failure(transport, f));
                break;
            }
        }
    }
    if budget == 0 && transport.can_read() {
        sink.eng.mark_again(token);
    }
    link.end_batch();
    let Pump {
        why: role_why,
        faults,
        ..
    } = sink;
    if failed.is_none() {
        failed = match relay_splice::flush_out(transport, splice_out) {
            Ok(true) => write_link(eng, token, transport, deadlines, link).err(),
            Ok(false) => None,
            Err(Io::Failed(f)) => Some(failure(transport, f)),
            Err(_) => Some(Why::PeerClosed),
        };
    }
    let closed = drain_events(eng, token, link, faults);
    if let Some(at) = link.poll_timeout() {
        if deadlines.get(TimerKind::Keepalive) != Some(at) {
            eng.arm_taken(token, deadlines, TimerKind::Keepalive, at);
        }
    }
    if let Some(why) = failed {
        return Err(why);
    }
    let phase = t.phase();
    if phase == Phase::Live && was != Phase::Live {
        // A backend's reply made it live.
        t.live_since = Some(now);
        t.deadlines.clear(TimerKind::Deadline);
        eng.status_changed();
    }
    if let Some(l) = t.link.as_deref() {
        t.counted.set(l.buffers_capacity());
    }
    Ok(closed.map(|reason| why_closed(reason, role_why)))
}

/// After an ordinary read: when the input ends in the first part of a
/// chunk whose body may be spliced, its first bytes go to the stream now
/// and the rest is spliced (`relay_splice::take_body`); returns the
/// chunk head's length then. A big body that can't be spliced (its
/// stream's pipes are full, it must be read, or this process doesn't
/// splice while the peer does) comes in pieces instead. A TLS tunnel is
/// never sent chunks that big by rkite (only splicing makes them).
fn begin_partial(sink: &mut Pump<'_>, transport: &Transport, link: &mut Link) -> Option<usize> {
    transport.splice_fd()?;
    let c = link.partial_candidate(1)?;
    if c.body < relay_splice::MIN_SPLICE
        || !sink.eng.pipes.enabled()
        || relay_splice::stream_can_take(sink.eng, c.handle, c.body) != Take::Yes
    {
        link.copy_in_pieces(&c, sink);
        return None;
    }
    link.splice_begin(&c, sink);
    Some(c.head_len)
}

/// Writes the core's output to the tunnel socket.
fn write_link(
    eng: &mut Cx,
    token: Token,
    transport: &mut Transport,
    deadlines: &mut crate::engine::Deadlines,
    link: &mut Link,
) -> Result<(), Why> {
    if transport.has_pending() {
        if let Io::Failed(f) = transport.flush() {
            return Err(failure(transport, f));
        }
    }
    loop {
        let out = link.poll_transmit();
        if out.is_empty() {
            return Ok(());
        }
        match transport.write(out) {
            Io::Done(n) => link.advance_transmit(n),
            Io::WouldBlock => return Ok(()),
            Io::Starved => {
                eng.arm_taken(
                    token,
                    deadlines,
                    TimerKind::Starved,
                    eng.now + STARVED_BACKOFF,
                );
                return Ok(());
            }
            Io::Failed(f) => return Err(failure(transport, f)),
            Io::Eof => return Err(Why::PeerClosed),
        }
    }
}

/// Acts on the core's events; the reason if it ended the tunnel.
fn drain_events(
    eng: &mut Cx,
    token: Token,
    link: &mut Link,
    faults: Vec<(Token, Why)>,
) -> Option<CloseReason> {
    let mut closed = None;
    while let Some(event) = link.poll_event() {
        match event {
            Event::Writable { handle, .. } => eng.mark_dirty(handle),
            Event::PeerEof {
                handle,
                shut_when_drained,
                ..
            } => {
                if shut_when_drained {
                    if let Some(Conn::Stream(s)) = eng.conns.get_mut(handle) {
                        s.peer_done();
                    }
                }
                eng.mark_dirty(handle);
            }
            Event::StreamClosed {
                handle, why, info, ..
            } => {
                if let Some(Conn::Stream(s)) = eng.conns.remove(handle) {
                    let why = match why {
                        StreamEnd::Overrun => Why::Overrun(info.queued),
                        StreamEnd::TunnelClosed => Why::Stopping,
                        StreamEnd::Failed | StreamEnd::Refused => faults
                            .iter()
                            .find(|(h, _)| *h == handle)
                            .map_or(Why::Done, |(_, w)| w.clone()),
                    };
                    log_stream_end(eng.now, handle, &s, &why);
                    eng.counters
                        .stream_closed(&s.label, (s.bytes_read, s.bytes_written), &why);
                }
            }
            Event::Pong { rtt } => debug!("[t{}] PONG, round trip {rtt:?}", tag(token)),
            Event::Closed(reason) => closed = Some(reason),
        }
    }
    closed
}

/// The log's reason for a tunnel the core ended.
fn why_closed(reason: CloseReason, role_why: Option<Why>) -> Why {
    match reason {
        CloseReason::Frame(e) => ProtocolError::Frame(e).into(),
        CloseReason::ChunkTooLarge => ProtocolError::ChunkTooLarge.into(),
        CloseReason::PeerDoesNotRead(n) => ProtocolError::PeerDoesNotRead(n).into(),
        CloseReason::Overrun { queued, .. } => Why::Overrun(queued),
        CloseReason::NoAnswer => Why::NoAnswer,
        CloseReason::Control(e) => role_why.unwrap_or_else(|| match e {
            ControlError::InBand(e) => ProtocolError::InBand(e).into(),
            _ => Why::Done,
        }),
        CloseReason::Done => Why::Done,
        CloseReason::Replaced => Why::Replaced,
        CloseReason::ReplyTooLarge => ProtocolError::ReplyTooLarge.into(),
        CloseReason::ReplyNotText => ProtocolError::ReplyNotText.into(),
    }
}

pub fn tunnel_timer(
    eng: &mut Cx,
    role: &mut dyn Hooks,
    token: Token,
    mut t: Box<Tunnel>,
    kind: TimerKind,
) -> Option<Conn> {
    match kind {
        TimerKind::Keepalive => {
            if let Some(link) = t.link.as_deref_mut() {
                // A PING to write, or the end of a peer gone quiet: the
                // drive writes it and acts on the events.
                t.deadlines.clear(TimerKind::Keepalive);
                link.handle_timeout(eng.now);
                eng.mark_dirty(token);
            }
        }
        TimerKind::Deadline if !t.is_serving() => {
            // A proxy that accepts and never answers is told apart from a
            // frontend that never answers.
            let what = match t.pre {
                Phase::Proxy if t.link.is_none() => "in the outbound proxy's handshake",
                _ => "in the handshake",
            };
            tunnel_gone(eng, role, token, t, &Why::Timeout(what));
            return None;
        }
        TimerKind::Deadline => {}
        TimerKind::Starved => eng.mark_dirty(token),
    }
    Some(Conn::Tunnel(t))
}

/// A tunnel is gone: every stream on it goes too (PageKite has no way to
/// move a stream), and the role forgets the tunnel's kites.
pub fn tunnel_gone(eng: &mut Cx, role: &mut dyn Hooks, token: Token, t: Box<Tunnel>, why: &Why) {
    let live = t.is_serving();
    let (bytes_in, bytes_out) = t.bytes();
    let t = *t;
    let handles: Vec<Token> = t
        .link
        .as_deref()
        .map(|l| l.handles().map(|(_, h)| h).collect())
        .unwrap_or_default();
    let streams = handles.len();
    for st in handles {
        if let Some(Conn::Stream(s)) = eng.conns.remove(st) {
            stream_gone(eng, st, s);
        }
    }
    let _ = t.transport.sock.shutdown(Shutdown::Both);
    let summary = format!(
        "[t{} {}] tunnel closed: {why} ({bytes_in} bytes in, {bytes_out} bytes out, {streams} streams dropped)",
        tag(token),
        t.peer,
    );
    let probe = matches!(&t.side, Side::Backend(i) if i.is_probe());
    let shape = (!probe).then(|| (t.live_since.is_some(), t.transport.is_tls()));
    eng.counters
        .tunnel_closed((bytes_in, bytes_out), shape, why);
    if live && !matches!(why, Why::Stopping | Why::Operator(_)) {
        eng.note_error(&format!("tunnel to {} closed: {why}", t.peer));
    }
    debug!("[t{}] tunnel {} gone", tag(token), t.peer);
    role.tunnel_closed(eng, token, t.side, &summary, why, live);
}

/// Drops a connection at once (its socket closes when dropped); a tunnel
/// takes its streams with it.
pub fn discard(eng: &mut Cx, role: &mut dyn Hooks, token: Token, why: &Why) {
    match eng.conns.remove(token) {
        Some(Conn::Tunnel(t)) => tunnel_gone(eng, role, token, t, why),
        Some(Conn::Stream(s)) => stream_gone(eng, token, s),
        _ => {}
    }
    eng.status_changed();
}

/// The close reason for a failed operation on `transport`.
pub fn failure(transport: &Transport, f: Failure) -> Why {
    transport.failure(f).into()
}

/// Reads whatever a freshly accepted or connected socket already has.
pub fn read_some(transport: &mut Transport, buf: &mut Buf, limit: usize) -> Io {
    let room = limit.saturating_sub(buf.len());
    if room == 0 {
        return Io::Done(0);
    }
    buf.reserve(room.min(16 * 1024));
    let space = buf.space();
    let take = space.len().min(room);
    match space.get_mut(..take) {
        Some(space) => match transport.read(space) {
            Io::Done(n) => {
                buf.commit(n);
                Io::Done(n)
            }
            other => other,
        },
        None => Io::Done(0),
    }
}

/// Announces a kite going live or down at info level, the line tests and
/// operators look for.
pub fn log_kite(what: &crate::proto::kite::KiteKey, event: &str) {
    info!("kite {what} {event}");
}
