//! Shorthands for starting rkite frontends and backends the way a user would
//! (real processes, real flags) and for talking to them with curl. Shared by
//! the relay, robustness and interop test modules.

#![allow(dead_code)]

use std::time::Duration;

use crate::util::{self, CurlResult, Proc};

/// Generous bound for anything that should take milliseconds.
pub const T: Duration = Duration::from_secs(20);

/// An rkite frontend on 127.0.0.1 with the given ports and `--domain`s.
pub fn frontend(ports: &[u16], domains: &[&str], extra: &[&str]) -> Proc {
    let mut args = vec![
        "--isfrontend".to_string(),
        "--host=127.0.0.1".to_string(),
        format!(
            "--ports={}",
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
        "--protos=http,https,raw,websocket".to_string(),
    ];
    args.extend(domains.iter().map(|d| format!("--domain={d}")));
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let fe = util::rkite(&refs);
    for port in ports {
        fe.wait_for(&format!("listening on 127.0.0.1:{port}"), T);
    }
    fe
}

/// An rkite backend with one `--service_on` per kite spec.
pub fn backend(fe_port: u16, kites: &[String], extra: &[&str]) -> Proc {
    let mut args = vec![format!("--frontend=127.0.0.1:{fe_port}")];
    args.extend(kites.iter().map(|k| format!("--service_on={k}")));
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    util::rkite(&refs)
}

/// `PROTO:DOMAIN:127.0.0.1:PORT:SECRET`
pub fn kite(proto: &str, domain: &str, port: u16, secret: &str) -> String {
    format!("{proto}:{domain}:127.0.0.1:{port}:{secret}")
}

/// Waits for rkite's "kite NAME is live" line (frontend or backend).
pub fn live(p: &Proc, name: &str) -> String {
    p.wait_for(&format!("kite {name} is live"), T)
}

/// GET through a frontend port with a Host header.
pub fn get(port: u16, host: &str, path: &str) -> CurlResult {
    let url = format!("http://127.0.0.1:{port}{path}");
    let host = format!("Host: {host}");
    util::curl(&["-H", &host, &url])
}

/// Uploads `len` pattern bytes with curl to `/upload` on the frontend at
/// `port` for `host`; the test origin must answer with the length and
/// byte sum it received.
pub fn upload_checked(port: u16, host: &str, len: u32) {
    let body: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let sum: u64 = body.iter().map(|b| u64::from(*b)).sum();
    let path = util::temp_dir("upload").join("body");
    std::fs::write(&path, &body).expect("write the upload");
    let up = util::curl(&[
        "--max-time",
        "120",
        "-H",
        &format!("Host: {host}"),
        "--data-binary",
        &format!("@{}", path.display()),
        &format!("http://127.0.0.1:{port}/upload"),
    ]);
    assert_eq!(up.body_str(), format!("len={} sum={sum}", body.len()));
}
