//! Test-only: a frontend tunnel core and a backend tunnel core joined in
//! memory, on a virtual clock, with a model of every stream's socket on
//! both ends (what it will send, how fast it takes data, what it got). The
//! bytes in flight are cut into random pieces and the operations come in a
//! random, seeded order (a xorshift; the seed is printed on failure), and
//! the invariants are checked after every step: no byte lost, duplicated
//! or changed on any stream, windows never overdrawn, every stream ended
//! exactly once. Owns no production code; `tunnel_tests.rs` has the cases.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::super::frame::Frame;
use super::{
    CloseReason, Config, Control, Delivered, Event, NewStream, Open, Role, SendBlocked, Sink,
    StreamHead, Tunnel,
};

/// xorshift64*: small, seeded, reproducible.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(super) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when n is 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// True with probability `p` percent.
    pub(super) fn chance(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// The stream data is a pseudo-random table read at an offset that
/// depends on the stream, the direction and the position, so a lost,
/// doubled or moved byte shows. Its length is prime, so no chunk or window
/// size lines up with it; bytes are filled and checked by slice, which
/// keeps 200 runs fast in a debug build.
const PERIOD: usize = 65_521;

fn table() -> &'static [u8] {
    static TABLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut rng = Rng::new(12345);
        (0..PERIOD).map(|_| rng.next() as u8).collect()
    })
}

fn offset(sid: u32, up: bool, at: u64) -> usize {
    ((at + u64::from(sid) * 7919 + u64::from(up) * 30011) % PERIOD as u64) as usize
}

/// The bytes of stream `sid` going up (visitor to origin) or down, from
/// offset `at`, written into `dst`.
pub(super) fn fill(sid: u32, up: bool, at: u64, dst: &mut [u8]) {
    let mut o = offset(sid, up, at);
    let mut i = 0;
    while i < dst.len() {
        let k = (PERIOD - o).min(dst.len() - i);
        dst[i..i + k].copy_from_slice(&table()[o..o + k]);
        i += k;
        o = 0;
    }
}

/// Whether `src` is what stream `sid` carries from offset `at` on.
fn matches(sid: u32, up: bool, at: u64, src: &[u8]) -> bool {
    let mut o = offset(sid, up, at);
    let mut i = 0;
    while i < src.len() {
        let k = (PERIOD - o).min(src.len() - i);
        if src[i..i + k] != table()[o..o + k] {
            return false;
        }
        i += k;
        o = 0;
    }
    true
}

/// The reactor's handle for a SID (deliberately not the SID itself).
pub(super) fn handle_of(sid: u32) -> u32 {
    sid | 0x8000_0000
}

/// One stream's socket, as the model sees it.
#[derive(Debug, Default)]
pub(super) struct Model {
    /// Bytes its socket will give before EOF.
    pub(super) source_len: u64,
    /// Read into the tunnel so far.
    pub(super) source_sent: u64,
    pub(super) eof_sent: bool,
    /// Delivered by the tunnel (written or queued), all checked.
    pub(super) received: u64,
    /// Delivered, not yet taken by the socket.
    pub(super) queue: u64,
    /// The most the socket takes per flush; 0 = a stalled reader.
    pub(super) rate: u64,
    pub(super) write_shut: bool,
    /// Times it ended (must end up exactly 1).
    pub(super) ended: u32,
    /// Ended by the tunnel's loss, not in order.
    pub(super) dropped: bool,
    /// The first bytes, sent with the stream's opening whatever the window.
    pub(super) first: u64,
    /// The core said the stream may not read (window or tunnel full): as a
    /// reactor, the model waits for `Event::Writable` before reading again,
    /// so a lost wake-up shows as a stuck run.
    pub(super) waiting: bool,
}

/// A test role's answer to in-band kite chunks.
pub(super) type ControlFn = Box<dyn FnMut(&Frame<'_>) -> Control>;
/// A test backend role's answer to the frontend's reply head.
pub(super) type ReplyFn = Box<dyn FnMut(&str, &str) -> Control>;

/// One end: its core and its streams' sockets.
pub(super) struct Side {
    pub(super) t: Tunnel<u32>,
    pub(super) role: Role,
    pub(super) streams: BTreeMap<u32, Model>,
    pub(super) closed: Option<CloseReason>,
    /// Bytes the peer wrote, not yet read by this side.
    pub(super) inbox: Vec<u8>,
    pub(super) errors: Vec<String>,
    /// Answers in-band kite chunks (None: ignore them).
    pub(super) control: Option<ControlFn>,
    pub(super) on_reply: Option<ReplyFn>,
    pub(super) pongs: usize,
    /// Sizes the backend's streams send (by SID), set by the test.
    pub(super) plan: BTreeMap<u32, (u64, u64)>,
}

struct SideSink<'a> {
    role: Role,
    streams: &'a mut BTreeMap<u32, Model>,
    errors: &'a mut Vec<String>,
    control: &'a mut Option<ControlFn>,
    on_reply: &'a mut Option<ReplyFn>,
    plan: &'a BTreeMap<u32, (u64, u64)>,
}

