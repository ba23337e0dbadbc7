//! The I/O side of `--frontends=N:NAME:PORT`: a backend following a fleet of
//! relays under one DNS name. A child of `backend` (it works on the slot
//! table). A check resolves NAME (every A and AAAA address) and the
//! `nofrontend` names off the reactor thread, pings every candidate over a
//! non-blocking connection on the reactor, hands the answers to
//! `proto::fleet`'s policy and acts on its decision: chosen addresses get a
//! pool slot and are dialed; a tunnel that was not chosen is closed only
//! once every chosen tunnel has its kites live (make before break). Checks
//! run every few minutes and soon after a pool tunnel fails. It decides
//! nothing itself and never blocks.
//!
//! Why a ping and not timing the tunnel handshake: the ping is what
//! pagekite.py measures, every PageKite relay (pagekite.py's and rkite's)
//! answers it, it costs the relay no kite registration, and it carries the
//! relay's UUID, which tells one relay under two addresses apart from two
//! relays. A probe rides in a `Tunnel` connection that never goes live (the
//! reactor drives tunnels; the probe's own steps are here).

use super::*;
use crate::proto::fleet::{self as policy, Decision, Pool, ProbeError, Verdict};
use crate::status::json_str;

/// Resolver ids and the timer slot key of the fleet, far above any slot
/// index: NAME's lookup, then one per `nofrontend` name below it.
const FLEET_ID: usize = usize::MAX;
const MAX_NEVER: usize = 1024;

pub(super) fn owns(id: usize) -> bool {
    id >= FLEET_ID - MAX_NEVER
}

/// Between checks (pagekite.py re-chooses every 15 minutes or so; a router
/// is better served a little sooner), ±20 % so backends spread out.
const RECHECK: Duration = Duration::from_secs(300);
/// pagekite.py gives a ping three seconds.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// After a pool tunnel fails: soon, but let a burst of failures settle.
const AFTER_FAILURE: Duration = Duration::from_millis(500);
/// No usable relay: check again after this, doubling up to [`RECHECK`].
const EMPTY_FIRST: Duration = Duration::from_secs(5);

enum Step {
    Idle,
    Resolving { pending: usize },
    Probing { pending: usize },
}

struct Probe {
    addr: SocketAddr,
    started: Instant,
    round: u64,
    /// The second ping of a new relay (see `policy::FIRST_SAMPLES`).
    second: bool,
    /// The answer (or failure) is recorded already.
    done: bool,
}

pub(super) struct Fleet {
    name: String,
    port: u16,
    /// `nofrontend` entries as written.
    never: Vec<(String, u16)>,
    never_addrs: Vec<SocketAddr>,
    pool: Pool,
    round: u64,
    step: Step,
    resolved: Option<Result<Vec<SocketAddr>, String>>,
    probes: HashMap<Token, Probe>,
    timer: Option<Instant>,
    /// A failure came in during a check: check again after it.
    again: bool,
    empty_rounds: u32,
    decision: Decision,
    /// Why the latest lookup of NAME failed.
    lookup_error: Option<String>,
}

