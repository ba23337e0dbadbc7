//! `--metrics=ADDR:PORT`: the reactor's own small HTTP server for Prometheus
//! (`GET /metrics`) and health checks (`GET /healthz`), unauthenticated (bind
//! it where only the scraper reaches). It owns the listener and its
//! connections (accepted only up to [`MAX_CLIENTS`] at once, request heads
//! bounded by `proto::metrics::MAX_HEAD`, a client that sends no complete
//! request within [`REQUEST_TIMEOUT`] is closed), what the exposition says
//! (read from the connection table, the role and the engine's `Counters` at
//! each scrape), and the per-kite stream byte counts. It never touches the
//! relay's connections, never blocks, and keeps no label a visitor chooses:
//! kite labels are only the kites configured or registered.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use log::{Level, debug, info, warn};
use mio::Token;
use mio::net::TcpListener;

use crate::backend;
use crate::conn::{Conn, Cx, MetricsConn, MetricsListener};
use crate::conns::tag;
use crate::engine::{Deadlines, Fatal, Ready, TimerKind};
use crate::kite_bytes::{KiteBytes, Known, add, stream_target};
use crate::logging::Noise;
use crate::net::Io;
use crate::proto::kite::{self, KiteKey};
use crate::proto::metrics::{self as fmt, Exposition, Kind, Path};
use crate::status::{CLOSE_REASONS, REFUSAL_REASONS};
use crate::transport::Transport;
use crate::tunnel::{Phase, Side};

/// Metrics connections open at once; more are closed as they are accepted.
pub const MAX_CLIENTS: usize = 8;
/// A client gets this long for each request (and to send the next one on a
/// kept-alive connection); a slow or silent one is closed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests answered per drive before other connections get their turn.
const REQUESTS_PER_DRIVE: usize = 4;

/// Binds `--metrics` (before privileges are dropped, as the ports are) and
/// turns on the per-kite byte counts.
#[inline(never)]
pub fn listen(eng: &mut Cx) -> Result<(), Box<Fatal>> {
    let Some(addr) = eng.config.process.metrics else {
        return Ok(());
    };
    let sock = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|error| Fatal::Listen { addr, error })?;
    let bound = sock.local_addr().unwrap_or(addr);
    let sock = TcpListener::from_std(sock);
    eng.add(sock, |sock, _| {
        Conn::MetricsListener(MetricsListener {
            sock,
            ready: Ready::default(),
            open: Rc::new(Cell::new(0)),
        })
    })
    .map_err(|error| Fatal::Watch {
        port: addr.port(),
        error,
    })?;
    eng.counters.kites = Some(KiteBytes::default());
    if bound.ip().is_loopback() {
        info!("metrics on http://{bound}/metrics (unauthenticated)");
    } else {
        warn!("metrics on http://{bound}/metrics: unauthenticated, and reachable from other hosts");
    }
    Ok(())
}

