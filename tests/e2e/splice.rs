//! Kernel splicing seen from outside (issue 15): 256 MiB each way through a
//! plain frontend and backend, byte for byte, with a reader that pauses at
//! random on both ends, and most of it spliced (the SIGUSR2 `stats:` line
//! counts spliced bytes); a kernel that refuses splice (`RKITE_SPLICE=refuse`
//! pretends to be one, `refuse-after=N` one that starts refusing in the
//! middle of transfers) costs nothing but the copies; a pool of two pipes
//! still carries six downloads at once; and idle streams hold no pipes
//! (descriptors counted in /proc/PID/fd; the pool's spares close after a
//! second unused).
//!
//! The origin here is the test's own: `GET /bytes/<n>` writes the pattern of
//! `origin.rs`, `POST /check` reads a pattern body with random pauses and
//! answers `ok <n>` or where it went wrong; connections stay open for more
//! requests until the client closes them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rkite::proto::frame;

use crate::chunk_tap::{self, Disguise};
use crate::fixture::T;
use crate::meter::{self, End, read_head, read_pattern, status_of};
use crate::origin::{Origin, check_pattern_at, fill_pattern};
use crate::util::{self, Proc, free_port, local};

const SECRET: &str = "s3cret";
const MIB: u64 = 1024 * 1024;
/// Long enough for 256 MiB through debug builds with pauses.
const BULK: Duration = Duration::from_secs(120);
/// How long a stalled download is given to fill its window and settle.
const SETTLE: Duration = Duration::from_secs(3);

/// A small deterministic generator for the pauses.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Now and then (one read in `one_in`), a pause of 1 to 30 ms: the
    /// reader stops while the relay keeps going.
    fn maybe_pause(&mut self, one_in: u64) {
        if self.next() % one_in == 0 {
            std::thread::sleep(Duration::from_millis(1 + self.next() % 30));
        }
    }
}

/// The test's origin (see the module comment); one thread per connection.
fn start_origin() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
    let port = listener.local_addr().expect("origin address").port();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || serve(conn, 0x9e37_79b9 + i as u64));
        }
    });
    port
}

fn serve(conn: TcpStream, seed: u64) {
    let mut rng = Rng(seed | 1);
    let _ = conn.set_read_timeout(Some(BULK));
    let mut reader = BufReader::with_capacity(64 * 1024, conn.try_clone().expect("clone"));
    let mut out = conn;
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let end = line == "\r\n";
            head.push(line);
            if end {
                break;
            }
        }
        let first = head.first().cloned().unwrap_or_default();
        let length: u64 = head
            .iter()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        if let Some(n) = first
            .strip_prefix("GET /bytes/")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
        {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
            if out.write_all(head.as_bytes()).is_err() {
                return;
            }
            let mut buf = vec![0u8; 256 * 1024];
            let mut sent = 0u64;
            while sent < n {
                let k = (n - sent).min(buf.len() as u64) as usize;
                fill_pattern(sent, &mut buf[..k]);
                if out.write_all(&buf[..k]).is_err() {
                    return;
                }
                sent += k as u64;
            }
        } else if first.starts_with("POST /check ") {
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0u64;
            let mut verdict = None;
            while got < length {
                let want = (length - got).min(buf.len() as u64) as usize;
                match reader.read(&mut buf[..want]) {
                    Ok(0) | Err(_) => {
                        verdict = Some(format!("short: {got} of {length}"));
                        break;
                    }
                    Ok(k) => {
                        if let Err(e) = check_pattern_at(got, &buf[..k]) {
                            verdict = Some(e);
                            break;
                        }
                        got += k as u64;
                        rng.maybe_pause(48);
                    }
                }
            }
            let body = verdict.unwrap_or_else(|| format!("ok {got}"));
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if out.write_all(reply.as_bytes()).is_err() {
                return;
            }
        } else {
            let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    }
}

/// An rkite frontend and backend for one http kite on the test's origin,
/// both live, with `RKITE_SPLICE=<splice>` and extra flags.
struct Pair {
    port: u16,
    fe: Proc,
    be: Proc,
}

