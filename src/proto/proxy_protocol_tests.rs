//! PROXY protocol headers as Debian's haproxy 2.6 sends them (captured from
//! `send-proxy`, `send-proxy-v2`, `proxy-v2-options unique-id` and a
//! `check-send-proxy` health check), fed whole and cut at every byte, and
//! malformed ones built byte by byte from the spec.

use super::*;

/// `send-proxy` for a visitor at 127.0.0.2:48151.
const V1_TCP4: &[u8] = b"PROXY TCP4 127.0.0.2 127.0.0.1 48151 56307\r\n";
/// `send-proxy` for a visitor at [::1]:44251.
const V1_TCP6: &[u8] = b"PROXY TCP6 ::1 ::1 44251 59975\r\n";
/// `send-proxy-v2` for a visitor at 127.0.0.2:47265.
const V2_TCP4: &[u8] =
    b"\r\n\r\n\x00\r\nQUIT\n!\x11\x00\x0c\x7f\x00\x00\x02\x7f\x00\x00\x01\xb8\xa1\xabO";
/// `send-proxy-v2` for a visitor at [::1]:34263.
const V2_TCP6: &[u8] = b"\r\n\r\n\x00\r\nQUIT\n!!\x00$\
    \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\
    \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x85\xd7\xcf?";
/// `send-proxy-v2 proxy-v2-options unique-id` (a TLV of type 5, `abc123`)
/// for a visitor at 127.0.0.2:56139.
const V2_TLV: &[u8] = b"\r\n\r\n\x00\r\nQUIT\n!\x11\x00\x15\x7f\x00\x00\x02\x7f\x00\x00\x01\
    \xdbK\xa7\xe7\x05\x00\x06abc123";
/// A `check-send-proxy` health check: LOCAL, no addresses.
const V2_LOCAL: &[u8] = b"\r\n\r\n\x00\r\nQUIT\n \x00\x00\x00";

const REQUEST: &[u8] = b"GET / HTTP/1.0\r\n\r\n";

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

/// The header followed by a request: every prefix shorter than the header
/// needs more, and every longer one gives the same answer.
fn check_whole_and_cut(header: &[u8], version: u8, source: Option<SocketAddr>) {
    let data = [header, REQUEST].concat();
    let want = Parse::Done(Header {
        version,
        source,
        consumed: header.len(),
    });
    for cut in 0..=data.len() {
        let got = parse(&data[..cut]);
        if cut < header.len() {
            assert_eq!(got, Parse::NeedMore, "{cut} bytes of {header:?}");
        } else {
            assert_eq!(got, want, "{cut} bytes of {header:?}");
        }
    }
}

#[test]
fn haproxy_headers_parse_at_every_split_point() {
    check_whole_and_cut(V1_TCP4, 1, addr("127.0.0.2:48151"));
    check_whole_and_cut(V1_TCP6, 1, addr("[::1]:44251"));
    check_whole_and_cut(V2_TCP4, 2, addr("127.0.0.2:47265"));
    check_whole_and_cut(V2_TCP6, 2, addr("[::1]:34263"));
    check_whole_and_cut(V2_TLV, 2, addr("127.0.0.2:56139"));
    check_whole_and_cut(V2_LOCAL, 2, None);
}

#[test]
fn v1_unknown_and_v2_unspec_name_no_source() {
    check_whole_and_cut(b"PROXY UNKNOWN\r\n", 1, None);
    check_whole_and_cut(
        b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
        1,
        None,
    );
    check_whole_and_cut(b"\r\n\r\n\x00\r\nQUIT\n\x21\x00\x00\x00", 2, None);
    // LOCAL skips whatever block follows, of any family.
    check_whole_and_cut(b"\r\n\r\n\x00\r\nQUIT\n\x20\x31\x00\x03abc", 2, None);
}

#[test]
fn the_longest_v1_line_is_accepted_and_one_more_byte_is_not() {
    // The spec's worst case: UNKNOWN with the longest addresses and ports.
    let longest = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
        ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(longest.len(), MAX_V1);
    check_whole_and_cut(longest, 1, None);
    let tcp6 = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
        ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    check_whole_and_cut(
        tcp6,
        1,
        addr("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
    );
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(MAX_V1 - 1, b'x');
    long.extend_from_slice(b"\r\n");
    assert_eq!(parse(&long), Parse::Err(Error::V1TooLong));
    // Refused as soon as the 106th byte is not the CR, not later.
    assert_eq!(parse(&long[..MAX_V1 - 1]), Parse::Err(Error::V1TooLong));
    assert_eq!(parse(&long[..MAX_V1 - 2]), Parse::NeedMore);
}

#[test]
fn malformed_v1_lines_are_refused_with_their_reason() {
    let cases: &[(&[u8], Error)] = &[
        (b"GET / HTTP/1.1\r\n", Error::NotProxy),
        (b"PROXI TCP4", Error::NotProxy),
        (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", Error::NotProxy),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", Error::V1BadProtocol),
        (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", Error::V1BadProtocol),
        (b"PROXY TCP4\r\n", Error::V1BadFields),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", Error::V1BadFields),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", Error::V1BadFields),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", Error::V1BadFields),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", Error::V1BadFields),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", Error::V1BadAddress),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", Error::V1BadAddress),
        (b"PROXY TCP4 1.2.3.4 5.6.7 1 2\r\n", Error::V1BadAddress),
        (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", Error::V1BadAddress),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", Error::V1BadPort),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", Error::V1BadPort),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", Error::V1BadPort),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", Error::V1BadPort),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", Error::V1BadByte),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", Error::V1BadByte),
        (b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", Error::V1BadByte),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xc3\xa9\r\n",
            Error::V1BadByte,
        ),
    ];
    for (data, want) in cases {
        assert_eq!(parse(data), Parse::Err(*want), "{:?}", data.escape_ascii());
    }
}

