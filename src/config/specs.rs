//! Parsing of the values of individual flags: ports, protocols, domains,
//! frontends and kite specs (`--service_on` and pagekite.py's short form).
//! Pure apart from resolving local server names once, at start-up.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use super::web::WebPath;
use super::{ConfigError, FrontendPool, ServiceKite, bad, bad_fmt};
use crate::proto::kite::KiteId;

pub(super) fn parse_port(text: &str, flag: &str) -> Result<u16, ConfigError> {
    text.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad_fmt(flag, format_args!("{text:?} is not a port number")))
}

pub(super) fn parse_ports(list: &str, flag: &str) -> Result<Vec<u16>, ConfigError> {
    let mut ports = Vec::new();
    for item in list.split(',').filter(|s| !s.trim().is_empty()) {
        // Port 0 lets the system pick a free port (handy for tests).
        let port = if item.trim() == "0" {
            0
        } else {
            parse_port(item, flag)?
        };
        if !ports.contains(&port) || port == 0 {
            ports.push(port);
        }
    }
    if ports.is_empty() {
        return Err(bad(flag, "no ports given"));
    }
    Ok(ports)
}

pub(super) fn parse_protos(list: &str) -> Result<Vec<String>, ConfigError> {
    let mut protos = Vec::new();
    for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p = p.to_ascii_lowercase();
        if !p.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad_fmt(
                "protos",
                format_args!("{p:?} is not a protocol name"),
            ));
        }
        if !protos.contains(&p) {
            protos.push(p);
        }
    }
    if protos.is_empty() {
        return Err(bad("protos", "no protocols given"));
    }
    Ok(protos)
}

pub(super) fn parse_raw_ports(list: &str) -> Result<Vec<String>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            if p.eq_ignore_ascii_case("virtual") {
                Ok("virtual".to_string())
            } else {
                parse_port(p, "rawports").map(|n| n.to_string())
            }
        })
        .collect()
}

pub(super) fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'*' || b == b'_')
}

#[inline(never)]
pub(super) fn parse_domain(
    spec: &str,
    protos: &[String],
    out: &mut HashMap<String, String>,
) -> Result<(), ConfigError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [list, domain, secret] = parts[..] else {
        return Err(bad_fmt(
            "domain",
            format_args!("{spec:?} is not PROTOS:DOMAIN:SECRET"),
        ));
    };
    let domain = domain.trim().to_ascii_lowercase();
    if !valid_domain(&domain) {
        return Err(bad_fmt(
            "domain",
            format_args!("{domain:?} is not a domain name"),
        ));
    }
    if secret.is_empty() {
        return Err(bad_fmt("domain", format_args!("no secret for {domain}")));
    }
    let list: Vec<String> = if list.trim() == "*" || list.trim().is_empty() {
        protos.to_vec()
    } else {
        let mut ids = Vec::new();
        for p in list.split(',') {
            let id = KiteId::parse(p)
                .ok_or_else(|| bad_fmt("domain", format_args!("{p:?} is not a protocol")))?;
            ids.push(id.name());
        }
        ids
    };
    for proto in list {
        out.insert(format!("{proto}:{domain}"), secret.to_string());
    }
    Ok(())
}

pub(super) fn parse_frontend(spec: &str) -> Result<(String, u16), ConfigError> {
    let (host, port) = match spec.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_start_matches('[').trim_end_matches(']'),
            parse_port(p, "frontend")?,
        ),
        None => {
            return Err(bad_fmt(
                "frontend",
                format_args!("{spec:?} is not HOST:PORT"),
            ));
        }
    };
    if host.is_empty() {
        return Err(bad_fmt("frontend", format_args!("{spec:?} has no host")));
    }
    Ok((host.to_string(), port))
}

/// `N:NAME:PORT` (`--frontends`): N at least 1, NAME a host name or address.
pub(super) fn parse_frontend_pool(spec: &str) -> Result<FrontendPool, ConfigError> {
    let wrong = || bad_fmt("frontends", format_args!("{spec:?} is not N:NAME:PORT"));
    let (count, rest) = spec.split_once(':').ok_or_else(wrong)?;
    let count: usize = count
        .trim()
        .parse()
        .ok()
        .filter(|n| (1..=64).contains(n))
        .ok_or_else(|| bad_fmt("frontends", format_args!("{spec:?}: N must be 1 to 64")))?;
    let (name, port) = parse_frontend(rest.trim()).map_err(|_| wrong())?;
    Ok(FrontendPool {
        count,
        name: name.trim().to_string(),
        port,
    })
}