impl Fleet {
    pub(super) fn new(config: &BackendSettings) -> Option<Fleet> {
        if !super::via_proxy::fleet_pings(&config.proxies) {
            // --torify: no pings (they would leave Tor); NAME is dialed as
            // a plain frontend (`via_proxy::plain_frontends`).
            return None;
        }
        let spec = config.frontend_pool.as_ref()?;
        Some(Fleet {
            name: spec.name.clone(),
            port: spec.port,
            never: config.nofrontends.clone(),
            never_addrs: Vec::new(),
            pool: Pool::new(spec.count),
            round: 0,
            step: Step::Idle,
            resolved: None,
            probes: HashMap::new(),
            timer: None,
            again: false,
            empty_rounds: 0,
            decision: Decision::default(),
            lookup_error: None,
        })
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// The armed check, as the engine's timer sweep knows it.
    pub(super) fn timer(&self) -> Option<(usize, Instant)> {
        self.timer.map(|at| (FLEET_ID, at))
    }

    /// Pings in flight (connections that are not streams).
    pub(super) fn probes(&self) -> usize {
        self.probes.len()
    }

    fn same_spec(&self, config: &BackendSettings) -> bool {
        config.frontend_pool.as_ref().is_some_and(|p| {
            p.name == self.name && p.port == self.port && p.count == self.pool.wanted()
        }) && config.nofrontends == self.never
    }

    fn label(&self) -> String {
        format!("fleet {}:{}", self.name, self.port)
    }

    /// Moves the next check to `at` if that is sooner; the engine's timer
    /// is armed by [`arm`].
    fn sooner(&mut self, at: Instant) -> bool {
        if self.timer.is_some_and(|t| t <= at) {
            return false;
        }
        self.timer = Some(at);
        true
    }
}

fn arm(eng: &mut Cx, be: &mut State, at: Instant) {
    if be.fleet.as_mut().is_some_and(|f| f.sooner(at)) {
        eng.arm_app(at, AppTimer::Slot(FLEET_ID));
    }
}

/// Starts a check (lookup, pings, decision), unless one is running.
pub(super) fn check(be: &mut State) {
    if be.stopped {
        return;
    }
    let Some(f) = be.fleet.as_mut() else { return };
    if !matches!(f.step, Step::Idle) {
        f.again = true;
        return;
    }
    f.round += 1;
    f.timer = None;
    f.resolved = None;
    f.never_addrs.clear();
    let mut pending = 1;
    be.resolver.lookup(FLEET_ID, f.round, &f.name, f.port);
    for (i, (host, port)) in f.never.iter().enumerate().take(MAX_NEVER) {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => f.never_addrs.push(SocketAddr::new(ip, *port)),
            Err(_) => {
                be.resolver.lookup(FLEET_ID - 1 - i, f.round, host, *port);
                pending += 1;
            }
        }
    }
    debug!("{}: checking (round {})", f.label(), f.round);
    f.step = Step::Resolving { pending };
}

/// A lookup of NAME or of a `nofrontend` name answered.
pub(super) fn on_resolved(
    eng: &mut Cx,
    be: &mut State,
    id: usize,
    round: u64,
    result: Result<Vec<SocketAddr>, String>,
) {
    let Some(f) = be.fleet.as_mut() else { return };
    if round != f.round {
        return;
    }
    let Step::Resolving { pending } = &mut f.step else {
        return;
    };
    *pending = pending.saturating_sub(1);
    let done = *pending == 0;
    if id == FLEET_ID {
        f.resolved = Some(result);
    } else {
        match result {
            Ok(addrs) => f.never_addrs.extend(addrs),
            Err(e) => warn!("{}: cannot resolve a nofrontend name: {e}", f.label()),
        }
    }
    if done {
        start_probes(eng, be);
    }
}

fn start_probes(eng: &mut Cx, be: &mut State) {
    let Some(f) = be.fleet.as_mut() else { return };
    match f.resolved.take() {
        Some(Ok(addrs)) => {
            if addrs.is_empty() {
                warn!("{}: the name has no address", f.label());
            }
            f.lookup_error = None;
            f.pool.set_addresses(&addrs, &f.never_addrs);
        }
        Some(Err(e)) => {
            // pagekite.py keeps what DNS said for a while: a lookup that
            // fails (the uplink is down) must not drop working relays.
            warn!(
                "{}: cannot resolve: {e}; keeping the {} known address(es)",
                f.label(),
                f.pool.candidates().len()
            );
            f.lookup_error = Some(e);
            let known: Vec<SocketAddr> = f.pool.candidates().iter().map(|c| c.addr).collect();
            f.pool.set_addresses(&known, &f.never_addrs);
        }
        None => {}
    }
    let targets = f.pool.to_probe();
    let round = f.round;
    f.step = Step::Probing { pending: 0 };
    let mut started = 0;
    for addr in targets {
        match start_probe(eng, be, addr, round, false) {
            Ok(()) => started += 1,
            Err(e) => {
                debug!("fleet: ping of {addr} failed: {e}");
                let now = eng.now;
                if let Some(f) = be.fleet.as_mut() {
                    f.pool.record(addr, now, Err(e));
                }
            }
        }
    }
    if let Some(f) = be.fleet.as_mut() {
        f.step = Step::Probing { pending: started };
    }
    if started == 0 {
        decide(eng, be);
    }
}

