//! Tests of `frame.rs` (kept apart so the module itself stays readable).
use super::*;

fn one(input: &[u8]) -> Frame<'_> {
    let (frame, used) = decode(input).unwrap().unwrap();
    assert_eq!(used, input.len());
    frame
}

#[test]
fn decodes_first_stream_chunk() {
    let raw = b"9c\r\nSID: 12\r\nProto: http\r\nHost: down.test\r\nPort: 9080\r\nRIP: 127.0.0.1\r\nRPort: 50588\r\n\r\nGET / HTTP/1.1\r\nHost: down.test\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
    let f = one(raw);
    assert_eq!(f.sid, Some(12));
    assert_eq!(f.proto, Some("http"));
    assert_eq!(f.host, Some("down.test"));
    assert_eq!(f.port, Some("9080"));
    assert_eq!(f.rip, Some("127.0.0.1"));
    assert_eq!(f.rport, Some("50588"));
    assert!(f.body.starts_with(b"GET / HTTP/1.1\r\n"));
    assert!(!f.rtls && !f.noop && f.eof.is_none());
}

#[test]
fn decodes_control_chunks() {
    let f = one(b"1b\r\nNOOP: 1\r\nSID: 5\r\nSKB: 0\r\n\r\n");
    assert!(f.noop);
    assert_eq!((f.sid, f.skb), (Some(5), Some(0)));
    let f = one(b"23\r\nNOOP: 1\r\nPING: 1795303899.5038\r\n\r\n!");
    assert_eq!(f.ping, Some("1795303899.5038"));
    let f = one(b"17\r\nSID: 5\r\nEOF: 1R\r\n\r\nBye!");
    assert_eq!(
        f.eof,
        Some(Eof {
            read: true,
            write: false
        })
    );
    let f = one(b"18\r\nSID: 5\r\nEOF: 1WR\r\n\r\nBye!");
    assert_eq!(f.eof, Some(Eof::BOTH));
}

#[test]
fn eof_letters_in_any_order_and_case() {
    assert_eq!(Eof::parse("1RW"), Eof::BOTH);
    assert_eq!(Eof::parse("1rw"), Eof::BOTH);
    assert_eq!(Eof::parse("1"), Eof::BOTH);
    assert_eq!(
        Eof::parse("1w"),
        Eof {
            read: false,
            write: true
        }
    );
}

#[test]
fn needs_more_at_every_split() {
    let raw = b"17\r\nSID: 5\r\nEOF: 1R\r\n\r\nBye!";
    for cut in 0..raw.len() {
        assert_eq!(decode(&raw[..cut]), Ok(None), "cut at {cut}");
    }
}

#[test]
fn back_to_back_frames() {
    let raw = b"a\r\nSID: 5\r\n\r\n17\r\nSID: 5\r\nEOF: 1R\r\n\r\nBye!";
    let (f, used) = decode(raw).unwrap().unwrap();
    assert_eq!((f.sid, f.body), (Some(5), &b""[..]));
    let (f, rest) = decode(&raw[used..]).unwrap().unwrap();
    assert!(f.eof.is_some());
    assert_eq!(used + rest, raw.len());
}

#[test]
fn tolerates_reset_suffix_and_leading_zeros() {
    let f = one(b"000aR\r\nSID: 5\r\n\r\n");
    assert!(f.reset);
    assert_eq!(f.sid, Some(5));
}

