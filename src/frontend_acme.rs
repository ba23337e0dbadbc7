//! `--acme`: certificates for kites, automatically. A child of `frontend`:
//! when a backend with a valid secret flies a name as an `http` or
//! `websocket` kite (never for a name nobody registered, so scanners can't
//! spend the CA's rate limit) and no `--tls_endpoint` covers it, one order
//! at a time runs `proto::acme`'s flow, each request an `Outbound` exchange
//! on the reactor (TLS to the ACME server through `tls.rs`); the HTTP-01
//! answer is given by `public.rs` from [`answer`]. The issued chain and its
//! key are kept in `--acme_dir` and installed as a TLS endpoint; renewal
//! comes at two thirds of the lifetime while the kite still flies, and
//! failures back off from a minute to six hours.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::Token;
use mio::net::TcpStream;
use ring::rand::SystemRandom;

use super::State;
use crate::config::AcmeSettings;
use crate::conn::{AppTimer, Conn, Cx};
use crate::engine::{Fatal, TimerKind, unix_now};
use crate::outbound::{Outbound, Step};
use crate::proto::acme::ChallengeKind;
use crate::proto::acme::{Flow, Method, Next, Request};
use crate::proto::der;
use crate::proto::http_reply::ReplyReader;
use crate::proto::jose::Key;
use crate::tls::{self, ClientSetup, Endpoint, TlsConfigError, Verify};

/// The resolver id of ACME server look-ups (far from any other asker).
const RESOLVER_ID: usize = usize::MAX - 8192;
/// One request's time, connect to reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest ACME answer read (a certificate chain is a few KiB).
const MAX_BODY: usize = 256 * 1024;
/// After a failed order: a minute, doubling to six hours.
const RETRY_FIRST: Duration = Duration::from_secs(60);
const RETRY_MAX: Duration = Duration::from_secs(6 * 3600);
/// Names remembered at most (each one a kite that registered).
const MAX_NAMES: usize = 4096;
const USER_AGENT: &str = concat!("rkite/", env!("CARGO_PKG_VERSION"), " (ACME)");

/// The ACME state of a frontend.
pub(super) struct Acme {
    settings: AcmeSettings,
    client: ClientSetup,
    rng: SystemRandom,
    account: Key,
    account_url: Option<String>,
    certs: BTreeMap<String, Cert>,
    flight: Option<Box<Flight>>,
    timer: Option<Instant>,
    lookups: u64,
    /// Orders that ended in a certificate, and that failed.
    issued: u64,
    failed: u64,
}

/// What `--metrics` and the status file show of ACME.
pub struct AcmeSummary {
    pub valid: u64,
    pub pending: u64,
    pub failing: u64,
    pub issued: u64,
    pub failed: u64,
    /// Unix time of the earliest renewal (0: none).
    pub next_renewal: u64,
    /// Each name and its state, for the status file.
    pub names: Vec<(String, String)>,
}

#[derive(Default)]
struct Cert {
    /// The installed certificate's validity (Unix seconds).
    valid: Option<(i64, i64)>,
    failures: u32,
    retry_at: Option<Instant>,
}

struct Flight {
    name: String,
    flow: Flow,
    key: Key,
    /// TLS-ALPN-01's certificate, once the challenge is known.
    alpn: Option<Endpoint>,
    /// The request under way: its connection, or its server's look-up.
    conn: Option<Token>,
    resolving: Option<(u64, Request)>,
}

fn setup_error(what: String) -> Fatal {
    Fatal::Tls(TlsConfigError(what))
}