/// The direction a side receives: the frontend gets what goes down.
fn receives_up(role: Role) -> bool {
    role == Role::Backend
}

fn check_bytes(errors: &mut Vec<String>, sid: u32, up: bool, from: u64, bytes: &[u8]) {
    if !matches(sid, up, from, bytes) {
        errors.push(format!(
            "sid={sid} up={up}: wrong bytes at {from}..{}",
            from + bytes.len() as u64
        ));
    }
}

impl Sink<u32> for SideSink<'_> {
    fn open(&mut self, new: &NewStream<'_>) -> Open<u32> {
        if self.role != Role::Backend {
            self.errors.push("open on a frontend".into());
        }
        if self.streams.contains_key(&new.sid) {
            self.errors.push(format!("sid={} opened twice", new.sid));
        }
        check_bytes(self.errors, new.sid, true, 0, new.body);
        let (source_len, rate) = self.plan.get(&new.sid).copied().unwrap_or((1000, 1 << 20));
        let len = new.body.len() as u64;
        self.streams.insert(
            new.sid,
            Model {
                source_len,
                rate,
                received: len,
                queue: len,
                ..Model::default()
            },
        );
        Open::Accepted {
            handle: handle_of(new.sid),
            queued: len as usize,
        }
    }

    fn data(&mut self, handle: u32, sid: u32, bodies: &[&[u8]]) -> Delivered {
        if handle != handle_of(sid) {
            self.errors.push(format!("sid={sid}: handle {handle:x}"));
        }
        let up = receives_up(self.role);
        let Some(m) = self.streams.get_mut(&sid) else {
            self.errors
                .push(format!("data for sid={sid} the model doesn't have"));
            return Delivered::default();
        };
        if m.ended > 0 || m.write_shut {
            self.errors
                .push(format!("data for sid={sid} after its end"));
        }
        let mut total = 0;
        for body in bodies {
            check_bytes(self.errors, sid, up, m.received + total, body);
            total += body.len() as u64;
        }
        m.received += total;
        // A socket with nothing queued takes what it can at once.
        let written = if m.queue == 0 { total.min(m.rate) } else { 0 };
        m.queue += total - written;
        Delivered {
            written: written as usize,
            queued: m.queue as usize,
            fault: None,
        }
    }

    fn control(&mut self, frame: &Frame<'_>) -> Control {
        match self.control.as_mut() {
            Some(f) => f(frame),
            None => Control::CONTINUE,
        }
    }

    fn reply(&mut self, status: &str, headers: &str) -> Control {
        match self.on_reply.as_mut() {
            Some(f) => f(status, headers),
            None => Control::CONTINUE,
        }
    }
}

impl Side {
    pub(super) fn new(cfg: Config, now: Instant) -> Side {
        let mut t = Tunnel::new(cfg, now, Duration::from_secs(1_795_303_899));
        // Live kites: the input may grow for bursts, as on a real tunnel.
        t.set_serving(true);
        Side::with(t)
    }

    /// A side around a core made by the test (e.g. one still connecting).
    pub(super) fn with(t: Tunnel<u32>) -> Side {
        let role = t.role();
        Side {
            t,
            role,
            streams: BTreeMap::new(),
            closed: None,
            inbox: Vec::new(),
            errors: Vec::new(),
            control: None,
            on_reply: None,
            pongs: 0,
            plan: BTreeMap::new(),
        }
    }

    /// Reads up to `n` bytes of the inbox into the core (one batch).
    /// As a reactor driving the tunnel (readable, or woken by a stream
    /// that drained): what a pause queued goes first, then new bytes.
    pub(super) fn read(&mut self, now: Instant, mut n: usize) {
        self.process(now);
        while n > 0 && !self.inbox.is_empty() {
            let Some(slot) = self.t.recv_slot() else {
                break;
            };
            let room = slot.len();
            let k = room.min(n).min(self.inbox.len());
            slot[..k].copy_from_slice(&self.inbox[..k]);
            self.inbox.drain(..k);
            self.t.commit_recv(now, k, room);
            n -= k;
            self.process(now);
        }
        self.t.end_batch();
        self.events();
    }

