//! The frontend role (relay): public listeners, the sniffing of each new
//! connection, the tunnel handshake's server side, the kite routing table,
//! and the turning of a routed public connection into a stream on the right
//! tunnel. Protocol decisions come from `proto` (sniff, auth, handshake,
//! kite); relaying the bytes afterwards is `relay`'s job.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use log::{debug, error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Registry, Token};

use crate::buf::Buf;
use crate::config::Config;
use crate::engine::{Conn, Deadlines, Engine, Fatal, Ready, Role, TimerKey, TimerKind};
use crate::net::{self, Io};
use crate::proto::auth::{self, Policy, Verdict};
use crate::proto::flow::DEFAULT_WINDOW;
use crate::proto::frame::{self, Frame, Line};
use crate::proto::handshake::{self, FrontendInfo, KiteAnswer, Prefix, TunnelRequest};
use crate::proto::keepalive::Keepalive;
use crate::proto::kite;
use crate::proto::pages::{self, Side as PageSide};
use crate::proto::sniff::{self, Sniff as Sniffed};
use crate::random;
use crate::relay::{self, CHUNK_BODY, Phase, Side, Stream, Tunnel, TunnelCore, Why, tag};
use crate::reply::Reply;

/// A public connection that says nothing recognisable in this time is closed.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);
/// A tunnel whose backend has to answer a challenge in band gets this long.
const INBAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Accepts per listener per wakeup.
const ACCEPT_BURST: usize = 64;
/// Pause after EMFILE/ENFILE before trying to accept again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Bytes a sniffing connection may send before it must be recognised.
const SNIFF_LIMIT: usize = sniff::MAX_CLIENT_HELLO + 16;

pub struct State {
    bound: Vec<(std::net::TcpListener, u16)>,
    listeners: Vec<Token>,
    /// `proto[-port]:domain` → the tunnel serving it.
    kites: HashMap<String, Token>,
    /// Every session id handed out → its tunnel (for X-PageKite-Replace).
    sessions: HashMap<String, Token>,
    secrets: HashMap<String, String>,
    info: FrontendInfo,
    raw_ports: Vec<u16>,
    raw_virtual: bool,
    uuid: String,
    challenge_key: String,
    next_sid: u32,
    accept_paused: bool,
    /// When accepting first failed for lack of descriptors (for one log line
    /// per episode instead of one per retry).
    fds_exhausted: Option<std::time::Instant>,
}

pub struct Listener {
    sock: TcpListener,
    port: u16,
    pub ready: Ready,
}

/// A public connection that has not said what it is yet.
pub struct Sniff {
    sock: TcpStream,
    pub ready: Ready,
    pub deadlines: Deadlines,
    buf: Buf,
    peer: SocketAddr,
    port: u16,
}

/// Frontend bookkeeping of one tunnel.
pub struct TunnelInfo {
    kites: Vec<String>,
    sessions: Vec<String>,
    prefix: Prefix,
}

impl TunnelInfo {
    pub fn has_kites(&self) -> bool {
        !self.kites.is_empty()
    }
}

impl State {
    pub fn new(config: &Config, _: &Registry) -> Result<State, Fatal> {
        let mut bound = Vec::new();
        for &port in &config.ports {
            let listener = bind(config.host, port)?;
            let actual = listener.local_addr().map(|a| a.port()).unwrap_or(port);
            bound.push((listener, actual));
        }
        let raw_ports: Vec<u16> = config
            .raw_ports
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect();
        let raw_virtual = config.raw_ports.iter().any(|p| p == "virtual");
        Ok(State {
            info: FrontendInfo {
                protos: config.protos.clone(),
                ports: bound.iter().map(|(_, p)| *p).collect(),
                raw_ports: config.raw_ports.clone(),
            },
            bound,
            listeners: Vec::new(),
            kites: HashMap::new(),
            sessions: HashMap::new(),
            secrets: config.domain_secrets.clone(),
            raw_ports,
            raw_virtual,
            uuid: random::hex(20),
            challenge_key: random::hex(20),
            next_sid: 1,
            accept_paused: false,
            fds_exhausted: None,
        })
    }
}

/// Binds one public port: the given address, or every interface (IPv6 and
/// IPv4 on one socket where the system allows, IPv4 only where it doesn't).
fn bind(host: Option<IpAddr>, port: u16) -> Result<std::net::TcpListener, Fatal> {
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
                    .map_err(|e| Fatal::Setup(format!("cannot configure {addr}: {e}")))?;
                return Ok(l);
            }
            Err(e) => last = Some(format!("cannot listen on {addr}: {e}")),
        }
    }
    Err(Fatal::Setup(
        last.unwrap_or_else(|| "no address to listen on".into()),
    ))
}

