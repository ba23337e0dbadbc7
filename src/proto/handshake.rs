//! The tunnel handshake (protocol doc §2): the backend's `CONNECT PageKite:1`
//! request, the frontend's `200 OK` reply, the `X-PageKite:` kite lines and
//! their signatures and challenges. Builders and parsers over text, plus the
//! SHA-1 signing that the protocol mandates. Entropy (salts) and the clock are
//! arguments; nothing here does I/O or decides policy (see `auth.rs`).

use std::fmt;

use super::frame::{CLASSIC_PAYLOAD, MAX_PAYLOAD, header_lines};
use super::operators;

/// The longest head (request or reply) either side accepts.
pub const MAX_HEAD: usize = 16 * 1024;
/// The header (after the `X-PageKite` prefix) in which each end of an rkite
/// tunnel announces the largest chunk payload it accepts
/// ([`MAX_PAYLOAD`]): the backend in its request, the frontend in its
/// reply. pagekite.py and libpagekite ignore headers they don't know, and
/// never send it, so they keep getting chunks of [`CLASSIC_PAYLOAD`] at most.
pub const MAX_CHUNK_HEADER: &str = "-Max-Chunk";
/// Kite lines per request; pagekite.py users rarely have more than a dozen.
pub const MAX_KITES: usize = 256;
/// Signatures, salts and challenges are all 36 characters (libpagekite's limit).
pub const TOKEN_LEN: usize = 36;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    NotText,
    NotTunnelRequest,
    BadKiteLine(String),
    TooManyKites,
    NoKites,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::NotText => f.write_str("handshake is not text"),
            HandshakeError::NotTunnelRequest => f.write_str("not a CONNECT PageKite request"),
            HandshakeError::BadKiteLine(v) => {
                write!(f, "malformed kite line {:?}", v.get(..80).unwrap_or(v))
            }
            HandshakeError::TooManyKites => write!(f, "more than {MAX_KITES} kites"),
            HandshakeError::NoKites => f.write_str("no kites requested"),
        }
    }
}

/// Header prefix of the handshake; pagekite.py still accepts the legacy one
/// and answers in kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Prefix {
    #[default]
    PageKite,
    Beanstalk,
}

impl Prefix {
    pub fn as_str(self) -> &'static str {
        match self {
            Prefix::PageKite => "X-PageKite",
            Prefix::Beanstalk => "X-Beanstalk",
        }
    }

    /// Splits `name` into a prefix and the rest after it (`""` for the kite
    /// line itself, `"-Features"` and so on otherwise), case-insensitively.
    fn strip(name: &str) -> Option<(Prefix, &str)> {
        for prefix in [Prefix::PageKite, Prefix::Beanstalk] {
            let p = prefix.as_str();
            if let Some(head) = name.get(..p.len()) {
                if head.eq_ignore_ascii_case(p) {
                    return Some((prefix, name.get(p.len()..).unwrap_or("")));
                }
            }
        }
        None
    }
}

/// One `X-PageKite: PROTO:DOMAIN:SRAND:TOKEN:SIGN` value (§2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KiteLine {
    pub proto: String,
    pub domain: String,
    pub srand: String,
    pub token: String,
    pub sign: String,
}

impl KiteLine {
    pub fn parse(value: &str) -> Result<KiteLine, HandshakeError> {
        let bad = || HandshakeError::BadKiteLine(value.to_string());
        let mut parts = value.split(':');
        let mut next = || parts.next().map(str::trim).ok_or_else(bad);
        let line = KiteLine {
            proto: next()?.to_ascii_lowercase(),
            domain: next()?.to_ascii_lowercase(),
            srand: next()?.to_string(),
            token: next()?.to_string(),
            sign: next()?.to_string(),
        };
        if parts.next().is_some() || line.proto.is_empty() || line.domain.is_empty() {
            return Err(bad());
        }
        let long = |s: &str| s.len() > 1024;
        if long(&line.proto)
            || long(&line.domain)
            || [&line.srand, &line.token, &line.sign]
                .iter()
                .any(|s| s.len() > 64)
        {
            return Err(bad());
        }
        Ok(line)
    }

    /// `PROTO:DOMAIN:SRAND`, the name the frontend's answers use.
    pub fn what(&self) -> String {
        format!("{}:{}:{}", self.proto, self.domain, self.srand)
    }

