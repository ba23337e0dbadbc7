//! `--frontends=N:NAME:PORT` against a real fleet: one name (`fleet.test`)
//! resolving to 127.0.0.2, .3 and .4 through a private /etc/hosts
//! bind-mounted into the backend's own mount namespace (`unshare -m`, so
//! root is needed), three rkite frontends behind small forwarders that
//! delay every byte by a fixed time each way (a relay that far away), and
//! the backend choosing among them (plus the fastest relay again under
//! [::1], its "IPv6 address"). Proves: the two fastest distinct relays are
//! chosen (the twin, same UUID, is a duplicate);
//! when the fastest dies the third takes its place while the surviving one
//! serves every request; `nofrontend` keeps the fastest off until a SIGHUP
//! lifts it, and then the new tunnel is live before the old one closes; a
//! pagekite.py relay answers the same ping and is chosen the same way.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::fixture::{self, T, kite};
use crate::origin::{INDEX_BODY, Origin};
use crate::peers;
use crate::util::{self, Proc, free_port};

const SECRET: &str = "fleet-secret";
const SITE: &str = "fleet-site.test";
const KITE: &str = "http:fleet-site.test";
/// Added one-way delay of the three relays: 2, 40 and 90 ms (pings of
/// about 4, 80 and 180 ms).
const DELAYS_MS: [u64; 3] = [2, 40, 90];

/// A forwarder that delays every byte by `delay` each way, standing for a
/// relay that far away. It counts the connections it accepted.
struct Delayer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
}

impl Delayer {
    fn start(listener: TcpListener, upstream: SocketAddr, delay: Duration) -> Delayer {
        let addr = listener.local_addr().expect("delayer address");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, a) = (stop.clone(), accepted.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(down) = conn else { continue };
                a.fetch_add(1, Ordering::Relaxed);
                // The relay behind is gone: the connection closes at once,
                // as a dead relay's would.
                let Ok(up) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (d2, u2) = (
                    down.try_clone().expect("clone"),
                    up.try_clone().expect("clone"),
                );
                pump(down, up, delay);
                pump(u2, d2, delay);
            }
        });
        Delayer {
            addr,
            stop,
            accepted,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Delayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read; EOF is
/// passed on (after the same delay) as a half close.
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let _ = from.set_read_timeout(Some(Duration::from_secs(120)));
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = from.read(&mut buf).unwrap_or(0);
            let _ = tx.send((Instant::now() + delay, buf[..n].to_vec()));
            if n == 0 {
                return;
            }
        }
    });
    thread::spawn(move || {
        while let Ok((due, data)) = rx.recv() {
            // Simulated distance, not synchronisation.
            thread::sleep(due.saturating_duration_since(Instant::now()));
            if data.is_empty() || to.write_all(&data).is_err() {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Three frontends on 127.0.0.1, each behind a delayer on 127.0.0.{2,3,4}
/// at one common port.
struct Fleet {
    port: u16,
    frontends: Vec<Proc>,
    fe_ports: Vec<u16>,
    delayers: Vec<Delayer>,
    /// The fastest relay again, under [::1] (its IPv6 address, as it were),
    /// when this host has IPv6 loopback.
    twin: Option<Delayer>,
}

fn relay_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8))
}

impl Fleet {
    fn start() -> Fleet {
        Fleet::start_with(false)
    }

    /// With `pagekite_first`, the fastest relay is Debian's pagekite.py.
    fn start_with(pagekite_first: bool) -> Fleet {
        let fe_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let domain = format!("http:{SITE}:{SECRET}");
        let frontends: Vec<Proc> = fe_ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if i > 0 || !pagekite_first {
                    return fixture::frontend(&[*p], &[&domain], &[]);
                }
                let fe =
                    peers::pagekite_frontend(*p, &["--protos=http", &format!("--domain={domain}")]);
                peers::wait_frontend_ready(&fe, *p);
                fe
            })
            .collect();
        // One port free on all three addresses (a few tries at most).
        let (port, listeners) = (0..20)
            .find_map(|_| {
                let port = free_port();
                let ls: Result<Vec<TcpListener>, _> = (0..3)
                    .map(|i| TcpListener::bind(SocketAddr::new(relay_ip(i), port)))
                    .collect();
                ls.ok().map(|ls| (port, ls))
            })
            .expect("a port free on 127.0.0.2-4");
        let delayers = listeners
            .into_iter()
            .zip(&fe_ports)
            .zip(DELAYS_MS)
            .map(|((l, fe), d)| Delayer::start(l, util::local(*fe), Duration::from_millis(d)))
            .collect();
        let twin = match TcpListener::bind(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port)) {
            Ok(l) => Some(Delayer::start(
                l,
                util::local(fe_ports[0]),
                // Slower than its IPv4 twin, faster than the second relay.
                Duration::from_millis(15),
            )),
            Err(e) => {
                eprintln!("no [::1]:{port} ({e}): the same relay under two addresses is not tried");
                None
            }
        };
        Fleet {
            port,
            frontends,
            fe_ports,
            delayers,
            twin,
        }
    }

    /// The fastest relay's second address, if there is one.
    fn twin(&self) -> Option<String> {
        self.twin.as_ref().map(|t| t.addr.to_string())
    }

    fn relay(&self, i: usize) -> String {
        format!("{}:{}", relay_ip(i), self.port)
    }
}

