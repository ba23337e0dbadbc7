//! The frontend role (relay): public listeners, the sniffing of each new
//! connection, the tunnel handshake's server side, the kite routing table,
//! and the turning of a routed public connection into a stream on the right
//! tunnel. Protocol decisions come from `proto` (sniff, auth, handshake,
//! kite); relaying the bytes afterwards is `relay`'s job. What a backend may
//! cost before and after it proves a kite is `frontend_guard.rs`'s; judging
//! a request's kites is `frontend_judge.rs`'s, and the `--authdomain`
//! look-ups a handshake may wait for are `frontend_authdns.rs`'s.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use log::{Level, debug, info, warn};
use mio::net::TcpListener;
use mio::{Registry, Token};

use crate::config::FrontendSettings;
use crate::conn::{AppTimer, Conn, Cx, Listener};
use crate::engine::{Fatal, Limit, Ready, TimerKind, unix_now};
use crate::logging::{self, Noise, escape};
use crate::net;
use crate::proto::acl::Acl;
use crate::proto::auth::{self, Judged, Policy, Reason, Remote, Verdict};
use crate::proto::authdns::Outcome;
use crate::proto::frame::Frame;
use crate::proto::handshake::{self, FrontendInfo, KiteAnswer, TunnelRequest};
use crate::proto::kite::{self, KiteKey};
use crate::proto::tunnel::{self as link, Control, NewStream, Next, Open};
use crate::public::{self, start_reply};
use crate::random;
use crate::relay::{self, Hooks, Link, Phase, Side, Tunnel, Why, tag};
use crate::tls::{Endpoint, Endpoints};
use crate::transport::Transport;
use crate::why::ProtocolError;

pub use crate::tunnel::FrontendTunnel as TunnelInfo;

#[path = "frontend_control.rs"]
mod control;
pub use control::reload;
#[path = "frontend_acme.rs"]
mod acme;
#[path = "frontend_authdns.rs"]
mod authdns;
#[path = "frontend_judge.rs"]
mod judge;
pub use judge::on_wake;
use judge::{inband_answer, judge, register};
#[path = "frontend_guard.rs"]
pub(crate) mod guard;
pub use acme::{
    AcmeSummary, alpn_endpoint as acme_alpn_endpoint, answer as acme_answer, drive as acme_drive,
    on_timer as on_acme_timer, timeout as acme_timeout,
};
#[path = "frontend_ops.rs"]
pub(crate) mod ops;
pub use guard::UNAUTHENTICATED_TIMEOUT;
/// Accepts per listener per wakeup.
const ACCEPT_BURST: usize = 64;
/// Pause after EMFILE/ENFILE before trying to accept again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

pub struct State {
    /// Bound listeners waiting to be registered.
    bound: Vec<Bound>,
    listeners: Vec<Token>,
    /// `proto[-port]:domain` → the tunnel serving it.
    kites: HashMap<KiteKey, Token>,
    /// Every session id handed out → its tunnel (for X-PageKite-Replace).
    sessions: HashMap<String, Token>,
    /// What `sessions` costs, counted against `--buffers`.
    handshake_bytes: usize,
    /// The frontend's settings (ports, domains and secrets, TLS, ACLs), the
    /// only role settings a frontend reads; a SIGHUP replaces them.
    settings: FrontendSettings,
    info: FrontendInfo,
    raw_ports: Vec<u16>,
    raw_virtual: bool,
    pub(crate) uuid: String,
    challenge_key: String,
    next_sid: u32,
    endpoints: Endpoints,
    /// `--client_acl` and `--tunnel_acl`.
    pub client_acl: Acl,
    pub tunnel_acl: Acl,
    accept_paused: bool,
    /// When accepting first failed for lack of descriptors (for one log line
    /// per episode instead of one per retry).
    fds_exhausted: Option<std::time::Instant>,
    /// The name each client IP last asked for over HTTP, and when: how a
    /// dedicated raw port shared by several kites picks one (§6.6).
    recent: HashMap<std::net::IpAddr, (String, std::time::Instant)>,
    /// `--acme`: certificates for kites.
    acme: Option<acme::Acme>,
    /// `--authdomain` look-ups and the handshakes waiting for them.
    auth: authdns::AuthDns,
    /// Live kites an auth domain proved (no local secret), and which one:
    /// a reload keeps them while that auth domain still covers them.
    dns_kites: HashMap<KiteKey, String>,
    /// Live kites an `--authfile` user proved, and whose.
    user_kites: HashMap<KiteKey, String>,
    /// `--motd`, `--ratelimit_ips`, `--portalias`, `--accept_acl_file`, `--overload*`.
    pub(crate) ops: ops::Ops,
}

