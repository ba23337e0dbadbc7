//! Kite names (protocol doc §2.2, §6.2, §6.5): kite ids such as `http-9082`,
//! the [`KiteKey`]s (`proto[-port]:domain`) kites are registered under, the wildcard
//! parents a name may match, and the exact order in which the frontend and
//! the backend try candidate keys. Pure string logic; the tables that the
//! keys index live with the roles.

/// Protocols a frontend accepts kites for when `--protos` is not given.
pub const DEFAULT_PROTOS: &[&str] = &[
    "http",
    "http2",
    "http3",
    "https",
    "websocket",
    "irc",
    "raw",
    "xmpp",
];

/// The catch-all domain name (§2.2).
pub const CATCH_ALL: &str = "unknown";

/// A kite id split into its base protocol and optional public port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KiteId {
    pub base: String,
    pub port: Option<u16>,
}

impl KiteId {
    /// Parses `http`, `http-9082`, and the command line's `http/9082`.
    pub fn parse(text: &str) -> Option<KiteId> {
        let text = text.trim().to_ascii_lowercase();
        let (base, port) = match text.split_once(['-', '/']) {
            Some((base, port)) => (base.to_string(), Some(port.parse().ok()?)),
            None => (text, None),
        };
        let valid = !base.is_empty()
            && base.len() <= 24
            && base.bytes().all(|b| b.is_ascii_alphanumeric())
            && port != Some(0);
        valid.then_some(KiteId { base, port })
    }

    /// `http` or `http-9082`, as on the wire.
    pub fn name(&self) -> String {
        match self.port {
            Some(port) => format!("{}-{}", self.base, port),
            None => self.base.clone(),
        }
    }
}

/// The key a kite is registered under: its protocol as on the wire
/// (`http`, `http-9082`) and its domain (maybe `*.wildcard` or `unknown`).
/// Kept as two fields so no one splits a joined string again; shown as
/// `proto:domain` in logs and the status file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KiteKey {
    pub proto: String,
    pub domain: String,
}

impl KiteKey {
    /// The kite an answer's `proto:domain[:rest]` value names (§2.4): None
    /// without a domain part.
    pub fn of_answer(what: &str) -> Option<KiteKey> {
        let mut parts = what.splitn(3, ':');
        match (parts.next(), parts.next()) {
            (Some(proto), Some(domain)) => Some(key(proto, domain)),
            _ => None,
        }
    }
}

impl std::fmt::Display for KiteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.proto, self.domain)
    }
}

/// The key a kite is registered under.
pub fn key(proto: &str, domain: &str) -> KiteKey {
    KiteKey {
        proto: proto.to_string(),
        domain: domain.to_string(),
    }
}

/// Wildcard names that cover `host`, nearest first: for `a.b.c.d` these are
/// `*.b.c.d`, `*.c.d` and, when `include_tld`, `*.d`. The frontend's routing
/// never tries a bare `*.tld`; secret lookups do (pagekite.py semantics).
pub fn wildcards(host: &str, include_tld: bool) -> impl Iterator<Item = String> + '_ {
    let min_dots = if include_tld { 0 } else { 1 };
    host.match_indices('.').filter_map(move |(i, _)| {
        let parent = host.get(i + 1..)?;
        (parent.matches('.').count() >= min_dots && !parent.is_empty())
            .then(|| format!("*.{parent}"))
    })
}

/// `host` itself followed by its wildcard parents.
fn names(host: &str, include_tld: bool) -> impl Iterator<Item = String> + '_ {
    std::iter::once(host.to_string()).chain(wildcards(host, include_tld))
}

/// `host`'s parents that may be written as `*.parent` (see [`wildcards`]).
fn parents(host: &str, include_tld: bool) -> impl Iterator<Item = &str> {
    let min_dots = if include_tld { 0 } else { 1 };
    host.match_indices('.').filter_map(move |(i, _)| {
        let parent = host.get(i + 1..)?;
        (parent.matches('.').count() >= min_dots && !parent.is_empty()).then_some(parent)
    })
}