#[test]
fn rejects_malformed_frames() {
    assert_eq!(decode(b"0\r\n"), Err(FrameError::ZeroLength));
    assert_eq!(decode(b"zz\r\n"), Err(FrameError::BadLength));
    assert_eq!(decode(b"\r\n"), Err(FrameError::BadLength));
    assert_eq!(decode(b"99Z82\r\nxx"), Err(FrameError::Compressed));
    assert_eq!(
        decode(b"ffffffff\r\n"),
        Err(FrameError::Oversized(0xffffffff))
    );
    assert_eq!(decode(b"123456789\r\n"), Err(FrameError::BadLength));
    assert_eq!(decode(&[b'1'; 40]), Err(FrameError::BadLength));
    assert_eq!(decode(b"4\r\nabcd"), Err(FrameError::NoHeaderEnd));
    assert_eq!(decode(b"6\r\nX: y\r\n"), Err(FrameError::NoHeaderEnd));
    assert_eq!(decode(b"8\r\nX: y\r\n\r\n"), Err(FrameError::MissingSid));
    assert_eq!(
        decode(b"a\r\nSID: x\r\n\r\n"),
        Err(FrameError::BadNumber("SID"))
    );
    assert_eq!(
        decode(b"1b\r\nNOOP: 1\r\nSID: 1\r\nSKB: -\r\n\r\n"),
        Err(FrameError::BadNumber("SKB"))
    );
    assert_eq!(decode(b"b\r\nSID: 1\xff\r\n\r\n"), Err(FrameError::NotText));
    let mut many = Vec::new();
    for _ in 0..65 {
        many.extend_from_slice(b"X: 1\r\n");
    }
    many.extend_from_slice(b"SID: 1\r\n\r\n");
    let mut framed = format!("{:x}\r\n", many.len()).into_bytes();
    framed.extend_from_slice(&many);
    assert_eq!(decode(&framed), Err(FrameError::TooManyHeaders));
}

#[test]
fn encodes_what_pagekite_sends() {
    let mut out = Vec::new();
    encode_eof(&mut out, 5, Eof::BOTH);
    assert_eq!(out, b"18\r\nSID: 5\r\nEOF: 1WR\r\n\r\nBye!");
    out.clear();
    encode_eof(
        &mut out,
        5,
        Eof {
            read: true,
            write: false,
        },
    );
    assert_eq!(out, b"17\r\nSID: 5\r\nEOF: 1R\r\n\r\nBye!");
    out.clear();
    encode_skb(&mut out, 5, 0);
    assert_eq!(out, b"1b\r\nNOOP: 1\r\nSID: 5\r\nSKB: 0\r\n\r\n");
    out.clear();
    encode_ping(&mut out, b"1795303899.5038");
    assert_eq!(out, b"23\r\nNOOP: 1\r\nPING: 1795303899.5038\r\n\r\n!");
    out.clear();
    encode_pong(&mut out, b"1795303899.5038");
    assert_eq!(out, b"23\r\nNOOP: 1\r\nPONG: 1795303899.5038\r\n\r\n!");
}

#[test]
fn pong_echoes_at_most_64_bytes() {
    let mut out = Vec::new();
    encode_pong(&mut out, &[b'7'; 100]);
    let f = one(&out);
    assert_eq!(f.pong.map(str::len), Some(64));
}

#[test]
fn data_slot_round_trip() {
    for sid in [1u32, 9, 10, 131071, u32::MAX] {
        for body in [&b""[..], b"x", &[b'y'; 5000]] {
            let hl = data_header_len(sid);
            let mut frame = vec![0u8; hl];
            fill_data_header(&mut frame, sid, body.len());
            frame.extend_from_slice(body);
            let f = one(&frame);
            assert_eq!(f.sid, Some(sid));
            assert_eq!(f.body, body);
        }
    }
    let sid = 3;
    let mut frame = vec![0u8; data_header_len(sid)];
    fill_data_header(&mut frame, sid, max_data_body(sid));
    frame.resize(frame.len() + max_data_body(sid), b'z');
    assert_eq!(&frame[..4], b"ffff");
    assert_eq!(one(&frame).body.len(), max_data_body(sid));
}

/// A DNS name of exactly `len` bytes: 63-byte labels joined by dots.
fn name_of(len: usize) -> String {
    let mut name = String::new();
    while name.len() < len {
        if !name.is_empty() {
            name.push('.');
        }
        let take = (len - name.len()).min(63);
        name.push_str(&"a".repeat(take));
    }
    assert_eq!(name.len(), len);
    name
}

#[test]
fn host_lines_are_exact_up_to_253_bytes_and_refused_beyond() {
    for len in [1, 90, 91, 200, 252, 253] {
        let host = name_of(len);
        let line = Line::new("Host", host.as_bytes()).unwrap();
        assert_eq!(line.as_bytes(), format!("Host: {host}").as_bytes());
        let mut out = Vec::new();
        let sid = Line::number("SID", 7);
        encode(&mut out, &[sid.as_bytes(), line.as_bytes()], b"x");
        assert_eq!(one(&out).host, Some(host.as_str()), "{len}");
    }
    let host = name_of(254);
    assert_eq!(
        Line::new("Host", host.as_bytes()).err(),
        Some(LineError::ValueTooLong {
            name: "Host",
            len: 254
        })
    );
    assert!(Line::new("Host", &[b'a'; 5000]).is_err());
}

