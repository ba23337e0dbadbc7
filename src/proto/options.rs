//! Per-kite options (protocol doc §4.1, §4.5): pagekite.py's `+key[=value]`
//! words on a `--service_on` line and `--be_config=HOST/PORT:KEY:VALUE`, and
//! the checks they drive when the frontend opens a stream to the backend:
//! the visitor's address (`+ip/`), HTTP Basic credentials (`+password/`),
//! the dangerous-URL filter (off with `+insecure`), and the PROXY protocol
//! header put in front of the stream (`+proxyproto`). This module parses and
//! judges; it never reads sockets or decides how a refusal is worded (the
//! backend sends the 403/401/500 page), and it does not rewrite headers
//! (`http.rs` does, told by `rewrite_host`/`raw_headers`).
//!
//! Where pagekite.py is lax, rkite is strict, so a typo can't silently
//! weaken a kite: unknown keys, unreadable values, a `+password/` without a
//! password and an `+ip/` that is not an address are errors. pagekite.py
//! treats any non-empty value as true (`+insecure=false` turns insecure
//! *on*); rkite reads flag values as booleans.

use std::fmt;
use std::net::IpAddr;

use super::acl::Cidr;
use super::ct::ct_eq;

/// An option's name, with what the name itself carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// `ip/ADDR`: only these visitors may use the kite.
    Ip(Cidr),
    /// `password/USER` (or its alias `user/USER`).
    Password(String),
    RewriteHost,
    RawHeaders,
    ProxyProto,
    Insecure,
    /// `+indexes[=on|all|off]`: the built-in file server lists directories.
    Indexes,
}

/// An option's value as written: `+key` is true, `+nokey` false, and
/// `+key=TEXT` or a `--be_config` VALUE is text, read per key by
/// [`KiteOptions::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Flag(bool),
    Text(String),
}

/// Why an option was refused. Each names the text at fault, never a
/// password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionError {
    /// Does not start with `+`.
    NotAnOption(String),
    UnknownKey(String),
    /// The value does not suit the key (`+insecure=maybe`, `+noip/...`).
    BadValue {
        key: String,
        value: String,
    },
    /// `ip/` followed by something that is not an address or block.
    BadAddress(String),
    /// Empty, or holds `:` or control characters.
    BadUser(String),
    /// `password/USER` without a (non-empty) password.
    NoPassword(String),
    /// `--be_config` that is not `HOST[/PORT]:KEY:VALUE`.
    BadConfig(String),
    BadPort(String),
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionError::NotAnOption(s) => write!(f, "kite option {s:?} does not start with +"),
            OptionError::UnknownKey(s) => write!(f, "unknown kite option {s:?}"),
            OptionError::BadValue { key, value } => {
                write!(f, "kite option {key:?} can't be {value:?}")
            }
            OptionError::BadAddress(s) => {
                write!(
                    f,
                    "kite option ip/{s}: not an address, a.b.c prefix or CIDR block"
                )
            }
            OptionError::BadUser(s) => write!(f, "kite option password/{s}: bad user name"),
            OptionError::NoPassword(s) => write!(f, "kite option password/{s} has no password"),
            OptionError::BadConfig(s) => {
                write!(f, "backend config {s:?} is not HOST[/PORT]:KEY:VALUE")
            }
            OptionError::BadPort(s) => write!(f, "backend config port {s:?} is not 1-65535"),
        }
    }
}

impl std::error::Error for OptionError {}

/// `+rewritehost`: what `Host:` the origin gets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RewriteHost {
    /// The visitor's `Host:` passes unchanged.
    #[default]
    Off,
    /// `+rewritehost`: the local server's host name.
    Local,
    /// `+rewritehost=NAME`.
    Name(String),
}

/// `+proxyproto`: which PROXY protocol header precedes the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProxyProto {
    #[default]
    Off,
    V1,
    V2,
}

/// The outcome of the `+password/` check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthCheck {
    /// No passwords configured, or the credentials match.
    Ok,
    /// No `Authorization: Basic` header.
    Missing,
    /// Basic credentials that are malformed or match no user.
    Wrong,
}

