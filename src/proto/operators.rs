//! pagekite.py's options for a frontend run for other people (`motd`,
//! `ratelimit_ips`, `portalias`, `accept_acl_file`, `overload*`), sans-IO:
//! their argument syntax, the file formats they read (an ACL file,
//! `/proc/loadavg`, `/proc/meminfo`, an overload file) and the decisions
//! pagekite.py 1.5.2 takes with them (`pk.py`'s `CalculateOverload`,
//! `Overloaded`, `GetDefaultIPsPerSecond`, `LoadMOTD`; `conns.py`'s
//! `RejectRemoteIP`, `Listener.check_acl`, the `X-PageKite-Misc` header).
//! Text, numbers and instants come in; verdicts come out. It must not open
//! files or sockets, read clocks or log: `crate::frontend`'s ops module does.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use super::acl::Regex;

/// pagekite.py keeps this many characters of the (stripped) motd file.
pub const MOTD_MAX: usize = 8192;
/// A backend logs at most this many characters of a frontend's motd; the
/// rest is counted in the line, not dropped silently.
pub const MOTD_LOG_MAX: usize = 512;
/// `ratelimit_ips` may allow at most this many clients per window: the
/// table of a tunnel holds at most that many entries.
pub const MAX_RATE_IPS: u32 = 65_536;

/// A malformed operator option value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpsError {
    /// `--ratelimit_ips` is not `N/S` or `KITE:N/S` with whole numbers.
    RateSyntax(String),
    /// More clients per window than [`MAX_RATE_IPS`].
    RateTooLarge(u32),
    /// `--portalias` is not `PORT:PORT`.
    PortAlias(String),
    /// `--overload_cpu`/`--overload_mem` is not a number.
    Fraction(String),
}

impl fmt::Display for OpsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpsError::RateSyntax(v) => write!(f, "{v:?} is not IPS/SECONDS or KITE:IPS/SECONDS"),
            OpsError::RateTooLarge(n) => {
                write!(f, "{n} clients per window is more than {MAX_RATE_IPS}")
            }
            OpsError::PortAlias(v) => write!(f, "{v:?} is not PORT:PORT"),
            OpsError::Fraction(v) => write!(f, "{v:?} is not a number"),
        }
    }
}

impl std::error::Error for OpsError {}

// ---------------------------------------------------------------- motd

/// What pagekite.py makes of a motd file: the text stripped of leading and
/// trailing white space, then its first [`MOTD_MAX`] characters.
#[inline(never)]
pub fn motd_from_file(text: &str) -> String {
    text.trim().chars().take(MOTD_MAX).collect()
}

/// The value of `X-PageKite-Misc` (`urlencode({'motd': motd})` in Python:
/// `quote_plus`, so a space is `+` and only `A-Za-z0-9_.-~` stay as is).
pub fn misc_value(motd: &str) -> String {
    let mut out = String::from("motd=");
    for b in motd.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The motd in an `X-PageKite-Misc` value, as Python's `parse_qs` reads
/// it: `&`-separated pairs, `+` a space, `%XX` a byte (bad escapes kept as
/// they are, bytes that are not UTF-8 replaced). An empty motd is none.
pub fn motd_of_misc(value: &str) -> Option<String> {
    value
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| unquote_plus(k) == "motd")
        .map(|(_, v)| unquote_plus(v))
        .rfind(|v| !v.is_empty())
}

fn unquote_plus(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|c| char::from(*c).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A frontend's motd for one log line: at most [`MOTD_LOG_MAX`]
/// characters, with what was left out counted. Escaping is the logger's.
pub fn motd_for_log(motd: &str) -> String {
    let total = motd.chars().count();
    if total <= MOTD_LOG_MAX {
        return motd.to_string();
    }
    let head: String = motd.chars().take(MOTD_LOG_MAX).collect();
    format!("{head}... ({} more characters)", total - MOTD_LOG_MAX)
}

// ------------------------------------------------------- ratelimit_ips

/// `IPS/SECONDS`: at most IPS different clients within SECONDS per tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub ips: u32,
    pub secs: u32,
}

impl RateLimit {
    /// pagekite.py's window: `seconds or 1`.
    pub fn window(&self) -> Duration {
        Duration::from_secs(u64::from(self.secs.max(1)))
    }

    /// Whether `self` allows fewer clients per second than `other`
    /// (pagekite.py's `new_rate < old_rate`, in integers).
    fn stricter_than(&self, other: &RateLimit) -> bool {
        u64::from(self.ips) * u64::from(other.secs.max(1))
            < u64::from(other.ips) * u64::from(self.secs.max(1))
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ips, self.secs)
    }
}

