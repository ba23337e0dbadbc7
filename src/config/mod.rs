//! The command line, in pagekite.py's words: flag names with underscores
//! (dashes accepted too), `--opt=value` or `--opt value`, repeatable
//! `--domain`, `--frontend` and `--service_on`/`--backend`. Pure: it turns
//! arguments into a [`Config`] or a [`ConfigError`] naming the flag and what
//! is wrong, and resolves local server names once at start-up.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use getopts::Options;

use crate::proto::acl::Acl;
use crate::proto::keepalive::DEFAULT_INTERVAL;
use crate::proto::options::{self, KiteOptions, OptionError};

mod specs;
use crate::proto::kite::{DEFAULT_PROTOS, KiteId};
use specs::*;

/// One `--service_on` kite on a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceKite {
    pub id: KiteId,
    pub domain: String,
    pub local: SocketAddr,
    pub secret: String,
    /// Short-form options given with the kite (`+ip/...`), as written.
    pub options: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LogLevel {
    Quiet,
    #[default]
    Normal,
    Verbose,
    Trace,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub is_frontend: bool,
    pub host: Option<IpAddr>,
    pub ports: Vec<u16>,
    pub protos: Vec<String>,
    /// `--rawports` entries as written: numbers and/or `virtual`.
    pub raw_ports: Vec<String>,
    /// `proto:domain` → secret, one entry per protocol of each `--domain`.
    pub domain_secrets: HashMap<String, String>,
    pub frontends: Vec<(String, u16)>,
    pub kites: Vec<ServiceKite>,
    pub keepalive: Duration,
    pub log_level: LogLevel,
    pub debug_io: bool,
    pub logfile: Option<String>,
    /// Frontend: `--tls_endpoint NAME:PEM` pairs.
    pub tls_endpoints: Vec<(String, String)>,
    /// Frontend: `--tls_default`.
    pub tls_default: Option<String>,
    /// Backend: `--fe_certname`s; TLS to the frontend when given.
    pub fe_certnames: Vec<String>,
    /// Backend: `--ca_certs` (default: the system bundle).
    pub ca_certs: Option<String>,
    /// Backend: `--fe_nocertcheck`.
    pub fe_nocertcheck: bool,
    /// `--buffers`: bytes all connection buffers may hold together.
    pub buffer_budget: usize,
    /// `--max_conns`: public connections and tunnels (frontend) or streams
    /// (backend) at once.
    pub max_conns: usize,
    /// `--stop_grace`: how long running streams may finish after SIGTERM.
    pub stop_grace: Duration,
    /// Frontend: `--client_acl` and `--tunnel_acl` rules, as written.
    pub client_acl: Vec<String>,
    pub tunnel_acl: Vec<String>,
    /// Frontend: `--max_conns_per_ip` (0: no limit).
    pub max_conns_per_ip: usize,
    /// Backend: `--be_config` specs, as written.
    pub be_config: Vec<String>,
    /// `--insecure`: no security filter on any kite.
    pub insecure: bool,
    /// pagekite.py flags given that mean nothing here (logged at debug).
    pub ignored: Vec<String>,
}

/// What `parse` decided.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Config>),
    /// `--connect`: the raw-kite client.
    Connect(crate::client::ClientConfig),
    Help(String),
    Version,
}

/// A bad command line (exit code 1).
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub flag: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.flag.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "--{}: {}", self.flag, self.problem)
        }
    }
}

fn bad(flag: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        flag: flag.to_string(),
        problem: problem.into(),
    }
}

/// pagekite.py flags that mean nothing for rkite; accepted so existing
/// command lines and scripts keep working.
const IGNORED_SWITCHES: &[&str] = &[
    "clean",
    "nullui",
    "basicui",
    "remoteui",
    "nozchunks",
    "noloop",
    "autosave",
    "noautosave",
    "save",
    "nocrashreport",
    "noprobes",
    "watch",
    "local",
    "new",
    "all",
];

