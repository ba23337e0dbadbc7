//! The sans-IO tunnel core (issue 12): one live PageKite tunnel as a state
//! machine in the quinn-proto style. Bytes read from the tunnel socket go in
//! through [`Tunnel::recv_slot`]/[`Tunnel::commit_recv`] and are acted on by
//! [`Tunnel::process`] (data runs are handed to the reactor's [`Sink`] while
//! still borrowed from the input buffer); bytes to write come out of
//! [`Tunnel::poll_transmit`]; owned happenings come out of
//! [`Tunnel::poll_event`]; the next deadline out of [`Tunnel::poll_timeout`].
//! Stream sockets feed the tunnel through frame slots
//! ([`Tunnel::send_space`]/[`Tunnel::commit_send`]) so a read lands in its
//! frame with no copy. The core owns the SID → stream map, the SKB windows
//! and acknowledgements (at most one SKB per stream per batch, plus the
//! prompt SKB for a header that came without its body), the EOF flags, the
//! keepalive, and the pause of a tunnel whose streams hold too much.
//!
//! It must not touch sockets, clocks, TLS or logs: time comes in as
//! `Instant` (and the wall clock as a `Duration` since the epoch for PING
//! values), and every decision leaves as a typed value. Judging the
//! handshake (kite lines, signatures, the reply head) stays with the roles,
//! which build the heads with `handshake`; in-band kite rounds
//! reach them through [`Sink::control`], a backend's reply head through
//! [`Sink::reply`]. Receiving is `tunnel_recv.rs`, the stream side
//! (opening, frame slots, flushes, EOF) `tunnel_streams.rs`.
//!
//! How a reactor drives it (what `relay.rs` becomes):
//! - tunnel driven (readable, or woken because one of its streams
//!   drained): first `t.process(now, &mut sink)` (chunks a pause kept
//!   queued; with edge-triggered readiness no new byte may come to prompt
//!   them), then `while let Some(slot) = t.recv_slot()` read into `slot`,
//!   `t.commit_recv(now, n, slot_len)`, `t.process(now, &mut sink)`
//!   (stop on WouldBlock or the read budget); then, once per drive,
//!   `t.end_batch()` (the batch's SKBs), write `t.poll_transmit()` and
//!   `t.advance_transmit(n)`, drain `t.poll_event()`, re-arm the timer at
//!   `t.poll_timeout()`.
//! - timer: `t.handle_timeout(now)`, then write and drain as above.
//! - stream readable: `t.send_space(sid, budget)` → `readv` into
//!   `space.bodies()` → `t.commit_send(sid, n, now)` before anything else
//!   touches the core; socket EOF: `t.stream_read_eof(sid)`. A refusal
//!   (`SendBlocked::Window`/`Tunnel`) means: wait for `Event::Writable`.
//! - stream writable (or its data queued): write, then
//!   `t.stream_flushed(sid, written, queued)`; `shut_write` → shutdown the
//!   write side; `finished` → `t.close_stream(sid)` and drop the socket.
//! - `Event::StreamClosed` / `Event::Closed`: drop those sockets.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use super::flow::{AckCounter, INITIAL_WINDOW, RECEIVE_LIMIT, SendWindow};
use super::frame::{self, FrameError};
use super::keepalive::{Check, DEFAULT_INTERVAL, Keepalive, Nudge};
use super::sid_hash::SidHashing;
use super::stream::Ends;

#[path = "tunnel_buf.rs"]
mod buf;
#[path = "tunnel_recv.rs"]
mod recv;
#[path = "tunnel_splice.rs"]
mod splice;
#[path = "tunnel_streams.rs"]
mod streams;

use buf::ByteQueue;
pub use recv::{Control, ControlError, Delivered, NewStream, Next, Open, Sink, StreamFault};
pub use splice::{DataHead, SpliceChunk};
pub use streams::{Flushed, OpenError, SendBlocked, SendSpace, StreamHead};

