//! First-bytes classification of public connections (protocol doc §6.1, §7):
//! given everything a frontend connection has sent so far, say whether it is
//! a liveness ping, a backend's tunnel request, a public CONNECT, an ordinary
//! HTTP request (with its Host) or a TLS ClientHello (with its SNI), whether
//! more bytes are needed, or whether to hang up. The caller re-calls [`sniff`]
//! with the whole accumulated buffer; nothing here keeps state, reads sockets
//! or looks at the clock. This module decides nothing about routing, replies
//! or kites, and it does not parse the tunnel handshake (`handshake.rs` does).
//!
//! Every input is hostile: all indexing goes through `get`, every length read
//! off the wire is checked against the bytes that are really there.

use std::borrow::Cow;
use std::fmt;

/// Longest request head accepted (request line + headers + blank line).
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest ClientHello (handshake header included) we reassemble. Real ones
/// take a few KiB at most, even with post-quantum key shares; the caller's
/// buffer must hold this much (plus record headers) to see one complete.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;
/// RFC 5246 §6.2.2: a record never exceeds 2^14 plus 2048 bytes of expansion.
const MAX_RECORD: usize = 16384 + 2048;

/// The request methods pagekite.py accepts (§6.1), case-sensitive, space-separated.
const METHODS: &str = "OPTIONS CONNECT GET HEAD POST PUT TRACE PROPFIND PROPPATCH \
    MKCOL DELETE COPY MOVE LOCK UNLOCK PING PATCH";

#[derive(Debug, PartialEq, Eq)]
pub enum Sniff {
    /// Not enough bytes yet to decide; call again with more.
    NeedMore,
    /// pagekite.py liveness ping: a complete request head whose first 64 bytes contain
    /// "\nHost: ping.pagekite" (case-sensitive, exactly as pagekite.py checks). Both
    /// `HEAD /ping` (pagekite.py) and `GET /ping` (libpagekite) arrive this way.
    Ping { head_len: usize },
    /// Request line `PING <path> HTTP/1.x`: the reply is `PONG <path>\r\n\r\n`.
    PingMethod { path: String, head_len: usize },
    /// `CONNECT pagekite:<anything> HTTP/1.x` (prefix case-insensitive): a backend's tunnel.
    /// The head is NOT parsed further here (handshake.rs does that).
    Tunnel { head_len: usize },
    /// Public `CONNECT host:port HTTP/1.x` (not pagekite:). host normalised (see normalize_host).
    Connect {
        host: String,
        port: u16,
        head_len: usize,
    },
    /// An ordinary HTTP request head.
    Http(HttpHead),
    /// First byte 0x16 (TLS handshake record) with a complete ClientHello,
    /// or 0x80 (SSLv2 hello; sni None).
    Tls { sni: Option<String> },
    /// Close the connection: the reason is logged by the caller.
    Reject(SniffError),
}

#[derive(Debug, PartialEq, Eq)]
pub struct HttpHead {
    pub method: String,
    pub path: String,
    /// Host header normalised with normalize_host; None when absent or
    /// unusable (-> caller sends 400).
    pub host: Option<String>,
    /// `Upgrade: websocket` present (case-insensitive value contains "websocket").
    pub websocket: bool,
    /// Bytes from the start of input through the blank line that ends the head.
    pub head_len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SniffError {
    /// The first line is not `METHOD SP target SP HTTP/1.0|1.1` with a known method.
    NotHttp,
    /// No blank line within [`MAX_HEAD`] bytes.
    HeadTooLarge,
    /// A malformed TLS record or ClientHello.
    BadTls,
    /// The request line is not valid UTF-8.
    NotText,
}

impl fmt::Display for SniffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SniffError::NotHttp => f.write_str("not an HTTP request"),
            SniffError::HeadTooLarge => write!(f, "request head larger than {MAX_HEAD} bytes"),
            SniffError::BadTls => f.write_str("malformed TLS ClientHello"),
            SniffError::NotText => f.write_str("request line is not text"),
        }
    }
}

impl std::error::Error for SniffError {}

/// Classifies the first bytes of a public connection. Bytes after the head
/// (a body, pipelined requests, more TLS records) are allowed and ignored.
pub fn sniff(input: &[u8]) -> Sniff {
    let result = match input.first() {
        None => Ok(None),
        Some(0x16) => client_hello(input).map(|hello| hello.map(|sni| Sniff::Tls { sni })),
        Some(0x80) => sslv2_hello(input).map(|done| done.then_some(Sniff::Tls { sni: None })),
        Some(_) => text(input),
    };
    match result {
        Ok(Some(sniff)) => sniff,
        Ok(None) => Sniff::NeedMore,
        Err(e) => Sniff::Reject(e),
    }
}

/// Lowercases, strips a trailing ":port" (also for "[v6]:port"), strips a leading
/// "0x<hex>--" prefix (pagekite.py does this, §3.2 Host), trims whitespace and a trailing dot.
/// Returns None for an empty result or one containing characters not valid in a host name
/// (allow a-z 0-9 - . _ * and the brackets/colons of an IPv6 literal).
///
/// The prefix is pagekite.py's `EMBEDDED_IP_RE`: `0x` and exactly 8 or 32 hex
/// digits (an encoded IPv4 or IPv6 address), then `--`.
pub fn normalize_host(raw: &str) -> Option<String> {
    let lower = raw.trim().to_ascii_lowercase();
    let host = strip_port(&lower)?;
    let host = strip_embedded_ip(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']')?;
        inner.contains(':')
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        host.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._*".contains(&b))
    };
    // 253 is the longest DNS name; anything longer cannot match a kite.
    (valid && !host.is_empty() && host.len() <= 253).then(|| host.to_string())
}