    /// `PROTO:DOMAIN:SRAND:TOKEN`, what the signature covers.
    pub fn payload(&self) -> String {
        format!("{}:{}", self.what(), self.token)
    }

    pub fn value(&self) -> String {
        format!("{}:{}", self.payload(), self.sign)
    }
}

fn sha1_hex(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    for p in parts {
        ctx.update(p);
    }
    super::ct::hex(ctx.finish().as_ref())
}

/// Eight lowercase hex characters from four random bytes: a signature salt.
pub fn salt8(random: [u8; 4]) -> String {
    super::ct::hex(&random)
}

/// The backend's kite signature (pagekite.py `signToken`): salt8 + the first
/// 28 hex digits of SHA1(secret + payload + salt8).
pub fn sign(secret: &str, payload: &str, salt8: &str) -> String {
    let hash = sha1_hex(&[secret.as_bytes(), payload.as_bytes(), salt8.as_bytes()]);
    let mut out = String::with_capacity(TOKEN_LEN);
    out.push_str(salt8);
    out.push_str(hash.get(..TOKEN_LEN - salt8.len()).unwrap_or(&hash));
    out
}

/// Checks a kite signature made by [`sign`], salt taken from its first 8 chars.
pub fn verify(secret: &str, payload: &str, signature: &str) -> bool {
    let Some(salt) = signature.get(..8) else {
        return false;
    };
    if signature.len() != TOKEN_LEN || salt.starts_with('t') {
        return false;
    }
    let expected = sign(secret, payload, salt);
    super::ct::ct_eq(expected.as_bytes(), signature.as_bytes())
}

/// Seconds per challenge window; a challenge verifies in its own window and
/// the next one (10–20 minutes), as in pagekite.py.
pub const CHALLENGE_WINDOW: u64 = 600;

/// The frontend's stateless challenge (§2.3): `tok8` ("t" + 7 hex) followed by
/// 28 hex digits of SHA1(fe_secret + what + hex(window) + tok8). Stateless, so
/// it still verifies when the backend answers on a new connection.
pub fn challenge(fe_secret: &str, what: &str, unix_time: u64, tok8: &str) -> String {
    let window = format!("{:x}", unix_time / CHALLENGE_WINDOW);
    let hash = sha1_hex(&[
        fe_secret.as_bytes(),
        what.as_bytes(),
        window.as_bytes(),
        tok8.as_bytes(),
    ]);
    let mut out = String::with_capacity(TOKEN_LEN);
    out.push_str(tok8);
    out.push_str(hash.get(..TOKEN_LEN - tok8.len()).unwrap_or(&hash));
    out
}

/// `t` + 7 hex characters from random bytes, the start of a challenge.
pub fn tok8(random: [u8; 4]) -> String {
    let mut s = salt8(random);
    s.replace_range(..1, "t");
    s
}

/// Checks a challenge made by [`challenge`] in the current or previous window.
pub fn check_challenge(fe_secret: &str, what: &str, token: &str, unix_time: u64) -> bool {
    let Some(tok) = token.get(..8) else {
        return false;
    };
    if !tok.starts_with('t') || token.len() != TOKEN_LEN {
        return false;
    }
    [0, CHALLENGE_WINDOW].iter().any(|back| {
        let expected = challenge(fe_secret, what, unix_time.saturating_sub(*back), tok);
        super::ct::ct_eq(expected.as_bytes(), token.as_bytes())
    })
}

/// What a backend asks for, from the CONNECT head or from a NOOP chunk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TunnelRequest {
    pub prefix: Prefix,
    pub features: Vec<String>,
    pub version: Option<String>,
    pub replace: Option<String>,
    pub kites: Vec<KiteLine>,
    /// The backend's [`MAX_CHUNK_HEADER`], if it sent a number.
    pub max_chunk: Option<usize>,
}

impl TunnelRequest {
    pub fn has_feature(&self, name: &str) -> bool {
        self.features.iter().any(|f| f.eq_ignore_ascii_case(name))
    }

    /// Whether the backend is rkite (its version, `rkite-<semver>`, as
    /// `build_request` writes it), which takes data chunks up to
    /// [`crate::proto::frame::MAX_PAYLOAD`] in one piece. Every other
    /// backend keeps getting bodies of at most
    /// [`crate::proto::tunnel::CHUNK_BODY`], the size pagekite.py and
    /// libpagekite have always been sent by rkite.
    /// The largest chunk payload the backend may be sent ([`chunk_limit`]).
    pub fn chunk_limit(&self) -> usize {
        chunk_limit(self.max_chunk)
    }

