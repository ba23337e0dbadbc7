//! SIGHUP on a frontend: the new configuration's ports, domains and
//! secrets, protocols, TLS endpoints and access lists, applied without
//! dropping what they do not touch. Listeners for ports that stay are kept
//! (so are every open connection and tunnel); a kite is dropped only if the
//! new configuration would no longer accept it with the same secret, and a
//! tunnel only when none of its kites is left or `--tunnel_acl` now denies
//! it. Everything that can fail (reading PEM files, binding new ports) is
//! done before anything changes, so a failed reload changes nothing.

use super::*;
use crate::reload::ReloadError;

#[cfg(test)]
#[path = "frontend_reload_tests.rs"]
mod tests;

pub fn reload(eng: &mut Cx, fe: &mut State, new: &FrontendSettings) -> Result<(), ReloadError> {
    let endpoints = Endpoints::load(&new.tls_endpoints, new.tls_default.as_deref())
        .map_err(ReloadError::Tls)?;
    let client_acl = Acl::parse(&new.client_acl).map_err(ReloadError::ClientAcl)?;
    let tunnel_acl = Acl::parse(&new.tunnel_acl).map_err(ReloadError::TunnelAcl)?;

    // Listeners, matched by configured port; only the new ones are bound.
    let mut current = Vec::new();
    for &token in &fe.listeners {
        if let Some(Conn::Listener(l)) = eng.conns.get_mut(token) {
            current.push((token, l.configured, l.port));
        }
    }
    let mut kept: Vec<(Token, bool)> = Vec::new();
    let mut fresh = Vec::new();
    for (port, raw) in wanted_ports(new) {
        let reuse = current
            .iter()
            .find(|(t, c, _)| *c == port && !kept.iter().any(|(k, _)| k == t));
        match reuse {
            Some((token, _, _)) => kept.push((*token, raw)),
            None => fresh.push(bind_port(new.host, port, raw).map_err(ReloadError::Setup)?),
        }
    }

    // The new listeners join the reactor while the old ones still serve:
    // if that fails, `watch` has dropped them again and nothing changed.
    let fresh_ports: Vec<u16> = fresh.iter().filter(|b| !b.raw).map(|b| b.port).collect();
    let added = watch(eng, fresh).map_err(ReloadError::Setup)?;

    // From here on nothing fails.
    for (token, _, port) in &current {
        if !kept.iter().any(|(k, _)| k == token) {
            info!("no longer listening on port {port}");
            eng.conns.remove(*token);
        }
    }
    let mut listeners: Vec<Token> = Vec::new();
    let mut ports: Vec<u16> = Vec::new();
    for (token, raw) in kept {
        if let Some(Conn::Listener(l)) = eng.conns.get_mut(token) {
            l.raw = raw;
            if !raw {
                ports.push(l.port);
            }
        }
        listeners.push(token);
    }
    ports.extend(fresh_ports);
    listeners.extend(added);
    // Kites are judged by, and backends told, the ports after `--portalias`.
    let ports: Vec<u16> = ports
        .into_iter()
        .map(|p| new.ops.portalias.map(p))
        .collect();

    let raw_ports = numeric_raw_ports(new);
    let raw_virtual = new.raw_ports.iter().any(|p| p == "virtual");
    fe.listeners = listeners;

    // Kites the new configuration would not accept with the same secret.
    let revoked: Vec<(KiteKey, Token)> = {
        let old_policy = fe.policy();
        let new_policy = Policy {
            secrets: &new.domain_secrets,
            protos: &new.protos,
            ports: &ports,
            raw_ports: &raw_ports,
            raw_virtual,
            fe_secret: &fe.challenge_key,
        };
        // A kite an auth domain proved stays while the same auth domain
        // covers it (and the port and protocol are still served).
        let by_dns = |k: &KiteKey| {
            fe.dns_kites.get(k).is_some_and(|adom| {
                new.auth_domains.for_domain(&k.domain) == Some(adom.as_str())
                    && auth::still_served(&new_policy, &k.proto)
            })
        };
        // One an `--authfile` user proved stays while that user is listed
        // with the same secret and still covers it.
        let by_user = |k: &KiteKey| {
            let Some(name) = fe.user_kites.get(k) else {
                return false;
            };
            let old = fe.settings.auth_users.iter().find(|u| u.name == *name);
            let id = crate::proto::kite::KiteId::parse(&k.proto);
            new.auth_users.iter().any(|u| {
                u.name == *name
                    && old.is_some_and(|o| o.secret == u.secret)
                    && id.as_ref().is_some_and(|id| u.covers(id, &k.domain))
                    && auth::still_served(&new_policy, &k.proto)
            })
        };
        fe.kites
            .iter()
            .filter(|(k, _)| {
                !auth::still_accepted(&old_policy, &new_policy, &k.proto, &k.domain)
                    && !by_dns(k)
                    && !by_user(k)
            })
            .map(|(name, token)| (name.clone(), *token))
            .collect()
    };
    if fe.settings.domain_secrets != new.domain_secrets {
        info!(
            "domains: {} secret entries (were {})",
            new.domain_secrets.len(),
            fe.settings.domain_secrets.len()
        );
    }
    if new.acme != fe.settings.acme {
        warn!("--acme settings changed: they take effect at the next restart");
    }
    fe.settings = new.clone();
    fe.info = FrontendInfo {
        protos: new.protos.clone(),
        ports,
        raw_ports: new.raw_ports.clone(),
        motd: String::new(),
    };
    fe.raw_ports = raw_ports;
    fe.raw_virtual = raw_virtual;
    let mut endpoints = endpoints;
    endpoints.keep_issued(&mut fe.endpoints);
    fe.endpoints = endpoints;
    fe.client_acl = client_acl;
    fe.tunnel_acl = tunnel_acl;
    for (name, _) in &revoked {
        fe.kites.remove(name);
        fe.dns_kites.remove(name);
        fe.user_kites.remove(name);
    }

    for (name, token) in revoked {
        relay::log_kite(&name, "is down (the configuration no longer allows it)");
        let Some(Conn::Tunnel(t)) = eng.conns.get_mut(token) else {
            continue;
        };
        let Side::Frontend(info) = &mut t.side else {
            continue;
        };
        info.kites.retain(|k| *k != name);
        if info.kites.is_empty() {
            relay::discard(
                eng,
                fe,
                token,
                &Why::Operator("none of its kites is configured any more"),
            );
        }
    }

    // Tunnels from addresses the new --tunnel_acl denies.
    for token in eng.conns.tokens() {
        let denied = match eng.conns.get_mut(token) {
            Some(Conn::Tunnel(t)) => !fe.tunnel_acl.allows(t.peer.ip()),
            _ => false,
        };
        if denied {
            warn!("[t{}] closing a tunnel --tunnel_acl now denies", tag(token));
            relay::discard(eng, fe, token, &Why::Operator("denied by --tunnel_acl"));
        }
    }

    // `--motd` and `--accept_acl_file` are read again; each tunnel's
    // `--ratelimit_ips` limit follows the kites it still serves.
    fe.ops
        .reload(&new.ops, fe.kites.iter().map(|(k, t)| (k, *t)));
    fe.info.motd = fe.ops.motd.clone();
    Ok(())
}
