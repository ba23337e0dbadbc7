//! The choice of relays for `--frontends=N:NAME:PORT` (pagekite.py's
//! `servers_auto`), sans-IO: the addresses NAME resolved to, the `nofrontend`
//! exclusions, ping measurements and tunnel failures come in with the time
//! they happened; a [`Decision`] (every candidate with its verdict) comes
//! out. It owns the policy: pagekite.py's average of the last three pings,
//! its overload and decaying error penalties, dedupe by relay UUID, and a
//! bias for relays we already have a live tunnel to, so the choice does not
//! slosh between relays of nearly the same speed. It must not open sockets,
//! read clocks or log: `crate::backend`'s fleet module does the pinging,
//! dialing and telling.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What pagekite.py sends to measure a relay; every PageKite frontend
/// answers it with `503 Unavailable` and its `X-PageKite-UUID`.
pub const PING_REQUEST: &[u8] = b"HEAD /ping HTTP/1.1\r\nHost: ping.pagekite\r\n\r\n";
/// pagekite.py accepts only this status line as a relay's answer.
const PONG_STATUS: &str = "HTTP/1.1 503 Unavailable";
/// The ping average is over this many of the latest answers (pagekite.py).
pub const WINDOW: usize = 3;
/// A new relay is pinged this many times before it is first ranked
/// (pagekite.py's ping cache wants two answers), so one slow first answer
/// (a cold ARP or route cache) does not decide.
pub const FIRST_SAMPLES: usize = 2;
/// A relay saying `X-PageKite-Overloaded` is treated as this much farther
/// away (pagekite.py's default `overload_ms`).
pub const OVERLOAD_PENALTY: Duration = Duration::from_millis(250);
/// A relay that failed (ping or tunnel) is treated as up to this much
/// farther away, decaying linearly over [`ERROR_DECAY`] (pagekite.py).
pub const ERROR_PENALTY: Duration = Duration::from_secs(1);
pub const ERROR_DECAY: Duration = Duration::from_secs(1800);
/// A relay we have no live tunnel to must be this much faster than one we
/// have before it replaces it: moving a tunnel costs more than a few
/// milliseconds (pagekite.py biases DNS-known relays by the same 50 ms).
pub const SWITCH_MARGIN: Duration = Duration::from_millis(50);
/// With more live tunnels than wanted, every other relay looks this much
/// farther away per extra tunnel (pagekite.py's damping of the sloshing
/// when many relays are overloaded at once).
pub const CROWD_PENALTY: Duration = Duration::from_millis(200);
/// Relay ids longer than this, or with other characters, are ignored.
const MAX_UUID: usize = 64;

/// A relay's answer to the ping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pong {
    /// `X-PageKite-UUID`: the same relay reached under two addresses (IPv4
    /// and IPv6, say) answers with the same id.
    pub uuid: Option<String>,
    /// `X-PageKite-Overloaded` was present.
    pub overloaded: bool,
}

/// Why a measurement failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// The connection was refused or failed (the OS's words).
    Connect(String),
    /// Closed before a whole answer came.
    Closed,
    /// No answer in time.
    Timeout,
    /// Something answered, but not as a PageKite relay (its status line,
    /// escaped for logs).
    NotARelay(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Connect(e) => write!(f, "cannot connect: {e}"),
            ProbeError::Closed => f.write_str("closed without answering the ping"),
            ProbeError::Timeout => f.write_str("no answer to the ping in time"),
            ProbeError::NotARelay(status) => write!(f, "not a PageKite relay (it said {status})"),
        }
    }
}

/// Reads a ping answer's head (status line and headers, up to the blank
/// line) the way pagekite.py does.
pub fn parse_pong(head: &[u8]) -> Result<Pong, ProbeError> {
    let text = String::from_utf8_lossy(head);
    let status = text.split('\n').next().unwrap_or_default();
    let status = status.trim_end_matches('\r');
    if !status.starts_with(PONG_STATUS) {
        let shown: String = status.chars().take(80).collect();
        return Err(ProbeError::NotARelay(format!("{shown:?}")));
    }
    let mut pong = Pong {
        uuid: None,
        overloaded: false,
    };
    for (name, value) in super::sniff::headers(head) {
        if name.eq_ignore_ascii_case(b"X-PageKite-UUID") {
            let value = value
                .split(|b| b.is_ascii_whitespace())
                .next()
                .unwrap_or_default();
            let plain = value
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b));
            if !value.is_empty() && value.len() <= MAX_UUID && plain {
                pong.uuid = Some(String::from_utf8_lossy(value).into_owned());
            }
        } else if name.eq_ignore_ascii_case(b"X-PageKite-Overloaded") {
            pong.overloaded = true;
        }
    }
    Ok(pong)
}

