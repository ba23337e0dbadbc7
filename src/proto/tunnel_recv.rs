//! The tunnel core's receiving half: the input slot the reactor reads the
//! tunnel socket into, the decoding of chunks, what each chunk does (PONG,
//! SKB, EOF, new streams, data runs handed to the [`Sink`] still borrowed
//! from the input), the batch's acknowledgements, and the look-ahead of a
//! paused tunnel, which acts on control chunks at once and keeps data and
//! EOF chunks queued in order. Like the rest of the core: no I/O, no clock.

use std::time::Instant;

use super::super::frame::{self, Eof, Frame, FrameError, MAX_PAYLOAD};
use super::super::handshake::{self, HandshakeError, MAX_HEAD};
use super::{
    CloseReason, Core, Event, IN_BASE, IN_BURST, OUT_LIMIT, Phase, RUN, Role, StreamEnd, Tunnel,
};

/// What happened when the reactor handed data to a stream's socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Stream bytes the socket took now (acknowledged with SKB).
    pub written: usize,
    /// Bytes the stream now holds for its socket.
    pub queued: usize,
    /// The stream can't go on: the core sends its page (if any) and its
    /// final EOF, forgets it and reports [`Event::StreamClosed`]; the
    /// reactor closes the socket then.
    pub fault: Option<StreamFault>,
}

/// Why a stream could not take its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamFault {
    /// Writing to its socket failed.
    Failed,
    /// The backend's request guard refused a request; `page` goes to the
    /// visitor before the EOF.
    Refused { page: Option<Vec<u8>> },
}

/// A chunk for a new SID with `Proto` and `Host` (backend, §4.1).
#[derive(Clone, Copy, Debug)]
pub struct NewStream<'a> {
    pub sid: u32,
    pub proto: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    pub remote_ip: &'a str,
    pub remote_port: Option<u16>,
    pub tls: bool,
    /// The first bytes from the visitor.
    pub body: &'a [u8],
}

/// The backend's answer to a new stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Open<H> {
    /// A local stream is on its way; it holds `queued` bytes of the first
    /// body (and whatever it put before them).
    Accepted { handle: H, queued: usize },
    /// No stream: `page` (if any) goes back, then `EOF: 1WR`.
    Refused { page: Option<Vec<u8>> },
}

/// A NOOP chunk with `X-PageKite*` lines is the role's (in-band kite
/// requests and answers, §2.5): what it wants done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Control {
    /// A NOOP chunk to send back: header lines and body.
    pub reply: Option<(Vec<String>, &'static [u8])>,
    pub next: Next,
}

/// What becomes of the tunnel after a control chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Live,
    /// Write what is queued (the reply included), then close.
    Closing,
    Fail(ControlError),
}

impl Control {
    pub const CONTINUE: Control = Control {
        reply: None,
        next: Next::Live,
    };
}

/// Why a role refused an in-band chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlError {
    /// Malformed `X-PageKite*` lines.
    InBand(HandshakeError),
    /// More in-band rounds than a backend may ask for.
    TooManyRounds,
    /// Handshake state of a tunnel that proved nothing is the first to go
    /// when the buffers are full.
    OverBudget,
    /// The frontend accepted none of our kites.
    NoKiteAccepted,
    /// The frontend's reply status was not 200.
    Rejected,
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::InBand(e) => write!(f, "{e}"),
            ControlError::TooManyRounds => f.write_str("too many in-band kite rounds"),
            ControlError::OverBudget => f.write_str("over the buffer budget in the handshake"),
            ControlError::NoKiteAccepted => f.write_str("no kite accepted"),
            ControlError::Rejected => f.write_str("tunnel request rejected"),
        }
    }
}

