//! Differential test of the sniffer's request-head parsing (rkite's
//! `proto::sniff`, which routes every public connection) against `httparse`
//! (hyper's parser), over generated heads and real ones (the sniff fuzz
//! corpus, which holds the captured pagekite.py traffic). For each head both
//! must agree on method, target, version, where the head ends and the Host
//! header, or the difference must be one listed in [`explain`] with the
//! RFC 9112 reasoning for who is right. An unexplained difference fails.
//! fuzz/fuzz_targets/sniff_httparse.rs runs [`compare`] on fuzzed input. A
//! second test holds the backend's request guard to httparse the same way.

use std::path::{Path, PathBuf};

use rkite::proto::sniff::{MAX_HEAD, Sniff, normalize_host, sniff};

/// What one parser made of a head.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    method: String,
    target: String,
    /// 0 or 1 (HTTP/1.x); the sniffer does not report it, so it is read off
    /// the request line it accepted.
    minor: u8,
    head_len: usize,
    host: Option<String>,
}

fn by_httparse(input: &[u8]) -> Result<Option<Head>, httparse::Error> {
    // As many as a 16 KiB head can hold, so the limit is never the difference.
    let mut headers = vec![httparse::EMPTY_HEADER; MAX_HEAD / 2];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head_len) = req.parse(input)? else {
        return Ok(None);
    };
    let host = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(normalize_host);
    Ok(Some(Head {
        method: req.method.unwrap_or_default().to_string(),
        target: req.path.unwrap_or_default().to_string(),
        minor: req.version.unwrap_or(9),
        head_len,
        host,
    }))
}

fn by_sniffer(input: &[u8]) -> Option<Head> {
    let Sniff::Http(h) = sniff(input) else {
        return None;
    };
    let line = input.split(|&b| b == b'\n').next().unwrap_or_default();
    let minor = match line.trim_ascii_end().last() {
        Some(b'0') => 0,
        Some(b'1') => 1,
        _ => 9,
    };
    Some(Head {
        method: h.method,
        target: h.path,
        minor,
        head_len: h.head_len,
        host: h.host,
    })
}

/// `token ":" OWS field-value OWS` (RFC 9110 §5.1, §5.5).
fn field_line(line: &[u8]) -> bool {
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    let vchar = |b: &u8| *b == b'\t' || *b >= b' ' && *b != 0x7f;
    match line.iter().position(|&b| b == b':') {
        Some(colon) => {
            colon > 0 && line[..colon].iter().all(tchar) && line[colon + 1..].iter().all(vchar)
        }
        None => false,
    }
}

fn lines(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    input
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty())
}

fn host_lines(input: &[u8]) -> usize {
    lines(input)
        .skip(1)
        .filter(|l| l.len() >= 5 && l[..5].eq_ignore_ascii_case(b"host:"))
        .count()
}

/// Why the two may differ on `input`, per RFC 9112, or None when they must
/// not. Each reason names the party RFC 9112 sides with.
fn explain(
    input: &[u8],
    ours: &Option<Head>,
    theirs: &Result<Option<Head>, httparse::Error>,
) -> Option<&'static str> {
    let first = lines(input).next().unwrap_or_default();
    let version = first.rsplit(|&b| b == b' ').next().unwrap_or_default();
    if ours.is_some() && !version.starts_with(b"HTTP/") && version.len() == 8 {
        // §2.3: HTTP-name is case-sensitive "HTTP". pagekite.py upper-cases
        // the version before comparing, and rkite matches it on purpose:
        // lenient, harmless (routing only; the origin judges the request).
        return Some("lower-case HTTP-version (RFC: httparse; kept for pagekite.py)");
    }
    if theirs.as_ref().is_ok_and(|h| h.is_some()) && ours.is_none() {
        let method = first.split(|&b| b == b' ').next().unwrap_or_default();
        let known = [
            "OPTIONS",
            "CONNECT",
            "GET",
            "HEAD",
            "POST",
            "PUT",
            "TRACE",
            "PROPFIND",
            "PROPPATCH",
            "MKCOL",
            "DELETE",
            "COPY",
            "MOVE",
            "LOCK",
            "UNLOCK",
            "PING",
            "PATCH",
        ];
        if !known.iter().any(|m| m.as_bytes() == method) {
            // §3.1: any token is a method; pagekite.py's frontend serves only
            // its list (and so does rkite), refusing the rest: a policy.
            return Some("method outside pagekite.py's list (policy)");
        }
        if method == b"CONNECT" || method == b"PING" {
            return Some("CONNECT and PING are classified apart (not Http)");
        }
    }
    if ours.is_some() && theirs.is_err() && lines(input).skip(1).any(|l| !field_line(l)) {
        // §5.1: a server MUST reject a field name followed by whitespace
        // before the colon, §5.2 obs-fold likewise (or replace it); field
        // names are tokens, values are VCHAR/obs-text/SP/HTAB. The sniffer
        // only routes: it skips such lines (none of them is a Host it would
        // trust) and leaves the verdict to the HTTP rewriter and the origin.
        return Some("a header line httparse refuses; the sniffer skips it (RFC: httparse)");
    }
    if ours.is_none() && matches!(sniff(input), Sniff::Ping { .. }) {
        // pagekite.py looks for "\nHost: ping.pagekite" in the first 64
        // bytes before parsing anything (so "ping.pagekiteX" counts too);
        // rkite does the same on purpose, and answers with a canned reply.
        return Some("pagekite.py's liveness ping check (a substring, by design)");
    }
    if let (Some(o), Ok(Some(t))) = (ours, theirs) {
        if o.host.is_none() && t.host.is_some() && host_lines(input) > 1 {
            // §3.2: a server MUST respond 400 to more than one Host field
            // line; the sniffer says "no usable Host" (so the frontend
            // answers 400), httparse is no validator and gives them all.
            return Some("several Host lines (RFC: sniffer, 400)");
        }
    }
    None
}