/// One address NAME resolved to, and what we know about it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub addr: SocketAddr,
    /// Listed by `nofrontend`: never pinged, never dialed.
    pub excluded: bool,
    /// Latest ping times first (each with the overload penalty it earned).
    samples: VecDeque<Duration>,
    pub uuid: Option<String>,
    /// The latest ping failed, and why.
    pub error: Option<ProbeError>,
    /// The latest failure of a ping or of a tunnel to this address.
    pub errored_at: Option<Instant>,
}

impl Candidate {
    fn new(addr: SocketAddr, excluded: bool) -> Candidate {
        Candidate {
            addr,
            excluded,
            samples: VecDeque::with_capacity(WINDOW),
            uuid: None,
            error: None,
            errored_at: None,
        }
    }

    /// The average of the latest pings (pagekite.py's window of three).
    pub fn ping(&self) -> Option<Duration> {
        let n = u32::try_from(self.samples.len()).ok().filter(|n| *n > 0)?;
        Some(self.samples.iter().sum::<Duration>() / n)
    }

    /// The decaying penalty for a recent failure.
    fn error_penalty(&self, now: Instant) -> Duration {
        let Some(at) = self.errored_at else {
            return Duration::ZERO;
        };
        let since = now.saturating_duration_since(at);
        let left = ERROR_DECAY.saturating_sub(since);
        ERROR_PENALTY.mul_f64(left.as_secs_f64() / ERROR_DECAY.as_secs_f64())
    }
}

/// What the policy made of one candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Among the N best: keep (or open) a tunnel to it.
    Chosen,
    /// Usable, but N better ones were found.
    Spare,
    /// The same relay (same UUID) as this better-placed address.
    Duplicate(SocketAddr),
    /// Listed by `nofrontend`.
    Excluded,
    /// Its ping failed and we have no live tunnel to it.
    Unreachable,
    /// Not measured yet.
    Untested,
}

impl Verdict {
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Chosen => "chosen",
            Verdict::Spare => "spare",
            Verdict::Duplicate(_) => "duplicate",
            Verdict::Excluded => "excluded",
            Verdict::Unreachable => "unreachable",
            Verdict::Untested => "untested",
        }
    }
}

/// One candidate's place in a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ranked {
    pub addr: SocketAddr,
    /// The averaged ping.
    pub ping: Option<Duration>,
    /// The ping with every penalty and bias: what the ranking compared.
    pub score: Option<Duration>,
    pub verdict: Verdict,
}

/// Every candidate, best first (unusable ones last, in address order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub ranked: Vec<Ranked>,
}

impl Decision {
    pub fn chosen(&self) -> Vec<SocketAddr> {
        self.ranked
            .iter()
            .filter(|r| r.verdict == Verdict::Chosen)
            .map(|r| r.addr)
            .collect()
    }

    pub fn get(&self, addr: SocketAddr) -> Option<&Ranked> {
        self.ranked.iter().find(|r| r.addr == addr)
    }
}

/// The candidates of one `--frontends` pool.
#[derive(Clone, Debug)]
pub struct Pool {
    wanted: usize,
    candidates: Vec<Candidate>,
}

impl Pool {
    pub fn new(wanted: usize) -> Pool {
        Pool {
            wanted: wanted.max(1),
            candidates: Vec::new(),
        }
    }

    pub fn wanted(&self) -> usize {
        self.wanted
    }

    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// NAME's addresses from a fresh lookup: known ones keep their history,
    /// new ones are added, vanished ones forgotten; `never` marks the
    /// `nofrontend` ones.
    pub fn set_addresses(&mut self, resolved: &[SocketAddr], never: &[SocketAddr]) {
        let mut next: Vec<Candidate> = Vec::with_capacity(resolved.len());
        for addr in resolved {
            if next.iter().any(|c| c.addr == *addr) {
                continue;
            }
            let excluded = never.contains(addr);
            let mut c = match self.candidates.iter().position(|c| c.addr == *addr) {
                Some(i) => self.candidates.swap_remove(i),
                None => Candidate::new(*addr, excluded),
            };
            c.excluded = excluded;
            next.push(c);
        }
        self.candidates = next;
    }

