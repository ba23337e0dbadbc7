//! The command line, in pagekite.py's words: flag names with underscores
//! (dashes accepted too), `--opt=value` or `--opt value`, repeatable
//! `--domain`, `--frontend` and `--service_on`/`--backend`. Pure: it turns
//! arguments into a [`Config`] or a [`ConfigError`] naming the flag and what
//! is wrong, and resolves local server names once at start-up.

use std::fmt;
use std::time::Duration;

use crate::proto::acl::Acl;
use crate::proto::keepalive::DEFAULT_INTERVAL;

/// `--stream_idle` by default: long enough for an idle SSH session or a
/// quiet WebSocket, short enough that abandoned connections don't pile up.
pub const DEFAULT_STREAM_IDLE: u64 = 3600;
/// `--max_pipes` unless given.
pub const DEFAULT_MAX_PIPES: usize = 64;
use crate::proto::options::{self, KiteOptions, OptionError};

pub mod compat;
mod files;
mod flags;
#[doc(hidden)]
pub mod offline;
mod operators;
pub use operators::OperatorSettings;
mod proxies;
mod roles;
pub mod service;
mod settings;
mod specs;
pub mod web;
use crate::proto::kite::DEFAULT_PROTOS;
use flags::IGNORED_SWITCHES;
pub use roles::{
    AcmeSettings, BackendSettings, ClientSettings, Common, Config, FrontendPool, FrontendSettings,
    LogLevel, ProcessSettings, RoleConfig, ServiceKite,
};
use specs::*;

/// What `parse` decided.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Config>),
    /// `--connect`: the raw-kite client.
    Connect(ClientSettings),
    Help(String),
    /// `--settings`: the effective configuration as an option file.
    Settings(String),
    Version,
}

/// A bad command line (exit code 1). Boxed, so that a `Result` carrying it
/// is one word wide and each of the parser's many `?` moves a pointer, not
/// three strings; its fields are read through `Deref`.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(Box<ConfigProblem>);

/// What a [`ConfigError`] says.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    pub flag: String,
    pub problem: String,
    /// `FILE:LINE` when the option came from an option file.
    pub origin: Option<String>,
}

impl ConfigError {
    pub fn new(flag: String, problem: String, origin: Option<String>) -> ConfigError {
        ConfigError(Box::new(ConfigProblem {
            flag,
            problem,
            origin,
        }))
    }
}

impl std::ops::Deref for ConfigError {
    type Target = ConfigProblem;
    fn deref(&self) -> &ConfigProblem {
        &self.0
    }
}

impl std::ops::DerefMut for ConfigError {
    fn deref_mut(&mut self) -> &mut ConfigProblem {
        &mut self.0
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        if self.flag.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "--{}: {}", self.flag, self.problem)
        }
    }
}

/// What `abort_not_configured` says.
const NOT_CONFIGURED: &str = "this configuration was never edited: put your kite name and \
                              secret in it and delete the abort_not_configured line";

fn bad(flag: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::new(flag.to_string(), problem.into(), None)
}

/// `bad` with a problem to format: out of line, so each of the many call
/// sites passes `fmt::Arguments` rather than inlining `format!`'s code.
#[cold]
#[inline(never)]
fn bad_fmt(flag: &str, problem: fmt::Arguments<'_>) -> ConfigError {
    bad(flag, fmt::format(problem))
}

pub fn usage() -> String {
    flags::usage()
}

/// Parses a command line, reading the option files it names.
pub fn parse(args: &[String]) -> Result<Parsed, ConfigError> {
    let expanded = files::expand(args)?;
    parse_expanded(args, &expanded).map_err(|e| expanded.locate(e))
}

/// The last value given for a single-valued flag (later ones override
/// earlier ones and option files, as in pagekite.py).
fn last(m: &getopts::Matches, flag: &str) -> Option<String> {
    m.opt_strs(flag).pop()
}

