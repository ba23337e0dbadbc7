//! What a public connection costs the frontend while it is being sniffed:
//! one 4 KiB buffer, grown only when what the client sends does not fit.
//! Seen from outside through the `buffered=` count of the SIGUSR2 line.

use std::io::Write;
use std::net::TcpStream;

use crate::fixture::{T, frontend};
use crate::meter::{poll_stats, read_head, stats, status_of};
use crate::util::{free_port, local};

/// The buffer `public::Sniff` starts with.
const SNIFF_BUF: u64 = 4096;

#[test]
fn a_sniffing_connection_holds_one_small_buffer() {
    let port = free_port();
    let fe = frontend(&[port], &["http:small.test:s3cret"], &[]);
    let before = stats(&fe);
    let mut conns: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(local(port)).expect("connect"))
        .collect();
    let (st, ok) = poll_stats(&fe, T, |st| st.conns == before.conns + 4);
    assert!(ok, "connections not accepted: {st:?} after {before:?}");
    // An unfinished head on each, read at once (the bytes are waiting when
    // the next signal wakes the reactor, so the second line below comes after
    // the reads).
    for s in &mut conns {
        s.write_all(b"GET / HTTP/1.1\r\nHost: small.test\r\nX-Pad: aaaa")
            .expect("send");
    }
    stats(&fe);
    let st = stats(&fe);
    assert_eq!(st.conns, before.conns + 4, "{st:?}");
    assert_eq!(
        st.buffered - before.buffered,
        4 * SNIFF_BUF,
        "each sniffing connection holds one {SNIFF_BUF}-byte buffer: {st:?} after {before:?}"
    );
    // A head that does not fit still gets read whole, and answered (no
    // tunnel for the kite: the frontend's 503).
    let mut big = TcpStream::connect(local(port)).expect("connect");
    let pad = "p".repeat(3 * SNIFF_BUF as usize);
    big.write_all(format!("GET / HTTP/1.1\r\nHost: small.test\r\nX-Pad: {pad}\r\n\r\n").as_bytes())
        .expect("send");
    let (head, _) = read_head(&mut big, T).expect("an answer to the long head");
    assert_eq!(status_of(&head), 503, "{head}");
    drop(conns);
    let (st, ok) = poll_stats(&fe, T, |st| st.buffered == before.buffered);
    assert!(ok, "sniff buffers not released: {st:?} after {before:?}");
}
