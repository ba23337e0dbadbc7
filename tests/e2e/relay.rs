//! rkite frontend and rkite backend together, over loopback, with a real
//! origin server and curl: routing, headers, error pages, big and many
//! transfers, half-close, reconnects and clean stops.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use crate::fixture::{self, T, backend, frontend, get, kite, live};
use crate::origin::{HALFCLOSE_BODY, INDEX_BODY, Origin, check_pattern, check_pattern_file};
use crate::util::{self, RawResponse, free_port, local};

const SECRET: &str = "s3cret";

#[test]
fn routes_by_host_and_adds_forwarding_headers() {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(
        &[port],
        &[
            "http,websocket:*.example.test:s3cret",
            "http:other.test:pw2",
        ],
        &[],
    );
    let be = backend(
        port,
        &[
            kite("http", "foo.example.test", origin.port(), SECRET),
            kite("http", "other.test", origin.port(), "pw2"),
        ],
        &[],
    );
    live(&be, "http:foo.example.test");
    live(&be, "http:other.test");
    live(&fe, "http:foo.example.test");

    let page = get(port, "foo.example.test", "/");
    assert_eq!(page.status, 200);
    assert_eq!(page.body_str(), INDEX_BODY);
    assert_eq!(get(port, "OTHER.test", "/").body_str(), INDEX_BODY);

    let echo = util::curl(&[
        "-H",
        "Host: foo.example.test",
        "-H",
        "X-Forwarded-For: 6.6.6.6",
        "-H",
        "X-PageKite-Port: 1",
        &format!("http://127.0.0.1:{port}/echo"),
    ]);
    let head = echo.body_str();
    let lines: Vec<&str> = head.split("\r\n").collect();
    assert_eq!(lines[0], "GET /echo HTTP/1.1");
    assert_eq!(lines[1], "X-Forwarded-For: 127.0.0.1", "{head}");
    assert_eq!(lines[2], "X-Forwarded-Proto: http");
    assert_eq!(lines[3], format!("X-PageKite-Port: {port}"));
    assert!(
        head.contains("\r\nX-Old-X-Forwarded-For: 6.6.6.6\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nX-Old-X-PageKite-Port: 1\r\n"), "{head}");
    assert!(head.contains("\r\nHost: foo.example.test\r\n"));
}

#[test]
fn keep_alive_requests_are_each_rewritten() {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &["http:ka.test:s3cret"], &[]);
    let be = backend(port, &[kite("http", "ka.test", origin.port(), SECRET)], &[]);
    live(&fe, "http:ka.test");
    live(&be, "http:ka.test");
    // Two requests on one connection, the second sent before the first is
    // answered, each with a spoofed header.
    let two = b"GET /echo HTTP/1.1\r\nHost: ka.test\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n\
                GET /echo HTTP/1.1\r\nHost: ka.test\r\nX-Forwarded-For: 7.7.7.7\r\nConnection: close\r\n\r\n";
    let raw = util::http_request(local(port), two, T);
    assert_eq!(
        String::from_utf8_lossy(&raw)
            .matches("HTTP/1.1 200")
            .count(),
        2
    );
    let heads = origin.requests();
    assert_eq!(heads.len(), 2);
    for (head, spoofed) in heads.iter().zip(["6.6.6.6", "7.7.7.7"]) {
        assert!(
            head.starts_with("GET /echo HTTP/1.1\r\nX-Forwarded-For: 127.0.0.1\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("X-Old-X-Forwarded-For: {spoofed}")),
            "{head}"
        );
    }
}

#[test]
fn port_kites_wildcards_and_catch_all() {
    let (o1, o2, o3) = (Origin::start(), Origin::start(), Origin::start());
    let (p1, p2) = (free_port(), free_port());
    let fe = frontend(
        &[p1, p2],
        &["http:*.example.test:s3cret", "http:unknown:s3cret"],
        &[],
    );
    let be = backend(
        p1,
        &[
            kite("http", "*.example.test", o1.port(), SECRET),
            kite(&format!("http-{p2}"), "foo.example.test", o2.port(), SECRET),
            kite("http", "unknown", o3.port(), SECRET),
        ],
        &[],
    );
    live(&be, "http:*.example.test");
    live(&be, &format!("http-{p2}:foo.example.test"));
    live(&be, "http:unknown");
    live(&fe, "http:unknown");

    assert_eq!(get(p1, "foo.example.test", "/echo").status, 200);
    assert_eq!(o1.requests().len(), 1, "wildcard kite on the plain port");
    let on_p2 = get(p2, &format!("foo.example.test:{p2}"), "/echo");
    assert!(on_p2.body_str().contains(&format!("X-PageKite-Port: {p2}")));
    assert_eq!(o2.requests().len(), 1, "the port kite wins on its port");
    assert_eq!(get(p2, "bar.example.test", "/").status, 200);
    assert_eq!(
        o1.requests().len(),
        2,
        "other names on that port fall back to the plain kite"
    );
    assert_eq!(get(p1, "anything.else", "/").body_str(), INDEX_BODY);
    assert_eq!(o3.requests().len(), 1, "the catch-all serves unknown names");
}

