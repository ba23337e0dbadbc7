//! Codec micro-benchmark: decoding a tunnel's worth of 16 KiB data chunks and
//! encoding the small control chunks the relay sends most. Reports MB/s and
//! ns per chunk; run with `make bench` (release build).

#![allow(clippy::disallowed_methods)] // a benchmark times itself

use std::hint::black_box;
use std::time::Instant;

use rkite::proto::frame;

fn main() {
    let sid = 12345;
    let body = vec![0x5au8; 16 * 1024 - 64];
    let header = frame::data_header_len(sid);
    let mut stream = Vec::new();
    for _ in 0..4096 {
        let start = stream.len();
        stream.resize(start + header, 0);
        frame::fill_data_header(&mut stream[start..], sid, body.len());
        stream.extend_from_slice(&body);
    }
    let rounds = 20;
    let t0 = Instant::now();
    let mut chunks = 0u64;
    for _ in 0..rounds {
        let mut rest = &stream[..];
        while let Ok(Some((f, used))) = frame::decode(rest) {
            black_box(f.body.len());
            rest = &rest[used..];
            chunks += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let bytes = (stream.len() * rounds) as f64;
    println!(
        "decode: {:.0} MB/s, {:.0} ns per 16 KiB chunk",
        bytes / secs / 1e6,
        secs * 1e9 / chunks as f64
    );

    let mut out = Vec::with_capacity(1 << 20);
    let n = 1_000_000u64;
    let t0 = Instant::now();
    for i in 0..n {
        if out.len() > (1 << 20) - 64 {
            out.clear();
        }
        frame::encode_skb(&mut out, sid, i);
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("encode SKB: {:.0} ns per chunk", secs * 1e9 / n as f64);
    black_box(out.len());
}