    pub fn takes_whole_segment_chunks(&self) -> bool {
        self.version
            .as_deref()
            .and_then(|v| v.strip_prefix("rkite-"))
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    }
}

/// The largest chunk payload to send a peer that announced `max_chunk`:
/// its number, up to what rkite itself takes (a bigger one gains nothing
/// and would only be trusted on the peer's word); without one, or with one
/// below it, [`CLASSIC_PAYLOAD`], which every PageKite peer takes.
pub fn chunk_limit(max_chunk: Option<usize>) -> usize {
    max_chunk.map_or(CLASSIC_PAYLOAD, |n| n.clamp(CLASSIC_PAYLOAD, MAX_PAYLOAD))
}

/// The number in the last [`MAX_CHUNK_HEADER`] among `headers` (either
/// prefix), if it is one.
pub fn announced_max_chunk<'a>(headers: impl Iterator<Item = (&'a str, &'a str)>) -> Option<usize> {
    headers
        .filter(|(name, _)| {
            Prefix::strip(name)
                .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case(MAX_CHUNK_HEADER))
        })
        .last()
        .and_then(|(_, value)| value.trim().parse().ok())
}

/// Parses the backend's request head (request line, headers, blank line). The
/// request line must be `CONNECT pagekite:... HTTP/1.x`.
pub fn parse_request(head: &[u8]) -> Result<TunnelRequest, HandshakeError> {
    let text = std::str::from_utf8(head).map_err(|_| HandshakeError::NotText)?;
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    if !is_tunnel_request_line(first) {
        return Err(HandshakeError::NotTunnelRequest);
    }
    let request = parse_kite_headers(header_lines(rest))?;
    if request.kites.is_empty() {
        return Err(HandshakeError::NoKites);
    }
    Ok(request)
}

/// `CONNECT pagekite:<anything> HTTP/1.x`, case-insensitive on the prefix
/// and on the version, as the sniffer that routes it here (and pagekite.py,
/// which upper-cases the version) reads it.
pub fn is_tunnel_request_line(line: &str) -> bool {
    let mut words = line.trim_end().split(' ');
    let method = words.next().unwrap_or("");
    let path = words.next().unwrap_or("");
    let version = words.next().unwrap_or("");
    method == "CONNECT"
        && path
            .get(..9)
            .is_some_and(|p| p.eq_ignore_ascii_case("pagekite:"))
        && version
            .get(.."HTTP/1.".len())
            .is_some_and(|v| v.eq_ignore_ascii_case("HTTP/1."))
}

/// Collects the `X-PageKite*` request headers (in a CONNECT head or a NOOP
/// chunk). Other headers are ignored.
pub fn parse_kite_headers<'a>(
    headers: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<TunnelRequest, HandshakeError> {
    let mut request = TunnelRequest::default();
    for (name, value) in headers {
        let Some((prefix, suffix)) = Prefix::strip(name) else {
            continue;
        };
        let is = |n: &str| suffix.eq_ignore_ascii_case(n);
        if suffix.is_empty() {
            if request.kites.len() >= MAX_KITES {
                return Err(HandshakeError::TooManyKites);
            }
            request.kites.push(KiteLine::parse(value)?);
            request.prefix = prefix;
        } else if is("-Features") {
            if request.features.len() < 32 {
                request.features.push(value.to_string());
            }
        } else if is("-Version") {
            request.version = Some(value.to_string());
        } else if is("-Replace") {
            request.replace = Some(value.to_string());
        } else if is(MAX_CHUNK_HEADER) {
            request.max_chunk = value.trim().parse().ok();
        }
    }
    Ok(request)
}

/// Builds the backend's tunnel request. `kites` are complete lines (the
/// caller signs them). rkite offers AddKites so the frontend can let it
/// answer challenges in band, and never offers ZChunks.
pub fn build_request(version: &str, replace: Option<&str>, kites: &[KiteLine]) -> String {
    let mut out = String::from("CONNECT PageKite:1 HTTP/1.0\r\n");
    out.push_str("X-PageKite-Features: AddKites\r\n");
    out.push_str(&format!("X-PageKite-Version: {version}\r\n"));
    out.push_str(&format!("X-PageKite{MAX_CHUNK_HEADER}: {MAX_PAYLOAD}\r\n"));
    if let Some(id) = replace {
        out.push_str(&format!("X-PageKite-Replace: {id}\r\n"));
    }
    for kite in kites {
        out.push_str(&format!("X-PageKite: {}\r\n", kite.value()));
    }
    out.push_str("\r\n");
    out
}

