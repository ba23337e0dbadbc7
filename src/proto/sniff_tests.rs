//! Tests of `sniff.rs` (kept apart so the module itself stays readable).
use super::*;

/// Captured with `openssl s_client -connect 127.0.0.1:PORT -servername foo.test`
/// (OpenSSL 3, TLS 1.3) against a Python listener on loopback.
const HELLO_SNI: &str = "\
    16030101350100013103038a1141aec3439e4bfe3da466bdd259371b8463cad077731453ae8f314948c90b20\
    2599f03e2086b684be637050b3f1a4520963c96f840176dc6f64f9a5a029ee9f003e130213031301c02cc030\
    009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d\
    003c0035002f00ff010000aa0000000d000b000008666f6f2e74657374000b000403000102000a0016001400\
    1d0017001e0019001801000101010201030104002300000016000000170000000d002a002804030503060308\
    0708080809080a080b080408050806040105010601030303010302040205020602002b000908030403030302\
    0301002d00020101003300260024001d0020e6f9ea5049a23603442b7019f855d7d2679547ac660ff06be3b3\
    c88564fe0b53";

/// pagekite.py's backend dialling a TLS frontend by IP (no SNI), from
/// /work/shared/interop/transcripts/mitm-tls.raw.log (517 bytes, padded).
const HELLO_NO_SNI: &str = "\
    1603010200010001fc03033c4c0d82ffab6a1c0df3b04cd8fc083e84d12e8a7376ce92f130a3d6d43ae50f20\
    51a09386435c4d96bfe21d7738f5a062cc7c4cc5b053394a3d7c9064277dc4070096130213031301c02cc030\
    00a3009fcca9cca8ccaac0afc0adc0a3c09fc05dc061c057c053c02bc02f00a2009ec0aec0acc0a2c09ec05c\
    c060c056c052c024c028006b006ac073c07700c400c3c023c02700670040c072c07600be00bdc00ac0140039\
    003800880087c009c0130033003200450044009dc0a1c09dc051009cc0a0c09cc050003d00c0003c00ba0035\
    0084002f004100ff0100011d000b000403000102000a00160014001d0017001e001900180100010101020103\
    0104002300000016000000170000000d002a0028040305030603080708080809080a080b0804080508060401\
    05010601030303010302040205020602002b0009080304030303020301002d00020101003300260024001d00\
    20ba74d5b26b8755c2611a78fa5c450eaa54346cb1745c69bb5f9a779e1cff9e240015008000000000000000\
    0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
    0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
    000000000000000000000000000000000000000000000000000000000000000000";

const CURL: &[u8] =
    b"GET / HTTP/1.1\r\nHost: foo.test\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
const TUNNEL: &[u8] = b"CONNECT PageKite:1 HTTP/1.0\r\n\
    X-PageKite-Version: 1.5.2.201011\r\n\
    X-PageKite-Features: ZChunks\r\n\
    X-PageKite: http:foo.test:4c1e0b2f:a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8:\r\n\r\n";

fn unhex(s: &str) -> Vec<u8> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let digits: Vec<u8> = s.bytes().filter_map(digit).collect();
    digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
}

/// Every proper prefix must ask for more; the whole input decides.
fn whole(input: &[u8]) -> Sniff {
    for k in 0..input.len() {
        assert_eq!(sniff(&input[..k]), Sniff::NeedMore, "prefix of {k} bytes");
    }
    sniff(input)
}

fn http(input: &[u8]) -> HttpHead {
    match whole(input) {
        Sniff::Http(head) => head,
        other => panic!("expected Http, got {other:?}"),
    }
}

fn host_of(input: &[u8]) -> Option<String> {
    http(input).host
}

#[test]
fn curl_request() {
    let head = http(CURL);
    let want = HttpHead {
        method: "GET".into(),
        path: "/".into(),
        host: Some("foo.test".into()),
        websocket: false,
        head_len: CURL.len(),
    };
    assert_eq!(head, want);
}

