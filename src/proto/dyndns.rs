//! Dynamic DNS updates as pagekite.py 1.5.2 sends them (`--dyndns`,
//! `common.DYNDNS`, `pk.py` `CheckTunnelQuotas`' update loop): the provider
//! setting as a typed URL template, the signed update request for one kite
//! domain and its frontends' addresses, the provider's reply read and
//! judged, and (in `dyndns_state`) when an update is due. Sans-IO: the
//! caller connects (through the proxy chain and TLS for `https`), sends
//! [`UpdateRequest::head`], reads the reply with `http_reply`, and tells
//! the state what happened; time and the signature's salt are arguments.
//!
//! Where rkite does better than pagekite.py: credentials in the URL
//! (`https://%(user)s:%(pass)s@members.dyndns.org/…`, the dyndns.org and
//! no-ip.com entries) become an `Authorization: Basic` header (Python 3's
//! urllib, which pagekite.py 1.5.2 uses, fails on them with "nonnumeric
//! port"); values are percent-escaped where they would change the URL's
//! meaning (pagekite.py pastes them raw; for the usual names, addresses
//! and signatures the URL is byte for byte the same).

use std::fmt;
use std::net::IpAddr;

use super::base64;
use super::ct;
use super::http_reply::Response;

pub use super::dyndns_state::{Due, DynDnsState, UPDATE_TIMEOUT};

/// pagekite.py's `common.DYNDNS` providers `--dyndns` may name.
pub const PROVIDERS: &[(&str, &str)] = &[
    (
        "pagekite.net",
        "http://up.pagekite.net/?hostname=%(domain)s&myip=%(ips)s&sign=%(sign)s",
    ),
    (
        "beanstalks.net",
        "http://up.b5p.us/?hostname=%(domain)s&myip=%(ips)s&sign=%(sign)s",
    ),
    (
        "dyndns.org",
        "https://%(user)s:%(pass)s@members.dyndns.org/nic/update?wildcard=NOCHG&backmx=NOCHG\
         &hostname=%(domain)s&myip=%(ip)s",
    ),
    (
        "no-ip.com",
        "https://%(user)s:%(pass)s@dynupdate.no-ip.com/nic/update?hostname=%(domain)s&myip=%(ip)s",
    ),
];

/// The longest template accepted.
const MAX_TEMPLATE: usize = 2048;

/// A `%(name)s` field of a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Domain,
    /// The first address.
    Ip,
    /// All addresses, comma-separated.
    Ips,
    Sign,
    User,
    Pass,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Field),
}

/// A parsed `--dyndns` setting: where updates go and with which
/// credentials. Debug never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Provider {
    tls: bool,
    host: String,
    port: u16,
    /// The template's user info (before `@`), rendered into `Basic`.
    userinfo: Option<Vec<Piece>>,
    /// Path and query.
    target: Vec<Piece>,
    user: String,
    pass: String,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Provider({self})")
    }
}

impl fmt::Display for Provider {
    /// `https://members.dyndns.org` (no credentials, no path).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.host_header()
        )
    }
}

impl Provider {
    /// `--dyndns=ARG` as pagekite.py reads it: a URL template (starts with
    /// `http`), `[user[:pass]@]PROVIDER` with PROVIDER a name from
    /// [`PROVIDERS`] or a template, or a bare name. An empty argument turns
    /// updates off (`Ok(None)`).
    #[inline(never)]
    pub fn parse_setting(arg: &str) -> Result<Option<Provider>, DynDnsError> {
        let arg = arg.trim();
        if arg.is_empty() {
            return Ok(None);
        }
        let (template, user, pass) = if arg.starts_with("http") {
            (arg, "", "")
        } else if let Some((userpass, provider)) = arg.rsplit_once('@') {
            let (user, pass) = userpass.split_once(':').unwrap_or((userpass, ""));
            (known(provider).unwrap_or(provider), user, pass)
        } else {
            (known(arg).unwrap_or(arg), "", "")
        };
        Provider::from_template(template, user, pass).map(Some)
    }

