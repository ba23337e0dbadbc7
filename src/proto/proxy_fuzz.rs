//! The proxy handshakes' invariants, as one function over arbitrary bytes,
//! for the `proxy` fuzz target and the stable replay of its corpus. Panics
//! when an invariant breaks; otherwise returns.
//!
//! The first byte picks the machine (HTTP CONNECT or SOCKS5, with or
//! without credentials, to an address or a name, alone or behind a proxy
//! of the other kind); the rest is what the
//! proxy sends. The invariants: the outcome (where the tunnel begins, or
//! the error) and everything the client sends do not depend on how the
//! input is split; a finished machine hands every later byte on; a failed
//! one stays failed. The rest of the input, as text, is also given to the
//! option parsers, which must not panic and whose result prints as an
//! option that parses back to the same hop.

use super::proxy::{ChainHandshake, Credentials, Progress, ProxyError, ProxySpec, Target};

fn machine(config: u8) -> ChainHandshake {
    let url = if config & 1 == 0 {
        "http://127.0.0.1:3128/"
    } else {
        "socks5://127.0.0.1:1080/"
    };
    let Ok(mut spec) = ProxySpec::parse_url(url) else {
        panic!("{url} must parse");
    };
    if config & 2 != 0 {
        spec.auth = Credentials::new("bob", "pw").ok();
    }
    let target = if config & 4 == 0 {
        Target::new("192.0.2.1", 443)
    } else {
        Target::new("fe.example", 443)
    };
    let Ok(target) = target else {
        panic!("the target must parse");
    };
    // Bit 3: behind a second proxy of the other kind (a chain).
    let mut chain = vec![spec];
    if config & 8 != 0 {
        let other = if config & 1 == 0 {
            "socks5://[2001:db8::1]:1080/"
        } else {
            "http://hop.example:8080/"
        };
        chain.insert(
            0,
            ProxySpec::parse_url(other).unwrap_or_else(|e| panic!("{other}: {e}")),
        );
    }
    let Some(hs) = ChainHandshake::new(&chain, target) else {
        panic!("the chain must build");
    };
    hs
}

/// Feeds `input` in pieces ending at `cuts`; where the tunnel begins in
/// `input` (or the error; `None` when the input ran out first) and what
/// was sent.
fn run(config: u8, input: &[u8], cuts: &[usize]) -> (Option<Result<usize, ProxyError>>, Vec<u8>) {
    let mut hs = machine(config);
    let mut sent = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain([input.len()]) {
        sent.extend(hs.poll_transmit().unwrap_or_default());
        let piece = input.get(start..end).unwrap_or(&[]);
        let result = hs.handle_input(piece);
        sent.extend(hs.poll_transmit().unwrap_or_default());
        match result {
            Ok(Progress::NeedMore) => {}
            Ok(Progress::Done { leftover_from }) => {
                assert!(leftover_from <= piece.len(), "leftover past the input");
                assert_eq!(
                    hs.handle_input(b"later"),
                    Ok(Progress::Done { leftover_from: 0 }),
                    "a finished machine keeps later bytes"
                );
                return (Some(Ok(start + leftover_from)), sent);
            }
            Err(e) => {
                assert_eq!(hs.handle_input(b"later"), Err(e.clone()), "failure sticks");
                assert!(!e.to_string().is_empty());
                return (Some(Err(e)), sent);
            }
        }
        start = end;
    }
    (None, sent)
}

/// The whole-input outcome, checked against splits.
pub fn check(data: &[u8]) {
    let Some((&config, input)) = data.split_first() else {
        return;
    };
    let whole = run(config, input, &[]);
    let step = (input.len() / 48).max(1);
    for cut in (0..=input.len()).step_by(step) {
        assert_eq!(run(config, input, &[cut]), whole, "split at {cut}");
    }
    if input.len() <= 32 {
        let bytes: Vec<usize> = (0..=input.len()).collect();
        assert_eq!(run(config, input, &bytes), whole, "byte by byte");
    }
    options(&String::from_utf8_lossy(input));
}

/// The parsers never panic, and a parsed hop prints as an option that
/// parses back to the same kind, host and port.
fn options(text: &str) {
    for parsed in [
        ProxySpec::parse_url(text),
        ProxySpec::parse_socks(text, false),
        ProxySpec::parse_socks(text, true),
    ] {
        let Ok(spec) = parsed else { continue };
        if spec.auth.is_some() {
            continue;
        }
        let shown = spec.to_string();
        let Ok(again) = ProxySpec::parse_url(&shown) else {
            panic!("{shown} does not parse back");
        };
        assert_eq!(
            (again.kind, &again.host, again.port),
            (spec.kind, &spec.host, spec.port),
            "{shown}"
        );
    }
}