#[test]
fn pagekite_and_libpagekite_pings() {
    for ping in [
        &b"HEAD /ping HTTP/1.1\r\nHost: ping.pagekite\r\n\r\n"[..],
        b"GET /ping HTTP/1.1\r\nHost: ping.pagekite\r\n\r\n",
    ] {
        let head_len = ping.len();
        assert_eq!(whole(ping), Sniff::Ping { head_len });
    }
    // pagekite.py's check is case-sensitive and limited to 64 bytes.
    assert!(matches!(
        sniff(b"GET / HTTP/1.1\r\nhost: ping.pagekite\r\n\r\n"),
        Sniff::Http(_)
    ));
    let late =
        b"GET /a-rather-long-path-to-push-the-host-out HTTP/1.1\r\nHost: ping.pagekite\r\n\r\n";
    assert!(matches!(sniff(late), Sniff::Http(_)));
    // ... and to the head: a body is not a header.
    let body = b"POST / HTTP/1.1\n\n\nHost: ping.pagekite\r\n\r\n";
    assert!(matches!(
        sniff(body),
        Sniff::Http(HttpHead { head_len: 17, .. })
    ));
}

#[test]
fn ping_method() {
    let input = b"PING /x HTTP/1.1\r\n\r\n";
    let (path, head_len) = ("/x".to_string(), input.len());
    assert_eq!(whole(input), Sniff::PingMethod { path, head_len });
}

#[test]
fn tunnel_requests() {
    let head_len = TUNNEL.len();
    assert_eq!(whole(TUNNEL), Sniff::Tunnel { head_len });
    for line in [
        "CONNECT pagekite:1 HTTP/1.1",
        "CONNECT PAGEKITE:magic HTTP/1.0",
        "CONNECT pagekite: HTTP/1.0",
    ] {
        let input = format!("{line}\r\n\r\n");
        let head_len = input.len();
        assert_eq!(sniff(input.as_bytes()), Sniff::Tunnel { head_len });
    }
    // The tunnel's first frame may already follow the head.
    let mut more = TUNNEL.to_vec();
    more.extend_from_slice(b"e\r\nNOOP: 1\r\n\r\n!");
    assert_eq!(sniff(&more), Sniff::Tunnel { head_len });
}

#[test]
fn public_connect() {
    let input = b"CONNECT foo.test:22 HTTP/1.1\r\nHost: foo.test:22\r\n\r\n";
    let want = |host: &str, port| Sniff::Connect {
        host: host.into(),
        port,
        head_len: input.len(),
    };
    assert_eq!(whole(input), want("foo.test", 22));
    let cases = [
        ("FOO.Test:443", "foo.test", 443),
        ("[::1]:80", "[::1]", 80),
        ("0x7f000001--kite.test:8080", "kite.test", 8080),
    ];
    for (target, host, port) in cases {
        let input = format!("CONNECT {target} HTTP/1.0\r\n\r\n");
        let want = Sniff::Connect {
            host: host.into(),
            port,
            head_len: input.len(),
        };
        assert_eq!(sniff(input.as_bytes()), want, "{target}");
    }
    for target in [
        "foo.test",
        "foo.test:",
        "foo.test:0",
        "foo.test:65536",
        "foo.test:+22",
        "a:b:22",
        "::1:22",
        "f%o:22",
        ":22",
    ] {
        let input = format!("CONNECT {target} HTTP/1.1\r\n\r\n");
        assert_eq!(
            sniff(input.as_bytes()),
            Sniff::Reject(SniffError::NotHttp),
            "{target}"
        );
    }
}