fn pair(domain: &str, splice: &str, extra: &[&str]) -> Pair {
    pair_to(start_origin(), domain, splice, extra)
}

fn pair_to(origin: u16, domain: &str, splice: &str, extra: &[&str]) -> Pair {
    pair_via(origin, domain, splice, extra, |port| port)
}

/// A frontend alone for the kite `domain`, with `RKITE_SPLICE=splice`
/// and `extra` flags: (its public port, the process), listening.
fn frontend_for(domain: &str, splice: &str, extra: &[&str]) -> (u16, Proc) {
    let port = free_port();
    let mut args = vec![
        "--isfrontend".to_string(),
        "--host=127.0.0.1".to_string(),
        format!("--ports={port}"),
        "--protos=http".to_string(),
        format!("--domain=http:{domain}:{SECRET}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let fe = util::rkite_env(&refs, &[("RKITE_SPLICE", splice)]);
    fe.wait_for(&format!("listening on 127.0.0.1:{port}"), T);
    (port, fe)
}

/// As `pair_to`, with the backend dialling the port `via(frontend's port)`
/// gives (a tap in between).
fn pair_via(
    origin: u16,
    domain: &str,
    splice: &str,
    extra: &[&str],
    via: impl FnOnce(u16) -> u16,
) -> Pair {
    let env = [("RKITE_SPLICE", splice)];
    let (port, fe) = frontend_for(domain, splice, extra);
    let mut be_args = vec![
        format!("--frontend=127.0.0.1:{}", via(port)),
        format!("--service_on=http:{domain}:127.0.0.1:{origin}:{SECRET}"),
    ];
    be_args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = be_args.iter().map(String::as_str).collect();
    let be = util::rkite_env(&refs, &env);
    for p in [&fe, &be] {
        p.wait_for(&format!("kite http:{domain} is live"), T);
    }
    Pair { port, fe, be }
}

/// Downloads `/bytes/<size>` on `s` (a kept-alive connection), checking
/// every byte, pausing now and then.
fn download_on(s: &mut TcpStream, host: &str, size: u64, seed: u64) {
    let req = format!("GET /bytes/{size} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send GET");
    let (head, rest) = read_head(s, T).expect("response head");
    assert_eq!(status_of(&head), 200, "{head}");
    check_pattern_at(0, &rest).expect("first body bytes");
    let mut rng = Rng(seed | 1);
    let (got, end) = read_pattern(
        s,
        rest.len() as u64,
        size,
        Instant::now() + BULK,
        64 * 1024,
        |_| rng.maybe_pause(48),
    );
    assert!(matches!(end, End::Complete), "{got} of {size}: {end:?}");
}

fn download(port: u16, host: &str, size: u64, seed: u64) {
    let mut s = TcpStream::connect(local(port)).expect("connect");
    download_on(&mut s, host, size, seed);
}

/// Uploads `size` pattern bytes; the origin checks each (pausing now and
/// then) and must answer `ok <size>`.
fn upload(port: u16, host: &str, size: u64) {
    let mut s = TcpStream::connect(local(port)).expect("connect");
    s.set_write_timeout(Some(BULK)).expect("write timeout");
    let head = format!("POST /check HTTP/1.1\r\nHost: {host}\r\nContent-Length: {size}\r\n\r\n");
    s.write_all(head.as_bytes()).expect("send head");
    let mut buf = vec![0u8; 256 * 1024];
    let mut sent = 0u64;
    while sent < size {
        let k = (size - sent).min(buf.len() as u64) as usize;
        fill_pattern(sent, &mut buf[..k]);
        s.write_all(&buf[..k]).expect("send body");
        sent += k as u64;
    }
    let (head, rest) = read_head(&mut s, BULK).expect("answer");
    assert_eq!(status_of(&head), 200, "{head}");
    let want = format!("ok {size}");
    let mut body = rest;
    s.set_read_timeout(Some(T)).expect("timeout");
    while body.len() < want.len() {
        let mut more = [0u8; 256];
        match s.read(&mut more) {
            Ok(0) | Err(_) => break,
            Ok(k) => body.extend_from_slice(&more[..k]),
        }
    }
    assert_eq!(String::from_utf8_lossy(&body), want);
}

/// Descriptors of process `pid` that are pipes (the log goes to the test
/// through one, and the signal handling has its own: tests compare with
/// the count before any transfer).
fn pipe_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("pipe:"))
        .count()
}

