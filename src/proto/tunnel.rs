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
//! values), and every decision leaves as a typed value. The handshake (the
//! CONNECT head and its reply) stays with the roles; in-band kite rounds
//! reach them through [`Sink::control`]. Receiving is `tunnel_recv.rs`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use super::flow::{AckCounter, INITIAL_WINDOW, RECEIVE_LIMIT, SendWindow};
use super::frame::{self, FrameError, Line, LineError};
use super::keepalive::{Check, DEFAULT_INTERVAL, Keepalive};
use super::stream::Ends;

#[path = "tunnel_buf.rs"]
mod buf;
#[path = "tunnel_recv.rs"]
mod recv;

use buf::ByteQueue;
pub use recv::{Control, ControlError, Delivered, NewStream, Next, Open, Sink, StreamFault};

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
}

impl Config {
    pub fn new(role: Role) -> Config {
        Config {
            role,
            keepalive: DEFAULT_INTERVAL,
            share: usize::MAX,
            initial_window: INITIAL_WINDOW,
            receive_limit: RECEIVE_LIMIT,
        }
    }
}

/// Why the core ended the tunnel. The reactor's own reasons (socket
/// errors, the peer's EOF, a Replace) never pass through here.
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

/// Why a stream ended without the reactor asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
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
    /// closes its socket.
    StreamClosed { handle: H, sid: u32, why: StreamEnd },
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

/// Why a stream may not read its socket now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendBlocked {
    /// Unknown SID (closed, or never opened).
    NoStream,
    /// The stream already sent its EOF or the peer can't take more.
    NotReading,
    /// Its window is used up: an [`Event::Writable`] comes with the SKB
    /// that reopens it.
    Window,
    /// The tunnel's output is full or the tunnel is not live: an
    /// [`Event::Writable`] comes when it drained.
    Tunnel,
}

/// Why a frontend could not open a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The tunnel is closing or closed.
    NotLive,
    /// A first-chunk header can't be sent exactly (e.g. a cut `Host:`).
    Header(LineError),
    /// Every SID near the preferred one is taken.
    NoFreeSid,
}

/// What a frontend sends in a stream's first chunk (protocol doc §4.1).
#[derive(Clone, Copy, Debug)]
pub struct StreamHead<'a> {
    /// The protocol the kite matched (`http`, `https`, `raw`, ...).
    pub proto: &'a str,
    pub host: &'a str,
    /// The public port.
    pub port: u16,
    pub remote_ip: &'a str,
    pub remote_port: u16,
    /// The frontend terminated TLS for this stream (`RTLS: 1`).
    pub tls: bool,
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

/// What the reactor must do after flushing a stream's socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Shut the socket's write side now (the peer's `R`, queue drained).
    pub shut_write: bool,
    /// Both directions are done: close the stream (`close_stream`).
    pub finished: bool,
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

/// A stream's frame slots in the output buffer, for one `readv`: the
/// reactor reads into [`SendSpace::bodies`], then calls
/// [`Tunnel::commit_send`] with the byte count; the frame headers are
/// written then, once the lengths are known.
pub struct SendSpace<'a> {
    span: &'a mut [u8],
    header: usize,
    slots: usize,
    max: usize,
}

impl SendSpace<'_> {
    /// The body part of each slot, in order (at most [`SLOTS`]).
    pub fn bodies(&mut self) -> impl Iterator<Item = &mut [u8]> {
        let header = self.header;
        self.span
            .chunks_mut(header + CHUNK_BODY)
            .take(self.slots)
            .map(move |slot| slot.get_mut(header..).unwrap_or_default())
    }

    /// Bytes the slots can take in all.
    pub fn capacity(&self) -> usize {
        self.max
    }

    /// The first `n` body bytes read (at most one slot's worth): for the
    /// backend's request guard, which may wait on how a response starts.
    pub fn first_body(&self, n: usize) -> &[u8] {
        let end = (self.header + n.min(CHUNK_BODY)).min(self.span.len());
        self.span.get(self.header..end).unwrap_or_default()
    }
}