/// One kite's options. `Debug` shows user names but never passwords.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KiteOptions {
    /// `+ip/` blocks; empty means every visitor may connect.
    pub ip_allow: Vec<Cidr>,
    /// (user, password) pairs from `+password/`.
    passwords: Vec<(String, String)>,
    pub rewrite_host: RewriteHost,
    pub raw_headers: bool,
    pub proxy_proto: ProxyProto,
    pub insecure: bool,
    /// `+indexes`: `None` leaves it to `--webindexes`.
    pub indexes: Option<super::webfiles_page::Indexes>,
}

impl fmt::Debug for KiteOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KiteOptions")
            .field("ip_allow", &self.ip_allow)
            .field("users", &self.users().collect::<Vec<_>>())
            .field("rewrite_host", &self.rewrite_host)
            .field("raw_headers", &self.raw_headers)
            .field("proxy_proto", &self.proxy_proto)
            .field("insecure", &self.insecure)
            .field("indexes", &self.indexes)
            .finish()
    }
}

/// Parses `+key`, `+nokey` or `+key=value` (pagekite.py tries `=` first,
/// then the `no` prefix). Key names are case-insensitive; user names are not.
pub fn parse_short(opt: &str) -> Result<(Key, Value), OptionError> {
    let Some(body) = opt.strip_prefix('+') else {
        return Err(OptionError::NotAnOption(opt.to_owned()));
    };
    if let Some((name, value)) = body.split_once('=') {
        return Ok((key(name)?, Value::Text(value.to_owned())));
    }
    match key(body) {
        Ok(k) => Ok((k, Value::Flag(true))),
        Err(e) => match body.get(..2).zip(body.get(2..)) {
            Some((no, rest)) if no.eq_ignore_ascii_case("no") && !rest.is_empty() => {
                Ok((key(rest)?, Value::Flag(false)))
            }
            _ => Err(e),
        },
    }
}

/// Parses `--be_config`'s `HOST[/PORT]:KEY:VALUE`: (host in lower case,
/// port, key, value). Like pagekite.py the value is everything after the
/// second `:` (so `password/USER:PW` may have `:` in PW), except that an
/// `ip/` key takes everything up to the *last* `:`, so IPv6 works:
/// `foo.test/80:ip/2001:db8::/32:True`.
pub fn parse_be_config(spec: &str) -> Result<(String, Option<u16>, Key, Value), OptionError> {
    let bad = || OptionError::BadConfig(spec.to_owned());
    let (host_port, rest) = spec.split_once(':').ok_or_else(bad)?;
    let (host, port) = match host_port.split_once('/') {
        Some((host, port)) => {
            let bad_port = || OptionError::BadPort(port.to_owned());
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad_port());
            }
            match port.parse::<u16>() {
                Ok(p) if p != 0 => (host, Some(p)),
                _ => return Err(bad_port()),
            }
        }
        None => (host_port, None),
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        // Only the host part: the rest may hold a password.
        return Err(OptionError::BadConfig(host_port.to_owned()));
    }
    let is_ip = rest.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("ip/"));
    let split = if is_ip {
        rest.rsplit_once(':')
    } else {
        rest.split_once(':')
    };
    let (name, value) = split.ok_or_else(bad)?;
    Ok((
        host.to_ascii_lowercase(),
        port,
        key(name)?,
        Value::Text(value.to_owned()),
    ))
}

/// Resolves an option name.
fn key(name: &str) -> Result<Key, OptionError> {
    if let Some((kind, arg)) = name.split_once('/') {
        if kind.eq_ignore_ascii_case("ip") {
            return Ok(Key::Ip(ip_block(arg)?));
        }
        if kind.eq_ignore_ascii_case("password") || kind.eq_ignore_ascii_case("user") {
            if arg.is_empty() || arg.chars().any(|c| c == ':' || c.is_control()) {
                return Err(OptionError::BadUser(arg.to_owned()));
            }
            return Ok(Key::Password(arg.to_owned()));
        }
    }
    let is = |k: &str| name.eq_ignore_ascii_case(k);
    if is("rewritehost") {
        Ok(Key::RewriteHost)
    } else if is("rawheaders") {
        Ok(Key::RawHeaders)
    } else if is("proxyproto") {
        Ok(Key::ProxyProto)
    } else if is("insecure") {
        Ok(Key::Insecure)
    } else if is("indexes") {
        Ok(Key::Indexes)
    } else {
        Err(OptionError::UnknownKey(name.to_owned()))
    }
}

