//! Tests of the file server's decisions: request heads cut at every split
//! point, unsafe paths, mounts, ranges, dates, types, policies and pages.

use super::*;
use crate::proto::webfiles_page::{
    Access, Entry, Head, Indexes, Policy, access, encode_path, head, listed, listing,
};

const REQ: &[u8] = b"GET /docs/a%20b.txt?x=1 HTTP/1.1\r\nHost: blog.example.com\r\n\
Range: bytes=10-19\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
Authorization: Basic dXNlcjpzM2NyZXQ=\r\n\r\nGET /next HTTP/1.1\r\n\r\n";

#[test]
fn heads_are_found_and_read_at_every_split_point() {
    let first_len = REQ.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    for cut in 0..=REQ.len() {
        let part = &REQ[..cut];
        match head_end(part).unwrap() {
            None => assert!(cut < first_len, "missed the head at {cut}"),
            Some(end) => {
                assert_eq!(end, first_len, "cut at {cut}");
                let req = parse_request(&part[..end]).unwrap();
                assert_eq!(req.method, Method::Get);
                assert_eq!(req.target, b"/docs/a%20b.txt?x=1");
                assert!(req.keep_alive);
                assert_eq!(req.range, Some(&b"bytes=10-19"[..]));
                assert_eq!(req.if_modified_since, Some(784_111_777));
                assert!(password_ok(req.authorization, "s3cret"));
                // The pipelined request is next.
                let rest = &REQ[end..];
                assert_eq!(head_end(rest).unwrap(), Some(rest.len()));
            }
        }
    }
}

