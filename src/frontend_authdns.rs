//! The frontend's `--authdomain` look-ups, run off the reactor: the
//! resolver (getaddrinfo on short-lived helper threads, at most
//! `authdns::MAX_IN_FLIGHT` at once), the answer cache, and the tunnels
//! whose handshake (or in-band kite round) waits for an answer. What a name
//! is and what an answer means is `proto::authdns`'s; judging kites and
//! answering the backend stays in `frontend.rs`. Nothing here blocks:
//! a waiting tunnel keeps its handshake deadline, and a flood of requests
//! past the queue's bound is refused without a look-up.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use log::{debug, warn};
use mio::{Registry, Token};

use crate::logging::escape;
use crate::proto::authdns::{Cache, Lookups, Outcome, Want, decode};
use crate::proto::handshake::TunnelRequest;
use crate::resolve::{Answer, Resolver};

/// The resolver id of auth-domain look-ups; other askers (ACME) share the
/// frontend's one resolver with other ids and get their answers back.
const AUTH_ID: usize = 0;

/// What a kite waiting for a look-up is judged by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// The auth server's answer.
    Answer(Outcome),
    /// No answer (no such name, no server, no IPv4 address): accepted
    /// unless `--authfail_closed`, as pagekite.py.
    Failed,
    /// Too many look-ups queued already: refused without asking (pagekite.py
    /// would accept it unasked, which a flood could use).
    Busy,
}

/// A tunnel's request held until its look-ups are answered.
pub struct Waiting {
    pub request: TunnelRequest,
    pub peer: SocketAddr,
    /// An in-band kite round (the tunnel is live already) rather than the
    /// tunnel request itself.
    pub in_band: bool,
    names: HashMap<String, Option<Resolved>>,
    /// What it counts in `held`.
    cost: usize,
}

/// Bytes a held request costs: its kite lines' text, the names asked and
/// the table entries (an estimate that only has to grow with the input).
fn cost(request: &TunnelRequest, names: &HashMap<String, Option<Resolved>>) -> usize {
    let kites: usize = request
        .kites
        .iter()
        .map(|k| {
            k.proto.len() + k.domain.len() + k.srand.len() + k.token.len() + k.sign.len() + 5 * 24
        })
        .sum();
    let names: usize = names.keys().map(|n| n.len() + 64).sum();
    kites + names + 256
}

pub struct AuthDns {
    resolver: Resolver,
    cache: Cache,
    lookups: Lookups<Token>,
    /// Look-ups started: sequence number → name.
    asked: HashMap<u64, String>,
    next: u64,
    waiting: HashMap<Token, Waiting>,
    /// What the held requests cost, counted against `--buffers` with the
    /// other handshake state.
    held: usize,
    /// Look-ups sent to the resolver, and those that got no answer.
    pub queries: u64,
    pub failures: u64,
}

impl AuthDns {
    pub fn new(registry: &Registry, token: Token) -> std::io::Result<AuthDns> {
        Ok(AuthDns {
            resolver: Resolver::new(registry, token)?,
            cache: Cache::default(),
            lookups: Lookups::default(),
            asked: HashMap::new(),
            next: 0,
            waiting: HashMap::new(),
            held: 0,
            queries: 0,
            failures: 0,
        })
    }

    /// Starts a look-up for another asker (its answer comes back from
    /// [`on_wake`](Self::on_wake) with its `id`).
    pub fn lookup_for(&self, id: usize, generation: u64, host: &str, port: u16) {
        self.resolver.lookup(id, generation, host, port);
    }

    /// Answers served from the cache.
    pub fn cache_hits(&self) -> u64 {
        self.cache.hits
    }

    /// What `name` resolved to for `token`'s kites, if known: this tunnel's
    /// own answers first (a cached answer may have expired meanwhile),
    /// then the cache.
    pub fn known(&mut self, token: Token, name: &str, now: Instant) -> Option<Resolved> {
        if let Some(Some(r)) = self.waiting.get(&token).and_then(|w| w.names.get(name)) {
            return Some(r.clone());
        }
        self.cache.get(name, now).map(Resolved::Answer)
    }

    /// Whether `name` needs asking for `token`.
    pub fn missing(&self, token: Token, name: &str, now: Instant) -> bool {
        let own = self
            .waiting
            .get(&token)
            .and_then(|w| w.names.get(name))
            .is_some_and(Option::is_some);
        !own && !self.cache.has(name, now)
    }