/// Body bytes per data chunk we send: one read, one TLS record, and what
/// libpagekite can take in one piece.
pub const CHUNK_BODY: usize = 16 * 1024 - 64;
/// Chunks a stream reads in one `readv`.
pub const SLOTS: usize = 4;
/// Consecutive data chunks for one stream handed to the sink at once.
pub const RUN: usize = 8;
/// Above this much queued output, streams stop feeding the tunnel...
pub const HIGH_WATER: usize = 256 * 1024;
/// ...and they resume below this.
pub const LOW_WATER: usize = 64 * 1024;
/// A peer that lets this much of our output pile up (answers to its PINGs,
/// acknowledgements) while it keeps sending is not reading: drop it rather
/// than buffer without bound.
pub const OUT_LIMIT: usize = 4 * 1024 * 1024;
/// A tunnel's input buffer holds a couple of ordinary chunks; it grows (up
/// to the largest chunk a peer may send) only for a bigger one.
pub const IN_BASE: usize = 34 * 1024;
/// How far a burst of incoming chunks may grow the input buffer; also how
/// much a paused tunnel reads ahead to find control chunks.
pub const IN_BURST: usize = 256 * 1024;
/// The output buffer between bursts; a burst may grow it.
pub const OUT_BASE: usize = 32 * 1024;

/// Which end of the tunnel this core is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The relay: opens streams (assigns SIDs), answers in-band kite requests.
    Frontend,
    /// The connector: opens a local stream for each new SID.
    Backend,
}

/// What a tunnel is set up with.
#[derive(Clone, Debug)]
pub struct Config {
    pub role: Role,
    /// Silence before a PING (`--keepalive`).
    pub keepalive: Duration,
    /// Bytes this tunnel's streams may hold for their sockets before reading
    /// from the peer pauses (a frontend's share of `--buffers`); resumes
    /// below half of it.
    pub share: usize,
    /// The window each stream starts with.
    pub initial_window: u64,
    /// What one stream may hold before its sender counts as ignoring flow
    /// control (the whole tunnel then goes).
    pub receive_limit: usize,
    /// The key of the stream table's hasher: random per tunnel in the
    /// reactor (see `sid_hash`), fixed in tests.
    pub stream_key: u64,
}

impl Config {
    pub fn new(role: Role) -> Config {
        Config {
            role,
            keepalive: DEFAULT_INTERVAL,
            share: usize::MAX,
            initial_window: INITIAL_WINDOW,
            receive_limit: RECEIVE_LIMIT,
            stream_key: 0x5eed,
        }
    }
}

/// Why the core ended the tunnel (or was told to end it). The reactor's
/// own reasons (socket errors, the peer's EOF, TLS) stay the reactor's: it
/// drops the core after taking the stream handles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent a malformed chunk.
    Frame(FrameError),
    /// A chunk larger than the input buffer may grow.
    ChunkTooLarge,
    /// Our output piled up past [`OUT_LIMIT`]: the peer does not read.
    PeerDoesNotRead(usize),
    /// A stream of `sid` was sent `queued` bytes past any window.
    Overrun { sid: u32, queued: usize },
    /// A keepalive PING went unanswered.
    NoAnswer,
    /// The role refused an in-band request or answer.
    Control(ControlError),
    /// The role asked to close after what is queued went out
    /// ([`Next::Closing`], [`Tunnel::close_gracefully`]).
    Done,
    /// A reconnecting backend took over (`X-PageKite-Replace`).
    Replaced,
    /// The frontend's reply head is longer than a handshake may be.
    ReplyTooLarge,
    /// The frontend's reply head is not text.
    ReplyNotText,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Frame(e) => write!(f, "protocol error: {e}"),
            CloseReason::ChunkTooLarge => f.write_str("protocol error: chunk too large"),
            CloseReason::PeerDoesNotRead(n) => {
                write!(f, "peer does not read: {n} bytes queued for it")
            }
            CloseReason::Overrun { sid, queued } => {
                write!(f, "peer ignores flow control: {queued} bytes for sid={sid}")
            }
            CloseReason::NoAnswer => f.write_str("no answer to PING: peer is gone"),
            CloseReason::Control(e) => write!(f, "in-band: {e}"),
            CloseReason::Done => f.write_str("done"),
            CloseReason::Replaced => f.write_str("replaced by a new tunnel"),
            CloseReason::ReplyTooLarge => f.write_str("protocol error: reply head too large"),
            CloseReason::ReplyNotText => f.write_str("protocol error: reply head is not text"),
        }
    }
}

/// Why the core ended a stream (the reactor's own `close_stream` calls
/// get no event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The sink said its socket failed ([`StreamFault::Failed`]).
    Failed,
    /// The sink refused a request on it ([`StreamFault::Refused`]); its
    /// page went out before the EOF.
    Refused,
    /// Its sender ignored flow control (the tunnel goes too).
    Overrun,
    /// The tunnel went away; PageKite can't move a stream.
    TunnelClosed,
}

