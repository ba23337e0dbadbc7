//! Invariants of the first-bytes sniffer (`proto::sniff`): the frontend calls
//! it again with the whole buffer each time bytes arrive, so a prefix must
//! either need more or decide exactly as the whole input does; lengths it
//! reports lie inside the input and end a head; hosts it returns are
//! normalised names; a tunnel request is one the handshake accepts too; a
//! ClientHello cut into records of another size gives the same answer.

use crate::proto::handshake::is_tunnel_request_line;
use crate::proto::sniff::{self as s, MAX_HEAD, Sniff, SniffError};

pub fn sniff(data: &[u8]) {
    let whole = s::sniff(data);
    check_result(data, &whole);
    for cut in super::cut_points(data.len()) {
        let got = s::sniff(data.get(..cut).unwrap_or_default());
        if got != Sniff::NeedMore {
            assert_eq!(got, whole, "a prefix of {cut} bytes decides differently");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(host) = s::normalize_host(text) {
            check_host(&host);
        }
    }
    if matches!(whole, Sniff::Tls { .. } | Sniff::Reject(SniffError::BadSni)) {
        refragmented(data, &whole);
    }
}

/// The same ClientHello in records of another size (taken from the input)
/// must give the same answer: TLS lets a client cut it anywhere.
fn refragmented(data: &[u8], whole: &Sniff) {
    // Reassemble the handshake bytes the sniffer read.
    let mut msg = Vec::new();
    let mut rest = data;
    let mut version = 1;
    while let Some(&[0x16, 3, v, hi, lo]) = rest.get(..5) {
        version = v;
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let fragment = rest.get(5..5 + len).unwrap_or_default();
        msg.extend_from_slice(fragment);
        rest = rest.get(5 + len..).unwrap_or_default();
        if fragment.len() < len {
            break;
        }
    }
    let Some(&[1, a, b, c]) = msg.get(..4) else {
        return; // SSLv2
    };
    let total = 4 + (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c));
    let Some(hello) = msg.get(..total) else {
        return;
    };
    let size = 1 + usize::from(data.last().copied().unwrap_or(0)) * 64;
    let mut records = Vec::new();
    for piece in hello.chunks(size) {
        let len = u16::try_from(piece.len()).unwrap_or(u16::MAX).to_be_bytes();
        records.extend_from_slice(&[0x16, 3, version]);
        records.extend_from_slice(&len);
        records.extend_from_slice(piece);
    }
    assert_eq!(&s::sniff(&records), whole, "in records of {size} bytes");
}

fn check_result(data: &[u8], result: &Sniff) {
    let head_len = match result {
        Sniff::NeedMore => {
            assert!(data.len() < MAX_HEAD || data.first() == Some(&0x16));
            return;
        }
        Sniff::Reject(_) => return,
        Sniff::Tls { sni } => {
            assert!(matches!(data.first(), Some(0x16 | 0x80)));
            if let Some(host) = sni {
                check_host(host);
            }
            return;
        }
        Sniff::Ping { head_len } => *head_len,
        Sniff::Tunnel { head_len } => {
            // What the sniffer hands to the handshake must be a tunnel
            // request there too, or the backend is refused for nothing.
            let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
            let line = std::str::from_utf8(line).unwrap_or_default();
            assert!(is_tunnel_request_line(line), "{line:?} is half a tunnel");
            *head_len
        }
        Sniff::PingMethod { path, head_len } => {
            check_target(path);
            *head_len
        }
        Sniff::Connect {
            host,
            port,
            head_len,
        } => {
            assert_ne!(*port, 0);
            check_host(host);
            *head_len
        }
        Sniff::Http(head) => {
            check_target(&head.path);
            if let Some(host) = &head.host {
                check_host(host);
                // RFC 9112 §3.2: a Host to route by is the only one.
                let block = data.get(..head.head_len).unwrap_or_default();
                let hosts = s::headers(block).filter(|(n, _)| n.eq_ignore_ascii_case(b"host"));
                assert_eq!(hosts.count(), 1, "routed by one of several Host lines");
            }
            head.head_len
        }
    };
    assert!(
        head_len <= data.len() && head_len <= MAX_HEAD,
        "head_len {head_len}"
    );
    let head = data.get(..head_len).unwrap_or_default();
    assert!(
        head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"),
        "head {head:?} does not end with a blank line"
    );
}

/// A request target as the sniffer passes it on: no blanks or controls.
fn check_target(target: &str) {
    assert!(!target.is_empty());
    assert!(
        !target.bytes().any(|b| b <= b' ' || b == 0x7f),
        "target {target:?}"
    );
}

/// A normalised host: lowercase name characters or a bracketed IPv6
/// literal, at most 253 bytes, no port.
fn check_host(host: &str) {
    assert!(!host.is_empty() && host.len() <= 253, "host {host:?}");
    let ok = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']').is_some_and(|v6| {
            v6.bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }),
        None => host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._*".contains(&b)),
    };
    assert!(ok, "host {host:?}");
}
