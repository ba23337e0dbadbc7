//! SIGHUP: read the command line and its option files again and apply the
//! difference live. The roles apply their own parts (`frontend::reload`,
//! `backend::reload`) and leave untouched whatever the change does not
//! concern; this file decides whether a reload can happen at all, reports
//! settings that need a restart, and swaps the configuration in. A reload
//! that fails changes nothing and says why.

use log::{error, info, warn};

use crate::config::{self, Config, Parsed};
use crate::engine::{Engine, Role};
use crate::{backend, frontend};

pub fn reload(eng: &mut Engine) {
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
    if new.is_frontend != eng.config.is_frontend {
        return refuse(
            eng,
            "switching between frontend and backend needs a restart",
        );
    }
    let mut new = new;
    keep_restart_only(&eng.config, &mut new);
    let applied = match eng.role {
        Role::Frontend(_) => frontend::reload(eng, &new),
        Role::Backend(_) => backend::reload(eng, &new),
    };
    if let Err(e) = applied {
        return refuse(eng, &e);
    }
    eng.pool.set_budget(new.buffer_budget);
    eng.config = new;
    info!("SIGHUP: the new configuration is in effect");
    eng.status_changed();
}

fn refuse(eng: &mut Engine, why: &str) {
    error!("SIGHUP: {why}; the running configuration stays");
    eng.note_error(&format!("reload failed: {why}"));
}

/// Settings a running process cannot change: warn, and keep the old ones.
fn keep_restart_only(old: &Config, new: &mut Config) {
    let keep = |what: &str, differs: bool| {
        if differs {
            warn!("SIGHUP: {what} changes need a restart; keeping the running value");
        }
    };
    keep("--host", old.host != new.host);
    keep("--logfile", old.logfile != new.logfile);
    keep(
        "the log level (-v/-q/--debugio)",
        old.log_level != new.log_level || old.debug_io != new.debug_io,
    );
    keep("--runas", old.runas != new.runas);
    keep("--pidfile", old.pidfile != new.pidfile);
    keep("--status_file", old.status_file != new.status_file);
    keep("--daemonize", old.daemonize != new.daemonize);
    new.host = old.host;
    new.logfile = old.logfile.clone();
    new.log_level = old.log_level.clone();
    new.debug_io = old.debug_io;
    new.runas = old.runas.clone();
    new.pidfile = old.pidfile.clone();
    new.status_file = old.status_file.clone();
    new.daemonize = old.daemonize;
}
