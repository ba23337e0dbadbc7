//! `Buf`: a linear byte buffer with a consumed head and a filled tail, so a
//! parser sees one contiguous slice and a flush is one `write`. Space behind
//! the tail is handed out for in-place reads (the relay reads socket data
//! straight into a frame slot here). It compacts by moving the live bytes to
//! the front when that frees enough room, and grows only when asked to, up to
//! whatever limit its owner enforces. It knows nothing about sockets.
//!
//! `Pool`: the engine's buffer pool. It owns the `--buffers` budget, counts
//! the bytes live buffers hold (what the budget limits: a new connection is
//! refused while it is over, instead of memory growing until a router runs
//! out), keeps empty buffers for reuse up to [`POOL_BYTES`], and keeps
//! statistics for the stats line and the status file. There are no statics:
//! each engine (and each test) has its own pool. A counted `Buf` carries a
//! handle to its pool (an `Rc`, in the place of a flag, so a `Buf` stays
//! four words) and gives its bytes back when dropped. That was chosen over
//! passing `&mut Pool` to every place that makes, grows or drops a buffer:
//! buffers are dropped wherever a connection ends, and a missed call there
//! would leak budget silently, while a handle can't be forgotten; the
//! reactor is one thread, so `Rc` and `Cell`s are all it needs, and the cost
//! is a reference count touched when a buffer is made or dropped, never per
//! chunk. The pool must not hand its counters to other threads (it is not
//! `Send`) and must not allocate on the data path.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::proto::frame::Out;

/// The smallest buffer the pool hands out: what a stream needs to hold one
/// chunk its socket didn't take.
pub const POOLED: usize = 16 * 1024;
/// Bytes of empty buffers kept for reuse; beyond this they are freed.
pub const POOL_BYTES: usize = 1024 * 1024;

/// A handle to the engine's buffer pool; clones share it.
#[derive(Clone)]
pub struct Pool(Rc<Shared>);

struct Shared {
    /// `--buffers`: a Cell because SIGHUP may change it.
    budget: Cell<usize>,
    /// Bytes held by live counted buffers (their capacity: that is the
    /// memory) and by what connections report through [`Pool::count_held`].
    held: Cell<usize>,
    /// The most `held` has been.
    peak: Cell<usize>,
    /// Bytes of the empty buffers in `free`.
    pooled: Cell<usize>,
    allocations: Cell<u64>,
    reuses: Cell<u64>,
    frees: Cell<u64>,
    /// Empty buffers for reuse, so a stream that is briefly blocked doesn't
    /// allocate and free a buffer each time. Kept as bare vectors: a `Buf`
    /// here would hold a handle to the pool that holds it.
    free: RefCell<Vec<Vec<u8>>>,
}

/// What the pool has done, for the stats line and the status file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub budget: usize,
    /// Bytes held by connections (the pool's empty buffers are not).
    pub held: usize,
    /// Bytes of empty buffers waiting for reuse.
    pub pooled: usize,
    /// The most `held` has been.
    pub peak: usize,
    /// Buffers made with fresh memory.
    pub allocations: u64,
    /// Buffers taken from the pool instead.
    pub reuses: u64,
    /// Buffers whose memory went back to the system (dropped, or recycled
    /// while the pool held its share).
    pub frees: u64,
}

impl Pool {
    pub fn new(budget: usize) -> Pool {
        Pool(Rc::new(Shared {
            budget: Cell::new(budget),
            held: Cell::new(0),
            peak: Cell::new(0),
            pooled: Cell::new(0),
            allocations: Cell::new(0),
            reuses: Cell::new(0),
            frees: Cell::new(0),
            free: RefCell::new(Vec::new()),
        }))
    }

    pub fn budget(&self) -> usize {
        self.0.budget.get()
    }

    /// A reloaded configuration's `--buffers`.
    pub fn set_budget(&self, budget: usize) {
        self.0.budget.set(budget);
    }

    /// Bytes held by connections: what `--buffers` limits (the pool's
    /// empty buffers are free for the next taker).
    pub fn held(&self) -> usize {
        self.0.held.get()
    }

    /// With `extra` bytes held elsewhere (the frontend's handshake state),
    /// the total if it is over the budget.
    pub fn over_budget(&self, extra: usize) -> Option<usize> {
        let total = self.held().saturating_add(extra);
        (total > self.budget()).then_some(total)
    }

