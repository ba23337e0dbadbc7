//! Tests of the core's part in kernel splicing: a chunk peeked at every
//! split point is a candidate exactly when its whole head is in; a body
//! taken partly by "splice" and partly the copying way reaches the stream
//! whole and in order, with the chunk after it acted on as usual; a spliced
//! send's head and body decode as one data chunk counted in the window.

use std::time::{Duration, Instant};

use super::super::pair::Pair;

use super::super::super::frame::{self, Frame, Line};
use super::super::{
    Config, Control, Delivered, Event, IN_BURST, NewStream, Open, Role, Sink, StreamHead, Tunnel,
};

/// Keeps what it is given, per stream.
#[derive(Default)]
struct Keep(Vec<(u32, Vec<u8>)>);

impl Sink<u32> for Keep {
    fn open(&mut self, new: &NewStream<'_>) -> Open<u32> {
        self.0.push((new.sid, new.body.to_vec()));
        Open::Accepted {
            handle: new.sid,
            queued: 0,
        }
    }
    fn data(&mut self, _: u32, sid: u32, bodies: &[&[u8]]) -> Delivered {
        let mut n = 0;
        for b in bodies {
            self.0.push((sid, b.to_vec()));
            n += b.len();
        }
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

const HEAD: StreamHead<'static> = StreamHead {
    proto: "http",
    host: "a.test",
    port: 80,
    remote_ip: "127.0.0.1",
    remote_port: 5000,
    tls: false,
};

/// A frontend core with stream 7 open and its first chunk sent.
fn frontend(now: Instant) -> Tunnel<u32> {
    let mut t = Tunnel::new(Config::new(Role::Frontend), now, Duration::ZERO);
    t.set_serving(true);
    let sid = t.open_stream(7, &HEAD, b"GET / HTTP/1.1\r\n\r\n", 7, now);
    assert_eq!(sid, Ok(7));
    let n = t.poll_transmit().len();
    t.advance_transmit(n);
    t
}

fn data_chunk(sid: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let sid = Line::number("SID", u64::from(sid));
    frame::encode(&mut out, &[sid.as_bytes()], body);
    out
}

fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

/// A live frontend with stream 7, a sink, and a 20,000-byte body with its
/// whole chunk as it comes from the backend: (tunnel, sink, body, chunk).
fn frontend_and_chunk(now: Instant) -> (Tunnel<u32>, Keep, Vec<u8>, Vec<u8>) {
    let payload = body(20_000);
    let wire = data_chunk(7, &payload);
    (frontend(now), Keep::default(), payload, wire)
}

#[test]
fn a_peeked_chunk_is_a_candidate_once_its_head_is_whole() {
    let now = Pair::epoch();
    let t = frontend(now);
    let payload = body(20_000);
    let wire = data_chunk(7, &payload);
    let head = wire.len() - payload.len();
    for split in 0..=wire.len().min(head + 64) {
        let c = t.splice_candidate(&wire[..split], 8192);
        if split < head {
            assert_eq!(c, None, "split {split}");
        } else {
            let c = c.unwrap_or_else(|| panic!("split {split}: no candidate"));
            assert_eq!((c.sid, c.handle, c.head, c.body), (7, 7, head, 20_000));
        }
    }
    // Too small, an unknown stream, or anything but plain data: copied.
    assert_eq!(t.splice_candidate(&wire, 20_001), None);
    assert_eq!(t.splice_candidate(&data_chunk(8, &payload), 1), None);
    let mut eof = Vec::new();
    frame::encode_eof(&mut eof, 7, frame::Eof::BOTH);
    assert_eq!(t.splice_candidate(&eof, 1), None);
    let mut with_eof = Vec::new();
    frame::encode(&mut with_eof, &[b"SID: 7", b"EOF: 1W"], &payload);
    assert_eq!(t.splice_candidate(&with_eof, 1), None);
}

#[test]
fn a_body_taken_partly_spliced_partly_copied_arrives_whole_and_in_order() {
    let payload = body(50_000);
    let wire = data_chunk(7, &payload);
    let head = wire.len() - payload.len();
    let mut next = Vec::new();
    frame::encode_eof(
        &mut next,
        7,
        frame::Eof {
            read: true,
            write: false,
        },
    );
    // Every split of the body between the reactor's pipe and the input.
    for spliced in (0..=payload.len()).step_by(997).chain([payload.len()]) {
        let now = Pair::epoch();
        let mut t = frontend(now);
        let mut sink = Keep::default();
        // The reactor read up to the end of the head (and a few body bytes
        // when `spliced` is small, as an ordinary read may).
        let first = (spliced % 3).min(payload.len() - spliced);
        let taken = t.handle_input(now, &wire[..head + first], &mut sink);
        assert_eq!(taken, head + first);
        let c = t.partial_candidate(1).expect("a partial chunk");
        assert_eq!((c.sid, c.head, c.body), (7, 0, payload.len() - first));
        t.splice_begin(&c, &mut sink);
        assert!(t.recv_slot().is_none(), "nothing read while splicing");
        let moved = spliced.min(payload.len() - first);
        t.splice_taken(moved, now);
        let rest = payload.len() - first - moved;
        if rest > 0 {
            assert_eq!(t.splice_left(), Some((7, rest)));
            t.splice_copy();
            assert_eq!(t.splice_left(), None);
        } else {
            assert_eq!(t.splice_left(), None);
        }
        let mut tail = wire[head + first + moved..].to_vec();
        tail.extend_from_slice(&next);
        // The rest arrives cut in two pieces.
        let cut = tail.len() / 2;
        t.handle_input(now, &tail[..cut], &mut sink);
        t.handle_input(now, &tail[cut..], &mut sink);
        t.end_batch();
        // What the sink got, plus what was "spliced", is the body in order.
        let mut got: Vec<u8> = Vec::new();
        for (sid, b) in &sink.0 {
            assert_eq!(*sid, 7);
            got.extend_from_slice(b);
        }
        assert_eq!(got.len() + moved, payload.len(), "spliced {moved}");
        assert_eq!(&got[..first], &payload[..first]);
        assert_eq!(&got[first..], &payload[first + moved..]);
        // The EOF after it was acted on.
        let mut eof = false;
        while let Some(e) = t.poll_event() {
            eof |= matches!(e, Event::PeerEof { sid: 7, .. });
        }
        assert!(eof, "the EOF after the body was acted on");
        let (bytes_in, _) = t.bytes();
        assert_eq!(bytes_in as usize, wire.len() + next.len());
    }
}

#[test]
fn a_spliced_send_is_one_data_chunk_counted_in_the_window() {
    let now = Pair::epoch();
    let mut t = Tunnel::new(Config::new(Role::Frontend), now, Duration::ZERO);
    t.set_serving(true);
    assert_eq!(t.open_stream(9, &HEAD, b"x", 9, now), Ok(9));
    // The first chunk is still queued: splicing now would jump it.
    assert_eq!(t.splice_send_space(9, 1 << 20), Ok(0));
    let n = t.poll_transmit().len();
    t.advance_transmit(n);
    let before = t.stream(9).expect("stream").window - t.stream(9).expect("stream").unacked;
    let room = t.splice_send_space(9, 30_000).expect("room");
    assert_eq!(room, 30_000);
    let head = t.commit_splice_send(9, room, now).expect("a head");
    let payload = body(room);
    let mut wire = head.as_bytes().to_vec();
    wire.extend_from_slice(&payload);
    let (f, used) = frame::decode(&wire).expect("valid").expect("whole");
    assert_eq!((f.sid, f.body, used), (Some(9), &payload[..], wire.len()));
    let info = t.stream(9).expect("stream");
    assert_eq!(info.window - info.unacked, before - 30_000);
    // The largest spliced body still fits the four hex digits.
    let most = t.splice_send_space(9, usize::MAX).expect("room");
    assert!(most <= frame::max_data_body(9));
}

#[test]
fn a_spliced_chunk_whose_head_came_alone_gets_the_prompt_skb() {
    let now = Pair::epoch();
    let (mut t, mut sink, payload, wire) = frontend_and_chunk(now);
    let head = wire.len() - payload.len();
    // libpagekite writes a head, then holds the body until it is acked.
    t.handle_input(now, &wire[..head], &mut sink);
    let c = t.partial_candidate(1).expect("a partial chunk");
    t.splice_begin(&c, &mut sink);
    t.end_batch();
    let out = t.poll_transmit().to_vec();
    let (f, _) = frame::decode(&out).expect("valid").expect("a chunk");
    assert_eq!((f.sid, f.skb.is_some()), (Some(7), true), "{out:?}");
}

/// Spliced bodies written on within one batch of reads are acknowledged
/// once, at its end, as copied ones are: not with an SKB per chunk.
#[test]
fn spliced_chunks_in_one_batch_get_one_skb() {
    let now = Pair::epoch();
    let (mut t, mut sink, payload, wire) = frontend_and_chunk(now);
    let head = wire.len() - payload.len();
    for _ in 0..3 {
        assert_eq!(t.handle_input(now, &wire[..head], &mut sink), head);
        let c = t.partial_candidate(1).expect("a partial chunk");
        t.splice_begin(&c, &mut sink);
        t.splice_taken(payload.len(), now);
        assert_eq!(t.splice_left(), None);
        let f = t.stream_flushed_in_batch(7, payload.len(), 0);
        assert!(!f.finished);
        assert!(t.poll_transmit().is_empty(), "no SKB before the batch ends");
    }
    t.end_batch();
    let out = t.poll_transmit().to_vec();
    let (f, used) = frame::decode(&out).expect("valid").expect("a chunk");
    assert_eq!((f.sid, f.skb), (Some(7), Some(60_000 / 1024)), "{out:?}");
    assert_eq!(
        used,
        out.len(),
        "one SKB: {}",
        String::from_utf8_lossy(&out)
    );
}

/// A chunk bigger than the input's burst size whose body is not spliced
/// (its stream's pipes are full, or its bytes must be read) goes to the
/// stream piece by piece: the input never grows past `IN_BURST` for it
/// (where `--buffers` would start counting it), the body arrives
/// whole and in order, and the chunk after it is acted on. A chunk that
/// fits the burst is gathered whole, as before.
#[test]
fn a_big_body_that_is_not_spliced_comes_in_pieces() {
    let payload = body(1_000_000);
    let wire = data_chunk(7, &payload);
    let head = wire.len() - payload.len();
    let mut next = Vec::new();
    frame::encode_eof(&mut next, 7, frame::Eof::BOTH);
    // Every kind of first read (the head alone, a little of the body, a
    // burst's worth), then the rest in reads of several sizes.
    for (first, piece) in [
        (0, 65_536),
        (1, 4_000),
        (9_973, 100_003),
        (200_000, 262_144),
    ] {
        let now = Pair::epoch();
        let mut t = frontend(now);
        let mut sink = Keep::default();
        assert_eq!(
            t.handle_input(now, &wire[..head + first], &mut sink),
            head + first
        );
        let c = t.partial_candidate(1).expect("a partial chunk");
        assert!(t.copy_in_pieces(&c, &mut sink), "first {first}");
        assert_eq!(t.splice_left(), None, "copied, not spliced");
        assert!(t.recv_slot().is_some(), "read on");
        t.end_batch();
        if first == 0 {
            // The head came alone: the prompt SKB a sender may wait for.
            let out = t.poll_transmit().to_vec();
            let (f, _) = frame::decode(&out).expect("valid").expect("a chunk");
            assert_eq!((f.sid, f.skb.is_some()), (Some(7), true), "{out:?}");
        }
        let mut tail = wire[head + first..].to_vec();
        tail.extend_from_slice(&next);
        for part in tail.chunks(piece) {
            assert_eq!(t.handle_input(now, part, &mut sink), part.len());
            let input = t.inb.capacity();
            assert!(
                input <= IN_BURST,
                "first {first}, pieces of {piece}: {input}"
            );
        }
        let got: Vec<u8> = sink.0.iter().flat_map(|(_, b)| b.clone()).collect();
        assert!(sink.0.iter().all(|(sid, _)| *sid == 7));
        assert!(got == payload, "first {first}: {} bytes", got.len());
        let mut eof = false;
        while let Some(e) = t.poll_event() {
            eof |= matches!(e, Event::PeerEof { sid: 7, .. });
        }
        assert!(eof, "the EOF after the body was acted on");
    }
    // A chunk that fits the burst is not taken apart.
    let now = Pair::epoch();
    let (mut t, mut sink, small, wire) = frontend_and_chunk(now);
    let head = wire.len() - small.len();
    t.handle_input(now, &wire[..head + 100], &mut sink);
    let c = t.partial_candidate(1).expect("a partial chunk");
    assert!(!t.copy_in_pieces(&c, &mut sink));
    assert!(
        sink.0.is_empty(),
        "nothing delivered before the chunk is whole"
    );
    t.handle_input(now, &wire[head + 100..], &mut sink);
    assert_eq!(sink.0, vec![(7, small)]);
}

/// A chunk that fits the burst is gathered in an input no bigger than the
/// burst, whatever the reads (small ones leave less than a page of room
/// again and again, which used to double the input past the burst).
#[test]
fn a_chunk_within_the_burst_keeps_the_input_within_it() {
    let payload = body(IN_BURST - 20);
    let mut wire = data_chunk(7, &payload);
    assert!(wire.len() <= IN_BURST, "{}", wire.len());
    wire.extend_from_slice(&data_chunk(7, &body(1000)));
    for piece in [4_000, 4_095, 65_536, 100_000] {
        let now = Pair::epoch();
        let mut t = frontend(now);
        let mut sink = Keep::default();
        for part in wire.chunks(piece) {
            assert_eq!(t.handle_input(now, part, &mut sink), part.len());
            let input = t.inb.capacity();
            assert!(input <= IN_BURST, "pieces of {piece}: {input}");
        }
        let got: usize = sink.0.iter().map(|(_, b)| b.len()).sum();
        assert_eq!(got, payload.len() + 1000, "pieces of {piece}");
    }
}
