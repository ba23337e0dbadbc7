//! A connection's byte pipe: a non-blocking TCP socket, optionally wrapped in
//! a TLS session (see `tls.rs`, which owns every rustls call). It keeps the
//! socket's remembered readiness and hides the difference between the two:
//! `read` and `write` move plaintext, `flush` pushes queued ciphertext, and
//! both clear the readiness bit they hit WouldBlock on. Callers loop while
//! [`Transport::can_read`] or until an operation says `WouldBlock`.

use std::fmt;
use std::io::{IoSlice, IoSliceMut};
use std::net::Shutdown;

use crate::net::{self, Failure, Io};
use crate::net::{Ready, Socket};
use crate::tls::{TLS_FAILURE, TlsError, TlsSession};

pub struct Transport {
    pub sock: Socket,
    pub ready: Ready,
    tls: Option<Box<TlsSession>>,
    /// Shut the TCP write side once the TLS close_notify is out.
    shut_after_flush: bool,
}

impl Transport {
    pub fn plain(sock: impl Into<Socket>) -> Transport {
        Transport {
            sock: sock.into(),
            ready: Ready::default(),
            tls: None,
            shut_after_flush: false,
        }
    }

    /// Whether a non-blocking connect has finished, on its writable edge
    /// (`Ok(false)`: not yet, wait for the next one).
    pub fn connect_finished(&mut self) -> Result<bool, Failure> {
        if !self.ready.write {
            return Ok(false);
        }
        match net::connected(&self.sock) {
            Ok(false) => {
                self.ready.write = false;
                Ok(false)
            }
            other => other,
        }
    }

    /// Wraps the connection in TLS from now on.
    pub fn start_tls(&mut self, session: TlsSession) {
        self.tls = Some(Box::new(session));
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn tls_mut(&mut self) -> Option<&mut TlsSession> {
        self.tls.as_deref_mut()
    }

    /// The socket, when bytes may bypass user space: plain TCP only (TLS
    /// needs them in user space; a built-in kite's socket pair is left
    /// alone).
    pub fn splice_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match (&self.tls, &self.sock) {
            (None, Socket::Tcp(s)) => Some(s.as_raw_fd()),
            _ => None,
        }
    }

    /// Moves up to `max` bytes from the socket into `pipe`. `Done(0)`: the
    /// pipe is full while the socket still has bytes (so its readiness is
    /// kept); `WouldBlock`: the socket is drained.
    pub fn splice_in(&mut self, pipe: &mut crate::splice::Lent, max: usize) -> Io {
        let Some(fd) = self.splice_fd() else {
            return Io::Done(0);
        };
        if !self.ready.read {
            return Io::WouldBlock;
        }
        match pipe.fill_from(fd, max) {
            // With SPLICE_F_NONBLOCK, EAGAIN means an empty socket or a full
            // pipe; only the first may clear the remembered readiness.
            Io::WouldBlock if pipe.held() > 0 => {
                let mut probe = [0u8; 1];
                match crate::splice::peek(fd, &mut probe) {
                    Io::Done(_) | Io::Eof => Io::Done(0),
                    _ => {
                        self.ready.read = false;
                        Io::WouldBlock
                    }
                }
            }
            Io::WouldBlock => {
                self.ready.read = false;
                Io::WouldBlock
            }
            Io::Eof => {
                self.ready.read = false;
                Io::Eof
            }
            other => other,
        }
    }

    /// Moves up to `max` of `pipe`'s bytes to the socket.
    pub fn splice_out(&mut self, pipe: &mut crate::splice::Lent, max: usize) -> Io {
        let Some(fd) = self.splice_fd() else {
            return Io::WouldBlock;
        };
        if !self.ready.write {
            return Io::WouldBlock;
        }
        let outcome = pipe.drain_to(fd, max);
        if outcome == Io::WouldBlock {
            self.ready.write = false;
        }
        outcome
    }

    /// Writes a chunk head whose body is spliced next (plain TCP): held by
    /// the kernel until the body joins it.
    pub fn write_head(&mut self, bytes: &[u8]) -> Io {
        let Some(fd) = self.splice_fd() else {
            return self.write(bytes);
        };
        if !self.ready.write {
            return Io::WouldBlock;
        }
        let outcome = crate::splice::send_more(fd, bytes);
        if outcome == Io::WouldBlock {
            self.ready.write = false;
        }
        outcome
    }

