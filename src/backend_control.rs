//! The operator's handles on a running backend: SIGUSR1's "reconnect now",
//! SIGHUP's live reload of frontends and kites, and the backend's part of
//! the status file. A child of `backend`, so it works on the slot table
//! directly; it changes only what the new configuration changes, so
//! tunnels and streams it does not touch keep running.

use super::*;
use crate::proto::kite::KiteKey;
use crate::proto::netlink::AddrEvent;
use crate::reload::ReloadError;
use crate::status::json_str;

/// `host:port` of the frontend a tunnel belongs to.
pub fn frontend_name(be: &State, info: &TunnelInfo) -> Option<String> {
    be.slots.get(info.slot).map(Slot::name)
}

impl State {
    /// The settings this backend runs with.
    pub(crate) fn settings(&self) -> &BackendSettings {
        &self.settings
    }

    /// Every configured kite as `proto:domain` with its local server.
    #[inline(never)]
    pub(crate) fn kite_names(&self) -> Vec<(String, String)> {
        self.settings
            .kites
            .iter()
            .map(|k| (kite::key(&k.id.name(), &k.domain).to_string(), k.origin()))
            .collect()
    }

    /// One JSON object per configured frontend.
    #[inline(never)]
    pub(crate) fn slot_status(&self, now: Instant) -> Vec<String> {
        self.slots
            .iter()
            .filter(|s| s.state != SlotState::Removed)
            .map(|s| {
                let (state, retry) = match s.state {
                    SlotState::Resolving => ("resolving", None),
                    SlotState::Connected(_) => ("connected", None),
                    SlotState::Waiting(at) => ("waiting", Some(at.saturating_duration_since(now))),
                    SlotState::Stopped | SlotState::Removed => ("stopped", None),
                };
                format!(
                    "{{\"frontend\": {}, \"state\": \"{state}\", \"failures\": {}, \"retry_in_s\": {}, \"last_error\": {}}}",
                    json_str(&s.name()),
                    s.retry.attempts(),
                    retry.map_or("null".to_string(), |d| format!("{:.1}", d.as_secs_f64())),
                    s.last_error.as_deref().map_or("null".to_string(), json_str),
                )
            })
            .collect()
    }
}

/// SIGUSR1 (OpenWrt's hotplug on `ifup wan`): frontends waiting out a
/// back-off are dialed at once; a tunnel whose local address has gone is
/// replaced at once; every other live tunnel is PINGed now and replaced if
/// it does not answer within a few seconds. Healthy tunnels, and their
/// streams, are kept.
pub fn reconnect_now(eng: &mut Cx, be: &mut State) {
    if eng.stopping {
        return;
    }
    info!("SIGUSR1: redialing waiting frontends, checking live tunnels, retrying DNS updates now");
    let states: Vec<SlotState> = be.slots.iter().map(|s| s.state).collect();
    for (slot, slot_state) in states.into_iter().enumerate() {
        match slot_state {
            SlotState::Waiting(_) => {
                if let Some(s) = be.slots.get_mut(slot) {
                    s.retry.reset();
                }
                dial(eng, be, slot);
            }
            SlotState::Connected(token) => check_tunnel(eng, be, slot, token),
            SlotState::Resolving | SlotState::Stopped | SlotState::Removed => {}
        }
    }
    // A new uplink may have made other relays the fastest.
    fleet::check(be);
    dyndns::retry_now(eng, be);
}

#[inline(never)]
fn check_tunnel(eng: &mut Cx, be: &mut State, slot: usize, token: Token) {
    if replace_if_orphaned(eng, be, slot, token) {
        return;
    }
    let now = eng.now;
    if let Some(Conn::Tunnel(t)) = eng.conns.get_mut(token) {
        if let Some(link) = t.link.as_deref_mut() {
            link.suspect(now);
        }
        eng.arm(token, TimerKind::Keepalive, now);
    }
}

