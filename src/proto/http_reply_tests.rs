use super::*;

/// The shape of Go's net/http answers (pebble, Let's Encrypt's boulder).
const CREATED: &[u8] = b"HTTP/1.1 201 Created\r\n\
Cache-Control: public, max-age=0, no-cache\r\n\
Content-Type: application/json; charset=utf-8\r\n\
Link: <https://127.0.0.1:14000/dir>;rel=\"index\"\r\n\
Location: https://127.0.0.1:14000/my-account/1\r\n\
Replay-Nonce: hs7vbGQDHzGg2X2P0LmPHQ\r\n\
Date: Thu, 03 Dec 2026 14:30:00 GMT\r\n\
Content-Length: 27\r\n\r\n\
{\"status\": \"valid\", \"a\": 1}";

const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: application/pem-certificate-chain\r\n\
Transfer-Encoding: chunked\r\n\r\n\
1b;ext=1\r\n-----BEGIN CERTIFICATE-----\r\n\
5\r\nMIIB\n\r\n\
0\r\nX-Trailer: yes\r\n\r\n";

fn whole(input: &[u8], limit: usize) -> Response {
    let mut r = ReplyReader::new(limit, false);
    r.handle_input(input).unwrap().expect("complete")
}

#[test]
fn reads_a_created_reply_with_its_headers() {
    let got = whole(CREATED, 4096);
    assert_eq!(got.status, 201);
    assert_eq!(
        got.header("location"),
        Some("https://127.0.0.1:14000/my-account/1")
    );
    assert_eq!(got.header("replay-nonce"), Some("hs7vbGQDHzGg2X2P0LmPHQ"));
    assert_eq!(got.body, b"{\"status\": \"valid\", \"a\": 1}");
}

#[test]
fn reads_a_chunked_body_with_extensions_and_trailers() {
    let got = whole(CHUNKED, 4096);
    assert_eq!(got.body, b"-----BEGIN CERTIFICATE-----MIIB\n");
}

#[test]
fn every_split_point_gives_the_same_response() {
    for input in [CREATED, CHUNKED] {
        let want = whole(input, 4096);
        for cut in 0..=input.len() {
            let mut r = ReplyReader::new(4096, false);
            let first = r.handle_input(&input[..cut]).unwrap();
            let got = match first {
                Some(done) => {
                    assert_eq!(cut, input.len(), "complete before the end");
                    done
                }
                None => r.handle_input(&input[cut..]).unwrap().expect("complete"),
            };
            assert_eq!(got, want, "cut at {cut}");
        }
        // And a byte at a time.
        let mut r = ReplyReader::new(4096, false);
        let mut got = None;
        for b in input {
            if let Some(done) = r.handle_input(std::slice::from_ref(b)).unwrap() {
                got = Some(done);
            }
        }
        assert_eq!(got, Some(want));
    }
}

#[test]
fn a_reply_without_length_ends_at_the_close() {
    let mut r = ReplyReader::new(64, false);
    assert_eq!(
        r.handle_input(b"HTTP/1.0 200 OK\r\n\r\ngood 1.2").unwrap(),
        None
    );
    assert_eq!(r.handle_input(b".3.4").unwrap(), None);
    let got = r.finish().unwrap();
    assert_eq!(
        (got.status, got.body.as_slice()),
        (200, &b"good 1.2.3.4"[..])
    );
    // A length-framed reply cut short is an error at the close.
    let mut r = ReplyReader::new(4096, false);
    r.handle_input(&CREATED[..CREATED.len() - 1]).unwrap();
    assert_eq!(r.finish(), Err(ReplyError::Truncated));
    let mut r = ReplyReader::new(4096, false);
    r.handle_input(b"HTTP/1.1 200 OK\r\n").unwrap();
    assert_eq!(r.finish(), Err(ReplyError::Truncated));
}

#[test]
fn head_replies_and_no_content_have_no_body() {
    let mut r = ReplyReader::new(4096, true);
    let got = r
        .handle_input(b"HTTP/1.1 200 OK\r\nReplay-Nonce: abc\r\nContent-Length: 99\r\n\r\n")
        .unwrap()
        .expect("complete at the head");
    assert_eq!(got.header("replay-nonce"), Some("abc"));
    let mut r = ReplyReader::new(4096, false);
    assert!(
        r.handle_input(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap()
            .is_some()
    );
}

#[test]
fn refuses_what_would_grow_or_lie() {
    let mut r = ReplyReader::new(10, false);
    assert_eq!(
        r.handle_input(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"),
        Err(ReplyError::BodyTooLarge(10))
    );
    let mut r = ReplyReader::new(10, false);
    r.handle_input(b"HTTP/1.1 200 OK\r\n\r\n0123456789")
        .unwrap();
    assert_eq!(r.handle_input(b"x"), Err(ReplyError::BodyTooLarge(10)));
    let mut r = ReplyReader::new(10, false);
    assert_eq!(
        r.handle_input(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n"),
        Ok(None)
    );
    assert_eq!(
        r.handle_input(b"0123456789a\r\n"),
        Err(ReplyError::BodyTooLarge(10))
    );
    for (input, want) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
            ReplyError::BadLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            ReplyError::BadLength,
        ),
        (b"HTTP/2 200\r\n\r\n", ReplyError::NotHttp),
        (b"HTTP/1.1 2000 OK\r\n\r\n", ReplyError::NotHttp),
        (
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            ReplyError::BadHeader,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            ReplyError::BadChunk,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
            ReplyError::BadChunk,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n123456789\r\n",
            ReplyError::BadChunk,
        ),
    ] {
        let mut r = ReplyReader::new(4096, false);
        assert_eq!(r.handle_input(input), Err(want), "{}", input.escape_ascii());
    }
    let mut r = ReplyReader::new(4096, false);
    let big = vec![b'a'; MAX_HEAD + 1];
    assert_eq!(r.handle_input(&big), Err(ReplyError::HeadTooLarge));
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let mut r = ReplyReader::new(4096, false);
    assert_eq!(r.handle_input(&many), Err(ReplyError::TooManyHeaders));
}
