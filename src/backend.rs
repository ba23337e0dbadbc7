//! The backend role (connector): one tunnel per configured frontend, dialed
//! and re-dialed with exponential back-off and jitter, the handshake's client
//! side (challenges answered in band when the frontend offers AddKites, by
//! reconnecting otherwise), and the opening of a local connection for every
//! new stream, with the `(be)` 503 page when the local server is down.
//! Protocol decisions come from `proto`; the byte pump is `relay`'s.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use log::{Level, debug, error, info, warn};
use mio::net::TcpStream;
use mio::{Registry, Token};

use crate::addrwatch::AddrWatch;
use crate::config::{BackendSettings, ServiceKite};
use crate::conn::{AppTimer, Conn, Cx};
use crate::engine::{Fatal, TimerKind};
use crate::logging::{self, Noise};
use crate::net::{Failure, Io};
use crate::proto::backoff::{FailureKind, Policy, Reconnect};
use crate::proto::frame::{self, Frame};
use crate::proto::handshake::{self, KiteAnswer, KiteLine, TunnelReply};
use crate::proto::kite::{self, KiteKey};
use crate::proto::options::KiteOptions;
use crate::proto::status_line;
use crate::proto::tunnel::{self as link, Control, NewStream, Next, Open};
use crate::random;
use crate::relay::{self, Hooks, Link, Phase, Side, Tunnel, Why, tag};
use crate::resolve::Resolver;
use crate::tls::TlsSession;
use crate::transport::Transport;
use crate::why::ProtocolError;

/// Connect plus handshake must finish in this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

pub const VERSION: &str = concat!("rkite-", env!("CARGO_PKG_VERSION"));

pub use crate::tunnel::BackendTunnel as TunnelInfo;

#[path = "backend_control.rs"]
mod control;
pub use control::{frontend_name, on_addresses, reconnect_now, reload};
#[path = "fleet.rs"]
mod fleet;
pub(crate) use fleet::status as fleet_status;
#[path = "backend_handshake.rs"]
mod client;
#[path = "backend_tls.rs"]
mod fe_tls;
use client::{drive_handshake, on_noop, on_reply, read_head, signed_lines};
#[path = "backend_dyndns.rs"]
mod dyndns;
#[path = "backend_proxy.rs"]
mod via_proxy;
pub use dyndns::{drive as dyndns_drive, timeout as dyndns_timeout};
use fe_tls::{BackendTls, slot_host};

pub struct State {
    slots: Vec<Slot>,
    tls: Option<BackendTls>,
    /// The backend's settings (its kites, frontends and TLS to them), the
    /// only role settings a backend reads; a SIGHUP replaces them.
    settings: BackendSettings,
    /// Each kite's options (short form and `--be_config`), by index.
    options: Vec<KiteOptions>,
    /// `proto[-port]:domain` → index into `settings.kites`.
    services: HashMap<KiteKey, usize>,
    resolver: Resolver,
    pub(crate) uuid: String,
    stopped: bool,
    /// The watch on this host's addresses (see `addrwatch`), if netlink is
    /// to be had.
    watch: Option<Token>,
    /// `--frontends=N:NAME:PORT`: the relays measured and chosen.
    fleet: Option<fleet::Fleet>,
    /// `--dyndns`: who is told where the kites fly.
    dyndns: Option<dyndns::Updater>,
}

/// One configured frontend and the tunnel we keep to it.
struct Slot {
    host: String,
    port: u16,
    state: SlotState,
    /// When to try again, and which failures are worth a log line.
    retry: Reconnect,
    /// The frontend's latest session id, sent as X-PageKite-Replace.
    session: Option<String>,
    /// Challenges to answer on the next connection (reconnect flow).
    challenges: HashMap<String, String>,
    /// Our salt, the same in both rounds (the challenge signs it).
    srand: String,
    lookups: u64,
    /// Why the last attempt failed (for the status file).
    last_error: Option<String>,
    /// One of the `--frontends` pool's addresses, chosen by `fleet`.
    pool: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Resolving,
    Connected(Token),
    Waiting(Instant),
    Stopped,
    /// Taken out of the configuration by a reload; the index may be reused.
    Removed,
}

