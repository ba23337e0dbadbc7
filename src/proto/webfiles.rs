//! The built-in file server's decisions, sans-IO: reading a request head
//! (through `http_head::request_line` and `sniff::headers`, no second header
//! parser), turning its target into safe path segments (percent-decoding,
//! no NUL, no `..`, no empty or `.` segments), choosing the `--webpath`
//! mount a path falls under, `Range` and `If-Modified-Since`, HTTP dates
//! (the time comes in as a number), Content-Type by extension, and the
//! Basic check against `--httppass`. It opens no file and reads no clock:
//! `webserve` does the file system and the socket. Listing pages and
//! response heads are in `webfiles_page`.

use super::ct::ct_eq;
use super::http_head::request_line;
use super::sniff::headers;

/// A request head longer than this is refused (431).
pub const MAX_HEAD: usize = 16 * 1024;

/// What the file server answers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Anything else: 405.
    Other,
}

/// The parts of a request head the file server acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Method,
    /// The request target as sent (origin-form or absolute-form).
    pub target: &'a [u8],
    /// Whether the connection may carry another request afterwards.
    pub keep_alive: bool,
    /// A body follows (Content-Length > 0 or Transfer-Encoding): the server
    /// does not read bodies, so the connection closes after the answer.
    pub has_body: bool,
    pub range: Option<&'a [u8]>,
    /// `If-Range`: the range only if the file is still this one.
    pub if_range: Option<&'a [u8]>,
    pub if_modified_since: Option<u64>,
    pub if_none_match: Option<&'a [u8]>,
    pub authorization: Option<&'a [u8]>,
}

/// Why a head was not a request the server can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadRequest {
    /// The request line is not `METHOD SP target SP HTTP/1.x`.
    RequestLine,
    /// Longer than [`MAX_HEAD`] without a blank line.
    TooLarge,
}

/// Where the head in `buf` ends (just after its blank line), if it does.
/// `Err` when the head is longer than [`MAX_HEAD`].
pub fn head_end(buf: &[u8]) -> Result<Option<usize>, BadRequest> {
    let mut start = 0;
    while let Some(nl) = buf
        .get(start..)
        .and_then(|r| r.iter().position(|&b| b == b'\n'))
    {
        let line_end = start + nl;
        let line = buf.get(start..line_end).unwrap_or_default();
        if (line.is_empty() || line == b"\r") && start > 0 {
            return if line_end + 1 > MAX_HEAD {
                Err(BadRequest::TooLarge)
            } else {
                Ok(Some(line_end + 1))
            };
        }
        start = line_end + 1;
    }
    if buf.len() > MAX_HEAD {
        return Err(BadRequest::TooLarge);
    }
    Ok(None)
}

/// Reads a complete head (as [`head_end`] found it).
pub fn parse_request(head: &[u8]) -> Result<Request<'_>, BadRequest> {
    let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let (method, target, minor) = request_line(first).ok_or(BadRequest::RequestLine)?;
    let method = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        _ => Method::Other,
    };
    let mut req = Request {
        method,
        target,
        keep_alive: minor >= 1,
        has_body: false,
        range: None,
        if_range: None,
        if_modified_since: None,
        if_none_match: None,
        authorization: None,
    };
    for (name, value) in headers(head) {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    req.keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && minor == 0 {
                    req.keep_alive = true;
                }
            }
        } else if is("content-length") {
            req.has_body |= value != b"0";
        } else if is("transfer-encoding") {
            req.has_body = true;
        } else if is("range") && req.range.is_none() {
            req.range = Some(value);
        } else if is("if-range") && req.if_range.is_none() {
            req.if_range = Some(value);
        } else if is("if-none-match") && req.if_none_match.is_none() {
            req.if_none_match = Some(value);
        } else if is("if-modified-since") && req.if_modified_since.is_none() {
            req.if_modified_since = parse_http_date(value);
        } else if is("authorization") && req.authorization.is_none() {
            req.authorization = Some(value);
        }
    }
    // A body we do not read would be taken for the next request.
    if req.has_body {
        req.keep_alive = false;
    }
    Ok(req)
}

/// A request target made safe: decoded path segments, none empty, `.` or
/// `..`, none holding NUL or `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlPath {
    pub segments: Vec<Vec<u8>>,
    /// The path ended in `/` (a directory is asked for as one).
    pub trailing_slash: bool,
}

