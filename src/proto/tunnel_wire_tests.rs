//! Tests of the tunnel core against real and mangled wire bytes: chunks
//! captured from pagekite.py (tests/data/transcripts) fed to a core cut at
//! every byte, which must change nothing but where chunks end up grouped;
//! and captures with bytes flipped, fed in random pieces to a sink that
//! refuses and fails at random, which must never panic and must end the
//! tunnel with a typed reason or not at all.

use std::time::{Duration, Instant};

use super::super::frame::{self, Frame};
use super::pair::Rng;
use super::*;

use crate::proto::tunnel_fuzz::Record;

fn replay(role: Role, pieces: &[&[u8]], batch_each: bool) -> Record {
    let mut record = Record::default();
    #[allow(clippy::disallowed_methods)] // any base will do
    let now = Instant::now();
    let mut t: Tunnel<u32> = Tunnel::new(Config::new(role), now, Duration::ZERO);
    t.set_serving(true);
    let n = t.poll_transmit().len();
    t.advance_transmit(n);
    for piece in pieces {
        let taken = t.handle_input(now, piece, &mut record);
        assert_eq!(taken, piece.len());
        if batch_each {
            t.end_batch();
        }
    }
    t.end_batch();
    while let Some(ev) = t.poll_event() {
        record.events.push(format!("{ev:?}"));
    }
    record.out = t.poll_transmit().to_vec();
    record
}

