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
//! A CONNECT tunnels the rest of the stream. After an upgrade request, though,
//! only the origin knows whether the protocol switched (`curl --http2` asks
//! for h2c, which most origins refuse and go on in HTTP/1.1), so what follows
//! is checked byte by byte: a request line means "refused" and is rewritten
//! as usual; anything else is the new protocol and passes through, silently.
//! Both WebSocket frames and the HTTP/2 preface are told apart early (within
//! two bytes and at the end of their first line), so nothing waits on them.
//!
//! With [`RequestRewriter::block_dangerous`] on, it is also pagekite.py's
//! security filter: the first line of every head is checked with
//! [`security_blocks`] before any of it is handed over, and a dangerous one
//! stops the stream (`Blocked`) with nothing of that head, or of anything
//! after it, delivered. Bytes that could carry a request past the check are
//! refused the same way: a request line too long to check, a head whose body
//! framing is ambiguous (the classic way to smuggle a second request), and a
//! CONNECT (the frontend never forwards one as an HTTP stream, so it can only
//! come later on a keep-alive connection). What still passes unchecked is
//! what follows an accepted upgrade, a head too large to rewrite (its own
//! request line was checked) and bytes after a line that is not a request.
//! With [`RequestRewriter::raw_headers`] (`+rawheaders`) heads pass unchanged
//! but are still followed, so the filter still sees every request.

use std::fmt;
use std::net::Ipv4Addr;

use super::options::security_blocks;

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
    /// The security filter refused a request: the caller answers with the
    /// 500 page and closes the stream.
    Blocked,
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
            RewriteError::Blocked => f.write_str("request blocked by the security filter"),
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
    /// Head bytes seen: those of earlier feeds are held in
    /// `RequestRewriter::buf`.
    len: usize,
    line: Line,
    /// Still inside the method token: checked byte by byte so that binary
    /// data (a TLS hello, say) is refused at once, not after 16 KiB.
    in_method: bool,
    /// The request line has ended and is a good one.
    line_ok: bool,
    /// The previous request asked for an upgrade, so these bytes may be the
    /// new protocol: until they prove to be a request line, not being one
    /// is what a successful upgrade looks like, not an error.
    after_upgrade: bool,
}

impl HeadScan {
    const fn new(after_upgrade: bool) -> HeadScan {
        HeadScan {
            len: 0,
            line: Line::Text,
            in_method: true,
            line_ok: false,
            after_upgrade,
        }
    }

    /// What to report when these bytes turn out not to be a request head.
    fn refusal(&self, e: RewriteError) -> Option<RewriteError> {
        (self.line_ok || !self.after_upgrade).then_some(e)
    }
}

enum Scan {
    Partial,
    /// The request line ends after this many bytes: it must be checked
    /// before the scan goes on, so that a line that is not HTTP/1.x (the
    /// HTTP/2 preface, say) is refused without waiting for a blank line.
    LineEnd(usize),
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
    /// The security filter refused a request: bytes are dropped from now on.
    Blocked,
}

