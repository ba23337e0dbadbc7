//! What a tunnel keeps for kernel splicing between drives (issue 15): the
//! chunk going out with a spliced body ([`SpliceOut`], written before any
//! later output by [`flush_out`]) and the receiving side's run of spliced
//! chunks ([`Streak`]). Which bytes are spliced, and when, is
//! `relay_splice`'s; this file names no connection table, so a tunnel can
//! hold it.

use crate::net::Io;
use crate::proto::tunnel::DataHead;
use crate::splice::{Lent, is_refusal};
use crate::transport::Transport;

/// A chunk being sent with a spliced body: its head, then the pipe's bytes,
/// go to the tunnel socket before anything else.
pub struct SpliceOut {
    head: DataHead,
    head_sent: usize,
    pipe: Lent,
    /// The body, read back from the pipe after a refused splice.
    copied: Vec<u8>,
}

/// Writes what a spliced chunk has left; `Ok(true)` once all of it is out.
pub(crate) fn flush_out(
    transport: &mut Transport,
    slot: &mut Option<SpliceOut>,
) -> Result<bool, Io> {
    let Some(so) = slot.as_mut() else {
        return Ok(true);
    };
    while let Some(rest) = so
        .head
        .as_bytes()
        .get(so.head_sent..)
        .filter(|r| !r.is_empty())
    {
        match transport.write_head(rest) {
            Io::Done(n) => so.head_sent += n,
            Io::WouldBlock => return Ok(false),
            other => return Err(other),
        }
    }
    while so.pipe.held() > 0 {
        match transport.splice_out(&mut so.pipe, usize::MAX) {
            Io::Done(_) => {}
            Io::WouldBlock => return Ok(false),
            outcome if is_refusal(&outcome) => so.pipe.read_out(&mut so.copied),
            other => return Err(other),
        }
    }
    while !so.copied.is_empty() {
        match transport.write(&so.copied) {
            Io::Done(n) => {
                so.copied.drain(..n.min(so.copied.len()));
            }
            Io::WouldBlock => return Ok(false),
            other => return Err(other),
        }
    }
    *slot = None;
    Ok(true)
}

/// A tunnel's run of spliced chunks: how many since were not worth it, and
/// the head length the next one likely has. A tunnel starts out of any
/// run (small requests and answers never pay for a peek); ordinary reads
/// of bulk size, or a partial chunk worth splicing, start one.
pub struct Streak {
    pub(crate) misses: u8,
    /// Ordinary reads of bulk size since the run ended.
    pub(crate) big_reads: u8,
    /// The head of a data chunk for the stream spliced last: read that
    /// much without peeking first. A guess that is wrong costs nothing but
    /// the copy: the bytes read are ordinary input.
    pub guess: Option<usize>,
}

impl SpliceOut {
    /// A chunk whose `head` goes out first, then the `pipe`'s bytes.
    pub(crate) fn new(head: DataHead, pipe: Lent) -> SpliceOut {
        SpliceOut {
            head,
            head_sent: 0,
            pipe,
            copied: Vec::new(),
        }
    }
}

/// Chunks in a row not worth splicing that end a run...
pub(crate) const MISSES: u8 = 4;
/// ...and ordinary reads of this size...
const BIG_READ: usize = 32 * 1024;
/// ...this many of which start looking again.
const BIG_READS: u8 = 4;

impl Default for Streak {
    fn default() -> Streak {
        Streak {
            misses: MISSES,
            big_reads: 0,
            guess: None,
        }
    }
}

impl Streak {
    /// A chunk whose head was `head_len` bytes long is being spliced.
    pub(crate) fn hit(&mut self, head_len: usize) {
        self.misses = 0;
        self.big_reads = 0;
        self.guess = Some(head_len);
    }

    /// Whether reads look for chunks to splice.
    pub(crate) fn on(&self) -> bool {
        self.misses < MISSES
    }

    /// An ordinary read of `n` bytes found nothing to splice: bulk-sized
    /// ones, that keep ending at chunk boundaries (so no partial chunk
    /// starts a run), start looking again.
    pub(crate) fn ordinary(&mut self, n: usize) {
        if self.on() || n < BIG_READ {
            return;
        }
        self.big_reads += 1;
        if self.big_reads >= BIG_READS {
            self.big_reads = 0;
            self.misses = 0;
        }
    }
}
