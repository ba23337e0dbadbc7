//! Outbound proxies as pagekite.py 1.5.2 configures them (`--proxy`,
//! `--socksify`, `--torify`, `--noproxy`; it hands them to SocksiPyChain's
//! `parseproxy` and `adddefaultproxy`): the typed setting, what a proxy is
//! asked to reach ([`Target`]), and the one handshake type the backend
//! drives ([`ProxyHandshake`], over the machines in `proxy_client`). Owns
//! parsing and the shared error types; sans-IO (it never resolves a name or
//! opens a socket: the caller connects to the proxy and feeds its bytes).
//!
//! What pagekite.py accepts for `--proxy` (SocksiPyChain's `PROXY_TYPES`)
//! and what becomes of it here:
//! - `http`, `httpc` and an empty scheme: HTTP CONNECT (default port 8080).
//!   pagekite.py's `http` speaks "transparent" proxy HTTP for a last hop
//!   whose first bytes look like a request, but a tunnel's first bytes are
//!   `CONNECT …` or a TLS hello, so it falls back to CONNECT; rkite always
//!   uses CONNECT.
//! - `socks`, `socks5`: SOCKS5 (1080); `tor`: SOCKS5 (9050).
//! - `socks4`, `socks4a`, `https`, `httpcs`, `ssl`, `ssl-anon`, `ssl-weak`,
//!   `none`, `default(s)`: refused as [`SpecError::Unsupported`].
//! - Several `--proxy`/`--socksify`/`--torify` options chain (each hop is
//!   reached through the previous ones); `--noproxy` clears the chain.
//!
//! Where rkite is stricter or better than pagekite.py: IPv6 literals in
//! brackets (`socks://[::1]:1080/`), percent-escapes in `user:pass`, a
//! password with `:` in it, and credentials whose proxy also gets the
//! frontend's name (pagekite.py quietly resolves names locally once a
//! password is given: a quirk of its argument shuffling, not a feature).
//! Credentials follow RFC 7617 and RFC 1929 byte for byte: Debian's
//! pagekite.py 1.5.2 (SocksiPyChain under Python 3) raises a str/bytes
//! TypeError before sending them, for HTTP and SOCKS5 alike.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

pub use super::proxy_client::{ChainHandshake, HttpConnect, ProxyHandshake, Socks5};

/// The longest user name or password: RFC 1929 sends each with a length
/// byte, and HTTP proxies need no more.
pub const MAX_CREDENTIAL: usize = 255;
/// The longest host name a proxy is asked for (SOCKS5 sends a length byte).
pub const MAX_NAME: usize = 255;

/// How to talk to a proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// `CONNECT host:port` (RFC 9110 §9.3.6), optional `Basic` auth.
    HttpConnect,
    /// RFC 1928, optional RFC 1929 user/password.
    Socks5,
}

/// A user name and password for a proxy. Debug and Display never show the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: String,
    password: String,
}

