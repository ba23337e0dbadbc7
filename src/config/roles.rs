//! The configuration's shape, which mirrors the roles: [`Common`] settings
//! every role reads (the reactor keeps only these), [`FrontendSettings`]
//! that only a frontend reads, [`BackendSettings`] that only a backend
//! reads, and [`ClientSettings`] for `--connect`. A running [`Config`]
//! holds the common part and exactly one role's part, so code of one role
//! cannot read the other's flags. Settings a running process cannot change
//! are grouped in [`ProcessSettings`], which a SIGHUP keeps whole. Types
//! only: `mod` parses them, the roles use them; nothing here does I/O.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::service;
use crate::proto::kite::KiteId;
use crate::proto::proxy::ProxySpec;

/// What a `rkite` process runs: the common settings and one role's.
#[derive(Clone, Debug)]
pub struct Config {
    pub common: Common,
    pub role: RoleConfig,
}

/// The role `--isfrontend` chose, with the settings only it reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleConfig {
    Frontend(FrontendSettings),
    Backend(BackendSettings),
}

impl Config {
    pub fn is_frontend(&self) -> bool {
        matches!(self.role, RoleConfig::Frontend(_))
    }

    /// The frontend's settings, if this is a frontend.
    pub fn frontend(&self) -> Option<&FrontendSettings> {
        match &self.role {
            RoleConfig::Frontend(fe) => Some(fe),
            RoleConfig::Backend(_) => None,
        }
    }

    /// The backend's settings, if this is a backend.
    pub fn backend(&self) -> Option<&BackendSettings> {
        match &self.role {
            RoleConfig::Backend(be) => Some(be),
            RoleConfig::Frontend(_) => None,
        }
    }
}

/// Settings both roles read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Common {
    /// Seconds of tunnel silence before a PING.
    pub keepalive: Duration,
    /// `--errorurl`: pages framed instead of the built-in unavailable page
    /// (the frontend's for unknown kites, the backend's for down servers).
    pub error_urls: crate::proto::pages::ErrorUrls,
    /// `--buffers`: bytes all connection buffers may hold together.
    pub buffer_budget: usize,
    /// `--max_conns`: public connections and tunnels (frontend) or streams
    /// (backend) at once.
    pub max_conns: usize,
    /// `--max_pipes`: pipes for kernel splicing at once (0: never splice).
    pub max_pipes: usize,
    /// `--stop_grace`: how long running streams may finish after SIGTERM.
    pub stop_grace: Duration,
    /// `--stream_idle`: a stream with no traffic this long is closed.
    pub stream_idle: Option<Duration>,
    /// pagekite.py flags given that mean nothing here (logged at start).
    pub ignored: Vec<String>,
    /// The command line as given, for SIGHUP to read again.
    pub argv: Vec<String>,
    /// The option files read, in order.
    pub files: Vec<String>,
    /// What only a restart can change.
    pub process: ProcessSettings,
}

/// The process's own settings: its log, its daemon duties and its status
/// file. They are set up once at start; a SIGHUP keeps the running values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessSettings {
    pub log_level: LogLevel,
    /// `--debugio`.
    pub debug_io: bool,
    /// `--logfile` (none: stderr).
    pub logfile: Option<String>,
    /// `--daemonize`.
    pub daemonize: bool,
    /// `--pidfile`.
    pub pidfile: Option<String>,
    /// `--runas=USER[:GROUP]`, as written.
    pub runas: Option<String>,
    /// `--status_file`.
    pub status_file: Option<String>,
    /// `--metrics`: where the Prometheus and health endpoint listens.
    pub metrics: Option<SocketAddr>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LogLevel {
    Quiet,
    #[default]
    Normal,
    Verbose,
    Trace,
}