/// How long a client's last HTTP name steers its raw-port connections.
const RECENT_HOST: Duration = Duration::from_secs(120);
/// Clients remembered for that at most.
const RECENT_MAX: usize = 4096;

/// A bound listening socket, before the reactor watches it.
struct Bound {
    sock: std::net::TcpListener,
    /// The port as configured (0: any free port).
    configured: u16,
    /// The port as bound.
    port: u16,
    /// A dedicated raw port.
    raw: bool,
}

impl TunnelInfo {
    pub fn has_kites(&self) -> bool {
        !self.kites.is_empty()
    }

    /// The kites this tunnel serves.
    pub fn kites(&self) -> &[KiteKey] {
        &self.kites
    }
}

impl State {
    /// The settings this frontend runs with.
    pub(crate) fn settings(&self) -> &FrontendSettings {
        &self.settings
    }

    #[inline(never)]
    pub fn new(
        config: FrontendSettings,
        registry: &Registry,
        waker: Token,
    ) -> Result<State, Box<Fatal>> {
        let acme = config.acme.as_ref().map(acme::Acme::new).transpose()?;
        let ops = ops::Ops::new(&config.ops);
        let mut bound = Vec::new();
        for (port, raw) in wanted_ports(&config) {
            bound.push(bind_port(config.host, port, raw)?);
        }
        let raw_ports = numeric_raw_ports(&config);
        let raw_virtual = config.raw_ports.iter().any(|p| p == "virtual");
        Ok(State {
            info: FrontendInfo {
                protos: config.protos.clone(),
                ports: ops.reported_ports(bound.iter().filter(|b| !b.raw).map(|b| b.port)),
                raw_ports: config.raw_ports.clone(),
                motd: ops.motd.clone(),
            },
            bound,
            listeners: Vec::new(),
            kites: HashMap::new(),
            sessions: HashMap::new(),
            handshake_bytes: 0,
            raw_ports,
            raw_virtual,
            uuid: random::hex(20),
            challenge_key: random::hex(20),
            next_sid: 1,
            endpoints: Endpoints::load(&config.tls_endpoints, config.tls_default.as_deref())
                .map_err(Fatal::Tls)?,
            client_acl: Acl::parse(&config.client_acl).map_err(|error| Fatal::Acl {
                flag: "--client_acl",
                error,
            })?,
            tunnel_acl: Acl::parse(&config.tunnel_acl).map_err(|error| Fatal::Acl {
                flag: "--tunnel_acl",
                error,
            })?,
            acme,
            accept_paused: false,
            fds_exhausted: None,
            recent: HashMap::new(),
            dns_kites: HashMap::new(),
            user_kites: HashMap::new(),
            auth: authdns::AuthDns::new(registry, waker).map_err(|error| Fatal::System {
                what: "create a waker",
                error,
            })?,
            ops,
            settings: config,
        })
    }
}

