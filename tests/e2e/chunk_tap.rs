//! A relay between an rkite backend and its frontend that passes every byte
//! on and measures the tunnel's chunks both ways (the largest body each
//! way). It can make the backend look like a peer that is not rkite (its
//! version renamed) and hide both ends' chunk-size announcement
//! (`X-PageKite-Max-Chunk`), as an older rkite or another PageKite peer
//! would not send one. It only parses; a byte it can't read as a chunk
//! ends the measuring, not the relaying.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::util::{self, local};

/// What the tap changes in the handshake.
#[derive(Clone, Copy, Debug, Default)]
pub struct Disguise {
    /// `X-PageKite-Version: rkite-…` becomes `other-…`.
    pub version: bool,
    /// `X-PageKite-Max-Chunk` becomes a header nobody reads, both ways.
    pub max_chunk: bool,
}

/// A running tap: the port backends dial, and the largest chunk body seen
/// going up (frontend → backend) and down (backend → frontend).
pub struct Tap {
    pub port: u16,
    pub up: Arc<AtomicUsize>,
    pub down: Arc<AtomicUsize>,
}

impl Tap {
    pub fn largest(&self) -> (usize, usize) {
        (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        )
    }
}

/// Starts a tap in front of the frontend on `frontend` (one tunnel at a
/// time; a redial gets fresh threads, eight at most).
pub fn start(frontend: u16, disguise: Disguise) -> Tap {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the tap");
    let port = listener.local_addr().expect("tap address").port();
    let (up, down) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (seen_up, seen_down) = (up.clone(), down.clone());
    std::thread::spawn(move || {
        for backend in listener.incoming().take(8).flatten() {
            let Ok(fe) = TcpStream::connect(local(frontend)) else {
                return;
            };
            let (Ok(be_in), Ok(fe_out)) = (backend.try_clone(), fe.try_clone()) else {
                return;
            };
            let seen = seen_down.clone();
            std::thread::spawn(move || pass(be_in, fe_out, disguise, &seen));
            let seen = seen_up.clone();
            std::thread::spawn(move || pass(fe, backend, disguise, &seen));
        }
    });
    Tap { port, up, down }
}

/// One direction: the handshake head (changed as `disguise` says), then
/// chunks, each measured and passed on.
fn pass(from: TcpStream, mut to: TcpStream, disguise: Disguise, seen: &AtomicUsize) {
    let mut from = BufReader::with_capacity(512 * 1024, from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match from.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let head_end = line == b"\r\n";
        if disguise.version && line.starts_with(b"X-PageKite-Version: rkite-") {
            line.splice(20..25, b"other".iter().copied());
        }
        if disguise.max_chunk && line.starts_with(b"X-PageKite-Max-Chunk:") {
            line.splice(11..20, b"Ignored".iter().copied());
        }
        if to.write_all(&line).is_err() {
            return;
        }
        if head_end {
            break;
        }
    }
    let mut payload = Vec::new();
    loop {
        line.clear();
        if !matches!(from.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        let Ok(len) = usize::from_str_radix(text.trim(), 16) else {
            // Not a chunk this tap reads: relay the rest unmeasured.
            if to.write_all(&line).is_ok() {
                let _ = std::io::copy(&mut from, &mut to);
            }
            break;
        };
        payload.resize(len, 0);
        if from.read_exact(&mut payload).is_err() {
            break;
        }
        // The body: what follows the chunk's own header lines.
        if let Some(at) = util::find_subslice(&payload, b"\r\n\r\n") {
            seen.fetch_max(len - at - 4, Ordering::Relaxed);
        }
        if to.write_all(&line).is_err() || to.write_all(&payload).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