/// The host's addresses changed (`addrwatch`): tunnels bound to an address
/// that went are replaced at once (a new WAN lease), and when one appeared
/// (the network came up) frontends waiting out a back-off are dialed now.
pub fn on_addresses(
    eng: &mut Cx,
    be: &mut State,
    token: Token,
    mut watch: AddrWatch,
) -> Option<Conn> {
    let changes = watch.changes();
    if watch.ready.read {
        // The burst ended with more to read.
        eng.mark_again(token);
    }
    if eng.stopping || (changes.events.is_empty() && !changes.lost) {
        return Some(Conn::AddrWatch(watch));
    }
    let removed = changes.lost
        || changes
            .events
            .iter()
            .any(|e| matches!(e, AddrEvent::Removed(_)));
    let added = changes
        .events
        .iter()
        .any(|e| matches!(e, AddrEvent::Added(_)));
    debug!("host addresses changed: {:?}", changes.events);
    let states: Vec<SlotState> = be.slots.iter().map(|s| s.state).collect();
    let waiting = states
        .iter()
        .filter(|s| matches!(s, SlotState::Waiting(_)))
        .count();
    if added && waiting > 0 {
        info!("a host address appeared: dialing {waiting} waiting frontend(s) now");
    }
    for (slot, slot_state) in states.into_iter().enumerate() {
        match slot_state {
            SlotState::Connected(tunnel) if removed => {
                replace_if_orphaned(eng, be, slot, tunnel);
            }
            SlotState::Waiting(_) if added => {
                if let Some(s) = be.slots.get_mut(slot) {
                    s.retry.reset();
                }
                dial(eng, be, slot);
            }
            _ => {}
        }
    }
    Some(Conn::AddrWatch(watch))
}

/// Replaces a live tunnel whose local address is no longer this host's;
/// true if it did.
#[inline(never)]
fn replace_if_orphaned(eng: &mut Cx, be: &mut State, slot: usize, token: Token) -> bool {
    let Some(Conn::Tunnel(t)) = eng.conns.get_mut(token) else {
        return false;
    };
    if t.phase() != Phase::Live {
        return false;
    }
    let local = t.transport.sock.local_addr().ok();
    if !local.is_some_and(|a| address_gone(a.ip())) {
        return false;
    }
    info!(
        "[t{}] the tunnel's local address {} is gone: reconnecting",
        tag(token),
        local.map(|a| a.ip().to_string()).unwrap_or_default()
    );
    if let Some(s) = be.slots.get_mut(slot) {
        s.state = SlotState::Stopped;
        s.retry.reset();
    }
    relay::discard(eng, be, token, &Why::Operator("local address gone"));
    dial(eng, be, slot);
    true
}

