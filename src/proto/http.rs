//! The backend's HTTP/1.x request guard and rewriter (protocol doc §4.5):
//! bytes a visitor sends through the tunnel on an `http`/`websocket` stream
//! go through [`RequestRewriter::feed`] before they reach the local origin.
//! It follows the request framing (`Content-Length`, chunked coding) so that
//! it finds every head of a keep-alive connection, holds each head until it
//! is complete, has it judged by `http_head` (parsed strictly, matched to the
//! stream's site, checked for credentials and by the security filter) and
//! hands the origin the rewritten head, or nothing at all: a refused head
//! stops the stream with a typed [`Refused`] and the caller answers with a
//! page and closes. Nothing unjudged ever reaches the origin: there is no
//! fallback to passing bytes through.
//!
//! The one exception is a protocol switch. An upgrade only happens if the
//! origin says so, so after the first request of a stream asks for one, the
//! bytes that follow are held until the origin's first response bytes show
//! whether it answered `101 Switching Protocols` ([`RequestRewriter::on_response`]).
//! Only then do they pass untouched; otherwise they are parsed as requests.
//! A later request on a keep-alive connection cannot switch: its response
//! cannot be told apart from earlier ones without parsing responses, so what
//! follows it is still held to be requests. Browsers open a new connection
//! for every WebSocket, and `curl --http2` asks on its first request.
//!
//! Sans-IO: it never touches sockets, and never looks at responses beyond
//! the first twelve bytes.

use std::net::Ipv4Addr;

use super::http_head::{self, Accepted, Body, MAX_METHOD, Rewrite, is_tchar};
pub use super::http_head::{Malformed, Refused, Rules};

/// The most bytes of one request head held back while waiting for its end.
pub const MAX_HEAD: usize = 16 * 1024;
/// Buffers grown past this by an unusually large head are released after it,
/// so idle keep-alive streams don't each pin up to 16 KiB.
const KEEP_CAPACITY: usize = 4 * 1024;
/// `HTTP/1.1 101`: enough of a status line to know the code.
const PROBE: usize = 12;

/// What the frontend told us about the visitor in the stream's first chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardInfo {
    /// `RIP` from the chunk, as received.
    pub remote_ip: String,
    /// The public port (`Port` header).
    pub port: u16,
    /// `RTLS: 1`: the visitor used TLS at the frontend.
    pub tls: bool,
    /// `+rewritehost`: send this `Host:` and rename the client's.
    pub rewrite_host: Option<String>,
}

/// Position inside the current line, enough to spot the blank line that ends
/// a head or a trailer section, with either CRLF or bare LF endings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    Start,
    Cr,
    Text,
}

/// Progress through a head that has not ended yet.
#[derive(Clone, Copy, Debug)]
struct HeadScan {
    /// Head bytes seen: those of earlier feeds are held in
    /// `RequestRewriter::buf`.
    len: usize,
    line: Line,
    /// Still inside the method token: checked byte by byte so that binary
    /// data (a TLS hello, say) is refused at once, not after 16 KiB.
    in_method: bool,
    /// The request line has ended and was accepted.
    line_ok: bool,
}

impl HeadScan {
    const NEW: HeadScan = HeadScan {
        len: 0,
        line: Line::Text,
        in_method: true,
        line_ok: false,
    };
}

enum Scan {
    Partial,
    /// The request line ends after this many bytes: it is checked before
    /// the scan goes on, so a bad one is refused without waiting.
    LineEnd(usize),
    Complete(usize),
    Failed(Refused),
}

/// Where in a chunked body we are (RFC 9112 §7.1).
#[derive(Clone, Copy, Debug)]
enum Chunk {
    Size { size: u64, digits: bool },
    Ext(u64),
    SizeLf(u64),
    Data(u64),
    DataEnd,
    DataLf,
    Trailer(Line),
}

impl Chunk {
    /// Before the first digit of a chunk-size line.
    const SIZE: Chunk = Chunk::Size {
        size: 0,
        digits: false,
    };
}

#[derive(Clone, Copy, Debug)]
enum State {
    Head(HeadScan),
    Body(u64),
    Chunked(Chunk),
    /// The stream's first request asked to switch protocols and has been
    /// sent whole: what follows is held until the origin answers.
    AwaitUpgrade,
    /// The origin switched protocols: bytes pass unchanged from now on.
    Switched,
    /// A request was refused: bytes are dropped from now on.
    Refused(Refused),
}