/// What only a frontend (`--isfrontend`) reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrontendSettings {
    /// `--host`: the address to listen on (restart only).
    pub host: Option<IpAddr>,
    pub ports: Vec<u16>,
    pub protos: Vec<String>,
    /// `--rawports` entries as written: numbers and/or `virtual`.
    pub raw_ports: Vec<String>,
    /// `proto:domain` → secret, one entry per protocol of each `--domain`.
    pub domain_secrets: HashMap<String, String>,
    /// `--tls_endpoint NAME:PEM` pairs.
    pub tls_endpoints: Vec<(String, String)>,
    /// `--tls_default`.
    pub tls_default: Option<String>,
    /// `--client_acl` and `--tunnel_acl` rules, as written.
    pub client_acl: Vec<String>,
    pub tunnel_acl: Vec<String>,
    /// `--max_conns_per_ip` (0: no limit).
    pub max_conns_per_ip: usize,
    /// `--proxyproto_from`: the load balancers whose connections begin with
    /// a PROXY protocol header naming the visitor.
    pub proxyproto_from: Vec<crate::proto::acl::Cidr>,
    /// `--proxyproto_ports` (empty: every public port).
    pub proxyproto_ports: Vec<u16>,
    /// `--authdomain`s, applied in order.
    pub auth_domains: crate::proto::authdns::AuthDomains,
    /// `--authfail_closed`.
    pub authfail_closed: bool,
    /// `--authfile`'s users, as read when the configuration was.
    pub auth_users: Vec<crate::proto::authfile::AuthUser>,
    /// `--motd`, `--ratelimit_ips`, `--portalias`, `--accept_acl_file`
    /// and `--overload*`.
    pub ops: super::OperatorSettings,
    /// `--acme` and its companions: certificates for kites, automatically.
    pub acme: Option<AcmeSettings>,
}

/// `--acme`, `--acme_email`, `--acme_dir`, `--acme_ca`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeSettings {
    pub directory: String,
    pub email: Option<String>,
    pub dir: String,
    pub ca: Option<String>,
    /// `--acme_challenge`, or as the ports suggest.
    pub challenge: crate::proto::acme::ChallengeKind,
}

/// What only a backend reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendSettings {
    /// `--frontend=HOST:PORT`s.
    pub frontends: Vec<(String, u16)>,
    /// `--frontends=N:NAME:PORT`, a fleet of relays under one name.
    pub frontend_pool: Option<FrontendPool>,
    /// `--nofrontend` addresses never to dial, as written.
    pub nofrontends: Vec<(String, u16)>,
    /// `--service_on`/`--backend` kites and the short form's.
    pub kites: Vec<ServiceKite>,
    /// `--service_off`/`--define_backend` kites: checked, not flown.
    pub kites_off: Vec<ServiceKite>,
    /// `--fe_certname`s; TLS to the frontend when given.
    pub fe_certnames: Vec<String>,
    /// `--ca_certs` (default: the system bundle).
    pub ca_certs: Option<String>,
    /// `--fe_nocertcheck`.
    pub fe_nocertcheck: bool,
    /// `--be_config` and `--service_cfg` specs, as written.
    pub be_config: Vec<String>,
    /// `--insecure`: no security filter on any kite.
    pub insecure: bool,
    /// `--kitename` and `--kitesecret`, as given (`@kitename`, `@kitesecret`).
    pub kitename: Option<String>,
    pub kitesecret: Option<String>,
    /// `--dyndns` (or the one `defaults`/`whitelabel` set): kept and shown
    /// by `--settings`; rkite sends no dynamic DNS updates yet.
    pub dyndns: Option<service::DynDns>,
    /// `--webpath`, `--webroot`, `--httppass`...: the built-in file server.
    pub web: super::web::WebSettings,
    /// `--proxy`/`--socksify`/`--torify` hops in order (empty: direct).
    pub proxies: Vec<ProxySpec>,
}

/// What `--connect` was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSettings {
    pub relay: (String, u16),
    pub target: String,
    /// TLS to the relay: `Some(None)` without checks, `Some(Some(names))`
    /// verifying one of the names.
    pub tls: Option<Option<Vec<String>>>,
    pub ca_certs: Option<String>,
    /// The same proxy chain as a backend's.
    pub proxies: Vec<ProxySpec>,
}

/// One `--service_on` kite on a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceKite {
    pub id: KiteId,
    pub domain: String,
    /// The local server's name as written (`localhost`), for `--settings`.
    pub host: String,
    pub local: SocketAddr,
    pub secret: String,
    /// Short-form options given with the kite (`+ip/...`), as written.
    pub options: Vec<String>,
    /// `builtin` instead of a port: served by the built-in file server
    /// (`--webpath`); `local` is then a placeholder never dialed.
    pub builtin: bool,
}

impl ServiceKite {
    /// Where its streams go, for logs and the status file: the local
    /// server's address, or `builtin`.
    pub fn origin(&self) -> String {
        if self.builtin {
            "builtin".to_string()
        } else {
            self.local.to_string()
        }
    }
}

/// `--frontends=N:NAME:PORT`: keep tunnels to the `count` fastest addresses
/// NAME resolves to (pagekite.py's `servers_auto`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendPool {
    pub count: usize,
    pub name: String,
    pub port: u16,
}

#[cfg(test)]
#[path = "roles_tests.rs"]
mod tests;
