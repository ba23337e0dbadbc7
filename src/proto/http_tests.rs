//! Tests of `http.rs` (kept apart so the module itself stays readable).
use super::*;

/// What every head gets with [`info`].
const ADD: &str =
    "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-PageKite-Port: 9080\r\n";

fn info() -> ForwardInfo {
    ForwardInfo {
        remote_ip: "127.0.0.1".into(),
        port: 9080,
        tls: false,
        rewrite_host: None,
    }
}

/// Feeds `parts`, then flushes as at the end of the stream.
fn run(info: &ForwardInfo, parts: &[&[u8]]) -> (Vec<u8>, Vec<RewriteError>) {
    let (out, errs, _) = feed_all(RequestRewriter::new(info.clone()), parts);
    (out, errs)
}

/// [`run`] with the security filter on; also says whether it ends blocked.
fn run_filtered(parts: &[&[u8]]) -> (Vec<u8>, Vec<RewriteError>, bool) {
    feed_all(RequestRewriter::new(info()).block_dangerous(true), parts)
}

fn feed_all(mut rw: RequestRewriter, parts: &[&[u8]]) -> (Vec<u8>, Vec<RewriteError>, bool) {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for part in parts {
        if let Err(e) = rw.feed(part, &mut |b| out.extend_from_slice(b)) {
            errs.push(e);
        }
    }
    rw.flush(&mut |b| out.extend_from_slice(b));
    assert_eq!(rw.pending(), 0);
    (out, errs, rw.is_blocked())
}

