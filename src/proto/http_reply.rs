//! Reading one HTTP/1.x response to a request rkite made itself (ACME):
//! the status, the headers, and the body by `Content-Length`, `chunked`
//! transfer coding, or the close. Fed in pieces, bounded throughout: a
//! head over [`MAX_HEAD`] bytes or a body over the caller's limit is an
//! error, never a truncation. Pure: bytes in, a [`Response`] out.

use std::fmt;

/// The largest response head read.
pub const MAX_HEAD: usize = 16 * 1024;
/// Headers kept at most.
const MAX_HEADERS: usize = 64;

/// A complete response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Names lowercased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a response was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    HeadTooLarge,
    TooManyHeaders,
    /// The status line is not HTTP/1.x's.
    NotHttp,
    BadHeader,
    BadLength,
    BadChunk,
    /// The body is over the caller's limit.
    BodyTooLarge(usize),
    /// The connection closed before the response was complete.
    Truncated,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::HeadTooLarge => write!(f, "response head over {MAX_HEAD} bytes"),
            ReplyError::TooManyHeaders => write!(f, "more than {MAX_HEADERS} response headers"),
            ReplyError::NotHttp => f.write_str("the response is not HTTP/1.x"),
            ReplyError::BadHeader => f.write_str("a malformed response header"),
            ReplyError::BadLength => f.write_str("a bad Content-Length"),
            ReplyError::BadChunk => f.write_str("a malformed chunk"),
            ReplyError::BodyTooLarge(limit) => write!(f, "response body over {limit} bytes"),
            ReplyError::Truncated => f.write_str("the connection closed mid-response"),
        }
    }
}

impl std::error::Error for ReplyError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    Length(usize),
    Chunked(Chunk),
    /// Until the close.
    Close,
}

/// Where a chunked body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// This many bytes of chunk data left.
    Data(usize),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, up to an empty line.
    Trailers,
    Done,
}

/// Reads one response, fed in pieces.
#[derive(Debug)]
pub struct ReplyReader {
    limit: usize,
    head: Vec<u8>,
    /// Unparsed bytes of a chunked body's framing.
    line: Vec<u8>,
    response: Option<Response>,
    body: Option<Body>,
    /// A response to HEAD has no body, whatever its headers say.
    head_request: bool,
    done: bool,
}

impl ReplyReader {
    /// A reader keeping a body of at most `limit` bytes.
    pub fn new(limit: usize, head_request: bool) -> ReplyReader {
        ReplyReader {
            limit,
            head: Vec::new(),
            line: Vec::new(),
            response: None,
            body: None,
            head_request,
            done: false,
        }
    }

    /// Takes bytes; `Some` once the response is complete. Bytes after it
    /// are ignored (the request asked the server to close).
    pub fn handle_input(&mut self, mut input: &[u8]) -> Result<Option<Response>, ReplyError> {
        if self.done {
            return Ok(None);
        }
        if self.response.is_none() {
            let Some(rest) = self.read_head(input)? else {
                return Ok(None);
            };
            input = rest;
        }
        while !input.is_empty() || self.complete() {
            if self.complete() {
                self.done = true;
                return Ok(self.response.take());
            }
            input = self.read_body(input)?;
        }
        Ok(None)
    }

    /// The connection closed: the response, if it may end here.
    pub fn finish(&mut self) -> Result<Response, ReplyError> {
        match (self.body, self.response.take()) {
            (Some(Body::Close), Some(response)) => Ok(response),
            (_, Some(response)) if self.complete_with(&response) => Ok(response),
            _ => Err(ReplyError::Truncated),
        }
    }

    fn complete(&self) -> bool {
        self.response
            .as_ref()
            .is_some_and(|r| self.complete_with(r))
    }

    fn complete_with(&self, response: &Response) -> bool {
        match self.body {
            Some(Body::Length(n)) => response.body.len() >= n,
            Some(Body::Chunked(Chunk::Done)) => true,
            _ => false,
        }
    }

