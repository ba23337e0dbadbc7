//! The reactor: one mio `Poll`, one slab of connections with generation-checked
//! tokens, a deadline queue, and the loop that turns readiness events, timer
//! expiries and signals into calls on the connection state machines. It owns
//! the rules every connection lives by: sockets are registered once for read
//! and write (edge-triggered) and their readiness is remembered until an
//! operation says WouldBlock; work is bounded per wakeup so one busy socket
//! can't starve the others; the clock is read once per wakeup, and once
//! more to measure the wait until the next deadline. Protocol logic
//! lives in `proto`, the roles in `frontend` and `backend`, the shared
//! stream/tunnel pump in `relay`.

use std::io;
use std::time::{Duration, Instant};

use log::{Level, error, info, warn};
use mio::{Events, Interest, Poll, Registry, Token};

use crate::backend;
use crate::buf::Pool;
use crate::config::{Common, Config, RoleConfig};
pub use crate::conns::Conns;
use crate::conns::RunQueue;
use crate::frontend;
use crate::logging::Noise;
use crate::public;
use crate::relay::{self, Stream, Tunnel};
use crate::reply::{self, Reply};
use crate::transport::Transport;

use crate::signals::Signals;
use crate::timer::TimerQueue;
pub use crate::why::Limit;

pub use crate::conns::{SIGNAL_TOKEN, WAKER_TOKEN};

pub use crate::net::Ready;

pub use crate::timer::{Deadlines, TimerKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKey {
    Conn(usize, TimerKind),
    /// A backend's frontend slot: reconnect after back-off.
    Slot(usize),
    /// Resume accepting after EMFILE/ENFILE.
    AcceptResume,
    /// Graceful stop: the running streams' time is up.
    StopGrace,
    /// Graceful stop: the last EOFs had their chance; exit.
    StopFinal,
    /// Time to write the `--status_file`.
    Status,
}

/// Everything that owns a socket.
pub enum Conn {
    Listener(frontend::Listener),
    Sniff(public::Sniff),
    Reply(Reply),
    /// Boxed: tunnels are few and big; the table's entries stay small.
    Tunnel(Box<Tunnel>),
    Stream(Stream),
}

impl Conn {
    fn ready_mut(&mut self) -> Option<&mut Ready> {
        match self {
            Conn::Listener(l) => Some(&mut l.ready),
            Conn::Sniff(s) => Some(&mut s.transport.ready),
            Conn::Reply(r) => Some(&mut r.transport.ready),
            Conn::Tunnel(t) => Some(&mut t.transport.ready),
            Conn::Stream(s) => Some(&mut s.transport.ready),
        }
    }

    pub fn deadlines_mut(&mut self) -> Option<&mut Deadlines> {
        match self {
            Conn::Listener(_) => None,
            Conn::Sniff(s) => Some(&mut s.deadlines),
            Conn::Reply(r) => Some(&mut r.deadlines),
            Conn::Tunnel(t) => Some(&mut t.deadlines),
            Conn::Stream(s) => Some(&mut s.deadlines),
        }
    }
}

pub enum Role {
    /// Boxed: the frontend's tables are large, and there is one of them.
    Frontend(Box<frontend::State>),
    Backend(Box<backend::State>),
}

/// Runtime failures that stop the process (exit code 2).
#[derive(Debug)]
pub enum Fatal {
    Setup(String),
    Poll(io::Error),
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fatal::Setup(what) => f.write_str(what),
            Fatal::Poll(e) => write!(f, "event loop failed: {e}"),
        }
    }
}

/// After the grace period, how long the last EOFs may take to go out.
const FINAL_FLUSH: Duration = Duration::from_secs(2);

pub struct Engine {
    pub poll: Poll,
    pub conns: Conns<Conn>,
    pub timers: TimerQueue<TimerKey>,
    pub now: Instant,
    /// The settings every role reads; each role keeps its own.
    pub config: Common,
    pub role: Role,
    queue: RunQueue,
    signals: Signals,
    pub stopping: bool,
    /// `--status_file`.
    pub status: Option<crate::status::Status>,
    /// Every counted buffer's pool, and the `--buffers` budget.
    pub pool: Pool,
}