/// `ip/`'s argument: a full address, pagekite.py's three-octet prefix
/// (`1.2.3` allows `1.2.3.*`, as its key lookup drops the last octet of the
/// visitor's address), or (rkite) a CIDR block, IPv6 included.
fn ip_block(text: &str) -> Result<Cidr, OptionError> {
    let bad = || OptionError::BadAddress(text.to_owned());
    if text.contains('/') {
        return Cidr::parse(text).ok_or_else(bad);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Cidr::host(ip));
    }
    if text.matches('.').count() == 2 {
        if let Ok(net) = format!("{text}.0").parse::<IpAddr>() {
            return Cidr::new(net, 24).ok_or_else(bad);
        }
    }
    Err(bad())
}

/// Reads a flag's text: pagekite.py's `True`/`False`/`None` and the usual
/// spellings, in any case.
fn boolean(text: &str) -> Option<bool> {
    let is = |words: &[&str]| words.iter().any(|w| text.eq_ignore_ascii_case(w));
    if is(&["true", "yes", "on", "1"]) {
        Some(true)
    } else if is(&["false", "no", "off", "0", "none"]) {
        Some(false)
    } else {
        None
    }
}

impl KiteOptions {
    /// Parses and applies one `+key[=value]`.
    pub fn apply_short(&mut self, opt: &str) -> Result<(), OptionError> {
        let (key, value) = parse_short(opt)?;
        self.apply(key, value)
    }

    /// Sets one option; later settings of the same key win, as in
    /// pagekite.py's per-host dict (`+ip/` blocks accumulate).
    pub fn apply(&mut self, key: Key, value: Value) -> Result<(), OptionError> {
        let flag = match &value {
            Value::Flag(b) => Some(*b),
            Value::Text(t) => boolean(t),
        };
        let shown = match &value {
            Value::Flag(b) => b.to_string(),
            Value::Text(t) => t.clone(),
        };
        let bad = |name: String| {
            Err(OptionError::BadValue {
                key: name,
                value: shown,
            })
        };
        match key {
            Key::Ip(block) => match flag {
                // pagekite.py allows a listed address whatever its value,
                // so a false one would mean the opposite of what it says.
                Some(true) => {
                    if !self.ip_allow.contains(&block) {
                        self.ip_allow.push(block);
                    }
                }
                _ => return bad(format!("ip/{block}")),
            },
            Key::Password(user) => match value {
                Value::Text(pw) if !pw.is_empty() => {
                    self.passwords.retain(|(u, _)| *u != user);
                    self.passwords.push((user, pw));
                }
                _ => return Err(OptionError::NoPassword(user)),
            },
            Key::RewriteHost => {
                self.rewrite_host = match (flag, value) {
                    (Some(true), _) => RewriteHost::Local,
                    (Some(false), _) => RewriteHost::Off,
                    (None, Value::Text(name))
                        if !name.is_empty()
                            && !name.chars().any(|c| c.is_whitespace() || c.is_control()) =>
                    {
                        RewriteHost::Name(name)
                    }
                    _ => return bad("rewritehost".into()),
                }
            }
            Key::RawHeaders => match flag {
                Some(b) => self.raw_headers = b,
                None => return bad("rawheaders".into()),
            },
            Key::Insecure => match flag {
                Some(b) => self.insecure = b,
                None => return bad("insecure".into()),
            },
            Key::Indexes => {
                use super::webfiles_page::Indexes;
                self.indexes = Some(match (&value, flag) {
                    (Value::Text(t), _) if t.eq_ignore_ascii_case("all") => Indexes::All,
                    (_, Some(true)) => Indexes::On,
                    (_, Some(false)) => Indexes::Off,
                    _ => return bad("indexes".into()),
                })
            }
            Key::ProxyProto => {
                self.proxy_proto = match (&value, flag) {
                    (Value::Text(t), _) if t == "2" => ProxyProto::V2,
                    (_, Some(true)) => ProxyProto::V1,
                    (_, Some(false)) => ProxyProto::Off,
                    _ => return bad("proxyproto".into()),
                }
            }
        }
        Ok(())
    }