fn options() -> Options {
    let mut o = Options::new();
    o.optflag(
        "f",
        "isfrontend",
        "Run as a frontend (relay) instead of a backend.",
    );
    o.optopt(
        "",
        "host",
        "Frontend: address to listen on (default: all interfaces).",
        "IP",
    );
    o.optopt(
        "p",
        "ports",
        "Frontend: comma-separated public ports (default 80).",
        "LIST",
    );
    o.optopt(
        "",
        "protos",
        "Frontend: protocols kites may use (default http,http2,http3,https,websocket,irc,raw,xmpp).",
        "LIST",
    );
    o.optopt(
        "",
        "rawports",
        "Frontend: ports for raw kites; `virtual` allows any port via CONNECT.",
        "LIST",
    );
    o.optmulti(
        "",
        "domain",
        "Frontend: accept kites for DOMAIN (`*.x` or `unknown` allowed) signed with SECRET; PROTOS is a comma list or `*`. Repeatable.",
        "PROTOS:DOMAIN:SECRET",
    );
    o.optmulti(
        "",
        "frontend",
        "Backend: frontend to keep a tunnel to. Repeatable.",
        "HOST:PORT",
    );
    o.optmulti(
        "",
        "service_on",
        "Backend: a kite; PROTO may be `http`, `http-8080` or `http/8080`, a comma list, or `ssh` (raw-22). Repeatable.",
        "PROTO:DOMAIN:HOST:PORT:SECRET",
    );
    o.optmulti(
        "",
        "backend",
        "Same as --service_on.",
        "PROTO:DOMAIN:HOST:PORT:SECRET",
    );
    o.optopt(
        "",
        "kitesecret",
        "Backend: secret for --service_on kites given without one.",
        "SECRET",
    );
    o.optopt(
        "",
        "keepalive",
        "Seconds of tunnel silence before a PING (default 60, at least 5).",
        "SECONDS",
    );
    o.optmulti(
        "",
        "tls_endpoint",
        "Frontend: terminate TLS for NAME (`*.x` allowed) with the key and certificate chain in PEM. Repeatable.",
        "NAME:PEM",
    );
    o.optopt(
        "",
        "tls_default",
        "Frontend: the --tls_endpoint for TLS clients that send no SNI.",
        "NAME",
    );
    o.optmulti(
        "",
        "fe_certname",
        "Backend: reach the frontend over TLS (CONNECT NAME:443, then TLS) and require its certificate to be valid for NAME. Repeatable.",
        "NAME",
    );
    o.optopt(
        "",
        "ca_certs",
        "Backend: CA certificates (PEM) for --fe_certname (default: the system bundle).",
        "FILE",
    );
    o.optflag(
        "",
        "fe_nocertcheck",
        "Backend: TLS straight to the frontend without checking its certificate (insecure).",
    );
    o.optmulti(
        "",
        "client_acl",
        "Frontend: allow or deny public clients by IP (a regex matching the whole address, CIDR, `any` or `localhost`); first match decides. Repeatable.",
        "allow|deny:PATTERN",
    );
    o.optmulti(
        "",
        "tunnel_acl",
        "Frontend: the same for backends' tunnels. Repeatable.",
        "allow|deny:PATTERN",
    );
    o.optopt(
        "",
        "max_conns_per_ip",
        "Frontend: connections one client IP may hold at once (default 256; 0: no limit).",
        "N",
    );
    o.optmulti(
        "",
        "be_config",
        "Backend: a per-kite option, e.g. foo.example.com/80:password/bob:pw, .../ip/10.0.0.0/8:True, .../rewritehost:True. Repeatable.",
        "DOMAIN/PORT:KEY:VALUE",
    );
    o.optflag(
        "",
        "insecure",
        "Backend: do not block dangerous-looking HTTP paths (pagekite.py's security filter).",
    );
    o.optopt(
        "",
        "connect",
        "Client: connect to a relay and open TARGET:PORT (a raw kite) with HTTP CONNECT, relaying stdin/stdout (for ssh's ProxyCommand); TLS with --fe_certname or --fe_nocertcheck.",
        "RELAY:PORT",
    );
    o.optopt(
        "",
        "buffers",
        "KiB all buffers may hold together; past it new connections are refused (default 8192 on a backend, 131072 on a frontend).",
        "KIB",
    );
    o.optopt(
        "",
        "max_conns",
        "Connections at once: public ones and tunnels on a frontend, streams on a backend (default 16384 / 4096).",
        "N",
    );
    o.optopt(
        "",
        "stop_grace",
        "Seconds running streams may take to finish after SIGTERM/SIGINT (default 5).",
        "SECONDS",
    );
    o.optopt(
        "",
        "logfile",
        "Write the log to FILE instead of stderr (`stdio` = stderr).",
        "FILE",
    );
    o.optflagmulti(
        "v",
        "verbose",
        "More log output (-v: streams, -vv: chunks and bytes).",
    );
    o.optflag("q", "quiet", "Only warnings and errors.");
    o.optflag(
        "",
        "debugio",
        "Log every chunk and byte count (trace level).",
    );
    o.optflag("", "help", "Show this help.");
    o.optflag("", "version", "Show the version.");
    for flag in IGNORED_SWITCHES {
        o.optflagmulti("", flag, "");
    }
    o
}

