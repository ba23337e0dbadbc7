//! The reconnect policy of one backend frontend slot (issue 13 item 4):
//! how long to wait before the next attempt, and which failures are worth a
//! log line. Delays grow from `first` (1 s), by `growth` (1.5×) a time, to
//! `max` (30 s) (gently: a frontend back after a 5 s restart is found within
//! about 3 s, and the cap is reached after about a minute),
//! each shortened by up to `jitter` (25 %) from a random number the caller
//! supplies, so restarted backends spread out and never wait past the cap.
//! The growth resets only once a tunnel has stayed up for `stable_after`
//! (30 s): a frontend that accepts and drops at once is not hammered. Log
//! notes come once per state change (first failure, a different kind of
//! failure, recovery) plus a summary every `summary_every` (5 min) while
//! it keeps failing, instead of a line per attempt.
//!
//! Pure: no clock (times are arguments), no randomness, no logging (it
//! returns [`Note`]s for the caller to print with its own prefix).

use std::fmt;
use std::time::{Duration, Instant};

/// The knobs, with the defaults issue 13 asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// The first delay (and the delay after a tunnel was stable).
    pub first: Duration,
    /// No delay is longer.
    pub max: Duration,
    /// Each delay is this many times the one before.
    pub growth: f64,
    /// A tunnel up this long resets the growth.
    pub stable_after: Duration,
    /// While failing, a summary note this often.
    pub summary_every: Duration,
    /// The largest fraction by which a delay is shortened at random.
    pub jitter: f64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
            growth: 1.5,
            stable_after: Duration::from_secs(30),
            summary_every: Duration::from_secs(300),
            jitter: 0.25,
        }
    }
}

/// Why an attempt failed, coarsely: a change of kind is worth a log line,
/// another attempt failing the same way is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The frontend's name does not resolve (yet).
    Resolve,
    /// No route, network down, host unreachable.
    Unreachable,
    /// The host is up, nothing listens (a relay restarting).
    Refused,
    /// Connect or handshake timed out.
    Timeout,
    /// TLS failed (certificate, protocol).
    Tls,
    /// The outbound proxy refused or failed.
    Proxy,
    /// The frontend rejected the kites.
    Rejected,
    /// A live tunnel closed.
    Lost,
    Other,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Resolve => "name does not resolve",
            FailureKind::Unreachable => "network unreachable",
            FailureKind::Refused => "connection refused",
            FailureKind::Timeout => "timed out",
            FailureKind::Tls => "TLS failed",
            FailureKind::Proxy => "proxy failed",
            FailureKind::Rejected => "kites rejected",
            FailureKind::Lost => "tunnel lost",
            FailureKind::Other => "failed",
        })
    }
}

/// Something worth one log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note<K> {
    /// The first failure after being up (or since start).
    Failing { kind: K },
    /// Still failing, differently.
    KindChanged { from: K, to: K, attempts: u32 },
    /// Still failing the same way (every `summary_every`).
    StillFailing {
        kind: K,
        attempts: u32,
        since: Duration,
    },
    /// Up again after `attempts` failures over `after`.
    Recovered { attempts: u32, after: Duration },
}

impl<K: fmt::Display> fmt::Display for Note<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Failing { kind } => {
                write!(f, "{kind}: backing off, quiet until something changes")
            }
            Note::KindChanged { from, to, attempts } => {
                write!(f, "now {to} (was {from}, {attempts} attempt(s) so far)")
            }
            Note::StillFailing {
                kind,
                attempts,
                since,
            } => write!(
                f,
                "still {kind}: {attempts} attempt(s) in {} s",
                since.as_secs()
            ),
            Note::Recovered { attempts, after } => write!(
                f,
                "back after {attempts} failed attempt(s) in {:.1} s",
                after.as_secs_f64()
            ),
        }
    }
}

/// What to do after a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step<K> {
    /// Wait this long before the next attempt.
    pub delay: Duration,
    /// Log this, if anything.
    pub note: Option<Note<K>>,
}

