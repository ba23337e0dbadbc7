//! A frontend's public connection from accept until it is something: the
//! sniffing loop that peels a public `CONNECT host:port` and TLS layers and
//! then hands the connection on, as a stream on the tunnel of the kite it
//! asks for (HTTP by Host, HTTPS by SNI untouched), as a backend's tunnel,
//! or as a one-shot reply (ping answer, error page, TLS alert). What the
//! first bytes mean comes from `proto::sniff`; which kite serves a name and
//! what a tunnel does are `frontend`'s and `relay`'s.
//!
//! `--client_acl` is judged here, at accept and again when the connection
//! says what it is: a denied client gets nothing (no CONNECT 200, no 503
//! page, no TLS handshake for a kite). A backend's tunnel is only known
//! after sniffing, so an address the client ACL denies but `--tunnel_acl`
//! allows is kept until then and served nothing but a tunnel. From a
//! `--proxyproto_from` load balancer, accept judges nothing: the PROXY
//! header step (`public_proxy.rs`) comes first and names the visitor that
//! all of this then judges.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::logging::Noise;
use log::Level;
use log::debug;
use mio::Token;
use mio::net::TcpStream;

use crate::buf::Pool;
pub use crate::conn::Sniff;
use crate::conn::{Conn, Cx};
use crate::engine::{Deadlines, TimerKind};
use crate::frontend::{self, State};
use crate::net::{self, Io};
use crate::proto::kite;
use crate::proto::operators::{self, Admit};
use crate::proto::pages::{self, Side as PageSide};
use crate::proto::sniff::{self, Sniff as Sniffed};
use crate::proto::tunnel::{OpenError, StreamHead};
use crate::relay::{self, Stream, tag};
use crate::tls::TlsSession;
use crate::transport::Transport;
use crate::why::Limit;

/// A public connection that says nothing recognisable in this time is
/// closed; each layer peeled (a CONNECT, a TLS handshake) grants it again.
pub const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes a sniffing connection may send before it must be recognised.
const SNIFF_LIMIT: usize = sniff::MAX_CLIENT_HELLO + 16;
/// CONNECT and TLS layers a client may wrap its request in.
const MAX_LAYERS: u8 = 3;

const CONNECT_OK: &[u8] = b"HTTP/1.0 200 Connection Established\r\n\r\n";

#[path = "public_proxy.rs"]
mod proxy_header;
pub use proxy_header::from_balancer;

/// Turns a connection (keeping its token and registration) into one that
/// writes `out`, lingers briefly for the client to read it, and goes away.
pub fn start_reply(eng: &mut Cx, token: Token, transport: Transport, out: Vec<u8>) -> Option<Conn> {
    let mut reply = crate::reply::Reply::new(transport, out);
    let at = eng.now + crate::reply::REPLY_LINGER;
    eng.arm_taken(token, &mut reply.deadlines, TimerKind::Deadline, at);
    eng.mark_dirty(token);
    Some(Conn::Reply(reply))
}

/// A connection to a dedicated raw port (§6.6): no protocol to sniff, so it
/// goes straight to the raw kite that claims the port (or, if several do, to
/// the one this client last asked for over HTTP).
pub fn raw_port(eng: &mut Cx, fe: &mut State, token: Token, s: Sniff) -> Option<Conn> {
    if !may_visit(eng, fe, &s, "a raw port") {
        return None;
    }
    let Some(host) = fe.raw_port_host(s.port, s.peer.ip(), eng.now) else {
        crate::logging::noisy(
            eng.now,
            Noise::Visitor,
            Level::Info,
            format_args!(
                "[p{} {}] no raw kite for port {}, closed",
                tag(token),
                s.peer,
                s.port
            ),
        );
        return None;
    };
    let mut s = s;
    s.target = Some((host.clone(), s.port));
    route(eng, fe, token, s, "raw", &host)
}