/// Header lines for an in-band (NOOP chunk) request: the re-signed kites.
pub fn inband_request_lines(version: &str, kites: &[KiteLine]) -> Vec<String> {
    let mut lines = vec![
        "NOOP: 1".to_string(),
        format!("X-PageKite-Version: {version}"),
    ];
    lines.extend(kites.iter().map(|k| format!("X-PageKite: {}", k.value())));
    lines
}

/// One answer of the frontend about one kite (§2.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KiteAnswer {
    /// `P:D:S:CHALLENGE`
    SignThis {
        what: String,
        challenge: String,
    },
    Ok {
        what: String,
    },
    SslOk {
        what: String,
    },
    Invalid {
        what: String,
        why: String,
    },
    Duplicate {
        what: String,
    },
}

impl KiteAnswer {
    /// The `PROTO:DOMAIN:SRAND` the answer is about.
    pub fn what(&self) -> &str {
        match self {
            KiteAnswer::SignThis { what, .. }
            | KiteAnswer::Ok { what }
            | KiteAnswer::SslOk { what }
            | KiteAnswer::Invalid { what, .. }
            | KiteAnswer::Duplicate { what } => what,
        }
    }

    fn push_lines(&self, prefix: Prefix, lines: &mut Vec<String>) {
        let p = prefix.as_str();
        match self {
            KiteAnswer::SignThis { what, challenge } => {
                lines.push(format!("{p}-SignThis: {what}:{challenge}"))
            }
            KiteAnswer::Ok { what } => lines.push(format!("{p}-OK: {what}")),
            KiteAnswer::SslOk { what } => lines.push(format!("{p}-SSL-OK: {what}")),
            KiteAnswer::Invalid { what, why } => {
                lines.push(format!("{p}-Invalid: {what}"));
                lines.push(format!("{p}-Invalid-Why: {what};{why}"));
            }
            KiteAnswer::Duplicate { what } => lines.push(format!("{p}-Duplicate: {what}")),
        }
    }
}

/// What the frontend tells every backend about itself.
#[derive(Clone, Debug, Default)]
pub struct FrontendInfo {
    pub protos: Vec<String>,
    pub ports: Vec<u16>,
    /// `--rawports` as written (`virtual` and/or numbers); empty = not sent.
    pub raw_ports: Vec<String>,
    /// `--motd`'s text (empty: none), sent in every reply's `Misc`.
    pub motd: String,
}

