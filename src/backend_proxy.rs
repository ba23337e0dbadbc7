//! A backend's way out through `--proxy`/`--socksify`/`--torify`: which
//! host a tunnel's socket connects to (the first proxy, not the frontend),
//! and the chain's handshake on that socket before the tunnel's own bytes
//! (CONNECT+TLS, direct TLS or plain). A child of `backend`: the byte
//! machines are `proto::proxy`'s; this moves bytes between them and the
//! tunnel's buffers, and words failures with the hop that failed.
//!
//! The frontend's name (or IP literal) is what the last proxy is asked
//! for: a backend with a proxy chain never looks `--frontend` names up
//! itself (SocksiPy's remote-DNS default, and the only safe way with Tor).
//! A `--frontends` pool's addresses are pinged through the chain, as
//! pagekite.py does; with `--torify` (no pings, no look-ups) or a first
//! proxy known only by name (a ping can't wait for a look-up) the pool's
//! NAME is dialed through the chain as a plain frontend instead.

use super::*;
use crate::proto::proxy::{self, ChainHandshake, Progress, ProxySpec, Target};
use crate::why::{ProxyFailure, ProxyFault};

/// Bytes read from a proxy in one go (its replies are small).
const READ: usize = 16 * 1024;
/// Reads in one readiness event, so a chatty proxy can't hold the reactor.
const MAX_READS: usize = 64;

/// The host and port `slot`'s socket connects to: the first proxy's with a
/// chain, the frontend's without.
pub(super) fn dial_to<'a>(chain: &'a [ProxySpec], slot: &'a Slot) -> (&'a str, u16) {
    match chain.first() {
        Some(first) => (&first.host, first.port),
        None => (&slot.host, slot.port),
    }
}

/// For logs: `frontend via proxy …` or the frontend alone.
pub(super) fn route(chain: &[ProxySpec], slot: &Slot) -> String {
    match chain.first() {
        Some(first) => format!("{} via proxy {first}", slot.name()),
        None => slot.name(),
    }
}

/// A frontend host no proxy of the chain can be asked for.
pub(super) struct NoTarget {
    proxy: String,
    frontend: String,
}

impl std::fmt::Display for NoTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (proxy, frontend) = (&self.proxy, &self.frontend);
        write!(f, "proxy 1 ({proxy}) cannot be asked for {frontend}")
    }
}

/// The chain's handshake for a new tunnel to `slot`, or why there is none
/// (a frontend host no proxy can be asked for).
pub(super) fn handshake(
    chain: &[ProxySpec],
    slot: &Slot,
) -> Option<Result<Box<ChainHandshake>, NoTarget>> {
    let first = chain.first()?;
    let made = Target::new(&slot.host, slot.port)
        .ok()
        .and_then(|target| ChainHandshake::new(chain, target))
        .map(Box::new)
        .ok_or_else(|| NoTarget {
            proxy: first.to_string(),
            frontend: slot.name(),
        });
    Some(made)
}

/// The frontends dialed one by one: the configured ones, plus the
/// `--frontends` pool's NAME when `--torify` forbids pinging its addresses.
pub(super) fn plain_frontends(config: &BackendSettings) -> Vec<(String, u16)> {
    let mut list = config.frontends.clone();
    if let Some(pool) = &config.frontend_pool {
        if !fleet_pings(&config.proxies) {
            list.push((pool.name.clone(), pool.port));
        }
    }
    list
}

/// Whether a `--frontends` pool is pinged (and chosen from) with this
/// chain: not through Tor, and only with a first proxy given by address.
pub(super) fn fleet_pings(chain: &[ProxySpec]) -> bool {
    proxy::pings_frontends(chain)
        && chain
            .first()
            .is_none_or(|first| first.host.parse::<IpAddr>().is_ok())
}

/// Where a ping of the pool address `addr` connects, and the chain's
/// handshake to reach `addr` from there (None: directly).
pub(super) fn probe_route(
    chain: &[ProxySpec],
    addr: SocketAddr,
) -> (SocketAddr, Option<Box<ChainHandshake>>) {
    let first = chain
        .first()
        .and_then(|p| Some(SocketAddr::new(p.host.parse::<IpAddr>().ok()?, p.port)));
    match first {
        Some(proxy) => (
            proxy,
            ChainHandshake::new(chain, Target::Addr(addr)).map(Box::new),
        ),
        None => (addr, None),
    }
}

fn failed(be: &State, hop: usize, fault: ProxyFault) -> Why {
    let proxy = be
        .settings
        .proxies
        .get(hop)
        .map_or_else(String::new, ToString::to_string);
    Why::Proxy(Box::new(ProxyFailure {
        hop: hop + 1,
        proxy,
        fault,
    }))
}

/// A failed connect: the first proxy's when the tunnel has a chain.
pub(super) fn dial_failed(be: &State, side: &Side, why: Why) -> Why {
    match (side, why) {
        (Side::Backend(info), Why::Failed(f)) if info.proxy.is_some() => {
            failed(be, 0, ProxyFault::Socket(f))
        }
        (_, why) => why,
    }
}

/// Starts the chain's handshake once connected; false without a chain.
pub(super) fn start(t: &mut Tunnel) -> bool {
    let has_chain = matches!(&t.side, Side::Backend(info) if info.proxy.is_some());
    if has_chain {
        t.pre = Phase::Proxy;
    }
    has_chain
}

/// Sends and reads the chain's handshake; true once it is through (the
/// tunnel's own bytes that came with the last reply stay in `t.inb`).
pub(super) fn drive(be: &State, token: Token, t: &mut Tunnel) -> Result<bool, Why> {
    let Tunnel {
        transport,
        inb,
        out,
        side,
        peer,
        ..
    } = t;
    let Side::Backend(info) = side else {
        return Ok(true);
    };
    for _ in 0..MAX_READS {
        let Some(hs) = info.proxy.as_mut() else {
            return Ok(true);
        };
        if let Some(bytes) = hs.poll_transmit() {
            out.extend(&bytes);
        }
        if !inb.is_empty() {
            let fed = inb.len();
            match hs.handle_input(inb.data()) {
                Ok(Progress::NeedMore) => {
                    inb.consume(fed);
                    continue;
                }
                Ok(Progress::Done { leftover_from }) => {
                    inb.consume(leftover_from.min(fed));
                    debug!(
                        "[t{} {}] through {} proxy hop(s)",
                        tag(token),
                        peer,
                        hs.hop() + 1
                    );
                    info.proxy = None;
                    return Ok(true);
                }
                Err(e) => return Err(failed(be, hs.hop(), ProxyFault::Said(e))),
            }
        }
        match relay::read_some(transport, inb, READ) {
            Io::Done(_) => {}
            Io::WouldBlock | Io::Starved => return Ok(false),
            Io::Eof => return Err(failed(be, hs.hop(), ProxyFault::Closed)),
            Io::Failed(f) => return Err(failed(be, hs.hop(), ProxyFault::Socket(f))),
        }
    }
    Ok(false)
}

/// A wrong or missing proxy password won't fix itself: an error line.
pub(super) fn is_lasting(why: &Why) -> bool {
    matches!(why, Why::Proxy(p) if matches!(&p.fault, ProxyFault::Said(e) if e.is_auth_failure()))
}
