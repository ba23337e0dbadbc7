//! The relay path shared by both roles: tunnels (one socket carrying many
//! PageKite streams) and streams (the public socket on a frontend, the local
//! socket on a backend), and the pump between them. Bytes read from a stream
//! socket land straight in a frame slot of the tunnel's output buffer; bytes
//! of a received data chunk are written straight from the tunnel's input
//! buffer, and only what the socket doesn't take is copied aside. Flow
//! control (SKB windows), half-close (EOF flags) and keepalive decisions come
//! from `proto`; what only a role knows (its handshake, NOOP chunks, whether
//! a new stream is welcome, what a closed tunnel leaves behind) the relay
//! asks through [`Hooks`], so it names neither role.

use std::net::Shutdown;
use std::rc::Rc;

use log::{debug, info, trace};
use mio::Token;

use crate::buf::Buf;
use crate::conn::{Conn, Cx};
use crate::engine::{Deadlines, TimerKind};
use crate::net::{Failure, Io};
use crate::proto::frame::{self, Eof, Frame};
use crate::proto::keepalive::{Check, Keepalive};
pub use crate::relay_stream::{
    close_stream, drive_stream, stream_gone, stream_shutdown, stream_timer,
};
pub(crate) use crate::relay_stream::{log_stream_end, retire};
pub use crate::stream::Stream;
use crate::transport::Transport;

/// Body bytes per data chunk we send: one read, one TLS record, and what
/// libpagekite can take in one piece.
pub const CHUNK_BODY: usize = 16 * 1024 - 64;
/// Above this much queued output, streams stop feeding the tunnel.
pub(crate) const TUNNEL_HIGH_WATER: usize = 256 * 1024;
/// ...and they resume below this.
const TUNNEL_LOW_WATER: usize = 64 * 1024;
/// A peer that lets this much of our output pile up (answers to its PINGs,
/// acknowledgements) while it keeps sending is not reading: drop it rather
/// than buffer without bound.
const TUNNEL_OUT_LIMIT: usize = 4 * 1024 * 1024;
/// How far a burst of incoming chunks may grow a tunnel's input buffer.
const TUNNEL_IN_BURST: usize = 256 * 1024;
/// Chunks a stream reads in one `readv`.
pub(crate) const SLOTS: usize = 4;
/// Bytes read per socket per drive before others get a turn.
pub(crate) const READ_BUDGET: usize = 256 * 1024;
/// The part of a frontend's `--buffers` one tunnel's streams may fill before
/// it stops reading from that backend: one tenant whose visitors don't read
/// (or who ignores flow control) must not lock every other tenant out.
const TUNNEL_SHARE_DIVISOR: usize = 8;
/// ...but never less than this: a share of a few stream windows would stall
/// every download of a tenant behind its slowest visitors.
const TUNNEL_SHARE_MIN: usize = 4 * 1024 * 1024;
pub(crate) use crate::stream::{RUN, STARVED_BACKOFF};

use crate::why::ProtocolError;
pub use crate::why::Why;

pub use crate::conns::tag;
pub use crate::tunnel::{Phase, Side, Tunnel, TunnelCore};
use crate::tunnel::{TUNNEL_IN, TUNNEL_OUT};

