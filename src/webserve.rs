//! The built-in file server's file-system and socket side: a `builtin`
//! kite's stream is connected to one end of a Unix socket pair (no port,
//! no thread), and a [`WebConn`] in the reactor's table answers on the other
//! end: it reads request heads, asks `proto::webfiles` what they mean,
//! resolves paths under a `--webpath` mount (canonicalized and checked to
//! stay inside it, so `..` and symlinks out of the tree are refused), and
//! writes heads, listings and files a chunk at a time as the socket takes
//! them: a file is never read whole, and the stream on the other end reads
//! the pair only as its flow window allows, so memory stays bounded. Several
//! requests may share one stream (keep-alive). It decides nothing about
//! HTTP itself (that is `proto::webfiles`) and nothing about tunnels.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use log::{Level, debug};
use mio::Token;
use mio::net::UnixStream;

use crate::conn::{Conn, Cx};
pub use crate::conn::{Site, WebConn};
use crate::conns::tag;
use crate::logging::Noise;
use crate::net::{self, Io, Ready};
use crate::proto::webfiles::{
    self, BadRequest, Method, MountKey, RangeAnswer, Request, UrlPath, head_end, parse_request,
};
use crate::proto::webfiles_page::{self as page, Access, Entry, Head, Indexes};

/// Bytes of a file read (and written) at a time.
const CHUNK: usize = 64 * 1024;
/// Rounds of write-and-refill per drive before others get a turn.
const ROUNDS: usize = 16;
/// A listing shows at most this many entries.
const MAX_LISTED: usize = 10_000;

/// A socket pair for a built-in kite's stream: the stream's end (returned,
/// for the stream's transport) and the server's end, in the reactor's
/// table.
pub fn open(eng: &mut Cx, site: Site, label: &str) -> io::Result<UnixStream> {
    let (stream_end, server_end) = StdUnixStream::pair()?;
    stream_end.set_nonblocking(true)?;
    server_end.set_nonblocking(true)?;
    let site = Box::new(site);
    let label = label.to_string();
    eng.add(UnixStream::from_std(server_end), move |sock, _| {
        Conn::Web(Box::new(WebConn {
            sock,
            ready: Ready::default(),
            site,
            inb: Vec::new(),
            out: Vec::new(),
            out_at: 0,
            chunk: Vec::new(),
            chunk_at: 0,
            chunk_end: 0,
            body: None,
            close_after: false,
            closing: false,
            head_only: false,
            label,
        }))
    })?;
    Ok(UnixStream::from_std(stream_end))
}

/// Drives one built-in server connection; `None` when it is finished.
pub fn drive(eng: &mut Cx, token: Token, mut w: Box<WebConn>) -> Option<Conn> {
    for _ in 0..ROUNDS {
        match step(eng, token, &mut w) {
            Ok(Step::Wait) => return Some(Conn::Web(w)),
            Ok(Step::More) => {}
            Ok(Step::Done) | Err(_) => {
                let _ = w.sock.shutdown(std::net::Shutdown::Both);
                return None;
            }
        }
    }
    eng.mark_again(token);
    Some(Conn::Web(w))
}

enum Step {
    Wait,
    More,
    Done,
}