    /// Reads head bytes; the rest of `input` once the head is whole.
    fn read_head<'a>(&mut self, input: &'a [u8]) -> Result<Option<&'a [u8]>, ReplyError> {
        for (at, &b) in input.iter().enumerate() {
            if self.head.len() >= MAX_HEAD {
                return Err(ReplyError::HeadTooLarge);
            }
            self.head.push(b);
            if b == b'\n' && (self.head.ends_with(b"\n\n") || self.head.ends_with(b"\n\r\n")) {
                let response = parse_head(&self.head)?;
                self.body = Some(self.framing(&response)?);
                self.response = Some(response);
                return Ok(Some(input.get(at + 1..).unwrap_or(&[])));
            }
        }
        Ok(None)
    }

    fn framing(&self, r: &Response) -> Result<Body, ReplyError> {
        if self.head_request || r.status == 204 || r.status == 304 || r.status / 100 == 1 {
            return Ok(Body::Length(0));
        }
        if r.header("transfer-encoding").is_some_and(|v| {
            v.rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
        }) {
            return Ok(Body::Chunked(Chunk::Size));
        }
        let mut lengths = r
            .headers
            .iter()
            .filter(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse::<usize>().map_err(|_| ReplyError::BadLength));
        match lengths.next() {
            None => Ok(Body::Close),
            Some(first) => {
                let first = first?;
                if lengths.any(|l| l != Ok(first)) {
                    return Err(ReplyError::BadLength);
                }
                if first > self.limit {
                    return Err(ReplyError::BodyTooLarge(self.limit));
                }
                Ok(Body::Length(first))
            }
        }
    }

    fn keep(&mut self, data: &[u8]) -> Result<(), ReplyError> {
        let limit = self.limit;
        let Some(r) = self.response.as_mut() else {
            return Ok(());
        };
        if r.body.len() + data.len() > limit {
            return Err(ReplyError::BodyTooLarge(limit));
        }
        r.body.extend_from_slice(data);
        Ok(())
    }

    /// Reads body bytes; what is left of `input`.
    fn read_body<'a>(&mut self, input: &'a [u8]) -> Result<&'a [u8], ReplyError> {
        match self.body {
            Some(Body::Length(n)) => {
                let have = self.response.as_ref().map_or(0, |r| r.body.len());
                let take = n.saturating_sub(have).min(input.len());
                let (data, rest) = input.split_at(take);
                self.keep(data)?;
                Ok(if take == 0 { &[] } else { rest })
            }
            Some(Body::Close) => {
                self.keep(input)?;
                Ok(&[])
            }
            Some(Body::Chunked(Chunk::Data(n))) => {
                let take = n.min(input.len());
                let (data, rest) = input.split_at(take);
                self.keep(data)?;
                let next = if n == take {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(n - take)
                };
                self.body = Some(Body::Chunked(next));
                Ok(rest)
            }
            Some(Body::Chunked(Chunk::Done)) | None => Ok(&[]),
            Some(Body::Chunked(state)) => self.chunk_line(input, state),
        }
    }

    /// A chunk-size line, the CRLF after a chunk's data, or a trailer line.
    fn chunk_line<'a>(&mut self, input: &'a [u8], state: Chunk) -> Result<&'a [u8], ReplyError> {
        let Some(end) = input.iter().position(|&b| b == b'\n') else {
            if self.line.len() + input.len() > 1024 {
                return Err(ReplyError::BadChunk);
            }
            self.line.extend_from_slice(input);
            return Ok(&[]);
        };
        if self.line.len() + end > 1024 {
            return Err(ReplyError::BadChunk);
        }
        self.line.extend_from_slice(input.get(..end).unwrap_or(&[]));
        let rest = input.get(end + 1..).unwrap_or(&[]);
        let line = std::mem::take(&mut self.line);
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        let next = match state {
            Chunk::DataEnd if line.is_empty() => Chunk::Size,
            Chunk::DataEnd => return Err(ReplyError::BadChunk),
            Chunk::Trailers if line.is_empty() => Chunk::Done,
            Chunk::Trailers => Chunk::Trailers,
            _ => {
                let size = line.split(|&b| b == b';').next().unwrap_or(b"");
                let size = std::str::from_utf8(size).map_err(|_| ReplyError::BadChunk)?;
                let size = size.trim();
                if size.is_empty() || size.len() > 8 {
                    return Err(ReplyError::BadChunk);
                }
                match usize::from_str_radix(size, 16).map_err(|_| ReplyError::BadChunk)? {
                    0 => Chunk::Trailers,
                    n => Chunk::Data(n),
                }
            }
        };
        self.body = Some(Body::Chunked(next));
        Ok(rest)
    }
}

/// The status and headers of a complete head.
fn parse_head(head: &[u8]) -> Result<Response, ReplyError> {
    let text = std::str::from_utf8(head).map_err(|_| ReplyError::BadHeader)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let status_line = lines.next().unwrap_or("");
    let rest = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..))
        .ok_or(ReplyError::NotHttp)?;
    let code = rest.get(..3).ok_or(ReplyError::NotHttp)?;
    if !code.bytes().all(|b| b.is_ascii_digit())
        || !matches!(rest.as_bytes().get(3), None | Some(b' '))
    {
        return Err(ReplyError::NotHttp);
    }
    let status = code.parse::<u16>().map_err(|_| ReplyError::NotHttp)?;
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(ReplyError::BadHeader)?;
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(ReplyError::BadHeader);
        }
        if headers.len() >= MAX_HEADERS {
            return Err(ReplyError::TooManyHeaders);
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Response {
        status,
        headers,
        body: Vec::new(),
    })
}

#[cfg(test)]
#[path = "http_reply_tests.rs"]
mod tests;
