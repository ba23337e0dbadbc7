//! The backend's HTTP/1.x request-head rewriter (protocol doc §4.5): bytes a
//! visitor sends through the tunnel on an `http`/`websocket` stream go through
//! [`RequestRewriter::feed`] before they reach the local origin. Every request
//! head gets `X-Forwarded-For`, `X-Forwarded-Proto` and `X-PageKite-Port`
//! inserted after its request line, and client-sent copies of those headers
//! are renamed `X-Old-…` so a visitor cannot spoof them.
//!
//! Unlike pagekite.py, which regex-matches every chunk, this follows the
//! request framing (`Content-Length`, chunked coding, CONNECT and upgrades), so
//! every head of a keep-alive connection is rewritten and bodies are never
//! scanned for look-alike heads. It is sans-IO and never touches responses.
//! Whenever the framing is not certain it stops rewriting and passes bytes
//! through, reporting why once: it must never lose, reorder or invent data.

use std::fmt;
use std::net::Ipv4Addr;

/// The most bytes of one request head held back while waiting for its end.
pub const MAX_HEAD: usize = 16 * 1024;
/// A longer first word is not an HTTP method (the longest registered ones
/// have about 17 letters).
const MAX_METHOD: usize = 32;
/// Buffers grown past this by an unusually large head are released after it,
/// so idle keep-alive streams don't each pin up to 16 KiB.
const KEEP_CAPACITY: usize = 4 * 1024;

/// Headers that claim where a request came from; a client's copies are kept
/// but renamed, as pagekite.py does.
const SPOOFABLE: [&[u8]; 6] = [
    b"X-Forwarded-For",
    b"X-Forwarded-Proto",
    b"X-Forwarded-Port",
    b"X-PageKite-For",
    b"X-PageKite-Proto",
    b"X-PageKite-Port",
];

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

/// Why the rewriter fell back to passing bytes through unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewriteError {
    HeadTooLarge,
    NotHttp,
    BadFraming,
}

impl fmt::Display for RewriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RewriteError::HeadTooLarge => {
                write!(f, "HTTP request head exceeds {MAX_HEAD} bytes")
            }
            RewriteError::NotHttp => f.write_str("data is not an HTTP/1.x request"),
            RewriteError::BadFraming => {
                f.write_str("HTTP request body framing is invalid or ambiguous")
            }
        }
    }
}

impl std::error::Error for RewriteError {}

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
    /// Head bytes seen, all of them held in `RequestRewriter::buf`.
    len: usize,
    line: Line,
    /// Still inside the method token: checked byte by byte so that binary
    /// data (a TLS hello, say) is refused at once, not after 16 KiB.
    in_method: bool,
}

impl HeadScan {
    const NEW: HeadScan = HeadScan {
        len: 0,
        line: Line::Text,
        in_method: true,
    };
}

enum Scan {
    Partial,
    Complete(usize),
    Failed(RewriteError),
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
    /// Upgraded, tunnelled or failed: bytes pass unchanged from now on.
    Passthrough,
}

/// What follows a complete head.
enum Next {
    Head,
    Body(u64),
    Chunked,
    Tunnel,
    Bad,
}

/// Rewrites the request direction of one HTTP stream.
pub struct RequestRewriter {
    state: State,
    /// The header lines inserted after every request line, CRLF-terminated.
    inserts: Vec<u8>,
    rename_host: bool,
    /// A head split across feeds, held until it ends.
    buf: Vec<u8>,
    /// The rewritten head handed to the sink.
    out: Vec<u8>,
}

