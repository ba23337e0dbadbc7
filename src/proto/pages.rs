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

/// Text made safe inside HTML (element content and quoted attributes):
/// the one escaper for every page rkite writes. Host names are already
/// restricted by the sniffer, but a backend's Host header is not, and a
/// shared folder's file names are anything.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `--errorurl`: where visitors of an unavailable kite are sent instead of
/// the built-in page, for every domain or for a domain and its subdomains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorUrls {
    pub default: Option<String>,
    /// (domain, URL), from `errorurl = DOMAIN:URL`.
    pub by_domain: Vec<(String, String)>,
}

impl ErrorUrls {
    /// pagekite.py's reading of one `--errorurl`: `DOMAIN:URL` when it holds
    /// `:http`, else a URL for every domain.
    pub fn add(&mut self, arg: &str) {
        match arg.split_once(':').filter(|_| arg.contains(":http")) {
            Some((domain, url)) => self
                .by_domain
                .push((domain.to_ascii_lowercase(), url.to_owned())),
            None => self.default = Some(arg.to_owned()),
        }
    }

    /// The page for `host`: the URL of its own domain or the nearest parent
    /// domain's (without PageKite's name on the page, as pagekite.py does for
    /// such white-label URLs), else the general one.
    pub fn frame_for(&self, host: &str) -> Option<ErrorFrame<'_>> {
        let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
        let mut rest = host.as_str();
        loop {
            if let Some((_, url)) = self.by_domain.iter().rev().find(|(d, _)| d == rest) {
                return Some(ErrorFrame {
                    url,
                    advertise: false,
                });
            }
            match rest.split_once('.') {
                Some((_, parent)) => rest = parent,
                None => break,
            }
        }
        self.default.as_deref().map(|url| ErrorFrame {
            url,
            advertise: true,
        })
    }
}

/// An error page that frames the operator's URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorFrame<'a> {
    pub url: &'a str,
    /// Name PageKite on the page (not for a domain's own error URL).
    pub advertise: bool,
}

/// `503 Unavailable` for a domain nobody serves (`Sorry! (fe)`) or whose
/// local server is down (`Sorry! (be)`), framing `--errorurl`'s page when
/// there is one, as pagekite.py does: a URL with a `?` gets
/// `&where=FE&proto=http&domain=NAME` added.
pub fn unavailable_framed(
    side: Side,
    proto: &str,
    domain: &str,
    uuid: &str,
    frame: Option<ErrorFrame<'_>>,
) -> Vec<u8> {
    let Some(frame) = frame else {
        return unavailable(side, proto, domain, uuid);
    };
    let whatis = if frame.advertise {
        "<a href=\"https://pagekite.net/\"><i>PageKite</i></a>"
    } else {
        "connection"
    };
    let message = format!(
        "<h1>Sorry! ({})</h1><p>The {} {whatis} for <b>{}</b> is unavailable at the moment.</p>\
         <p>Please try again later.</p><!--  -->",
        side.tag(),
        escape_html(&proto.to_ascii_uppercase()),
        escape_html(domain)
    );
    let mut url = escape_html(frame.url);
    if frame.url.contains('?') {
        url.push_str(&format!(
            "&amp;where={}&amp;proto={}&amp;domain={}",
            side.tag().to_ascii_uppercase(),
            escape_html(proto),
            escape_html(domain)
        ));
    }
    let body = format!(
        "<html><frameset cols=\"*\"><frame target=\"_top\" src=\"{url}\" />\
         <noframes>{message}</noframes></frameset></html>\n"
    );
    response("503 Unavailable", uuid, &body)
}

/// `503 Unavailable` for a domain nobody serves (`Sorry! (fe)`) or whose
/// local server is down (`Sorry! (be)`).
pub fn unavailable(side: Side, proto: &str, domain: &str, uuid: &str) -> Vec<u8> {
    let body = format!(
        "<html><body><h1>Sorry! ({})</h1><p>The {} <a href=\"https://pagekite.net/\"><i>PageKite</i></a> \
         for <b>{}</b> is unavailable at the moment.</p><p>Please try again later.</p><!--  --></body></html>\n",
        side.tag(),
        escape_html(&proto.to_ascii_uppercase()),
        escape_html(domain)
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

/// The backend's page for a refused HTTP request (`frame`: `--errorurl`'s,
/// for the unavailable page).
pub fn refused(
    refusal: Refusal,
    proto: &str,
    domain: &str,
    uuid: &str,
    frame: Option<ErrorFrame<'_>>,
) -> Vec<u8> {
    let (status, extra) = match refusal {
        Refusal::Unavailable => {
            return unavailable_framed(Side::Backend, proto, domain, uuid, frame);
        }
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
        escape_html(&proto.to_ascii_uppercase()),
        escape_html(domain)
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
        let auth =
            String::from_utf8(refused(Refusal::NeedsAuth, "http", "a.test", UUID, None)).unwrap();
        assert!(auth.starts_with("HTTP/1.1 401 Unavailable\r\n"));
        assert!(auth.contains("\r\nWWW-Authenticate: Basic realm=PageKite\r\n"));
        let blocked =
            String::from_utf8(refused(Refusal::Blocked, "http", "a.test", UUID, None)).unwrap();
        assert!(
            blocked.starts_with("HTTP/1.1 500 Unavailable\r\n") && blocked.contains("Sorry! (be)")
        );
    }

    #[test]
    fn error_urls_frame_the_page_as_pagekite_does() {
        let mut urls = ErrorUrls::default();
        urls.add("https://errors.test/offline/?");
        urls.add("home.test:http://home.test/down.html");
        let fe = unavailable_framed(
            Side::Frontend,
            "http",
            "nosuch.test",
            UUID,
            urls.frame_for("nosuch.test:8080"),
        );
        let text = String::from_utf8(fe).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Unavailable\r\n"));
        assert!(text.ends_with(
            "<html><frameset cols=\"*\"><frame target=\"_top\" \
             src=\"https://errors.test/offline/?&amp;where=FE&amp;proto=http&amp;domain=nosuch.test\" />\
             <noframes><h1>Sorry! (fe)</h1><p>The HTTP <a href=\"https://pagekite.net/\"><i>PageKite</i></a> \
             for <b>nosuch.test</b> is unavailable at the moment.</p><p>Please try again later.</p>\
             <!--  --></noframes></frameset></html>\n"
        ));
        // A subdomain gets its parent's own URL, without PageKite's name.
        let frame = urls.frame_for("www.Home.test");
        assert_eq!(
            frame,
            Some(ErrorFrame {
                url: "http://home.test/down.html",
                advertise: false
            })
        );
        let be =
            String::from_utf8(refused(Refusal::Unavailable, "http", "<x>", UUID, frame)).unwrap();
        assert!(be.contains("src=\"http://home.test/down.html\""), "{be}");
        assert!(
            be.contains("The HTTP connection for <b>&lt;x&gt;</b>") && !be.contains("PageKite</i>")
        );
        assert_eq!(ErrorUrls::default().frame_for("a.test"), None);
    }
}