    /// The users of `+password/` options.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.passwords.iter().map(|(u, _)| u.as_str())
    }

    /// Whether `+password/` guards this kite.
    pub fn has_passwords(&self) -> bool {
        !self.passwords.is_empty()
    }

    /// Whether the dangerous-URL filter applies to this kite's requests.
    /// pagekite.py skips it for "trusted" visitors: with `--insecure` or
    /// `+insecure`, and for kites whose visitors passed an `+ip/` or
    /// `+password/` check (every admitted visitor of such a kite did).
    pub fn filters_dangerous(&self, global_insecure: bool) -> bool {
        !global_insecure && !self.insecure && self.ip_allow.is_empty() && self.passwords.is_empty()
    }

    /// The `Host:` for `+rewritehost`, given the local server's host name.
    pub fn host_header(&self, local_host: &str) -> Option<String> {
        match &self.rewrite_host {
            RewriteHost::Off => None,
            RewriteHost::Local => Some(local_host.to_owned()),
            RewriteHost::Name(name) => Some(name.clone()),
        }
    }

    /// The `+ip/` check on the `RIP` the frontend sent: allowed when there
    /// are no `+ip/` options or one covers it. `::ffff:a.b.c.d` counts as
    /// `a.b.c.d`; text that is not an address is refused.
    pub fn ip_allowed(&self, rip: &str) -> bool {
        if self.ip_allow.is_empty() {
            return true;
        }
        let ip = match rip.get(..7).zip(rip.get(7..)) {
            Some((prefix, v4)) if prefix.eq_ignore_ascii_case("::ffff:") && !v4.contains(':') => v4,
            _ => rip,
        };
        match ip.parse::<IpAddr>() {
            Ok(ip) => self.ip_allow.iter().any(|block| block.contains(ip)),
            Err(_) => false,
        }
    }

    /// The `+password/` check on a request head (request line, headers,
    /// blank line). pagekite.py reads the first `Authorization:` header;
    /// `Basic` credentials are `user:password` in base64 (RFC 7617). Every
    /// configured pair is compared, in time independent of where the
    /// credentials differ. (pagekite.py 1.5 on Python ≥ 3.9 fails this check
    /// for everyone: it calls the removed `base64.decodestring`.)
    pub fn check_basic_auth(&self, request_head: &[u8]) -> AuthCheck {
        if self.passwords.is_empty() {
            return AuthCheck::Ok;
        }
        let Some(value) = header(request_head, b"authorization") else {
            return AuthCheck::Missing;
        };
        let mut words = value
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        let (Some(scheme), Some(token), None) = (words.next(), words.next(), words.next()) else {
            return AuthCheck::Wrong;
        };
        if !scheme.eq_ignore_ascii_case(b"basic") {
            return AuthCheck::Missing;
        }
        let Some(decoded) = base64_decode(token) else {
            return AuthCheck::Wrong;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return AuthCheck::Wrong;
        };
        let user = decoded.get(..colon).unwrap_or_default();
        let pw = decoded.get(colon + 1..).unwrap_or_default();
        let mut ok = false;
        for (u, p) in &self.passwords {
            // `&`, not `&&`: both comparisons always run.
            ok |= ct_eq(u.as_bytes(), user) & ct_eq(p.as_bytes(), pw);
        }
        if ok { AuthCheck::Ok } else { AuthCheck::Wrong }
    }

    /// The PROXY protocol header for this kite, if it wants one. A `RIP`
    /// that is not an address gets v1's `UNKNOWN` or v2's `AF_UNSPEC`, which
    /// tell the origin to use the connection's own addresses.
    pub fn proxy_header(&self, rip: &str, rport: u16, port: u16) -> Option<Vec<u8>> {
        match self.proxy_proto {
            ProxyProto::Off => None,
            ProxyProto::V1 => Some(proxy_v1(rip, rport, port)),
            ProxyProto::V2 => Some(match rip.parse::<IpAddr>() {
                Ok(ip) => proxy_v2(ip, rport, port),
                Err(_) => {
                    let mut out = V2_SIGNATURE.to_vec();
                    out.extend_from_slice(&[0x21, 0x00, 0, 0]);
                    out
                }
            }),
        }
    }
}