fn step(eng: &mut Cx, token: Token, w: &mut WebConn) -> Result<Step, ()> {
    // Write what is pending: a head or page, then file data.
    let (pending, from_file) = if w.out_at < w.out.len() {
        (w.out.get(w.out_at..).unwrap_or_default(), false)
    } else {
        (
            w.chunk.get(w.chunk_at..w.chunk_end).unwrap_or_default(),
            true,
        )
    };
    if !pending.is_empty() {
        match net::write(&mut w.sock, pending) {
            Io::Done(n) if from_file => {
                w.chunk_at += n;
                return Ok(Step::More);
            }
            Io::Done(n) => {
                w.out_at += n;
                return Ok(Step::More);
            }
            Io::WouldBlock => {
                w.ready.write = false;
                return Ok(Step::Wait);
            }
            // Short of kernel memory: another round, or the next drive.
            Io::Starved => return Ok(Step::More),
            _ => return Err(()),
        }
    }
    w.out.clear();
    w.out_at = 0;
    // Refill from the file being sent.
    if let Some((file, left)) = w.body.as_mut() {
        if *left == 0 {
            w.body = None;
            return Ok(Step::More);
        }
        let want = usize::try_from(*left).unwrap_or(CHUNK).min(CHUNK);
        if w.chunk.len() < CHUNK {
            // Zeroed once per connection, not per read.
            w.chunk.resize(CHUNK, 0);
        }
        match file.read(w.chunk.get_mut(..want).unwrap_or_default()) {
            Ok(n) if n > 0 => {
                (w.chunk_at, w.chunk_end) = (0, n);
                *left -= n as u64;
                return Ok(Step::More);
            }
            // Shorter than its length said (truncated while sent): the
            // response cannot be finished.
            _ => return Err(()),
        }
    }
    if w.close_after {
        // Answered: say so, then read and drop what the visitor still
        // sends (a body we do not take) until it is done too, so our
        // close does not turn into a reset that loses the answer.
        if !w.closing {
            w.closing = true;
            let _ = w.sock.shutdown(std::net::Shutdown::Write);
        }
        w.inb.clear();
    }
    // Answer the next request, once its head is in.
    let parsed = if w.closing {
        Ok(None)
    } else {
        head_end(&w.inb)
    };
    match parsed {
        Ok(Some(end)) => {
            let head: Vec<u8> = w.inb.drain(..end).collect();
            respond(eng, token, w, &head);
            return Ok(Step::More);
        }
        Ok(None) => {}
        Err(BadRequest::TooLarge | BadRequest::RequestLine) => {
            w.inb.clear();
            error(w, 431, false);
            return Ok(Step::More);
        }
    }
    if !w.ready.read {
        return Ok(Step::Wait);
    }
    let mut buf = [0u8; 4096];
    match net::read(&mut w.sock, &mut buf) {
        Io::Done(n) => {
            w.inb.extend_from_slice(buf.get(..n).unwrap_or_default());
            Ok(Step::More)
        }
        Io::WouldBlock => {
            w.ready.read = false;
            Ok(Step::Wait)
        }
        Io::Starved => Ok(Step::More),
        // The visitor is done: so are we (nothing half-answered is left).
        Io::Eof => Ok(Step::Done),
        Io::Failed(_) => Err(()),
    }
}

fn unix_now() -> u64 {
    crate::engine::unix_now()
}

/// Queues a short error page and its head.
fn error(w: &mut WebConn, status: u16, keep_alive: bool) {
    let body = page::error_body(status);
    w.out.extend_from_slice(&page::head(&Head {
        status,
        content_type: Some("text/html; charset=utf-8"),
        length: body.len() as u64,
        date: unix_now(),
        keep_alive,
        ..Head::default()
    }));
    // A HEAD's answer has no body, or it would pass for the next answer.
    if !w.head_only {
        w.out.extend_from_slice(body.as_bytes());
    }
    w.close_after |= !keep_alive;
}

/// A refusal whose reason the visitor is not told: one throttled line.
fn refuse(eng: &Cx, token: Token, w: &mut WebConn, req: &Request<'_>, why: &str) {
    crate::logging::noisy(
        eng.now,
        Noise::StreamRefused,
        Level::Info,
        format_args!(
            "[w{}] {}: {} refused: {why}",
            tag(token),
            w.label,
            String::from_utf8_lossy(req.target).escape_debug()
        ),
    );
    error(w, 404, req.keep_alive);
}

