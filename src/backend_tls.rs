//! How a backend reaches its frontends over TLS: the client setup built
//! from `--fe_certname`, `--ca_certs` and `--fe_nocertcheck`, and the name
//! sent as SNI (a frontend's configured host, or a `--frontends` pool's
//! name). A child of `backend`; it holds no connection state and does
//! no I/O beyond loading the CA bundle.

use log::warn;

use super::State;
use crate::config::BackendSettings;
use crate::engine::Fatal;
use crate::relay::Side;
use crate::tls::{self, ClientSetup, Verify};

/// How the backend reaches its frontends over TLS.
pub(super) struct BackendTls {
    pub(super) setup: ClientSetup,
    /// `--fe_certname`s; the first is sent in `CONNECT` and as SNI.
    pub(super) names: Vec<String>,
    /// `--fe_nocertcheck`: TLS straight away, no CONNECT (pagekite.py's way).
    pub(super) direct: bool,
}

impl BackendTls {
    pub(super) fn new(config: &BackendSettings) -> Result<Option<BackendTls>, Box<Fatal>> {
        let setup = Fatal::Tls;
        if config.fe_nocertcheck {
            warn!(
                "--fe_nocertcheck: the frontend's certificate is NOT checked; \
                 anyone between here and the frontend can impersonate it"
            );
            return Ok(Some(BackendTls {
                setup: tls::client_config(&Verify::Nothing).map_err(setup)?,
                names: config.fe_certnames.clone(),
                direct: true,
            }));
        }
        if config.fe_certnames.is_empty() {
            return Ok(None);
        }
        let verify = Verify::Names {
            ca_file: config.ca_certs.clone(),
            names: config.fe_certnames.clone(),
        };
        Ok(Some(BackendTls {
            setup: tls::client_config(&verify).map_err(setup)?,
            names: config.fe_certnames.clone(),
            direct: false,
        }))
    }

    /// The name to send as SNI (and in CONNECT) for a frontend `host`.
    pub(super) fn name_for<'a>(&'a self, host: &'a str) -> &'a str {
        self.names.first().map(String::as_str).unwrap_or(host)
    }
}

/// The name a tunnel's frontend is known by (for SNI when no
/// `--fe_certname` is given): its configured host, or a pool's NAME.
pub(super) fn slot_host(be: &State, side: &Side) -> String {
    let Side::Backend(info) = side else {
        return String::new();
    };
    match (be.slots.get(info.slot), &be.fleet) {
        // A pool address is dialed by number, but its certificate is NAME's.
        (Some(s), Some(f)) if s.pool => f.name().to_string(),
        (s, _) => s.map(|s| s.host.clone()).unwrap_or_default(),
    }
}
