//! SIGHUP: read the command line and its option files again and apply the
//! difference live. The roles apply their own parts (`frontend::reload`,
//! `backend::reload`) and leave untouched whatever the change does not
//! concern; this file decides whether a reload can happen at all, reports
//! settings that need a restart, and swaps the configuration in. A reload
//! that fails changes nothing and says why.

use std::fmt;

use log::{error, info, warn};

use crate::app::Role;
use crate::config::{self, Config, Parsed, ProcessSettings, RoleConfig};
use crate::conn::Cx;
use crate::engine::Fatal;
use crate::proto::acl::AclError;
use crate::proto::options::OptionError;
use crate::tls::TlsConfigError;
use crate::{backend, frontend};

/// Why a role could not apply a new configuration (nothing was changed).
#[derive(Debug)]
pub enum ReloadError {
    /// Certificates, keys or TLS settings could not be loaded.
    Tls(TlsConfigError),
    ClientAcl(AclError),
    TunnelAcl(AclError),
    /// A new port could not be bound or watched, or the backend's TLS set up.
    Setup(Box<Fatal>),
    /// A kite's options are invalid.
    Options(OptionError),
    /// The new configuration runs the other role (`now`), this process `was`.
    RoleSwitch {
        now: &'static str,
        was: &'static str,
        flag: &'static str,
    },
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Tls(e) => write!(f, "{e}"),
            ReloadError::ClientAcl(e) => write!(f, "--client_acl: {e}"),
            ReloadError::TunnelAcl(e) => write!(f, "--tunnel_acl: {e}"),
            ReloadError::Setup(e) => write!(f, "{e}"),
            ReloadError::Options(e) => write!(f, "{e}"),
            ReloadError::RoleSwitch { now, was, flag } => write!(
                f,
                "the configuration now runs a {now} (--isfrontend {flag}), but this process \
                 is a {was}; switching roles needs a restart"
            ),
        }
    }
}

pub fn reload(eng: &mut Cx, role: &mut Role) {
    if eng.stopping {
        return;
    }
    crate::logging::reopen();
    info!("SIGHUP: reading the configuration again");
    let new = match config::parse(&eng.config.argv) {
        Ok(Parsed::Run(c)) => *c,
        Ok(_) => {
            return refuse(eng, "the command line no longer runs a service");
        }
        Err(e) => return refuse(eng, &e.to_string()),
    };
    if let Err(e) = apply(eng, role, new) {
        return refuse(eng, &e.to_string());
    }
    info!("SIGHUP: the new configuration is in effect");
    eng.status_changed();
}

/// Puts `new` in effect, or changes nothing and says why.
fn apply(eng: &mut Cx, running: &mut Role, mut new: Config) -> Result<(), ReloadError> {
    keep_restart_only(eng, running, &mut new);
    let Config { common, role } = new;
    // Each role applies its own settings; the other role's never reach it.
    match (running, &role) {
        (Role::Frontend(state), RoleConfig::Frontend(fe)) => frontend::reload(eng, state, fe)?,
        (Role::Backend(state), RoleConfig::Backend(be)) => backend::reload(eng, state, be)?,
        (_, wanted) => return Err(role_switch(wanted)),
    }
    eng.pool.set_budget(common.buffer_budget);
    eng.pipes.set_max(common.max_pipes);
    eng.config = common;
    Ok(())
}

/// Why a reload that asks for the other role is refused.
fn role_switch(wanted: &RoleConfig) -> ReloadError {
    let (now, was, flag) = match wanted {
        RoleConfig::Frontend(_) => ("frontend", "backend", "added"),
        RoleConfig::Backend(_) => ("backend", "frontend", "removed"),
    };
    ReloadError::RoleSwitch { now, was, flag }
}

fn refuse(eng: &mut Cx, why: &str) {
    error!("SIGHUP: {why}; the running configuration stays");
    eng.note_error(&format!("reload failed: {why}"));
}

/// Settings a running process cannot change (its [`ProcessSettings`] and a
/// frontend's `--host`): warn, and keep the old ones.
fn keep_restart_only(eng: &Cx, running: &Role, new: &mut Config) {
    let keep = |what: &str, differs: bool| {
        if differs {
            warn!("SIGHUP: {what} changes need a restart; keeping the running value");
        }
    };
    if let (Role::Frontend(fe), RoleConfig::Frontend(fresh)) = (running, &mut new.role) {
        let old = fe.settings();
        keep("--host", old.host != fresh.host);
        fresh.host = old.host;
    }
    let old: &ProcessSettings = &eng.config.process;
    let fresh = &new.common.process;
    keep("--logfile", old.logfile != fresh.logfile);
    keep(
        "the log level (-v/-q/--debugio)",
        old.log_level != fresh.log_level || old.debug_io != fresh.debug_io,
    );
    keep("--runas", old.runas != fresh.runas);
    keep("--pidfile", old.pidfile != fresh.pidfile);
    keep("--status_file", old.status_file != fresh.status_file);
    keep("--metrics", old.metrics != fresh.metrics);
    keep("--daemonize", old.daemonize != fresh.daemonize);
    new.common.process = old.clone();
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod tests;