impl Acme {
    pub(super) fn new(settings: &AcmeSettings) -> Result<Acme, Box<Fatal>> {
        let dir = Path::new(&settings.dir);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| setup_error(format!("--acme_dir {}: {e}", dir.display())))?;
        let rng = SystemRandom::new();
        let key_path = dir.join("account.key");
        let account = match std::fs::read(&key_path) {
            Ok(pkcs8) => Key::from_pkcs8(&pkcs8, &rng)
                .map_err(|e| setup_error(format!("{}: {e}", key_path.display())))?,
            Err(_) => {
                let key = Key::generate(&rng).map_err(|e| setup_error(e.to_string()))?;
                write_private(&key_path, key.pkcs8())
                    .map_err(|e| setup_error(format!("{}: {e}", key_path.display())))?;
                key
            }
        };
        let account_url = std::fs::read_to_string(dir.join("account.url"))
            .ok()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty());
        let client = tls::client_config(&Verify::Names {
            ca_file: settings.ca.clone(),
            names: Vec::new(),
        })
        .map_err(Fatal::Tls)?;
        Ok(Acme {
            settings: settings.clone(),
            client,
            rng,
            account,
            account_url,
            certs: BTreeMap::new(),
            flight: None,
            timer: None,
            lookups: 0,
            issued: 0,
            failed: 0,
        })
    }

    fn dir(&self) -> PathBuf {
        PathBuf::from(&self.settings.dir)
    }

    fn wants_timer(&self, at: Instant) -> bool {
        self.timer == Some(at)
    }
}

/// A file only its owner can read, written whole.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Names that can be files and certificates: a kite's domain, lowercase.
fn usable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.contains("..")
}

/// Installs the certificates kept from earlier runs.
pub(super) fn start(fe: &mut State) {
    let Some(acme) = fe.acme.as_mut() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(acme.dir()) else {
        return;
    };
    for entry in entries.flatten().take(MAX_NAMES) {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".crt"))
        else {
            continue;
        };
        if !usable_name(name) || fe.endpoints.configured(name) {
            continue;
        }
        let (Ok(chain), Ok(key)) = (
            std::fs::read(&path),
            std::fs::read(path.with_extension("key")),
        ) else {
            continue;
        };
        match fe.endpoints.install_issued(name, &chain, &key) {
            Ok(()) => {
                let valid = tls::leaf_der(&chain).and_then(|d| der::validity(&d).ok());
                info!("acme: serving the stored certificate for {name}");
                acme.certs.insert(
                    name.to_string(),
                    Cert {
                        valid,
                        ..Cert::default()
                    },
                );
            }
            Err(e) => warn!("acme: cannot use the stored certificate for {name}: {e}"),
        }
    }
}

/// A kite went live: its name may need a certificate.
pub(super) fn kite_live(eng: &mut Cx, fe: &mut State, proto: &str, name: &str) {
    if fe.acme.is_none()
        || !matches!(proto, "http" | "websocket")
        || !usable_name(name)
        || fe.endpoints.configured(name)
    {
        return;
    }
    let Some(acme) = fe.acme.as_mut() else {
        return;
    };
    if !acme.certs.contains_key(name) && acme.certs.len() >= MAX_NAMES {
        return;
    }
    acme.certs.entry(name.to_string()).or_default();
    let now = eng.now;
    arm(eng, acme, now);
}

fn arm(eng: &mut Cx, acme: &mut Acme, at: Instant) {
    if acme.timer.is_some_and(|t| t <= at) {
        return;
    }
    acme.timer = Some(at);
    eng.arm_app(at, AppTimer::Acme);
}

impl State {
    /// Whether `at` is the `--acme` timer that counts.
    pub fn acme_timer_wanted(&self, at: Instant) -> bool {
        self.acme.as_ref().is_some_and(|a| a.wants_timer(at))
    }
}

impl State {
    /// ACME's state, with `--acme`.
    pub fn acme_summary(&self) -> Option<AcmeSummary> {
        let acme = self.acme.as_ref()?;
        let mut s = AcmeSummary {
            valid: 0,
            pending: 0,
            failing: 0,
            issued: acme.issued,
            failed: acme.failed,
            next_renewal: 0,
            names: Vec::new(),
        };
        let ordering = acme.flight.as_ref().map(|f| f.name.as_str());
        for (name, cert) in &acme.certs {
            let state = if ordering == Some(name.as_str()) {
                s.pending += 1;
                "ordering".to_string()
            } else if cert.failures > 0 {
                s.failing += 1;
                format!("failing ({} in a row)", cert.failures)
            } else if let Some((not_before, not_after)) = cert.valid {
                s.valid += 1;
                let renew =
                    u64::try_from(not_before + (not_after - not_before) * 2 / 3).unwrap_or(0);
                if s.next_renewal == 0 || renew < s.next_renewal {
                    s.next_renewal = renew;
                }
                format!("valid until {not_after} (renewal from {renew})")
            } else {
                s.pending += 1;
                "waiting".to_string()
            };
            s.names.push((name.clone(), state));
        }
        Some(s)
    }
}