#[test]
fn host_header_variants() {
    assert_eq!(host_of(b"GET / HTTP/1.0\r\nAccept: */*\r\n\r\n"), None);
    assert_eq!(
        host_of(b"GET / HTTP/1.1\r\nHost: FOO.Test:8080\r\n\r\n").as_deref(),
        Some("foo.test")
    );
    assert_eq!(
        host_of(b"GET / HTTP/1.1\r\nhOST:foo.test.\r\n\r\n").as_deref(),
        Some("foo.test")
    );
    let prefixed = b"GET / HTTP/1.1\r\nHost: 0x0A000001--Foo.Test:80\r\n\r\n";
    assert_eq!(host_of(prefixed).as_deref(), Some("foo.test"));
    // RFC 9112 §3.2: two Host lines are a 400 (found by the httparse
    // differential test; the first one used to win).
    let duplicate = b"GET / HTTP/1.1\r\nHost: first.test\r\nHost: second.test\r\n\r\n";
    assert_eq!(host_of(duplicate), None);
    let same = b"GET / HTTP/1.1\r\nHost: a.test\r\nhost: a.test\r\n\r\n";
    assert_eq!(host_of(same), None);
    // Unusable: a space before the colon, junk, non-UTF-8, empty.
    assert_eq!(host_of(b"GET / HTTP/1.1\r\nHost : foo.test\r\n\r\n"), None);
    assert_eq!(host_of(b"GET / HTTP/1.1\r\nHost: foo bar\r\n\r\n"), None);
    assert_eq!(host_of(b"GET / HTTP/1.1\r\nHost: f\xc3o\r\n\r\n"), None);
    assert_eq!(host_of(b"GET / HTTP/1.1\r\nHost:\r\n\r\n"), None);
    // An obs-fold continuation line is not a header of its own.
    assert_eq!(
        host_of(b"GET / HTTP/1.1\r\nX-A: b\r\n Host: foo.test\r\n\r\n"),
        None
    );
}