    fn process(&mut self, now: Instant) {
        let mut sink = SideSink {
            role: self.role,
            streams: &mut self.streams,
            errors: &mut self.errors,
            control: &mut self.control,
            on_reply: &mut self.on_reply,
            plan: &self.plan,
        };
        self.t.process(now, &mut sink);
    }

    /// Acts on the core's events as a reactor would.
    pub(super) fn events(&mut self) {
        while let Some(ev) = self.t.poll_event() {
            match ev {
                Event::Writable { handle, sid } | Event::PeerEof { handle, sid, .. }
                    if handle != handle_of(sid) =>
                {
                    self.errors
                        .push(format!("event for sid={sid} with {handle:x}"));
                }
                Event::Writable { sid, .. } => {
                    if let Some(m) = self.streams.get_mut(&sid) {
                        m.waiting = false;
                    }
                }
                Event::PeerEof { .. } => {}
                Event::StreamClosed { handle, sid, .. } => {
                    if handle != handle_of(sid) {
                        self.errors
                            .push(format!("closed sid={sid} with {handle:x}"));
                    }
                    match self.streams.get_mut(&sid) {
                        Some(m) => {
                            m.ended += 1;
                            m.dropped = true;
                        }
                        None => self.errors.push(format!("closed unknown sid={sid}")),
                    }
                }
                Event::Pong { .. } => self.pongs += 1,
                Event::Closed(why) => {
                    if self.closed.is_some() {
                        self.errors.push("tunnel closed twice".into());
                    }
                    self.closed = Some(why);
                }
            }
        }
    }

    /// Frontend: a visitor arrives with `first` bytes of `len` in all.
    pub(super) fn open(&mut self, now: Instant, sid: u32, len: u64, first: u64, rate: u64) -> u32 {
        let mut body = vec![0; first.min(len) as usize];
        fill(sid, true, 0, &mut body);
        let head = StreamHead {
            proto: "http",
            host: "foo.test",
            port: 80,
            remote_ip: "127.0.0.1",
            remote_port: 5000,
            tls: false,
        };
        match self.t.open_stream(sid, &head, &body, handle_of(sid), now) {
            Ok(got) => {
                if got != sid {
                    self.errors.push(format!("asked sid={sid}, got {got}"));
                }
                self.streams.insert(
                    sid,
                    Model {
                        source_len: len,
                        source_sent: body.len() as u64,
                        first: body.len() as u64,
                        rate,
                        ..Model::default()
                    },
                );
            }
            Err(e) => self.errors.push(format!("open sid={sid}: {e:?}")),
        }
        sid
    }

    /// The stream's socket is readable: up to `budget` bytes go in.
    pub(super) fn pump(&mut self, now: Instant, sid: u32, budget: u64) {
        let Some(m) = self.streams.get_mut(&sid) else {
            return;
        };
        if m.ended > 0 || m.eof_sent || m.waiting {
            return;
        }
        let up = !receives_up(self.role);
        let left = m.source_len - m.source_sent;
        if left == 0 {
            m.eof_sent = true;
            self.t.stream_read_eof(sid);
            self.flush(sid, 0);
            return;
        }
        let want = left.min(budget.max(1));
        let mut space = match self.t.send_space(sid, want as usize) {
            Ok(space) => space,
            Err(SendBlocked::Window | SendBlocked::Tunnel) => {
                m.waiting = true;
                return;
            }
            Err(_) => return,
        };
        let mut n = 0u64;
        for body in space.bodies() {
            let k = (want - n).min(body.len() as u64);
            fill(sid, up, m.source_sent + n, &mut body[..k as usize]);
            n += k;
            if n == want {
                break;
            }
        }
        self.t.commit_send(sid, n as usize, now);
        m.source_sent += n;
    }

    /// The stream's socket is writable: it takes up to its rate.
    pub(super) fn flush(&mut self, sid: u32, extra: u64) {
        let Some(m) = self.streams.get_mut(&sid) else {
            return;
        };
        if m.ended > 0 {
            return;
        }
        let w = m.queue.min(m.rate.saturating_add(extra));
        m.queue -= w;
        let f = self.t.stream_flushed(sid, w as usize, m.queue as usize);
        if f.shut_write {
            if m.write_shut {
                self.errors
                    .push(format!("sid={sid}: write side shut twice"));
            }
            m.write_shut = true;
        }
        if f.finished {
            m.ended += 1;
            self.t.close_stream(sid);
        }
    }

