//! A backend's watch on this host's addresses: a non-blocking
//! `NETLINK_ROUTE` socket subscribed to address changes, in the reactor's
//! table like any connection. Reading it yields `proto::netlink` events;
//! what a backend does with them (replace tunnels bound to an address that
//! went, redial when one appeared) is `backend`'s. Where netlink is not to
//! be had (a sandbox, a non-Linux kernel) there is simply no watch, and
//! SIGUSR1 and the keepalive remain.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::net::Ready;
use crate::proto::netlink::{self, AddrEvent};

/// `RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR` (linux/rtnetlink.h).
const GROUPS: u32 = 0x10 | 0x100;
/// Datagrams read per drive before others get a turn.
const BURST: usize = 64;

/// The watch, as the reactor holds it.
pub struct AddrWatch {
    fd: OwnedFd,
    pub ready: Ready,
}

impl mio::event::Source for AddrWatch {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        SourceFd(&self.fd.as_raw_fd()).register(r, t, i)
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        SourceFd(&self.fd.as_raw_fd()).reregister(r, t, i)
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        SourceFd(&self.fd.as_raw_fd()).deregister(r)
    }
}

impl AddrWatch {
    /// A socket subscribed to address changes.
    pub fn open() -> io::Result<AddrWatch> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor socket(2) just returned, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid start.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = GROUPS;
        // SAFETY: `addr` lives across the call and is passed with its size.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if bound < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(AddrWatch {
            fd,
            ready: Ready::default(),
        })
    }

    /// Every change announced since the last read (bounded per call; the
    /// readiness stays set when there may be more).
    pub fn changes(&mut self) -> Changes {
        let mut changes = Changes::default();
        let mut buf = [0u8; 8192];
        for _ in 0..BURST {
            if !self.ready.read {
                break;
            }
            // SAFETY: `buf` is writable for its length for the whole call.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            match usize::try_from(n) {
                Ok(n) => changes
                    .events
                    .extend(netlink::parse(buf.get(..n).unwrap_or_default())),
                Err(_) => match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => {}
                    // The kernel dropped announcements: the caller checks
                    // every address it depends on instead.
                    Some(libc::ENOBUFS) => changes.lost = true,
                    _ => self.ready.read = false,
                },
            }
        }
        changes
    }
}

/// What one read of the watch found.
#[derive(Debug, Default)]
pub struct Changes {
    pub events: Vec<AddrEvent>,
    /// Some announcements were lost (the socket's buffer overflowed).
    pub lost: bool,
}
