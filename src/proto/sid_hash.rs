//! The hasher of a tunnel's stream table. Stream ids are small integers,
//! and std's SipHash for them showed up at 2 % of a backend's CPU in a bulk
//! transfer (one lookup or more per chunk). This one is a keyed integer mix:
//! the reactor gives each tunnel a random key, so a hostile peer choosing
//! stream ids cannot aim them at one bucket of the table. Sans-IO; it hashes
//! the `u32` stream ids and nothing else.

use std::hash::{BuildHasher, Hasher};

/// Builds [`SidHasher`]s with one tunnel's key.
#[derive(Clone, Copy, Debug)]
pub struct SidHashing {
    key: u64,
}

impl SidHashing {
    pub fn new(key: u64) -> SidHashing {
        SidHashing { key }
    }
}

impl BuildHasher for SidHashing {
    type Hasher = SidHasher;

    fn build_hasher(&self) -> SidHasher {
        SidHasher {
            key: self.key,
            value: 0,
        }
    }
}

/// Hashes one stream id: the key mixed in, then two multiply-xorshift
/// rounds, each a bijection on `u64`, so distinct ids never share a hash.
pub struct SidHasher {
    key: u64,
    value: u64,
}

impl Hasher for SidHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by `u32` keys (they call `write_u32`); kept correct for
        // any other caller all the same.
        for &b in bytes {
            self.value = self.value.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.value = u64::from(n);
    }

    fn finish(&self) -> u64 {
        let mut x = (self.value ^ self.key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 32;
        x = x.wrapping_mul(0xd6e8_feb8_6659_fd93);
        x ^ (x >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn hash(key: u64, sid: u32) -> u64 {
        SidHashing::new(key).hash_one(sid)
    }

    #[test]
    fn ids_spread_over_buckets_and_keys_change_the_spread() {
        // Consecutive ids (what a frontend hands out) and ids that differ
        // only in high bits (what a hostile peer might pick) both fill a
        // 1,024-bucket table's low bits evenly.
        for ids in [
            (0..4096u32).collect::<Vec<_>>(),
            (0..4096u32).map(|i| i << 20).collect(),
        ] {
            let mut buckets = [0u32; 1024];
            for &id in &ids {
                buckets[(hash(7, id) & 1023) as usize] += 1;
            }
            let fullest = buckets.iter().max().copied().unwrap_or(0);
            assert!(fullest <= 16, "a bucket holds {fullest} of 4,096 ids");
        }
        assert_ne!(hash(1, 5), hash(2, 5));
        assert_ne!(hash(1, 5), hash(1, 6));
    }

    #[test]
    fn a_table_with_the_hasher_finds_what_it_holds() {
        let mut t: HashMap<u32, u32, SidHashing> = HashMap::with_hasher(SidHashing::new(99));
        for sid in 1..=500 {
            t.insert(sid * 3, sid);
        }
        assert_eq!(t.get(&300), Some(&100));
        assert_eq!(t.get(&301), None);
        assert_eq!(t.len(), 500);
    }
}