pub fn usage() -> String {
    let brief = "Usage:\n  rkite --isfrontend --ports=PORTS --domain=PROTOS:DOMAIN:SECRET [...]\n  rkite --frontend=HOST:PORT --service_on=PROTO:DOMAIN:HOST:PORT:SECRET [...]\n\nA PageKite-compatible tunneled reverse proxy. Flags use pagekite.py's names;\n`--flag=value` and `--flag value` both work, and dashes may replace underscores.";
    let text = options().usage(brief);
    // getopts lists the ignored flags with empty descriptions; say it once.
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            let ignored = IGNORED_SWITCHES
                .iter()
                .any(|f| l.trim() == format!("--{f}"));
            let padding = !l.is_empty() && l.trim().is_empty();
            !ignored && !padding
        })
        .collect();
    let mut text = kept.join("\n");
    text.push_str(&format!(
        "\n\nAccepted for pagekite.py compatibility and ignored: {}.\n\nExit codes: 0 stopped cleanly, 1 bad command line, 2 runtime failure.\nLogging: RUST_LOG overrides -v/-q (e.g. RUST_LOG=rkite=debug).\n",
        IGNORED_SWITCHES.iter().map(|f| format!("--{f}")).collect::<Vec<_>>().join(" ")
    ));
    text
}

/// Spells `--service-on` as `--service_on`, leaving values alone.
fn normalize(args: &[String]) -> Vec<String> {
    args.iter()
        .map(|a| match a.strip_prefix("--") {
            Some(rest) => {
                let (name, value) = match rest.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (rest, None),
                };
                let name = name.replace('-', "_");
                match value {
                    Some(v) => format!("--{name}={v}"),
                    None => format!("--{name}"),
                }
            }
            None => a.clone(),
        })
        .collect()
}

