//! One complete HTTP/1.x request head, parsed strictly and judged against
//! the rules of the stream it arrived on (RFC 9112 §2–§7): the request line,
//! every header line, the one `Host` and the absolute-form authority, the
//! body framing and the upgrade request. [`judge`] either refuses the head
//! with a typed reason or writes the head the origin gets (forwarding
//! headers inserted, every client-sent spelling of them renamed) and says
//! what follows it. Pure functions over bytes: the streaming state machine
//! that finds where heads begin and end is `http.rs`.
//!
//! Strict on purpose: anything a server might read differently from us (a
//! folded line, whitespace before a colon, a second `Host`, both framings)
//! is refused, because a head we do not understand is a head we cannot
//! vouch for.

use std::fmt;

use super::options::{AuthCheck, KiteOptions, security_blocks};

/// A longer first word is not an HTTP method (the longest registered ones
/// have about 17 letters).
pub const MAX_METHOD: usize = 32;

/// What a stream's every request is held to.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    /// The name the frontend routed the stream for: every request must name
    /// it (in `Host` and in an absolute-form target).
    pub host: String,
    /// `+password/`: every request must carry matching Basic credentials.
    pub auth: Option<Box<KiteOptions>>,
    /// pagekite.py's dangerous-path filter.
    pub filter: bool,
}

impl Rules {
    pub fn new(host: &str) -> Rules {
        Rules {
            host: normal_host(host.as_bytes()).unwrap_or_default(),
            auth: None,
            filter: false,
        }
    }
}

/// Why a request head is answered by the backend itself and the stream
/// closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// 400: the head cannot be parsed, or could be read two ways.
    BadRequest(Malformed),
    /// 421: the request names another site than the one the stream is for.
    Misdirected,
    /// 401: `+password` and no or wrong credentials.
    NeedsAuth,
    /// 500: the security filter matched the request line.
    Blocked,
}

/// What is wrong with a head answered 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Over the head size limit.
    TooLarge,
    /// Not `METHOD SP target SP HTTP/1.d`.
    RequestLine,
    /// A header line that is not `name: value` (folded, bad name, control bytes).
    HeaderLine,
    /// No `Host`, several, or one that is not a host name.
    Host,
    /// Body framing that is invalid or ambiguous (the way to smuggle a request).
    Framing,
    /// `CONNECT` would tunnel bytes past every later check.
    Connect,
    /// Too much sent while an upgrade was being decided.
    EarlyData,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::TooLarge => "request head too large",
            Malformed::RequestLine => "not an HTTP/1.x request line",
            Malformed::HeaderLine => "malformed header line",
            Malformed::Host => "missing, repeated or malformed Host",
            Malformed::Framing => "invalid or ambiguous body framing",
            Malformed::Connect => "CONNECT is not allowed on an HTTP kite",
            Malformed::EarlyData => "too much data before the upgrade was answered",
        })
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::BadRequest(m) => write!(f, "bad request ({m})"),
            Refused::Misdirected => f.write_str("request for another site (misdirected)"),
            Refused::NeedsAuth => f.write_str("missing or wrong credentials"),
            Refused::Blocked => f.write_str("request blocked by the security filter"),
        }
    }
}

impl std::error::Error for Refused {}

/// What follows an accepted head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    Chunked,
}

/// An accepted head: what follows it, and whether it asks to switch
/// protocols (which can only take effect after its body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub body: Body,
    pub upgrade: bool,
}

/// How the head handed to the origin is changed.
pub struct Rewrite<'a> {
    /// Header lines inserted after the request line, CRLF-terminated.
    pub inserts: &'a [u8],
    /// Rename client-sent forwarding headers (off for `+rawheaders`).
    pub rename_forwarding: bool,
    /// Rename the client's `Host` (`+rewritehost` inserts its own).
    pub rename_host: bool,
}

/// Checks the request line alone, as soon as it is complete (it ends with
/// its line feed): a refusal needs no more bytes. Returns the method.
pub fn check_request_line<'a>(line: &'a [u8], rules: &Rules) -> Result<&'a [u8], Refused> {
    if rules.filter && security_blocks(line) {
        // Checked first, so that lines pagekite.py refuses but the parser
        // would not (`HTTP/2.0`, say) are refused the same way.
        return Err(Refused::Blocked);
    }
    let (method, _, _) = request_line(line).ok_or(Refused::BadRequest(Malformed::RequestLine))?;
    Ok(method)
}

