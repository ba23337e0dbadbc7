//! Kernel splicing for plain TCP hops (issue 15): the engine's bounded pool
//! of pipes (`--max_pipes`), a pipe lent out of it, and every pipe and
//! `splice(2)` syscall the relay makes (socket → pipe, pipe → socket, and
//! the `MSG_PEEK` that reads a chunk header without consuming past it).
//! Bytes spliced never enter user space. It knows nothing of PageKite: which
//! bytes may be spliced, and where to, is `relay_splice`'s. A pipe goes back
//! to the pool as soon as it is empty, so idle streams hold none; the pool
//! keeps a few for reuse and closes the rest.
//!
//! `RKITE_SPLICE` (environment) is the switch the tests use: `off` never
//! splices, `refuse` behaves as a kernel that rejects splice from the first
//! call, `refuse-after=N` from the call after the Nth (mid-transfer, with
//! bytes in pipes); the relay must fall back to copying without losing a
//! byte. Anything else, or unset, splices where it can. The first time the kernel refuses (EINVAL,
//! ENOSYS, EPERM from a seccomp filter...) splicing switches itself off for
//! the rest of the process, with one log line.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::buf::Pool;
use crate::net::{Failure, Io};

/// What a pipe is asked to hold: a stream's whole starting window, so a
/// receiver whose visitor reads slowly still keeps its bytes in the pipe
/// rather than copying them. Its pages are only taken while it holds
/// bytes. (The kernel caps it at `/proc/sys/fs/pipe-max-size`, 1 MiB by
/// default; a smaller pipe only means more copying.)
pub const PIPE_SIZE: usize = 1024 * 1024;
/// A [`PipeUse::Chunks`] pipe: the largest chunk another rkite takes
/// (`frame::MAX_PAYLOAD`), rounded up to whole pages.
pub const CHUNKS_PIPE_SIZE: usize = 1024 * 1024;
/// What a pipe is for, which sets its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipeUse {
    /// One chunk's body on its way into a tunnel: the kernel's default
    /// pipe, 16 slots. Each slot holds one page fragment of what was read,
    /// so a body taken through it has at most 16 fragments and, with its
    /// head's, still fits one packet (`net.core.max_skb_frags`, 17). A body
    /// taken through a larger pipe can need 18 or more, and every chunk
    /// then leaves as two packets, the second a few hundred bytes long.
    Chunk,
    /// One chunk's body on its way into a tunnel whose peer takes chunks
    /// of several segments (another rkite): [`CHUNKS_PIPE_SIZE`], 256 slots,
    /// sixteen loopback segments' worth, each with its 16 fragments.
    Chunks,
    /// A stream's queue of received bodies: [`PIPE_SIZE`].
    Queue,
}

/// Empty pipes kept open for reuse; beyond this they are closed.
const KEEP_FREE: usize = 8;
/// A spare pipe unused this long is closed: a quiet relay holds none.
const SPARE_IDLE: Duration = Duration::from_secs(1);

/// Whether this process splices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    On,
    /// `--max_pipes=0` or `RKITE_SPLICE=off`.
    Off,
    /// The kernel refused (or `RKITE_SPLICE=refuse` pretends it did on the
    /// first try): copying from now on.
    Refused,
}

/// One pipe: the bytes in it are counted here, since the kernel only says
/// how full it is by refusing more.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes in the pipe.
    pub held: usize,
    /// What it holds at most (as the kernel set it).
    pub capacity: usize,
    /// What it was opened for.
    pub usage: PipeUse,
}

/// What the pool has done, for the status file and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipeStats {
    /// Pipes open now (lent and free).
    pub open: usize,
    /// Pipes lent to streams and tunnels now.
    pub lent: usize,
    /// The most ever lent at once.
    pub peak: usize,
    /// Times a stream wanted a pipe and the pool was at `--max_pipes`.
    pub exhausted: u64,
    /// Bytes moved by splice (into pipes).
    pub spliced: u64,
}

struct Inner {
    /// Bytes in lent pipes count in the `--buffers` budget like any
    /// buffer's: a stalled visitor's bytes are held either way.
    budget: Pool,
    mode: Mode,
    /// `RKITE_SPLICE=refuse` / `refuse-after=N`: the splice calls left
    /// before one "fails" with EINVAL.
    pretend_refusal: Option<u64>,
    max: usize,
    /// Empty pipes for reuse (oldest first), with when a sweep first saw
    /// each unused.
    free: Vec<(Pipe, Option<Instant>)>,
    stats: PipeStats,
}

