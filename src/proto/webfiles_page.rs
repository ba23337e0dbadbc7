//! What the built-in file server says, sans-IO: the `--webpath` policies
//! and who they let in, response heads (status, length, type, dates,
//! ranges, keep-alive), the short error bodies, and directory listing
//! pages with every name HTML-escaped and every link percent-encoded.
//! Bytes in, bytes out: the file system, the clock and the socket are
//! `webserve`'s; reading requests is `webfiles`'.

use std::fmt::Write as _;

use super::webfiles::{http_date, password_ok};

/// A `--webpath` policy (pagekite.py's `WEB_POLICIES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// `default`: open, unless `--httppass` is set (pagekite.py asks every
    /// visitor of its web server for it then).
    Default,
    /// `public`: open to everyone, even with `--httppass`.
    Public,
    /// `private`: only with `--httppass`; nobody without one.
    Private,
    /// `otp`: pagekite.py names it but never implemented one-time
    /// passwords; treated as `private`.
    Otp,
}

impl Policy {
    pub fn parse(text: &str) -> Option<Policy> {
        match text {
            "" | "default" => Some(Policy::Default),
            "public" => Some(Policy::Public),
            "private" => Some(Policy::Private),
            "otp" => Some(Policy::Otp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Policy::Default => "default",
            Policy::Public => "public",
            Policy::Private => "private",
            Policy::Otp => "otp",
        }
    }
}

/// Directory listings (`--webindexes`, a kite's `+indexes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Indexes {
    #[default]
    Off,
    /// Listings without dot-files and pagekite.py's `_pagekite*` files.
    On,
    /// Listings with every file.
    All,
}

impl Indexes {
    /// pagekite.py's `on`/`all`/`off` and the usual booleans.
    pub fn parse(text: &str) -> Option<Indexes> {
        let is = |words: &[&str]| words.iter().any(|w| text.eq_ignore_ascii_case(w));
        if is(&["all"]) {
            Some(Indexes::All)
        } else if is(&["on", "true", "yes", "1"]) {
            Some(Indexes::On)
        } else if is(&["off", "false", "no", "0", "none"]) {
            Some(Indexes::Off)
        } else {
            None
        }
    }
}

/// Whether a request may see what a mount holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// 401 with a Basic challenge.
    NeedPassword,
    /// 403: a private mount with no password to give.
    Forbidden,
}

/// The policy's verdict on a request's `Authorization` value.
pub fn access(policy: Policy, httppass: Option<&str>, authorization: Option<&[u8]>) -> Access {
    match (policy, httppass) {
        (Policy::Public, _) | (Policy::Default, None) => Access::Allowed,
        (Policy::Private | Policy::Otp, None) => Access::Forbidden,
        (_, Some(pw)) if password_ok(authorization, pw) => Access::Allowed,
        (_, Some(_)) => Access::NeedPassword,
    }
}

/// A response head's parts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    /// Content-Length: the body's (or, for HEAD, the would-be body's).
    pub length: u64,
    pub last_modified: Option<u64>,
    pub etag: Option<&'a str>,
    /// `Content-Range: bytes START-END/SIZE` (206).
    pub range: Option<(u64, u64, u64)>,
    /// `Content-Range: bytes */SIZE` (416).
    pub unsatisfied: Option<u64>,
    pub location: Option<&'a str>,
    /// Now, in Unix seconds, for `Date`.
    pub date: u64,
    pub keep_alive: bool,
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

/// The bytes of a response head.
pub fn head(h: &Head<'_>) -> Vec<u8> {
    let mut s = String::with_capacity(256);
    let _ = write!(s, "HTTP/1.1 {} {}\r\n", h.status, reason(h.status));
    let _ = write!(s, "Date: {}\r\nServer: rkite\r\n", http_date(h.date));
    if let Some(t) = h.content_type {
        let _ = write!(s, "Content-Type: {t}\r\n");
    }
    let _ = write!(s, "Content-Length: {}\r\n", h.length);
    if let Some(m) = h.last_modified {
        let _ = write!(s, "Last-Modified: {}\r\n", http_date(m));
    }
    if let Some(tag) = h.etag {
        let _ = write!(s, "ETag: {tag}\r\n");
    }
    if matches!(h.status, 200 | 206) && h.last_modified.is_some() {
        s.push_str("Accept-Ranges: bytes\r\n");
    }
    if let Some((start, end, size)) = h.range {
        let _ = write!(s, "Content-Range: bytes {start}-{end}/{size}\r\n");
    }
    if let Some(size) = h.unsatisfied {
        let _ = write!(s, "Content-Range: bytes */{size}\r\n");
    }
    if let Some(l) = h.location {
        let _ = write!(s, "Location: {l}\r\n");
    }
    if h.status == 401 {
        s.push_str("WWW-Authenticate: Basic realm=\"rkite\"\r\n");
    }
    if h.status == 405 {
        s.push_str("Allow: GET, HEAD\r\n");
    }
    s.push_str(if h.keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    s.into_bytes()
}

/// The short HTML body of an error status.
pub fn error_body(status: u16) -> String {
    format!(
        "<html><body><h1>{status} {}</h1></body></html>\n",
        reason(status)
    )
}

/// Segments as a URL path, each percent-encoded, joined by `/`.
pub fn encode_path(segments: &[Vec<u8>], trailing_slash: bool) -> String {
    let mut out = String::from("/");
    for (i, seg) in segments.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        encode_into(&mut out, seg);
    }
    if trailing_slash && !segments.is_empty() {
        out.push('/');
    }
    out
}

fn encode_into(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

pub use super::pages::escape_html;

/// One directory entry for a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    pub dir: bool,
    pub size: u64,
    pub mtime: u64,
}

/// Whether a listing shows a name: everything with `all`, else no
/// dot-files and none of pagekite.py's `_pagekite*` files.
pub fn listed(name: &[u8], indexes: Indexes) -> bool {
    indexes == Indexes::All || !(name.starts_with(b".") || name.starts_with(b"_pagekite"))
}

/// A directory listing page for URL path `shown` (as decoded), entries
/// sorted by name, directories marked with a trailing `/`; `omitted`
/// entries beyond what a page holds are counted at the end.
pub fn listing(shown: &[Vec<u8>], entries: &mut [Entry], omitted: usize) -> String {
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let title = escape_html(&String::from_utf8_lossy(&shown.join(&b'/')));
    let mut s = String::with_capacity(256 + entries.len() * 128);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>/{title}</title></head>\n\
         <body><h1>/{title}</h1>\n<table>\n"
    );
    if !shown.is_empty() {
        s.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for e in entries.iter() {
        let mut href = String::new();
        encode_into(&mut href, &e.name);
        let mut name = escape_html(&String::from_utf8_lossy(&e.name));
        if e.dir {
            href.push('/');
            name.push('/');
        }
        let size = if e.dir {
            String::new()
        } else {
            e.size.to_string()
        };
        let _ = writeln!(
            s,
            "<tr><td><a href=\"{href}\">{name}</a></td><td>{size}</td><td>{}</td></tr>",
            http_date(e.mtime)
        );
    }
    if entries.is_empty() {
        s.push_str("<tr><td><i>empty</i></td></tr>\n");
    }
    if omitted > 0 {
        let _ = writeln!(s, "<tr><td><i>{omitted} more not shown</i></td></tr>");
    }
    s.push_str("</table></body></html>\n");
    s
}
