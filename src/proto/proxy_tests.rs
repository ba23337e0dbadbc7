//! Tests of `proxy.rs` and `proxy_client.rs`: option parsing as pagekite.py
//! spells proxies, and both handshakes fed real replies split at every byte.
use super::*;
use crate::proto::proxy_client::MAX_HEAD;

fn spec(arg: &str) -> ProxySpec {
    ProxySpec::parse_url(arg).unwrap()
}

fn creds(user: &str, pass: &str) -> Option<Credentials> {
    Some(Credentials::new(user, pass).unwrap())
}

#[test]
fn pagekite_py_spellings_of_proxy() {
    let s = spec("http://user:pass@proxy.example:3128/");
    assert_eq!(s.kind, ProxyKind::HttpConnect);
    assert_eq!((s.host.as_str(), s.port), ("proxy.example", 3128));
    assert_eq!(s.auth, creds("user", "pass"));
    assert!(!s.torify);
    // The spellings SocksiPyChain's parseproxy takes.
    for (arg, kind, host, port) in [
        ("http://proxy:3128", ProxyKind::HttpConnect, "proxy", 3128),
        ("httpc://proxy:3128/", ProxyKind::HttpConnect, "proxy", 3128),
        ("http://proxy/", ProxyKind::HttpConnect, "proxy", 8080),
        ("http:proxy:3128", ProxyKind::HttpConnect, "proxy", 3128),
        (
            "socks://127.0.0.1:1080/",
            ProxyKind::Socks5,
            "127.0.0.1",
            1080,
        ),
        ("socks5://127.0.0.1/", ProxyKind::Socks5, "127.0.0.1", 1080),
        ("SOCKS5://h:9", ProxyKind::Socks5, "h", 9),
        ("socks5:h:1081", ProxyKind::Socks5, "h", 1081),
        ("tor://127.0.0.1/", ProxyKind::Socks5, "127.0.0.1", 9050),
        ("socks![::1]!1080", ProxyKind::Socks5, "[::1]", 1080),
        ("socks!::1!1080", ProxyKind::Socks5, "::1", 1080),
        ("http!proxy", ProxyKind::HttpConnect, "proxy", 8080),
        ("socks://[::1]:1080/", ProxyKind::Socks5, "::1", 1080),
        (
            "socks://[2001:db8::1]/",
            ProxyKind::Socks5,
            "2001:db8::1",
            1080,
        ),
    ] {
        match ProxySpec::parse_url(arg) {
            Ok(s) => {
                assert_eq!(
                    (s.kind, s.host.as_str(), s.port),
                    (kind, host, port),
                    "{arg}"
                );
                assert_eq!(s.auth, None, "{arg}");
            }
            // `[::1]` is not a host in the ! form (it needs no brackets).
            Err(e) => assert_eq!(host, "[::1]", "{arg}: {e}"),
        }
    }
}

#[test]
fn credentials_in_proxy_urls() {
    let s = spec("socks5://bob:s%3Acret%40x@127.0.0.1:1080/");
    assert_eq!(s.auth, creds("bob", "s:cret@x"));
    // A password with a colon needs no escape: the first colon splits.
    assert_eq!(spec("http://bob:a:b@h:1/").auth, creds("bob", "a:b"));
    // An `@` in the password: the last `@` ends the user info.
    assert_eq!(spec("http://bob:a@b@h:1/").auth, creds("bob", "a@b"));
    // A `!` in a URL's password is not SocksiPyChain's `!` form.
    assert_eq!(spec("http://bob:p!ss@h:1/").auth, creds("bob", "p!ss"));
    // A user without a password.
    assert_eq!(spec("http://bob@h:1/").auth, creds("bob", ""));
    // pagekite.py's colon form with credentials.
    assert_eq!(spec("http:bob:pw@h:1").auth, creds("bob", "pw"));
    // Never shown.
    let shown = format!("{s} {s:?}");
    assert!(!shown.contains("cret"), "{shown}");
    assert_eq!(s.to_string(), "socks5://bob@127.0.0.1:1080");
}

