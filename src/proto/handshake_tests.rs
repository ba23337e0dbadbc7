//! Unit tests of the tunnel handshake's heads: requests, replies, kite
//! lines and the chunk-size announcement, over real pagekite.py captures.

use super::*;

const SRAND: &str = "5e33c345f2c50664e283c2182d9c8944d011";

#[test]
fn signature_vectors_from_the_wire() {
    let p1 = format!("http:foo.test:{SRAND}:");
    assert_eq!(
        sign("s3cret", &p1, "89fed543"),
        "89fed54338fae7bfd12d2fc402d1545e14e5"
    );
    let p2 = format!("http:foo.test:{SRAND}:t423212fa8c36cd5acb8a1e8a832ae715def");
    assert_eq!(
        sign("s3cret", &p2, "e0766c60"),
        "e0766c604b0f575e1b4d24a53c555fd23a34"
    );
    assert!(verify(
        "s3cret",
        &p2,
        "e0766c604b0f575e1b4d24a53c555fd23a34"
    ));
    assert!(!verify(
        "wrong",
        &p2,
        "e0766c604b0f575e1b4d24a53c555fd23a34"
    ));
    assert!(!verify(
        "s3cret",
        &p2,
        "e0766c604b0f575e1b4d24a53c555fd23a35"
    ));
    assert!(!verify("s3cret", &p2, "e07"));
    assert!(!verify("s3cret", &p2, ""));
}

#[test]
fn challenge_vector_and_windows() {
    let what = format!("http:foo.test:{SRAND}");
    let t = 1795303899;
    let c = challenge("fe-global-secret", &what, t, "t1234567");
    assert_eq!(c, "t1234567521b54df1de7603285112792858c");
    assert!(check_challenge("fe-global-secret", &what, &c, t));
    // Still good in the next window, gone after that.
    assert!(check_challenge("fe-global-secret", &what, &c, t + 600));
    assert!(!check_challenge("fe-global-secret", &what, &c, t + 1200));
    assert!(!check_challenge("other", &what, &c, t));
    assert!(!check_challenge(
        "fe-global-secret",
        "http:bar.test:x",
        &c,
        t
    ));
    assert!(!check_challenge("fe-global-secret", &what, "", t));
    assert!(!check_challenge(
        "fe-global-secret",
        &what,
        "x1234567521b54df1de7603285112792858c",
        t
    ));
}

#[test]
fn salts_and_tokens() {
    assert_eq!(salt8([0xde, 0xad, 0xbe, 0xef]), "deadbeef");
    assert_eq!(tok8([0xde, 0xad, 0xbe, 0xef]), "teadbeef");
}

#[test]
fn parses_the_real_request() {
    let head = b"CONNECT PageKite:1 HTTP/1.0\r\nX-PageKite-Features: AddKites\r\nX-PageKite-Version: 1.5.2.201011\r\nX-PageKite-Features: ZChunks\r\nX-PageKite-Version: 1.5.2.201011\r\nX-PageKite: http:foo.test:5e33c345f2c50664e283c2182d9c8944d011::89fed54338fae7bfd12d2fc402d1545e14e5\r\n\r\n";
    let r = parse_request(head).unwrap();
    assert!(r.has_feature("addkites") && r.has_feature("ZChunks"));
    assert_eq!(r.version.as_deref(), Some("1.5.2.201011"));
    assert!(!r.takes_whole_segment_chunks());
    assert_eq!((r.max_chunk, r.chunk_limit()), (None, CLASSIC_PAYLOAD));
    assert_eq!(r.prefix, Prefix::PageKite);
    assert_eq!(r.kites.len(), 1);
    let k = &r.kites[0];
    assert_eq!(
        (k.proto.as_str(), k.domain.as_str(), k.token.as_str()),
        ("http", "foo.test", "")
    );
    assert_eq!(k.what(), format!("http:foo.test:{SRAND}"));
    assert_eq!(k.sign, "89fed54338fae7bfd12d2fc402d1545e14e5");
}

#[test]
fn only_rkite_backends_take_whole_segment_chunks() {
    let kite = KiteLine::parse("http:a.test:s::x").unwrap();
    let version_of = |v: &str| {
        let head = build_request(v, None, std::slice::from_ref(&kite));
        parse_request(head.as_bytes()).unwrap()
    };
    assert!(version_of("rkite-0.1.0").takes_whole_segment_chunks());
    for other in ["1.5.2.201011", "rkite", "rkite-x", "RKITE-0.1.0", "0.5.1c"] {
        assert!(!version_of(other).takes_whole_segment_chunks(), "{other}");
    }
    let none = parse_request(b"CONNECT PageKite:1 HTTP/1.0\r\nX-PageKite: a:b:c::d\r\n\r\n");
    assert!(!none.unwrap().takes_whole_segment_chunks());
}