/// The engine's pipe pool; clones share it (a lent pipe goes home by
/// itself when dropped).
#[derive(Clone)]
pub struct Pipes(Rc<RefCell<Inner>>);

impl Pipes {
    /// A pool of at most `max` pipes, switched by `RKITE_SPLICE`, whose
    /// bytes count in `budget`.
    pub fn new(max: usize, budget: &Pool) -> Pipes {
        let switch = std::env::var("RKITE_SPLICE").unwrap_or_default();
        let mode = if max == 0 || switch == "off" {
            Mode::Off
        } else {
            Mode::On
        };
        Pipes(Rc::new(RefCell::new(Inner {
            budget: budget.clone(),
            mode,
            pretend_refusal: match switch.strip_prefix("refuse-after=") {
                Some(n) => n.parse().ok(),
                None => (switch == "refuse").then_some(0),
            },
            max,
            free: Vec::new(),
            stats: PipeStats::default(),
        })))
    }

    pub fn mode(&self) -> Mode {
        self.0.borrow().mode
    }

    pub fn enabled(&self) -> bool {
        self.mode() == Mode::On
    }

    /// A SIGHUP's new `--max_pipes` (lent pipes stay lent).
    pub fn set_max(&self, max: usize) {
        let mut inner = self.0.borrow_mut();
        inner.max = max;
        if max == 0 && inner.mode == Mode::On {
            inner.mode = Mode::Off;
        } else if max > 0 && inner.mode == Mode::Off {
            inner.mode = Mode::On;
        }
    }

    pub fn stats(&self) -> PipeStats {
        let inner = self.0.borrow();
        let mut stats = inner.stats;
        stats.open = stats.lent + inner.free.len();
        stats
    }

    /// An empty pipe, or `None` (splicing off, the pool at its limit, or no
    /// descriptor to be had): the caller copies instead.
    pub fn take(&self, usage: PipeUse, now: Instant) -> Option<Lent> {
        self.lend(usage, Some(now), 0)
    }

    /// Another pipe for a stream that holds one already: lent only while a
    /// quarter of `--max_pipes` stays free for streams that hold none. No
    /// log line when none is had (the stream copies, as always).
    pub fn take_more(&self, usage: PipeUse) -> Option<Lent> {
        let reserve = self.0.borrow().max.div_ceil(4);
        self.lend(usage, None, reserve)
    }

    fn lend(&self, usage: PipeUse, now: Option<Instant>, reserve: usize) -> Option<Lent> {
        let mut inner = self.0.borrow_mut();
        if inner.mode != Mode::On || (reserve > 0 && inner.stats.lent + reserve >= inner.max) {
            return None;
        }
        let spare = inner.free.iter().rposition(|(p, _)| p.usage == usage);
        let pipe = match spare.map(|i| inner.free.remove(i)) {
            Some((pipe, _)) => pipe,
            None if inner.stats.lent >= inner.max => {
                inner.stats.exhausted += 1;
                return None;
            }
            None => match open_pipe(usage) {
                Ok(pipe) => pipe,
                Err(e) => {
                    // EMFILE/ENFILE and friends: copying works without one.
                    drop(inner);
                    let now = now?;
                    crate::logging::noisy(
                        now,
                        crate::logging::Noise::Pipes,
                        log::Level::Warn,
                        format_args!("splice: no pipe ({e}); copying instead"),
                    );
                    return None;
                }
            },
        };
        inner.stats.lent += 1;
        inner.stats.peak = inner.stats.peak.max(inner.stats.lent);
        Some(Lent {
            pipe: Some(pipe),
            home: self.clone(),
        })
    }

    /// The kernel refused a splice: copy from now on.
    fn refused(&self, errno: i32) {
        let mut inner = self.0.borrow_mut();
        if inner.mode == Mode::On {
            inner.mode = Mode::Refused;
            inner.free.clear();
            warn!(
                "splice: the kernel refused it ({}); relaying by copying from now on",
                io::Error::from_raw_os_error(errno)
            );
        }
    }

    fn give_back(&self, pipe: Pipe) {
        let mut inner = self.0.borrow_mut();
        inner.stats.lent = inner.stats.lent.saturating_sub(1);
        // A pipe with bytes in it (its stream went) is closed with them.
        if pipe.held == 0 && inner.mode == Mode::On && inner.free.len() < KEEP_FREE {
            inner.free.push((pipe, None));
        }
    }