/// Every `--ratelimit_ips`: a kite name (or `*`, the default) and its
/// limit; a later one for the same name wins, as in pagekite.py's dict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimits {
    rules: Vec<(String, RateLimit)>,
}

/// Parses one `--ratelimit_ips` value: `IPS/SECONDS` or `KITE:IPS/SECONDS`.
pub fn parse_ratelimit(arg: &str) -> Result<(String, RateLimit), OpsError> {
    let bad = || OpsError::RateSyntax(arg.to_string());
    let parts: Vec<&str> = arg.split(':').collect();
    let (which, limit) = match parts.as_slice() {
        [limit] => ("*", *limit),
        [which, limit] => (which.trim(), *limit),
        _ => return Err(bad()),
    };
    let (ips, secs) = limit.trim().split_once('/').ok_or_else(bad)?;
    let ips: u32 = ips.trim().parse().map_err(|_| bad())?;
    let secs: u32 = secs.trim().parse().map_err(|_| bad())?;
    if ips > MAX_RATE_IPS {
        return Err(OpsError::RateTooLarge(ips));
    }
    Ok((which.to_ascii_lowercase(), RateLimit { ips, secs }))
}

impl RateLimits {
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<RateLimits, OpsError> {
        let mut limits = RateLimits::default();
        for arg in args {
            let (which, limit) = parse_ratelimit(arg.as_ref())?;
            limits.rules.retain(|(w, _)| *w != which);
            limits.rules.push((which, limit));
        }
        Ok(limits)
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn get(&self, which: &str) -> Option<RateLimit> {
        self.rules.iter().find(|(w, _)| w == which).map(|(_, l)| *l)
    }

    /// The default limit every tunnel starts with (`*`).
    pub fn default_limit(&self) -> Option<RateLimit> {
        self.get("*")
    }

    /// The limit a kite's name brings (`GetDefaultIPsPerSecond(domain)`):
    /// the rule for the name or its nearest parent with at least two
    /// labels; without one, none (the default applies anyway).
    pub fn for_domain(&self, domain: &str) -> Option<RateLimit> {
        let domain = domain.to_ascii_lowercase();
        let mut rest = domain.as_str();
        loop {
            if !rest.contains('.') {
                return None;
            }
            if let Some(limit) = self.get(rest) {
                return Some(limit);
            }
            rest = rest.split_once('.').map(|(_, r)| r)?;
        }
    }

    /// The limit of a tunnel serving `domains`, as pagekite.py ends up
    /// with it: the strictest of the kites' own limits (the auth results'
    /// `IPsPerSec`, which replaces the default), or the default if no kite
    /// has one.
    pub fn for_tunnel<'a>(&self, domains: impl Iterator<Item = &'a str>) -> Option<RateLimit> {
        self.strictest_own(domains).or_else(|| self.default_limit())
    }

    /// The strictest limit `domains` have a rule of their own for (what
    /// pagekite.py announces as `IPsPerSec` with its answers).
    pub fn strictest_own<'a>(&self, domains: impl Iterator<Item = &'a str>) -> Option<RateLimit> {
        let mut own: Option<RateLimit> = None;
        for found in domains.filter_map(|d| self.for_domain(d)) {
            own = match own {
                Some(old) if !found.stricter_than(&old) => Some(old),
                _ => Some(found),
            };
        }
        own
    }
}

/// Who a visitor is for the limit: its address, and for HTTP the
/// `User-Agent` and `Accept-Language` values too (pagekite.py tells
/// browsers behind one address apart by them).
pub fn client_id(ip: &str, http_head: Option<&[u8]>) -> String {
    let mut id = ip.to_string();
    let Some(head) = http_head else {
        return id;
    };
    for wanted in ["user-agent", "accept-language"] {
        for value in header_values(head, wanted) {
            id.push('/');
            id.push_str(&String::from_utf8_lossy(value));
        }
    }
    id
}

/// The values of header `name` (lower case) in a request head, trimmed.
fn header_values<'a>(head: &'a [u8], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(head.len(), |p| p + 2);
    head.get(..end)
        .unwrap_or_default()
        .split(|b| *b == b'\n')
        .skip(1)
        .filter_map(move |line| {
            let colon = line.iter().position(|b| *b == b':')?;
            let (key, value) = line.split_at(colon);
            key.eq_ignore_ascii_case(name.as_bytes())
                .then(|| value.get(1..).unwrap_or_default().trim_ascii())
        })
}