/// The reactor's side of frame processing: called while the frames are
/// borrowed from the input buffer.
pub trait Sink<H> {
    /// Backend: a new stream (never called on a frontend).
    fn open(&mut self, new: &NewStream<'_>) -> Open<H>;
    /// Consecutive data chunks for one stream: write them to its socket
    /// (one writev) and keep what it doesn't take.
    fn data(&mut self, handle: H, sid: u32, bodies: &[&[u8]]) -> Delivered;
    /// A NOOP chunk with `X-PageKite*` lines.
    fn control(&mut self, frame: &Frame<'_>) -> Control;
    /// Backend: the frontend's reply head (status line, then the header
    /// lines, CRLF-separated, without the blank line). `next: Live` makes
    /// the tunnel live; its reply, if any, goes out as a NOOP chunk.
    fn reply(&mut self, status: &str, headers: &str) -> Control {
        let _ = (status, headers);
        Control::CONTINUE
    }
}

/// A chunk that only carries data for a stream.
pub(super) fn is_plain_data(f: &Frame<'_>) -> bool {
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

/// A chunk that is fully handled before its SID is looked at (§3.4): it
/// may overtake queued data while the tunnel is paused.
fn is_control(f: &Frame<'_>) -> bool {
    f.ping.is_some() || f.noop || f.pong.is_some() || f.zrst
}

/// A header the core itself does not read: the role may want the chunk.
fn has_role_headers(f: &Frame<'_>) -> bool {
    const KNOWN: [&str; 13] = [
        "SID", "NOOP", "EOF", "SKB", "PING", "PONG", "ZRST", "Proto", "Host", "Port", "RIP",
        "RPort", "RTLS",
    ];
    f.headers()
        .any(|(name, _)| !KNOWN.iter().any(|k| k.eq_ignore_ascii_case(name)))
}

/// Whether a NOOP chunk carries the frontend's word on kites
/// (`X-PageKite-OK`, `-Invalid`, `-Duplicate`, `-SignThis`...).
fn has_kite_verdict(f: &Frame<'_>) -> bool {
    f.headers().any(|(name, _)| {
        name.get(..11)
            .is_some_and(|p| p.eq_ignore_ascii_case("X-PageKite-"))
    })
}

impl<H: Copy> Tunnel<H> {
    /// Room to read the tunnel socket into; `None`: don't read now (paused
    /// with a full look-ahead, or closed). A tunnel that can't hold the
    /// chunk it is receiving is closed ([`CloseReason::ChunkTooLarge`]).
    pub fn recv_slot(&mut self) -> Option<&mut [u8]> {
        if !matches!(self.core.phase, Phase::Live | Phase::AwaitingReply) {
            return None;
        }
        // A body the reactor splices comes before anything else.
        if self.core.splice_in.is_some_and(|s| !s.copy) {
            return None;
        }
        if self.core.held > self.core.cfg.share {
            self.core.paused = true;
        }
        if self.core.paused {
            let room = IN_BURST.saturating_sub(self.inb.len());
            if room == 0 {
                return None;
            }
            // Doubling, but never past the look-ahead.
            let want = room.min(16 * 1024);
            if self.inb.spare_compacted().len() < want {
                let cap = self.inb.capacity();
                self.inb
                    .grow_to((cap * 2).min(IN_BURST).max(self.inb.len() + want));
            }
            let spare = self.inb.spare_compacted();
            let n = spare.len().min(room);
            return spare.get_mut(..n);
        }
        let most = if self.core.trusted {
            MAX_PAYLOAD + 64
        } else {
            IN_BASE
        };
        // Grown when little room is left, unless the chunk being gathered
        // fits: doubling, but not past the burst for a chunk within it, nor
        // past the largest chunk the peer may send.
        let cap = self.inb.capacity();
        if self.inb.spare_compacted().len() < 4096 && cap < most {
            let limit = match frame::chunk_len(self.inb.data()) {
                Some(n) if n <= cap => cap,
                Some(n) if n <= IN_BURST => IN_BURST,
                _ => most,
            };
            self.inb.grow_to((cap * 2).min(limit));
        }
        if self.inb.spare_compacted().is_empty() {
            self.core.close(CloseReason::ChunkTooLarge);
            return None;
        }
        Some(self.inb.spare_compacted())
    }

    /// `n` bytes were read into the latest [`recv_slot`](Self::recv_slot),
    /// whose length was `room`.
    pub fn commit_recv(&mut self, now: Instant, n: usize, room: usize) {
        if n == 0 {
            return;
        }
        self.inb.commit(n);
        // A read that fills the buffer means a burst: read bigger pieces
        // (fewer syscalls) while it lasts.
        if self.core.trusted && n == room && self.inb.capacity() < IN_BURST {
            self.inb.grow_to((self.inb.capacity() * 2).min(IN_BURST));
        }
        self.core.bytes_in += n as u64;
        self.core.batch_rx = true;
        self.core.keepalive.on_receive(now);
    }

    /// Copies `bytes` in through the read slot and processes them; returns
    /// how many were taken (fewer when a paused tunnel's look-ahead is
    /// full, or the tunnel closed). For tests and for bytes that arrived
    /// with the handshake.
    pub fn handle_input(
        &mut self,
        now: Instant,
        mut bytes: &[u8],
        sink: &mut impl Sink<H>,
    ) -> usize {
        let mut taken = 0;
        while !bytes.is_empty() {
            let Some(slot) = self.recv_slot() else {
                break;
            };
            let room = slot.len();
            let n = room.min(bytes.len());
            let (now_in, rest) = bytes.split_at(n);
            if let Some(dst) = slot.get_mut(..n) {
                dst.copy_from_slice(now_in);
            }
            self.commit_recv(now, n, room);
            self.process(now, sink);
            bytes = rest;
            taken += n;
        }
        taken
    }

    /// Acts on every complete chunk in the input. A paused tunnel (its
    /// streams hold more than its share, until they are under half of it)
    /// only reads ahead: PING, PONG, SKB and NOOP chunks are acted on at
    /// once, data and EOF chunks wait in order.
    pub fn process(&mut self, now: Instant, sink: &mut impl Sink<H>) {
        if self.core.phase == Phase::AwaitingReply {
            if let Err(why) = self.read_reply(now, sink) {
                self.core.close(why);
            }
        }
        if self.core.phase != Phase::Live {
            return;
        }
        if let Err(why) = self.copied_body(sink) {
            self.core.close(why);
            return;
        }
        if self.core.splice_in.is_some() {
            return;
        }
        let share = self.core.cfg.share;
        let limit = if self.core.paused { share / 2 } else { share };
        self.core.paused = self.core.held > limit;
        let result = if self.core.paused {
            self.look_ahead(now, sink)
        } else {
            self.look = 0;
            self.process_all(now, sink)
        };
        if let Err(why) = result {
            self.core.close(why);
        }
    }

    /// The frontend's reply head, once it is all in; chunks may follow it
    /// in the same read.
    fn read_reply(&mut self, now: Instant, sink: &mut impl Sink<H>) -> Result<(), CloseReason> {
        let data = self.inb.data();
        let Some(end) = frame::find(data, b"\r\n\r\n") else {
            return if data.len() > MAX_HEAD {
                Err(CloseReason::ReplyTooLarge)
            } else {
                Ok(())
            };
        };
        let head = data.get(..end).unwrap_or_default();
        let head = std::str::from_utf8(head).map_err(|_| CloseReason::ReplyNotText)?;
        // As `handshake::split_head`: the first line, trimmed, then the rest.
        let (status, headers) = head.split_once('\n').unwrap_or((head, ""));
        // An rkite frontend takes bigger chunks; any other, what it always got.
        let announced = handshake::announced_max_chunk(frame::header_lines(headers));
        self.core.send_payload = handshake::chunk_limit(announced);
        let control = sink.reply(status.trim_end(), headers);
        self.inb.consume(end + 4);
        // As the roles did: live, the answers acted on (an in-band answer
        // queued, or closing), and only a tunnel still live starts its
        // keepalive (and the backend's first PING, after that answer).
        self.core.phase = Phase::Live;
        self.core.act(control, now)?;
        if self.core.phase == Phase::Live {
            self.core.go_live(now);
        }
        Ok(())
    }

    /// The rest of a body the reactor stopped splicing: the first bytes of
    /// the input, headerless, for its stream (dropped if it is gone).
    fn copied_body(&mut self, sink: &mut impl Sink<H>) -> Result<(), CloseReason> {
        let Some(mut s) = self.core.splice_in.filter(|s| s.copy) else {
            return Ok(());
        };
        let take = s.left.min(self.inb.len());
        if take == 0 {
            return Ok(());
        }
        if self.core.streams.contains_key(&s.sid) {
            let body = self.inb.data().get(..take).unwrap_or_default();
            self.core.deliver_run(sink, s.sid, &[body])?;
        }
        self.inb.consume(take);
        s.left -= take;
        s.fresh = false;
        self.core.splice_in = (s.left > 0).then_some(s);
        Ok(())
    }

    fn process_all(&mut self, now: Instant, sink: &mut impl Sink<H>) -> Result<(), CloseReason> {
        loop {
            let data = self.inb.data();
            let Some((first, mut used)) = decode(data)? else {
                return Ok(());
            };
            if !is_plain_data(&first) {
                self.core.handle_frame(now, sink, &first)?;
            } else {
                // Consecutive data chunks for one stream go to its socket
                // in one writev instead of a write each.
                let mut bodies: [&[u8]; RUN] = [&[]; RUN];
                bodies[0] = first.body;
                let mut count = 1;
                while count < RUN {
                    match frame::decode(data.get(used..).unwrap_or_default()) {
                        Ok(Some((next, more))) if is_plain_data(&next) && next.sid == first.sid => {
                            bodies[count] = next.body;
                            count += 1;
                            used += more;
                        }
                        _ => break,
                    }
                }
                let sid = first.sid.unwrap_or_default();
                self.core
                    .deliver_run(sink, sid, bodies.get(..count).unwrap_or_default())?;
            }
            self.inb.consume(used);
            if self.core.phase != Phase::Live {
                return Ok(());
            }
            if self.core.held > self.core.cfg.share {
                // The streams are full now: the rest waits, control chunks
                // excepted.
                self.core.paused = true;
                return self.look_ahead(now, sink);
            }
        }
    }

    fn look_ahead(&mut self, now: Instant, sink: &mut impl Sink<H>) -> Result<(), CloseReason> {
        loop {
            let at = self.look;
            let rest = self.inb.data().get(at..).unwrap_or_default();
            let Some((f, used)) = decode(rest)? else {
                return Ok(());
            };
            if is_control(&f) {
                self.core.handle_frame(now, sink, &f)?;
                self.inb.remove(at, used);
            } else {
                self.look = at + used;
            }
            if self.core.phase != Phase::Live {
                return Ok(());
            }
        }
    }

    /// Ends a batch of reads: at most one SKB per stream for all of it
    /// (pagekite.py breaks on bursts of tiny chunks, §3.4), plus the prompt
    /// SKB for a chunk header that came without its body; then the output
    /// limit.
    pub fn end_batch(&mut self) {
        if matches!(self.core.phase, Phase::Closed(_)) {
            return;
        }
        // Answered once, when the header came in: a paused tunnel that is
        // driven again reads nothing and owes nothing more.
        let prompt = if self.core.batch_rx {
            frame::awaiting_body(self.inb.data()).or_else(|| {
                // A chunk taken apart from its head (spliced, or copied in
                // pieces) whose head came alone.
                self.core.splice_in.filter(|s| s.fresh).map(|s| s.sid)
            })
        } else {
            None
        };
        self.core.batch_rx = false;
        self.core.send_acks(prompt);
        self.core.unblock();
        if self.core.out.len() > OUT_LIMIT {
            let n = self.core.out.len();
            self.core.close(CloseReason::PeerDoesNotRead(n));
        } else if self.core.phase == Phase::Closing && self.core.out.is_empty() {
            self.core.close(CloseReason::Done);
        }
    }
}

fn decode(bytes: &[u8]) -> Result<Option<(Frame<'_>, usize)>, CloseReason> {
    frame::decode(bytes).map_err(|e: FrameError| CloseReason::Frame(e))
}

impl<H: Copy> Core<H> {
    fn handle_frame(
        &mut self,
        now: Instant,
        sink: &mut impl Sink<H>,
        f: &Frame<'_>,
    ) -> Result<(), CloseReason> {
        if let Some(ping) = f.ping {
            frame::encode_pong(&mut self.out, ping.as_bytes());
            return Ok(());
        }
        if let (Some(kib), Some(sid)) = (f.skb, f.sid) {
            if let Some(s) = self.streams.get_mut(&sid) {
                if s.window.on_skb(kib, now) {
                    self.events.push_back(Event::Writable {
                        handle: s.handle,
                        sid,
                    });
                }
            }
        }
        if f.pong.is_some() {
            self.keepalive.on_pong(now);
            self.events.push_back(Event::Pong {
                rtt: self.keepalive.rtt(),
            });
        }
        if f.noop || f.pong.is_some() || f.zrst {
            return self.control(sink, f, now);
        }
        let Some(sid) = f.sid else {
            return Ok(());
        };
        let Some(s) = self.streams.get_mut(&sid) else {
            if f.eof.is_some() {
                return Ok(());
            }
            if let (Some(proto), Some(host), Role::Backend) = (f.proto, f.host, self.cfg.role) {
                return self.open(sink, sid, proto, host, f);
            }
            frame::encode_eof(&mut self.out, sid, Eof::BOTH);
            return Ok(());
        };
        if let Some(eof) = f.eof {
            let effect = s.ends.peer_eof(eof);
            if effect.stop_reading || effect.shut_when_drained {
                self.events.push_back(Event::PeerEof {
                    handle: s.handle,
                    sid,
                    stop_reading: effect.stop_reading,
                    shut_when_drained: effect.shut_when_drained,
                });
            }
            return Ok(());
        }
        self.deliver_run(sink, sid, &[f.body])
    }

    fn control(
        &mut self,
        sink: &mut impl Sink<H>,
        f: &Frame<'_>,
        now: Instant,
    ) -> Result<(), CloseReason> {
        if !has_role_headers(f) {
            return Ok(());
        }
        if has_kite_verdict(f) {
            self.nudge = None;
        }
        let control = sink.control(f);
        self.act(control, now)
    }

    /// Sends a role's reply and moves to the phase it asks for.
    fn act(&mut self, control: Control, now: Instant) -> Result<(), CloseReason> {
        if let Some((lines, body)) = &control.reply {
            let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
            frame::encode(&mut self.out, &lines, body);
            // In-band answers: a backend waits for the verdict.
            self.await_verdict(now);
        }
        match control.next {
            Next::Live => Ok(()),
            Next::Closing => {
                self.phase = Phase::Closing;
                Ok(())
            }
            Next::Fail(e) => Err(CloseReason::Control(e)),
        }
    }

    fn open(
        &mut self,
        sink: &mut impl Sink<H>,
        sid: u32,
        proto: &str,
        host: &str,
        f: &Frame<'_>,
    ) -> Result<(), CloseReason> {
        let number = |v: Option<&str>| v.and_then(|p| p.trim().parse::<u16>().ok());
        let new = NewStream {
            sid,
            proto,
            host,
            port: number(f.port),
            remote_ip: f.rip.unwrap_or(""),
            remote_port: number(f.rport),
            tls: f.rtls,
            body: f.body,
        };
        match sink.open(&new) {
            Open::Accepted { handle, queued } => {
                let mut s = self.new_stream(handle);
                s.queued = queued;
                self.held += queued;
                self.streams.insert(sid, s);
            }
            Open::Refused { page } => {
                if let Some(page) = page {
                    let sid_line = frame::Line::number("SID", u64::from(sid));
                    frame::encode(&mut self.out, &[sid_line.as_bytes()], &page);
                }
                frame::encode_eof(&mut self.out, sid, Eof::BOTH);
            }
        }
        Ok(())
    }

    /// Data chunks for a known stream (an unknown one gets EOF, §3.4).
    pub(super) fn deliver_run(
        &mut self,
        sink: &mut impl Sink<H>,
        sid: u32,
        bodies: &[&[u8]],
    ) -> Result<(), CloseReason> {
        let Some(s) = self.streams.get_mut(&sid) else {
            // One EOF per chunk, however the chunks were grouped: a run is
            // whatever arrived together, and the answer must not depend on
            // where the input was cut (the `tunnel` fuzz check found it).
            for _ in 0..bodies.len().max(1) {
                frame::encode_eof(&mut self.out, sid, Eof::BOTH);
            }
            return Ok(());
        };
        if !s.ack_queued {
            s.ack_queued = true;
            self.acks.push(sid);
        }
        if !s.ends.is_writing() || bodies.iter().all(|b| b.is_empty()) {
            return Ok(());
        }
        let delivered = sink.data(s.handle, sid, bodies);
        s.acks.on_written(delivered.written);
        self.held = self.held.saturating_sub(s.queued) + delivered.queued;
        s.queued = delivered.queued;
        let handle = s.handle;
        match delivered.fault {
            Some(StreamFault::Refused { page }) => {
                if let Some(page) = page {
                    let sid_line = frame::Line::number("SID", u64::from(sid));
                    frame::encode(&mut self.out, &[sid_line.as_bytes()], &page);
                }
                self.end_stream(sid, handle, StreamEnd::Refused);
            }
            Some(StreamFault::Failed) => self.end_stream(sid, handle, StreamEnd::Failed),
            None if delivered.queued > self.cfg.receive_limit => {
                // A sender past every window a peer keeps ignores flow
                // control: the whole tunnel goes, not just this stream.
                self.end_stream(sid, handle, StreamEnd::Overrun);
                return Err(CloseReason::Overrun {
                    sid,
                    queued: delivered.queued,
                });
            }
            None => {}
        }
        Ok(())
    }

    fn send_acks(&mut self, prompt: Option<u32>) {
        let mut prompt = prompt.filter(|sid| self.streams.contains_key(sid));
        let mut acks = std::mem::take(&mut self.acks);
        for sid in acks.drain(..) {
            if let Some(s) = self.streams.get_mut(&sid) {
                s.ack_queued = false;
                if let Some(kib) = s.acks.due() {
                    frame::encode_skb(&mut self.out, sid, kib);
                    prompt = prompt.filter(|&p| p != sid);
                }
            }
        }
        self.acks = acks;
        if let Some(sid) = prompt {
            if let Some(s) = self.streams.get_mut(&sid) {
                let kib = s.acks.due_or_repeat();
                frame::encode_skb(&mut self.out, sid, kib);
            }
        }
    }
}
