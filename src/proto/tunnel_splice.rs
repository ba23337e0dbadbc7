//! The tunnel core's part in kernel splicing (issue 15): data chunks whose
//! bodies the reactor moves itself, socket to pipe to socket, while the
//! core keeps the framing, the windows and the acknowledgements exactly as
//! for copied chunks.
//!
//! Receiving: the reactor peeks at the tunnel socket (its input buffer
//! empty) and asks [`Tunnel::splice_candidate`] whether the chunk there is
//! a plain data chunk for an open stream; or, after an ordinary read, asks
//! [`Tunnel::partial_candidate`] whether the input ends in the first part
//! of one. It then reads the head into the input (never past it), calls
//! [`Tunnel::splice_begin`], and reports the body bytes it moves with
//! [`Tunnel::splice_taken`]. Until the body is in, nothing else is read:
//! [`Tunnel::recv_slot`] says no. If it can't go on splicing (the stream's
//! pipe is full, the stream went), [`Tunnel::splice_copy`] turns the rest
//! of the body into ordinary input, delivered through the sink as before.
//!
//! Sending: with the output empty, [`Tunnel::splice_send_space`] says how
//! much of a stream may go as one chunk; once the reactor moved `n` bytes
//! into its pipe, [`Tunnel::commit_splice_send`] counts them and gives the
//! chunk's head, which the reactor writes before the body and before any
//! later output. No I/O, no clock.

use std::time::Instant;

use super::super::frame::{self, Frame};
use super::recv::is_plain_data;
use super::streams::SendBlocked;
use super::{IN_BURST, Phase, Tunnel};

/// A data chunk whose body the reactor may take itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpliceChunk<H> {
    pub sid: u32,
    pub handle: H,
    /// Bytes of its head (length line, header block, blank line) still in
    /// the socket: all of them for a peeked chunk (read exactly that much
    /// next), none for a partial one.
    pub head: usize,
    /// Body bytes still in the socket.
    pub body: usize,
    /// The whole head's length (the next chunk of a run likely has the
    /// same: the reactor reads that much without peeking).
    pub head_len: usize,
}

/// The head of a data chunk the reactor sends with a spliced body.
#[derive(Clone, Copy, Debug)]
pub struct DataHead {
    bytes: [u8; 32],
    len: usize,
}

impl DataHead {
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// A chunk being taken by the reactor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SpliceIn {
    pub(crate) sid: u32,
    /// Body bytes not yet taken.
    pub(crate) left: usize,
    /// Not one body byte arrived yet (the prompt SKB may be owed).
    pub(crate) fresh: bool,
    /// The rest comes through the input and the sink, headerless.
    pub(crate) copy: bool,
}

impl<H: Copy> Tunnel<H> {
    /// Whether the reactor may splice now: live, not paused, nothing
    /// buffered or half-taken.
    fn splice_ready(&self) -> bool {
        self.core.phase == Phase::Live
            && !self.core.paused
            && self.core.held <= self.core.cfg.share
            && self.core.splice_in.is_none()
    }

    /// Nothing received is waiting to be acted on: the next byte in the
    /// socket starts a chunk.
    pub fn input_empty(&self) -> bool {
        self.inb.is_empty() && self.core.splice_in.is_none()
    }

    /// While the input holds nothing but the start of one chunk: the bytes
    /// still to come that end it (a read of exactly that many stays at a
    /// chunk boundary).
    pub fn chunk_rest(&self) -> Option<usize> {
        if let Some(s) = self.core.splice_in {
            // A body coming in pieces: read to its end, not into the next
            // chunk (whose body may be spliced).
            return s
                .copy
                .then(|| s.left.saturating_sub(self.inb.len()))
                .filter(|rest| *rest > 0);
        }
        let data = self.inb.data();
        let total = frame::chunk_len(data)?;
        total.checked_sub(data.len()).filter(|rest| *rest > 0)
    }

    /// The chunk at the head of the socket (`peek`, copied from it without
    /// consuming; the input buffer must be empty), if it is a plain data
    /// chunk for a stream that writes, with at least `min_body` bytes of
    /// body and its whole head in `peek`.
    pub fn splice_candidate(&self, peek: &[u8], min_body: usize) -> Option<SpliceChunk<H>> {
        if !self.splice_ready() || !self.inb.is_empty() {
            return None;
        }
        let (f, head, body) = frame::peek_head(peek)?;
        self.eligible(&f, body, min_body)
            .map(|(sid, handle)| SpliceChunk {
                sid,
                handle,
                head,
                body,
                head_len: head,
            })
    }

    /// After an ordinary read: whether the input holds nothing but the
    /// start of a plain data chunk (its whole head and part of its body)
    /// with at least `min_left` body bytes still to come.
    pub fn partial_candidate(&self, min_left: usize) -> Option<SpliceChunk<H>> {
        if !self.splice_ready() {
            return None;
        }
        let data = self.inb.data();
        let (f, head, body) = frame::peek_head(data)?;
        let have = data.len().checked_sub(head)?;
        let left = body.checked_sub(have).filter(|l| *l > 0)?;
        self.eligible(&f, left, min_left)
            .map(|(sid, handle)| SpliceChunk {
                sid,
                handle,
                head: 0,
                body: left,
                head_len: head,
            })
    }