impl Engine {
    pub fn new(config: Config) -> Result<Engine, Fatal> {
        let poll =
            Poll::new().map_err(|e| Fatal::Setup(format!("cannot create the event loop: {e}")))?;
        let signals = Signals::install(poll.registry(), SIGNAL_TOKEN)
            .map_err(|e| Fatal::Setup(format!("cannot install signal handlers: {e}")))?;
        let now = clock();
        let Config {
            common: config,
            role,
        } = config;
        let role = match role {
            RoleConfig::Frontend(settings) => {
                Role::Frontend(Box::new(frontend::State::new(settings, poll.registry())?))
            }
            RoleConfig::Backend(settings) => Role::Backend(Box::new(backend::State::new(
                settings,
                poll.registry(),
                WAKER_TOKEN,
            )?)),
        };
        Ok(Engine {
            poll,
            conns: Conns::default(),
            timers: TimerQueue::default(),
            now,
            role,
            queue: RunQueue::default(),
            signals,
            stopping: false,
            status: config
                .process
                .status_file
                .as_deref()
                .map(|path| crate::status::Status::new(path, now)),
            pool: Pool::new(config.buffer_budget),
            config,
        })
    }

    /// The limit new work would exceed, if any. Frontend handshake state
    /// (session ids) counts against the buffer budget with the buffers.
    pub fn limit_reached(&self, connections: usize) -> Option<Limit> {
        if connections >= self.config.max_conns {
            return Some(Limit::Conns(self.config.max_conns));
        }
        if let Some(held) = self.pool.over_budget(frontend::handshake_held(self)) {
            return Some(Limit::Buffers {
                budget: self.pool.budget(),
                held,
            });
        }
        None
    }

    /// Logs a refusal, throttled per kind.
    pub fn refuse(&mut self, limit: &Limit, what: &str) {
        let kind = match limit {
            Limit::Conns(_) => Noise::ConnLimit,
            Limit::Buffers { .. } => Noise::BufferBudget,
            Limit::PerIp(_) => Noise::PerIpLimit,
            Limit::Acl(_) => Noise::AccessList,
            Limit::Stopping => Noise::Stopping,
        };
        self.noisy(kind, Level::Warn, format_args!("{limit}: refusing {what}"));
    }

    /// Logs a refusal given only as text (one throttle for all of them).
    /// Logs a line a peer could repeat at will, rate-limited per kind.
    pub fn noisy(&mut self, kind: Noise, level: Level, line: std::fmt::Arguments<'_>) {
        crate::logging::noisy(self.now, kind, level, line);
    }

    /// Opens the role's sockets: listeners on a frontend, tunnels on a backend.
    pub fn start(&mut self) -> Result<(), Fatal> {
        self.status_changed();
        match self.role {
            Role::Frontend(_) => frontend::start(self),
            Role::Backend(_) => {
                backend::start(self);
                Ok(())
            }
        }
    }

    pub fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// Registers a socket under the token its connection will get, then
    /// inserts the connection built around it. Registration is for read and
    /// write, once.
    pub fn add<S: mio::event::Source>(
        &mut self,
        sock: S,
        make: impl FnOnce(S, Token) -> Conn,
    ) -> io::Result<Token> {
        self.add_for(sock, None, make)
    }

