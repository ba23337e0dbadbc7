//! The reactor: one mio `Poll`, one slab of connections with generation-checked
//! tokens, a deadline queue, and the loop that turns readiness events, timer
//! expiries and signals into calls on an [`App`]. It owns the rules every
//! connection lives by: sockets are registered once for read and write
//! (edge-triggered) and their readiness is remembered until an operation says
//! WouldBlock; work is bounded per wakeup so one busy socket can't starve the
//! others; the clock is read once per wakeup, and once more to measure the
//! wait until the next deadline. It knows nothing of PageKite or of the
//! roles: what a connection is, and what driving one means, is the app's
//! (`app.rs` dispatches to the roles and the relay).

use std::io;
use std::time::{Duration, Instant};

use log::{Level, error, info};
use mio::{Events, Interest, Poll, Registry, Token};

use crate::buf::Pool;
use crate::config::Common;
pub use crate::conns::Conns;
use crate::conns::RunQueue;
use crate::logging::Noise;
use crate::signals::Signals;
use crate::status::{Counters, Status};
use crate::timer::TimerQueue;
pub use crate::why::Limit;

pub use crate::conns::{SIGNAL_TOKEN, WAKER_TOKEN};

pub use crate::net::Ready;

pub use crate::timer::{Deadlines, TimerKind};

/// What the reactor needs of a connection: its remembered readiness, and
/// its deadlines (for telling a live timer from a stale one).
pub trait Pollable {
    fn ready_mut(&mut self) -> Option<&mut Ready>;
    fn deadlines_mut(&mut self) -> Option<&mut Deadlines>;
}

/// A deadline in the reactor's queue: a connection's, the status file's, or
/// one the app defines (`K`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKey<K> {
    Conn(usize, TimerKind),
    /// Time to write the `--status_file`.
    Status,
    App(K),
}

/// The program the reactor runs: it is handed each connection to drive
/// (taken out of the table, put back if returned), each timer, signal and
/// waker event. `Ctx<A>` is what it may use meanwhile.
pub trait App: Sized {
    type Conn: Pollable;
    type Timer: Copy + Ord + std::fmt::Debug;

    fn drive(&mut self, cx: &mut Ctx<Self>, token: Token, conn: Self::Conn) -> Option<Self::Conn>;
    /// A connection's deadline of `kind` is due.
    fn conn_timer(
        &mut self,
        cx: &mut Ctx<Self>,
        token: Token,
        conn: Self::Conn,
        kind: TimerKind,
    ) -> Option<Self::Conn>;
    fn timer(&mut self, cx: &mut Ctx<Self>, key: Self::Timer, at: Instant);
    fn signal(&mut self, cx: &mut Ctx<Self>, signal: i32);
    /// The waker registered under [`WAKER_TOKEN`] fired.
    fn wake(&mut self, cx: &mut Ctx<Self>);
    /// Whether an app timer is still waited for (stale ones are swept).
    fn timer_wanted(&self, key: Self::Timer, at: Instant) -> bool;
    /// Writes the `--status_file` (`running`: the process goes on).
    fn write_status(&mut self, cx: &mut Ctx<Self>, running: bool);
}

/// The reactor's state as the app sees it.
pub type Ctx<A> = Engine<<A as App>::Conn, <A as App>::Timer>;

pub use crate::why::Fatal;

pub struct Engine<C, K: Copy + Ord> {
    poll: Poll,
    pub conns: Conns<C>,
    pub timers: TimerQueue<TimerKey<K>>,
    pub now: Instant,
    /// The settings every role reads; each role keeps its own.
    pub config: Common,
    queue: RunQueue,
    signals: Signals,
    /// A graceful stop is under way: no new work.
    pub stopping: bool,
    /// `--status_file`.
    pub status: Option<Status>,
    /// Every counted buffer's pool, and the `--buffers` budget.
    pub pool: Pool,
    /// What has happened so far, for the status file and `--metrics`.
    pub counters: Counters,
    /// Pipes for kernel splicing (`--max_pipes`).
    pub pipes: crate::splice::Pipes,
}

impl<C: Pollable, K: Copy + Ord + std::fmt::Debug> Engine<C, K> {
    pub fn new(config: Common) -> Result<Engine<C, K>, Box<Fatal>> {
        let poll = Poll::new().map_err(|error| Fatal::System {
            what: "create the event loop",
            error,
        })?;
        let signals =
            Signals::install(poll.registry(), SIGNAL_TOKEN).map_err(|error| Fatal::System {
                what: "install signal handlers",
                error,
            })?;
        let now = clock();
        let pool = Pool::new(config.buffer_budget);
        Ok(Engine {
            poll,
            conns: Conns::default(),
            timers: TimerQueue::default(),
            now,
            queue: RunQueue::default(),
            signals,
            stopping: false,
            status: config.process.status_file.as_deref().map(Status::new),
            pipes: crate::splice::Pipes::new(config.max_pipes, &pool),
            pool,
            counters: Counters::new(now, unix_now()),
            config,
        })
    }