/// `--acme` with its directory checked and `--acme_dir` required.
#[inline(never)]
fn acme_settings(
    m: &getopts::Matches,
    ports: &[u16],
) -> Result<Option<roles::AcmeSettings>, ConfigError> {
    let Some(directory) = last(m, "acme") else {
        for companion in ["acme_email", "acme_dir", "acme_ca", "acme_challenge"] {
            if m.opt_present(companion) {
                return Err(bad(companion, "needs --acme=DIRECTORY_URL".to_string()));
            }
        }
        return Ok(None);
    };
    crate::proto::acme::Url::parse(&directory).map_err(|e| bad("acme", e.to_string()))?;
    let dir = last(m, "acme_dir").ok_or_else(|| {
        bad(
            "acme",
            "needs --acme_dir=DIR to keep the account and certificates".to_string(),
        )
    })?;
    use crate::proto::acme::ChallengeKind;
    let challenge = match last(m, "acme_challenge").as_deref() {
        Some("http-01") => ChallengeKind::Http01,
        Some("tls-alpn-01") => ChallengeKind::TlsAlpn01,
        Some(other) => {
            return Err(bad_fmt(
                "acme_challenge",
                format_args!("{other:?} is neither http-01 nor tls-alpn-01"),
            ));
        }
        // The CA validates on port 80 or 443: whichever this relay has.
        None if !ports.contains(&80) && ports.contains(&443) => ChallengeKind::TlsAlpn01,
        None => ChallengeKind::Http01,
    };
    Ok(Some(roles::AcmeSettings {
        directory,
        email: last(m, "acme_email"),
        dir,
        ca: last(m, "acme_ca"),
        challenge,
    }))
}

/// `--proxyproto_from` entries: an address block, or one address.
fn proxyproto_from(m: &getopts::Matches) -> Result<Vec<crate::proto::acl::Cidr>, ConfigError> {
    use crate::proto::acl::Cidr;
    let one = |text: &str| match text.parse() {
        Ok(ip) => Some(Cidr::host(ip)),
        Err(_) => Cidr::parse(text),
    };
    m.opt_strs("proxyproto_from")
        .iter()
        .map(|text| {
            one(text.trim()).ok_or_else(|| {
                bad_fmt(
                    "proxyproto_from",
                    format_args!("{text:?} is not an address or ADDR/LEN"),
                )
            })
        })
        .collect()
}