    /// [`Engine::add`] for a public client's connection, counted per address.
    pub fn add_for<S: mio::event::Source>(
        &mut self,
        mut sock: S,
        ip: Option<std::net::IpAddr>,
        make: impl FnOnce(S, Token) -> Conn,
    ) -> io::Result<Token> {
        let token = self
            .conns
            .next_token()
            .ok_or_else(|| io::Error::other("connection table full"))?;
        self.poll
            .registry()
            .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)?;
        let inserted = self.conns.insert_for(make(sock, token), ip);
        debug_assert_eq!(inserted, token);
        self.status_changed();
        Ok(inserted)
    }

    /// Something the `--status_file` shows changed.
    pub fn status_changed(&mut self) {
        if self.status.is_some() {
            crate::status::changed(self);
        }
    }

    /// Remembers an error for the `--status_file`.
    pub fn note_error(&mut self, text: &str) {
        if let Some(status) = &mut self.status {
            status.error(text);
            self.status_changed();
        }
    }

    /// Queues a connection to be driven in this wakeup.
    pub fn mark_dirty(&mut self, token: Token) {
        self.queue.mark(&mut self.conns, token);
    }

    /// Queues a connection to be driven after the next (non-blocking) poll.
    pub fn mark_again(&mut self, token: Token) {
        self.queue.defer(token);
    }

    /// Arms a connection timer, replacing any earlier deadline of that kind.
    pub fn arm(&mut self, token: Token, kind: TimerKind, at: Instant) {
        if let Some(d) = self.conns.get_mut(token).and_then(Conn::deadlines_mut) {
            d.set(kind, at);
            self.timers.arm(at, TimerKey::Conn(token.0, kind));
        }
    }

    /// Arms a timer on a connection that is taken out for driving.
    /// Turns a connection (keeping its token and registration) into one
    /// that writes `out`, lingers briefly for the client to read it, and
    /// goes away.
    pub fn start_reply(
        &mut self,
        token: Token,
        transport: Transport,
        out: Vec<u8>,
    ) -> Option<Conn> {
        let mut reply = Reply::new(transport, out);
        let at = self.now + reply::REPLY_LINGER;
        self.arm_taken(token, &mut reply.deadlines, TimerKind::Deadline, at);
        self.mark_dirty(token);
        Some(Conn::Reply(reply))
    }

    fn drive_reply(&mut self, token: Token, mut r: Reply) -> Option<Conn> {
        match r.drive() {
            reply::Step::Wait => Some(Conn::Reply(r)),
            reply::Step::Again => {
                self.mark_again(token);
                Some(Conn::Reply(r))
            }
            reply::Step::Done => None,
        }
    }

    pub fn arm_taken(
        &mut self,
        token: Token,
        deadlines: &mut Deadlines,
        kind: TimerKind,
        at: Instant,
    ) {
        deadlines.set(kind, at);
        self.timers.arm(at, TimerKey::Conn(token.0, kind));
    }

    /// How long the next poll may wait: not at all while work is deferred,
    /// else until the next deadline (for ever if there is none), measured
    /// from a fresh clock reading: the round's start (`self.now`) is older
    /// by the round's work, and a wait measured from it would fire every
    /// timer late by that much.
    fn poll_timeout(&self) -> Option<Duration> {
        if self.queue.has_deferred() {
            return Some(Duration::ZERO);
        }
        let now = clock();
        self.timers
            .next_deadline()
            .map(|at| at.saturating_duration_since(now))
    }

    pub fn run(&mut self) -> Result<(), Fatal> {
        let mut events = Events::with_capacity(1024);
        let mut poll_failures = 0;
        loop {
            if self.stopping && self.conns.is_empty() {
                if self.status.is_some() {
                    crate::status::on_timer(self, false);
                }
                info!("stopped");
                return Ok(());
            }
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                poll_failures += 1;
                error!("poll failed ({poll_failures} in a row): {e}");
                if poll_failures >= 10 {
                    return Err(Fatal::Poll(e));
                }
                continue;
            }
            poll_failures = 0;
            self.now = clock();
            self.queue.begin_round(&mut self.conns);
            for event in events.iter() {
                match event.token() {
                    SIGNAL_TOKEN => self.on_signals(),
                    WAKER_TOKEN => backend::on_wake(self),
                    token => {
                        if let Some(ready) = self.conns.get_mut(token).and_then(Conn::ready_mut) {
                            let closed = event.is_error()
                                || event.is_read_closed()
                                || event.is_write_closed();
                            ready.read |= event.is_readable() || closed;
                            ready.write |= event.is_writable() || closed;
                            self.mark_dirty(token);
                        }
                    }
                }
            }
            self.fire_timers();
            self.drive_dirty();
            self.sweep_timers();
        }
    }

    fn fire_timers(&mut self) {
        // Bounded: timers armed while firing are due later than now, or are
        // handled in the next wakeup.
        for _ in 0..4096 {
            let Some((at, key)) = self.timers.pop_due(self.now) else {
                return;
            };
            match key {
                TimerKey::Conn(raw, kind) => {
                    let token = Token(raw);
                    let due = self
                        .conns
                        .get_mut(token)
                        .and_then(Conn::deadlines_mut)
                        .is_some_and(|d| {
                            let matches = d.get(kind) == Some(at);
                            if matches {
                                d.clear(kind);
                            }
                            matches
                        });
                    if due {
                        self.on_conn_timer(token, kind);
                    }
                }
                TimerKey::Slot(slot) => backend::on_slot_timer(self, slot, at),
                TimerKey::AcceptResume => frontend::resume_accepting(self),
                TimerKey::StopGrace if self.stopping => self.end_grace(),
                TimerKey::StopFinal if self.stopping => {
                    for token in self.conns.tokens() {
                        self.discard(token, &relay::Why::Stopping);
                    }
                }
                TimerKey::StopGrace | TimerKey::StopFinal => {}
                TimerKey::Status => crate::status::on_timer(self, true),
            }
        }
    }

    fn on_conn_timer(&mut self, token: Token, kind: TimerKind) {
        let Some(conn) = self.conns.take(token) else {
            return;
        };
        let conn = match conn {
            Conn::Sniff(s) => public::sniff_timeout(self, token, s),
            // The linger is over: the reply had its chance.
            Conn::Reply(_) => None,
            Conn::Tunnel(t) => relay::tunnel_timer(self, token, t, kind),
            Conn::Stream(s) => relay::stream_timer(self, token, s, kind),
            other => Some(other),
        };
        self.settle(token, conn);
    }

    fn drive_dirty(&mut self) {
        // Each connection is driven once per pass; bounded work per drive,
        // and a bounded number of drives per round, keep a busy socket (or
        // two connections waking each other) from starving the rest.
        let mut budget = self.queue.queued_now() * 4 + 1024;
        while let Some(token) = self.queue.pop(&mut self.conns) {
            self.drive(token);
            budget -= 1;
            if budget == 0 {
                self.queue.defer_rest(&mut self.conns);
                break;
            }
        }
    }

    fn drive(&mut self, token: Token) {
        let Some(conn) = self.conns.take(token) else {
            return;
        };
        let conn = match conn {
            Conn::Listener(l) => frontend::drive_listener(self, token, l),
            Conn::Sniff(s) => public::drive_sniff(self, token, s),
            Conn::Reply(r) => self.drive_reply(token, r),
            Conn::Tunnel(t) => relay::drive_tunnel(self, token, t),
            Conn::Stream(s) => relay::drive_stream(self, token, s),
        };
        self.settle(token, conn);
    }

    /// Puts a driven connection back, or forgets it if it was closed.
    fn settle(&mut self, token: Token, conn: Option<Conn>) {
        match conn {
            Some(conn) => self.conns.put(token, conn),
            None => {
                self.conns.remove(token);
                self.status_changed();
            }
        }
    }

    /// Drops a connection at once (its socket closes when dropped).
    pub fn discard(&mut self, token: Token, why: &relay::Why) {
        match self.conns.remove(token) {
            Some(Conn::Tunnel(t)) => relay::tunnel_gone(self, token, t, why),
            Some(Conn::Stream(s)) => relay::stream_gone(self, token, s),
            _ => {}
        }
        self.status_changed();
    }

    fn on_signals(&mut self) {
        for signal in self.signals.drain() {
            match signal {
                libc::SIGINT | libc::SIGTERM => self.begin_shutdown(signal),
                libc::SIGUSR2 => self.log_stats(),
                libc::SIGUSR1 => backend::reconnect_now(self),
                libc::SIGHUP => crate::reload::reload(self),
                other => info!("ignoring signal {other}"),
            }
        }
    }

    /// Stops accepting and dialing, gives every stream its EOF, flushes the
    /// tunnels and exits once everything is written (or after a grace time).
    fn begin_shutdown(&mut self, signal: i32) {
        if self.stopping {
            warn!("second stop signal: exiting now");
            // Not process::exit: the loop's way out writes the final status,
            // and the pid file goes when `main` drops its guard.
            for token in self.conns.tokens() {
                self.discard(token, &relay::Why::Stopping);
            }
            return;
        }
        self.stopping = true;
        let grace = self.config.stop_grace;
        let mut streams = 0;
        for token in self.conns.tokens() {
            let Some(conn) = self.conns.take(token) else {
                continue;
            };
            // Listeners close now, so new connections are refused at once.
            let conn = match conn {
                Conn::Listener(_) | Conn::Sniff(_) | Conn::Reply(_) => None,
                Conn::Stream(s) => {
                    streams += 1;
                    Some(Conn::Stream(s))
                }
                other => Some(other),
            };
            self.settle(token, conn);
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
        self.timers.arm(self.now + grace, TimerKey::StopGrace);
        // Tunnels without streams close once their output is written.
        for token in self.conns.tokens() {
            self.mark_dirty(token);
        }
        if let Role::Backend(be) = &mut self.role {
            be.stop();
        }
    }

    /// One line of counts for operators and leak tests (SIGUSR2).
    fn log_stats(&mut self) {
        let (mut tunnels, mut streams) = (0, 0);
        for token in self.conns.tokens() {
            match self.conns.get_mut(token) {
                Some(Conn::Tunnel(_)) => tunnels += 1,
                Some(Conn::Stream(_)) => streams += 1,
                _ => {}
            }
        }
        let allocs = crate::alloc_count::allocations()
            .map(|n| format!(" allocs={n}"))
            .unwrap_or_default();
        let b = self.pool.stats();
        info!(
            "stats: conns={} tunnels={tunnels} streams={streams} timers={} buffered={} \
             pooled={} peak={} buf_allocations={} buf_reuses={} buf_frees={}{allocs}",
            self.conns.len(),
            self.timers.len(),
            b.held,
            b.pooled,
            b.peak,
            b.allocations,
            b.reuses,
            b.frees
        );
    }

    /// Drops timer entries nobody waits for once they outnumber the
    /// connections by far, so churn can't grow the heap without bound.
    fn sweep_timers(&mut self) {
        if self.timers.len() <= 4 * self.conns.len() + 64 {
            return;
        }
        let conns = &mut self.conns;
        let slots = match &self.role {
            Role::Backend(be) => be.waiting_slots(),
            Role::Frontend(_) => Vec::new(),
        };
        self.timers.retain(|at, key| match key {
            TimerKey::Conn(raw, kind) => conns
                .get_mut(Token(raw))
                .and_then(Conn::deadlines_mut)
                .is_some_and(|d| d.get(kind) == Some(at)),
            TimerKey::Slot(slot) => slots.contains(&(slot, at)),
            _ => true,
        });
    }

    /// The grace period is over: every stream still running gets its EOF,
    /// the tunnels write that out and close; a last short wait, then exit.
    fn end_grace(&mut self) {
        let mut cut = 0;
        for token in self.conns.tokens() {
            let Some(conn) = self.conns.take(token) else {
                continue;
            };
            let conn = match conn {
                Conn::Stream(s) => {
                    cut += 1;
                    relay::stream_shutdown(self, token, s)
                }
                other => Some(other),
            };
            self.settle(token, conn);
        }
        if cut > 0 {
            warn!("stop grace over: closing {cut} stream(s) still running");
        }
        for token in self.conns.tokens() {
            self.mark_dirty(token);
        }
        self.timers.arm(self.now + FINAL_FLUSH, TimerKey::StopFinal);
    }
}