/// What the limiter says about one new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// A client seen within the window (its time is renewed).
    Known,
    /// A new client, now counted.
    New,
    /// A new client beyond the limit: refused.
    Refused,
}

/// One tunnel's `ratelimit_ips` table (pagekite.py's `ip_limits`): the
/// clients seen within the window, at most `ips` of them, so the table
/// never grows past the limit whatever addresses a flood claims. Clients
/// are kept by a keyed hash of their id (no visitor-chosen text is stored,
/// and no one can aim at another's entry).
#[derive(Debug)]
pub struct Limiter {
    limit: RateLimit,
    seen: HashMap<u64, Instant>,
    /// No entry is older than this: a refusal need not scan the table
    /// unless something may have expired.
    oldest: Option<Instant>,
    keys: RandomState,
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Limiter {
        Limiter {
            limit,
            seen: HashMap::new(),
            oldest: None,
            keys: RandomState::new(),
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes a new limit (a reload, a kite added), keeping who was seen.
    pub fn set_limit(&mut self, limit: RateLimit) {
        self.limit = limit;
    }

    /// Clients in the table.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// pagekite.py's `RejectRemoteIP` for a delta/maxips policy.
    pub fn admit(&mut self, client: &str, now: Instant) -> Admit {
        if self.limit.ips == 0 {
            return Admit::New;
        }
        let key = self.keys.hash_one(client);
        if let Some(at) = self.seen.get_mut(&key) {
            *at = now;
            return Admit::Known;
        }
        let window = self.limit.window();
        let cutoff = now.checked_sub(window);
        if let (Some(cutoff), Some(oldest)) = (cutoff, self.oldest) {
            if oldest < cutoff {
                self.seen.retain(|_, at| *at >= cutoff);
                self.oldest = self.seen.values().min().copied();
            }
        }
        let cap = usize::try_from(self.limit.ips).unwrap_or(usize::MAX);
        if self.seen.len() >= cap {
            return Admit::Refused;
        }
        self.seen.insert(key, now);
        self.oldest = Some(self.oldest.map_or(now, |o| o.min(now)));
        Admit::New
    }
}

// ----------------------------------------------------------- portalias

/// Parses `--portalias=A:B`.
pub fn parse_portalias(arg: &str) -> Result<(u16, u16), OpsError> {
    let bad = || OpsError::PortAlias(arg.to_string());
    let (a, b) = arg.split_once(':').ok_or_else(bad)?;
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    Ok((a, b))
}

/// Every `--portalias`: a listening port and the port it is reported
/// (and routed) as; a later alias of the same port wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortAliases {
    aliases: Vec<(u16, u16)>,
}

impl PortAliases {
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<PortAliases, OpsError> {
        let mut out = PortAliases::default();
        for arg in args {
            let (port, alias) = parse_portalias(arg.as_ref())?;
            out.aliases.retain(|(p, _)| *p != port);
            out.aliases.push((port, alias));
        }
        Ok(out)
    }

    /// The port a connection to `port` is handled as.
    pub fn map(&self, port: u16) -> u16 {
        self.aliases
            .iter()
            .find(|(p, _)| *p == port)
            .map_or(port, |(_, a)| *a)
    }

    pub fn is_empty(&self) -> bool {
        self.aliases.is_empty()
    }
}

// ----------------------------------------------------- accept_acl_file

/// One rule of an accept ACL file: `PATTERN POLICY [REASON...]`.
#[derive(Clone, Debug)]
struct AcceptRule {
    /// Line number in the file (from 1).
    line: usize,
    pattern: String,
    regex: Option<Regex>,
    allow: bool,
    reason: String,
}

/// An `--accept_acl_file`, as pagekite.py's `Listener.check_acl` reads it:
/// lower-cased, one rule a line, `#` comments and blank lines skipped; a
/// rule is an address (compared as text) or a regular expression matched
/// from the start of the address; the policy allows if it contains `allow`
/// and denies otherwise; the first matching rule decides, no match allows.
/// A line pagekite.py cannot read (one word, a pattern that does not
/// compile) ends its reading there: the rules above it still decide, the
/// ones below never do, and the default (allow) applies.
#[derive(Clone, Debug, Default)]
pub struct AcceptAcl {
    rules: Vec<AcceptRule>,
    /// The first line that ends the reading, if any.
    pub broken_at: Option<usize>,
}

/// What an accept ACL says about one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptVerdict {
    pub allow: bool,
    /// The deciding line (0: none matched, the default).
    pub line: usize,
    pub reason: String,
}