    /// Memory held outside `Buf`s (the request guard's head buffers) changed
    /// from `old` to `new` bytes: counted like buffers, so `--buffers` sees it.
    pub fn count_held(&self, old: usize, new: usize) {
        if new > old {
            self.more(new - old);
        } else {
            self.less(old - new);
        }
    }

    pub fn stats(&self) -> PoolStats {
        let s = &self.0;
        PoolStats {
            budget: s.budget.get(),
            held: s.held.get(),
            pooled: s.pooled.get(),
            peak: s.peak.get(),
            allocations: s.allocations.get(),
            reuses: s.reuses.get(),
            frees: s.frees.get(),
        }
    }

    /// A new counted buffer of `capacity` zeroed bytes. Zeroing happens
    /// once, here, so reads can target the spare space without unsafe code.
    pub fn buf(&self, capacity: usize) -> Buf {
        self.0.allocations.set(self.0.allocations.get() + 1);
        self.more(capacity);
        Buf {
            data: vec![0; capacity],
            head: 0,
            tail: 0,
            pool: Some(self.clone()),
        }
    }

    /// An empty buffer of at least `min` bytes, from the pool when one
    /// fits. A stream that a slow reader keeps blocking gets the same grown
    /// buffer back each time instead of allocating and growing it again.
    pub fn take(&self, min: usize) -> Buf {
        let reused = {
            let mut free = self.0.free.borrow_mut();
            free.iter()
                .enumerate()
                .filter(|(_, b)| b.len() >= min)
                .max_by_key(|(_, b)| b.len())
                .map(|(i, _)| i)
                .map(|best| free.swap_remove(best))
        };
        let Some(data) = reused else {
            return self.buf(min.max(POOLED));
        };
        let s = &self.0;
        s.pooled.set(s.pooled.get().saturating_sub(data.len()));
        s.reuses.set(s.reuses.get() + 1);
        self.more(data.len());
        Buf {
            data,
            head: 0,
            tail: 0,
            pool: Some(self.clone()),
        }
    }

    /// A buffer's memory, no longer held: kept for reuse, or freed when the
    /// pool already holds its share.
    fn give_back(&self, data: Vec<u8>) {
        let s = &self.0;
        self.less(data.len());
        if s.pooled.get() + data.len() <= POOL_BYTES {
            s.pooled.set(s.pooled.get() + data.len());
            s.free.borrow_mut().push(data);
        } else {
            s.frees.set(s.frees.get() + 1);
        }
    }

    fn more(&self, bytes: usize) {
        let s = &self.0;
        let held = s.held.get() + bytes;
        s.held.set(held);
        if held > s.peak.get() {
            s.peak.set(held);
        }
    }

    fn less(&self, bytes: usize) {
        let s = &self.0;
        debug_assert!(bytes <= s.held.get());
        s.held.set(s.held.get().saturating_sub(bytes));
    }
}

pub struct Buf {
    data: Vec<u8>,
    head: usize,
    tail: usize,
    /// The pool it is counted in; none for an uncounted buffer.
    pool: Option<Pool>,
}

impl Buf {
    /// A buffer left out of the budget: a tunnel's input buffer, which only
    /// holds chunks being parsed and is bounded per tunnel (what `--buffers`
    /// must stop is growth with the number of streams and slow readers), and
    /// the `--client` helper's, which runs no engine.
    pub fn uncounted(capacity: usize) -> Buf {
        Buf {
            data: vec![0; capacity],
            head: 0,
            tail: 0,
            pool: None,
        }
    }

    fn account_more(&self, bytes: usize) {
        if let Some(pool) = &self.pool {
            pool.more(bytes);
        }
    }

    fn account_less(&self, bytes: usize) {
        if let Some(pool) = &self.pool {
            pool.less(bytes);
        }
    }

    /// Returns an emptied buffer to its pool (which frees it when it already
    /// holds its share of memory); an uncounted buffer is just freed.
    pub fn recycle(mut self) {
        if let Some(pool) = self.pool.take() {
            pool.give_back(std::mem::take(&mut self.data));
        }
    }

    /// Gives memory back once the buffer is empty and bigger than `keep`
    /// (a burst grew it; an idle connection should not hold the peak).
    pub fn shrink_when_empty(&mut self, keep: usize) {
        if self.is_empty() && self.data.len() > keep {
            self.account_less(self.data.len() - keep);
            self.data = vec![0; keep];
            self.head = 0;
            self.tail = 0;
        }
    }