impl State {
    /// What kites are judged by: the secrets, protocols and ports.
    fn policy(&self) -> Policy<'_> {
        Policy {
            secrets: &self.settings.domain_secrets,
            protos: &self.settings.protos,
            ports: &self.info.ports,
            raw_ports: &self.raw_ports,
            raw_virtual: self.raw_virtual,
            fe_secret: &self.challenge_key,
        }
    }

    /// Where kites without a matching local secret are proven.
    fn remote(&self) -> Remote<'_> {
        Remote {
            auth_domains: &self.settings.auth_domains,
            users: &self.settings.auth_users,
        }
    }

    /// `--authdomain` look-ups sent, failed, and answered from the cache.
    pub fn auth_counts(&self) -> (u64, u64, u64) {
        (
            self.auth.queries,
            self.auth.failures,
            self.auth.cache_hits(),
        )
    }

    pub fn has_kite(&self, key: &KiteKey) -> bool {
        self.kites.contains_key(key)
    }

    /// A kite registered under exactly one of `protos` for `host` (public
    /// CONNECT matches names exactly, protocol doc §6.4).
    pub fn has_exact_kite(&self, protos: &[&str], host: &str) -> bool {
        protos
            .iter()
            .any(|p| self.kites.contains_key(&kite::key(p, host)))
    }

    /// The tunnel serving a public request, and the protocol it matched.
    pub fn route(&self, proto: &str, host: &str, port: u16) -> Option<(Token, String)> {
        kite::find_for_frontend(proto, host, port, |key, p| {
            self.kites.get(key).map(|t| (*t, p.to_string()))
        })
    }

    /// A public CONNECT to `host:port` may open a raw stream (§6.4): the
    /// port is a raw port (or `virtual` is on) and a raw kite is registered
    /// for exactly that name.
    pub fn serves_raw(&self, host: &str, port: u16) -> bool {
        (self.raw_virtual || self.raw_ports.contains(&port))
            && self.has_exact_kite(&["raw", format!("raw-{port}").as_str()], host)
    }

    /// The kite name a connection to raw port `port` from `ip` goes to: the
    /// only raw kite claiming the port, or, among several, the one the
    /// client last asked for over HTTP (pagekite.py's heuristic, §6.6).
    pub fn raw_port_host(
        &self,
        port: u16,
        ip: std::net::IpAddr,
        now: std::time::Instant,
    ) -> Option<String> {
        let proto = format!("raw-{port}");
        let mut claimed = self.kites.keys().filter(|k| k.proto == proto);
        let first = claimed.next()?;
        if claimed.next().is_none() {
            return Some(first.domain.clone());
        }
        let (host, at) = self.recent.get(&ip)?;
        (now.saturating_duration_since(*at) <= RECENT_HOST
            && self.kites.contains_key(&kite::key(&proto, host)))
        .then(|| host.clone())
    }

    /// Notes the name a client asked for over HTTP.
    pub fn remember_host(&mut self, ip: std::net::IpAddr, host: &str, now: std::time::Instant) {
        if self.recent.len() >= RECENT_MAX && !self.recent.contains_key(&ip) {
            self.recent
                .retain(|_, (_, at)| now.saturating_duration_since(*at) <= RECENT_HOST);
            if self.recent.len() >= RECENT_MAX {
                self.recent.clear();
            }
        }
        match self.recent.get_mut(&ip) {
            Some((last, at)) if last == host => *at = now,
            _ => {
                self.recent.insert(ip, (host.to_string(), now));
            }
        }
    }

    /// The next stream id to hand out.
    pub fn next_sid(&mut self) -> u32 {
        let sid = self.next_sid;
        self.next_sid = following_sid(sid);
        sid
    }

    pub fn endpoint(&self, host: &str) -> Option<&Endpoint> {
        self.endpoints.find(host)
    }

    pub fn default_endpoint(&self) -> Option<&Endpoint> {
        self.endpoints.fallback()
    }
}

/// The ports to listen on: (configured port, dedicated raw port).
fn wanted_ports(config: &FrontendSettings) -> Vec<(u16, bool)> {
    let mut wanted: Vec<(u16, bool)> = config.ports.iter().map(|p| (*p, false)).collect();
    for port in numeric_raw_ports(config) {
        if !config.ports.contains(&port) {
            wanted.push((port, true));
        }
    }
    wanted
}

