//! The program the reactor runs: a frontend or a backend role, and the
//! dispatch of each connection, timer and signal to the part that owns it
//! (the roles, `public`, `relay`, `reply`). Also what belongs to the process
//! rather than to a role: the graceful stop, the SIGUSR2 stats line, SIGHUP
//! (via `reload`) and the `--status_file` (via `report`). The only file that
//! names both roles' states; the reactor (`engine`) names neither.

use std::time::{Duration, Instant};

use log::{info, warn};
use mio::Token;

use crate::backend;
use crate::config::{Config, RoleConfig};
use crate::conn::{AppTimer, Conn, Cx};
use crate::engine::{self, App, Fatal, TimerKind, WAKER_TOKEN};
use crate::frontend;
use crate::public;
use crate::relay::{self, Hooks, Why};
use crate::reply;

/// After the grace period, how long the last EOFs may take to go out.
const FINAL_FLUSH: Duration = Duration::from_secs(2);

pub enum Role {
    /// Boxed: the frontend's tables are large, and there is one of them.
    Frontend(Box<frontend::State>),
    Backend(Box<backend::State>),
}

impl Role {
    /// The role as the relay sees it.
    pub fn hooks(&mut self) -> &mut dyn Hooks {
        match self {
            Role::Frontend(fe) => &mut **fe,
            Role::Backend(be) => &mut **be,
        }
    }
}

/// The running process: the reactor and the role it serves.
pub struct Node {
    pub eng: Cx,
    pub role: Role,
}

impl Node {
    #[inline(never)]
    pub fn new(config: Config) -> Result<Node, Box<Fatal>> {
        let Config { common, role } = config;
        let mut eng = Cx::new(common)?;
        crate::metrics::listen(&mut eng)?;
        let role = match role {
            RoleConfig::Frontend(settings) => Role::Frontend(Box::new(frontend::State::new(
                settings,
                eng.registry(),
                WAKER_TOKEN,
            )?)),
            RoleConfig::Backend(settings) => Role::Backend(Box::new(backend::State::new(
                settings,
                eng.registry(),
                WAKER_TOKEN,
            )?)),
        };
        Ok(Node { eng, role })
    }

    /// Opens the role's sockets: listeners on a frontend, tunnels on a backend.
    #[inline(never)]
    pub fn start(&mut self) -> Result<(), Box<Fatal>> {
        self.eng.status_changed();
        crate::splice::announce(&self.eng.pipes);
        match &mut self.role {
            Role::Frontend(fe) => frontend::start(&mut self.eng, fe),
            Role::Backend(be) => {
                backend::start(&mut self.eng, be);
                Ok(())
            }
        }
    }

    pub fn run(&mut self) -> Result<(), Box<Fatal>> {
        engine::run(&mut self.eng, &mut self.role)
    }
}

impl App for Role {
    type Conn = Conn;
    type Timer = AppTimer;

    fn drive(&mut self, eng: &mut Cx, token: Token, conn: Conn) -> Option<Conn> {
        match (conn, self) {
            (Conn::Listener(l), Role::Frontend(fe)) => frontend::drive_listener(eng, fe, token, l),
            (Conn::Sniff(s), Role::Frontend(fe)) => public::drive_sniff(eng, fe, token, s),
            (Conn::Reply(r), _) => drive_reply(eng, token, r),
            (Conn::Tunnel(t), role) => relay::drive_tunnel(eng, role.hooks(), token, t),
            (Conn::Stream(s), role) => relay::drive_stream(eng, role.hooks(), token, s),
            (Conn::Web(w), _) => crate::webserve::drive(eng, token, w),
            (Conn::MetricsListener(l), _) => crate::metrics::drive_listener(eng, token, l),
            (Conn::Metrics(m), Role::Backend(be)) => {
                crate::metrics::drive(eng, crate::metrics::RoleRef::Backend(be), token, m)
            }
            (Conn::Metrics(m), Role::Frontend(fe)) => {
                crate::metrics::drive(eng, crate::metrics::RoleRef::Frontend(fe), token, m)
            }
            (Conn::AddrWatch(w), Role::Backend(be)) => backend::on_addresses(eng, be, token, w),
            (Conn::Outbound(o), Role::Backend(be)) => backend::dyndns_drive(eng, be, token, o),
            (Conn::Outbound(o), Role::Frontend(fe)) => frontend::acme_drive(eng, fe, token, o),
            // A backend has neither listeners nor public connections.
            (Conn::Listener(_) | Conn::Sniff(_), Role::Backend(_)) => None,
            (Conn::AddrWatch(_), Role::Frontend(_)) => None,
        }
    }