/// Whether `ip` is no longer an address of this host (a new WAN lease).
fn address_gone(ip: IpAddr) -> bool {
    matches!(
        std::net::TcpListener::bind(SocketAddr::new(ip, 0)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable
    )
}

/// SIGHUP on a backend: new and removed frontends are dialed and closed,
/// kites added to live tunnels in band (AddKites), removed kites refused
/// from now on, changed local servers and options used by new streams.
/// Fails, changing nothing, when the new TLS settings cannot be loaded.
pub fn reload(eng: &mut Cx, be: &mut State, new: &BackendSettings) -> Result<(), ReloadError> {
    let tls = BackendTls::new(new).map_err(ReloadError::Setup)?;
    let options = crate::config::kite_options(new).map_err(ReloadError::Options)?;
    let key = |k: &ServiceKite| kite::key(&k.id.name(), &k.domain);
    let old: HashMap<KiteKey, (ServiceKite, KiteOptions)> = be
        .settings
        .kites
        .iter()
        .cloned()
        .zip(be.options.iter().cloned())
        .map(|(k, o)| (key(&k), (k, o)))
        .collect();
    let mut added = Vec::new();
    for (i, k) in new.kites.iter().enumerate() {
        let name = key(k);
        match old.get(&name) {
            None => {
                info!("kite {name} added ({})", k.origin());
                added.push(name);
            }
            Some((was, was_options)) => {
                if was.origin() != k.origin() {
                    info!(
                        "kite {name}: new streams go to {} (was {})",
                        k.origin(),
                        was.origin()
                    );
                }
                if options.get(i) != Some(was_options) {
                    info!("kite {name}: new options apply to new streams");
                }
                if was.secret != k.secret {
                    info!("kite {name}: the new secret is used from the next connection");
                }
            }
        }
    }
    let removed: Vec<KiteKey> = old
        .keys()
        .filter(|n| !new.kites.iter().any(|k| key(k) == **n))
        .cloned()
        .collect();
    for name in &removed {
        info!("kite {name} removed: its visitors get the 503 page until the tunnel reconnects");
    }
    be.services = new
        .kites
        .iter()
        .enumerate()
        .map(|(i, k)| (key(k), i))
        .collect();
    if new.proxies != be.settings.proxies {
        // Like the TLS settings: live tunnels keep the way they came.
        info!("the new proxy chain (--proxy) is used from the next connection");
    }
    dyndns::reload(eng, be, new).map_err(ReloadError::Setup)?;
    be.settings = new.clone();
    be.options = options;
    be.tls = tls;

    reload_frontends(eng, be, &via_proxy::plain_frontends(new));
    fleet::reload(eng, be, new);

    let live: Vec<(usize, Token)> = Some(&*be)
        .map(|be| {
            be.slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| match s.state {
                    SlotState::Connected(t) => Some((i, t)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    for (slot, token) in live {
        update_tunnel_kites(eng, be, slot, token, &added, &removed);
    }
    Ok(())
}

/// Closes tunnels to frontends no longer configured and dials new ones.
fn reload_frontends(eng: &mut Cx, be: &mut State, wanted: &[(String, u16)]) {
    let mut closing = Vec::new();
    for s in be.slots.iter_mut() {
        let keep = wanted.iter().any(|(h, p)| *h == s.host && *p == s.port);
        // The pool's slots are `fleet`'s to keep or drop.
        if keep || s.pool || s.state == SlotState::Removed {
            continue;
        }
        info!(
            "frontend {}:{} removed from the configuration",
            s.host, s.port
        );
        if let SlotState::Connected(token) = s.state {
            closing.push(token);
        }
        s.state = SlotState::Removed;
    }
    let mut dialing = Vec::new();
    for (host, port) in wanted {
        let present = be.slots.iter().any(|s| {
            s.state != SlotState::Removed && !s.pool && s.host == *host && s.port == *port
        });
        if present {
            continue;
        }
        info!("frontend {host}:{port} added to the configuration");
        let fresh = Slot::new(host, *port);
        match be.slots.iter().position(|s| s.state == SlotState::Removed) {
            Some(i) => {
                // Reuse a tombstone: its tunnel, if any, is closed below and
                // is not the slot's Connected tunnel any more.
                if let Some(s) = be.slots.get_mut(i) {
                    *s = fresh;
                }
                dialing.push(i);
            }
            _ => {
                be.slots.push(fresh);
                dialing.push(be.slots.len() - 1);
            }
        }
    }
    for token in closing {
        relay::discard(
            eng,
            be,
            token,
            &Why::Operator("frontend removed from the configuration"),
        );
    }
    for slot in dialing {
        dial(eng, be, slot);
    }
}

/// Brings a live tunnel's kites in line with the configuration.
#[inline(never)]
fn update_tunnel_kites(
    eng: &mut Cx,
    be: &mut State,
    slot: usize,
    token: Token,
    added: &[KiteKey],
    removed: &[KiteKey],
) {
    let Some(Conn::Tunnel(t)) = eng.conns.get_mut(token) else {
        return;
    };
    let handshaking = t.phase() != Phase::Live;
    let Side::Backend(info) = &mut t.side else {
        return;
    };
    info.live.retain(|k| !removed.contains(k));
    if added.is_empty() {
        return;
    }
    if handshaking || !info.addkites {
        // A request already sent without the new kites, or a frontend that
        // cannot take them in band: ask again from the start.
        info!("[t{}] reconnecting to ask for the new kite(s)", tag(token));
        if let Some(s) = be.slots.get_mut(slot) {
            s.state = SlotState::Stopped;
        }
        relay::discard(eng, be, token, &Why::Operator("reconnecting to add kites"));
        dial(eng, be, slot);
        return;
    }
    let Some(s) = be.slots.get(slot) else {
        return;
    };
    let new_kites: Vec<ServiceKite> = be
        .settings
        .kites
        .iter()
        .filter(|k| added.contains(&kite::key(&k.id.name(), &k.domain)))
        .cloned()
        .collect();
    let lines = signed_lines(&new_kites, &s.srand, &HashMap::new());
    let lines = handshake::inband_request_lines(VERSION, &lines);
    let Some(Conn::Tunnel(t)) = eng.conns.get_mut(token) else {
        return;
    };
    if let Some(link) = t.link.as_deref_mut() {
        link.send_noop(&lines, b"\r\n!");
    }
    debug!(
        "[t{}] asked for {} new kite(s) in band",
        tag(token),
        new_kites.len()
    );
    eng.mark_dirty(token);
}