    /// The limit new work would exceed, if any; `extra` is state held
    /// outside the buffers that counts against their budget (a frontend's
    /// session ids).
    pub fn limit_reached(&self, connections: usize, extra: usize) -> Option<Limit> {
        if connections >= self.config.max_conns {
            return Some(Limit::Conns(self.config.max_conns));
        }
        if let Some(held) = self.pool.over_budget(extra) {
            return Some(Limit::Buffers {
                budget: self.pool.budget(),
                held,
            });
        }
        None
    }

    /// Logs a refusal, throttled per kind.
    pub fn refuse(&mut self, limit: &Limit, what: &str) {
        self.counters.refused(limit);
        let kind = match limit {
            Limit::Conns(_) => Noise::ConnLimit,
            Limit::Buffers { .. } => Noise::BufferBudget,
            Limit::PerIp(_) => Noise::PerIpLimit,
            Limit::Acl(_) => Noise::AccessList,
            Limit::Stopping => Noise::Stopping,
        };
        self.noisy(kind, Level::Warn, format_args!("{limit}: refusing {what}"));
    }

    /// Logs a line a peer could repeat at will, rate-limited per kind.
    pub fn noisy(&mut self, kind: Noise, level: Level, line: std::fmt::Arguments<'_>) {
        crate::logging::noisy(self.now, kind, level, line);
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
        make: impl FnOnce(S, Token) -> C,
    ) -> io::Result<Token> {
        self.add_for(sock, None, make)
    }

    /// [`Engine::add`] for a public client's connection, counted per address.
    pub fn add_for<S: mio::event::Source>(
        &mut self,
        mut sock: S,
        ip: Option<std::net::IpAddr>,
        make: impl FnOnce(S, Token) -> C,
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

    /// Something the `--status_file` shows changed: write it soon.
    pub fn status_changed(&mut self) {
        let now = self.now;
        if let Some(at) = self.status.as_mut().and_then(|s| s.due(now)) {
            self.timers.arm(at, TimerKey::Status);
        }
    }

    /// Remembers an error for the `--status_file`.
    pub fn note_error(&mut self, text: &str) {
        self.counters.errors += 1;
        if let Some(status) = &mut self.status {
            status.error(unix_now(), text);
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
        if let Some(d) = self.conns.get_mut(token).and_then(C::deadlines_mut) {
            d.set(kind, at);
            self.timers.arm(at, TimerKey::Conn(token.0, kind));
        }
    }

    /// Arms a timer on a connection that is taken out for driving.
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

    /// Arms one of the app's own timers.
    pub fn arm_app(&mut self, at: Instant, key: K) {
        self.timers.arm(at, TimerKey::App(key));
    }

    /// Puts a driven connection back, or forgets it if it was closed.
    pub fn settle(&mut self, token: Token, conn: Option<C>) {
        match conn {
            Some(conn) => self.conns.put(token, conn),
            None => {
                self.conns.remove(token);
                self.status_changed();
            }
        }
    }

    /// The poll's descriptor, for tests that make registering fail.
    #[cfg(test)]
    pub(crate) fn poll_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.poll.as_raw_fd()
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
        // Spare pipes are closed once unused for a while (`splice.rs`).
        let spare = self.pipes.sweep(now);
        let next = match (self.timers.next_deadline(), spare) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(|at| at.saturating_duration_since(now))
    }
}

/// Runs `app` until it stops (a graceful stop that emptied the table).
pub fn run<A: App>(cx: &mut Ctx<A>, app: &mut A) -> Result<(), Box<Fatal>> {
    let mut events = Events::with_capacity(1024);
    let mut poll_failures = 0;
    loop {
        if cx.stopping && cx.conns.is_empty() {
            if cx.status.is_some() {
                app.write_status(cx, false);
            }
            info!("stopped");
            return Ok(());
        }
        let timeout = cx.poll_timeout();
        if let Err(e) = cx.poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            poll_failures += 1;
            error!("poll failed ({poll_failures} in a row): {e}");
            if poll_failures >= 10 {
                return Err(Box::new(Fatal::Poll(e)));
            }
            continue;
        }
        poll_failures = 0;
        cx.now = clock();
        cx.queue.begin_round(&mut cx.conns);
        for event in events.iter() {
            match event.token() {
                SIGNAL_TOKEN => {
                    for signal in cx.signals.drain() {
                        app.signal(cx, signal);
                    }
                }
                WAKER_TOKEN => app.wake(cx),
                token => {
                    if let Some(ready) = cx.conns.get_mut(token).and_then(A::Conn::ready_mut) {
                        let closed =
                            event.is_error() || event.is_read_closed() || event.is_write_closed();
                        ready.read |= event.is_readable() || closed;
                        ready.write |= event.is_writable() || closed;
                        cx.mark_dirty(token);
                    }
                }
            }
        }
        fire_timers(cx, app);
        drive_dirty(cx, app);
        sweep_timers(cx, app);
    }
}