#[test]
fn wrong_bytes_are_refused_as_soon_as_they_arrive() {
    // A client that is not a balancer is told off at its first byte that
    // can't be a header, not after the 107th.
    assert_eq!(parse(b"G"), Parse::Err(Error::NotProxy));
    assert_eq!(parse(b"PROXX"), Parse::Err(Error::NotProxy));
    assert_eq!(parse(b"\x16\x03\x01"), Parse::Err(Error::NotProxy));
    assert_eq!(parse(b"\r\n\r\nGET"), Parse::Err(Error::NotProxy));
    assert_eq!(parse(b"PROXY TCP4 1\n"), Parse::Err(Error::V1BadByte));
    assert_eq!(
        parse(b"\r\n\r\n\x00\r\nQUIT\n\x11"),
        Parse::Err(Error::V2BadVersion(1))
    );
    assert_eq!(
        parse(b"\r\n\r\n\x00\r\nQUIT\n\x22"),
        Parse::Err(Error::V2BadCommand(2))
    );
    assert_eq!(
        parse(b"\r\n\r\n\x00\r\nQUIT\n\x21\x12"),
        Parse::Err(Error::V2BadFamily(0x12))
    );
}

/// A v2 PROXY header of `family` with `block` as its address block.
fn v2(ver_cmd: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let len = u16::try_from(block.len()).unwrap().to_be_bytes();
    [&V2_SIGNATURE[..], &[ver_cmd, family], &len, block].concat()
}

#[test]
fn malformed_v2_headers_are_refused_with_their_reason() {
    let cases: Vec<(Vec<u8>, Error)> = vec![
        (v2(0x11, 0x11, &[0; 12]), Error::V2BadVersion(1)),
        (v2(0x31, 0x11, &[0; 12]), Error::V2BadVersion(3)),
        (v2(0x22, 0x11, &[0; 12]), Error::V2BadCommand(2)),
        (v2(0x2f, 0x11, &[0; 12]), Error::V2BadCommand(15)),
        // UDP, AF_UNIX and unknown families: not a TCP visitor.
        (v2(0x21, 0x12, &[0; 12]), Error::V2BadFamily(0x12)),
        (v2(0x21, 0x22, &[0; 36]), Error::V2BadFamily(0x22)),
        (v2(0x21, 0x31, &[0; 216]), Error::V2BadFamily(0x31)),
        (v2(0x21, 0x10, &[0; 12]), Error::V2BadFamily(0x10)),
        (v2(0x21, 0x41, &[0; 12]), Error::V2BadFamily(0x41)),
        (
            v2(0x21, 0x11, &[0; 11]),
            Error::V2ShortBlock {
                family: 0x11,
                len: 11,
            },
        ),
        (
            v2(0x21, 0x21, &[0; 12]),
            Error::V2ShortBlock {
                family: 0x21,
                len: 12,
            },
        ),
        (
            v2(0x21, 0x11, &[0; MAX_V2_BLOCK + 1]),
            Error::V2TooLong(MAX_V2_BLOCK + 1),
        ),
        (v2(0x20, 0x00, &[0; 65535]), Error::V2TooLong(65535)),
    ];
    for (data, want) in &cases {
        // Refused as soon as the fixed 16 bytes are in.
        for cut in 16..=data.len().min(64) {
            assert_eq!(parse(&data[..cut]), Parse::Err(*want), "{cut} of {want:?}");
        }
        assert_eq!(parse(data), Parse::Err(*want), "{want:?}");
    }
}

#[test]
fn the_largest_v2_block_is_accepted_with_its_tlvs_skipped() {
    let mut block = vec![10, 0, 0, 1, 10, 0, 0, 2, 0x30, 0x39, 0, 80];
    block.resize(MAX_V2_BLOCK, 0xee);
    let data = [v2(0x21, 0x11, &block), REQUEST.to_vec()].concat();
    assert_eq!(
        parse(&data),
        Parse::Done(Header {
            version: 2,
            source: addr("10.0.0.1:12345"),
            consumed: MAX_V2,
        })
    );
    assert_eq!(parse(&data[..MAX_V2 - 1]), Parse::NeedMore);
}

#[test]
fn looks_tells_headers_from_requests_for_unlisted_sources() {
    for header in [V1_TCP4, V2_TCP4, V2_LOCAL] {
        assert_eq!(looks(header), Looks::Proxy);
        assert_eq!(looks(&header[..5]), Looks::Maybe);
    }
    assert_eq!(looks(b"PROXY "), Looks::Proxy);
    assert_eq!(looks(b"PROXY"), Looks::Maybe);
    assert_eq!(looks(b""), Looks::Not);
    assert_eq!(looks(b"GET / HTTP/1.1\r\n"), Looks::Not);
    assert_eq!(looks(b"POST"), Looks::Not);
    assert_eq!(looks(b"PROXYZ"), Looks::Not);
    assert_eq!(looks(b"\x16\x03\x01"), Looks::Not);
    assert_eq!(looks(b"\r\n\r\n\x00\r\nQUIT"), Looks::Maybe);
    assert_eq!(looks(b"\r\n\r\nGET"), Looks::Not);
}

#[test]
fn errors_read_as_sentences_for_the_log() {
    assert_eq!(Error::NotProxy.to_string(), "no PROXY protocol header");
    assert_eq!(
        Error::V2TooLong(4000).to_string(),
        "PROXY v2 address block of 4000 bytes (at most 2048)"
    );
}
