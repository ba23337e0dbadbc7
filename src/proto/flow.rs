//! Per-stream flow accounting with PageKite's SKB acknowledgements (protocol
//! doc §5.1). The sender counts what it read from its socket and stops while
//! too much is unacknowledged; the receiver counts what it wrote to its
//! socket and reports whole KiB. Pure arithmetic: the relay decides when to
//! read, write and send.

/// Bytes a sender may have unacknowledged per stream. pagekite.py keeps about
/// 48 KiB; the sender alone chooses, and a larger window keeps one stream
/// from being capped at window/RTT. Peers only ever see SKB values.
pub const DEFAULT_WINDOW: u64 = 256 * 1024;

/// The most a receiver buffers for one stream before it decides the sender
/// ignores flow control. pagekite.py senders stay near 64 KiB; rkite's own
/// stay within [`DEFAULT_WINDOW`].
pub const RECEIVE_LIMIT: usize = 2 * DEFAULT_WINDOW as usize;

/// The sending side of one stream.
#[derive(Clone, Copy, Debug)]
pub struct SendWindow {
    read: u64,
    acked_kib: u64,
    window: u64,
}

impl SendWindow {
    pub fn new(window: u64) -> SendWindow {
        SendWindow {
            read: 0,
            acked_kib: 0,
            window,
        }
    }

    /// Bytes that may be read from the source socket now. Unlike pagekite.py,
    /// which reads without limit until the first SKB arrives, the window
    /// applies from the start, so a receiver that never writes anything can't
    /// make the sender buffer without bound.
    pub fn allowance(&self) -> usize {
        let unacked = self
            .read
            .saturating_sub(self.acked_kib.saturating_mul(1024));
        usize::try_from(self.window.saturating_sub(unacked)).unwrap_or(usize::MAX)
    }

    pub fn on_read(&mut self, n: usize) {
        self.read = self.read.saturating_add(n as u64);
    }

    /// Applies an SKB; returns true if it let the sender read again.
    pub fn on_skb(&mut self, kib: u64) -> bool {
        let was_closed = self.allowance() == 0;
        self.acked_kib = self.acked_kib.max(kib);
        was_closed && self.allowance() > 0
    }

    pub fn bytes_read(&self) -> u64 {
        self.read
    }
}

/// The receiving side of one stream: what to acknowledge.
#[derive(Clone, Copy, Debug, Default)]
pub struct AckCounter {
    written: u64,
    reported_kib: Option<u64>,
}

impl AckCounter {
    pub fn on_written(&mut self, n: usize) {
        self.written = self.written.saturating_add(n as u64);
    }

    /// The SKB value to send now, if any: the first time anything was written
    /// (so small replies are acknowledged with `SKB: 0`, as pagekite.py does)
    /// and whenever another whole KiB has been written.
    pub fn due(&mut self) -> Option<u64> {
        let kib = self.written / 1024;
        let due = match self.reported_kib {
            None => self.written > 0,
            Some(last) => kib > last,
        };
        due.then(|| {
            self.reported_kib = Some(kib);
            kib
        })
    }

    pub fn bytes_written(&self) -> u64 {
        self.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_closes_and_reopens() {
        let mut w = SendWindow::new(4096);
        assert_eq!(w.allowance(), 4096);
        w.on_read(4096);
        assert_eq!(w.allowance(), 0);
        assert!(!w.on_skb(0));
        assert!(w.on_skb(2));
        assert_eq!(w.allowance(), 2048);
        // Old or repeated acknowledgements never shrink what was granted.
        assert!(!w.on_skb(1));
        assert_eq!(w.allowance(), 2048);
        w.on_read(1000);
        assert_eq!(w.allowance(), 1048);
    }

    #[test]
    fn acks_like_pagekite() {
        let mut a = AckCounter::default();
        assert_eq!(a.due(), None);
        a.on_written(300);
        assert_eq!(a.due(), Some(0));
        assert_eq!(a.due(), None);
        a.on_written(700);
        assert_eq!(a.due(), None);
        a.on_written(24);
        assert_eq!(a.due(), Some(1));
        a.on_written(16 * 1024);
        assert_eq!(a.due(), Some(17));
    }

    #[test]
    fn sender_and_receiver_never_deadlock() {
        // Whatever the write sizes, once the receiver has written all that
        // the sender read, the sender may read again.
        for chunk in [1usize, 100, 1023, 1024, 1025, 4096, 16384] {
            let mut w = SendWindow::new(DEFAULT_WINDOW);
            let mut a = AckCounter::default();
            for _ in 0..2000 {
                let n = w.allowance().min(chunk);
                assert!(n > 0, "stalled with chunk {chunk}");
                w.on_read(n);
                a.on_written(n);
                if let Some(kib) = a.due() {
                    w.on_skb(kib);
                }
            }
        }
    }
}