impl Slot {
    /// `host:port` for logs and the status file, an IPv6 literal bracketed.
    fn name(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl Slot {
    fn new(host: &str, port: u16) -> Slot {
        Slot {
            host: host.to_string(),
            port,
            state: SlotState::Stopped,
            retry: Reconnect::new(Policy::default()),
            session: None,
            challenges: HashMap::new(),
            srand: random::hex(18),
            lookups: 0,
            last_error: None,
            pool: false,
        }
    }
}

impl TunnelInfo {
    pub fn has_kites(&self) -> bool {
        !self.live.is_empty()
    }

    /// The kites live on this tunnel.
    pub fn live(&self) -> &[KiteKey] {
        &self.live
    }

    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

impl State {
    #[inline(never)]
    pub fn new(
        config: BackendSettings,
        registry: &Registry,
        waker: Token,
    ) -> Result<State, Box<Fatal>> {
        let resolver = Resolver::new(registry, waker).map_err(|error| Fatal::System {
            what: "create a waker",
            error,
        })?;
        let mut services = HashMap::new();
        for (i, k) in config.kites.iter().enumerate() {
            services.insert(kite::key(&k.id.name(), &k.domain), i);
        }
        let slots = via_proxy::plain_frontends(&config)
            .iter()
            .map(|(host, port)| Slot::new(host, *port))
            .collect();
        Ok(State {
            slots,
            tls: BackendTls::new(&config)?,
            options: crate::config::kite_options(&config).map_err(Fatal::KiteOptions)?,
            services,
            resolver,
            uuid: random::hex(20),
            stopped: false,
            watch: None,
            fleet: fleet::Fleet::new(&config),
            dyndns: dyndns::Updater::new(&config)?,
            settings: config,
        })
    }

    /// Slots waiting to redial, with their deadlines (for the timer sweep).
    pub fn waiting_slots(&self) -> Vec<(usize, Instant)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s.state {
                SlotState::Waiting(at) => Some((i, at)),
                _ => None,
            })
            .chain(self.fleet.as_ref().and_then(fleet::Fleet::timer))
            .collect()
    }

    /// Whether `at` is the `--dyndns` timer that counts.
    pub fn dyndns_timer_wanted(&self, at: Instant) -> bool {
        self.dyndns.as_ref().is_some_and(|up| up.wants_timer(at))
    }

    /// The status file's `dyndns` object, with `--dyndns`.
    pub fn dyndns_status(&self, now: Instant) -> Option<String> {
        self.dyndns.as_ref().map(|up| up.status(now))
    }

    pub fn stop(&mut self) {
        self.stopped = true;
        for slot in &mut self.slots {
            if !matches!(slot.state, SlotState::Connected(_)) {
                slot.state = SlotState::Stopped;
            }
        }
    }
}

/// The local service (and its options) for a new stream (§4.1 order).
pub(crate) fn service(
    be: &State,
    proto: &str,
    host: &str,
    port: Option<u16>,
) -> Option<(ServiceKite, KiteOptions)> {
    let i = kite::find_for_backend(proto, host, port, |k| be.services.get(k).copied())?;
    Some((
        be.settings.kites.get(i)?.clone(),
        be.options.get(i).cloned().unwrap_or_default(),
    ))
}

/// Streams a backend may hold: every connection but its tunnels.
pub(crate) fn streams_open(eng: &Cx, be: &State) -> usize {
    let tunnels = be
        .slots
        .iter()
        .filter(|s| matches!(s.state, SlotState::Connected(_)))
        .count()
        + be.fleet.as_ref().map_or(0, fleet::Fleet::probes)
        + usize::from(be.watch.is_some())
        + be.dyndns.as_ref().map_or(0, dyndns::Updater::connections);
    eng.conns.len().saturating_sub(tunnels)
}

/// Dials every frontend.
#[inline(never)]
pub fn start(eng: &mut Cx, be: &mut State) {
    be.watch = match AddrWatch::open() {
        Ok(watch) => eng.add(watch, |w, _| Conn::AddrWatch(w)).ok(),
        Err(e) => {
            debug!("no watch on the host's addresses ({e}): SIGUSR1 and keepalives only");
            None
        }
    };
    let count = be.slots.len();
    for slot in 0..count {
        dial(eng, be, slot);
    }
    fleet::check(be);
}

fn dial(eng: &mut Cx, be: &mut State, slot: usize) {
    if be.stopped {
        return;
    }
    let Some(s) = be.slots.get_mut(slot) else {
        return;
    };
    // With a proxy chain the socket goes to the first proxy, and the
    // frontend's name to the proxy (never looked up here).
    let (host, port) = via_proxy::dial_to(&be.settings.proxies, s);
    let host = host.to_string();
    match host.parse::<IpAddr>() {
        Ok(ip) => {
            let addr = SocketAddr::new(ip, port);
            connect(eng, be, slot, addr);
        }
        Err(_) => {
            // Names are looked up again on every attempt: a frontend that
            // moved is found without a restart.
            s.lookups += 1;
            s.state = SlotState::Resolving;
            be.resolver.lookup(slot, s.lookups, &host, port);
        }
    }
}

/// Resolver answers.
pub fn on_wake(eng: &mut Cx, be: &mut State) {
    let answers: Vec<_> = be.resolver.answers().collect();
    for (slot, generation, result) in answers {
        if fleet::owns(slot) {
            fleet::on_resolved(eng, be, slot, generation, result);
            continue;
        }
        if dyndns::owns(slot) {
            dyndns::on_resolved(eng, be, slot, generation, result);
            continue;
        }
        let Some(s) = be.slots.get_mut(slot) else {
            continue;
        };
        if s.lookups != generation || s.state != SlotState::Resolving {
            continue;
        }
        let name = match be.settings.proxies.first() {
            Some(first) => format!("proxy 1 ({first})"),
            None => s.name(),
        };
        match result {
            Ok(addrs) if !addrs.is_empty() => connect(eng, be, slot, addrs[0]),
            Ok(_) => retry_later(
                eng,
                be,
                slot,
                &format!("{name} has no address"),
                FailureKind::Resolve,
                false,
            ),
            Err(e) => retry_later(
                eng,
                be,
                slot,
                &format!("cannot resolve {name}: {e}"),
                FailureKind::Resolve,
                false,
            ),
        }
    }
}

fn connect(eng: &mut Cx, be: &mut State, slot: usize, addr: SocketAddr) {
    let chain = match be.slots.get(slot) {
        Some(s) => via_proxy::handshake(&be.settings.proxies, s),
        None => None,
    };
    let chain = match chain.transpose() {
        Ok(chain) => chain,
        Err(why) => {
            let why = why.to_string();
            return retry_later(eng, be, slot, &why, FailureKind::Proxy, true);
        }
    };
    let kind = |e: &std::io::Error| match chain {
        Some(_) => FailureKind::Proxy,
        None => connect_failure(e),
    };
    let sock = match TcpStream::connect(addr) {
        Ok(sock) => sock,
        Err(e) => {
            let what = match be.settings.proxies.first() {
                Some(first) => format!("proxy 1 ({first}) at {addr}"),
                None => addr.to_string(),
            };
            return retry_later(
                eng,
                be,
                slot,
                &format!("cannot connect to {what}: {e}"),
                kind(&e),
                false,
            );
        }
    };
    let token = match add_dialing(eng, sock, addr, slot, false) {
        Ok(token) => token,
        Err(e) => {
            return retry_later(
                eng,
                be,
                slot,
                &format!("cannot watch a connection to {addr}: {e}"),
                FailureKind::Other,
                false,
            );
        }
    };
    eng.arm(token, TimerKind::Deadline, eng.now + HANDSHAKE_TIMEOUT);
    if let Some(Conn::Tunnel(t)) = eng.conns.get_mut(token) {
        if let Side::Backend(info) = &mut t.side {
            info.proxy = chain;
        }
    }
    if let Some(s) = be.slots.get_mut(slot) {
        s.state = SlotState::Connected(token);
        let route = via_proxy::route(&be.settings.proxies, s);
        debug!("[t{}] connecting to frontend {route} ({addr})", tag(token));
    }
}

/// Watches a connect in progress as a backend tunnel in `Dialing`: one to
/// a frontend's `slot`, or a fleet ping (`probe`, no slot).
fn add_dialing(
    eng: &mut Cx,
    sock: TcpStream,
    addr: SocketAddr,
    slot: usize,
    probe: bool,
) -> std::io::Result<Token> {
    let _ = sock.set_nodelay(true);
    let info = TunnelInfo {
        slot,
        addkites: false,
        live: Vec::new(),
        signed: false,
        probe,
        proxy: None,
    };
    let pool = eng.pool.clone();
    eng.add(sock, |sock, _| {
        Conn::Tunnel(Box::new(Tunnel::new(
            &pool,
            Transport::plain(sock),
            addr,
            Phase::Dialing,
            Side::Backend(info),
            None,
        )))
    })
}

/// The coarse kind of a connect error, for the back-off's log notes.
fn connect_failure(e: &std::io::Error) -> FailureKind {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => FailureKind::Refused,
        K::NetworkUnreachable | K::HostUnreachable | K::AddrNotAvailable | K::NetworkDown => {
            FailureKind::Unreachable
        }
        K::TimedOut => FailureKind::Timeout,
        _ => FailureKind::Other,
    }
}

