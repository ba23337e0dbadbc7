//! Kernel splicing on the relay path (issue 15): which bytes of a plain hop
//! move socket → pipe → socket, and the bookkeeping that keeps them in
//! their place among the copied ones. The framing stays exactly as when
//! copying: a chunk's head is written (or read) with an ordinary call, its
//! body is spliced; the core (`proto::tunnel`) counts windows and
//! acknowledgements for both alike.
//!
//! Order is kept by three rules. Sending: a chunk is spliced only while the
//! tunnel's output is empty, and its head and body go out before anything
//! queued later ([`SpliceOut`]). Receiving: a body is spliced into a
//! stream's pipe only while the stream's copied queue is empty, so its pipe
//! always holds older bytes than its queue and is written first; a body
//! the backend's HTTP guard must read is never spliced (only what it calls
//! opaque: a body of known length, a switched protocol). Whenever a rule
//! would break, the rest of that chunk is copied as before.
//!
//! The syscalls are `splice.rs`'s; the chunk heads are the core's.

use std::time::Instant;

use mio::Token;

use crate::conn::{Conn, Cx};
use crate::net::Io;
use crate::proto::frame;
use crate::proto::tunnel::{CHUNK_BODY, Role, SendBlocked};
use crate::relay::{Link, Why};
use crate::splice::{PipeUse, is_refusal};
pub(crate) use crate::splice_state::flush_out;
pub use crate::splice_state::{SpliceOut, Streak};
use crate::stream::Stream;
use crate::transport::Transport;
use crate::tunnel::Side;

/// Bodies smaller than this are copied: splicing one costs more calls.
pub(crate) const MIN_SPLICE: usize = 8 * 1024;
/// Bytes a peek reads: the head of any plain data chunk fits.
const PEEK: usize = 64;

/// What splicing a stream's socket into its tunnel did.
pub(crate) enum Sent {
    /// Nothing spliced: read it the copying way.
    Copy,
    /// Done for this drive (blocked, drained, or the budget spent).
    Done { again: bool },
}

/// Stream side: splices the socket of stream `s` into its tunnel as data
/// chunks while the tunnel's output is empty, up to `budget` bytes.
pub(crate) fn send(
    eng: &mut Cx,
    token: Token,
    s: &mut Stream,
    now: Instant,
    budget: usize,
) -> Result<Sent, Why> {
    if !eng.pipes.enabled() || s.connecting || !s.bulk || s.wants_response() {
        return Ok(Sent::Copy);
    }
    if s.transport.splice_fd().is_none() {
        return Ok(Sent::Copy);
    }
    let pipes = eng.pipes.clone();
    let Some(Conn::Tunnel(t)) = eng.conns.get_mut(s.tunnel) else {
        return Ok(Sent::Copy);
    };
    let Some(link) = t.link.as_deref_mut() else {
        return Ok(Sent::Copy);
    };
    let Some(tunnel_fd) = t.transport.splice_fd() else {
        return Ok(Sent::Copy);
    };
    if link.handle_of(s.sid) != Some(token) || t.splice_out.is_some() || !t.out.is_empty() {
        return Ok(Sent::Copy);
    }
    // Chunks fill whole TCP segments, each one pushed as it is sent; a
    // frontend's chunks to backends other than rkite keep the size
    // pagekite.py and libpagekite were always sent (`CHUNK_BODY`). A peer
    // that announced bigger chunks gets several segments per chunk (fewer
    // heads and calls per byte), through a pipe with room for them.
    let payload = link.send_payload();
    let big = payload > frame::CLASSIC_PAYLOAD;
    let whole_segments = match (&t.side, link.role()) {
        (Side::Frontend(info), Role::Frontend) => info.whole_segment_chunks || big,
        (_, Role::Frontend) => false,
        (_, Role::Backend) => true,
    };
    let most = if whole_segments {
        // Asked on every drive: the kernel bounds it by half the largest
        // window the peer offered, which grows after the tunnel opens
        // (47,104 bytes at first on loopback, 65,483 later).
        let mss = crate::splice::tcp_mss(tunnel_fd).unwrap_or(0);
        frame::segment_filling_body(s.sid, mss, payload)
    } else {
        CHUNK_BODY
    };
    let usage = if big { PipeUse::Chunks } else { PipeUse::Chunk };
    let mut left = budget;
    while left > 0 && s.transport.can_read() && t.splice_out.is_none() {
        // Whole chunks: the budget may be overdrawn by one, rather than
        // end a drive with a chunk of its remainder (276 bytes was seen).
        let max = match link.splice_send_space(s.sid, most) {
            Ok(0) => break,
            Ok(max) => max,
            // The core said when to try again (`Event::Writable`).
            Err(SendBlocked::Window | SendBlocked::Tunnel) => {
                return Ok(Sent::Done { again: false });
            }
            Err(_) => return Ok(Sent::Done { again: false }),
        };
        let Some(mut pipe) = pipes.take(usage, now) else {
            break;
        };
        match s.transport.splice_in(&mut pipe, max) {
            Io::Done(0) => break,
            Io::Done(n) => {
                s.bytes_read += n as u64;
                s.bulk = n >= MIN_SPLICE || n == max;
                left -= n.min(left);
                if let Some(head) = link.commit_splice_send(s.sid, n, now) {
                    t.splice_out = Some(SpliceOut::new(head, pipe));
                }
                if let Err(outcome) = flush_out(&mut t.transport, &mut t.splice_out) {
                    // The tunnel's own drive finds and reports the failure.
                    log::debug!("splice: tunnel write failed: {outcome:?}");
                    break;
                }
            }
            Io::WouldBlock => return Ok(Sent::Done { again: false }),
            Io::Eof => {
                link.stream_read_eof(s.sid);
                eng.mark_dirty(s.tunnel);
                return Ok(Sent::Done { again: false });
            }
            outcome if is_refusal(&outcome) => return Ok(Sent::Copy),
            Io::Starved => return Ok(Sent::Copy),
            Io::Failed(f) => return Err(crate::relay::failure(&s.transport, f)),
        }
    }
    let tunnel = s.tunnel;
    eng.mark_dirty(tunnel);
    let readable = s.transport.can_read();
    if left == 0 || !readable {
        return Ok(Sent::Done { again: readable });
    }
    // Splicing stopped while the socket still has bytes (the chunk before
    // is still going out, or output queued behind it): the copying way
    // takes them, behind it, and says when to read again. Stopping here
    // instead would lose the socket's readiness edge.
    Ok(Sent::Copy)
}