/// Something the reactor must act on, owned (no borrow of the core).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<H> {
    /// The stream may read its socket again: its window reopened or the
    /// tunnel's output drained below [`LOW_WATER`].
    Writable { handle: H, sid: u32 },
    /// The peer's EOF flags: stop reading the socket, and/or shut its write
    /// side once its queue is empty (report that with
    /// [`Tunnel::stream_flushed`]).
    PeerEof {
        handle: H,
        sid: u32,
        stop_reading: bool,
        shut_when_drained: bool,
    },
    /// The core ended the stream; nothing more is sent for it. The reactor
    /// closes its socket (and may log `info`, its last counts).
    StreamClosed {
        handle: H,
        sid: u32,
        why: StreamEnd,
        info: StreamInfo,
    },
    /// A PONG arrived; the round trip of our latest PING if it was timed.
    Pong { rtt: Option<Duration> },
    /// The tunnel is over; every stream was ended before this event.
    Closed(CloseReason),
}

/// Where a tunnel is in its life (the handshake is the role's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Backend: the tunnel request went out; the reply head is awaited
    /// (the role judges it through [`Sink::reply`]).
    AwaitingReply,
    /// Chunks flow.
    Live,
    /// Write what is queued, then close.
    Closing,
    /// Over; see [`Event::Closed`].
    Closed(CloseReason),
}

/// A stream's state as the reactor may want to see it (status, tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    /// Bytes read from its socket so far.
    pub bytes_read: u64,
    /// Of those, not yet acknowledged by the peer.
    pub unacked: u64,
    pub window: u64,
    /// Bytes written to its socket so far.
    pub bytes_written: u64,
    /// What it holds for its socket, as last reported.
    pub queued: usize,
    pub reading: bool,
    pub writing: bool,
}

impl<H> StreamState<H> {
    pub(crate) fn info(&self) -> StreamInfo {
        StreamInfo {
            bytes_read: self.window.bytes_read(),
            unacked: self.window.unacked(),
            window: self.window.window(),
            bytes_written: self.acks.bytes_written(),
            queued: self.queued,
            reading: self.ends.is_reading(),
            writing: self.ends.is_writing(),
        }
    }
}

/// One stream's state inside the core.
pub(crate) struct StreamState<H> {
    pub(crate) handle: H,
    pub(crate) window: SendWindow,
    pub(crate) acks: AckCounter,
    /// Already in this batch's acknowledgement list.
    pub(crate) ack_queued: bool,
    pub(crate) ends: Ends,
    /// Bytes its socket holds, as the reactor last said.
    pub(crate) queued: usize,
    /// Waiting in `blocked` for the tunnel's output to drain.
    pub(crate) blocked: bool,
}

/// The part of a tunnel that handles frames borrowed from the input.
pub(crate) struct Core<H> {
    pub(crate) cfg: Config,
    pub(crate) phase: Phase,
    pub(crate) out: ByteQueue,
    pub(crate) streams: HashMap<u32, StreamState<H>, SidHashing>,
    /// Streams waiting for room in `out`.
    pub(crate) blocked: Vec<u32>,
    /// Streams written to in this batch that may owe an SKB.
    pub(crate) acks: Vec<u32>,
    pub(crate) keepalive: Keepalive,
    /// Backend: in-band answers sent, the verdict not heard yet.
    pub(crate) nudge: Option<Nudge>,
    /// When `handle_timeout` wants to run next.
    pub(crate) deadline: Option<Instant>,
    pub(crate) events: VecDeque<Event<H>>,
    /// Sum of what the streams hold for their sockets.
    pub(crate) held: usize,
    pub(crate) paused: bool,
    /// A kite is live: the input may grow for bigger chunks and bursts.
    pub(crate) trusted: bool,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    /// Bytes arrived since the last `end_batch`.
    pub(crate) batch_rx: bool,
    /// The stream whose frame slots were handed out, and where they start.
    pub(crate) slot: Option<(u32, usize)>,
    /// The wall clock at an instant, for PING values.
    pub(crate) wall: (Instant, Duration),
    /// A chunk whose body the reactor takes itself (kernel splicing): its
    /// stream and the body bytes still to come. Nothing else is read
    /// until they are in.
    pub(crate) splice_in: Option<splice::SpliceIn>,
    /// The largest payload a chunk to the peer may carry: what it announced
    /// (`handshake::chunk_limit`), four hex digits' worth until it does.
    pub(crate) send_payload: usize,
}