    /// A provider from a URL template and credentials.
    pub fn from_template(template: &str, user: &str, pass: &str) -> Result<Provider, DynDnsError> {
        if template.len() > MAX_TEMPLATE {
            return Err(DynDnsError::TooLong);
        }
        if let Some(b) = template.bytes().find(|&b| b <= b' ' || b == 0x7f) {
            return Err(DynDnsError::BadByte(b));
        }
        let (tls, rest) = if let Some(rest) = template.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = template.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(DynDnsError::NotUrl(escape(template)));
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((info, hostport)) => (Some(pieces(info)?), hostport),
            None => (None, authority),
        };
        let (host, port) = host_port(hostport, if tls { 443 } else { 80 })?;
        let target = if target.is_empty() {
            vec![Piece::Text("/".into())]
        } else if target.starts_with('?') {
            // `http://host?x` asks for `/?x`.
            let mut t = vec![Piece::Text("/".into())];
            t.extend(pieces(target)?);
            t
        } else {
            pieces(target)?
        };
        Ok(Provider {
            tls,
            host,
            port,
            userinfo,
            target,
            user: user.to_string(),
            pass: pass.to_string(),
        })
    }

    /// Whether updates go over TLS (`https`).
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The name (or address) to connect to, and the TLS server name.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the template signs updates with the kite's secret.
    pub fn signs(&self) -> bool {
        self.target.contains(&Piece::Field(Field::Sign))
    }

    /// The `Host` header: the host, bracketed if IPv6, and the port unless
    /// it is the scheme's default.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The update for `domain` flying on `ips` (preferred frontends first),
    /// signed with `secret` and an 8-character salt (see
    /// `handshake::salt8`) as pagekite.py signs: salt + SHA1 hex of
    /// secret, `domain:ips` and salt (`signToken(length=100)`, all 40
    /// digits).
    #[inline(never)]
    pub fn request(
        &self,
        domain: &str,
        ips: &[IpAddr],
        secret: &str,
        salt8: &str,
    ) -> Result<UpdateRequest, DynDnsError> {
        let Some(first) = ips.first() else {
            return Err(DynDnsError::NoAddresses);
        };
        let ip = first.to_string();
        let iplist = ips
            .iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let payload = format!("{domain}:{iplist}");
        let sign = sign(secret, &payload, salt8);
        let value = |field: Field| -> &str {
            match field {
                Field::Domain => domain,
                Field::Ip => &ip,
                Field::Ips => &iplist,
                Field::Sign => &sign,
                Field::User => &self.user,
                Field::Pass => &self.pass,
            }
        };
        let mut path = String::new();
        for piece in &self.target {
            match piece {
                Piece::Text(text) => path.push_str(text),
                Piece::Field(f) => escape_value(&mut path, value(*f)),
            }
        }
        let authorization = self.userinfo.as_ref().and_then(|info| {
            let mut joined = String::new();
            for piece in info {
                match piece {
                    Piece::Text(text) => joined.push_str(text),
                    Piece::Field(f) => joined.push_str(value(*f)),
                }
            }
            // A template with `%(user)s:%(pass)s@` and no credentials
            // given: send none rather than an empty pair.
            (joined != ":" && !joined.is_empty())
                .then(|| format!("Basic {}", base64::encode(joined.as_bytes())))
        });
        Ok(UpdateRequest {
            tls: self.tls,
            host: self.host.clone(),
            port: self.port,
            host_header: self.host_header(),
            path,
            authorization,
            domain: domain.to_string(),
            ips: iplist,
        })
    }
}

/// The template of a provider name.
fn known(name: &str) -> Option<&'static str> {
    PROVIDERS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, t)| *t)
}