#[test]
fn request_variants() {
    let legacy = b"CONNECT pagekite:2 HTTP/1.1\nX-Beanstalk: HTTP-8080:Foo.Test:s::x\n\n";
    let r = parse_request(legacy).unwrap();
    assert_eq!(r.prefix, Prefix::Beanstalk);
    assert_eq!(r.kites[0].proto, "http-8080");
    assert_eq!(r.kites[0].domain, "foo.test");
    assert_eq!(
        parse_request(b"CONNECT PageKite:1 HTTP/1.0\r\n\r\n"),
        Err(HandshakeError::NoKites)
    );
    assert_eq!(
        parse_request(b"GET / HTTP/1.0\r\n\r\n"),
        Err(HandshakeError::NotTunnelRequest)
    );
    // The sniffer routes a lower-case version here as a tunnel (found
    // by the sniff fuzz check's tunnel cross-check), so the handshake
    // must take it too.
    let lower = b"CONNECT pagekite:1 http/1.0\r\nX-PageKite: http:a:b::c\r\n\r\n";
    assert_eq!(parse_request(lower).map(|r| r.kites.len()), Ok(1));
    assert!(matches!(
        parse_request(b"CONNECT PageKite:1 HTTP/1.0\r\nX-PageKite: a:b:c\r\n\r\n"),
        Err(HandshakeError::BadKiteLine(_))
    ));
    assert!(matches!(
        parse_request(b"CONNECT PageKite:1 HTTP/1.0\r\nX-PageKite: a:b:c:d:e:f\r\n\r\n"),
        Err(HandshakeError::BadKiteLine(_))
    ));
    assert_eq!(
        parse_request(b"CONNECT PageKite:1 HTTP/1.0\r\n\xff\r\n\r\n"),
        Err(HandshakeError::NotText)
    );
    let mut many = String::from("CONNECT PageKite:1 HTTP/1.0\r\n");
    for _ in 0..=MAX_KITES {
        many.push_str("X-PageKite: http:a:b::c\r\n");
    }
    many.push_str("\r\n");
    assert_eq!(
        parse_request(many.as_bytes()),
        Err(HandshakeError::TooManyKites)
    );
}

#[test]
fn request_round_trip() {
    let kite = KiteLine {
        proto: "http".into(),
        domain: "foo.test".into(),
        srand: SRAND.into(),
        token: String::new(),
        sign: "89fed54338fae7bfd12d2fc402d1545e14e5".into(),
    };
    let text = build_request("rkite-0.1", Some("ab:cd"), std::slice::from_ref(&kite));
    assert!(!text.contains("ZChunks"));
    let r = parse_request(text.as_bytes()).unwrap();
    assert_eq!(r.kites, vec![kite]);
    assert_eq!(r.replace.as_deref(), Some("ab:cd"));
    assert!(r.has_feature("AddKites"));
}

#[test]
fn parses_the_real_reply() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nPragma: no-cache\r\nExpires: 0\r\nCache-Control: no-store\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nX-PageKite-Features: ZChunks\r\nX-PageKite-Features: WebSockets\r\nX-PageKite-Features: AddKites\r\nX-PageKite-Protos: http, https, raw, websocket\r\nX-PageKite-Ports: 9080, 9082\r\nX-PageKite-Raw-Ports: virtual\r\nX-PageKite-OK: http:foo.test:91e0455ff5883e50fcaea1b626f014cee5e9\r\nX-PageKite-Invalid: http:bad.test:b7f8b8f77ffbe9db4a69573c55cd7afc9e80\r\nX-PageKite-Invalid-Why: http:bad.test:b7f8b8f77ffbe9db4a69573c55cd7afc9e80;signature\r\nX-PageKite-SessionID: 6b02294e:d00cc8c7b2992b19a3ad05a040d6436d35a7889e\r\nX-PageKite-Misc: motd=\r\n\r\n";
    let (status, headers) = split_head(head).unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    let reply = parse_reply(headers);
    assert!(reply.has_feature("AddKites"));
    assert_eq!(announced_max_chunk(split_head(head).unwrap().1), None);
    assert_eq!(
        reply.session_id.as_deref(),
        Some("6b02294e:d00cc8c7b2992b19a3ad05a040d6436d35a7889e")
    );
    assert_eq!(
        reply.answers,
        vec![
            KiteAnswer::Ok {
                what: "http:foo.test:91e0455ff5883e50fcaea1b626f014cee5e9".into()
            },
            KiteAnswer::Invalid {
                what: "http:bad.test:b7f8b8f77ffbe9db4a69573c55cd7afc9e80".into(),
                why: "signature".into()
            },
        ]
    );
    let signthis = parse_reply(header_lines(
        "X-PageKite-SignThis: http:foo.test:5e33c345f2c50664e283c2182d9c8944d011:t423212fa8c36cd5acb8a1e8a832ae715def",
    ));
    assert_eq!(
        signthis.answers,
        vec![KiteAnswer::SignThis {
            what: format!("http:foo.test:{SRAND}"),
            challenge: "t423212fa8c36cd5acb8a1e8a832ae715def".into()
        }]
    );
}

