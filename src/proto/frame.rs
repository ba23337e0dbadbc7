//! PageKite chunk framing (protocol doc §3): `HEXLEN\r\n` + payload, where the
//! payload is a header block, a blank line and a body. This module decodes
//! frames borrowed from an input slice and encodes frames into an [`Out`]; it
//! never touches sockets or clocks. It does not interpret what a chunk means
//! for a stream (that is the relay's job), it only checks that the frame is
//! well formed and parses the headers every role needs.
//!
//! Compressed frames (`ULENZCLEN`) are refused: rkite never advertises ZChunks,
//! so a peer that sends one is broken. The `R` (reset) suffix is tolerated.

use std::fmt;

/// The largest payload accepted from a peer. pagekite.py and libpagekite never
/// send more than about 16.3 KB per chunk; anything far larger is hostile.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// The largest length line accepted (`ffffffffZffffffffR` plus CRLF).
const MAX_LEN_LINE: usize = 24;
/// Header lines per chunk; PageKite uses at most a dozen.
const MAX_HEADERS: usize = 64;

/// Bytes that a data frame of `sid` spends before its body, when the length is
/// written with [`DATA_LEN_DIGITS`] fixed-width hex digits. The relay reserves
/// this much, reads the body straight behind it, then fills it in.
pub fn data_header_len(sid: u32) -> usize {
    DATA_LEN_DIGITS + 2 + "SID: ".len() + decimal_len(sid) + 4
}

/// Width of the zero-padded hex length of data frames. Both reference parsers
/// read the length with `int(x, 16)` / `%x`, which accept leading zeros, and a
/// fixed width lets the body be read in place before its length is known.
pub const DATA_LEN_DIGITS: usize = 4;
/// The largest body a data frame may carry so its payload fits four hex digits.
pub fn max_data_body(sid: u32) -> usize {
    0xffff - ("SID: ".len() + decimal_len(sid) + 4)
}

/// Writes the header of a data frame into `slot`, which must be exactly
/// [`data_header_len`]`(sid)` bytes long, for a body of `body_len` bytes.
pub fn fill_data_header(slot: &mut [u8], sid: u32, body_len: usize) {
    debug_assert_eq!(slot.len(), data_header_len(sid));
    debug_assert!(body_len <= max_data_body(sid));
    let payload = "SID: ".len() + decimal_len(sid) + 4 + body_len;
    let mut w = SliceWriter { buf: slot, pos: 0 };
    for shift in (0..DATA_LEN_DIGITS).rev() {
        w.byte(HEX[(payload >> (shift * 4)) & 0xf]);
    }
    w.put(b"\r\nSID: ");
    w.decimal(u64::from(sid));
    w.put(b"\r\n\r\n");
    debug_assert_eq!(w.pos, slot.len());
}

/// Destination for encoded frames: a `Vec<u8>` in tests, the tunnel's output
/// buffer in the relay.
pub trait Out {
    fn put(&mut self, bytes: &[u8]);
}