pub fn drive_tunnel(
    eng: &mut Cx,
    role: &mut dyn Hooks,
    token: Token,
    mut t: Box<Tunnel>,
) -> Option<Conn> {
    let result = match t.core.phase {
        Phase::Dialing | Phase::Proxy | Phase::ProxyConnect | Phase::AwaitingReply => {
            role.handshake(eng, token, &mut t)
        }
        _ => Ok(()),
    };
    let bytes_in = t.core.bytes_in;
    let result = result.and_then(|()| match t.core.phase {
        Phase::Live => read_frames(eng, role, token, &mut t),
        _ => Ok(()),
    });
    let result = result.and_then(|()| {
        // Answered once, when the header came in: a paused tunnel that is
        // driven again reads nothing and owes nothing more.
        let prompt = if t.core.bytes_in != bytes_in {
            frame::awaiting_body(t.inb.data())
        } else {
            None
        };
        send_acks(eng, &mut t.core, prompt);
        flush_tunnel(eng, token, &mut t)?;
        if t.core.out.len() > TUNNEL_OUT_LIMIT {
            return Err(ProtocolError::PeerDoesNotRead(t.core.out.len()).into());
        }
        Ok(())
    });
    match result {
        Err(why) => {
            tunnel_gone(eng, role, token, t, &why);
            None
        }
        Ok(()) if t.core.phase == Phase::Closing && t.core.out.is_empty() => {
            tunnel_gone(eng, role, token, t, &Why::Done);
            None
        }
        Ok(()) if eng.stopping && t.core.streams.is_empty() && t.core.out.is_empty() => {
            tunnel_gone(eng, role, token, t, &Why::Stopping);
            None
        }
        Ok(()) => Some(Conn::Tunnel(t)),
    }
}

