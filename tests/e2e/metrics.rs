//! `--metrics`: Debian's Prometheus, started here with a 1 s scrape interval,
//! scrapes a frontend and a backend while traffic flows, and the values are
//! read back from its query API; `/healthz` on a backend before and after its
//! frontend is there; and hostile metrics clients (an endless header, a
//! silent one, too many at once) are closed while others are still served.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::fixture::{T, backend, frontend, get, kite, live};
use crate::origin::Origin;
use crate::util::{self, Proc, free_port};

const SECRET: &str = "metrics-secret";

/// A plain GET (or HEAD) of the metrics endpoint: status and body.
fn fetch(port: u16, path: &str, head: bool) -> (u16, String) {
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut args = vec!["--max-time", "5", url.as_str()];
    if head {
        args.insert(0, "-I");
    }
    let r = util::curl(&args);
    (r.status, r.body_str())
}

/// Starts Prometheus scraping `targets` every second; returns it and its port.
fn prometheus(targets: &[u16]) -> (Proc, u16) {
    let dir = util::temp_dir("prometheus");
    let port = free_port();
    let list = targets
        .iter()
        .map(|p| format!("'127.0.0.1:{p}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: rkite\n    static_configs:\n      - targets: [{list}]\n"
    );
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).expect("write prometheus.yml");
    let config_arg = format!("--config.file={}", config_path.display());
    let storage = format!("--storage.tsdb.path={}", dir.join("data").display());
    let listen = format!("--web.listen-address=127.0.0.1:{port}");
    let p = Proc::start(
        "prometheus",
        "prometheus",
        &[&config_arg, &storage, &listen, "--log.level=info"],
        &[],
    );
    p.wait_for("Server is ready to receive web requests", T * 3);
    (p, port)
}

/// The value of the first series `query` returns in Prometheus' instant
/// query API, if any.
fn query(prom: u16, expr: &str) -> Option<f64> {
    let url = format!("http://127.0.0.1:{prom}/api/v1/query");
    let q = format!("query={expr}");
    let r = util::try_curl(&["--max-time", "5", "-G", "--data-urlencode", &q, &url]).ok()?;
    let body = r.body_str();
    if r.status != 200 || !body.contains("\"status\":\"success\"") {
        return None;
    }
    // `"value":[<time>,"<number>"]`: the number is the quoted second item.
    let at = body.find("\"value\":[")?;
    let rest = body.get(at..)?;
    let comma = rest.find(",\"")?;
    let rest = rest.get(comma + 2..)?;
    let end = rest.find('"')?;
    rest.get(..end)?.parse().ok()
}

/// Waits until `expr` has a value `ok` accepts; returns it.
fn wait_value(prom: u16, what: &str, expr: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let mut last = None;
    let deadline = Duration::from_secs(60);
    util::wait_until(&format!("{what} ({expr})"), deadline, || {
        last = query(prom, expr);
        last.is_some_and(&ok)
    });
    last.unwrap_or_default()
}

#[test]
fn prometheus_scrapes_both_roles_and_sees_the_traffic() {
    if !util::require_peer("prometheus") {
        return;
    }
    let origin = Origin::start();
    let port = free_port();
    let (fe_m, be_m) = (free_port(), free_port());
    let fe = frontend(
        &[port],
        &[&format!("http:pm.test:{SECRET}")],
        &[&format!("--metrics=127.0.0.1:{fe_m}")],
    );
    fe.wait_for(&format!("metrics on http://127.0.0.1:{fe_m}/metrics"), T);
    let be = backend(
        port,
        &[kite("http", "pm.test", origin.port(), SECRET)],
        &[&format!("--metrics=127.0.0.1:{be_m}")],
    );
    live(&be, "http:pm.test");
    let (_prom, prom) = prometheus(&[fe_m, be_m]);
    let fe_i = format!("instance=\"127.0.0.1:{fe_m}\"");
    let be_i = format!("instance=\"127.0.0.1:{be_m}\"");
    wait_value(prom, "both targets up", "sum(up{job=\"rkite\"})", |v| {
        v == 2.0
    });
    let sent = format!("rkite_kite_sent_bytes_total{{kite=\"http:pm.test\",{fe_i}}}");
    let before = wait_value(prom, "the frontend's kite counter", &sent, |_| true);

    // Traffic: 1 MiB from the origin to the visitor.
    const N: usize = 1 << 20;
    let body = get(port, "pm.test", &format!("/bytes/{N}"));
    assert_eq!(body.body.len(), N);
    wait_value(prom, "the frontend's kite sent the download", &sent, |v| {
        v >= before + N as f64
    });
    let received = format!("rkite_kite_received_bytes_total{{kite=\"http:pm.test\",{be_i}}}");
    wait_value(
        prom,
        "the backend's kite read the download",
        &received,
        |v| v >= N as f64,
    );
    let tunnel_in = format!("rkite_tunnel_received_bytes_total{{{fe_i}}}");
    wait_value(prom, "the frontend's tunnel bytes", &tunnel_in, |v| {
        v >= N as f64
    });
    for inst in [&fe_i, &be_i] {
        let live_tunnels = format!("rkite_tunnels{{state=\"live\",{inst}}}");
        wait_value(prom, "one live tunnel", &live_tunnels, |v| v == 1.0);
        let kite_up = format!("rkite_kite_up{{kite=\"http:pm.test\",{inst}}}");
        wait_value(prom, "the kite up", &kite_up, |v| v == 1.0);
        let ok = format!("rkite_tunnel_handshakes_total{{result=\"ok\",{inst}}}");
        wait_value(prom, "a handshake", &ok, |v| v >= 1.0);
        let streams = format!("rkite_streams{{{inst}}}");
        wait_value(prom, "the stream closed again", &streams, |v| v == 0.0);
        let done = format!("sum(rkite_streams_closed_total{{{inst}}})");
        wait_value(prom, "the stream counted as closed", &done, |v| v >= 1.0);
    }
    let version = env!("CARGO_PKG_VERSION");
    let info = format!("count(rkite_build_info{{version=\"{version}\"}})");
    wait_value(prom, "build info from both", &info, |v| v == 2.0);
    let roles =
        "count(rkite_build_info{role=\"backend\"}) + count(rkite_build_info{role=\"frontend\"})";
    wait_value(prom, "both roles", roles, |v| v == 2.0);
    let start = format!("rkite_process_start_time_seconds{{{fe_i}}}");
    wait_value(prom, "a start time", &start, |v| v > 1.0e9);
    // No visitor-chosen label: the only kite label is the registered kite.
    let kites = "count(count by (kite) (rkite_kite_sent_bytes_total))";
    assert_eq!(query(prom, kites), Some(1.0));
}

