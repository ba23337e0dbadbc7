//! Canned replies sent to public clients and liveness pingers (protocol doc
//! §1.2, §4.1, §6.3, §6.7), byte for byte as pagekite.py words them so that
//! scripts and monitors written against pagekite.py keep working.

/// TLS alert record "access denied" (TLS 1.2 header), for TLS clients that
/// can't be routed.
pub const TLS_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31];

/// Reply to a public `CONNECT host:port` that can't be served.
pub const CONNECT_UNAVAILABLE: &[u8] = b"HTTP/1.0 503 Unavailable\r\n\r\n";

/// Who refuses: the frontend (no tunnel) or the backend (no local server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Frontend,
    Backend,
}

impl Side {
    fn tag(self) -> &'static str {
        match self {
            Side::Frontend => "fe",
            Side::Backend => "be",
        }
    }
}

fn response(status: &str, uuid: &str, body: &str) -> Vec<u8> {
    response_with(status, uuid, "", body)
}

fn response_with(status: &str, uuid: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nX-PageKite-UUID: {uuid}\r\n{extra}Content-Type: text/html; charset=utf-8\r\n\
         Pragma: no-cache\r\nExpires: 0\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}"
    )
    .into_bytes()
}

/// Escapes the few characters that matter in HTML text. Host names are
/// already restricted by the sniffer, but a backend's Host header is not.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// `503 Unavailable` for a domain nobody serves (`Sorry! (fe)`) or whose
/// local server is down (`Sorry! (be)`).
pub fn unavailable(side: Side, proto: &str, domain: &str, uuid: &str) -> Vec<u8> {
    let body = format!(
        "<html><body><h1>Sorry! ({})</h1><p>The {} <a href=\"https://pagekite.net/\"><i>PageKite</i></a> \
         for <b>{}</b> is unavailable at the moment.</p><p>Please try again later.</p><!--  --></body></html>\n",
        side.tag(),
        escape(&proto.to_ascii_uppercase()),
        escape(domain)
    );
    response("503 Unavailable", uuid, &body)
}

/// Why a backend refuses a request itself (§4.1, §6.7): pagekite.py words
/// each as its `(be)` page with another status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No local server, or the visitor's address is not allowed: 503.
    Unavailable,
    /// `+password` and no or wrong credentials: 401 with a Basic challenge.
    NeedsAuth,
    /// The security filter matched the path: 500.
    Blocked,
    /// A request for another site than the stream's: 421.
    Misdirected,
    /// A request that can't be parsed or could be read two ways: 400.
    BadRequest,
}

/// The backend's page for a refused HTTP request.
pub fn refused(refusal: Refusal, proto: &str, domain: &str, uuid: &str) -> Vec<u8> {
    let (status, extra) = match refusal {
        Refusal::Unavailable => return unavailable(Side::Backend, proto, domain, uuid),
        Refusal::NeedsAuth => (
            "401 Unavailable",
            "WWW-Authenticate: Basic realm=PageKite\r\n",
        ),
        Refusal::Blocked => ("500 Unavailable", ""),
        Refusal::Misdirected => ("421 Misdirected Request", ""),
        Refusal::BadRequest => ("400 Bad Request", ""),
    };
    let body = format!(
        "<html><body><h1>Sorry! (be)</h1><p>The {} <a href=\"https://pagekite.net/\"><i>PageKite</i></a> \
         for <b>{}</b> is unavailable at the moment.</p><p>Please try again later.</p><!--  --></body></html>\n",
        escape(&proto.to_ascii_uppercase()),
        escape(domain)
    );
    response_with(status, uuid, extra, &body)
}

/// The answer to a liveness ping (§1.2). pagekite.py only connects to a
/// relay whose reply starts with exactly `HTTP/1.1 503 Unavailable`.
pub fn ping_reply(uuid: &str) -> Vec<u8> {
    response(
        "503 Unavailable",
        uuid,
        "<html><body><h1>Sorry! (fe)</h1><p>The HTTP connection for <b>ping.pagekite</b> \
         is unavailable at the moment.</p><p>Please try again later.</p><!--  --></body></html>\n",
    )
}

/// `400 Bad request` for an HTTP request without a usable Host header.
pub fn no_host(uuid: &str) -> Vec<u8> {
    response(
        "400 Bad request",
        uuid,
        "<html><body><h1>400 Bad request</h1><p>Invalid request, no Host: found.</p></body></html>\n",
    )
}

/// The reply to the `PING` method (§6.1).
pub fn pong(path: &str) -> Vec<u8> {
    format!("PONG {path}\r\n\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "291c5276d716ce588634919ad762494403d0eae5";

    #[test]
    fn ping_reply_is_byte_exact() {
        let expected = b"HTTP/1.1 503 Unavailable\r\nX-PageKite-UUID: 291c5276d716ce588634919ad762494403d0eae5\r\nContent-Type: text/html; charset=utf-8\r\nPragma: no-cache\r\nExpires: 0\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n<html><body><h1>Sorry! (fe)</h1><p>The HTTP connection for <b>ping.pagekite</b> is unavailable at the moment.</p><p>Please try again later.</p><!--  --></body></html>\n";
        assert_eq!(ping_reply(UUID), expected.to_vec());
        assert_eq!(ping_reply(UUID).len(), 368);
    }

    #[test]
    fn unavailable_pages_match_pagekite() {
        let fe = unavailable(Side::Frontend, "http", "nosuch.test", UUID);
        let text = String::from_utf8(fe).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Unavailable\r\nX-PageKite-UUID: "));
        assert!(text.ends_with("<html><body><h1>Sorry! (fe)</h1><p>The HTTP <a href=\"https://pagekite.net/\"><i>PageKite</i></a> for <b>nosuch.test</b> is unavailable at the moment.</p><p>Please try again later.</p><!--  --></body></html>\n"));
        let be = String::from_utf8(unavailable(Side::Backend, "http", "<x>", UUID)).unwrap();
        assert!(be.contains("Sorry! (be)") && be.contains("<b>&lt;x&gt;</b>"));
        let bad = String::from_utf8(no_host(UUID)).unwrap();
        assert!(bad.starts_with("HTTP/1.1 400 Bad request\r\n"));
        assert!(bad.ends_with("<p>Invalid request, no Host: found.</p></body></html>\n"));
        assert_eq!(pong("/x"), b"PONG /x\r\n\r\n");
        let auth = String::from_utf8(refused(Refusal::NeedsAuth, "http", "a.test", UUID)).unwrap();
        assert!(auth.starts_with("HTTP/1.1 401 Unavailable\r\n"));
        assert!(auth.contains("\r\nWWW-Authenticate: Basic realm=PageKite\r\n"));
        let blocked = String::from_utf8(refused(Refusal::Blocked, "http", "a.test", UUID)).unwrap();
        assert!(
            blocked.starts_with("HTTP/1.1 500 Unavailable\r\n") && blocked.contains("Sorry! (be)")
        );
    }
}