    fn eligible(&self, f: &Frame<'_>, body: usize, min_body: usize) -> Option<(u32, H)> {
        if !is_plain_data(f) || body < min_body.max(1) {
            return None;
        }
        let sid = f.sid?;
        let s = self.core.streams.get(&sid)?;
        s.ends.is_writing().then_some((sid, s.handle))
    }

    /// The reactor takes the body of the chunk the input ends in (a
    /// [`partial_candidate`](Self::partial_candidate)) itself from now on;
    /// the first body bytes, already in the input, go to the sink as any
    /// data. With none of them in yet, the batch owes the prompt SKB a lone
    /// head gets (`end_batch`): the sender may hold the body back for it.
    pub fn splice_begin(&mut self, c: &SpliceChunk<H>, sink: &mut impl super::Sink<H>) {
        let mut fresh = false;
        if let Some((_, head, _)) = frame::peek_head(self.inb.data()) {
            let body = self.inb.data().get(head..).unwrap_or_default();
            fresh = body.is_empty();
            if let Err(why) = self.core.deliver_run(sink, c.sid, &[body]) {
                self.core.close(why);
                return;
            }
            self.inb.consume(self.inb.len());
        }
        if let Some(s) = self.core.streams.get_mut(&c.sid) {
            if !s.ack_queued {
                s.ack_queued = true;
                self.core.acks.push(c.sid);
            }
        }
        self.core.splice_in = Some(SpliceIn {
            sid: c.sid,
            left: c.body,
            fresh,
            copy: false,
        });
    }

    /// After an ordinary read, for a [`partial_candidate`](Self::partial_candidate)
    /// the reactor does not splice: if gathering the rest of its body would
    /// grow the input past [`IN_BURST`], the body goes to its stream piece
    /// by piece as it arrives instead (as the rest of a body whose splicing
    /// stopped), so a 1 MiB chunk costs no 1 MiB of input. Returns whether
    /// it does.
    pub fn copy_in_pieces(&mut self, c: &SpliceChunk<H>, sink: &mut impl super::Sink<H>) -> bool {
        if self.inb.len().saturating_add(c.body) <= IN_BURST {
            return false;
        }
        self.splice_begin(c, sink);
        self.splice_copy();
        true
    }

    /// The stream, its handle and the body bytes the reactor has still to
    /// take, while it takes a chunk's body itself.
    pub fn splice_left(&self) -> Option<(u32, usize)> {
        match self.core.splice_in {
            Some(s) if !s.copy => Some((s.sid, s.left)),
            _ => None,
        }
    }

    /// `n` more body bytes were taken from the socket.
    pub fn splice_taken(&mut self, n: usize, now: Instant) {
        let Some(mut s) = self.core.splice_in.filter(|s| !s.copy) else {
            return;
        };
        let n = n.min(s.left);
        s.left -= n;
        s.fresh &= n == 0;
        self.core.bytes_in += n as u64;
        self.core.batch_rx = true;
        self.core.keepalive.on_receive(now);
        self.core.splice_in = (s.left > 0).then_some(s);
    }

    /// The reactor can't take the rest of the body: it comes in through
    /// the ordinary input and goes to the sink (or nowhere, if the stream
    /// is gone).
    pub fn splice_copy(&mut self) {
        if let Some(s) = self.core.splice_in.as_mut() {
            s.copy = true;
        }
    }

    /// Sending: how many bytes of stream `sid` may go out now as one chunk
    /// with a spliced body (at most `max`). `Ok(0)`: the output isn't empty,
    /// so the bytes must queue behind it (read them into
    /// [`send_space`](Self::send_space) instead). The refusals are
    /// `send_space`'s, with the same promise of an `Event::Writable`.
    pub fn splice_send_space(&mut self, sid: u32, max: usize) -> Result<usize, SendBlocked> {
        let allowance = self.send_allowance(sid)?;
        if !self.core.out.is_empty() {
            return Ok(0);
        }
        Ok(allowance
            .min(max)
            .min(frame::body_within(sid, self.core.send_payload)))
    }

    /// The peer announced the largest chunk payload it takes (the handshake's
    /// `chunk_limit`): spliced chunks may carry up to that from now on.
    pub fn set_send_payload(&mut self, payload: usize) {
        self.core.send_payload = payload.clamp(frame::CLASSIC_PAYLOAD, frame::MAX_PAYLOAD);
    }

    /// The largest chunk payload the peer takes.
    pub fn send_payload(&self) -> usize {
        self.core.send_payload
    }

    /// `n` bytes of stream `sid` were moved into the reactor's pipe after a
    /// [`splice_send_space`](Self::splice_send_space): counted against the
    /// window. Returns the chunk's head, which goes to the socket before
    /// them and before anything the core queues from now on.
    pub fn commit_splice_send(&mut self, sid: u32, n: usize, now: Instant) -> Option<DataHead> {
        let n = n.min(frame::body_within(sid, self.core.send_payload));
        if n == 0 {
            return None;
        }
        let s = self.core.streams.get_mut(&sid)?;
        s.window.on_read(n, now);
        let len = frame::head_len_for(sid, n);
        let mut head = DataHead {
            bytes: [0; 32],
            len,
        };
        frame::fill_data_header(head.bytes.get_mut(..len)?, sid, n);
        self.core.bytes_out += (len + n) as u64;
        Some(head)
    }
}

#[cfg(test)]
#[path = "tunnel_splice_tests.rs"]
mod tests;
