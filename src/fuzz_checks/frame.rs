//! Invariants of the chunk decoder (`proto::frame`): it never reads past its
//! input, a prefix of the input either needs more or gives the same answer as
//! the whole (the relay re-calls it as bytes arrive), a decoded frame
//! re-encoded decodes to the same meaning, and the encoders' output decodes;
//! the head reader kernel splicing uses agrees with the decoder.

use crate::proto::frame::{self, Eof, Frame, MAX_PAYLOAD};

pub fn frame(data: &[u8]) {
    let whole = frame::decode(data);
    if let Ok(Some((f, used))) = &whole {
        assert!(*used <= data.len(), "used {used} of {}", data.len());
        let used_part = data.get(..*used).unwrap_or_default();
        assert!(within(used_part, f.body), "body outside the frame");
        assert!(
            within(used_part, f.header_block.as_bytes()),
            "headers outside the frame"
        );
        re_encode(f);
        if let Some(token) = f.ping {
            pong(token);
        }
    }
    for cut in super::cut_points(data.len()) {
        let part = data.get(..cut).unwrap_or_default();
        let got = frame::decode(part);
        match (&got, &whole) {
            (Ok(None), _) => {}
            (Ok(Some((_, used))), Ok(Some((_, all)))) if used != all => {
                panic!("prefix of {cut} used {used}, the whole {all}")
            }
            _ => assert_eq!(got, whole, "prefix of {cut} bytes decides differently"),
        }
    }
    stream(data);
    data_slot(data);
    heads(data);
}

/// The head reader kernel splicing uses (`peek_head`, `chunk_len`) agrees
/// with the decoder: a head it reads is the frame's, its lengths are the
/// frame's, any prefix that holds the head reads the same, and one that
/// does not reads nothing.
fn heads(data: &[u8]) {
    let whole = frame::decode(data);
    if let (Some(total), Ok(Some((_, used)))) = (frame::chunk_len(data), &whole) {
        assert_eq!(total, *used, "chunk_len against decode");
    }
    let Some((f, head, body)) = frame::peek_head(data) else {
        return;
    };
    assert!(head <= data.len(), "head {head} of {}", data.len());
    assert!(f.body.is_empty(), "a peeked head has no body");
    assert_eq!(frame::chunk_len(data), Some(head + body), "lengths");
    if let Ok(Some((full, used))) = &whole {
        assert_eq!(*used, head + body, "peeked lengths against decode");
        assert_eq!(full.body.len(), body, "body length");
        let mut m = meaning(full);
        m.body = &[];
        assert_eq!(meaning(&f), m, "peeked head against the decoded frame");
    }
    for cut in super::cut_points(data.len()) {
        let part = data.get(..cut).unwrap_or_default();
        let got = frame::peek_head(part).map(|(_, h, b)| (h, b));
        if cut >= head {
            assert_eq!(got, Some((head, body)), "prefix of {cut}");
        } else {
            assert_eq!(got, None, "prefix of {cut} shorter than the head {head}");
        }
    }
}

/// Whether `part` lies inside `outer` (pointer arithmetic only).
fn within(outer: &[u8], part: &[u8]) -> bool {
    let (start, end) = (
        outer.as_ptr() as usize,
        outer.as_ptr() as usize + outer.len(),
    );
    let p = part.as_ptr() as usize;
    part.is_empty() || (start <= p && p + part.len() <= end)
}

/// What a frame means, without the raw header block it came in.
#[derive(Debug, PartialEq, Eq)]
struct Meaning<'a> {
    sid: Option<u32>,
    noop: bool,
    eof: Option<Eof>,
    skb: Option<u64>,
    ping: Option<&'a str>,
    pong: Option<&'a str>,
    zrst: bool,
    fields: [Option<&'a str>; 5],
    rtls: bool,
    body: &'a [u8],
}

fn meaning<'a>(f: &Frame<'a>) -> Meaning<'a> {
    Meaning {
        sid: f.sid,
        noop: f.noop,
        eof: f.eof,
        skb: f.skb,
        ping: f.ping,
        pong: f.pong,
        zrst: f.zrst,
        fields: [f.proto, f.host, f.port, f.rip, f.rport],
        rtls: f.rtls,
        body: f.body,
    }
}