/// The rkite backend in its own mount namespace, where `fleet.test` is the
/// three relay addresses; `rc` (an option file, for SIGHUP to read again)
/// has the pool's settings.
fn backend(dir: &Path, fleet: &Fleet, rc: &str, origin: &Origin) -> Proc {
    let rc_path = dir.join("fleet.rc");
    std::fs::write(&rc_path, rc).expect("write the option file");
    let hosts = dir.join("hosts");
    let mut text = String::from("127.0.0.1 localhost\n");
    for i in 0..3 {
        text.push_str(&format!("{} fleet.test\n", relay_ip(i)));
    }
    if fleet.twin.is_some() {
        text.push_str("::1 fleet.test\n");
    }
    std::fs::write(&hosts, text).expect("write the hosts file");
    let mut cmd = Command::new("unshare");
    util::no_proxy_env(&mut cmd);
    cmd.args([
        "-m",
        "sh",
        "-c",
        "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
    ])
    .arg(&hosts)
    .arg(env!("CARGO_BIN_EXE_rkite"))
    .arg(format!("--optfile={}", rc_path.display()))
    .arg(format!(
        "--service_on={}",
        kite("http", SITE, origin.port(), SECRET)
    ))
    .arg(format!(
        "--status_file={}",
        dir.join("status.json").display()
    ))
    .env("RUST_LOG", "debug")
    .env("RUST_BACKTRACE", "1");
    Proc::spawn("backend", cmd)
}

fn status(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("status.json")).unwrap_or_default()
}

/// The status file's entry for one candidate (its JSON object as text).
fn candidate(status: &str, addr: &str) -> String {
    let key = format!("\"address\": \"{addr}\"");
    let Some(at) = status.find(&key) else {
        return String::new();
    };
    status[at..]
        .split('}')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn ping_ms(entry: &str) -> f64 {
    entry
        .split("\"ping_ms\": ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no ping time in {entry}"))
}

fn served(port: u16) -> bool {
    let url = format!("http://127.0.0.1:{port}/");
    let host = format!("Host: {SITE}");
    util::try_curl(&["-sS", "--max-time", "5", "-H", &host, &url])
        .is_ok_and(|r| r.status == 200 && r.body == INDEX_BODY.as_bytes())
}

#[test]
fn frontends_pool_follows_the_fastest_relays_without_a_gap() {
    if !util::require_namespaces("the fleet test") {
        return;
    }
    let origin = Origin::start();
    let mut fleet = Fleet::start();
    let dir = util::temp_dir("fleet");
    let be = backend(
        &dir,
        &fleet,
        &format!("frontends = 2:fleet.test:{}\n", fleet.port),
        &origin,
    );
    let (a, b, c) = (fleet.relay(0), fleet.relay(1), fleet.relay(2));

    // The two fastest are chosen, and each of their frontends has the kite.
    be.wait_for(&format!("{a} chosen"), T);
    be.wait_for(&format!("{b} chosen"), T);
    be.wait_for(&format!("kite {KITE} is live on {a}"), T);
    be.wait_for(&format!("kite {KITE} is live on {b}"), T);
    fixture::live(&fleet.frontends[0], KITE);
    fixture::live(&fleet.frontends[1], KITE);
    assert!(
        !be.contains(&format!("{c} chosen")),
        "the slowest was chosen"
    );
    assert!(!fleet.frontends[2].contains(&format!("kite {KITE} is live")));
    assert!(served(fleet.fe_ports[0]) && served(fleet.fe_ports[1]));

    // The status file shows every candidate with its time, in order.
    util::wait_until("the status file shows both tunnels", T, || {
        let s = status(&dir);
        candidate(&s, &a).contains("\"connected\": true")
            && candidate(&s, &b).contains("\"connected\": true")
    });
    let s = status(&dir);
    let (pa, pb, pc) = (
        ping_ms(&candidate(&s, &a)),
        ping_ms(&candidate(&s, &b)),
        ping_ms(&candidate(&s, &c)),
    );
    eprintln!("measured pings: {pa} ms, {pb} ms, {pc} ms");
    assert!(pa < pb && pb < pc, "{s}");
    assert!(candidate(&s, &c).contains("\"state\": \"spare\""), "{s}");
    // The fastest relay's second address is the same relay (same UUID):
    // it does not take the second place from a different relay.
    if let Some(twin) = fleet.twin() {
        let entry = candidate(&s, &twin);
        assert!(entry.contains("\"state\": \"duplicate\""), "{s}");
        assert!(ping_ms(&entry) < pb, "{s}");
    }

    // The fastest dies: the third takes its place, and the survivor serves
    // every request meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let visitor = {
        let (stop, port) = (stop.clone(), fleet.fe_ports[1]);
        thread::spawn(move || {
            let (mut ok, mut failed) = (0, 0);
            let deadline = Instant::now() + Duration::from_secs(20);
            for _ in 0..2000 {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                if served(port) { ok += 1 } else { failed += 1 }
            }
            (ok, failed)
        })
    };
    fleet.frontends.remove(0).kill();
    be.wait_for(&format!("{a} dropped"), T);
    be.wait_for(&format!("{c} chosen"), T);
    be.wait_for(&format!("kite {KITE} is live on {c}"), T);
    fixture::live(&fleet.frontends[1], KITE);
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = visitor.join().expect("the visitor loop");
    eprintln!("visitor on the surviving relay: {ok} served, {failed} failed");
    assert_eq!(failed, 0, "the surviving relay failed a visitor");
    assert!(ok > 0);
    assert!(served(fleet.fe_ports[2]));
    util::wait_until("the status file shows the new choice", T, || {
        let s = status(&dir);
        candidate(&s, &c).contains("\"connected\": true")
            && candidate(&s, &a).contains("\"state\": \"unreachable\"")
    });
}

