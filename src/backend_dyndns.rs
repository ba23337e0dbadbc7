//! `--dyndns`: telling a dynamic DNS provider which frontends each kite
//! flies on, as pagekite.py does after its tunnels come up. A child of
//! `backend`: it reads the slot table and the live tunnels to learn each
//! kite domain's frontend addresses, asks `proto::dyndns`'s state whether
//! an update is due, and runs the update as an `Outbound` exchange on the
//! reactor (through the proxy chain, over TLS for `https`). What the URL
//! says, how it is signed and what the reply means are `proto::dyndns`'s.
//!
//! A frontend's address is the one its tunnel connected to. Through a
//! proxy chain the socket goes to the proxy, so a frontend known only by
//! name is looked up here for its address (pagekite.py looks frontends up
//! locally too), except with `--torify`: nothing is looked up then, and
//! such frontends are left out of updates (said once).

use std::collections::BTreeMap;

use super::*;
use crate::outbound::{Outbound, Step};
use crate::proto::dyndns::{
    DynDnsState, Failure, MAX_REPLY_BODY, Outcome, Provider, UPDATE_TIMEOUT, judge,
};
use crate::proto::http_reply::ReplyReader;
use crate::proto::proxy::{self, ChainHandshake, Target};
use crate::status::json_str;
use crate::tls::{self, ClientSetup, Verify};

/// Resolver ids, beside the slots' and the fleet's: the update server's
/// (or first proxy's) name, and frontend names looked up for their address.
const SERVER_ID: usize = usize::MAX - 4096;
const FRONTEND_ID: usize = SERVER_ID - 1;
/// Changes settle this long before an update is worked out, so tunnels to
/// several frontends that come up together make one update, not several.
const SETTLE: Duration = Duration::from_secs(1);
/// A frontend name's address is looked up again after this.
const NAME_TTL: Duration = Duration::from_secs(600);
/// Frontend names remembered at most (there are as many as frontends).
const MAX_NAMES: usize = 256;

pub(super) fn owns(id: usize) -> bool {
    id == SERVER_ID || id == FRONTEND_ID
}

/// The `--dyndns` updater of a backend.
pub(super) struct Updater {
    provider: Provider,
    state: DynDnsState,
    /// For `https` providers: the system's roots (or `--ca_certs`).
    tls: Option<ClientSetup>,
    /// The one `AppTimer::DynDns` that counts.
    timer: Option<Instant>,
    flight: Flight,
    lookups: u64,
    /// Frontend names (reached through a proxy) and their addresses.
    names: HashMap<String, Named>,
    /// Said once: `--torify` hides a frontend's address.
    told_torify: bool,
}

struct Named {
    addr: Option<IpAddr>,
    looked_up: Instant,
    pending: Option<u64>,
}

/// The update under way.
enum Flight {
    Idle,
    /// Its server's (or first proxy's) name is being looked up.
    Resolving(u64, Box<Request>),
    Connected(Token, Box<Request>),
}

struct Request {
    update: crate::proto::dyndns::UpdateRequest,
    started: Instant,
}

impl Updater {
    pub(super) fn new(config: &BackendSettings) -> Result<Option<Updater>, Box<Fatal>> {
        let Some(setting) = &config.dyndns else {
            return Ok(None);
        };
        let provider = Provider::from_template(&setting.url, &setting.user, &setting.pass)
            .map_err(Fatal::DynDns)?;
        let tls = if provider.tls() {
            let verify = Verify::Names {
                ca_file: config.ca_certs.clone(),
                names: vec![provider.host().to_string()],
            };
            Some(tls::client_config(&verify).map_err(Fatal::Tls)?)
        } else {
            None
        };
        Ok(Some(Updater {
            provider,
            state: DynDnsState::new(),
            tls,
            timer: None,
            flight: Flight::Idle,
            lookups: 0,
            names: HashMap::new(),
            told_torify: false,
        }))
    }

    /// Whether `at` is the timer that counts.
    pub(super) fn wants_timer(&self, at: Instant) -> bool {
        self.timer == Some(at)
    }