#[test]
fn healthz_on_a_backend_waits_for_a_live_tunnel() {
    let origin = Origin::start();
    let port = free_port();
    let be_m = free_port();
    let be = backend(
        port,
        &[kite("http", "hz.test", origin.port(), SECRET)],
        &[&format!("--metrics=127.0.0.1:{be_m}")],
    );
    be.wait_for(&format!("metrics on http://127.0.0.1:{be_m}/metrics"), T);
    // No frontend yet: the backend is not healthy, and says why.
    let (status, body) = fetch(be_m, "/healthz", false);
    assert_eq!((status, body.as_str()), (503, "no live tunnel\n"));
    let fe_m = free_port();
    let fe = frontend(
        &[port],
        &[&format!("http:hz.test:{SECRET}")],
        &[&format!("--metrics=127.0.0.1:{fe_m}")],
    );
    live(&be, "http:hz.test");
    util::wait_until("the backend's /healthz to say ok", T, || {
        fetch(be_m, "/healthz", false) == (200, "ok\n".to_string())
    });
    assert_eq!(fetch(fe_m, "/healthz", false), (200, "ok\n".to_string()));
    // HEAD gets the head only; other paths are not found.
    // (curl -I writes the head where the body would go: nothing follows it.)
    let (status, head) = fetch(fe_m, "/metrics", true);
    assert_eq!(status, 200);
    assert!(head.ends_with("\r\n\r\n"), "{head}");
    assert!(head.contains("Content-Length: "), "{head}");
    assert!(!head.contains("rkite_"), "{head}");
    assert_eq!(fetch(fe_m, "/nope", false).0, 404);
    let (status, text) = fetch(be_m, "/metrics", false);
    assert_eq!(status, 200);
    assert!(
        text.contains("\nrkite_kite_up{kite=\"http:hz.test\"} 1\n"),
        "{text}"
    );
    // The frontend gone, the backend is unhealthy again.
    drop(fe);
    util::wait_until("the backend's /healthz to fail again", T, || {
        fetch(be_m, "/healthz", false).0 == 503
    });
}

/// Reads until the server closes (Ok(bytes)), or the deadline passes (Err).
fn read_to_close(s: &mut TcpStream, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(got);
        }
        let _ = s.set_read_timeout(Some(left.min(Duration::from_millis(500))));
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(got),
            Err(_) => {}
        }
    }
}

#[test]
fn hostile_metrics_clients_are_closed_and_others_still_served() {
    let port = free_port();
    let m = free_port();
    let fe = frontend(
        &[port],
        &[&format!("http:hm.test:{SECRET}")],
        &[&format!("--metrics=127.0.0.1:{m}")],
    );
    fe.wait_for(&format!("metrics on http://127.0.0.1:{m}/metrics"), T);
    let addr = util::local(m);

    // A silent client, to be timed out later.
    let mut silent = TcpStream::connect(addr).expect("connect");

    // An endless header: refused once it passes 4 KiB, and closed.
    let mut endless = TcpStream::connect(addr).expect("connect");
    endless
        .set_write_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    endless
        .write_all(b"GET /metrics HTTP/1.1\r\nX-Endless: ")
        .expect("write the head");
    let piece = [b'a'; 1024];
    for _ in 0..1024 {
        if endless.write_all(&piece).is_err() {
            break; // closed under us: that is the point
        }
    }
    let answer = read_to_close(&mut endless, T).expect("the endless header's connection closes");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431 "),
        "{answer}"
    );
    fe.wait_for("metrics: request head over 4096 bytes, closed", T);
    assert_eq!(fetch(m, "/healthz", false), (200, "ok\n".to_string()));

    // Too many at once: the clients past the limit are closed unanswered,
    // and the endpoint serves again once they go.
    let idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    util::wait_until("a client past the limit to be closed unanswered", T, || {
        let Ok(mut extra) = TcpStream::connect(addr) else {
            return false;
        };
        let _ = extra.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
        read_to_close(&mut extra, Duration::from_secs(2)).is_ok_and(|got| got.is_empty())
    });
    drop(idle);
    util::wait_until("the endpoint to serve again", T, || {
        util::try_curl(&["--max-time", "2", &format!("http://127.0.0.1:{m}/healthz")])
            .is_ok_and(|r| r.status == 200)
    });

    // The silent client is closed by its deadline, not held for ever.
    let started = Instant::now();
    let got = read_to_close(&mut silent, Duration::from_secs(15))
        .expect("the silent client is closed by its deadline");
    assert!(got.is_empty());
    assert!(started.elapsed() < Duration::from_secs(15));
}