/// What the origin's first response bytes said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// Fewer than [`PROBE`] bytes seen so far.
    Pending {
        seen: usize,
    },
    Switched,
    Other,
}

/// Guards and rewrites the request direction of one HTTP stream.
pub struct RequestRewriter {
    state: State,
    rules: Rules,
    /// The header lines inserted after every request line, CRLF-terminated.
    inserts: Vec<u8>,
    rename_host: bool,
    /// `+rawheaders`: heads pass unchanged (but are still judged).
    raw: bool,
    /// A head split across feeds, or bytes held while an upgrade is decided.
    buf: Vec<u8>,
    /// The rewritten head handed to the sink.
    out: Vec<u8>,
    /// Heads accepted so far.
    requests: u64,
    /// The request whose body is passing is the first one and asked for an
    /// upgrade: what follows the body waits for the origin's answer.
    upgrading: bool,
    /// The start of the origin's response, while it matters.
    probe: [u8; PROBE],
    answer: Answer,
    /// Every head handed over, when a checker asked for them.
    recorded: Option<Vec<Vec<u8>>>,
}

impl RequestRewriter {
    pub fn new(info: ForwardInfo, rules: Rules) -> Self {
        let mut rip = header_safe(strip_mapped(&info.remote_ip));
        if rip.is_empty() {
            rip = "unknown".to_owned();
        }
        let proto = if info.tls { "https" } else { "http" };
        let mut inserts = format!(
            "X-Forwarded-For: {rip}\r\nX-Forwarded-Proto: {proto}\r\nX-PageKite-Port: {}\r\n",
            info.port
        );
        if let Some(host) = &info.rewrite_host {
            inserts.push_str(&format!("Host: {}\r\n", header_safe(host)));
        }
        RequestRewriter {
            state: State::Head(HeadScan::NEW),
            rules,
            inserts: inserts.into_bytes(),
            rename_host: info.rewrite_host.is_some(),
            raw: false,
            buf: Vec::new(),
            out: Vec::new(),
            requests: 0,
            upgrading: false,
            probe: [0; PROBE],
            answer: Answer::Pending { seen: 0 },
            recorded: None,
        }
    }

    /// `+rawheaders`: nothing is inserted or renamed, but every request is
    /// still followed and judged.
    pub fn raw_headers(mut self, on: bool) -> Self {
        if on {
            self.raw = true;
            self.inserts.clear();
            self.rename_host = false;
        }
        self
    }

    /// Keeps a copy of every head handed over, for invariant checks (fuzzing,
    /// tests); see [`recorded_heads`](Self::recorded_heads).
    #[doc(hidden)]
    pub fn record_heads(mut self) -> Self {
        self.recorded = Some(Vec::new());
        self
    }

    /// The heads handed over so far, if [`record_heads`](Self::record_heads).
    #[doc(hidden)]
    pub fn recorded_heads(&self) -> &[Vec<u8>] {
        self.recorded.as_deref().unwrap_or_default()
    }

