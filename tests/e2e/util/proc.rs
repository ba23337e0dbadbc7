//! `Proc`: a spawned child process whose stdout and stderr are captured line by line into
//! one shared log, with bounded waits on that log (`wait_for`), signals, and cleanup on
//! Drop (SIGTERM, 2 s grace, SIGKILL, reap; the log is printed if the test is panicking).

use super::POLL;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How long `Proc`'s Drop waits after SIGTERM before it sends SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// When a failing test dumps a log, at most this many lines from its start and end.
const DUMP_HEAD: usize = 100;
const DUMP_TAIL: usize = 600;

struct LogState {
    lines: Vec<String>,
    /// Number of output pipes (stdout, stderr) whose reader has not yet seen EOF.
    open_pipes: usize,
}

struct Log {
    state: Mutex<LogState>,
    cv: Condvar,
}

impl Log {
    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A reader thread cannot panic while holding the lock, but be lenient anyway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A spawned child process whose stdout and stderr lines are collected, in arrival order,
/// into one shared log. Dropping it sends SIGTERM, waits up to 2 s, then SIGKILLs and
/// reaps; if the test is panicking, the log is printed to stderr under a header naming
/// the process.
pub struct Proc {
    name: String,
    pid: u32,
    child: Mutex<Child>,
    status: Mutex<Option<ExitStatus>>,
    log: Arc<Log>,
    /// How many lines a panic message already showed (so Drop does not print them twice).
    shown: Mutex<Option<usize>>,
}

impl Proc {
    /// Spawns `cmd` (stdin from /dev/null, stdout and stderr captured). `name` labels the
    /// process in panic messages and log dumps.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("failed to spawn {name} ({cmd:?}): {e}"));
        let log = Arc::new(Log {
            state: Mutex::new(LogState {
                lines: Vec::new(),
                open_pipes: 2,
            }),
            cv: Condvar::new(),
        });
        let stdout = child.stdout.take().expect("child stdout is piped");
        let stderr = child.stderr.take().expect("child stderr is piped");
        spawn_reader(format!("{name}-stdout"), stdout, log.clone());
        spawn_reader(format!("{name}-stderr"), stderr, log.clone());
        Proc {
            name: name.to_string(),
            pid: child.id(),
            child: Mutex::new(child),
            status: Mutex::new(None),
            log,
            shown: Mutex::new(None),
        }
    }

    /// Spawns `program args...` with extra environment variables.
    pub fn start<S: AsRef<OsStr>>(
        name: &str,
        program: S,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Proc {
        let mut cmd = Command::new(program);
        cmd.args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Proc::spawn(name, cmd)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// All lines captured so far (stdout and stderr interleaved in arrival order).
    pub fn lines(&self) -> Vec<String> {
        self.log.lock().lines.clone()
    }

    /// True if some captured line contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.log.lock().lines.iter().any(|l| l.contains(needle))
    }

    /// How many captured lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .lines
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Returns the first captured line containing `needle`, waiting up to `timeout` for it.
    /// Panics, with the whole captured log, on timeout or if the process exits first.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_count(needle, 1, timeout)
            .into_iter()
            .next()
            .expect("wait_for_count returns n lines")
    }