/// One live tunnel. `H` is the reactor's handle of a stream (a mio
/// `Token`); the core hands it back in events and sink calls.
pub struct Tunnel<H> {
    /// Received bytes not yet acted on (while paused, only data and EOF
    /// chunks stay here, in order).
    pub(crate) inb: ByteQueue,
    /// While paused: the offset up to which `inb` was scanned ahead.
    pub(crate) look: usize,
    pub(crate) core: Core<H>,
}

impl<H: Copy> Tunnel<H> {
    /// A tunnel that just went live at `now` (`unix`: the wall clock then,
    /// since the epoch, for PING values). A backend sends one PING up front
    /// so the round trip is known before the first quiet spell.
    pub fn new(cfg: Config, now: Instant, unix: Duration) -> Tunnel<H> {
        let mut t = Tunnel::idle(cfg, now, unix);
        t.core.go_live(now);
        t
    }

    /// Backend: a tunnel whose `request` head (built by the role, with the
    /// kite lines signed) goes out first; the frontend's reply head then
    /// goes to [`Sink::reply`], and the tunnel is live if the role says so.
    pub fn connect(cfg: Config, now: Instant, unix: Duration, request: &[u8]) -> Tunnel<H> {
        let mut t = Tunnel::idle(cfg, now, unix);
        t.core.phase = Phase::AwaitingReply;
        frame::Out::put(&mut t.core.out, request);
        t
    }

    fn idle(cfg: Config, now: Instant, unix: Duration) -> Tunnel<H> {
        let keepalive = Keepalive::new(cfg.keepalive, now);
        let streams = HashMap::with_hasher(SidHashing::new(cfg.stream_key));
        Tunnel {
            inb: ByteQueue::with_capacity(IN_BASE),
            look: 0,
            core: Core {
                cfg,
                phase: Phase::Live,
                out: ByteQueue::with_capacity(OUT_BASE),
                streams,
                blocked: Vec::new(),
                acks: Vec::new(),
                keepalive,
                nudge: None,
                deadline: None,
                events: VecDeque::new(),
                held: 0,
                paused: false,
                trusted: false,
                bytes_in: 0,
                bytes_out: 0,
                batch_rx: false,
                slot: None,
                wall: (now, unix),
                splice_in: None,
                send_payload: frame::CLASSIC_PAYLOAD,
            },
        }
    }

    pub fn phase(&self) -> &Phase {
        &self.core.phase
    }

    pub fn role(&self) -> Role {
        self.core.cfg.role
    }

    /// Reading from the peer is paused (only control chunks are acted on).
    pub fn is_paused(&self) -> bool {
        self.core.paused
    }

    /// Bytes received and sent on the tunnel so far.
    pub fn bytes(&self) -> (u64, u64) {
        (self.core.bytes_in, self.core.bytes_out)
    }

    /// What `--buffers` counts for a tunnel: its output buffer, and what its
    /// input grew past [`IN_BURST`]. Up to that, as before, the input is not
    /// counted (every tunnel has its base, and a burst grows it for a
    /// moment; counting those would spend a small budget on reading); past
    /// it, up to a whole chunk (and its length line) an authenticated peer
    /// sends that must be copied, it is, so a tenant's tunnels can't hold
    /// more than the operator's budget between them.
    pub fn buffers_capacity(&self) -> usize {
        let grown = self.inb.capacity().saturating_sub(IN_BURST);
        self.core.out.capacity() + grown
    }

    /// The round trip of the latest answered PING.
    pub fn rtt(&self) -> Option<Duration> {
        self.core.keepalive.rtt()
    }

    /// Tells the core a kite is (or is no longer) live on this tunnel: a
    /// tunnel that proved nothing keeps a small input buffer.
    pub fn set_serving(&mut self, serving: bool) {
        self.core.trusted = serving;
    }

    /// Changes this tunnel's share of the buffers (a reload).
    pub fn set_share(&mut self, share: usize) {
        self.core.cfg.share = share;
    }

    pub fn stream_count(&self) -> usize {
        self.core.streams.len()
    }