/// What follows a complete head. An upgrade request still has its own body
/// framing: the new protocol can only start after that body.
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
    /// `+rawheaders`: heads pass unchanged (but are still followed and
    /// checked).
    raw: bool,
    /// A head split across feeds, held until it ends.
    buf: Vec<u8>,
    /// The rewritten head handed to the sink.
    out: Vec<u8>,
    /// The request whose body is passing asked for an upgrade: what follows
    /// the body may be the new protocol.
    upgrading: bool,
    /// Apply the security filter to every request.
    block_dangerous: bool,
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
            state: State::Head(HeadScan::new(false)),
            inserts: inserts.into_bytes(),
            rename_host: info.rewrite_host.is_some(),
            raw: false,
            buf: Vec::new(),
            out: Vec::new(),
            upgrading: false,
            block_dangerous: false,
        }
    }

    /// Turns the security filter on or off (off by default). pagekite.py
    /// runs it unless the kite is trusted: see
    /// [`KiteOptions::filters_dangerous`](super::options::KiteOptions::filters_dangerous).
    pub fn block_dangerous(mut self, on: bool) -> Self {
        self.block_dangerous = on;
        self
    }

    /// `+rawheaders`: nothing is inserted or renamed, but requests are still
    /// followed, so the security filter can check every one (pagekite.py
    /// filters such kites too).
    pub fn raw_headers(mut self, on: bool) -> Self {
        if on {
            self.raw = true;
            self.inserts.clear();
            self.rename_host = false;
        }
        self
    }

    /// Feeds bytes from the tunnel. Calls `sink` with the bytes to write to the origin, in
    /// order: slices of `input` that pass unchanged (bodies, passthrough) are handed over
    /// directly without copying; rewritten heads are handed over from an internal buffer.
    /// Returns Err(e) at most once per stream, the first time it falls back to passthrough
    /// (the caller logs it); the bytes are still delivered to sink in passthrough form, so
    /// no data is ever lost or reordered. After an Err, later calls return Ok and pass through.
    /// Switching to passthrough because an upgrade went ahead is expected and returns Ok.
    ///
    /// `Err(Blocked)` is different: nothing of the refused head or of what follows it reaches
    /// sink (the bytes before it do), and every later call drops its input and returns
    /// `Err(Blocked)` again. The caller sends the 500 page and closes the stream.
    pub fn feed(&mut self, input: &[u8], sink: &mut dyn FnMut(&[u8])) -> Result<(), RewriteError> {
        // input[start..pos] is data not yet handed over: unchanged data,
        // flushed in one piece when a rewritten head must follow it, or the
        // part of a started head that is not in `buf`.
        let mut start = 0;
        let mut pos = 0;
        let mut failure = None;
        while let Some(rest) = input.get(pos..).filter(|r| !r.is_empty()) {
            match self.state {
                State::Passthrough => pos = input.len(),
                State::Blocked => {
                    // Whatever of this input was not handed over yet belongs
                    // to the refused head or comes after it.
                    start = input.len();
                    failure = Some(RewriteError::Blocked);
                    break;
                }
                State::Body(left) => {
                    let take = usize::try_from(left).map_or(rest.len(), |l| l.min(rest.len()));
                    pos += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        self.next_head()
                    } else {
                        State::Body(left)
                    };
                }
                State::Chunked(chunk) => match follow_chunked(chunk, rest) {
                    Ok((used, next)) => {
                        pos += used;
                        self.state = match next {
                            Some(chunk) => State::Chunked(chunk),
                            None => self.next_head(),
                        };
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
                        if let Some(done) = input.get(start..pos).filter(|d| !d.is_empty()) {
                            sink(done);
                        }
                        start = pos;
                    }
                    match scan.scan(rest) {
                        Scan::Partial => {
                            self.buf
                                .extend_from_slice(input.get(start..).unwrap_or_default());
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
                                self.buf.extend_from_slice(line);
                                start = pos;
                                &self.buf
                            };
                            if self.block_dangerous && security_blocks(line) {
                                // Checked before the method, so that lines
                                // pagekite.py refuses but we would pass
                                // (`HTTP/2.0`, say) are refused too.
                                self.block();
                            } else if request_method(line).is_ok() {
                                scan.line_ok = true;
                                self.state = State::Head(scan);
                            } else {
                                // The held bytes go first; the rest is
                                // still in input[start..] and passes as is.
                                self.pass_held(sink);
                                failure = scan.refusal(RewriteError::NotHttp);
                            }
                        }
                        Scan::Complete(used) => {
                            pos += used;
                            let head = input.get(start..pos).unwrap_or_default();
                            start = pos;
                            if let Err(e) = self.finish_head(head, sink) {
                                failure = Some(e);
                            }
                        }
                        Scan::Failed(RewriteError::HeadTooLarge)
                            if self.block_dangerous && !scan.line_ok =>
                        {
                            // A request line this long can't be checked.
                            self.block();
                        }
                        Scan::Failed(e) => {
                            // The held bytes go first, then this input as is.
                            self.pass_held(sink);
                            failure = scan.refusal(e);
                        }
                    }
                }
            }
        }
        if matches!(self.state, State::Blocked) {
            start = input.len();
            failure = Some(RewriteError::Blocked);
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
        let unchecked = matches!(self.state, State::Head(scan) if !scan.line_ok);
        if self.block_dangerous && unchecked && security_blocks(&self.buf) {
            // A request line cut short by the end of the stream.
            self.block();
        } else if !self.buf.is_empty() {
            sink(&self.buf);
            self.state = State::Passthrough;
        }
        self.release();
    }

    /// True once the rewriter only passes bytes through (CONNECT, error, or an upgrade once
    /// data that is not a request follows it): the caller may then skip calling feed and
    /// write directly.
    pub fn is_passthrough(&self) -> bool {
        matches!(self.state, State::Passthrough)
    }

    /// True once the security filter has refused a request (see [`feed`](Self::feed)).
    pub fn is_blocked(&self) -> bool {
        matches!(self.state, State::Blocked)
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
        let renames = (!self.raw, self.rename_host);
        let next = rewrite(head, &self.inserts, renames, &mut self.out);
        if self.block_dangerous && matches!(next, Ok((Next::Bad | Next::Tunnel, _))) {
            // Where this request ends is unknown or up to the origin, so
            // what follows could not be checked.
            self.block();
            return Err(RewriteError::Blocked);
        }
        // An upgrade takes effect (if the origin agrees) only once the whole
        // request, body included, has been sent.
        let (result, state) = match next {
            Ok((Next::Head | Next::Body(0), upgrade)) => {
                (Ok(()), State::Head(HeadScan::new(upgrade)))
            }
            Ok((Next::Body(n), upgrade)) => {
                self.upgrading = upgrade;
                (Ok(()), State::Body(n))
            }
            Ok((Next::Chunked, upgrade)) => {
                self.upgrading = upgrade;
                (Ok(()), State::Chunked(Chunk::SIZE))
            }
            Ok((Next::Tunnel, _)) => (Ok(()), State::Passthrough),
            // The head itself was understood, so it is still rewritten: only
            // where its body ends is unknown.
            Ok((Next::Bad, _)) => (Err(RewriteError::BadFraming), State::Passthrough),
            Err(e) => (Err(e), State::Passthrough),
        };
        sink(if next.is_ok() { &self.out } else { head });
        self.state = state;
        self.release();
        result
    }

    /// The state after a request: another head, perhaps of the protocol it
    /// asked to upgrade to.
    fn next_head(&mut self) -> State {
        State::Head(HeadScan::new(std::mem::take(&mut self.upgrading)))
    }

    /// Refuses the current head: the held bytes are dropped, and so is
    /// everything from now on.
    fn block(&mut self) {
        self.release();
        self.state = State::Blocked;
    }

    /// Gives up on the current head: the held bytes are handed over as they
    /// are, and everything passes through from now on.
    fn pass_held(&mut self, sink: &mut dyn FnMut(&[u8])) {
        if !self.buf.is_empty() {
            sink(&self.buf);
        }
        self.release();
        self.state = State::Passthrough;
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
    /// end of the request line for the caller to check the rest of it.
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
            if self.line == Line::Start && !self.line_ok {
                return Scan::LineEnd(i + 1);
            }
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
/// `out` and says what follows it, and whether it asks for an upgrade (which
/// may take effect after its body). `Err(NotHttp)` leaves `out` unused.
/// The pair says whether to rename the spoofable headers and `Host:`.
fn rewrite(
    head: &[u8],
    inserts: &[u8],
    (rename_spoofable, rename_host): (bool, bool),
    out: &mut Vec<u8>,
) -> Result<(Next, bool), RewriteError> {
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
        let rename =
            (rename_spoofable && SPOOFABLE.iter().any(|s| is(s))) || (rename_host && is(b"Host"));
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
    let next = if connect {
        Next::Tunnel
    } else if bad {
        Next::Bad
    } else if te {
        Next::Chunked
    } else {
        length.map_or(Next::Head, Next::Body)
    };
    Ok((next, upgrade && conn_upgrade))
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
#[path = "http_tests.rs"]
mod tests;
