//! Unit tests of the `--frontends` choice policy: measurements and times go
//! in, verdicts come out; no sockets, no clock but a base instant.

use super::*;

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], 443))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn pong(uuid: &str) -> Pong {
    Pong {
        uuid: Some(uuid.to_string()),
        overloaded: false,
    }
}

#[allow(clippy::disallowed_methods)] // a base instant for the arithmetic
fn t0() -> Instant {
    Instant::now()
}

/// A pool of `wanted` over 127.0.0.2.. with one ping each (`pings[i]` ms,
/// each relay its own UUID).
fn measured(wanted: usize, pings: &[u64], now: Instant) -> Pool {
    let addrs: Vec<SocketAddr> = (0..pings.len()).map(|i| addr(2 + i as u8)).collect();
    let mut pool = Pool::new(wanted);
    pool.set_addresses(&addrs, &[]);
    for (a, p) in addrs.iter().zip(pings) {
        pool.record(*a, now, Ok((ms(*p), pong(&format!("relay-{a}")))));
    }
    pool
}

fn verdict(d: &Decision, a: SocketAddr) -> Verdict {
    d.get(a)
        .map(|r| r.verdict.clone())
        .expect("a ranked candidate")
}

#[test]
fn the_pong_of_an_rkite_frontend_is_understood() {
    let page = crate::proto::pages::ping_reply("291c5276d716ce588634919ad762494403d0eae5");
    let end = page
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let p = parse_pong(&page[..end + 4]).expect("a relay's answer");
    assert_eq!(
        p.uuid.as_deref(),
        Some("291c5276d716ce588634919ad762494403d0eae5")
    );
    assert!(!p.overloaded);

    let busy =
        b"HTTP/1.1 503 Unavailable\r\nX-PageKite-UUID: abc\r\nX-PageKite-Overloaded: 1\r\n\r\n";
    assert!(parse_pong(busy).expect("pong").overloaded);

    // pagekite.py's test: anything but its 503 is not a relay.
    let web = b"HTTP/1.1 200 OK\r\nServer: nginx\r\n\r\n";
    assert!(matches!(parse_pong(web), Err(ProbeError::NotARelay(_))));
    // A relay id that is not a plain token is ignored, not trusted.
    let odd = b"HTTP/1.1 503 Unavailable\r\nX-PageKite-UUID: a\x1b[2Jb\r\n\r\n";
    assert_eq!(parse_pong(odd).expect("pong").uuid, None);
}

#[test]
fn the_n_fastest_are_chosen() {
    let now = t0();
    let pool = measured(2, &[120, 10, 40], now);
    let d = pool.decide(now, &[]);
    assert_eq!(d.chosen(), [addr(3), addr(4)]);
    assert_eq!(verdict(&d, addr(2)), Verdict::Spare);
    // Best first.
    let order: Vec<SocketAddr> = d.ranked.iter().map(|r| r.addr).collect();
    assert_eq!(order, [addr(3), addr(4), addr(2)]);
}

#[test]
fn nofrontend_keeps_the_fastest_off() {
    let now = t0();
    let mut pool = Pool::new(1);
    pool.set_addresses(&[addr(2), addr(3)], &[addr(2)]);
    assert_eq!(
        pool.to_probe(),
        [addr(3)],
        "an excluded address is not even pinged"
    );
    pool.record(addr(2), now, Ok((ms(1), pong("a"))));
    pool.record(addr(3), now, Ok((ms(90), pong("b"))));
    let d = pool.decide(now, &[]);
    assert_eq!(d.chosen(), [addr(3)]);
    assert_eq!(verdict(&d, addr(2)), Verdict::Excluded);
}

#[test]
fn one_relay_under_two_addresses_counts_once() {
    let now = t0();
    let mut pool = measured(2, &[10, 12, 50], now);
    // 127.0.0.3 is 127.0.0.2 again (its IPv6 twin, say).
    pool.record(addr(3), now, Ok((ms(12), pong("relay-127.0.0.2:443"))));
    let d = pool.decide(now, &[]);
    assert_eq!(d.chosen(), [addr(2), addr(4)]);
    assert_eq!(verdict(&d, addr(3)), Verdict::Duplicate(addr(2)));
}

#[test]
fn a_live_relay_is_kept_unless_another_is_clearly_faster() {
    let now = t0();
    let pool = measured(1, &[60, 30], now);
    // Nothing live yet: the faster one.
    assert_eq!(pool.decide(now, &[]).chosen(), [addr(3)]);
    // Live on the 60 ms one: 30 ms is not worth a move.
    assert_eq!(pool.decide(now, &[addr(2)]).chosen(), [addr(2)]);
    let pool = measured(1, &[60, 5], now);
    assert_eq!(pool.decide(now, &[addr(2)]).chosen(), [addr(3)]);
}