#[test]
fn websocket_upgrade() {
    let input = b"GET /chat HTTP/1.1\r\nHost: foo.test\r\n\
        Upgrade: WebSocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let head = http(input);
    assert!(head.websocket);
    assert_eq!((head.path.as_str(), head.head_len), ("/chat", input.len()));
    assert!(!http(b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n").websocket);
    let magic = b"GET /~:PageKite:~/v0.8 HTTP/1.1\r\nUpgrade: websocket\r\n\
        Sec-WebSocket-Protocol: v1.pagekite.org\r\n\r\n";
    let proto = headers(magic).find(|(n, _)| n.eq_ignore_ascii_case(b"sec-websocket-protocol"));
    assert_eq!(proto.map(|(_, v)| v), Some(&b"v1.pagekite.org"[..]));
}

#[test]
fn body_after_head() {
    let head = b"POST /form HTTP/1.1\r\nHost: foo.test\r\nContent-Length: 24\r\n\r\n";
    let mut input = head.to_vec();
    input.extend_from_slice(b"a=1&b=2\r\n\r\nGET / HTTP/1.1");
    let got = http(head);
    assert_eq!(sniff(&input), Sniff::Http(got));
    let Sniff::Http(got) = sniff(&input) else {
        unreachable!()
    };
    assert_eq!((got.method.as_str(), got.head_len), ("POST", head.len()));
}

#[test]
fn bare_newlines_and_versions() {
    let input = b"GET /x HTTP/1.0\nHost: foo.test\n\n";
    assert_eq!(http(input).head_len, input.len());
    assert_eq!(http(b"GET / http/1.1\r\n\r\n").path, "/");
    for method in METHODS.split(' ').filter(|&m| m != "CONNECT") {
        let input = format!("{method} /p HTTP/1.1\r\nHost: h.test\r\n\r\n");
        assert!(
            !matches!(sniff(input.as_bytes()), Sniff::Reject(_) | Sniff::NeedMore),
            "{method}"
        );
    }
    let bad: [&[u8]; 9] = [
        b"GET / HTTP/2.0\r\n",
        b"GET / HTTP/1.1x\r\n",
        b"GET /\r\n",
        b"get / HTTP/1.1\r\n",
        b"GET  / HTTP/1.1\r\n",
        b"GET / HTTP/1.1 \r\n",
        b"GET\t/ HTTP/1.1\r\n",
        b"\r\nGET / HTTP/1.1\r\n",
        b"BREW /pot HTTP/1.1\r\n",
    ];
    for input in bad {
        assert_eq!(
            sniff(input),
            Sniff::Reject(SniffError::NotHttp),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn garbage_is_refused_early() {
    let ssh = b"SSH-2.0-OpenSSH_9.2\r\n";
    for k in 1..=ssh.len() {
        assert_eq!(sniff(&ssh[..k]), Sniff::Reject(SniffError::NotHttp));
    }
    let early: [(&[u8], usize); 6] = [
        (b"EHLO mail.test\r\n", 1),
        (b"GETX / HTTP/1.1", 4),
        (b"GET / HTTX", 10),
        (b"GET / HTTP/1.1\rX", 16),
        (b"OPTIONS *\x00", 10),
        (b"\x00\x01\x02", 1),
    ];
    for (input, at) in early {
        assert_eq!(sniff(&input[..at - 1]), Sniff::NeedMore, "{input:?}");
        assert_eq!(
            sniff(&input[..at]),
            Sniff::Reject(SniffError::NotHttp),
            "{input:?}"
        );
    }
    assert_eq!(SniffError::NotHttp.to_string(), "not an HTTP request");
    assert_eq!(
        SniffError::HeadTooLarge.to_string(),
        "request head larger than 16384 bytes"
    );
}

#[test]
fn request_line_text() {
    assert_eq!(sniff(b"GET /\xff"), Sniff::Reject(SniffError::NotText));
    assert_eq!(sniff(b"GET /caf\xc3"), Sniff::NeedMore);
    assert_eq!(
        sniff(b"GET /caf\xc3 HTTP/1.1\r\n"),
        Sniff::Reject(SniffError::NotText)
    );
    assert_eq!(http("GET /café HTTP/1.1\r\n\r\n".as_bytes()).path, "/café");
}

#[test]
fn head_size_limit() {
    let mut input = b"GET / HTTP/1.1\r\nHost: foo.test\r\n".to_vec();
    while input.len() < 20 * 1024 {
        input.extend_from_slice(b"X-Padding: 0123456789abcdef0123456789abcdef\r\n");
    }
    assert_eq!(sniff(&input[..MAX_HEAD - 1]), Sniff::NeedMore);
    assert_eq!(
        sniff(&input[..MAX_HEAD]),
        Sniff::Reject(SniffError::HeadTooLarge)
    );
    assert_eq!(sniff(&input), Sniff::Reject(SniffError::HeadTooLarge));
    // A request line that never ends.
    let mut long = b"GET /".to_vec();
    long.resize(MAX_HEAD, b'a');
    assert_eq!(sniff(&long[..MAX_HEAD - 1]), Sniff::NeedMore);
    assert_eq!(sniff(&long), Sniff::Reject(SniffError::HeadTooLarge));
    // Exactly MAX_HEAD bytes is still fine.
    let mut exact = b"GET / HTTP/1.1\r\nX: ".to_vec();
    exact.resize(MAX_HEAD - 4, b'y');
    exact.extend_from_slice(b"\r\n\r\n");
    assert_eq!(http(&exact).head_len, MAX_HEAD);
}

#[test]
fn normalize() {
    let cases = [
        ("foo.test", Some("foo.test")),
        ("  Foo.TEST.  ", Some("foo.test")),
        ("foo.test:8080", Some("foo.test")),
        ("foo.test:", Some("foo.test")),
        ("*.foo.test", Some("*.foo.test")),
        ("_acme.foo-bar.test", Some("_acme.foo-bar.test")),
        ("0x7f000001--foo.test", Some("foo.test")),
        ("0XDEADBEEF--Foo.Test:80", Some("foo.test")),
        (
            "0x0123456789abcdef0123456789abcdef--v6.test",
            Some("v6.test"),
        ),
        ("0x123--foo.test", Some("0x123--foo.test")), // not 8 or 32 digits: a plain name
        ("[::1]", Some("[::1]")),
        ("[2001:DB8::1]:443", Some("[2001:db8::1]")),
        ("[::ffff:1.2.3.4]", Some("[::ffff:1.2.3.4]")),
        ("[::1", None),
        ("[::1]x", None),
        ("[]", None),
        ("[foo]", None),
        ("::1", None),
        ("foo.test:http", None),
        ("foo.test:123456", None),
        ("", None),
        (".", None),
        (":80", None),
        ("foo/bar", None),
        ("foo bar", None),
        ("fóo.test", None),
        ("foo\0", None),
    ];
    for (raw, want) in cases {
        assert_eq!(normalize_host(raw).as_deref(), want, "{raw:?}");
    }
    assert!(normalize_host(&"a".repeat(254)).is_none());
    assert!(normalize_host(&"a".repeat(253)).is_some());
}

// ------------------------------------------------------------ TLS

fn be16(n: usize) -> [u8; 2] {
    (n as u16).to_be_bytes()
}

fn records(msg: &[u8], sizes: impl Iterator<Item = usize>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = msg;
    for size in sizes {
        let (frag, tail) = rest.split_at(size.min(rest.len()));
        out.extend_from_slice(&[0x16, 3, 1]);
        out.extend_from_slice(&be16(frag.len()));
        out.extend_from_slice(frag);
        rest = tail;
        if rest.is_empty() {
            break;
        }
    }
    out
}

/// A minimal ClientHello in one record, with `extensions` (None: no block).
fn hello(extensions: Option<&[u8]>) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 1, 1, 0]);
    if let Some(ext) = extensions {
        body.extend_from_slice(&be16(ext.len()));
        body.extend_from_slice(ext);
    }
    let mut msg = vec![1, 0];
    msg.extend_from_slice(&be16(body.len()));
    msg.extend_from_slice(&body);
    records(&msg, std::iter::once(usize::MAX))
}

fn sni_ext(entries: &[(u8, &[u8])]) -> Vec<u8> {
    let mut list = Vec::new();
    for (kind, name) in entries {
        list.push(*kind);
        list.extend_from_slice(&be16(name.len()));
        list.extend_from_slice(name);
    }
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&be16(list.len() + 2));
    ext.extend_from_slice(&be16(list.len()));
    ext.extend_from_slice(&list);
    ext
}

fn tls(sni: &str) -> Sniff {
    Sniff::Tls {
        sni: Some(sni.into()),
    }
}

#[test]
fn real_client_hellos() {
    let with = unhex(HELLO_SNI);
    assert_eq!(with.len(), 314);
    assert_eq!(whole(&with), tls("foo.test"));
    let without = unhex(HELLO_NO_SNI);
    assert_eq!(without.len(), 517);
    assert_eq!(whole(&without), Sniff::Tls { sni: None });
    // The client's next record may already be here.
    let mut more = with.clone();
    more.extend_from_slice(&[0x14, 3, 3, 0, 1, 1, 0x17]);
    assert_eq!(sniff(&more), tls("foo.test"));
}

#[test]
fn hello_across_records() {
    let msg = unhex(HELLO_SNI).split_off(5);
    for at in 1..msg.len() {
        let input = records(&msg, [at, usize::MAX].into_iter());
        assert_eq!(sniff(&input), tls("foo.test"), "split at {at}");
    }
    assert_eq!(
        whole(&records(&msg, [100, usize::MAX].into_iter())),
        tls("foo.test")
    );
    assert_eq!(whole(&records(&msg, std::iter::repeat(1))), tls("foo.test"));
    // The second record must be a handshake record too.
    let mut wrong = records(&msg, [100, usize::MAX].into_iter());
    wrong[105] = 0x17;
    assert_eq!(sniff(&wrong[..106]), Sniff::Reject(SniffError::BadTls));
}

#[test]
fn synthetic_hellos() {
    assert_eq!(whole(&hello(None)), Sniff::Tls { sni: None });
    assert_eq!(whole(&hello(Some(&[]))), Sniff::Tls { sni: None });
    assert_eq!(
        whole(&hello(Some(&sni_ext(&[(0, b"Kite.TEST")])))),
        tls("kite.test")
    );
    let other_first = sni_ext(&[(7, b"x"), (0, b"b.test"), (0, b"c.test")]);
    assert_eq!(sniff(&hello(Some(&other_first))), tls("b.test"));
    // A server name that is present but unusable ends the connection.
    let long = vec![b'a'; 300];
    for bad_name in [&b""[..], b"bad name", b"\xff.test", &long] {
        assert_eq!(
            sniff(&hello(Some(&sni_ext(&[(0, bad_name)])))),
            Sniff::Reject(SniffError::BadSni)
        );
    }
    let mut two = sni_ext(&[(0, b"one.test")]);
    two.extend_from_slice(&sni_ext(&[(0, b"two.test")]));
    assert_eq!(sniff(&hello(Some(&two))), tls("one.test"));
}

#[test]
fn sslv2_hello() {
    let mut v2 = vec![0x80, 28, 1, 3, 1, 0, 3, 0, 0, 0, 16, 0, 0, 0x2f];
    v2.extend_from_slice(&[9; 16]);
    assert_eq!(whole(&v2), Sniff::Tls { sni: None });
    assert_eq!(sniff(&[0x80, 5]), Sniff::Reject(SniffError::BadTls));
    assert_eq!(sniff(&[0x80, 28, 2]), Sniff::Reject(SniffError::BadTls));
    v2[6] = 4; // cipher specs no longer add up
    assert_eq!(sniff(&v2), Sniff::Reject(SniffError::BadTls));
}

#[test]
fn malformed_tls() {
    let bad = Sniff::Reject(SniffError::BadTls);
    let real = unhex(HELLO_SNI);
    let patched = |at: usize, byte: u8| {
        let mut v = real.clone();
        v[at] = byte;
        sniff(&v)
    };
    assert_eq!(sniff(&[0x16, 2]), bad); // record major version
    assert_eq!(sniff(&[0x16, 3, 0x10]), bad); // record minor version
    assert_eq!(sniff(&[0x16, 3, 1, 0, 0]), bad); // empty record
    assert_eq!(sniff(&[0x16, 3, 1, 0x48, 0x01]), bad); // record too long
    assert_eq!(sniff(&[0x16, 3, 1, 0, 4, 2]), bad); // ServerHello, not ClientHello
    assert_eq!(sniff(&[0x16, 3, 1, 0x40, 0, 1, 1, 0, 0]), bad); // 64 KiB + 4
    // Lengths that promise more than there is: wait (the caller times out).
    assert_eq!(sniff(&real[..real.len() - 1]), Sniff::NeedMore);
    assert_eq!(patched(8, 0x32), Sniff::NeedMore); // hello one byte longer than its record
    assert_eq!(sniff(&[0x16, 3, 1, 0, 4, 1, 0, 1, 0]), Sniff::NeedMore);
    // A record longer than the complete hello inside it is not our concern.
    assert_eq!(patched(4, 0x36), tls("foo.test"));
    // Inner lengths that overrun or underrun the message.
    assert_eq!(patched(8, 0x30), bad); // hello shorter than its fields
    assert_eq!(patched(43, 0x21), bad); // session id 33 bytes
    assert_eq!(patched(77, 0x3f), bad); // odd cipher suite length
    assert_eq!(patched(140, 0), bad); // no compression methods
    assert_eq!(patched(143, 0xab), bad); // extensions block overruns
    assert_eq!(patched(143, 0xa9), bad); // ... or leaves a trailing byte
    assert_eq!(patched(149, 0x0c), bad); // server_name list overruns its extension
    assert_eq!(patched(149, 0x0a), bad); // ... or underruns it
    assert_eq!(patched(152, 0x09), bad); // host_name overruns the list
    assert_eq!(sniff(&hello(Some(&[0, 0, 0]))), bad); // truncated extension header
    assert_eq!(sniff(&hello(Some(&[0, 0, 0, 2, 0, 5]))), bad); // SNI list overruns
}

/// xorshift64: deterministic, no crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random and mutated inputs never panic, and a decision made on a prefix
/// never changes when more bytes arrive.
#[test]
fn fuzz() {
    let seeds: Vec<Vec<u8>> = vec![
        unhex(HELLO_SNI),
        unhex(HELLO_NO_SNI),
        records(&unhex(HELLO_SNI)[5..], [60, usize::MAX].into_iter()),
        CURL.to_vec(),
        TUNNEL.to_vec(),
        b"CONNECT [::1]:22 HTTP/1.1\r\n\r\n".to_vec(),
        b"HEAD /ping HTTP/1.1\r\nHost: ping.pagekite\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\nHost: 0x7f000001--a.test:1\nUpgrade: websocket\n\n".to_vec(),
    ];
    let alphabet = b"GETPOSCNHAD /:\r\n\x16\x03\x01\x00\x80HTP1.0x-[]\xff";
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let mut input = match rng.below(3) {
            0 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
            1 => (0..rng.below(300))
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect(),
            _ => seeds[rng.below(seeds.len())].clone(),
        };
        for _ in 0..rng.below(4) {
            if input.is_empty() {
                break;
            }
            let at = rng.below(input.len());
            match rng.below(3) {
                0 => input[at] = rng.next() as u8,
                1 => {
                    input.remove(at);
                }
                _ => input.insert(at, alphabet[rng.below(alphabet.len())]),
            }
        }
        let full = sniff(&input);
        let prefix = sniff(&input[..rng.below(input.len() + 1)]);
        if prefix != Sniff::NeedMore {
            assert_eq!(prefix, full, "{input:?}");
        }
    }
}

