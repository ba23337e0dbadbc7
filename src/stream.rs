//! One relayed connection's socket side: the public client on a frontend,
//! the local server on a backend. A stream writes what the tunnel delivers
//! (straight from the tunnel's input when the socket takes it, through the
//! backend's HTTP rewriter when there is one), keeps only what the socket
//! doesn't take and counts what it wrote. Its flow window, acknowledgements
//! and half-close state are the tunnel core's (`proto::tunnel`); reading
//! its socket into the tunnel, and everything about tunnels, is `relay`'s.

use std::io::IoSlice;
use std::time::{Duration, Instant};

use log::warn;
use mio::Token;

use crate::buf::{Buf, Pool};
use crate::conns::tag;
use crate::net::{Failure, Io};
use crate::proto::http::RequestRewriter;
use crate::timer::Deadlines;
use crate::transport::Transport;
use crate::why::Why;

/// Chunks delivered in one writev at most.
pub(crate) const RUN: usize = 8;
/// Back-off after ENOBUFS/ENOMEM.
pub(crate) const STARVED_BACKOFF: Duration = Duration::from_millis(50);

/// Bytes and state of one relayed connection (public or local socket).
pub struct Stream {
    pub transport: Transport,
    pub deadlines: Deadlines,
    pub tunnel: Token,
    pub sid: u32,
    /// Backend: the local connect is still in progress.
    pub connecting: bool,
    /// Received data the socket has not taken yet; none while idle.
    pub(crate) out: Option<Buf>,
    /// Received data spliced from a plain tunnel, ahead of `out`, while
    /// any is in flight (`relay_splice`); pipes go back to the pool once
    /// empty.
    pub(crate) pipes: crate::splice_queue::PipeQueue,
    /// Bytes read from the socket into the tunnel so far.
    pub(crate) bytes_read: u64,
    /// Its last read was bulk-sized: the next may be spliced (a small
    /// answer costs fewer calls copied).
    pub(crate) bulk: bool,
    /// Stream bytes written to the socket so far.
    pub(crate) bytes_written: u64,
    /// Of those, not yet reported to the tunnel core (which acknowledges).
    unreported: usize,
    /// Bytes written ahead of the stream data that are not stream data (a
    /// CONNECT's 200, a PROXY header) and still to be written.
    unacked_debt: usize,
    pub rewrite: Option<Box<RequestRewriter>>,
    pub(crate) stopping: bool,
    /// What this stream serves, for logs.
    pub label: String,
    /// Backend: the kite's protocol and host as the frontend sent them, for
    /// the error pages a refused or failed request gets.
    pub kite: Option<(String, String)>,
    /// Traffic counted when the idle timer was last armed (`None`: not armed).
    pub(crate) idle_mark: Option<u64>,
    /// Bytes the request guard holds, as counted in the buffer budget.
    guard_counted: usize,
    /// Where its queue buffer comes from and its guard's bytes are counted.
    pool: Pool,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.pool.count_held(self.guard_counted, 0);
    }
}

impl Stream {
    pub fn new(
        pool: &Pool,
        transport: Transport,
        tunnel: Token,
        sid: u32,
        label: String,
    ) -> Stream {
        Stream {
            transport,
            deadlines: Deadlines::default(),
            tunnel,
            sid,
            connecting: false,
            out: None,
            pipes: Default::default(),
            bytes_read: 0,
            bulk: false,
            bytes_written: 0,
            unreported: 0,
            unacked_debt: 0,
            rewrite: None,
            stopping: false,
            label,
            kite: None,
            idle_mark: None,
            guard_counted: 0,
            pool: pool.clone(),
        }
    }

    /// Bytes for the socket that are not stream data (a CONNECT's 200):
    /// written ahead of everything, not counted in acknowledgements.
    pub fn push_unacked(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.unacked_debt += bytes.len();
        let _ = self.write_or_queue(bytes);
    }

    /// `n` bytes went to the socket: stream data once the bytes that are
    /// not (see [`push_unacked`](Self::push_unacked)) are out.
    pub(crate) fn on_written(&mut self, n: usize) {
        let debt = n.min(self.unacked_debt);
        self.unacked_debt -= debt;
        self.bytes_written += (n - debt) as u64;
        self.unreported += n - debt;
    }

    /// Stream bytes written since the last call, for the tunnel core.
    pub(crate) fn take_written(&mut self) -> usize {
        std::mem::take(&mut self.unreported)
    }

    /// Bytes moved either way so far: what the idle timer watches.
    pub(crate) fn traffic(&self) -> u64 {
        self.bytes_read + self.bytes_written
    }