impl Credentials {
    /// Refuses an empty user name and parts over [`MAX_CREDENTIAL`] bytes.
    pub fn new(user: &str, password: &str) -> Result<Credentials, SpecError> {
        if user.is_empty() || user.len() > MAX_CREDENTIAL || password.len() > MAX_CREDENTIAL {
            return Err(SpecError::BadCredentials);
        }
        Ok(Credentials {
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({:?}, <password>)", self.user)
    }
}

/// One proxy hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySpec {
    pub kind: ProxyKind,
    /// A name or an IP literal (no brackets).
    pub host: String,
    pub port: u16,
    pub auth: Option<Credentials>,
    /// From `--torify`: frontend names go to the proxy unresolved, and
    /// frontends are not pinged (both would leak outside Tor), as
    /// pagekite.py does (`servers_new_only`, `servers_no_ping`).
    pub torify: bool,
}

impl ProxySpec {
    /// `--proxy=SCHEME://[user:pass@]host[:port][/]`, also pagekite.py's
    /// `scheme:host:port` and `scheme!host!port` spellings.
    #[inline(never)]
    pub fn parse_url(arg: &str) -> Result<ProxySpec, SpecError> {
        let arg = arg.trim();
        if arg.is_empty() {
            return Err(SpecError::Empty);
        }
        if arg.contains('!') && !arg.contains("://") {
            // SocksiPyChain's IPv6-friendly form: TYPE!HOST[!PORT]. (A URL
            // keeps its `!`s: they may be in a password.)
            let mut fields = arg.split('!');
            let kind = fields.next().unwrap_or("");
            let host = fields.next().unwrap_or("");
            let port = fields.next();
            if fields.next().is_some() {
                return Err(SpecError::Unsupported("extra !fields"));
            }
            let (kind, default_port) = scheme(kind)?;
            let host = host_name(host)?;
            let port = match port {
                Some(p) => port_number(p)?,
                None => default_port,
            };
            return Ok(ProxySpec::hop(kind, host, port, None));
        }
        let (scheme_name, rest) = match arg.split_once("://") {
            Some(split) => split,
            // pagekite.py turns `://` into `:`, so `socks5:host:1080` works.
            None => arg
                .split_once(':')
                .ok_or(SpecError::UnknownScheme(String::new()))?,
        };
        let (kind, default_port) = scheme(scheme_name)?;
        let authority = match rest.split_once('/') {
            Some((authority, "")) => authority,
            Some(_) => return Err(SpecError::TrailingPath),
            None => rest,
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let auth = match userinfo {
            Some(info) => {
                let (user, password) = info.split_once(':').unwrap_or((info, ""));
                Some(Credentials::new(
                    &percent_decode(user)?,
                    &percent_decode(password)?,
                )?)
            }
            None => None,
        };
        let (host, port) = split_host_port(hostport)?;
        let port = match port {
            Some(p) => port_number(p)?,
            None => default_port,
        };
        Ok(ProxySpec::hop(kind, host_name(host)?, port, auth))
    }

    /// `--socksify=host:port` (`torify` false) or `--torify=host:port`:
    /// SOCKS5 without credentials.
    pub fn parse_socks(arg: &str, torify: bool) -> Result<ProxySpec, SpecError> {
        let arg = arg.trim();
        if arg.is_empty() {
            return Err(SpecError::Empty);
        }
        let (host, port) = if arg.starts_with('[') {
            split_host_port(arg)?
        } else {
            // pagekite.py splits at the last colon, so `::1:9050` works too.
            let (host, port) = arg
                .rsplit_once(':')
                .ok_or(SpecError::BadPort(String::new()))?;
            (host, Some(port))
        };
        let port = port_number(port.ok_or(SpecError::BadPort(String::new()))?)?;
        let mut spec = ProxySpec::hop(ProxyKind::Socks5, host_name(host)?, port, None);
        spec.torify = torify;
        Ok(spec)
    }

    fn hop(kind: ProxyKind, host: String, port: u16, auth: Option<Credentials>) -> ProxySpec {
        ProxySpec {
            kind,
            host,
            port,
            auth,
            torify: false,
        }
    }

    /// Whether frontend names may be looked up locally before asking this
    /// proxy (never through Tor).
    pub fn resolve_locally(&self) -> bool {
        !self.torify
    }

    /// Whether frontends may be pinged directly to choose among them.
    pub fn pings_frontends(&self) -> bool {
        !self.torify
    }
}

impl fmt::Display for ProxySpec {
    /// `socks5://user@host:port`: for logs and the status file, without
    /// the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match (self.kind, self.torify) {
            (ProxyKind::HttpConnect, _) => "http",
            (ProxyKind::Socks5, false) => "socks5",
            (ProxyKind::Socks5, true) => "tor",
        };
        write!(f, "{scheme}://")?;
        if let Some(auth) = &self.auth {
            write!(f, "{}@", auth.user.escape_debug())?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One proxy option as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxySetting {
    /// `--noproxy`: forget every hop given so far.
    NoProxy,
    /// Add a hop to the chain.
    Hop(ProxySpec),
}

/// Parses `--proxy`, `--socksify`, `--torify` or `--noproxy` (without the
/// dashes).
#[inline(never)]
pub fn parse_flag(flag: &str, value: &str) -> Result<ProxySetting, SpecError> {
    match flag {
        "noproxy" => Ok(ProxySetting::NoProxy),
        "proxy" => ProxySpec::parse_url(value).map(ProxySetting::Hop),
        "socksify" => ProxySpec::parse_socks(value, false).map(ProxySetting::Hop),
        "torify" => ProxySpec::parse_socks(value, true).map(ProxySetting::Hop),
        _ => Err(SpecError::Unsupported("not a proxy option")),
    }
}

/// Applies options in order, as pagekite.py does: hops chain, `--noproxy`
/// starts over.
pub fn apply(chain: &mut Vec<ProxySpec>, setting: ProxySetting) {
    match setting {
        ProxySetting::NoProxy => chain.clear(),
        ProxySetting::Hop(spec) => chain.push(spec),
    }
}

/// Whether frontend names may be looked up locally with this chain (not
/// when any hop is `--torify`).
pub fn resolve_locally(chain: &[ProxySpec]) -> bool {
    chain.iter().all(ProxySpec::resolve_locally)
}

/// Whether frontends may be pinged directly with this chain.
pub fn pings_frontends(chain: &[ProxySpec]) -> bool {
    chain.iter().all(ProxySpec::pings_frontends)
}

/// The kind and default port of a scheme (SocksiPyChain's `PROXY_TYPES`
/// and `PROXY_DEFAULTS`).
fn scheme(name: &str) -> Result<(ProxyKind, u16), SpecError> {
    match name.to_ascii_lowercase().as_str() {
        "" | "http" | "httpc" => Ok((ProxyKind::HttpConnect, 8080)),
        "socks" | "socks5" => Ok((ProxyKind::Socks5, 1080)),
        "tor" => Ok((ProxyKind::Socks5, 9050)),
        "socks4" | "socks4a" => Err(SpecError::Unsupported("SOCKS4 proxies")),
        "https" | "httpcs" | "ssl" | "ssl-anon" | "ssl-weak" => {
            Err(SpecError::Unsupported("TLS to the proxy"))
        }
        "none" | "default" | "defaults" => Err(SpecError::Unsupported("system default proxies")),
        _ => Err(SpecError::UnknownScheme(escape(name.as_bytes()))),
    }
}

/// `host[:port]` or `[v6][:port]`.
fn split_host_port(text: &str) -> Result<(&str, Option<&str>), SpecError> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| SpecError::BadHost(escape(text.as_bytes())))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(SpecError::BadHost(escape(text.as_bytes())));
        }
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(SpecError::BadPort(escape(after.as_bytes()))),
            },
        };
    }
    Ok(match text.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    })
}