fn fire_timers<A: App>(cx: &mut Ctx<A>, app: &mut A) {
    // Bounded: timers armed while firing are due later than now, or are
    // handled in the next wakeup.
    for _ in 0..4096 {
        let Some((at, key)) = cx.timers.pop_due(cx.now) else {
            return;
        };
        match key {
            TimerKey::Conn(raw, kind) => {
                let token = Token(raw);
                let due = cx
                    .conns
                    .get_mut(token)
                    .and_then(A::Conn::deadlines_mut)
                    .is_some_and(|d| {
                        let matches = d.get(kind) == Some(at);
                        if matches {
                            d.clear(kind);
                        }
                        matches
                    });
                if due {
                    if let Some(conn) = cx.conns.take(token) {
                        let conn = app.conn_timer(cx, token, conn, kind);
                        cx.settle(token, conn);
                    }
                }
            }
            TimerKey::Status => app.write_status(cx, true),
            TimerKey::App(key) => app.timer(cx, key, at),
        }
    }
}

fn drive_dirty<A: App>(cx: &mut Ctx<A>, app: &mut A) {
    // Each connection is driven once per pass; bounded work per drive,
    // and a bounded number of drives per round, keep a busy socket (or
    // two connections waking each other) from starving the rest.
    let mut budget = cx.queue.queued_now() * 4 + 1024;
    while let Some(token) = cx.queue.pop(&mut cx.conns) {
        if let Some(conn) = cx.conns.take(token) {
            let conn = app.drive(cx, token, conn);
            cx.settle(token, conn);
        }
        budget -= 1;
        if budget == 0 {
            cx.queue.defer_rest(&mut cx.conns);
            break;
        }
    }
}

/// Drops timer entries nobody waits for once they outnumber the
/// connections by far, so churn can't grow the heap without bound.
fn sweep_timers<A: App>(cx: &mut Ctx<A>, app: &A) {
    if cx.timers.len() <= 4 * cx.conns.len() + 64 {
        return;
    }
    let conns = &mut cx.conns;
    cx.timers.retain(|at, key| match key {
        TimerKey::Conn(raw, kind) => conns
            .get_mut(Token(raw))
            .and_then(A::Conn::deadlines_mut)
            .is_some_and(|d| d.get(kind) == Some(at)),
        TimerKey::Status => true,
        TimerKey::App(key) => app.timer_wanted(key, at),
    });
}

/// The only place that reads the clock.
#[allow(clippy::disallowed_methods)]
pub(crate) fn clock() -> Instant {
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

    /// A connection type for reactors that hold none.
    struct NoConn;

    impl Pollable for NoConn {
        fn ready_mut(&mut self) -> Option<&mut Ready> {
            None
        }
        fn deadlines_mut(&mut self) -> Option<&mut Deadlines> {
            None
        }
    }

    type Bare = Engine<NoConn, u8>;

    /// A reactor with a frontend's common settings.
    fn engine() -> Bare {
        engine_with("--buffers=131072")
    }

    /// [`engine`] with one more option.
    fn engine_with(option: &str) -> Bare {
        let args = ["--isfrontend", "--host=127.0.0.1", "--ports=0", option].map(String::from);
        match config::parse(&args) {
            Ok(Parsed::Run(c)) => Bare::new(c.common).expect("an engine"),
            _ => panic!("a frontend configuration"),
        }
    }

    #[test]
    fn each_engine_limits_its_own_buffers() {
        let a = engine_with("--buffers=64");
        let b = engine_with("--buffers=64");
        assert_eq!(a.pool.budget(), 64 * 1024);
        assert!(a.limit_reached(0, 0).is_none());
        let held = a.pool.buf(48 * 1024);
        assert!(a.limit_reached(0, 0).is_none(), "under the budget");
        let more = a.pool.take(20 * 1024);
        let Some(Limit::Buffers {
            budget,
            held: total,
        }) = a.limit_reached(0, 0)
        else {
            panic!("over the budget: refused");
        };
        assert_eq!((budget, total), (64 * 1024, 68 * 1024));
        assert!(
            b.limit_reached(0, 0).is_none(),
            "the other engine holds nothing"
        );
        assert_eq!(b.pool.stats().allocations, 0);
        more.recycle();
        assert!(a.limit_reached(0, 0).is_none(), "released");
        drop(held);
        drop((a, b));
        // Engine::new took over the stop signals for this test process.
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