/// The `(name, value)` pairs of a complete request head (`&input[..head_len]`),
/// after the request line, values trimmed. Lines that are not `name: value`
/// are skipped: a name with whitespace in it (an obs-fold continuation, or
/// `Host : x`) is not a header any HTTP/1.1 server may honour.
pub fn headers(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    head.split(|&b| b == b'\n').skip(1).filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let name = line.get(..colon)?;
        let value = line.get(colon + 1..)?;
        if name.is_empty() || name.iter().any(|b| b.is_ascii_whitespace()) {
            return None;
        }
        Some((name, value.trim_ascii()))
    })
}

fn strip_port(host: &str) -> Option<&str> {
    let (host, port) = if host.starts_with('[') {
        let close = host.find(']')?;
        let (literal, rest) = host.split_at_checked(close + 1)?;
        if rest.is_empty() {
            return Some(literal);
        }
        (literal, rest.strip_prefix(':')?)
    } else {
        match host.split_once(':') {
            Some(split) => split,
            None => return Some(host),
        }
    };
    // An empty port is legal in a URI authority; anything else must be digits.
    (port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())).then_some(host)
}

fn strip_embedded_ip(host: &str) -> &str {
    let Some(rest) = host.strip_prefix("0x") else {
        return host;
    };
    for digits in [8, 32] {
        if let Some((hex, tail)) = rest.split_at_checked(digits) {
            if let Some(name) = tail.strip_prefix("--") {
                if hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return name;
                }
            }
        }
    }
    host
}

// ---------------------------------------------------------------- text

fn text(input: &[u8]) -> Result<Option<Sniff>, SniffError> {
    let window = input.get(..MAX_HEAD).unwrap_or(input);
    let Some(eol) = window.iter().position(|&b| b == b'\n') else {
        // Check the partial line now so that SSH banners, SMTP, binary junk
        // and the like are refused on their first bytes, not after a timeout.
        let partial = window.strip_suffix(b"\r").unwrap_or(window);
        request_line(partial, false)?;
        return too_large(input);
    };
    let line = window.get(..eol).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some((method, target)) = request_line(line, true)? else {
        return Err(SniffError::NotHttp);
    };
    let Some(head_len) = head_end(window, eol) else {
        return too_large(input);
    };
    let head = window.get(..head_len).unwrap_or_default();

    // pagekite.py peeks 64 bytes and checks for this before any parsing.
    let ping_window = head.get(..64).unwrap_or(head);
    if contains(ping_window, b"\nHost: ping.pagekite") {
        return Ok(Some(Sniff::Ping { head_len }));
    }
    if method == "PING" {
        let path = target.to_string();
        return Ok(Some(Sniff::PingMethod { path, head_len }));
    }
    if method == "CONNECT" {
        let tunnel = target
            .get(.."pagekite:".len())
            .is_some_and(|p| p.eq_ignore_ascii_case("pagekite:"));
        if tunnel {
            return Ok(Some(Sniff::Tunnel { head_len }));
        }
        let (host, port) = connect_target(target).ok_or(SniffError::NotHttp)?;
        return Ok(Some(Sniff::Connect {
            host,
            port,
            head_len,
        }));
    }
    let host = headers(head)
        .find(|(name, _)| name.eq_ignore_ascii_case(b"host"))
        .and_then(|(_, value)| std::str::from_utf8(value).ok())
        .and_then(normalize_host);
    let websocket = headers(head).any(|(name, value)| {
        name.eq_ignore_ascii_case(b"upgrade") && contains_ignore_case(value, b"websocket")
    });
    Ok(Some(Sniff::Http(HttpHead {
        method: method.to_string(),
        path: target.to_string(),
        host,
        websocket,
        head_len,
    })))
}

fn too_large(input: &[u8]) -> Result<Option<Sniff>, SniffError> {
    if input.len() >= MAX_HEAD {
        Err(SniffError::HeadTooLarge)
    } else {
        Ok(None)
    }
}

/// Checks a request line (without its line ending). With `complete` false it
/// is a prefix of one still arriving, and the answer is `Ok(None)` as long as
/// it could still become valid. pagekite.py splits on any run of whitespace;
/// this wants single spaces, as every real client sends.
fn request_line(line: &[u8], complete: bool) -> Result<Option<(&'static str, &str)>, SniffError> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let Some(target) = parts.next() else {
        let prefix = METHODS.split(' ').any(|m| m.as_bytes().starts_with(method));
        return if complete || !prefix {
            Err(SniffError::NotHttp)
        } else {
            Ok(None)
        };
    };
    let method = METHODS
        .split(' ')
        .find(|m| m.as_bytes() == method)
        .ok_or(SniffError::NotHttp)?;
    let version = parts.next();
    // The first bad byte decides, so that a prefix and the whole line agree.
    let control = target.iter().position(|&b| b <= b' ' || b == 0x7f);
    let target = match (std::str::from_utf8(target), control) {
        (Ok(target), None) => target,
        (Err(e), control)
            if e.error_len().is_some() && control.is_none_or(|c| e.valid_up_to() < c) =>
        {
            return Err(SniffError::NotText);
        }
        (_, Some(_)) => return Err(SniffError::NotHttp),
        // A multi-byte character cut short by the end of input may yet complete.
        (Err(_), None) if !complete && version.is_none() => return Ok(None),
        (Err(_), None) => return Err(SniffError::NotText),
    };
    let Some(version) = version else {
        return if complete {
            Err(SniffError::NotHttp)
        } else {
            Ok(None)
        };
    };
    if target.is_empty() {
        return Err(SniffError::NotHttp);
    }
    // pagekite.py upper-cases the version before comparing, so we do too.
    let matches = |want: &[u8]| {
        let n = if complete { want.len() } else { version.len() };
        want.get(..n)
            .is_some_and(|w| version.len() == n && w.eq_ignore_ascii_case(version))
    };
    match (matches(b"HTTP/1.1") || matches(b"HTTP/1.0"), complete) {
        (false, _) => Err(SniffError::NotHttp),
        (true, false) => Ok(None),
        (true, true) => Ok(Some((method, target))),
    }
}