/// Fills the settings structs as it goes (rather than many locals moved
/// in at the end), so each of its many early returns drops three values,
/// not every local parsed so far: the function is the biggest cold one.
fn parse_expanded(argv: &[String], expanded: &files::Expanded) -> Result<Parsed, ConfigError> {
    let m = flags::options()
        .parse(names_in_order(&expanded.args))
        .map_err(|e| bad("", e.to_string()))?;
    if m.opt_present("help") {
        return Ok(Parsed::Help(usage()));
    }
    for (short, long, _, why) in compat::REFUSED {
        let name = if long.is_empty() { short } else { long };
        if m.opt_present(name) {
            return Err(bad_fmt(long, format_args!("refused: {why}")));
        }
    }
    if m.opt_present("version") {
        return Ok(Parsed::Version);
    }
    if let Some(relay) = last(&m, "connect") {
        return parse_client(&m, &relay).map(Parsed::Connect);
    }
    let is_frontend = m.opt_present("isfrontend");
    let mut fe = FrontendSettings::default();
    let mut be = BackendSettings::default();
    let mut common = Common::default();
    if let Some(h) = last(&m, "host") {
        fe.host = Some(
            h.parse()
                .map_err(|_| bad_fmt("host", format_args!("{h:?} is not an IP address")))?,
        );
    }
    fe.ports = match last(&m, "ports") {
        Some(list) => parse_ports(&list, "ports")?,
        None => vec![80],
    };
    fe.protos = match last(&m, "protos") {
        Some(list) => parse_protos(&list)?,
        None => DEFAULT_PROTOS.iter().map(|p| p.to_string()).collect(),
    };
    if let Some(list) = last(&m, "rawports") {
        fe.raw_ports = parse_raw_ports(&list)?;
    }
    for spec in m.opt_strs("domain") {
        parse_domain(&spec, &fe.protos, &mut fe.domain_secrets)?;
    }
    be.frontends = m
        .opt_strs("frontend")
        .iter()
        .map(|f| parse_frontend(f))
        .collect::<Result<Vec<_>, _>>()?;
    // `frontends`, `fe_certname`, `errorurl` and `dyndns`, with what
    // `defaults`/`whitelabel` set for them, in pagekite.py's order.
    let front = service::Front::from_matches(&m)?;
    be.frontend_pool = front.pool;
    be.fe_certnames = front.certs;
    be.dyndns = front.dyndns;
    for arg in m.opt_strs("errorurl") {
        common.error_urls.add(&arg);
    }
    common.error_urls.default = front.error_url;
    be.nofrontends = m
        .opt_strs("nofrontend")
        .iter()
        .map(|f| parse_frontend(f).map_err(|e| bad("nofrontend", e.0.problem)))
        .collect::<Result<Vec<_>, _>>()?;
    if m.opt_present("abort_not_configured") {
        let at = expanded
            .args
            .iter()
            .position(|a| a == "--abort_not_configured")
            .and_then(|i| expanded.origins.get(i).cloned().flatten());
        return Err(ConfigError::new(
            "abort_not_configured".into(),
            NOT_CONFIGURED.into(),
            at,
        ));
    }
    be.kitesecret = last(&m, "kitesecret");
    be.kitename = last(&m, "kitename");
    let default_secret = be.kitesecret.as_deref();
    let (short_form, shares) = parse_short_form(&m.free, default_secret)?;
    be.web = web::settings(
        &m.opt_strs("webpath"),
        last(&m, "webroot").as_deref(),
        last(&m, "webaccess").as_deref(),
        last(&m, "webindexes").as_deref(),
        last(&m, "httppass"),
        shares,
    )?;
    for flag in KITE_FLAGS {
        for spec in m.opt_strs(flag) {
            let spec = expand_names(&spec, flag, be.kitename.as_deref(), default_secret)?;
            let parsed = parse_service(&spec, flag, default_secret)?;
            match flag {
                "service_off" | "define_backend" => be.kites_off.extend(parsed),
                _ => be.kites.extend(parsed),
            }
        }
    }
    be.kites.extend(short_form);
    common.keepalive = match last(&m, "keepalive") {
        Some(v) => {
            let secs: u64 = v.parse().ok().filter(|s| *s >= 5).ok_or_else(|| {
                bad_fmt(
                    "keepalive",
                    format_args!("{v:?} is not a number of seconds ≥ 5"),
                )
            })?;
            Duration::from_secs(secs)
        }
        None => DEFAULT_INTERVAL,
    };
    if is_frontend {
        if !be.kites.is_empty() {
            return Err(bad(
                "service_on",
                "a frontend does not run kites itself; start a separate backend",
            ));
        }
    } else {
        if be.frontends.is_empty() && be.frontend_pool.is_none() {
            return Err(bad(
                "frontend",
                "a backend needs at least one --frontend=HOST:PORT or --frontends=N:NAME:PORT (or run a relay with --isfrontend)",
            ));
        }
        if be.kites.is_empty() {
            let off = if be.kites_off.is_empty() {
                String::new()
            } else {
                format!(" ({} configured with service_off)", be.kites_off.len())
            };
            return Err(bad_fmt(
                "service_on",
                format_args!("a backend needs at least one kite{off}"),
            ));
        }
    }
    for spec in m.opt_strs("tls_endpoint") {
        let (name, pem) = spec
            .split_once(':')
            .filter(|(n, p)| valid_domain(&n.to_ascii_lowercase()) && !p.is_empty())
            .ok_or_else(|| {
                bad_fmt(
                    "tls_endpoint",
                    format_args!("{spec:?} is not NAME:/path/to/file.pem"),
                )
            })?;
        fe.tls_endpoints
            .push((name.to_ascii_lowercase(), pem.to_string()));
    }
    if let Some(name) = last(&m, "tls_default") {
        if !fe
            .tls_endpoints
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            return Err(bad_fmt(
                "tls_default",
                format_args!("{name:?} names no --tls_endpoint"),
            ));
        }
        fe.tls_default = Some(name.to_ascii_lowercase());
    }
    let number = |flag: &str, min: u64| whole_number(&m, flag, min);
    let buffer_budget = number("buffers", 64)?
        .map(|kib| kib.saturating_mul(1024))
        .unwrap_or(if is_frontend { 128 << 20 } else { 8 << 20 });
    common.buffer_budget = usize::try_from(buffer_budget).unwrap_or(usize::MAX);
    let max_conns = number("max_conns", 1)?.unwrap_or(if is_frontend { 16384 } else { 4096 });
    common.max_conns = usize::try_from(max_conns).unwrap_or(usize::MAX);
    common.max_pipes = number("max_pipes", 0)?.map_or(DEFAULT_MAX_PIPES, |n| {
        usize::try_from(n).unwrap_or(usize::MAX)
    });
    common.stop_grace = Duration::from_secs(number("stop_grace", 0)?.unwrap_or(5));
    common.stream_idle = match number("stream_idle", 0)?.unwrap_or(DEFAULT_STREAM_IDLE) {
        0 => None,
        secs => Some(Duration::from_secs(secs)),
    };
    common.process.log_level = match (m.opt_present("quiet"), m.opt_count("verbose")) {
        (true, _) => LogLevel::Quiet,
        (false, 0) => LogLevel::Normal,
        (false, 1) => LogLevel::Verbose,
        _ => LogLevel::Trace,
    };
    fe.client_acl = m.opt_strs("client_acl");
    fe.tunnel_acl = m.opt_strs("tunnel_acl");
    for (flag, rules) in [
        ("client_acl", &fe.client_acl),
        ("tunnel_acl", &fe.tunnel_acl),
    ] {
        Acl::parse(rules).map_err(|e| bad(flag, e.to_string()))?;
    }
    for arg in m.opt_strs("authdomain") {
        fe.auth_domains
            .apply(&arg)
            .map_err(|e| bad("authdomain", e.to_string()))?;
    }
    if let Some(path) = last(&m, "authfile") {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| bad_fmt("authfile", format_args!("{path}: {e}")))?;
        fe.auth_users = crate::proto::authfile::parse(&text)
            .map_err(|e| bad_fmt("authfile", format_args!("{path}:{}: {}", e.line, e.problem)))?;
    }
    if let Some(d) = &be.dyndns {
        crate::proto::dyndns::Provider::from_template(&d.url, &d.user, &d.pass)
            .map_err(|e| bad("dyndns", e.to_string()))?;
    }
    // Both roles' flags are parsed and checked whatever the role, as
    // pagekite.py does (`--ports` on a backend is read, then unused), and
    // `--settings` shows them all; the role runs with its own only.
    fe.acme = acme_settings(&m, &fe.ports)?;
    fe.max_conns_per_ip =
        usize::try_from(number("max_conns_per_ip", 0)?.unwrap_or(256)).unwrap_or(usize::MAX);
    fe.proxyproto_from = proxyproto_from(&m)?;
    if let Some(list) = last(&m, "proxyproto_ports") {
        fe.proxyproto_ports = parse_ports(&list, "proxyproto_ports")?;
    }
    fe.authfail_closed = m.opt_present("authfail_closed");
    fe.ops = operators::parse(&m)?;
    be.ca_certs = last(&m, "ca_certs");
    be.fe_nocertcheck = m.opt_present("fe_nocertcheck");
    // pagekite.py's `service_cfg` is `be_config` by another name.
    be.be_config = [m.opt_strs("be_config"), m.opt_strs("service_cfg")].concat();
    be.insecure = m.opt_present("insecure");
    be.proxies = proxies::chain(&m)?;
    common.ignored = IGNORED_SWITCHES
        .iter()
        .map(|f| (f, "means nothing to rkite"))
        .chain(
            compat::ACCEPTED
                .iter()
                .map(|a| (if a.1.is_empty() { a.0 } else { a.1 }, a.3)),
        )
        .filter(|(f, _)| m.opt_present(f))
        .map(|(f, why)| format!("--{f} ({why})"))
        .collect();
    common.argv = argv.to_vec();
    common.files = expanded.files.clone();
    let process = &mut common.process;
    process.debug_io = m.opt_present("debugio");
    process.logfile = last(&m, "logfile").filter(|f| f != "stdio");
    process.daemonize = m.opt_present("daemonize");
    process.pidfile = last(&m, "pidfile");
    process.runas = last(&m, "runas");
    process.status_file = last(&m, "status_file");
    process.metrics = last(&m, "metrics").map(|a| parse_metrics(&a)).transpose()?;
    for spec in &be.be_config {
        let (_, _, key, value) =
            options::parse_be_config(spec).map_err(|e| bad("be_config", e.to_string()))?;
        KiteOptions::default()
            .apply(key, value)
            .map_err(|e| bad("be_config", e.to_string()))?;
    }
    for opt in be.kites.iter().flat_map(|k| &k.options) {
        KiteOptions::default()
            .apply_short(opt)
            .map_err(|e| bad_fmt("", format_args!("{opt}: {e}")))?;
    }
    if let Some(spec) = common.process.runas.as_ref().filter(|_| !offline::active()) {
        crate::daemon::parse_runas(spec).map_err(|e| bad("runas", e.to_string()))?;
    }
    if m.opt_present("settings") {
        return Ok(Parsed::Settings(settings::render(
            &m,
            &common,
            &be,
            is_frontend,
        )));
    }
    let role = if is_frontend {
        RoleConfig::Frontend(fe)
    } else {
        RoleConfig::Backend(be)
    };
    Ok(Parsed::Run(Box::new(Config { common, role })))
}