    pub fn len(&self) -> usize {
        self.tail - self.head
    }

    pub fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// The filled bytes.
    pub fn data(&self) -> &[u8] {
        &self.data[self.head..self.tail]
    }

    /// Marks `n` filled bytes as used.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.head += n.min(self.len());
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
    }

    /// Makes at least `n` contiguous bytes free behind the tail, compacting
    /// first and growing only if that is not enough.
    pub fn reserve(&mut self, n: usize) {
        if self.data.len() - self.tail >= n {
            return;
        }
        self.compact();
        if self.data.len() - self.tail < n {
            let want = (self.tail + n).max(self.data.len() * 2);
            self.account_more(want - self.data.len());
            // A fresh zeroed allocation (pages the kernel zeroes lazily) and
            // one copy of the data beat growing in place, which writes every
            // new byte (byte by byte at opt-level "z"): a stream queue that
            // drains and refills regrows to megabytes each time.
            let mut grown = vec![0; want];
            if let (Some(dst), Some(src)) = (grown.get_mut(..self.tail), self.data.get(..self.tail))
            {
                dst.copy_from_slice(src);
            }
            self.data = grown;
        }
    }

    /// Moves the filled bytes to the front.
    pub fn compact(&mut self) {
        if self.head > 0 {
            self.data.copy_within(self.head..self.tail, 0);
            self.tail -= self.head;
            self.head = 0;
        }
    }

    /// Free bytes behind the tail, without compacting.
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.data[self.tail..]
    }

    /// Free bytes behind the tail, compacting if the head has advanced.
    pub fn space_compacted(&mut self) -> &mut [u8] {
        if self.head > 0 {
            self.compact();
        }
        &mut self.data[self.tail..]
    }

    /// Marks `n` bytes of [`Buf::space`] as filled.
    pub fn commit(&mut self, n: usize) {
        debug_assert!(self.tail + n <= self.data.len());
        self.tail = (self.tail + n).min(self.data.len());
    }

    /// Appends bytes, growing if needed.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        self.data[self.tail..self.tail + bytes.len()].copy_from_slice(bytes);
        self.tail += bytes.len();
    }

    /// The filled bytes from offset `from` (relative to the head) on, mutably:
    /// used to fill in a frame header after its body was read in place.
    pub fn filled_mut(&mut self, from: usize, len: usize) -> &mut [u8] {
        let start = self.head + from;
        &mut self.data[start..start + len]
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.less(self.data.len());
            pool.0.frees.set(pool.0.frees.get() + 1);
        }
    }
}