/// The trimmed value of the first header called `name` (lower case) in a
/// request head; the request line is skipped and the head ends at its blank
/// line. Like pagekite.py, a name with spaces before its colon is not it.
fn header<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    super::sniff::headers(head)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// Standard-alphabet base64 with `=` padding (RFC 4648 §4); bits left over
/// after the last byte are ignored, as Python's decoder does.
pub(super) fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    if text.is_empty() || text.len() % 4 != 0 {
        return None;
    }
    let pad = text.iter().rev().take_while(|&&b| b == b'=').count();
    if pad > 2 {
        return None;
    }
    let body = text.get(..text.len() - pad)?;
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &b in body {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The methods pagekite.py's security filter looks at.
const FILTERED_METHODS: [&[u8]; 5] = [b"get", b"post", b"put", b"patch", b"delete"];

/// pagekite.py's `HttpSecurityFilter.HTTP_DANGER`, by hand: true if any
/// `\n`-separated line of `text` (normally one request line) is a
/// GET/POST/PUT/PATCH/DELETE, in any case, of a path that starts with
/// `/`s and then `xampp/`, `security/`, `licenses/`, `webalizer/`,
/// `server-status`, `server-info` or `adm`; or that has, right after any
/// `/`, `wp-admin/` (unless `admin-ajax` or `css/` follows), `wp-config.php`,
/// `system32/`, `..`, `.htaccess`, `.htpass`, `[php|sql]my[sql]adm`,
/// `[php|sql]my[sql]manager`, `adm*.php`, `install*.php` or `setup.php`
/// (letters in any case), ending with ` HTTP/d.d` and whitespace. As in
/// pagekite.py, `/wp-admin/admin-ajax.php` is blocked all the same (by
/// `adm*.php`); `/wp-admin/admin-ajax?...` is not.
pub fn security_blocks(text: &[u8]) -> bool {
    text.split(|&b| b == b'\n').any(dangerous_line)
}

/// Python's `\s` on pagekite.py's Latin-1 text, less `\n`, which ends lines.
fn is_py_space(b: u8) -> bool {
    matches!(
        b,
        b'\t' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f | b' ' | 0x85 | 0xa0
    )
}

fn starts_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.get(..needle.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(needle))
}

/// The index of the space before ` HTTP/d+.d+` at the end of `line` (before
/// trailing whitespace). The version's digits end the line, so there is at
/// most one such place.
fn version_start(line: &[u8]) -> Option<usize> {
    let end = line.iter().rposition(|&b| !is_py_space(b))? + 1;
    let digits_before = |end: usize| {
        let n = line
            .get(..end)?
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_digit())
            .count();
        (n > 0).then(|| end - n)
    };
    let minor = digits_before(end)?;
    let dot = minor
        .checked_sub(1)
        .filter(|&d| line.get(d) == Some(&b'.'))?;
    let major = digits_before(dot)?;
    let http = major.checked_sub(5)?;
    let space = http.checked_sub(1)?;
    (starts_ci(line.get(http..)?, b"http/") && line.get(space) == Some(&b' ')).then_some(space)
}