/// `PROTOS:DOMAIN:HOST:PORT[:SECRET]` or `PROTOS:DOMAIN:PORT` (localhost).
pub(super) fn parse_service(
    spec: &str,
    flag: &str,
    default_secret: Option<&str>,
) -> Result<Vec<ServiceKite>, ConfigError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (protos, domain, host, port, secret) = match parts[..] {
        [p, d, h, port, s] => (p, d, h, port, Some(s)),
        [p, d, h, port] => (p, d, h, port, None),
        [p, d, port] => (p, d, "localhost", port, None),
        _ => {
            return Err(bad_fmt(
                flag,
                format_args!("{spec:?} is not PROTO:DOMAIN:HOST:PORT:SECRET"),
            ));
        }
    };
    let secret = match secret.filter(|s| !s.is_empty()).or(default_secret) {
        Some(s) => s.to_string(),
        None => {
            return Err(bad_fmt(
                flag,
                format_args!("no secret for {domain} (add :SECRET or --kitesecret)"),
            ));
        }
    };
    let domain = domain.trim().to_ascii_lowercase().replace('/', "");
    if !valid_domain(&domain) {
        return Err(bad_fmt(
            flag,
            format_args!("{domain:?} is not a domain name"),
        ));
    }
    // pagekite.py's `builtin` port: the built-in file server, no socket.
    let builtin = port.trim().eq_ignore_ascii_case("builtin");
    let local = if builtin {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        let port = parse_port(port, flag)?;
        resolve_local(host, port).map_err(|e| bad(flag, e.to_string()))?
    };
    let mut kites = Vec::new();
    for p in protos.split(',') {
        let id = if p.trim().eq_ignore_ascii_case("ssh") {
            KiteId::parse("raw-22")
        } else {
            KiteId::parse(p)
        };
        let id = id.ok_or_else(|| {
            bad_fmt(
                flag,
                format_args!("{p:?} is not a protocol (like http or http-8080)"),
            )
        })?;
        // The file server speaks plain HTTP (TLS ends at the frontend's
        // --tls_endpoint); an https or raw kite would hand it other bytes.
        if builtin && !matches!(id.base.as_str(), "http" | "http2" | "http3") {
            return Err(bad_fmt(
                flag,
                format_args!("{p:?}: the built-in file server serves http kites only"),
            ));
        }
        kites.push(ServiceKite {
            id,
            domain: domain.clone(),
            host: host.trim().to_string(),
            local,
            secret: secret.clone(),
            options: Vec::new(),
            builtin,
        });
    }
    Ok(kites)
}

/// Why a local server's name gave no address.
#[derive(Debug)]
pub(super) enum LocalError {
    /// Offline parsing (the fuzz checks) never looks names up.
    Offline(String),
    Resolve(String, std::io::Error),
    NoAddress(String),
}

impl std::fmt::Display for LocalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LocalError::Offline(host) => {
                write!(f, "local server {host:?} is not resolved offline")
            }
            LocalError::Resolve(host, e) => write!(f, "cannot resolve local server {host:?}: {e}"),
            LocalError::NoAddress(host) => write!(f, "local server {host:?} has no address"),
        }
    }
}

/// Local servers are named once, at start-up. IPv4 is preferred because
/// `localhost` servers most often listen on 127.0.0.1 only.
#[inline(never)]
pub(super) fn resolve_local(host: &str, port: u16) -> Result<SocketAddr, LocalError> {
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, port));
    }
    if super::offline::active() {
        // Fuzzed names must not become DNS queries.
        return Err(LocalError::Offline(host.to_string()));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| LocalError::Resolve(host.to_string(), e))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| LocalError::NoAddress(host.to_string()))
}