    /// Closes spare pipes unused for [`SPARE_IDLE`] (counted from the
    /// first sweep that saw them spare); when to look again.
    pub fn sweep(&self, now: Instant) -> Option<Instant> {
        let mut inner = self.0.borrow_mut();
        inner.free.retain_mut(|(_, seen)| {
            let since = *seen.get_or_insert(now);
            now.saturating_duration_since(since) < SPARE_IDLE
        });
        inner
            .free
            .iter()
            .filter_map(|(_, seen)| *seen)
            .min()
            .map(|since| since + SPARE_IDLE)
    }

    /// Counts `n` bytes spliced; `RKITE_SPLICE=refuse` refuses the first.
    fn spliced(&self, n: usize) {
        self.0.borrow_mut().stats.spliced += n as u64;
    }

    /// A lent pipe went from holding `old` bytes to `new`.
    fn count(&self, old: usize, new: usize) {
        if old != new {
            self.0.borrow().budget.count_held(old, new);
        }
    }

    /// Whether this splice call is the one to pretend the kernel refuses.
    fn pretending(&self) -> bool {
        let mut inner = self.0.borrow_mut();
        match inner.pretend_refusal {
            Some(0) => {
                inner.pretend_refusal = None;
                true
            }
            Some(n) => {
                inner.pretend_refusal = Some(n - 1);
                false
            }
            None => false,
        }
    }
}

/// A pipe lent out of the pool; dropping it gives it back.
pub struct Lent {
    pipe: Option<Pipe>,
    home: Pipes,
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            self.home.count(pipe.held, 0);
            self.home.give_back(pipe);
        }
    }
}

impl Lent {
    pub fn held(&self) -> usize {
        self.pipe.as_ref().map_or(0, |p| p.held)
    }

    pub fn capacity(&self) -> usize {
        self.pipe.as_ref().map_or(0, |p| p.capacity)
    }

    /// Bytes that fit behind what the pipe holds (by its count of bytes;
    /// the kernel counts pages and may refuse sooner).
    pub fn room(&self) -> usize {
        self.capacity().saturating_sub(self.held())
    }

    /// The pool this pipe came from (and goes back to).
    pub fn pool(&self) -> Pipes {
        self.home.clone()
    }

    /// Moves up to `max` bytes from socket `fd` into the pipe.
    pub fn fill_from(&mut self, fd: RawFd, max: usize) -> Io {
        let Some(pipe) = self.pipe.as_mut() else {
            return Io::WouldBlock;
        };
        let outcome = splice(&self.home, fd, pipe.write.as_raw_fd(), max);
        if let Io::Done(n) = outcome {
            self.home.count(pipe.held, pipe.held + n);
            pipe.held += n;
            self.home.spliced(n);
        }
        outcome
    }

    /// Copies as much of `bytes` into the pipe as it takes now (behind
    /// what it holds): a stream that splices keeps one queue, in order.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let Some(pipe) = self.pipe.as_mut() else {
            return 0;
        };
        let room = pipe.capacity.saturating_sub(pipe.held).min(bytes.len());
        if room == 0 {
            return 0;
        }
        loop {
            // SAFETY: `bytes` is valid for reads of `room` bytes.
            let n = unsafe { libc::write(pipe.write.as_raw_fd(), bytes.as_ptr().cast(), room) };
            if n > 0 {
                self.home.count(pipe.held, pipe.held + n as usize);
                pipe.held += n as usize;
                return n as usize;
            }
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return 0;
        }
    }

    /// Moves up to `max` of the pipe's bytes to socket `fd`.
    pub fn drain_to(&mut self, fd: RawFd, max: usize) -> Io {
        let Some(pipe) = self.pipe.as_mut() else {
            return Io::WouldBlock;
        };
        let max = max.min(pipe.held);
        if max == 0 {
            return Io::Done(0);
        }
        let outcome = splice(&self.home, pipe.read.as_raw_fd(), fd, max);
        if let Io::Done(n) = outcome {
            let left = pipe.held - n.min(pipe.held);
            self.home.count(pipe.held, left);
            pipe.held = left;
        }
        outcome
    }
}