/// Judges a connection at accept, before a byte is read, and gives the
/// address to use from then on ([`net::canonical`]: IPv4-mapped made
/// plain). `None`: the address is denied by `--client_acl` and by
/// `--tunnel_acl` alike, so it may be neither a visitor nor a backend:
/// close it at once (the cheapest answer a flood can get). A `balancer`'s
/// connection is judged once its PROXY header names the visitor.
pub fn admit(eng: &mut Cx, fe: &State, peer: SocketAddr, balancer: bool) -> Option<SocketAddr> {
    let peer = net::canonical(peer);
    if balancer {
        return Some(peer);
    }
    let standing = Standing::of(fe, peer);
    if standing.visitor || standing.backend {
        return Some(peer);
    }
    eng.refuse(
        &Limit::Acl("--client_acl and --tunnel_acl"),
        &format!("a connection from {peer}"),
    );
    None
}

/// What the ACLs, as they are now, let an address be.
#[derive(Clone, Copy)]
struct Standing {
    /// `--client_acl` allows it: it may reach kites.
    visitor: bool,
    /// `--tunnel_acl` allows it: it may be a backend's tunnel.
    backend: bool,
}

impl Standing {
    fn of(fe: &State, peer: SocketAddr) -> Standing {
        Standing {
            visitor: fe.client_acl.allows(peer.ip()),
            backend: fe.tunnel_acl.allows(peer.ip()),
        }
    }
}

/// Whether `--client_acl` lets this connection be served as a visitor;
/// if not, the refusal is logged (rate-limited) and the caller closes it
/// without a byte of reply.
fn may_visit(eng: &mut Cx, fe: &State, s: &Sniff, what: &str) -> bool {
    if Standing::of(fe, s.peer).visitor {
        return true;
    }
    eng.refuse(&Limit::Acl("--client_acl"), &format!("{} ({what})", s.peer));
    false
}

impl Sniff {
    pub fn new(pool: &Pool, sock: TcpStream, peer: SocketAddr, port: u16) -> Sniff {
        Sniff {
            transport: Transport::plain(sock),
            deadlines: Deadlines::default(),
            buf: pool.buf(4096),
            peer,
            port,
            target: None,
            owed: Vec::new(),
            layers: 0,
            tls_counted: false,
            raw_port: false,
            proxy_header: false,
            via: None,
        }
    }

    /// The port a stream of this connection reports (the CONNECT's, if any).
    fn public_port(&self) -> u16 {
        self.target.as_ref().map_or(self.port, |(_, p)| *p)
    }
}

pub fn sniff_timeout(eng: &mut Cx, token: Token, mut s: Sniff) -> Option<Conn> {
    let handshaking = s.transport.tls_mut().is_some_and(|t| t.is_handshaking());
    let what = if s.proxy_header {
        format!("no whole PROXY header ({} bytes)", s.buf.len())
    } else if handshaking {
        "TLS handshake not finished".to_string()
    } else {
        format!("nothing recognisable ({} bytes)", s.buf.len())
    };
    crate::logging::noisy(
        eng.now,
        Noise::Visitor,
        Level::Info,
        format_args!(
            "[p{} {}] closed: {what} within {SNIFF_TIMEOUT:?}",
            tag(token),
            s.peer
        ),
    );
    None
}

/// What the sniffing loop decided.
enum Next {
    /// Wait for more bytes.
    Wait(Sniff),
    /// A layer was peeled; look again at what is left.
    Again(Sniff),
    /// Handed on (or closed).
    Done(Option<Conn>),
}