#[derive(Clone, Debug)]
enum Phase<K> {
    /// Never connected, never failed.
    Start,
    Up {
        since: Instant,
    },
    Failing {
        since: Instant,
        kind: K,
        attempts: u32,
        last_note: Instant,
    },
}

/// One slot's reconnect state.
#[derive(Clone, Debug)]
pub struct Reconnect<K = FailureKind> {
    policy: Policy,
    phase: Phase<K>,
    /// Failures since the last stable tunnel: the delay's exponent.
    streak: u32,
}

impl<K: Clone + PartialEq> Reconnect<K> {
    pub fn new(policy: Policy) -> Reconnect<K> {
        Reconnect {
            policy,
            phase: Phase::Start,
            streak: 0,
        }
    }

    /// An attempt failed, or a tunnel closed, at `now`, for reason `kind`;
    /// `unit` is a random number in [0, 1) for the jitter.
    pub fn failed(&mut self, now: Instant, kind: K, unit: f64) -> Step<K> {
        let note = match &mut self.phase {
            Phase::Start => Some(Note::Failing { kind: kind.clone() }),
            Phase::Up { since } => {
                if now.saturating_duration_since(*since) >= self.policy.stable_after {
                    self.streak = 0;
                }
                Some(Note::Failing { kind: kind.clone() })
            }
            Phase::Failing {
                since,
                kind: was,
                attempts,
                last_note,
            } => {
                *attempts = attempts.saturating_add(1);
                if *was != kind {
                    let note = Note::KindChanged {
                        from: was.clone(),
                        to: kind.clone(),
                        attempts: *attempts - 1,
                    };
                    *was = kind.clone();
                    *last_note = now;
                    Some(note)
                } else if now.saturating_duration_since(*last_note) >= self.policy.summary_every {
                    *last_note = now;
                    Some(Note::StillFailing {
                        kind: kind.clone(),
                        attempts: *attempts,
                        since: now.saturating_duration_since(*since),
                    })
                } else {
                    None
                }
            }
        };
        if !matches!(self.phase, Phase::Failing { .. }) {
            self.phase = Phase::Failing {
                since: now,
                kind,
                attempts: 1,
                last_note: now,
            };
        }
        let delay = self.delay(unit);
        self.streak = self.streak.saturating_add(1);
        Step { delay, note }
    }

    /// The tunnel is up (its kites live) at `now`.
    pub fn up(&mut self, now: Instant) -> Option<Note<K>> {
        let note = match &self.phase {
            Phase::Failing {
                since, attempts, ..
            } => Some(Note::Recovered {
                attempts: *attempts,
                after: now.saturating_duration_since(*since),
            }),
            _ => None,
        };
        self.phase = Phase::Up { since: now };
        note
    }

    /// Forget the growth (SIGUSR1, a reload, an address change): the next
    /// failure waits `first` again. What is logged is unchanged.
    pub fn reset(&mut self) {
        self.streak = 0;
    }

    /// Failures in a row since it was last up (0 when up).
    pub fn attempts(&self) -> u32 {
        match self.phase {
            Phase::Failing { attempts, .. } => attempts,
            _ => 0,
        }
    }

    pub fn is_failing(&self) -> bool {
        matches!(self.phase, Phase::Failing { .. })
    }

    /// `first` × growth^streak, capped at `max`, less up to `jitter` of it.
    fn delay(&self, unit: f64) -> Duration {
        let p = &self.policy;
        let growth = if p.growth.is_finite() {
            p.growth.clamp(1.0, 16.0)
        } else {
            1.0
        };
        let grown = p.first.as_secs_f64() * growth.powi(self.streak.min(64) as i32);
        let base = if grown.is_finite() && grown < p.max.as_secs_f64() {
            Duration::from_secs_f64(grown)
        } else {
            p.max
        };
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let jitter = p.jitter.clamp(0.0, 1.0);
        base.mul_f64(1.0 - jitter * unit)
    }
}

#[cfg(test)]
#[path = "backoff_tests.rs"]
mod tests;