/// The coarse kind of a closed tunnel's reason.
fn closed_failure(why: &Why, was_live: bool) -> FailureKind {
    match why {
        _ if was_live => FailureKind::Lost,
        Why::Failed(Failure(kind, _)) => connect_failure(&std::io::Error::from(*kind)),
        Why::Tls(_) => FailureKind::Tls,
        Why::Timeout(_) => FailureKind::Timeout,
        Why::Proxy(_) => FailureKind::Proxy,
        Why::Protocol(p) if matches!(**p, ProtocolError::NoKiteAccepted(_)) => {
            FailureKind::Rejected
        }
        _ => FailureKind::Other,
    }
}

/// Schedules the next attempt after a growing, jittered pause
/// (`proto::backoff`: 1 s doubling to 30 s). One log line per change of
/// state (failing, failing differently, a summary every few minutes), not
/// one per attempt; `lasting` failures (TLS before the tunnel was live: a
/// certificate problem won't fix itself) are said at error level.
fn retry_later(
    eng: &mut Cx,
    be: &mut State,
    slot: usize,
    why: &str,
    kind: FailureKind,
    lasting: bool,
) {
    let now = eng.now;
    let stopped = be.stopped;
    let Some(s) = be.slots.get_mut(slot) else {
        return;
    };
    if stopped {
        s.state = SlotState::Stopped;
        return;
    }
    let step = s.retry.failed(now, kind, random::unit());
    let at = now + step.delay;
    s.state = SlotState::Waiting(at);
    s.last_error = Some(why.to_string());
    let name = s.name();
    let delay = step.delay.as_secs_f64();
    match step.note {
        Some(note) if lasting => {
            error!("frontend {name}: {why}; retrying in {delay:.1} s ({note})")
        }
        Some(note) => warn!("frontend {name}: {why}; retrying in {delay:.1} s ({note})"),
        None => debug!("frontend {name}: {why}; retrying in {delay:.1} s"),
    }
    eng.note_error(&format!("frontend {name}: {why}"));
    eng.arm_app(at, AppTimer::Slot(slot));
}

