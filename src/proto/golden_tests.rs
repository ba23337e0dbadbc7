//! Golden tests: real pagekite.py captures (tests/data/transcripts) replayed
//! through the codec, the handshake parsers and the sniffer, with every frame
//! split at every byte. Test-only.

use std::collections::BTreeMap;

use super::frame::{self, FrameError};
use super::handshake::{self, KiteAnswer};
use super::sniff::{self, Sniff};

/// `(connection, direction)` → the bytes that went that way, in order. The
/// recorder logs at most 2000 bytes of a read; a stream ends at the first
/// read it cut short, so every stream here is an exact prefix of the wire.
pub(super) type Streams = BTreeMap<(u32, String), Vec<u8>>;

pub(super) fn load(name: &str) -> Streams {
    let path = format!(
        "{}/tests/data/transcripts/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut streams = Streams::new();
    let mut cut = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (_time, conn, dir, kind) = (words.next(), words.next(), words.next(), words.next());
        let (Some(conn), Some(dir), Some(kind)) = (conn, dir, kind) else {
            continue;
        };
        if !kind.starts_with("RAW[") {
            continue;
        }
        let conn: u32 = conn
            .trim_start_matches('#')
            .parse()
            .expect("connection number");
        let literal = line.split_once("] ").expect("literal").1;
        let bytes = python_bytes(literal);
        let declared: usize = kind
            .trim_start_matches("RAW[")
            .trim_end_matches(']')
            .parse()
            .expect("length");
        let key = (conn, dir.to_string());
        if cut.contains(&key) {
            continue;
        }
        if bytes.len() < declared {
            assert_eq!(bytes.len(), 2000, "{name}: {line:.80}");
            cut.push(key.clone());
        }
        streams.entry(key).or_default().extend(bytes);
    }
    streams
}