    /// The handles of the open streams.
    pub fn handles(&self) -> impl Iterator<Item = (u32, H)> + '_ {
        self.core.streams.iter().map(|(sid, s)| (*sid, s.handle))
    }

    /// The handle of stream `sid`, if it is open.
    pub fn handle_of(&self, sid: u32) -> Option<H> {
        self.core.streams.get(&sid).map(|s| s.handle)
    }

    pub fn stream(&self, sid: u32) -> Option<StreamInfo> {
        self.core.streams.get(&sid).map(StreamState::info)
    }

    /// The next owned event.
    pub fn poll_event(&mut self) -> Option<Event<H>> {
        self.core.events.pop_front()
    }

    /// Bytes to write to the tunnel socket (empty: nothing to write).
    pub fn poll_transmit(&self) -> &[u8] {
        if matches!(self.core.phase, Phase::Closed(_)) {
            return &[];
        }
        self.core.out.data()
    }

    /// `n` bytes of [`poll_transmit`](Self::poll_transmit) were written.
    /// Streams blocked on a full output get [`Event::Writable`] once it is
    /// below [`LOW_WATER`].
    pub fn advance_transmit(&mut self, n: usize) {
        let n = n.min(self.core.out.len());
        self.core.out.consume(n);
        self.core.bytes_out += n as u64;
        self.core.unblock();
        if self.core.phase == Phase::Closing && self.core.out.is_empty() {
            self.core.close(CloseReason::Done);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.core.phase {
            Phase::Closed(_) => None,
            _ => self.core.deadline,
        }
    }

    /// The keepalive: PING after a quiet interval, close when the PING goes
    /// unanswered. A paused tunnel still reads ahead, so a dead peer is found
    /// out; only when its look-ahead is full (the peer can't be heard) does
    /// the silence not count.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !matches!(self.core.phase, Phase::Live | Phase::Closing) {
            return;
        }
        if self.core.deadline.is_some_and(|at| now < at) {
            return;
        }
        // A check comes after a quiet spell: give back what a burst grew
        // the buffers to.
        self.inb.shrink_when_empty(IN_BASE);
        self.core.out.shrink_when_empty(OUT_BASE);
        if self.core.paused && self.inb.len() >= IN_BURST {
            // Deaf: the peer can't be heard behind what our streams haven't
            // taken, so its silence is excused; and it can't hear our
            // answers to its PINGs, so a PING of ours (any byte counts at
            // pagekite.py, libpagekite and rkite) keeps it from giving up
            // on a tunnel that is only slow.
            self.core.keepalive.on_receive(now);
            self.core.ping(now);
        }
        match self.core.keepalive.check(now) {
            Check::Idle(at) => self.core.deadline = Some(at),
            Check::Ping(at) => {
                self.core.ping(now);
                self.core.deadline = Some(at);
            }
            Check::Dead => self.core.close(CloseReason::NoAnswer),
        }
        if let Some(nudge) = self.core.nudge.filter(|n| n.due(now)) {
            self.core.ping(now);
            self.core.nudge = nudge.next(now);
        }
        self.core.fold_nudge();
    }

    /// A duplicate kite suggests this tunnel's peer is gone: PING it now
    /// and give it a short grace.
    pub fn suspect(&mut self, now: Instant) {
        self.core.keepalive.suspect(now);
        self.core.deadline = Some(now);
    }

    /// Ends the tunnel once what is queued went out (the in-band answer
    /// that accepted nothing, the reconnect flow).
    pub fn close_gracefully(&mut self) {
        if self.core.phase == Phase::Live {
            self.core.phase = Phase::Closing;
            if self.core.out.is_empty() {
                self.core.close(CloseReason::Done);
            }
        }
    }

    /// Ends the tunnel: every stream gets [`Event::StreamClosed`], then
    /// [`Event::Closed`]. For the reactor's own reasons (a socket error,
    /// the peer's EOF) it may just as well drop the core after taking the
    /// handles from [`handles`](Self::handles).
    pub fn close(&mut self, why: CloseReason) {
        self.core.close(why);
    }

    /// Raw bytes for the peer ahead of any chunk: the frontend's reply head.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        frame::Out::put(&mut self.core.out, bytes);
    }

    /// A NOOP chunk of the role's (an in-band kite request, a quota
    /// notice): header lines (`NOOP: 1` first) and body.
    pub fn send_noop(&mut self, lines: &[String], body: &[u8]) {
        if matches!(self.core.phase, Phase::Live | Phase::Closing) {
            let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
            frame::encode(&mut self.core.out, &lines, body);
        }
    }
}