/// `AppTimer::Acme`: an order's next step, or the next name due.
pub fn on_timer(eng: &mut Cx, fe: &mut State, at: Instant) {
    match fe.acme.as_mut() {
        Some(acme) if acme.timer == Some(at) => acme.timer = None,
        _ => return,
    }
    let waiting = fe
        .acme
        .as_ref()
        .and_then(|a| a.flight.as_ref())
        .is_some_and(|f| f.conn.is_none() && f.resolving.is_none());
    if waiting {
        return step(eng, fe);
    }
    if fe.acme.as_ref().is_some_and(|a| a.flight.is_none()) {
        begin_next(eng, fe);
    }
}

/// Whether `name` flies as an http or websocket kite now.
fn flies(fe: &State, name: &str) -> bool {
    fe.kites
        .keys()
        .any(|k| k.domain == name && matches!(k.proto.as_str(), "http" | "websocket"))
}

/// When `name` next needs an order (None: not while it holds a fresh one).
fn due(cert: &Cert, unix: i64, now: Instant) -> Option<Instant> {
    if let Some(at) = cert.retry_at {
        return Some(at.max(now));
    }
    match cert.valid {
        None => Some(now),
        Some((not_before, not_after)) => {
            let renew = not_before + (not_after - not_before) * 2 / 3;
            let wait = u64::try_from(renew - unix).unwrap_or(0);
            Some(now + Duration::from_secs(wait))
        }
    }
}

/// Starts the order of the most overdue name that flies, or arms the timer
/// for the next one due.
#[inline(never)]
fn begin_next(eng: &mut Cx, fe: &mut State) {
    let now = eng.now;
    let unix = i64::try_from(unix_now()).unwrap_or(i64::MAX);
    let mut next: Option<(Instant, String)> = None;
    if let Some(acme) = fe.acme.as_ref() {
        for (name, cert) in &acme.certs {
            if !flies(fe, name) || fe.endpoints.configured(name) {
                continue;
            }
            if let Some(at) = due(cert, unix, now) {
                if next.as_ref().is_none_or(|(t, _)| at < *t) {
                    next = Some((at, name.clone()));
                }
            }
        }
    }
    let Some((at, name)) = next else {
        return;
    };
    let Some(acme) = fe.acme.as_mut() else {
        return;
    };
    if at > now {
        return arm(eng, acme, at);
    }
    let key = match Key::generate(&acme.rng) {
        Ok(key) => key,
        Err(e) => return warn!("acme: {name}: {e}"),
    };
    let flow = match Flow::new(
        &acme.settings.directory,
        &[&name],
        acme.settings.email.as_deref(),
        acme.account_url.as_deref(),
        acme.settings.challenge,
    ) {
        Ok(flow) => flow,
        Err(e) => return warn!("acme: {name}: {e}"),
    };
    info!("acme: ordering a certificate for {name}");
    acme.flight = Some(Box::new(Flight {
        name,
        flow,
        key,
        alpn: None,
        conn: None,
        resolving: None,
    }));
    step(eng, fe);
}

/// Takes the flow's next step: a request, a wait, or the end.
fn step(eng: &mut Cx, fe: &mut State) {
    let Some(acme) = fe.acme.as_mut() else {
        return;
    };
    let Some(flight) = acme.flight.as_mut() else {
        return;
    };
    if acme.settings.challenge == ChallengeKind::TlsAlpn01 && flight.alpn.is_none() {
        if let Some(c) = flight.flow.challenges().first() {
            let key_auth = acme.account.key_authorization(&c.token);
            let made = flight
                .key
                .alpn_certificate(&acme.rng, &c.name, &key_auth)
                .map_err(|e| e.to_string())
                .and_then(|der| {
                    Endpoint::acme_alpn(&c.name, der, flight.key.pkcs8()).map_err(|e| e.0)
                });
            match made {
                Ok(endpoint) => flight.alpn = Some(endpoint),
                Err(e) => return failed(eng, fe, &e),
            }
        }
    }
    match flight.flow.next(&acme.account, &flight.key, &acme.rng) {
        Ok(Next::Send(req)) => send(eng, fe, req),
        Ok(Next::Wait(d)) => {
            let at = eng.now + d;
            arm(eng, acme, at);
        }
        Ok(Next::Done(chain)) => issued(eng, fe, &chain),
        Err(e) => failed(eng, fe, &e.to_string()),
    }
}

