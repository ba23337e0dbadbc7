//! A stream's queue of received bodies kept in the kernel: the pipes a
//! plain tunnel's bodies are spliced into on their way to the stream's
//! socket, oldest first. One pipe while the visitor keeps up; while it
//! falls behind, more (each lent by the pool, up to [`QUEUE_PIPES`]), so
//! the sender's window waits in pipe pages instead of being copied into a
//! buffer of ours. (A pipe could grow instead, but only with
//! `CAP_SYS_RESOURCE` beyond `/proc/sys/fs/pipe-max-size`, 1 MiB.)
//! Empty pipes go back to the pool at once, so an idle stream holds none.
//! It decides nothing about which bytes may be spliced (`relay_splice`'s)
//! and makes no syscall of its own (`splice.rs` has them all).

use std::time::Instant;

use crate::net::Io;
use crate::splice::{Lent, PIPE_SIZE, PipeUse, Pipes};
use crate::transport::Transport;

/// Pipes one stream may hold at once: a 4 MiB window (`flow::MAX_WINDOW`)
/// and the chunk that may overdraw it, in pipes of 1 MiB (fewer bytes fit
/// when the kernel counts pages half full).
pub const QUEUE_PIPES: usize = 6;

/// A stream's pipes, oldest first; empty ones are given back.
#[derive(Default)]
pub struct PipeQueue {
    pipes: Vec<Lent>,
}

impl PipeQueue {
    /// Bytes waiting in the pipes.
    pub fn held(&self) -> usize {
        self.pipes.iter().map(Lent::held).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.pipes.is_empty()
    }

    /// Pipes held now (each one lent by the pool).
    pub fn count(&self) -> usize {
        self.pipes.len()
    }

    /// The pipe new bytes go into (behind everything queued).
    pub fn tail(&mut self) -> Option<&mut Lent> {
        self.pipes.last_mut()
    }

    /// Whether `body` more bytes may be spliced behind what is queued: into
    /// the newest pipe's room and, past it, into more pipes (taken as the
    /// body gets there: [`add`](Self::add)). A stream without a pipe takes
    /// its first from `pool` here.
    pub fn make_room(&mut self, body: usize, pool: &Pipes, now: Instant) -> bool {
        if self.pipes.is_empty() && !self.add(pool, now) {
            return false;
        }
        let room = self.pipes.last().map_or(0, Lent::room);
        let more = QUEUE_PIPES.saturating_sub(self.pipes.len()) * PIPE_SIZE;
        body <= room.saturating_add(more)
    }

    /// One more pipe at the tail, if the pool lends one: a stream's first
    /// from `pool`; more as [`add_more`](Self::add_more).
    pub fn add(&mut self, pool: &Pipes, now: Instant) -> bool {
        if !self.pipes.is_empty() {
            return self.add_more();
        }
        pool.take(PipeUse::Queue, now)
            .map(|p| self.pipes.push(p))
            .is_some()
    }

    /// One more pipe behind the ones held, from the pool they came from:
    /// only while it keeps a quarter for other streams, and at most
    /// [`QUEUE_PIPES`].
    fn add_more(&mut self) -> bool {
        let pipe = match self.pipes.last() {
            Some(last) if self.pipes.len() < QUEUE_PIPES => last.pool().take_more(PipeUse::Queue),
            _ => None,
        };
        pipe.map(|p| self.pipes.push(p)).is_some()
    }