/// Splits a template part into text and `%(name)s` fields; `%%` is `%`.
fn pieces(text: &str) -> Result<Vec<Piece>, DynDnsError> {
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        literal.push_str(rest.get(..at).unwrap_or(""));
        let after = rest.get(at + 1..).unwrap_or("");
        if let Some(more) = after.strip_prefix('%') {
            literal.push('%');
            rest = more;
            continue;
        }
        let field = after
            .strip_prefix('(')
            .and_then(|f| f.split_once(")s"))
            .ok_or_else(|| DynDnsError::BadField(escape(after)))?;
        let kind = match field.0 {
            "domain" => Field::Domain,
            "ip" => Field::Ip,
            "ips" => Field::Ips,
            "sign" => Field::Sign,
            "user" => Field::User,
            "pass" => Field::Pass,
            other => return Err(DynDnsError::BadField(escape(other))),
        };
        if !literal.is_empty() {
            out.push(Piece::Text(std::mem::take(&mut literal)));
        }
        out.push(Piece::Field(kind));
        rest = field.1;
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        out.push(Piece::Text(literal));
    }
    Ok(out)
}

fn host_port(text: &str, default: u16) -> Result<(String, u16), DynDnsError> {
    let bad = || DynDnsError::BadHost(escape(text));
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad());
        }
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if !name_ok {
        return Err(bad());
    }
    let port = match port {
        None => default,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(bad()),
        },
    };
    Ok((host.to_string(), port))
}

/// pagekite.py's `signToken(secret, payload, token=salt, length=100)`.
pub fn sign(secret: &str, payload: &str, salt8: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    for part in [secret, payload, salt8] {
        ctx.update(part.as_bytes());
    }
    format!("{salt8}{}", ct::hex(ctx.finish().as_ref()))
}

/// Appends a value to a URL, escaping what would change the URL's meaning
/// (and nothing pagekite.py's usual values contain).
fn escape_value(out: &mut String, value: &str) {
    for b in value.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b':'
                    | b','
                    | b'@'
                    | b'!'
                    | b'$'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b';'
            );
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Up to 80 bytes of text from a user or a peer, safe to log.
fn escape(text: &str) -> String {
    escape_bytes(text.as_bytes())
}

fn escape_bytes(bytes: &[u8]) -> String {
    const MAX: usize = 80;
    let shown = bytes.get(..MAX).unwrap_or(bytes);
    let mut out = shown.escape_ascii().to_string();
    if bytes.len() > MAX {
        out.push('…');
    }
    out
}

/// One update, ready to send.
#[derive(Clone, PartialEq, Eq)]
pub struct UpdateRequest {
    pub tls: bool,
    /// Where to connect (and the TLS server name).
    pub host: String,
    pub port: u16,
    host_header: String,
    /// Path and query, as pagekite.py would send them.
    pub path: String,
    /// `Basic …` when the template has credentials.
    authorization: Option<String>,
    pub domain: String,
    /// The addresses sent, comma-separated.
    pub ips: String,
}

impl UpdateRequest {
    /// The request head. HTTP/1.0 so that the reply ends at the close and
    /// is never chunked.
    pub fn head(&self, user_agent: &str) -> Vec<u8> {
        let mut head = format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\n",
            self.path, self.host_header
        );
        if let Some(auth) = &self.authorization {
            head.push_str("Authorization: ");
            head.push_str(auth);
            head.push_str("\r\n");
        }
        head.push_str("User-Agent: ");
        head.push_str(user_agent);
        head.push_str("\r\nConnection: close\r\n\r\n");
        head.into_bytes()
    }

    /// Whether a `Basic` header goes with it.
    pub fn has_credentials(&self) -> bool {
        self.authorization.is_some()
    }
}

impl fmt::Debug for UpdateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpdateRequest({self})")
    }
}

impl fmt::Display for UpdateRequest {
    /// For logs: the provider and what is sent, not the path (a template
    /// may put the password there) nor the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(
            f,
            "{scheme}://{} {}:{}",
            self.host_header, self.domain, self.ips
        )
    }
}

/// The largest reply body read (a verdict is a line; more is an error).
pub const MAX_REPLY_BODY: usize = 4096;

/// A provider's verdict, as pagekite.py judges it: a 2xx whose body
/// starts with `good` or `nochg` is success, anything else a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `good …`: the record now holds the addresses.
    Updated,
    /// `nochg …`: it already did.
    Unchanged,
    Failed(Failure),
}