#[test]
fn bulk_both_ways_is_spliced_byte_for_byte() {
    let p = pair("bulk.test", "on", &[]);
    let size = 256 * MIB;
    download(p.port, "bulk.test", size, 7);
    let (fe, be) = (meter::stats(&p.fe), meter::stats(&p.be));
    eprintln!("after the download: frontend {fe:?}, backend {be:?}");
    // The backend sends (local server → tunnel), the frontend receives
    // (tunnel → visitor): both splice most of it.
    assert!(be.spliced >= size * 3 / 4, "backend spliced {be:?}");
    assert!(fe.spliced >= size / 2, "frontend spliced {fe:?}");
    upload(p.port, "bulk.test", size);
    let (fe2, be2) = (meter::stats(&p.fe), meter::stats(&p.be));
    eprintln!("after the upload: frontend {fe2:?}, backend {be2:?}");
    assert!(fe2.spliced - fe.spliced >= size * 3 / 4, "frontend {fe2:?}");
    // The origin here checks every byte in a debug build and pauses: when
    // it falls behind, the stream's pipe stays full and what does not fit
    // is copied, so how much the backend splices depends on its pace.
    assert!(be2.spliced - be.spliced >= 4 * MIB, "backend {be2:?}");
    for proc in [&p.fe, &p.be] {
        assert!(proc.contains("splice: plain hops move bulk data with splice(2)"));
        assert!(!proc.contains("refused"), "{}", proc.name());
    }
}

