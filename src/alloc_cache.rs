//! The global allocator of the static musl build: musl's own allocator
//! behind a small cache of freed blocks, sorted into size classes. musl's
//! mallocng gives a size class's memory back to the kernel as soon as its
//! last block is freed, so a connection that allocates a few KiB and frees
//! them on close costs an `mmap`, a `munmap` and fresh page faults every
//! time (bench/profile.md measured a quarter of the frontend's CPU per new
//! connection there). Here a freed block of at most [`MAX_SMALL`] bytes
//! waits in its class's free list for the next allocation of that class,
//! up to [`CLASS_BYTES`] per class and [`CACHE_BYTES`] in all; beyond that,
//! and for anything larger or over-aligned, musl is called as before. So
//! memory still goes back, and the cache never holds more than its cap.
//!
//! It must not allocate, panic or log (it *is* the allocator), and it keeps
//! no per-thread state: a spin lock guards the lists, held for a few pointer
//! moves, contended only by the resolver thread. `main.rs` installs it for
//! musl targets only; glibc's allocator needs no help.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Largest request served from a size class (bigger ones go to musl, which
/// maps them directly and is not slower than we would be).
pub const MAX_SMALL: usize = 64 * 1024;
/// Alignment every class block has (class sizes are multiples of it).
const ALIGN: usize = 16;
/// Four classes per doubling above 64 bytes, 16-byte steps up to it: at
/// most a quarter of a block is rounding.
const CLASSES: usize = 44;
/// Bytes of free blocks one class may keep.
pub const CLASS_BYTES: usize = 128 * 1024;
/// Bytes of free blocks all classes together may keep: well above what a
/// few dozen connections opening and closing at once churn through, small
/// beside a router's memory.
pub const CACHE_BYTES: usize = 512 * 1024;
/// Spins on a held lock before yielding the CPU (in case its holder, the
/// other thread, was preempted while holding it).
const SPINS: u32 = 100;

/// The class of a request of `size` bytes (1..=[`MAX_SMALL`]) and the
/// block size it gets.
fn class_of(size: usize) -> (usize, usize) {
    if size <= 64 {
        let i = size.saturating_sub(1) / 16;
        return (i, (i + 1) * 16);
    }
    let k = (usize::BITS - 1 - (size - 1).leading_zeros()) as usize; // 6..=15
    let step_bits = k - 2;
    let q = (size - 1) >> step_bits; // 4..=7
    ((k - 6) * 4 + q, (q + 1) << step_bits)
}

/// The block size of class `i` (the inverse of [`class_of`]).
fn block_of(i: usize) -> usize {
    if i < 4 {
        return (i + 1) * 16;
    }
    let k = 6 + (i - 4) / 4;
    let q = 4 + (i - 4) % 4;
    (q + 1) << (k - 2)
}

/// Whether a layout is served from a class, and which.
fn small(layout: Layout) -> Option<(usize, usize)> {
    let size = layout.size();
    (size != 0 && size <= MAX_SMALL && layout.align() <= ALIGN).then(|| class_of(size))
}

/// A class's free list: blocks linked through their first word.
#[derive(Clone, Copy)]
struct List {
    head: *mut u8,
    blocks: usize,
}

struct Lists {
    lists: [List; CLASSES],
    bytes: usize,
}

/// Musl's allocator with a capped free-block cache in front of it.
pub struct Cached {
    locked: AtomicBool,
    lists: UnsafeCell<Lists>,
}

// SAFETY: the lists are only touched with `locked` held (see `with`), and
// the blocks they link are owned by the cache alone while listed.
unsafe impl Sync for Cached {}
// SAFETY: the listed blocks belong to no thread; any thread may free them.
unsafe impl Send for Cached {}

impl Cached {
    pub const fn new() -> Cached {
        Cached {
            locked: AtomicBool::new(false),
            lists: UnsafeCell::new(Lists {
                lists: [List {
                    head: ptr::null_mut(),
                    blocks: 0,
                }; CLASSES],
                bytes: 0,
            }),
        }
    }

