//! A stream's side of the relay: reading its socket into data frames on its
//! tunnel (straight into frame slots, within its flow window and the
//! tunnel's high-water mark), driving it on readiness, its timers (local
//! connect, idle), and closing it with the right EOF and one log line. The
//! tunnel's side (reading frames, delivering them, keepalive) is `relay`'s;
//! what a stream buffers and writes is `stream`'s.

use std::io::IoSliceMut;
use std::time::Instant;

use log::{Level, debug, trace};
use mio::Token;

use crate::conn::{Conn, Cx};
use crate::engine::TimerKind;
pub(crate) use crate::local_refusal::refused_midstream;
use crate::local_refusal::{finish_local_connect, local_connect_failed};
use crate::logging::Noise;
use crate::net::Io;
use crate::proto::frame;
use crate::relay::{
    CHUNK_BODY, Hooks, Phase, READ_BUDGET, SLOTS, STARVED_BACKOFF, TUNNEL_HIGH_WATER, TunnelCore,
    Why, failure, tag,
};
use crate::stream::Stream;
use crate::why::ProtocolError;

/// What reading a stream's socket left to do.
#[derive(Default)]
struct Pumped {
    /// Budget used up while still readable: drive again after the next poll.
    again: bool,
    /// The kernel was short of memory: retry on a timer.
    starved: bool,
}

