//! Tests of `http.rs` and `http_head.rs`: every request of a stream judged,
//! at every split point of the input.
use super::*;
use crate::proto::options::KiteOptions;

/// What every head gets with [`info`].
const ADD: &str =
    "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-PageKite-Port: 9080\r\n";
const HOST: &str = "h.test";

fn info() -> ForwardInfo {
    ForwardInfo {
        remote_ip: "127.0.0.1".into(),
        port: 9080,
        tls: false,
        rewrite_host: None,
    }
}

fn rules() -> Rules {
    Rules::new(HOST)
}

/// What came out, and the refusal if the stream ended refused.
type Outcome = (Vec<u8>, Option<Refused>);

fn feed_all(mut rw: RequestRewriter, parts: &[&[u8]]) -> Outcome {
    let mut out = Vec::new();
    let mut refused = None;
    for part in parts {
        let fed = rw.feed(part, &mut |b| out.extend_from_slice(b));
        if let Err(e) = fed {
            // Once refused, always refused, with the same reason.
            assert!(refused.is_none_or(|r| r == e));
            refused = Some(e);
        }
    }
    assert_eq!(rw.refused(), refused);
    rw.flush();
    assert_eq!(rw.pending(), 0);
    (out, refused)
}

/// Feeding `input` whole, in every two-way split and byte at a time gives
/// the same result, which is returned.
fn check_with(make: &dyn Fn() -> RequestRewriter, input: &[u8]) -> Outcome {
    let whole = feed_all(make(), &[input]);
    for k in 0..=input.len() {
        let (a, b) = input.split_at(k);
        assert_eq!(feed_all(make(), &[a, b]), whole, "split at {k}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(feed_all(make(), &bytes), whole, "byte at a time");
    whole
}

fn check(input: &str) -> (String, Option<Refused>) {
    let (out, r) = check_with(&|| RequestRewriter::new(info(), rules()), input.as_bytes());
    (String::from_utf8(out).unwrap(), r)
}

fn ok(input: &str) -> String {
    let (out, r) = check(input);
    assert_eq!(r, None, "{input:?}");
    out
}

/// `input` is refused for `why` after exactly `delivered` went out.
fn refused(input: &str, delivered: &str, why: Refused) {
    assert_eq!(check(input), (delivered.to_owned(), Some(why)), "{input:?}");
}

const BAD_LINE: Refused = Refused::BadRequest(Malformed::RequestLine);

#[test]
fn protocol_doc_example() {
    let input = "GET /hello HTTP/1.1\r\nHost: h.test\r\nUser-Agent: curl/7.88.1\r\n\
                 Accept: */*\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
    let want = "GET /hello HTTP/1.1\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\
                X-PageKite-Port: 9080\r\nHost: h.test\r\nUser-Agent: curl/7.88.1\r\n\
                Accept: */*\r\nX-Old-X-Forwarded-For: 6.6.6.6\r\n\r\n";
    assert_eq!(ok(input), want);
}

#[test]
fn keep_alive_gets() {
    let input =
        "GET /a HTTP/1.1\r\nHost: h.test\r\n\r\nGET /b HTTP/1.1\r\nHost: H.Test.:80\r\n\r\n";
    let want = format!(
        "GET /a HTTP/1.1\r\n{ADD}Host: h.test\r\n\r\nGET /b HTTP/1.1\r\n{ADD}Host: H.Test.:80\r\n\r\n"
    );
    assert_eq!(ok(input), want);
}

#[test]
fn every_spelling_of_forwarding_headers_is_renamed() {
    let names = [
        "X-Forwarded-For",
        "x-forwarded-for",
        "X_Forwarded_For",
        "X-Forwarded_Proto",
        "X-Forwarded-Host",
        "x_forwarded_port",
        "Forwarded",
        "X-Real-IP",
        "X_Real_Ip",
        "X-Client-IP",
        "True-Client-IP",
        "X-PageKite-Port",
        "X-PageKite-Anything",
    ];
    for name in names {
        let input = format!("GET / HTTP/1.1\r\nHost: h.test\r\n{name}: 6.6.6.6\r\n\r\n");
        let want = format!("GET / HTTP/1.1\r\n{ADD}Host: h.test\r\nX-Old-{name}: 6.6.6.6\r\n\r\n");
        assert_eq!(ok(&input), want, "{name}");
    }
    for name in ["X-Forwarded", "Forwarded-For", "X-Realip", "Accept"] {
        let input = format!("GET / HTTP/1.1\r\nHost: h.test\r\n{name}: v\r\n\r\n");
        assert!(!ok(&input).contains("X-Old-"), "{name}");
    }
}

#[test]
fn a_request_for_another_site_is_misdirected() {
    let first = "GET /a HTTP/1.1\r\nHost: h.test\r\n\r\n";
    let done = format!("GET /a HTTP/1.1\r\n{ADD}Host: h.test\r\n\r\n");
    // Host switched on the second request of a keep-alive connection.
    let input = format!("{first}GET /secret HTTP/1.1\r\nHost: locked.test\r\n\r\n");
    refused(&input, &done, Refused::Misdirected);
    // The absolute form names the site, whatever Host says (RFC 9112 §3.2.2).
    let input = format!("{first}GET http://locked.test/ HTTP/1.1\r\nHost: h.test\r\n\r\n");
    refused(&input, &done, Refused::Misdirected);
    let input = "GET http://user@locked.test:80/x HTTP/1.1\r\nHost: h.test\r\n\r\n";
    refused(input, "", Refused::Misdirected);
    // A name under the stream's, or one it is under, is another site.
    for host in ["a.h.test", "test", "h.test.evil", "h.tesT2"] {
        let input = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        refused(&input, "", Refused::Misdirected);
    }
    // The same site in absolute form is fine.
    let input = "GET HTTP://H.test:9080/x?y HTTP/1.1\r\nHost: h.test\r\n\r\n";
    assert!(ok(input).starts_with("GET HTTP://H.test:9080/x?y HTTP/1.1\r\n"));
    assert!(ok("OPTIONS * HTTP/1.1\r\nHost: h.test\r\n\r\n").contains(ADD));
}

#[test]
fn host_must_be_there_once_and_well_formed() {
    let bad = Refused::BadRequest(Malformed::Host);
    refused("GET / HTTP/1.1\r\n\r\n", "", bad);
    refused("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n", "", bad);
    refused(
        "GET / HTTP/1.1\r\nHost: h.test\r\nHost: other.test\r\n\r\n",
        "",
        bad,
    );
    refused(
        "GET / HTTP/1.1\r\nHost: h.test\r\nhost: h.test\r\n\r\n",
        "",
        bad,
    );
    for host in ["", "h.test:8x", "h test", "[::1", "h.test/x", "h.test@x"] {
        refused(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"), "", bad);
    }
    // Targets that are no form a server takes.
    refused("GET x HTTP/1.1\r\nHost: h.test\r\n\r\n", "", BAD_LINE);
    refused("GET * HTTP/1.1\r\nHost: h.test\r\n\r\n", "", BAD_LINE);
}

#[test]
fn what_cannot_be_parsed_is_refused_not_passed() {
    let first = "GET /a HTTP/1.1\r\nHost: h.test\r\n\r\n";
    let done = format!("GET /a HTTP/1.1\r\n{ADD}Host: h.test\r\n\r\n");
    let header = Refused::BadRequest(Malformed::HeaderLine);
    for (next, why) in [
        (" GET /wp-admin/ HTTP/1.1\r\nHost: h.test\r\n\r\n", BAD_LINE),
        ("\tGET / HTTP/1.1\r\nHost: h.test\r\n\r\n", BAD_LINE),
        ("GET / HTTP/1.10\r\nHost: h.test\r\n\r\n", BAD_LINE),
        ("GET / HTTP/2.0\r\nHost: h.test\r\n\r\n", BAD_LINE),
        ("GET  / HTTP/1.1\r\nHost: h.test\r\n\r\n", BAD_LINE),
        ("GET / http/1.1\r\nHost: h.test\r\n\r\n", BAD_LINE),
        ("GET /\x01 HTTP/1.1\r\nHost: h.test\r\n\r\n", BAD_LINE),
        ("GET / HTTP/1.1 \r\nHost: h.test\r\n\r\n", BAD_LINE),
        ("\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03", BAD_LINE),
        ("GET / HTTP/1.1\r\nHost: h.test\r\n folded\r\n\r\n", header),
        ("GET / HTTP/1.1\r\nHost : h.test\r\n\r\n", header),
        ("GET / HTTP/1.1\r\nHost: h.test\r\nno colon\r\n\r\n", header),
        ("GET / HTTP/1.1\r\nHost: h.test\r\nX: a\rb\r\n\r\n", header),
        ("GET / HTTP/1.1\r\nHost: h.test\r\nX: a\0b\r\n\r\n", header),
        ("GET / HTTP/1.1\r\nHo(st: h.test\r\n\r\n", header),
    ] {
        refused(&format!("{first}{next}"), &done, why);
    }
}

#[test]
fn head_size_limit() {
    let filler = format!("X-F: {}\r\n", "a".repeat(MAX_HEAD));
    let input = format!("GET / HTTP/1.1\r\nHost: h.test\r\n{filler}\r\n");
    let r = feed_all(RequestRewriter::new(info(), rules()), &[input.as_bytes()]);
    assert_eq!(r, (vec![], Some(Refused::BadRequest(Malformed::TooLarge))));
    // Just under the limit is fine.
    let head = "GET / HTTP/1.1\r\nHost: h.test\r\nX-F: \r\n\r\n";
    let pad = "a".repeat(MAX_HEAD - head.len());
    let input = format!("GET / HTTP/1.1\r\nHost: h.test\r\nX-F: {pad}\r\n\r\n");
    let (out, r) = feed_all(RequestRewriter::new(info(), rules()), &[input.as_bytes()]);
    assert_eq!((out.len(), r), (input.len() + ADD.len(), None));
}

#[test]
fn bodies_are_followed_not_scanned() {
    let body = "GET / HTTP/1.1\r\nHost: other.test\r\nX-Forwarded-For: x\r\n\r\n";
    let input = format!(
        "POST /f HTTP/1.1\r\nHost: h.test\r\nContent-Length: {}\r\n\r\n{body}GET /n HTTP/1.1\r\nHost: h.test\r\n\r\n",
        body.len()
    );
    let want = format!(
        "POST /f HTTP/1.1\r\n{ADD}Host: h.test\r\nContent-Length: {}\r\n\r\n{body}GET /n HTTP/1.1\r\n{ADD}Host: h.test\r\n\r\n",
        body.len()
    );
    assert_eq!(ok(&input), want);
    let chunks = "5;name=val\r\nhello\r\n1B ; x=\"y\"\r\nGET / HTTP/1.1\r\nX-Forwarded\r\n\
                  0\r\nX-Forwarded-For: trailer\r\nX-T: t\r\n\r\n";
    let input = format!(
        "POST /c HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n{chunks}\
         GET /n HTTP/1.1\nHost: h.test\n\n"
    );
    let want = format!(
        "POST /c HTTP/1.1\r\n{ADD}Host: h.test\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n{chunks}\
         GET /n HTTP/1.1\n{ADD}Host: h.test\n\n"
    );
    assert_eq!(ok(&input), want);
}

#[test]
fn ambiguous_framing_and_connect_are_refused() {
    let framing = Refused::BadRequest(Malformed::Framing);
    for head in [
        "POST / HTTP/1.1\r\nHost: h.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h.test\r\nContent-Length: -3\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        refused(head, "", framing);
    }
    let head = "POST / HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n";
    let delivered =
        format!("POST / HTTP/1.1\r\n{ADD}Host: h.test\r\nTransfer-Encoding: chunked\r\n\r\n");
    for body in [
        "x\r\n",
        "5\rhello",
        "3\r\nabcX",
        "1;a\x0bb\r\nx\r\n0\r\n\r\n",
    ] {
        let (out, r) = check(&format!("{head}{body}"));
        assert_eq!(r, Some(framing), "{body:?}");
        assert!(out.starts_with(&delivered));
    }
    refused(
        "CONNECT h.test:443 HTTP/1.1\r\nHost: h.test:443\r\n\r\n",
        "",
        Refused::BadRequest(Malformed::Connect),
    );
}

#[test]
fn passwords_are_checked_on_every_request() {
    let mut opts = KiteOptions::default();
    opts.apply_short("+password/bob=s3cret").unwrap();
    let make = || {
        let mut rules = rules();
        rules.auth = Some(Box::new(opts.clone()));
        RequestRewriter::new(info(), rules)
    };
    // bob:s3cret
    let good = "GET / HTTP/1.1\r\nHost: h.test\r\nAuthorization: Basic Ym9iOnMzY3JldA==\r\n\r\n";
    let none = "GET /private HTTP/1.1\r\nHost: h.test\r\n\r\n";
    let wrong = "GET / HTTP/1.1\r\nHost: h.test\r\nAuthorization: Basic Ym9iOnh4eA==\r\n\r\n";
    let (out, r) = check_with(&make, format!("{good}{good}").as_bytes());
    assert_eq!((out.len(), r), (2 * (good.len() + ADD.len()), None));
    for bad in [none, wrong] {
        let (out, r) = check_with(&make, format!("{good}{bad}").as_bytes());
        assert_eq!(
            (out.len(), r),
            (good.len() + ADD.len(), Some(Refused::NeedsAuth))
        );
    }
}

#[test]
fn the_filter_sees_every_request() {
    let make = || {
        let mut rules = rules();
        rules.filter = true;
        RequestRewriter::new(info(), rules)
    };
    let first = "GET / HTTP/1.1\r\nHost: h.test\r\n\r\n";
    for bad in [
        "GET /wp-admin/ HTTP/1.1\r\nHost: h.test\r\n\r\n",
        "POST /phpMyAdmin/index.php HTTP/1.1\r\nHost: h.test\r\n\r\n",
    ] {
        let (out, r) = check_with(&make, format!("{first}{bad}").as_bytes());
        assert_eq!(
            (out.len(), r),
            (first.len() + ADD.len(), Some(Refused::Blocked))
        );
    }
    // Refused at the end of its request line: the rest never has to come.
    let (out, r) = feed_all(make(), &[b"GET /wp-admin/ HTTP/1.1\r\n"]);
    assert_eq!((out, r), (vec![], Some(Refused::Blocked)));
}

#[test]
fn raw_headers_are_judged_but_not_changed() {
    let make = || RequestRewriter::new(info(), rules()).raw_headers(true);
    let input = "GET / HTTP/1.1\r\nHost: h.test\r\nX-Forwarded-For: 1\r\n\r\n";
    assert_eq!(check_with(&make, input.as_bytes()), (input.into(), None));
    let other = format!("{input}GET / HTTP/1.1\r\nHost: x.test\r\n\r\n");
    assert_eq!(
        check_with(&make, other.as_bytes()),
        (input.into(), Some(Refused::Misdirected))
    );
}

#[test]
fn rewrite_host_renames_the_clients() {
    let mut info = info();
    info.rewrite_host = Some("localhost:8000".into());
    let make = || RequestRewriter::new(info.clone(), rules());
    let (out, r) = check_with(&make, b"GET / HTTP/1.1\r\nHost: h.test\r\n\r\n");
    assert_eq!(r, None);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("GET / HTTP/1.1\r\n{ADD}Host: localhost:8000\r\nX-Old-Host: h.test\r\n\r\n")
    );
}

/// What `curl --http2` sends; an origin that knows nothing of h2c answers
/// it in HTTP/1.1 and the connection goes on.
const H2C: &str = "GET / HTTP/1.1\r\nHost: h.test\r\nConnection: Upgrade, HTTP2-Settings\r\n\
                   Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
const WEBSOCKET: &str = "GET /ws HTTP/1.1\r\nHost: h.test\r\nUpgrade: websocket\r\n\
                         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
/// Masked client frames: "GET / HTTP/1.1" as text, then a close.
const FRAMES: &[u8] = b"\x81\x8e\0\0\0\0GET / HTTP/1.1\x88\x82\x01\x02\x03\x04\x02\xea";

/// Feeds `head` then `after`, shows the origin's answer `response` in the
/// given pieces, and returns what reached the origin and the outcome.
fn upgrade(head: &str, after: &[u8], response: &[&[u8]], answer_first: bool) -> Outcome {
    let mut rw = RequestRewriter::new(info(), rules());
    let mut out = Vec::new();
    let mut result = Ok(());
    let mut answer = |rw: &mut RequestRewriter, out: &mut Vec<u8>| {
        for part in response {
            if rw.wants_response() {
                result = result.and(rw.on_response(part, &mut |b| out.extend_from_slice(b)));
            }
        }
    };
    assert_eq!(
        rw.feed(head.as_bytes(), &mut |b| out.extend_from_slice(b)),
        Ok(())
    );
    if answer_first {
        answer(&mut rw, &mut out);
    }
    let fed = rw.feed(after, &mut |b| out.extend_from_slice(b));
    if !answer_first {
        // Nothing of what follows goes before the answer.
        assert_eq!(out.len(), head.len() + ADD.len());
        assert_eq!(rw.pending(), after.len());
        answer(&mut rw, &mut out);
    }
    let r = fed.and(result).err();
    assert_eq!(rw.refused(), r);
    (out, r)
}

#[test]
fn an_accepted_upgrade_passes_the_new_protocol() {
    let switched = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
    for answer_first in [false, true] {
        for split in [1, 5, 11, 12, 40] {
            let parts: Vec<&[u8]> = switched.chunks(split).collect();
            let (out, r) = upgrade(WEBSOCKET, FRAMES, &parts, answer_first);
            assert_eq!(r, None);
            let want = [rewritten(WEBSOCKET).as_bytes(), FRAMES].concat();
            assert_eq!(out, want, "split {split}");
        }
    }
}

#[test]
fn a_refused_upgrade_goes_on_as_requests() {
    let not = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let next = "GET /x HTTP/1.1\r\nHost: h.test\r\n\r\n";
    for answer_first in [false, true] {
        let (out, r) = upgrade(H2C, next.as_bytes(), &[not], answer_first);
        assert_eq!(r, None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}{}", rewritten(H2C), rewritten(next))
        );
        // Frames (or anything else) after a refused upgrade are no request.
        let (out, r) = upgrade(
            WEBSOCKET,
            FRAMES,
            &[b"HTTP/1.1 426 Upgrade Required\r\n"],
            answer_first,
        );
        assert_eq!(
            (out, r),
            (rewritten(WEBSOCKET).into_bytes(), Some(BAD_LINE))
        );
        let sneaky = b" GET /wp-admin/ HTTP/1.1\r\nHost: h.test\r\n\r\n";
        let (_, r) = upgrade(WEBSOCKET, sneaky, &[b"HTTP/1.1 400 No\r\n"], answer_first);
        assert_eq!(r, Some(BAD_LINE));
    }
    // A body that merely starts like a switch is not one.
    let (_, r) = upgrade(WEBSOCKET, FRAMES, &[b"HTTP/1.1 1010"], false);
    assert_eq!(r, None);
    let (_, r) = upgrade(WEBSOCKET, FRAMES, &[b"HTTP/1.1 200 HTTP/1.1 101"], false);
    assert_eq!(r, Some(BAD_LINE));
}

#[test]
fn only_the_first_request_can_switch() {
    let first = "GET / HTTP/1.1\r\nHost: h.test\r\n\r\n";
    let input = [format!("{first}{WEBSOCKET}").as_bytes(), FRAMES].concat();
    let mut rw = RequestRewriter::new(info(), rules());
    let mut out = Vec::new();
    let sink = &mut |b: &[u8]| out.extend_from_slice(b);
    assert_eq!(rw.on_response(b"HTTP/1.1 200 OK\r\n", sink), Ok(()));
    assert!(!rw.wants_response());
    assert_eq!(rw.feed(&input, sink), Err(BAD_LINE));
}

#[test]
fn too_much_before_the_answer_is_refused() {
    let big = vec![b'x'; MAX_HEAD + 1];
    let mut rw = RequestRewriter::new(info(), rules());
    let sink = &mut |_: &[u8]| {};
    assert_eq!(rw.feed(WEBSOCKET.as_bytes(), sink), Ok(()));
    assert_eq!(
        rw.feed(&big, sink),
        Err(Refused::BadRequest(Malformed::EarlyData))
    );
    assert_eq!(rw.pending(), 0);
}

#[test]
fn an_upgrade_body_comes_before_the_new_protocol() {
    let head = "POST /up HTTP/1.1\r\nHost: h.test\r\nUpgrade: x\r\nConnection: upgrade\r\n\
                Content-Length: 5\r\n\r\n";
    let mut rw = RequestRewriter::new(info(), rules());
    let mut out = Vec::new();
    let input = [head.as_bytes(), b"hello", FRAMES].concat();
    assert_eq!(rw.feed(&input, &mut |b| out.extend_from_slice(b)), Ok(()));
    assert_eq!(out, [rewritten(head).as_bytes(), b"hello"].concat());
    assert_eq!(rw.pending(), FRAMES.len());
    let sink = &mut |b: &[u8]| out.extend_from_slice(b);
    assert_eq!(
        rw.on_response(b"HTTP/1.1 101 Switching\r\n\r\n", sink),
        Ok(())
    );
    assert!(rw.is_passthrough() && out.ends_with(FRAMES));
}

/// `head`, a single request without spoofable headers, as rewritten.
fn rewritten(head: &str) -> String {
    let (line, rest) = head.split_once("\r\n").unwrap();
    format!("{line}\r\n{ADD}{rest}")
}

#[test]
fn blank_lines_between_requests_pass() {
    let input = "\r\nGET / HTTP/1.1\nHost: h.test\n\n\r\n\nGET / HTTP/1.0\r\nHost: h.test\r\n\r\n";
    let out = ok(input);
    assert_eq!(out.matches(ADD).count(), 2);
    assert!(out.starts_with("\r\nGET / HTTP/1.1\n"));
}

#[test]
fn forward_info_variants() {
    let head = "GET / HTTP/1.1\r\nHost: h.test\r\n\r\n";
    let run = |info: ForwardInfo| {
        let (out, _) = feed_all(RequestRewriter::new(info, rules()), &[head.as_bytes()]);
        String::from_utf8(out).unwrap()
    };
    let mut i = info();
    i.remote_ip = "::ffff:10.1.2.3".into();
    i.tls = true;
    assert!(run(i.clone()).contains("X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\n"));
    i.remote_ip = "evil\r\nX-Injected: 1".into();
    assert!(!run(i.clone()).contains("\r\nX-Injected"));
    i.remote_ip = String::new();
    assert!(run(i).contains("X-Forwarded-For: unknown\r\n"));
}

/// Pieces for the generated keep-alive sequences below.
const REQUESTS: [&str; 8] = [
    "GET / HTTP/1.1\r\nHost: h.test\r\n",
    "GET /x HTTP/1.0\r\nHost: H.TEST:80\r\n",
    "POST /p HTTP/1.1\r\nHost: h.test\r\nContent-Length: 4\r\n",
    "POST /c HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n",
    "GET /wp-admin/ HTTP/1.1\r\nHost: h.test\r\n",
    "GET http://h.test/abs HTTP/1.1\r\nHost: h.test\r\n",
    "GET / HTTP/1.1\r\nHost: other.test\r\n",
    " GET / HTTP/1.1\r\nHost: h.test\r\n",
];
const HEADERS: [&str; 7] = [
    "Accept: */*\r\n",
    "X-Forwarded-For: 6.6.6.6\r\n",
    "X_Forwarded_For: 6.6.6.6\r\n",
    "Forwarded: for=6.6.6.6\r\n",
    "X-Real-IP: 6.6.6.6\r\n",
    "Content-Length: 4\r\n",
    "Host: h.test\r\n",
];
const BODIES: [&str; 3] = [
    "body",
    "4\r\nbody\r\n0\r\n\r\n",
    "GET /smuggled HTTP/1.1\r\n\r\n",
];

/// The heads in `out`, found by following it as a client would, each
/// checked: the request names the stream's site and the filter would pass
/// it, the inserts follow its request line, and every client-sent
/// forwarding header was renamed.
fn check_heads(mut out: &[u8], filter: bool) {
    while !out.is_empty() {
        let skip = out
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        out = &out[skip..];
        if out.is_empty() {
            break;
        }
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
            .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
            .expect("a whole head");
        let head = &out[..end];
        let text = String::from_utf8_lossy(head);
        let (line, rest) = text.split_once('\n').unwrap();
        assert!(
            super::http_head::request_line(line.as_bytes()).is_some(),
            "{text}"
        );
        assert!(rest.starts_with(ADD), "{text}");
        assert!(!filter || !crate::proto::options::security_blocks(line.as_bytes()));
        let mut body = Body::None;
        for l in rest[ADD.len()..].lines() {
            let Some((name, value)) = l.split_once(':') else {
                continue;
            };
            assert!(!super::http_head::is_forwarding(name.as_bytes()), "{text}");
            if name.eq_ignore_ascii_case("host") {
                assert_eq!(
                    super::http_head::normal_host(value.as_bytes()).unwrap(),
                    HOST
                );
            }
            if name.eq_ignore_ascii_case("content-length") {
                body = Body::Length(value.trim().parse().unwrap());
            }
            if name.eq_ignore_ascii_case("transfer-encoding") {
                body = Body::Chunked;
            }
        }
        out = &out[end..];
        match body {
            Body::None => {}
            Body::Length(n) => out = &out[(n as usize).min(out.len())..],
            Body::Chunked => {
                let end = out
                    .windows(5)
                    .position(|w| w == b"0\r\n\r\n")
                    .map_or(out.len(), |p| p + 5);
                out = &out[end..];
            }
        }
    }
}

#[test]
fn generated_keep_alive_sequences() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut outcomes = std::collections::HashMap::new();
    for round in 0..5_000 {
        let filter = round % 2 == 0;
        let make = || {
            let mut rules = rules();
            rules.filter = filter;
            RequestRewriter::new(info(), rules)
        };
        let mut input = Vec::new();
        for _ in 0..1 + rand(4) {
            input.extend_from_slice(REQUESTS[rand(REQUESTS.len())].as_bytes());
            for _ in 0..rand(3) {
                input.extend_from_slice(HEADERS[rand(HEADERS.len())].as_bytes());
            }
            input.extend_from_slice(b"\r\n");
            if rand(3) == 0 {
                input.extend_from_slice(BODIES[rand(BODIES.len())].as_bytes());
            }
            if rand(16) == 0 {
                input.push(rand(256) as u8);
            }
        }
        let whole = feed_all(make(), &[&input]);
        let mut parts = Vec::new();
        let mut rest = input.as_slice();
        while !rest.is_empty() {
            let (part, tail) = rest.split_at(rand(rest.len() + 1).max(1));
            parts.push(part);
            rest = tail;
        }
        assert_eq!(feed_all(make(), &parts), whole);
        // Whatever went out is whole, judged heads and their bodies; an
        // accepted stream delivered everything.
        if whole.1.is_none() {
            assert!(whole.0.len() >= input.len());
        }
        if whole.0.iter().all(|&b| b.is_ascii()) {
            check_heads(&whole.0, filter);
        }
        *outcomes.entry(format!("{:?}", whole.1)).or_insert(0) += 1;
        if round % 10 == 0 {
            // The fuzz target's invariants, on the same sequences.
            let config = (round / 10 % 16) as u8;
            let head = [config, rand(256) as u8];
            crate::proto::http_fuzz::request_guard(&[&head[..], &input].concat());
        }
    }
    // Acceptance and each common refusal were reached often enough to mean something.
    for key in [
        "None",
        "Some(Misdirected)",
        "Some(Blocked)",
        "Some(BadRequest(RequestLine))",
    ] {
        assert!(
            outcomes.get(key).copied().unwrap_or(0) > 100,
            "{outcomes:?}"
        );
    }
}