impl RequestRewriter {
    pub fn new(info: ForwardInfo) -> Self {
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
            inserts: inserts.into_bytes(),
            rename_host: info.rewrite_host.is_some(),
            buf: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Feeds bytes from the tunnel. Calls `sink` with the bytes to write to the origin, in
    /// order: slices of `input` that pass unchanged (bodies, passthrough) are handed over
    /// directly without copying; rewritten heads are handed over from an internal buffer.
    /// Returns Err(e) at most once per stream, the first time it falls back to passthrough
    /// (the caller logs it); the bytes are still delivered to sink in passthrough form, so
    /// no data is ever lost or reordered. After an Err, later calls return Ok and pass through.
    pub fn feed(&mut self, input: &[u8], sink: &mut dyn FnMut(&[u8])) -> Result<(), RewriteError> {
        // input[start..pos] is unchanged data not yet handed over; it is
        // flushed in one piece when a rewritten head must follow it.
        let mut start = 0;
        let mut pos = 0;
        let mut failure = None;
        while let Some(rest) = input.get(pos..).filter(|r| !r.is_empty()) {
            match self.state {
                State::Passthrough => pos = input.len(),
                State::Body(left) => {
                    let take = usize::try_from(left).map_or(rest.len(), |l| l.min(rest.len()));
                    pos += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::Head(HeadScan::NEW)
                    } else {
                        State::Body(left)
                    };
                }
                State::Chunked(chunk) => match follow_chunked(chunk, rest) {
                    Ok((used, next)) => {
                        pos += used;
                        self.state = next.map_or(State::Head(HeadScan::NEW), State::Chunked);
                    }
                    Err(e) => {
                        failure = Some(e);
                        self.state = State::Passthrough;
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
                    }
                    if let Some(done) = input.get(start..pos).filter(|d| !d.is_empty()) {
                        sink(done);
                    }
                    start = pos;
                    match scan.scan(rest) {
                        Scan::Partial => {
                            self.buf.extend_from_slice(rest);
                            self.state = State::Head(scan);
                            pos = input.len();
                            start = pos;
                        }
                        Scan::Complete(used) => {
                            pos += used;
                            start = pos;
                            if let Err(e) = self.finish_head(rest.get(..used).unwrap_or(rest), sink)
                            {
                                failure = Some(e);
                            }
                        }
                        Scan::Failed(e) => {
                            // The held bytes go first, then this input as is.
                            sink(&self.buf);
                            self.release();
                            failure = Some(e);
                            self.state = State::Passthrough;
                        }
                    }
                }
            }
        }
        if let Some(done) = input.get(start..).filter(|d| !d.is_empty()) {
            sink(done);
        }
        // Passthrough is final, so a failure can only be seen once.
        failure.map_or(Ok(()), Err)
    }

    /// At the end of the stream: hands over a held partial head unchanged, so
    /// the origin sees every byte, and passes everything through from now on.
    pub fn flush(&mut self, sink: &mut dyn FnMut(&[u8])) {
        if !self.buf.is_empty() {
            sink(&self.buf);
            self.state = State::Passthrough;
        }
        self.release();
    }

    /// True once the rewriter only passes bytes through (upgrade, CONNECT, error): the caller
    /// may then skip calling feed and write directly.
    pub fn is_passthrough(&self) -> bool {
        matches!(self.state, State::Passthrough)
    }