/// The single-call result, after checking that every two-way split and
/// byte-at-a-time feeding give the same bytes and errors.
fn check_with(info: &ForwardInfo, input: &[u8]) -> (Vec<u8>, Vec<RewriteError>) {
    let whole = run(info, &[input]);
    for k in 0..=input.len() {
        let (a, b) = input.split_at(k);
        assert_eq!(run(info, &[a, b]), whole, "split at {k}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(info, &bytes), whole, "byte at a time");
    whole
}

fn check(input: &str) -> (String, Vec<RewriteError>) {
    let (out, errs) = check_with(&info(), input.as_bytes());
    (String::from_utf8(out).unwrap(), errs)
}

fn ok(input: &str) -> String {
    let (out, errs) = check(input);
    assert_eq!(errs, []);
    out
}

#[test]
fn protocol_doc_example() {
    let input = "GET /hello HTTP/1.1\r\nHost: foo.test\r\nUser-Agent: curl/7.88.1\r\n\
                 Accept: */*\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
    let want = "GET /hello HTTP/1.1\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\
                X-PageKite-Port: 9080\r\nHost: foo.test\r\nUser-Agent: curl/7.88.1\r\n\
                Accept: */*\r\nX-Old-X-Forwarded-For: 6.6.6.6\r\n\r\n";
    assert_eq!(ok(input), want);
}

#[test]
fn keep_alive_gets() {
    let input = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nx-forwarded-for: 1\r\n\r\n";
    let want = format!(
        "GET /a HTTP/1.1\r\n{ADD}Host: h\r\n\r\nGET /b HTTP/1.1\r\n{ADD}X-Old-x-forwarded-for: 1\r\n\r\n"
    );
    assert_eq!(ok(input), want);
}

#[test]
fn content_length_body_is_not_rewritten() {
    let body = "GET / HTTP/1.1\r\nX-Forwarded-For: x\r\n\r\n";
    let input = format!(
        "POST /f HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}GET /n HTTP/1.1\r\n\r\n",
        body.len()
    );
    let want = format!(
        "POST /f HTTP/1.1\r\n{ADD}Content-Length: {}\r\n\r\n{body}GET /n HTTP/1.1\r\n{ADD}\r\n",
        body.len()
    );
    assert_eq!(ok(&input), want);
    // A zero length and a repeated identical one are fine too.
    let input = "PUT / HTTP/1.1\r\nContent-Length: 0\r\n\r\nPUT / HTTP/1.1\r\n\
                 Content-Length: 2, 2\r\nContent-length: 2\r\n\r\nhiGET / HTTP/1.0\r\n\r\n";
    assert_eq!(ok(input).matches(ADD).count(), 3);
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let body = "5;name=val\r\nhello\r\n1B ; x=\"y\"\r\nGET / HTTP/1.1\r\nX-Forwarded\r\n\
                0\r\nX-Forwarded-For: trailer\r\nX-T: t\r\n\r\n";
    let input = format!(
        "POST /c HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n{body}GET /n HTTP/1.1\r\n\r\n"
    );
    let want = format!(
        "POST /c HTTP/1.1\r\n{ADD}Transfer-Encoding: gzip, Chunked\r\n\r\n{body}\
         GET /n HTTP/1.1\r\n{ADD}\r\n"
    );
    assert_eq!(ok(&input), want);
    // Bare LF line endings and no trailers.
    let input = "POST / HTTP/1.1\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\nGET / HTTP/1.1\n\n";
    let want = format!(
        "POST / HTTP/1.1\n{ADD}Transfer-Encoding: chunked\n\n3\nabc\n0\n\nGET / HTTP/1.1\n{ADD}\n"
    );
    assert_eq!(ok(input), want);
}

#[test]
fn websocket_upgrade_passes_the_rest() {
    let head = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n";
    let after = "\u{1}\u{5}hello GET / HTTP/1.1\r\nX-Forwarded-For: x\r\n\r\n";
    let (out, errs) = check(&format!("{head}{after}"));
    assert_eq!(errs, []);
    let want = format!(
        "GET /ws HTTP/1.1\r\n{ADD}Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n{after}"
    );
    assert_eq!(out, want);
    // Only the origin knows whether the upgrade went ahead: the first byte
    // of a frame tells.
    let mut rw = RequestRewriter::new(info());
    assert_eq!(rw.feed(head.as_bytes(), &mut |_| {}), Ok(()));
    assert!(!rw.is_passthrough());
    assert_eq!(rw.feed(b"\x81", &mut |_| {}), Ok(()));
    assert!(rw.is_passthrough());
    // Upgrade without the Connection token is an ordinary request.
    let input = "GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    assert_eq!(ok(input).matches(ADD).count(), 2);
}

#[test]
fn connect_passes_the_rest() {
    let input = "CONNECT h:22 HTTP/1.1\r\nHost: h:22\r\n\r\nSSH-2.0-x\r\nGET / HTTP/1.1\r\n\r\n";
    let want = format!(
        "CONNECT h:22 HTTP/1.1\r\n{ADD}Host: h:22\r\n\r\nSSH-2.0-x\r\nGET / HTTP/1.1\r\n\r\n"
    );
    assert_eq!(ok(input), want);
    let mut rw = RequestRewriter::new(info());
    assert_eq!(
        rw.feed(b"CONNECT h:22 HTTP/1.1\r\n\r\n", &mut |_| {}),
        Ok(())
    );
    assert!(rw.is_passthrough());
}

#[test]
fn bare_lf_and_blank_lines_between_requests() {
    let input =
        "GET / HTTP/1.0\nHost: a\nX-Forwarded-Proto: https\n\n\r\n\nGET /b HTTP/1.1\r\n\r\n";
    let want = format!(
        "GET / HTTP/1.0\n{ADD}Host: a\nX-Old-X-Forwarded-Proto: https\n\n\r\n\nGET /b HTTP/1.1\r\n{ADD}\r\n"
    );
    assert_eq!(ok(input), want);
}

#[test]
fn renames_only_the_forwarding_headers() {
    let input = "GET / HTTP/1.1\r\nX-PAGEKITE-PORT: 1\r\nX-Forwarded-Port: 2\r\nX-PageKite-For: 3\r\n\
                 X-PageKite-Proto: 4\r\nX-Forwarded-Proto : 5\r\nX-Forwarded-Host: 6\r\n\
                 X-Forwarded-Forx: 7\r\nHost: h\r\n\r\n";
    let want = format!(
        "GET / HTTP/1.1\r\n{ADD}X-Old-X-PAGEKITE-PORT: 1\r\nX-Old-X-Forwarded-Port: 2\r\n\
         X-Old-X-PageKite-For: 3\r\nX-Old-X-PageKite-Proto: 4\r\nX-Old-X-Forwarded-Proto : 5\r\n\
         X-Forwarded-Host: 6\r\nX-Forwarded-Forx: 7\r\nHost: h\r\n\r\n"
    );
    assert_eq!(ok(input), want);
}

#[test]
fn forward_info_variants() {
    let input = b"GET / HTTP/1.1\r\nHost: foo.test\r\n\r\n";
    let mut info = ForwardInfo {
        remote_ip: "::FFFF:10.1.2.3".into(),
        port: 443,
        tls: true,
        rewrite_host: Some("localhost:8000".into()),
    };
    let (out, errs) = check_with(&info, input);
    assert_eq!(errs, []);
    let want = "GET / HTTP/1.1\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\n\
                X-PageKite-Port: 443\r\nHost: localhost:8000\r\nX-Old-Host: foo.test\r\n\r\n";
    assert_eq!(String::from_utf8(out).unwrap(), want);

    let first_line = |info: &ForwardInfo| {
        let out = run(info, &[input]).0;
        let text = String::from_utf8(out).unwrap();
        text.lines().nth(1).unwrap().to_owned()
    };
    info.remote_ip = "::ffff:2001:db8::1".into();
    assert_eq!(first_line(&info), "X-Forwarded-For: ::ffff:2001:db8::1");
    info.remote_ip = "2001:db8::1".into();
    assert_eq!(first_line(&info), "X-Forwarded-For: 2001:db8::1");
    info.remote_ip = String::new();
    assert_eq!(first_line(&info), "X-Forwarded-For: unknown");
    info.remote_ip = "1.2.3.4\r\nX-Evil: 1".into();
    assert_eq!(first_line(&info), "X-Forwarded-For: 1.2.3.4X-Evil: 1");
}

#[test]
fn partial_heads_are_held() {
    let mut rw = RequestRewriter::new(info());
    let mut out = Vec::new();
    assert_eq!(
        rw.feed(b"\r\nGET / HT", &mut |b| out.extend_from_slice(b)),
        Ok(())
    );
    assert_eq!((out.as_slice(), rw.pending()), (&b"\r\n"[..], 8));
    assert_eq!(
        rw.feed(b"TP/1.1\r\nA: b\r\n", &mut |b| out.extend_from_slice(b)),
        Ok(())
    );
    assert_eq!((out.len(), rw.pending()), (2, 22));
    assert_eq!(
        rw.feed(b"\r\nPOST", &mut |b| out.extend_from_slice(b)),
        Ok(())
    );
    assert_eq!(rw.pending(), 4);
    assert_eq!(
        out,
        format!("\r\nGET / HTTP/1.1\r\n{ADD}A: b\r\n\r\n").as_bytes()
    );
    assert!(!rw.is_passthrough());
}

#[test]
fn bodies_are_not_copied() {
    let mut rw = RequestRewriter::new(info());
    let head = b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123";
    assert_eq!(rw.feed(head, &mut |_| {}), Ok(()));
    let body = [b'x'; 96];
    let mut slices = Vec::new();
    assert_eq!(
        rw.feed(&body, &mut |b| slices.push((b.as_ptr(), b.len()))),
        Ok(())
    );
    assert_eq!(slices, [(body.as_ptr(), body.len())]);
}

/// Feeds `good` then `bad` in every split and checks that `bad` becomes
/// `head` (its rewritten first `from` bytes) and then passes through,
/// with exactly one `err` reported.
fn check_fallback(good: &str, bad: &str, from: usize, head: &str, err: RewriteError) {
    let input = format!("{good}{bad}");
    let (out, errs) = check_with(&info(), input.as_bytes());
    assert_eq!(errs, [err]);
    let want = format!("{}{head}{}", ok(good), &bad[from..]);
    assert_eq!(String::from_utf8_lossy(&out), want);
    let mut rw = RequestRewriter::new(info());
    assert_eq!(rw.feed(input.as_bytes(), &mut |_| {}), Err(err));
    assert!(rw.is_passthrough());
    assert_eq!(rw.feed(b"GET / HTTP/1.1\r\n\r\n", &mut |_| {}), Ok(()));
    assert_eq!(rw.pending(), 0);
}

#[test]
fn garbage_passes_through() {
    let good = "GET / HTTP/1.1\r\nX-Forwarded-For: 1\r\n\r\n";
    let tail = "GET / HTTP/1.1\r\nX-Forwarded-For: 2\r\n\r\n";
    let e = RewriteError::NotHttp;
    let method = "A".repeat(MAX_METHOD);
    for bad in [
        "\u{16}\u{3}\u{1}",
        "GET /\r\n\r\n",
        "GET / SIP/2.0\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "GET  HTTP/1.1\r\n\r\n",
        &format!("{method}x"),
    ] {
        check_fallback(good, &format!("{bad}{tail}"), 0, "", e);
    }
    // Refused at the first bad byte, not after buffering.
    let mut rw = RequestRewriter::new(info());
    let mut out = Vec::new();
    assert_eq!(
        rw.feed(b"\x16\x03", &mut |b| out.extend_from_slice(b)),
        Err(e)
    );
    assert_eq!((out.as_slice(), rw.pending()), (&b"\x16\x03"[..], 0));
    // A request line that is not HTTP/1.x is refused where it ends.
    let mut rw = RequestRewriter::new(info());
    let mut out = Vec::new();
    let line = b"PRI * HTTP/2.0\r\n";
    assert_eq!(rw.feed(line, &mut |b| out.extend_from_slice(b)), Err(e));
    assert_eq!((out.as_slice(), rw.pending()), (&line[..], 0));
}

#[test]
fn bad_framing_passes_through_after_the_head() {
    let good = "POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx";
    let tail = "GET / HTTP/1.1\r\nX-Forwarded-For: 2\r\n\r\n";
    let e = RewriteError::BadFraming;
    for framing in [
        "Content-Length: 5\r\nContent-Length: 6",
        "Content-Length: 5, 6",
        "Content-Length: 5x",
        "Content-Length: -1",
        "Content-Length: +1",
        "Content-Length:",
        "Content-Length: 99999999999999999999",
        "Content-Length : 1",
        "Content-Length: 1\r\n 2",
        "Transfer-Encoding: chunked, gzip",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 3",
    ] {
        let head = format!("POST /b HTTP/1.1\r\n{framing}\r\n\r\n");
        let bad = format!("{head}{tail}");
        let out = format!("POST /b HTTP/1.1\r\n{ADD}{framing}\r\n\r\n");
        check_fallback(good, &bad, head.len(), &out, e);
    }
    let chunked = "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for body in [
        "zz\r\n",
        "\r\n",
        "3\rabc",
        "3\r\nabcX",
        "0\r\n\rX",
        "fffffffffffffffff\r\n",
    ] {
        let bad = format!("{chunked}{body}\r\n0\r\n\r\n{tail}");
        check_fallback(good, &bad, chunked.len(), &ok(chunked), e);
    }
}

#[test]
fn head_size_limit() {
    let good = "GET / HTTP/1.1\r\nX-Forwarded-For: 1\r\n\r\n";
    let start = "GET / HTTP/1.1\r\nX-Big: ";
    let fill = |len: usize| "a".repeat(len - start.len() - 4);
    let exact = format!("{start}{}\r\n\r\n", fill(MAX_HEAD));
    assert_eq!(exact.len(), MAX_HEAD);
    assert_eq!(run(&info(), &[exact.as_bytes()]).1, []);
    let over = format!(
        "{start}{}\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        fill(MAX_HEAD + 1)
    );
    let input = format!("{good}{over}");
    let want = format!("{}{over}", ok(good));
    let whole = run(&info(), &[input.as_bytes()]);
    assert_eq!(whole, (want.into_bytes(), vec![RewriteError::HeadTooLarge]));
    let bytes: Vec<&[u8]> = input.as_bytes().chunks(1).collect();
    assert_eq!(run(&info(), &bytes), whole);
    for k in (0..input.len()).step_by(997) {
        let (a, b) = input.as_bytes().split_at(k);
        assert_eq!(run(&info(), &[a, b]), whole, "split at {k}");
    }
}

/// What `curl --http2` sends; an origin that knows nothing of h2c answers
/// it in HTTP/1.1 and the connection goes on.
const H2C: &str = "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n\
                   Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
const WEBSOCKET: &str = "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
                         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Masked client frames: "GET / HTTP/1.1" as text, then a close.
const FRAMES: &[u8] = b"\x81\x8e\0\0\0\0GET / HTTP/1.1\x88\x82\x01\x02\x03\x04\x02\xea";

/// `head`, a single request without spoofable headers, as rewritten with
/// [`info`].
fn rewritten(head: &str) -> String {
    let (first, rest) = head.split_at(head.find('\n').unwrap() + 1);
    format!("{first}{ADD}{rest}")
}

/// [`check_with`] on bytes that must pass without an error.
fn ok_bytes(input: &[u8]) -> Vec<u8> {
    let (out, errs) = check_with(&info(), input);
    assert_eq!(errs, []);
    out
}

#[test]
fn refused_upgrade_goes_on_rewriting() {
    let next = "GET /2 HTTP/1.1\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
    let next_out = format!("GET /2 HTTP/1.1\r\n{ADD}X-Old-X-Forwarded-For: 6.6.6.6\r\n\r\n");
    for upgrade in [H2C, WEBSOCKET] {
        let input = format!("{upgrade}{next}{next}");
        let want = format!("{}{next_out}{next_out}", rewritten(upgrade));
        assert_eq!(ok(&input), want);
        // Blank lines may come first, as before any request.
        let input = format!("{upgrade}\r\n\n{next}");
        assert_eq!(
            ok(&input),
            format!("{}\r\n\n{next_out}", rewritten(upgrade))
        );
        // Then an upgrade that goes ahead, after which nothing is touched.
        let mut input = format!("{upgrade}{WEBSOCKET}").into_bytes();
        input.extend_from_slice(FRAMES);
        let mut want = format!("{}{}", rewritten(upgrade), rewritten(WEBSOCKET)).into_bytes();
        want.extend_from_slice(FRAMES);
        assert_eq!(ok_bytes(&input), want);
    }
    // Once a request line is seen, its faults are reported as usual.
    let bad = "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    let (out, errs) = check(&format!("{H2C}{bad}"));
    assert_eq!(errs, [RewriteError::BadFraming]);
    let want = format!(
        "{}POST / HTTP/1.1\r\n{ADD}Content-Length: x\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        rewritten(H2C)
    );
    assert_eq!(out, want);
}

#[test]
fn accepted_upgrade_passes_the_new_protocol() {
    let mut preface = PREFACE.to_vec();
    // SETTINGS, then a HEADERS frame whose block happens to read like
    // HTTP/1.1.
    preface.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0\0\0\x10\x01\x05\0\0\0\x01");
    preface.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let not_http = b"GET / SIP/2.0\r\nX-Forwarded-For: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    let text = b"hello there\n\x80";
    for (head, after) in [
        (WEBSOCKET, FRAMES),
        (H2C, &preface[..]),
        (H2C, not_http),
        (WEBSOCKET, text),
    ] {
        let mut input = head.as_bytes().to_vec();
        input.extend_from_slice(after);
        let mut want = rewritten(head).into_bytes();
        want.extend_from_slice(after);
        assert_eq!(ok_bytes(&input), want);
    }
    // A line that never ends is given up silently at the head size limit.
    let long = format!("{WEBSOCKET}ab {}", "c".repeat(MAX_HEAD));
    let mut rw = RequestRewriter::new(info());
    let mut out = Vec::new();
    assert_eq!(
        rw.feed(long.as_bytes(), &mut |b| out.extend_from_slice(b)),
        Ok(())
    );
    assert!(rw.is_passthrough());
    assert_eq!(
        out,
        format!("{}ab {}", rewritten(WEBSOCKET), "c".repeat(MAX_HEAD)).as_bytes()
    );
}

/// Feeds `head`, then `after` one byte at a time, checking that nothing is
/// reported and that what was handed over is always a prefix of `after`.
/// Returns the rewriter and how much of `after` had gone after each byte.
fn released(head: &str, after: &[u8]) -> (RequestRewriter, Vec<usize>) {
    let mut rw = RequestRewriter::new(info());
    let mut out = Vec::new();
    assert_eq!(
        rw.feed(head.as_bytes(), &mut |b| out.extend_from_slice(b)),
        Ok(())
    );
    assert_eq!(out, rewritten(head).as_bytes());
    out.clear();
    let mut seen = Vec::new();
    for byte in after.chunks(1) {
        assert_eq!(rw.feed(byte, &mut |b| out.extend_from_slice(b)), Ok(()));
        assert_eq!(out, after[..out.len()]);
        assert_eq!(out.len() + rw.pending(), seen.len() + 1);
        seen.push(out.len());
    }
    (rw, seen)
}

#[test]
fn websocket_frames_are_let_through_within_two_bytes() {
    // Every first byte a client frame can start with (FIN, RSV1-3, the
    // defined opcodes), with every masked second byte.
    for first in (0..=0xffu8).filter(|b| b & 0x0f <= 0x0a) {
        for second in 0x80..=0xffu8 {
            let frame = [first, second, 1, 2, 3, 4, b'G', b'E', b'T', b' ', b'/'];
            let (rw, seen) = released(WEBSOCKET, &frame);
            let want: Vec<usize> = (1..=frame.len()).collect();
            assert_eq!(seen[1..], want[1..], "{first:#x} {second:#x}");
            assert!(rw.is_passthrough());
            assert_eq!(rw.pending(), 0);
        }
    }
    // Frames in the same feed as the head, and split anywhere.
    let mut input = WEBSOCKET.as_bytes().to_vec();
    for first in [0x01, 0x0a, 0x41, 0xc1, 0x7a, 0x82, 0x00, 0x89] {
        input.extend_from_slice(&[first, 0x81, 9, 9, 9, 9, b'x']);
    }
    let mut want = rewritten(WEBSOCKET).into_bytes();
    want.extend_from_slice(&input[WEBSOCKET.len()..]);
    assert_eq!(ok_bytes(&input), want);
}

#[test]
fn h2c_preface_is_let_through_where_its_first_line_ends() {
    let (rw, seen) = released(H2C, PREFACE);
    // "PRI * HTTP/2.0" could still be a request line until the line ends:
    // the request target may hold spaces, as the head parser allows.
    let line = PREFACE.iter().position(|&b| b == b'\n').unwrap() + 1;
    let want: Vec<usize> = (line..=PREFACE.len()).collect();
    assert_eq!(seen[line - 1..], want);
    assert!(rw.is_passthrough());
}

#[test]
fn upgrade_request_body_comes_before_the_new_protocol() {
    let up = "Upgrade: websocket\r\nConnection: upgrade\r\n";
    let next = "GET /n HTTP/1.1\r\nX-Forwarded-For: n\r\n\r\n";
    let next_out = format!("GET /n HTTP/1.1\r\n{ADD}X-Old-X-Forwarded-For: n\r\n\r\n");
    // Without framing headers there is no body: the next request follows.
    let head = format!("GET /u HTTP/1.1\r\n{up}\r\n");
    let want = format!("{}{next_out}", rewritten(&head));
    assert_eq!(ok(&format!("{head}{next}")), want);
    // A body that looks like a request is passed as it is, and only then
    // can the new protocol (or the next request) start.
    let body = "GET / HTTP/1.1\r\nX-Forwarded-For: b\r\n\r\n";
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    for (framing, body) in [
        (format!("Content-Length: {}\r\n", body.len()), body),
        (
            "Transfer-Encoding: chunked\r\n".to_owned(),
            chunked.as_str(),
        ),
    ] {
        let head = format!("POST /u HTTP/1.1\r\n{up}{framing}\r\n");
        let want = format!("{}{body}{next_out}", rewritten(&head));
        assert_eq!(ok(&format!("{head}{body}{next}")), want);
        let mut input = format!("{head}{body}").into_bytes();
        input.extend_from_slice(FRAMES);
        let mut want = format!("{}{body}", rewritten(&head)).into_bytes();
        want.extend_from_slice(FRAMES);
        assert_eq!(ok_bytes(&input), want);
    }
}

const REQUESTS: [&str; 5] = [
    "GET / HTTP/1.1\r\n",
    "POST /p HTTP/1.1\n",
    "CONNECT a:1 HTTP/1.0\r\n",
    "PUT /x?a=b HTTP/1.0\r\n",
    "delete /xampp/ HTTP/1.1\r\n",
];
const HEADERS: [&str; 11] = [
    "Host: h\r\n",
    "X-Forwarded-For: 6.6.6.6\r\n",
    "x-pagekite-port: 1\n",
    "Content-Length: 3\r\n",
    "Content-Length: 0\r\n",
    "Transfer-Encoding: chunked\r\n",
    "Upgrade: websocket\r\nConnection: upgrade\r\n",
    "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n",
    " folded\r\n",
    "Connection: keep-alive\r\n",
    "X-Old-Host: a\r\n",
];
const BODIES: [&str; 10] = [
    "abc",
    "3\r\nabc\r\n",
    "1;x=y\r\nZ\r\n",
    "0\r\n\r\n",
    "0\r\nT: x\r\n\r\n",
    "\r\n",
    "\n",
    "GET / HTTP/1.1\r\nX-Forwarded-For: 1\r\n\r\n",
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "\u{1}\u{85}",
];

fn remove(hay: &[u8], needle: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn fuzz() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let infos = [None, Some("rh.test".to_owned())].map(|rewrite_host| ForwardInfo {
        remote_ip: "10.9.8.7".into(),
        port: 4242,
        tls: rewrite_host.is_some(),
        rewrite_host,
    });
    let mut stats = [0; 4];
    let (mut upgraded, mut blocked) = (0, 0);
    for _ in 0..20_000 {
        let info = &infos[rand(2)];
        let insert = RequestRewriter::new(info.clone()).inserts;
        // Mostly well-formed messages, with the odd piece dropped in
        // anywhere, so that every state is reached.
        let mut input = Vec::new();
        for _ in 0..1 + rand(4) {
            let mut pieces = vec![REQUESTS[rand(REQUESTS.len())]];
            for _ in 0..rand(5) {
                pieces.push(HEADERS[rand(HEADERS.len())]);
            }
            pieces.push(["\r\n", "\n"][rand(2)]);
            for _ in 0..rand(3) {
                pieces.push(BODIES[rand(BODIES.len())]);
            }
            for piece in pieces {
                match rand(24) {
                    0 => {
                        for _ in 0..rand(4) {
                            input.push(rand(256) as u8);
                        }
                    }
                    1 => input.extend_from_slice(HEADERS[rand(HEADERS.len())].as_bytes()),
                    2 => input.extend_from_slice(BODIES[rand(BODIES.len())].as_bytes()),
                    3 => continue,
                    _ => {}
                }
                input.extend_from_slice(piece.as_bytes());
            }
        }
        let (out, errs) = run(info, &[&input]);
        assert!(errs.len() <= 1);
        assert!(out.len() >= input.len());
        // Without what was added, the output is exactly the input.
        assert_eq!(
            remove(&remove(&out, &insert), b"X-Old-"),
            remove(&input, b"X-Old-")
        );
        stats[errs.first().map_or(0, |&e| e as usize + 1)] += 1;
        if errs.is_empty() {
            // Upgrades that went ahead (told apart from refused ones, and
            // from CONNECT tunnels by leaving those out).
            let mut rw = RequestRewriter::new(info.clone());
            assert_eq!(rw.feed(&input, &mut |_| {}), Ok(()));
            let connect = input.windows(7).any(|w| w == b"CONNECT");
            upgraded += usize::from(rw.is_passthrough() && !connect);
        }
        // After an upgrade request the same bytes fare exactly as at the
        // start of a stream, except that not being a request at all is then
        // no error: it is the new protocol.
        let (upgrade, _) = run(info, &[WEBSOCKET.as_bytes()]);
        let after = run(info, &[WEBSOCKET.as_bytes(), &input]);
        // (Nothing rewritten but an error: the first head was refused.)
        let refused = out == input && !errs.is_empty();
        let want_errs = if refused { vec![] } else { errs.clone() };
        assert_eq!(after, ([upgrade, out.clone()].concat(), want_errs));
        let mut parts = Vec::new();
        let mut rest = input.as_slice();
        while !rest.is_empty() {
            let (part, tail) = rest.split_at(rand(rest.len() + 1).max(1));
            parts.push(part);
            rest = tail;
        }
        // With the security filter on: the same, up to a refused head.
        let filtered = || RequestRewriter::new(info.clone()).block_dangerous(true);
        let (f_out, f_errs, is_blocked) = feed_all(filtered(), &[&input]);
        if is_blocked {
            blocked += 1;
            assert!(out.starts_with(&f_out));
            assert_eq!(f_errs, [RewriteError::Blocked]);
        } else {
            assert_eq!((&f_out, &f_errs), (&out, &errs));
        }
        let split = feed_all(filtered(), &parts);
        assert_eq!((split.0, split.2), (f_out, is_blocked));
        assert_eq!(run(info, &parts), (out, errs));
    }
    // Success (with the switch after an upgrade among them), NotHttp,
    // BadFraming and Blocked were each reached often enough to mean
    // something (HeadTooLarge has its own test).
    assert!(
        [stats[0], stats[2], stats[3], upgraded, blocked]
            .iter()
            .all(|&n| n > 1000),
        "{stats:?} {upgraded} {blocked}"
    );
}

/// Checks that `input`, whole, in every two-way split (every `step`th) and
/// byte at a time, delivers exactly `want` and then is blocked.
fn check_blocked(input: &str, want: &str, step: usize) {
    let input = input.as_bytes();
    let splits = (0..=input.len()).step_by(step).map(|k| input.split_at(k));
    let splits = splits.map(|(a, b)| vec![a, b]);
    for parts in splits.chain([input.chunks(1).collect()]) {
        let (out, errs, blocked) = run_filtered(&parts);
        let at = parts.first().map(|p| p.len());
        assert_eq!(
            (&*String::from_utf8_lossy(&out), blocked),
            (want, true),
            "{at:?}"
        );
        // (Blocked by flush, at the end of the stream, there is no error.)
        assert!(errs.iter().all(|&e| e == RewriteError::Blocked));
        assert_eq!(errs.is_empty(), !input.contains(&b'\n'));
    }
}

#[test]
fn security_filter_blocks_dangerous_heads() {
    let good = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    let post = "POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    let chunked = "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let tail = "GET / HTTP/1.1\r\n\r\n";
    for bad in [
        "GET /xampp/ HTTP/1.1\r\nHost: h\r\n\r\n",
        "get /x/../y HTTP/1.0\n\n",
        "DELETE /wp-config.php HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        // Not HTTP/1.x, so unchecked it would pass through.
        "GET /.htaccess HTTP/2.0\r\n\r\n",
        // Could hide the next request from the check.
        "CONNECT h:80 HTTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ] {
        let bad = format!("{bad}{tail}");
        check_blocked(&bad, "", 1);
        for first in [good, post, chunked] {
            let want = format!("{}\r\n", ok(first));
            check_blocked(&format!("{first}\r\n{bad}"), &want, 1);
        }
        check_blocked(&format!("{H2C}{bad}"), &rewritten(H2C), 1);
    }
    // A request line too long to check.
    let long = format!("{good}GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD));
    check_blocked(&long, &ok(good), 997);
    // One cut short by the end of the stream.
    check_blocked("GET /xampp/ HTTP/1.1", "", 1);
}

#[test]
fn security_filter_passes_the_rest() {
    let same = |input: &[u8]| {
        let (out, errs, blocked) = run_filtered(&[input]);
        assert_eq!((out, errs), run(&info(), &[input]));
        assert!(!blocked);
    };
    for input in [
        "GET /wp-admin/admin-ajax?a=b HTTP/1.1\r\n\r\nPOST /wp-admin/css/x HTTP/1.1\r\n\r\n",
        "HEAD /xampp/ HTTP/1.1\r\n\r\nGET /x/admin/ HTTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 24\r\n\r\nGET /xampp/ HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\nGET /xamp",
        "GET /\r\n\r\nGET /xampp/ HTTP/1.1\r\n\r\n",
    ] {
        same(input.as_bytes());
    }
    // After an accepted upgrade, the new protocol.
    let mut frames = WEBSOCKET.as_bytes().to_vec();
    frames.extend_from_slice(b"\x81\x94\0\0\0\0GET /xampp/ HTTP/1.1\r\n\r\n");
    same(&frames);
    // +rawheaders: nothing added or renamed, every request still checked.
    let raw = |input: &str| {
        let rw = RequestRewriter::new(info()).block_dangerous(true);
        feed_all(rw.raw_headers(true), &[input.as_bytes()])
    };
    let input = "GET / HTTP/1.1\r\nX-Forwarded-For: 6\r\nContent-Length: 1\r\n\r\nx";
    assert_eq!(raw(input), (input.into(), vec![], false));
    let bad = raw(&format!("{input}GET /xampp/ HTTP/1.1\r\n\r\n"));
    assert_eq!(bad, (input.into(), vec![RewriteError::Blocked], true));
    // A head too large to rewrite, once its request line has been checked.
    let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
    same(big.as_bytes());
}

#[test]
fn blocked_is_final() {
    let mut rw = RequestRewriter::new(info()).block_dangerous(true);
    let mut out = Vec::new();
    let mut sink = |b: &[u8]| out.extend_from_slice(b);
    let input = b"GET /a HTTP/1.1\r\n\r\nGET /xampp/ HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n";
    assert_eq!(rw.feed(input, &mut sink), Err(RewriteError::Blocked));
    assert!(rw.is_blocked() && !rw.is_passthrough());
    assert_eq!(rw.pending(), 0);
    for more in [&b"GET / HTTP/1.1\r\n\r\n"[..], b""] {
        assert_eq!(rw.feed(more, &mut sink), Err(RewriteError::Blocked));
    }
    rw.flush(&mut sink);
    assert_eq!(out, format!("GET /a HTTP/1.1\r\n{ADD}\r\n").as_bytes());
    assert_eq!(
        RewriteError::Blocked.to_string(),
        "request blocked by the security filter"
    );
    // Off (the default), the same bytes pass.
    let (out, errs) = run(&info(), &[input]);
    assert_eq!((out.len(), errs), (input.len() + 2 * ADD.len(), vec![]));
}