/// Opens a ping connection (non-blocking; the reactor drives it).
fn start_probe(
    eng: &mut Cx,
    be: &mut State,
    addr: SocketAddr,
    round: u64,
    second: bool,
) -> Result<(), ProbeError> {
    // Through the proxy chain, if any, as pagekite.py pings.
    let (dial, chain) = super::via_proxy::probe_route(&be.settings.proxies, addr);
    let sock = TcpStream::connect(dial).map_err(|e| ProbeError::Connect(e.to_string()))?;
    let token = add_dialing(eng, sock, addr, usize::MAX, true)
        .map_err(|e| ProbeError::Connect(e.to_string()))?;
    if let Some(Conn::Tunnel(t)) = eng.conns.get_mut(token) {
        if let Side::Backend(info) = &mut t.side {
            info.proxy = chain;
        }
    }
    eng.arm(token, TimerKind::Deadline, eng.now + PROBE_TIMEOUT);
    let started = eng.now;
    if let Some(f) = be.fleet.as_mut() {
        f.probes.insert(
            token,
            Probe {
                addr,
                started,
                round,
                second,
                done: false,
            },
        );
    }
    debug!("[t{}] fleet: pinging {addr}", tag(token));
    Ok(())
}

/// A ping connection's steps: connect, ask, read the answer, close.
pub(super) fn drive_probe(
    eng: &mut Cx,
    be: &mut State,
    token: Token,
    t: &mut Tunnel,
) -> Result<(), Why> {
    if t.pre == Phase::Dialing {
        match t.dial_finished() {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(why) => return Err(super::via_proxy::dial_failed(be, &t.side, why)),
        }
        if !super::via_proxy::start(t) {
            t.out.extend(policy::PING_REQUEST);
            t.pre = Phase::AwaitingReply;
        }
    }
    if t.pre == Phase::Proxy {
        if !super::via_proxy::drive(be, token, t)? {
            return Ok(());
        }
        t.out.extend(policy::PING_REQUEST);
        t.pre = Phase::AwaitingReply;
    }
    if t.pre == Phase::AwaitingReply {
        let Some(head) = read_head(t)? else {
            return Ok(());
        };
        record(eng, be, token, policy::parse_pong(head.as_bytes()));
        t.pre = Phase::Closing;
    }
    Ok(())
}

fn record(eng: &mut Cx, be: &mut State, token: Token, outcome: Result<policy::Pong, ProbeError>) {
    let now = eng.now;
    let Some(f) = be.fleet.as_mut() else { return };
    let Some(p) = f.probes.get_mut(&token) else {
        return;
    };
    if p.done {
        return;
    }
    p.done = true;
    let rtt = now.saturating_duration_since(p.started);
    match &outcome {
        Ok(pong) => debug!(
            "[t{}] fleet: {} answered in {:.1} ms (relay {}{})",
            tag(token),
            p.addr,
            rtt.as_secs_f64() * 1e3,
            pong.uuid.as_deref().unwrap_or("without id"),
            if pong.overloaded { ", overloaded" } else { "" }
        ),
        Err(e) => debug!("[t{}] fleet: ping of {} failed: {e}", tag(token), p.addr),
    }
    let addr = p.addr;
    f.pool.record(addr, now, outcome.map(|pong| (rtt, pong)));
}