pub fn drive_sniff(eng: &mut Cx, fe: &mut State, token: Token, mut s: Sniff) -> Option<Conn> {
    if s.proxy_header {
        match proxy_header::header(eng, fe, token, s) {
            Next::Wait(waiting) => return Some(Conn::Sniff(waiting)),
            Next::Again(visitor) => s = visitor,
            Next::Done(conn) => return conn,
        }
    }
    if s.raw_port {
        return raw_port(eng, fe, token, s);
    }
    for _ in 0..=MAX_LAYERS {
        if !s.owed.is_empty() {
            match s.transport.write(&s.owed) {
                Io::Done(n) => {
                    s.owed.drain(..n.min(s.owed.len()));
                }
                Io::WouldBlock | Io::Starved => {}
                Io::Failed(_) | Io::Eof => return None,
            }
        }
        if s.transport.has_pending() && matches!(s.transport.flush(), Io::Failed(_)) {
            return None;
        }
        match step(eng, fe, token, s) {
            Next::Wait(waiting) => return Some(Conn::Sniff(waiting)),
            Next::Again(again) => s = again,
            Next::Done(conn) => return conn,
        }
    }
    crate::logging::noisy(
        eng.now,
        Noise::Visitor,
        Level::Info,
        format_args!("[p{}] closed: too many layers", tag(token)),
    );
    None
}

/// Reads what the connection has sent into its buffer (up to the sniffing
/// limit). `Some(true)`: the client closed its side; `None`: reading
/// failed (logged), close the connection.
fn fill(eng: &mut Cx, token: Token, s: &mut Sniff) -> Option<bool> {
    let mut eof = false;
    while s.transport.can_read() {
        // The buffer as it is first (4 KiB holds nearly every request head
        // and ClientHello); grown only once full. Asking for the whole limit
        // at once would replace it with a fresh zeroed 16 KiB buffer on
        // every new connection.
        let limit = if s.buf.len() < s.buf.capacity() {
            s.buf.capacity().min(SNIFF_LIMIT)
        } else {
            SNIFF_LIMIT
        };
        match relay::read_some(&mut s.transport, &mut s.buf, limit) {
            Io::Done(0) => break,
            Io::Done(_) => {}
            Io::WouldBlock | Io::Starved => break,
            Io::Eof => {
                eof = true;
                break;
            }
            Io::Failed(f) => {
                let why = s.transport.failure(f);
                count_tls(eng, s, true);
                let line =
                    format_args!("[p{} {}] closed while sniffing: {why}", tag(token), s.peer);
                // A balancer's health check connects (with at most a LOCAL
                // header, often still unread) and resets: not worth a line,
                // nor the budget of the visitors' lines.
                if s.proxy_header || (s.via.is_some() && s.buf.is_empty()) {
                    debug!("{line}");
                } else {
                    crate::logging::noisy(eng.now, Noise::Visitor, Level::Info, line);
                }
                return None;
            }
        }
    }
    count_tls(eng, s, eof);
    Some(eof)
}

/// Counts a terminated TLS handshake once: done, or failed when the
/// connection ends (`over`) before it is.
fn count_tls(eng: &mut Cx, s: &mut Sniff, over: bool) {
    let Some(handshaking) = s.transport.tls_mut().map(|t| t.is_handshaking()) else {
        return;
    };
    if s.tls_counted || (handshaking && !over) {
        return;
    }
    s.tls_counted = true;
    if handshaking {
        eng.counters.public_tls_failed += 1;
    } else {
        eng.counters.public_tls_ok += 1;
    }
}