fn port_number(text: &str) -> Result<u16, SpecError> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(SpecError::BadPort(escape(text.as_bytes()))),
    }
}

/// An IP literal or a DNS name of letters, digits, `-`, `_` and `.`.
fn host_name(host: &str) -> Result<String, SpecError> {
    if host.parse::<IpAddr>().is_ok() || valid_name(host) {
        Ok(host.to_string())
    } else {
        Err(SpecError::BadHost(escape(host.as_bytes())))
    }
}

fn valid_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= MAX_NAME
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn percent_decode(text: &str) -> Result<String, SpecError> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(|h| char::from(h).to_digit(16));
            let lo = bytes.next().and_then(|l| char::from(l).to_digit(16));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                _ => return Err(SpecError::BadEscape),
            }
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).map_err(|_| SpecError::BadEscape)
}

/// Up to 80 bytes of what a peer or a user wrote, safe to log.
pub(crate) fn escape(bytes: &[u8]) -> String {
    const MAX: usize = 80;
    let shown = bytes.get(..MAX).unwrap_or(bytes);
    let mut out = shown.escape_ascii().to_string();
    if bytes.len() > MAX {
        out.push('…');
    }
    out
}

/// Why a proxy option is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    Empty,
    UnknownScheme(String),
    /// A kind pagekite.py knows and rkite does not do.
    Unsupported(&'static str),
    BadHost(String),
    BadPort(String),
    /// Anything after the `/` that ends the authority.
    TrailingPath,
    /// An empty user name, or a part over 255 bytes.
    BadCredentials,
    /// A `%` not followed by two hex digits, or not UTF-8 once decoded.
    BadEscape,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::Empty => f.write_str("no proxy given"),
            SpecError::UnknownScheme(s) => write!(
                f,
                "unknown proxy scheme \"{s}\" (use http://, socks:// or socks5://)"
            ),
            SpecError::Unsupported(what) => write!(f, "{what} are not supported"),
            SpecError::BadHost(h) => write!(f, "bad proxy host \"{h}\""),
            SpecError::BadPort(p) => write!(f, "bad proxy port \"{p}\""),
            SpecError::TrailingPath => f.write_str("a proxy URL has no path"),
            SpecError::BadCredentials => {
                f.write_str("proxy user name empty, or user name or password over 255 bytes")
            }
            SpecError::BadEscape => f.write_str("bad %-escape in proxy credentials"),
        }
    }
}