#[inline(never)]
fn send(eng: &mut Cx, fe: &mut State, req: Request) {
    let host = req.url.host.clone();
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => connect(eng, fe, std::net::SocketAddr::new(ip, req.url.port), req),
        Err(_) => {
            let Some(acme) = fe.acme.as_mut() else {
                return;
            };
            acme.lookups += 1;
            let generation = acme.lookups;
            let port = req.url.port;
            if let Some(flight) = acme.flight.as_mut() {
                flight.resolving = Some((generation, req));
            }
            fe.auth.lookup_for(RESOLVER_ID, generation, &host, port);
        }
    }
}

/// The ACME server's name is known.
/// A resolver answer for ACME (`id` is ours, or not for us).
pub(super) fn on_resolved(
    eng: &mut Cx,
    fe: &mut State,
    id: usize,
    generation: u64,
    result: Result<Vec<std::net::SocketAddr>, String>,
) {
    if id != RESOLVER_ID {
        return;
    }
    let Some(flight) = fe.acme.as_mut().and_then(|a| a.flight.as_mut()) else {
        return;
    };
    let req = match flight.resolving.take() {
        Some((g, req)) if g == generation => req,
        other => {
            flight.resolving = other;
            return;
        }
    };
    match result.ok().and_then(|a| a.first().copied()) {
        Some(addr) => connect(eng, fe, addr, req),
        None => failed(eng, fe, &format!("cannot resolve {}", req.url.host)),
    }
}

#[inline(never)]
fn connect(eng: &mut Cx, fe: &mut State, addr: std::net::SocketAddr, req: Request) {
    let Some(acme) = fe.acme.as_mut() else {
        return;
    };
    let tls = req
        .url
        .tls
        .then(|| (acme.client.clone(), req.url.host.clone()));
    let reply = ReplyReader::new(MAX_BODY, req.method == Method::Head);
    let bytes = req.to_bytes(USER_AGENT);
    let sock = match TcpStream::connect(addr) {
        Ok(sock) => sock,
        Err(e) => return failed(eng, fe, &format!("cannot connect to {addr}: {e}")),
    };
    debug!("acme: {:?} {}", req.method, req.url.as_str());
    let added = eng.add(sock, |sock, _| {
        Conn::Outbound(Box::new(Outbound::new(sock, addr, None, tls, bytes, reply)))
    });
    match added {
        Ok(token) => {
            eng.arm(token, TimerKind::Deadline, eng.now + REQUEST_TIMEOUT);
            if let Some(flight) = fe.acme.as_mut().and_then(|a| a.flight.as_mut()) {
                flight.conn = Some(token);
            }
        }
        Err(e) => failed(eng, fe, &format!("cannot watch a connection: {e}")),
    }
}

fn is_current(fe: &State, token: Token) -> bool {
    fe.acme
        .as_ref()
        .and_then(|a| a.flight.as_ref())
        .is_some_and(|f| f.conn == Some(token))
}

/// Drives a request's connection.
pub fn drive(eng: &mut Cx, fe: &mut State, token: Token, mut o: Box<Outbound>) -> Option<Conn> {
    match o.drive() {
        Step::Wait => Some(Conn::Outbound(o)),
        Step::Again => {
            eng.mark_again(token);
            Some(Conn::Outbound(o))
        }
        Step::Done(result) => {
            if !is_current(fe, token) {
                return None;
            }
            let flight = fe.acme.as_mut().and_then(|a| a.flight.as_mut())?;
            flight.conn = None;
            match result {
                Ok(response) => match flight.flow.handle(&response) {
                    Ok(()) => step(eng, fe),
                    Err(e) => failed(eng, fe, &e.to_string()),
                },
                Err(e) => failed(eng, fe, &format!("the ACME server: {e}")),
            }
            None
        }
    }
}