impl AcceptAcl {
    pub fn parse(text: &str) -> AcceptAcl {
        let mut acl = AcceptAcl::default();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim().to_ascii_lowercase();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(pattern), Some(policy)) = (words.next(), words.next()) else {
                acl.broken_at = Some(n + 1);
                return acl;
            };
            // `re.match` without the `$` the client ACLs get: the engine
            // anchors its last alternative at the end, so the whole pattern
            // becomes one group followed by anything.
            let regex = Regex::new(&format!("({pattern}).*")).ok();
            acl.rules.push(AcceptRule {
                line: n + 1,
                pattern: pattern.to_string(),
                regex,
                allow: policy.contains("allow"),
                reason: words.collect::<Vec<_>>().join(" "),
            });
        }
        acl
    }

    pub fn rules(&self) -> usize {
        self.rules.len()
    }

    pub fn check(&self, ip: &str) -> AcceptVerdict {
        for rule in &self.rules {
            let matched = ip == rule.pattern
                || match &rule.regex {
                    Some(re) => re.is_match(ip),
                    // pagekite.py's `re.compile` raises: nothing below counts.
                    None => break,
                };
            if matched {
                return AcceptVerdict {
                    allow: rule.allow,
                    line: rule.line,
                    reason: rule.reason.clone(),
                };
            }
        }
        AcceptVerdict {
            allow: true,
            line: 0,
            reason: "Default".to_string(),
        }
    }
}

// ------------------------------------------------------------ overload

/// `--overload`, `--overload_cpu`, `--overload_mem`, `--overload_file`.
#[derive(Clone, Debug, PartialEq)]
pub struct OverloadSettings {
    /// The baseline (0: no overload reports at all, as in pagekite.py).
    pub baseline: u64,
    /// Fraction of CPU (load average) the relay may use; 0 disables.
    pub cpu: f64,
    /// Fraction of memory, at most 1.5; 0 disables.
    pub mem: f64,
    pub file: Option<String>,
}

impl Default for OverloadSettings {
    fn default() -> OverloadSettings {
        OverloadSettings {
            baseline: 0,
            cpu: 0.75,
            mem: 0.85,
            file: None,
        }
    }
}

/// `--overload_cpu` (clamped at 0) and `--overload_mem` (0 to 1.5).
pub fn parse_fraction(arg: &str, max: f64) -> Result<f64, OpsError> {
    let v = parse_decimal(arg.trim()).ok_or_else(|| OpsError::Fraction(arg.to_string()))?;
    Ok(v.max(0.0).min(max))
}

/// A plain decimal number (`-0.75`, `1`, `.5`, `2.`): all these options
/// and `/proc/loadavg` need. Not `str::parse::<f64>`, whose exact
/// algorithm costs the binary more than every other part of this file.
pub fn parse_decimal(text: &str) -> Option<f64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.len() + frac.len() == 0 || whole.len() > 15 || !all_digits(whole) || !all_digits(frac)
    {
        return None;
    }
    let mut value = if whole.is_empty() {
        0.0
    } else {
        whole.parse::<u64>().ok()? as f64
    };
    let mut scale = 1.0;
    for b in frac.bytes().take(15) {
        scale /= 10.0;
        value += f64::from(b - b'0') * scale;
    }
    Some(if negative { -value } else { value })
}

/// The numbers of `/proc/meminfo` pagekite.py reads (KiB).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MemInfo {
    pub total: f64,
    /// `MemAvailable`, or `MemFree` + `Cached` where there is none.
    pub free: f64,
}

/// The 5-minute load average (the second field of `/proc/loadavg`).
#[inline(never)]
pub fn parse_loadavg(text: &str) -> Option<f64> {
    parse_decimal(text.split_whitespace().nth(1)?)
}

#[inline(never)]
pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let mut total = None;
    let (mut available, mut free, mut cached) = (0u64, 0u64, 0u64);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let Some(Ok(v)) = value.split_whitespace().next().map(str::parse::<u64>) else {
            continue;
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "memtotal" => total = Some(v),
            "memavailable" => available = v,
            "memfree" => free = v,
            "cached" => cached = v,
            _ => {}
        }
    }
    let free = if available > 0 {
        available
    } else {
        free.saturating_add(cached)
    };
    Some(MemInfo {
        total: total? as f64,
        free: free as f64,
    })
}