#[test]
fn lines_refuse_control_bytes_and_long_names() {
    for bad in [&b"a.test\r\nSID: 9"[..], b"a\nb", b"a\rb", b"a\0b", b"\x7f"] {
        assert_eq!(
            Line::new("Host", bad).err(),
            Some(LineError::ControlByte { name: "Host" }),
            "{bad:?}"
        );
    }
    let long = "X-Seventeen-Bytes";
    assert_eq!(long.len(), MAX_NAME + 1);
    assert_eq!(
        Line::new(long, b"1").err(),
        Some(LineError::NameTooLong(17))
    );
    assert_eq!(
        Line::number("RPort", u64::MAX).as_bytes(),
        b"RPort: 18446744073709551615"
    );
    assert_eq!(Line::BAD_NAME.as_bytes(), b"X-Bad-Name: 0");
    let mut out = Vec::new();
    encode_pong(&mut out, b"a\rb");
    assert!(
        out.is_empty(),
        "a PONG that can't be echoed exactly is not sent"
    );
}

#[test]
fn long_kite_names_cross_the_handshake_whole() {
    use crate::proto::handshake::{self, KiteAnswer, KiteLine, Prefix};
    for len in [200, 253] {
        let domain = name_of(len);
        let kite = KiteLine {
            proto: "http".into(),
            domain: domain.clone(),
            srand: "0123456789abcdef".into(),
            token: "t".repeat(36),
            sign: "s".repeat(36),
        };
        let head = handshake::build_request("v", None, std::slice::from_ref(&kite));
        let request = handshake::parse_request(head.as_bytes()).unwrap();
        assert_eq!(request.kites, vec![kite.clone()]);

        let lines = handshake::inband_request_lines("v", std::slice::from_ref(&kite));
        let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        let mut out = Vec::new();
        encode(&mut out, &lines, b"\r\n!");
        let f = one(&out);
        let request = handshake::parse_kite_headers(f.headers()).unwrap();
        assert_eq!(request.kites, vec![kite.clone()]);

        let answers = [
            KiteAnswer::Ok { what: kite.what() },
            KiteAnswer::Invalid {
                what: kite.what(),
                why: "signature".into(),
            },
        ];
        let lines = handshake::inband_reply_lines(Prefix::PageKite, &answers, "sess");
        let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        let mut out = Vec::new();
        encode(&mut out, &lines, b"!");
        let reply = handshake::parse_reply(one(&out).headers());
        assert_eq!(reply.answers.first(), answers.first());
        assert!(reply.answers.iter().all(|a| a.what() == kite.what()));
    }
}

#[test]
fn pong_cuts_a_long_token_between_characters() {
    // Found by the frame fuzz target: 63 ASCII bytes then a two-byte
    // character used to be cut in half, and the PONG was not text.
    let token = format!("{}é", "a".repeat(63));
    let mut out = Vec::new();
    encode_pong(&mut out, token.as_bytes());
    assert_eq!(one(&out).pong, Some("a".repeat(63).as_str()));
    let token = "é".repeat(40);
    out.clear();
    encode_pong(&mut out, token.as_bytes());
    assert_eq!(one(&out).pong, Some("é".repeat(32).as_str()));
}

#[test]
fn awaiting_body_only_right_after_a_header() {
    // libpagekite's data chunk, written as a header and then a body.
    let header = b"400a\r\nSID: 1\r\n\r\n";
    let mut raw = header.to_vec();
    raw.extend_from_slice(&[b'x'; 0x400a - 10]);
    for cut in 0..=raw.len() {
        let want = (cut == header.len()).then_some(1);
        assert_eq!(awaiting_body(&raw[..cut]), want, "cut at {cut}");
    }
    // A length with the reset suffix, and a header that is not plain data,
    // count too: the body is what the sender holds back.
    assert_eq!(awaiting_body(b"17R\r\nSID: 9\r\nEOF: 1R\r\n\r\n"), Some(9));
    // A body that starts with a blank line is body, not a header end.
    assert_eq!(awaiting_body(b"10\r\nSID: 1\r\n\r\n\r\n\r\n"), None);
    // No SID, oversized, malformed, compressed: not ours to answer.
    assert_eq!(awaiting_body(b"20\r\nNOOP: 1\r\n\r\n"), None);
    assert_eq!(awaiting_body(b"fffff\r\nSID: 1\r\n\r\n"), None);
    assert_eq!(awaiting_body(b"zz\r\nSID: 1\r\n\r\n"), None);
    assert_eq!(awaiting_body(b"20Z10\r\nSID: 1\r\n\r\n"), None);
    assert_eq!(awaiting_body(b"20\r\nSID: x\r\n\r\n"), None);
}