impl std::error::Error for SpecError {}

/// What the proxy is asked to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An address resolved locally.
    Addr(SocketAddr),
    /// A name for the proxy to resolve (always through Tor).
    Name { host: String, port: u16 },
}

impl Target {
    /// A name, or an address when `host` is an IP literal. Refuses what is
    /// neither (so nothing odd reaches a request line).
    pub fn new(host: &str, port: u16) -> Result<Target, SpecError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Target::Addr(SocketAddr::new(ip, port)));
        }
        if !valid_name(host) {
            return Err(SpecError::BadHost(escape(host.as_bytes())));
        }
        Ok(Target::Name {
            host: host.to_string(),
            port,
        })
    }

    /// `host:port`, an IPv6 literal bracketed: the CONNECT authority.
    pub fn authority(&self) -> String {
        match self {
            Target::Addr(addr) => addr.to_string(),
            Target::Name { host, port } => format!("{host}:{port}"),
        }
    }

    /// The host alone, an IPv6 literal bracketed: the CONNECT `Host`
    /// header, as pagekite.py's SocksiPyChain sends it.
    pub fn host(&self) -> String {
        match self {
            Target::Addr(std::net::SocketAddr::V6(a)) => format!("[{}]", a.ip()),
            Target::Addr(a) => a.ip().to_string(),
            Target::Name { host, .. } => host.clone(),
        }
    }
}

/// How far a handshake got with the input it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The proxy has more to say (or waits for what `poll_transmit` has).
    NeedMore,
    /// The tunnel is through. `input[leftover_from..]` of the last call
    /// already belongs to the tunnel (the far end spoke early).
    Done { leftover_from: usize },
}

/// The reply codes of RFC 1928 §6 other than success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Socks5Reply {
    GeneralFailure,
    NotAllowed,
    NetworkUnreachable,
    HostUnreachable,
    ConnectionRefused,
    TtlExpired,
    CommandNotSupported,
    AddressTypeNotSupported,
    Unassigned(u8),
}

impl Socks5Reply {
    /// The reply for a non-zero `REP` byte.
    pub fn from_code(code: u8) -> Socks5Reply {
        match code {
            1 => Socks5Reply::GeneralFailure,
            2 => Socks5Reply::NotAllowed,
            3 => Socks5Reply::NetworkUnreachable,
            4 => Socks5Reply::HostUnreachable,
            5 => Socks5Reply::ConnectionRefused,
            6 => Socks5Reply::TtlExpired,
            7 => Socks5Reply::CommandNotSupported,
            8 => Socks5Reply::AddressTypeNotSupported,
            other => Socks5Reply::Unassigned(other),
        }
    }
}