/// Compares one input; also the body of the `sniff_httparse` fuzz target,
/// which includes this file.
pub fn compare(input: &[u8], unexplained: &mut Vec<String>, reasons: &mut Vec<&'static str>) {
    let ours = by_sniffer(input);
    let theirs = by_httparse(input);
    if let Some(o) = ours
        .as_ref()
        .filter(|o| o.host.is_some() && host_lines(input) > 1)
    {
        // Where both would agree, RFC 9112 §3.2 still wants a 400.
        unexplained.push(format!("several Host lines, yet routed to {:?}", o.host));
    }
    let agree = match (&ours, &theirs) {
        (Some(o), Ok(Some(t))) => o == t,
        (None, Ok(None)) => true, // both need more bytes (or ours refused early)
        (None, Err(_)) => true,
        _ => false,
    };
    if agree {
        return;
    }
    match explain(input, &ours, &theirs) {
        Some(why) => reasons.push(why),
        None => unexplained.push(format!(
            "{:?}\n  sniff:    {ours:?}\n  httparse: {theirs:?}",
            String::from_utf8_lossy(input)
        )),
    }
}

/// A small deterministic generator (xorshift), so the test is repeatable.
struct Rng(u64);

impl Rng {
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        items[(self.0 % items.len() as u64) as usize]
    }
}