#[test]
fn refused_proxy_options() {
    for (arg, want) in [
        ("", SpecError::Empty),
        ("proxy:3128", SpecError::UnknownScheme("proxy".into())),
        ("ftp://h:1/", SpecError::UnknownScheme("ftp".into())),
        ("socks4://h:1/", SpecError::Unsupported("SOCKS4 proxies")),
        ("socks4a://h:1/", SpecError::Unsupported("SOCKS4 proxies")),
        (
            "ssl:/cert.pem@h,CN:443",
            SpecError::Unsupported("TLS to the proxy"),
        ),
        ("https://h/", SpecError::Unsupported("TLS to the proxy")),
        ("httpcs!h!443", SpecError::Unsupported("TLS to the proxy")),
        (
            "none://h/",
            SpecError::Unsupported("system default proxies"),
        ),
        ("http://h:0/", SpecError::BadPort("0".into())),
        ("http://h:65536/", SpecError::BadPort("65536".into())),
        ("http://h:+80/", SpecError::BadPort("+80".into())),
        ("http://h:80/x", SpecError::TrailingPath),
        ("http://h h:80/", SpecError::BadHost("h h".into())),
        ("http://:80/", SpecError::BadHost(String::new())),
        ("http://[zz]:80/", SpecError::BadHost("[zz]:80".into())),
        ("http://[::1]x/", SpecError::BadPort("x".into())),
        ("http://:pw@h:80/", SpecError::BadCredentials),
        ("http://bob:%zz@h:80/", SpecError::BadEscape),
        ("http://bob:%ff@h:80/", SpecError::BadEscape),
        ("http!h!1!x", SpecError::Unsupported("extra !fields")),
    ] {
        assert_eq!(ProxySpec::parse_url(arg), Err(want), "{arg}");
    }
    let long = "u".repeat(256);
    assert_eq!(
        ProxySpec::parse_url(&format!("socks://{long}:p@h/")),
        Err(SpecError::BadCredentials)
    );
    // Every refusal reads as a sentence.
    assert!(
        SpecError::UnknownScheme("ftp".into())
            .to_string()
            .contains("unknown proxy scheme")
    );
}

#[test]
fn socksify_torify_and_noproxy() {
    let s = ProxySpec::parse_socks("127.0.0.1:9050", true).unwrap();
    assert_eq!(
        (s.kind, s.host.as_str(), s.port),
        (ProxyKind::Socks5, "127.0.0.1", 9050)
    );
    assert!(s.torify && !s.resolve_locally() && !s.pings_frontends());
    assert_eq!(s.to_string(), "tor://127.0.0.1:9050");
    let s = ProxySpec::parse_socks("localhost:1080", false).unwrap();
    assert!(!s.torify && s.resolve_locally() && s.pings_frontends());
    // pagekite.py splits at the last colon; brackets work too.
    assert_eq!(
        ProxySpec::parse_socks("::1:1080", false).unwrap().host,
        "::1"
    );
    assert_eq!(
        ProxySpec::parse_socks("[::1]:1080", false).unwrap().host,
        "::1"
    );
    assert_eq!(
        ProxySpec::parse_socks("localhost", false),
        Err(SpecError::BadPort(String::new()))
    );
    assert_eq!(
        ProxySpec::parse_socks("[::1]", false),
        Err(SpecError::BadPort(String::new()))
    );

    let mut chain = Vec::new();
    for (flag, value) in [
        ("proxy", "http://a:1/"),
        ("socksify", "b:2"),
        ("noproxy", ""),
        ("torify", "c:3"),
        ("proxy", "socks://d:4/"),
    ] {
        apply(&mut chain, parse_flag(flag, value).unwrap());
    }
    let hosts: Vec<&str> = chain.iter().map(|s| s.host.as_str()).collect();
    assert_eq!(hosts, ["c", "d"]);
    assert!(parse_flag("frontend", "x").is_err());
}