fn respond(eng: &Cx, token: Token, w: &mut WebConn, head: &[u8]) {
    w.head_only = false;
    let req = match parse_request(head) {
        Ok(req) => req,
        Err(_) => return error(w, 400, false),
    };
    w.head_only = req.method == Method::Head;
    debug!(
        "[w{}] {}: {}",
        tag(token),
        w.label,
        String::from_utf8_lossy(head.split(|&b| b == b'\n').next().unwrap_or_default())
            .trim_end()
            .escape_debug()
    );
    let keep = req.keep_alive;
    if req.method == Method::Other {
        return error(w, 405, keep);
    }
    let path = match webfiles::url_path(req.target) {
        Ok(p) => p,
        Err(e) => return refuse(eng, token, w, &req, &format!("{e:?}")),
    };
    let prefixes: Vec<Vec<String>> = w
        .site
        .web
        .paths
        .iter()
        .map(|p| p.prefix_segments())
        .collect();
    let keys: Vec<MountKey<'_>> = w
        .site
        .web
        .paths
        .iter()
        .zip(&prefixes)
        .map(|(p, prefix)| MountKey {
            host: &p.host,
            prefix,
        })
        .collect();
    let names = [w.site.host.as_str(), w.site.domain.as_str()];
    let Some((i, taken)) = webfiles::find_mount(&keys, &names, w.site.port, &path) else {
        return error(w, 404, keep);
    };
    let Some(mount) = w.site.web.paths.get(i).cloned() else {
        return error(w, 404, keep);
    };
    match page::access(
        mount.policy,
        w.site.web.password.as_deref(),
        req.authorization,
    ) {
        Access::Allowed => {}
        Access::NeedPassword => return error(w, 401, keep),
        Access::Forbidden => return error(w, 403, keep),
    }
    let rest = path.segments.get(taken..).unwrap_or_default();
    let target = match resolve(&mount.dir, rest) {
        Ok(t) => t,
        Err(Resolve::Missing) => return error(w, 404, keep),
        Err(Resolve::Outside) => {
            return refuse(eng, token, w, &req, "outside the shared tree");
        }
    };
    let Ok(meta) = std::fs::metadata(&target) else {
        return error(w, 404, keep);
    };
    if meta.is_dir() {
        if !path.trailing_slash && !path.segments.is_empty() {
            let location = page::encode_path(&path.segments, true);
            let body = page::error_body(302);
            w.out.extend_from_slice(&page::head(&Head {
                status: 302,
                content_type: Some("text/html; charset=utf-8"),
                length: body.len() as u64,
                location: Some(&location),
                date: unix_now(),
                keep_alive: keep,
                ..Head::default()
            }));
            if req.method == Method::Get {
                w.out.extend_from_slice(body.as_bytes());
            }
            w.close_after |= !keep;
            return;
        }
        for index in ["index.html", "index.htm"] {
            let Ok(found) = resolve(&mount.dir, &with(rest, index)) else {
                continue;
            };
            if let Ok(m) = std::fs::metadata(&found) {
                if m.is_file() {
                    return send_file(w, &req, &mount.dir, &found, index.as_bytes());
                }
            }
        }
        if w.site.indexes == Indexes::Off {
            return error(w, 403, keep);
        }
        return send_listing(w, &req, &target, &path);
    }
    let name = path.segments.last().map_or(&b""[..], Vec::as_slice);
    let name = if name.is_empty() {
        mount.dir.file_name().map_or(&b""[..], OsStr::as_bytes)
    } else {
        name
    };
    send_file(w, &req, &mount.dir, &target, name);
}

fn with(rest: &[Vec<u8>], name: &str) -> Vec<Vec<u8>> {
    let mut v = rest.to_vec();
    v.push(name.as_bytes().to_vec());
    v
}

enum Resolve {
    Missing,
    Outside,
}

/// `rest` under `root`, with every symlink followed, refused unless it is
/// still `root` or inside it.
fn resolve(root: &Path, rest: &[Vec<u8>]) -> Result<PathBuf, Resolve> {
    let root = root.canonicalize().map_err(|_| Resolve::Missing)?;
    let mut path = root.clone();
    for seg in rest {
        path.push(OsStr::from_bytes(seg));
    }
    let real = path.canonicalize().map_err(|_| Resolve::Missing)?;
    if real.starts_with(&root) {
        Ok(real)
    } else {
        Err(Resolve::Outside)
    }
}

/// Opens `target`, which [`resolve`] found inside `root`, so that a path
/// component swapped for a symlink since then (by someone who can write in
/// the shared tree) still cannot lead out of it: the kernel resolves the
/// path from the root's descriptor with `RESOLVE_BENEATH` (openat2, Linux
/// 5.6). Where openat2 is missing (ENOSYS) or filtered (EPERM), the check
/// [`resolve`] just made is what stands.
fn open_beneath(root: &Path, target: &Path) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    let root = root.canonicalize()?;
    let rel = target
        .strip_prefix(&root)
        .map_err(|_| io::Error::from(io::ErrorKind::PermissionDenied))?;
    if rel.as_os_str().is_empty() {
        // The root itself (a single shared file): nothing to resolve.
        return File::open(&root);
    }
    let rel = std::ffi::CString::new(rel.as_os_str().as_bytes())?;
    let dir = File::open(&root)?;
    // SAFETY: open_how is plain data; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: the descriptor and the C string live across the call, `how`
    // is passed with its size, and a returned descriptor is ours alone.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            rel.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if let Ok(fd) = i32::try_from(fd) {
        if fd >= 0 {
            // SAFETY: openat2 returned a new descriptor that nothing else owns.
            return Ok(unsafe { File::from_raw_fd(fd) });
        }
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOSYS | libc::EPERM) => File::open(target),
        _ => Err(e),
    }
}