/// A whole-number flag of at least `min`, if given.
#[inline(never)]
fn whole_number(m: &getopts::Matches, flag: &str, min: u64) -> Result<Option<u64>, ConfigError> {
    last(m, flag)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= min)
                .ok_or_else(|| {
                    bad_fmt(
                        flag,
                        format_args!("{v:?} is not a whole number of at least {min}"),
                    )
                })
        })
        .transpose()
}

/// `--metrics=ADDR:PORT` (`[V6]:PORT` for IPv6): a numeric address, as
/// the listener binds it before any name could be looked up.
fn parse_metrics(value: &str) -> Result<std::net::SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        bad_fmt(
            "metrics",
            format_args!(
                "{value:?} is not ADDR:PORT (an IP address and a port, [::1]:9100 for IPv6)"
            ),
        )
    })
}

/// Each kite's options: its short-form `+options`, then every `--be_config`
/// naming its domain (and its public port, 80 for kites without one, as
/// pagekite.py keys them; a `--be_config` without a port applies to all).
pub fn kite_options(config: &BackendSettings) -> Result<Vec<KiteOptions>, OptionError> {
    let mut all = Vec::new();
    for kite in &config.kites {
        let mut options = KiteOptions::default();
        for opt in &kite.options {
            options.apply_short(opt)?;
        }
        for spec in &config.be_config {
            let (domain, port, key, value) = options::parse_be_config(spec)?;
            let kite_port = kite.id.port.unwrap_or(80);
            if domain.eq_ignore_ascii_case(&kite.domain) && port.is_none_or(|p| p == kite_port) {
                options.apply(key, value)?;
            }
        }
        all.push(options);
    }
    Ok(all)
}