    /// Bytes held back waiting for the rest of a head (so the caller can account for them).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Rewrites the head that ends with `tail` (the held bytes come first) and
    /// hands it over, then sets the state for what follows it.
    fn finish_head(
        &mut self,
        tail: &[u8],
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), RewriteError> {
        let head = if self.buf.is_empty() {
            tail
        } else {
            self.buf.extend_from_slice(tail);
            &self.buf
        };
        self.out.clear();
        let next = rewrite(head, &self.inserts, self.rename_host, &mut self.out);
        let (result, state) = match next {
            Ok(Next::Head) => (Ok(()), State::Head(HeadScan::NEW)),
            Ok(Next::Body(0)) => (Ok(()), State::Head(HeadScan::NEW)),
            Ok(Next::Body(n)) => (Ok(()), State::Body(n)),
            Ok(Next::Chunked) => (Ok(()), State::Chunked(Chunk::SIZE)),
            Ok(Next::Tunnel) => (Ok(()), State::Passthrough),
            // The head itself was understood, so it is still rewritten: only
            // where its body ends is unknown.
            Ok(Next::Bad) => (Err(RewriteError::BadFraming), State::Passthrough),
            Err(e) => (Err(e), State::Passthrough),
        };
        sink(if next.is_ok() { &self.out } else { head });
        self.state = state;
        self.release();
        result
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
    /// starts like a request line and stays within [`MAX_HEAD`].
    fn scan(&mut self, bytes: &[u8]) -> Scan {
        for (i, &b) in bytes.iter().enumerate() {
            if self.len >= MAX_HEAD {
                return Scan::Failed(RewriteError::HeadTooLarge);
            }
            self.len += 1;
            if self.in_method {
                if b == b' ' && self.len > 1 {
                    self.in_method = false;
                } else if !is_tchar(b) || self.len > MAX_METHOD {
                    return Scan::Failed(RewriteError::NotHttp);
                }
            }
            self.line = match (self.line, b) {
                (Line::Start | Line::Cr, b'\n') => return Scan::Complete(i + 1),
                (Line::Text, b'\n') => Line::Start,
                (Line::Start, b'\r') => Line::Cr,
                _ => Line::Text,
            };
        }
        Scan::Partial
    }
}

/// Steps through a chunked body in `bytes`. Returns how many bytes belong to
/// it and the state to resume from, or `None` when the body ended there.
fn follow_chunked(mut chunk: Chunk, bytes: &[u8]) -> Result<(usize, Option<Chunk>), RewriteError> {
    let bad = Err(RewriteError::BadFraming);
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
        i += 1;
        chunk = match (chunk, b) {
            (Chunk::Size { size, .. }, _) if b.is_ascii_hexdigit() => {
                let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                match size.checked_mul(16).and_then(|s| s.checked_add(digit)) {
                    Some(size) => Chunk::Size { size, digits: true },
                    None => return bad,
                }
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

/// Writes the rewritten `head` (a complete head, blank line included) into
/// `out` and says what follows it. `Err(NotHttp)` leaves `out` unused.
fn rewrite(
    head: &[u8],
    inserts: &[u8],
    rename_host: bool,
    out: &mut Vec<u8>,
) -> Result<Next, RewriteError> {
    let mut lines = head.split_inclusive(|&b| b == b'\n');
    let request = lines.next().ok_or(RewriteError::NotHttp)?;
    let connect = request_method(request)? == b"CONNECT";
    out.extend_from_slice(request);
    out.extend_from_slice(inserts);

    let mut bad = false;
    let mut length: Option<u64> = None;
    let (mut te, mut te_chunked, mut te_last_chunked) = (false, 0, false);
    let (mut upgrade, mut conn_upgrade) = (false, false);
    let mut prev_framing = false;
    for line in lines {
        if matches!(line.first(), Some(b' ' | b'\t')) {
            // An obsolete folded continuation. Harmless unless it extends a
            // framing header, whose value it would change.
            bad |= prev_framing;
            out.extend_from_slice(line);
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            prev_framing = false;
            out.extend_from_slice(line);
            continue;
        };
        let raw_name = line.get(..colon).unwrap_or_default();
        let name = trim(raw_name);
        let value = trim(line.get(colon + 1..).unwrap_or_default());
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        let rename = SPOOFABLE.iter().any(|s| is(s)) || (rename_host && is(b"Host"));
        if rename {
            out.extend_from_slice(b"X-Old-");
        }
        out.extend_from_slice(line);

        prev_framing = is(b"Content-Length") || is(b"Transfer-Encoding");
        // "Content-Length : 5" must be refused by servers (RFC 9112 §5.1),
        // so some would see no length where we would see one.
        bad |= prev_framing && name.len() != raw_name.len();
        if is(b"Content-Length") {
            for item in value.split(|&b| b == b',') {
                match (parse_decimal(trim(item)), length) {
                    (None, _) => bad = true,
                    (Some(n), Some(old)) if n != old => bad = true,
                    (n, _) => length = n,
                }
            }
        } else if is(b"Transfer-Encoding") {
            te = true;
            for coding in value.split(|&b| b == b',').map(trim) {
                if !coding.is_empty() {
                    te_last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                    te_chunked += usize::from(te_last_chunked);
                }
            }
        } else if is(b"Upgrade") {
            upgrade |= !value.is_empty();
        } else if is(b"Connection") {
            conn_upgrade |= value
                .split(|&b| b == b',')
                .any(|t| trim(t).eq_ignore_ascii_case(b"upgrade"));
        }
    }
    // Chunked must be applied exactly once and last; a request with both
    // framings is a classic smuggling attempt (RFC 9112 §6.3).
    bad |= te && (!te_last_chunked || te_chunked != 1 || length.is_some());
    Ok(if connect {
        Next::Tunnel
    } else if bad {
        Next::Bad
    } else if upgrade && conn_upgrade {
        Next::Tunnel
    } else if te {
        Next::Chunked
    } else {
        length.map_or(Next::Head, Next::Body)
    })
}

/// Checks `METHOD SP target SP HTTP/1.x` and returns the method.
fn request_method(line: &[u8]) -> Result<&[u8], RewriteError> {
    let line = trim(line);
    let space = line.iter().position(|&b| b == b' ');
    let last = line.iter().rposition(|&b| b == b' ');
    let (Some(space), Some(last)) = (space, last) else {
        return Err(RewriteError::NotHttp);
    };
    let method = line.get(..space).unwrap_or_default();
    let target = trim(line.get(space + 1..last).unwrap_or_default());
    let version = line.get(last + 1..).unwrap_or_default();
    let http1 = match version {
        [h, t1, t2, p, b'/', b'1', b'.', minor] => {
            [*h, *t1, *t2, *p].eq_ignore_ascii_case(b"HTTP") && minor.is_ascii_digit()
        }
        _ => false,
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) || target.is_empty() || !http1 {
        return Err(RewriteError::NotHttp);
    }
    Ok(method)
}

/// A Content-Length item: digits only, no sign, no overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        let v = u64::from((d as char).to_digit(10)?);
        acc.checked_mul(10)?.checked_add(v)
    })
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `bytes` without surrounding spaces, tabs and line ending.
fn trim(bytes: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = bytes.iter().position(|b| !ws(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !ws(b)).map_or(start, |e| e + 1);
    bytes.get(start..end).unwrap_or_default()
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
mod tests {
    use super::*;

    /// What every head gets with [`info`].
    const ADD: &str =
        "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-PageKite-Port: 9080\r\n";

    fn info() -> ForwardInfo {
        ForwardInfo {
            remote_ip: "127.0.0.1".into(),
            port: 9080,
            tls: false,
            rewrite_host: None,
        }
    }

    /// Feeds `parts`, then flushes as at the end of the stream.
    fn run(info: &ForwardInfo, parts: &[&[u8]]) -> (Vec<u8>, Vec<RewriteError>) {
        let mut rw = RequestRewriter::new(info.clone());
        let mut out = Vec::new();
        let mut errs = Vec::new();
        for part in parts {
            if let Err(e) = rw.feed(part, &mut |b| out.extend_from_slice(b)) {
                errs.push(e);
            }
        }
        rw.flush(&mut |b| out.extend_from_slice(b));
        assert_eq!(rw.pending(), 0);
        (out, errs)
    }

    /// The single-call result, after checking that every two-way split and
    /// byte-at-a-time feeding give the same bytes and errors.
    fn check_with(info: &ForwardInfo, input: &[u8]) -> (Vec<u8>, Vec<RewriteError>) {
        let whole = run(info, &[input]);
        for k in 0..=input.len() {
            let (a, b) = input.split_at(k);
            assert_eq!(run(info, &[a, b]), whole, "split at {k}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(info, &bytes), whole, "byte at a time");
        whole
    }

    fn check(input: &str) -> (String, Vec<RewriteError>) {
        let (out, errs) = check_with(&info(), input.as_bytes());
        (String::from_utf8(out).unwrap(), errs)
    }

    fn ok(input: &str) -> String {
        let (out, errs) = check(input);
        assert_eq!(errs, []);
        out
    }

    #[test]
    fn protocol_doc_example() {
        let input = "GET /hello HTTP/1.1\r\nHost: foo.test\r\nUser-Agent: curl/7.88.1\r\n\
                     Accept: */*\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
        let want = "GET /hello HTTP/1.1\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\
                    X-PageKite-Port: 9080\r\nHost: foo.test\r\nUser-Agent: curl/7.88.1\r\n\
                    Accept: */*\r\nX-Old-X-Forwarded-For: 6.6.6.6\r\n\r\n";
        assert_eq!(ok(input), want);
    }

    #[test]
    fn keep_alive_gets() {
        let input =
            "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nx-forwarded-for: 1\r\n\r\n";
        let want = format!(
            "GET /a HTTP/1.1\r\n{ADD}Host: h\r\n\r\nGET /b HTTP/1.1\r\n{ADD}X-Old-x-forwarded-for: 1\r\n\r\n"
        );
        assert_eq!(ok(input), want);
    }

    #[test]
    fn content_length_body_is_not_rewritten() {
        let body = "GET / HTTP/1.1\r\nX-Forwarded-For: x\r\n\r\n";
        let input = format!(
            "POST /f HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}GET /n HTTP/1.1\r\n\r\n",
            body.len()
        );
        let want = format!(
            "POST /f HTTP/1.1\r\n{ADD}Content-Length: {}\r\n\r\n{body}GET /n HTTP/1.1\r\n{ADD}\r\n",
            body.len()
        );
        assert_eq!(ok(&input), want);
        // A zero length and a repeated identical one are fine too.
        let input = "PUT / HTTP/1.1\r\nContent-Length: 0\r\n\r\nPUT / HTTP/1.1\r\n\
                     Content-Length: 2, 2\r\nContent-length: 2\r\n\r\nhiGET / HTTP/1.0\r\n\r\n";
        assert_eq!(ok(input).matches(ADD).count(), 3);
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let body = "5;name=val\r\nhello\r\n1B ; x=\"y\"\r\nGET / HTTP/1.1\r\nX-Forwarded\r\n\
                    0\r\nX-Forwarded-For: trailer\r\nX-T: t\r\n\r\n";
        let input = format!(
            "POST /c HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n{body}GET /n HTTP/1.1\r\n\r\n"
        );
        let want = format!(
            "POST /c HTTP/1.1\r\n{ADD}Transfer-Encoding: gzip, Chunked\r\n\r\n{body}\
             GET /n HTTP/1.1\r\n{ADD}\r\n"
        );
        assert_eq!(ok(&input), want);
        // Bare LF line endings and no trailers.
        let input =
            "POST / HTTP/1.1\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\nGET / HTTP/1.1\n\n";
        let want = format!(
            "POST / HTTP/1.1\n{ADD}Transfer-Encoding: chunked\n\n3\nabc\n0\n\nGET / HTTP/1.1\n{ADD}\n"
        );
        assert_eq!(ok(input), want);
    }

    #[test]
    fn websocket_upgrade_passes_the_rest() {
        let head =
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n";
        let after = "\u{1}\u{5}hello GET / HTTP/1.1\r\nX-Forwarded-For: x\r\n\r\n";
        let (out, errs) = check(&format!("{head}{after}"));
        assert_eq!(errs, []);
        let want = format!(
            "GET /ws HTTP/1.1\r\n{ADD}Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n{after}"
        );
        assert_eq!(out, want);
        let mut rw = RequestRewriter::new(info());
        assert_eq!(rw.feed(head.as_bytes(), &mut |_| {}), Ok(()));
        assert!(rw.is_passthrough());
        // Upgrade without the Connection token is an ordinary request.
        let input = "GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(ok(input).matches(ADD).count(), 2);
    }

    #[test]
    fn connect_passes_the_rest() {
        let input =
            "CONNECT h:22 HTTP/1.1\r\nHost: h:22\r\n\r\nSSH-2.0-x\r\nGET / HTTP/1.1\r\n\r\n";
        let want = format!(
            "CONNECT h:22 HTTP/1.1\r\n{ADD}Host: h:22\r\n\r\nSSH-2.0-x\r\nGET / HTTP/1.1\r\n\r\n"
        );
        assert_eq!(ok(input), want);
    }

    #[test]
    fn bare_lf_and_blank_lines_between_requests() {
        let input =
            "GET / HTTP/1.0\nHost: a\nX-Forwarded-Proto: https\n\n\r\n\nGET /b HTTP/1.1\r\n\r\n";
        let want = format!(
            "GET / HTTP/1.0\n{ADD}Host: a\nX-Old-X-Forwarded-Proto: https\n\n\r\n\nGET /b HTTP/1.1\r\n{ADD}\r\n"
        );
        assert_eq!(ok(input), want);
    }

    #[test]
    fn renames_only_the_forwarding_headers() {
        let input = "GET / HTTP/1.1\r\nX-PAGEKITE-PORT: 1\r\nX-Forwarded-Port: 2\r\nX-PageKite-For: 3\r\n\
                     X-PageKite-Proto: 4\r\nX-Forwarded-Proto : 5\r\nX-Forwarded-Host: 6\r\n\
                     X-Forwarded-Forx: 7\r\nHost: h\r\n\r\n";
        let want = format!(
            "GET / HTTP/1.1\r\n{ADD}X-Old-X-PAGEKITE-PORT: 1\r\nX-Old-X-Forwarded-Port: 2\r\n\
             X-Old-X-PageKite-For: 3\r\nX-Old-X-PageKite-Proto: 4\r\nX-Old-X-Forwarded-Proto : 5\r\n\
             X-Forwarded-Host: 6\r\nX-Forwarded-Forx: 7\r\nHost: h\r\n\r\n"
        );
        assert_eq!(ok(input), want);
    }

    #[test]
    fn forward_info_variants() {
        let input = b"GET / HTTP/1.1\r\nHost: foo.test\r\n\r\n";
        let mut info = ForwardInfo {
            remote_ip: "::FFFF:10.1.2.3".into(),
            port: 443,
            tls: true,
            rewrite_host: Some("localhost:8000".into()),
        };
        let (out, errs) = check_with(&info, input);
        assert_eq!(errs, []);
        let want = "GET / HTTP/1.1\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\n\
                    X-PageKite-Port: 443\r\nHost: localhost:8000\r\nX-Old-Host: foo.test\r\n\r\n";
        assert_eq!(String::from_utf8(out).unwrap(), want);

        let first_line = |info: &ForwardInfo| {
            let out = run(info, &[input]).0;
            let text = String::from_utf8(out).unwrap();
            text.lines().nth(1).unwrap().to_owned()
        };
        info.remote_ip = "::ffff:2001:db8::1".into();
        assert_eq!(first_line(&info), "X-Forwarded-For: ::ffff:2001:db8::1");
        info.remote_ip = "2001:db8::1".into();
        assert_eq!(first_line(&info), "X-Forwarded-For: 2001:db8::1");
        info.remote_ip = String::new();
        assert_eq!(first_line(&info), "X-Forwarded-For: unknown");
        info.remote_ip = "1.2.3.4\r\nX-Evil: 1".into();
        assert_eq!(first_line(&info), "X-Forwarded-For: 1.2.3.4X-Evil: 1");
    }

    #[test]
    fn partial_heads_are_held() {
        let mut rw = RequestRewriter::new(info());
        let mut out = Vec::new();
        assert_eq!(
            rw.feed(b"\r\nGET / HT", &mut |b| out.extend_from_slice(b)),
            Ok(())
        );
        assert_eq!((out.as_slice(), rw.pending()), (&b"\r\n"[..], 8));
        assert_eq!(
            rw.feed(b"TP/1.1\r\nA: b\r\n", &mut |b| out.extend_from_slice(b)),
            Ok(())
        );
        assert_eq!((out.len(), rw.pending()), (2, 22));
        assert_eq!(
            rw.feed(b"\r\nPOST", &mut |b| out.extend_from_slice(b)),
            Ok(())
        );
        assert_eq!(rw.pending(), 4);
        assert_eq!(
            out,
            format!("\r\nGET / HTTP/1.1\r\n{ADD}A: b\r\n\r\n").as_bytes()
        );
        assert!(!rw.is_passthrough());
    }

    #[test]
    fn bodies_are_not_copied() {
        let mut rw = RequestRewriter::new(info());
        let head = b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123";
        assert_eq!(rw.feed(head, &mut |_| {}), Ok(()));
        let body = [b'x'; 96];
        let mut slices = Vec::new();
        assert_eq!(
            rw.feed(&body, &mut |b| slices.push((b.as_ptr(), b.len()))),
            Ok(())
        );
        assert_eq!(slices, [(body.as_ptr(), body.len())]);
    }

    /// Feeds `good` then `bad` in every split and checks that `bad` becomes
    /// `head` (its rewritten first `from` bytes) and then passes through,
    /// with exactly one `err` reported.
    fn check_fallback(good: &str, bad: &str, from: usize, head: &str, err: RewriteError) {
        let input = format!("{good}{bad}");
        let (out, errs) = check_with(&info(), input.as_bytes());
        assert_eq!(errs, [err]);
        let want = format!("{}{head}{}", ok(good), &bad[from..]);
        assert_eq!(String::from_utf8_lossy(&out), want);
        let mut rw = RequestRewriter::new(info());
        assert_eq!(rw.feed(input.as_bytes(), &mut |_| {}), Err(err));
        assert!(rw.is_passthrough());
        assert_eq!(rw.feed(b"GET / HTTP/1.1\r\n\r\n", &mut |_| {}), Ok(()));
        assert_eq!(rw.pending(), 0);
    }

    #[test]
    fn garbage_passes_through() {
        let good = "GET / HTTP/1.1\r\nX-Forwarded-For: 1\r\n\r\n";
        let tail = "GET / HTTP/1.1\r\nX-Forwarded-For: 2\r\n\r\n";
        let e = RewriteError::NotHttp;
        let method = "A".repeat(MAX_METHOD);
        for bad in [
            "\u{16}\u{3}\u{1}",
            "GET /\r\n\r\n",
            "GET / SIP/2.0\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET  HTTP/1.1\r\n\r\n",
            &format!("{method}x"),
        ] {
            check_fallback(good, &format!("{bad}{tail}"), 0, "", e);
        }
        // Refused at the first bad byte, not after buffering.
        let mut rw = RequestRewriter::new(info());
        let mut out = Vec::new();
        assert_eq!(
            rw.feed(b"\x16\x03", &mut |b| out.extend_from_slice(b)),
            Err(e)
        );
        assert_eq!((out.as_slice(), rw.pending()), (&b"\x16\x03"[..], 0));
    }

    #[test]
    fn bad_framing_passes_through_after_the_head() {
        let good = "POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx";
        let tail = "GET / HTTP/1.1\r\nX-Forwarded-For: 2\r\n\r\n";
        let e = RewriteError::BadFraming;
        for framing in [
            "Content-Length: 5\r\nContent-Length: 6",
            "Content-Length: 5, 6",
            "Content-Length: 5x",
            "Content-Length: -1",
            "Content-Length: +1",
            "Content-Length:",
            "Content-Length: 99999999999999999999",
            "Content-Length : 1",
            "Content-Length: 1\r\n 2",
            "Transfer-Encoding: chunked, gzip",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: chunked\r\nContent-Length: 3",
        ] {
            let head = format!("POST /b HTTP/1.1\r\n{framing}\r\n\r\n");
            let bad = format!("{head}{tail}");
            let out = format!("POST /b HTTP/1.1\r\n{ADD}{framing}\r\n\r\n");
            check_fallback(good, &bad, head.len(), &out, e);
        }
        let chunked = "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for body in [
            "zz\r\n",
            "\r\n",
            "3\rabc",
            "3\r\nabcX",
            "0\r\n\rX",
            "fffffffffffffffff\r\n",
        ] {
            let bad = format!("{chunked}{body}\r\n0\r\n\r\n{tail}");
            check_fallback(good, &bad, chunked.len(), &ok(chunked), e);
        }
    }

    #[test]
    fn head_size_limit() {
        let good = "GET / HTTP/1.1\r\nX-Forwarded-For: 1\r\n\r\n";
        let start = "GET / HTTP/1.1\r\nX-Big: ";
        let fill = |len: usize| "a".repeat(len - start.len() - 4);
        let exact = format!("{start}{}\r\n\r\n", fill(MAX_HEAD));
        assert_eq!(exact.len(), MAX_HEAD);
        assert_eq!(run(&info(), &[exact.as_bytes()]).1, []);
        let over = format!(
            "{start}{}\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            fill(MAX_HEAD + 1)
        );
        let input = format!("{good}{over}");
        let want = format!("{}{over}", ok(good));
        let whole = run(&info(), &[input.as_bytes()]);
        assert_eq!(whole, (want.into_bytes(), vec![RewriteError::HeadTooLarge]));
        let bytes: Vec<&[u8]> = input.as_bytes().chunks(1).collect();
        assert_eq!(run(&info(), &bytes), whole);
        for k in (0..input.len()).step_by(997) {
            let (a, b) = input.as_bytes().split_at(k);
            assert_eq!(run(&info(), &[a, b]), whole, "split at {k}");
        }
    }

    const REQUESTS: [&str; 4] = [
        "GET / HTTP/1.1\r\n",
        "POST /p HTTP/1.1\n",
        "CONNECT a:1 HTTP/1.0\r\n",
        "PUT /x?a=b HTTP/1.0\r\n",
    ];
    const HEADERS: [&str; 10] = [
        "Host: h\r\n",
        "X-Forwarded-For: 6.6.6.6\r\n",
        "x-pagekite-port: 1\n",
        "Content-Length: 3\r\n",
        "Content-Length: 0\r\n",
        "Transfer-Encoding: chunked\r\n",
        "Upgrade: websocket\r\nConnection: upgrade\r\n",
        " folded\r\n",
        "Connection: keep-alive\r\n",
        "X-Old-Host: a\r\n",
    ];
    const BODIES: [&str; 8] = [
        "abc",
        "3\r\nabc\r\n",
        "1;x=y\r\nZ\r\n",
        "0\r\n\r\n",
        "0\r\nT: x\r\n\r\n",
        "\r\n",
        "\n",
        "GET / HTTP/1.1\r\nX-Forwarded-For: 1\r\n\r\n",
    ];

    fn remove(hay: &[u8], needle: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(hay.len());
        let mut i = 0;
        while i < hay.len() {
            if hay[i..].starts_with(needle) {
                i += needle.len();
            } else {
                out.push(hay[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn fuzz() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let infos = [None, Some("rh.test".to_owned())].map(|rewrite_host| ForwardInfo {
            remote_ip: "10.9.8.7".into(),
            port: 4242,
            tls: rewrite_host.is_some(),
            rewrite_host,
        });
        let mut stats = [0; 4];
        for _ in 0..20_000 {
            let info = &infos[rand(2)];
            let insert = RequestRewriter::new(info.clone()).inserts;
            // Mostly well-formed messages, with the odd piece dropped in
            // anywhere, so that every state is reached.
            let mut input = Vec::new();
            for _ in 0..1 + rand(4) {
                let mut pieces = vec![REQUESTS[rand(REQUESTS.len())]];
                for _ in 0..rand(5) {
                    pieces.push(HEADERS[rand(HEADERS.len())]);
                }
                pieces.push(["\r\n", "\n"][rand(2)]);
                for _ in 0..rand(3) {
                    pieces.push(BODIES[rand(BODIES.len())]);
                }
                for piece in pieces {
                    match rand(24) {
                        0 => {
                            for _ in 0..rand(4) {
                                input.push(rand(256) as u8);
                            }
                        }
                        1 => input.extend_from_slice(HEADERS[rand(HEADERS.len())].as_bytes()),
                        2 => input.extend_from_slice(BODIES[rand(BODIES.len())].as_bytes()),
                        3 => continue,
                        _ => {}
                    }
                    input.extend_from_slice(piece.as_bytes());
                }
            }
            let (out, errs) = run(info, &[&input]);
            assert!(errs.len() <= 1);
            assert!(out.len() >= input.len());
            // Without what was added, the output is exactly the input.
            assert_eq!(
                remove(&remove(&out, &insert), b"X-Old-"),
                remove(&input, b"X-Old-")
            );
            stats[errs.first().map_or(0, |&e| e as usize + 1)] += 1;
            let mut parts = Vec::new();
            let mut rest = input.as_slice();
            while !rest.is_empty() {
                let (part, tail) = rest.split_at(rand(rest.len() + 1).max(1));
                parts.push(part);
                rest = tail;
            }
            assert_eq!(run(info, &parts), (out, errs));
        }
        // Success, NotHttp and BadFraming were each reached often enough to
        // mean something (HeadTooLarge has its own test).
        assert!(
            [stats[0], stats[2], stats[3]].iter().all(|&n| n > 1000),
            "{stats:?}"
        );
    }
}