fn step(eng: &mut Cx, fe: &mut State, token: Token, mut s: Sniff) -> Next {
    let Some(eof) = fill(eng, token, &mut s) else {
        return Next::Done(None);
    };
    if proxy_header::spoofed(eng, &s) {
        return Next::Done(None);
    }
    let sniffed = sniff::sniff(s.buf.data());
    let visitor_only = match &sniffed {
        Sniffed::Connect { .. } => Some("CONNECT"),
        Sniffed::Http(_) => Some("HTTP"),
        Sniffed::PingMethod { .. } => Some("PING"),
        // A backend pings a relay before it connects (pagekite.py's
        // `Host: ping.pagekite`), so that is a backend's too.
        Sniffed::Ping { .. } if !Standing::of(fe, s.peer).backend => Some("relay ping"),
        _ => None,
    };
    if let Some(what) = visitor_only {
        if !may_visit(eng, fe, &s, what) {
            return Next::Done(None);
        }
    }
    match sniffed {
        Sniffed::NeedMore if eof => {
            debug!(
                "[p{} {}] closed before saying anything useful",
                tag(token),
                s.peer
            );
            Next::Done(None)
        }
        Sniffed::NeedMore if s.buf.len() >= SNIFF_LIMIT => {
            crate::logging::noisy(
                eng.now,
                Noise::Visitor,
                Level::Info,
                format_args!(
                    "[p{} {}] closed: too much data without a recognisable request",
                    tag(token),
                    s.peer
                ),
            );
            Next::Done(None)
        }
        Sniffed::NeedMore => Next::Wait(s),
        Sniffed::Reject(e) => {
            crate::logging::noisy(
                eng.now,
                Noise::Visitor,
                Level::Info,
                format_args!("[p{} {}] closed: {e}", tag(token), s.peer),
            );
            Next::Done(None)
        }
        Sniffed::Ping { .. } => {
            debug!("[p{} {}] answered a relay ping", tag(token), s.peer);
            let reply = overload_marked(eng, fe, pages::ping_reply(&fe.uuid));
            Next::Done(start_reply(eng, token, s.transport, reply))
        }
        Sniffed::PingMethod { path, .. } => {
            Next::Done(start_reply(eng, token, s.transport, pages::pong(&path)))
        }
        Sniffed::Tunnel { head_len } => {
            // A backend, not a visitor: `--max_conns_per_ip` is for visitors,
            // and `accept_tunnel` judges it by `--tunnel_acl`.
            eng.conns.uncount(token);
            let head = s.buf.data().get(..head_len).unwrap_or_default().to_vec();
            Next::Done(frontend::accept_tunnel(
                eng,
                fe,
                token,
                s.transport,
                s.peer,
                &head,
            ))
        }
        Sniffed::Connect {
            host,
            port,
            head_len,
        } => connect(eng, fe, token, s, host, port, head_len),
        Sniffed::Tls { sni } => tls(eng, fe, token, s, sni),
        Sniffed::Http(head) => {
            let host = head
                .host
                .or_else(|| s.target.as_ref().map(|(h, _)| h.clone()));
            match host {
                None => {
                    crate::logging::noisy(
                        eng.now,
                        Noise::Visitor,
                        Level::Info,
                        format_args!(
                            "[p{} {}] {} {}: no Host header, sent 400",
                            tag(token),
                            s.peer,
                            head.method,
                            head.path
                        ),
                    );
                    let page = overload_marked(eng, fe, pages::no_host(&fe.uuid));
                    Next::Done(start_reply(eng, token, s.transport, page))
                }
                Some(host) => {
                    // HTTP-01: the ACME server checks that this frontend
                    // answers for the name it is about to certify; any other
                    // request (that path included) goes to the kite.
                    if let Some(body) = crate::frontend::acme_answer(fe, &host, &head.path) {
                        debug!(
                            "[p{} {}] ACME challenge for {host} answered",
                            tag(token),
                            s.peer
                        );
                        let page = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        return Next::Done(start_reply(eng, token, s.transport, page.into_bytes()));
                    }
                    fe.remember_host(s.peer.ip(), &host, eng.now);
                    let websocket =
                        head.websocket && fe.settings().protos.iter().any(|p| p == "websocket");
                    let proto = if websocket { "websocket" } else { "http" };
                    Next::Done(route(eng, fe, token, s, proto, &host))
                }
            }
        }
    }
}

