//! Tests of the sans-IO tunnel core: a frontend core and a backend core
//! driven against each other in memory (`tunnel_pair.rs`) in random,
//! seeded orders with the invariants checked after every step, then the
//! cases one by one (fairness, half-close, keepalive and dead peers, the
//! paused tunnel's look-ahead, buffer limits, batching of SKBs, in-band
//! kite chunks), and real captured frames fed at every split point.

use std::time::{Duration, Instant};

use super::super::flow::{INITIAL_WINDOW, RECEIVE_LIMIT};
use super::super::frame::{self, Eof, Frame, Line};
use super::pair::{Pair, Rng, handle_of};
use super::*;

fn fe_config() -> Config {
    Config {
        keepalive: Duration::from_secs(20),
        ..Config::new(Role::Frontend)
    }
}

fn be_config() -> Config {
    Config {
        keepalive: Duration::from_secs(20),
        ..Config::new(Role::Backend)
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Encodes one chunk into a vector.
fn chunk(headers: &[&[u8]], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode(&mut out, headers, body);
    out
}

fn data_chunk(sid: u32, body: &[u8]) -> Vec<u8> {
    let sid = Line::number("SID", u64::from(sid));
    chunk(&[sid.as_bytes()], body)
}

/// Every chunk in `bytes`, as (sid, a short description).
fn chunks(mut bytes: &[u8]) -> Vec<(Option<u32>, String)> {
    let mut out = Vec::new();
    while let Ok(Some((f, used))) = frame::decode(bytes) {
        let what = if let Some(kib) = f.skb {
            format!("SKB {kib}")
        } else if let Some(eof) = f.eof {
            format!("EOF {eof:?}")
        } else if f.ping.is_some() {
            "PING".to_string()
        } else if f.pong.is_some() {
            "PONG".to_string()
        } else if f.noop {
            "NOOP".to_string()
        } else {
            format!("DATA {}", f.body.len())
        };
        out.push((f.sid, what));
        bytes = bytes.get(used..).unwrap_or_default();
    }
    out
}

/// One random run: streams opened, pumped, flushed, stalled and resumed,
/// bytes cut at random, the clock moving; then everything drains.
fn run(seed: u64) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let mut fe = fe_config();
    let mut be = be_config();
    fe.share = [usize::MAX, 512 * 1024, 96 * 1024][rng.below(3) as usize];
    let window = [INITIAL_WINDOW, 16 * 1024, 3000][rng.below(3) as usize];
    fe.initial_window = window;
    be.initial_window = window;
    let mut p = Pair::new(fe, be);
    let count = 1 + rng.below(6) as u32;
    // Sometimes the wire is slow: output piles up past the high-water mark
    // and streams wait for it to drain.
    let wire = [70_000, 70_000, 4_000][rng.below(3) as usize];
    let size = |rng: &mut Rng| match rng.below(4) {
        0 => 0,
        1 => rng.below(2000),
        2 => rng.below(70_000),
        _ => rng.below(400_000),
    };
    let rate = |rng: &mut Rng| match rng.below(4) {
        0 => 0,
        1 => 1 + rng.below(3000),
        _ => 1 + rng.below(200_000),
    };
    let mut up = Vec::new();
    for sid in 1..=count {
        let down = (size(&mut rng), rate(&mut rng));
        p.be.plan.insert(sid, down);
        up.push((size(&mut rng), rate(&mut rng)));
    }
    let steps = 200 + rng.below(2000);
    let mut opened = 0u32;
    let any = |rng: &mut Rng, opened: u32| 1 + rng.below(u64::from(opened.max(1))) as u32;
    for step in 0..steps {
        let now = p.now;
        match rng.below(12) {
            0 if opened < count => {
                opened += 1;
                let (len, r) = up[opened as usize - 1];
                let first = rng.below(len.min(40_000) + 1);
                p.fe.open(now, opened, len, first, r);
            }
            1 => p.fe.pump(now, any(&mut rng, opened), 1 + rng.below(80_000)),
            2 => p.be.pump(now, any(&mut rng, opened), 1 + rng.below(80_000)),
            3 => p.fe.flush(any(&mut rng, opened), 0),
            4 => p.be.flush(any(&mut rng, opened), 0),
            5 => p.fe.send(&mut p.be.inbox, 1 + rng.below(wire) as usize),
            6 => p.be.send(&mut p.fe.inbox, 1 + rng.below(wire) as usize),
            7 => p.be.read(now, 1 + rng.below(70_000) as usize),
            8 => p.fe.read(now, 1 + rng.below(70_000) as usize),
            9 => p.advance(ms(rng.below(50))),
            10 => {
                // A reader stalls or resumes.
                let sid = any(&mut rng, opened);
                let side = if rng.chance(50) { &mut p.fe } else { &mut p.be };
                if let Some(m) = side.streams.get_mut(&sid) {
                    m.rate = if m.rate == 0 {
                        rate(&mut rng).max(1)
                    } else {
                        0
                    };
                }
            }
            _ if rng.chance(3) => {
                // A quiet spell long enough for both ends to PING.
                p.exchange();
                p.advance(Duration::from_secs(21));
                p.exchange();
            }
            _ => {}
        }
        p.check().map_err(|e| format!("step {step}: {e}"))?;
        for (name, side) in [("fe", &p.fe), ("be", &p.be)] {
            if let Some(why) = &side.closed {
                let paused = (p.fe.t.is_paused(), p.be.t.is_paused());
                let inb = (p.fe.t.inb.len(), p.be.t.inb.len());
                let inbox = (p.fe.inbox.len(), p.be.inbox.len());
                return Err(format!(
                    "step {step}: {name} closed: {why} (paused {paused:?}, input {inb:?}, inbox {inbox:?})"
                ));
            }
        }
    }
    // Drain: every reader reads, every stream is pumped to its end.
    while opened < count {
        opened += 1;
        let (len, r) = up[opened as usize - 1];
        let now = p.now;
        p.fe.open(now, opened, len, 0, r);
    }
    for side in [&mut p.fe, &mut p.be] {
        for m in side.streams.values_mut() {
            m.rate = 1 << 40;
        }
    }
    for round in 0..10_000 {
        let now = p.now;
        for sid in 1..=count {
            p.fe.pump(now, sid, 1 << 20);
            p.be.pump(now, sid, 1 << 20);
            p.fe.flush(sid, 0);
            p.be.flush(sid, 0);
        }
        p.exchange();
        p.advance(ms(10));
        p.check().map_err(|e| format!("drain {round}: {e}"))?;
        if let Some(why) = p.fe.closed.as_ref().or(p.be.closed.as_ref()) {
            return Err(format!("drain {round}: tunnel closed: {why}"));
        }
        if p.check_complete().is_ok() {
            return Ok(());
        }
    }
    p.check_complete()
        .map_err(|e| format!("stuck after draining: {e}"))
}

#[test]
fn random_pairs_lose_no_byte_and_end_every_stream_once() {
    let mut failures = Vec::new();
    for seed in 1..=200 {
        if let Err(e) = run(seed) {
            failures.push(format!("seed {seed}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Opens stream `sid` on the frontend and lets it reach the backend.
fn open(p: &mut Pair, sid: u32, up: u64, down: u64, fe_rate: u64) {
    p.be.plan.insert(sid, (down, 1 << 40));
    let now = p.now;
    p.fe.open(now, sid, up, 0, fe_rate);
    p.exchange();
}

/// Pumps both ends of `sids` and moves the bytes, `rounds` times.
fn pump(p: &mut Pair, sids: &[u32], rounds: usize) {
    for _ in 0..rounds {
        let now = p.now;
        for &sid in sids {
            p.fe.pump(now, sid, 1 << 20);
            p.be.pump(now, sid, 1 << 20);
            p.fe.flush(sid, 0);
            p.be.flush(sid, 0);
        }
        p.exchange();
        p.advance(ms(5));
    }
}

#[test]
fn a_small_stream_gets_through_beside_a_stalled_bulk_stream() {
    let mut p = Pair::new(fe_config(), be_config());
    // The bulk download's visitor reads nothing.
    open(&mut p, 1, 0, 50 << 20, 0);
    pump(&mut p, &[1], 20);
    let bulk = p.fe.t.stream(1).expect("bulk stream");
    assert!(bulk.queued >= INITIAL_WINDOW as usize - 1024, "{bulk:?}");
    let sent = p.be.streams[&1].source_sent;
    assert!(
        sent <= INITIAL_WINDOW,
        "the window holds the bulk back: {sent}"
    );
    open(&mut p, 2, 300, 5000, 1 << 40);
    pump(&mut p, &[1, 2], 20);
    let small = &p.fe.streams[&2];
    assert_eq!(small.received, 5000);
    assert_eq!(small.ended, 1, "{small:?}");
    assert_eq!(p.be.streams[&2].ended, 1);
    assert_eq!(p.be.streams[&2].received, 300);
    assert_eq!(p.be.streams[&1].source_sent, sent, "the bulk is still held");
    p.check().unwrap();
}

#[test]
fn half_close_keeps_the_other_direction_flowing_both_ways() {
    for visitor_first in [true, false] {
        let mut p = Pair::new(fe_config(), be_config());
        let (up, down) = if visitor_first {
            (10, 300_000)
        } else {
            (300_000, 10)
        };
        open(&mut p, 1, up, down, 1 << 40);
        // The short side sends its bytes and its EOF; the long one has
        // only just started.
        let now = p.now;
        let short = if visitor_first { &mut p.fe } else { &mut p.be };
        short.pump(now, 1, 1 << 20);
        short.pump(now, 1, 1 << 20);
        assert!(short.streams[&1].eof_sent);
        p.exchange();
        let far = if visitor_first { &p.be } else { &p.fe };
        let m = &far.streams[&1];
        assert_eq!((m.received, m.ended), (10, 0), "half open: {m:?}");
        pump(&mut p, &[1], 30);
        p.check_complete().unwrap();
        for side in [&p.fe, &p.be] {
            assert!(side.streams[&1].write_shut, "the write side was shut");
        }
    }
}

#[test]
fn a_stream_held_by_a_full_tunnel_wakes_when_it_drains() {
    let mut fe = fe_config();
    fe.initial_window = 1 << 20;
    let mut p = Pair::new(fe, be_config());
    open(&mut p, 1, 1 << 20, 0, 1 << 40);
    let now = p.now;
    // Nothing goes out on the wire: the output fills to the high-water mark.
    for _ in 0..8 {
        p.fe.pump(now, 1, 1 << 20);
    }
    assert!(p.fe.streams[&1].waiting);
    assert_eq!(p.fe.t.send_space(1, 1000).err(), Some(SendBlocked::Tunnel));
    let sent = p.fe.streams[&1].source_sent;
    assert!(
        (HIGH_WATER as u64..HIGH_WATER as u64 + 65536).contains(&sent),
        "{sent}"
    );
    // Half of it goes: still above the low-water mark, no wake-up yet.
    let mut wire = Vec::new();
    p.fe.send(&mut wire, HIGH_WATER / 2);
    assert!(p.fe.streams[&1].waiting);
    p.fe.send(&mut wire, usize::MAX);
    assert!(!p.fe.streams[&1].waiting, "woken once the output drained");
}

#[test]
fn an_unanswered_ping_closes_the_tunnel_on_the_virtual_clock() {
    let mut p = Pair::new(fe_config(), be_config());
    open(&mut p, 1, 100, 100, 0);
    p.exchange();
    assert_eq!(
        p.be.pongs, 1,
        "the backend's PING on going live was answered"
    );
    // Quiet: both ends PING after the interval and get their PONGs.
    p.advance(Duration::from_secs(20));
    p.exchange();
    assert_eq!((p.fe.pongs, p.be.pongs), (1, 2));
    // The backend vanishes: nothing it sends arrives any more.
    let t0 = p.now;
    for _ in 0..60 {
        p.advance(Duration::from_secs(1));
        p.fe.send(&mut Vec::new(), usize::MAX);
        if p.fe.closed.is_some() {
            break;
        }
    }
    assert_eq!(p.fe.closed, Some(CloseReason::NoAnswer));
    // Interval (20 s) after the last byte, then a grace of 10 s.
    assert_eq!(p.now - t0, Duration::from_secs(30));
    let m = &p.fe.streams[&1];
    assert!(m.ended == 1 && m.dropped, "{m:?}");
    assert_eq!(p.fe.t.poll_timeout(), None);
    assert!(p.fe.t.poll_transmit().is_empty());
}

/// A frontend whose visitor stalls, with a share small enough that the
/// backend's download pauses it.
fn paused_pair() -> Pair {
    let mut fe = fe_config();
    fe.share = 64 * 1024;
    let mut p = Pair::new(fe, be_config());
    open(&mut p, 1, 1 << 20, 1 << 20, 0);
    pump(&mut p, &[1], 10);
    assert!(p.fe.t.is_paused());
    p
}

#[test]
fn a_paused_tunnel_still_answers_pings_and_takes_acks() {
    let mut p = paused_pair();
    let queued = p.fe.t.inb.len();
    assert!(queued > 0, "data chunks wait in the input");
    // The visitor's upload runs on SKBs from the backend, which overtake
    // the download queued at the frontend.
    let before = p.fe.streams[&1].source_sent;
    pump(&mut p, &[1], 40);
    assert!(p.fe.t.is_paused());
    let sent = p.fe.streams[&1].source_sent;
    assert!(before < 1 << 20, "the upload was under way");
    assert_eq!(sent, 1 << 20, "and went through");
    assert_eq!(p.be.streams[&1].received, 1 << 20);
    // A quiet spell: the backend PINGs and hears back, through the pause.
    let pongs = p.be.pongs;
    p.advance(Duration::from_secs(20));
    p.exchange();
    assert_eq!(p.be.pongs, pongs + 1);
    assert!(p.be.closed.is_none() && p.fe.closed.is_none());
    assert!(
        p.fe.t.inb.len() >= queued,
        "the data is still queued in order"
    );
    // The visitor reads again: everything arrives, in order.
    p.fe.streams.get_mut(&1).unwrap().rate = 1 << 40;
    pump(&mut p, &[1], 200);
    p.check_complete().unwrap();
}

#[test]
fn a_dead_peer_behind_a_pause_is_found_out() {
    let mut p = paused_pair();
    assert!(p.fe.t.inb.len() < IN_BURST, "room to read ahead");
    let t0 = p.now;
    for _ in 0..60 {
        p.advance(Duration::from_secs(1));
        p.fe.send(&mut Vec::new(), usize::MAX);
        if p.fe.closed.is_some() {
            break;
        }
    }
    assert_eq!(p.fe.closed, Some(CloseReason::NoAnswer));
    assert!(p.now - t0 <= Duration::from_secs(30));
}

#[test]
fn a_deaf_paused_tunnel_keeps_its_peer_from_giving_up() {
    let mut fe = fe_config();
    fe.share = 64 * 1024;
    let mut p = Pair::new(fe, be_config());
    // Three downloads to visitors who read nothing: the frontend pauses and
    // its look-ahead fills up, so it hears nothing more from the backend.
    for sid in 1..=3 {
        open(&mut p, sid, 0, 1 << 20, 0);
    }
    pump(&mut p, &[1, 2, 3], 20);
    assert!(p.fe.t.is_paused());
    assert_eq!(p.fe.t.inb.len(), IN_BURST, "deaf");
    assert!(!p.fe.inbox.is_empty());
    // Five quiet minutes: both ends keep the tunnel.
    for _ in 0..300 {
        p.advance(Duration::from_secs(1));
        p.exchange();
    }
    assert!(p.fe.closed.is_none() && p.be.closed.is_none());
    // The visitors read again: everything arrives.
    for m in p.fe.streams.values_mut() {
        m.rate = 1 << 40;
    }
    pump(&mut p, &[1, 2, 3], 300);
    p.check_complete().unwrap();
}

#[test]
fn a_peer_ignoring_windows_is_closed_for_overrun() {
    let mut p = Pair::new(fe_config(), be_config());
    open(&mut p, 1, 0, 0, 0);
    // A rogue backend pushes data past any window to a stalled visitor.
    let body = vec![0u8; 16 * 1024];
    let now = p.now;
    let mut sent = 0;
    while p.fe.closed.is_none() && sent < 8 << 20 {
        p.fe.inbox.extend(data_chunk(1, &body));
        p.fe.read(now, usize::MAX);
        sent += body.len();
    }
    assert!(matches!(
        p.fe.closed,
        Some(CloseReason::Overrun { sid: 1, queued }) if queued > RECEIVE_LIMIT
    ));
    assert!(sent <= RECEIVE_LIMIT + 2 * body.len(), "{sent}");
    let m = &p.fe.streams[&1];
    assert!(m.ended == 1 && m.dropped);
}

#[test]
fn a_paused_tunnel_reads_ahead_a_bounded_amount() {
    let mut fe = fe_config();
    fe.share = 64 * 1024;
    let mut p = Pair::new(fe, be_config());
    open(&mut p, 1, 0, 0, 0);
    let body = vec![0u8; 16 * 1024];
    let now = p.now;
    for _ in 0..64 {
        p.fe.inbox.extend(data_chunk(1, &body));
    }
    p.fe.read(now, usize::MAX);
    let held = p.fe.streams[&1].queue as usize;
    // Pausing is checked between runs of chunks for one stream.
    assert!(
        held > 64 * 1024 && held <= 64 * 1024 + RUN * body.len(),
        "{held}"
    );
    assert!(p.fe.t.inb.len() <= IN_BURST);
    assert!(!p.fe.inbox.is_empty(), "the rest waits in the socket");
    assert!(p.fe.closed.is_none());
    // Its keepalive does not hold the full look-ahead against the peer.
    p.advance(Duration::from_secs(40));
    assert!(p.fe.closed.is_none());
}

#[test]
fn a_peer_that_does_not_read_is_closed() {
    let mut p = Pair::new(fe_config(), be_config());
    let ping = chunk(&[b"NOOP: 1", b"PING: 1795303899.5038"], b"!");
    let now = p.now;
    let mut input = Vec::new();
    for _ in 0..OUT_LIMIT / 30 {
        input.extend_from_slice(&ping);
    }
    for piece in input.chunks(256 * 1024) {
        p.fe.inbox.extend_from_slice(piece);
        p.fe.read(now, usize::MAX);
        if p.fe.closed.is_some() {
            break;
        }
    }
    assert!(matches!(p.fe.closed, Some(CloseReason::PeerDoesNotRead(n)) if n > OUT_LIMIT));
}

#[test]
fn one_skb_per_stream_per_batch_and_a_prompt_for_a_lone_header() {
    let mut p = Pair::new(fe_config(), be_config());
    open(&mut p, 1, 0, 0, 1 << 40);
    open(&mut p, 2, 0, 0, 1 << 40);
    let n = p.fe.t.poll_transmit().len();
    p.fe.t.advance_transmit(n);
    let now = p.now;
    for _ in 0..10 {
        p.fe.inbox.extend(data_chunk(1, &[7u8; 3000]));
        p.fe.inbox.extend(data_chunk(2, &[7u8; 100]));
    }
    p.fe.read(now, usize::MAX);
    let acks = chunks(p.fe.t.poll_transmit());
    assert_eq!(
        acks,
        [
            (Some(1), "SKB 29".to_string()),
            (Some(2), "SKB 0".to_string())
        ]
    );
    let n = p.fe.t.poll_transmit().len();
    p.fe.t.advance_transmit(n);
    // A chunk header alone (its sender holds the body back until it is
    // acknowledged): an SKB goes at once, with no progress to report.
    let whole = data_chunk(2, &[7u8; 500]);
    p.fe.inbox.extend_from_slice(&whole[..whole.len() - 500]);
    p.fe.read(now, usize::MAX);
    assert_eq!(
        chunks(p.fe.t.poll_transmit()),
        [(Some(2), "SKB 0".to_string())]
    );
    let n = p.fe.t.poll_transmit().len();
    p.fe.t.advance_transmit(n);
    p.fe.read(now, usize::MAX);
    assert!(p.fe.t.poll_transmit().is_empty(), "answered once");
    p.fe.inbox.extend_from_slice(&whole[whole.len() - 500..]);
    p.fe.read(now, usize::MAX);
    assert_eq!(
        chunks(p.fe.t.poll_transmit()),
        [(Some(2), "SKB 1".to_string())]
    );
}

#[test]
fn unknown_streams_get_eof_and_their_eof_is_ignored() {
    let mut p = Pair::new(fe_config(), be_config());
    let now = p.now;
    p.fe.inbox.extend(data_chunk(9, b"hello"));
    p.fe.inbox.extend(chunk(&[b"SID: 8", b"EOF: 1WR"], b"Bye!"));
    // A frontend opens no stream for a Proto/Host chunk.
    p.fe.inbox
        .extend(chunk(&[b"SID: 7", b"Proto: http", b"Host: a.test"], b"x"));
    p.fe.read(now, usize::MAX);
    assert_eq!(
        chunks(p.fe.t.poll_transmit()),
        [
            (Some(9), format!("EOF {:?}", Eof::BOTH)),
            (Some(7), format!("EOF {:?}", Eof::BOTH))
        ]
    );
    assert_eq!(p.fe.t.stream_count(), 0);
}

#[test]
fn in_band_kite_chunks_reach_the_role_and_its_answer_goes_back() {
    let mut p = Pair::new(fe_config(), be_config());
    p.exchange();
    // The frontend's role answers a kite request with SignThis, then OK.
    p.fe.control = Some(Box::new(move |f: &Frame<'_>| {
        let kite = f
            .headers()
            .find(|(n, _)| n.eq_ignore_ascii_case("X-PageKite"))
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        let answer = if kite.ends_with("::sig") {
            "X-PageKite-SignThis: http:foo.test:s:chal".to_string()
        } else {
            "X-PageKite-OK: http:foo.test:s".to_string()
        };
        Control {
            reply: Some((vec!["NOOP: 1".to_string(), answer], b"!")),
            next: Next::Live,
        }
    }));
    let answers = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = answers.clone();
    p.be.control = Some(Box::new(move |f: &Frame<'_>| {
        let reply = crate::proto::handshake::parse_reply(f.headers());
        seen.borrow_mut().extend(reply.answers);
        Control::CONTINUE
    }));
    let ask = |p: &mut Pair, line: &str| {
        let lines = ["NOOP: 1".to_string(), format!("X-PageKite: {line}")];
        let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        p.fe.inbox.extend(chunk(&lines, b"\r\n!"));
        let now = p.now;
        p.fe.read(now, usize::MAX);
        p.exchange();
    };
    ask(&mut p, "http:foo.test:s::sig");
    ask(&mut p, "http:foo.test:s:chal:sig2");
    use crate::proto::handshake::KiteAnswer;
    assert_eq!(
        *answers.borrow(),
        [
            KiteAnswer::SignThis {
                what: "http:foo.test:s".into(),
                challenge: "chal".into()
            },
            KiteAnswer::Ok {
                what: "http:foo.test:s".into()
            }
        ]
    );
    // An answer that accepts nothing ends the tunnel once it went out.
    p.fe.control = Some(Box::new(|_: &Frame<'_>| Control {
        reply: Some((
            vec!["NOOP: 1".into(), "X-PageKite-Invalid: x:y:z".into()],
            b"!",
        )),
        next: Next::Closing,
    }));
    ask(&mut p, "http:bar.test:s::sig");
    assert_eq!(p.fe.closed, Some(CloseReason::Done));
    // A role that fails the chunk closes the tunnel at once.
    let mut p = Pair::new(fe_config(), be_config());
    p.fe.control = Some(Box::new(|_: &Frame<'_>| Control {
        reply: None,
        next: Next::Fail(ControlError::TooManyRounds),
    }));
    ask(&mut p, "http:foo.test:s::sig");
    assert_eq!(
        p.fe.closed,
        Some(CloseReason::Control(ControlError::TooManyRounds))
    );
    // A PING, SKB or PONG alone is not the role's business.
    let mut p = Pair::new(fe_config(), be_config());
    p.fe.control = Some(Box::new(|_: &Frame<'_>| Control {
        reply: None,
        next: Next::Fail(ControlError::NoKiteAccepted),
    }));
    p.exchange();
    open(&mut p, 1, 5000, 5000, 1 << 40);
    pump(&mut p, &[1], 10);
    p.advance(Duration::from_secs(20));
    p.exchange();
    assert!(p.fe.closed.is_none());
    p.check_complete().unwrap();
}

#[test]
fn open_stream_refuses_what_it_cannot_send_exactly() {
    let mut p = Pair::new(fe_config(), be_config());
    let long = "a".repeat(300);
    let head = StreamHead {
        proto: "http",
        host: &long,
        port: 80,
        remote_ip: "::1",
        remote_port: 1,
        tls: true,
    };
    let now = p.now;
    assert!(matches!(
        p.fe.t.open_stream(1, &head, b"", 1, now),
        Err(OpenError::Header(_))
    ));
    let head = StreamHead {
        host: "foo.test",
        ..head
    };
    assert_eq!(p.fe.t.open_stream(1, &head, b"", 1, now), Ok(1));
    assert_eq!(
        p.fe.t.open_stream(1, &head, b"", 2, now),
        Ok(2),
        "next free"
    );
    let sent = p.fe.t.poll_transmit();
    let (f, _) = frame::decode(sent).unwrap().unwrap();
    assert_eq!(
        (f.proto, f.host, f.port, f.rip, f.rport, f.rtls),
        (
            Some("http"),
            Some("foo.test"),
            Some("80"),
            Some("::1"),
            Some("1"),
            true
        )
    );
}

#[test]
fn the_handles_come_back_as_given() {
    let mut p = Pair::new(fe_config(), be_config());
    open(&mut p, 5, 10, 10, 1 << 40);
    assert_eq!(p.fe.t.handles().collect::<Vec<_>>(), [(5, handle_of(5))]);
    assert_eq!(p.be.t.handles().collect::<Vec<_>>(), [(5, handle_of(5))]);
}

/// Counts what it is given and takes it all at once.
struct Count(u64);

impl Sink<u32> for Count {
    fn open(&mut self, new: &NewStream<'_>) -> Open<u32> {
        Open::Accepted {
            handle: new.sid,
            queued: 0,
        }
    }
    fn data(&mut self, _: u32, _: u32, bodies: &[&[u8]]) -> Delivered {
        let n: usize = bodies.iter().map(|b| b.len()).sum();
        self.0 += n as u64;
        Delivered {
            written: n,
            queued: 0,
            fault: None,
        }
    }
    fn control(&mut self, _: &Frame<'_>) -> Control {
        Control::CONTINUE
    }
}

fn carry(
    from: &mut Tunnel<u32>,
    to: &mut Tunnel<u32>,
    sink: &mut Count,
    wire: &mut [u8],
    now: Instant,
) {
    loop {
        let out = from.poll_transmit();
        let n = out.len().min(wire.len());
        if n == 0 {
            return;
        }
        wire[..n].copy_from_slice(&out[..n]);
        from.advance_transmit(n);
        to.handle_input(now, &wire[..n], sink);
        to.end_batch();
    }
}

/// The core's own cost per GiB relayed (no sockets, no model): run with
/// `cargo test --release --lib tunnel_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn tunnel_cost() {
    let now = Pair::epoch();
    let mut fe: Tunnel<u32> = Tunnel::new(fe_config(), now, Duration::ZERO);
    let mut be: Tunnel<u32> = Tunnel::new(be_config(), now, Duration::ZERO);
    fe.set_serving(true);
    be.set_serving(true);
    let head = StreamHead {
        proto: "http",
        host: "foo.test",
        port: 80,
        remote_ip: "127.0.0.1",
        remote_port: 1,
        tls: false,
    };
    fe.open_stream(1, &head, b"GET / HTTP/1.1\r\n\r\n", 1, now)
        .unwrap();
    let (mut to_fe, mut to_be) = (Count(0), Count(0));
    let total: u64 = 1 << 30;
    let mut sent = 0u64;
    #[allow(clippy::disallowed_methods)]
    let t0 = Instant::now();
    let mut wire = vec![0u8; 256 * 1024];
    while to_fe.0 < total {
        // The backend's origin answers: a 64 KiB readv into frame slots.
        while sent < total {
            let Ok(mut space) = be.send_space(1, 1 << 20) else {
                break;
            };
            let n: usize = space.bodies().map(|b| b.len()).sum();
            be.commit_send(1, n, now);
            sent += n as u64;
        }
        // The wire carries it; the frontend delivers it and acknowledges.
        carry(&mut be, &mut fe, &mut to_fe, &mut wire, now);
        carry(&mut fe, &mut be, &mut to_be, &mut wire, now);
        while be.poll_event().is_some() {}
        while fe.poll_event().is_some() {}
    }
    let spent = t0.elapsed();
    // The same bytes copied twice (as the kernel does on send and receive)
    // with nothing else: what the core adds is the difference.
    let mut a = vec![1u8; 256 * 1024];
    let mut b = vec![0u8; 256 * 1024];
    #[allow(clippy::disallowed_methods)]
    let t1 = Instant::now();
    for _ in 0..(to_fe.0 / a.len() as u64) {
        b.copy_from_slice(&a);
        a.copy_from_slice(&b);
        std::hint::black_box((&a, &b));
    }
    let copies = t1.elapsed();
    let per_gib = |d: Duration| d.as_secs_f64() * 1000.0 * (1u64 << 30) as f64 / to_fe.0 as f64;
    eprintln!(
        "core: {:.0} ms per GiB relayed (both ends, two copies included; the copies alone: {:.0} ms)",
        per_gib(spent),
        per_gib(copies)
    );
}

#[test]
fn a_big_chunk_being_copied_counts_in_the_buffer_budget() {
    let mut p = Pair::new(fe_config(), be_config());
    p.fe.t.set_serving(true);
    open(&mut p, 1, 0, 0, 0);
    let idle = p.fe.t.buffers_capacity();
    assert!(idle < IN_BASE, "the input's base is not counted: {idle}");
    // Most of a chunk of 1 MiB for a stalled visitor: the authenticated
    // tunnel's input grows to hold it whole, and the budget sees that.
    let chunk = data_chunk(1, &vec![0u8; frame::MAX_PAYLOAD - 16]);
    let part = chunk.get(..chunk.len() - 4096).unwrap_or_default();
    p.fe.inbox.extend_from_slice(part);
    let now = p.now;
    p.fe.read(now, usize::MAX);
    assert!(p.fe.closed.is_none(), "{:?}", p.fe.closed);
    let held = p.fe.t.buffers_capacity();
    assert!(
        held >= part.len() - IN_BURST,
        "{held} counted while {} bytes of a chunk wait",
        part.len()
    );
}