pub fn on_dyndns_timer(eng: &mut Cx, be: &mut State, at: Instant) {
    dyndns::on_timer(eng, be, at);
}

pub fn on_slot_timer(eng: &mut Cx, be: &mut State, slot: usize, at: Instant) {
    if fleet::owns(slot) {
        return fleet::on_timer(be, at);
    }
    let due = be
        .slots
        .get(slot)
        .is_some_and(|s| s.state == SlotState::Waiting(at));
    if due {
        dial(eng, be, slot);
    }
}

/// A tunnel is gone: reconnect after back-off (at once for the reconnect
/// flow's second round).
fn tunnel_closed(
    eng: &mut Cx,
    be: &mut State,
    token: Token,
    info: TunnelInfo,
    summary: &str,
    why: &Why,
    was_live: bool,
) {
    if info.probe {
        return fleet::probe_closed(eng, be, token, why);
    }
    if was_live {
        info!("{summary}");
    } else {
        debug!("{summary}");
    }
    // Per frontend: with several tunnels, the kite may still be up elsewhere.
    let fe = be
        .slots
        .get(info.slot)
        .map_or_else(|| "its frontend".to_string(), Slot::name);
    for name in &info.live {
        relay::log_kite(name, &format!("is down on {fe}"));
    }
    if !info.live.is_empty() {
        dyndns::changed(eng, be);
    }
    let now = eng.now;
    let Some(s) = be.slots.get_mut(info.slot) else {
        return;
    };
    if s.state != SlotState::Connected(token) {
        // A reload removed the frontend, or SIGUSR1 already redialed it.
        return;
    }
    if !s.challenges.is_empty() && !be.stopped {
        // The reconnect flow's second round: answer the challenges at once.
        s.state = SlotState::Waiting(now);
        eng.arm_app(now, AppTimer::Slot(info.slot));
        return;
    }
    let text = match be.settings.proxies.first() {
        // The proxy may be what died: say which way the tunnel went.
        Some(first) if was_live => format!("tunnel lost ({why}) via proxy {first}"),
        _ if was_live => format!("tunnel lost ({why})"),
        _ => why.to_string(),
    };
    let kind = closed_failure(why, was_live);
    let lasting = (matches!(why, Why::Tls(_)) || via_proxy::is_lasting(why)) && !was_live;
    let pool = s.pool;
    retry_later(eng, be, info.slot, &text, kind, lasting);
    if pool && !eng.stopping {
        fleet::tunnel_failed(eng, be, info.slot);
    }
}