/// The end of the head: just past the first blank line (`\r\n` or a bare
/// `\n`) that follows the request line's `\n` at `eol`.
fn head_end(window: &[u8], eol: usize) -> Option<usize> {
    let mut from = eol;
    loop {
        let nl = from + window.get(from..)?.iter().position(|&b| b == b'\n')?;
        match (window.get(nl + 1), window.get(nl + 2)) {
            (Some(b'\n'), _) => return Some(nl + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
            _ => from = nl + 1,
        }
    }
}

/// `host:port` of a public CONNECT; the host may be a bracketed IPv6 literal.
fn connect_target(target: &str) -> Option<(String, u16)> {
    let (host, port) = target.rsplit_once(':')?;
    // u16::from_str would also take "+22".
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port = port.parse::<u16>().ok().filter(|&p| p != 0)?;
    if host.contains(':') && !host.starts_with('[') {
        return None;
    }
    Some((normalize_host(host)?, port))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

// ---------------------------------------------------------------- TLS

/// Reassembles the ClientHello from as many handshake records as it spans and
/// returns its SNI. `Ok(None)` while it is incomplete.
fn client_hello(input: &[u8]) -> Result<Option<Option<String>>, SniffError> {
    let mut msg: Cow<'_, [u8]> = Cow::Borrowed(&[]);
    let mut rest = input;
    while let Some((fragment, next)) = record(rest)? {
        if !fragment.is_empty() {
            // The usual single-record hello is parsed in place.
            if msg.is_empty() {
                msg = Cow::Borrowed(fragment);
            } else {
                msg.to_mut().extend_from_slice(fragment);
            }
        }
        if let Some(total) = hello_len(&msg)? {
            if let Some(body) = msg.get(4..total) {
                return server_name(body).map(Some);
            }
        }
        rest = next;
    }
    Ok(None)
}

/// What has arrived of a record's payload, and the bytes after the record.
type Fragment<'a> = (&'a [u8], &'a [u8]);

/// Splits the next handshake record off `rest`: what has arrived of its
/// payload, and what follows it (empty until it is complete). Header bytes are
/// checked as they arrive. `Ok(None)` while the header is incomplete.
fn record(rest: &[u8]) -> Result<Option<Fragment<'_>>, SniffError> {
    let bad = |at: usize, ok: fn(u8) -> bool| rest.get(at).is_some_and(|&b| !ok(b));
    if bad(0, |b| b == 0x16) || bad(1, |b| b == 3) || bad(2, |b| b <= 0x0f) {
        return Err(SniffError::BadTls);
    }
    let Some(&[_, _, _, hi, lo]) = rest.get(..5) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    // RFC 8446 §5.1: zero-length handshake fragments are forbidden.
    if len == 0 || len > MAX_RECORD {
        return Err(SniffError::BadTls);
    }
    let payload = rest.get(5..).unwrap_or_default();
    let (payload, next) = payload.split_at_checked(len).unwrap_or((payload, &[]));
    Ok(Some((payload, next)))
}

/// The total length of the handshake message in `msg`, once its header has
/// arrived; its type is checked as soon as the first byte has.
fn hello_len(msg: &[u8]) -> Result<Option<usize>, SniffError> {
    if msg.first().is_some_and(|&t| t != 1) {
        return Err(SniffError::BadTls);
    }
    let Some(&[_, a, b, c]) = msg.get(..4) else {
        return Ok(None);
    };
    let total = 4 + usize::from(a) * 0x10000 + usize::from(b) * 0x100 + usize::from(c);
    if total > MAX_CLIENT_HELLO {
        return Err(SniffError::BadTls);
    }
    Ok(Some(total))
}

/// Reads the ClientHello body (RFC 8446 §4.1.2) up to the server_name
/// extension. Every length must fit exactly, as a TLS library would insist.
fn server_name(body: &[u8]) -> Result<Option<String>, SniffError> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    let session_id = r.vec8()?;
    let suites = r.vec16()?;
    let compression = r.vec8()?;
    if session_id.len() > 32 || suites.is_empty() || suites.len() % 2 != 0 || compression.is_empty()
    {
        return Err(SniffError::BadTls);
    }
    if r.0.is_empty() {
        return Ok(None); // no extensions at all: an old client
    }
    let mut extensions = Reader(r.vec16()?);
    if !r.0.is_empty() {
        return Err(SniffError::BadTls);
    }
    let mut sni = None;
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vec16()?;
        if kind == 0 && sni.is_none() {
            sni = Some(host_name(data)?);
        }
    }
    Ok(sni.flatten())
}