    /// Runs `f` on the lists under the spin lock. `f` only moves pointers,
    /// so the other thread waits for nanoseconds, unless the holder was
    /// preempted: then it yields rather than spin through its time slice.
    fn with<R>(&self, f: impl FnOnce(&mut Lists) -> R) -> R {
        let mut spins = 0;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < SPINS {
                std::hint::spin_loop();
            } else {
                // sched_yield: no allocation, no lock of its own.
                std::thread::yield_now();
            }
        }
        // SAFETY: the lock is held, so this is the only reference.
        let r = f(unsafe { &mut *self.lists.get() });
        self.locked.store(false, Ordering::Release);
        r
    }

    /// A cached block of class `i`, if there is one.
    fn pop(&self, i: usize, block: usize) -> *mut u8 {
        self.with(|l| {
            let Some(list) = l.lists.get_mut(i) else {
                return ptr::null_mut();
            };
            let p = list.head;
            if !p.is_null() {
                // SAFETY: a listed block is ours, at least 16 bytes and
                // 16-aligned, its first word the next block.
                list.head = unsafe { p.cast::<*mut u8>().read() };
                list.blocks -= 1;
                l.bytes -= block;
            }
            p
        })
    }

    /// Keeps a freed block of class `i` if the caps allow; `false`: the
    /// caller gives it back to musl.
    fn push(&self, i: usize, block: usize, p: *mut u8) -> bool {
        self.with(|l| {
            if l.bytes + block > CACHE_BYTES {
                return false;
            }
            let Some(list) = l.lists.get_mut(i) else {
                return false;
            };
            if (list.blocks + 1) * block > CLASS_BYTES {
                return false;
            }
            // SAFETY: the block was allocated with at least `block` >= 16
            // bytes, 16-aligned, and its owner has just freed it to us.
            unsafe { p.cast::<*mut u8>().write(list.head) };
            list.head = p;
            list.blocks += 1;
            l.bytes += block;
            true
        })
    }

    /// Bytes of free blocks held now.
    pub fn cached_bytes(&self) -> usize {
        self.with(|l| l.bytes)
    }
}

impl Drop for Cached {
    /// Gives the cached blocks back (the global one is never dropped; this
    /// is for instances made in tests).
    fn drop(&mut self) {
        let lists = self.lists.get_mut();
        for (i, list) in lists.lists.iter_mut().enumerate() {
            while !list.head.is_null() {
                let p = list.head;
                // SAFETY: as in `pop`; the block came from the system with
                // its class layout.
                unsafe {
                    list.head = p.cast::<*mut u8>().read();
                    System.dealloc(p, block_layout(block_of(i)));
                }
            }
        }
    }
}

impl Default for Cached {
    fn default() -> Cached {
        Cached::new()
    }
}

/// The layout a class block is allocated from musl with.
fn block_layout(block: usize) -> Layout {
    // SAFETY: block is a non-zero multiple of ALIGN, a power of two, and far
    // below isize::MAX.
    unsafe { Layout::from_size_align_unchecked(block, ALIGN) }
}