/// Judges the complete `head` (request line to blank line) and, when it is
/// accepted, appends the head the origin gets to `out`.
pub fn judge(
    head: &[u8],
    rules: &Rules,
    rewrite: &Rewrite<'_>,
    out: &mut Vec<u8>,
) -> Result<Accepted, Refused> {
    let bad = |m| Err(Refused::BadRequest(m));
    let mut lines = head.split_inclusive(|&b| b == b'\n');
    let first = lines.next().unwrap_or_default();
    let method = check_request_line(first, rules)?;
    let (_, target, _) = request_line(first).ok_or(Refused::BadRequest(Malformed::RequestLine))?;
    if method == b"CONNECT" {
        return bad(Malformed::Connect);
    }
    let start = out.len();
    out.extend_from_slice(first);
    out.extend_from_slice(rewrite.inserts);

    let mut host: Option<&[u8]> = None;
    let mut hosts = 0;
    let mut framing = Framing::default();
    let (mut upgrade, mut conn_upgrade) = (false, false);
    for line in lines {
        let text = strip_eol(line);
        if text.is_empty() {
            out.extend_from_slice(line);
            break;
        }
        let Some((name, value)) = header_line(text) else {
            out.truncate(start);
            return bad(Malformed::HeaderLine);
        };
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        let rename = (rewrite.rename_forwarding && is_forwarding(name))
            || (rewrite.rename_host && is(b"Host"));
        if rename {
            out.extend_from_slice(b"X-Old-");
        }
        out.extend_from_slice(line);
        if is(b"Host") {
            hosts += 1;
            host = Some(value);
        } else if is(b"Content-Length") || is(b"Transfer-Encoding") {
            framing.add(is(b"Content-Length"), value);
        } else if is(b"Upgrade") {
            upgrade |= !value.is_empty();
        } else if is(b"Connection") {
            conn_upgrade |= value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
        }
    }
    let verdict = (|| {
        let host = match (hosts, host) {
            (1, Some(h)) => normal_host(h).ok_or(Refused::BadRequest(Malformed::Host))?,
            _ => return bad(Malformed::Host),
        };
        if host != rules.host {
            return Err(Refused::Misdirected);
        }
        if let Some(authority) = absolute_authority(target) {
            if normal_host(authority).is_none_or(|h| h != rules.host) {
                return Err(Refused::Misdirected);
            }
        } else if !(target.starts_with(b"/") || (target == b"*" && method == b"OPTIONS")) {
            return bad(Malformed::RequestLine);
        }
        if let Some(auth) = &rules.auth {
            if auth.check_basic_auth(head) != AuthCheck::Ok {
                return Err(Refused::NeedsAuth);
            }
        }
        let body = framing
            .body()
            .ok_or(Refused::BadRequest(Malformed::Framing))?;
        Ok(Accepted {
            body,
            upgrade: upgrade && conn_upgrade,
        })
    })();
    if verdict.is_err() {
        out.truncate(start);
    }
    verdict
}

/// What the framing headers said.
#[derive(Default)]
struct Framing {
    length: Option<u64>,
    bad: bool,
    te: bool,
    chunked: usize,
    last_chunked: bool,
}

impl Framing {
    fn add(&mut self, content_length: bool, value: &[u8]) {
        if content_length {
            for item in value.split(|&b| b == b',') {
                match (parse_decimal(item.trim_ascii()), self.length) {
                    (None, _) => self.bad = true,
                    (Some(n), Some(old)) if n != old => self.bad = true,
                    (n, _) => self.length = n,
                }
            }
        } else {
            self.te = true;
            for coding in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if !coding.is_empty() {
                    self.last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                    self.chunked += usize::from(self.last_chunked);
                }
            }
        }
    }

    /// Chunked must be applied exactly once and last, and never together
    /// with a length: the classic smuggling request (RFC 9112 §6.3).
    fn body(&self) -> Option<Body> {
        if self.bad
            || (self.te && (!self.last_chunked || self.chunked != 1 || self.length.is_some()))
        {
            return None;
        }
        Some(if self.te {
            Body::Chunked
        } else {
            match self.length {
                None | Some(0) => Body::None,
                Some(n) => Body::Length(n),
            }
        })
    }
}