impl Hooks for State {
    fn handshake(&mut self, eng: &mut Cx, token: Token, t: &mut Tunnel) -> Result<(), Why> {
        drive_handshake(eng, self, token, t)
    }

    fn on_noop(
        &mut self,
        eng: &mut Cx,
        token: Token,
        side: &mut Side,
        _: SocketAddr,
        f: &Frame<'_>,
    ) -> Result<Control, Why> {
        on_noop(eng, self, token, side, f)
    }

    fn reply(
        &mut self,
        eng: &mut Cx,
        token: Token,
        side: &mut Side,
        peer: SocketAddr,
        status: &str,
        headers: &str,
    ) -> Result<Control, Why> {
        on_reply(eng, self, token, side, peer, status, headers)
    }

    fn open_stream(&mut self, eng: &mut Cx, token: Token, new: &NewStream<'_>) -> Open<Token> {
        crate::local::open_stream(eng, self, token, new)
    }

    fn tunnel_closed(
        &mut self,
        eng: &mut Cx,
        token: Token,
        side: Side,
        summary: &str,
        why: &Why,
        live: bool,
    ) {
        if let Side::Backend(info) = side {
            tunnel_closed(eng, self, token, info, summary, why, live);
        }
    }

    fn uuid(&self) -> &str {
        &self.uuid
    }

    fn tunnel_share(&self, _: usize) -> usize {
        // A backend's tunnels all carry its own kites: no one to protect.
        usize::MAX
    }
}