/// Builds the frontend's `200 OK` reply head to a tunnel request.
pub fn build_reply(
    prefix: Prefix,
    info: &FrontendInfo,
    answers: &[KiteAnswer],
    session_id: &str,
) -> String {
    let p = prefix.as_str();
    let mut lines = vec![
        "HTTP/1.1 200 OK".to_string(),
        "Content-Type: text/html; charset=utf-8".to_string(),
        "Pragma: no-cache".to_string(),
        "Expires: 0".to_string(),
        "Cache-Control: no-store".to_string(),
        "Connection: close".to_string(),
        "Transfer-Encoding: chunked".to_string(),
        format!("{p}-Features: AddKites"),
        format!("{p}{MAX_CHUNK_HEADER}: {MAX_PAYLOAD}"),
        format!("{p}-Protos: {}", info.protos.join(", ")),
        format!(
            "{p}-Ports: {}",
            info.ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ];
    if !info.raw_ports.is_empty() {
        lines.push(format!("{p}-Raw-Ports: {}", info.raw_ports.join(", ")));
    }
    for answer in answers {
        answer.push_lines(prefix, &mut lines);
    }
    lines.push(format!("{p}-SessionID: {session_id}"));
    lines.push(format!("{p}-Misc: {}", operators::misc_value(&info.motd)));
    let mut out = lines.join("\r\n");
    out.push_str("\r\n\r\n");
    out
}

/// pagekite.py's announcement of a tunnel's `--ratelimit_ips` limit, the
/// last line of its answers (after `SessionID` and `Misc`).
pub fn ips_per_sec_line(prefix: Prefix, limit: &operators::RateLimit) -> String {
    format!("{}-IPsPerSec: {limit}", prefix.as_str())
}

/// A reply head from [`build_reply`] with `line` added as its last header.
pub fn with_last_line(mut reply: String, line: &str) -> String {
    if reply.ends_with("\r\n\r\n") {
        reply.truncate(reply.len() - 2);
        reply.push_str(line);
        reply.push_str("\r\n\r\n");
    }
    reply
}

/// Header lines of the frontend's in-band answer (a NOOP chunk).
pub fn inband_reply_lines(prefix: Prefix, answers: &[KiteAnswer], session_id: &str) -> Vec<String> {
    inband_reply_lines_with(prefix, answers, session_id, "")
}

/// [`inband_reply_lines`] with the frontend's motd in `Misc` (pagekite.py
/// sends it with every round of answers).
pub fn inband_reply_lines_with(
    prefix: Prefix,
    answers: &[KiteAnswer],
    session_id: &str,
    motd: &str,
) -> Vec<String> {
    let p = prefix.as_str();
    let mut lines = vec!["NOOP: 1".to_string()];
    for answer in answers {
        answer.push_lines(prefix, &mut lines);
    }
    lines.push(format!("{p}-SessionID: {session_id}"));
    lines.push(format!("{p}-Misc: {}", operators::misc_value(motd)));
    lines
}

/// The frontend's reply, as the backend reads it (from the HTTP head or a
/// NOOP chunk; the status line is not checked, as in pagekite.py).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TunnelReply {
    pub features: Vec<String>,
    pub answers: Vec<KiteAnswer>,
    pub session_id: Option<String>,
    /// The frontend's message of the day (`Misc: motd=...`), if not empty.
    pub motd: Option<String>,
    /// `IPsPerSec`: the visitor limit the frontend applies to the tunnel.
    pub ips_per_sec: Option<String>,
}

impl TunnelReply {
    pub fn has_feature(&self, name: &str) -> bool {
        self.features.iter().any(|f| f.eq_ignore_ascii_case(name))
    }
}

/// Parses `X-PageKite-*` answer headers. Malformed answers are skipped: a
/// backend can't do anything better with them than ignore them.
pub fn parse_reply<'a>(headers: impl Iterator<Item = (&'a str, &'a str)>) -> TunnelReply {
    let mut reply = TunnelReply::default();
    let mut whys: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        let Some((_, suffix)) = Prefix::strip(name) else {
            continue;
        };
        let is = |n: &str| suffix.eq_ignore_ascii_case(n);
        let what = value.to_string();
        if is("-Features") {
            reply.features.push(what);
        } else if is("-SignThis") {
            if let Some((what, challenge)) = value.rsplit_once(':') {
                reply.answers.push(KiteAnswer::SignThis {
                    what: what.to_string(),
                    challenge: challenge.to_string(),
                });
            }
        } else if is("-OK") {
            reply.answers.push(KiteAnswer::Ok { what });
        } else if is("-SSL-OK") {
            reply.answers.push(KiteAnswer::SslOk { what });
        } else if is("-Invalid") {
            reply.answers.push(KiteAnswer::Invalid {
                what,
                why: String::new(),
            });
        } else if is("-Invalid-Why") {
            if let Some((what, why)) = value.split_once(';') {
                whys.push((what.to_string(), why.to_string()));
            }
        } else if is("-Duplicate") {
            reply.answers.push(KiteAnswer::Duplicate { what });
        } else if is("-SessionID") {
            reply.session_id = Some(what);
        } else if is("-IPsPerSec") {
            reply.ips_per_sec = Some(what);
        } else if is("-Misc") {
            if let Some(motd) = operators::motd_of_misc(value) {
                reply.motd = Some(motd);
            }
        }
    }
    for answer in &mut reply.answers {
        if let KiteAnswer::Invalid { what, why } = answer {
            if let Some((_, reason)) = whys.iter().find(|(w, _)| w == what) {
                *why = reason.clone();
            }
        }
    }
    reply
}

/// Splits an HTTP head into its first line and the header iterator.
pub fn split_head(head: &[u8]) -> Option<(&str, impl Iterator<Item = (&str, &str)>)> {
    let text = std::str::from_utf8(head).ok()?;
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    Some((first.trim_end(), header_lines(rest)))
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