/// `METHOD SP target SP HTTP/1.d` with single spaces and a CRLF or LF
/// ending, nothing before it: (method, target, minor version).
pub fn request_line(line: &[u8]) -> Option<(&[u8], &[u8], u8)> {
    let line = strip_eol(line);
    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    let minor = match version {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            *minor - b'0'
        }
        _ => return None,
    };
    let method_ok =
        !method.is_empty() && method.len() <= MAX_METHOD && method.iter().all(|&b| is_tchar(b));
    // Visible ASCII, and bytes past it that some clients send unescaped.
    let target_ok = !target.is_empty() && target.iter().all(|&b| b > b' ' && b != 0x7f);
    (method_ok && target_ok).then_some((method, target, minor))
}

/// `name: value` with a token name and nothing between it and the colon;
/// a value of visible bytes, spaces and tabs (RFC 9110 §5.5).
fn header_line(text: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = text.iter().position(|&b| b == b':')?;
    let name = text.get(..colon)?;
    let value = text.get(colon + 1..)?;
    let name_ok = !name.is_empty() && name.iter().all(|&b| is_tchar(b));
    let value_ok = value
        .iter()
        .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f));
    (name_ok && value_ok).then_some((name, value.trim_ascii()))
}

/// Headers that claim where a request came from. A client's copies are kept
/// but renamed `X-Old-…`, as pagekite.py does. Underscores count as dashes:
/// CGI and WSGI servers merge `X_Forwarded_For` with `X-Forwarded-For`.
pub fn is_forwarding(name: &[u8]) -> bool {
    const EXACT: [&[u8]; 5] = [
        b"forwarded",
        b"x-real-ip",
        b"x-client-ip",
        b"true-client-ip",
        b"cf-connecting-ip",
    ];
    const PREFIX: [&[u8]; 2] = [b"x-forwarded-", b"x-pagekite-"];
    let same = |a: &[u8], b: &[u8]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(&x, &y)| {
                let x = if x == b'_' {
                    b'-'
                } else {
                    x.to_ascii_lowercase()
                };
                x == y
            })
    };
    EXACT.iter().any(|e| same(name, e))
        || PREFIX
            .iter()
            .any(|p| name.get(..p.len()).is_some_and(|n| same(n, p)))
}

/// The authority of an absolute-form target (`http://host:port/path`).
fn absolute_authority(target: &[u8]) -> Option<&[u8]> {
    let colon = target.iter().position(|&b| b == b':')?;
    let scheme = target.get(..colon)?;
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let rest = target.get(colon + 1..)?.strip_prefix(b"//")?;
    if !scheme_ok {
        return None;
    }
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = rest.get(..end)?;
    // Userinfo is deprecated in http URIs; the host follows the last '@'.
    Some(match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => authority.get(at + 1..)?,
        None => authority,
    })
}

/// `host[:port]` as one comparable name: lowercase, no port, no trailing
/// dot. `None` for an empty or malformed one.
pub fn normal_host(authority: &[u8]) -> Option<String> {
    let authority = authority.trim_ascii();
    let (host, port) = if let Some(rest) = authority.strip_prefix(b"[") {
        let close = rest.iter().position(|&b| b == b']')?;
        let after = rest.get(close + 1..)?;
        let port = match after {
            [] => &[][..],
            [b':', port @ ..] => port,
            _ => return None,
        };
        (rest.get(..close)?, port)
    } else {
        match authority.iter().position(|&b| b == b':') {
            Some(c) => (authority.get(..c)?, authority.get(c + 1..)?),
            None => (authority, &[][..]),
        }
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    let host_ok = !host.is_empty()
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:".contains(&b));
    if !host_ok || !port.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(String::from_utf8_lossy(host).to_ascii_lowercase())
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

pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A line without its LF or CRLF ending.
fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}