    /// Copies the bytes at the head of the socket into `buf` without
    /// consuming them (plain TCP only).
    pub fn peek(&mut self, buf: &mut [u8]) -> Io {
        let Some(fd) = self.splice_fd() else {
            return Io::WouldBlock;
        };
        if !self.ready.read {
            return Io::WouldBlock;
        }
        let outcome = crate::splice::peek(fd, buf);
        if outcome == Io::WouldBlock {
            self.ready.read = false;
        }
        outcome
    }

    /// Whether a read may return data now (the socket was readable, or the
    /// TLS session holds decrypted bytes).
    pub fn can_read(&mut self) -> bool {
        self.ready.read || self.tls.as_mut().is_some_and(|t| t.has_plaintext())
    }

    pub fn read(&mut self, buf: &mut [u8]) -> Io {
        match &mut self.tls {
            Some(tls) => tls.read(&mut self.sock, &mut self.ready.read, buf),
            None if !self.ready.read => Io::WouldBlock,
            None => {
                let outcome = net::read(&mut self.sock, buf);
                if outcome == Io::WouldBlock {
                    self.ready.read = false;
                }
                outcome
            }
        }
    }

    /// Reads into several buffers in one call (`readv` on a plain socket;
    /// under TLS, into the first).
    pub fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> Io {
        match &mut self.tls {
            Some(tls) => match bufs.first_mut() {
                Some(first) => tls.read(&mut self.sock, &mut self.ready.read, first),
                None => Io::Done(0),
            },
            None if !self.ready.read => Io::WouldBlock,
            None => {
                let outcome = net::read_vectored(&mut self.sock, bufs);
                if outcome == Io::WouldBlock {
                    self.ready.read = false;
                }
                outcome
            }
        }
    }

    /// Writes plaintext; `Done(n)` once the bytes are on their way (in the
    /// kernel, or encrypted and queued in the TLS session).
    pub fn write(&mut self, buf: &[u8]) -> Io {
        match &mut self.tls {
            Some(tls) => tls.write(&mut self.sock, &mut self.ready.write, buf),
            None if !self.ready.write => Io::WouldBlock,
            None => {
                let outcome = net::write(&mut self.sock, buf);
                if outcome == Io::WouldBlock {
                    self.ready.write = false;
                }
                outcome
            }
        }
    }

    /// Writes several pieces of plaintext in one call (`writev` on a plain
    /// socket; under TLS, piece by piece into the session).
    pub fn write_vectored(&mut self, pieces: &[IoSlice<'_>]) -> Io {
        if self.tls.is_some() {
            let mut total = 0;
            for piece in pieces {
                match self.write(piece) {
                    Io::Done(n) => {
                        total += n;
                        if n < piece.len() {
                            break;
                        }
                    }
                    _ if total > 0 => break,
                    other => return other,
                }
            }
            return Io::Done(total);
        }
        if !self.ready.write {
            return Io::WouldBlock;
        }
        let outcome = net::write_vectored(&mut self.sock, pieces);
        if outcome == Io::WouldBlock {
            self.ready.write = false;
        }
        outcome
    }

    /// Sends queued TLS bytes; `Done(0)` when nothing is left.
    pub fn flush(&mut self) -> Io {
        let outcome = match &mut self.tls {
            Some(tls) => tls.flush(&mut self.sock, &mut self.ready.write),
            None => Io::Done(0),
        };
        if outcome == Io::Done(0) && self.shut_after_flush {
            self.shut_after_flush = false;
            let _ = self.sock.shutdown(Shutdown::Write);
        }
        outcome
    }

    /// Whether TLS bytes wait for the socket.
    pub fn has_pending(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Ends our sending direction: a close_notify first under TLS.
    pub fn shutdown_write(&mut self) {
        match &mut self.tls {
            Some(tls) => {
                tls.close();
                self.shut_after_flush = true;
                let _ = self.flush();
            }
            None => {
                let _ = self.sock.shutdown(Shutdown::Write);
            }
        }
    }

    /// What broke, given the failure an operation returned: the TLS
    /// session's reason when TLS failed, else the socket's.
    pub fn failure(&self, failure: Failure) -> TransportError {
        match (&self.tls, failure.1) {
            (Some(tls), TLS_FAILURE) => match tls.error() {
                Some(e) => TransportError::Tls(e.clone()),
                None => TransportError::Socket(failure),
            },
            _ => TransportError::Socket(failure),
        }
    }
}

/// Why a transport broke: its socket, or the TLS session over it.
#[derive(Clone, Debug)]
pub enum TransportError {
    Socket(Failure),
    Tls(TlsError),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Socket(e) => write!(f, "socket error: {e}"),
            TransportError::Tls(e) => write!(f, "TLS error: {e}"),
        }
    }
}
