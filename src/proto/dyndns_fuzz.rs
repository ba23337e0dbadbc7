//! The dynamic DNS parsers' invariants, as one function over arbitrary
//! bytes, for the `dyndns` fuzz target and the stable replay of its corpus.
//! Panics when an invariant breaks; otherwise returns.
//!
//! The first byte picks the part. Even: the rest is a provider's reply; it
//! reads the same however it is split, keeps at most `MAX_REPLY_BODY`
//! bytes (more is an error), and judging it never panics. Odd: the rest,
//! as text, is a `--dyndns` setting; when it parses, the update request it
//! builds is one well-formed head (no byte of the setting can end a line or
//! split the request line).

use std::net::IpAddr;

use super::dyndns::{MAX_REPLY_BODY, Provider, judge};
use super::http_reply::{ReplyError, ReplyReader, Response};

fn read(input: &[u8], cut: usize) -> Result<Response, ReplyError> {
    let mut r = ReplyReader::new(MAX_REPLY_BODY, false);
    let (a, b) = input.split_at(cut.min(input.len()));
    for piece in [a, b] {
        if let Some(done) = r.handle_input(piece)? {
            return Ok(done);
        }
    }
    r.finish()
}

pub fn check(data: &[u8]) {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let whole = read(input, input.len());
        let step = (input.len() / 48).max(1);
        for cut in (0..=input.len()).step_by(step) {
            assert_eq!(read(input, cut), whole, "split at {cut}");
        }
        if let Ok(reply) = whole {
            assert!(reply.body.len() <= MAX_REPLY_BODY);
            let _ = judge(&reply);
        }
        return;
    }
    let text = String::from_utf8_lossy(input);
    let Ok(Some(provider)) = Provider::parse_setting(&text) else {
        return;
    };
    let ips: [IpAddr; 2] = [
        [192, 0, 2, 1].into(),
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1].into(),
    ];
    let Ok(req) = provider.request("kite.example", &ips, "secret", "0123abcd") else {
        panic!("a parsed provider builds requests");
    };
    let head = req.head("rkite");
    assert!(head.ends_with(b"\r\n\r\n"));
    let body = head.get(..head.len() - 4).unwrap_or(&[]);
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(
            !line.iter().any(|&b| b < b' ' || b == 0x7f),
            "control byte in {}",
            line.escape_ascii()
        );
        if n == 0 {
            assert_eq!(line.iter().filter(|&&b| b == b' ').count(), 2);
            assert!(line.starts_with(b"GET /"));
        } else {
            assert!(line.contains(&b':'));
        }
    }
}