/// A ping connection closed: its failure is recorded if no answer was, and
/// the round is decided once its last ping is in.
pub(super) fn probe_closed(eng: &mut Cx, be: &mut State, token: Token, why: &Why) {
    let failure = match why {
        Why::Timeout(_) => ProbeError::Timeout,
        Why::PeerClosed => ProbeError::Closed,
        Why::Failed(f) => ProbeError::Connect(f.to_string()),
        Why::Protocol(what) => ProbeError::NotARelay(what.to_string()),
        other => ProbeError::Connect(other.to_string()),
    };
    record(eng, be, token, Err(failure));
    let Some(f) = be.fleet.as_mut() else { return };
    let Some(p) = f.probes.remove(&token) else {
        return;
    };
    if p.round != f.round || !matches!(f.step, Step::Probing { .. }) {
        return;
    }
    if !p.second && f.pool.wants_another_ping(p.addr) {
        match start_probe(eng, be, p.addr, p.round, true) {
            // It stands in for this one in the round's count.
            Ok(()) => return,
            Err(e) => {
                let now = eng.now;
                if let Some(f) = be.fleet.as_mut() {
                    f.pool.record(p.addr, now, Err(e));
                }
            }
        }
    }
    let Some(f) = be.fleet.as_mut() else { return };
    let Step::Probing { pending } = &mut f.step else {
        return;
    };
    *pending = pending.saturating_sub(1);
    if *pending == 0 {
        decide(eng, be);
    }
}

/// One pool slot as the decision sees it.
struct PoolTunnel {
    slot: usize,
    addr: SocketAddr,
    token: Option<Token>,
    /// Connected with kites live.
    live: bool,
}

/// The pool's slots; `current` is a tunnel being driven right now (out of
/// the table), known to be live.
fn pool_tunnels(eng: &mut Cx, be: &mut State, current: Option<Token>) -> Vec<PoolTunnel> {
    let slots: Vec<(usize, SocketAddr, SlotState)> = be
        .slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.pool && s.state != SlotState::Removed)
        .filter_map(|(i, s)| {
            let ip = s.host.parse::<IpAddr>().ok()?;
            Some((i, SocketAddr::new(ip, s.port), s.state))
        })
        .collect();
    slots
        .into_iter()
        .map(|(slot, addr, st)| {
            let token = match st {
                SlotState::Connected(t) => Some(t),
                _ => None,
            };
            let live = token.is_some_and(|t| {
                Some(t) == current
                    || matches!(eng.conns.get_mut(t),
                        Some(Conn::Tunnel(tun)) if matches!(&tun.side,
                            Side::Backend(info) if info.has_kites()))
            });
            PoolTunnel {
                slot,
                addr,
                token,
                live,
            }
        })
        .collect()
}

/// The round is measured: rank, log what changed, act, schedule the next.
fn decide(eng: &mut Cx, be: &mut State) {
    let now = eng.now;
    if be.stopped {
        if let Some(f) = be.fleet.as_mut() {
            f.step = Step::Idle;
        }
        return;
    }
    let tunnels = pool_tunnels(eng, be, None);
    let live: Vec<SocketAddr> = tunnels.iter().filter(|t| t.live).map(|t| t.addr).collect();
    let Some(f) = be.fleet.as_mut() else { return };
    let decision = f.pool.decide(now, &live);
    log_changes(f, &decision);
    f.decision = decision;
    f.step = Step::Idle;
    let chosen = f.decision.chosen();
    let next = if f.again {
        f.again = false;
        AFTER_FAILURE
    } else if chosen.is_empty() {
        let d = EMPTY_FIRST
            .saturating_mul(1u32 << f.empty_rounds.min(6))
            .min(RECHECK);
        f.empty_rounds = f.empty_rounds.saturating_add(1);
        warn!(
            "{}: no usable relay among {} address(es); checking again in {} s",
            f.label(),
            f.pool.candidates().len(),
            d.as_secs()
        );
        d
    } else {
        f.empty_rounds = 0;
        RECHECK.mul_f64(0.8 + 0.4 * random::unit())
    };
    arm(eng, be, now + next);
    apply(eng, be, &chosen, tunnels);
    eng.status_changed();
}

