//! A connection that gets one fixed reply (an error page, a ping answer, a
//! TLS alert) and then goes away. After writing it shuts its write side and
//! reads until the client closes (or a short linger expires), so unread
//! request bytes don't make the kernel reset the reply away.

use std::time::Duration;

use mio::Token;

use crate::engine::{Conn, Deadlines, Engine, TimerKind};
use crate::net::Io;
use crate::transport::Transport;

/// How long the socket lingers for the client to read the reply.
const REPLY_LINGER: Duration = Duration::from_secs(2);

/// A socket that gets a fixed reply (error page, ping answer, alert), then
/// lingers briefly so closing doesn't reset the reply away.
pub struct Reply {
    pub transport: Transport,
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
        transport: Transport,
        out: Vec<u8>,
    ) -> Option<Conn> {
        let mut reply = Reply {
            transport,
            deadlines: Deadlines::default(),
            out,
            sent: 0,
        };
        let at = eng.now + REPLY_LINGER;
        eng.arm_taken(token, &mut reply.deadlines, TimerKind::Deadline, at);
        eng.mark_dirty(token);
        Some(Conn::Reply(reply))
    }
}

pub fn drive_reply(eng: &mut Engine, token: Token, mut r: Reply) -> Option<Conn> {
    while r.sent < r.out.len() {
        match r.transport.write(r.out.get(r.sent..).unwrap_or_default()) {
            Io::Done(n) => {
                r.sent += n;
                if r.sent == r.out.len() {
                    r.transport.shutdown_write();
                }
            }
            Io::WouldBlock => break,
            _ => return None,
        }
    }
    if r.transport.has_pending() && matches!(r.transport.flush(), Io::Failed(_)) {
        return None;
    }
    // Read and drop what the client still sends until it closes, so the
    // kernel does not answer unread data with a reset.
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        if !r.transport.can_read() {
            return Some(Conn::Reply(r));
        }
        match r.transport.read(&mut sink) {
            Io::Done(_) => {}
            Io::WouldBlock => return Some(Conn::Reply(r)),
            Io::Eof if r.sent == r.out.len() && !r.transport.has_pending() => return None,
            Io::Eof => r.transport.ready.read = false,
            _ => return None,
        }
    }
    eng.mark_again(token);
    Some(Conn::Reply(r))
}

pub fn reply_timeout(_: &mut Engine, _: Token, _: Reply) -> Option<Conn> {
    None
}
