//! The request guard's invariants, as one function over arbitrary bytes, for
//! the `request_guard` fuzz target and for the stable replay of its corpus
//! (and a unit test). Panics when an invariant breaks; otherwise returns.
//!
//! The first input byte picks the rules (filter, password, raw headers,
//! whether the origin switches protocols); the next ones pick where the rest
//! is split. The invariants: the result does not depend on how the input is
//! split; every head the origin gets was judged (its request line is
//! HTTP/1.x and passes the filter, it names the stream's site, it carries the
//! credentials, it has our forwarding headers right after the request line
//! and no client-sent one); the output, fed again to a guard with the same
//! rules, is accepted unchanged; nothing is held at the end.

use super::http::{ForwardInfo, Refused, RequestRewriter, Rules};
use super::http_head::{self, normal_host};
use super::options::{KiteOptions, security_blocks};

const SITE: &str = "h.test";
const INSERTS: [&str; 3] = [
    "X-Forwarded-For: 203.0.113.7",
    "X-Forwarded-Proto: http",
    "X-PageKite-Port: 80",
];
/// `bob:pw` in base64.
const CREDENTIALS: &[u8] = b"Ym9iOnB3";

fn guard(config: u8) -> RequestRewriter {
    let mut rules = Rules::new(SITE);
    rules.filter = config & 1 != 0;
    if config & 2 != 0 {
        let mut options = KiteOptions::default();
        if options.apply_short("+password/bob=pw").is_ok() {
            rules.auth = Some(Box::new(options));
        }
    }
    let info = ForwardInfo {
        remote_ip: "203.0.113.7".into(),
        port: 80,
        tls: false,
        rewrite_host: None,
    };
    RequestRewriter::new(info, rules)
        .raw_headers(config & 4 != 0)
        .record_heads()
}

/// Feeds `parts` in order, answering as an origin would (`101` or `200`)
/// before the part at `answer_at`. Returns what went out, the refusal and
/// the heads handed over.
fn run(config: u8, parts: &[&[u8]], answer_at: usize) -> (Vec<u8>, Option<Refused>, Vec<Vec<u8>>) {
    let mut rw = guard(config);
    let mut out = Vec::new();
    let mut refused = None;
    let answer: &[u8] = if config & 8 != 0 {
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
    } else {
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    };
    for (i, part) in parts.iter().enumerate() {
        if i == answer_at && rw.wants_response() {
            if let Err(r) = rw.on_response(answer, &mut |b| out.extend_from_slice(b)) {
                refused = Some(r);
            }
        }
        if let Err(r) = rw.feed(part, &mut |b| out.extend_from_slice(b)) {
            assert!(refused.is_none_or(|was| was == r), "the refusal changed");
            refused = Some(r);
        }
    }
    assert_eq!(rw.refused(), refused);
    let heads = rw.recorded_heads().to_vec();
    rw.flush();
    assert_eq!(rw.pending(), 0, "bytes held after the end");
    (out, refused, heads)
}

/// Checks one head the origin got.
fn check_head(head: &[u8], config: u8) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().unwrap_or_default();
    assert!(
        http_head::request_line(line.as_bytes()).is_some(),
        "{text:?}"
    );
    assert!(
        config & 1 == 0 || !security_blocks(line.as_bytes()),
        "{text:?}"
    );
    let raw = config & 4 != 0;
    let mut inserted = 0;
    let mut hosts = 0;
    let mut authorized = false;
    for (i, l) in lines.enumerate() {
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if !raw && http_head::is_forwarding(name.as_bytes()) {
            // Only ours, and only where we put them (`+rawheaders` passes
            // the client's by design).
            assert!(INSERTS.get(i) == Some(&l), "client header passed: {text:?}");
            inserted += 1;
        }
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            assert_eq!(
                normal_host(value.as_bytes()).as_deref(),
                Some(SITE),
                "{text:?}"
            );
        }
        if name.eq_ignore_ascii_case("authorization") {
            // The scheme is case-insensitive (RFC 9110 §11.1).
            let mut words = value.split_ascii_whitespace();
            let basic = words
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("basic"));
            authorized |= basic && words.next().is_some_and(|c| c.as_bytes() == CREDENTIALS);
        }
    }
    assert_eq!(inserted, if raw { 0 } else { INSERTS.len() }, "{text:?}");
    assert_eq!(hosts, 1, "{text:?}");
    // The first Authorization header is the one that counts; matching
    // credentials in some header is the least that must hold.
    assert!(config & 2 == 0 || authorized, "{text:?}");
}

/// The invariants over `data` (see the module comment).
pub fn request_guard(data: &[u8]) {
    let Some((&config, rest)) = data.split_first() else {
        return;
    };
    let Some((&cut, input)) = rest.split_first() else {
        return;
    };
    let whole = run(config, &[input], usize::MAX);
    for head in &whole.2 {
        check_head(head, config);
    }
    // Every two-way split, and three pieces, give the same.
    let k = usize::from(cut) % (input.len() + 1);
    let (a, b) = input.split_at(k);
    let split = run(config, &[a, b], usize::MAX);
    assert_eq!((&split.0, split.1), (&whole.0, whole.1), "split at {k}");
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let one = run(config, &bytes, usize::MAX);
    assert_eq!((&one.0, one.1), (&whole.0, whole.1), "byte at a time");
    // The origin's answer at any point never lets a head through unjudged.
    let answered = run(config, &[a, b], 1);
    for head in &answered.2 {
        check_head(head, config);
    }
    // What went out is accepted as it is by a guard that adds nothing.
    if whole.1.is_none() && config & 8 == 0 {
        let mut again = guard(config | 4);
        let mut out = Vec::new();
        let fed = again.feed(&whole.0, &mut |b| out.extend_from_slice(b));
        assert_eq!(fed, Ok(()), "the output is not what the guard accepts");
        assert_eq!(out, whole.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated keep-alive sequences of `http_tests` and a few more,
    /// under every configuration.
    #[test]
    fn request_guard_invariants_hold_on_real_inputs() {
        let inputs: [&[u8]; 6] = [
            b"GET / HTTP/1.1\r\nHost: h.test\r\nAuthorization: Basic Ym9iOnB3\r\n\
              X-Forwarded-For: 1.2.3.4\r\n\r\nGET /b HTTP/1.1\r\nHost: h.test\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h.test\r\nAuthorization: Basic Ym9iOnB3\r\n\
              Content-Length: 5\r\n\r\nhelloGET /x HTTP/1.1\r\nHost: other.test\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nHost: h.test\r\nAuthorization: Basic Ym9iOnB3\r\n\
              Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x85abcdGET / HTTP/1.1",
            b"GET /wp-admin/ HTTP/1.1\r\nHost: h.test\r\n\r\n",
            b"\r\n\nGET / HTTP/1.0\nHost: H.TEST.\nAuthorization: Basic Ym9iOnB3\n\n",
            b"POST / HTTP/1.1\r\nHost: h.test\r\nAuthorization: Basic Ym9iOnB3\r\n\
              Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n X-Forwarded-For: x\r\n\r\n",
        ];
        for input in inputs {
            for config in 0..16u8 {
                for cut in [0u8, 7, 19, 40, 255] {
                    request_guard(&[&[config, cut][..], input].concat());
                }
            }
        }
    }
}