/// The overload file's level (`int(fd.read().strip())`).
#[inline(never)]
pub fn parse_overload_file(text: &str) -> Option<u64> {
    text.trim()
        .parse::<i64>()
        .ok()
        .map(|v| v.max(0).unsigned_abs())
}

/// What a recalculation changed, for the one log line it is worth.
#[derive(Clone, Debug, PartialEq)]
pub enum Recalc {
    /// The level the overload file sets.
    FromFile(u64),
    /// The level the load and memory suggest, with pagekite.py's figures:
    /// (level, memory level, CPU level, connections, KiB per connection,
    /// load per connection).
    Dynamic {
        level: u64,
        mem_level: u64,
        cpu_level: u64,
        load: u64,
        munit: f64,
        lunit: f64,
    },
}

/// The frontend's overload level (pagekite.py's `overload_current`) and
/// the state its recalculation keeps.
#[derive(Clone, Debug, PartialEq)]
pub struct Overload {
    settings: OverloadSettings,
    current: u64,
    /// Memory in use by others at the first look (KiB).
    membase: Option<f64>,
}

impl Overload {
    pub fn new(settings: OverloadSettings) -> Overload {
        Overload {
            current: settings.baseline,
            settings,
            membase: None,
        }
    }

    pub fn settings(&self) -> &OverloadSettings {
        &self.settings
    }

    pub fn enabled(&self) -> bool {
        self.settings.baseline > 0
    }

    pub fn level(&self) -> u64 {
        self.current
    }

    /// pagekite.py's `CalculateOverload`: `file` is the overload file's
    /// level if the file was read and holds a number (it overrides all
    /// else); `system` the load average and memory figures, if readable;
    /// `load` the connections now open. `None`: nothing changed.
    pub fn recalc(
        &mut self,
        file: Option<u64>,
        system: Option<(f64, MemInfo)>,
        load: u64,
    ) -> Option<Recalc> {
        if !self.enabled() {
            return None;
        }
        if self.settings.file.is_some() {
            if let Some(level) = file {
                let changed = level != self.current;
                self.current = level;
                return changed.then_some(Recalc::FromFile(level));
            }
        }
        let s = &self.settings;
        if s.cpu == 0.0 && s.mem == 0.0 {
            return None;
        }
        let (loadavg, mem) = system?;
        let membase = *self
            .membase
            .get_or_insert_with(|| (mem.total - mem.free).max(50_000.0).min(0.9 * mem.total));
        let load = load.max(1);
        if load < 50 {
            return None;
        }
        let cload = load as f64;
        let memtotal = mem.total - membase;
        let munit = ((memtotal - mem.free) / cload).max(32.0);
        let lunit = loadavg.max(0.10) / cload;
        let mem_level = to_level(s.mem * memtotal / munit);
        let cpu_level = to_level(s.cpu / lunit);
        let either = |a: u64, b: u64| if a == 0 { b } else { a };
        let wanted =
            (s.baseline / 2).max(either(mem_level, cpu_level).min(either(cpu_level, mem_level)));
        self.current = to_level(0.8 * self.current as f64 + 0.2 * wanted as f64);
        Some(Recalc::Dynamic {
            level: self.current,
            mem_level,
            cpu_level,
            load,
            munit,
            lunit,
        })
    }

    /// pagekite.py's `Overloaded`: at or over the level (and a level set).
    pub fn overloaded(&self, load: u64) -> bool {
        self.current > 0 && load.max(1) >= self.current
    }
}

/// Python's `int()` of a non-negative float (NaN and negatives are 0).
fn to_level(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v as u64
    } else {
        0
    }
}

/// The header pagekite.py puts first in a relay's 503 pages (ping answers
/// included) while it is overloaded.
pub const OVERLOADED_HEADER: &str = "X-PageKite-Overloaded: Sorry\r\n";

/// Puts [`OVERLOADED_HEADER`] right after the status line of a reply, where
/// pagekite.py puts it. A reply without a status line is left as it is.
pub fn mark_overloaded(reply: Vec<u8>) -> Vec<u8> {
    let Some(eol) = reply.windows(2).position(|w| w == b"\r\n") else {
        return reply;
    };
    let (status, rest) = reply.split_at(eol + 2);
    let mut out = Vec::with_capacity(reply.len() + OVERLOADED_HEADER.len());
    out.extend_from_slice(status);
    out.extend_from_slice(OVERLOADED_HEADER.as_bytes());
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
#[path = "operators_tests.rs"]
mod tests;