    /// Copies as much of `bytes` behind the queued ones as the pipes take
    /// now, taking more pipes as they fill. Nothing goes in while the
    /// queue holds no pipe.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let mut done = 0;
        while let Some(rest) = bytes.get(done..).filter(|r| !r.is_empty()) {
            match self.pipes.last_mut().map(|tail| tail.push(rest)) {
                Some(0) if self.add_more() => {}
                Some(0) | None => break,
                Some(n) => done += n,
            }
        }
        done
    }

    /// Splices the queued bytes to `transport`'s socket, oldest first, and
    /// gives back every pipe it empties. Returns the bytes written and
    /// what stopped it (`Io::Done` once all are out).
    pub fn drain_to(&mut self, transport: &mut Transport) -> (usize, Io) {
        let mut written = 0;
        while let Some(front) = self.pipes.first_mut() {
            if front.held() == 0 {
                // Empty: back to the pool (dropping it does that).
                self.pipes.remove(0);
                continue;
            }
            match transport.splice_out(front, usize::MAX) {
                Io::Done(0) => return (written, Io::WouldBlock),
                Io::Done(n) => written += n,
                other => return (written, other),
            }
        }
        (written, Io::Done(written))
    }

    /// Reads every queued byte out, oldest first, into `into` (a splice
    /// out was refused: they go the copying way, none lost); gives the
    /// pipes back.
    pub fn read_out(&mut self, into: &mut Vec<u8>) {
        for mut pipe in self.pipes.drain(..) {
            pipe.read_out(into);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Over real pipes and a loopback socket: bytes queued past one pipe
    //! spill into more, come out in order, and every pipe goes home; a
    //! stream takes more than one only while the pool keeps a quarter.

    #![allow(clippy::disallowed_methods)] // a base instant for the pool

    use std::io::Read;
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;

    use super::*;
    use crate::buf::Pool;

    fn pool(max: usize) -> Pipes {
        Pipes::new(max, &Pool::new(64 * 1024 * 1024))
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    #[test]
    fn bytes_past_one_pipe_spill_into_more_and_leave_in_order() {
        let pipes = pool(16);
        let now = Instant::now();
        let mut q = PipeQueue::default();
        assert_eq!(q.push(b"no pipe yet"), 0, "nothing queues without a pipe");
        // Room for a body bigger than one pipe: the first pipe now, more
        // as the body gets there.
        assert!(q.make_room(3 * PIPE_SIZE, &pipes, now));
        assert_eq!(q.count(), 1);
        assert!(!q.make_room(QUEUE_PIPES * PIPE_SIZE + 1, &pipes, now));
        let bytes = pattern(3 * PIPE_SIZE + 12_345);
        assert_eq!(q.push(&bytes), bytes.len());
        assert_eq!(q.held(), bytes.len());
        assert!(q.count() >= 4, "{} pipes", q.count());
        assert_eq!(pipes.stats().lent, q.count());

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let reader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut got = Vec::new();
            s.read_to_end(&mut got).expect("read");
            got
        });
        let sock = std::net::TcpStream::connect(addr).expect("connect");
        sock.set_nonblocking(true).expect("nonblocking");
        let fd = sock.as_raw_fd();
        let mut t = Transport::plain(mio::net::TcpStream::from_std(sock));
        let mut written = 0;
        while !q.is_empty() {
            t.ready.write = true;
            let (n, _) = q.drain_to(&mut t);
            written += n;
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&raw mut p, 1, 1000) };
        }
        assert_eq!(written, bytes.len());
        assert_eq!(pipes.stats().lent, 0, "every emptied pipe went home");
        drop(t);
        assert!(
            reader.join().expect("reader") == bytes,
            "in order, byte for byte"
        );
    }

    #[test]
    fn a_second_pipe_only_while_a_quarter_of_the_pool_stays_free() {
        let pipes = pool(4);
        let now = Instant::now();
        let (mut a, mut b, mut c) = (
            PipeQueue::default(),
            PipeQueue::default(),
            PipeQueue::default(),
        );
        assert!(a.add(&pipes, now));
        assert!(a.add(&pipes, now));
        assert!(a.add(&pipes, now));
        assert!(!a.add(&pipes, now), "the last pipe is kept");
        assert!(b.add(&pipes, now), "a stream's first pipe");
        assert!(!c.add(&pipes, now), "the pool is at --max_pipes");
        let st = pipes.stats();
        assert_eq!((a.count(), b.count(), st.lent, st.exhausted), (3, 1, 4, 1));
    }
}