#[test]
fn targets() {
    assert_eq!(
        Target::new("10.1.2.3", 443).unwrap(),
        Target::Addr("10.1.2.3:443".parse().unwrap())
    );
    assert_eq!(Target::new("::1", 443).unwrap().authority(), "[::1]:443");
    assert_eq!(
        Target::new("fe.example", 80).unwrap().authority(),
        "fe.example:80"
    );
    for bad in ["", "a b", "a\r\nX: y", "a/b", &"x".repeat(256)] {
        assert!(Target::new(bad, 80).is_err(), "{bad:?}");
    }
}

/// Both kinds of handshake, for the helpers below.
trait Handshake {
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;
    fn handle_input(&mut self, input: &[u8]) -> Result<Progress, ProxyError>;
}

impl Handshake for ProxyHandshake {
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        ProxyHandshake::poll_transmit(self)
    }
    fn handle_input(&mut self, input: &[u8]) -> Result<Progress, ProxyError> {
        ProxyHandshake::handle_input(self, input)
    }
}

impl Handshake for ChainHandshake {
    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        ChainHandshake::poll_transmit(self)
    }
    fn handle_input(&mut self, input: &[u8]) -> Result<Progress, ProxyError> {
        ChainHandshake::handle_input(self, input)
    }
}

/// Runs a handshake over `server` (everything the proxy sends) cut into
/// `pieces`; returns where the tunnel's bytes begin in `server` (or the
/// error) and everything the client sent.
fn run<H: Handshake>(
    mut hs: H,
    server: &[u8],
    cuts: &[usize],
) -> (Result<usize, ProxyError>, Vec<u8>) {
    let mut sent = Vec::new();
    let mut start = 0;
    let ends = cuts.iter().copied().chain([server.len()]);
    for end in ends {
        if let Some(out) = hs.poll_transmit() {
            sent.extend(out);
        }
        let piece = &server[start..end];
        match hs.handle_input(piece) {
            Ok(Progress::NeedMore) => {}
            Ok(Progress::Done { leftover_from }) => {
                assert!(leftover_from <= piece.len());
                if let Some(out) = hs.poll_transmit() {
                    sent.extend(out);
                }
                return (Ok(start + leftover_from), sent);
            }
            Err(e) => {
                if let Some(out) = hs.poll_transmit() {
                    sent.extend(out);
                }
                // A failed machine stays failed.
                assert_eq!(hs.handle_input(b"x"), Err(e.clone()));
                return (Err(e), sent);
            }
        }
        start = end;
    }
    panic!("handshake not finished after all input; sent {sent:?}")
}

/// The outcome for `server` whole, checked equal when it is split at every
/// byte, in two and into single bytes.
fn every_split<H: Handshake>(
    make: impl Fn() -> H,
    server: &[u8],
) -> (Result<usize, ProxyError>, Vec<u8>) {
    let whole = run(make(), server, &[]);
    for cut in 0..=server.len() {
        assert_eq!(run(make(), server, &[cut]), whole, "cut at {cut}");
    }
    let bytes: Vec<usize> = (0..=server.len()).collect();
    assert_eq!(run(make(), server, &bytes), whole, "byte by byte");
    whole
}

fn http(target: &str, auth: Option<Credentials>) -> impl Fn() -> ProxyHandshake {
    let mut spec = spec("http://proxy:3128/");
    spec.auth = auth;
    let (host, port) = target.rsplit_once(':').unwrap();
    let target = Target::new(host.trim_matches(['[', ']']), port.parse().unwrap()).unwrap();
    move || ProxyHandshake::new(&spec, target.clone())
}

/// tinyproxy 1.11's answer to CONNECT (reqs.c), then the frontend's first
/// tunnel bytes.
const TINYPROXY_OK: &[u8] =
    b"HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\nHTTP/1.1 200";
