//! SIGINT/SIGTERM/SIGHUP/SIGUSR1/SIGUSR2 delivered to the reactor through a
//! self-pipe: the handler only records the signal and writes one byte (both
//! async-signal-safe); the reactor wakes on the pipe's read end and asks
//! which signals arrived. Apart from the bench-only allocation counter, this
//! is the only `unsafe` in rkite, around libc.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

static WRITE_FD: AtomicI32 = AtomicI32::new(-1);
/// One bit per signal number below 32.
static PENDING: AtomicU32 = AtomicU32::new(0);

const HANDLED: [i32; 5] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

extern "C" fn on_signal(signal: i32) {
    if (0..32).contains(&signal) {
        PENDING.fetch_or(1 << signal, Ordering::SeqCst);
    }
    let fd = WRITE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a valid byte.
        unsafe {
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
    }
}

pub struct Signals {
    read_fd: RawFd,
}

impl Signals {
    pub fn install(registry: &Registry, token: Token) -> io::Result<Signals> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into the array we pass.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        WRITE_FD.store(fds[1], Ordering::SeqCst);
        for signal in HANDLED {
            // SAFETY: a zeroed sigaction with a plain handler and SA_RESTART
            // is a valid argument; the handler only touches atomics and write(2).
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as usize;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        // A peer that vanishes must not kill the process with SIGPIPE.
        // SAFETY: ignoring SIGPIPE is always valid.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        registry.register(&mut SourceFd(&fds[0]), token, Interest::READABLE)?;
        Ok(Signals { read_fd: fds[0] })
    }

    /// Empties the pipe and returns the signals that arrived since last time.
    pub fn drain(&mut self) -> Vec<i32> {
        let mut sink = [0u8; 64];
        loop {
            // SAFETY: reading into a stack buffer of the stated length.
            let n = unsafe { libc::read(self.read_fd, sink.as_mut_ptr().cast(), sink.len()) };
            if n <= 0 {
                break;
            }
        }
        let bits = PENDING.swap(0, Ordering::SeqCst);
        HANDLED
            .iter()
            .copied()
            .filter(|s| bits & (1 << s) != 0)
            .collect()
    }
}

/// Gives the signals `Engine::new` takes over back to their default action,
/// so a test that built an engine leaves its test runner stoppable.
#[cfg(test)]
pub(crate) fn restore_defaults() {
    for signal in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        // SAFETY: restoring the default action is always valid.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
        }
    }
}
