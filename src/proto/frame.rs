//! PageKite chunk framing (protocol doc §3): `HEXLEN\r\n` + payload, where the
//! payload is a header block, a blank line and a body. This module decodes
//! frames borrowed from an input slice and encodes frames into an [`Out`]; it
//! never touches sockets or clocks. It does not interpret what a chunk means
//! for a stream (that is the relay's job), it only checks that the frame is
//! well formed and parses the headers every role needs. A header line is
//! encoded whole or refused with a [`LineError`], never cut: a cut `Host:`
//! would reach another kite than the one the frontend authorised.
//!
//! Compressed frames (`ULENZCLEN`) are refused: rkite never advertises ZChunks,
//! so a peer that sends one is broken. The `R` (reset) suffix is tolerated.

use std::fmt;

/// The largest payload accepted from a peer, which rkite announces in its
/// handshake ([`crate::proto::handshake::MAX_CHUNK_HEADER`]). pagekite.py
/// and libpagekite never send more than about 16.3 KB per chunk, and are
/// never sent more than [`CLASSIC_PAYLOAD`]; only another rkite, told this
/// number, sends bigger chunks (fewer heads, acknowledgements and wake-ups
/// per spliced byte: sixteen loopback segments). Anything larger is
/// hostile. An authenticated tunnel's input buffer grows to hold one with
/// its length line when it must be copied (`Tunnel::recv_slot`).
pub const MAX_PAYLOAD: usize = 1024 * 1024 - 64;
/// The largest payload sent to a peer that did not announce its own limit:
/// what four hex digits hold, the most rkite ever sent to pagekite.py and
/// libpagekite.
pub const CLASSIC_PAYLOAD: usize = 0xffff;
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
    body_within(sid, CLASSIC_PAYLOAD)
}

/// The largest body a data frame of `sid` may carry in a payload of at most
/// `payload` bytes (a peer's announced limit).
pub fn body_within(sid: u32, payload: usize) -> usize {
    payload.saturating_sub("SID: ".len() + decimal_len(sid) + 4)
}

/// The head of a data frame of `sid` with a `body_len`-byte body, as a
/// spliced chunk's head is written: [`data_header_len`], plus one byte per
/// hex digit the payload's length needs beyond [`DATA_LEN_DIGITS`].
pub fn head_len_for(sid: u32, body_len: usize) -> usize {
    let payload = "SID: ".len() + decimal_len(sid) + 4 + body_len;
    data_header_len(sid) + hex_len(payload).saturating_sub(DATA_LEN_DIGITS)
}

/// Hex digits of `n` (at least one).
fn hex_len(n: usize) -> usize {
    let bits = usize::BITS - n.leading_zeros();
    (bits as usize).div_ceil(4).max(1)
}

/// The largest body for stream `sid` whose whole data frame (head and body)
/// fills a whole number of `mss`-byte TCP segments, where one or more fit
/// in a payload of at most `payload` bytes (the peer's limit).
/// A frame written in one push otherwise ends in a short segment: on
/// loopback (MSS 65,483) a full 64 KiB frame leaves as two packets, and
/// per-packet work is most of what a spliced byte costs.
pub fn segment_filling_body(sid: u32, mss: usize, payload: usize) -> usize {
    let most = body_within(sid, payload).max(1);
    let whole = head_len_for(sid, most) + most;
    if mss == 0 || mss > whole {
        return most;
    }
    let fill = whole - whole % mss;
    // The head's width depends on the body: the body that fills `fill`
    // with the head it gets (a payload just over four digits may end one
    // byte short of the segment; no more).
    let short = fill.saturating_sub(data_header_len(sid));
    let body = if head_len_for(sid, short) == data_header_len(sid) {
        short
    } else {
        fill.saturating_sub(head_len_for(sid, short))
    };
    body.clamp(1, most)
}