/// Tunnel side, before an ordinary read: how many bytes that read may take
/// (`None`: no limit). It stops at the end of a chunk head worth splicing
/// the body of; while bodies are being spliced, it also stops at the end
/// of a chunk that is not, so the next read starts at a chunk again.
/// Peeks at the socket (unless the streak guesses the head); reads nothing.
pub(crate) fn read_limit(
    eng: &mut Cx,
    transport: &mut Transport,
    link: &Link,
    streak: &mut Streak,
) -> Option<usize> {
    if !eng.pipes.enabled() || transport.splice_fd().is_none() {
        return None;
    }
    if !streak.on() {
        return None;
    }
    if !link.input_empty() {
        // A head read on a guess whose body could not be spliced: read to
        // the end of its chunk, no further.
        return link.chunk_rest();
    }
    if streak.guess.is_some() {
        return streak.guess;
    }
    let mut peek = [0u8; PEEK];
    let Io::Done(n) = transport.peek(&mut peek) else {
        return None;
    };
    let peeked = peek.get(..n)?;
    if let Some(c) = link.splice_candidate(peeked, MIN_SPLICE) {
        match stream_can_take(eng, c.handle, c.body) {
            Take::Yes => {
                streak.misses = 0;
                return Some(c.head);
            }
            // One visitor that reads slowly must not end the run for
            // every other stream of the tunnel: its chunks are copied, and
            // the next stream's are still looked at.
            Take::BackedUp => return crate::proto::frame::chunk_len(peeked),
            Take::No => {}
        }
    }
    streak.misses = streak.misses.saturating_add(1);
    crate::proto::frame::chunk_len(peeked)
}

/// Whether a stream may have a chunk body spliced into its pipe now.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Take {
    Yes,
    /// Not now: its pipe is full or copied bytes wait for its socket.
    BackedUp,
    /// Not this stream (gone, connecting, TLS, a head the guard must read,
    /// or no pipe to be had).
    No,
}