fn mtime(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

fn send_file(w: &mut WebConn, req: &Request<'_>, root: &Path, target: &Path, name: &[u8]) {
    let keep = req.keep_alive;
    let Ok(file) = open_beneath(root, target) else {
        return error(w, 403, keep);
    };
    let Ok(meta) = file.metadata() else {
        return error(w, 403, keep);
    };
    if !meta.is_file() {
        return error(w, 403, keep);
    }
    let size = meta.len();
    let modified = mtime(&meta);
    let tag = webfiles::etag(size, modified, std::os::unix::fs::MetadataExt::ino(&meta));
    let mut h = Head {
        status: 200,
        content_type: Some(webfiles::content_type(name)),
        length: size,
        last_modified: Some(modified),
        etag: Some(&tag),
        date: unix_now(),
        keep_alive: keep,
        ..Head::default()
    };
    if webfiles::not_modified(req, &tag, modified) {
        h.status = 304;
        h.length = 0;
        h.content_type = None;
        w.out.extend_from_slice(&page::head(&h));
        w.close_after |= !keep;
        return;
    }
    let mut start = 0;
    if let Some(spec) = req
        .range
        .filter(|_| webfiles::range_applies(req, &tag, modified))
    {
        match webfiles::range(spec, size) {
            RangeAnswer::Whole => {}
            RangeAnswer::Part { start: s, end } => {
                h.status = 206;
                h.length = end - s + 1;
                h.range = Some((s, end, size));
                start = s;
            }
            RangeAnswer::Unsatisfiable => {
                h.status = 416;
                h.length = 0;
                h.content_type = None;
                h.unsatisfied = Some(size);
                w.out.extend_from_slice(&page::head(&h));
                w.close_after |= !keep;
                return;
            }
        }
    }
    w.out.extend_from_slice(&page::head(&h));
    if req.method == Method::Get && h.length > 0 {
        let mut file = file;
        if start > 0 {
            use std::io::Seek;
            if file.seek(io::SeekFrom::Start(start)).is_err() {
                w.close_after = true;
                return;
            }
        }
        w.body = Some((file, h.length));
    }
    w.close_after |= !keep;
}

fn send_listing(w: &mut WebConn, req: &Request<'_>, dir: &Path, path: &UrlPath) {
    let keep = req.keep_alive;
    let mut entries = Vec::new();
    let mut omitted = 0;
    if let Ok(list) = std::fs::read_dir(dir) {
        for entry in list.flatten() {
            let name = entry.file_name().as_bytes().to_vec();
            if !page::listed(&name, w.site.indexes) {
                continue;
            }
            if entries.len() >= MAX_LISTED {
                omitted += 1;
                continue;
            }
            let meta = std::fs::metadata(entry.path()).ok();
            entries.push(Entry {
                name,
                dir: meta.as_ref().is_some_and(std::fs::Metadata::is_dir),
                size: meta.as_ref().map_or(0, std::fs::Metadata::len),
                mtime: meta.as_ref().map_or(0, mtime),
            });
        }
    }
    let body = page::listing(&path.segments, &mut entries, omitted);
    w.out.extend_from_slice(&page::head(&Head {
        status: 200,
        content_type: Some("text/html; charset=utf-8"),
        length: body.len() as u64,
        date: unix_now(),
        keep_alive: keep,
        ..Head::default()
    }));
    if req.method == Method::Get {
        w.out.extend_from_slice(body.as_bytes());
    }
    w.close_after |= !keep;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_open_only_beneath_the_shared_root() {
        let dir = std::env::temp_dir().join(format!("rkite-beneath-{}", std::process::id()));
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("sub")).expect("dirs");
        std::fs::write(root.join("sub/a.txt"), b"inside").expect("a file");
        std::fs::write(dir.join("secret"), b"outside").expect("a file outside");
        let _ = std::fs::remove_file(root.join("out"));
        std::os::unix::fs::symlink(&dir, root.join("out")).expect("a symlink out");
        let root = root.canonicalize().expect("root");
        let mut inside = String::new();
        open_beneath(&root, &root.join("sub/a.txt"))
            .and_then(|mut f| f.read_to_string(&mut inside))
            .expect("a file inside opens");
        assert_eq!(inside, "inside");
        // As if `out` had been swapped in after the check: the path names a
        // file under the root, but resolving it leaves the tree.
        let escaped = root.join("out/secret");
        assert!(File::open(&escaped).is_ok(), "a plain open follows it");
        assert!(
            open_beneath(&root, &escaped).is_err(),
            "openat2 with RESOLVE_BENEATH does not"
        );
        assert!(
            open_beneath(&root, &dir.join("secret")).is_err(),
            "not under the root"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