/// A public `CONNECT host:port` (protocol doc §6.4): to a name this relay
/// can serve over TLS (an https kite or a TLS endpoint) on 443, or to an
/// http kite on 80/8080, answer 200 and look at what follows.
fn connect(
    eng: &mut Cx,
    fe: &mut State,
    token: Token,
    mut s: Sniff,
    host: String,
    port: u16,
    head_len: usize,
) -> Next {
    let servable = match port {
        443 => fe.has_exact_kite(&["https", "https-443"], &host) || fe.endpoint(&host).is_some(),
        80 | 8080 => {
            let with_port = format!("http-{port}");
            fe.has_exact_kite(&["http", "http2", "http3", with_port.as_str()], &host)
        }
        _ => false,
    };
    let raw = !servable && fe.serves_raw(&host, port);
    if (!servable && !raw) || s.layers >= MAX_LAYERS || s.target.is_some() {
        crate::logging::noisy(
            eng.now,
            Noise::Visitor,
            Level::Info,
            format_args!(
                "[p{} {}] CONNECT {host}:{port}: nothing to serve it, sent 503",
                tag(token),
                s.peer
            ),
        );
        return Next::Done(start_reply(
            eng,
            token,
            s.transport,
            pages::CONNECT_UNAVAILABLE.to_vec(),
        ));
    }
    debug!(
        "[p{} {}] CONNECT {host}:{port} accepted",
        tag(token),
        s.peer
    );
    s.buf.consume(head_len);
    if raw {
        // A raw stream (§6.4): the client speaks next, so the stream opens
        // now with no data; the 200 goes out ahead of whatever comes back.
        s.owed.extend_from_slice(CONNECT_OK);
        s.target = Some((host.clone(), port));
        return Next::Done(route(eng, fe, token, s, "raw", &host));
    }
    s.owed.extend_from_slice(CONNECT_OK);
    s.target = Some((host, port));
    s.layers += 1;
    let at = eng.now + SNIFF_TIMEOUT;
    eng.arm_taken(token, &mut s.deadlines, TimerKind::Deadline, at);
    Next::Again(s)
}

/// A ClientHello (protocol doc §6.3, §7): an https kite for the name gets
/// the bytes untouched; a TLS endpoint for it terminates TLS here and the
/// plaintext is sniffed again; anything else gets the alert.
fn tls(eng: &mut Cx, fe: &mut State, token: Token, mut s: Sniff, sni: Option<String>) -> Next {
    if s.transport.is_tls() {
        crate::logging::noisy(
            eng.now,
            Noise::Visitor,
            Level::Info,
            format_args!("[p{} {}] closed: TLS inside TLS", tag(token), s.peer),
        );
        return Next::Done(None);
    }
    let name = s.target.as_ref().map(|(h, _)| h.clone()).or(sni);
    let port = s.public_port();
    let standing = Standing::of(fe, s.peer);
    // TLS-ALPN-01: the ACME server asks for `acme-tls/1` and gets the
    // challenge's certificate, while an order for the name awaits it.
    let acme_cert = name
        .as_deref()
        .and_then(|n| crate::frontend::acme_alpn_endpoint(fe, n))
        .filter(|_| crate::proto::sniff::offers_alpn(s.buf.data(), b"acme-tls/1"));
    // An address only `--tunnel_acl` allows may be a backend whose tunnel
    // runs over TLS, which only a TLS endpoint here can terminate; it never
    // reaches an https kite, and what it says inside must be a tunnel.
    let endpoint = match (&acme_cert, &name) {
        (Some(cert), _) => Some(cert),
        (None, Some(name)) => fe.endpoint(name),
        (None, None) => fe.default_endpoint(),
    };
    if !standing.visitor && endpoint.is_none() {
        may_visit(eng, fe, &s, "TLS");
        return Next::Done(None);
    }
    if let (true, Some(name), None) = (standing.visitor, &name, &acme_cert) {
        let passthrough =
            kite::find_for_frontend("https", name, port, |key, _| fe.has_kite(key).then_some(()))
                .is_some();
        if passthrough {
            let name = name.clone();
            return Next::Done(route(eng, fe, token, s, "https", &name));
        }
    }
    let Some(endpoint) = endpoint else {
        crate::logging::noisy(
            eng.now,
            Noise::Visitor,
            Level::Info,
            format_args!(
                "[p{} {}] TLS for {}: no TLS endpoint or https kite, sent an alert",
                tag(token),
                s.peer,
                name.as_deref().unwrap_or("(no SNI)")
            ),
        );
        return Next::Done(start_reply(
            eng,
            token,
            s.transport,
            pages::TLS_ALERT.to_vec(),
        ));
    };
    let endpoint_name = endpoint.name.clone();
    let session = TlsSession::server(endpoint).and_then(|mut session| {
        session.feed(s.buf.data())?;
        Ok(session)
    });
    let session = match session {
        Ok(session) => session,
        Err(why) => {
            crate::logging::noisy(
                eng.now,
                Noise::Visitor,
                Level::Info,
                format_args!(
                    "[p{} {}] TLS for {endpoint_name} failed: {why}",
                    tag(token),
                    s.peer
                ),
            );
            return Next::Done(None);
        }
    };
    debug!(
        "[p{} {}] terminating TLS for {} as {endpoint_name}",
        tag(token),
        s.peer,
        name.as_deref().unwrap_or("(no SNI)")
    );
    let n = s.buf.len();
    s.buf.consume(n);
    s.transport.start_tls(session);
    s.layers += 1;
    let at = eng.now + SNIFF_TIMEOUT;
    eng.arm_taken(token, &mut s.deadlines, TimerKind::Deadline, at);
    Next::Again(s)
}

