//! Non-blocking socket helpers: every read and write on the relay path goes
//! through here and comes back as an [`Io`] outcome, so `io::Error` never
//! travels further and every caller handles the harmless errnos the same
//! way: EINTR is retried at once, EAGAIN means "wait for readiness", and
//! ENOBUFS/ENOMEM mean "back off on a timer", not "fail".

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

/// Readiness remembered from edge-triggered events. A bit is set by an event
/// and cleared only when an operation reports WouldBlock (or EOF).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    pub read: bool,
    pub write: bool,
}

/// How a non-blocking read or write went.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// Moved this many bytes (never 0 for a read: that is `Eof`).
    Done(usize),
    /// The socket is drained (read) or full (write): wait for readiness.
    WouldBlock,
    /// The peer closed its sending side.
    Eof,
    /// The kernel is short of memory (ENOBUFS/ENOMEM): try again shortly.
    Starved,
    /// The connection is broken.
    Failed(Failure),
}

/// Why a socket operation failed, small enough to copy into close reasons.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Failure(pub io::ErrorKind, pub i32);

// `Debug` by hand, in the derived form: a log line prints these, and the
// static binary derives `Debug` shallowly (variant names only; bench/size.md).
impl fmt::Debug for Io {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Io::Done(n) => f.debug_tuple("Done").field(n).finish(),
            Io::WouldBlock => f.write_str("WouldBlock"),
            Io::Eof => f.write_str("Eof"),
            Io::Starved => f.write_str("Starved"),
            Io::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Failure")
            .field(&self.0)
            .field(&self.1)
            .finish()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1 != 0 {
            write!(f, "{} (os error {})", self.0, self.1)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl From<&io::Error> for Failure {
    fn from(e: &io::Error) -> Failure {
        Failure(e.kind(), e.raw_os_error().unwrap_or(0))
    }
}

/// Sorts an error into the outcomes above.
pub fn classify(e: &io::Error) -> Option<Io> {
    match e.kind() {
        io::ErrorKind::WouldBlock => Some(Io::WouldBlock),
        io::ErrorKind::Interrupted => None,
        io::ErrorKind::OutOfMemory => Some(Io::Starved),
        _ => match e.raw_os_error() {
            Some(libc::ENOBUFS) | Some(libc::ENOMEM) => Some(Io::Starved),
            _ => Some(Io::Failed(Failure::from(e))),
        },
    }
}

/// One `read`, retried on EINTR.
pub fn read(src: &mut impl Read, buf: &mut [u8]) -> Io {
    if buf.is_empty() {
        return Io::Done(0);
    }
    loop {
        match src.read(buf) {
            Ok(0) => return Io::Eof,
            Ok(n) => return Io::Done(n),
            Err(e) => {
                if let Some(outcome) = classify(&e) {
                    return outcome;
                }
            }
        }
    }
}

/// One `readv`, retried on EINTR.
pub fn read_vectored(src: &mut impl Read, bufs: &mut [std::io::IoSliceMut<'_>]) -> Io {
    if bufs.iter().all(|b| b.is_empty()) {
        return Io::Done(0);
    }
    loop {
        match src.read_vectored(bufs) {
            Ok(0) => return Io::Eof,
            Ok(n) => return Io::Done(n),
            Err(e) => {
                if let Some(outcome) = classify(&e) {
                    return outcome;
                }
            }
        }
    }
}

/// One `write`, retried on EINTR.
pub fn write(dst: &mut impl Write, buf: &[u8]) -> Io {
    if buf.is_empty() {
        return Io::Done(0);
    }
    loop {
        match dst.write(buf) {
            Ok(0) => return Io::Failed(Failure(io::ErrorKind::WriteZero, 0)),
            Ok(n) => return Io::Done(n),
            Err(e) => {
                if let Some(outcome) = classify(&e) {
                    return outcome;
                }
            }
        }
    }
}

/// One `writev`, retried on EINTR.
pub fn write_vectored(dst: &mut impl Write, pieces: &[std::io::IoSlice<'_>]) -> Io {
    if pieces.iter().all(|p| p.is_empty()) {
        return Io::Done(0);
    }
    loop {
        match dst.write_vectored(pieces) {
            Ok(0) => return Io::Failed(Failure(io::ErrorKind::WriteZero, 0)),
            Ok(n) => return Io::Done(n),
            Err(e) => {
                if let Some(outcome) = classify(&e) {
                    return outcome;
                }
            }
        }
    }
}

/// A peer's address as the rest of the program sees it: an IPv4 client of
/// a dual-stack listener arrives as `::ffff:a.b.c.d` and becomes `a.b.c.d`,
/// so `RIP`, logs, ACLs, per-IP limits and the status file all see one
/// spelling (a pagekite.py backend would otherwise hand its origin
/// `X-Forwarded-For: ::ffff:a.b.c.d`). Every accepted address goes through
/// here first.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Whether an accept error means "out of descriptors": stop accepting for a
/// while instead of spinning on a listener that stays readable.
pub fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Whether a non-blocking connect has finished (mio's recipe).
pub fn connected(sock: &Socket) -> Result<bool, Failure> {
    if let Ok(Some(e)) | Err(e) = sock.take_error() {
        return Err(Failure::from(&e));
    }
    let sock = match sock {
        Socket::Tcp(s) => s,
        // A socket pair is connected from the start.
        Socket::Unix(_) => return Ok(true),
    };
    match sock.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotConnected => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(false),
        Err(e) => Err(Failure::from(&e)),
    }
}

/// A connected stream socket: TCP, or one end of a Unix socket pair (the
/// stream of a built-in kite, whose server end is in the same reactor).
/// Reads, writes, readiness and shutdown are the same for both.
pub enum Socket {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl From<mio::net::TcpStream> for Socket {
    fn from(s: mio::net::TcpStream) -> Socket {
        Socket::Tcp(s)
    }
}

impl From<mio::net::UnixStream> for Socket {
    fn from(s: mio::net::UnixStream) -> Socket {
        Socket::Unix(s)
    }
}

impl Socket {
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.shutdown(how),
            Socket::Unix(s) => s.shutdown(how),
        }
    }

    /// The local address (a Unix pair has none that names this host).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Socket::Tcp(s) => s.local_addr(),
            Socket::Unix(_) => Err(io::Error::from(io::ErrorKind::Unsupported)),
        }
    }

    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Socket::Tcp(s) => s.take_error(),
            Socket::Unix(s) => s.take_error(),
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }

    fn read_vectored(&mut self, bufs: &mut [std::io::IoSliceMut<'_>]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read_vectored(bufs),
            Socket::Unix(s) => s.read_vectored(bufs),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write_vectored(bufs),
            Socket::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl mio::event::Source for Socket {
    fn register(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.register(r, t, i),
            Socket::Unix(s) => s.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.reregister(r, t, i),
            Socket::Unix(s) => s.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &mio::Registry) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.deregister(r),
            Socket::Unix(s) => s.deregister(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written `Debug` reads as the derived one did (log lines
    /// print it, and the static binary derives `Debug` shallowly).
    #[test]
    fn debug_reads_as_derived() {
        let failed = Io::Failed(Failure(io::ErrorKind::ConnectionReset, 104));
        assert_eq!(
            format!("{failed:?}"),
            "Failed(Failure(ConnectionReset, 104))"
        );
        assert_eq!(format!("{:?}", Io::Done(7)), "Done(7)");
        assert_eq!(format!("{:?}", Io::WouldBlock), "WouldBlock");
        assert_eq!(format!("{:?}", Io::Eof), "Eof");
        assert_eq!(format!("{:?}", Io::Starved), "Starved");
        assert_eq!(
            format!("{:#?}", Io::Done(7)),
            "Done(\n    7,\n)",
            "alternate form too"
        );
    }

    struct Scripted(Vec<io::Result<usize>>);

    impl Read for Scripted {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            self.0.remove(0)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            self.0.remove(0)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn mapped_addresses_become_plain_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:4000".parse().unwrap();
        assert_eq!(canonical(mapped), "127.0.0.1:4000".parse().unwrap());
        for kept in [
            "[::1]:1",
            "[2001:db8::7f00:1]:2",
            "10.0.0.1:3",
            "[::127.0.0.1]:4",
        ] {
            let addr: SocketAddr = kept.parse().unwrap();
            assert_eq!(canonical(addr), addr, "{kept}");
        }
    }

    #[test]
    fn harmless_errnos_are_not_failures() {
        let mut buf = [0u8; 4];
        let mut s = Scripted(vec![
            Err(io::Error::from(io::ErrorKind::Interrupted)),
            Ok(3),
        ]);
        assert_eq!(read(&mut s, &mut buf), Io::Done(3));
        let mut s = Scripted(vec![Err(io::Error::from(io::ErrorKind::WouldBlock))]);
        assert_eq!(read(&mut s, &mut buf), Io::WouldBlock);
        let mut s = Scripted(vec![Err(io::Error::from_raw_os_error(libc::ENOBUFS))]);
        assert_eq!(write(&mut s, b"x"), Io::Starved);
        let mut s = Scripted(vec![Err(io::Error::from_raw_os_error(libc::ENOMEM))]);
        assert_eq!(read(&mut s, &mut buf), Io::Starved);
        let mut s = Scripted(vec![Ok(0)]);
        assert_eq!(read(&mut s, &mut buf), Io::Eof);
        let mut s = Scripted(vec![Err(io::Error::from_raw_os_error(libc::ECONNRESET))]);
        assert!(matches!(
            write(&mut s, b"x"),
            Io::Failed(Failure(io::ErrorKind::ConnectionReset, _))
        ));
        assert!(is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(!is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::EAGAIN
        )));
    }
}