#[test]
fn lf_only_heads_and_connection_rules() {
    let h = b"HEAD / HTTP/1.0\nConnection: keep-alive\n\n";
    assert_eq!(head_end(h).unwrap(), Some(h.len()));
    let r = parse_request(h).unwrap();
    assert_eq!(r.method, Method::Head);
    assert!(r.keep_alive);
    let r = parse_request(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(!r.keep_alive);
    let r = parse_request(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").unwrap();
    assert!(!r.keep_alive);
    let r = parse_request(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n").unwrap();
    assert_eq!(r.method, Method::Other);
    assert!(r.has_body && !r.keep_alive);
    assert_eq!(
        parse_request(b"GET  / HTTP/1.1\r\n\r\n"),
        Err(BadRequest::RequestLine)
    );
    assert_eq!(parse_request(b"\r\n\r\n"), Err(BadRequest::RequestLine));
    let big = vec![b'a'; MAX_HEAD + 1];
    assert_eq!(head_end(&big), Err(BadRequest::TooLarge));
}

fn segs(p: &UrlPath) -> Vec<&str> {
    p.segments
        .iter()
        .map(|s| std::str::from_utf8(s).unwrap())
        .collect()
}

#[test]
fn paths_are_decoded_and_traversal_refused() {
    let p = url_path(b"/a%20b/./c//d.txt?q=/../#x").unwrap();
    assert_eq!(segs(&p), ["a b", "c", "d.txt"]);
    assert!(!p.trailing_slash);
    let p = url_path(b"http://host:80/dir/").unwrap();
    assert_eq!(segs(&p), ["dir"]);
    assert!(p.trailing_slash);
    assert_eq!(segs(&url_path(b"http://host").unwrap()), Vec::<&str>::new());
    for bad in [
        &b"/../etc/passwd"[..],
        b"/a/..",
        b"/%2e%2e/x",
        b"/%2E%2e/x",
        b"/.%2e/x",
        b"/a%2f..%2fb",
    ] {
        assert_eq!(url_path(bad), Err(PathError::Traversal), "{bad:?}");
    }
    assert_eq!(url_path(b"/a%00b"), Err(PathError::Nul));
    assert_eq!(url_path(b"/a%zz"), Err(PathError::BadEscape));
    assert_eq!(url_path(b"/a%4"), Err(PathError::BadEscape));
    assert_eq!(url_path(b"*"), Err(PathError::NotAbsolute));
    // `...` and names with dots are names.
    assert_eq!(segs(&url_path(b"/.../a..b").unwrap()), ["...", "a..b"]);
}

#[test]
fn mounts_prefer_the_kite_and_the_longest_prefix() {
    let root: Vec<String> = vec![];
    let docs = vec!["docs".to_string()];
    let mounts = [
        MountKey {
            host: "*",
            prefix: &docs,
        },
        MountKey {
            host: "blog.example.com/80",
            prefix: &root,
        },
        MountKey {
            host: "blog.example.com",
            prefix: &docs,
        },
        MountKey {
            host: "other.example.com",
            prefix: &root,
        },
    ];
    let p = url_path(b"/docs/x").unwrap();
    assert_eq!(
        find_mount(&mounts, &["blog.example.com"], 80, &p),
        Some((2, 1))
    );
    let p = url_path(b"/x").unwrap();
    assert_eq!(
        find_mount(&mounts, &["blog.example.com"], 80, &p),
        Some((1, 0))
    );
    assert_eq!(find_mount(&mounts, &["blog.example.com"], 8080, &p), None);
    let p = url_path(b"/docs").unwrap();
    assert_eq!(
        find_mount(&mounts, &["third.example.com"], 80, &p),
        Some((0, 1))
    );
    let p = url_path(b"/doc").unwrap();
    assert_eq!(find_mount(&mounts, &["third.example.com"], 80, &p), None);
    // A wildcard kite: the mount may name the visitor's host or the kite.
    let p = url_path(b"/x").unwrap();
    let star = [MountKey {
        host: "*.example.com/80",
        prefix: &root,
    }];
    assert_eq!(
        find_mount(&star, &["a.example.com", "*.example.com"], 80, &p),
        Some((0, 0))
    );
}

#[test]
fn ranges() {
    use RangeAnswer::*;
    assert_eq!(range(b"bytes=0-9", 100), Part { start: 0, end: 9 });
    assert_eq!(range(b"bytes=90-200", 100), Part { start: 90, end: 99 });
    assert_eq!(range(b"bytes=90-", 100), Part { start: 90, end: 99 });
    assert_eq!(range(b"bytes=-10", 100), Part { start: 90, end: 99 });
    assert_eq!(range(b"bytes=-1000", 100), Part { start: 0, end: 99 });
    assert_eq!(range(b"bytes=100-", 100), Unsatisfiable);
    assert_eq!(range(b"bytes=-0", 100), Unsatisfiable);
    assert_eq!(range(b"bytes=0-", 0), Unsatisfiable);
    assert_eq!(range(b"bytes=5-1", 100), Whole);
    assert_eq!(range(b"bytes=0-1,5-6", 100), Whole);
    assert_eq!(range(b"items=0-1", 100), Whole);
    assert_eq!(range(b"bytes=x-1", 100), Whole);
    assert_eq!(range(b"bytes=99999999999999999999999-", 100), Whole);
    assert_eq!(range(b"BYTES= 1-2", 100), Part { start: 1, end: 2 });
}

#[test]
fn dates_round_trip() {
    assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    for t in [0, 59, 86_399, 951_782_400, 1_700_000_000, 4_102_444_800] {
        assert_eq!(parse_http_date(http_date(t).as_bytes()), Some(t));
    }
    assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), None);
    assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), None);
    assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 25:49:37 GMT"), None);
    assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 UTC"), None);
    let req = |head: &'static [u8]| parse_request(head).unwrap();
    let tag = etag(23, 100, 7);
    assert_eq!(tag, "\"17-64-7\"");
    let ims = req(b"GET / HTTP/1.1\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:01:40 GMT\r\n\r\n");
    assert!(not_modified(&ims, &tag, 100) && !not_modified(&ims, &tag, 101));
    assert!(!not_modified(&req(b"GET / HTTP/1.1\r\n\r\n"), &tag, 1));
    // If-None-Match decides when present, whatever the date says.
    let inm = req(b"GET / HTTP/1.1\r\nIf-None-Match: \"x\", W/\"17-64-7\"\r\n\
        If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n");
    assert!(not_modified(&inm, &tag, 100));
    let other = req(b"GET / HTTP/1.1\r\nIf-None-Match: \"x\"\r\n\
        If-Modified-Since: Thu, 01 Jan 1970 00:01:40 GMT\r\n\r\n");
    assert!(!not_modified(&other, &tag, 100));
    assert!(not_modified(
        &req(b"GET / HTTP/1.1\r\nIf-None-Match: *\r\n\r\n"),
        &tag,
        1
    ));
    let ir = |v: &'static [u8]| {
        let mut r = req(b"GET / HTTP/1.1\r\n\r\n");
        r.if_range = Some(v);
        range_applies(&r, &tag, 100)
    };
    assert!(ir(b"\"17-64-7\"") && !ir(b"W/\"17-64-7\"") && !ir(b"\"x\""));
    assert!(ir(b"Thu, 01 Jan 1970 00:01:40 GMT") && !ir(b"Thu, 01 Jan 1970 00:01:41 GMT"));
    assert!(range_applies(&req(b"GET / HTTP/1.1\r\n\r\n"), &tag, 1));
}