impl Out for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Encodes one frame whose payload is `headers` (each a complete `Name: value`
/// line without CRLF), a blank line and `body`. The payload is never empty
/// because the blank line alone is four bytes, so this can't emit the
/// zero-length frame that makes pagekite.py drop a tunnel.
pub fn encode(out: &mut impl Out, headers: &[&[u8]], body: &[u8]) {
    let payload: usize = headers.iter().map(|h| h.len() + 2).sum::<usize>() + 2 + body.len();
    let mut len = [0u8; 16];
    let n = hex(&mut len, payload as u64);
    out.put(&len[..n]);
    out.put(b"\r\n");
    for h in headers {
        out.put(h);
        out.put(b"\r\n");
    }
    out.put(b"\r\n");
    out.put(body);
}

/// A `Name: value` line assembled on the stack, for building frame headers
/// without allocating.
pub struct Line {
    buf: [u8; 96],
    len: usize,
}

impl Line {
    pub fn new(name: &str, value: &[u8]) -> Line {
        let mut line = Line {
            buf: [0; 96],
            len: 0,
        };
        line.push(name.as_bytes());
        line.push(b": ");
        line.push(value);
        line
    }

    pub fn number(name: &str, value: u64) -> Line {
        let mut digits = [0u8; 20];
        let n = decimal(&mut digits, value);
        Line::new(name, &digits[..n])
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = self.buf.len() - self.len;
        let take = bytes.len().min(room);
        self.buf[self.len..self.len + take].copy_from_slice(&bytes[..take]);
        self.len += take;
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// `SID: n` + `EOF: 1R|1W|1WR` with the customary `Bye!` body.
pub fn encode_eof(out: &mut impl Out, sid: u32, eof: Eof) {
    let flags: &[u8] = match (eof.read, eof.write) {
        (true, false) => b"1R",
        (false, true) => b"1W",
        _ => b"1WR",
    };
    let sid = Line::number("SID", u64::from(sid));
    let eof = Line::new("EOF", flags);
    encode(out, &[sid.as_bytes(), eof.as_bytes()], b"Bye!");
}

/// `NOOP: 1` + `SID: n` + `SKB: kib`: flow-control progress (§5.1).
pub fn encode_skb(out: &mut impl Out, sid: u32, kib: u64) {
    let sid = Line::number("SID", u64::from(sid));
    let skb = Line::number("SKB", kib);
    encode(out, &[b"NOOP: 1", sid.as_bytes(), skb.as_bytes()], b"");
}

/// `NOOP: 1` + `PING: token` (§5.3).
pub fn encode_ping(out: &mut impl Out, token: &[u8]) {
    let ping = Line::new("PING", token);
    encode(out, &[b"NOOP: 1", ping.as_bytes()], b"!");
}

/// `NOOP: 1` + `PONG: token`, echoing at most 64 bytes of the PING (§3.2),
/// cut where a character starts: half a UTF-8 character would make the
/// headers not text, and the peer would drop the tunnel.
pub fn encode_pong(out: &mut impl Out, token: &[u8]) {
    let mut end = token.len().min(64);
    while token.get(end).is_some_and(|b| b & 0xc0 == 0x80) {
        end -= 1;
    }
    let token = token.get(..end).unwrap_or(token);
    let pong = Line::new("PONG", token);
    encode(out, &[b"NOOP: 1", pong.as_bytes()], b"!");
}

/// End-of-stream flags (§4.3): `read` = the sender's socket gave EOF, so no
/// more data comes; `write` = the sender can no longer write to its socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Eof {
    pub read: bool,
    pub write: bool,
}

impl Eof {
    pub const BOTH: Eof = Eof {
        read: true,
        write: true,
    };

    fn parse(value: &str) -> Eof {
        let read = value.bytes().any(|b| b.eq_ignore_ascii_case(&b'r'));
        let write = value.bytes().any(|b| b.eq_ignore_ascii_case(&b'w'));
        if read || write {
            Eof { read, write }
        } else {
            Eof::BOTH
        }
    }
}

/// Why a frame could not be decoded. Every variant means the peer is broken
/// or hostile: the tunnel is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    BadLength,
    ZeroLength,
    Oversized(usize),
    Compressed,
    NoHeaderEnd,
    NotText,
    TooManyHeaders,
    MissingSid,
    BadNumber(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadLength => f.write_str("malformed chunk length line"),
            FrameError::ZeroLength => f.write_str("zero-length chunk"),
            FrameError::Oversized(n) => {
                write!(f, "chunk of {n} bytes exceeds the {MAX_PAYLOAD}-byte limit")
            }
            FrameError::Compressed => f.write_str("compressed chunk, but ZChunks were not offered"),
            FrameError::NoHeaderEnd => f.write_str("chunk without a blank line after its headers"),
            FrameError::NotText => f.write_str("chunk headers are not text"),
            FrameError::TooManyHeaders => f.write_str("too many chunk headers"),
            FrameError::MissingSid => f.write_str("data chunk without SID"),
            FrameError::BadNumber(what) => write!(f, "chunk header {what} is not a number"),
        }
    }
}

/// One decoded chunk, borrowing the input.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Frame<'a> {
    pub sid: Option<u32>,
    pub noop: bool,
    pub eof: Option<Eof>,
    pub skb: Option<u64>,
    pub ping: Option<&'a str>,
    pub pong: Option<&'a str>,
    pub zrst: bool,
    pub proto: Option<&'a str>,
    pub host: Option<&'a str>,
    pub port: Option<&'a str>,
    pub rip: Option<&'a str>,
    pub rport: Option<&'a str>,
    pub rtls: bool,
    /// The frame had the `R` suffix: the peer reset its compressor.
    pub reset: bool,
    /// The whole header block, for callers that look for more (the
    /// `X-PageKite*` lines of NOOP chunks).
    pub header_block: &'a str,
    pub body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Iterates `(name, value)` over the header lines, value trimmed.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        header_lines(self.header_block)
    }
}

