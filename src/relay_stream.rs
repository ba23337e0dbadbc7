//! A stream's side of the relay: reading its socket into data frames on its
//! tunnel (straight into the core's frame slots, within what the core
//! allows: its flow window and the tunnel's high-water mark), driving it on
//! readiness, its timers (local connect, idle), and closing it with one log
//! line (the core sends the right EOF). The tunnel's side (reading frames,
//! delivering them) is `relay`'s; what a stream buffers and writes is
//! `stream`'s.

use std::io::IoSliceMut;
use std::time::Instant;

use log::{Level, debug, trace};
use mio::Token;

use crate::conn::{Conn, Cx};
use crate::engine::TimerKind;
pub(crate) use crate::local_refusal::refused_page;
use crate::local_refusal::{finish_local_connect, local_connect_failed};
use crate::logging::Noise;
use crate::net::Io;
use crate::proto::tunnel::SLOTS;
use crate::relay::{Hooks, Link, READ_BUDGET, STARVED_BACKOFF, Why, failure, tag};
use crate::relay_splice::Sent;
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
fn pump_in(token: Token, s: &mut Stream, link: &mut Link, now: Instant) -> Result<Pumped, Why> {
    let mut budget = READ_BUDGET;
    while !s.connecting && budget > 0 && s.transport.can_read() {
        // A refusal (window, full tunnel, EOF sent) ends this round; the
        // core says when to read again (`Event::Writable`).
        let Ok(mut space) = link.send_space(s.sid, budget) else {
            return Ok(Pumped::default());
        };
        let room = space.capacity();
        // Up to SLOTS chunks in one readv: each lands in its own frame
        // slot, so a bulk stream costs a quarter of the syscalls.
        let mut bodies: [IoSliceMut<'_>; SLOTS] = std::array::from_fn(|_| IoSliceMut::new(&mut []));
        let mut count = 0;
        for (body, slot) in bodies.iter_mut().zip(space.bodies()) {
            *body = IoSliceMut::new(slot);
            count += 1;
        }
        match s.transport.read_vectored(&mut bodies[..count]) {
            Io::Done(n) => {
                // The request guard may wait on how the response starts.
                let mut probe = [0u8; 12];
                let probed = n.min(probe.len());
                let wants = s.wants_response();
                if wants {
                    if let Some(dst) = probe.get_mut(..probed) {
                        dst.copy_from_slice(space.first_body(probed));
                    }
                }
                link.commit_send(s.sid, n, now);
                s.bytes_read += n as u64;
                // Bulk: a big read, or one the window or budget cut short.
                s.bulk = n >= crate::relay_splice::MIN_SPLICE || n == room;
                if wants {
                    s.show_response(probe.get(..probed).unwrap_or_default())?;
                }
                budget -= n.min(budget);
                trace!("[s{} sid={}] {} bytes to the tunnel", tag(token), s.sid, n);
            }
            Io::WouldBlock => break,
            Io::Eof => {
                s.transport.ready.read = false;
                link.stream_read_eof(s.sid);
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

/// This stream's link, if its tunnel still has it.
fn link_of<'a>(eng: &'a mut Cx, s: &Stream, token: Token) -> Option<&'a mut Link> {
    match eng.conns.get_mut(s.tunnel) {
        Some(Conn::Tunnel(t)) => t
            .link
            .as_deref_mut()
            .filter(|l| l.handle_of(s.sid) == Some(token)),
        _ => None,
    }
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
    match s.flush(eng.now) {
        Err(why) => return close_stream(eng, uuid, token, s, why),
        Ok(Some(at)) => eng.arm_taken(token, &mut s.deadlines, TimerKind::Starved, at),
        Ok(None) => {}
    }
    let tunnel = s.tunnel;
    let now = eng.now;
    let mut finished = false;
    // Plain hops splice bulk data (relay_splice); else it is copied below.
    let sent = crate::relay_splice::send(eng, token, &mut s, now, READ_BUDGET);
    let result = match link_of(eng, &s, token) {
        Some(link) => {
            // What the socket took is acknowledged; the peer's EOF shuts
            // the write side once the queue is empty.
            let flushed = link.stream_flushed(s.sid, s.take_written(), s.queued());
            if flushed.shut_write {
                s.transport.shutdown_write();
            }
            let pumped = match sent {
                Ok(Sent::Copy) => pump_in(token, &mut s, link, now),
                Ok(Sent::Done { again }) => Ok(Pumped {
                    again,
                    starved: false,
                }),
                Err(why) => Err(why),
            };
            finished = flushed.finished || link.stream_flushed(s.sid, 0, s.queued()).finished;
            pumped
        }
        // Retired by a graceful stop: only its queue is left to write.
        None if s.stopping => Ok(Pumped::default()),
        None => Err(ProtocolError::TunnelGone.into()),
    };
    // Its tunnel may have chunks a pause kept for it, or streams to wake.
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
    if finished || (s.stopping && s.queued() == 0) {
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
pub fn close_stream(eng: &mut Cx, uuid: &str, token: Token, s: Stream, why: Why) -> Option<Conn> {
    let page = match &why {
        Why::Refused(r) => refused_page(&s, uuid, *r),
        _ => None,
    };
    if let Some(link) = link_of(eng, &s, token) {
        if let Some(page) = page {
            link.send_page(s.sid, &page);
        }
        link.close_stream(s.sid);
        eng.mark_dirty(s.tunnel);
    }
    log_stream_end(eng.now, token, &s, &why);
    eng.counters
        .stream_closed(&s.label, (s.bytes_read, s.bytes_written), &why);
    None
}

/// Ends stream `s` on its tunnel (the peer gets its final EOF).
pub(crate) fn retire(eng: &mut Cx, s: &Stream, token: Token) {
    if let Some(link) = link_of(eng, s, token) {
        link.close_stream(s.sid);
        eng.mark_dirty(s.tunnel);
    }
}

pub(crate) fn log_stream_end(now: Instant, token: Token, s: &Stream, why: &Why) {
    let line = format!(
        "[s{} sid={}] {} closed ({}): {} bytes in, {} bytes out",
        tag(token),
        s.sid,
        s.label,
        why,
        s.bytes_read,
        s.bytes_written
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
    eng.counters
        .stream_closed(&s.label, (s.bytes_read, s.bytes_written), &Why::Stopping);
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
    retire(eng, &s, token);
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