/// A request's time is up.
pub fn timeout(eng: &mut Cx, fe: &mut State, token: Token) -> Option<Conn> {
    if is_current(fe, token) {
        let why = format!("no answer in {} s", REQUEST_TIMEOUT.as_secs());
        failed(eng, fe, &why);
    }
    None
}

/// HTTP-01: the key authorization for `path` on `host`, while asked for.
pub fn answer(fe: &State, host: &str, path: &str) -> Option<String> {
    let token = path.strip_prefix("/.well-known/acme-challenge/")?;
    let acme = fe.acme.as_ref()?;
    let flight = acme.flight.as_ref()?;
    flight
        .flow
        .challenges()
        .iter()
        .find(|c| c.name == host && c.token == token)
        .map(|c| acme.account.key_authorization(&c.token))
}

/// TLS-ALPN-01: the certificate to offer a ClientHello for `name` that asks
/// for `acme-tls/1`, while the CA is to look.
pub fn alpn_endpoint(fe: &State, name: &str) -> Option<Endpoint> {
    let flight = fe.acme.as_ref()?.flight.as_ref()?;
    flight.alpn.as_ref().filter(|e| e.name == name).cloned()
}

#[inline(never)]
fn issued(eng: &mut Cx, fe: &mut State, chain: &str) {
    let Some(acme) = fe.acme.as_mut() else {
        return;
    };
    let Some(flight) = acme.flight.take() else {
        return;
    };
    let name = flight.name.clone();
    let dir = acme.dir();
    if acme.account_url.is_none() {
        if let Some(url) = flight.flow.account() {
            acme.account_url = Some(url.to_string());
            if let Err(e) = write_private(&dir.join("account.url"), url.as_bytes()) {
                warn!("acme: cannot keep the account URL: {e}");
            }
        }
    }
    let kept = write_private(&dir.join(format!("{name}.key")), flight.key.pkcs8())
        .and_then(|()| write_private(&dir.join(format!("{name}.crt")), chain.as_bytes()));
    if let Err(e) = kept {
        warn!(
            "acme: cannot keep the certificate for {name} in {}: {e}",
            dir.display()
        );
    }
    let valid = tls::leaf_der(chain.as_bytes()).and_then(|d| der::validity(&d).ok());
    match fe
        .endpoints
        .install_issued(&name, chain.as_bytes(), flight.key.pkcs8())
    {
        Ok(()) => {
            let until = valid.map_or_else(String::new, |(_, na)| {
                format!(
                    ", valid for {} days",
                    (na - unix_now() as i64).max(0) / 86_400
                )
            });
            info!("acme: certificate for {name} issued and installed{until}");
        }
        Err(e) => warn!("acme: the certificate issued for {name} is unusable: {e}"),
    }
    if let Some(acme) = fe.acme.as_mut() {
        acme.issued += 1;
        let cert = acme.certs.entry(name).or_default();
        cert.valid = valid;
        cert.failures = 0;
        cert.retry_at = None;
    }
    eng.status_changed();
    begin_next(eng, fe);
}

#[inline(never)]
fn failed(eng: &mut Cx, fe: &mut State, why: &str) {
    let now = eng.now;
    let Some(acme) = fe.acme.as_mut() else {
        return;
    };
    let Some(flight) = acme.flight.take() else {
        return;
    };
    acme.failed += 1;
    let cert = acme.certs.entry(flight.name.clone()).or_default();
    cert.failures = cert.failures.saturating_add(1);
    let wait = RETRY_FIRST
        .saturating_mul(1 << cert.failures.saturating_sub(1).min(9))
        .min(RETRY_MAX);
    cert.retry_at = Some(now + wait);
    warn!(
        "acme: no certificate for {}: {why}; trying again in {} s",
        flight.name,
        wait.as_secs()
    );
    eng.note_error(&format!("acme: {}: {why}", flight.name));
    begin_next(eng, fe);
}