/// Why an update failed. Texts from the provider are escaped and bounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A non-2xx status.
    Http(u16),
    /// `badauth`: wrong user name or password.
    BadAuth,
    /// `nohost`: no such host in the account.
    NoHost,
    /// `notfqdn`: not a fully qualified name.
    NotFqdn,
    /// `numhost`: too many hosts in one update.
    NumHost,
    /// `abuse`: the host is blocked for abuse.
    Abuse,
    /// `badagent`: the client is blocked.
    BadAgent,
    /// `!donator`: a feature for paying users only.
    NotDonator,
    /// `dnserr` or `911`: a problem at the provider; try later.
    ProviderError,
    /// Any other answer (its first line).
    Other(String),
    /// No answer: the connection failed, timed out, or broke the protocol.
    Transport(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Http(code) => write!(f, "HTTP status {code}"),
            Failure::BadAuth => f.write_str("badauth (wrong user name or password)"),
            Failure::NoHost => f.write_str("nohost (no such host in the account)"),
            Failure::NotFqdn => f.write_str("notfqdn (not a fully qualified name)"),
            Failure::NumHost => f.write_str("numhost (too many hosts)"),
            Failure::Abuse => f.write_str("abuse (host blocked)"),
            Failure::BadAgent => f.write_str("badagent (client blocked)"),
            Failure::NotDonator => f.write_str("!donator (needs a paid account)"),
            Failure::ProviderError => f.write_str("the provider has a problem (911/dnserr)"),
            Failure::Other(text) => write!(f, "unexpected answer \"{text}\""),
            Failure::Transport(why) => write!(f, "no answer: {why}"),
        }
    }
}

/// Judges a complete reply.
pub fn judge(reply: &Response) -> Outcome {
    if !(200..300).contains(&reply.status) {
        return Outcome::Failed(Failure::Http(reply.status));
    }
    let body = reply.body.trim_ascii_start();
    let first = body.split(|&b| b == b'\n').next().unwrap_or(b"");
    let word = first
        .split(|b| b.is_ascii_whitespace())
        .next()
        .unwrap_or(b"");
    // pagekite.py: result.startswith('good') or result.startswith('nochg').
    if body.starts_with(b"good") {
        return Outcome::Updated;
    }
    if body.starts_with(b"nochg") {
        return Outcome::Unchanged;
    }
    Outcome::Failed(match word {
        b"badauth" => Failure::BadAuth,
        b"nohost" => Failure::NoHost,
        b"notfqdn" => Failure::NotFqdn,
        b"numhost" => Failure::NumHost,
        b"abuse" => Failure::Abuse,
        b"badagent" => Failure::BadAgent,
        b"!donator" => Failure::NotDonator,
        b"911" | b"dnserr" => Failure::ProviderError,
        _ => Failure::Other(escape_bytes(first.trim_ascii_end())),
    })
}

/// Why a setting or a reply is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DynDnsError {
    /// The template is over 2048 bytes.
    TooLong,
    /// A space or control byte in the template.
    BadByte(u8),
    /// Not `http://…` or `https://…` (nor a known provider).
    NotUrl(String),
    /// A `%` that is not `%%` or one of the known `%(name)s` fields.
    BadField(String),
    BadHost(String),
    /// No frontend address to send.
    NoAddresses,
}

impl fmt::Display for DynDnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DynDnsError::TooLong => f.write_str("dyndns template too long"),
            DynDnsError::BadByte(b) => write!(f, "byte {b:#04x} in the dyndns template"),
            DynDnsError::NotUrl(t) => write!(
                f,
                "dyndns \"{t}\" is neither a provider ({}) nor an http(s):// URL",
                PROVIDERS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            DynDnsError::BadField(t) => write!(
                f,
                "unknown dyndns template field at \"%{t}\" (known: %(domain)s %(ip)s %(ips)s \
                 %(sign)s %(user)s %(pass)s, and %%)"
            ),
            DynDnsError::BadHost(h) => write!(f, "bad dyndns host \"{h}\""),
            DynDnsError::NoAddresses => f.write_str("no frontend address to send"),
        }
    }
}

impl std::error::Error for DynDnsError {}

#[cfg(test)]
#[path = "dyndns_tests.rs"]
mod tests;