/// Whether the stream of `handle` may have `body` bytes spliced into its
/// pipe now; takes a pipe for it if it has none.
pub(crate) fn stream_can_take(eng: &mut Cx, handle: Token, body: usize) -> Take {
    let pipes = eng.pipes.clone();
    let now = eng.now;
    // Copied bytes waiting for the socket must go first: try to write them
    // now, and move what the socket doesn't take into a pipe, rather than
    // copy on behind them (its drive reports the rest). Without the move, a
    // stream that copied a few bytes while it held no pipe copied every
    // body after them until its socket took them all (3.5 MB was seen).
    if let Some(Conn::Stream(s)) = eng.conns.get_mut(handle) {
        if s.out.as_ref().is_some_and(|o| !o.is_empty()) && !s.connecting {
            let _ = s.flush(now);
            if s.transport.splice_fd().is_some() {
                s.pipe_copied(&pipes, now);
            }
            eng.mark_dirty(handle);
        }
    }
    let Some(Conn::Stream(s)) = eng.conns.get_mut(handle) else {
        return Take::No;
    };
    if s.connecting || s.transport.splice_fd().is_none() || opaque_ahead(s) < body {
        return Take::No;
    }
    if s.out.as_ref().is_some_and(|o| !o.is_empty()) {
        return Take::BackedUp;
    }
    // The kernel counts pages, not bytes: a pipe may refuse sooner, and
    // then the rest goes into one more pipe, or is copied (`take_body`).
    if s.pipes.make_room(body, &pipes, now) {
        Take::Yes
    } else if s.pipes.is_empty() {
        Take::No
    } else {
        Take::BackedUp
    }
}

/// Bytes the backend's HTTP guard lets pass unread from here on.
fn opaque_ahead(s: &Stream) -> usize {
    match s.rewrite.as_deref() {
        None => usize::MAX,
        Some(rw) => rw.opaque_ahead(),
    }
}

/// What taking a spliced body did.
pub(crate) enum Took {
    /// Moved this many bytes; go on.
    Moved(usize),
    /// The tunnel socket is drained for now.
    Drained,
    /// The rest of the chunk comes the copying way: read on as usual.
    Copy,
}

/// Tunnel side: splices the body the core is waiting for into its
/// stream's pipe, and on to the stream's socket.
pub(crate) fn take_body(
    eng: &mut Cx,
    transport: &mut Transport,
    link: &mut Link,
    now: Instant,
) -> Result<Took, Why> {
    let Some((sid, left)) = link.splice_left() else {
        return Ok(Took::Copy);
    };
    let handle = link.handle_of(sid);
    let stream = match handle.and_then(|h| eng.conns.get_mut(h)) {
        Some(Conn::Stream(s)) => Some(s),
        _ => None,
    };
    let Some(s) =
        stream.filter(|s| s.out.as_ref().is_none_or(|o| o.is_empty()) && opaque_ahead(s) >= left)
    else {
        link.splice_copy();
        return Ok(Took::Copy);
    };
    if s.pipes.is_empty() {
        s.pipes.add(&eng.pipes, now);
    }
    let mut outcome = match s.pipes.tail() {
        Some(pipe) => transport.splice_in(pipe, left),
        None => Io::Done(0),
    };
    if matches!(outcome, Io::Done(0)) && !s.pipes.is_empty() && s.pipes.add(&eng.pipes, now) {
        // The newest pipe is full: the rest goes into one more.
        if let Some(pipe) = s.pipes.tail() {
            outcome = transport.splice_in(pipe, left);
        }
    }
    let moved = match outcome {
        Io::Done(0) => {
            link.splice_copy();
            return Ok(Took::Copy);
        }
        Io::Done(n) => n,
        Io::WouldBlock => return Ok(Took::Drained),
        Io::Eof => return Err(Why::PeerClosed),
        outcome if is_refusal(&outcome) => {
            link.splice_copy();
            return Ok(Took::Copy);
        }
        Io::Starved => return Ok(Took::Drained),
        Io::Failed(f) => return Err(crate::relay::failure(transport, f)),
    };
    link.splice_taken(moved, now);
    if let Some(rw) = s.rewrite.as_deref_mut() {
        rw.skip_opaque(moved);
    }
    // On to the socket now; what it doesn't take waits in the pipe.
    let flushed = s.flush(now);
    let written = s.take_written();
    let queued = s.queued();
    // Inside the tunnel's read batch: its `end_batch` sends the SKB.
    let done = link.stream_flushed_in_batch(sid, written, queued);
    if done.shut_write {
        // The peer's EOF waited for these bytes (told once: act on it now).
        s.transport.shutdown_write();
    }
    if let Some(h) = handle {
        if queued > 0 || flushed.is_err() || done.shut_write || done.finished {
            // Its own drive writes the rest, reports the failure, or ends it.
            eng.mark_dirty(h);
        }
    }
    Ok(Took::Moved(moved))
}