    /// Counts what the request guard holds (a partial head, bytes waiting
    /// for an upgrade's answer) in the buffer budget, like any buffer.
    fn recount_guard(&mut self) {
        let now = self.rewrite.as_ref().map_or(0, |rw| rw.held_capacity());
        if now != self.guard_counted {
            self.pool.count_held(self.guard_counted, now);
            self.guard_counted = now;
        }
    }

    /// Puts the request guard in place (it may already hold a partial head).
    pub fn set_guard(&mut self, guard: Option<Box<RequestRewriter>>) {
        self.rewrite = guard;
        self.recount_guard();
    }

    /// The first bytes of a stream, queued while the local connect runs.
    pub fn queue_first(&mut self, token: Token, body: &[u8]) {
        if let Err(why) = self.deliver(&[body]) {
            warn!("[s{} sid={}] {}: {why}", tag(token), self.sid, self.label);
        }
    }

    pub fn queued(&self) -> usize {
        self.out.as_ref().map_or(0, Buf::len) + self.pipes.held()
    }

    /// Writes `data` to the socket if possible and keeps the rest. Returns
    /// false if the socket failed.
    pub(crate) fn write_or_queue(&mut self, data: &[u8]) -> bool {
        self.write_or_queue_all(&[data])
    }

    /// [`Stream::write_or_queue`] for several pieces, in one writev.
    fn write_or_queue_all(&mut self, pieces: &[&[u8]]) -> bool {
        let mut first = 0;
        let mut skip = 0;
        if self.queued() == 0 && !self.connecting {
            loop {
                let rest = pieces.get(first..).unwrap_or_default();
                let Some(head) = rest.first() else {
                    break;
                };
                let mut slices: [IoSlice<'_>; RUN] = [IoSlice::new(&[]); RUN];
                slices[0] = IoSlice::new(head.get(skip..).unwrap_or_default());
                for (slot, piece) in slices.iter_mut().zip(rest).skip(1) {
                    *slot = IoSlice::new(piece);
                }
                let count = rest.len().min(RUN);
                match self.transport.write_vectored(&slices[..count]) {
                    Io::Done(mut n) => {
                        self.on_written(n);
                        // Step over what was written.
                        while let Some(piece) = pieces.get(first) {
                            let left = piece.len() - skip;
                            if n < left {
                                skip += n;
                                break;
                            }
                            n -= left;
                            first += 1;
                            skip = 0;
                        }
                    }
                    Io::WouldBlock | Io::Starved => break,
                    _ => return false,
                }
            }
        }
        for (i, piece) in pieces.iter().enumerate().skip(first) {
            let piece = if i == first {
                piece.get(skip..).unwrap_or_default()
            } else {
                piece
            };
            // A stream that splices queues in its pipes while they have
            // room (one queue, in order; splicing goes on behind it).
            let piece = if self.out.as_ref().is_none_or(Buf::is_empty) {
                piece.get(self.pipes.push(piece)..).unwrap_or_default()
            } else {
                piece
            };
            if !piece.is_empty() {
                self.out
                    .get_or_insert_with(|| self.pool.take(piece.len()))
                    .extend(piece);
            }
        }
        true
    }

    /// Data from the tunnel for this stream's socket (through the HTTP
    /// rewriter on backend streams).
    pub(crate) fn deliver(&mut self, bodies: &[&[u8]]) -> Result<(), Why> {
        if bodies.iter().all(|b| b.is_empty()) {
            return Ok(());
        }
        let mut ok = true;
        match self.rewrite.as_mut() {
            Some(rewriter) if !rewriter.is_passthrough() => {
                let mut rewriter = std::mem::take(&mut self.rewrite);
                let mut refused = None;
                if let Some(rw) = rewriter.as_mut() {
                    for body in bodies {
                        let fed = rw.feed(body, &mut |bytes| ok = ok && self.write_or_queue(bytes));
                        if let Err(r) = fed {
                            refused = Some(r);
                            break;
                        }
                    }
                }
                self.rewrite = rewriter;
                self.recount_guard();
                if let Some(r) = refused {
                    return Err(Why::Refused(r));
                }
            }
            _ => ok = self.write_or_queue_all(bodies),
        }
        if !ok {
            return Err(Why::Failed(Failure(std::io::ErrorKind::BrokenPipe, 0)));
        }
        Ok(())
    }

    /// True while the request guard wants to see the local server's first
    /// response bytes (to know whether an upgrade went ahead).
    pub(crate) fn wants_response(&self) -> bool {
        self.rewrite.as_ref().is_some_and(|rw| rw.wants_response())
    }

    /// The local server's first response bytes, for the request guard;
    /// bytes it held for an upgrade's answer may go out now.
    pub(crate) fn show_response(&mut self, bytes: &[u8]) -> Result<(), Why> {
        let Some(mut rw) = self.rewrite.take() else {
            return Ok(());
        };
        let mut ok = true;
        let seen = rw.on_response(bytes, &mut |b| ok = ok && self.write_or_queue(b));
        self.rewrite = Some(rw);
        self.recount_guard();
        seen.map_err(Why::Refused)?;
        if !ok {
            return Err(Why::Failed(Failure(std::io::ErrorKind::BrokenPipe, 0)));
        }
        Ok(())
    }

    /// The peer is done sending: a request head cut short by the visitor's
    /// EOF was never judged, and is dropped.
    pub(crate) fn peer_done(&mut self) {
        if let Some(rewriter) = self.rewrite.as_mut() {
            rewriter.flush();
        }
        self.recount_guard();
    }

    /// Writes queued data; frees the buffer once empty (shutting the write
    /// side is the caller's, when the core says so). Err on socket failure; `Ok(Some(at))`
    /// when the kernel was short of memory (ENOBUFS/ENOMEM): the caller arms
    /// the `Starved` timer for `at` and the write is retried then.
    pub(crate) fn flush(&mut self, now: Instant) -> Result<Option<Instant>, Why> {
        if self.connecting {
            return Ok(None);
        }
        if self.transport.has_pending() {
            let outcome = self.transport.flush();
            if let Some(at) = self.check(now, outcome)? {
                return Ok(Some(at));
            }
        }
        // Spliced bytes are older than any in `out`.
        if let Some(at) = self.flush_pipe(now)? {
            return Ok(Some(at));
        }
        if !self.pipes.is_empty() {
            // The socket is full: what waits in `out` moves behind the
            // pipes' bytes while they have room, so `out` empties and the
            // bodies that follow can be spliced again.
            self.out_into_pipes();
            return Ok(None);
        }
        while let Some(out) = self.out.as_mut() {
            if out.is_empty() {
                if let Some(empty) = self.out.take() {
                    empty.recycle();
                }
                break;
            }
            match self.transport.write(out.data()) {
                Io::Done(n) => {
                    out.consume(n);
                    self.on_written(n);
                }
                other => {
                    if let Some(at) = self.check(now, other)? {
                        return Ok(Some(at));
                    }
                    break;
                }
            }
        }
        Ok(None)
    }

    /// Copied bytes wait for a full socket: they move behind the pipes'
    /// bytes (into a pipe taken from `pool` if the stream holds none), so
    /// that bodies after them may be spliced again.
    pub(crate) fn pipe_copied(&mut self, pool: &crate::splice::Pipes, now: Instant) {
        if self.out.as_ref().is_none_or(Buf::is_empty) {
            return;
        }
        if self.pipes.is_empty() && !self.pipes.add(pool, now) {
            return;
        }
        self.out_into_pipes();
    }

    /// Moves what waits in `out` behind the pipes' bytes while they take
    /// it; frees `out` once empty.
    fn out_into_pipes(&mut self) {
        while let Some(out) = self.out.as_mut().filter(|o| !o.is_empty()) {
            match self.pipes.push(out.data()) {
                0 => return,
                n => out.consume(n),
            }
        }
        if let Some(empty) = self.out.take() {
            empty.recycle();
        }
    }

    /// Writes what the pipes hold, oldest first; each goes back to the
    /// pool once empty. A refused splice puts their bytes in front of
    /// `out`, none lost.
    fn flush_pipe(&mut self, now: Instant) -> Result<Option<Instant>, Why> {
        if self.pipes.is_empty() {
            return Ok(None);
        }
        let (written, outcome) = self.pipes.drain_to(&mut self.transport);
        self.on_written(written);
        if crate::splice::is_refusal(&outcome) {
            let mut bytes = Vec::with_capacity(self.queued());
            self.pipes.read_out(&mut bytes);
            if let Some(out) = self.out.take() {
                bytes.extend_from_slice(out.data());
                out.recycle();
            }
            if !bytes.is_empty() {
                let mut out = self.pool.take(bytes.len());
                out.extend(&bytes);
                self.out = Some(out);
            }
            return Ok(None);
        }
        self.check(now, outcome)
    }

    /// Turns an outcome that is not progress into what to do next.
    fn check(&mut self, now: Instant, outcome: Io) -> Result<Option<Instant>, Why> {
        match outcome {
            Io::Done(_) | Io::WouldBlock => Ok(None),
            Io::Starved => Ok(Some(now + STARVED_BACKOFF)),
            Io::Failed(f) => Err(self.transport.failure(f).into()),
            Io::Eof => Err(Why::PeerClosed),
        }
    }
}