#[test]
fn content_types() {
    assert_eq!(content_type(b"index.HTML"), "text/html; charset=utf-8");
    assert_eq!(content_type(b"a.tar.gz"), "application/x-gzip");
    assert_eq!(content_type(b"photo.jpg"), "image/jpeg");
    assert_eq!(content_type(b"noext"), "application/octet-stream");
    assert_eq!(content_type(b"x.unknown"), "application/octet-stream");
}

#[test]
fn policies() {
    let good = Some(&b"Basic YW55OnB3"[..]); // any:pw
    let bad = Some(&b"Basic YW55Ong="[..]); // any:x
    assert_eq!(access(Policy::Public, Some("pw"), None), Access::Allowed);
    assert_eq!(access(Policy::Default, None, None), Access::Allowed);
    assert_eq!(
        access(Policy::Default, Some("pw"), None),
        Access::NeedPassword
    );
    assert_eq!(access(Policy::Default, Some("pw"), good), Access::Allowed);
    assert_eq!(
        access(Policy::Private, Some("pw"), bad),
        Access::NeedPassword
    );
    assert_eq!(access(Policy::Private, Some("pw"), good), Access::Allowed);
    assert_eq!(access(Policy::Private, None, good), Access::Forbidden);
    assert_eq!(Policy::parse("otp"), Some(Policy::Otp));
    assert_eq!(Policy::parse("secret"), None);
    assert_eq!(Indexes::parse("ALL"), Some(Indexes::All));
}

#[test]
fn heads_and_pages() {
    let h = head(&Head {
        status: 206,
        content_type: Some("text/plain"),
        length: 10,
        last_modified: Some(0),
        range: Some((10, 19, 100)),
        date: 784_111_777,
        keep_alive: true,
        ..Head::default()
    });
    let h = String::from_utf8(h).unwrap();
    assert!(h.starts_with("HTTP/1.1 206 Partial Content\r\n"));
    assert!(h.contains("Content-Range: bytes 10-19/100\r\n"));
    assert!(h.contains("Last-Modified: Thu, 01 Jan 1970 00:00:00 GMT\r\n"));
    assert!(h.ends_with("Connection: keep-alive\r\n\r\n"));
    let mut entries = vec![
        Entry {
            name: b"<script>x&y\".txt".to_vec(),
            dir: false,
            size: 3,
            mtime: 0,
        },
        Entry {
            name: b"sub dir".to_vec(),
            dir: true,
            size: 0,
            mtime: 0,
        },
    ];
    let page = listing(&[b"a<b".to_vec()], &mut entries, 2);
    assert!(page.contains("2 more not shown"));
    assert!(page.contains("&lt;script&gt;x&amp;y&quot;.txt"));
    assert!(page.contains("href=\"%3Cscript%3Ex&y%22.txt\""));
    assert!(page.contains("href=\"sub%20dir/\">sub dir/</a>"));
    assert!(page.contains("<title>/a&lt;b</title>"));
    assert!(!page.contains("<script>"));
    assert!(listed(b"a", Indexes::On) && !listed(b".git", Indexes::On));
    assert!(!listed(b"_pagekite.html", Indexes::On) && listed(b".git", Indexes::All));
    assert_eq!(
        encode_path(&[b"a b".to_vec(), b"c".to_vec()], true),
        "/a%20b/c/"
    );
}