#[test]
fn reply_round_trip() {
    let info = FrontendInfo {
        protos: vec!["http".into(), "raw".into()],
        ports: vec![9080, 9082],
        raw_ports: vec!["virtual".into()],
        motd: String::new(),
    };
    let answers = vec![
        KiteAnswer::SignThis {
            what: "http:a:s".into(),
            challenge: "tabc".into(),
        },
        KiteAnswer::Ok {
            what: "http:b:s".into(),
        },
        KiteAnswer::Invalid {
            what: "http:c:s".into(),
            why: "port".into(),
        },
        KiteAnswer::Duplicate {
            what: "http:d:s".into(),
        },
    ];
    let text = build_reply(Prefix::PageKite, &info, &answers, "1:2");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(text.ends_with("X-PageKite-Misc: motd=\r\n\r\n"));
    assert!(text.contains("X-PageKite-Protos: http, raw\r\n"));
    assert!(text.contains("X-PageKite-Ports: 9080, 9082\r\n"));
    assert!(text.contains("X-PageKite-Raw-Ports: virtual\r\n"));
    let (_, headers) = split_head(text.as_bytes()).unwrap();
    let reply = parse_reply(headers);
    assert_eq!(reply.answers, answers);
    assert_eq!(reply.session_id.as_deref(), Some("1:2"));
    assert_eq!(
        announced_max_chunk(split_head(text.as_bytes()).unwrap().1),
        Some(MAX_PAYLOAD)
    );
    let legacy = build_reply(Prefix::Beanstalk, &info, &answers[1..2], "x");
    assert!(legacy.contains("X-Beanstalk-OK: http:b:s\r\n"));
    let (_, headers) = split_head(legacy.as_bytes()).unwrap();
    assert_eq!(announced_max_chunk(headers), Some(MAX_PAYLOAD));
}

#[test]
fn each_end_announces_the_chunks_it_takes_and_is_sent_no_more() {
    let kite = KiteLine::parse("http:a.test:s::x").unwrap();
    let head = build_request("rkite-0.1.0", None, std::slice::from_ref(&kite));
    assert!(head.contains(&format!("\r\nX-PageKite-Max-Chunk: {MAX_PAYLOAD}\r\n")));
    let r = parse_request(head.as_bytes()).unwrap();
    assert_eq!(
        (r.max_chunk, r.chunk_limit()),
        (Some(MAX_PAYLOAD), MAX_PAYLOAD)
    );
    // Whatever a peer says: never more than rkite takes, never less than
    // every PageKite peer takes; a value that is not a number is no value.
    let said = |value: &str| {
        let head = format!(
            "CONNECT PageKite:1 HTTP/1.0\r\nX-PageKite-Max-Chunk: {value}\r\nX-PageKite: a:b:c::d\r\n\r\n"
        );
        let request = parse_request(head.as_bytes()).unwrap().chunk_limit();
        let reply = announced_max_chunk(header_lines(&format!("X-Beanstalk-Max-Chunk: {value}")));
        assert_eq!(request, chunk_limit(reply), "{value}");
        request
    };
    assert_eq!(said("100000"), 100_000);
    assert_eq!(said(" 100000 "), 100_000);
    assert_eq!(said("99999999999"), MAX_PAYLOAD);
    assert_eq!(said("1000"), CLASSIC_PAYLOAD);
    for junk in [
        "",
        "-5",
        "0x40000",
        "1e6",
        "262144 bytes",
        "184467440737095516160",
    ] {
        assert_eq!(said(junk), CLASSIC_PAYLOAD, "{junk:?}");
    }
}

#[test]
fn inband_lines() {
    let kite = KiteLine::parse("http:foo.test:s:t1:sig").unwrap();
    let lines = inband_request_lines("v", std::slice::from_ref(&kite));
    let block = lines.join("\r\n");
    let r = parse_kite_headers(header_lines(&block)).unwrap();
    assert_eq!(r.kites, vec![kite]);
    let lines = inband_reply_lines(
        Prefix::PageKite,
        &[KiteAnswer::Ok { what: "w".into() }],
        "sid",
    );
    assert_eq!(lines[0], "NOOP: 1");
    let reply = parse_reply(header_lines(&lines.join("\r\n")));
    assert_eq!(reply.answers, vec![KiteAnswer::Ok { what: "w".into() }]);
}
