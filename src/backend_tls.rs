//! How a backend reaches its frontends over TLS: the client setup built
//! from `--fe_certname`, `--ca_certs` and `--fe_nocertcheck`, and the name
//! sent as SNI (a frontend's configured host, or a `--frontends` pool's
//! name), and the first step on a connected socket (TLS, `CONNECT name:443`
//! then TLS, or nothing). A child of `backend`; it holds no connection
//! state and does no I/O beyond loading the CA bundle.

use log::warn;

use mio::Token;

use super::{State, send_request};
use crate::config::BackendSettings;
use crate::engine::Fatal;
use crate::relay::{Phase, Side, Tunnel, TunnelCore, Why};
use crate::tls::{self, ClientSetup, TlsSession, Verify};

/// How the backend reaches its frontends over TLS.
pub(super) struct BackendTls {
    pub(super) setup: ClientSetup,
    /// `--fe_certname`s; the first is sent in `CONNECT` and as SNI.
    pub(super) names: Vec<String>,
    /// `--fe_nocertcheck`: TLS straight away, no CONNECT (pagekite.py's way).
    pub(super) direct: bool,
}

impl BackendTls {
    pub(super) fn new(config: &BackendSettings) -> Result<Option<BackendTls>, Fatal> {
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
pub(super) fn slot_host(be: &State, core: &TunnelCore) -> String {
    let Side::Backend(info) = &core.side else {
        return String::new();
    };
    match (be.slots.get(info.slot), &be.fleet) {
        // A pool address is dialed by number, but its certificate is NAME's.
        (Some(s), Some(f)) if s.pool => f.name().to_string(),
        (s, _) => s.map(|s| s.host.clone()).unwrap_or_default(),
    }
}

/// The way to the frontend is open (connected, through any proxies):
/// TLS straight away, `CONNECT name:443` then TLS, or the request in clear.
pub(super) fn through(be: &mut State, token: Token, t: &mut Tunnel) -> Result<(), Why> {
    let host = slot_host(be, &t.core);
    match be.tls.as_ref() {
        None => send_request(be, token, t),
        Some(tls) if tls.direct => {
            let mut session = TlsSession::client(&tls.setup, tls.name_for(&host))?;
            if !t.inb.is_empty() {
                // The frontend's first TLS bytes came with the proxy's reply.
                session.feed(t.inb.data())?;
                let n = t.inb.len();
                t.inb.consume(n);
            }
            t.transport.start_tls(session);
            send_request(be, token, t);
        }
        Some(tls) => {
            // pagekite.py's way, which pagekite.py frontends understand:
            // ask for the TLS endpoint in clear, then speak TLS.
            let name = tls.name_for(&host);
            let connect = format!("CONNECT {name}:443 HTTP/1.1\r\nHost: {name}\r\n\r\n");
            t.core.out.extend(connect.as_bytes());
            t.core.phase = Phase::ProxyConnect;
        }
    }
    Ok(())
}