#[test]
fn error_pages_for_unknown_names_missing_host_and_dead_origin() {
    let dead = free_port();
    let port = free_port();
    let fe = frontend(&[port], &["http:*.example.test:s3cret"], &[]);
    let be = backend(
        port,
        &[kite("http", "down.example.test", dead, SECRET)],
        &[],
    );
    live(&fe, "http:down.example.test");

    let unknown = get(port, "nosuch.example.test", "/");
    assert_eq!(unknown.status, 503);
    assert!(unknown.body_str().contains("Sorry! (fe)"));
    assert!(unknown.body_str().contains("<b>nosuch.example.test</b>"));
    assert!(unknown.header("X-PageKite-UUID").is_some());
    fe.wait_for("no kite for http://nosuch.example.test", T);

    let raw = util::http_request(local(port), b"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n", T);
    let no_host = RawResponse::parse(&raw);
    assert_eq!(no_host.status, 400);
    assert!(no_host.body_str().contains("no Host: found"));

    let down = get(port, "down.example.test", "/");
    assert_eq!(down.status, 503);
    assert!(
        down.body_str().contains("Sorry! (be)"),
        "{}",
        down.body_str()
    );
    be.wait_for("local server unavailable", T);

    let ping = util::http_request(
        local(port),
        b"HEAD /ping HTTP/1.1\r\nHost: ping.pagekite\r\n\r\n",
        T,
    );
    assert!(ping.starts_with(b"HTTP/1.1 503 Unavailable\r\nX-PageKite-UUID: "));
    let uuid = |r: &[u8]| {
        RawResponse::parse(r)
            .header("X-PageKite-UUID")
            .map(str::to_string)
    };
    let again = util::http_request(
        local(port),
        b"GET /ping HTTP/1.1\r\nHost: ping.pagekite\r\n\r\n",
        T,
    );
    assert_eq!(uuid(&ping), uuid(&again), "the relay's UUID is stable");
    assert_eq!(uuid(&ping).as_deref(), unknown.header("X-PageKite-UUID"));
}

#[test]
fn wrong_secret_and_duplicate_kites_are_rejected_clearly() {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &["http:*.example.test:s3cret"], &[]);
    let bad = backend(
        port,
        &[kite("http", "bad.example.test", origin.port(), "WRONG")],
        &[],
    );
    bad.wait_for("kite http:bad.example.test rejected by 127.0.0.1", T);
    assert!(bad.contains("signature (the secret differs"));
    fe.wait_for("kite http:bad.example.test rejected: signature", T);
    assert_eq!(get(port, "bad.example.test", "/").status, 503);

    let first = backend(
        port,
        &[kite("http", "dup.example.test", origin.port(), SECRET)],
        &[],
    );
    live(&first, "http:dup.example.test");
    let second = backend(
        port,
        &[kite("http", "dup.example.test", origin.port(), SECRET)],
        &[],
    );
    second.wait_for("kite http:dup.example.test rejected by 127.0.0.1", T);
    assert!(second.contains("duplicate"));
    assert_eq!(get(port, "dup.example.test", "/").body_str(), INDEX_BODY);
    assert!(!first.contains("is down"), "the holder keeps its kite");
}

#[test]
fn large_response_arrives_intact() {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &["http:big.test:s3cret"], &[]);
    let be = backend(
        port,
        &[kite("http", "big.test", origin.port(), SECRET)],
        &[],
    );
    live(&fe, "http:big.test");
    live(&be, "http:big.test");
    let size = 64 * 1024 * 1024;
    let dl = util::curl_to_file(&[
        "-H",
        "Host: big.test",
        &format!("http://127.0.0.1:{port}/bytes/{size}"),
    ]);
    assert_eq!(dl.status, 200);
    assert_eq!(check_pattern_file(&dl.path), Ok(size as u64));

    fixture::upload_checked(port, "big.test", 3_000_000);
}

#[test]
fn two_hundred_concurrent_requests() {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &["http:many.test:s3cret"], &[]);
    let be = backend(
        port,
        &[kite("http", "many.test", origin.port(), SECRET)],
        &[],
    );
    live(&fe, "http:many.test");
    live(&be, "http:many.test");
    let handles: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || {
                let size = 1000 + i * 997;
                let req = format!(
                    "GET /bytes/{size} HTTP/1.1\r\nHost: many.test\r\nConnection: close\r\n\r\n"
                );
                let raw = util::http_request(local(port), req.as_bytes(), T);
                let resp = RawResponse::parse(&raw);
                assert_eq!(resp.status, 200, "request {i}");
                assert_eq!(resp.body.len(), size, "request {i}");
                check_pattern(&resp.body).unwrap_or_else(|e| panic!("request {i}: {e}"));
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a request failed");
    }
    assert_eq!(origin.requests().len(), 200);
}