    /// Moves up to `n` bytes of output onto the wire (into `peer`'s inbox).
    pub(super) fn send(&mut self, peer: &mut Vec<u8>, n: usize) {
        let out = self.t.poll_transmit();
        let k = out.len().min(n);
        peer.extend_from_slice(out.get(..k).unwrap_or_default());
        self.t.advance_transmit(k);
        self.events();
    }

    pub(super) fn timeout(&mut self, now: Instant) {
        if self.t.poll_timeout().is_some_and(|at| at <= now) {
            self.t.handle_timeout(now);
            self.events();
        }
    }
}

/// The two ends and the clock.
pub(super) struct Pair {
    pub(super) fe: Side,
    pub(super) be: Side,
    pub(super) now: Instant,
}

impl Pair {
    pub(super) fn new(fe: Config, be: Config) -> Pair {
        let now = Pair::epoch();
        Pair {
            fe: Side::new(fe, now),
            be: Side::new(be, now),
            now,
        }
    }

    /// The base of the virtual clock.
    #[allow(clippy::disallowed_methods)] // the virtual clock needs a base
    pub(super) fn epoch() -> Instant {
        Instant::now()
    }

    /// Writes everything both sides have queued and reads it all.
    pub(super) fn exchange(&mut self) {
        for _ in 0..64 {
            self.fe.send(&mut self.be.inbox, usize::MAX);
            self.be.send(&mut self.fe.inbox, usize::MAX);
            if self.fe.inbox.is_empty() && self.be.inbox.is_empty() {
                return;
            }
            let now = self.now;
            self.fe.read(now, usize::MAX);
            self.be.read(now, usize::MAX);
        }
    }

    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        self.fe.timeout(now);
        self.be.timeout(now);
    }

    /// The invariants that hold after every step.
    pub(super) fn check(&self) -> Result<(), String> {
        for (name, side, peer) in [("fe", &self.fe, &self.be), ("be", &self.be, &self.fe)] {
            if let Some(e) = side.errors.first() {
                return Err(format!("{name}: {e}"));
            }
            for (sid, m) in &side.streams {
                if m.ended > 1 {
                    return Err(format!("{name} sid={sid} ended {} times", m.ended));
                }
                if let Some(info) = side.t.stream(*sid) {
                    // The opening bytes may exceed the window (as today's
                    // sniffed head does); nothing read after them may.
                    if info.unacked > info.window.max(m.first) {
                        return Err(format!("{name} sid={sid}: window overdrawn {info:?}"));
                    }
                    if info.queued as u64 != m.queue {
                        return Err(format!("{name} sid={sid}: queued {info:?} vs {m:?}"));
                    }
                    if m.ended > 0 {
                        return Err(format!("{name} sid={sid}: ended but in the core"));
                    }
                }
                if let Some(p) = peer.streams.get(sid) {
                    if m.received > p.source_sent {
                        return Err(format!("{name} sid={sid}: more received than sent"));
                    }
                    // What waits at the receiver was read by the sender and
                    // not acknowledged: the sender's window bounds it, if
                    // the acknowledgements are honest.
                    if let Some(w) = peer.t.stream(*sid) {
                        if m.queue > w.window.max(p.first) {
                            return Err(format!("{name} sid={sid}: {} queued past {w:?}", m.queue));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// After a run: every stream ended exactly once on both ends, and each
    /// got every byte the other end's socket gave.
    pub(super) fn check_complete(&self) -> Result<(), String> {
        for (name, side, peer) in [("fe", &self.fe, &self.be), ("be", &self.be, &self.fe)] {
            for (sid, m) in &side.streams {
                if m.ended != 1 {
                    return Err(format!("{name} sid={sid} ended {} times: {m:?}", m.ended));
                }
                let sent = peer.streams.get(sid).map_or(0, |p| p.source_len);
                if m.received != sent || m.queue != 0 {
                    return Err(format!(
                        "{name} sid={sid}: got {} of {sent} bytes ({m:?})",
                        m.received
                    ));
                }
            }
            if side.t.stream_count() != 0 {
                return Err(format!("{name}: {} streams left", side.t.stream_count()));
            }
        }
        Ok(())
    }
}