/// The first `host_name` entry of a server_name extension (RFC 6066 §3).
fn host_name(data: &[u8]) -> Result<Option<String>, SniffError> {
    let mut outer = Reader(data);
    let mut list = Reader(outer.vec16()?);
    if !outer.0.is_empty() {
        return Err(SniffError::BadTls);
    }
    let mut first = None;
    while !list.0.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind == 0 && first.is_none() {
            first = Some(name);
        }
    }
    Ok(first
        .and_then(|name| std::str::from_utf8(name).ok())
        .and_then(normalize_host))
}

/// A big-endian cursor whose every read fails with `BadTls` past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SniffError> {
        let (head, tail) = self.0.split_at_checked(n).ok_or(SniffError::BadTls)?;
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, SniffError> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }

    fn u16(&mut self) -> Result<u16, SniffError> {
        let b = self.take(2)?;
        Ok(b.iter().fold(0, |n, &b| n << 8 | u16::from(b)))
    }

    fn vec8(&mut self) -> Result<&'a [u8], SniffError> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    fn vec16(&mut self) -> Result<&'a [u8], SniffError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// An SSLv2-compatible CLIENT-HELLO: a two-byte header (`0x80`, length), then
/// msg_type 1, version, and three u16 lengths that must add up to the record.
/// It carries no extensions, so no SNI; `Ok(true)` once it is all here.
fn sslv2_hello(input: &[u8]) -> Result<bool, SniffError> {
    let Some(&len) = input.get(1) else {
        return Ok(false);
    };
    let len = usize::from(len);
    if len < 9 || input.get(2).is_some_and(|&t| t != 1) {
        return Err(SniffError::BadTls);
    }
    let Some(record) = input.get(2..2 + len) else {
        return Ok(false);
    };
    let mut r = Reader(record);
    r.take(3)?; // msg_type, version
    let (ciphers, session_id, challenge) = (r.u16()?, r.u16()?, r.u16()?);
    let body = usize::from(ciphers) + usize::from(session_id) + usize::from(challenge);
    if body != r.0.len() {
        return Err(SniffError::BadTls);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured with `openssl s_client -connect 127.0.0.1:PORT -servername foo.test`
    /// (OpenSSL 3, TLS 1.3) against a Python listener on loopback.
    const HELLO_SNI: &str = "\
        16030101350100013103038a1141aec3439e4bfe3da466bdd259371b8463cad077731453ae8f314948c90b20\
        2599f03e2086b684be637050b3f1a4520963c96f840176dc6f64f9a5a029ee9f003e130213031301c02cc030\
        009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d\
        003c0035002f00ff010000aa0000000d000b000008666f6f2e74657374000b000403000102000a0016001400\
        1d0017001e0019001801000101010201030104002300000016000000170000000d002a002804030503060308\
        0708080809080a080b080408050806040105010601030303010302040205020602002b000908030403030302\
        0301002d00020101003300260024001d0020e6f9ea5049a23603442b7019f855d7d2679547ac660ff06be3b3\
        c88564fe0b53";

    /// pagekite.py's backend dialling a TLS frontend by IP (no SNI), from
    /// /work/shared/interop/transcripts/mitm-tls.raw.log (517 bytes, padded).
    const HELLO_NO_SNI: &str = "\
        1603010200010001fc03033c4c0d82ffab6a1c0df3b04cd8fc083e84d12e8a7376ce92f130a3d6d43ae50f20\
        51a09386435c4d96bfe21d7738f5a062cc7c4cc5b053394a3d7c9064277dc4070096130213031301c02cc030\
        00a3009fcca9cca8ccaac0afc0adc0a3c09fc05dc061c057c053c02bc02f00a2009ec0aec0acc0a2c09ec05c\
        c060c056c052c024c028006b006ac073c07700c400c3c023c02700670040c072c07600be00bdc00ac0140039\
        003800880087c009c0130033003200450044009dc0a1c09dc051009cc0a0c09cc050003d00c0003c00ba0035\
        0084002f004100ff0100011d000b000403000102000a00160014001d0017001e001900180100010101020103\
        0104002300000016000000170000000d002a0028040305030603080708080809080a080b0804080508060401\
        05010601030303010302040205020602002b0009080304030303020301002d00020101003300260024001d00\
        20ba74d5b26b8755c2611a78fa5c450eaa54346cb1745c69bb5f9a779e1cff9e240015008000000000000000\
        0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
        0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
        000000000000000000000000000000000000000000000000000000000000000000";

    const CURL: &[u8] =
        b"GET / HTTP/1.1\r\nHost: foo.test\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
    const TUNNEL: &[u8] = b"CONNECT PageKite:1 HTTP/1.0\r\n\
        X-PageKite-Version: 1.5.2.201011\r\n\
        X-PageKite-Features: ZChunks\r\n\
        X-PageKite: http:foo.test:4c1e0b2f:a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8:\r\n\r\n";

    fn unhex(s: &str) -> Vec<u8> {
        let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let digits: Vec<u8> = s.bytes().filter_map(digit).collect();
        digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }

    /// Every proper prefix must ask for more; the whole input decides.
    fn whole(input: &[u8]) -> Sniff {
        for k in 0..input.len() {
            assert_eq!(sniff(&input[..k]), Sniff::NeedMore, "prefix of {k} bytes");
        }
        sniff(input)
    }

    fn http(input: &[u8]) -> HttpHead {
        match whole(input) {
            Sniff::Http(head) => head,
            other => panic!("expected Http, got {other:?}"),
        }
    }

    fn host_of(input: &[u8]) -> Option<String> {
        http(input).host
    }

    #[test]
    fn curl_request() {
        let head = http(CURL);
        let want = HttpHead {
            method: "GET".into(),
            path: "/".into(),
            host: Some("foo.test".into()),
            websocket: false,
            head_len: CURL.len(),
        };
        assert_eq!(head, want);
    }

    #[test]
    fn pagekite_and_libpagekite_pings() {
        for ping in [
            &b"HEAD /ping HTTP/1.1\r\nHost: ping.pagekite\r\n\r\n"[..],
            b"GET /ping HTTP/1.1\r\nHost: ping.pagekite\r\n\r\n",
        ] {
            let head_len = ping.len();
            assert_eq!(whole(ping), Sniff::Ping { head_len });
        }
        // pagekite.py's check is case-sensitive and limited to 64 bytes.
        assert!(matches!(
            sniff(b"GET / HTTP/1.1\r\nhost: ping.pagekite\r\n\r\n"),
            Sniff::Http(_)
        ));
        let late =
            b"GET /a-rather-long-path-to-push-the-host-out HTTP/1.1\r\nHost: ping.pagekite\r\n\r\n";
        assert!(matches!(sniff(late), Sniff::Http(_)));
        // ... and to the head: a body is not a header.
        let body = b"POST / HTTP/1.1\n\n\nHost: ping.pagekite\r\n\r\n";
        assert!(matches!(
            sniff(body),
            Sniff::Http(HttpHead { head_len: 17, .. })
        ));
    }

    #[test]
    fn ping_method() {
        let input = b"PING /x HTTP/1.1\r\n\r\n";
        let (path, head_len) = ("/x".to_string(), input.len());
        assert_eq!(whole(input), Sniff::PingMethod { path, head_len });
    }

    #[test]
    fn tunnel_requests() {
        let head_len = TUNNEL.len();
        assert_eq!(whole(TUNNEL), Sniff::Tunnel { head_len });
        for line in [
            "CONNECT pagekite:1 HTTP/1.1",
            "CONNECT PAGEKITE:magic HTTP/1.0",
            "CONNECT pagekite: HTTP/1.0",
        ] {
            let input = format!("{line}\r\n\r\n");
            let head_len = input.len();
            assert_eq!(sniff(input.as_bytes()), Sniff::Tunnel { head_len });
        }
        // The tunnel's first frame may already follow the head.
        let mut more = TUNNEL.to_vec();
        more.extend_from_slice(b"e\r\nNOOP: 1\r\n\r\n!");
        assert_eq!(sniff(&more), Sniff::Tunnel { head_len });
    }

    #[test]
    fn public_connect() {
        let input = b"CONNECT foo.test:22 HTTP/1.1\r\nHost: foo.test:22\r\n\r\n";
        let want = |host: &str, port| Sniff::Connect {
            host: host.into(),
            port,
            head_len: input.len(),
        };
        assert_eq!(whole(input), want("foo.test", 22));
        let cases = [
            ("FOO.Test:443", "foo.test", 443),
            ("[::1]:80", "[::1]", 80),
            ("0x7f000001--kite.test:8080", "kite.test", 8080),
        ];
        for (target, host, port) in cases {
            let input = format!("CONNECT {target} HTTP/1.0\r\n\r\n");
            let want = Sniff::Connect {
                host: host.into(),
                port,
                head_len: input.len(),
            };
            assert_eq!(sniff(input.as_bytes()), want, "{target}");
        }
        for target in [
            "foo.test",
            "foo.test:",
            "foo.test:0",
            "foo.test:65536",
            "foo.test:+22",
            "a:b:22",
            "::1:22",
            "f%o:22",
            ":22",
        ] {
            let input = format!("CONNECT {target} HTTP/1.1\r\n\r\n");
            assert_eq!(
                sniff(input.as_bytes()),
                Sniff::Reject(SniffError::NotHttp),
                "{target}"
            );
        }
    }

    #[test]
    fn host_header_variants() {
        assert_eq!(host_of(b"GET / HTTP/1.0\r\nAccept: */*\r\n\r\n"), None);
        assert_eq!(
            host_of(b"GET / HTTP/1.1\r\nHost: FOO.Test:8080\r\n\r\n").as_deref(),
            Some("foo.test")
        );
        assert_eq!(
            host_of(b"GET / HTTP/1.1\r\nhOST:foo.test.\r\n\r\n").as_deref(),
            Some("foo.test")
        );
        let prefixed = b"GET / HTTP/1.1\r\nHost: 0x0A000001--Foo.Test:80\r\n\r\n";
        assert_eq!(host_of(prefixed).as_deref(), Some("foo.test"));
        let duplicate = b"GET / HTTP/1.1\r\nHost: first.test\r\nHost: second.test\r\n\r\n";
        assert_eq!(host_of(duplicate).as_deref(), Some("first.test"));
        // Unusable: a space before the colon, junk, non-UTF-8, empty.
        assert_eq!(host_of(b"GET / HTTP/1.1\r\nHost : foo.test\r\n\r\n"), None);
        assert_eq!(host_of(b"GET / HTTP/1.1\r\nHost: foo bar\r\n\r\n"), None);
        assert_eq!(host_of(b"GET / HTTP/1.1\r\nHost: f\xc3o\r\n\r\n"), None);
        assert_eq!(host_of(b"GET / HTTP/1.1\r\nHost:\r\n\r\n"), None);
        // An obs-fold continuation line is not a header of its own.
        assert_eq!(
            host_of(b"GET / HTTP/1.1\r\nX-A: b\r\n Host: foo.test\r\n\r\n"),
            None
        );
    }

    #[test]
    fn websocket_upgrade() {
        let input = b"GET /chat HTTP/1.1\r\nHost: foo.test\r\n\
            Upgrade: WebSocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let head = http(input);
        assert!(head.websocket);
        assert_eq!((head.path.as_str(), head.head_len), ("/chat", input.len()));
        assert!(!http(b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n").websocket);
        let magic = b"GET /~:PageKite:~/v0.8 HTTP/1.1\r\nUpgrade: websocket\r\n\
            Sec-WebSocket-Protocol: v1.pagekite.org\r\n\r\n";
        let proto = headers(magic).find(|(n, _)| n.eq_ignore_ascii_case(b"sec-websocket-protocol"));
        assert_eq!(proto.map(|(_, v)| v), Some(&b"v1.pagekite.org"[..]));
    }

    #[test]
    fn body_after_head() {
        let head = b"POST /form HTTP/1.1\r\nHost: foo.test\r\nContent-Length: 24\r\n\r\n";
        let mut input = head.to_vec();
        input.extend_from_slice(b"a=1&b=2\r\n\r\nGET / HTTP/1.1");
        let got = http(head);
        assert_eq!(sniff(&input), Sniff::Http(got));
        let Sniff::Http(got) = sniff(&input) else {
            unreachable!()
        };
        assert_eq!((got.method.as_str(), got.head_len), ("POST", head.len()));
    }

    #[test]
    fn bare_newlines_and_versions() {
        let input = b"GET /x HTTP/1.0\nHost: foo.test\n\n";
        assert_eq!(http(input).head_len, input.len());
        assert_eq!(http(b"GET / http/1.1\r\n\r\n").path, "/");
        for method in METHODS.split(' ').filter(|&m| m != "CONNECT") {
            let input = format!("{method} /p HTTP/1.1\r\nHost: h.test\r\n\r\n");
            assert!(
                !matches!(sniff(input.as_bytes()), Sniff::Reject(_) | Sniff::NeedMore),
                "{method}"
            );
        }
        let bad: [&[u8]; 9] = [
            b"GET / HTTP/2.0\r\n",
            b"GET / HTTP/1.1x\r\n",
            b"GET /\r\n",
            b"get / HTTP/1.1\r\n",
            b"GET  / HTTP/1.1\r\n",
            b"GET / HTTP/1.1 \r\n",
            b"GET\t/ HTTP/1.1\r\n",
            b"\r\nGET / HTTP/1.1\r\n",
            b"BREW /pot HTTP/1.1\r\n",
        ];
        for input in bad {
            assert_eq!(
                sniff(input),
                Sniff::Reject(SniffError::NotHttp),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn garbage_is_refused_early() {
        let ssh = b"SSH-2.0-OpenSSH_9.2\r\n";
        for k in 1..=ssh.len() {
            assert_eq!(sniff(&ssh[..k]), Sniff::Reject(SniffError::NotHttp));
        }
        let early: [(&[u8], usize); 6] = [
            (b"EHLO mail.test\r\n", 1),
            (b"GETX / HTTP/1.1", 4),
            (b"GET / HTTX", 10),
            (b"GET / HTTP/1.1\rX", 16),
            (b"OPTIONS *\x00", 10),
            (b"\x00\x01\x02", 1),
        ];
        for (input, at) in early {
            assert_eq!(sniff(&input[..at - 1]), Sniff::NeedMore, "{input:?}");
            assert_eq!(
                sniff(&input[..at]),
                Sniff::Reject(SniffError::NotHttp),
                "{input:?}"
            );
        }
        assert_eq!(SniffError::NotHttp.to_string(), "not an HTTP request");
        assert_eq!(
            SniffError::HeadTooLarge.to_string(),
            "request head larger than 16384 bytes"
        );
    }

    #[test]
    fn request_line_text() {
        assert_eq!(sniff(b"GET /\xff"), Sniff::Reject(SniffError::NotText));
        assert_eq!(sniff(b"GET /caf\xc3"), Sniff::NeedMore);
        assert_eq!(
            sniff(b"GET /caf\xc3 HTTP/1.1\r\n"),
            Sniff::Reject(SniffError::NotText)
        );
        assert_eq!(http("GET /café HTTP/1.1\r\n\r\n".as_bytes()).path, "/café");
    }

    #[test]
    fn head_size_limit() {
        let mut input = b"GET / HTTP/1.1\r\nHost: foo.test\r\n".to_vec();
        while input.len() < 20 * 1024 {
            input.extend_from_slice(b"X-Padding: 0123456789abcdef0123456789abcdef\r\n");
        }
        assert_eq!(sniff(&input[..MAX_HEAD - 1]), Sniff::NeedMore);
        assert_eq!(
            sniff(&input[..MAX_HEAD]),
            Sniff::Reject(SniffError::HeadTooLarge)
        );
        assert_eq!(sniff(&input), Sniff::Reject(SniffError::HeadTooLarge));
        // A request line that never ends.
        let mut long = b"GET /".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert_eq!(sniff(&long[..MAX_HEAD - 1]), Sniff::NeedMore);
        assert_eq!(sniff(&long), Sniff::Reject(SniffError::HeadTooLarge));
        // Exactly MAX_HEAD bytes is still fine.
        let mut exact = b"GET / HTTP/1.1\r\nX: ".to_vec();
        exact.resize(MAX_HEAD - 4, b'y');
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(http(&exact).head_len, MAX_HEAD);
    }

    #[test]
    fn normalize() {
        let cases = [
            ("foo.test", Some("foo.test")),
            ("  Foo.TEST.  ", Some("foo.test")),
            ("foo.test:8080", Some("foo.test")),
            ("foo.test:", Some("foo.test")),
            ("*.foo.test", Some("*.foo.test")),
            ("_acme.foo-bar.test", Some("_acme.foo-bar.test")),
            ("0x7f000001--foo.test", Some("foo.test")),
            ("0XDEADBEEF--Foo.Test:80", Some("foo.test")),
            (
                "0x0123456789abcdef0123456789abcdef--v6.test",
                Some("v6.test"),
            ),
            ("0x123--foo.test", Some("0x123--foo.test")), // not 8 or 32 digits: a plain name
            ("[::1]", Some("[::1]")),
            ("[2001:DB8::1]:443", Some("[2001:db8::1]")),
            ("[::ffff:1.2.3.4]", Some("[::ffff:1.2.3.4]")),
            ("[::1", None),
            ("[::1]x", None),
            ("[]", None),
            ("[foo]", None),
            ("::1", None),
            ("foo.test:http", None),
            ("foo.test:123456", None),
            ("", None),
            (".", None),
            (":80", None),
            ("foo/bar", None),
            ("foo bar", None),
            ("fóo.test", None),
            ("foo\0", None),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_host(raw).as_deref(), want, "{raw:?}");
        }
        assert!(normalize_host(&"a".repeat(254)).is_none());
        assert!(normalize_host(&"a".repeat(253)).is_some());
    }

    // ------------------------------------------------------------ TLS

    fn be16(n: usize) -> [u8; 2] {
        (n as u16).to_be_bytes()
    }

    fn records(msg: &[u8], sizes: impl Iterator<Item = usize>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = msg;
        for size in sizes {
            let (frag, tail) = rest.split_at(size.min(rest.len()));
            out.extend_from_slice(&[0x16, 3, 1]);
            out.extend_from_slice(&be16(frag.len()));
            out.extend_from_slice(frag);
            rest = tail;
            if rest.is_empty() {
                break;
            }
        }
        out
    }

    /// A minimal ClientHello in one record, with `extensions` (None: no block).
    fn hello(extensions: Option<&[u8]>) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 1, 1, 0]);
        if let Some(ext) = extensions {
            body.extend_from_slice(&be16(ext.len()));
            body.extend_from_slice(ext);
        }
        let mut msg = vec![1, 0];
        msg.extend_from_slice(&be16(body.len()));
        msg.extend_from_slice(&body);
        records(&msg, std::iter::once(usize::MAX))
    }

    fn sni_ext(entries: &[(u8, &[u8])]) -> Vec<u8> {
        let mut list = Vec::new();
        for (kind, name) in entries {
            list.push(*kind);
            list.extend_from_slice(&be16(name.len()));
            list.extend_from_slice(name);
        }
        let mut ext = vec![0, 0];
        ext.extend_from_slice(&be16(list.len() + 2));
        ext.extend_from_slice(&be16(list.len()));
        ext.extend_from_slice(&list);
        ext
    }

    fn tls(sni: &str) -> Sniff {
        Sniff::Tls {
            sni: Some(sni.into()),
        }
    }

    #[test]
    fn real_client_hellos() {
        let with = unhex(HELLO_SNI);
        assert_eq!(with.len(), 314);
        assert_eq!(whole(&with), tls("foo.test"));
        let without = unhex(HELLO_NO_SNI);
        assert_eq!(without.len(), 517);
        assert_eq!(whole(&without), Sniff::Tls { sni: None });
        // The client's next record may already be here.
        let mut more = with.clone();
        more.extend_from_slice(&[0x14, 3, 3, 0, 1, 1, 0x17]);
        assert_eq!(sniff(&more), tls("foo.test"));
    }

    #[test]
    fn hello_across_records() {
        let msg = unhex(HELLO_SNI).split_off(5);
        for at in 1..msg.len() {
            let input = records(&msg, [at, usize::MAX].into_iter());
            assert_eq!(sniff(&input), tls("foo.test"), "split at {at}");
        }
        assert_eq!(
            whole(&records(&msg, [100, usize::MAX].into_iter())),
            tls("foo.test")
        );
        assert_eq!(whole(&records(&msg, std::iter::repeat(1))), tls("foo.test"));
        // The second record must be a handshake record too.
        let mut wrong = records(&msg, [100, usize::MAX].into_iter());
        wrong[105] = 0x17;
        assert_eq!(sniff(&wrong[..106]), Sniff::Reject(SniffError::BadTls));
    }

    #[test]
    fn synthetic_hellos() {
        assert_eq!(whole(&hello(None)), Sniff::Tls { sni: None });
        assert_eq!(whole(&hello(Some(&[]))), Sniff::Tls { sni: None });
        assert_eq!(
            whole(&hello(Some(&sni_ext(&[(0, b"Kite.TEST")])))),
            tls("kite.test")
        );
        let other_first = sni_ext(&[(7, b"x"), (0, b"b.test"), (0, b"c.test")]);
        assert_eq!(sniff(&hello(Some(&other_first))), tls("b.test"));
        for bad_name in [&b""[..], b"bad name", b"\xff.test"] {
            assert_eq!(
                sniff(&hello(Some(&sni_ext(&[(0, bad_name)])))),
                Sniff::Tls { sni: None }
            );
        }
        let mut two = sni_ext(&[(0, b"one.test")]);
        two.extend_from_slice(&sni_ext(&[(0, b"two.test")]));
        assert_eq!(sniff(&hello(Some(&two))), tls("one.test"));
    }

    #[test]
    fn sslv2_hello() {
        let mut v2 = vec![0x80, 28, 1, 3, 1, 0, 3, 0, 0, 0, 16, 0, 0, 0x2f];
        v2.extend_from_slice(&[9; 16]);
        assert_eq!(whole(&v2), Sniff::Tls { sni: None });
        assert_eq!(sniff(&[0x80, 5]), Sniff::Reject(SniffError::BadTls));
        assert_eq!(sniff(&[0x80, 28, 2]), Sniff::Reject(SniffError::BadTls));
        v2[6] = 4; // cipher specs no longer add up
        assert_eq!(sniff(&v2), Sniff::Reject(SniffError::BadTls));
    }

    #[test]
    fn malformed_tls() {
        let bad = Sniff::Reject(SniffError::BadTls);
        let real = unhex(HELLO_SNI);
        let patched = |at: usize, byte: u8| {
            let mut v = real.clone();
            v[at] = byte;
            sniff(&v)
        };
        assert_eq!(sniff(&[0x16, 2]), bad); // record major version
        assert_eq!(sniff(&[0x16, 3, 0x10]), bad); // record minor version
        assert_eq!(sniff(&[0x16, 3, 1, 0, 0]), bad); // empty record
        assert_eq!(sniff(&[0x16, 3, 1, 0x48, 0x01]), bad); // record too long
        assert_eq!(sniff(&[0x16, 3, 1, 0, 4, 2]), bad); // ServerHello, not ClientHello
        assert_eq!(sniff(&[0x16, 3, 1, 0x40, 0, 1, 1, 0, 0]), bad); // 64 KiB + 4
        // Lengths that promise more than there is: wait (the caller times out).
        assert_eq!(sniff(&real[..real.len() - 1]), Sniff::NeedMore);
        assert_eq!(patched(8, 0x32), Sniff::NeedMore); // hello one byte longer than its record
        assert_eq!(sniff(&[0x16, 3, 1, 0, 4, 1, 0, 1, 0]), Sniff::NeedMore);
        // A record longer than the complete hello inside it is not our concern.
        assert_eq!(patched(4, 0x36), tls("foo.test"));
        // Inner lengths that overrun or underrun the message.
        assert_eq!(patched(8, 0x30), bad); // hello shorter than its fields
        assert_eq!(patched(43, 0x21), bad); // session id 33 bytes
        assert_eq!(patched(77, 0x3f), bad); // odd cipher suite length
        assert_eq!(patched(140, 0), bad); // no compression methods
        assert_eq!(patched(143, 0xab), bad); // extensions block overruns
        assert_eq!(patched(143, 0xa9), bad); // ... or leaves a trailing byte
        assert_eq!(patched(149, 0x0c), bad); // server_name list overruns its extension
        assert_eq!(patched(149, 0x0a), bad); // ... or underruns it
        assert_eq!(patched(152, 0x09), bad); // host_name overruns the list
        assert_eq!(sniff(&hello(Some(&[0, 0, 0]))), bad); // truncated extension header
        assert_eq!(sniff(&hello(Some(&[0, 0, 0, 2, 0, 5]))), bad); // SNI list overruns
    }

    /// xorshift64: deterministic, no crates.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Random and mutated inputs never panic, and a decision made on a prefix
    /// never changes when more bytes arrive.
    #[test]
    fn fuzz() {
        let seeds: Vec<Vec<u8>> = vec![
            unhex(HELLO_SNI),
            unhex(HELLO_NO_SNI),
            records(&unhex(HELLO_SNI)[5..], [60, usize::MAX].into_iter()),
            CURL.to_vec(),
            TUNNEL.to_vec(),
            b"CONNECT [::1]:22 HTTP/1.1\r\n\r\n".to_vec(),
            b"HEAD /ping HTTP/1.1\r\nHost: ping.pagekite\r\n\r\n".to_vec(),
            b"GET / HTTP/1.1\nHost: 0x7f000001--a.test:1\nUpgrade: websocket\n\n".to_vec(),
        ];
        let alphabet = b"GETPOSCNHAD /:\r\n\x16\x03\x01\x00\x80HTP1.0x-[]\xff";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut input = match rng.below(3) {
                0 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
                1 => (0..rng.below(300))
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect(),
                _ => seeds[rng.below(seeds.len())].clone(),
            };
            for _ in 0..rng.below(4) {
                if input.is_empty() {
                    break;
                }
                let at = rng.below(input.len());
                match rng.below(3) {
                    0 => input[at] = rng.next() as u8,
                    1 => {
                        input.remove(at);
                    }
                    _ => input.insert(at, alphabet[rng.below(alphabet.len())]),
                }
            }
            let full = sniff(&input);
            let prefix = sniff(&input[..rng.below(input.len() + 1)]);
            if prefix != Sniff::NeedMore {
                assert_eq!(prefix, full, "{input:?}");
            }
        }
    }
}
