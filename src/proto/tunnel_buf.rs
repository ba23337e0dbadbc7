//! The tunnel core's byte queues (input and output): one contiguous,
//! initialised buffer with a read and a write offset, so the reactor can be
//! handed a slice to read a socket straight into, and frames can be decoded
//! or written from one slice. Owns no policy (sizes are the core's) and no
//! I/O. Test and core use only; the engine's pool may take over its storage
//! later (issue 12 item 6).

use super::super::frame::Out;

pub(crate) struct ByteQueue {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ByteQueue {
    pub(crate) fn with_capacity(n: usize) -> ByteQueue {
        ByteQueue {
            buf: vec![0; n],
            start: 0,
            end: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn data(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Moves the data to the front, so all free room is at the end.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Makes room for `n` more bytes after the data.
    pub(crate) fn reserve(&mut self, n: usize) {
        if self.buf.len() - self.end >= n {
            return;
        }
        self.compact();
        if self.buf.len() - self.end < n {
            self.grow_to((self.end + n).max(self.buf.len() * 2));
        }
    }

    /// Grows the buffer to `total` bytes in all (no more, unlike
    /// [`reserve`](Self::reserve), which at least doubles it), if smaller.
    pub(crate) fn grow_to(&mut self, total: usize) {
        if self.buf.len() < total {
            self.compact();
            // A fresh zeroed allocation (pages the kernel zeroes lazily) and
            // one copy of the data beat growing in place, which writes
            // every new byte.
            let mut grown = vec![0; total];
            if let (Some(dst), Some(src)) = (grown.get_mut(..self.end), self.buf.get(..self.end)) {
                dst.copy_from_slice(src);
            }
            self.buf = grown;
        }
    }

    /// Exactly `n` bytes of room after the data (grown if needed).
    pub(crate) fn space(&mut self, n: usize) -> &mut [u8] {
        self.reserve(n);
        let end = self.end;
        self.buf.get_mut(end..end + n).unwrap_or_default()
    }

    /// All the room after the data (no compaction, no growth): where the
    /// latest `space` was handed out.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        let end = self.end;
        self.buf.get_mut(end..).unwrap_or_default()
    }

    /// Room after the data with the data moved to the front first.
    pub(crate) fn spare_compacted(&mut self) -> &mut [u8] {
        self.compact();
        self.spare()
    }

    /// `n` bytes written into the room became data.
    pub(crate) fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Takes `len` bytes at `at` (relative to the data) out of the middle:
    /// a control chunk read ahead of queued data.
    pub(crate) fn remove(&mut self, at: usize, len: usize) {
        let from = self.start + at;
        let to = (from + len).min(self.end);
        if from >= to {
            return;
        }
        self.buf.copy_within(to..self.end, from);
        self.end -= to - from;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Gives back memory a burst grew the buffer to, once it is empty.
    pub(crate) fn shrink_when_empty(&mut self, keep: usize) {
        if self.is_empty() && self.buf.len() > keep {
            self.buf = vec![0; keep];
            self.start = 0;
            self.end = 0;
        }
    }
}

impl Out for ByteQueue {
    fn put(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        if let Some(dst) = self.space(n).get_mut(..n) {
            dst.copy_from_slice(bytes);
        }
        self.commit(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_grows_compacts_and_removes() {
        let mut q = ByteQueue::with_capacity(4);
        q.put(b"abcdef");
        assert_eq!(q.data(), b"abcdef");
        q.consume(2);
        q.remove(1, 2);
        assert_eq!(q.data(), b"cf");
        q.put(b"gh");
        assert_eq!(q.data(), b"cfgh");
        q.consume(4);
        assert!(q.is_empty());
        q.shrink_when_empty(2);
        assert_eq!(q.capacity(), 2);
    }

    #[test]
    fn grow_to_grows_to_exactly_that_and_keeps_the_data() {
        let mut q = ByteQueue::with_capacity(8);
        q.put(b"abcdefgh");
        q.consume(3);
        q.grow_to(10);
        assert_eq!((q.capacity(), q.data()), (10, &b"defgh"[..]));
        q.grow_to(4);
        assert_eq!(q.capacity(), 10, "never shrinks");
    }
}