/// The only place that reads the clock.
#[allow(clippy::disallowed_methods)]
fn clock() -> Instant {
    Instant::now()
}

/// Wall-clock seconds since 1970, for what leaves the process (session
/// ids, challenge times, the status file); 0 if the clock is before 1970.
pub fn unix_now() -> u64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs(),
        Err(e) => {
            error!("system clock is before 1970: {e}");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Parsed};

    /// A frontend engine on any free loopback port.
    fn engine() -> Engine {
        engine_with("--buffers=131072")
    }

    /// [`engine`] with one more option.
    fn engine_with(option: &str) -> Engine {
        let args = ["--isfrontend", "--host=127.0.0.1", "--ports=0", option].map(String::from);
        match config::parse(&args) {
            Ok(Parsed::Run(c)) => Engine::new(*c).expect("an engine"),
            _ => panic!("a frontend configuration"),
        }
    }

    #[test]
    fn each_engine_limits_its_own_buffers() {
        let a = engine_with("--buffers=64");
        let b = engine_with("--buffers=64");
        assert_eq!(a.pool.budget(), 64 * 1024);
        assert!(a.limit_reached(0).is_none());
        let held = a.pool.buf(48 * 1024);
        assert!(a.limit_reached(0).is_none(), "under the budget");
        let more = a.pool.take(20 * 1024);
        let Some(Limit::Buffers {
            budget,
            held: total,
        }) = a.limit_reached(0)
        else {
            panic!("over the budget: refused");
        };
        assert_eq!((budget, total), (64 * 1024, 68 * 1024));
        assert!(
            b.limit_reached(0).is_none(),
            "the other engine holds nothing"
        );
        assert_eq!(b.pool.stats().allocations, 0);
        more.recycle();
        assert!(a.limit_reached(0).is_none(), "released");
        drop(held);
        drop((a, b));
        // Engine::new took over the stop signals for this test process.
        crate::signals::restore_defaults();
    }

    #[test]
    fn sighup_gives_the_pool_its_new_budget() {
        let dir = std::env::temp_dir().join(format!("rkite-pool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let rc = dir.join("rc");
        std::fs::write(&rc, "buffers = 64\n").expect("an option file");
        let mut eng = engine_with(&format!("--optfile={}", rc.display()));
        assert_eq!(eng.pool.budget(), 64 * 1024);
        std::fs::write(&rc, "buffers = 256\n").expect("the option file again");
        crate::reload::reload(&mut eng);
        assert_eq!(eng.pool.budget(), 256 * 1024);
        let _ = std::fs::remove_dir_all(&dir);
        drop(eng);
        crate::signals::restore_defaults();
    }

    #[test]
    fn the_poll_wait_is_measured_after_the_rounds_work() {
        let mut eng = engine();
        // The round began a second ago (its work took that long): a timer
        // due half a second after its start is overdue, not 500 ms away.
        let Some(round_start) = clock().checked_sub(Duration::from_secs(1)) else {
            return; // a clock that started less than a second ago
        };
        eng.now = round_start;
        eng.timers
            .arm(round_start + Duration::from_millis(500), TimerKey::Status);
        assert_eq!(eng.poll_timeout(), Some(Duration::ZERO));

        // A later deadline is that much nearer than it was at the start.
        let mut eng = engine();
        eng.now = round_start;
        eng.timers
            .arm(round_start + Duration::from_secs(3600), TimerKey::Status);
        let wait = eng.poll_timeout().expect("a deadline");
        assert!(wait <= Duration::from_secs(3599), "{wait:?}");

        eng.timers = TimerQueue::default();
        assert_eq!(eng.poll_timeout(), None, "no deadline: wait for events");
        drop(eng);
        // Engine::new took over the stop signals for this test process.
        crate::signals::restore_defaults();
    }
}