/// pagekite.py's short form: `[BACKEND] KITE [+option ...] [AND ...]`, e.g.
/// `8000 foo.example.com +ip/10.0.0.0/8`. BACKEND is `PORT`, `HOST:PORT`,
/// `PROTO:PORT` or `PROTO:HOST:PORT` (default `http` on localhost); KITE is
/// `NAME`, `NAME:PORT` (a port kite) or `PROTO://NAME[:PORT]`. The secret
/// comes from `--kitesecret`. A BACKEND that is an existing file or
/// directory (or several) is pagekite.py's quick share: a `builtin` kite
/// serving them.
#[inline(never)]
pub(super) fn parse_short_form(
    free: &[String],
    secret: Option<&str>,
) -> Result<(Vec<ServiceKite>, Vec<WebPath>), ConfigError> {
    let mut kites = Vec::new();
    let mut shares = Vec::new();
    for group in free.split(|a| a == "AND").filter(|g| !g.is_empty()) {
        let (options, words): (Vec<&String>, Vec<&String>) =
            group.iter().partition(|w| w.starts_with('+'));
        let what = group
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        let short = |problem: &str| {
            bad_fmt(
                "",
                format_args!("{what:?}: {problem} (short form: [PORT] KITENAME [+option ...])"),
            )
        };
        // Several words before the kite: files and directories to share.
        let (backend, kite, paths) = match words.as_slice() {
            [kite] => (None, kite.as_str(), vec![]),
            [backend, kite] => (
                Some(backend.as_str()),
                kite.as_str(),
                vec![backend.as_str()],
            ),
            [paths @ .., kite] if paths.iter().all(|p| super::web::is_shared_path(p)) => (
                paths.first().map(|p| p.as_str()),
                kite.as_str(),
                paths.iter().map(|p| p.as_str()).collect(),
            ),
            _ => return Err(short("expected a port and a kite name")),
        };
        let secret = secret.ok_or_else(|| {
            bad_fmt(
                "kitesecret",
                format_args!("the short form {what:?} needs --kitesecret"),
            )
        })?;
        let mut proto = "http".to_string();
        let shared = backend
            .filter(|b| super::web::is_shared_path(b))
            .map(|_| paths);
        let (host, port) = match backend.map(|b| b.split(':').collect::<Vec<_>>()).as_deref() {
            _ if shared.is_some() => ("localhost".to_string(), 0),
            None => ("localhost".to_string(), 80),
            Some([port]) => ("localhost".to_string(), parse_port(port, "")?),
            Some([first, port]) if first.parse::<u16>().is_err() && is_proto(first) => {
                proto = first.to_ascii_lowercase();
                ("localhost".to_string(), parse_port(port, "")?)
            }
            Some([host, port]) => (host.to_string(), parse_port(port, "")?),
            Some([p, host, port]) => {
                proto = p.to_ascii_lowercase();
                (host.to_string(), parse_port(port, "")?)
            }
            _ => return Err(short("bad backend")),
        };
        let kite = kite.replace("://", ":").replace('/', "");
        let parts: Vec<&str> = kite.split(':').collect();
        let (kite_proto, name) = match parts.as_slice() {
            [name] => (proto.clone(), name.to_string()),
            [name, port] if port.parse::<u16>().is_ok() => {
                (format!("{proto}-{port}"), name.to_string())
            }
            [p, name] => (p.to_ascii_lowercase(), name.to_string()),
            [p, name, port] => (
                format!("{}-{port}", p.to_ascii_lowercase()),
                name.to_string(),
            ),
            _ => return Err(short("bad kite name")),
        };
        let port = match shared {
            Some(_) => "builtin".to_string(),
            None => port.to_string(),
        };
        let spec = format!("{kite_proto}:{name}:{host}:{port}:{secret}");
        for mut kite in parse_service(&spec, "service_on", None).map_err(|e| short(&e.0.problem))? {
            kite.options = options.iter().map(|o| o.to_string()).collect();
            if let Some(paths) = &shared {
                let port = kite.id.port.unwrap_or(80);
                for share in super::web::quick_shares(paths, &kite.domain, port) {
                    if !shares.contains(&share) {
                        shares.push(share);
                    }
                }
            }
            kites.push(kite);
        }
    }
    Ok((kites, shares))
}

fn is_proto(word: &str) -> bool {
    KiteId::parse(word).is_some_and(|id| id.port.is_none()) || word.eq_ignore_ascii_case("ssh")
}
