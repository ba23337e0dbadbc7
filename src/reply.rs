//! A connection that gets one fixed reply (an error page, a ping answer, a
//! TLS alert) and then goes away. After writing it shuts its write side and
//! reads until the client closes (or a short linger expires), so unread
//! request bytes don't make the kernel reset the reply away.

use std::net::Shutdown;
use std::time::Duration;

use mio::Token;
use mio::net::TcpStream;

use crate::engine::{Conn, Deadlines, Engine, Ready, TimerKind};
use crate::net::{self, Io};

/// How long the socket lingers for the client to read the reply.
const REPLY_LINGER: Duration = Duration::from_secs(2);

/// A socket that gets a fixed reply (error page, ping answer, alert), then
/// lingers briefly so closing doesn't reset the reply away.
pub struct Reply {
    pub sock: TcpStream,
    pub ready: Ready,
    pub deadlines: Deadlines,
    out: Vec<u8>,
    sent: usize,
}

impl Reply {
    /// Turns a connection (keeping its token and registration) into one
    /// that writes `out` and goes away.
    pub fn start(
        eng: &mut Engine,
        token: Token,
        sock: TcpStream,
        ready: Ready,
        out: Vec<u8>,
    ) -> Option<Conn> {
        let mut reply = Reply {
            sock,
            ready,
            deadlines: Deadlines::default(),
            out,
            sent: 0,
        };
        eng.arm_taken(
            token,
            &mut reply.deadlines,
            TimerKind::Deadline,
            eng.now + REPLY_LINGER,
        );
        eng.mark_dirty(token);
        Some(Conn::Reply(reply))
    }
}

pub fn drive_reply(eng: &mut Engine, token: Token, mut r: Reply) -> Option<Conn> {
    while r.sent < r.out.len() && r.ready.write {
        match net::write(&mut r.sock, r.out.get(r.sent..).unwrap_or_default()) {
            Io::Done(n) => {
                r.sent += n;
                if r.sent == r.out.len() {
                    let _ = r.sock.shutdown(Shutdown::Write);
                }
            }
            Io::WouldBlock => r.ready.write = false,
            _ => return None,
        }
    }
    // Read and drop what the client still sends until it closes, so the
    // kernel does not answer unread data with a reset.
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        if !r.ready.read {
            return Some(Conn::Reply(r));
        }
        match net::read(&mut r.sock, &mut sink) {
            Io::Done(_) => {}
            Io::WouldBlock => r.ready.read = false,
            Io::Eof if r.sent == r.out.len() => return None,
            Io::Eof => r.ready.read = false,
            _ => return None,
        }
    }
    eng.mark_again(token);
    Some(Conn::Reply(r))
}

pub fn reply_timeout(_: &mut Engine, _: Token, _: Reply) -> Option<Conn> {
    None
}
