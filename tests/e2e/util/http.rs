//! HTTP clients for the tests: a wrapper around the curl binary (`curl`, `try_curl`,
//! `curl_to_file`) and a plain std TcpStream client for hand-made requests and half-close
//! tests (`http_request`, `http_request_half_close`, `raw_exchange`), plus `RawResponse`
//! to parse what the latter returns. Every call is bounded by a timeout.

use super::{no_proxy_env, unique};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What curl received: the status and headers of the last header block, and the body.
#[derive(Debug)]
pub struct CurlResult {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CurlResult {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as (lossy) UTF-8.
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A body that curl wrote to a file (for large downloads). The file is removed on Drop.
#[derive(Debug)]
pub struct CurlDownload {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub path: PathBuf,
}

impl CurlDownload {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Size of the downloaded body in bytes.
    pub fn len(&self) -> u64 {
        std::fs::metadata(&self.path)
            .expect("stat curl download")
            .len()
    }
}

impl Drop for CurlDownload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Runs `curl -sS --noproxy '*' --max-time 30 -D <hdrs> -o <body> ARGS...` and returns what
/// it got; panics with curl's stderr if curl fails. A later `--max-time` in ARGS wins.
pub fn curl(args: &[&str]) -> CurlResult {
    try_curl(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Like `curl`, but returns curl's failure (exit code and stderr) as an Err.
pub fn try_curl(args: &[&str]) -> Result<CurlResult, String> {
    let body_path = curl_tmp("body");
    let (status, headers) = run_curl(args, &body_path)?;
    let body = std::fs::read(&body_path).unwrap_or_default();
    let _ = std::fs::remove_file(&body_path);
    Ok(CurlResult {
        status,
        headers,
        body,
    })
}

/// Like `curl`, but leaves the body in a temp file (removed when the result is dropped).
pub fn curl_to_file(args: &[&str]) -> CurlDownload {
    let body_path = curl_tmp("download");
    match run_curl(args, &body_path) {
        Ok((status, headers)) => {
            if !body_path.exists() {
                std::fs::write(&body_path, b"").expect("create empty download file");
            }
            CurlDownload {
                status,
                headers,
                path: body_path,
            }
        }
        Err(e) => {
            let _ = std::fs::remove_file(&body_path);
            panic!("{e}")
        }
    }
}

fn curl_tmp(kind: &str) -> PathBuf {
    super::run_root().join(format!("curl-{}.{kind}", unique()))
}

fn run_curl(args: &[&str], body_path: &Path) -> Result<(u16, Vec<(String, String)>), String> {
    let hdr_path = curl_tmp("headers");
    let mut cmd = Command::new("curl");
    no_proxy_env(&mut cmd);
    cmd.args(["-sS", "--noproxy", "*", "--max-time", "30", "-D"])
        .arg(&hdr_path)
        .arg("-o")
        .arg(body_path)
        .args(args)
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .map_err(|e| format!("could not run curl {args:?}: {e}"))?;
    let raw = std::fs::read(&hdr_path).unwrap_or_default();
    let _ = std::fs::remove_file(&hdr_path);
    if !out.status.success() {
        return Err(format!(
            "curl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_last_head(&raw).ok_or_else(|| {
        format!(
            "curl {args:?}: no HTTP header block in its -D output: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

/// Parses the last `HTTP/...` header block of curl's `-D` output.
fn parse_last_head(raw: &[u8]) -> Option<(u16, Vec<(String, String)>)> {
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let block = text
        .split("\n\n")
        .filter(|b| b.starts_with("HTTP/"))
        .last()?;
    parse_head_text(block)
}

/// Parses a status line plus header lines (`\n` or `\r\n` separated).
fn parse_head_text(block: &str) -> Option<(u16, Vec<(String, String)>)> {
    let mut lines = block.lines().map(|l| l.trim_end_matches('\r'));
    let status_line = lines.next()?;
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Some((status, headers))
}

// ---------------------------------------------------------------------------------------
// Raw TCP HTTP client

/// A response parsed from raw bytes: status line, headers, and everything after the head
/// (not de-chunked).
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Parses one response head from the start of `data`; panics if there is none.
    pub fn parse(data: &[u8]) -> RawResponse {
        let end = find_subslice(data, b"\r\n\r\n").unwrap_or_else(|| {
            panic!(
                "no complete HTTP response head in {} bytes: {:?}",
                data.len(),
                String::from_utf8_lossy(&data[..data.len().min(512)])
            )
        });
        let head = String::from_utf8_lossy(&data[..end]);
        let (status, headers) =
            parse_head_text(&head).unwrap_or_else(|| panic!("bad HTTP response head: {head:?}"));
        RawResponse {
            status,
            headers,
            body: data[end + 4..].to_vec(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Position of the first occurrence of `needle` in `hay`.
pub fn find_subslice(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Connects to `addr`, writes `raw`, reads until EOF; panics on error or after `timeout`.
pub fn http_request(addr: SocketAddr, raw: &[u8], timeout: Duration) -> Vec<u8> {
    raw_exchange(addr, raw, false, timeout)
        .unwrap_or_else(|e| panic!("raw request to {addr} failed: {e}"))
}

/// Like `http_request`, but shuts down the write side right after sending `raw`.
pub fn http_request_half_close(addr: SocketAddr, raw: &[u8], timeout: Duration) -> Vec<u8> {
    raw_exchange(addr, raw, true, timeout)
        .unwrap_or_else(|e| panic!("raw half-closed request to {addr} failed: {e}"))
}

/// Connects to `addr`, writes `raw` (then optionally shuts down writing), and reads until
/// EOF. I/O errors (e.g. a reset) are returned; exceeding `timeout` is an error too, whose
/// message includes what had been received.
pub fn raw_exchange(
    addr: SocketAddr,
    raw: &[u8],
    half_close: bool,
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(raw)?;
    if half_close {
        s.shutdown(Shutdown::Write)?;
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timeout_error(timeout, &out));
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(timeout_error(timeout, &out));
            }
            Err(e) => return Err(e),
        }
    }
}

fn timeout_error(timeout: Duration, got: &[u8]) -> std::io::Error {
    std::io::Error::new(
        ErrorKind::TimedOut,
        format!(
            "no EOF within {timeout:?}; received {} bytes: {:?}",
            got.len(),
            String::from_utf8_lossy(&got[..got.len().min(512)])
        ),
    )
}
