//! The `--metrics` endpoint's words, without its sockets: a writer for the
//! Prometheus text exposition format 0.0.4 (`# HELP`, `# TYPE`, samples with
//! label values escaped as the format requires), the parser of the one
//! request head a metrics client may send (bounded, typed refusals), and the
//! response bytes. Pure: what the numbers are, and when to read or write,
//! is `metrics.rs`'s. Nothing here reads a clock or touches a socket.

use std::fmt::Write as _;

/// The content type of the text exposition format this writer produces.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The largest request head a metrics client may send: a scraper's is a
/// few hundred bytes; anything longer is refused, not buffered.
pub const MAX_HEAD: usize = 4096;

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (names end in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// A text exposition being written: families in the order they are begun,
/// each family's samples right after its `# HELP` and `# TYPE` lines.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition {
            out: String::with_capacity(4096),
        }
    }

    /// Begins a family: its help text (escaped) and its type.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample of the family begun last.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value as the format requires: backslash, double quote and line
/// feed escaped (`\\`, `\"`, `\n`); everything else as it is.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help text as the format requires: backslash and line feed escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// What a metrics client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    Metrics,
    Healthz,
    Other,
}

/// A parsed request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub path: Path,
    /// HEAD: the same head, no body.
    pub head_only: bool,
    /// Neither `GET` nor `HEAD`.
    pub bad_method: bool,
    /// The client may send another request on this connection.
    pub keep_alive: bool,
}

/// Why a request head is refused (the connection gets a 400/431 and closes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// No end of head within [`MAX_HEAD`] bytes.
    TooLarge,
    /// The request line is not `METHOD TARGET HTTP/1.x`.
    BadRequestLine,
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::TooLarge => write!(f, "request head over {MAX_HEAD} bytes"),
            HeadError::BadRequestLine => f.write_str("not an HTTP/1.x request line"),
        }
    }
}

/// The first request head in `input`: `Ok(None)` while it is incomplete,
/// else the request and the bytes it took (a body is not expected and
/// not read: GET and HEAD have none).
pub fn parse_request(input: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let Some(end) = find_head_end(input) else {
        return if input.len() >= MAX_HEAD {
            Err(HeadError::TooLarge)
        } else {
            Ok(None)
        };
    };
    if end > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let head = input.get(..end).ok_or(HeadError::TooLarge)?;
    let mut lines = head.split(|&b| b == b'\n').map(trim_cr);
    let line = lines.next().ok_or(HeadError::BadRequestLine)?;
    let mut words = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(HeadError::BadRequestLine);
    };
    let minor = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        _ => return Err(HeadError::BadRequestLine),
    };
    if method.is_empty() || !method.iter().all(u8::is_ascii_uppercase) {
        return Err(HeadError::BadRequestLine);
    }
    // The query string does not choose the page (Prometheus sends none).
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let path = match path {
        b"/metrics" => Path::Metrics,
        b"/healthz" => Path::Healthz,
        _ => Path::Other,
    };
    let mut keep_alive = minor == 1;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        if name.eq_ignore_ascii_case(b"connection") {
            let value = value.get(1..).unwrap_or_default();
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let request = Request {
        path,
        head_only: method == b"HEAD",
        bad_method: method != b"GET" && method != b"HEAD",
        keep_alive,
    };
    Ok(Some((request, end)))
}

/// The length of the head up to and including its blank line (CRLF or
/// bare LF line ends).
fn find_head_end(input: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(nl) = input.get(at..)?.iter().position(|&b| b == b'\n') {
        let line_end = at + nl + 1;
        let line = input.get(at..at + nl)?;
        if trim_cr(line).is_empty() && at > 0 {
            return Some(line_end);
        }
        at = line_end;
    }
    None
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A complete response: status line, length, type, connection, then the
/// body unless `head_only`.
pub fn response(
    status: u16,
    content_type: &str,
    body: &str,
    head_only: bool,
    keep_alive: bool,
) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: {}\r\n",
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    if status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_samples_follow_the_text_format() {
        let mut e = Exposition::new();
        e.family("rkite_x_total", Kind::Counter, "Things.\nMore \\ words.");
        e.sample(
            "rkite_x_total",
            &[("kite", "http:a.test"), ("dir", "in")],
            7,
        );
        e.sample("rkite_x_total", &[], 0);
        e.single("rkite_up", Kind::Gauge, "Up.", 1);
        assert_eq!(
            e.finish(),
            "# HELP rkite_x_total Things.\\nMore \\\\ words.\n\
             # TYPE rkite_x_total counter\n\
             rkite_x_total{kite=\"http:a.test\",dir=\"in\"} 7\n\
             rkite_x_total 0\n\
             # HELP rkite_up Up.\n\
             # TYPE rkite_up gauge\n\
             rkite_up 1\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("plain"), "plain");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        // Other bytes pass: the format is UTF-8, and only these three
        // characters end or break a label value.
        assert_eq!(escape_label("é\tx"), "é\tx");
        let mut e = Exposition::new();
        e.family("m", Kind::Gauge, "h");
        e.sample("m", &[("kite", "http:\"}\n{evil")], 1);
        let text = e.finish();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(
            text.ends_with("m{kite=\"http:\\\"}\\n{evil\"} 1\n"),
            "{text}"
        );
    }

    fn req(text: &str) -> Result<Option<(Request, usize)>, HeadError> {
        parse_request(text.as_bytes())
    }

    #[test]
    fn requests_choose_the_page_and_the_connection() {
        let (r, n) = req("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET")
            .unwrap()
            .unwrap();
        assert_eq!(n, 34);
        assert_eq!(r.path, Path::Metrics);
        assert!(!r.head_only && !r.bad_method && r.keep_alive);
        let (r, _) = req("HEAD /healthz?x=1 HTTP/1.0\n\n").unwrap().unwrap();
        assert_eq!(r.path, Path::Healthz);
        assert!(r.head_only && !r.keep_alive);
        let (r, _) = req("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.path, Path::Other);
        assert!(!r.keep_alive);
        let (r, _) = req("GET /metrics HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(r.keep_alive);
        let (r, _) = req("POST /metrics HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert!(r.bad_method);
    }

    #[test]
    fn incomplete_oversized_and_malformed_heads() {
        assert_eq!(req(""), Ok(None));
        assert_eq!(req("GET /metrics HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        let long = format!("GET /metrics HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(req(&long), Err(HeadError::TooLarge));
        let long = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD)
        );
        assert_eq!(req(&long), Err(HeadError::TooLarge));
        for bad in [
            "GET /metrics\r\n\r\n",
            "GET /metrics HTTP/2\r\n\r\n",
            "get /metrics HTTP/1.1\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n\r\n",
            "\r\n\r\n",
            "\x16\x03\x01\x02\x00\n\n",
        ] {
            assert_eq!(req(bad), Err(HeadError::BadRequestLine), "{bad:?}");
        }
    }

    #[test]
    fn responses_carry_length_and_drop_the_body_for_head() {
        let r = response(200, "text/plain", "ok\n", false, true);
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.contains("Connection: keep-alive\r\n"));
        assert!(text.ends_with("\r\n\r\nok\n"));
        let r = response(503, "text/plain", "no tunnel\n", true, false);
        let text = String::from_utf8(r).unwrap();
        assert!(text.contains("Content-Length: 10\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        let text = String::from_utf8(response(405, "text/plain", "", false, false)).unwrap();
        assert!(text.contains("Allow: GET, HEAD\r\n"));
    }
}