/// The part of a tunnel that handles frames borrowed from the input.
pub(crate) struct Core<H> {
    pub(crate) cfg: Config,
    pub(crate) phase: Phase,
    pub(crate) out: ByteQueue,
    pub(crate) streams: HashMap<u32, StreamState<H>>,
    /// Streams waiting for room in `out`.
    pub(crate) blocked: Vec<u32>,
    /// Streams written to in this batch that may owe an SKB.
    pub(crate) acks: Vec<u32>,
    pub(crate) keepalive: Keepalive,
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
        Tunnel {
            inb: ByteQueue::with_capacity(IN_BASE),
            look: 0,
            core: Core {
                cfg,
                phase: Phase::Live,
                out: ByteQueue::with_capacity(OUT_BASE),
                streams: HashMap::new(),
                blocked: Vec::new(),
                acks: Vec::new(),
                keepalive,
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

    pub fn stream(&self, sid: u32) -> Option<StreamInfo> {
        self.core.streams.get(&sid).map(|s| StreamInfo {
            bytes_read: s.window.bytes_read(),
            unacked: s.window.unacked(),
            window: s.window.window(),
            bytes_written: s.acks.bytes_written(),
            queued: s.queued,
            reading: s.ends.is_reading(),
            writing: s.ends.is_writing(),
        })
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
            self.core.keepalive.on_receive(now);
        }
        match self.core.keepalive.check(now) {
            Check::Idle(at) => self.core.deadline = Some(at),
            Check::Ping(at) => {
                self.core.ping(now);
                self.core.deadline = Some(at);
            }
            Check::Dead => self.core.close(CloseReason::NoAnswer),
        }
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

    /// Frontend: opens a stream for a routed visitor on the first free SID
    /// from `preferred` on, sending its first chunk (headers and `first`,
    /// split into [`CHUNK_BODY`] pieces). The first bytes count against
    /// the stream's window. Returns the SID.
    pub fn open_stream(
        &mut self,
        preferred: u32,
        head: &StreamHead<'_>,
        first: &[u8],
        handle: H,
        now: Instant,
    ) -> Result<u32, OpenError> {
        if self.core.phase != Phase::Live {
            return Err(OpenError::NotLive);
        }
        let proto = Line::new("Proto", head.proto.as_bytes()).map_err(OpenError::Header)?;
        let host = Line::new("Host", head.host.as_bytes()).map_err(OpenError::Header)?;
        let rip = Line::new("RIP", head.remote_ip.as_bytes()).map_err(OpenError::Header)?;
        let mut sid = preferred;
        let mut tries = 0;
        while self.core.streams.contains_key(&sid) {
            tries += 1;
            if tries > 1024 {
                return Err(OpenError::NoFreeSid);
            }
            sid = following_sid(sid);
        }
        let (body, rest) = first.split_at(first.len().min(CHUNK_BODY));
        let sid_line = Line::number("SID", u64::from(sid));
        let port = Line::number("Port", u64::from(head.port));
        let rport = Line::number("RPort", u64::from(head.remote_port));
        let headers: [&[u8]; 7] = [
            sid_line.as_bytes(),
            proto.as_bytes(),
            host.as_bytes(),
            port.as_bytes(),
            rip.as_bytes(),
            rport.as_bytes(),
            b"RTLS: 1",
        ];
        let count = if head.tls { 7 } else { 6 };
        frame::encode(
            &mut self.core.out,
            headers.get(..count).unwrap_or(&headers),
            body,
        );
        for piece in rest.chunks(CHUNK_BODY) {
            frame::encode(&mut self.core.out, &[sid_line.as_bytes()], piece);
        }
        let mut state = self.core.new_stream(handle);
        state.window.on_read(first.len(), now);
        self.core.streams.insert(sid, state);
        Ok(sid)
    }

    /// Frame slots in the output for up to `budget` bytes of stream `sid`'s
    /// socket (capped by its window and [`SLOTS`] chunks).
    pub fn send_space(&mut self, sid: u32, budget: usize) -> Result<SendSpace<'_>, SendBlocked> {
        let core = &mut self.core;
        let Some(s) = core.streams.get_mut(&sid) else {
            return Err(SendBlocked::NoStream);
        };
        if !s.ends.is_reading() {
            return Err(SendBlocked::NotReading);
        }
        let allowance = s.window.allowance();
        if allowance == 0 {
            return Err(SendBlocked::Window);
        }
        if core.out.len() >= HIGH_WATER || core.phase != Phase::Live {
            if !s.blocked {
                s.blocked = true;
                core.blocked.push(sid);
            }
            return Err(SendBlocked::Tunnel);
        }
        let max = allowance.min(budget.max(1)).min(SLOTS * CHUNK_BODY);
        let header = frame::data_header_len(sid);
        let slots = max.div_ceil(CHUNK_BODY).clamp(1, SLOTS);
        let span = (slots - 1) * (header + CHUNK_BODY) + header + (max - (slots - 1) * CHUNK_BODY);
        core.slot = Some((sid, core.out.len()));
        let span = core.out.space(span);
        Ok(SendSpace {
            span,
            header,
            slots,
            max,
        })
    }

    /// `n` bytes were read into the slots of the latest
    /// [`send_space`](Self::send_space) of `sid`: their frames go out.
    pub fn commit_send(&mut self, sid: u32, n: usize, now: Instant) {
        let core = &mut self.core;
        // The slots are only valid right after their `send_space`: anything
        // written to the output since would sit where they were.
        if core.slot.take() != Some((sid, core.out.len())) || n == 0 {
            return;
        }
        let n = n.min(SLOTS * CHUNK_BODY);
        let Some(s) = core.streams.get_mut(&sid) else {
            return;
        };
        let header = frame::data_header_len(sid);
        let stride = header + CHUNK_BODY;
        let space = core.out.spare();
        let mut left = n;
        let mut used = 0;
        for slot in space.chunks_mut(stride) {
            let len = left.min(CHUNK_BODY);
            if len == 0 {
                break;
            }
            if let Some(head) = slot.get_mut(..header) {
                frame::fill_data_header(head, sid, len);
            }
            used += header + len;
            left -= len;
        }
        core.out.commit(used);
        s.window.on_read(n - left, now);
    }

    /// Stream `sid`'s socket gave EOF: the peer gets `EOF: 1R`.
    pub fn stream_read_eof(&mut self, sid: u32) {
        if let Some(s) = self.core.streams.get_mut(&sid) {
            if let Some(eof) = s.ends.local_read_eof() {
                frame::encode_eof(&mut self.core.out, sid, eof);
            }
        }
    }

    /// The reactor flushed stream `sid`'s socket: `written` more bytes went
    /// to it (stream data only) and it now holds `queued`. An SKB goes out
    /// if another KiB was written.
    pub fn stream_flushed(&mut self, sid: u32, written: usize, queued: usize) -> Flushed {
        let core = &mut self.core;
        let Some(s) = core.streams.get_mut(&sid) else {
            return Flushed::default();
        };
        s.acks.on_written(written);
        core.held = core.held.saturating_sub(s.queued) + queued;
        s.queued = queued;
        if let Some(kib) = s.acks.due() {
            frame::encode_skb(&mut core.out, sid, kib);
        }
        let shut_write = queued == 0 && s.ends.drained();
        Flushed {
            shut_write,
            finished: s.ends.is_finished(),
        }
    }

    /// A body for `sid` outside its window and acknowledgements: the page
    /// a refused or failed stream gets before its EOF.
    pub fn send_page(&mut self, sid: u32, body: &[u8]) {
        if self.core.phase != Phase::Live && self.core.phase != Phase::Closing {
            return;
        }
        let sid_line = Line::number("SID", u64::from(sid));
        frame::encode(&mut self.core.out, &[sid_line.as_bytes()], body);
    }

    /// The reactor ends stream `sid` (done, failed, stopping): the peer
    /// gets `EOF: 1WR` unless it had both flags already.
    pub fn close_stream(&mut self, sid: u32) {
        self.core.retire(sid);
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

    /// Sends a stream's final EOF and forgets it.
    pub(crate) fn retire(&mut self, sid: u32) {
        if let Some(mut s) = self.streams.remove(&sid) {
            if let Some(eof) = s.ends.final_eof() {
                frame::encode_eof(&mut self.out, sid, eof);
            }
            self.held = self.held.saturating_sub(s.queued);
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
                });
            }
        }
        self.held = 0;
        self.blocked.clear();
        self.acks.clear();
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