// SAFETY: a block handed out is either fresh from the system allocator with
// the class size and alignment, which fit the request, or one that was
// freed with a layout of the same class (so the same size and alignment)
// and has been in the cache, untouched by anyone else, since. Everything
// else is forwarded unchanged, and `dealloc` routes by the same `small`
// test the allocation did, so each block returns to where it came from.
unsafe impl GlobalAlloc for Cached {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some((i, block)) = small(layout) else {
            // SAFETY: same contract as ours, forwarded.
            return unsafe { System.alloc(layout) };
        };
        let p = self.pop(i, block);
        if !p.is_null() {
            return p;
        }
        // SAFETY: a valid, non-zero layout.
        unsafe { System.alloc(block_layout(block)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let Some((i, block)) = small(layout) else {
            // SAFETY: same contract as ours, forwarded.
            return unsafe { System.alloc_zeroed(layout) };
        };
        let p = self.pop(i, block);
        if !p.is_null() {
            // SAFETY: the block has `block` >= layout.size() bytes.
            unsafe { p.write_bytes(0, layout.size()) };
            return p;
        }
        // SAFETY: a valid, non-zero layout.
        unsafe { System.alloc_zeroed(block_layout(block)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some((i, block)) = small(layout) else {
            // SAFETY: same contract as ours, forwarded.
            return unsafe { System.dealloc(ptr, layout) };
        };
        if !self.push(i, block, ptr) {
            // SAFETY: allocated from the system with this class layout.
            unsafe { System.dealloc(ptr, block_layout(block)) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees new_size, rounded up to the
        // alignment, does not overflow isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (small(layout), small(new_layout)) {
            // SAFETY: neither end is ours: forwarded.
            (None, None) => unsafe { System.realloc(ptr, layout, new_size) },
            (Some((a, _)), Some((b, _))) if a == b => ptr,
            _ => {
                // SAFETY: a valid layout; the old block has layout.size()
                // bytes, the new one new_size, and they are distinct.
                unsafe {
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_every_size_with_at_most_a_quarter_rounding() {
        let mut last = class_of(1);
        assert_eq!(last, (0, 16));
        for size in 1..=MAX_SMALL {
            let (i, block) = class_of(size);
            assert!(i < CLASSES, "{size}");
            assert!(block >= size && block % ALIGN == 0, "{size} -> {block}");
            assert!(
                size <= 64 || (block - size) * 4 <= block,
                "{size} -> {block}"
            );
            assert!(
                i == last.0 || i == last.0 + 1,
                "classes are consecutive at {size}"
            );
            if i == last.0 {
                assert_eq!(block, last.1, "one block size per class");
            }
            assert_eq!(block_of(i), block, "block_of inverts class_of at {size}");
            last = (i, block);
        }
        assert_eq!(last, (CLASSES - 1, MAX_SMALL));
        assert_eq!(class_of(4096), (27, 4096));
    }

    #[test]
    fn a_freed_block_is_reused_and_zeroed_when_asked() {
        let a = Cached::new();
        let layout = Layout::from_size_align(4000, 8).unwrap();
        // SAFETY: a valid layout; each pointer is freed once with it.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            p.write_bytes(0xa5, layout.size());
            a.dealloc(p, layout);
            assert_eq!(a.cached_bytes(), 4096);
            let q = a.alloc_zeroed(layout);
            assert_eq!(q, p, "the cached block comes back");
            assert!(
                std::slice::from_raw_parts(q, layout.size())
                    .iter()
                    .all(|&b| b == 0)
            );
            assert_eq!(a.cached_bytes(), 0);
            a.dealloc(q, layout);
        }
    }

    #[test]
    fn the_caps_bound_what_is_kept() {
        let a = Cached::new();
        let layout = Layout::from_size_align(MAX_SMALL, 16).unwrap();
        // SAFETY: valid layouts; each pointer is freed once with its own.
        unsafe {
            let ps: Vec<*mut u8> = (0..8).map(|_| a.alloc(layout)).collect();
            assert!(ps.iter().all(|p| !p.is_null()));
            for p in ps {
                a.dealloc(p, layout);
            }
            assert_eq!(
                a.cached_bytes(),
                CLASS_BYTES,
                "one class keeps at most its share"
            );
            let mut held = Vec::new();
            for size in (4 * 1024..=MAX_SMALL).step_by(4 * 1024) {
                let l = Layout::from_size_align(size, 16).unwrap();
                for _ in 0..4 {
                    held.push((a.alloc(l), l));
                }
            }
            for (p, l) in held {
                a.dealloc(p, l);
            }
            // These blocks add up to more than the cap: it, not the class
            // shares, stopped the cache (within one block).
            let kept = a.cached_bytes();
            assert!(
                kept <= CACHE_BYTES && kept > CACHE_BYTES - MAX_SMALL,
                "{kept}"
            );
        }
    }

    #[test]
    fn realloc_keeps_the_bytes_across_classes_and_the_system() {
        let a = Cached::new();
        let mut layout = Layout::from_size_align(10, 1).unwrap();
        // SAFETY: each realloc gets the block's current layout, and the
        // final one frees it.
        unsafe {
            let mut p = a.alloc(layout);
            for i in 0..10u8 {
                p.add(usize::from(i)).write(i);
            }
            for size in [12, 100, 5000, MAX_SMALL, MAX_SMALL + 1, 300_000, 40, 11] {
                p = a.realloc(p, layout, size);
                assert!(!p.is_null());
                layout = Layout::from_size_align(size, 1).unwrap();
                let kept = std::slice::from_raw_parts(p, 10);
                assert_eq!(kept, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "at {size}");
            }
            a.dealloc(p, layout);
            let big = Layout::from_size_align(64, 64).unwrap();
            let q = a.alloc(big);
            assert_eq!(q as usize % 64, 0, "over-aligned requests go to the system");
            a.dealloc(q, big);
        }
    }

    #[test]
    fn two_threads_share_it_without_losing_blocks() {
        let a = std::sync::Arc::new(Cached::new());
        let workers: Vec<_> = (0..2u8)
            .map(|t| {
                let a = a.clone();
                std::thread::spawn(move || {
                    for round in 0..20_000usize {
                        let size = 16 + (round * 37 + usize::from(t) * 11) % 9000;
                        let l = Layout::from_size_align(size, 8).unwrap();
                        // SAFETY: a valid layout, freed once with it.
                        unsafe {
                            let p = a.alloc(l);
                            assert!(!p.is_null());
                            p.write_bytes(t, size);
                            let s = std::slice::from_raw_parts(p, size);
                            assert!(s.iter().all(|&b| b == t), "a block was shared");
                            a.dealloc(p, l);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert!(a.cached_bytes() <= CACHE_BYTES);
    }
}