/// Writes the header of a data frame into `slot`, for a body of `body_len`
/// bytes: [`data_header_len`]`(sid)` bytes long (the copying path, which
/// reserves it before the body is read), or [`head_len_for`] (a spliced
/// chunk's). The length gets every digit the slot has room for.
pub fn fill_data_header(slot: &mut [u8], sid: u32, body_len: usize) {
    let digits = slot
        .len()
        .saturating_sub(data_header_len(sid) - DATA_LEN_DIGITS);
    let payload = "SID: ".len() + decimal_len(sid) + 4 + body_len;
    debug_assert!(digits >= DATA_LEN_DIGITS && hex_len(payload) <= digits);
    let mut w = SliceWriter { buf: slot, pos: 0 };
    for shift in (0..digits).rev() {
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

/// The longest value a chunk header carries: a DNS name (RFC 1035 allows
/// 253 bytes of text), which is what `Host:` holds. Every other value rkite
/// writes (numbers, protocol names, addresses, ping tokens) is shorter.
pub const MAX_VALUE: usize = 253;
/// The longest header name a [`Line`] takes; rkite's are at most 5 bytes.
pub const MAX_NAME: usize = 16;
/// Room for the longest legal line, `MAX_NAME: MAX_VALUE`.
const LINE_CAP: usize = MAX_NAME + 2 + MAX_VALUE;

/// Why a header line could not be encoded. A line is written exactly or not
/// at all: a cut `Host:` would route to another kite than the one the
/// frontend authorised, and a CR or LF inside a value would forge headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineError {
    /// The header name is longer than [`MAX_NAME`] (a bug in the caller).
    NameTooLong(usize),
    /// The value of header `name` is `len` bytes, over [`MAX_VALUE`].
    ValueTooLong { name: &'static str, len: usize },
    /// The value of header `name` holds a control byte (CR, LF, NUL, ...).
    ControlByte { name: &'static str },
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::NameTooLong(n) => {
                write!(f, "chunk header name of {n} bytes exceeds {MAX_NAME}")
            }
            LineError::ValueTooLong { name, len } => write!(
                f,
                "chunk header {name} of {len} bytes exceeds the {MAX_VALUE}-byte limit"
            ),
            LineError::ControlByte { name } => {
                write!(f, "chunk header {name} would hold a control byte")
            }
        }
    }
}

impl std::error::Error for LineError {}

/// A `Name: value` line assembled on the stack, for building frame headers
/// without allocating. It holds the whole line or is never made: see
/// [`LineError`].
pub struct Line {
    buf: [u8; LINE_CAP],
    len: usize,
}

impl Line {
    /// The line `name: value`, or why it can't be sent as it is.
    pub fn new(name: &'static str, value: &[u8]) -> Result<Line, LineError> {
        if name.len() > MAX_NAME {
            return Err(LineError::NameTooLong(name.len()));
        }
        if value.len() > MAX_VALUE {
            return Err(LineError::ValueTooLong {
                name,
                len: value.len(),
            });
        }
        if value.iter().any(|b| b.is_ascii_control()) {
            return Err(LineError::ControlByte { name });
        }
        let mut line = Line {
            buf: [0; LINE_CAP],
            len: 0,
        };
        for part in [name.as_bytes(), b": ", value] {
            let end = line.len + part.len();
            // Can't miss: the lengths were checked against LINE_CAP above.
            let Some(dst) = line.buf.get_mut(line.len..end) else {
                return Err(LineError::ValueTooLong {
                    name,
                    len: value.len(),
                });
            };
            dst.copy_from_slice(part);
            line.len = end;
        }
        Ok(line)
    }

    /// `name: decimal`. Infallible for rkite's own header names (`SID`,
    /// `Port`, `RPort`, `SKB`): twenty digits always fit, and a name over
    /// [`MAX_NAME`] is a bug that the unit tests and debug builds catch. In a
    /// release build such a line would come out as [`Line::BAD_NAME`], which
    /// every peer ignores, rather than cut.
    pub fn number(name: &'static str, value: u64) -> Line {
        debug_assert!(name.len() <= MAX_NAME, "header name {name:?} too long");
        let mut digits = [0u8; 20];
        let n = decimal(&mut digits, value);
        Line::new(name, digits.get(..n).unwrap_or_default()).unwrap_or(Line::BAD_NAME)
    }

    /// `X-Bad-Name: 0`, built at compile time (so it can't fail at run time).
    const BAD_NAME: Line = {
        let text = b"X-Bad-Name: 0";
        let mut buf = [0u8; LINE_CAP];
        let mut i = 0;
        while i < text.len() {
            buf[i] = text[i];
            i += 1;
        }
        Line {
            buf,
            len: text.len(),
        }
    };

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// `SID: n` + `EOF: 1R|1W|1WR` with the customary `Bye!` body.
pub fn encode_eof(out: &mut impl Out, sid: u32, eof: Eof) {
    let flags: &[u8] = match (eof.read, eof.write) {
        (true, false) => b"EOF: 1R",
        (false, true) => b"EOF: 1W",
        _ => b"EOF: 1WR",
    };
    let sid = Line::number("SID", u64::from(sid));
    encode(out, &[sid.as_bytes(), flags], b"Bye!");
}

/// `NOOP: 1` + `SID: n` + `SKB: kib`: flow-control progress (§5.1).
pub fn encode_skb(out: &mut impl Out, sid: u32, kib: u64) {
    let sid = Line::number("SID", u64::from(sid));
    let skb = Line::number("SKB", kib);
    encode(out, &[b"NOOP: 1", sid.as_bytes(), skb.as_bytes()], b"");
}

/// `NOOP: 1` + `PING: token` (§5.3). rkite's tokens are short timestamps,
/// so this always sends; a token that could not be sent exactly (a bug that
/// debug builds catch) is not sent at all, and the keepalive pings again.
pub fn encode_ping(out: &mut impl Out, token: &[u8]) {
    let ping = Line::new("PING", token);
    debug_assert!(ping.is_ok(), "unsendable PING token");
    if let Ok(ping) = ping {
        encode(out, &[b"NOOP: 1", ping.as_bytes()], b"!");
    }
}

/// `NOOP: 1` + `PONG: token`, echoing at most 64 bytes of the PING as
/// pagekite.py does (§3.2), cut where a character starts: half a UTF-8
/// character would make the headers not text, and the peer would drop the
/// tunnel. A token with control bytes gets no PONG: only a broken or hostile
/// peer sends one, and its keepalive judges it.
pub fn encode_pong(out: &mut impl Out, token: &[u8]) {
    let mut end = token.len().min(64);
    while token.get(end).is_some_and(|b| b & 0xc0 == 0x80) {
        end -= 1;
    }
    let token = token.get(..end).unwrap_or(token);
    if let Ok(pong) = Line::new("PONG", token) {
        encode(out, &[b"NOOP: 1", pong.as_bytes()], b"!");
    }
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

/// A header block's `(name, trimmed value)` pairs, read by the one header
/// reader ([`super::sniff::fields`]). Splitting text at ASCII bytes keeps
/// it text, so no pair is ever dropped for its encoding.
pub fn header_lines(block: &str) -> impl Iterator<Item = (&str, &str)> {
    super::sniff::fields(block.as_bytes()).filter_map(|(name, value)| {
        Some((
            std::str::from_utf8(name).ok()?,
            std::str::from_utf8(value).ok()?,
        ))
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

/// The whole length (length line and payload) of the chunk that starts
/// `input`, once its length line is in; `None` if it isn't or is not valid.
pub fn chunk_len(input: &[u8]) -> Option<usize> {
    let eol = input.iter().take(MAX_LEN_LINE).position(|&b| b == b'\n')?;
    let line = input.get(..eol)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"R").unwrap_or(line);
    let len = parse_hex(line).filter(|l| (1..=MAX_PAYLOAD).contains(l))?;
    Some(eol + 1 + len)
}

/// The head of the chunk that starts `input`, when all of it (length line,
/// header block, blank line) is there: the frame with an empty body, the
/// head's length and the body's. For a reactor that moves bodies itself
/// (kernel splicing). Anything else (incomplete, malformed, reset,
/// oversized) is `None`: `decode` judges those as ever.
pub fn peek_head(input: &[u8]) -> Option<(Frame<'_>, usize, usize)> {
    let eol = input.iter().take(MAX_LEN_LINE).position(|&b| b == b'\n')?;
    let line = input.get(..eol)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let len = parse_hex(line)?;
    if len == 0 || len > MAX_PAYLOAD {
        return None;
    }
    let start = eol + 1;
    let payload = input.get(start..)?;
    let payload = payload.get(..len.min(payload.len()))?;
    let split = find(payload, b"\r\n\r\n")?;
    let head = payload.get(..split + 4)?;
    let frame = parse_payload(head).ok()?;
    let head_len = start + split + 4;
    Some((frame, head_len, len - (split + 4)))
}

/// The SID of a chunk whose header block is all that arrived of it: `input`
/// ends exactly after that chunk's blank line and not one body byte is in.
/// A sender that writes a chunk's header and body with two writes and Nagle
/// on (libpagekite does) holds the body back until the header is
/// acknowledged, so the receiver should answer it at once (the relay sends
/// an SKB) rather than wait for the kernel's delayed ACK. Anything else,
/// including a malformed or complete chunk, is `None`; `decode` judges those.
pub fn awaiting_body(input: &[u8]) -> Option<u32> {
    let eol = input.iter().take(MAX_LEN_LINE).position(|&b| b == b'\n')?;
    let line = input.get(..eol)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"R").unwrap_or(line);
    let len = parse_hex(line)?;
    let payload = input.get(eol + 1..)?;
    if len > MAX_PAYLOAD || payload.len() >= len || !payload.ends_with(b"\r\n\r\n") {
        return None;
    }
    let frame = parse_payload(payload).ok()?;
    if frame.body.is_empty() {
        frame.sid
    } else {
        None
    }
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
#[path = "frame_tests.rs"]
mod tests;
