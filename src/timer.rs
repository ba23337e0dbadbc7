//! Deadline timers for the reactor: a min-heap of `(deadline, key)` with lazy
//! cancellation. Arming is O(log n) and cancelling is free: the owner of a
//! key remembers the deadline it wants, and an entry that pops with a
//! deadline the owner no longer wants is simply ignored. It never reads the
//! clock; `now` is always passed in.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Timers a connection can own; at most one deadline of each kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKind {
    /// Give up on a connection that makes no progress (sniffing, replies,
    /// handshakes, local connects).
    Deadline = 0,
    /// Tunnel keepalive check.
    Keepalive = 1,
    /// Retry I/O after ENOBUFS/ENOMEM.
    Starved = 2,
}

const TIMER_KINDS: usize = 3;

/// Per-connection armed deadlines (lazy cancellation: a popped entry counts
/// only if it still matches).
#[derive(Clone, Copy, Debug, Default)]
pub struct Deadlines([Option<Instant>; TIMER_KINDS]);

impl Deadlines {
    pub fn get(&self, kind: TimerKind) -> Option<Instant> {
        self.0[kind as usize]
    }
    pub fn clear(&mut self, kind: TimerKind) {
        self.0[kind as usize] = None;
    }
    /// Records the deadline wanted for `kind` (the caller arms the queue).
    pub fn set(&mut self, kind: TimerKind, at: Instant) {
        self.0[kind as usize] = Some(at);
    }
}

pub struct TimerQueue<K: Ord + Copy> {
    heap: BinaryHeap<Reverse<(Instant, u64, K)>>,
    seq: u64,
}

impl<K: Ord + Copy> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<K: Ord + Copy> TimerQueue<K> {
    pub fn arm(&mut self, at: Instant, key: K) {
        // The sequence number keeps equal deadlines in arming order.
        self.seq = self.seq.wrapping_add(1);
        self.heap.push(Reverse((at, self.seq, key)));
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pops one entry due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => {
                self.heap.pop().map(|Reverse((at, _, key))| (at, key))
            }
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Drops entries for which `stale` says nobody waits any more; called
    /// now and then so long-lived churn can't grow the heap without bound.
    pub fn retain(&mut self, mut wanted: impl FnMut(Instant, K) -> bool) {
        let entries = std::mem::take(&mut self.heap).into_vec();
        self.heap = entries
            .into_iter()
            .filter(|Reverse((at, _, key))| wanted(*at, *key))
            .collect();
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests need a base instant
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        q.arm(t0 + Duration::from_secs(3), 'c');
        q.arm(t0 + Duration::from_secs(1), 'a');
        q.arm(t0 + Duration::from_secs(1), 'b');
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(q.pop_due(t0), None);
        let due = t0 + Duration::from_secs(2);
        assert_eq!(q.pop_due(due).map(|e| e.1), Some('a'));
        assert_eq!(q.pop_due(due).map(|e| e.1), Some('b'));
        assert_eq!(q.pop_due(due), None);
        q.retain(|_, k| k != 'c');
        assert!(q.is_empty());
    }
}