#[test]
fn captured_frames_do_the_same_at_every_split() {
    let mut checked = 0;
    let mut opened = 0;
    for name in ["mitm2.raw.log", "mitm3.raw.log"] {
        let streams = super::super::golden_tests::load(name);
        for ((conn, dir), bytes) in &streams {
            let request = streams
                .get(&(*conn, "BE->FE".to_string()))
                .map_or(&[][..], |b| &b[..]);
            if !request.starts_with(b"CONNECT PageKite") {
                continue;
            }
            let head = super::super::golden_tests::head_len(bytes);
            // The captures may end inside a chunk: keep whole chunks.
            let mut end = head;
            while let Ok(Some((_, used))) = frame::decode(&bytes[end..]) {
                end += used;
            }
            let wire = &bytes[head..end];
            if wire.is_empty() {
                continue;
            }
            let role = if dir == "FE->BE" {
                Role::Backend
            } else {
                Role::Frontend
            };
            let whole = replay(role, &[wire], false);
            // A frontend answers each run of chunks for an unknown SID with
            // an EOF, and where a cut falls decides the runs.
            let same = |a: &Record, b: &Record| {
                a.opened == b.opened
                    && a.data == b.data
                    && a.events == b.events
                    && (role == Role::Frontend || a.out == b.out)
            };
            assert!(
                whole.events.iter().all(|e| !e.contains("Closed")),
                "{whole:?}"
            );
            opened += whole.opened.len();
            for cut in 1..wire.len() {
                let (a, b) = wire.split_at(cut);
                let split = replay(role, &[a, b], false);
                assert!(
                    same(&split, &whole),
                    "{name} #{conn} {dir} cut at {cut}: {split:?}"
                );
                let split = replay(role, &[a, b], true);
                assert_eq!(
                    (&split.opened, &split.data),
                    (&whole.opened, &whole.data),
                    "{name} #{conn} {dir} cut at {cut}, two batches"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 4 && opened >= 3, "{checked} {opened}");
}

/// A sink that accepts everything and takes what it is given, except
/// when told to fail or refuse (from the seed).
struct Chaos(Rng);

impl Sink<u32> for Chaos {
    fn open(&mut self, new: &NewStream<'_>) -> Open<u32> {
        if self.0.chance(20) {
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
        let fault = match self.0.below(20) {
            0 => Some(StreamFault::Failed),
            1 => Some(StreamFault::Refused { page: None }),
            _ => None,
        };
        Delivered {
            written: n / 2,
            queued: n - n / 2,
            fault,
        }
    }
    fn control(&mut self, _: &Frame<'_>) -> Control {
        Control::CONTINUE
    }
    fn reply(&mut self, _: &str, _: &str) -> Control {
        Control::CONTINUE
    }
}

#[test]
fn mangled_captures_never_panic_and_close_with_a_reason() {
    let streams = super::super::golden_tests::load("mitm3.raw.log");
    let inputs: Vec<&Vec<u8>> = streams.values().collect();
    for seed in 1..=300u64 {
        let mut rng = Rng::new(seed);
        let mut wire = inputs[rng.below(inputs.len() as u64) as usize].clone();
        if let Some(end) = frame::find(&wire, b"\r\n\r\n") {
            wire.drain(..end + 4);
        }
        for _ in 0..rng.below(8) {
            if wire.is_empty() {
                break;
            }
            let at = rng.below(wire.len() as u64) as usize;
            wire[at] = rng.next() as u8;
        }
        let role = if rng.chance(50) {
            Role::Frontend
        } else {
            Role::Backend
        };
        let mut cfg = Config::new(role);
        cfg.share = [usize::MAX, 2000][rng.below(2) as usize];
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let mut t: Tunnel<u32> = Tunnel::new(cfg, now, Duration::ZERO);
        t.set_serving(rng.chance(50));
        let mut sink = Chaos(Rng::new(seed));
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let n = (1 + rng.below(3000) as usize).min(rest.len());
            let taken = t.handle_input(now, &rest[..n], &mut sink);
            t.end_batch();
            if taken == 0 {
                break;
            }
            rest = &rest[taken..];
            if rng.chance(30) {
                let sid = rng.below(30) as u32;
                t.stream_flushed(sid, rng.below(5000) as usize, 0);
                if rng.chance(50) {
                    t.close_stream(sid);
                }
            }
        }
        let mut closed = 0;
        while let Some(ev) = t.poll_event() {
            if let Event::Closed(why) = ev {
                closed += 1;
                assert!(t.stream_count() == 0, "seed {seed}: {why}");
            }
        }
        assert!(closed <= 1, "seed {seed}");
        assert_eq!(
            closed == 1,
            matches!(t.phase(), Phase::Closed(_)),
            "seed {seed}"
        );
    }
}

/// A backend role that refuses `nope.test`, fails writes on SID 2 and
/// refuses the second request on SID 3.
struct Script;

impl Sink<u32> for Script {
    fn open(&mut self, new: &NewStream<'_>) -> Open<u32> {
        if new.host == "nope.test" {
            return Open::Refused {
                page: Some(b"HTTP/1.1 503 Unavailable\r\n\r\n(be)".to_vec()),
            };
        }
        Open::Accepted {
            handle: new.sid + 100,
            queued: 0,
        }
    }
    fn data(&mut self, _: u32, sid: u32, bodies: &[&[u8]]) -> Delivered {
        let n: usize = bodies.iter().map(|b| b.len()).sum();
        let fault = match sid {
            2 => Some(StreamFault::Failed),
            3 => Some(StreamFault::Refused {
                page: Some(b"HTTP/1.1 401 Unauthorized\r\n\r\n".to_vec()),
            }),
            _ => None,
        };
        Delivered {
            written: n,
            queued: 0,
            fault,
        }
    }
    fn control(&mut self, _: &Frame<'_>) -> Control {
        Control::CONTINUE
    }
}

#[test]
fn refusals_and_failures_send_their_page_and_end_the_stream_once() {
    let opening = |sid: &str, host: &str| {
        let mut out = Vec::new();
        let sid = format!("SID: {sid}");
        let host = format!("Host: {host}");
        frame::encode(
            &mut out,
            &[sid.as_bytes(), b"Proto: http", host.as_bytes(), b"Port: 80"],
            b"GET / HTTP/1.1\r\n\r\n",
        );
        out
    };
    let mut input = opening("1", "nope.test");
    input.extend(opening("2", "foo.test"));
    input.extend(opening("3", "foo.test"));
    for sid in ["2", "3", "2", "3"] {
        let line = format!("SID: {sid}");
        frame::encode(&mut input, &[line.as_bytes()], b"more");
    }
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let mut t: Tunnel<u32> = Tunnel::new(Config::new(Role::Backend), now, Duration::ZERO);
    let n = t.poll_transmit().len();
    t.advance_transmit(n);
    assert_eq!(t.handle_input(now, &input, &mut Script), input.len());
    t.end_batch();
    let mut sent = Vec::new();
    let mut out = t.poll_transmit();
    while let Ok(Some((f, used))) = frame::decode(out) {
        let what = match f.eof {
            Some(eof) => format!("EOF {}{}", u8::from(eof.write), u8::from(eof.read)),
            None => String::from_utf8_lossy(f.body).into_owned(),
        };
        sent.push((f.sid, what));
        out = &out[used..];
    }
    assert_eq!(
        sent,
        [
            (Some(1), "HTTP/1.1 503 Unavailable\r\n\r\n(be)".to_string()),
            (Some(1), "EOF 11".to_string()),
            (Some(2), "EOF 11".to_string()),
            (Some(3), "HTTP/1.1 401 Unauthorized\r\n\r\n".to_string()),
            (Some(3), "EOF 11".to_string()),
            // Later chunks for the ended streams: unknown SIDs now.
            (Some(2), "EOF 11".to_string()),
            (Some(3), "EOF 11".to_string()),
        ]
    );
    let mut ended = Vec::new();
    while let Some(ev) = t.poll_event() {
        if let Event::StreamClosed {
            handle, sid, why, ..
        } = ev
        {
            ended.push((handle, sid, why));
        }
    }
    assert_eq!(
        ended,
        [(102, 2, StreamEnd::Failed), (103, 3, StreamEnd::Refused)]
    );
    assert_eq!(t.stream_count(), 0);
}
