//! Randomness for salts, challenges, ids and jitter, from the operating
//! system through `ring` (already in the tree). If the system can't provide
//! randomness the process can't sign anything safely, so it aborts loudly.

use ring::rand::{SecureRandom, SystemRandom};

pub fn fill(buf: &mut [u8]) {
    if let Err(e) = SystemRandom::new().fill(buf) {
        log::error!("the system random number generator failed: {e:?}");
        std::process::abort();
    }
}

pub fn bytes4() -> [u8; 4] {
    let mut b = [0u8; 4];
    fill(&mut b);
    b
}

/// `n` random bytes as lowercase hex.
pub fn hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    fill(&mut bytes);
    crate::proto::ct::hex(&bytes)
}

/// A random fraction in [0, 1).
pub fn unit() -> f64 {
    f64::from(u32::from_le_bytes(bytes4())) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn shapes() {
        assert_eq!(super::hex(20).len(), 40);
        assert_ne!(super::hex(8), super::hex(8));
        let u = super::unit();
        assert!((0.0..1.0).contains(&u));
    }
}