/// One info line per candidate whose place changed.
fn log_changes(f: &Fleet, decision: &Decision) {
    let ms = |d: Option<Duration>| {
        d.map_or("-".to_string(), |d| {
            format!("{:.1} ms", d.as_secs_f64() * 1e3)
        })
    };
    for r in &decision.ranked {
        let before = f.decision.get(r.addr).map(|b| &b.verdict);
        if before == Some(&r.verdict) {
            continue;
        }
        let error = f
            .pool
            .candidates()
            .iter()
            .find(|c| c.addr == r.addr)
            .and_then(|c| c.error.as_ref())
            .map(|e| format!(": {}", logging::escape(&e.to_string())))
            .unwrap_or_default();
        let times = format!("ping {}, score {}", ms(r.ping), ms(r.score));
        match (&r.verdict, before) {
            (Verdict::Chosen, _) => info!("{}: {} chosen ({times})", f.label(), r.addr),
            (Verdict::Excluded, _) => info!("{}: {} excluded by nofrontend", f.label(), r.addr),
            (v, Some(Verdict::Chosen)) => info!(
                "{}: {} dropped, now {} ({times}){error}",
                f.label(),
                r.addr,
                v.name()
            ),
            (v, _) => debug!("{}: {} {} ({times}){error}", f.label(), r.addr, v.name()),
        }
    }
    for old in &f.decision.ranked {
        if old.verdict == Verdict::Chosen && decision.get(old.addr).is_none() {
            info!("{}: {} dropped: no longer in DNS", f.label(), old.addr);
        }
    }
}

/// Dials chosen addresses that have no slot; forgets slots that are not
/// chosen and have no live tunnel; live ones wait for [`settle`].
fn apply(eng: &mut Cx, be: &mut State, chosen: &[SocketAddr], tunnels: Vec<PoolTunnel>) {
    let mut closing = Vec::new();
    for t in &tunnels {
        if chosen.contains(&t.addr) || t.live {
            continue;
        }
        if let Some(s) = be.slots.get_mut(t.slot) {
            s.state = SlotState::Removed;
        }
        closing.extend(t.token);
    }
    let mut dialing = Vec::new();
    for addr in chosen {
        if tunnels.iter().any(|t| t.addr == *addr) {
            continue;
        }
        let mut fresh = Slot::new(&addr.ip().to_string(), addr.port());
        fresh.pool = true;
        match be.slots.iter().position(|s| s.state == SlotState::Removed) {
            Some(i) => {
                if let Some(s) = be.slots.get_mut(i) {
                    *s = fresh;
                }
                dialing.push(i);
            }
            None => {
                be.slots.push(fresh);
                dialing.push(be.slots.len() - 1);
            }
        }
    }
    for token in closing {
        relay::discard(eng, be, token, &Why::Operator("relay no longer chosen"));
    }
    for slot in dialing {
        dial(eng, be, slot);
    }
    settle(eng, be, None);
}

/// Make before break: once every chosen relay's tunnel has its kites live,
/// tunnels to relays no longer chosen are closed. `current` is a tunnel
/// being driven now (just gone live); it is never closed from here.
pub(super) fn settle(eng: &mut Cx, be: &mut State, current: Option<Token>) {
    let tunnels = pool_tunnels(eng, be, current);
    let Some(f) = be.fleet.as_mut() else {
        return;
    };
    let chosen = f.decision.chosen();
    let label = f.label();
    // Nothing usable chosen (DNS said nothing, every ping failed): keep
    // what works rather than break without a make.
    let ready = !chosen.is_empty()
        && chosen
            .iter()
            .all(|a| tunnels.iter().any(|t| t.addr == *a && t.live));
    if !ready {
        return;
    }
    for t in tunnels {
        let Some(token) = t.token else { continue };
        if chosen.contains(&t.addr) || Some(token) == current {
            continue;
        }
        info!(
            "{label}: closing the tunnel to {}: the chosen relays carry the kites now",
            t.addr
        );
        if let Some(s) = be.slots.get_mut(t.slot) {
            s.state = SlotState::Removed;
        }
        relay::discard(eng, be, token, &Why::Operator("replaced by a better relay"));
    }
}

/// The check timer.
pub(super) fn on_timer(be: &mut State, at: Instant) {
    let Some(f) = be.fleet.as_mut() else { return };
    if f.timer != Some(at) {
        return;
    }
    f.timer = None;
    check(be);
}