/// What the relay asks of the role a tunnel belongs to. The relay pumps
/// bytes; the handshake, what a NOOP chunk means, whether a new stream is
/// welcome and what a closed tunnel leaves behind are the role's.
pub trait Hooks {
    /// Drives a tunnel that is still connecting or waiting for its reply
    /// (only a backend dials).
    fn handshake(&mut self, eng: &mut Cx, token: Token, t: &mut Tunnel) -> Result<(), Why>;
    /// A NOOP, PONG or ZRST chunk: in-band kites, a challenge's answer.
    fn on_noop(
        &mut self,
        eng: &mut Cx,
        token: Token,
        core: &mut TunnelCore,
        f: &Frame<'_>,
    ) -> Result<(), Why>;
    /// A chunk that opens a new stream; `Ok(false)`: not wanted here (the
    /// peer gets an EOF for it).
    fn open_stream(
        &mut self,
        eng: &mut Cx,
        token: Token,
        core: &mut TunnelCore,
        f: &Frame<'_>,
    ) -> Result<bool, Why>;
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

fn read_frames(
    eng: &mut Cx,
    role: &mut dyn Hooks,
    token: Token,
    t: &mut Tunnel,
) -> Result<(), Why> {
    let mut budget = READ_BUDGET;
    let share = role.tunnel_share(eng.pool.budget());
    // Paused tunnels resume once their streams drained to half the share
    // (streams mark their tunnel dirty whenever they are driven).
    let limit = if t.core.paused { share / 2 } else { share };
    t.core.paused = t.core.held.get() > limit;
    if t.core.paused {
        trace!(
            "[t{}] paused: streams hold {} bytes",
            tag(token),
            t.core.held.get()
        );
        return Ok(());
    }
    // A tunnel with no kite yet may only be answering its challenge: its
    // input buffer stays at the base size (small NOOP rounds fit), so a
    // flood of unauthenticated tunnels costs little that `--buffers` can't
    // see, for the few seconds they are given.
    let trusted = t.core.is_serving();
    let most = if trusted {
        frame::MAX_PAYLOAD + 64
    } else {
        TUNNEL_IN
    };
    while budget > 0 && t.core.phase == Phase::Live && t.transport.can_read() {
        if t.core.held.get() > share {
            t.core.paused = true;
            break;
        }
        if t.inb.space_compacted().len() < 4096 && t.inb.capacity() < most {
            t.inb.reserve(16 * 1024);
        }
        let space = t.inb.space_compacted();
        if space.is_empty() {
            return Err(ProtocolError::ChunkTooLarge.into());
        }
        let room = space.len();
        match t.transport.read(space) {
            Io::Done(n) => {
                t.inb.commit(n);
                // A read that fills the buffer means a burst: read bigger
                // pieces (fewer syscalls) while it lasts.
                if trusted && n == room && t.inb.capacity() < TUNNEL_IN_BURST {
                    t.inb.reserve(t.inb.capacity());
                }
                t.core.bytes_in += n as u64;
                budget -= n.min(budget);
                t.core.keepalive.on_receive(eng.now);
                process_frames(eng, role, token, t)?;
            }
            Io::WouldBlock => break,
            Io::Eof => return Err(Why::PeerClosed),
            Io::Starved => {
                eng.arm_taken(
                    token,
                    &mut t.deadlines,
                    TimerKind::Starved,
                    eng.now + STARVED_BACKOFF,
                );
                return Ok(());
            }
            Io::Failed(f) => return Err(failure(&t.transport, f)),
        }
    }
    if budget == 0 && t.transport.can_read() {
        eng.mark_again(token);
    }
    Ok(())
}

/// Decodes and handles every complete frame in the input buffer.
pub fn process_frames(
    eng: &mut Cx,
    role: &mut dyn Hooks,
    token: Token,
    t: &mut Tunnel,
) -> Result<(), Why> {
    fn decode(bytes: &[u8]) -> Result<Option<(Frame<'_>, usize)>, Why> {
        frame::decode(bytes).map_err(|e| ProtocolError::Frame(e).into())
    }
    loop {
        let data = t.inb.data();
        let Some((first, mut used)) = decode(data)? else {
            return Ok(());
        };
        if !is_plain_data(&first) {
            handle_frame(eng, role, token, &mut t.core, &first)?;
        } else {
            // Consecutive data chunks for one stream go to its socket in one
            // writev instead of a write each.
            let mut bodies: [&[u8]; RUN] = [&[]; RUN];
            bodies[0] = first.body;
            let mut count = 1;
            while count < RUN {
                match decode(data.get(used..).unwrap_or_default()) {
                    Ok(Some((next, more))) if is_plain_data(&next) && next.sid == first.sid => {
                        bodies[count] = next.body;
                        count += 1;
                        used += more;
                    }
                    _ => break,
                }
            }
            let sid = first.sid.unwrap_or_default();
            deliver_run(eng, role, token, &mut t.core, sid, &bodies[..count])?;
        }
        t.inb.consume(used);
        if t.core.phase != Phase::Live {
            return Ok(());
        }
    }
}

/// A chunk that only carries data for a stream.
fn is_plain_data(f: &Frame<'_>) -> bool {
    f.sid.is_some()
        && !f.noop
        && f.eof.is_none()
        && f.ping.is_none()
        && f.pong.is_none()
        && f.skb.is_none()
        && !f.zrst
        && f.proto.is_none()
        && f.host.is_none()
}

/// Data chunks for a known stream (an unknown one gets EOF, §3.4).
/// Err when the peer broke the protocol badly enough to lose the tunnel.
fn deliver_run(
    eng: &mut Cx,
    role: &mut dyn Hooks,
    token: Token,
    core: &mut TunnelCore,
    sid: u32,
    bodies: &[&[u8]],
) -> Result<(), Why> {
    let Some(&st) = core.streams.get(&sid) else {
        trace!("[t{}] data for unknown sid={sid}", tag(token));
        frame::encode_eof(&mut core.out, sid, Eof::BOTH);
        return Ok(());
    };
    let Some(Conn::Stream(s)) = eng.conns.get_mut(st) else {
        core.streams.remove(&sid);
        return Ok(());
    };
    if s.tunnel_held.is_none() {
        s.tunnel_held = Some(Rc::clone(&core.held));
    }
    let delivered = s.deliver(bodies);
    s.sync_held();
    if !s.ack_queued {
        s.ack_queued = true;
        core.acks.push(st);
    }
    if s.queued() > 0 {
        // Whatever the socket didn't take goes out on its next writable edge.
        eng.mark_dirty(st);
    }
    if let Err(why) = delivered {
        if let Some(Conn::Stream(mut s)) = eng.conns.remove(st) {
            if let Why::Refused(r) = &why {
                crate::relay_stream::refused_midstream(core, &s, role.uuid(), *r);
            }
            retire(&mut s, core, st);
            log_stream_end(eng.now, st, &s, &why);
        }
        if let Why::Overrun(_) = why {
            // A sender past every window a peer keeps ignores flow control:
            // the whole tunnel goes, not just the stream it overran.
            return Err(why);
        }
    }
    Ok(())
}

fn handle_frame(
    eng: &mut Cx,
    role: &mut dyn Hooks,
    token: Token,
    core: &mut TunnelCore,
    f: &Frame<'_>,
) -> Result<(), Why> {
    trace!(
        "[t{}] chunk sid={:?} {} header bytes, {} body bytes",
        tag(token),
        f.sid,
        f.header_block.len(),
        f.body.len()
    );
    if let Some(ping) = f.ping {
        frame::encode_pong(&mut core.out, ping.as_bytes());
        return Ok(());
    }
    if let (Some(kib), Some(sid)) = (f.skb, f.sid) {
        if let Some(&st) = core.streams.get(&sid) {
            if let Some(Conn::Stream(s)) = eng.conns.get_mut(st) {
                let before = s.window.window();
                let reopened = s.window.on_skb(kib, eng.now);
                if s.window.window() > before {
                    debug!(
                        "[s{} sid={sid}] window grew to {} KiB",
                        tag(st),
                        s.window.window() / 1024
                    );
                }
                if reopened {
                    eng.mark_dirty(st);
                }
            }
        }
    }
    if f.pong.is_some() {
        core.keepalive.on_pong(eng.now);
    }
    if f.noop || f.pong.is_some() || f.zrst {
        return role.on_noop(eng, token, core, f);
    }
    let Some(sid) = f.sid else {
        return Ok(());
    };
    let Some(&st) = core.streams.get(&sid) else {
        if let Some(eof) = f.eof {
            trace!("[t{}] EOF {eof:?} for unknown sid={sid}", tag(token));
            return Ok(());
        }
        if f.proto.is_some() && f.host.is_some() && role.open_stream(eng, token, core, f)? {
            return Ok(());
        }
        frame::encode_eof(&mut core.out, sid, Eof::BOTH);
        return Ok(());
    };
    if let Some(eof) = f.eof {
        match eng.conns.get_mut(st) {
            Some(Conn::Stream(s)) => {
                if s.peer_eof(eof) {
                    eng.mark_dirty(st);
                }
            }
            _ => {
                core.streams.remove(&sid);
            }
        }
        return Ok(());
    }
    deliver_run(eng, role, token, core, sid, &[f.body])
}

/// At most one SKB per stream per batch of frames (pagekite.py breaks when
/// it receives bursts of tiny chunks, protocol doc §3.4). `prompt` is the
/// stream whose chunk header ended the batch with none of its body: its
/// sender may hold the body back until the header is acknowledged
/// (libpagekite writes header and body apart, with Nagle on), so it gets an
/// SKB now even without progress, and the TCP ACK rides on it instead of
/// waiting for the receiver's delayed-ACK timer (~40 ms a chunk).
fn send_acks(eng: &mut Cx, core: &mut TunnelCore, prompt: Option<u32>) {
    let mut prompt = prompt.and_then(|sid| core.streams.get(&sid).copied());
    for st in core.acks.drain(..) {
        if let Some(Conn::Stream(s)) = eng.conns.get_mut(st) {
            s.ack_queued = false;
            if let Some(kib) = s.acks.due() {
                frame::encode_skb(&mut core.out, s.sid, kib);
                prompt = prompt.filter(|&p| p != st);
            }
        }
    }
    if let Some(st) = prompt {
        if let Some(Conn::Stream(s)) = eng.conns.get_mut(st) {
            let kib = s.acks.due_or_repeat();
            trace!("[s{} sid={}] SKB {kib} for a header alone", tag(st), s.sid);
            frame::encode_skb(&mut core.out, s.sid, kib);
        }
    }
}

fn flush_tunnel(eng: &mut Cx, token: Token, t: &mut Tunnel) -> Result<(), Why> {
    if t.core.phase == Phase::Dialing {
        return Ok(());
    }
    if t.transport.has_pending() {
        if let Io::Failed(f) = t.transport.flush() {
            return Err(failure(&t.transport, f));
        }
    }
    while !t.core.out.is_empty() {
        match t.transport.write(t.core.out.data()) {
            Io::Done(n) => {
                t.core.out.consume(n);
                t.core.bytes_out += n as u64;
            }
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
    if t.core.out.len() <= TUNNEL_LOW_WATER && !t.core.blocked.is_empty() {
        for st in t.core.blocked.drain(..) {
            if let Some(Conn::Stream(s)) = eng.conns.get_mut(st) {
                s.blocked = false;
                eng.mark_dirty(st);
            }
        }
    }
    Ok(())
}

pub fn tunnel_timer(
    eng: &mut Cx,
    role: &mut dyn Hooks,
    token: Token,
    mut t: Box<Tunnel>,
    kind: TimerKind,
) -> Option<Conn> {
    if kind == TimerKind::Keepalive {
        // A keepalive check comes after a quiet spell: give back what a
        // burst grew the buffers to.
        t.inb.shrink_when_empty(TUNNEL_IN);
        t.core.out.shrink_when_empty(TUNNEL_OUT);
    }
    if kind == TimerKind::Keepalive && t.core.paused {
        // We stopped reading, not the peer talking: not a sign of death.
        t.core.keepalive.on_receive(eng.now);
    }
    match kind {
        TimerKind::Keepalive => match t.core.keepalive.check(eng.now) {
            Check::Idle(at) => eng.arm_taken(token, &mut t.deadlines, TimerKind::Keepalive, at),
            Check::Ping(at) => {
                frame::encode_ping(&mut t.core.out, unix_ping_token().as_bytes());
                eng.arm_taken(token, &mut t.deadlines, TimerKind::Keepalive, at);
                eng.mark_dirty(token);
            }
            Check::Dead => {
                tunnel_gone(eng, role, token, t, &Why::NoAnswer);
                return None;
            }
        },
        TimerKind::Deadline if !t.core.is_serving() => {
            // A proxy that accepts and never answers is told apart from a
            // frontend that never answers.
            let what = match t.core.phase {
                Phase::Proxy => "in the outbound proxy's handshake",
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

/// Starts the keepalive clock of a tunnel that just went live.
pub fn start_keepalive(eng: &mut Cx, token: Token, t: &mut TunnelCore, deadlines: &mut Deadlines) {
    t.keepalive = Keepalive::new(eng.config.keepalive, eng.now);
    t.live_since = Some(eng.now);
    if let Check::Idle(at) = t.keepalive.check(eng.now) {
        eng.arm_taken(token, deadlines, TimerKind::Keepalive, at);
    }
    if let Side::Backend(_) = t.side {
        // One PING up front, so the round trip is known (status file)
        // before the first quiet spell.
        frame::encode_ping(&mut t.out, unix_ping_token().as_bytes());
        t.keepalive.ping_sent(eng.now);
    }
    eng.status_changed();
}

/// pagekite.py's PING value: unix time with four decimals.
fn unix_ping_token() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:04}", now.as_secs(), now.subsec_micros() / 100)
}

/// A tunnel is gone: every stream on it goes too (PageKite has no way to
/// move a stream), and the role forgets the tunnel's kites.
pub fn tunnel_gone(eng: &mut Cx, role: &mut dyn Hooks, token: Token, t: Box<Tunnel>, why: &Why) {
    let live = t.core.is_serving();
    let streams = t.core.streams.len();
    for (_, st) in t.core.streams.iter() {
        if let Some(Conn::Stream(s)) = eng.conns.remove(*st) {
            stream_gone(eng, *st, s);
        }
    }
    let _ = t.transport.sock.shutdown(Shutdown::Both);
    let summary = format!(
        "[t{} {}] tunnel closed: {why} ({} bytes in, {} bytes out, {streams} streams dropped)",
        tag(token),
        t.core.peer,
        t.core.bytes_in,
        t.core.bytes_out
    );
    if let Some(status) = &mut eng.status {
        status.tunnel_closed(t.core.bytes_in, t.core.bytes_out);
    }
    if live && !matches!(why, Why::Stopping | Why::Operator(_)) {
        eng.note_error(&format!("tunnel to {} closed: {why}", t.core.peer));
    }
    role.tunnel_closed(eng, token, t.core.side, &summary, why, live);
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
