//! One tenant must not lock the others out of a shared frontend: a backend
//! whose visitors don't read fills at most its tunnel's share of `--buffers`
//! (the frontend stops reading that tunnel), so another tenant's visitors
//! are still served; and a backend that ignores flow control loses its
//! tunnel.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use rkite::proto::frame;
use rkite::proto::handshake::KiteAnswer;

use crate::fixture::{T, backend, frontend, kite, live};
use crate::meter::{self, End, connect_small_rcvbuf, read_head, status_of};
use crate::origin::Origin;
use crate::util::{Proc, free_port};

const MIB: u64 = 1024 * 1024;
/// The frontend's `--buffers`, in KiB: 16 MiB, so a tunnel's share is 4 MiB.
const BUDGET_KIB: u64 = 16 * 1024;

/// A visitor of `host` that asks for a big download and reads nothing.
/// Returns it with how much of the body came with the head.
fn stalled(port: u16, host: &str) -> Option<(TcpStream, u64)> {
    let mut s = connect_small_rcvbuf(port, 4096);
    s.write_all(&meter::get_request(
        host,
        &format!("/bytes/{}", 64 * MIB),
        true,
    ))
    .ok()?;
    // Once A's tunnel is paused its new visitors wait too: give up soon.
    match read_head(&mut s, Duration::from_secs(3)) {
        Ok((head, rest)) if status_of(&head) == 200 => Some((s, rest.len() as u64)),
        _ => None,
    }
}

fn tenant(fe_port: u16, name: &str) -> (Origin, Proc) {
    let origin = Origin::start();
    let be = backend(fe_port, &[kite("http", name, origin.port(), "s3cret")], &[]);
    live(&be, &format!("http:{name}"));
    (origin, be)
}

#[test]
fn a_tenant_whose_visitors_do_not_read_holds_only_its_share() {
    let port = free_port();
    let fe = frontend(
        &[port],
        &["http:*.tenant.test:s3cret"],
        &[&format!("--buffers={BUDGET_KIB}")],
    );
    let (_a_origin, _a) = tenant(port, "a.tenant.test");
    let (_b_origin, _b) = tenant(port, "b.tenant.test");
    // Tenant A: 80 stalled downloads of 64 MiB each, every one allowed a
    // stream window (256 KiB) at the frontend: 20 MiB, more than the whole
    // budget, were it not for the tunnel's share.
    let mut hogs = Vec::new();
    for _ in 0..80 {
        match stalled(port, "a.tenant.test") {
            Some(s) => hogs.push(s),
            None => break,
        }
    }
    let mut last = u64::MAX;
    // Until the frontend's buffered bytes stop growing (bounded).
    let (st, _) = meter::poll_stats(&fe, Duration::from_secs(5), |st| {
        let settled = st.buffered == last;
        last = st.buffered;
        settled
    });
    eprintln!(
        "{} stalled visitors of tenant A; frontend {st:?}",
        hogs.len()
    );
    assert!(st.buffered < BUDGET_KIB * 1024, "{st:?}");
    assert!(
        hogs.len() >= 8,
        "only {} of A's downloads started",
        hogs.len()
    );
    // Tenant B is served.
    let mut s = TcpStream::connect(crate::util::local(port)).expect("connect");
    s.write_all(&meter::get_request("b.tenant.test", "/", true))
        .expect("send");
    match read_head(&mut s, T) {
        Ok((head, _)) => assert_eq!(status_of(&head), 200, "{head}"),
        Err((end, got)) => panic!(
            "tenant B refused ({end:?}): {}",
            String::from_utf8_lossy(&got)
        ),
    }
    assert!(!fe.contains("buffer budget"), "a refusal for the budget");
    // A's tunnel was paused, not dropped: its stalled visitors resume.
    let (mut first, from) = hogs.swap_remove(0);
    meter::set_rcvbuf(&first, 256 * 1024);
    drop(hogs);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let want = from + 4 * MIB;
    let (got, end) = meter::read_pattern(&mut first, from, want, deadline, 1 << 20, |_| {});
    assert!(
        matches!(end, End::Complete),
        "A's download stalled for good ({end:?}) at {got} of {want}"
    );
}

#[test]
fn a_backend_that_ignores_flow_control_loses_its_tunnel() {
    let port = free_port();
    let fe = frontend(&[port], &["http:*.tenant.test:s3cret"], &[]);
    let (_b_origin, _b) = tenant(port, "b.tenant.test");
    let (mut tunnel, answers) = crate::robust::fake_backend(port, "evil.tenant.test", "s3cret");
    assert!(
        matches!(answers.as_slice(), [KiteAnswer::Ok { .. }]),
        "{answers:?}"
    );
    live(&fe, "http:evil.tenant.test");
    // A visitor who reads nothing, so nothing is acknowledged.
    let mut visitor = connect_small_rcvbuf(port, 4096);
    visitor
        .write_all(&meter::get_request("evil.tenant.test", "/", false))
        .expect("send");
    let mut buf = Vec::new();
    crate::robust::read_until(&mut tunnel, &mut buf, "the stream's first chunk", |b| {
        crate::util::find_subslice(b, b"GET / HTTP/1.1").is_some()
    });
    let text = String::from_utf8_lossy(&buf);
    let sid: u32 = text
        .split("SID: ")
        .nth(1)
        .and_then(|rest| rest.split("\r\n").next())
        .and_then(|n| n.trim().parse().ok())
        .expect("a SID in the first chunk");
    // 16 KiB chunks for that stream, never waiting for an SKB: at most 32
    // MiB, far past any window a well-behaved sender keeps (4 MiB).
    let mut chunk = Vec::new();
    frame::encode(
        &mut chunk,
        &[format!("SID: {sid}").as_bytes()],
        &vec![b'x'; 16 * 1024 - 64],
    );
    tunnel.set_write_timeout(Some(T)).expect("timeout");
    for _ in 0..2048 {
        if tunnel.write_all(&chunk).is_err() {
            break;
        }
    }
    fe.wait_for("peer ignores flow control", T);
    fe.wait_for("kite http:evil.tenant.test is down", T);
    // The other tenant never noticed.
    let got = crate::fixture::get(port, "b.tenant.test", "/");
    assert_eq!(got.status, 200);
}