/// The protocols a request of `proto` may be served by, in order (§6.2).
pub fn fallbacks(proto: &str) -> impl Iterator<Item = &str> + Clone {
    let extra: &[&str] = match proto {
        "websocket" => &["http", "http2", "http3"],
        "http" => &["http2", "http3"],
        _ => &[],
    };
    std::iter::once(proto).chain(extra.iter().copied())
}

/// Calls `visit(key, proto)` with the keys the frontend tries, in order, to
/// route a public request of `proto` for `host` on `port` (§6.2), each with
/// the protocol it would be sent as, until `visit` finds one. The catch-all
/// comes last; rkite also tries a port-specific catch-all before the plain
/// one, which pagekite.py lacks but nobody can object to. Keys are built in
/// one reused key: routing a request allocates its two strings once.
pub fn find_for_frontend<T>(
    proto: &str,
    host: &str,
    port: u16,
    mut visit: impl FnMut(&KiteKey, &str) -> Option<T>,
) -> Option<T> {
    let mut key = KiteKey {
        proto: String::with_capacity(24),
        domain: String::with_capacity(host.len() + 8),
    };
    let mut try_key = |key: &mut KiteKey, p: &str, with_port: bool, star: bool, name: &str| {
        key.fill(p, with_port.then_some(port), star, name);
        visit(key, p)
    };
    for p in fallbacks(proto) {
        for with_port in [true, false] {
            if let Some(found) = try_key(&mut key, p, with_port, false, host) {
                return Some(found);
            }
            for parent in parents(host, false) {
                if let Some(found) = try_key(&mut key, p, with_port, true, parent) {
                    return Some(found);
                }
            }
        }
    }
    for with_port in [true, false] {
        if let Some(found) = try_key(&mut key, proto, with_port, false, CATCH_ALL) {
            return Some(found);
        }
    }
    None
}

impl KiteKey {
    /// Makes this key `p[-port]:[*.]name`, reusing its strings.
    fn fill(&mut self, p: &str, port: Option<u16>, star: bool, name: &str) {
        use std::fmt::Write;
        self.proto.clear();
        self.proto.push_str(p);
        if let Some(port) = port {
            let _ = write!(self.proto, "-{port}");
        }
        self.domain.clear();
        if star {
            self.domain.push_str("*.");
        }
        self.domain.push_str(name);
    }
}

/// Every key [`find_for_frontend`] would try, in order, with its protocol.
pub fn frontend_candidates(proto: &str, host: &str, port: u16) -> Vec<(String, String)> {
    let mut out = Vec::new();
    find_for_frontend(proto, host, port, |key, p| {
        out.push((key.to_string(), p.to_string()));
        None::<()>
    });
    out
}

/// Keys the backend tries, in order, to find the local service for a new
/// stream (§4.1): `p-port:host`, `p:host`, `p:unknown` for each fallback
/// protocol, each host lookup also trying wildcards up to `*.tld`.
pub fn backend_candidates(proto: &str, host: &str, port: Option<u16>) -> Vec<String> {
    let mut out = Vec::new();
    find_for_backend(proto, host, port, |key| {
        out.push(key.to_string());
        None::<()>
    });
    out
}

/// Calls `visit(key)` with the keys of [`backend_candidates`], in order,
/// until it finds one; built in one reused key.
pub fn find_for_backend<T>(
    proto: &str,
    host: &str,
    port: Option<u16>,
    mut visit: impl FnMut(&KiteKey) -> Option<T>,
) -> Option<T> {
    let mut key = KiteKey {
        proto: String::with_capacity(24),
        domain: String::with_capacity(host.len() + 8),
    };
    let mut try_key = |p: &str, port: Option<u16>, star: bool, name: &str| {
        key.fill(p, port, star, name);
        visit(&key)
    };
    for p in fallbacks(proto) {
        // With the port first (when there is one), then without.
        for port in port.map(Some).into_iter().chain([None]) {
            if let Some(found) = try_key(p, port, false, host) {
                return Some(found);
            }
            for parent in parents(host, true) {
                if let Some(found) = try_key(p, port, true, parent) {
                    return Some(found);
                }
            }
        }
        if let Some(found) = try_key(p, None, false, CATCH_ALL) {
            return Some(found);
        }
    }
    None
}