/// Accepts metrics clients, up to [`MAX_CLIENTS`] at once.
pub fn drive_listener(eng: &mut Cx, token: Token, mut l: MetricsListener) -> Option<Conn> {
    if eng.stopping {
        return None;
    }
    for _ in 0..64 {
        if !l.ready.read {
            break;
        }
        match l.sock.accept() {
            Ok((sock, peer)) => {
                if l.open.get() >= MAX_CLIENTS {
                    eng.noisy(
                        Noise::Visitor,
                        Level::Info,
                        format_args!(
                            "[m{} {peer}] metrics: {MAX_CLIENTS} clients already, closed",
                            tag(token)
                        ),
                    );
                    continue;
                }
                let open = Rc::clone(&l.open);
                let added = eng.add(sock, |sock, _| {
                    open.set(open.get() + 1);
                    Conn::Metrics(Box::new(MetricsConn {
                        transport: Transport::plain(sock),
                        deadlines: Deadlines::default(),
                        peer,
                        inb: Vec::new(),
                        out: Vec::new(),
                        out_at: 0,
                        close_after: false,
                        eof: false,
                        open,
                    }))
                });
                match added {
                    Ok(t) => {
                        debug!("[m{} {peer}] metrics client", tag(t));
                        eng.arm(t, TimerKind::Deadline, eng.now + REQUEST_TIMEOUT);
                        eng.mark_dirty(t);
                    }
                    Err(e) => debug!("[m{} {peer}] metrics: cannot watch: {e}", tag(token)),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => l.ready.read = false,
            Err(e) => {
                // EMFILE and friends: the next readiness event retries.
                debug!("[m{}] metrics: accept failed: {e}", tag(token));
                l.ready.read = false;
            }
        }
    }
    if l.ready.read {
        eng.mark_again(token);
    }
    Some(Conn::MetricsListener(l))
}

/// A client's deadline passed: close it.
pub fn timeout(token: Token, c: &MetricsConn) -> Option<Conn> {
    debug!("[m{} {}] metrics client timed out", tag(token), c.peer);
    None
}

/// The role, as the metrics need it: a backend's state (its configured
/// kites, its tunnels for `/healthz`) or a frontend's (its ACME state).
#[derive(Clone, Copy)]
pub enum RoleRef<'a> {
    Frontend(&'a crate::frontend::State),
    Backend(&'a backend::State),
}

/// Reads requests, answers them, writes the answers.
pub fn drive(
    eng: &mut Cx,
    role: RoleRef<'_>,
    token: Token,
    mut c: Box<MetricsConn>,
) -> Option<Conn> {
    for _ in 0..REQUESTS_PER_DRIVE {
        // The answer in hand first: one request at a time.
        while c.out_at < c.out.len() {
            match c.transport.write(c.out.get(c.out_at..).unwrap_or_default()) {
                Io::Done(n) => c.out_at += n,
                Io::WouldBlock => return Some(Conn::Metrics(c)),
                _ => return None,
            }
        }
        if !c.out.is_empty() {
            c.out.clear();
            c.out_at = 0;
            if c.close_after {
                c.transport.shutdown_write();
                return None;
            }
            // Kept alive: the next request gets its own time.
            eng.arm_taken(
                token,
                &mut c.deadlines,
                TimerKind::Deadline,
                eng.now + REQUEST_TIMEOUT,
            );
        }
        fill(&mut c)?;
        match fmt::parse_request(&c.inb) {
            Ok(Some((req, used))) => {
                c.inb.drain(..used.min(c.inb.len()));
                let keep_alive = req.keep_alive && !c.eof;
                let (status, ctype, body) = if req.bad_method {
                    (405, "text/plain", String::new())
                } else {
                    match req.path {
                        Path::Metrics => (200, fmt::CONTENT_TYPE, render(eng, role)),
                        Path::Healthz => {
                            let (status, text) = health(eng, role);
                            (status, "text/plain", format!("{text}\n"))
                        }
                        Path::Other => (404, "text/plain", "not found\n".to_string()),
                    }
                };
                c.out = fmt::response(status, ctype, &body, req.head_only, keep_alive);
                c.close_after = !keep_alive;
            }
            Ok(None) if c.eof => return None,
            Ok(None) => return Some(Conn::Metrics(c)),
            Err(e) => {
                eng.noisy(
                    Noise::Visitor,
                    Level::Info,
                    format_args!("[m{} {}] metrics: {e}, closed", tag(token), c.peer),
                );
                let status = match e {
                    fmt::HeadError::TooLarge => 431,
                    fmt::HeadError::BadRequestLine => 400,
                };
                c.inb.clear();
                c.out = fmt::response(status, "text/plain", "", false, false);
                c.close_after = true;
            }
        }
    }
    eng.mark_again(token);
    Some(Conn::Metrics(c))
}

/// Reads what the client sent, up to the head limit; None when the
/// connection failed.
#[inline(never)]
fn fill(c: &mut MetricsConn) -> Option<()> {
    let mut chunk = [0u8; 1024];
    for _ in 0..8 {
        let room = fmt::MAX_HEAD.saturating_sub(c.inb.len()).min(chunk.len());
        if room == 0 || c.eof || !c.transport.can_read() {
            break;
        }
        match c.transport.read(chunk.get_mut(..room).unwrap_or_default()) {
            Io::Done(n) => c.inb.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Io::WouldBlock => break,
            Io::Eof => c.eof = true,
            Io::Starved => break,
            Io::Failed(_) => return None,
        }
    }
    Some(())
}

/// `/healthz`: answered at all means the reactor turns; a backend is
/// healthy only while one of its tunnels is live.
#[inline(never)]
fn health(eng: &mut Cx, role: RoleRef<'_>) -> (u16, &'static str) {
    if eng.stopping {
        return (503, "stopping");
    }
    if matches!(role, RoleRef::Frontend(_)) {
        return (200, "ok");
    }
    for token in eng.conns.tokens() {
        if let Some(Conn::Tunnel(t)) = eng.conns.get_mut(token) {
            let probe = matches!(&t.side, Side::Backend(i) if i.is_probe());
            if !probe && t.is_serving() {
                return (200, "ok");
            }
        }
    }
    (503, "no live tunnel")
}

/// What a scrape reads from the connection table.
#[derive(Default)]
struct Table {
    tunnels: [u64; 3],
    tls_tunnels: u64,
    ever_live: u64,
    tls_ever_live: u64,
    streams: u64,
    metrics_clients: u64,
    bytes_in: u64,
    bytes_out: u64,
    live_keys: HashSet<KiteKey>,
    /// Live streams' bytes so far, by where they were opened for.
    live_streams: Vec<(String, (u64, u64))>,
}

#[inline(never)]
fn read_table(eng: &mut Cx) -> Table {
    let mut t = Table::default();
    for token in eng.conns.tokens() {
        match eng.conns.get_mut(token) {
            Some(Conn::Stream(s)) => {
                t.streams += 1;
                t.live_streams
                    .push((s.label.clone(), (s.bytes_read, s.bytes_written)));
            }
            Some(Conn::Metrics(_)) => t.metrics_clients += 1,
            Some(Conn::Tunnel(tun)) if matches!(&tun.side, Side::Backend(i) if i.is_probe()) => {}
            Some(Conn::Tunnel(tun)) => {
                let state = match tun.phase() {
                    Phase::Live => 1,
                    Phase::Closing => 2,
                    _ => 0,
                };
                if let Some(n) = t.tunnels.get_mut(state) {
                    *n += 1;
                }
                let tls = tun.transport.is_tls();
                t.tls_tunnels += u64::from(tls);
                if tun.live_since.is_some() {
                    t.ever_live += 1;
                    t.tls_ever_live += u64::from(tls);
                }
                let (bytes_in, bytes_out) = tun.bytes();
                t.bytes_in = t.bytes_in.saturating_add(bytes_in);
                t.bytes_out = t.bytes_out.saturating_add(bytes_out);
                if tun.phase() == Phase::Live {
                    let keys = match &tun.side {
                        Side::Frontend(info) => info.kites(),
                        Side::Backend(info) => info.live(),
                    };
                    t.live_keys.extend(keys.iter().cloned());
                }
            }
            _ => {}
        }
    }
    t
}

/// The exposition: every family, from the table, the role and the counters.
#[inline(never)]
fn render(eng: &mut Cx, role: RoleRef<'_>) -> String {
    let table = read_table(eng);
    // Kites that may carry labels: a backend's configured ones, and every
    // one registered on a live tunnel now.
    let configured: Vec<KiteKey> = match role {
        RoleRef::Backend(be) => be
            .settings()
            .kites
            .iter()
            .map(|k| kite::key(&k.id.name(), &k.domain))
            .collect(),
        RoleRef::Frontend(_) => Vec::new(),
    };
    let known = Known {
        frontend: matches!(role, RoleRef::Frontend(_)),
        keys: configured
            .iter()
            .cloned()
            .chain(table.live_keys.iter().cloned())
            .collect(),
    };
    let mut per_kite: BTreeMap<KiteKey, (u64, u64)> = BTreeMap::new();
    let mut unmatched = (0, 0);
    let mut seen = None;
    if let Some(k) = eng.counters.kites.as_mut() {
        k.settle(&known);
        per_kite = k.kites.clone();
        unmatched = k.unmatched;
        seen = Some(k.seen(known.frontend));
    }
    let seen = seen.as_ref().unwrap_or(&known);
    for (label, bytes) in &table.live_streams {
        match stream_target(label).and_then(|(p, h, port)| seen.find(&p, &h, port)) {
            Some(key) => add(per_kite.entry(key).or_default(), *bytes),
            None => add(&mut unmatched, *bytes),
        }
    }
    let c = &eng.counters;
    let mut e = Exposition::new();
    let role_name = if matches!(role, RoleRef::Backend(_)) {
        "backend"
    } else {
        "frontend"
    };
    e.family("rkite_build_info", Kind::Gauge, "rkite's version and role.");
    e.sample(
        "rkite_build_info",
        &[("version", env!("CARGO_PKG_VERSION")), ("role", role_name)],
        1,
    );
    e.single(
        "rkite_process_start_time_seconds",
        Kind::Gauge,
        "When the process started, in seconds since 1970.",
        c.started_unix,
    );
    e.single(
        "rkite_connections",
        Kind::Gauge,
        "Sockets in the reactor's table (listeners, visitors, tunnels, streams, metrics clients).",
        eng.conns.len() as u64,
    );
    e.family("rkite_tunnels", Kind::Gauge, "Tunnels open, by state.");
    for (state, n) in ["connecting", "live", "closing"].iter().zip(table.tunnels) {
        e.sample("rkite_tunnels", &[("state", state)], n);
    }
    e.single(
        "rkite_streams",
        Kind::Gauge,
        "Streams (visitor connections on a frontend, local connections on a backend) open.",
        table.streams,
    );
    e.single(
        "rkite_kites_live",
        Kind::Gauge,
        "Kites live on a tunnel now.",
        table.live_keys.len() as u64,
    );
    e.family(
        "rkite_kite_up",
        Kind::Gauge,
        "1 while the kite is live on a tunnel (a backend also shows its configured kites that are down).",
    );
    let mut shown: Vec<&KiteKey> = known.keys.iter().collect();
    shown.sort();
    for key in shown {
        let up = u64::from(table.live_keys.contains(key));
        e.sample("rkite_kite_up", &[("kite", &key.to_string())], up);
    }
    e.family(
        "rkite_kite_received_bytes_total",
        Kind::Counter,
        "Stream bytes read from visitors (frontend) or local servers (backend), by kite.",
    );
    for (key, (rx, _)) in &per_kite {
        let key = key.to_string();
        e.sample("rkite_kite_received_bytes_total", &[("kite", &key)], *rx);
    }
    e.family(
        "rkite_kite_sent_bytes_total",
        Kind::Counter,
        "Stream bytes written to visitors (frontend) or local servers (backend), by kite.",
    );
    for (key, (_, tx)) in &per_kite {
        let key = key.to_string();
        e.sample("rkite_kite_sent_bytes_total", &[("kite", &key)], *tx);
    }
    e.single(
        "rkite_unmatched_received_bytes_total",
        Kind::Counter,
        "Stream bytes read for streams no configured or registered kite could be found for.",
        unmatched.0,
    );
    e.single(
        "rkite_unmatched_sent_bytes_total",
        Kind::Counter,
        "Stream bytes written for streams no configured or registered kite could be found for.",
        unmatched.1,
    );
    e.single(
        "rkite_tunnel_received_bytes_total",
        Kind::Counter,
        "Bytes received on tunnels, framing included.",
        c.closed_in.saturating_add(table.bytes_in),
    );
    e.single(
        "rkite_tunnel_sent_bytes_total",
        Kind::Counter,
        "Bytes sent on tunnels, framing included.",
        c.closed_out.saturating_add(table.bytes_out),
    );
    e.family(
        "rkite_tunnel_handshakes_total",
        Kind::Counter,
        "Tunnels that became live (ok), and that closed without ever being live (failed).",
    );
    e.sample(
        "rkite_tunnel_handshakes_total",
        &[("result", "ok")],
        c.closed_live.saturating_add(table.ever_live),
    );
    e.sample(
        "rkite_tunnel_handshakes_total",
        &[("result", "failed")],
        c.closed_unlive,
    );
    e.single(
        "rkite_tls_tunnels",
        Kind::Gauge,
        "Tunnels open over TLS.",
        table.tls_tunnels,
    );
    e.family(
        "rkite_tls_handshakes_total",
        Kind::Counter,
        "Tunnels over TLS that became live (ok), and tunnels that failed on TLS before (failed).",
    );
    e.sample(
        "rkite_tls_handshakes_total",
        &[("result", "ok")],
        c.closed_tls_live.saturating_add(table.tls_ever_live),
    );
    e.sample(
        "rkite_tls_handshakes_total",
        &[("result", "failed")],
        c.tls_failed,
    );
    e.family(
        "rkite_public_tls_handshakes_total",
        Kind::Counter,
        "Public TLS this frontend terminates (--tls_endpoint, --acme): handshakes completed (ok), failed or abandoned (failed).",
    );
    e.sample(
        "rkite_public_tls_handshakes_total",
        &[("result", "ok")],
        c.public_tls_ok,
    );
    e.sample(
        "rkite_public_tls_handshakes_total",
        &[("result", "failed")],
        c.public_tls_failed,
    );
    e.family(
        "rkite_tunnels_closed_total",
        Kind::Counter,
        "Tunnels closed, by reason.",
    );
    for (reason, n) in CLOSE_REASONS.iter().zip(c.tunnels_closed) {
        e.sample("rkite_tunnels_closed_total", &[("reason", reason)], n);
    }
    e.family(
        "rkite_streams_closed_total",
        Kind::Counter,
        "Streams closed, by reason.",
    );
    for (reason, n) in CLOSE_REASONS.iter().zip(c.streams_closed) {
        e.sample("rkite_streams_closed_total", &[("reason", reason)], n);
    }
    e.family(
        "rkite_refusals_total",
        Kind::Counter,
        "New connections, tunnels or streams refused, by the limit that refused them.",
    );
    for (reason, n) in REFUSAL_REASONS.iter().zip(c.refused) {
        e.sample("rkite_refusals_total", &[("reason", reason)], n);
    }
    e.single(
        "rkite_errors_total",
        Kind::Counter,
        "Errors noted (the status file's last_error).",
        c.errors,
    );
    e.single(
        "rkite_reloads_total",
        Kind::Counter,
        "SIGHUP reloads, applied or refused.",
        c.reloads,
    );
    let b = eng.pool.stats();
    let gauges = [
        (
            "rkite_buffer_budget_bytes",
            "The --buffers budget.",
            b.budget,
        ),
        (
            "rkite_buffer_held_bytes",
            "Bytes connection buffers hold now.",
            b.held,
        ),
        (
            "rkite_buffer_pooled_bytes",
            "Bytes of free buffers kept for reuse.",
            b.pooled,
        ),
        (
            "rkite_buffer_peak_bytes",
            "The most buffers ever held at once.",
            b.peak,
        ),
    ];
    for (name, help, v) in gauges {
        e.single(name, Kind::Gauge, help, v as u64);
    }
    let counters = [
        (
            "rkite_buffer_allocations_total",
            "Buffers allocated.",
            b.allocations,
        ),
        (
            "rkite_buffer_reuses_total",
            "Buffers taken from the pool.",
            b.reuses,
        ),
        ("rkite_buffer_frees_total", "Buffers freed.", b.frees),
    ];
    for (name, help, v) in counters {
        e.single(name, Kind::Counter, help, v);
    }
    e.single(
        "rkite_metrics_clients",
        Kind::Gauge,
        "Metrics connections open (this one included).",
        table.metrics_clients,
    );
    if let RoleRef::Frontend(fe) = role {
        if !fe.settings().auth_domains.is_empty() {
            let (lookups, failures, hits) = fe.auth_counts();
            for (name, help, v) in [
                (
                    "rkite_auth_lookups_total",
                    "--authdomain look-ups sent to the resolver.",
                    lookups,
                ),
                (
                    "rkite_auth_failures_total",
                    "--authdomain look-ups that got no usable answer.",
                    failures,
                ),
                (
                    "rkite_auth_cache_hits_total",
                    "--authdomain answers served from the cache.",
                    hits,
                ),
            ] {
                e.single(name, Kind::Counter, help, v);
            }
        }
        if let Some(acme) = fe.acme_summary() {
            e.family(
                "rkite_acme_certificates",
                Kind::Gauge,
                "Names with an ACME certificate installed, waiting for one, or failing.",
            );
            for (state, n) in [
                ("valid", acme.valid),
                ("pending", acme.pending),
                ("failing", acme.failing),
            ] {
                e.sample("rkite_acme_certificates", &[("state", state)], n);
            }
            e.single(
                "rkite_acme_orders_total",
                Kind::Counter,
                "ACME orders that ended in a certificate.",
                acme.issued,
            );
            e.single(
                "rkite_acme_failures_total",
                Kind::Counter,
                "ACME orders that failed.",
                acme.failed,
            );
            e.single(
                "rkite_acme_next_renewal_seconds",
                Kind::Gauge,
                "Unix time of the earliest renewal due (0: none).",
                acme.next_renewal,
            );
        }
    }
    e.finish()
}