impl Out for Buf {
    fn put(&mut self, bytes: &[u8]) {
        self.extend(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_consume_compact_grow() {
        let mut b = Buf::uncounted(8);
        b.extend(b"abcdef");
        b.consume(4);
        assert_eq!(b.data(), b"ef");
        b.reserve(5);
        assert_eq!(b.data(), b"ef");
        assert_eq!(b.capacity(), 8, "compaction must be enough");
        b.space()[..3].copy_from_slice(b"ghi");
        b.commit(3);
        assert_eq!(b.data(), b"efghi");
        b.extend(b"0123456789");
        assert_eq!(b.data(), b"efghi0123456789");
        assert!(b.capacity() >= 15);
        let n = b.len();
        b.consume(n);
        assert!(b.is_empty());
        assert_eq!(b.space().len(), b.capacity());
    }

    #[test]
    fn a_buf_stays_small() {
        // The pool handle takes the place of a flag: a Buf is four words.
        assert_eq!(
            std::mem::size_of::<Buf>(),
            std::mem::size_of::<Vec<u8>>() + 3 * std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn memory_is_counted_and_returned() {
        let pool = Pool::new(usize::MAX);
        let mut b = pool.buf(1000);
        assert_eq!(pool.held(), 1000);
        b.extend(&[1; 3000]);
        assert!(b.capacity() >= 3000);
        assert_eq!(pool.held(), b.capacity(), "growth is counted");
        let grown = b.capacity();
        b.consume(3000);
        b.shrink_when_empty(100);
        assert_eq!(b.capacity(), 100);
        assert_eq!(pool.held(), 100, "shrinking gives memory back");
        drop(b);
        assert_eq!(pool.held(), 0);
        let st = pool.stats();
        assert_eq!((st.peak, st.allocations, st.frees), (grown, 1, 1));
        let free = Buf::uncounted(500);
        assert_eq!(pool.held(), 0, "an uncounted buffer is not the pool's");
        free.recycle();
        assert_eq!(pool.stats().pooled, 0);
    }

    #[test]
    fn pools_do_not_see_each_other() {
        let a = Pool::new(usize::MAX);
        let b = Pool::new(usize::MAX);
        let in_a = a.buf(4096);
        let mut in_b = b.take(10);
        in_b.extend(&[7; 100]);
        a.count_held(0, 50);
        assert_eq!(a.held(), 4096 + 50);
        assert_eq!(b.held(), POOLED);
        in_b.consume(100);
        in_b.recycle();
        assert_eq!((b.held(), b.stats().pooled), (0, POOLED));
        assert_eq!(a.stats().pooled, 0, "recycled into its own pool only");
        drop(in_a);
        a.count_held(50, 0);
        assert_eq!(a.held(), 0);
        let again = a.take(10);
        assert_eq!(a.stats().reuses, 0, "a has nothing pooled to reuse");
        drop(again);
    }

    #[test]
    fn the_budget_is_reached_and_released() {
        let pool = Pool::new(64 * 1024);
        let first = pool.buf(32 * 1024);
        assert_eq!(pool.over_budget(0), None);
        assert_eq!(pool.over_budget(40 * 1024), Some(72 * 1024), "extra counts");
        let second = pool.take(40 * 1024);
        assert_eq!(pool.over_budget(0), Some(72 * 1024));
        second.recycle();
        assert_eq!(pool.over_budget(0), None, "pooled bytes are free to take");
        pool.count_held(0, 40 * 1024);
        assert_eq!(pool.over_budget(0), Some(72 * 1024), "guard heads count");
        pool.count_held(40 * 1024, 0);
        drop(first);
        assert_eq!(
            pool.over_budget(64 * 1024),
            None,
            "at the budget is not over"
        );
        pool.set_budget(1024);
        assert_eq!(pool.over_budget(2048), Some(2048));
        assert_eq!(pool.stats().budget, 1024);
    }

    #[test]
    fn recycling_keeps_at_most_pool_bytes() {
        let pool = Pool::new(usize::MAX);
        let n = POOL_BYTES / POOLED + 3;
        let bufs: Vec<Buf> = (0..n).map(|_| pool.take(1)).collect();
        assert_eq!(pool.held(), n * POOLED);
        for b in bufs {
            b.recycle();
        }
        let st = pool.stats();
        assert_eq!(st.held, 0);
        assert_eq!(st.pooled, POOL_BYTES, "kept up to the cap");
        assert_eq!(st.frees, 3, "the rest went back to the system");
        // The biggest fit is reused; a request none fits is a new buffer.
        let big = pool.take(POOLED + 1);
        assert_eq!(pool.stats().allocations, n as u64 + 1);
        assert_eq!(big.capacity(), POOLED + 1);
        let small = pool.take(100);
        assert_eq!(small.capacity(), POOLED);
        let st = pool.stats();
        assert_eq!((st.reuses, st.pooled), (1, POOL_BYTES - POOLED));
        big.recycle();
        assert_eq!(pool.stats().frees, 4, "full again: freed");
        drop(small);
    }

    #[test]
    fn stats_count_every_buffer_once() {
        let pool = Pool::new(usize::MAX);
        let a = pool.take(1);
        let b = pool.buf(100);
        a.recycle();
        let c = pool.take(1);
        drop(b);
        drop(c);
        let st = pool.stats();
        assert_eq!(
            (
                st.allocations,
                st.reuses,
                st.frees,
                st.held,
                st.pooled,
                st.peak
            ),
            (2, 1, 2, 0, 0, POOLED + 100)
        );
        // Every buffer ever made is live, pooled or freed.
        assert_eq!(st.allocations, st.frees + pool.0.free.borrow().len() as u64);
    }

    #[test]
    fn in_place_header_fill() {
        let mut b = Buf::uncounted(32);
        b.extend(b"xx");
        b.consume(1);
        let start = b.len();
        b.reserve(4);
        b.space()[..4].copy_from_slice(b"__ab");
        b.commit(4);
        b.filled_mut(start, 2).copy_from_slice(b"HH");
        assert_eq!(b.data(), b"xHHab");
    }
}