/// Why a target names no file the server may look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not `/…` (nor `http://host/…`).
    NotAbsolute,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// A NUL byte, raw or escaped.
    Nul,
    /// A `..` segment, raw or escaped (`%2e%2e`), or an escaped `/`.
    Traversal,
}

/// The path of a request target, decoded and checked; the query and
/// fragment are dropped.
pub fn url_path(target: &[u8]) -> Result<UrlPath, PathError> {
    let mut path = target;
    if let Some(at) = find(path, b"://") {
        // Absolute-form: skip the scheme and authority.
        let rest = path.get(at + 3..).unwrap_or_default();
        path = match rest.iter().position(|&b| b == b'/') {
            Some(slash) => rest.get(slash..).unwrap_or_default(),
            None => b"/",
        };
    }
    let end = path
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    let path = path.get(..end).unwrap_or_default();
    if path.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut segments = Vec::new();
    for raw in path.split(|&b| b == b'/') {
        let seg = percent_decode(raw)?;
        if seg.contains(&0) {
            return Err(PathError::Nul);
        }
        // An escaped `/` would join segments after the check.
        if seg.contains(&b'/') || seg == b".." {
            return Err(PathError::Traversal);
        }
        if seg.is_empty() || seg == b"." {
            continue;
        }
        segments.push(seg);
    }
    Ok(UrlPath {
        segments,
        trailing_slash: path.ends_with(b"/"),
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(|&h| hex(h));
            let lo = bytes.next().and_then(|&l| hex(l));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(PathError::BadEscape),
            }
        } else {
            out.push(b);
        }
    }
    Ok(out)
}

/// A `--webpath` mount as the matcher sees it: the host it is for (`*`,
/// `DOMAIN` or `DOMAIN/PORT`) and its URL prefix's segments.
pub struct MountKey<'a> {
    pub host: &'a str,
    pub prefix: &'a [String],
}

/// Which mount serves `path` for a kite known by `names` (the name the
/// visitor asked for, then the kite's own, which differ for a wildcard
/// kite) on port `port`: the longest prefix among the kite's own mounts,
/// then among the `*` ones, as pagekite.py's `convertPaths` looks them up.
/// Returns the mount's index and how many of the path's segments its
/// prefix took.
pub fn find_mount(
    mounts: &[MountKey<'_>],
    names: &[&str],
    port: u16,
    path: &UrlPath,
) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize, bool)> = None;
    for (i, m) in mounts.iter().enumerate() {
        let own = names.iter().any(|name| {
            let (host, host_port) = match m.host.split_once('/') {
                Some((h, p)) => (h, p.parse::<u16>().ok()),
                None => (m.host, None),
            };
            host.eq_ignore_ascii_case(name) && host_port.is_none_or(|p| p == port)
        });
        if !own && m.host != "*" {
            continue;
        }
        let n = m.prefix.len();
        let matches = n <= path.segments.len()
            && m.prefix
                .iter()
                .zip(&path.segments)
                .all(|(p, s)| p.as_bytes() == s.as_slice());
        if !matches {
            continue;
        }
        let better = match best {
            None => true,
            Some((_, bn, bown)) => (own && !bown) || (own == bown && n > bn),
        };
        if better {
            best = Some((i, n, own));
        }
    }
    best.map(|(i, n, _)| (i, n))
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable single range: the whole file (200).
    Whole,
    /// Bytes `start..=end` (206).
    Part { start: u64, end: u64 },
    /// A range that starts past the end (416).
    Unsatisfiable,
}

/// One `bytes=` range, read as RFC 9110 §14.1.2 says; several ranges, or
/// units other than bytes, get the whole file.
pub fn range(spec: &[u8], size: u64) -> RangeAnswer {
    let Some(set) = spec
        .get(..6)
        .filter(|u| u.eq_ignore_ascii_case(b"bytes="))
        .and(spec.get(6..))
    else {
        return RangeAnswer::Whole;
    };
    let set = set.trim_ascii();
    if set.contains(&b',') {
        return RangeAnswer::Whole;
    }
    let Some(dash) = set.iter().position(|&b| b == b'-') else {
        return RangeAnswer::Whole;
    };
    let first = number(set.get(..dash).unwrap_or_default().trim_ascii());
    let last = number(set.get(dash + 1..).unwrap_or_default().trim_ascii());
    match (first, last) {
        (Some(Some(start)), Some(last)) => match last {
            Some(end) if end < start => RangeAnswer::Whole,
            _ if start >= size => RangeAnswer::Unsatisfiable,
            end => RangeAnswer::Part {
                start,
                end: end.map_or(size - 1, |e| e.min(size - 1)),
            },
        },
        (Some(None), Some(Some(suffix))) => match suffix {
            0 => RangeAnswer::Unsatisfiable,
            _ if size == 0 => RangeAnswer::Unsatisfiable,
            n => RangeAnswer::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        },
        _ => RangeAnswer::Whole,
    }
}

