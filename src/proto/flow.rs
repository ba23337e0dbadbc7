//! Per-stream flow accounting with PageKite's SKB acknowledgements (protocol
//! doc §5.1). The sender counts what it read from its socket and stops while
//! too much is unacknowledged; the receiver counts what it wrote to its
//! socket and reports whole KiB. Pure arithmetic: the relay decides when to
//! read, write and send.

use std::time::{Duration, Instant};

/// The window a stream starts with. pagekite.py keeps about 48 KiB; the
/// sender alone chooses (peers only ever see SKB values), and more keeps one
/// stream from being capped at window/RTT.
pub const INITIAL_WINDOW: u64 = 256 * 1024;
/// How far a window may grow: about the bandwidth-delay product of a
/// gigabit link with 30 ms of round trip.
pub const MAX_WINDOW: u64 = 4 * 1024 * 1024;

/// The smallest opening of a window a sender uses while more than that is
/// unacknowledged ([`SendWindow::allowance`]); half the window if that is
/// less. Below the largest data chunk, so acknowledgements rounded down to
/// whole KiB still let full chunks out.
pub const SMALLEST_OPENING: u64 = 60 * 1024;

/// The most a receiver buffers for one stream before it decides the sender
/// ignores flow control. pagekite.py senders stay near 64 KiB; rkite's own
/// stay within [`MAX_WINDOW`].
pub const RECEIVE_LIMIT: usize = (MAX_WINDOW + 256 * 1024) as usize;

/// The sending side of one stream. The window starts at [`INITIAL_WINDOW`]
/// and doubles, up to [`MAX_WINDOW`], when the sender ran into it and the
/// receiver still acknowledged a whole window within two round trips. On a
/// link-limited path a window's round takes one round trip plus its sending
/// time, so this holds exactly while the window is below the bandwidth-delay
/// product. A reader slower than half of window/RTT takes longer, so a slow
/// or stalled reader never grows the window and costs at most the initial
/// one. The round trip is the smallest time seen from reading a byte to its
/// acknowledgement.
#[derive(Clone, Copy, Debug)]
pub struct SendWindow {
    read: u64,
    acked: u64,
    window: u64,
    min_rtt: Option<Duration>,
    /// A byte offset and when it was read, waiting for its acknowledgement.
    probe: Option<(u64, Instant)>,
    /// When the current round began and what was acknowledged then.
    round: Option<(Instant, u64)>,
    /// The window was exhausted during this round.
    hit: bool,
}

impl SendWindow {
    pub fn new(window: u64) -> SendWindow {
        SendWindow {
            read: 0,
            acked: 0,
            window,
            min_rtt: None,
            probe: None,
            round: None,
            hit: false,
        }
    }

    /// Bytes read and not yet acknowledged.
    pub fn unacked(&self) -> u64 {
        self.read.saturating_sub(self.acked)
    }

    /// Bytes that may be read from the source socket now. Unlike pagekite.py,
    /// which reads without limit until the first SKB arrives, the window
    /// applies from the start, so a receiver that never writes anything can't
    /// make the sender buffer without bound.
    ///
    /// Like TCP's sender-side silly-window avoidance, a small opening is
    /// held back while enough is in flight that an acknowledgement is sure
    /// to widen it: otherwise each SKB lets one chunk of its own size out,
    /// and a bulk stream settles at whatever size its receiver first wrote
    /// (47,600-byte chunks were seen on loopback), paying a chunk's calls
    /// and packets for each.
    pub fn allowance(&self) -> usize {
        let open = self.window.saturating_sub(self.unacked());
        // At most half the window, so more than `least` is in flight.
        let least = (self.window / 2).min(SMALLEST_OPENING);
        if open < least {
            return 0;
        }
        usize::try_from(open).unwrap_or(usize::MAX)
    }

    pub fn on_read(&mut self, n: usize, now: Instant) {
        // Time the first byte of this read: the last one may wait behind the
        // rest at a slow receiver, which is not the network's round trip.
        self.probe.get_or_insert((self.read + 1, now));
        self.read = self.read.saturating_add(n as u64);
        self.round.get_or_insert((now, self.acked));
        if self.allowance() == 0 {
            self.hit = true;
        }
    }