/// Decodes a Python `b'...'` / `b"..."` literal.
fn python_bytes(literal: &str) -> Vec<u8> {
    let literal = literal.trim();
    let quote = literal.as_bytes()[1];
    let inner = &literal.as_bytes()[2..literal.len() - 1];
    assert_eq!(inner.len() + 3, literal.len());
    assert_eq!(literal.as_bytes()[literal.len() - 1], quote);
    let mut out = Vec::new();
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = inner[i + 1];
        i += 2;
        match e {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'\\' | b'\'' | b'"' => out.push(e),
            b'x' => {
                let hex = std::str::from_utf8(&inner[i..i + 2]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            other => panic!("unknown escape \\{}", other as char),
        }
    }
    out
}

pub(super) fn head_len(bytes: &[u8]) -> usize {
    frame::find(bytes, b"\r\n\r\n").expect("a head") + 4
}

/// Decodes every frame after the handshake head, checking that each frame is
/// `NeedMore` at every split point before its end and whole at its end.
/// Each decoded frame's SID and body length.
type Decoded = Vec<(Option<u32>, usize)>;

fn replay(bytes: &[u8]) -> Result<Decoded, (usize, FrameError)> {
    let mut at = head_len(bytes);
    let mut frames = Vec::new();
    while at < bytes.len() {
        let rest = &bytes[at..];
        let (f, used) = match frame::decode(rest) {
            Ok(Some(x)) => x,
            Ok(None) => break,
            Err(e) => return Err((frames.len(), e)),
        };
        for cut in 0..used {
            assert_eq!(
                frame::decode(&rest[..cut]),
                Ok(None),
                "frame {} cut at {cut}",
                frames.len()
            );
        }
        frames.push((f.sid, f.body.len()));
        at += used;
    }
    Ok(frames)
}

#[test]
fn uncompressed_captures_decode_at_every_split() {
    for name in ["mitm2.raw.log", "mitm3.raw.log"] {
        let streams = load(name);
        let mut tunnels = 0;
        for ((conn, dir), bytes) in &streams {
            let request = streams
                .get(&(*conn, "BE->FE".to_string()))
                .map_or(&[][..], |b| &b[..]);
            let is_tunnel = request.starts_with(b"CONNECT PageKite");
            if !is_tunnel || (dir == "FE->BE" && !request.starts_with(b"CONNECT")) {
                continue;
            }
            let frames = replay(bytes).unwrap_or_else(|e| panic!("{name} #{conn} {dir}: {e:?}"));
            tunnels += usize::from(!frames.is_empty());
        }
        assert!(tunnels >= 2, "{name}: expected chunks both ways");
    }
}

#[test]
fn compressed_chunks_are_refused_not_misread() {
    let streams = load("mitm1.raw.log");
    let fe_to_be = &streams[&(3, "FE->BE".to_string())];
    let (decoded_before, err) = replay(fe_to_be).expect_err("ZChunks must be refused");
    assert_eq!(err, FrameError::Compressed);
    assert!(
        decoded_before >= 1,
        "the in-band OK chunk precedes the first ZChunk"
    );
}

#[test]
fn captured_handshakes_parse_and_verify() {
    // Run 1: in-band re-signing; the signed NOOP line verifies with the secret.
    let s1 = load("mitm1.raw.log");
    let request = &s1[&(3, "BE->FE".to_string())];
    let head = &request[..head_len(request)];
    let parsed = handshake::parse_request(head).unwrap();
    assert!(parsed.has_feature("AddKites") && parsed.has_feature("ZChunks"));
    let answer = &s1[&(3, "FE->BE".to_string())];
    let (_, headers) = handshake::split_head(&answer[..head_len(answer)]).unwrap();
    let reply = handshake::parse_reply(headers);
    assert!(
        matches!(&reply.answers[0], KiteAnswer::SignThis { challenge, .. } if challenge == "t423212fa8c36cd5acb8a1e8a832ae715def")
    );
    let (noop, _) = frame::decode(&request[head.len()..]).unwrap().unwrap();
    let inband = handshake::parse_kite_headers(noop.headers()).unwrap();
    let kite = &inband.kites[0];
    assert!(handshake::verify("s3cret", &kite.payload(), &kite.sign));

    // Run 2: the reconnect flow; four kites signed with s3cret, one with WRONG.
    let s2 = load("mitm2.raw.log");
    let second = &s2[&(4, "BE->FE".to_string())];
    let parsed = handshake::parse_request(&second[..head_len(second)]).unwrap();
    assert!(parsed.replace.is_some());
    let good: Vec<bool> = parsed
        .kites
        .iter()
        .map(|k| handshake::verify("s3cret", &k.payload(), &k.sign))
        .collect();
    assert_eq!(good, [true, true, true, true, false]);
    let answer = &s2[&(4, "FE->BE".to_string())];
    let (_, headers) = handshake::split_head(&answer[..head_len(answer)]).unwrap();
    let reply = handshake::parse_reply(headers);
    let oks = reply
        .answers
        .iter()
        .filter(|a| matches!(a, KiteAnswer::Ok { .. }))
        .count();
    assert_eq!(oks, 4);
    assert!(
        reply
            .answers
            .iter()
            .any(|a| matches!(a, KiteAnswer::Invalid { why, .. } if why == "signature"))
    );
}

#[test]
fn captured_openings_sniff_at_every_split() {
    type Expect = fn(&Sniff) -> bool;
    let cases: &[(&str, u32, Expect)] = &[
        ("mitm1.raw.log", 1, |s| matches!(s, Sniff::Ping { .. })),
        ("mitm1.raw.log", 3, |s| matches!(s, Sniff::Tunnel { .. })),
        ("mitm2.raw.log", 4, |s| matches!(s, Sniff::Tunnel { .. })),
        (
            "mitm-tls.raw.log",
            3,
            |s| matches!(s, Sniff::Connect { host, port: 443, .. } if host == "fe.test"),
        ),
        ("mitm5-nocertcheck.raw.log", 3, |s| {
            matches!(s, Sniff::Tls { sni: None })
        }),
    ];
    for (name, conn, expect) in cases {
        let streams = load(name);
        let bytes = &streams[&(*conn, "BE->FE".to_string())];
        let whole = sniff::sniff(bytes);
        assert!(expect(&whole), "{name} #{conn}: {whole:?}");
        let decided_at = (1..=bytes.len())
            .find(|&k| sniff::sniff(&bytes[..k]) != Sniff::NeedMore)
            .unwrap();
        for k in 0..decided_at {
            assert_eq!(
                sniff::sniff(&bytes[..k]),
                Sniff::NeedMore,
                "{name} #{conn} at {k}"
            );
        }
        assert!(
            expect(&sniff::sniff(&bytes[..decided_at])),
            "{name} #{conn} decided early"
        );
    }
    // Inside the TLS tunnel of run 4 the backend's ClientHello has no SNI.
    let tls = load("mitm-tls.raw.log");
    let bytes = &tls[&(3, "BE->FE".to_string())];
    let hello = &bytes[head_len(bytes)..];
    assert!(matches!(sniff::sniff(hello), Sniff::Tls { sni: None }));
}