    /// Holds `token`'s request until `names` (with their auth domains, for
    /// the log) are
    /// answered, starting the look-ups the queue allows. True when nothing
    /// is left to wait for (every name was refused as busy).
    pub fn hold(
        &mut self,
        token: Token,
        request: TunnelRequest,
        peer: SocketAddr,
        in_band: bool,
        names: Vec<(String, String)>,
    ) -> bool {
        // A request held before (judged again and still missing a name)
        // is replaced, its look-ups with it.
        self.release(token);
        let mut wanted = HashMap::new();
        for (name, adom) in names {
            let state = match self.lookups.want(&name, token) {
                Want::Start => {
                    self.start(&name);
                    None
                }
                Want::Joined | Want::Queued => None,
                Want::Full => {
                    self.failures += 1;
                    warn!(
                        "[t{}] auth look-up under {} refused: {} look-ups queued already",
                        crate::relay::tag(token),
                        escape(&adom),
                        self.lookups.queued()
                    );
                    Some(Resolved::Busy)
                }
            };
            wanted.insert(name, state);
        }
        let ready = wanted.values().all(Option::is_some);
        let cost = cost(&request, &wanted);
        self.held += cost;
        self.waiting.insert(
            token,
            Waiting {
                request,
                peer,
                in_band,
                names: wanted,
                cost,
            },
        );
        ready
    }

    fn start(&mut self, name: &str) {
        let seq = self.next;
        self.next += 1;
        self.queries += 1;
        debug!("auth look-up {}", escape(name));
        self.asked.insert(seq, name.to_string());
        self.resolver.lookup(AUTH_ID, seq, name, 0);
    }

    /// Takes `token`'s held request (of the in-band kind or not) once all
    /// its names are answered.
    pub fn take_ready(
        &mut self,
        token: Token,
        in_band: bool,
    ) -> Option<(TunnelRequest, SocketAddr)> {
        let w = self.waiting.get_mut(&token)?;
        if w.in_band != in_band || !w.names.values().all(Option::is_some) {
            return None;
        }
        Some((std::mem::take(&mut w.request), w.peer))
    }

    /// Whether `token`'s held request is an in-band round.
    pub fn waiting_in_band(&self, token: Token) -> Option<bool> {
        self.waiting.get(&token).map(|w| w.in_band)
    }

    /// Whether `token` has a request held.
    pub fn is_waiting(&self, token: Token) -> bool {
        self.waiting.contains_key(&token)
    }

    /// Done with `token`'s answers (its kites are judged, or it closed).
    pub fn release(&mut self, token: Token) {
        if let Some(w) = self.waiting.remove(&token) {
            self.held = self.held.saturating_sub(w.cost);
            self.lookups.forget(token);
        }
    }

    /// Bytes the held requests cost.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Reads the resolver's answers; the tokens whose requests are now
    /// fully answered, in order.
    pub fn on_wake(&mut self, now: Instant) -> (Vec<Token>, Vec<Answer>) {
        let answers: Vec<_> = self.resolver.answers().collect();
        let mut ready = Vec::new();
        let mut others = Vec::new();
        for (id, seq, result) in answers {
            if id != AUTH_ID {
                others.push((id, seq, result));
                continue;
            }
            let Some(name) = self.asked.remove(&seq) else {
                continue;
            };
            let v4 = result.as_ref().ok().and_then(|addrs| {
                addrs.iter().find_map(|a| match a.ip() {
                    IpAddr::V4(ip) => Some(ip),
                    IpAddr::V6(_) => None,
                })
            });
            let resolved = match v4 {
                Some(ip) => {
                    let outcome = decode(ip);
                    self.cache.put(&name, outcome, now);
                    Resolved::Answer(outcome)
                }
                None => {
                    self.failures += 1;
                    let why = match &result {
                        Err(e) => escape(e).to_string(),
                        Ok(_) => "no IPv4 address in the answer".to_string(),
                    };
                    warn!(
                        "auth look-up of {} failed ({} so far): {why}",
                        escape(&name),
                        self.failures
                    );
                    Resolved::Failed
                }
            };
            let (waiters, next) = self.lookups.done(&name);
            if let Some(next) = next {
                self.start(&next);
            }
            for token in waiters {
                let Some(w) = self.waiting.get_mut(&token) else {
                    continue;
                };
                if let Some(slot) = w.names.get_mut(&name) {
                    *slot = Some(resolved.clone());
                }
                if w.names.values().all(Option::is_some) && !ready.contains(&token) {
                    ready.push(token);
                }
            }
        }
        (ready, others)
    }
}