    /// Feeds bytes from the tunnel. Calls `sink` with the bytes to write to
    /// the origin, in order: bodies pass as slices of `input`, without a
    /// copy; heads are handed over rewritten, once judged.
    ///
    /// `Err(r)` means a request was refused: nothing of it, or of anything
    /// after it, reaches `sink` (what came before it did), and every later
    /// call drops its input and returns the same error. The caller answers
    /// with the page for `r` and closes the stream.
    pub fn feed(&mut self, input: &[u8], sink: &mut dyn FnMut(&[u8])) -> Result<(), Refused> {
        // input[start..pos] is accepted data not yet handed over (bodies,
        // blank lines), flushed in one piece before a rewritten head, or the
        // part of a started head that is not in `buf`.
        let mut start = 0;
        let mut pos = 0;
        while let Some(rest) = input.get(pos..).filter(|r| !r.is_empty()) {
            match self.state {
                State::Switched => pos = input.len(),
                State::Refused(_) => {
                    start = input.len();
                    break;
                }
                State::AwaitUpgrade => {
                    if let Some(done) = input.get(start..pos).filter(|d| !d.is_empty()) {
                        sink(done);
                    }
                    if self.buf.len() + rest.len() > MAX_HEAD {
                        self.refuse(Refused::BadRequest(Malformed::EarlyData));
                    } else {
                        self.buf.extend_from_slice(rest);
                    }
                    pos = input.len();
                    start = pos;
                }
                State::Body(left) => {
                    let take = usize::try_from(left).map_or(rest.len(), |l| l.min(rest.len()));
                    pos += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        self.after_request()
                    } else {
                        State::Body(left)
                    };
                }
                State::Chunked(chunk) => match follow_chunked(chunk, rest) {
                    Ok((used, next)) => {
                        pos += used;
                        self.state = match next {
                            Some(chunk) => State::Chunked(chunk),
                            None => self.after_request(),
                        };
                    }
                    Err(valid) => {
                        // The body up to the fault goes, as it would have
                        // in a smaller piece: the result must not depend
                        // on how the input was split.
                        if let Some(done) = input.get(start..pos + valid) {
                            sink(done);
                        }
                        start = input.len();
                        self.refuse(Refused::BadRequest(Malformed::Framing));
                    }
                },
                State::Head(mut scan) => {
                    if scan.len == 0 {
                        // Empty lines between requests are tolerated by
                        // servers (RFC 9112 §2.2); they pass as they are.
                        let blank = rest.iter().take_while(|&&b| b == b'\r' || b == b'\n');
                        let skip = blank.count();
                        if skip > 0 {
                            pos += skip;
                            continue;
                        }
                        if let Some(done) = input.get(start..pos).filter(|d| !d.is_empty()) {
                            sink(done);
                        }
                        start = pos;
                    }
                    match scan.scan(rest) {
                        Scan::Partial => {
                            self.hold(input.get(start..).unwrap_or_default());
                            self.state = State::Head(scan);
                            pos = input.len();
                            start = pos;
                        }
                        Scan::LineEnd(used) => {
                            pos += used;
                            let line = input.get(start..pos).unwrap_or_default();
                            let line = if self.buf.is_empty() && pos < input.len() {
                                line
                            } else {
                                // The line must be whole to be checked, so
                                // it joins the held bytes; so does a line
                                // that ends the input, to wait for its head.
                                self.hold(line);
                                start = pos;
                                &self.buf
                            };
                            match http_head::check_request_line(line, &self.rules).map(|_| ()) {
                                Ok(()) => {
                                    scan.line_ok = true;
                                    self.state = State::Head(scan);
                                }
                                Err(r) => self.refuse(r),
                            }
                        }
                        Scan::Complete(used) => {
                            pos += used;
                            let head = input.get(start..pos).unwrap_or_default();
                            start = pos;
                            self.finish_head(head, sink);
                        }
                        Scan::Failed(r) => self.refuse(r),
                    }
                }
            }
        }
        if let State::Refused(r) = self.state {
            return Err(r);
        }
        if let Some(done) = input.get(start..).filter(|d| !d.is_empty()) {
            sink(done);
        }
        Ok(())
    }

    /// At the end of the visitor's side of the stream: a head cut short is
    /// dropped (it was never judged), and so is anything held for an upgrade
    /// that was not answered yet.
    pub fn flush(&mut self) {
        self.release();
    }

    /// True while the caller should show this rewriter the origin's first
    /// response bytes ([`on_response`](Self::on_response)).
    pub fn wants_response(&self) -> bool {
        matches!(self.answer, Answer::Pending { .. })
    }

    /// The origin's response bytes, from its first one on (the caller stops
    /// once [`wants_response`](Self::wants_response) is false). When they
    /// show whether the stream's first request switched protocols, bytes
    /// held since then go to `sink`: untouched after a `101`, judged as
    /// requests otherwise.
    pub fn on_response(
        &mut self,
        bytes: &[u8],
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), Refused> {
        let Answer::Pending { seen } = self.answer else {
            return Ok(());
        };
        let take = bytes.len().min(PROBE - seen);
        if let (Some(dst), Some(src)) = (self.probe.get_mut(seen..seen + take), bytes.get(..take)) {
            dst.copy_from_slice(src);
        }
        let seen = seen + take;
        let got = self.probe.get(..seen).unwrap_or_default();
        let want = b"HTTP/1.x 101";
        let matches =
            got.iter().zip(want).enumerate().all(
                |(i, (&g, &w))| {
                    if i == 7 { g.is_ascii_digit() } else { g == w }
                },
            );
        self.answer = match (matches, seen == PROBE) {
            (false, _) => Answer::Other,
            (true, true) => Answer::Switched,
            (true, false) => Answer::Pending { seen },
        };
        self.resolve_upgrade(sink)
    }

    /// True once a request was refused (see [`feed`](Self::feed)).
    pub fn refused(&self) -> Option<Refused> {
        match self.state {
            State::Refused(r) => Some(r),
            _ => None,
        }
    }

    /// True once the origin switched protocols: the caller may write directly.
    pub fn is_passthrough(&self) -> bool {
        matches!(self.state, State::Switched)
    }

    /// Bytes that may pass from here on without being read (kernel
    /// splicing): the rest of a body of known length, or everything once
    /// the protocol switched; none while a head is being read or anything
    /// is held.
    pub fn opaque_ahead(&self) -> usize {
        match self.state {
            _ if !self.buf.is_empty() => 0,
            State::Switched => usize::MAX,
            State::Body(left) => usize::try_from(left).unwrap_or(usize::MAX),
            _ => 0,
        }
    }

    /// `n` opaque bytes (at most [`opaque_ahead`](Self::opaque_ahead))
    /// went past unread: as if fed.
    pub fn skip_opaque(&mut self, n: usize) {
        if let State::Body(left) = self.state {
            let left = left.saturating_sub(n as u64);
            self.state = if left == 0 {
                self.after_request()
            } else {
                State::Body(left)
            };
        }
    }

    /// Bytes held back (a partial head, or data waiting for an upgrade's
    /// answer).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Memory its buffers hold, for the caller's buffer budget.
    pub fn held_capacity(&self) -> usize {
        self.buf.capacity() + self.out.capacity()
    }

    /// Judges the head that ends with `tail` (the held bytes come first) and
    /// hands it over rewritten, then sets the state for what follows it.
    fn finish_head(&mut self, tail: &[u8], sink: &mut dyn FnMut(&[u8])) {
        let head = if self.buf.is_empty() {
            tail
        } else {
            self.buf.extend_from_slice(tail);
            &self.buf
        };
        self.out.clear();
        let rewrite = Rewrite {
            inserts: &self.inserts,
            rename_forwarding: !self.raw,
            rename_host: self.rename_host,
        };
        match http_head::judge(head, &self.rules, &rewrite, &mut self.out) {
            Ok(Accepted { body, upgrade }) => {
                // With `+rawheaders` nothing is inserted or renamed, so
                // this is the head as it came.
                sink(&self.out);
                if let Some(heads) = self.recorded.as_mut() {
                    heads.push(self.out.clone());
                }
                // Only the stream's first request can switch: its answer is
                // the first thing the origin sends.
                self.upgrading = upgrade && self.requests == 0;
                self.requests += 1;
                self.release();
                self.state = match body {
                    Body::None => self.after_request(),
                    Body::Length(n) => State::Body(n),
                    Body::Chunked => State::Chunked(Chunk::SIZE),
                };
            }
            Err(r) => self.refuse(r),
        }
    }

    /// The state after a whole request: another head, or the wait for the
    /// origin's answer to an upgrade.
    fn after_request(&mut self) -> State {
        if !std::mem::take(&mut self.upgrading) {
            return State::Head(HeadScan::NEW);
        }
        match self.answer {
            Answer::Pending { .. } => State::AwaitUpgrade,
            // The origin answered before the request's body ended.
            Answer::Switched => State::Switched,
            Answer::Other => State::Head(HeadScan::NEW),
        }
    }

    /// Acts on the origin's answer once it is known and an upgrade waits.
    fn resolve_upgrade(&mut self, sink: &mut dyn FnMut(&[u8])) -> Result<(), Refused> {
        if !matches!(self.state, State::AwaitUpgrade) {
            return Ok(());
        }
        match self.answer {
            Answer::Pending { .. } => Ok(()),
            Answer::Switched => {
                self.state = State::Switched;
                let held = std::mem::take(&mut self.buf);
                if !held.is_empty() {
                    sink(&held);
                }
                Ok(())
            }
            Answer::Other => {
                // Not switched: what was held is requests after all.
                self.state = State::Head(HeadScan::NEW);
                let held = std::mem::take(&mut self.buf);
                self.feed(&held, sink)
            }
        }
    }

    fn hold(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Refuses the current request: the held bytes are dropped, and so is
    /// everything from now on.
    fn refuse(&mut self, why: Refused) {
        self.release();
        self.state = State::Refused(why);
    }

    fn release(&mut self) {
        for v in [&mut self.buf, &mut self.out] {
            if v.capacity() > KEEP_CAPACITY {
                *v = Vec::new();
            } else {
                v.clear();
            }
        }
    }
}