/// Splits a header block into `(name, trimmed value)` pairs, skipping lines
/// without a colon.
pub fn header_lines(block: &str) -> impl Iterator<Item = (&str, &str)> {
    block.split('\n').filter_map(|line| {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (name, value) = line.split_once(':')?;
        Some((name.trim(), value.trim()))
    })
}

/// Decodes the first frame of `input`. `Ok(None)` means more bytes are needed;
/// otherwise returns the frame and how many input bytes it used.
pub fn decode(input: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(eol) = input.iter().take(MAX_LEN_LINE).position(|&b| b == b'\n') else {
        return if input.len() >= MAX_LEN_LINE {
            Err(FrameError::BadLength)
        } else {
            Ok(None)
        };
    };
    let line = input.get(..eol).ok_or(FrameError::BadLength)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let (line, reset) = match line.strip_suffix(b"R") {
        Some(rest) => (rest, true),
        None => (line, false),
    };
    if line.contains(&b'Z') {
        return Err(FrameError::Compressed);
    }
    let len = parse_hex(line).ok_or(FrameError::BadLength)?;
    if len == 0 {
        return Err(FrameError::ZeroLength);
    }
    if len > MAX_PAYLOAD {
        return Err(FrameError::Oversized(len));
    }
    let start = eol + 1;
    let Some(payload) = input.get(start..start + len) else {
        return Ok(None);
    };
    let mut frame = parse_payload(payload)?;
    frame.reset = reset;
    Ok(Some((frame, start + len)))
}

fn parse_payload(payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    let split = find(payload, b"\r\n\r\n").ok_or(FrameError::NoHeaderEnd)?;
    let head = payload.get(..split).ok_or(FrameError::NoHeaderEnd)?;
    let body = payload.get(split + 4..).ok_or(FrameError::NoHeaderEnd)?;
    let head = std::str::from_utf8(head).map_err(|_| FrameError::NotText)?;
    let mut frame = Frame {
        header_block: head,
        body,
        ..Frame::default()
    };
    for (count, (name, value)) in header_lines(head).enumerate() {
        if count >= MAX_HEADERS {
            return Err(FrameError::TooManyHeaders);
        }
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("SID") {
            frame.sid = Some(value.parse().map_err(|_| FrameError::BadNumber("SID"))?);
        } else if is("NOOP") {
            frame.noop = true;
        } else if is("EOF") {
            frame.eof = Some(Eof::parse(value));
        } else if is("SKB") {
            frame.skb = Some(value.parse().map_err(|_| FrameError::BadNumber("SKB"))?);
        } else if is("PING") {
            frame.ping = Some(value);
        } else if is("PONG") {
            frame.pong = Some(value);
        } else if is("ZRST") {
            frame.zrst = true;
        } else if is("Proto") {
            frame.proto = Some(value);
        } else if is("Host") {
            frame.host = Some(value);
        } else if is("Port") {
            frame.port = Some(value);
        } else if is("RIP") {
            frame.rip = Some(value);
        } else if is("RPort") {
            frame.rport = Some(value);
        } else if is("RTLS") {
            frame.rtls = !value.is_empty() && value != "0";
        }
    }
    let control = frame.noop || frame.ping.is_some() || frame.pong.is_some() || frame.zrst;
    if frame.sid.is_none() && !control {
        return Err(FrameError::MissingSid);
    }
    Ok(frame)
}

fn parse_hex(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    digits.iter().try_fold(0usize, |acc, &d| {
        let v = (d as char).to_digit(16)?;
        Some(acc * 16 + v as usize)
    })
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex(buf: &mut [u8; 16], mut v: u64) -> usize {
    let mut tmp = [0u8; 16];
    let mut n = 0;
    loop {
        tmp[n] = HEX[(v & 0xf) as usize];
        n += 1;
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    for i in 0..n {
        buf[i] = tmp[n - 1 - i];
    }
    n
}

fn decimal(buf: &mut [u8; 20], mut v: u64) -> usize {
    let mut tmp = [0u8; 20];
    let mut n = 0;
    loop {
        tmp[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..n {
        buf[i] = tmp[n - 1 - i];
    }
    n
}

fn decimal_len(v: u32) -> usize {
    let mut digits = [0u8; 20];
    decimal(&mut digits, u64::from(v))
}

struct SliceWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl SliceWriter<'_> {
    fn byte(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.pos) {
            *slot = b;
        }
        self.pos += 1;
    }
    fn put(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.byte(b);
        }
    }
    fn decimal(&mut self, v: u64) {
        let mut digits = [0u8; 20];
        let n = decimal(&mut digits, v);
        self.put(&digits[..n]);
    }
}

#[cfg(test)]
mod tests {
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
}