/// A pool tunnel failed (or could not be opened): that relay ranks lower
/// for a while, and the choice is made again soon.
pub(super) fn tunnel_failed(eng: &mut Cx, be: &mut State, slot: usize) {
    let now = eng.now;
    let Some(addr) = be.slots.get(slot).and_then(|s| {
        let ip = s.host.parse::<IpAddr>().ok()?;
        Some(SocketAddr::new(ip, s.port))
    }) else {
        return;
    };
    let Some(f) = be.fleet.as_mut() else { return };
    f.pool.tunnel_failed(addr, now);
    if matches!(f.step, Step::Idle) {
        info!("{}: the tunnel to {addr} failed: checking again", f.label());
        arm(eng, be, now + AFTER_FAILURE);
    } else {
        f.again = true;
    }
}

/// SIGHUP: a changed pool (or `nofrontend` list) is checked afresh, its
/// present tunnels kept until the new choice is live; an unchanged one is
/// left alone; a removed one closes its tunnels.
pub(super) fn reload(eng: &mut Cx, be: &mut State, new: &BackendSettings) {
    let unchanged = match &be.fleet {
        Some(f) => f.same_spec(new),
        None => Fleet::new(new).is_none(),
    };
    if unchanged {
        return;
    }
    // Answers still on their way to the old pool must not pass for the
    // new one's: its rounds go on from the old count.
    let round = be.fleet.as_ref().map_or(0, |f| f.round);
    be.fleet = Fleet::new(new);
    if let Some(f) = be.fleet.as_mut() {
        f.round = round;
    }
    match &be.fleet {
        Some(f) => info!("{}: new pool settings, checking", f.label()),
        None => info!("--frontends removed from the configuration"),
    }
    if be.fleet.is_some() {
        return check(be);
    }
    for t in pool_tunnels(eng, be, None) {
        if let Some(s) = be.slots.get_mut(t.slot) {
            s.state = SlotState::Removed;
        }
        if let Some(token) = t.token {
            relay::discard(
                eng,
                be,
                token,
                &Why::Operator("frontend removed from the configuration"),
            );
        }
    }
}

/// The fleet's part of the status file: every candidate with its measured
/// time or error, whether chosen and connected, and the exclusions.
pub(crate) fn status(eng: &mut Cx, be: &mut State) -> Option<String> {
    let tunnels = pool_tunnels(eng, be, None);
    let now = eng.now;
    let f = be.fleet.as_ref()?;
    let ms = |d: Option<Duration>| {
        d.map_or("null".to_string(), |d| {
            format!("{:.1}", d.as_secs_f64() * 1e3)
        })
    };
    let candidates: Vec<String> = f
        .pool
        .candidates()
        .iter()
        .map(|c| {
            let ranked = f.decision.get(c.addr);
            let verdict = ranked.map_or(
                if c.excluded { "excluded" } else { "untested" },
                |r| r.verdict.name(),
            );
            let tunnel = tunnels.iter().find(|t| t.addr == c.addr);
            format!(
                "{{\"address\": {}, \"state\": \"{verdict}\", \"ping_ms\": {}, \"score_ms\": {}, \
                 \"uuid\": {}, \"error\": {}, \"chosen\": {}, \"connected\": {}, \"excluded\": {}}}",
                json_str(&c.addr.to_string()),
                ms(c.ping()),
                ms(ranked.and_then(|r| r.score)),
                c.uuid.as_deref().map_or("null".to_string(), json_str),
                c.error
                    .as_ref()
                    .map_or("null".to_string(), |e| json_str(&e.to_string())),
                ranked.is_some_and(|r| r.verdict == Verdict::Chosen),
                tunnel.is_some_and(|t| t.live),
                c.excluded,
            )
        })
        .collect();
    let never: Vec<String> = f
        .never
        .iter()
        .map(|(h, p)| json_str(&format!("{h}:{p}")))
        .collect();
    Some(format!(
        "{{\"name\": {}, \"port\": {}, \"wanted\": {}, \"next_check_s\": {}, \"lookup_error\": {}, \
         \"nofrontend\": [{}], \"candidates\": [{}]}}",
        json_str(&f.name),
        f.port,
        f.pool.wanted(),
        f.timer.map_or("null".to_string(), |at| format!(
            "{:.1}",
            at.saturating_duration_since(now).as_secs_f64()
        )),
        f.lookup_error
            .as_deref()
            .map_or("null".to_string(), json_str),
        never.join(", "),
        candidates.join(", ")
    ))
}
