//! Standard-alphabet base64 encoding with `=` padding (RFC 4648 §4), for
//! the `Basic` credentials rkite sends (proxy and dynamic DNS
//! authorization), and base64url without padding (§5) for ACME's JOSE. Pure; encoding only (the one decoder, for credentials
//! peers send, lives beside its single user in `options`).

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `data` in base64, padded to a multiple of four characters.
pub fn encode(data: &[u8]) -> String {
    encode_with(data, ALPHABET, true)
}

/// `data` in base64url without padding (RFC 4648 §5, as JOSE and ACME
/// want it).
pub fn encode_url(data: &[u8]) -> String {
    encode_with(data, URL_ALPHABET, false)
}

const URL_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn encode_with(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        // One output character per six bits; a short chunk pads the rest.
        for i in 0..4 {
            if i <= chunk.len() {
                let index = ((n >> (18 - 6 * i)) & 63) as usize;
                out.push(char::from(alphabet.get(index).copied().unwrap_or(b'A')));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// The value of a `Basic` authorization header for `user:password`
/// (RFC 7617).
pub fn basic(user: &str, password: &str) -> String {
    let mut joined = Vec::with_capacity(user.len() + 1 + password.len());
    joined.extend_from_slice(user.as_bytes());
    joined.push(b':');
    joined.extend_from_slice(password.as_bytes());
    format!("Basic {}", encode(&joined))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), enc, "{plain}");
        }
        assert_eq!(encode(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn basic_credentials_as_rfc7617_spells_them() {
        // RFC 7617 §2's example.
        assert_eq!(
            basic("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic("bob", "pw"), "Basic Ym9iOnB3");
    }

    #[test]
    fn url_alphabet_without_padding() {
        // RFC 4648 §10 vectors, in the URL alphabet and unpadded.
        for (input, want) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode_url(input.as_bytes()), want);
        }
        assert_eq!(encode_url(&[0xfb, 0xff, 0xbf]), "-_-_");
        assert_eq!(encode(&[0xfb, 0xff, 0xbf]), "+/+/");
    }
}