fn dangerous_line(line: &[u8]) -> bool {
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    let method = line.get(..sp).unwrap_or_default();
    if !FILTERED_METHODS
        .iter()
        .any(|m| method.eq_ignore_ascii_case(m))
    {
        return false;
    }
    let start = sp + 1;
    // The dangerous part must begin at `start` and end by `end`.
    let Some(end) = version_start(line).filter(|&e| e > start) else {
        return false;
    };
    let Some(path) = line.get(start..end) else {
        return false;
    };
    // `/+(xampp/|…|adm)` right at the start of the path.
    let after_slashes = path.get(path.iter().take_while(|&&b| b == b'/').count()..);
    if path.first() == Some(&b'/') {
        let at_root: [&[u8]; 7] = [
            b"xampp/",
            b"security/",
            b"licenses/",
            b"webalizer/",
            b"server-status",
            b"server-info",
            b"adm",
        ];
        let rest = after_slashes.unwrap_or_default();
        if at_root.iter().any(|k| starts_ci(rest, k)) {
            return true;
        }
    }
    // `adm*.php` and `install*.php` need a `.php` ending by `end`: the
    // last one is the best chance.
    let last_php = (0..path.len().saturating_sub(3))
        .rev()
        .find(|&k| starts_ci(path.get(k..).unwrap_or_default(), b".php"));
    // `[^\n]*/` then one of the alternatives, right after some `/`.
    (1..=path.len()).any(|j| {
        if path.get(j - 1) != Some(&b'/') {
            return false;
        }
        let here = path.get(j..).unwrap_or_default();
        // The lookahead after `wp-admin/` may see past the path.
        let beyond = line.get(start + j + 9..).unwrap_or_default();
        let fixed: [&[u8]; 6] = [
            b"wp-config.php",
            b"system32/",
            b"..",
            b".htaccess",
            b".htpass",
            b"setup.php",
        ];
        (starts_ci(here, b"wp-admin/")
            && !starts_ci(beyond, b"admin-ajax")
            && !starts_ci(beyond, b"css/"))
            || fixed.iter().any(|k| starts_ci(here, k))
            || my_admin(here)
            || (starts_ci(here, b"adm") && last_php.is_some_and(|k| k >= j + 3))
            || (starts_ci(here, b"install") && last_php.is_some_and(|k| k >= j + 7))
    })
}

/// `(?:php|sql)?my(?:sql)?(?:adm|manager)` at the start of `s`.
fn my_admin(s: &[u8]) -> bool {
    let prefixes: [&[u8]; 3] = [b"php", b"sql", b""];
    prefixes.iter().any(|p| {
        let Some(s) = s.get(p.len()..).filter(|_| starts_ci(s, p)) else {
            return false;
        };
        let Some(s) = s.get(2..).filter(|_| starts_ci(s, b"my")) else {
            return false;
        };
        let tail = |s: &[u8]| starts_ci(s, b"adm") || starts_ci(s, b"manager");
        tail(s) || (starts_ci(s, b"sql") && tail(s.get(3..).unwrap_or_default()))
    })
}

/// The 12 bytes that open a PROXY protocol v2 header.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// `PROXY TCP4|TCP6 <RIP> <dst> <RPort> <Port>\r\n`, as pagekite.py's
/// HaproxyProtocolFilter writes it: the visitor's address and port, a
/// wildcard destination and the public port. pagekite.py writes `0.0.0.0`
/// as the destination of TCP6 lines too, which the PROXY spec (§2.1) forbids
/// (both addresses must be IPv6) and HAProxy rejects; rkite writes `::`. An
/// IPv4-mapped RIP is sent as TCP4, as pagekite.py does; a RIP that is not
/// an address gives `PROXY UNKNOWN\r\n` rather than a malformed line.
pub fn proxy_v1(rip: &str, rport: u16, port: u16) -> Vec<u8> {
    match rip.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(IpAddr::V4(ip)) => format!("PROXY TCP4 {ip} 0.0.0.0 {rport} {port}\r\n").into_bytes(),
        Ok(IpAddr::V6(ip)) => format!("PROXY TCP6 {ip} :: {rport} {port}\r\n").into_bytes(),
        Err(_) => b"PROXY UNKNOWN\r\n".to_vec(),
    }
}

/// A PROXY protocol v2 header (spec §2.2): signature, version 2 + PROXY
/// command (0x21), AF_INET or AF_INET6 over STREAM (0x11 or 0x21), the
/// address block length, then source and destination addresses and ports in
/// network order. The destination is the wildcard address and the public
/// port, as in [`proxy_v1`]; an IPv4-mapped source is sent as IPv4.
pub fn proxy_v2(rip: IpAddr, rport: u16, port: u16) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21);
    match rip.to_canonical() {
        IpAddr::V4(ip) => {
            out.extend_from_slice(&[0x11, 0, 12]);
            out.extend_from_slice(&ip.octets());
            out.extend_from_slice(&[0; 4]);
        }
        IpAddr::V6(ip) => {
            out.extend_from_slice(&[0x21, 0, 36]);
            out.extend_from_slice(&ip.octets());
            out.extend_from_slice(&[0; 16]);
        }
    }
    out.extend_from_slice(&rport.to_be_bytes());
    out.extend_from_slice(&port.to_be_bytes());
    out
}

#[cfg(test)]
#[path = "options_tests.rs"]
mod tests;
