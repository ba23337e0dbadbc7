//! The tunnel core's invariants over arbitrary bytes from a peer, as one
//! function for the `tunnel` fuzz target (and the unit tests). Panics when
//! an invariant breaks; otherwise returns.
//!
//! The first input byte picks the role and whether a kite is live; the rest
//! is what the peer sent. The invariants: no panic; what the core does
//! (streams opened with their first bytes, bytes delivered per stream, its
//! events, and on a backend every byte it sends back) does not depend on
//! where the input is cut; fed again in random pieces to a sink that fails,
//! refuses and holds data (pausing a tunnel with a small share), the core
//! ends the tunnel at most once, with every stream ended before, and a
//! closed core has nothing left to send. A reactor that splices bodies
//! (taking them outside the core, in pieces, sometimes handing the rest
//! back) delivers the same bytes to the same streams.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::frame::Frame;
use super::tunnel::{
    Config, Control, Delivered, Event, NewStream, Open, Phase, Role, Sink, StreamFault, Tunnel,
};

/// A stream a core opened: SID, proto, host, port, first bytes.
pub(crate) type Opened = (u32, String, String, Option<u16>, Vec<u8>);

/// What a core did with some input: the streams it opened (with their
/// first bytes), the bytes each got, its events and its output. Also the
/// wire tests' sink.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Record {
    pub(crate) opened: Vec<Opened>,
    pub(crate) data: BTreeMap<u32, Vec<u8>>,
    pub(crate) events: Vec<String>,
    pub(crate) out: Vec<u8>,
}

impl Sink<u32> for Record {
    fn open(&mut self, new: &NewStream<'_>) -> Open<u32> {
        self.opened.push((
            new.sid,
            new.proto.to_string(),
            new.host.to_string(),
            new.port,
            new.body.to_vec(),
        ));
        Open::Accepted {
            handle: new.sid,
            queued: 0,
        }
    }
    fn data(&mut self, _: u32, sid: u32, bodies: &[&[u8]]) -> Delivered {
        let got = self.data.entry(sid).or_default();
        let mut n = 0;
        for b in bodies {
            got.extend_from_slice(b);
            n += b.len();
        }
        Delivered {
            written: n,
            queued: 0,
            fault: None,
        }
    }
    fn control(&mut self, f: &Frame<'_>) -> Control {
        self.events.push(format!("control {}", f.header_block));
        Control::CONTINUE
    }
}

/// A sink that fails, refuses and holds data as the input bytes say.
struct Chaos<'a> {
    dice: &'a [u8],
    at: usize,
}

impl Chaos<'_> {
    fn roll(&mut self) -> u8 {
        self.at += 1;
        self.dice
            .get(self.at % self.dice.len().max(1))
            .copied()
            .unwrap_or(0)
    }
}

impl Sink<u32> for Chaos<'_> {
    fn open(&mut self, new: &NewStream<'_>) -> Open<u32> {
        if self.roll() % 5 == 0 {
            Open::Refused {
                page: Some(b"HTTP/1.1 503 Unavailable\r\n\r\n".to_vec()),
            }
        } else {
            Open::Accepted {
                handle: new.sid,
                queued: new.body.len(),
            }
        }
    }
    fn data(&mut self, _: u32, _: u32, bodies: &[&[u8]]) -> Delivered {
        let n: usize = bodies.iter().map(|b| b.len()).sum();
        let fault = match self.roll() % 16 {
            0 => Some(StreamFault::Failed),
            1 => Some(StreamFault::Refused { page: None }),
            _ => None,
        };
        let written = n / 2;
        Delivered {
            written,
            queued: n - written,
            fault,
        }
    }
    fn control(&mut self, _: &Frame<'_>) -> Control {
        Control::CONTINUE
    }
}

#[allow(clippy::disallowed_methods)] // any base instant will do
fn epoch() -> Instant {
    Instant::now()
}

fn core(role: Role, serving: bool, share: usize, now: Instant) -> Tunnel<u32> {
    let mut cfg = Config::new(role);
    cfg.share = share;
    let mut t = Tunnel::new(cfg, now, Duration::ZERO);
    t.set_serving(serving);
    let n = t.poll_transmit().len();
    t.advance_transmit(n);
    t
}

fn replay(role: Role, serving: bool, pieces: &[&[u8]], now: Instant) -> Record {
    let mut record = Record::default();
    let mut t = core(role, serving, usize::MAX, now);
    for piece in pieces {
        if t.handle_input(now, piece, &mut record) < piece.len() {
            break;
        }
    }
    t.end_batch();
    while let Some(ev) = t.poll_event() {
        record.events.push(format!("{ev:?}"));
    }
    record.out = t.poll_transmit().to_vec();
    record
}