/// tinyproxy's answer to a wrong or missing password, with its HTML body.
const TINYPROXY_407: &[u8] = b"HTTP/1.0 407 Proxy Authentication Required\r\n\
Server: tinyproxy/1.11.1\r\nContent-Type: text/html\r\n\
Proxy-Authenticate: Basic realm=\"tinyproxy\"\r\nConnection: close\r\n\r\n\
<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<html>";

#[test]
fn http_connect_through_tinyproxy() {
    let (result, sent) = every_split(http("fe.example:443", None), TINYPROXY_OK);
    assert_eq!(
        sent,
        b"CONNECT fe.example:443 HTTP/1.1\r\nHost: fe.example\r\n\r\n"
    );
    let at = result.unwrap();
    assert_eq!(&TINYPROXY_OK[at..], b"HTTP/1.1 200");

    let (result, sent) = every_split(
        http("[2001:db8::7]:443", creds("bob", "pw")),
        b"HTTP/1.1 200 OK\n\n",
    );
    assert_eq!(
        String::from_utf8(sent).unwrap(),
        "CONNECT [2001:db8::7]:443 HTTP/1.1\r\nHost: [2001:db8::7]\r\n\
         Proxy-Authorization: Basic Ym9iOnB3\r\n\r\n"
    );
    assert_eq!(result, Ok(17));
}