impl HeadScan {
    /// Looks for the end of the head in `bytes`, checking on the way that it
    /// starts like a request line and stays within [`MAX_HEAD`]; stops at the
    /// end of the request line for the caller to check it.
    fn scan(&mut self, bytes: &[u8]) -> Scan {
        for (i, &b) in bytes.iter().enumerate() {
            if self.len >= MAX_HEAD {
                return Scan::Failed(Refused::BadRequest(Malformed::TooLarge));
            }
            self.len += 1;
            if self.in_method {
                if b == b' ' && self.len > 1 {
                    self.in_method = false;
                } else if !is_tchar(b) || self.len > MAX_METHOD {
                    return Scan::Failed(Refused::BadRequest(Malformed::RequestLine));
                }
            }
            self.line = match (self.line, b) {
                (Line::Start | Line::Cr, b'\n') => return Scan::Complete(i + 1),
                (Line::Text, b'\n') => Line::Start,
                (Line::Start, b'\r') => Line::Cr,
                _ => Line::Text,
            };
            if self.line == Line::Start && !self.line_ok {
                return Scan::LineEnd(i + 1);
            }
        }
        Scan::Partial
    }
}

/// Steps through a chunked body in `bytes`. Returns how many bytes belong to
/// it and the state to resume from (`None` when the body ended there), or
/// for framing that is invalid, how many bytes came before the fault.
fn follow_chunked(mut chunk: Chunk, bytes: &[u8]) -> Result<(usize, Option<Chunk>), usize> {
    let mut i = 0;
    while let Some(rest) = bytes.get(i..).filter(|r| !r.is_empty()) {
        if let Chunk::Data(left) = chunk {
            let take = usize::try_from(left).map_or(rest.len(), |l| l.min(rest.len()));
            i += take;
            let left = left - take as u64;
            chunk = if left == 0 {
                Chunk::DataEnd
            } else {
                Chunk::Data(left)
            };
            continue;
        }
        let Some(&b) = rest.first() else { break };
        let bad = Err(i);
        i += 1;
        chunk = match (chunk, b) {
            (Chunk::Size { size, .. }, _) if b.is_ascii_hexdigit() => {
                let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                let Some(size) = size.checked_mul(16).and_then(|s| s.checked_add(digit)) else {
                    return bad;
                };
                Chunk::Size { size, digits: true }
            }
            (Chunk::Size { digits: false, .. }, _) => return bad,
            (Chunk::Size { size, .. }, b';' | b' ' | b'\t') => Chunk::Ext(size),
            (Chunk::Size { size, .. }, b'\r') => Chunk::SizeLf(size),
            (Chunk::Size { size, .. } | Chunk::Ext(size) | Chunk::SizeLf(size), b'\n') => {
                if size == 0 {
                    Chunk::Trailer(Line::Start)
                } else {
                    Chunk::Data(size)
                }
            }
            // Control bytes in an extension could hide a line ending.
            (Chunk::Ext(size), b'\r') => Chunk::SizeLf(size),
            (Chunk::Ext(_), b) if b < b' ' && b != b'\t' => return bad,
            (Chunk::Ext(size), _) => Chunk::Ext(size),
            (Chunk::DataEnd, b'\r') => Chunk::DataLf,
            (Chunk::DataEnd | Chunk::DataLf, b'\n') => Chunk::SIZE,
            (Chunk::Trailer(Line::Start | Line::Cr), b'\n') => return Ok((i, None)),
            (Chunk::Trailer(Line::Start), b'\r') => Chunk::Trailer(Line::Cr),
            (Chunk::Trailer(Line::Text), b'\n') => Chunk::Trailer(Line::Start),
            (Chunk::Trailer(Line::Start | Line::Text), _) => Chunk::Trailer(Line::Text),
            // A bare CR where a line ending must be: servers disagree on
            // what it means, so the body's end can't be known.
            (Chunk::Size { .. } | Chunk::SizeLf(_), _) => return bad,
            (Chunk::DataEnd | Chunk::DataLf | Chunk::Trailer(Line::Cr), _) => return bad,
            (Chunk::Data(_), _) => chunk,
        };
    }
    Ok((i, Some(chunk)))
}

/// pagekite.py reports IPv4 visitors of a dual-stack socket as plain IPv4.
fn strip_mapped(ip: &str) -> &str {
    match ip.get(..7).zip(ip.get(7..)) {
        Some((prefix, v4))
            if prefix.eq_ignore_ascii_case("::ffff:") && v4.parse::<Ipv4Addr>().is_ok() =>
        {
            v4
        }
        _ => ip,
    }
}

/// The frontend's values end up inside our header lines; control bytes
/// would let a hostile frontend split them.
fn header_safe(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