pub fn parse(args: &[String]) -> Result<Parsed, ConfigError> {
    let args = normalize(args);
    let m = options().parse(&args).map_err(|e| bad("", e.to_string()))?;
    if m.opt_present("help") {
        return Ok(Parsed::Help(usage()));
    }
    if m.opt_present("version") {
        return Ok(Parsed::Version);
    }
    if let Some(relay) = m.opt_str("connect") {
        return parse_client(&m, &relay).map(Parsed::Connect);
    }
    let is_frontend = m.opt_present("isfrontend");
    let host = match m.opt_str("host") {
        Some(h) => Some(
            h.parse()
                .map_err(|_| bad("host", format!("{h:?} is not an IP address")))?,
        ),
        None => None,
    };
    let ports = match m.opt_str("ports") {
        Some(list) => parse_ports(&list, "ports")?,
        None => vec![80],
    };
    let protos = match m.opt_str("protos") {
        Some(list) => parse_protos(&list)?,
        None => DEFAULT_PROTOS.iter().map(|p| p.to_string()).collect(),
    };
    let raw_ports = match m.opt_str("rawports") {
        Some(list) => parse_raw_ports(&list)?,
        None => Vec::new(),
    };
    let mut domain_secrets = HashMap::new();
    for spec in m.opt_strs("domain") {
        parse_domain(&spec, &protos, &mut domain_secrets)?;
    }
    let frontends = m
        .opt_strs("frontend")
        .iter()
        .map(|f| parse_frontend(f))
        .collect::<Result<Vec<_>, _>>()?;
    let default_secret = m.opt_str("kitesecret");
    let short_form = parse_short_form(&m.free, default_secret.as_deref())?;
    let mut kites = Vec::new();
    for (flag, spec) in m
        .opt_strs("service_on")
        .into_iter()
        .map(|s| ("service_on", s))
        .chain(m.opt_strs("backend").into_iter().map(|s| ("backend", s)))
    {
        kites.extend(parse_service(&spec, flag, default_secret.as_deref())?);
    }
    kites.extend(short_form);
    let keepalive = match m.opt_str("keepalive") {
        Some(v) => {
            let secs: u64 =
                v.parse().ok().filter(|s| *s >= 5).ok_or_else(|| {
                    bad("keepalive", format!("{v:?} is not a number of seconds ≥ 5"))
                })?;
            Duration::from_secs(secs)
        }
        None => DEFAULT_INTERVAL,
    };
    if is_frontend {
        if !kites.is_empty() {
            return Err(bad(
                "service_on",
                "a frontend does not run kites itself; start a separate backend",
            ));
        }
    } else {
        if frontends.is_empty() {
            return Err(bad(
                "frontend",
                "a backend needs at least one --frontend=HOST:PORT (or run a relay with --isfrontend)",
            ));
        }
        if kites.is_empty() {
            return Err(bad("service_on", "a backend needs at least one kite"));
        }
    }
    let mut tls_endpoints = Vec::new();
    for spec in m.opt_strs("tls_endpoint") {
        let (name, pem) = spec
            .split_once(':')
            .filter(|(n, p)| valid_domain(&n.to_ascii_lowercase()) && !p.is_empty())
            .ok_or_else(|| {
                bad(
                    "tls_endpoint",
                    format!("{spec:?} is not NAME:/path/to/file.pem"),
                )
            })?;
        tls_endpoints.push((name.to_ascii_lowercase(), pem.to_string()));
    }
    if let Some(name) = m.opt_str("tls_default") {
        if !tls_endpoints
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            return Err(bad(
                "tls_default",
                format!("{name:?} names no --tls_endpoint"),
            ));
        }
    }
    let number = |flag: &str, min: u64| -> Result<Option<u64>, ConfigError> {
        m.opt_str(flag)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= min)
                    .ok_or_else(|| {
                        bad(
                            flag,
                            format!("{v:?} is not a whole number of at least {min}"),
                        )
                    })
            })
            .transpose()
    };
    let buffer_budget = number("buffers", 64)?
        .map(|kib| kib.saturating_mul(1024))
        .unwrap_or(if is_frontend { 128 << 20 } else { 8 << 20 });
    let buffer_budget = usize::try_from(buffer_budget).unwrap_or(usize::MAX);
    let max_conns = number("max_conns", 1)?.unwrap_or(if is_frontend { 16384 } else { 4096 });
    let max_conns = usize::try_from(max_conns).unwrap_or(usize::MAX);
    let stop_grace = Duration::from_secs(number("stop_grace", 0)?.unwrap_or(5));
    let log_level = match (m.opt_present("quiet"), m.opt_count("verbose")) {
        (true, _) => LogLevel::Quiet,
        (false, 0) => LogLevel::Normal,
        (false, 1) => LogLevel::Verbose,
        _ => LogLevel::Trace,
    };
    for (flag, rules) in [("client_acl", "client_acl"), ("tunnel_acl", "tunnel_acl")] {
        Acl::parse(&m.opt_strs(rules)).map_err(|e| bad(flag, e.to_string()))?;
    }
    let config = Config {
        is_frontend,
        host,
        ports,
        protos,
        raw_ports,
        domain_secrets,
        frontends,
        kites,
        keepalive,
        log_level,
        debug_io: m.opt_present("debugio"),
        logfile: m.opt_str("logfile").filter(|f| f != "stdio"),
        tls_endpoints,
        tls_default: m.opt_str("tls_default").map(|n| n.to_ascii_lowercase()),
        fe_certnames: m
            .opt_strs("fe_certname")
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .collect(),
        ca_certs: m.opt_str("ca_certs"),
        fe_nocertcheck: m.opt_present("fe_nocertcheck"),
        client_acl: m.opt_strs("client_acl"),
        tunnel_acl: m.opt_strs("tunnel_acl"),
        max_conns_per_ip: usize::try_from(number("max_conns_per_ip", 0)?.unwrap_or(256))
            .unwrap_or(usize::MAX),
        be_config: m.opt_strs("be_config"),
        insecure: m.opt_present("insecure"),
        buffer_budget,
        max_conns,
        stop_grace,
        ignored: IGNORED_SWITCHES
            .iter()
            .filter(|f| m.opt_present(f))
            .map(|f| format!("--{f}"))
            .collect(),
    };
    for spec in &config.be_config {
        let (_, _, key, value) =
            options::parse_be_config(spec).map_err(|e| bad("be_config", e.to_string()))?;
        KiteOptions::default()
            .apply(key, value)
            .map_err(|e| bad("be_config", e.to_string()))?;
    }
    for opt in config.kites.iter().flat_map(|k| &k.options) {
        KiteOptions::default()
            .apply_short(opt)
            .map_err(|e| bad("", format!("{opt}: {e}")))?;
    }
    Ok(Parsed::Run(Box::new(config)))
}