    /// Waits until at least `n` captured lines contain `needle`; returns the first `n`.
    /// Panics, with the whole captured log, on timeout or if the process exits first.
    pub fn wait_for_count(&self, needle: &str, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        // Once the process has exited, allow a short grace for its last lines to arrive.
        let mut exited: Option<(ExitStatus, Instant)> = None;
        let mut st = self.log.lock();
        loop {
            let found: Vec<String> = st
                .lines
                .iter()
                .filter(|l| l.contains(needle))
                .take(n)
                .cloned()
                .collect();
            if found.len() >= n {
                return found;
            }
            let now = Instant::now();
            if let Some((status, at)) = exited {
                if st.open_pipes == 0 || now >= at + Duration::from_millis(500) {
                    let why = format!(
                        "exited ({status}) before {n} line(s) containing {needle:?} appeared (saw {})",
                        found.len()
                    );
                    drop(st);
                    self.fail(&why);
                }
            } else if now >= deadline {
                let why = format!(
                    "timed out after {timeout:?} waiting for {n} line(s) containing {needle:?} (saw {})",
                    found.len()
                );
                drop(st);
                self.fail(&why);
            } else if let Some(status) = self.exit_status() {
                exited = Some((status, now));
            }
            let slice = deadline
                .saturating_duration_since(now)
                .min(Duration::from_millis(50))
                .max(Duration::from_millis(1));
            st = self
                .log
                .cv
                .wait_timeout(st, slice)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Panics with `why` and the captured log.
    fn fail(&self, why: &str) -> ! {
        let (dump, n) = self.dump(0);
        *self.shown.lock().unwrap_or_else(|p| p.into_inner()) = Some(n);
        panic!("[{} pid {}] {why}\n{dump}", self.name, self.pid);
    }

    /// The captured log from line `from` on, framed by header and footer lines (long logs
    /// are shortened in the middle), and the total number of lines captured.
    fn dump(&self, from: usize) -> (String, usize) {
        let all = self.lines();
        let lines = &all[from.min(all.len())..];
        let mut out = format!(
            "----- captured output of {} (pid {}), {} line(s) -----\n",
            self.name,
            self.pid,
            lines.len()
        );
        if lines.len() > DUMP_HEAD + DUMP_TAIL {
            for l in &lines[..DUMP_HEAD] {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str(&format!(
                "... {} line(s) omitted ...\n",
                lines.len() - DUMP_HEAD - DUMP_TAIL
            ));
            for l in &lines[lines.len() - DUMP_TAIL..] {
                out.push_str(l);
                out.push('\n');
            }
        } else {
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
        }
        out.push_str(&format!("----- end of output of {} -----", self.name));
        (out, all.len())
    }

    /// The exit status if the process has exited (reaping it), without blocking.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if status.is_none() {
            let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
            match child.try_wait() {
                Ok(s) => *status = s,
                Err(e) => panic!("try_wait on {} failed: {e}", self.name),
            }
        }
        *status
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`) to the process. Panics if it has already exited.
    pub fn signal(&self, sig: libc::c_int) {
        if let Some(s) = self.exit_status() {
            panic!(
                "cannot send signal {sig} to {}: it already exited ({s})\n{}",
                self.name,
                self.dump(0).0
            );
        }
        self.raw_signal(sig);
    }

    /// kill(2) without checks; the caller knows the pid has not been reaped yet, so it
    /// cannot have been reused.
    fn raw_signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid).expect("pid fits in pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// SIGKILLs the process (if still running) and reaps it.
    pub fn kill(&self) -> ExitStatus {
        if self.exit_status().is_none() {
            self.raw_signal(libc::SIGKILL);
        }
        self.wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{} did not die within 10 s of SIGKILL", self.name))
    }

    /// Waits up to `timeout` for the process to exit; returns its status, or None if it is
    /// still running. Once it has exited, the captured log is complete (both pipes have
    /// reached EOF, unless a grandchild still holds them open).
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exit_status() {
                self.wait_pipes_closed(Duration::from_secs(5));
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL);
        }
    }

    /// Waits (bounded) until both output pipes have reached EOF, so that the log is complete.
    fn wait_pipes_closed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut st = self.log.lock();
        while st.open_pipes > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            st = self
                .log
                .cv
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exit_status().is_none() {
            self.raw_signal(libc::SIGTERM);
            if self.wait_exit(TERM_GRACE).is_none() {
                self.raw_signal(libc::SIGKILL);
                if self.wait_exit(Duration::from_secs(10)).is_none() {
                    eprintln!("WARNING: {} (pid {}) survived SIGKILL", self.name, self.pid);
                }
            }
        }
        if thread::panicking() {
            self.wait_pipes_closed(Duration::from_millis(500));
            let status = self
                .exit_status()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "still running".to_string());
            let shown = *self.shown.lock().unwrap_or_else(|p| p.into_inner());
            match shown {
                Some(n) => eprintln!(
                    "\n{} [{status}]: its first {n} line(s) are in the panic message; the rest:\n{}",
                    self.name,
                    self.dump(n).0
                ),
                None => eprintln!("\n{} [{status}]\n{}", self.name, self.dump(0).0),
            }
        }
    }
}

/// Copies lines from `pipe` into `log` until EOF, on a named background thread.
fn spawn_reader<R: Read + Send + 'static>(name: String, pipe: R, log: Arc<Log>) {
    thread::Builder::new()
        .name(name)
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        while matches!(buf.last(), Some(b'\n' | b'\r')) {
                            buf.pop();
                        }
                        let line = String::from_utf8_lossy(&buf).into_owned();
                        log.lock().lines.push(line);
                        log.cv.notify_all();
                    }
                }
            }
            log.lock().open_pipes -= 1;
            log.cv.notify_all();
        })
        .expect("spawn log reader thread");
}
