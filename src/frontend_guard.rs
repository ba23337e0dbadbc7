//! What one backend may cost a frontend through the tunnel handshake, before
//! and after it proves a kite: the short deadline of a tunnel that has no
//! authenticated kite, the caps on in-band kite rounds (AddKites NOOPs) and
//! on session ids per tunnel, and the bytes of session state, which count
//! against `--buffers` like the connection buffers do. Only counts and
//! times; judging kites is `auth`'s, the wire format `handshake`'s.
//!
//! What a real backend sends, for the limits below: pagekite.py and rkite
//! answer a challenge with one NOOP round (a second if the challenge window
//! turned meanwhile), and rkite adds kites after a reload with two rounds.

use std::time::{Duration, Instant};

use mio::Token;

use super::State;
use crate::engine::unix_now;
use crate::random;
pub use crate::tunnel::Rounds;

/// A tunnel without an authenticated kite is closed after this long. The
/// in-band answer to a challenge is one round trip, so a few seconds is
/// ample even on a slow link; an attacker's tunnel costs us at most this.
pub const UNAUTHENTICATED_TIMEOUT: Duration = Duration::from_secs(5);
/// In-band kite rounds a tunnel may send before it has any kite.
pub const UNAUTHENTICATED_ROUNDS: u32 = 4;
/// In-band kite rounds an authenticated tunnel may send in a burst...
pub const INBAND_BURST: u32 = 16;
/// ...and how often it earns one more after that.
pub const INBAND_REFILL: Duration = Duration::from_secs(5);
/// Session ids remembered per tunnel: the newest, which is what a
/// reconnecting backend names in X-PageKite-Replace.
pub const MAX_SESSIONS: usize = 4;

pub use crate::why::RoundRefusal;

/// The refusals this guard gives, with its limits in them.
const UNAUTHENTICATED: RoundRefusal = RoundRefusal::Unauthenticated {
    rounds: UNAUTHENTICATED_ROUNDS,
};
const TOO_FAST: RoundRefusal = RoundRefusal::TooFast {
    burst: INBAND_BURST,
    refill_secs: INBAND_REFILL.as_secs(),
};

impl Default for Rounds {
    fn default() -> Rounds {
        Rounds {
            unauthenticated: 0,
            tokens: INBAND_BURST,
            refilled: None,
        }
    }
}

impl Rounds {
    /// Takes one round, or says why the tunnel may not have it.
    pub fn take(&mut self, authenticated: bool, now: Instant) -> Result<(), RoundRefusal> {
        if !authenticated {
            self.unauthenticated += 1;
            return if self.unauthenticated > UNAUTHENTICATED_ROUNDS {
                Err(UNAUTHENTICATED)
            } else {
                Ok(())
            };
        }
        let since = *self.refilled.get_or_insert(now);
        let earned = now.saturating_duration_since(since).as_secs() / INBAND_REFILL.as_secs();
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(INBAND_BURST);
            self.refilled = Some(now);
        }
        if self.tokens == 0 {
            return Err(TOO_FAST);
        }
        self.tokens -= 1;
        Ok(())
    }
}

/// Bytes one remembered session id costs: its text twice (the table and
/// the tunnel's list), the two `String`s and the table entry.
fn cost(id: &str) -> usize {
    2 * (id.len() + std::mem::size_of::<String>()) + std::mem::size_of::<Token>() + 16
}

/// A fresh session id (`HEXTIME:SHA1`-shaped, as pagekite.py's) for the
/// tunnel `token`, remembered in the table and in `sessions`, the tunnel's
/// own list; the oldest beyond [`MAX_SESSIONS`] is forgotten.
pub fn new_session(fe: &mut State, token: Token, sessions: &mut Vec<String>) -> String {
    let id = format!("{:x}:{}", unix_now(), random::hex(20));
    while sessions.len() >= MAX_SESSIONS {
        let old = sessions.remove(0);
        forget(fe, &old);
    }
    fe.handshake_bytes += cost(&id);
    fe.sessions.insert(id.clone(), token);
    sessions.push(id.clone());
    id
}

/// Forgets the session ids of a closed tunnel.
pub fn forget_sessions(fe: &mut State, sessions: &[String]) {
    for id in sessions {
        forget(fe, id);
    }
}

fn forget(fe: &mut State, id: &str) {
    if fe.sessions.remove(id).is_some() {
        fe.handshake_bytes = fe.handshake_bytes.saturating_sub(cost(id));
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests need a base instant
mod tests {
    use super::*;

    #[test]
    fn an_unauthenticated_tunnel_gets_a_few_rounds() {
        let now = Instant::now();
        let mut r = Rounds::default();
        for _ in 0..UNAUTHENTICATED_ROUNDS {
            assert_eq!(r.take(false, now), Ok(()));
        }
        assert_eq!(r.take(false, now), Err(UNAUTHENTICATED));
    }

    #[test]
    fn an_authenticated_tunnel_gets_a_burst_then_a_rate() {
        let now = Instant::now();
        let mut r = Rounds::default();
        for _ in 0..INBAND_BURST {
            assert_eq!(r.take(true, now), Ok(()));
        }
        assert_eq!(r.take(true, now), Err(TOO_FAST));
        assert_eq!(r.take(true, now + INBAND_REFILL / 2), Err(TOO_FAST));
        assert_eq!(r.take(true, now + INBAND_REFILL), Ok(()));
        assert_eq!(r.take(true, now + INBAND_REFILL), Err(TOO_FAST));
        let later = now + INBAND_REFILL * (2 * INBAND_BURST + 1);
        for _ in 0..INBAND_BURST {
            assert_eq!(r.take(true, later), Ok(()));
        }
        assert_eq!(r.take(true, later), Err(TOO_FAST));
    }
}