fn numeric_raw_ports(config: &FrontendSettings) -> Vec<u16> {
    config
        .raw_ports
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn bind_port(host: Option<IpAddr>, port: u16, raw: bool) -> Result<Bound, Box<Fatal>> {
    let sock = bind(host, port)?;
    let actual = sock.local_addr().map(|a| a.port()).unwrap_or(port);
    Ok(Bound {
        sock,
        configured: port,
        port: actual,
        raw,
    })
}

/// Binds one public port: the given address, or every interface (IPv6 and
/// IPv4 on one socket where the system allows, IPv4 only where it doesn't).
fn bind(host: Option<IpAddr>, port: u16) -> Result<std::net::TcpListener, Box<Fatal>> {
    let candidates = match host {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => vec![
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        ],
    };
    let mut last = None;
    for addr in candidates {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => {
                l.set_nonblocking(true)
                    .map_err(|error| Fatal::Listen { addr, error })?;
                if last.is_some() {
                    info!("no IPv6 on this system: listening on {addr} (IPv4 only)");
                }
                return Ok(l);
            }
            // Only a system without IPv6 falls back to IPv4; a port in use
            // or forbidden on [::] is the same on 0.0.0.0 and must be said.
            Err(e) if host.is_none() && addr.is_ipv6() && !no_ipv6(&e) => {
                return Err(Box::new(Fatal::Listen { addr, error: e }));
            }
            Err(error) => last = Some(Fatal::Listen { addr, error }),
        }
    }
    Err(Box::new(last.unwrap_or(Fatal::NoAddress(port))))
}

