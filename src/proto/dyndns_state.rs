//! When a dynamic DNS update is due, as pagekite.py decides it: one update
//! per kite domain whose set of frontend addresses differs from the last
//! one the provider accepted; none while nothing changed; after a failure,
//! none for 56 s × 2^min(5, failures) (112 s, then doubling to about half
//! an hour), and the back-off ends with the next success. Unlike
//! pagekite.py, only one update is in flight at a time, and the addresses
//! compare as a set (a reordering of the same frontends sends nothing).
//! Pure: the caller says what it wants, what it sent and what came back,
//! with the time as an argument; this module never sends anything.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::dyndns::{Failure, Outcome};

/// The first back-off step (pagekite.py's 56 s, doubled once at the first
/// failure).
const BACKOFF_UNIT: Duration = Duration::from_secs(56);
/// Doublings at most: 56 s × 32 ≈ 30 min.
const BACKOFF_MAX_SHIFT: u32 = 5;
/// How long one update may take before the caller gives up (pagekite.py
/// waits 5 s; a TLS handshake through a proxy needs more on slow links).
pub const UPDATE_TIMEOUT: Duration = Duration::from_secs(20);

/// An update to send now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub domain: String,
    /// In the caller's order (preferred frontends first).
    pub ips: Vec<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Status {
    Waiting,
    Updating,
    Done(Outcome),
    Failed(Failure),
}

#[derive(Clone, Debug)]
struct Kite {
    /// The addresses the provider last accepted.
    confirmed: Option<BTreeSet<IpAddr>>,
    status: Status,
}

/// Every kite domain's update state.
#[derive(Clone, Debug)]
pub struct DynDnsState {
    kites: BTreeMap<String, Kite>,
    in_flight: Option<Due>,
    failures: u32,
    postponed_until: Option<Instant>,
    unit: Duration,
}

impl Default for DynDnsState {
    fn default() -> DynDnsState {
        DynDnsState::with_backoff(BACKOFF_UNIT)
    }
}

impl DynDnsState {
    /// pagekite.py's back-off (56 s units).
    pub fn new() -> DynDnsState {
        DynDnsState::default()
    }

    /// Back-off in other units (tests, or a later option): the n-th failure
    /// in a row postpones updates by `unit` × 2^min(5, n).
    pub fn with_backoff(unit: Duration) -> DynDnsState {
        DynDnsState {
            kites: BTreeMap::new(),
            in_flight: None,
            failures: 0,
            postponed_until: None,
            unit,
        }
    }

    /// Given each kite domain's frontend addresses now (domains with no
    /// live tunnel left out or empty), the next update to send, if one is
    /// due; it is then in flight until [`finished`](Self::finished).
    /// Domains no longer wanted are forgotten, so they are updated again
    /// when they come back (as pagekite.py does).
    pub fn next_update(
        &mut self,
        now: Instant,
        wanted: &BTreeMap<String, Vec<IpAddr>>,
    ) -> Option<Due> {
        let flying = self.in_flight.as_ref().map(|d| d.domain.clone());
        self.kites.retain(|domain, _| {
            wanted.get(domain).is_some_and(|ips| !ips.is_empty()) || flying.as_ref() == Some(domain)
        });
        for (domain, ips) in wanted {
            if !ips.is_empty() {
                self.kites.entry(domain.clone()).or_insert(Kite {
                    confirmed: None,
                    status: Status::Waiting,
                });
            }
        }
        if self.in_flight.is_some() || self.postponed_until.is_some_and(|t| now < t) {
            return None;
        }
        let (domain, ips) = wanted.iter().find(|(domain, ips)| {
            let set: BTreeSet<IpAddr> = ips.iter().copied().collect();
            !ips.is_empty()
                && self
                    .kites
                    .get(*domain)
                    .is_some_and(|k| k.confirmed.as_ref() != Some(&set))
        })?;
        if let Some(kite) = self.kites.get_mut(domain) {
            kite.status = Status::Updating;
        }
        let due = Due {
            domain: domain.clone(),
            ips: ips.clone(),
        };
        self.in_flight = Some(due.clone());
        Some(due)
    }

    /// The update in flight ended with `outcome` (a transport failure or a
    /// timeout is `Outcome::Failed(Failure::Transport(…))`).
    pub fn finished(&mut self, outcome: Outcome, now: Instant) {
        let Some(due) = self.in_flight.take() else {
            return;
        };
        let kite = self.kites.get_mut(&due.domain);
        match outcome {
            Outcome::Failed(failure) => {
                self.failures = self.failures.saturating_add(1);
                let shift = self.failures.min(BACKOFF_MAX_SHIFT);
                self.postponed_until = Some(now + self.unit * (1u32 << shift));
                if let Some(kite) = kite {
                    kite.status = Status::Failed(failure);
                }
            }
            ok => {
                self.failures = 0;
                self.postponed_until = None;
                if let Some(kite) = kite {
                    kite.confirmed = Some(due.ips.iter().copied().collect());
                    kite.status = Status::Done(ok);
                }
            }
        }
    }

    /// Lifts a running back-off (an operator's "try again now"); the count
    /// of failures stays, so another failure waits longer than the last.
    pub fn retry_now(&mut self) {
        self.postponed_until = None;
    }

    /// When to call [`next_update`](Self::next_update) again without a
    /// change: the end of a back-off, if one is running.
    pub fn next_wake(&self) -> Option<Instant> {
        self.postponed_until
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// One line per kite domain for the status file.
    pub fn status(&self, now: Instant) -> Vec<(String, String)> {
        self.kites
            .iter()
            .map(|(domain, kite)| {
                let text = match &kite.status {
                    Status::Waiting => "update pending".to_string(),
                    Status::Updating => "updating".to_string(),
                    Status::Done(outcome) => {
                        let ips: Vec<String> = kite
                            .confirmed
                            .iter()
                            .flatten()
                            .map(IpAddr::to_string)
                            .collect();
                        let verb = match outcome {
                            Outcome::Updated => "updated to",
                            _ => "already at",
                        };
                        format!("{verb} {}", ips.join(","))
                    }
                    Status::Failed(why) => match self.postponed_until {
                        Some(at) if at > now => format!(
                            "update failed: {why}; retrying in {} s",
                            (at - now).as_secs()
                        ),
                        _ => format!("update failed: {why}; retrying"),
                    },
                };
                (domain.clone(), text)
            })
            .collect()
    }
}