/// Writes the frame's meaning back out in canonical header lines; decoding
/// that must give the same meaning.
fn re_encode(f: &Frame<'_>) {
    let mut lines: Vec<String> = Vec::new();
    let mut add = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            lines.push(format!("{name}: {v}"));
        }
    };
    add("SID", f.sid.map(|s| s.to_string()));
    add("NOOP", f.noop.then(|| "1".into()));
    add(
        "EOF",
        f.eof.map(|e| match (e.read, e.write) {
            (true, false) => "1R".into(),
            (false, true) => "1W".into(),
            _ => "1WR".into(),
        }),
    );
    add("SKB", f.skb.map(|s| s.to_string()));
    add("PING", f.ping.map(str::to_string));
    add("PONG", f.pong.map(str::to_string));
    add("ZRST", f.zrst.then(|| "1".into()));
    let names = ["Proto", "Host", "Port", "RIP", "RPort"];
    let values = [f.proto, f.host, f.port, f.rip, f.rport];
    for (name, value) in names.iter().zip(values) {
        add(name, value.map(str::to_string));
    }
    add("RTLS", f.rtls.then(|| "1".into()));
    let headers: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    let payload: usize = lines.iter().map(|l| l.len() + 2).sum::<usize>() + 2 + f.body.len();
    if payload > MAX_PAYLOAD {
        return; // canonical names can be a few bytes longer than the original
    }
    let mut out = Vec::new();
    frame::encode(&mut out, &headers, f.body);
    match frame::decode(&out) {
        Ok(Some((again, used))) => {
            assert_eq!(used, out.len(), "re-encoded frame not used whole");
            assert_eq!(meaning(&again), meaning(f), "re-encoded as {out:?}");
        }
        other => panic!("re-encoded frame {out:?} decodes as {other:?}"),
    }
}

/// The PONG answering a decoded PING must decode, echoing the token (cut
/// to 64 bytes); a token with control bytes gets no PONG at all (a header
/// line is never sent with them).
fn pong(token: &str) {
    let mut out = Vec::new();
    frame::encode_pong(&mut out, token.as_bytes());
    if out.is_empty() {
        assert!(
            token.bytes().take(64).any(|b| b.is_ascii_control()),
            "no PONG for PING {token:?}"
        );
        return;
    }
    match frame::decode(&out) {
        Ok(Some((f, _))) => {
            let echoed = f.pong.unwrap_or_default();
            assert!(
                token.starts_with(echoed) && echoed.len() <= 64,
                "PONG {echoed:?} for PING {token:?}"
            );
        }
        other => panic!("PONG for PING {token:?} decodes as {other:?}"),
    }
}

/// Frames back to back, as the relay reads a tunnel: every step makes
/// progress and stays inside the input.
fn stream(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((_, used))) = frame::decode(rest) {
        assert!(
            used > 0 && used <= rest.len(),
            "used {used} of {}",
            rest.len()
        );
        rest = rest.get(used..).unwrap_or_default();
    }
}

/// The relay's data headers, for a SID and body size from the input: the
/// copying path's in-place one (four length digits) and a spliced chunk's
/// (as many as the body needs, up to what rkite takes); each decodes to
/// that SID and body.
fn data_slot(data: &[u8]) {
    let Some(&[a, b, c, d, e, f]) = data.get(..6) else {
        return;
    };
    let sid = u32::from_le_bytes([a, b, c, d]);
    let body_len = usize::from(u16::from_le_bytes([e, f])) % (frame::max_data_body(sid) + 1);
    decodes_as_written(sid, body_len, frame::data_header_len(sid));
    if let Some(&g) = data.get(6) {
        let wide = u32::from_le_bytes([e, f, g, 0]) as usize;
        let body_len = wide % (frame::body_within(sid, frame::MAX_PAYLOAD) + 1);
        decodes_as_written(sid, body_len, frame::head_len_for(sid, body_len));
    }
}

fn decodes_as_written(sid: u32, body_len: usize, head_len: usize) {
    let mut out = vec![0u8; head_len];
    frame::fill_data_header(&mut out, sid, body_len);
    out.resize(out.len() + body_len, b'x');
    match frame::decode(&out) {
        Ok(Some((f, used))) => {
            assert_eq!(
                (f.sid, f.body.len(), used),
                (Some(sid), body_len, out.len())
            );
        }
        other => panic!("data header for SID {sid}, {body_len} bytes: {other:?}"),
    }
}
