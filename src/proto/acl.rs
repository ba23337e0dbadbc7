//! Frontend access control by peer address (protocol doc §6.9): pagekite.py's
//! `--client_acl` and `--tunnel_acl` rules, `allow:PATTERN` or
//! `deny:PATTERN`, tried in order. The first rule whose pattern matches the
//! peer decides; when rules exist and none matches, the peer is denied; with
//! no rules everyone is allowed. This module owns the rule syntax, CIDR
//! blocks (also used by the kites' `+ip/` option) and, in `acl_regex.rs`, a
//! small regex engine for the patterns. It only answers "may this address connect": it never
//! sees sockets, logs, or decides what to send to a refused peer.
//!
//! pagekite.py runs `re.match(PATTERN + '$', ip)`: anchored at the start and,
//! through the appended `$`, at the end of the pattern's last alternative
//! only (`10\.|192\.168\..*` allows `10.x` addresses by prefix). That is
//! reproduced exactly. The engine is a Thompson-style simulation of the whole
//! pattern at once, so its cost is bounded by pattern size times address
//! length whatever the pattern; it supports what IP patterns need (literals,
//! escapes, `.`, classes, `* + ? {m,n}`, `^ $ \A \Z`, `|`, groups) and refuses
//! everything else (backreferences, lookarounds, flags, possessive
//! quantifiers) with an error naming it, rather than guess.
//!
//! rkite extensions: a pattern that parses as CIDR (`10.0.0.0/8`,
//! `2001:db8::/32`) is a CIDR block, and an unknown policy word, an empty
//! pattern or a malformed block is an error (pagekite.py would treat the
//! first as `deny` and the others as rules that never match). An IPv4-mapped
//! IPv6 peer (`::ffff:1.2.3.4`) is matched in its IPv4 form.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[path = "acl_regex.rs"]
mod regex;
pub use regex::Regex;

/// Why an ACL rule was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AclError {
    /// No `:` between the policy and the pattern.
    NoPolicy(String),
    /// The policy is neither `allow` nor `deny`.
    BadPolicy(String),
    /// `allow:` with nothing after it.
    EmptyPattern(String),
    /// Contains `/` but is not a valid CIDR block.
    BadCidr(String),
    /// The regex could not be compiled; `pos` counts characters.
    BadPattern {
        pattern: String,
        pos: usize,
        problem: String,
    },
}

impl fmt::Display for AclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AclError::NoPolicy(s) => {
                write!(f, "ACL rule {s:?} is not allow:PATTERN or deny:PATTERN")
            }
            AclError::BadPolicy(s) => write!(f, "ACL rule {s:?}: policy must be allow or deny"),
            AclError::EmptyPattern(s) => write!(f, "ACL rule {s:?} has an empty pattern"),
            AclError::BadCidr(s) => write!(f, "ACL pattern {s:?} is not a valid CIDR block"),
            AclError::BadPattern {
                pattern,
                pos,
                problem,
            } => write!(f, "ACL pattern {pattern:?}: {problem} at position {pos}"),
        }
    }
}

impl std::error::Error for AclError {}

/// An ordered list of allow/deny rules.
#[derive(Clone, Debug, Default)]
pub struct Acl {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    allow: bool,
    matcher: Matcher,
    /// The rule as written, for logs.
    spec: String,
}

#[derive(Clone, Debug)]
enum Matcher {
    Any,
    Localhost,
    Cidr(Cidr),
    Regex(Regex),
}

impl Acl {
    pub fn new() -> Acl {
        Acl::default()
    }

    /// Parses rules in order, as given on the command line.
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<Acl, AclError> {
        let mut acl = Acl::new();
        for spec in specs {
            acl.parse_rule(spec.as_ref())?;
        }
        Ok(acl)
    }