/// The kite flags whose specs may say `@kitename` and `@kitesecret`.
const KITE_FLAGS: [&str; 4] = ["service_on", "backend", "service_off", "define_backend"];

/// Replaces `@kitename` and `@kitesecret` in each kite spec with the value
/// set *above* it, as pagekite.py does while it reads its options in order:
/// a file may set one kitename, list its kites, then set another for the
/// next ones (arguments are already normalised: `--name=value` or
/// `--name value`). A marker used before any value is set is left for
/// [`expand_names`], which takes the last value given anywhere (pagekite.py
/// would write an empty name there: a spec no one could mean).
#[inline(never)]
fn names_in_order(args: &[String]) -> Vec<String> {
    let mut out = args.to_vec();
    let (mut kitename, mut kitesecret): (Option<String>, Option<String>) = (None, None);
    let mut i = 0;
    while i < out.len() {
        let Some(rest) = out.get(i).and_then(|a| a.strip_prefix("--")) else {
            i += 1;
            continue;
        };
        if rest.is_empty() {
            break; // `--`: the rest are free arguments
        }
        let (name, inline) = match rest.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (rest.to_string(), None),
        };
        let takes_value =
            name == "kitename" || name == "kitesecret" || KITE_FLAGS.contains(&name.as_str());
        if !takes_value {
            i += 1;
            continue;
        }
        // The value: attached, or the next argument.
        let at = if inline.is_some() { i } else { i + 1 };
        let Some(value) = inline.or_else(|| out.get(i + 1).cloned()) else {
            break;
        };
        match name.as_str() {
            "kitename" => kitename = Some(value),
            "kitesecret" => kitesecret = Some(value),
            _ => {
                let mut spec = value;
                if let Some(n) = &kitename {
                    spec = spec.replace("@kitename", n);
                }
                if let Some(s) = &kitesecret {
                    spec = spec.replace("@kitesecret", s);
                }
                // pagekite.py: with no kitename yet, the first kite's
                // domain and secret become the kitename and kitesecret.
                if kitename.is_none() {
                    let parts: Vec<&str> = spec.split(':').map(str::trim).collect();
                    if let Some(domain) = parts.get(1).filter(|d| !d.contains('@')) {
                        kitename = Some(domain.to_ascii_lowercase());
                        kitesecret = parts.get(4).map(|s| s.to_string());
                    }
                }
                if let Some(slot) = out.get_mut(at) {
                    *slot = if at == i {
                        format!("--{name}={spec}")
                    } else {
                        spec
                    };
                }
            }
        }
        i = at + 1;
    }
    out
}