/// Registers the bound listeners with the reactor.
pub fn start(eng: &mut Engine) -> Result<(), Fatal> {
    let Role::Frontend(fe) = &mut eng.role else {
        return Ok(());
    };
    let bound = std::mem::take(&mut fe.bound);
    let mut tokens = Vec::new();
    for (std_listener, port) in bound {
        let addr = std_listener.local_addr().ok();
        let sock = TcpListener::from_std(std_listener);
        let token = eng
            .add(sock, |sock, _| {
                Conn::Listener(Listener {
                    sock,
                    port,
                    ready: Ready::default(),
                })
            })
            .map_err(|e| Fatal::Setup(format!("cannot watch port {port}: {e}")))?;
        if let Some(addr) = addr {
            info!("listening on {addr}");
        }
        tokens.push(token);
    }
    if let Role::Frontend(fe) = &mut eng.role {
        fe.listeners = tokens;
    }
    Ok(())
}

pub fn drive_listener(eng: &mut Engine, token: Token, mut l: Listener) -> Option<Conn> {
    if eng.stopping {
        return None;
    }
    if matches!(&eng.role, Role::Frontend(fe) if fe.accept_paused) {
        return Some(Conn::Listener(l));
    }
    for _ in 0..ACCEPT_BURST {
        if !l.ready.read {
            return Some(Conn::Listener(l));
        }
        match l.sock.accept() {
            Ok((sock, peer)) => {
                if let Role::Frontend(fe) = &mut eng.role {
                    if let Some(since) = fe.fds_exhausted.take() {
                        info!(
                            "accepting again after {:.1} s without file descriptors",
                            (eng.now - since).as_secs_f64()
                        );
                    }
                }
                let _ = sock.set_nodelay(true);
                let port = l.port;
                let added = eng.add(sock, |sock, _| {
                    Conn::Sniff(Sniff {
                        sock,
                        ready: Ready::default(),
                        deadlines: Deadlines::default(),
                        buf: Buf::with_capacity(4096),
                        peer,
                        port,
                    })
                });
                match added {
                    Ok(t) => {
                        debug!("[p{}] connection from {peer} on port {port}", tag(t));
                        eng.arm(t, TimerKind::Deadline, eng.now + SNIFF_TIMEOUT);
                    }
                    Err(e) => warn!("dropping connection from {peer}: {e}"),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => l.ready.read = false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if net::is_fd_exhaustion(&e) => {
                if let Role::Frontend(fe) = &mut eng.role {
                    if fe.fds_exhausted.is_none() {
                        warn!(
                            "out of file descriptors ({e}); pausing accepts, retrying every {ACCEPT_PAUSE:?}"
                        );
                        fe.fds_exhausted = Some(eng.now);
                    }
                    fe.accept_paused = true;
                }
                eng.timers
                    .arm(eng.now + ACCEPT_PAUSE, TimerKey::AcceptResume);
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

pub fn resume_accepting(eng: &mut Engine) {
    let listeners = match &mut eng.role {
        Role::Frontend(fe) => {
            fe.accept_paused = false;
            fe.listeners.clone()
        }
        Role::Backend(_) => return,
    };
    for token in listeners {
        eng.mark_dirty(token);
    }
}

pub fn sniff_timeout(_: &mut Engine, token: Token, s: Sniff) -> Option<Conn> {
    info!(
        "[p{} {}] closed: nothing recognisable within {SNIFF_TIMEOUT:?} ({} bytes)",
        tag(token),
        s.peer,
        s.buf.len()
    );
    None
}

pub fn drive_sniff(eng: &mut Engine, token: Token, mut s: Sniff) -> Option<Conn> {
    let mut eof = false;
    while s.ready.read {
        match relay::read_some(&mut s.sock, &mut s.buf, SNIFF_LIMIT) {
            Io::Done(0) => break,
            Io::Done(_) => {}
            Io::WouldBlock => s.ready.read = false,
            Io::Eof => {
                eof = true;
                break;
            }
            Io::Starved => break,
            Io::Failed(f) => {
                debug!("[p{} {}] closed while sniffing: {f}", tag(token), s.peer);
                return None;
            }
        }
    }
    match sniff::sniff(s.buf.data()) {
        Sniffed::NeedMore if eof => {
            debug!(
                "[p{} {}] closed before saying anything useful",
                tag(token),
                s.peer
            );
            None
        }
        Sniffed::NeedMore if s.buf.len() >= SNIFF_LIMIT => {
            info!(
                "[p{} {}] closed: too much data without a recognisable request",
                tag(token),
                s.peer
            );
            None
        }
        Sniffed::NeedMore => Some(Conn::Sniff(s)),
        Sniffed::Reject(e) => {
            info!("[p{} {}] closed: {e}", tag(token), s.peer);
            None
        }
        Sniffed::Ping { .. } => {
            debug!("[p{} {}] answered a relay ping", tag(token), s.peer);
            let reply = pages::ping_reply(uuid(eng));
            Reply::start(eng, token, s.sock, s.ready, reply)
        }
        Sniffed::PingMethod { path, .. } => {
            Reply::start(eng, token, s.sock, s.ready, pages::pong(&path))
        }
        Sniffed::Tunnel { head_len } => accept_tunnel(eng, token, s, head_len),
        Sniffed::Connect { host, port, .. } => {
            info!(
                "[p{} {}] CONNECT {host}:{port}: no raw kites here yet",
                tag(token),
                s.peer
            );
            Reply::start(
                eng,
                token,
                s.sock,
                s.ready,
                pages::CONNECT_UNAVAILABLE.to_vec(),
            )
        }
        Sniffed::Tls { sni } => {
            info!(
                "[p{} {}] TLS for {}: no TLS endpoint or https kite, sent an alert",
                tag(token),
                s.peer,
                sni.as_deref().unwrap_or("(no SNI)")
            );
            Reply::start(eng, token, s.sock, s.ready, pages::TLS_ALERT.to_vec())
        }
        Sniffed::Http(head) => match head.host {
            None => {
                info!(
                    "[p{} {}] {} {}: no Host header, sent 400",
                    tag(token),
                    s.peer,
                    head.method,
                    head.path
                );
                let page = pages::no_host(uuid(eng));
                Reply::start(eng, token, s.sock, s.ready, page)
            }
            Some(host) => {
                let proto = if head.websocket && eng.config.protos.iter().any(|p| p == "websocket")
                {
                    "websocket"
                } else {
                    "http"
                };
                route(eng, token, s, proto, &host)
            }
        },
    }
}

fn uuid(eng: &Engine) -> &str {
    match &eng.role {
        Role::Frontend(fe) => &fe.uuid,
        Role::Backend(_) => "",
    }
}

/// Finds the tunnel for a public request and turns the connection into a
/// stream on it, or answers with the `(fe)` 503 page.
fn route(eng: &mut Engine, token: Token, s: Sniff, proto: &str, host: &str) -> Option<Conn> {
    let Role::Frontend(fe) = &mut eng.role else {
        return None;
    };
    let found = kite::frontend_candidates(proto, host, s.port)
        .into_iter()
        .find_map(|(key, p)| fe.kites.get(&key).map(|t| (*t, p)));
    let Some((tunnel, matched)) = found else {
        info!(
            "[p{} {}] no kite for {proto}://{host}:{}, sent 503",
            tag(token),
            s.peer,
            s.port
        );
        let page = pages::unavailable(PageSide::Frontend, "http", host, &fe.uuid);
        return Reply::start(eng, token, s.sock, s.ready, page);
    };
    let mut sid = fe.next_sid;
    let Some(Conn::Tunnel(t)) = eng.conns.get_mut(tunnel) else {
        return None;
    };
    for _ in 0..1024 {
        if !t.core.streams.contains_key(&sid) {
            break;
        }
        sid = sid.checked_add(1).filter(|s| *s < 0x7fff_ffff).unwrap_or(1);
    }
    let next = sid.checked_add(1).filter(|s| *s < 0x7fff_ffff).unwrap_or(1);
    let core = &mut t.core;
    let data = s.buf.data();
    let (first, rest) = data.split_at(data.len().min(CHUNK_BODY));
    let lines = [
        Line::number("SID", u64::from(sid)),
        Line::new("Proto", matched.as_bytes()),
        Line::new("Host", host.as_bytes()),
        Line::number("Port", u64::from(s.port)),
        Line::new("RIP", s.peer.ip().to_string().as_bytes()),
        Line::number("RPort", u64::from(s.peer.port())),
    ];
    let headers: Vec<&[u8]> = lines.iter().map(Line::as_bytes).collect();
    frame::encode(&mut core.out, &headers, first);
    for piece in rest.chunks(CHUNK_BODY) {
        let sid_line = Line::number("SID", u64::from(sid));
        frame::encode(&mut core.out, &[sid_line.as_bytes()], piece);
    }
    core.streams.insert(sid, token);
    let label = format!("{matched}://{host}:{} from {}", s.port, s.peer);
    debug!(
        "[s{} sid={sid}] {label} via tunnel t{}",
        tag(token),
        tag(tunnel)
    );
    let mut stream = Stream::new(s.sock, tunnel, sid, DEFAULT_WINDOW, label);
    stream.ready = s.ready;
    stream.window.on_read(data.len());
    if let Role::Frontend(fe) = &mut eng.role {
        fe.next_sid = next;
    }
    eng.mark_dirty(tunnel);
    eng.mark_dirty(token);
    Some(Conn::Stream(stream))
}

/// Answers a backend's `CONNECT PageKite:1` and turns the connection into a
/// tunnel (or one that closes once the answer is written).
fn accept_tunnel(eng: &mut Engine, token: Token, s: Sniff, head_len: usize) -> Option<Conn> {
    let head = s.buf.data().get(..head_len).unwrap_or_default();
    let request = match handshake::parse_request(head) {
        Ok(r) => r,
        Err(e) => {
            warn!("[t{} {}] bad tunnel request: {e}", tag(token), s.peer);
            return Reply::start(
                eng,
                token,
                s.sock,
                s.ready,
                b"HTTP/1.0 503 Unavailable\r\n\r\n".to_vec(),
            );
        }
    };
    info!(
        "[t{} {}] tunnel request from {} with {} kite(s)",
        tag(token),
        s.peer,
        request.version.as_deref().unwrap_or("unknown version"),
        request.kites.len()
    );
    if let Some(old) = request
        .replace
        .as_ref()
        .and_then(|id| session_tunnel(eng, id))
    {
        if old != token {
            info!("[t{}] replaces tunnel t{}", tag(token), tag(old));
            eng.discard(old);
        }
    }
    let answers = judge(eng, token, &request, s.peer);
    let any_ok = answers.iter().any(|a| matches!(a, KiteAnswer::Ok { .. }));
    let signing = answers
        .iter()
        .any(|a| matches!(a, KiteAnswer::SignThis { .. }));
    let in_band = signing && !any_ok && request.has_feature("AddKites");
    let session = new_session(eng, token);
    let Role::Frontend(fe) = &mut eng.role else {
        return None;
    };
    let reply = handshake::build_reply(request.prefix, &fe.info, &answers, &session);
    let kites = register(fe, token, &answers);
    let phase = if any_ok || in_band {
        Phase::Live
    } else {
        Phase::Closing
    };
    let info = TunnelInfo {
        kites,
        sessions: vec![session],
        prefix: request.prefix,
    };
    let keepalive = Keepalive::new(eng.config.keepalive, eng.now);
    let mut t = Tunnel::new(s.sock, s.peer, phase, Side::Frontend(info), keepalive);
    t.ready = s.ready;
    t.core.out.extend(reply.as_bytes());
    if in_band {
        eng.arm_taken(
            token,
            &mut t.deadlines,
            TimerKind::Deadline,
            eng.now + INBAND_TIMEOUT,
        );
    }
    if phase == Phase::Live {
        relay::start_keepalive(eng, token, &mut t.core, &mut t.deadlines);
    }
    eng.mark_dirty(token);
    Some(Conn::Tunnel(t))
}

fn session_tunnel(eng: &Engine, id: &str) -> Option<Token> {
    match &eng.role {
        Role::Frontend(fe) => fe.sessions.get(id).copied(),
        Role::Backend(_) => None,
    }
}

/// A fresh session id (`HEXTIME:SHA1`-shaped, as pagekite.py's), remembered.
fn new_session(eng: &mut Engine, token: Token) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let id = format!("{:x}:{}", secs, random::hex(20));
    if let Role::Frontend(fe) = &mut eng.role {
        fe.sessions.insert(id.clone(), token);
    }
    id
}

/// Judges every kite of a request, including the duplicate check against
/// other live tunnels.
fn judge(
    eng: &mut Engine,
    token: Token,
    request: &TunnelRequest,
    peer: SocketAddr,
) -> Vec<KiteAnswer> {
    let now = unix_now();
    let mut answers = Vec::new();
    let mut suspects = Vec::new();
    let Role::Frontend(fe) = &mut eng.role else {
        return answers;
    };
    let policy = Policy {
        secrets: &fe.secrets,
        protos: &eng.config.protos,
        ports: &fe.info.ports,
        raw_ports: &fe.raw_ports,
        raw_virtual: fe.raw_virtual,
        fe_secret: &fe.challenge_key,
    };
    for line in &request.kites {
        let what = line.what();
        let name = kite::key(&line.proto, &line.domain);
        match auth::judge(&policy, line, now, &handshake::tok8(random::bytes4())) {
            Verdict::SignThis(challenge) => answers.push(KiteAnswer::SignThis { what, challenge }),
            Verdict::Reject(reason) => {
                warn!("[t{} {peer}] kite {name} rejected: {reason}", tag(token));
                answers.push(KiteAnswer::Invalid {
                    what,
                    why: reason.as_str().to_string(),
                });
            }
            Verdict::Accept => {
                let holder = std::iter::once(name.clone())
                    .chain(kite::wildcards(&line.domain, false).map(|w| kite::key(&line.proto, &w)))
                    .find_map(|k| fe.kites.get(&k).copied())
                    .filter(|holder| *holder != token);
                match holder {
                    Some(other) if eng.conns.contains(other) => {
                        warn!(
                            "[t{} {peer}] kite {name} rejected: duplicate (held by t{})",
                            tag(token),
                            tag(other)
                        );
                        suspects.push(other);
                        answers.push(KiteAnswer::Duplicate { what });
                    }
                    _ => answers.push(KiteAnswer::Ok { what }),
                }
            }
        }
    }
    // The holder of a duplicate may be a dead tunnel the backend is trying to
    // replace: ping it now so it is found out within one grace period.
    for other in suspects {
        if let Some(Conn::Tunnel(t)) = eng.conns.get_mut(other) {
            t.core.keepalive.suspect(eng.now);
            let at = eng.now;
            eng.arm(other, TimerKind::Keepalive, at);
        }
    }
    answers
}

/// Adds the accepted kites of `answers` to the routing table.
fn register(fe: &mut State, token: Token, answers: &[KiteAnswer]) -> Vec<String> {
    let mut names = Vec::new();
    for answer in answers {
        if let KiteAnswer::Ok { what } = answer {
            let mut parts = what.splitn(3, ':');
            let (Some(proto), Some(domain)) = (parts.next(), parts.next()) else {
                continue;
            };
            let name = kite::key(proto, domain);
            fe.kites.insert(name.clone(), token);
            relay::log_kite(&name, "is live");
            names.push(name);
        }
    }
    names
}

/// NOOP chunks from a backend: in-band kite requests (AddKites, §2.5).
pub fn on_noop(
    eng: &mut Engine,
    token: Token,
    core: &mut TunnelCore,
    f: &Frame<'_>,
) -> Result<(), Why> {
    let request = handshake::parse_kite_headers(f.headers())
        .map_err(|e| Why::Protocol(format!("in-band kite request: {e}")))?;
    if request.kites.is_empty() {
        return Ok(());
    }
    let answers = judge(eng, token, &request, core.peer);
    let session = new_session(eng, token);
    let Role::Frontend(fe) = &mut eng.role else {
        return Ok(());
    };
    let Side::Frontend(info) = &mut core.side else {
        return Ok(());
    };
    let lines = handshake::inband_reply_lines(info.prefix, &answers, &session);
    let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    frame::encode(&mut core.out, &lines, b"!");
    info.kites.extend(register(fe, token, &answers));
    info.sessions.push(session);
    let signing = answers
        .iter()
        .any(|a| matches!(a, KiteAnswer::SignThis { .. }));
    if info.kites.is_empty() && !signing {
        // As pagekite.py: an in-band answer with nothing accepted ends the tunnel.
        core.phase = Phase::Closing;
    }
    Ok(())
}

/// Forgets a closed tunnel's kites and session ids.
pub fn tunnel_closed(eng: &mut Engine, token: Token, info: TunnelInfo, summary: &str) {
    let Role::Frontend(fe) = &mut eng.role else {
        return;
    };
    for name in &info.kites {
        if fe.kites.get(name) == Some(&token) {
            fe.kites.remove(name);
            relay::log_kite(name, "is down");
        }
    }
    for id in &info.sessions {
        fe.sessions.remove(id);
    }
    if info.kites.is_empty() {
        debug!("{summary}");
    } else {
        info!("{summary}");
    }
}

fn unix_now() -> u64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs(),
        Err(e) => {
            error!("system clock is before 1970: {e}");
            0
        }
    }
}