    fn conn_timer(
        &mut self,
        eng: &mut Cx,
        token: Token,
        conn: Conn,
        kind: TimerKind,
    ) -> Option<Conn> {
        match (conn, self) {
            (Conn::Sniff(s), _) => public::sniff_timeout(eng, token, s),
            // The linger is over: the reply had its chance.
            (Conn::Reply(_), _) => None,
            (Conn::Metrics(m), _) if kind == TimerKind::Deadline => {
                crate::metrics::timeout(token, &m)
            }
            (Conn::Tunnel(t), role) => relay::tunnel_timer(eng, role.hooks(), token, t, kind),
            (Conn::Stream(s), role) => relay::stream_timer(eng, role.hooks(), token, s, kind),
            (Conn::Outbound(_), Role::Backend(be)) => backend::dyndns_timeout(eng, be, token),
            (Conn::Outbound(_), Role::Frontend(fe)) => frontend::acme_timeout(eng, fe, token),
            (other, _) => Some(other),
        }
    }

    fn timer(&mut self, eng: &mut Cx, key: AppTimer, at: Instant) {
        match (key, self) {
            (AppTimer::Slot(slot), Role::Backend(be)) => backend::on_slot_timer(eng, be, slot, at),
            (AppTimer::AcceptResume, Role::Frontend(fe)) => frontend::resume_accepting(eng, fe),
            (AppTimer::DynDns, Role::Backend(be)) => backend::on_dyndns_timer(eng, be, at),
            (AppTimer::Acme, Role::Frontend(fe)) => frontend::on_acme_timer(eng, fe, at),
            (AppTimer::StopGrace, role) if eng.stopping => end_grace(eng, role),
            (AppTimer::StopFinal, role) if eng.stopping => {
                for token in eng.conns.tokens() {
                    relay::discard(eng, role.hooks(), token, &Why::Stopping);
                }
            }
            _ => {}
        }
    }

    fn signal(&mut self, eng: &mut Cx, signal: i32) {
        match signal {
            libc::SIGINT | libc::SIGTERM => begin_shutdown(eng, self, signal),
            libc::SIGUSR2 => log_stats(eng),
            libc::SIGUSR1 => {
                if let Role::Backend(be) = self {
                    backend::reconnect_now(eng, be);
                }
            }
            libc::SIGHUP => {
                eng.counters.reloads += 1;
                crate::reload::reload(eng, self);
            }
            other => info!("ignoring signal {other}"),
        }
    }

    fn wake(&mut self, eng: &mut Cx) {
        match self {
            Role::Backend(be) => backend::on_wake(eng, be),
            Role::Frontend(fe) => frontend::on_wake(eng, fe),
        }
    }

    fn timer_wanted(&self, key: AppTimer, at: Instant) -> bool {
        match (key, self) {
            (AppTimer::Slot(slot), Role::Backend(be)) => be.waiting_slots().contains(&(slot, at)),
            (AppTimer::Slot(_), Role::Frontend(_)) => false,
            (AppTimer::DynDns, Role::Backend(be)) => be.dyndns_timer_wanted(at),
            (AppTimer::Acme, Role::Frontend(fe)) => fe.acme_timer_wanted(at),
            _ => true,
        }
    }

    fn write_status(&mut self, eng: &mut Cx, running: bool) {
        crate::report::write(eng, self, running);
    }
}