#[test]
fn nofrontend_keeps_the_fastest_relay_off_until_sighup_lets_it_in() {
    if !util::require_namespaces("the fleet test") {
        return;
    }
    let origin = Origin::start();
    let fleet = Fleet::start();
    let dir = util::temp_dir("fleet-never");
    let (a, b) = (fleet.relay(0), fleet.relay(1));
    let pool = format!("frontends = 1:fleet.test:{}\n", fleet.port);
    // nofrontend is by address, as in pagekite.py: the fastest relay's
    // IPv6 twin is listed too.
    let mut never = format!("nofrontend = {a}\n");
    if let Some(twin) = fleet.twin() {
        never.push_str(&format!("nofrontend = {twin}\n"));
    }
    let be = backend(&dir, &fleet, &format!("{pool}{never}"), &origin);
    be.wait_for(&format!("{a} excluded by nofrontend"), T);
    be.wait_for(&format!("{b} chosen"), T);
    be.wait_for(&format!("kite {KITE} is live on {b}"), T);
    assert!(served(fleet.fe_ports[1]));
    util::wait_until("the status file shows the exclusion", T, || {
        let s = status(&dir);
        candidate(&s, &a).contains("\"state\": \"excluded\"")
            && candidate(&s, &b).contains("\"connected\": true")
    });
    // Not even pinged.
    assert_eq!(fleet.delayers[0].accepted(), 0);
    assert_eq!(fleet.twin.as_ref().map_or(0, Delayer::accepted), 0);
    assert!(!fleet.frontends[0].contains(&format!("kite {KITE} is live")));

    // SIGHUP with the same pool keeps its tunnel and choice.
    be.signal(libc::SIGHUP);
    be.wait_for("SIGHUP: the new configuration is in effect", T);
    assert!(!be.contains("new pool settings"));
    assert_eq!(be.count("checking (round"), 1, "no new check");

    // Without the exclusion the fastest wins (4 ms + the 50 ms switch
    // margin beats 80 ms), and it is live before the old tunnel goes.
    std::fs::write(dir.join("fleet.rc"), &pool).expect("rewrite the option file");
    be.signal(libc::SIGHUP);
    be.wait_for_count("SIGHUP: the new configuration is in effect", 2, T);
    be.wait_for("new pool settings", T);
    be.wait_for(&format!("{a} chosen"), T);
    let live_a = format!("kite {KITE} is live on {a}");
    let close_b = format!("closing the tunnel to {b}");
    be.wait_for(&live_a, T);
    be.wait_for(&close_b, T);
    let lines = be.lines();
    let at = |needle: &str| lines.iter().position(|l| l.contains(needle));
    assert!(at(&live_a) < at(&close_b), "break before make");
    fixture::live(&fleet.frontends[0], KITE);
    assert!(served(fleet.fe_ports[0]));
}

#[test]
fn a_pagekite_py_relay_is_measured_and_chosen_too() {
    if !util::require_namespaces("the fleet test") || !util::require_peer(peers::PAGEKITE) {
        return;
    }
    let origin = Origin::start();
    let fleet = Fleet::start_with(true);
    let dir = util::temp_dir("fleet-pk");
    let a = fleet.relay(0);
    let be = backend(
        &dir,
        &fleet,
        &format!("frontends = 1:fleet.test:{}\n", fleet.port),
        &origin,
    );
    be.wait_for(&format!("{a} chosen"), T);
    be.wait_for(&format!("kite {KITE} is live on {a}"), T);
    fleet.frontends[0].wait_for(&peers::fe_kite_live("http", SITE), T);
    assert!(served(fleet.fe_ports[0]));
    util::wait_until("the status file shows pagekite.py's UUID", T, || {
        let s = status(&dir);
        let entry = candidate(&s, &a);
        entry.contains("\"connected\": true") && !entry.contains("\"uuid\": null")
    });
}