/// Each kite's options: its short-form `+options`, then every `--be_config`
/// naming its domain (and its public port, 80 for kites without one, as
/// pagekite.py keys them; a `--be_config` without a port applies to all).
pub fn kite_options(config: &Config) -> Result<Vec<KiteOptions>, OptionError> {
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

/// `--connect=RELAY:PORT TARGET:PORT` with its TLS flags.
fn parse_client(
    m: &getopts::Matches,
    relay: &str,
) -> Result<crate::client::ClientConfig, ConfigError> {
    let relay = parse_frontend(relay).map_err(|e| bad("connect", e.problem))?;
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
    Ok(crate::client::ClientConfig {
        relay,
        target,
        tls,
        ca_certs: m.opt_str("ca_certs"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn run(list: &[&str]) -> Result<Config, ConfigError> {
        match parse(&args(list))? {
            Parsed::Run(c) => Ok(*c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_issue_frontend_command() {
        let c = run(&[
            "--isfrontend",
            "--host=127.0.0.1",
            "--ports=9080,9082",
            "--protos=http,https,raw,websocket",
            "--domain=http,websocket:*.example.test:s3cret",
            "--domain=http:other.test:pw2",
            "--clean",
            "--nullui",
        ])
        .unwrap();
        assert!(c.is_frontend);
        assert_eq!(c.ports, [9080, 9082]);
        assert_eq!(c.protos, ["http", "https", "raw", "websocket"]);
        assert_eq!(
            c.domain_secrets
                .get("http:*.example.test")
                .map(String::as_str),
            Some("s3cret")
        );
        assert_eq!(
            c.domain_secrets
                .get("websocket:*.example.test")
                .map(String::as_str),
            Some("s3cret")
        );
        assert_eq!(
            c.domain_secrets.get("http:other.test").map(String::as_str),
            Some("pw2")
        );
        assert_eq!(c.domain_secrets.len(), 3);
    }

    #[test]
    fn the_issue_backend_command() {
        let c = run(&[
            "--frontend=127.0.0.1:9080",
            "--service_on=http:foo.example.test:127.0.0.1:8000:s3cret",
            "--service-on",
            "http/9082:foo.example.test:127.0.0.1:8001:s3cret",
            "--backend=ssh:home.test:localhost:22:pw",
        ])
        .unwrap();
        assert!(!c.is_frontend);
        assert_eq!(c.frontends, [("127.0.0.1".to_string(), 9080)]);
        let names: Vec<_> = c.kites.iter().map(|k| k.id.name()).collect();
        assert_eq!(names, ["http", "http-9082", "raw-22"]);
        assert_eq!(c.kites[1].local, "127.0.0.1:8001".parse().unwrap());
        assert_eq!(c.kites[2].local.port(), 22);
    }

    #[test]
    fn star_protos_and_defaults() {
        let c = run(&["--isfrontend", "--domain=*:x.test:pw"]).unwrap();
        assert_eq!(c.ports, [80]);
        assert_eq!(c.domain_secrets.len(), DEFAULT_PROTOS.len());
        assert_eq!(c.keepalive, DEFAULT_INTERVAL);
        let c = run(&[
            "--isfrontend",
            "--protos=http",
            "--domain=*:x.test:pw",
            "--keepalive",
            "20",
        ])
        .unwrap();
        assert_eq!(c.domain_secrets.len(), 1);
        assert_eq!(c.keepalive, Duration::from_secs(20));
    }

    #[test]
    fn errors_name_the_flag() {
        let err = |list: &[&str]| run(list).unwrap_err();
        assert_eq!(err(&["--isfrontend", "--ports=80,x"]).flag, "ports");
        assert_eq!(
            err(&["--isfrontend", "--domain=http:x.test"]).flag,
            "domain"
        );
        assert_eq!(err(&["--isfrontend", "--host=nope"]).flag, "host");
        assert_eq!(err(&["--frontend=a"]).flag, "frontend");
        assert_eq!(err(&["--frontend=a:1"]).flag, "service_on");
        assert_eq!(
            err(&["--frontend=a:1", "--service_on=http:x:127.0.0.1:80"]).flag,
            "service_on"
        );
        assert_eq!(
            err(&["--frontend=a:1", "--backend=bogus!:x:127.0.0.1:80:s"]).flag,
            "backend"
        );
        assert_eq!(
            err(&["--frontend=a:1", "--service_on=http:x:127.0.0.1:99999:s"]).flag,
            "service_on"
        );
        assert_eq!(err(&["--isfrontend", "--keepalive=1"]).flag, "keepalive");
        assert!(err(&["--nosuchflag"]).to_string().contains("nosuchflag"));
        assert!(err(&["stray"]).to_string().contains("stray"));
    }

    #[test]
    fn help_lists_every_flag() {
        let Parsed::Help(text) = parse(&args(&["--help"])).unwrap() else {
            panic!()
        };
        for flag in [
            "--isfrontend",
            "--host",
            "--ports",
            "--protos",
            "--rawports",
            "--domain",
            "--frontend",
            "--service_on",
            "--backend",
            "--kitesecret",
            "--keepalive",
            "--logfile",
            "--verbose",
            "--quiet",
            "--debugio",
            "--help",
            "--version",
            "--clean",
            "--nullui",
        ] {
            assert!(text.contains(flag), "{flag} missing from --help");
        }
    }
}
