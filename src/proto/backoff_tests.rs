//! Tests of `backoff.rs`: the delays, the reset, and how few lines an
//! outage logs, over simulated time.
use std::time::{Duration, Instant};

use super::*;

#[allow(clippy::disallowed_methods)] // a base instant for the arithmetic
fn t0() -> Instant {
    Instant::now()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn delays_grow_to_the_cap_with_jitter_below_it() {
    let now = t0();
    for (unit, scale) in [(0.0, 1.0), (0.5, 0.875), (0.999_999, 0.75)] {
        let mut r: Reconnect = Reconnect::new(Policy::default());
        let delays: Vec<f64> = (0..12)
            .map(|_| {
                r.failed(now, FailureKind::Refused, unit)
                    .delay
                    .as_secs_f64()
            })
            .collect();
        let want: Vec<f64> = [
            1.0,
            1.5,
            2.25,
            3.375,
            5.0625,
            7.59375,
            11.390625,
            17.0859375,
            25.62890625,
            30.0,
            30.0,
            30.0,
        ]
        .iter()
        .map(|d| d * scale)
        .collect();
        for (got, want) in delays.iter().zip(&want) {
            assert!((got - want).abs() < 1e-3, "{delays:?} vs {want:?}");
        }
    }
    // Odd random numbers never stretch a delay past the cap.
    let mut r: Reconnect = Reconnect::new(Policy::default());
    for unit in [f64::NAN, -1.0, 7.0, f64::INFINITY] {
        assert!(r.failed(now, FailureKind::Refused, unit).delay <= secs(30.0));
    }
    for _ in 0..6 {
        r.failed(now, FailureKind::Refused, 0.0);
    }
    for _ in 0..100 {
        assert_eq!(r.failed(now, FailureKind::Refused, 0.0).delay, secs(30.0));
    }
}

/// A frontend unreachable from `t0` until `down_for`, attempts at once and
/// then after each delay; returns when the tunnel came back and the notes.
fn outage(
    r: &mut Reconnect,
    start: Instant,
    down_for: f64,
    kind: FailureKind,
) -> (f64, Vec<String>) {
    let mut now = start;
    let mut notes = Vec::new();
    for _ in 0..10_000 {
        if now >= start + secs(down_for) {
            notes.extend(r.up(now).map(|n| n.to_string()));
            return ((now - start).as_secs_f64(), notes);
        }
        let step = r.failed(now, kind, 0.5);
        notes.extend(step.note.map(|n| n.to_string()));
        now += step.delay;
    }
    panic!("never reconnected");
}

#[test]
fn a_short_restart_reconnects_within_seconds() {
    let start = t0();
    let mut r: Reconnect = Reconnect::new(Policy::default());
    r.up(start);
    // Up for a minute, then the frontend restarts for 3 s.
    let lost = start + secs(60.0);
    let (back, notes) = outage(&mut r, lost, 3.0, FailureKind::Refused);
    assert!(back <= 7.0, "back after {back} s");
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].starts_with("connection refused"), "{notes:?}");
    assert!(
        notes[1].starts_with("back after 3 failed attempt(s)"),
        "{notes:?}"
    );
}

#[test]
fn a_long_outage_logs_a_few_lines_and_ends_within_the_cap() {
    let start = t0();
    let mut r: Reconnect = Reconnect::new(Policy::default());
    // Started before the network: names don't resolve for 40 s (today:
    // 27 WARN lines in 40 s, one per attempt).
    let (back, notes) = outage(&mut r, start, 40.0, FailureKind::Resolve);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(back <= 40.0 + 30.0, "{back}");
    // Down for an hour: a summary every 5 minutes, and back within the cap
    // of the network's return.
    let mut r: Reconnect = Reconnect::new(Policy::default());
    let (back, notes) = outage(&mut r, start, 3600.0, FailureKind::Unreachable);
    assert!(back <= 3600.0 + 30.0, "{back}");
    let summaries = notes.iter().filter(|n| n.starts_with("still")).count();
    assert!((11..=12).contains(&summaries), "{notes:#?}");
    assert_eq!(notes.len(), summaries + 2, "{notes:#?}");
    assert!(
        notes[1].starts_with("still network unreachable: "),
        "{notes:#?}"
    );
}

#[test]
fn a_new_kind_of_failure_is_one_line() {
    let now = t0();
    let mut r: Reconnect = Reconnect::new(Policy::default());
    assert_eq!(
        r.failed(now, FailureKind::Resolve, 0.0).note,
        Some(Note::Failing {
            kind: FailureKind::Resolve
        })
    );
    assert_eq!(r.failed(now, FailureKind::Resolve, 0.0).note, None);
    assert_eq!(
        r.failed(now, FailureKind::Refused, 0.0).note,
        Some(Note::KindChanged {
            from: FailureKind::Resolve,
            to: FailureKind::Refused,
            attempts: 2
        })
    );
    assert_eq!(r.failed(now, FailureKind::Refused, 0.0).note, None);
    assert_eq!(r.attempts(), 4);
    assert!(r.is_failing());
    assert_eq!(
        r.up(now + secs(10.0)),
        Some(Note::Recovered {
            attempts: 4,
            after: secs(10.0)
        })
    );
    assert!(!r.is_failing());
    assert_eq!(r.attempts(), 0);
    // Coming up the first time is no news.
    let mut fresh: Reconnect = Reconnect::new(Policy::default());
    assert_eq!(fresh.up(now), None);
}

#[test]
fn only_a_stable_tunnel_resets_the_growth() {
    let now = t0();
    let mut r: Reconnect = Reconnect::new(Policy::default());
    for _ in 0..4 {
        r.failed(now, FailureKind::Refused, 0.0);
    }
    // Accepted, then dropped after 5 s: keeps backing off (1.5^4 s).
    r.up(now + secs(10.0));
    let step = r.failed(now + secs(15.0), FailureKind::Lost, 0.0);
    assert_eq!(step.delay, secs(5.0625));
    // Up for 30 s: the next loss retries after the first delay again.
    r.up(now + secs(40.0));
    let step = r.failed(now + secs(70.0), FailureKind::Lost, 0.0);
    assert_eq!(step.delay, secs(1.0));
    assert_eq!(
        step.note,
        Some(Note::Failing {
            kind: FailureKind::Lost
        })
    );
}

#[test]
fn policy_knobs() {
    let now = t0();
    let policy = Policy {
        first: Duration::from_millis(100),
        max: Duration::from_millis(250),
        growth: 2.0,
        stable_after: secs(1.0),
        summary_every: secs(2.0),
        jitter: 0.0,
    };
    let mut r: Reconnect<&str> = Reconnect::new(policy);
    let delays: Vec<Duration> = (0..4).map(|_| r.failed(now, "x", 0.9).delay).collect();
    assert_eq!(
        delays,
        [100, 200, 250, 250].map(Duration::from_millis).to_vec()
    );
    assert_eq!(
        r.failed(now + secs(2.0), "x", 0.0).note,
        Some(Note::StillFailing {
            kind: "x",
            attempts: 5,
            since: secs(2.0)
        })
    );
    assert_eq!(r.failed(now + secs(3.0), "x", 0.0).note, None);
}

#[test]
fn reset_forgets_the_growth_but_not_the_outage() {
    let now = t0();
    let mut r: Reconnect = Reconnect::new(Policy::default());
    for _ in 0..6 {
        r.failed(now, FailureKind::Timeout, 0.0);
    }
    r.reset();
    let step = r.failed(now, FailureKind::Timeout, 0.0);
    assert_eq!((step.delay, step.note), (secs(1.0), None));
    assert_eq!(r.attempts(), 7);
}