/// Errors that mean the system has no IPv6 (disabled, or not built in).
fn no_ipv6(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

/// Registers the bound listeners with the reactor.
#[inline(never)]
pub fn start(eng: &mut Cx, fe: &mut State) -> Result<(), Box<Fatal>> {
    let bound = std::mem::take(&mut fe.bound);
    fe.listeners = watch(eng, bound)?;
    acme::start(fe);
    Ok(())
}

/// Hands bound listeners to the reactor: all of them, or (when one cannot
/// be registered) none, so that a reload can fail without a trace.
fn watch(eng: &mut Cx, bound: Vec<Bound>) -> Result<Vec<Token>, Box<Fatal>> {
    let mut tokens = Vec::new();
    let mut addrs = Vec::new();
    for b in bound {
        addrs.push(b.sock.local_addr().ok());
        let (configured, port, raw) = (b.configured, b.port, b.raw);
        let sock = TcpListener::from_std(b.sock);
        let added = eng.add(sock, |sock, _| {
            Conn::Listener(Listener {
                sock,
                configured,
                port,
                raw,
                ready: Ready::default(),
            })
        });
        match added {
            Ok(token) => tokens.push(token),
            Err(e) => {
                for token in tokens {
                    eng.conns.remove(token);
                }
                return Err(Box::new(Fatal::Watch { port, error: e }));
            }
        }
    }
    for addr in addrs.into_iter().flatten() {
        info!("listening on {addr}");
    }
    Ok(tokens)
}

pub fn drive_listener(eng: &mut Cx, fe: &mut State, token: Token, mut l: Listener) -> Option<Conn> {
    if eng.stopping {
        return None;
    }
    if fe.accept_paused {
        return Some(Conn::Listener(l));
    }
    for _ in 0..ACCEPT_BURST {
        if !l.ready.read {
            return Some(Conn::Listener(l));
        }
        match l.sock.accept() {
            Ok((sock, peer)) => {
                // A balancer's connection is judged by the visitor its
                // PROXY header names (`public`), not at accept.
                let balancer = public::from_balancer(fe, peer, l.port);
                let Some(peer) = public::admit(eng, fe, peer, balancer) else {
                    continue;
                };
                if !balancer && !ops::accepts(eng, fe, peer) {
                    continue;
                }
                if let Some(since) = fe.fds_exhausted.take() {
                    info!(
                        "accepting again after {:.1} s without file descriptors",
                        (eng.now - since).as_secs_f64()
                    );
                }
                let listeners = fe.listeners.len();
                let per_ip = fe.settings.max_conns_per_ip;
                let crowded =
                    per_ip > 0 && !balancer && eng.conns.from_ip(peer.ip()) as usize >= per_ip;
                let refusal = if crowded {
                    Some(Limit::PerIp(per_ip))
                } else {
                    eng.limit_reached(
                        eng.conns.len().saturating_sub(listeners),
                        fe.handshake_bytes + fe.auth.held_bytes(),
                    )
                };
                if let Some(limit) = refusal {
                    // Closing at once is the cheapest answer a flood can get.
                    eng.refuse(&limit, &format!("a connection from {peer}"));
                    drop(sock);
                    continue;
                }
                let _ = sock.set_nodelay(true);
                // `--portalias`: handled as if it came to the alias.
                let (port, raw) = (fe.ops.port(l.port), l.raw);
                let pool = eng.pool.clone();
                let added = eng.add_for(sock, (!balancer).then_some(peer.ip()), |sock, _| {
                    let mut sniff = crate::conn::Sniff::new(&pool, sock, peer, port);
                    sniff.raw_port = raw;
                    sniff.proxy_header = balancer;
                    Conn::Sniff(sniff)
                });
                match added {
                    Ok(t) => {
                        debug!("[p{}] connection from {peer} on port {port}", tag(t));
                        eng.arm(t, TimerKind::Deadline, eng.now + public::SNIFF_TIMEOUT);
                    }
                    Err(e) => warn!("dropping connection from {peer}: {e}"),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => l.ready.read = false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if net::is_fd_exhaustion(&e) => {
                if fe.fds_exhausted.is_none() {
                    warn!(
                        "out of file descriptors ({e}); pausing accepts, retrying every {ACCEPT_PAUSE:?}"
                    );
                    fe.fds_exhausted = Some(eng.now);
                }
                fe.accept_paused = true;
                eng.arm_app(eng.now + ACCEPT_PAUSE, AppTimer::AcceptResume);
                return Some(Conn::Listener(l));
            }
            Err(e) => {
                debug!("accept on port {} failed: {e}", l.port);
                l.ready.read = false;
            }
        }
    }
    eng.mark_again(token);
    Some(Conn::Listener(l))
}

pub fn resume_accepting(eng: &mut Cx, fe: &mut State) {
    fe.accept_paused = false;
    for &token in &fe.listeners {
        eng.mark_dirty(token);
    }
}

/// The SID after `sid` (positive, below 2^31, wrapping to 1).
pub fn following_sid(sid: u32) -> u32 {
    sid.checked_add(1).filter(|s| *s < 0x7fff_ffff).unwrap_or(1)
}

/// Answers a backend's `CONNECT PageKite:1` and turns the connection into a
/// tunnel (or one that closes once the answer is written).
pub fn accept_tunnel(
    eng: &mut Cx,
    fe: &mut State,
    token: Token,
    transport: Transport,
    peer: SocketAddr,
    head: &[u8],
) -> Option<Conn> {
    if !fe.tunnel_acl.allows(peer.ip()) {
        eng.refuse(
            &Limit::Acl("--tunnel_acl"),
            &format!("a tunnel from {peer}"),
        );
        return start_reply(
            eng,
            token,
            transport,
            b"HTTP/1.0 403 Forbidden\r\n\r\n".to_vec(),
        );
    }
    let request = match handshake::parse_request(head) {
        Ok(r) => r,
        Err(e) => {
            eng.noisy(
                Noise::BadTunnelRequest,
                Level::Warn,
                format_args!("[t{} {peer}] bad tunnel request: {e}", tag(token)),
            );
            return start_reply(
                eng,
                token,
                transport,
                b"HTTP/1.0 503 Unavailable\r\n\r\n".to_vec(),
            );
        }
    };
    if let Some(old) = request
        .replace
        .as_ref()
        .and_then(|id| fe.sessions.get(id).copied())
    {
        if old != token {
            eng.noisy(
                Noise::Replaced,
                Level::Info,
                format_args!("[t{}] replaces tunnel t{}", tag(token), tag(old)),
            );
            relay::discard(eng, fe, old, &Why::Replaced);
        }
    }
    let info = TunnelInfo {
        kites: Vec::new(),
        sessions: Vec::new(),
        prefix: request.prefix,
        rounds: guard::Rounds::default(),
        whole_segment_chunks: request.takes_whole_segment_chunks(),
    };
    let mut t = Tunnel::new(
        &eng.pool,
        transport,
        peer,
        Phase::AwaitingReply,
        Side::Frontend(info),
        None,
    );
    match judge(eng, fe, token, &request, peer, false) {
        Some(answers) => answer_tunnel(eng, fe, token, &mut t, &request, answers),
        None => {
            // The handshake waits for the auth domain's answers, no longer
            // than an unauthenticated tunnel may live.
            debug!("[t{}] waiting for --authdomain look-ups", tag(token));
            eng.arm_taken(
                token,
                &mut t.deadlines,
                TimerKind::Deadline,
                eng.now + UNAUTHENTICATED_TIMEOUT,
            );
        }
    }
    eng.mark_dirty(token);
    Some(Conn::Tunnel(Box::new(t)))
}

/// Answers a tunnel request whose kites are judged: the reply, the kites
/// registered, the core that takes over the connection.
fn answer_tunnel(
    eng: &mut Cx,
    fe: &mut State,
    token: Token,
    t: &mut Tunnel,
    request: &TunnelRequest,
    answers: Vec<KiteAnswer>,
) {
    let peer = t.peer;
    let any_ok = answers.iter().any(|a| matches!(a, KiteAnswer::Ok { .. }));
    let signing = answers
        .iter()
        .any(|a| matches!(a, KiteAnswer::SignThis { .. }));
    let in_band = signing && !any_ok && request.has_feature("AddKites");
    // Only a tunnel that proved a kite is logged every time.
    let line = format_args!(
        "[t{} {}] tunnel request from {} with {} kite(s)",
        tag(token),
        peer,
        escape(request.version.as_deref().unwrap_or("unknown version")),
        request.kites.len()
    );
    if any_ok {
        info!("{line}");
    } else {
        eng.noisy(Noise::UnauthenticatedTunnel, Level::Info, line);
    }
    let mut sessions = Vec::new();
    let session = guard::new_session(fe, token, &mut sessions);
    let reply = handshake::build_reply(request.prefix, &fe.info, &answers, &session);
    let reply = fe.ops.finish_reply(request.prefix, &answers, reply);
    let kites = register(eng, fe, token, &answers);
    fe.ops.tunnel_kites(token, kites.iter());
    let live = any_ok || in_band;
    if let Side::Frontend(info) = &mut t.side {
        info.kites = kites;
        info.sessions = sessions;
    }
    let over_tls = t.transport.is_tls();
    let mut cfg = relay::link_config(eng, link::Role::Frontend);
    cfg.share = relay::frontend_share(eng.pool.budget());
    let mut core = Link::new(cfg, eng.now, relay::unix_time());
    core.set_send_payload(request.chunk_limit());
    core.send_raw(reply.as_bytes());
    if !live {
        // The answer goes out, then the tunnel closes.
        core.close_gracefully();
    }
    t.link = Some(Box::new(core));
    t.pre = Phase::Live;
    if over_tls {
        debug!("[t{}] the tunnel runs over TLS", tag(token));
    }
    if !any_ok {
        // Closed then unless a kite was proven in band meanwhile.
        eng.arm_taken(
            token,
            &mut t.deadlines,
            TimerKind::Deadline,
            eng.now + UNAUTHENTICATED_TIMEOUT,
        );
    }
    if live {
        t.live_since = Some(eng.now);
        eng.status_changed();
    }
}

/// NOOP chunks from a backend: in-band kite requests (AddKites, §2.5).
fn on_noop(
    eng: &mut Cx,
    fe: &mut State,
    token: Token,
    side: &mut Side,
    peer: SocketAddr,
    f: &Frame<'_>,
) -> Result<Control, Why> {
    let request = handshake::parse_kite_headers(f.headers()).map_err(ProtocolError::InBand)?;
    if request.kites.is_empty() {
        return Ok(Control::CONTINUE);
    }
    let Side::Frontend(info) = side else {
        return Ok(Control::CONTINUE);
    };
    let authenticated = info.has_kites();
    if let Err(refusal) = info.rounds.take(authenticated, eng.now) {
        eng.noisy(
            Noise::InBandRounds,
            Level::Warn,
            format_args!("[t{} {peer}] {refusal}: closing", tag(token)),
        );
        return Err(ProtocolError::Rounds(refusal).into());
    }
    if !authenticated {
        if let Some(limit @ Limit::Buffers { .. }) =
            eng.limit_reached(0, fe.handshake_bytes + fe.auth.held_bytes())
        {
            // Handshake state of a tunnel that proved nothing is the first to go.
            return Err(ProtocolError::Limit(limit).into());
        }
    }
    if fe.auth.is_waiting(token) {
        // The backend sent another round before this one was answered.
        eng.noisy(
            Noise::InBandRounds,
            Level::Warn,
            format_args!(
                "[t{} {peer}] kite round while --authdomain look-ups are pending: ignored",
                tag(token)
            ),
        );
        return Ok(Control::CONTINUE);
    }
    match judge(eng, fe, token, &request, peer, true) {
        Some(answers) => Ok(inband_answer(eng, fe, token, info, &answers)),
        // Answered from `on_wake` once the look-ups are.
        None => Ok(Control::CONTINUE),
    }
}

/// Forgets a closed tunnel's kites and session ids.
fn tunnel_closed(fe: &mut State, token: Token, info: TunnelInfo, summary: &str) {
    fe.auth.release(token);
    for name in &info.kites {
        if fe.kites.get(name) == Some(&token) {
            fe.kites.remove(name);
            fe.dns_kites.remove(name);
            fe.user_kites.remove(name);
            relay::log_kite(name, "is down");
        }
    }
    guard::forget_sessions(fe, &info.sessions);
    fe.ops.forget_tunnel(token);
    if info.kites.is_empty() {
        debug!("{summary}");
    } else {
        info!("{summary}");
    }
}

impl Hooks for State {
    fn handshake(&mut self, eng: &mut Cx, token: Token, t: &mut Tunnel) -> Result<(), Why> {
        // Nothing is dialed: a frontend's tunnel without a core is one
        // whose request waits for --authdomain answers.
        let Some((request, peer)) = self.auth.take_ready(token, false) else {
            return Ok(());
        };
        if let Some(answers) = judge(eng, self, token, &request, peer, false) {
            answer_tunnel(eng, self, token, t, &request, answers);
        }
        Ok(())
    }

    fn on_noop(
        &mut self,
        eng: &mut Cx,
        token: Token,
        side: &mut Side,
        peer: SocketAddr,
        f: &Frame<'_>,
    ) -> Result<Control, Why> {
        on_noop(eng, self, token, side, peer, f)
    }

    fn open_stream(&mut self, _: &mut Cx, _: Token, _: &NewStream<'_>) -> Open<Token> {
        // Streams are opened by the frontend, never by the backend (the
        // core never asks a frontend).
        Open::Refused { page: None }
    }

    fn tunnel_closed(
        &mut self,
        _: &mut Cx,
        token: Token,
        side: Side,
        summary: &str,
        _: &Why,
        _: bool,
    ) {
        if let Side::Frontend(info) = side {
            tunnel_closed(self, token, info, summary);
        }
    }

    fn uuid(&self) -> &str {
        &self.uuid
    }

    fn tunnel_share(&self, budget: usize) -> usize {
        relay::frontend_share(budget)
    }
}