impl Lent {
    /// Reads the pipe's bytes into `into` (a splice out of it was refused:
    /// they go the copying way, none lost).
    pub fn read_out(&mut self, into: &mut Vec<u8>) {
        let Some(pipe) = self.pipe.as_mut() else {
            return;
        };
        let mut buf = [0u8; 16 * 1024];
        while pipe.held > 0 {
            // SAFETY: `buf` is valid for writes of its length.
            let n =
                unsafe { libc::read(pipe.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                break;
            }
            let n = n as usize;
            into.extend_from_slice(buf.get(..n).unwrap_or_default());
            let left = pipe.held - n.min(pipe.held);
            self.home.count(pipe.held, left);
            pipe.held = left;
        }
    }
}

fn open_pipe(usage: PipeUse) -> io::Result<Pipe> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let fd = write.as_raw_fd();
    let size = match usage {
        PipeUse::Chunk => None,
        PipeUse::Chunks => Some(CHUNKS_PIPE_SIZE),
        PipeUse::Queue => Some(PIPE_SIZE),
    };
    if let Some(size) = size {
        // Best effort: a pipe the kernel keeps at its default size works.
        // SAFETY: fcntl on a descriptor we own, with an integer argument.
        unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, size as libc::c_int) };
    }
    // SAFETY: fcntl on a descriptor we own, without an argument.
    let size = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
    // Without an answer, assume the smallest (a default pipe of a user over
    // `pipe-user-pages-soft` has two pages): a pipe that takes more is fine.
    let capacity = if size > 0 { size as usize } else { 8 * 1024 };
    Ok(Pipe {
        read,
        write,
        held: 0,
        capacity,
        usage,
    })
}

/// One non-blocking splice, retried on EINTR; a refusal switches the pool
/// off and comes back as `Failed` with `ErrorKind::Unsupported`.
fn splice(home: &Pipes, from: RawFd, to: RawFd, len: usize) -> Io {
    if home.pretending() {
        home.refused(libc::EINVAL);
        return Io::Failed(Failure(io::ErrorKind::Unsupported, libc::EINVAL));
    }
    loop {
        // SAFETY: both descriptors are open for the duration of the call;
        // null offsets are what splice takes for sockets and pipes.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n > 0 {
            return Io::Done(n as usize);
        }
        if n == 0 {
            return Io::Eof;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(errno @ (libc::EINVAL | libc::ENOSYS | libc::EPERM | libc::EOPNOTSUPP)) => {
                home.refused(errno);
                return Io::Failed(Failure(io::ErrorKind::Unsupported, errno));
            }
            _ => return crate::net::classify(&e).unwrap_or(Io::WouldBlock),
        }
    }
}

/// True for the outcome of a splice the kernel refused.
pub fn is_refusal(outcome: &Io) -> bool {
    matches!(outcome, Io::Failed(Failure(io::ErrorKind::Unsupported, _)))
}

/// Writes `bytes` (a chunk head) to socket `fd` with `MSG_MORE`: the
/// kernel holds them for the spliced body that follows, so head and body
/// leave in one segment.
pub fn send_more(fd: RawFd, bytes: &[u8]) -> Io {
    let flags = libc::MSG_MORE | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    // SAFETY: `bytes` is valid for reads of its length.
    match retried(|| unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), flags) }) {
        Io::Eof => Io::Done(0),
        other => other,
    }
}

/// The maximum segment size of TCP socket `fd` (`None` if it can't tell).
pub fn tcp_mss(fd: RawFd) -> Option<usize> {
    let mut mss: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `mss` and `len` are valid for writes and `len` is `mss`'s size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            (&raw mut mss).cast(),
            &raw mut len,
        )
    };
    (r == 0).then_some(usize::try_from(mss).ok()?)
}

/// Copies up to `buf.len()` bytes at the head of socket `fd` without
/// consuming them.
pub fn peek(fd: RawFd, buf: &mut [u8]) -> Io {
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    // SAFETY: `buf` is valid for writes of its length.
    retried(|| unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) })
}

/// One socket call's result as an outcome (0 bytes: `Eof`), retried on
/// EINTR.
fn retried(mut call: impl FnMut() -> isize) -> Io {
    loop {
        let n = call();
        if n > 0 {
            return Io::Done(n as usize);
        }
        if n == 0 {
            return Io::Eof;
        }
        let e = io::Error::last_os_error();
        if let Some(outcome) = crate::net::classify(&e) {
            return outcome;
        }
    }
}

/// Logs at start how the relay moves plain bytes.
pub fn announce(pipes: &Pipes) {
    match pipes.mode() {
        Mode::On => info!(
            "splice: plain hops move bulk data with splice(2), up to {} pipes",
            pipes.0.borrow().max
        ),
        Mode::Off | Mode::Refused => info!("splice: off; plain hops copy"),
    }
}

#[cfg(test)]
#[path = "splice_tests.rs"]
mod tests;