/// Digits as a number: `Some(None)` for no digits, `None` for anything
/// else (or more than a u64 holds).
fn number(text: &[u8]) -> Option<Option<u64>> {
    if text.is_empty() {
        return Some(None);
    }
    if !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok().map(Some)
}

/// A file's entity tag: its size, modification time and inode, which
/// change whenever its content is replaced.
pub fn etag(size: u64, mtime: u64, inode: u64) -> String {
    format!("\"{size:x}-{mtime:x}-{inode:x}\"")
}

/// Whether the client's copy is current, so the answer is 304 (RFC 9110
/// §13.1.2-3): `If-None-Match` (weak comparison, `*` matches) decides when
/// present; otherwise `If-Modified-Since` against `mtime` (Unix seconds).
pub fn not_modified(req: &Request<'_>, tag: &str, mtime: u64) -> bool {
    match req.if_none_match {
        Some(list) => {
            let weak = |t: &[u8]| t.strip_prefix(b"W/").unwrap_or(t).to_vec();
            let mine = weak(tag.as_bytes());
            list.split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .any(|t| t == b"*" || weak(t) == mine)
        }
        None => req.if_modified_since.is_some_and(|s| mtime <= s),
    }
}

/// Whether a `Range` may be served under the request's `If-Range`: none,
/// or one naming the file as it is (strong tag, or its exact date).
pub fn range_applies(req: &Request<'_>, tag: &str, mtime: u64) -> bool {
    match req.if_range {
        None => true,
        Some(v) if v.starts_with(b"\"") => v == tag.as_bytes(),
        Some(v) => parse_http_date(v) == Some(mtime),
    }
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Unix seconds as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn http_date(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil(days);
    let weekday = DAYS.get((days % 7) as usize).copied().unwrap_or("Thu");
    let month = MONTHS
        .get(m.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("Jan");
    format!(
        "{weekday}, {d:02} {month} {y} {:02}:{:02}:{:02} GMT",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 as (year, month 1-12, day 1-31), Howard Hinnant's
/// `civil_from_days` for days ≥ 0.
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) as days since 1970-01-01 (`days_from_civil`).
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

/// An IMF-fixdate as Unix seconds; other forms (obsolete RFC 850 and
/// asctime dates) are `None`, which makes `If-Modified-Since` ignored, as
/// RFC 9110 §13.1.3 says of dates a server cannot read.
pub fn parse_http_date(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let mut words = text.split_ascii_whitespace();
    let _weekday = words.next().filter(|w| w.ends_with(','))?;
    let day: u64 = words.next().filter(|w| w.len() == 2)?.parse().ok()?;
    let month = words.next()?;
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let year: u64 = words.next().filter(|w| w.len() == 4)?.parse().ok()?;
    let clock = words.next()?;
    if words.next() != Some("GMT") || words.next().is_some() || !(1..=31).contains(&day) {
        return None;
    }
    let mut hms = clock
        .split(':')
        .map(|p| (p.len() == 2).then(|| p.parse::<u64>().ok()).flatten());
    let (Some(Some(h)), Some(Some(mi)), Some(Some(s)), None) =
        (hms.next(), hms.next(), hms.next(), hms.next())
    else {
        return None;
    };
    if h > 23 || mi > 59 || s > 60 || year < 1970 {
        return None;
    }
    Some(days_from_civil(year, month, day)? * 86_400 + h * 3600 + mi * 60 + s)
}

/// One `extension type` line per pair (a slice of string pairs cost 32
/// bytes of relocated pointers an entry in the static binary).
macro_rules! types {
    ($(($ext:literal, $ty:literal)),+ $(,)?) => {
        concat!($($ext, " ", $ty, "\n",)+)
    };
}

/// pagekite.py's `MIME_TYPES` (httpd.py), with types it lacks for today's
/// common files; text types say UTF-8.
const TYPES: &str = types![
    ("3gp", "video/3gpp"),
    ("7z", "application/x-7z-compressed"),
    ("aac", "audio/aac"),
    ("atom", "application/atom+xml"),
    ("avi", "video/avi"),
    ("avif", "image/avif"),
    ("bmp", "image/bmp"),
    ("bz2", "application/x-bzip2"),
    ("c", "text/plain; charset=utf-8"),
    ("cfg", "text/plain; charset=utf-8"),
    ("conf", "text/plain; charset=utf-8"),
    ("cpp", "text/plain; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("doc", "application/msword"),
    ("dtd", "application/xml-dtd"),
    ("epub", "application/epub+zip"),
    ("flac", "audio/flac"),
    ("gif", "image/gif"),
    ("gz", "application/x-gzip"),
    ("h", "text/plain; charset=utf-8"),
    ("hpp", "text/plain; charset=utf-8"),
    ("hqx", "application/mac-binhex40"),
    ("htm", "text/html; charset=utf-8"),
    ("html", "text/html; charset=utf-8"),
    ("ico", "image/x-icon"),
    ("jar", "application/java-archive"),
    ("java", "text/plain; charset=utf-8"),
    ("jpeg", "image/jpeg"),
    ("jpg", "image/jpeg"),
    ("js", "application/javascript"),
    ("json", "application/json"),
    ("jsonp", "application/javascript"),
    ("log", "text/plain; charset=utf-8"),
    ("m4a", "audio/mp4"),
    ("m4v", "video/mp4"),
    ("md", "text/plain; charset=utf-8"),
    ("midi", "audio/x-midi"),
    ("mjs", "application/javascript"),
    ("mkv", "video/x-matroska"),
    ("mov", "video/quicktime"),
    ("mp2", "audio/mpeg"),
    ("mp3", "audio/mpeg"),
    ("mp4", "video/mp4"),
    ("mpeg", "video/mpeg"),
    ("ogg", "audio/vorbis"),
    ("opus", "audio/opus"),
    ("otf", "font/otf"),
    ("pdf", "application/pdf"),
    ("pl", "text/plain; charset=utf-8"),
    ("png", "image/png"),
    ("ppt", "application/vnd.ms-powerpoint"),
    ("ps", "application/postscript"),
    ("py", "text/plain; charset=utf-8"),
    ("pyw", "text/plain; charset=utf-8"),
    ("rc", "text/plain; charset=utf-8"),
    ("rs", "text/plain; charset=utf-8"),
    ("rss", "application/rss+xml"),
    ("rtf", "application/rtf"),
    ("sgml", "text/sgml"),
    ("sh", "text/plain; charset=utf-8"),
    ("shtml", "text/plain; charset=utf-8"),
    ("svg", "image/svg+xml"),
    ("swf", "application/x-shockwave-flash"),
    ("tar", "application/x-tar"),
    ("tgz", "application/x-tar"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    ("ttf", "font/ttf"),
    ("txt", "text/plain; charset=utf-8"),
    ("wasm", "application/wasm"),
    ("wav", "audio/wav"),
    ("webm", "video/webm"),
    ("webp", "image/webp"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("xls", "application/vnd.ms-excel"),
    ("xml", "application/xml"),
    ("xrdf", "application/xrds+xml"),
    ("xz", "application/x-xz"),
    ("zip", "application/zip"),
    ("zst", "application/zstd"),
];

/// The Content-Type for a file name, by its extension in any case;
/// `application/octet-stream` when unknown (pagekite.py's `DEFAULT`).
pub fn content_type(name: &[u8]) -> &'static str {
    let ext = name
        .iter()
        .rposition(|&b| b == b'.')
        .and_then(|dot| name.get(dot + 1..))
        .unwrap_or_default();
    TYPES
        .lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(e, _)| e.as_bytes().eq_ignore_ascii_case(ext))
        .map_or("application/octet-stream", |(_, t)| t)
}

/// `--httppass`: any user name with this password, as pagekite.py's
/// `checkUsernamePasswordAuth` accepts, compared in constant time.
pub fn password_ok(authorization: Option<&[u8]>, password: &str) -> bool {
    let Some(value) = authorization else {
        return false;
    };
    let mut words = value
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    let (Some(scheme), Some(token), None) = (words.next(), words.next(), words.next()) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return false;
    }
    let Some(decoded) = super::options::base64_decode(token) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return false;
    };
    ct_eq(
        decoded.get(colon + 1..).unwrap_or_default(),
        password.as_bytes(),
    )
}

#[cfg(test)]
#[path = "webfiles_tests.rs"]
mod tests;
