//! DNS-based kite authentication as pagekite.py's `--authdomain` does it
//! (pk.py `GetDomainQuota`/`LookupDomainQuota`), sans-IO: which auth domain
//! a kite is checked under, the name the frontend looks up
//! (`SRAND.TOKEN.SIGN.PROTO.DOMAIN.AUTHDOMAIN.`, the auth server holds the
//! secret and checks the signature), what the answer's IPv4 address means,
//! the cache of answers, and the bookkeeping that bounds look-ups in
//! flight. No resolver, no clock of its own (instants are arguments); the
//! frontend (`frontend_authdns.rs`) runs the look-ups.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// How long an answer is kept. pagekite.py caches nothing itself (the
/// system resolver may); five minutes bounds how long a revoked kite can
/// still be accepted with the very same signed request.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// Answers kept at most (the oldest go first).
pub const CACHE_MAX: usize = 4096;
/// Look-ups running at once (each is one short-lived resolver thread).
pub const MAX_IN_FLIGHT: usize = 8;
/// Names waiting for a free look-up slot; beyond that a kite is refused
/// at once instead of queueing (see [`Want::Full`]).
pub const MAX_QUEUED: usize = 256;

/// `--authdomain` as configured: pagekite.py's default auth domain and its
/// `DOMAIN:AUTHDOMAIN` entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthDomains {
    pub default: Option<String>,
    /// `(domain suffix, auth domain)`, domain suffixes lower case.
    pub per_domain: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A `/`: pagekite.py's auth apps (external commands) are not supported.
    AuthApp(String),
    BadName(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::AuthApp(a) => write!(
                f,
                "{a:?}: auth apps (a command path) are not supported, only DNS auth domains"
            ),
            ConfigError::BadName(a) => write!(f, "{a:?} is not a DNS name"),
        }
    }
}

impl AuthDomains {
    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.per_domain.is_empty()
    }

    /// Applies one `--authdomain` argument in order, as pagekite.py does:
    /// `DOMAIN:AUTHDOMAIN` adds a per-domain entry; a plain `AUTHDOMAIN`
    /// becomes the default and forgets the per-domain entries given
    /// before it.
    pub fn apply(&mut self, arg: &str) -> Result<(), ConfigError> {
        if arg.contains('/') {
            return Err(ConfigError::AuthApp(arg.to_string()));
        }
        match arg.split_once(':') {
            Some((domain, adom)) => {
                let domain = domain.trim().to_ascii_lowercase();
                let adom = checked_adom(adom)?;
                if domain.is_empty() || !valid_name(&domain) {
                    return Err(ConfigError::BadName(domain));
                }
                self.per_domain.retain(|(d, _)| *d != domain);
                self.per_domain.push((domain, adom));
            }
            None => {
                self.per_domain.clear();
                self.default = Some(checked_adom(arg)?);
            }
        }
        Ok(())
    }

    /// The arguments that give this configuration back (`--settings`).
    pub fn to_args(&self) -> Vec<String> {
        let mut out: Vec<String> = self.default.iter().cloned().collect();
        out.extend(self.per_domain.iter().map(|(d, a)| format!("{d}:{a}")));
        out
    }

    /// The auth domain `domain` is checked under: the longest per-domain
    /// suffix it is a subdomain of, else the default.
    pub fn for_domain(&self, domain: &str) -> Option<&str> {
        self.per_domain
            .iter()
            .filter(|(d, _)| {
                domain
                    .strip_suffix(d.as_str())
                    .is_some_and(|head| head.ends_with('.'))
            })
            .max_by_key(|(d, _)| d.len())
            .map(|(_, a)| a.as_str())
            .or(self.default.as_deref())
    }
}

fn checked_adom(adom: &str) -> Result<String, ConfigError> {
    let adom = adom.trim().to_ascii_lowercase();
    let bare = adom.strip_suffix('.').unwrap_or(&adom);
    if bare.is_empty() || !valid_name(bare) {
        return Err(ConfigError::BadName(adom));
    }
    Ok(adom)
}

/// One DNS label as the look-up may carry it: letters, digits, `-`, `_`.
fn valid_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn valid_name(name: &str) -> bool {
    name.split('.').all(valid_label)
}

/// The name pagekite.py looks up for a kite:
/// `SRAND.TOKEN.SIGN.PROTO.DOMAIN.AUTHDOMAIN.`, with a wildcard's `*` as
/// `_any_`. `None` when a part would not make one label each (a dot in a
/// salt would move the fields the auth server reads) or the name is too
/// long for DNS: such a kite is refused without a look-up (pagekite.py
/// would look up, fail and, failing open, accept it).
pub fn lookup_name(
    srand: &str,
    token: &str,
    sign: &str,
    protoport: &str,
    domain: &str,
    adom: &str,
) -> Option<String> {
    let domain = domain.replace('*', "_any_");
    let adom = adom.strip_suffix('.').unwrap_or(adom);
    if ![srand, token, sign, protoport]
        .iter()
        .all(|p| valid_label(p))
        || !valid_name(&domain)
        || !valid_name(adom)
    {
        return None;
    }
    let name = [srand, token, sign, protoport, &domain, adom].join(".");
    (name.len() <= 253).then(|| name + ".")
}