fn generated(count: usize) -> Vec<Vec<u8>> {
    let methods = [
        "GET", "POST", "HEAD", "PUT", "OPTIONS", "DELETE", "PATCH", "BREW", "get",
    ];
    let gaps = [" ", " ", " ", "  ", "\t"];
    let targets = [
        "/",
        "/index.html",
        "/a?b=c&d",
        "http://open.test/x",
        "*",
        "/%20x",
        "/\u{e4}",
        "/a|b",
        "/a\"b",
        "/{x}",
        "",
    ];
    let versions = [
        "HTTP/1.1",
        "HTTP/1.1",
        "HTTP/1.0",
        "http/1.1",
        "HTTP/1.10",
        "HTTP/2.0",
        "HTTP/1.1 ",
    ];
    let eols = ["\r\n", "\r\n", "\n"];
    let headers = [
        "Host: open.test",
        "Host: Open.Test:8080",
        "host:locked.test",
        "HOST:   spaced.test   ",
        "Host: [::1]:80",
        "Host: 0x7f000001--embedded.test",
        "Host: bad host",
        "Host:",
        "Host : colon.test",
        " Host: folded.test",
        "X-Tab: a\tb",
        "X-Ctl: a\u{1}b",
        "Bad Name: v",
        "X-Empty:",
        "Upgrade: websocket",
        "X-Forwarded-For: 1.2.3.4",
        "User-Agent: curl/8.0",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    for _ in 0..count {
        let eol = rng.pick(&eols);
        let mut head = format!(
            "{}{}{}{}{}{eol}",
            rng.pick(&methods),
            rng.pick(&gaps),
            rng.pick(&targets),
            rng.pick(&gaps),
            rng.pick(&versions)
        );
        let n = rng.pick(&[0, 1, 2, 3, 4]);
        for _ in 0..n {
            head.push_str(rng.pick(&headers));
            head.push_str(eol);
        }
        head.push_str(eol);
        head.push_str(rng.pick(&["", "body", "GET / HTTP/1.1\r\n"]));
        out.push(head.into_bytes());
    }
    out
}

fn real() -> Vec<Vec<u8>> {
    // SNIFF_CORPUS=<dir> compares another set, such as fuzz/corpus-new/sniff.
    let dir = match std::env::var_os("SNIFF_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sniff"),
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
}

#[test]
fn sniffer_agrees_with_httparse_or_rfc_9112_says_why() {
    let mut unexplained = Vec::new();
    let mut reasons = Vec::new();
    let real = real();
    assert!(!real.is_empty(), "fuzz/corpus/sniff is empty");
    let generated = generated(20_000);
    let mut both = 0;
    for input in real.iter().chain(&generated) {
        if matches!(by_httparse(input), Ok(Some(_))) && by_sniffer(input).is_some() {
            both += 1;
        }
        compare(input, &mut unexplained, &mut reasons);
    }
    reasons.sort_unstable();
    reasons.dedup();
    eprintln!(
        "{} real + {} generated heads, {both} parsed by both; known differences: {reasons:#?}",
        real.len(),
        generated.len()
    );
    assert!(both > 1000, "the generator rarely makes valid heads");
    assert!(
        unexplained.is_empty(),
        "{} unexplained differences, first ones:\n{}",
        unexplained.len(),
        unexplained
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The backend's request guard (`proto::http`) is stricter than the sniffer:
/// every head it lets through to the origin must be one httparse reads the
/// same way: complete at the same length, with the same method, target and
/// version, and one Host naming the stream's site. (The other way round is
/// allowed: the guard refuses much that httparse takes, by design.)
#[test]
fn every_head_the_guard_passes_is_read_the_same_by_httparse() {
    use rkite::proto::http::{ForwardInfo, RequestRewriter, Rules};
    let info = ForwardInfo {
        remote_ip: "127.0.0.1".into(),
        port: 80,
        tls: false,
        rewrite_host: None,
    };
    // Heads for the stream's own site too, so that many get through.
    let mut own = Vec::new();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..5_000 {
        let eol = rng.pick(&["\r\n", "\n"]);
        let mut head = format!(
            "{} {} {}{eol}",
            rng.pick(&["GET", "POST", "HEAD", "OPTIONS", "M-SEARCH", "PROPFIND"]),
            rng.pick(&[
                "/",
                "/a?b",
                "http://open.test/x",
                "HTTP://OPEN.TEST:80/",
                "/%7e",
                "*"
            ]),
            rng.pick(&["HTTP/1.1", "HTTP/1.0", "HTTP/1.9"]),
        );
        for _ in 0..rng.pick(&[0, 1, 2, 3]) {
            head.push_str(rng.pick(&[
                "Accept: */*",
                "X-Tab:\ta\tb",
                "X-Forwarded-For: 1.2.3.4",
                "Content-Length: 0",
                "X-Empty:",
                "x_y: z",
            ]));
            head.push_str(eol);
        }
        head.push_str(rng.pick(&[
            "Host: open.test",
            "host:OPEN.test:80",
            "Host:   open.test.  ",
            "Host: open.test:8080",
        ]));
        head.push_str(eol);
        head.push_str(eol);
        own.push(head.into_bytes());
    }
    let (mut passed, mut refused, mut higher) = (0, 0, 0);
    for input in real().iter().chain(&generated(20_000)).chain(&own) {
        let mut guard = RequestRewriter::new(info.clone(), Rules::new("open.test"))
            .raw_headers(true)
            .record_heads();
        if guard.feed(input, &mut |_| {}).is_err() {
            refused += 1;
        }
        for head in guard.recorded_heads() {
            passed += 1;
            let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
            let (method, target, minor) =
                rkite::proto::http_head::request_line(line).expect("the guard's request line");
            if minor > 1 {
                // Known difference: RFC 9112 §2.3 has a server take HTTP/1.9
                // as the highest 1.x it knows (nginx does); httparse refuses
                // it. A refusal, not a second reading: nothing gets past.
                higher += 1;
                continue;
            }
            let mut headers = vec![httparse::EMPTY_HEADER; MAX_HEAD / 2];
            let mut req = httparse::Request::new(&mut headers);
            let text = String::from_utf8_lossy(head);
            let parsed = req.parse(head);
            assert_eq!(
                parsed.ok(),
                Some(httparse::Status::Complete(head.len())),
                "httparse reads the guard's head differently: {text:?}"
            );
            assert_eq!(req.method.map(str::as_bytes), Some(method), "{text:?}");
            assert_eq!(req.path.map(str::as_bytes), Some(target), "{text:?}");
            assert_eq!(req.version, Some(minor), "{text:?}");
            let hosts: Vec<_> = req
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("host"))
                .collect();
            assert_eq!(hosts.len(), 1, "{text:?}");
            let host = rkite::proto::http_head::normal_host(hosts[0].value);
            assert_eq!(host.as_deref(), Some("open.test"), "{text:?}");
        }
    }
    eprintln!("guard: {passed} heads passed ({higher} HTTP/1.2+), {refused} inputs refused");
    assert!(passed > 500 && refused > 500, "{passed} {refused}");
}
