//! The one equality test for secrets: signatures, tokens and passwords a
//! peer sends are compared here, in time that depends only on the lengths,
//! so nobody can probe a secret byte by byte. Pure; no other module
//! compares secrets its own way.
//!
//! Not ring's `constant_time::verify_slices_are_equal`: ring 0.17 deprecates
//! it as internal "with no promises regarding side channels", and it returns
//! at once on a length mismatch, which tells a prober a password's length.

/// Whether `a == b`, looking at every byte of the longer one either way.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    // Keeps the optimiser from turning the loop into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::ct_eq;

    #[test]
    fn equal_only_when_every_byte_and_the_length_agree() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"secret", b"secret"));
        assert!(!ct_eq(b"secret", b"secreT"));
        assert!(!ct_eq(b"secret", b"secret\0"));
        assert!(!ct_eq(b"", b"\0"));
        assert!(!ct_eq(b"\0", b""));
    }
}