#[test]
fn http_connect_refusals() {
    let (result, _) = every_split(http("fe:443", creds("bob", "wrong")), TINYPROXY_407);
    let e = result.unwrap_err();
    assert_eq!(
        e,
        ProxyError::Refused {
            status: 407,
            reason: "Proxy Authentication Required".into()
        }
    );
    assert!(e.is_auth_failure());
    assert!(e.to_string().contains("407"), "{e}");
    // What Debian's tinyproxy 1.11 answers a wrong Basic password.
    let (result, _) = every_split(
        http("fe:443", creds("bob", "wrong")),
        b"HTTP/1.0 401 Unauthorized\r\nServer: tinyproxy/1.11.1\r\n\r\n",
    );
    let e = result.unwrap_err();
    assert!(e.is_auth_failure(), "{e:?}");
    assert!(e.to_string().contains("credentials: 401"), "{e}");
    // Squid refusing a port, a reason with bytes to escape.
    let (result, _) = every_split(
        http("fe:25", None),
        b"HTTP/1.1 403 Forbidden\x1b[2J\r\n\r\n",
    );
    assert_eq!(
        result,
        Err(ProxyError::Refused {
            status: 403,
            reason: "Forbidden\\x1b[2J".into()
        })
    );
    for (reply, line) in [
        (&b"SSH-2.0-OpenSSH_9.2\r\n\r\n"[..], "SSH-2.0-OpenSSH_9.2"),
        (b"HTTP/2 200\r\n\r\n", "HTTP/2 200"),
        (b"HTTP/1.1 20\r\n\r\n", "HTTP/1.1 20"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 2000 OK"),
        (b"\r\n\r\n", ""),
    ] {
        let (result, _) = every_split(http("fe:443", None), reply);
        assert_eq!(result, Err(ProxyError::NotHttp(line.into())));
    }
    // A 1xx is interim: the 200 after it opens the tunnel.
    let (result, _) = every_split(
        http("fe:443", None),
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n!",
    );
    assert_eq!(result, Ok(44));
    // A head that never ends is bounded.
    let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
    endless.resize(MAX_HEAD + 10, b'a');
    let mut hs = http("fe:443", None)();
    assert_eq!(hs.handle_input(&endless), Err(ProxyError::HeadTooLarge));
}

fn socks(target: Target, auth: Option<Credentials>) -> impl Fn() -> ProxyHandshake {
    let mut spec = spec("socks5://127.0.0.1:1080/");
    spec.auth = auth;
    move || ProxyHandshake::new(&spec, target.clone())
}

#[test]
fn socks5_without_credentials() {
    // What microsocks sends: method 0, then success with its bound IPv4
    // address; then the tunnel's first bytes.
    let server = b"\x05\x00\x05\x00\x00\x01\x7f\x00\x00\x01\xc3\x50tunnel";
    let target = Target::new("192.0.2.10", 443).unwrap();
    let (result, sent) = every_split(socks(target, None), server);
    assert_eq!(result, Ok(server.len() - 6));
    assert_eq!(
        sent,
        b"\x05\x01\x00\x05\x01\x00\x01\xc0\x00\x02\x0a\x01\xbb"
    );
}

#[test]
fn socks5_with_credentials_and_names() {
    let server = b"\x05\x02\x01\x00\x05\x00\x00\x03\x09localhost\x04\x38";
    let target = Target::new("fe.example", 80).unwrap();
    let (result, sent) = every_split(socks(target, creds("bob", "pw")), server);
    assert_eq!(result, Ok(server.len()));
    let mut want = b"\x05\x02\x00\x02".to_vec();
    want.extend(b"\x01\x03bob\x02pw");
    want.extend(b"\x05\x01\x00\x03\x0afe.example\x00\x50");
    assert_eq!(sent, want);

    // An IPv6 target and bound address; the server skips authentication.
    let server = b"\x05\x00\x05\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01";
    let target = Target::new("2001:db8::1", 443).unwrap();
    let (result, sent) = every_split(socks(target, creds("bob", "pw")), server);
    assert_eq!(result, Ok(server.len()));
    let mut want = b"\x05\x02\x00\x02\x05\x01\x00\x04".to_vec();
    want.extend(
        "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    want.extend(b"\x01\xbb");
    assert_eq!(sent, want);
}

#[test]
fn socks5_failures_are_typed() {
    let ip = || Target::new("192.0.2.10", 443).unwrap();
    let cases: Vec<(&[u8], Option<Credentials>, ProxyError)> = vec![
        (b"\x05\xff", None, ProxyError::NoAcceptableMethod),
        (b"\x05\x02", None, ProxyError::UnexpectedMethod(2)),
        (
            b"\x05\x01",
            creds("a", "b"),
            ProxyError::UnexpectedMethod(1),
        ),
        (b"\x04\x00", None, ProxyError::NotSocks5(4)),
        (b"HTTP/1.1 400", None, ProxyError::NotSocks5(b'H')),
        (
            b"\x05\x02\x01\x01",
            creds("a", "b"),
            ProxyError::AuthRejected(1),
        ),
        (
            b"\x05\x02\x05\x00",
            creds("a", "b"),
            ProxyError::BadAuthVersion(5),
        ),
        (b"\x05\x00\x04\x00", None, ProxyError::NotSocks5(4)),
        (
            b"\x05\x00\x05\x00\x00\x02",
            None,
            ProxyError::BadAddressType(2),
        ),
    ];
    for (server, auth, want) in cases {
        let (result, _) = every_split(socks(ip(), auth), server);
        assert_eq!(result, Err(want.clone()), "{server:?}");
        assert!(!want.to_string().is_empty());
    }
    // Every RFC 1928 reply code, typed, from its first two bytes on.
    let names = [
        Socks5Reply::GeneralFailure,
        Socks5Reply::NotAllowed,
        Socks5Reply::NetworkUnreachable,
        Socks5Reply::HostUnreachable,
        Socks5Reply::ConnectionRefused,
        Socks5Reply::TtlExpired,
        Socks5Reply::CommandNotSupported,
        Socks5Reply::AddressTypeNotSupported,
        Socks5Reply::Unassigned(9),
        Socks5Reply::Unassigned(0xff),
    ];
    for (code, name) in [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 0xff].into_iter().zip(names) {
        let server = [5, 0, 5, code, 0, 1, 0, 0, 0, 0, 0, 0];
        let (result, _) = every_split(socks(ip(), None), &server);
        assert_eq!(result, Err(ProxyError::ConnectFailed(name)), "{code}");
        let (result, _) = every_split(socks(ip(), None), &server[..4]);
        assert_eq!(result, Err(ProxyError::ConnectFailed(name)), "{code}");
    }
    assert_eq!(
        ProxyError::ConnectFailed(Socks5Reply::ConnectionRefused).to_string(),
        "the SOCKS5 proxy says: connection refused"
    );
    assert!(ProxyError::AuthRejected(1).is_auth_failure());
}

#[test]
fn finished_machines_hand_everything_on() {
    let mut hs = socks(Target::new("192.0.2.1", 1).unwrap(), None)();
    assert_eq!(hs.poll_transmit(), Some(vec![5, 1, 0]));
    assert_eq!(hs.poll_transmit(), None);
    assert_eq!(hs.handle_input(b""), Ok(Progress::NeedMore));
    assert_eq!(
        hs.handle_input(b"\x05\x00\x05\x00\x00\x01\0\0\0\0\0\0"),
        Ok(Progress::Done { leftover_from: 12 })
    );
    assert_eq!(
        hs.handle_input(b"data"),
        Ok(Progress::Done { leftover_from: 0 })
    );
}

/// What pagekite.py 1.5.2's client (SocksiPyChain under Python 3) sent to a
/// scripted proxy on loopback for `fe.example:443` without credentials
/// (with credentials it fails before sending: a str/bytes TypeError in
/// both its HTTP and its SOCKS5 code).
#[test]
fn same_bytes_as_pagekite_py_sends() {
    let fe = || Target::new("fe.example", 443).unwrap();
    let (_, sent) = every_split(http("fe.example:443", None), TINYPROXY_OK);
    assert_eq!(
        sent,
        b"CONNECT fe.example:443 HTTP/1.1\r\nHost: fe.example\r\n\r\n"
    );
    let (_, sent) = every_split(
        socks(fe(), None),
        b"\x05\x00\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38",
    );
    assert_eq!(sent, b"\x05\x01\x00\x05\x01\x00\x03\nfe.example\x01\xbb");
}

#[test]
fn chains_go_hop_by_hop() {
    let chain = [
        spec("http://bob:pw@10.0.0.1:3128/"),
        spec("socks5://hop2.example:1080/"),
    ];
    let fe = Target::new("fe.example", 443).unwrap();
    let make = || ChainHandshake::new(&chain, fe.clone()).unwrap();
    // The HTTP proxy opens a tunnel to the SOCKS server, which connects.
    let mut server = TINYPROXY_OK[..TINYPROXY_OK.len() - 12].to_vec();
    server.extend(b"\x05\x00\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38tunnel");
    let (result, sent) = every_split(make, &server);
    assert_eq!(result, Ok(server.len() - 6));
    let mut want = b"CONNECT hop2.example:1080 HTTP/1.1\r\nHost: hop2.example\r\n\
Proxy-Authorization: Basic Ym9iOnB3\r\n\r\n"
        .to_vec();
    want.extend(b"\x05\x01\x00\x05\x01\x00\x03\nfe.example\x01\xbb");
    assert_eq!(sent, want);
    // A refusal says which hop.
    let mut hs = make();
    let _ = hs.poll_transmit();
    let mut refused = TINYPROXY_OK[..TINYPROXY_OK.len() - 12].to_vec();
    refused.extend(b"\x05\xff");
    assert_eq!(
        hs.handle_input(&refused),
        Err(ProxyError::NoAcceptableMethod)
    );
    assert_eq!(hs.hop(), 1);
    // A chain of one is a plain hop; none is no chain.
    let (result, _) = every_split(
        || ChainHandshake::new(&chain[..1], fe.clone()).unwrap(),
        TINYPROXY_OK,
    );
    assert_eq!(result, Ok(TINYPROXY_OK.len() - 12));
    assert!(ChainHandshake::new(&[], fe.clone()).is_none());
    // Names stay unresolved as soon as one hop is Tor.
    let mut tor = chain.to_vec();
    assert!(resolve_locally(&tor) && pings_frontends(&tor));
    tor.push(ProxySpec::parse_socks("127.0.0.1:9050", true).unwrap());
    assert!(!resolve_locally(&tor) && !pings_frontends(&tor));
}