#[test]
fn half_close_works_in_both_directions() {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &["http:half.test:s3cret"], &[]);
    let be = backend(
        port,
        &[kite("http", "half.test", origin.port(), SECRET)],
        &[],
    );
    live(&fe, "http:half.test");
    live(&be, "http:half.test");
    // The bytes after the head are its body: the backend's request guard
    // lets nothing through that is not part of a request it judged.
    let request = |len: usize| {
        format!("GET /halfclose HTTP/1.1\r\nHost: half.test\r\nContent-Length: {len}\r\n\r\n")
            .into_bytes()
    };

    // Visitor first: it sends the request and 5000 more bytes, then shuts
    // its write side; the origin must see all of them and then EOF, and the
    // visitor must still get the whole reply.
    let mut extra = request(5000);
    extra.extend(std::iter::repeat_n(b'x', 5000));
    let reply = util::http_request_half_close(local(port), &extra, T);
    assert!(
        reply.ends_with(HALFCLOSE_BODY.as_bytes()),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(origin.halfclose_bytes(T), 5000);

    // Origin first: it answers and shuts its write side; the visitor sees
    // EOF yet can keep sending, and the origin receives that too.
    let mut s = TcpStream::connect(local(port)).expect("connect");
    s.set_read_timeout(Some(T)).expect("timeout");
    s.write_all(&request(3000)).expect("send request");
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .expect("read until the origin's EOF");
    assert!(got.ends_with(HALFCLOSE_BODY.as_bytes()));
    s.write_all(&[b'y'; 3000]).expect("send after EOF");
    s.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(origin.halfclose_bytes(T), 3000);
}

#[test]
fn backend_reconnects_when_the_frontend_comes_back() {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &["http:phoenix.test:s3cret"], &[]);
    let be = backend(
        port,
        &[kite("http", "phoenix.test", origin.port(), SECRET)],
        &[],
    );
    live(&be, "http:phoenix.test");
    assert_eq!(get(port, "phoenix.test", "/").status, 200);
    fe.kill();
    be.wait_for("kite http:phoenix.test is down", T);
    be.wait_for("retrying in", T);
    let fe2 = frontend(&[port], &["http:phoenix.test:s3cret"], &[]);
    live(&fe2, "http:phoenix.test");
    be.wait_for_count("kite http:phoenix.test is live", 2, T);
    assert_eq!(get(port, "phoenix.test", "/").body_str(), INDEX_BODY);
}

#[test]
fn sigterm_and_sigint_stop_cleanly() {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &["http:bye.test:s3cret"], &[]);
    let be = backend(
        port,
        &[kite("http", "bye.test", origin.port(), SECRET)],
        &["--stop_grace=1"],
    );
    live(&fe, "http:bye.test");
    live(&be, "http:bye.test");
    // A stream in flight: a request whose response the origin will never end.
    let mut idle = TcpStream::connect(local(port)).expect("connect");
    idle.write_all(b"GET /halfclose HTTP/1.1\r\nHost: bye.test\r\n\r\n")
        .expect("send");
    idle.set_read_timeout(Some(T)).expect("timeout");
    let mut first = [0u8; 16];
    idle.read_exact(&mut first).expect("response starts");

    be.signal(libc::SIGINT);
    let status = be.wait_exit(T).expect("the backend exits");
    assert_eq!(status.code(), Some(0));
    // The stream never ends by itself: it gets its grace second, then EOF.
    assert!(be.contains("SIGINT received: finishing 1 stream(s)"));
    assert!(be.contains("stop grace over: closing 1 stream(s)"));
    // The visitor's stream ends with EOF, not a hang.
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);

    fe.signal(libc::SIGTERM);
    let status = fe.wait_exit(T).expect("the frontend exits");
    assert_eq!(status.code(), Some(0));
    assert!(fe.contains("stopped"));
    drop(origin);
}

#[test]
fn a_backend_keeps_a_tunnel_to_every_frontend() {
    let origin = Origin::start();
    let (p1, p2) = (free_port(), free_port());
    let fe1 = frontend(&[p1], &["http:both.test:s3cret"], &[]);
    let fe2 = frontend(&[p2], &["http:both.test:s3cret"], &[]);
    let be = util::rkite(&[
        &format!("--frontend=127.0.0.1:{p1}"),
        &format!("--frontend=127.0.0.1:{p2}"),
        &format!(
            "--backend={}",
            kite("http", "both.test", origin.port(), SECRET)
        ),
    ]);
    live(&fe1, "http:both.test");
    live(&fe2, "http:both.test");
    be.wait_for(&format!("kite http:both.test is live on 127.0.0.1:{p1}"), T);
    be.wait_for(&format!("kite http:both.test is live on 127.0.0.1:{p2}"), T);
    assert_eq!(get(p1, "both.test", "/").body_str(), INDEX_BODY);
    assert_eq!(get(p2, "both.test", "/").body_str(), INDEX_BODY);
    // Losing one frontend leaves the other serving.
    fe1.kill();
    be.wait_for(&format!("frontend 127.0.0.1:{p1}: tunnel lost"), T);
    assert_eq!(get(p2, "both.test", "/").body_str(), INDEX_BODY);
}