fn drive_reply(eng: &mut Cx, token: Token, mut r: reply::Reply) -> Option<Conn> {
    match r.drive() {
        reply::Step::Wait => Some(Conn::Reply(r)),
        reply::Step::Again => {
            eng.mark_again(token);
            Some(Conn::Reply(r))
        }
        reply::Step::Done => None,
    }
}

/// Stops accepting and dialing, gives every stream its EOF, flushes the
/// tunnels and exits once everything is written (or after a grace time).
fn begin_shutdown(eng: &mut Cx, role: &mut Role, signal: i32) {
    if eng.stopping {
        warn!("second stop signal: exiting now");
        // Not process::exit: the loop's way out writes the final status,
        // and the pid file goes when `main` drops its guard.
        for token in eng.conns.tokens() {
            relay::discard(eng, role.hooks(), token, &Why::Stopping);
        }
        return;
    }
    eng.stopping = true;
    let grace = eng.config.stop_grace;
    let mut streams = 0;
    for token in eng.conns.tokens() {
        let Some(conn) = eng.conns.take(token) else {
            continue;
        };
        // Listeners close now, so new connections are refused at once.
        let conn = match conn {
            // A dynamic DNS update in flight is abandoned: the process
            // is going, and its tunnels with it.
            Conn::Listener(_)
            | Conn::Sniff(_)
            | Conn::Reply(_)
            | Conn::AddrWatch(_)
            | Conn::Outbound(_) => None,
            Conn::MetricsListener(_) | Conn::Metrics(_) => None,
            Conn::Stream(s) => {
                streams += 1;
                Some(Conn::Stream(s))
            }
            other => Some(other),
        };
        eng.settle(token, conn);
    }
    info!(
        "{} received: finishing {streams} stream(s), for up to {} s",
        if signal == libc::SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        },
        grace.as_secs_f64()
    );
    eng.arm_app(eng.now + grace, AppTimer::StopGrace);
    // Tunnels without streams close once their output is written.
    for token in eng.conns.tokens() {
        eng.mark_dirty(token);
    }
    if let Role::Backend(be) = role {
        be.stop();
    }
}

/// The grace period is over: every stream still running gets its EOF,
/// the tunnels write that out and close; a last short wait, then exit.
fn end_grace(eng: &mut Cx, role: &mut Role) {
    let mut cut = 0;
    for token in eng.conns.tokens() {
        let Some(conn) = eng.conns.take(token) else {
            continue;
        };
        let conn = match conn {
            Conn::Stream(s) => {
                cut += 1;
                relay::stream_shutdown(eng, role.hooks(), token, s)
            }
            other => Some(other),
        };
        eng.settle(token, conn);
    }
    if cut > 0 {
        warn!("stop grace over: closing {cut} stream(s) still running");
    }
    for token in eng.conns.tokens() {
        eng.mark_dirty(token);
    }
    eng.arm_app(eng.now + FINAL_FLUSH, AppTimer::StopFinal);
}

/// One line of counts for operators and leak tests (SIGUSR2).
fn log_stats(eng: &mut Cx) {
    let (mut tunnels, mut streams) = (0, 0);
    for token in eng.conns.tokens() {
        match eng.conns.get_mut(token) {
            Some(Conn::Tunnel(_)) => tunnels += 1,
            Some(Conn::Stream(_)) => streams += 1,
            _ => {}
        }
    }
    let allocs = crate::alloc_count::allocations()
        .map(|n| format!(" allocs={n}"))
        .unwrap_or_default();
    let b = eng.pool.stats();
    let p = eng.pipes.stats();
    info!(
        "stats: conns={} tunnels={tunnels} streams={streams} timers={} buffered={} \
         pooled={} peak={} buf_allocations={} buf_reuses={} buf_frees={} pipes={} \
         pipes_lent={} pipes_exhausted={} spliced={}{allocs}",
        eng.conns.len(),
        eng.timers.len(),
        b.held,
        b.pooled,
        b.peak,
        b.allocations,
        b.reuses,
        b.frees,
        p.open,
        p.lent,
        p.exhausted,
        p.spliced
    );
}