/// Finds the tunnel for a public request and turns the connection into a
/// stream on it, or answers with the `(fe)` 503 page.
fn route(
    eng: &mut Cx,
    fe: &mut State,
    token: Token,
    s: Sniff,
    proto: &str,
    host: &str,
) -> Option<Conn> {
    let port = s.public_port();
    let Some((tunnel, matched)) = fe.route(proto, host, port) else {
        crate::logging::noisy(
            eng.now,
            Noise::Visitor,
            Level::Info,
            format_args!(
                "[p{} {}] no kite for {proto}://{host}:{port}, sent 503",
                tag(token),
                s.peer
            ),
        );
        return refuse(eng, fe, token, s, proto, host);
    };
    if !rate_admits(eng, fe, token, &s, tunnel, proto, host) {
        return refuse(eng, fe, token, s, proto, host);
    }
    // The core builds the first chunk's headers before anything changes, so
    // a name that can't be sent exactly refuses this stream and nothing else.
    let rip = s.peer.ip().to_string();
    let preferred = fe.next_sid();
    let rtls = s.transport.is_tls();
    let head = StreamHead {
        proto: matched.as_str(),
        host,
        port,
        remote_ip: &rip,
        remote_port: s.peer.port(),
        tls: rtls,
    };
    let now = eng.now;
    let opened = match eng.conns.get_mut(tunnel) {
        Some(Conn::Tunnel(t)) => match t.link.as_deref_mut() {
            Some(link) => link.open_stream(preferred, &head, s.buf.data(), token, now),
            None => Err(OpenError::NotLive),
        },
        _ => Err(OpenError::NotLive),
    };
    let sid = match opened {
        Ok(sid) => sid,
        Err(e) => {
            crate::logging::noisy(
                eng.now,
                Noise::Visitor,
                Level::Info,
                format_args!(
                    "[p{} {}] {proto}://{host}: {}, refused",
                    tag(token),
                    s.peer,
                    OpenErrorText(e)
                ),
            );
            return refuse(eng, fe, token, s, proto, host);
        }
    };
    let scheme = if rtls { "https+" } else { "" };
    let label = format!("{scheme}{matched}://{host}:{port} from {}", s.peer);
    debug!(
        "[s{} sid={sid}] {label} via tunnel t{}",
        tag(token),
        tag(tunnel)
    );
    let read = s.buf.len();
    let mut stream = Stream::new(&eng.pool, s.transport, tunnel, sid, label);
    stream.bytes_read = read as u64;
    stream.push_unacked(&s.owed);
    eng.mark_dirty(tunnel);
    eng.mark_dirty(token);
    Some(Conn::Stream(stream))
}