/// Reads a stream's socket into data frames on its tunnel.
fn pump_in(token: Token, s: &mut Stream, t: &mut TunnelCore, now: Instant) -> Result<Pumped, Why> {
    let mut budget = READ_BUDGET;
    while s.ends.is_reading() && !s.connecting && budget > 0 && s.transport.can_read() {
        let allowance = s.window.allowance();
        if allowance == 0 {
            return Ok(Pumped::default());
        }
        if t.out.len() >= TUNNEL_HIGH_WATER || t.phase != Phase::Live {
            if !s.blocked {
                s.blocked = true;
                t.blocked.push(token);
            }
            return Ok(Pumped::default());
        }
        // Read up to SLOTS chunks in one readv: each lands in its own frame
        // slot, so a bulk stream costs a quarter of the syscalls.
        let max = allowance.min(budget).min(SLOTS * CHUNK_BODY);
        let header = frame::data_header_len(s.sid);
        let stride = header + CHUNK_BODY;
        let slots = max.div_ceil(CHUNK_BODY).clamp(1, SLOTS);
        let span = (slots - 1) * stride + header + (max - (slots - 1) * CHUNK_BODY);
        t.out.reserve(span);
        let Some(space) = t.out.space().get_mut(..span) else {
            return Ok(Pumped::default());
        };
        let mut bodies: [IoSliceMut<'_>; SLOTS] = std::array::from_fn(|_| IoSliceMut::new(&mut []));
        for (body, slot) in bodies.iter_mut().zip(space.chunks_mut(stride)) {
            *body = IoSliceMut::new(slot.get_mut(header..).unwrap_or_default());
        }
        match s.transport.read_vectored(&mut bodies[..slots]) {
            Io::Done(n) => {
                // The request guard may wait on how the response starts.
                let mut probe = [0u8; 12];
                let probed = n.min(probe.len()).min(CHUNK_BODY);
                if s.wants_response() {
                    if let (Some(dst), Some(src)) =
                        (probe.get_mut(..probed), space.get(header..header + probed))
                    {
                        dst.copy_from_slice(src);
                    }
                }
                let mut left = n;
                let mut used = 0;
                for slot in space.chunks_mut(stride) {
                    let len = left.min(CHUNK_BODY);
                    if len == 0 {
                        break;
                    }
                    if let Some(head) = slot.get_mut(..header) {
                        frame::fill_data_header(head, s.sid, len);
                    }
                    used += header + len;
                    left -= len;
                }
                t.out.commit(used);
                s.window.on_read(n, now);
                if s.wants_response() {
                    s.show_response(probe.get(..probed).unwrap_or_default())?;
                }
                budget -= n.min(budget);
                trace!("[s{} sid={}] {} bytes to the tunnel", tag(token), s.sid, n);
            }
            Io::WouldBlock => break,
            Io::Eof => {
                s.transport.ready.read = false;
                if let Some(eof) = s.ends.local_read_eof() {
                    frame::encode_eof(&mut t.out, s.sid, eof);
                }
            }
            Io::Starved => {
                return Ok(Pumped {
                    again: false,
                    starved: true,
                });
            }
            Io::Failed(f) => return Err(failure(&s.transport, f)),
        }
    }
    Ok(Pumped {
        again: budget == 0 && s.transport.can_read(),
        starved: false,
    })
}

pub fn drive_stream(
    eng: &mut Cx,
    role: &mut dyn Hooks,
    token: Token,
    mut s: Stream,
) -> Option<Conn> {
    let uuid = role.uuid();
    if s.connecting {
        match finish_local_connect(token, &mut s) {
            Ok(true) => {}
            Ok(false) => return Some(Conn::Stream(s)),
            Err(why) => {
                local_connect_failed(eng, uuid, token, &mut s, &why);
                return close_stream(eng, uuid, token, s, why);
            }
        }
    }
    let flushed = s.flush(eng.now);
    s.sync_held();
    match flushed {
        Err(why) => return close_stream(eng, uuid, token, s, why),
        Ok(Some(at)) => eng.arm_taken(token, &mut s.deadlines, TimerKind::Starved, at),
        Ok(None) => {}
    }
    let tunnel = s.tunnel;
    let now = eng.now;
    let result = match eng.conns.get_mut(tunnel) {
        Some(Conn::Tunnel(t)) => {
            let core = &mut t.core;
            if let Some(kib) = s.acks.due() {
                frame::encode_skb(&mut core.out, s.sid, kib);
            }
            pump_in(token, &mut s, core, now)
        }
        _ => Err(ProtocolError::TunnelGone.into()),
    };
    eng.mark_dirty(tunnel);
    match result {
        Err(why) => return close_stream(eng, uuid, token, s, why),
        Ok(p) if p.starved => eng.arm_taken(
            token,
            &mut s.deadlines,
            TimerKind::Starved,
            eng.now + STARVED_BACKOFF,
        ),
        Ok(p) if p.again => eng.mark_again(token),
        Ok(_) => {}
    }
    if s.ends.is_finished() || (s.stopping && s.queued() == 0) {
        return close_stream(eng, uuid, token, s, Why::Done);
    }
    if s.idle_mark.is_none() && !s.connecting {
        if let Some(idle) = eng.config.stream_idle {
            s.idle_mark = Some(s.traffic());
            eng.arm_taken(token, &mut s.deadlines, TimerKind::Deadline, eng.now + idle);
        }
    }
    Some(Conn::Stream(s))
}

/// Closes a stream that is out of the slab: tells the peer, unlinks it.
/// `uuid` is the one a refused request's page shows.
pub fn close_stream(
    eng: &mut Cx,
    uuid: &str,
    token: Token,
    mut s: Stream,
    why: Why,
) -> Option<Conn> {
    if let Some(Conn::Tunnel(t)) = eng.conns.get_mut(s.tunnel) {
        if let Why::Refused(r) = &why {
            refused_midstream(&mut t.core, &s, uuid, *r);
        }
        retire(&mut s, &mut t.core, token);
        eng.mark_dirty(s.tunnel);
    }
    log_stream_end(eng.now, token, &s, &why);
    None
}

pub(crate) fn retire(s: &mut Stream, core: &mut TunnelCore, token: Token) {
    if let Some(eof) = s.ends.final_eof() {
        frame::encode_eof(&mut core.out, s.sid, eof);
    }
    if core.streams.get(&s.sid) == Some(&token) {
        core.streams.remove(&s.sid);
    }
}

pub(crate) fn log_stream_end(now: Instant, token: Token, s: &Stream, why: &Why) {
    let line = format!(
        "[s{} sid={}] {} closed ({}): {} bytes in, {} bytes out",
        tag(token),
        s.sid,
        s.label,
        why,
        s.window.bytes_read(),
        s.acks.bytes_written()
    );
    // A peer can cause these at will: throttled, per kind.
    match why {
        Why::Protocol(_) | Why::Overrun(_) => {
            crate::logging::noisy(
                now,
                Noise::StreamFailed,
                Level::Warn,
                format_args!("{line}"),
            );
        }
        Why::Refused(_) => {
            crate::logging::noisy(
                now,
                Noise::StreamRefused,
                Level::Info,
                format_args!("{line}"),
            );
        }
        _ => debug!("{line}"),
    }
}

/// A stream was dropped with its tunnel: no frames, just the log line.
pub fn stream_gone(eng: &mut Cx, token: Token, s: Stream) {
    log_stream_end(eng.now, token, &s, &Why::Stopping);
}

/// Graceful stop: send the peer our EOF, finish writing, then close.
pub fn stream_shutdown(
    eng: &mut Cx,
    role: &mut dyn Hooks,
    token: Token,
    mut s: Stream,
) -> Option<Conn> {
    s.stopping = true;
    if s.queued() == 0 {
        return close_stream(eng, role.uuid(), token, s, Why::Stopping);
    }
    if let Some(Conn::Tunnel(t)) = eng.conns.get_mut(s.tunnel) {
        retire(&mut s, &mut t.core, token);
    }
    Some(Conn::Stream(s))
}

pub fn stream_timer(
    eng: &mut Cx,
    role: &mut dyn Hooks,
    token: Token,
    s: Stream,
    kind: TimerKind,
) -> Option<Conn> {
    let uuid = role.uuid();
    match kind {
        TimerKind::Deadline if s.connecting => {
            let mut s = s;
            let why = Why::Timeout("connecting to the local server");
            local_connect_failed(eng, uuid, token, &mut s, &why);
            close_stream(eng, uuid, token, s, why)
        }
        TimerKind::Deadline => {
            // The idle timer: armed once, it looks back at whether any byte
            // moved since, instead of being re-armed for every chunk.
            let mut s = s;
            let traffic = s.traffic();
            match eng.config.stream_idle {
                Some(_) if s.idle_mark == Some(traffic) => {
                    close_stream(eng, uuid, token, s, Why::Timeout("idle (--stream_idle)"))
                }
                Some(idle) => {
                    s.idle_mark = Some(traffic);
                    eng.arm_taken(token, &mut s.deadlines, TimerKind::Deadline, eng.now + idle);
                    Some(Conn::Stream(s))
                }
                None => Some(Conn::Stream(s)),
            }
        }
        _ => {
            eng.mark_dirty(token);
            Some(Conn::Stream(s))
        }
    }
}
