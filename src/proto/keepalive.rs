//! Tunnel keepalive and dead-peer detection (protocol doc §5.3). A tunnel that
//! has received nothing for one interval gets a PING; if still nothing at all
//! arrives within the grace period after it, the tunnel is dead. Any received
//! byte counts, as pagekite.py and libpagekite answer a PING at once (the
//! latter with a bare NOOP). Pure: `now` comes from the caller.

use std::time::{Duration, Instant};

/// Default seconds of silence before a PING. pagekite.py uses 116 s; a
/// shorter interval finds a half-open tunnel sooner and costs one tiny chunk.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug)]
pub struct Keepalive {
    interval: Duration,
    last_rx: Instant,
    ping_sent: Option<Instant>,
    /// A duplicate kite suggests the peer is gone: answer quickly or be.
    suspected: bool,
    /// When our latest PING went out (kept until its PONG, for the RTT).
    last_ping: Option<Instant>,
    /// Round trip of the latest PING answered with a PONG.
    rtt: Option<Duration>,
}

/// How long a suspected peer has to answer a PING.
const SUSPECT_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Nothing to do before the given instant.
    Idle(Instant),
    /// Send a PING now, check again at the given instant.
    Ping(Instant),
    /// No answer within the grace period.
    Dead,
}

impl Keepalive {
    pub fn new(interval: Duration, now: Instant) -> Keepalive {
        Keepalive {
            interval,
            last_rx: now,
            ping_sent: None,
            suspected: false,
            last_ping: None,
            rtt: None,
        }
    }

    /// Notes a PING sent outside the keepalive schedule (to measure the
    /// round trip at once).
    pub fn ping_sent(&mut self, now: Instant) {
        self.last_ping = Some(now);
    }

    /// A PONG arrived: the round trip of our latest PING.
    pub fn on_pong(&mut self, now: Instant) {
        if let Some(sent) = self.last_ping.take() {
            self.rtt = Some(now.saturating_duration_since(sent));
        }
    }

    /// The latest measured round trip, if any PING was answered yet.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// How long a PING may go unanswered: half an interval, 5 s at least
    /// (just 5 s when the peer is suspected of being gone).
    pub fn grace(&self) -> Duration {
        if self.suspected {
            return SUSPECT_GRACE;
        }
        (self.interval / 2).max(SUSPECT_GRACE)
    }

    pub fn on_receive(&mut self, now: Instant) {
        self.last_rx = now;
        self.ping_sent = None;
        self.suspected = false;
    }

    /// Forces a PING at the next check (used when a duplicate kite suggests
    /// that this tunnel might be dead).
    pub fn suspect(&mut self, now: Instant) {
        self.suspected = true;
        if self.ping_sent.is_none() {
            self.last_rx = now.checked_sub(self.interval).unwrap_or(self.last_rx);
        }
    }

    pub fn check(&mut self, now: Instant) -> Check {
        if let Some(sent) = self.ping_sent {
            let deadline = sent + self.grace();
            return if now >= deadline {
                Check::Dead
            } else {
                Check::Idle(deadline)
            };
        }
        let due = self.last_rx + self.interval;
        if now >= due {
            self.ping_sent = Some(now);
            self.last_ping = Some(now);
            Check::Ping(now + self.grace())
        } else {
            Check::Idle(due)
        }
    }
}

/// In-band kite answers went out and the frontend's verdict is not heard
/// yet. pagekite.py checks the answers on another thread and only buffers
/// its verdict until its next write to the tunnel; when its PONG to our
/// first PING went before, the verdict waits for the next keepalive, a
/// minute or more, and the kites stay down. A few PINGs, spaced out, bring
/// it. rkite and libpagekite answer at once, before the first is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nudge {
    at: Instant,
    gap: Duration,
    left: u8,
}

/// The first nudge, after the answers went out; each later one doubles it.
const NUDGE_FIRST: Duration = Duration::from_millis(500);
/// Nudges in all: the last at 15.5 s.
const NUDGES: u8 = 5;

impl Nudge {
    pub fn new(now: Instant) -> Nudge {
        Nudge {
            at: now + NUDGE_FIRST,
            gap: NUDGE_FIRST,
            left: NUDGES,
        }
    }

    /// When the next PING is due.
    pub fn at(&self) -> Instant {
        self.at
    }

    pub fn due(&self, now: Instant) -> bool {
        now >= self.at
    }

    /// After a PING at `now`: the next nudge, if any is left.
    pub fn next(self, now: Instant) -> Option<Nudge> {
        let left = self.left.saturating_sub(1);
        (left > 0).then(|| Nudge {
            at: now + self.gap * 2,
            gap: self.gap * 2,
            left,
        })
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests need a base instant
mod tests {
    use super::*;

    #[test]
    fn nudges_space_out_and_stop() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut n = Some(Nudge::new(t0));
        let mut pings = Vec::new();
        while let Some(nudge) = n {
            assert!(!nudge.due(nudge.at() - ms(1)));
            let now = nudge.at();
            assert!(nudge.due(now));
            pings.push(now.duration_since(t0).as_millis());
            n = nudge.next(now);
        }
        assert_eq!(pings, [500, 1500, 3500, 7500, 15500]);
    }

    #[test]
    fn ping_then_dead_unless_something_arrives() {
        let t0 = Instant::now();
        let s = |n| Duration::from_secs(n);
        let mut k = Keepalive::new(s(20), t0);
        assert_eq!(k.check(t0 + s(5)), Check::Idle(t0 + s(20)));
        assert_eq!(k.check(t0 + s(20)), Check::Ping(t0 + s(30)));
        assert_eq!(k.check(t0 + s(25)), Check::Idle(t0 + s(30)));
        assert_eq!(k.check(t0 + s(30)), Check::Dead);

        let mut k = Keepalive::new(s(20), t0);
        assert!(matches!(k.check(t0 + s(21)), Check::Ping(_)));
        k.on_receive(t0 + s(22));
        assert_eq!(k.check(t0 + s(30)), Check::Idle(t0 + s(42)));
    }

    #[test]
    fn a_pong_measures_the_round_trip_even_after_other_traffic() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut k = Keepalive::new(Duration::from_secs(20), t0);
        assert_eq!(k.rtt(), None);
        k.ping_sent(t0);
        k.on_receive(t0 + ms(3));
        k.on_pong(t0 + ms(7));
        assert_eq!(k.rtt(), Some(ms(7)));
        // A second PONG with no PING outstanding changes nothing.
        k.on_pong(t0 + ms(50));
        assert_eq!(k.rtt(), Some(ms(7)));
        assert!(matches!(
            k.check(t0 + Duration::from_secs(21)),
            Check::Ping(_)
        ));
        k.on_pong(t0 + Duration::from_secs(21) + ms(2));
        assert_eq!(k.rtt(), Some(ms(2)));
    }

    #[test]
    fn suspicion_pings_at_once() {
        let t0 = Instant::now() + Duration::from_secs(1000);
        let mut k = Keepalive::new(Duration::from_secs(60), t0);
        k.suspect(t0 + Duration::from_secs(1));
        assert!(matches!(
            k.check(t0 + Duration::from_secs(1)),
            Check::Ping(_)
        ));
    }
}