/// The frontend's refusal of a stream it can't open: the TLS alert for
/// TLS, the `(fe)` 503 page for anything else.
fn refuse(
    eng: &mut Cx,
    fe: &mut State,
    token: Token,
    s: Sniff,
    proto: &str,
    host: &str,
) -> Option<Conn> {
    if proto == "https" {
        return start_reply(eng, token, s.transport, pages::TLS_ALERT.to_vec());
    }
    let uuid = &fe.uuid;
    let frame = eng.config.error_urls.frame_for(host);
    let page = pages::unavailable_framed(PageSide::Frontend, "http", host, uuid, frame);
    let page = overload_marked(eng, fe, page);
    start_reply(eng, token, s.transport, page)
}

/// A relay's own page with `X-PageKite-Overloaded` first while it is
/// overloaded (`--overload`), as pagekite.py marks its 503 pages and ping
/// answers: how backends with several relays learn to prefer another.
fn overload_marked(eng: &Cx, fe: &mut State, page: Vec<u8>) -> Vec<u8> {
    if frontend::ops::overloaded(eng, fe) {
        operators::mark_overloaded(page)
    } else {
        page
    }
}

/// `--ratelimit_ips`: whether the tunnel may take one more visitor, as
/// pagekite.py counts them (its address, and for HTTP its User-Agent and
/// Accept-Language). A refusal is logged, rate-limited.
fn rate_admits(
    eng: &mut Cx,
    fe: &mut State,
    token: Token,
    s: &Sniff,
    tunnel: Token,
    proto: &str,
    host: &str,
) -> bool {
    if !fe.ops.is_limited(tunnel) {
        return true;
    }
    let http = matches!(proto, "http" | "websocket");
    let client = operators::client_id(&s.peer.ip().to_string(), http.then(|| s.buf.data()));
    let (verdict, limit) = fe.ops.admit(tunnel, &client, eng.now);
    if verdict != Admit::Refused {
        return true;
    }
    let limit = limit.map(|l| l.to_string()).unwrap_or_default();
    eng.noisy(
        Noise::PerIpLimit,
        Level::Warn,
        format_args!(
            "[p{} {}] {proto}://{}: a new client beyond --ratelimit_ips {limit} of tunnel t{}, refused",
            tag(token),
            s.peer,
            crate::logging::escape(host),
            tag(tunnel)
        ),
    );
    false
}

/// An `OpenError` in the words its derived `Debug` has in a normal build
/// (`Header(ValueTooLong { name: "Host", len: 300 })`), for the refusal's log
/// line: the static binary derives `Debug` shallowly (variant names only;
/// bench/size.md), and the types live in the tunnel core.
struct OpenErrorText(OpenError);

impl fmt::Display for OpenErrorText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::proto::frame::LineError;
        match self.0 {
            OpenError::NotLive => f.write_str("NotLive"),
            OpenError::NoFreeSid => f.write_str("NoFreeSid"),
            OpenError::Header(LineError::NameTooLong(n)) => write!(f, "Header(NameTooLong({n}))"),
            OpenError::Header(LineError::ValueTooLong { name, len }) => {
                write!(f, "Header(ValueTooLong {{ name: {name:?}, len: {len} }})")
            }
            OpenError::Header(LineError::ControlByte { name }) => {
                write!(f, "Header(ControlByte {{ name: {name:?} }})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::LineError;

    /// Test builds derive `Debug` fully: the refusal's words match it.
    #[test]
    fn open_errors_read_as_derived_debug() {
        for e in [
            OpenError::NotLive,
            OpenError::NoFreeSid,
            OpenError::Header(LineError::NameTooLong(300)),
            OpenError::Header(LineError::ValueTooLong {
                name: "Host",
                len: 1025,
            }),
            OpenError::Header(LineError::ControlByte {
                name: "X-Forwarded-For",
            }),
        ] {
            assert_eq!(OpenErrorText(e).to_string(), format!("{e:?}"));
        }
    }
}
