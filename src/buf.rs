//! `Buf`: a linear byte buffer with a consumed head and a filled tail, so a
//! parser sees one contiguous slice and a flush is one `write`. Space behind
//! the tail is handed out for in-place reads (the relay reads socket data
//! straight into a frame slot here). It compacts by moving the live bytes to
//! the front when that frees enough room, and grows only when asked to, up to
//! whatever limit its owner enforces. It knows nothing about sockets.
//!
//! Every buffer's memory is counted in one process-wide total, which is what
//! `--buffers` limits: a new connection is refused while the total is over
//! budget, instead of memory growing until a router runs out.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::proto::frame::Out;

/// Bytes held by all live buffers (their capacity: that is the memory).
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

/// The smallest buffer the pool hands out: what a stream needs to hold one
/// chunk its socket didn't take.
pub const POOLED: usize = 16 * 1024;
/// Bytes of empty buffers kept for reuse; beyond this they are freed.
const POOL_BYTES: usize = 1024 * 1024;

thread_local! {
    /// Empty buffers for reuse, so a stream that is briefly blocked doesn't
    /// allocate and free a buffer each time (the reactor is one thread).
    static POOL: std::cell::RefCell<Vec<Buf>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Bytes of empty buffers waiting in the pool.
static POOLED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes held by all buffers of the process right now, pooled ones included.
pub fn allocated() -> usize {
    ALLOCATED.load(Ordering::Relaxed)
}

/// Memory held outside `Buf`s (the request guard's head buffers) changed
/// from `old` to `new` bytes: counted like buffers, so `--buffers` sees it.
pub fn count_held(old: usize, new: usize) {
    if new > old {
        ALLOCATED.fetch_add(new - old, Ordering::Relaxed);
    } else {
        ALLOCATED.fetch_sub(old - new, Ordering::Relaxed);
    }
}

/// Bytes held by connections: what `--buffers` limits (the pool's empty
/// buffers are free for the next taker).
pub fn held() -> usize {
    allocated().saturating_sub(POOLED_BYTES.load(Ordering::Relaxed))
}

pub struct Buf {
    data: Vec<u8>,
    head: usize,
    tail: usize,
    /// Counted in the process-wide total.
    counted: bool,
}

impl Buf {
    /// A buffer of `capacity` zeroed bytes. Zeroing happens once, here, so
    /// reads can target the spare space without unsafe code.
    pub fn with_capacity(capacity: usize) -> Buf {
        ALLOCATED.fetch_add(capacity, Ordering::Relaxed);
        Buf {
            data: vec![0; capacity],
            head: 0,
            tail: 0,
            counted: true,
        }
    }

    /// A buffer left out of the total: a tunnel's input buffer, which only
    /// holds chunks being parsed and is bounded per tunnel (what `--buffers`
    /// must stop is growth with the number of streams and slow readers).
    pub fn uncounted(capacity: usize) -> Buf {
        Buf {
            data: vec![0; capacity],
            head: 0,
            tail: 0,
            counted: false,
        }
    }

    fn account_more(&self, bytes: usize) {
        if self.counted {
            ALLOCATED.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    fn account_less(&self, bytes: usize) {
        if self.counted {
            ALLOCATED.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// An empty buffer of at least `min` bytes, from the pool when one
    /// fits. A stream that a slow reader keeps blocking gets the same grown
    /// buffer back each time instead of allocating and growing it again.
    pub fn pooled(min: usize) -> Buf {
        let reused = POOL.with(|p| {
            let mut pool = p.borrow_mut();
            let best = pool
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= min)
                .max_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i)?;
            let buf = pool.swap_remove(best);
            POOLED_BYTES.fetch_sub(buf.capacity(), Ordering::Relaxed);
            Some(buf)
        });
        reused.unwrap_or_else(|| Buf::with_capacity(min.max(POOLED)))
    }

    /// Returns an emptied buffer to the pool, or frees it when the pool
    /// already holds its share of memory.
    pub fn recycle(mut self) {
        if !self.counted {
            return;
        }
        self.head = 0;
        self.tail = 0;
        POOL.with(|p| {
            let mut pool = p.borrow_mut();
            let pooled = POOLED_BYTES.load(Ordering::Relaxed);
            if pooled + self.capacity() <= POOL_BYTES {
                POOLED_BYTES.fetch_add(self.capacity(), Ordering::Relaxed);
                pool.push(self);
            }
        });
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
            self.data.resize(want, 0);
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
        self.account_less(self.data.len());
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
        let mut b = Buf::with_capacity(8);
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
    fn memory_is_counted_and_returned() {
        // Other tests allocate concurrently: compare with what this one holds.
        let mut b = Buf::with_capacity(1000);
        assert!(allocated() >= 1000);
        b.extend(&[1; 3000]);
        assert!(b.capacity() >= 3000 && allocated() >= b.capacity());
        b.consume(3000);
        b.shrink_when_empty(100);
        assert_eq!(b.capacity(), 100);
        drop(b);
    }

    #[test]
    fn in_place_header_fill() {
        let mut b = Buf::with_capacity(32);
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