#[test]
fn a_kernel_that_refuses_splice_costs_only_the_copies() {
    let p = pair("refuse.test", "refuse", &[]);
    let size = 48 * MIB;
    download(p.port, "refuse.test", size, 11);
    upload(p.port, "refuse.test", size);
    for proc in [&p.fe, &p.be] {
        proc.wait_for("splice: the kernel refused it", T);
        assert_eq!(proc.count("splice: the kernel refused it"), 1);
        let st = meter::stats(proc);
        assert_eq!(st.spliced, 0, "{st:?}");
        assert_eq!(st.pipes, 0, "{st:?}");
    }
    // A refusal in the middle of transfers, with bytes in pipes both ways:
    // they are read back and copied, none lost.
    let mid = pair("midway.test", "refuse-after=40", &[]);
    let handles: Vec<_> = (0..3u64)
        .map(|i| {
            let port = mid.port;
            std::thread::spawn(move || {
                if i == 0 {
                    upload(port, "midway.test", 32 * MIB);
                } else {
                    download(port, "midway.test", 32 * MIB, 40 + i);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a transfer failed");
    }
    for proc in [&mid.fe, &mid.be] {
        proc.wait_for("splice: the kernel refused it", T);
        let st = meter::stats(proc);
        assert!(
            st.spliced > 0,
            "{} spliced before the refusal: {st:?}",
            proc.name()
        );
    }
    // And off means off.
    let off = pair("off.test", "off", &[]);
    download(off.port, "off.test", 16 * MIB, 12);
    for proc in [&off.fe, &off.be] {
        assert!(proc.contains("splice: off"));
        assert_eq!(meter::stats(proc).spliced, 0);
    }
}

/// A frontend that doesn't splice (a kernel that refuses, `--max_pipes=0`)
/// behind a backend that does and sends it chunks of up to 1 MiB: their
/// bodies come through its input in pieces, so the input grows no further
/// than 256 KiB (past that it would count in `--buffers`, which the stats
/// line shows once the download is over), and every byte arrives.
#[test]
fn a_frontend_that_copies_takes_big_chunks_in_pieces() {
    let origin = start_origin();
    let (port, fe) = frontend_for("mixed.test", "off", &[]);
    let be = util::rkite_env(
        &[
            &format!("--frontend=127.0.0.1:{port}"),
            &format!("--service_on=http:mixed.test:127.0.0.1:{origin}:{SECRET}"),
        ],
        &[("RKITE_SPLICE", "on")],
    );
    for p in [&fe, &be] {
        p.wait_for("kite http:mixed.test is live", T);
    }
    download(port, "mixed.test", 64 * MIB, 21);
    let (fst, bst) = (meter::stats(&fe), meter::stats(&be));
    assert!(bst.spliced > 32 * MIB, "the backend spliced: {bst:?}");
    assert_eq!(fst.spliced, 0, "the frontend copied: {fst:?}");
    assert!(fst.buffered < 256 * 1024, "no grown input: {fst:?}");
}

#[test]
fn a_pool_of_two_pipes_carries_six_downloads() {
    let p = pair("pool.test", "on", &["--max_pipes=2"]);
    let before = [pipe_fds(p.fe.pid()), pipe_fds(p.be.pid())];
    let size = 24 * MIB;
    let handles: Vec<_> = (0..6u64)
        .map(|i| {
            let port = p.port;
            std::thread::spawn(move || download(port, "pool.test", size, 100 + i))
        })
        .collect();
    for h in handles {
        h.join().expect("a download failed");
    }
    for (proc, before) in [&p.fe, &p.be].into_iter().zip(before) {
        let st = meter::stats(proc);
        assert!(st.pipes <= 2, "{} {st:?}", proc.name());
        assert!(st.spliced > 0, "{} {st:?}", proc.name());
        assert!(pipe_fds(proc.pid()) <= before + 4, "{}", proc.name());
    }
}

/// Reads a whole `/bytes/<size>` response from `s` at full speed.
fn finish_download(s: &mut TcpStream, size: u64) {
    let (head, rest) = read_head(s, T).expect("response head");
    assert_eq!(status_of(&head), 200, "{head}");
    check_pattern_at(0, &rest).expect("first body bytes");
    let deadline = Instant::now() + BULK;
    let (got, end) = read_pattern(s, rest.len() as u64, size, deadline, 256 * 1024, |_| {});
    assert!(matches!(end, End::Complete), "{got} of {size}: {end:?}");
}

#[test]
fn with_the_pool_exhausted_a_stream_copies_and_pipes_come_back() {
    let p = pair("dry.test", "on", &["--max_pipes=2"]);
    let before = [pipe_fds(p.fe.pid()), pipe_fds(p.be.pid())];
    let size = 24 * MIB;
    // Visitors ask for more than the kernel and the tunnel window can hold
    // and read nothing: the frontend queues their bytes in pipes. Where a
    // stream's socket filled up while copied bytes waited (its first chunks
    // came before the tunnel was splicing), those stay copied and it holds
    // no pipe: another stalled visitor comes until two pipes are held.
    let mut stalled: Vec<TcpStream> = Vec::new();
    let mut st = meter::stats(&p.fe);
    while st.pipes_lent < 2 && stalled.len() < 6 {
        stalled.push(meter::send_get(
            p.port,
            "dry.test",
            &format!("/bytes/{size}"),
        ));
        let want = stalled.len().min(2);
        st = meter::poll_stats(&p.fe, SETTLE, |st| st.pipes_lent as usize >= want).0;
    }
    assert_eq!(st.pipes_lent, 2, "stalled streams hold both pipes: {st:?}");
    // A third download finds the pool empty and copies, byte for byte.
    download(p.port, "dry.test", 8 * MIB, 7);
    let st = meter::stats(&p.fe);
    assert!(st.pipes_exhausted > 0, "the pool ran dry: {st:?}");
    assert!(st.pipes <= 2, "{st:?}");
    // The stalled visitors read on and get every byte.
    for s in &mut stalled {
        finish_download(s, size);
    }
    // Idle again: no pipe lent, and the spares closed.
    for (proc, before) in [&p.fe, &p.be].into_iter().zip(before) {
        let (st, ok) = meter::poll_stats(proc, T, |st| st.pipes_lent == 0);
        assert!(ok, "{}: {st:?}", proc.name());
        let pid = proc.pid();
        util::wait_until("pipes closed", T, || pipe_fds(pid) == before);
    }
}

/// A splicing frontend for `domain`, a backend made by hand on it, and a
/// visitor with a small receive buffer whose request reached the backend:
/// (frontend, backend socket, visitor, the `SID:` line of its stream).
fn stalled_visitor(domain: &str) -> (Proc, TcpStream, TcpStream, String) {
    let (port, fe) = frontend_for(domain, "on", &[]);
    let (mut tunnel, _) = crate::robust::fake_backend(port, domain, SECRET);
    fe.wait_for(&format!("kite http:{domain} is live"), T);
    let mut visitor = meter::connect_small_rcvbuf(port, 64 * 1024);
    visitor
        .write_all(&meter::get_request(domain, "/", true))
        .expect("send GET");
    let mut buf = Vec::new();
    crate::robust::read_until(&mut tunnel, &mut buf, "the stream's first chunk", |b| {
        matches!(frame::decode(b), Ok(Some(_)))
    });
    let (first, _) = frame::decode(&buf).expect("a chunk").expect("whole");
    let line = format!("SID: {}", first.sid.expect("a stream id"));
    (fe, tunnel, visitor, line)
}

/// Sends `n` pattern bytes from `offset` as one data chunk.
fn send_chunk(tunnel: &mut TcpStream, line: &str, offset: u64, n: usize) {
    let mut body = vec![0u8; n];
    fill_pattern(offset, &mut body);
    let mut wire = Vec::new();
    frame::encode(&mut wire, &[line.as_bytes()], &body);
    tunnel.write_all(&wire).expect("send a chunk");
}

/// Bytes that had to be copied while a stream held no pipe (chunks too
/// small to splice, its visitor's socket full) move into a pipe when the
/// next big body comes, and that body is spliced. Before, the copied bytes
/// had to leave through the socket first, and every body behind them was
/// copied too (3.5 MB of them were seen in `make bench`).
#[test]
fn copied_bytes_waiting_for_a_full_socket_move_into_a_pipe() {
    const SMALL: usize = 4_000;
    const BODY: usize = 1_000_000;
    let (fe, mut tunnel, mut visitor, line) = stalled_visitor("copied.test");
    let base = meter::stats(&fe);
    let mut sent = 0u64;
    // Small chunks (copied, not spliced) until some wait in the stream's
    // buffer: the kernel's send buffer toward the visitor is full.
    let mut st = base;
    while st.buffered < base.buffered + 64 * 1024 && sent < 8 * BODY as u64 {
        for _ in 0..64 {
            send_chunk(&mut tunnel, &line, sent, SMALL);
            sent += SMALL as u64;
        }
        let want = base.buffered + 64 * 1024;
        st = meter::poll_stats(&fe, Duration::from_millis(300), |st| st.buffered >= want).0;
    }
    assert!(
        st.buffered >= base.buffered + 64 * 1024,
        "copied bytes wait: {st:?}"
    );
    assert_eq!(st.pipes_lent, 0, "nothing spliced yet: {st:?}");
    send_chunk(&mut tunnel, &line, sent, BODY);
    sent += BODY as u64;
    let spliced = st.spliced + (BODY - 256 * 1024) as u64;
    let (st, ok) = meter::poll_stats(&fe, T, |st| st.spliced >= spliced);
    assert!(ok, "the big body was spliced: {st:?}");
    let (got, end) = read_pattern(&mut visitor, 0, sent, Instant::now() + T, 64 * 1024, |_| {});
    assert!(matches!(end, End::Complete), "{got} of {sent}: {end:?}");
}

/// A visitor that falls behind while megabytes are in flight for it: the
/// frontend keeps them in pipes (its resident size stays within a megabyte
/// of idle while 2.5 MB wait), and the visitor gets every byte once it
/// reads. Before, a stream's pipe took a body only while its count of
/// bytes had room for all of it (1 MiB), so with 1 MiB chunks every chunk
/// after the first was copied into a growing buffer of ours (up to 3 MiB
/// of a grown 4 MiB window at full speed). A backend made by hand sends
/// 1,000,000-byte chunks one at a time, each once the frontend has spliced
/// (most of) the one before, until 2.5 MB wait at the frontend: the
/// kernel's send buffer toward the visitor first takes some megabytes (how
/// many varies), and no real backend's window grows the same way twice on
/// a loaded machine. (How many pipes that takes depends on the pages the
/// bytes came in: written ones come in 32 KiB fragments, and a pipe's 256
/// slots then hold several megabytes; the unit tests in `splice_queue`
/// cover the spill from one pipe into the next.)
#[test]
fn a_visitor_that_falls_behind_has_its_bytes_wait_in_pipes() {
    const BODY: usize = 1_000_000;
    let (fe, mut tunnel, mut visitor, line) = stalled_visitor("behind.test");
    let rss_idle = meter::rss_kib(fe.pid());
    let mut sent = 0u64;
    let mut st = meter::stats(&fe);
    while st.buffered < 2_500_000 && sent < 8 * BODY as u64 {
        send_chunk(&mut tunnel, &line, sent, BODY);
        // All but the first read's part of it (copied with its head).
        let spliced = st.spliced + (BODY - 256 * 1024) as u64;
        let (now, ok) = meter::poll_stats(&fe, T, |st| st.spliced >= spliced);
        assert!(ok, "the chunk after {sent} bytes was spliced: {now:?}");
        sent += BODY as u64;
        st = now;
    }
    let rss_stalled = meter::rss_kib(fe.pid());
    assert!(
        st.buffered >= 2_500_000,
        "2.5 MB wait after {sent} bytes: {st:?}"
    );
    assert!(st.pipes_lent >= 1, "in pipes: {st:?}");
    assert!(
        rss_stalled < rss_idle + 1024,
        "RSS {rss_idle} -> {rss_stalled} KiB with {} bytes waiting",
        st.buffered
    );
    let (got, end) = read_pattern(&mut visitor, 0, sent, Instant::now() + T, 64 * 1024, |_| {});
    assert!(matches!(end, End::Complete), "{got} of {sent}: {end:?}");
    let (st, ok) = meter::poll_stats(&fe, T, |st| st.pipes_lent == 0);
    assert!(ok, "the pipes went back once it caught up: {st:?}");
}

#[test]
fn idle_streams_hold_no_pipes() {
    let p = pair("idle.test", "on", &[]);
    let before = [pipe_fds(p.fe.pid()), pipe_fds(p.be.pid())];
    // Twenty visitors each download 4 MiB and then stay connected, idle.
    let mut conns: Vec<TcpStream> = (0..20u64)
        .map(|i| {
            let mut s = TcpStream::connect(local(p.port)).expect("connect");
            download_on(&mut s, "idle.test", 4 * MIB, 200 + i);
            s
        })
        .collect();
    for (proc, before) in [&p.fe, &p.be].into_iter().zip(before) {
        let (st, ok) = meter::poll_stats(proc, T, |st| st.streams == 20 && st.pipes_lent == 0);
        assert!(ok, "{}: {st:?}", proc.name());
        assert!(st.spliced > 0, "{st:?}");
        // The pool's spares are closed after a second unused: none left.
        let pid = proc.pid();
        util::wait_until("no pipe descriptors left", T, || pipe_fds(pid) == before);
        assert_eq!(meter::stats(proc).streams, 20);
    }
    // They still work after idling.
    download_on(&mut conns[3], "idle.test", MIB, 300);
}

/// Reads one response with a Content-Length body from `s`.
fn response(s: &mut TcpStream) -> (String, Vec<u8>) {
    let (head, mut body) = read_head(s, T).expect("response head");
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("a Content-Length");
    s.set_read_timeout(Some(T)).expect("timeout");
    while body.len() < len {
        let mut more = vec![0u8; len - body.len()];
        match s.read(&mut more) {
            Ok(0) | Err(_) => break,
            Ok(k) => body.extend_from_slice(&more[..k]),
        }
    }
    (head, body)
}

#[test]
fn the_backend_still_rewrites_every_request_head_around_spliced_bodies() {
    let origin = Origin::start();
    let p = pair_to(origin.port(), "rw.test", "on", &[]);
    let mut s = TcpStream::connect(local(p.port)).expect("connect");
    let size = 4 * MIB as usize;
    let mut body = vec![0u8; size];
    fill_pattern(0, &mut body);
    let sum = body.iter().fold(0u64, |a, &b| a.wrapping_add(u64::from(b)));
    let before = meter::stats(&p.be).spliced;
    // Keep-alive: a big body (spliced: opaque to the guard, its length
    // known), then a head the guard must see, twice over.
    for round in 0..2 {
        let head =
            format!("POST /upload HTTP/1.1\r\nHost: rw.test\r\nContent-Length: {size}\r\n\r\n");
        s.write_all(head.as_bytes()).expect("send head");
        s.write_all(&body).expect("send body");
        let (head, answer) = response(&mut s);
        assert_eq!(status_of(&head), 200, "{head}");
        assert_eq!(
            String::from_utf8_lossy(&answer),
            format!("len={size} sum={sum}"),
            "round {round}"
        );
        s.write_all(b"GET /echo HTTP/1.1\r\nHost: rw.test\r\n\r\n")
            .expect("send GET");
        let (_, echoed) = response(&mut s);
        let echoed = String::from_utf8_lossy(&echoed);
        assert!(
            echoed.contains("\r\nX-Forwarded-For: 127.0.0.1\r\n"),
            "round {round}: the head after a spliced body was not rewritten: {echoed}"
        );
    }
    let heads = origin.requests();
    assert_eq!(heads.len(), 4, "{heads:?}");
    assert!(
        heads
            .iter()
            .all(|h| h.contains("X-Forwarded-For: 127.0.0.1"))
    );
    let spliced = meter::stats(&p.be).spliced - before;
    assert!(
        spliced >= MIB * 4,
        "the bodies were not spliced: {spliced} bytes"
    );
}

/// Each end of an rkite tunnel announces the chunks it takes
/// (`X-PageKite-Max-Chunk`), and spliced chunks between two rkites then
/// carry several TCP segments each, both ways. Without the announcement
/// (an older rkite) they fill one segment; to a backend that is not rkite
/// either, uploads keep the 16,320-byte bodies pagekite.py and libpagekite
/// always got. A tap between backend and frontend measures the chunks and
/// hides what the case says.
#[test]
fn rkite_ends_send_each_other_chunks_of_several_segments_and_others_what_they_got() {
    let origin = start_origin();
    // Backends that are not rkite get the bodies they always got.
    const OTHERS: usize = 16 * 1024 - 64;
    // The largest body of a payload with a four-digit hex length.
    const CLASSIC: usize = 0xffff;
    let cases = [
        ("big.test", Disguise::default()),
        (
            "older.test",
            Disguise {
                version: false,
                max_chunk: true,
            },
        ),
        (
            "other.test",
            Disguise {
                version: true,
                max_chunk: true,
            },
        ),
    ];
    for (domain, disguise) in cases {
        let mut tap = None;
        let p = pair_via(origin, domain, "on", &[], |fe| {
            let t = chunk_tap::start(fe, disguise);
            let port = t.port;
            tap = Some(t);
            port
        });
        if disguise.version {
            p.fe.wait_for("tunnel request from other-", T);
        }
        upload(p.port, domain, 16 * MIB);
        download(p.port, domain, 16 * MIB, 7);
        for end in [&p.fe, &p.be] {
            assert!(meter::stats(end).spliced > 0, "{domain}: spliced");
        }
        let (up, down) = tap.expect("the tap").largest();
        let at = format!("{domain}: largest bodies {up} up, {down} down");
        eprintln!("{at}");
        if !disguise.max_chunk {
            assert!(up > CLASSIC && down > CLASSIC, "{at}");
        } else if !disguise.version {
            assert!(up > 2 * OTHERS && up < CLASSIC && down < CLASSIC, "{at}");
        } else {
            assert!(up <= OTHERS && down < CLASSIC, "{at}");
        }
    }
}