#[test]
fn chunk_headers_are_read_as_http_heads_are() {
    // One reader for both: a name with whitespace is no header (pagekite.py
    // would not match `SID ` either), values are trimmed, a line without a
    // colon is skipped, and a blank line ends the block.
    let block = "SID: 7\r\nHost : a.test\r\nno colon\r\nProto:  http \r\n\r\nRIP: 1.2.3.4";
    let pairs: Vec<(&str, &str)> = header_lines(block).collect();
    assert_eq!(pairs, [("SID", "7"), ("Proto", "http")]);
    let head = format!("GET / HTTP/1.1\r\n{block}");
    let http: Vec<(&[u8], &[u8])> = crate::proto::sniff::headers(head.as_bytes()).collect();
    assert_eq!(http, [(&b"SID"[..], &b"7"[..]), (b"Proto", b"http")]);
}

#[test]
fn segment_filling_bodies_make_whole_segments() {
    for payload in [CLASSIC_PAYLOAD, MAX_PAYLOAD] {
        for sid in [1, 9, 10, 4_000_000_000] {
            let most = body_within(sid, payload);
            // Loopback, Ethernet, jumbo frames, a tiny MSS.
            for mss in [65_483, 1_448, 1_460, 8_948, 536, 64] {
                let body = segment_filling_body(sid, mss, payload);
                let frame = head_len_for(sid, body) + body;
                let at = format!("payload {payload} sid {sid} mss {mss}");
                assert!(body <= most, "{at}");
                // Whole segments, or one byte short where the length's
                // fifth digit took the byte.
                assert!(frame % mss == 0 || (frame + 1) % mss == 0, "{at}");
                // No more whole segments would fit in a frame.
                assert!(frame + mss > head_len_for(sid, most) + most, "{at}");
            }
            // Unknown or larger than any frame: the largest body.
            assert_eq!(segment_filling_body(sid, 0, payload), most);
            assert_eq!(segment_filling_body(sid, 2_000_000, payload), most);
        }
    }
    let one = segment_filling_body(1, 65_483, CLASSIC_PAYLOAD);
    assert_eq!(one, 65_483 - data_header_len(1));
    // To a peer that takes big chunks: sixteen loopback segments, the head
    // with a fifth length digit.
    let sixteen = segment_filling_body(1, 65_483, MAX_PAYLOAD);
    assert_eq!(head_len_for(1, sixteen), data_header_len(1) + 1);
    assert_eq!(head_len_for(1, sixteen) + sixteen, 16 * 65_483);
}

#[test]
fn wide_data_heads_decode_as_written() {
    for sid in [1, 77, 4_000_000_000] {
        for body in [
            0,
            1,
            65_000,
            max_data_body(sid),
            max_data_body(sid) + 1,
            body_within(sid, MAX_PAYLOAD),
        ] {
            let mut frame = vec![0u8; head_len_for(sid, body)];
            fill_data_header(&mut frame, sid, body);
            frame.resize(frame.len() + body, b'q');
            let f = one(&frame);
            assert_eq!(
                (f.sid, f.body.len()),
                (Some(sid), body),
                "sid {sid} body {body}"
            );
            // Four digits while they hold the payload: the copying path's head.
            if body <= max_data_body(sid) {
                assert_eq!(head_len_for(sid, body), data_header_len(sid));
            }
        }
    }
    // One byte more than rkite takes is refused.
    let sid = 3;
    let body = body_within(sid, MAX_PAYLOAD) + 1;
    let mut frame = vec![0u8; head_len_for(sid, body)];
    fill_data_header(&mut frame, sid, body);
    frame.resize(frame.len() + body, b'q');
    assert_eq!(decode(&frame), Err(FrameError::Oversized(MAX_PAYLOAD + 1)));
}