impl<H: Copy> Core<H> {
    /// Starts the keepalive clock of a tunnel that just went live; a
    /// backend PINGs at once to learn the round trip.
    pub(crate) fn go_live(&mut self, now: Instant) {
        self.phase = Phase::Live;
        self.keepalive = Keepalive::new(self.cfg.keepalive, now);
        self.deadline = match self.keepalive.check(now) {
            Check::Idle(at) | Check::Ping(at) => Some(at),
            Check::Dead => Some(now),
        };
        if self.cfg.role == Role::Backend {
            self.ping(now);
            self.keepalive.ping_sent(now);
        }
        self.fold_nudge();
    }

    /// Backend: in-band answers went out; PING until the verdict comes.
    pub(crate) fn await_verdict(&mut self, now: Instant) {
        if self.cfg.role == Role::Backend {
            self.nudge = Some(Nudge::new(now));
            self.fold_nudge();
        }
    }

    /// Makes the deadline no later than the next nudge.
    pub(crate) fn fold_nudge(&mut self) {
        if let Some(at) = self.nudge.map(|n| n.at()) {
            self.deadline = Some(self.deadline.map_or(at, |d| d.min(at)));
        }
    }

    /// Queues a PING whose value is the wall clock, as pagekite.py's.
    pub(crate) fn ping(&mut self, now: Instant) {
        let (at, unix) = self.wall;
        let unix = unix + now.saturating_duration_since(at);
        frame::encode_ping(&mut self.out, ping_token(unix).as_bytes());
    }

    pub(crate) fn new_stream(&self, handle: H) -> StreamState<H> {
        StreamState {
            handle,
            window: SendWindow::new(self.cfg.initial_window),
            acks: AckCounter::default(),
            ack_queued: false,
            ends: Ends::default(),
            queued: 0,
            blocked: false,
        }
    }

    /// Sends a stream's final EOF and forgets it; its last counts.
    pub(crate) fn retire(&mut self, sid: u32) -> Option<StreamInfo> {
        let mut s = self.streams.remove(&sid)?;
        let info = s.info();
        if let Some(eof) = s.ends.final_eof() {
            frame::encode_eof(&mut self.out, sid, eof);
        }
        self.held = self.held.saturating_sub(s.queued);
        Some(info)
    }

    /// The core ends a stream: its EOF, then the event.
    pub(crate) fn end_stream(&mut self, sid: u32, handle: H, why: StreamEnd) {
        if let Some(info) = self.retire(sid) {
            self.events.push_back(Event::StreamClosed {
                handle,
                sid,
                why,
                info,
            });
        }
    }

    pub(crate) fn unblock(&mut self) {
        if self.out.len() <= LOW_WATER && !self.blocked.is_empty() {
            for sid in std::mem::take(&mut self.blocked) {
                if let Some(s) = self.streams.get_mut(&sid) {
                    s.blocked = false;
                    self.events.push_back(Event::Writable {
                        handle: s.handle,
                        sid,
                    });
                }
            }
        }
    }

    /// Every stream ends, then the tunnel.
    pub(crate) fn close(&mut self, why: CloseReason) {
        if matches!(self.phase, Phase::Closed(_)) {
            return;
        }
        let mut sids: Vec<u32> = self.streams.keys().copied().collect();
        sids.sort_unstable();
        for sid in sids {
            if let Some(s) = self.streams.remove(&sid) {
                self.events.push_back(Event::StreamClosed {
                    handle: s.handle,
                    sid,
                    why: StreamEnd::TunnelClosed,
                    info: s.info(),
                });
            }
        }
        self.held = 0;
        self.blocked.clear();
        self.acks.clear();
        self.splice_in = None;
        self.phase = Phase::Closed(why.clone());
        self.deadline = None;
        self.events.push_back(Event::Closed(why));
    }
}

/// The SID after `sid` (positive, below 2^31, wrapping to 1).
pub fn following_sid(sid: u32) -> u32 {
    sid.checked_add(1).filter(|s| *s < 0x7fff_ffff).unwrap_or(1)
}

/// pagekite.py's PING value: unix time with four decimals.
pub fn ping_token(unix: Duration) -> String {
    format!("{}.{:04}", unix.as_secs(), unix.subsec_micros() / 100)
}

#[cfg(test)]
#[path = "tunnel_handshake_tests.rs"]
mod handshake_tests;
#[cfg(test)]
#[path = "tunnel_pair.rs"]
mod pair;
#[cfg(test)]
#[path = "tunnel_tests.rs"]
mod tests;
#[cfg(test)]
#[path = "tunnel_wire_tests.rs"]
mod wire_tests;