/// An ALPN extension (RFC 7301) offering `protocols`.
fn alpn_ext(protocols: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for p in protocols {
        list.push(p.len() as u8);
        list.extend_from_slice(p);
    }
    let mut ext = vec![0, 16];
    ext.extend_from_slice(&be16(list.len() + 2));
    ext.extend_from_slice(&be16(list.len()));
    ext.extend_from_slice(&list);
    ext
}

#[test]
fn alpn_offers_are_read_for_acme_tls_alpn() {
    let mut ext = sni_ext(&[(0, b"kite.example.test")]);
    ext.extend(alpn_ext(&[b"h2", b"acme-tls/1"]));
    let with = hello(Some(&ext));
    assert!(offers_alpn(&with, b"acme-tls/1"));
    assert!(offers_alpn(&with, b"h2"));
    assert!(!offers_alpn(&with, b"http/1.1"));
    assert_eq!(whole(&with), tls("kite.example.test"));
    // Not offered, incomplete, or malformed: no.
    let plain = hello(Some(&sni_ext(&[(0, b"kite.example.test")])));
    assert!(!offers_alpn(&plain, b"acme-tls/1"));
    for cut in 0..with.len() {
        assert!(!offers_alpn(&with[..cut], b"acme-tls/1"), "cut at {cut}");
    }
    let mut broken = sni_ext(&[(0, b"kite.example.test")]);
    let mut bad = alpn_ext(&[b"acme-tls/1"]);
    bad[6] = 200; // a protocol name longer than its list
    broken.extend(bad);
    assert!(!offers_alpn(&hello(Some(&broken)), b"acme-tls/1"));
}