    /// Applies an SKB; returns true if it let a blocked sender read again.
    pub fn on_skb(&mut self, kib: u64, now: Instant) -> bool {
        let was_closed = self.allowance() == 0;
        self.acked = self.acked.max(kib.saturating_mul(1024));
        // SKB counts whole KiB, rounded down: once it covers the probe's
        // byte, that byte surely arrived (perhaps a little earlier).
        if let Some((offset, at)) = self.probe {
            if self.acked >= offset {
                let sample = now.saturating_duration_since(at);
                self.min_rtt = Some(self.min_rtt.map_or(sample, |m| m.min(sample)));
                self.probe = None;
            }
        }
        if let Some((start, acked_then)) = self.round {
            if self.acked >= acked_then + self.window {
                let quick = self
                    .min_rtt
                    .is_some_and(|rtt| now.saturating_duration_since(start) <= rtt * 2);
                if self.hit && quick && self.window < MAX_WINDOW {
                    self.window = (self.window * 2).min(MAX_WINDOW);
                }
                self.round = Some((now, self.acked));
                self.hit = false;
            }
        }
        was_closed && self.allowance() > 0
    }

    pub fn window(&self) -> u64 {
        self.window
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

    /// The SKB value to send when the peer must hear from this stream now,
    /// progress or not: what [`due`](Self::due) would say, else the last
    /// value again (`SKB: 0` if nothing was written yet). A repeated SKB
    /// changes nothing at rkite and pagekite.py; libpagekite grows its
    /// window by 1 KiB per SKB and ignores `SKB: 0`.
    pub fn due_or_repeat(&mut self) -> u64 {
        self.due().unwrap_or_else(|| {
            let kib = self.written / 1024;
            self.reported_kib = Some(kib);
            kib
        })
    }

    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Takes back bytes that were counted but were not stream data.
    pub fn forget(&mut self, n: u64) {
        self.written = self.written.saturating_sub(n);
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests need a base instant
mod tests {
    use super::*;

    #[test]
    fn window_closes_and_reopens() {
        let now = Instant::now();
        let mut w = SendWindow::new(4096);
        assert_eq!(w.allowance(), 4096);
        w.on_read(4096, now);
        assert_eq!(w.allowance(), 0);
        assert!(!w.on_skb(0, now));
        assert!(w.on_skb(2, now));
        assert_eq!(w.window(), 4096, "half the window still unread: no growth");
        assert_eq!(w.allowance(), 2048);
        // Old or repeated acknowledgements never shrink what was granted.
        assert!(!w.on_skb(1, now));
        assert_eq!(w.allowance(), 2048);
        w.on_read(1000, now);
        assert_eq!(w.allowance(), 0, "1,048 open but 3,048 in flight: wait");
        assert!(w.on_skb(3, now));
        assert_eq!(w.allowance(), 4096 - (5096 - 3072));
    }

    #[test]
    fn small_openings_wait_for_a_full_chunk_while_acks_are_due() {
        let now = Instant::now();
        let mut w = SendWindow::new(INITIAL_WINDOW);
        w.on_read(INITIAL_WINDOW as usize, now);
        // The receiver wrote 47 KiB: not opening enough for a full chunk.
        assert!(!w.on_skb(47, now));
        assert_eq!(w.allowance(), 0);
        // Another 16 KiB written: a chunk's worth is open.
        assert!(w.on_skb(63, now));
        assert_eq!(w.allowance(), 63 * 1024);
        // Half a small window is enough.
        let mut w = SendWindow::new(4096);
        w.on_read(4096, now);
        assert!(w.on_skb(2, now));
        assert_eq!(w.allowance(), 2048);
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
    fn repeats_on_demand_and_never_skips_progress() {
        let mut a = AckCounter::default();
        assert_eq!(a.due_or_repeat(), 0, "SKB: 0 before anything was written");
        assert_eq!(a.due(), None);
        a.on_written(300);
        assert_eq!(a.due_or_repeat(), 0);
        a.on_written(2048);
        assert_eq!(
            a.due_or_repeat(),
            2,
            "progress is reported, not the old value"
        );
        assert_eq!(a.due(), None, "and not again");
        assert_eq!(a.due_or_repeat(), 2);
        a.on_written(1024);
        assert_eq!(a.due(), Some(3));
    }

    /// A sender and a receiver joined by a link with `delay` ticks each way
    /// and `link` bytes per tick, the receiver's socket taking `reader` bytes
    /// per tick; returns the bytes delivered in the second half of `ticks`
    /// and the final window.
    fn simulate(delay: usize, link: u64, reader: u64, ticks: usize) -> (u64, u64) {
        let t0 = Instant::now();
        let at = |t: usize| t0 + Duration::from_millis(t as u64);
        let mut w = SendWindow::new(INITIAL_WINDOW);
        let mut a = AckCounter::default();
        let mut to_receiver = vec![0u64; ticks + delay + 1];
        let mut to_sender: Vec<Option<u64>> = vec![None; ticks + delay + 1];
        let mut queued = 0u64; // arrived at the receiver, not yet written
        let mut delivered_late = 0;
        for t in 0..ticks {
            if let Some(kib) = to_sender[t] {
                w.on_skb(kib, at(t));
            }
            let n = (w.allowance() as u64).min(link);
            if n > 0 {
                w.on_read(n as usize, at(t));
            }
            to_receiver[t + delay] += n;
            queued += to_receiver[t];
            let written = queued.min(reader);
            queued -= written;
            a.on_written(written as usize);
            if t >= ticks / 2 {
                delivered_late += written;
            }
            if let Some(kib) = a.due() {
                to_sender[t + delay] = Some(kib);
            }
        }
        (delivered_late, w.window())
    }

    #[test]
    fn windows_grow_to_fill_a_long_fat_link() {
        // 50 ticks each way, 64 KiB per tick: a BDP of 6.4 MiB, far over
        // the initial window; the window grows to its maximum and the link
        // carries window/RTT instead of being stuck at 256 KiB/RTT.
        let (ticks, link) = (4000, 64 * 1024);
        let (bytes, window) = simulate(50, link, u64::MAX, ticks);
        assert_eq!(window, MAX_WINDOW);
        let fixed_rate = INITIAL_WINDOW as f64 / 100.0;
        let rate = bytes as f64 / (ticks / 2) as f64;
        assert!(
            rate > 10.0 * fixed_rate,
            "{rate} bytes/tick vs {fixed_rate} with a fixed window"
        );
        assert!(rate >= 0.6 * MAX_WINDOW as f64 / 100.0);
    }

    #[test]
    fn a_slow_reader_never_grows_the_window() {
        // A reader taking well under half of what the window allows per
        // round trip (256 KiB / 100 ticks) is the limit, not the window.
        let (_, window) = simulate(50, 64 * 1024, 1024, 4000);
        assert_eq!(window, INITIAL_WINDOW);
        let (_, window) = simulate(1, 64 * 1024, 100, 4000);
        assert_eq!(window, INITIAL_WINDOW);
    }

    #[test]
    fn short_links_do_not_need_big_windows() {
        // One tick each way: everything flows well inside the initial window.
        let (bytes, window) = simulate(1, 16 * 1024, u64::MAX, 2000);
        assert_eq!(bytes, 16 * 1024 * 1000);
        assert_eq!(window, INITIAL_WINDOW);
    }

    #[test]
    fn sender_and_receiver_never_deadlock() {
        // Whatever the write sizes, once the receiver has written all that
        // the sender read, the sender may read again.
        for chunk in [1usize, 100, 1023, 1024, 1025, 4096, 16384] {
            let mut w = SendWindow::new(INITIAL_WINDOW);
            let mut a = AckCounter::default();
            let now = Instant::now();
            for _ in 0..2000 {
                let n = w.allowance().min(chunk);
                assert!(n > 0, "stalled with chunk {chunk}");
                w.on_read(n, now);
                a.on_written(n);
                if let Some(kib) = a.due() {
                    w.on_skb(kib, now);
                }
            }
        }
    }
}