/// Why the auth server refused a kite: pagekite.py's reason words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `255.255.255.1` (invalid) and `255.255.255.0` (user unknown).
    Unauthorized,
    /// Any other `255.255.255.x`, and `0.0.0.0` (no quota left).
    Quota,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::Quota => "quota",
        }
    }
}

/// What the auth server said about one look-up name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; the address as a number is the quota in kB.
    Ok {
        quota_kb: u32,
    },
    Refused(Refusal),
}

/// Reads the first IPv4 address of the answer as pagekite.py does.
/// One deliberate difference: pagekite.py accepts a kite on
/// `255.255.255.0` ("user unknown, fall through to local test", but the
/// local test has already run by then); rkite refuses it.
pub fn decode(ip: Ipv4Addr) -> Outcome {
    let [a, b, c, d] = ip.octets();
    if [a, b, c] == [255, 255, 255] {
        return Outcome::Refused(match d {
            0 | 1 => Refusal::Unauthorized,
            _ => Refusal::Quota,
        });
    }
    match u32::from(ip) {
        0 => Outcome::Refused(Refusal::Quota),
        quota_kb => Outcome::Ok { quota_kb },
    }
}

/// Answers by look-up name, each until [`CACHE_TTL`] after it arrived.
/// Only the auth server's answers are kept: a failed look-up is asked
/// again next time (as pagekite.py, which caches nothing).
#[derive(Default)]
pub struct Cache {
    entries: HashMap<String, (Outcome, Instant)>,
    pub hits: u64,
}

impl Cache {
    pub fn get(&mut self, name: &str, now: Instant) -> Option<Outcome> {
        let (outcome, until) = self.entries.get(name)?;
        if *until <= now {
            self.entries.remove(name);
            return None;
        }
        self.hits += 1;
        Some(*outcome)
    }

    /// Whether `name` has a fresh answer, without counting a hit.
    pub fn has(&self, name: &str, now: Instant) -> bool {
        self.entries
            .get(name)
            .is_some_and(|(_, until)| *until > now)
    }

    pub fn put(&mut self, name: &str, outcome: Outcome, now: Instant) {
        if self.entries.len() >= CACHE_MAX && !self.entries.contains_key(name) {
            self.entries.retain(|_, (_, until)| *until > now);
            if self.entries.len() >= CACHE_MAX {
                let oldest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, until))| *until)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.entries.remove(&k);
                }
            }
        }
        self.entries
            .insert(name.to_string(), (outcome, now + CACHE_TTL));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What [`Lookups::want`] decided for a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// Start this look-up now.
    Start,
    /// Already running or queued: the waiter is told with the others.
    Joined,
    /// Queued until a running look-up ends.
    Queued,
    /// Too many look-ups waiting: refuse without asking.
    Full,
}

/// Look-ups running and queued, and who waits for each (`W`: the
/// frontend's tunnel token). Bounds the resolver threads to
/// [`MAX_IN_FLIGHT`] and the queue to [`MAX_QUEUED`] names, whatever a
/// flood of tunnel requests asks for.
pub struct Lookups<W> {
    waiters: HashMap<String, Vec<W>>,
    running: HashSet<String>,
    queue: VecDeque<String>,
    max_in_flight: usize,
    max_queued: usize,
}

impl<W: Copy + PartialEq> Default for Lookups<W> {
    fn default() -> Self {
        Lookups::new(MAX_IN_FLIGHT, MAX_QUEUED)
    }
}

impl<W: Copy + PartialEq> Lookups<W> {
    pub fn new(max_in_flight: usize, max_queued: usize) -> Lookups<W> {
        Lookups {
            waiters: HashMap::new(),
            running: HashSet::new(),
            queue: VecDeque::new(),
            max_in_flight: max_in_flight.max(1),
            max_queued,
        }
    }

    pub fn want(&mut self, name: &str, waiter: W) -> Want {
        if let Some(list) = self.waiters.get_mut(name) {
            if !list.contains(&waiter) {
                list.push(waiter);
            }
            return Want::Joined;
        }
        let want = if self.running.len() < self.max_in_flight {
            self.running.insert(name.to_string());
            Want::Start
        } else if self.queue.len() < self.max_queued {
            self.queue.push_back(name.to_string());
            Want::Queued
        } else {
            return Want::Full;
        };
        self.waiters.insert(name.to_string(), vec![waiter]);
        want
    }

    /// A look-up ended: who waited for it, and the next name to start
    /// (it is counted as running from now).
    pub fn done(&mut self, name: &str) -> (Vec<W>, Option<String>) {
        self.running.remove(name);
        let waiters = self.waiters.remove(name).unwrap_or_default();
        let next = if self.running.len() < self.max_in_flight {
            self.queue.pop_front()
        } else {
            None
        };
        if let Some(n) = &next {
            self.running.insert(n.clone());
        }
        (waiters, next)
    }

    /// A waiter is gone (its tunnel closed): queued names nobody waits for
    /// any more are dropped; running ones finish (their answer is cached).
    pub fn forget(&mut self, waiter: W) {
        for list in self.waiters.values_mut() {
            list.retain(|w| *w != waiter);
        }
        let running = &self.running;
        self.waiters
            .retain(|name, list| !list.is_empty() || running.contains(name));
        let waiters = &self.waiters;
        self.queue.retain(|name| waiters.contains_key(name));
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
#[path = "authdns_tests.rs"]
mod tests;