impl fmt::Display for Socks5Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Socks5Reply::GeneralFailure => "general SOCKS server failure",
            Socks5Reply::NotAllowed => "connection not allowed by ruleset",
            Socks5Reply::NetworkUnreachable => "network unreachable",
            Socks5Reply::HostUnreachable => "host unreachable",
            Socks5Reply::ConnectionRefused => "connection refused",
            Socks5Reply::TtlExpired => "TTL expired",
            Socks5Reply::CommandNotSupported => "command not supported",
            Socks5Reply::AddressTypeNotSupported => "address type not supported",
            Socks5Reply::Unassigned(code) => return write!(f, "unassigned reply code {code}"),
        })
    }
}

/// Why a proxy handshake failed. Text from the proxy is escaped and
/// bounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyError {
    /// The HTTP proxy's reply head exceeded `proxy_client::MAX_HEAD`.
    HeadTooLarge,
    /// The HTTP proxy's first line is not `HTTP/1.x NNN …`.
    NotHttp(String),
    /// The HTTP proxy answered CONNECT with a non-2xx status.
    Refused { status: u16, reason: String },
    /// The first byte of a SOCKS reply is not 5.
    NotSocks5(u8),
    /// The SOCKS server accepts none of the methods offered (0xFF).
    NoAcceptableMethod,
    /// The SOCKS server chose a method that was not offered.
    UnexpectedMethod(u8),
    /// The RFC 1929 reply's version byte is not 1.
    BadAuthVersion(u8),
    /// The SOCKS server refused the user name and password (status byte).
    AuthRejected(u8),
    /// The SOCKS server could not connect to the target.
    ConnectFailed(Socks5Reply),
    /// The SOCKS reply's bound address has an unknown type.
    BadAddressType(u8),
}

impl ProxyError {
    /// A wrong or missing password: retrying won't fix it, so it is worth
    /// an error-level line rather than a warning.
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            // Debian's tinyproxy (1.11) answers a wrong Basic password with
            // 401, not 407.
            ProxyError::Refused {
                status: 401 | 407,
                ..
            } | ProxyError::AuthRejected(_)
                | ProxyError::NoAcceptableMethod
        )
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::HeadTooLarge => f.write_str("the HTTP proxy's reply head is too large"),
            ProxyError::NotHttp(line) => {
                write!(f, "the HTTP proxy's reply is not HTTP: \"{line}\"")
            }
            ProxyError::Refused {
                status: status @ (401 | 407),
                reason,
            } => write!(
                f,
                "the HTTP proxy wants (other) credentials: {status} \"{reason}\""
            ),
            ProxyError::Refused { status, reason } => {
                write!(f, "the HTTP proxy refused CONNECT: {status} \"{reason}\"")
            }
            ProxyError::NotSocks5(v) => write!(f, "the proxy does not speak SOCKS5 (version {v})"),
            ProxyError::NoAcceptableMethod => f.write_str(
                "the SOCKS5 proxy accepts none of our authentication methods (credentials needed?)",
            ),
            ProxyError::UnexpectedMethod(m) => {
                write!(
                    f,
                    "the SOCKS5 proxy chose method {m}, which was not offered"
                )
            }
            ProxyError::BadAuthVersion(v) => {
                write!(f, "the SOCKS5 proxy's authentication reply has version {v}")
            }
            ProxyError::AuthRejected(status) => write!(
                f,
                "the SOCKS5 proxy rejected the user name or password (status {status})"
            ),
            ProxyError::ConnectFailed(reply) => write!(f, "the SOCKS5 proxy says: {reply}"),
            ProxyError::BadAddressType(t) => {
                write!(f, "the SOCKS5 proxy's reply has address type {t}")
            }
        }
    }
}

impl std::error::Error for ProxyError {}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