/// `@kitename` and `@kitesecret` in a kite spec stand for `--kitename` and
/// `--kitesecret`, as in the `.rc` files pagekite.py writes and Debian ships
/// (`service_on = http:@kitename : localhost:80 : @kitesecret`).
fn expand_names(
    spec: &str,
    flag: &str,
    kitename: Option<&str>,
    kitesecret: Option<&str>,
) -> Result<String, ConfigError> {
    let mut spec = spec.to_string();
    for (marker, value, name) in [
        ("@kitename", kitename, "kitename"),
        ("@kitesecret", kitesecret, "kitesecret"),
    ] {
        if spec.contains(marker) {
            let value = value.ok_or_else(|| {
                bad_fmt(
                    flag,
                    format_args!("{marker} is used, but no {name} is set (add `{name} = ...`)"),
                )
            })?;
            spec = spec.replace(marker, value);
        }
    }
    Ok(spec)
}

/// `--connect=RELAY:PORT TARGET:PORT` with its TLS flags.
#[inline(never)]
fn parse_client(m: &getopts::Matches, relay: &str) -> Result<ClientSettings, ConfigError> {
    let relay = parse_frontend(relay).map_err(|e| bad("connect", e.0.problem))?;
    let target = match m.free.as_slice() {
        [target]
            if target
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) =>
        {
            target.clone()
        }
        _ => {
            return Err(bad(
                "connect",
                "give exactly one TARGET:PORT after the flags",
            ));
        }
    };
    let names: Vec<String> = m.opt_strs("fe_certname");
    let tls = if m.opt_present("fe_nocertcheck") {
        Some(None)
    } else if names.is_empty() {
        None
    } else {
        Some(Some(names))
    };
    Ok(ClientSettings {
        relay,
        target,
        tls,
        ca_certs: last(m, "ca_certs"),
        proxies: proxies::chain(m)?,
    })
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