    /// Whether a connection of the updater is open (not a stream).
    pub(super) fn connections(&self) -> usize {
        usize::from(matches!(self.flight, Flight::Connected(..)))
    }

    /// The status file's `dyndns` object.
    pub(super) fn status(&self, now: Instant) -> String {
        let kites: Vec<String> = self
            .state
            .status(now)
            .iter()
            .map(|(domain, state)| {
                format!(
                    "{{\"domain\": {}, \"state\": {}}}",
                    json_str(domain),
                    json_str(state)
                )
            })
            .collect();
        format!(
            "{{\"provider\": {}, \"failures\": {}, \"kites\": [{}]}}",
            json_str(&self.provider.to_string()),
            self.state.failures(),
            kites.join(", ")
        )
    }
}

fn arm(eng: &mut Cx, up: &mut Updater, at: Instant) {
    if up.timer.is_some_and(|t| t <= at) {
        return;
    }
    up.timer = Some(at);
    eng.arm_app(at, AppTimer::DynDns);
}

/// Kites went live or down somewhere: work out the updates soon.
pub(super) fn changed(eng: &mut Cx, be: &mut State) {
    if let Some(up) = be.dyndns.as_mut() {
        let at = eng.now + SETTLE;
        arm(eng, up, at);
    }
}

pub(super) fn on_timer(eng: &mut Cx, be: &mut State, at: Instant) {
    match be.dyndns.as_mut() {
        Some(up) if up.timer == Some(at) => up.timer = None,
        _ => return,
    }
    check(eng, be);
}

/// Starts the next update if one is due, and arms the timer for the end
/// of a back-off.
fn check(eng: &mut Cx, be: &mut State) {
    if be.stopped || be.dyndns.is_none() {
        return;
    }
    let wanted = wanted(eng, be);
    let now = eng.now;
    let Some(up) = be.dyndns.as_mut() else {
        return;
    };
    if let Some(due) = up.state.next_update(now, &wanted) {
        start(eng, be, &due.domain, &due.ips);
    }
    if let Some(up) = be.dyndns.as_mut() {
        if let Some(at) = up.state.next_wake().filter(|at| *at > now) {
            arm(eng, up, at);
        }
    }
    eng.status_changed();
}