/// Keys under which a frontend's `--domain` secret for a kite is looked up
/// (§2.7 step 5): `PROTO:DOMAIN` then `BASEPROTO:DOMAIN`, each name first
/// exact, then wildcard parents up to `*.tld`.
pub fn secret_candidates(kite: &KiteId, domain: &str) -> Vec<String> {
    let mut protos = vec![kite.name()];
    if kite.port.is_some() {
        protos.push(kite.base.clone());
    }
    let mut out = Vec::new();
    for p in &protos {
        out.extend(names(domain, true).map(|n| key(p, &n).to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kite_ids() {
        let id = KiteId::parse("http-9082").unwrap();
        assert_eq!((id.base.as_str(), id.port), ("http", Some(9082)));
        assert_eq!(KiteId::parse("HTTP/8080").unwrap().name(), "http-8080");
        assert_eq!(KiteId::parse("raw").unwrap().port, None);
        assert_eq!(KiteId::parse("http-x"), None);
        assert_eq!(KiteId::parse("http-0"), None);
        assert_eq!(KiteId::parse("-80"), None);
        assert_eq!(KiteId::parse("ht tp"), None);
    }

    #[test]
    fn keys_show_as_proto_colon_domain() {
        let k = key("http-8080", "*.foo.test");
        assert_eq!(
            (k.proto.as_str(), k.domain.as_str()),
            ("http-8080", "*.foo.test")
        );
        assert_eq!(k.to_string(), "http-8080:*.foo.test");
        // An answer's value carries more after the domain (the srand).
        assert_eq!(
            KiteKey::of_answer("raw-22:a.test:abc"),
            Some(key("raw-22", "a.test"))
        );
        assert_eq!(
            KiteKey::of_answer("http:a.test"),
            Some(key("http", "a.test"))
        );
        assert_eq!(KiteKey::of_answer("http"), None);
        let mut found = Vec::new();
        find_for_backend("http", "a.b.test", None, |k| {
            found.push(k.clone());
            None::<()>
        });
        assert_eq!(found.get(1), Some(&key("http", "*.b.test")));
    }

    #[test]
    fn wildcard_parents() {
        let routing: Vec<_> = wildcards("a.b.c.d", false).collect();
        assert_eq!(routing, ["*.b.c.d", "*.c.d"]);
        let secrets: Vec<_> = wildcards("a.b.c.d", true).collect();
        assert_eq!(secrets, ["*.b.c.d", "*.c.d", "*.d"]);
        assert_eq!(wildcards("localhost", true).count(), 0);
        assert_eq!(wildcards("x.", true).count(), 0);
    }

    #[test]
    fn frontend_order_matches_pagekite() {
        let c: Vec<_> = frontend_candidates("http", "foo.example.test", 9080)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            &c[..6],
            [
                "http-9080:foo.example.test",
                "http-9080:*.example.test",
                "http:foo.example.test",
                "http:*.example.test",
                "http2-9080:foo.example.test",
                "http2-9080:*.example.test",
            ]
        );
        assert!(!c.iter().any(|k| k.ends_with(":*.test")));
        assert_eq!(&c[c.len() - 2..], ["http-9080:unknown", "http:unknown"]);
        let ws = frontend_candidates("websocket", "a.b", 80);
        assert_eq!(
            ws[0],
            ("websocket-80:a.b".to_string(), "websocket".to_string())
        );
        assert!(ws.contains(&("http:a.b".to_string(), "http".to_string())));
        assert_eq!(ws.last().unwrap().0, "websocket:unknown");
    }

    #[test]
    fn backend_and_secret_order() {
        let c = backend_candidates("http", "foo.test", Some(9082));
        assert_eq!(
            &c[..5],
            [
                "http-9082:foo.test",
                "http-9082:*.test",
                "http:foo.test",
                "http:*.test",
                "http:unknown"
            ]
        );
        let s = secret_candidates(&KiteId::parse("http-9082").unwrap(), "foo.example.test");
        assert_eq!(
            s,
            [
                "http-9082:foo.example.test",
                "http-9082:*.example.test",
                "http-9082:*.test",
                "http:foo.example.test",
                "http:*.example.test",
                "http:*.test",
            ]
        );
    }
}