/// As `replay`, with a reactor that splices: plain data chunks found at a
/// chunk boundary (peeked) or at the end of the input (partial) have their
/// bodies taken outside the core in pieces the input picks, sometimes
/// given back to the copying way halfway.
fn replay_spliced(role: Role, serving: bool, wire: &[u8], now: Instant) -> Record {
    let mut record = Record::default();
    let mut t = core(role, serving, usize::MAX, now);
    let mut dice = Chaos { dice: wire, at: 0 };
    let mut rest = wire;
    while !rest.is_empty() {
        if let Some((sid, left)) = t.splice_left() {
            if dice.roll() % 5 == 0 {
                t.splice_copy();
                continue;
            }
            let k = left.min(rest.len()).min(1 + usize::from(dice.roll()) * 97);
            let (moved, more) = rest.split_at(k);
            record.data.entry(sid).or_default().extend_from_slice(moved);
            t.splice_taken(k, now);
            rest = more;
            continue;
        }
        if t.input_empty() {
            let peek = rest.get(..rest.len().min(64)).unwrap_or_default();
            if let Some(c) = t.splice_candidate(peek, 1) {
                let (head, more) = rest.split_at(c.head.min(rest.len()));
                if t.handle_input(now, head, &mut record) < head.len() {
                    break;
                }
                rest = more;
                if let Some(p) = t.partial_candidate(1) {
                    t.splice_begin(&p, &mut record);
                }
                continue;
            }
        }
        let size = 1 + usize::from(dice.roll()) * 16;
        let (piece, more) = rest.split_at(size.min(rest.len()));
        if t.handle_input(now, piece, &mut record) < piece.len() {
            break;
        }
        rest = more;
        if dice.roll() % 2 == 0 {
            if let Some(p) = t.partial_candidate(1) {
                t.splice_begin(&p, &mut record);
            }
        }
    }
    record
}

/// Checks the core's invariants on `data` (see the module doc).
pub fn check(data: &[u8]) {
    let Some((&config, wire)) = data.split_first() else {
        return;
    };
    let role = if config & 1 == 0 {
        Role::Frontend
    } else {
        Role::Backend
    };
    let serving = config & 2 != 0;
    let now = epoch();
    let whole = replay(role, serving, &[wire], now);
    let step = (wire.len() / 24).max(1);
    for cut in (1..wire.len()).step_by(step) {
        let (a, b) = wire.split_at(cut);
        let split = replay(role, serving, &[a, b], now);
        assert_eq!(split.opened, whole.opened, "cut at {cut}");
        assert_eq!(split.data, whole.data, "cut at {cut}");
        assert_eq!(split.events, whole.events, "cut at {cut}");
        // Answers (EOF for an unknown SID's chunks, one each) don't depend
        // on where the input was cut.
        assert_eq!(split.out, whole.out, "cut at {cut}");
    }
    // Splicing moves bodies, never changes them: the same streams get the
    // same bytes (a spliced body may also start arriving before its chunk
    // is whole, so at the end of the input it may be ahead).
    let spliced = replay_spliced(role, serving, wire, now);
    assert_eq!(spliced.opened, whole.opened, "spliced");
    for sid in whole.data.keys().chain(spliced.data.keys()) {
        let copied = whole.data.get(sid).map_or(&[][..], Vec::as_slice);
        let moved = spliced.data.get(sid).map_or(&[][..], Vec::as_slice);
        assert!(moved.starts_with(copied), "sid {sid}: spliced bytes differ");
    }
    let share = if config & 4 != 0 { 4096 } else { usize::MAX };
    let mut t = core(role, serving, share, now);
    let mut sink = Chaos { dice: wire, at: 0 };
    let mut rest = wire;
    let mut n = 0;
    while !rest.is_empty() {
        let size = 1 + usize::from(sink.roll()) * 16;
        let (piece, more) = rest.split_at(size.min(rest.len()));
        if t.handle_input(now, piece, &mut sink) < piece.len() {
            break;
        }
        t.end_batch();
        if sink.roll() % 4 == 0 {
            let sid = u32::from(sink.roll() % 8);
            t.stream_flushed(sid, usize::from(sink.roll()) * 64, 0);
        }
        rest = more;
        n += 1;
    }
    let mut closed = 0;
    while let Some(ev) = t.poll_event() {
        if let Event::Closed(_) = ev {
            closed += 1;
            assert_eq!(t.stream_count(), 0);
        }
    }
    assert!(closed <= 1, "closed {closed} times in {n} pieces");
    assert_eq!(closed == 1, matches!(t.phase(), Phase::Closed(_)));
    if closed == 1 {
        assert!(t.poll_transmit().is_empty());
        assert_eq!(t.poll_timeout(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_tunnels_and_mangled_ones_keep_the_invariants() {
        let streams = super::super::golden_tests::load("mitm3.raw.log");
        let mut checked = 0;
        for bytes in streams.values() {
            let Some(end) = super::super::frame::find(bytes, b"\r\n\r\n") else {
                continue;
            };
            let wire = &bytes[end + 4..];
            for config in 0..8u8 {
                let mut input = vec![config];
                input.extend_from_slice(wire);
                check(&input);
                // A byte flipped every 97.
                for i in (1..input.len()).step_by(97) {
                    input[i] ^= 0x5a;
                }
                check(&input);
                checked += 1;
            }
        }
        assert!(checked >= 8);
        check(b"");
        check(b"\x01");
        check(b"\x03a\r\nSID: 1\r\n\r\n");
    }
}
