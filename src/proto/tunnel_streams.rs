//! The tunnel core's stream side: a frontend opening a stream for a routed
//! visitor (its SID and first chunk), the frame slots a stream's socket is
//! read into (headers written once the lengths are known), a stream's EOF,
//! its flushes (acknowledgements, half-close) and its end. The receiving
//! half is `tunnel_recv.rs`; the core itself `tunnel.rs`. No I/O, no clock.

use std::time::Instant;

use super::super::frame::{self, Line, LineError};
use super::{CHUNK_BODY, HIGH_WATER, Phase, SLOTS, StreamInfo, Tunnel, following_sid};

/// Why a stream may not read its socket now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendBlocked {
    /// Unknown SID (closed, or never opened).
    NoStream,
    /// The stream already sent its EOF or the peer can't take more.
    NotReading,
    /// Its window is used up: an [`Event::Writable`](super::Event::Writable) comes with the SKB
    /// that reopens it.
    Window,
    /// The tunnel's output is full or the tunnel is not live: an
    /// [`Event::Writable`](super::Event::Writable) comes when it drained.
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

/// What the reactor must do after flushing a stream's socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Shut the socket's write side now (the peer's `R`, queue drained).
    pub shut_write: bool,
    /// Both directions are done: close the stream (`close_stream`).
    pub finished: bool,
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

impl<H: Copy> Tunnel<H> {
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

    /// How many bytes stream `sid` may read from its socket now (its
    /// window), or why none: a refusal for the tunnel's output registers
    /// the stream for the `Event::Writable` that comes when it drains.
    pub(super) fn send_allowance(&mut self, sid: u32) -> Result<usize, SendBlocked> {
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
        Ok(allowance)
    }

    /// Frame slots in the output for up to `budget` bytes of stream `sid`'s
    /// socket (capped by its window and [`SLOTS`] chunks).
    pub fn send_space(&mut self, sid: u32, budget: usize) -> Result<SendSpace<'_>, SendBlocked> {
        let allowance = self.send_allowance(sid)?;
        let core = &mut self.core;
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
        self.flushed(sid, written, queued, false)
    }

    /// As [`stream_flushed`](Self::stream_flushed), during a batch of reads
    /// (a spliced body written on): the SKB waits for
    /// [`end_batch`](Self::end_batch), one for the whole batch, as for
    /// copied chunks. Each spliced chunk's own SKB was 17 K tiny frames per
    /// GiB for the peer to parse.
    pub fn stream_flushed_in_batch(&mut self, sid: u32, written: usize, queued: usize) -> Flushed {
        self.flushed(sid, written, queued, true)
    }

    fn flushed(&mut self, sid: u32, written: usize, queued: usize, in_batch: bool) -> Flushed {
        let core = &mut self.core;
        let Some(s) = core.streams.get_mut(&sid) else {
            return Flushed::default();
        };
        s.acks.on_written(written);
        core.held = core.held.saturating_sub(s.queued) + queued;
        s.queued = queued;
        if in_batch {
            if written > 0 && !s.ack_queued {
                s.ack_queued = true;
                core.acks.push(sid);
            }
        } else if let Some(kib) = s.acks.due() {
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
    /// gets `EOF: 1WR` unless it had both flags already. Its last counts,
    /// for the log line; `None` if the core no longer had it.
    pub fn close_stream(&mut self, sid: u32) -> Option<StreamInfo> {
        self.core.retire(sid)
    }
}