#[test]
fn more_live_tunnels_than_wanted_push_the_others_away() {
    let now = t0();
    let pool = measured(1, &[100, 110, 20], now);
    // Two live where one is wanted: the third (80 ms faster than the best
    // live one) must also beat the 200 ms crowd penalty, and does not.
    let d = pool.decide(now, &[addr(2), addr(3)]);
    assert_eq!(d.chosen(), [addr(2)]);
    assert_eq!(verdict(&d, addr(3)), Verdict::Spare);
}

#[test]
fn a_new_relay_is_pinged_twice_before_it_is_ranked() {
    let now = t0();
    let mut pool = Pool::new(1);
    pool.set_addresses(&[addr(2), addr(3)], &[]);
    assert!(!pool.wants_another_ping(addr(2)), "not pinged yet at all");
    pool.record(addr(2), now, Ok((ms(10), pong("a"))));
    assert!(pool.wants_another_ping(addr(2)));
    pool.record(addr(2), now, Ok((ms(12), pong("a"))));
    assert!(!pool.wants_another_ping(addr(2)));
    pool.record(addr(3), now, Err(ProbeError::Timeout));
    assert!(
        !pool.wants_another_ping(addr(3)),
        "a failed relay is not pinged again"
    );
}

#[test]
fn the_average_is_over_the_last_three_pings() {
    let now = t0();
    let mut pool = Pool::new(1);
    pool.set_addresses(&[addr(2)], &[]);
    for p in [1000, 10, 20, 30] {
        pool.record(addr(2), now, Ok((ms(p), pong("a"))));
    }
    assert_eq!(pool.candidates()[0].ping(), Some(ms(20)));
}

#[test]
fn an_overloaded_relay_counts_as_farther() {
    let now = t0();
    let mut pool = measured(1, &[10, 200], now);
    let busy = Pong {
        uuid: Some("x".into()),
        overloaded: true,
    };
    pool.record(addr(2), now, Ok((ms(10), busy)));
    // (10 + 10 + 250) / 2 = 135 ms is still faster than 200 ms...
    assert_eq!(pool.candidates()[0].ping(), Some(ms(135)));
    assert_eq!(pool.decide(now, &[]).chosen(), [addr(2)]);
}

#[test]
fn errors_penalise_and_the_penalty_decays() {
    let now = t0();
    let mut pool = measured(1, &[10, 300], now);
    pool.tunnel_failed(addr(2), now);
    // 10 ms + 1 s of penalty loses against 300 ms.
    assert_eq!(pool.decide(now, &[]).chosen(), [addr(3)]);
    // Half an hour later the failure is forgiven.
    assert_eq!(pool.decide(now + ERROR_DECAY, &[]).chosen(), [addr(2)]);
    // Halfway through, the penalty is half a second.
    let d = pool.decide(now + ERROR_DECAY / 2, &[]);
    assert_eq!(
        d.get(addr(2)).and_then(|r| r.score),
        Some(ms(10 + 500) + SWITCH_MARGIN)
    );
}

#[test]
fn a_failed_ping_rules_out_a_relay_we_have_no_tunnel_to() {
    let now = t0();
    let mut pool = measured(1, &[10, 300], now);
    pool.record(addr(2), now, Err(ProbeError::Timeout));
    let d = pool.decide(now, &[]);
    assert_eq!(d.chosen(), [addr(3)]);
    assert_eq!(verdict(&d, addr(2)), Verdict::Unreachable);
    // With a live tunnel it stays usable, but ranks after a healthy one.
    assert_eq!(pool.decide(now, &[addr(2)]).chosen(), [addr(3)]);
    let mut alone = measured(1, &[10], now);
    alone.record(addr(2), now, Err(ProbeError::Closed));
    assert_eq!(alone.decide(now, &[addr(2)]).chosen(), [addr(2)]);
    // A good ping clears the failure (the penalty stays for a while).
    pool.record(addr(2), now, Ok((ms(10), pong("a"))));
    assert_eq!(verdict(&pool.decide(now, &[]), addr(2)), Verdict::Spare);
}

#[test]
fn a_new_lookup_keeps_history_and_forgets_vanished_addresses() {
    let now = t0();
    let mut pool = measured(1, &[10, 20], now);
    pool.set_addresses(&[addr(3), addr(9), addr(3)], &[]);
    let addrs: Vec<SocketAddr> = pool.candidates().iter().map(|c| c.addr).collect();
    assert_eq!(addrs, [addr(3), addr(9)], "deduplicated, 127.0.0.2 gone");
    assert_eq!(pool.candidates()[0].ping(), Some(ms(20)));
    let d = pool.decide(now, &[]);
    assert_eq!(d.chosen(), [addr(3)]);
    assert_eq!(verdict(&d, addr(9)), Verdict::Untested);
}