/// Each kite domain's frontend addresses now, preferred frontends (the
/// configured order) first, each address once.
#[inline(never)]
fn wanted(eng: &mut Cx, be: &mut State) -> BTreeMap<String, Vec<IpAddr>> {
    let mut out: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    let tunnels: Vec<(usize, Token)> = be
        .slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s.state {
            SlotState::Connected(token) => Some((i, token)),
            _ => None,
        })
        .collect();
    for (slot, token) in tunnels {
        let (peer, domains) = match eng.conns.get_mut(token) {
            Some(Conn::Tunnel(t)) if t.phase() == Phase::Live => match &t.side {
                Side::Backend(info) if !info.probe && !info.live.is_empty() => (
                    t.peer,
                    info.live
                        .iter()
                        .map(|k| k.domain.clone())
                        .collect::<Vec<_>>(),
                ),
                _ => continue,
            },
            _ => continue,
        };
        let Some(ip) = frontend_addr(eng, be, slot, peer) else {
            continue;
        };
        for domain in domains {
            let ips = out.entry(domain).or_default();
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    out
}

/// The address of the frontend in `slot`, whose tunnel's socket is
/// connected to `peer`.
#[inline(never)]
fn frontend_addr(eng: &mut Cx, be: &mut State, slot: usize, peer: SocketAddr) -> Option<IpAddr> {
    let host = be.slots.get(slot)?.host.clone();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    let chain = &be.settings.proxies;
    if chain.is_empty() {
        return Some(peer.ip());
    }
    let up = be.dyndns.as_mut()?;
    if !proxy::resolve_locally(chain) {
        if !up.told_torify {
            up.told_torify = true;
            info!(
                "dyndns: frontend {host} is reached through Tor by name; its address is \
                 not looked up, so updates leave it out"
            );
        }
        return None;
    }
    let now = eng.now;
    if up.names.len() >= MAX_NAMES && !up.names.contains_key(&host) {
        return None;
    }
    let named = up.names.entry(host.clone()).or_insert(Named {
        addr: None,
        looked_up: now,
        pending: None,
    });
    let stale = named.addr.is_none() || now.duration_since(named.looked_up) >= NAME_TTL;
    if stale && named.pending.is_none() {
        up.lookups += 1;
        named.pending = Some(up.lookups);
        be.resolver.lookup(FRONTEND_ID, up.lookups, &host, 0);
    }
    named.addr
}

/// Sends the update for `domain` flying on `ips`.
#[inline(never)]
fn start(eng: &mut Cx, be: &mut State, domain: &str, ips: &[IpAddr]) {
    let secret = be
        .settings
        .kites
        .iter()
        .find(|k| k.domain.eq_ignore_ascii_case(domain))
        .map(|k| k.secret.clone())
        .unwrap_or_default();
    let now = eng.now;
    let Some(up) = be.dyndns.as_mut() else {
        return;
    };
    let salt = handshake::salt8(random::bytes4());
    let update = match up.provider.request(domain, ips, &secret, &salt) {
        Ok(update) => update,
        Err(e) => return finish(eng, be, Outcome::Failed(Failure::Transport(e.to_string()))),
    };
    debug!("dyndns: updating {update}");
    let (host, port) = match be.settings.proxies.first() {
        Some(first) => (first.host.clone(), first.port),
        None => (update.host.clone(), update.port),
    };
    let request = Box::new(Request {
        update,
        started: now,
    });
    match host.parse::<IpAddr>() {
        Ok(ip) => connect(eng, be, SocketAddr::new(ip, port), request),
        Err(_) => {
            up.lookups += 1;
            up.flight = Flight::Resolving(up.lookups, request);
            be.resolver.lookup(SERVER_ID, up.lookups, &host, port);
        }
    }
}

#[inline(never)]
fn connect(eng: &mut Cx, be: &mut State, addr: SocketAddr, request: Box<Request>) {
    let chain = &be.settings.proxies;
    let handshake = match chain.is_empty() {
        true => None,
        false => {
            let target = Target::new(&request.update.host, request.update.port).ok();
            match target.and_then(|t| ChainHandshake::new(chain, t)) {
                Some(hs) => Some(Box::new(hs)),
                None => {
                    let why = "no proxy of the chain can be asked for the update server";
                    return finish(eng, be, Outcome::Failed(Failure::Transport(why.into())));
                }
            }
        }
    };
    let Some(up) = be.dyndns.as_mut() else {
        return;
    };
    let tls = up
        .tls
        .clone()
        .map(|setup| (setup, request.update.host.clone()));
    let head = request.update.head(VERSION);
    let sock = match TcpStream::connect(addr) {
        Ok(sock) => sock,
        Err(e) => {
            let why = format!("cannot connect to {addr}: {e}");
            return finish(eng, be, Outcome::Failed(Failure::Transport(why)));
        }
    };
    let added = eng.add(sock, |sock, _| {
        let reply = ReplyReader::new(MAX_REPLY_BODY, false);
        Conn::Outbound(Box::new(Outbound::new(
            sock, addr, handshake, tls, head, reply,
        )))
    });
    match added {
        Ok(token) => {
            eng.arm(token, TimerKind::Deadline, request.started + UPDATE_TIMEOUT);
            up.flight = Flight::Connected(token, request);
        }
        Err(e) => {
            let why = format!("cannot watch a connection to {addr}: {e}");
            finish(eng, be, Outcome::Failed(Failure::Transport(why)));
        }
    }
}

/// Resolver answers for the updater.
pub(super) fn on_resolved(
    eng: &mut Cx,
    be: &mut State,
    id: usize,
    generation: u64,
    result: Result<Vec<SocketAddr>, String>,
) {
    let Some(up) = be.dyndns.as_mut() else {
        return;
    };
    if id == FRONTEND_ID {
        let now = eng.now;
        if let Some(named) = up
            .names
            .values_mut()
            .find(|n| n.pending == Some(generation))
        {
            named.pending = None;
            named.looked_up = now;
            match result {
                Ok(addrs) => named.addr = addrs.first().map(SocketAddr::ip).or(named.addr),
                Err(e) => debug!("dyndns: cannot look a frontend up for its address: {e}"),
            }
            changed(eng, be);
        }
        return;
    }
    let flight = std::mem::replace(&mut up.flight, Flight::Idle);
    let request = match flight {
        Flight::Resolving(wanted, request) if wanted == generation => request,
        other => {
            up.flight = other;
            return;
        }
    };
    match result {
        Ok(addrs) if !addrs.is_empty() => {
            let addr = addrs.first().copied();
            if let Some(addr) = addr {
                connect(eng, be, addr, request);
            }
        }
        Ok(_) => {
            let why = format!("{} has no address", request.update.host);
            finish(eng, be, Outcome::Failed(Failure::Transport(why)));
        }
        Err(e) => {
            let why = format!("cannot resolve {}: {e}", request.update.host);
            finish(eng, be, Outcome::Failed(Failure::Transport(why)));
        }
    }
}

/// Drives the update's connection.
pub fn drive(eng: &mut Cx, be: &mut State, token: Token, mut o: Box<Outbound>) -> Option<Conn> {
    match o.drive() {
        Step::Wait => Some(Conn::Outbound(o)),
        Step::Again => {
            eng.mark_again(token);
            Some(Conn::Outbound(o))
        }
        Step::Done(result) => {
            if !is_current(be, token) {
                return None;
            }
            let outcome = match result {
                Ok(reply) => judge(&reply),
                Err(e) => Outcome::Failed(Failure::Transport(e.to_string())),
            };
            finish(eng, be, outcome);
            None
        }
    }
}

/// The update's time is up.
pub fn timeout(eng: &mut Cx, be: &mut State, token: Token) -> Option<Conn> {
    if is_current(be, token) {
        let why = format!("no answer in {} s", UPDATE_TIMEOUT.as_secs());
        finish(eng, be, Outcome::Failed(Failure::Transport(why)));
    }
    None
}

fn is_current(be: &State, token: Token) -> bool {
    be.dyndns
        .as_ref()
        .is_some_and(|up| matches!(up.flight, Flight::Connected(t, _) if t == token))
}

/// The update in flight is over: one line, the state told, the next due
/// update started.
fn finish(eng: &mut Cx, be: &mut State, outcome: Outcome) {
    let now = eng.now;
    let Some(up) = be.dyndns.as_mut() else {
        return;
    };
    let flight = std::mem::replace(&mut up.flight, Flight::Idle);
    let what = match &flight {
        Flight::Resolving(_, r) | Flight::Connected(_, r) => r.update.to_string(),
        Flight::Idle => up.provider.to_string(),
    };
    match &outcome {
        Outcome::Updated => info!("dyndns: updated {what}"),
        Outcome::Unchanged => info!("dyndns: {what} (already so)"),
        Outcome::Failed(why) => {
            let failures = up.state.failures() + 1;
            // Rare by construction: failures back off 112 s and more.
            warn!("dyndns: update {what} failed: {why} (failure {failures} in a row)");
            eng.note_error(&format!("dyndns: {why}"));
        }
    }
    let Some(up) = be.dyndns.as_mut() else {
        return;
    };
    up.state.finished(outcome, now);
    check(eng, be);
}

/// SIGUSR1: a failed update is tried again now, not at its back-off's end.
pub(super) fn retry_now(eng: &mut Cx, be: &mut State) {
    let Some(up) = be.dyndns.as_mut() else {
        return;
    };
    if up.state.next_wake().is_some() {
        info!("dyndns: retrying the failed update now");
        up.state.retry_now();
        changed(eng, be);
    }
}

/// A reload: a new `--dyndns` (or none) starts afresh; the same one keeps
/// what the provider was told.
pub(super) fn reload(
    eng: &mut Cx,
    be: &mut State,
    new: &BackendSettings,
) -> Result<(), Box<Fatal>> {
    if new.dyndns == be.settings.dyndns && new.ca_certs == be.settings.ca_certs {
        return Ok(());
    }
    be.dyndns = Updater::new(new)?;
    if let Some(up) = &be.dyndns {
        info!("dyndns: updates now go to {}", up.provider);
    }
    changed(eng, be);
    Ok(())
}