    /// Appends one `allow:PATTERN` or `deny:PATTERN` rule (policy in any
    /// case; the pattern is everything after the first `:`, so IPv6 works).
    #[inline(never)]
    pub fn parse_rule(&mut self, spec: &str) -> Result<(), AclError> {
        let Some((policy, pattern)) = spec.split_once(':') else {
            return Err(AclError::NoPolicy(spec.to_owned()));
        };
        let allow = if policy.eq_ignore_ascii_case("allow") {
            true
        } else if policy.eq_ignore_ascii_case("deny") {
            false
        } else {
            return Err(AclError::BadPolicy(spec.to_owned()));
        };
        let matcher = match pattern {
            "" => return Err(AclError::EmptyPattern(spec.to_owned())),
            "any" => Matcher::Any,
            "localhost" => Matcher::Localhost,
            // No IP text contains `/`, so such a pattern is meant as CIDR.
            p if p.contains('/') => {
                Matcher::Cidr(Cidr::parse(p).ok_or_else(|| AclError::BadCidr(p.to_owned()))?)
            }
            p => Matcher::Regex(Regex::new(p)?),
        };
        self.rules.push(Rule {
            allow,
            matcher,
            spec: spec.to_owned(),
        });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The verdict for a peer: the first matching rule's policy; deny when
    /// rules exist and none matches; allow when there are no rules.
    pub fn allows(&self, ip: IpAddr) -> bool {
        match self.deciding_rule(ip) {
            Some((allow, _)) => allow,
            None => self.rules.is_empty(),
        }
    }

    /// The first rule matching `ip`, as (allow, rule text), for logging why
    /// a peer was refused; `None` means the default applied.
    pub fn deciding_rule(&self, ip: IpAddr) -> Option<(bool, &str)> {
        let ip = ip.to_canonical();
        let mut text = IpText::new();
        let text = text.format(ip);
        self.rules
            .iter()
            .find(|r| match &r.matcher {
                Matcher::Any => true,
                Matcher::Localhost => ip.is_loopback(),
                Matcher::Cidr(c) => c.contains(ip),
                Matcher::Regex(re) => re.is_match(text),
            })
            .map(|r| (r.allow, r.spec.as_str()))
    }
}

/// An address's text on the stack, so checking a peer allocates nothing.
struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl IpText {
    fn new() -> IpText {
        IpText {
            buf: [0; 48],
            len: 0,
        }
    }

    fn format(&mut self, ip: IpAddr) -> &str {
        use fmt::Write;
        self.len = 0;
        // 45 characters is the longest address text, so this can't fail.
        let _ = write!(self, "{ip}");
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

impl fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// An address block, `ADDR/LEN`, stored with its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// Parses `ADDR/LEN`. Host bits are ignored (`10.1.2.3/8` is
    /// `10.0.0.0/8`); an IPv4-mapped IPv6 block of at least /96 becomes the
    /// IPv4 block it covers, since peers are compared in IPv4 form.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, len) = text.split_once('/')?;
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let len: u8 = len.parse().ok()?;
        let addr: IpAddr = addr.parse().ok()?;
        Cidr::new(addr, len)
    }

    /// A block of the given size; `None` if `len` is too long for `addr`.
    pub fn new(addr: IpAddr, len: u8) -> Option<Cidr> {
        let (addr, len) = match addr {
            IpAddr::V6(v6) if len >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), len - 96),
                None => (addr, len),
            },
            _ => (addr, len),
        };
        let addr = match addr {
            IpAddr::V4(a) if len <= 32 => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(len))),
            IpAddr::V6(a) if len <= 128 => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(len))),
            _ => return None,
        };
        Some(Cidr { addr, len })
    }

    /// The block holding just `addr`.
    pub fn host(addr: IpAddr) -> Cidr {
        let addr = addr.to_canonical();
        let len = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr, len }
    }

    /// Whether `ip` (IPv4-mapped addresses in their IPv4 form) is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => u32::from(ip) & mask32(self.len) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask128(self.len) == u128::from(net)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "acl_tests.rs"]
mod tests;
