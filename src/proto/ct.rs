//! Bytes of secrets and digests: the one equality test for secrets
//! (signatures, tokens and passwords a peer sends are compared here, in time
//! that depends only on the lengths, so nobody can probe a secret byte by
//! byte) and the one lowercase-hex encoder for digests, salts and ids.
//! Pure; no other module compares secrets or spells hex its own way.
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

/// Lowercase hex, two digits per byte (SHA1 digests, salts, random ids).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{ct_eq, hex};

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

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
