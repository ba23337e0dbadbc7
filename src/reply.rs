//! A connection that gets one fixed reply (an error page, a ping answer, a
//! TLS alert) and then goes away. After writing it shuts its write side and
//! reads until the client closes (or a short linger expires), so unread
//! request bytes don't make the kernel reset the reply away.

use std::time::Duration;

use crate::net::Io;
use crate::timer::Deadlines;
use crate::transport::Transport;

/// How long the socket lingers for the client to read the reply.
pub const REPLY_LINGER: Duration = Duration::from_secs(2);

/// A socket that gets a fixed reply (error page, ping answer, alert), then
/// lingers briefly so closing doesn't reset the reply away.
pub struct Reply {
    pub transport: Transport,
    pub deadlines: Deadlines,
    out: Vec<u8>,
    sent: usize,
}

/// What a reply connection needs after being driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Waiting for the socket (or the linger deadline).
    Wait,
    /// More to read right away: drive it again this round.
    Again,
    /// Written and closed by the client, or failed: close it.
    Done,
}

impl Reply {
    /// A connection (keeping its token and registration) that writes `out`
    /// and goes away; the caller arms its `Deadline` for the linger.
    pub fn new(transport: Transport, out: Vec<u8>) -> Reply {
        Reply {
            transport,
            deadlines: Deadlines::default(),
            out,
            sent: 0,
        }
    }

    /// Writes the reply, then reads and drops what the client still sends.
    pub fn drive(&mut self) -> Step {
        let r = self;
        while r.sent < r.out.len() {
            match r.transport.write(r.out.get(r.sent..).unwrap_or_default()) {
                Io::Done(n) => {
                    r.sent += n;
                    if r.sent == r.out.len() {
                        r.transport.shutdown_write();
                    }
                }
                Io::WouldBlock => break,
                _ => return Step::Done,
            }
        }
        if r.transport.has_pending() && matches!(r.transport.flush(), Io::Failed(_)) {
            return Step::Done;
        }
        // Read and drop what the client still sends until it closes, so the
        // kernel does not answer unread data with a reset.
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            if !r.transport.can_read() {
                return Step::Wait;
            }
            match r.transport.read(&mut sink) {
                Io::Done(_) => {}
                Io::WouldBlock => return Step::Wait,
                Io::Eof if r.sent == r.out.len() && !r.transport.has_pending() => {
                    return Step::Done;
                }
                Io::Eof => r.transport.ready.read = false,
                _ => return Step::Done,
            }
        }
        Step::Again
    }
}