    /// Addresses to ping in a measurement round.
    pub fn to_probe(&self) -> Vec<SocketAddr> {
        self.candidates
            .iter()
            .filter(|c| !c.excluded)
            .map(|c| c.addr)
            .collect()
    }

    /// Whether `addr` answered but has too few answers to rank well: ping
    /// it again in this round.
    pub fn wants_another_ping(&self, addr: SocketAddr) -> bool {
        self.candidates.iter().any(|c| {
            c.addr == addr && c.error.is_none() && (1..FIRST_SAMPLES).contains(&c.samples.len())
        })
    }

    /// A ping's outcome: its round trip and answer, or why it failed.
    pub fn record(
        &mut self,
        addr: SocketAddr,
        now: Instant,
        outcome: Result<(Duration, Pong), ProbeError>,
    ) {
        let Some(c) = self.candidates.iter_mut().find(|c| c.addr == addr) else {
            return;
        };
        match outcome {
            Ok((rtt, pong)) => {
                let rtt = if pong.overloaded {
                    rtt + OVERLOAD_PENALTY
                } else {
                    rtt
                };
                c.samples.push_front(rtt);
                c.samples.truncate(WINDOW);
                c.uuid = pong.uuid;
                c.error = None;
            }
            Err(e) => {
                c.error = Some(e);
                c.errored_at = Some(now);
            }
        }
    }

    /// A tunnel to `addr` failed: it ranks lower for a while.
    pub fn tunnel_failed(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == addr) {
            c.errored_at = Some(now);
        }
    }

    /// Ranks every candidate; `live` are the addresses we have a live
    /// tunnel to. A live relay whose latest ping failed stays usable (its
    /// tunnel is better evidence than one lost ping; the error penalty
    /// ranks it low), a relay without a tunnel needs a good ping.
    pub fn decide(&self, now: Instant, live: &[SocketAddr]) -> Decision {
        let live_here = self
            .candidates
            .iter()
            .filter(|c| live.contains(&c.addr))
            .count();
        let crowd = CROWD_PENALTY
            .saturating_mul(u32::try_from(live_here.saturating_sub(self.wanted)).unwrap_or(0));
        let mut usable = Vec::new();
        let mut unusable = Vec::new();
        for c in &self.candidates {
            let is_live = live.contains(&c.addr);
            let ping = c.ping();
            let unusable_as = if c.excluded {
                Some(Verdict::Excluded)
            } else if c.error.is_some() && !is_live {
                Some(Verdict::Unreachable)
            } else if ping.is_none() {
                Some(Verdict::Untested)
            } else {
                None
            };
            if let Some(verdict) = unusable_as {
                unusable.push(Ranked {
                    addr: c.addr,
                    ping,
                    score: None,
                    verdict,
                });
                continue;
            }
            let mut score = ping.unwrap_or_default() + c.error_penalty(now);
            if !is_live {
                score += SWITCH_MARGIN + crowd;
            }
            usable.push((score, !is_live, c));
        }
        // Best score first; on a tie the live one, then the lower address,
        // so the same inputs always give the same choice.
        usable.sort_by_key(|u| (u.0, u.1, u.2.addr));
        let mut ranked = Vec::with_capacity(self.candidates.len());
        let mut seen: Vec<(&str, SocketAddr)> = Vec::new();
        let mut chosen = 0;
        for (score, _, c) in usable {
            let first = c
                .uuid
                .as_deref()
                .and_then(|u| seen.iter().find(|(id, _)| *id == u).map(|(_, a)| *a));
            let verdict = match first {
                Some(of) => Verdict::Duplicate(of),
                None if chosen < self.wanted => {
                    chosen += 1;
                    Verdict::Chosen
                }
                None => Verdict::Spare,
            };
            if let (Some(u), None) = (c.uuid.as_deref(), first) {
                seen.push((u, c.addr));
            }
            ranked.push(Ranked {
                addr: c.addr,
                ping: c.ping(),
                score: Some(score),
                verdict,
            });
        }
        unusable.sort_by_key(|r| r.addr);
        ranked.extend(unusable);
        Decision { ranked }
    }
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
