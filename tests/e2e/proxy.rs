//! Outbound proxies (issue 13, item 1), end to end: an rkite backend reaches its rkite
//! frontend through Debian's `tinyproxy` (HTTP CONNECT, with Basic auth too, plain and
//! CONNECT+TLS tunnels) and `microsocks` (SOCKS5, with and without user/password), each
//! started here on loopback with its own port, and direct TLS (`--fe_nocertcheck`)
//! through microsocks; a wrong SOCKS password is refused with a
//! clear logged reason and retried with back-off; a proxy killed under a live tunnel ends
//! in a reconnect once it is back; `--torify` hands the frontend's name to the proxy (a
//! scripted SOCKS5 server records it; the name is `.invalid`, so a local look-up could
//! never have found it); a `--frontends` pool is pinged through the proxy; and
//! `rkite --connect` reaches a raw kite through microsocks, and over TLS through tinyproxy
//! with Basic auth.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::certs::{OPENSSL, pki};
use crate::fixture::{T, backend, frontend, get, kite, live};
use crate::origin::{EchoServer, INDEX_BODY, Origin};
use crate::raw::Piped;
use crate::tls::{ca_certs, endpoint};
use crate::util::{self, Proc, free_port, local};

const SECRET: &str = "s3cret";
const DOMAINS: &str = "http:*.example.test:s3cret";

/// `tinyproxy` in the foreground on a fresh port, allowing CONNECT to `fe_port` only,
/// with `BasicAuth` when `auth` is given.
fn tinyproxy(fe_port: u16, auth: Option<(&str, &str)>) -> (u16, Proc) {
    let port = free_port();
    let dir = util::temp_dir("tinyproxy");
    let mut conf = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 600\nAllow 127.0.0.1\nLogLevel Info\n\
         MaxClients 50\nConnectPort {fe_port}\n"
    );
    if let Some((user, pass)) = auth {
        conf.push_str(&format!("BasicAuth {user} {pass}\n"));
    }
    let path = dir.join(format!("tinyproxy-{port}.conf"));
    std::fs::write(&path, conf).expect("write tinyproxy.conf");
    let p = Proc::start(
        "tinyproxy",
        "tinyproxy",
        &["-d", "-c", path.to_str().expect("utf-8 path")],
        &[],
    );
    util::wait_port(local(port), T);
    (port, p)
}

/// `microsocks` on `port` (fresh when None), with `-u user -P pass` when `auth` is given.
fn microsocks(port: u16, auth: Option<(&str, &str)>) -> Proc {
    let port_arg = port.to_string();
    let mut args = vec!["-i", "127.0.0.1", "-p", &port_arg];
    if let Some((user, pass)) = auth {
        args.extend(["-u", user, "-P", pass]);
    }
    let p = Proc::start("microsocks", "microsocks", &args, &[]);
    util::wait_port(local(port), T);
    p
}

/// A frontend serving `DOMAINS` (with `extra`) on a fresh port, and an origin.
fn relay(extra: &[&str]) -> (u16, Proc, Origin) {
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(&[port], &[DOMAINS], extra);
    (port, fe, origin)
}

fn serves(port: u16, name: &str) {
    assert_eq!(get(port, name, "/").body_str(), INDEX_BODY);
}

#[test]
fn backend_through_tinyproxy_plain_tunnel() {
    if !util::require_peer("tinyproxy") {
        return;
    }
    let (port, fe, origin) = relay(&[]);
    let (proxy_port, proxy) = tinyproxy(port, None);
    let be = backend(
        port,
        &[kite("http", "tp.example.test", origin.port(), SECRET)],
        &[&format!("--proxy=http://127.0.0.1:{proxy_port}/")],
    );
    live(&be, "http:tp.example.test");
    live(&fe, "http:tp.example.test");
    serves(port, "tp.example.test");
    // The tunnel is tinyproxy's CONNECT to the frontend.
    proxy.wait_for("Established connection to host \"127.0.0.1\"", T);
    be.wait_for("through 1 proxy hop(s)", T);
}

#[test]
fn backend_through_tinyproxy_with_basic_auth_and_tls_to_the_frontend() {
    if !util::require_peer("tinyproxy") || !util::require_peer(OPENSSL) {
        return;
    }
    let cert = pki().leaf(&["fe.example.test"]);
    let (port, fe, origin) = relay(&[&endpoint("fe.example.test", &cert)]);
    let (proxy_port, proxy) = tinyproxy(port, Some(("proxyuser", "pr0xy-pw")));
    let be = backend(
        port,
        &[kite("http", "tptls.example.test", origin.port(), SECRET)],
        &[
            &format!("--proxy=http://proxyuser:pr0xy%2Dpw@127.0.0.1:{proxy_port}/"),
            "--fe_certname=fe.example.test",
            &ca_certs(pki()),
        ],
    );
    live(&be, "http:tptls.example.test");
    live(&fe, "http:tptls.example.test");
    serves(port, "tptls.example.test");
    proxy.wait_for("Established connection to host \"127.0.0.1\"", T);
    assert!(!be.contains("pr0xy-pw"), "the password is never logged");
}

#[test]
fn tinyproxy_wrong_password_is_a_clear_error() {
    if !util::require_peer("tinyproxy") {
        return;
    }
    let (port, _fe, origin) = relay(&[]);
    let (proxy_port, _proxy) = tinyproxy(port, Some(("proxyuser", "right")));
    let be = backend(
        port,
        &[kite("http", "tpbad.example.test", origin.port(), SECRET)],
        &[&format!(
            "--proxy=http://proxyuser:wrong@127.0.0.1:{proxy_port}/"
        )],
    );
    // Debian's tinyproxy says 401 where RFC 9110 says 407.
    let line = be.wait_for(
        "wants (other) credentials: 401 \"Unauthorized\"; retrying in",
        T,
    );
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains("proxy 1 (http://proxyuser@127.0.0.1:"),
        "{line}"
    );
    assert!(!be.contains("wrong"), "the password is never logged");
    // Retried with back-off: a second attempt fails the same way (a debug line).
    be.wait_for_count("tunnel closed: proxy 1 (http://proxyuser@", 2, T);
}

#[test]
fn backend_through_microsocks_and_back_after_the_proxy_dies() {
    if !util::require_peer("microsocks") {
        return;
    }
    let (port, fe, origin) = relay(&[]);
    let socks_port = free_port();
    let proxy = microsocks(socks_port, None);
    let be = backend(
        port,
        &[kite("http", "ms.example.test", origin.port(), SECRET)],
        &[&format!("--socksify=127.0.0.1:{socks_port}")],
    );
    live(&be, "http:ms.example.test");
    live(&fe, "http:ms.example.test");
    serves(port, "ms.example.test");
    be.wait_for("through 1 proxy hop(s)", T);
    proxy.wait_for(&format!("connected to 127.0.0.1:{port}"), T);

    // The proxy dies under the live tunnel: the tunnel is lost, and attempts fail at
    // the proxy (named, with the hop) until it is back.
    proxy.kill();
    be.wait_for(&format!("via proxy socks5://127.0.0.1:{socks_port}"), T);
    be.wait_for(
        &format!("proxy 1 (socks5://127.0.0.1:{socks_port}): connection refused (os error 111); retrying in"),
        T,
    );
    let _proxy = microsocks(socks_port, None);
    be.wait_for_count("kite http:ms.example.test is live", 2, T);
    serves(port, "ms.example.test");
}

#[test]
fn backend_through_microsocks_with_auth_and_a_wrong_password() {
    if !util::require_peer("microsocks") {
        return;
    }
    let (port, fe, origin) = relay(&[]);
    let socks_port = free_port();
    let _proxy = microsocks(socks_port, Some(("kiteuser", "sesame")));
    let good = backend(
        port,
        &[kite("http", "msauth.example.test", origin.port(), SECRET)],
        &[&format!(
            "--proxy=socks://kiteuser:sesame@127.0.0.1:{socks_port}/"
        )],
    );
    live(&good, "http:msauth.example.test");
    _proxy.wait_for(&format!("connected to 127.0.0.1:{port}"), T);
    live(&fe, "http:msauth.example.test");
    serves(port, "msauth.example.test");

    let bad = backend(
        port,
        &[kite("http", "msbad.example.test", origin.port(), SECRET)],
        &[&format!(
            "--proxy=socks://kiteuser:open@127.0.0.1:{socks_port}/"
        )],
    );
    let line = bad.wait_for(
        "rejected the user name or password (status 2); retrying in",
        T,
    );
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains(&format!(
            "proxy 1 (socks5://kiteuser@127.0.0.1:{socks_port})"
        )),
        "{line}"
    );
    assert!(line.contains("retrying in"), "{line}");
    // Retried with back-off: a second attempt fails the same way (a debug line).
    bad.wait_for_count("tunnel closed: proxy 1 (socks5://kiteuser@", 2, T);
    assert!(!bad.contains("open@"), "the password is never logged");
}

#[test]
fn backend_through_microsocks_with_direct_tls_to_the_frontend() {
    if !util::require_peer("microsocks") || !util::require_peer(OPENSSL) {
        return;
    }
    let cert = pki().leaf(&["fe.example.test"]);
    let (port, fe, origin) = relay(&[
        &endpoint("fe.example.test", &cert),
        "--tls_default=fe.example.test",
    ]);
    let socks_port = free_port();
    let proxy = microsocks(socks_port, None);
    let be = backend(
        port,
        &[kite("http", "msdirect.example.test", origin.port(), SECRET)],
        &[
            &format!("--socksify=127.0.0.1:{socks_port}"),
            "--fe_nocertcheck",
        ],
    );
    live(&be, "http:msdirect.example.test");
    live(&fe, "http:msdirect.example.test");
    serves(port, "msdirect.example.test");
    proxy.wait_for(&format!("connected to 127.0.0.1:{port}"), T);
    be.wait_for("connected (TLS), sent the tunnel request", T);
}

#[test]
fn backend_through_a_chain_of_microsocks_then_tinyproxy() {
    if !util::require_peer("microsocks") || !util::require_peer("tinyproxy") {
        return;
    }
    let (port, fe, origin) = relay(&[]);
    let (http_port, http_proxy) = tinyproxy(port, None);
    let socks_port = free_port();
    let socks = microsocks(socks_port, None);
    // The first hop (SOCKS5) is asked for the second (HTTP), which is asked for the
    // frontend.
    let be = backend(
        port,
        &[kite("http", "chain.example.test", origin.port(), SECRET)],
        &[
            &format!("--socksify=127.0.0.1:{socks_port}"),
            &format!("--proxy=http://127.0.0.1:{http_port}/"),
        ],
    );
    live(&be, "http:chain.example.test");
    live(&fe, "http:chain.example.test");
    serves(port, "chain.example.test");
    socks.wait_for(&format!("connected to 127.0.0.1:{http_port}"), T);
    http_proxy.wait_for("Established connection to host \"127.0.0.1\"", T);
    be.wait_for("through 2 proxy hop(s)", T);
}

#[test]
fn frontends_pool_is_pinged_through_the_proxy() {
    if !util::require_peer("microsocks") {
        return;
    }
    let (port, fe, origin) = relay(&[]);
    let socks_port = free_port();
    let proxy = microsocks(socks_port, None);
    let be = util::rkite(&[
        &format!("--frontends=1:127.0.0.1:{port}"),
        &format!(
            "--service_on={}",
            kite("http", "pool.example.test", origin.port(), SECRET)
        ),
        &format!("--socksify=127.0.0.1:{socks_port}"),
    ]);
    live(&be, "http:pool.example.test");
    live(&fe, "http:pool.example.test");
    serves(port, "pool.example.test");
    be.wait_for(&format!("fleet: 127.0.0.1:{port} answered"), T);
    // The ping and the tunnel both went through microsocks, as pagekite.py's do.
    proxy.wait_for_count(&format!("connected to 127.0.0.1:{port}"), 2, T);
}

#[test]
fn sighup_with_a_new_proxy_chain_uses_it_from_the_next_connection() {
    if !util::require_peer("microsocks") {
        return;
    }
    let (port, fe, origin) = relay(&[]);
    let (old_port, new_port) = (free_port(), free_port());
    let old = microsocks(old_port, None);
    let new = microsocks(new_port, None);
    let rc = util::temp_dir("proxy-rc").join("backend.rc");
    let write_rc = |proxy: u16| {
        let kite = kite("http", "hup.example.test", origin.port(), SECRET);
        let text = format!(
            "frontend = 127.0.0.1:{port}\nservice_on = {kite}\nsocksify = 127.0.0.1:{proxy}\n"
        );
        std::fs::write(&rc, text).expect("write rc");
    };
    write_rc(old_port);
    let be = util::rkite(&["-o", rc.to_str().expect("utf-8 path")]);
    live(&be, "http:hup.example.test");
    old.wait_for(&format!("connected to 127.0.0.1:{port}"), T);

    write_rc(new_port);
    be.signal(libc::SIGHUP);
    be.wait_for(
        "the new proxy chain (--proxy) is used from the next connection",
        T,
    );
    be.wait_for("SIGHUP: the new configuration is in effect", T);
    // The old proxy goes away with the tunnel: the next connection takes the new one.
    old.kill();
    be.wait_for_count("kite http:hup.example.test is live", 2, T);
    fe.wait_for_count("kite http:hup.example.test is live", 2, T);
    new.wait_for(&format!("connected to 127.0.0.1:{port}"), T);
    serves(port, "hup.example.test");
}

#[test]
fn rkite_connect_over_tls_through_tinyproxy() {
    if !util::require_peer("tinyproxy") || !util::require_peer(OPENSSL) {
        return;
    }
    let echo = EchoServer::start();
    let cert = pki().leaf(&["fe.example.test"]);
    let (port, fe) = crate::raw::raw_frontend(&[
        "--rawports=virtual",
        &endpoint("fe.example.test", &cert),
        "--tls_default=fe.example.test",
    ]);
    let be = backend(port, &[kite("ssh", "home.test", echo.port(), SECRET)], &[]);
    live(&be, "raw-22:home.test");
    live(&fe, "raw-22:home.test");
    let (proxy_port, proxy) = tinyproxy(port, Some(("sshuser", "tls-pw")));
    let mut client = Piped::rkite(&[
        &format!("--connect=127.0.0.1:{port}"),
        &format!("--proxy=http://sshuser:tls-pw@127.0.0.1:{proxy_port}/"),
        "--fe_certname=fe.example.test",
        &ca_certs(pki()),
        "home.test:22",
    ]);
    let mut stdin = client.stdin();
    stdin.write_all(b"tls through http\n").expect("write");
    stdin.flush().expect("flush");
    // The echo before EOF: tinyproxy ends both directions at the first half-close.
    assert_eq!(client.out.take(17, T), b"tls through http\n");
    drop(stdin);
    client.out.expect_eof(T);
    let status = client.wait_exit(T);
    assert!(status.success(), "{status}\n{}", client.stderr_text());
    proxy.wait_for("Established connection to host \"127.0.0.1\"", T);
    assert_eq!(echo.connections(), 1);
}

/// A one-connection-at-a-time SOCKS5 server (no auth) that records each CONNECT's
/// target as text and connects every one to 127.0.0.1:`to`, whatever the name.
struct ScriptedSocks {
    port: u16,
    targets: Arc<Mutex<Vec<String>>>,
}

impl ScriptedSocks {
    fn start(to: u16) -> ScriptedSocks {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let targets: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = targets.clone();
        thread::spawn(move || {
            for conn in listener.incoming().take(32) {
                let Ok(conn) = conn else { continue };
                let seen = seen.clone();
                thread::spawn(move || {
                    let _ = socks_session(conn, to, &seen);
                });
            }
        });
        ScriptedSocks { port, targets }
    }

    fn targets(&self) -> Vec<String> {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn socks_session(mut c: TcpStream, to: u16, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    c.set_read_timeout(Some(T))?;
    let mut head = [0u8; 2];
    c.read_exact(&mut head)?;
    let mut methods = vec![0u8; usize::from(head[1])];
    c.read_exact(&mut methods)?;
    c.write_all(&[5, 0])?;
    let mut req = [0u8; 4];
    c.read_exact(&mut req)?;
    let target = match req[3] {
        3 => {
            let mut len = [0u8; 1];
            c.read_exact(&mut len)?;
            let mut name = vec![0u8; usize::from(len[0])];
            c.read_exact(&mut name)?;
            format!("name {}", String::from_utf8_lossy(&name))
        }
        1 => {
            let mut ip = [0u8; 4];
            c.read_exact(&mut ip)?;
            format!("ipv4 {}", std::net::Ipv4Addr::from(ip))
        }
        other => format!("type {other}"),
    };
    let mut port = [0u8; 2];
    c.read_exact(&mut port)?;
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(format!("{target}:{}", u16::from_be_bytes(port)));
    let up = TcpStream::connect(local(to))?;
    c.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
    c.set_read_timeout(None)?;
    let (mut c2, mut up2) = (c.try_clone()?, up.try_clone()?);
    let mut up = up;
    thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut up2);
        let _ = up2.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut up, &mut c);
    let _ = c.shutdown(Shutdown::Write);
    Ok(())
}

#[test]
fn torify_sends_the_frontend_name_to_the_proxy_and_looks_nothing_up() {
    let (port, fe, origin) = relay(&[]);
    let socks = ScriptedSocks::start(port);
    // `.invalid` never resolves (RFC 6761): a local look-up could not have found it,
    // and --frontends would need one for its pings.
    let be = util::rkite(&[
        &format!("--frontends=1:fe.proxy-test.invalid:{port}"),
        &format!(
            "--service_on={}",
            kite("http", "tor.example.test", origin.port(), SECRET)
        ),
        &format!("--torify=127.0.0.1:{}", socks.port),
    ]);
    live(&be, "http:tor.example.test");
    live(&fe, "http:tor.example.test");
    serves(port, "tor.example.test");
    assert_eq!(
        socks.targets(),
        [format!("name fe.proxy-test.invalid:{port}")],
        "the proxy was asked for the name, once"
    );
    assert!(!be.contains("resolve"), "no local look-up was tried");
    assert!(!be.contains("fleet"), "no pings (no fleet check)");
}

#[test]
fn rkite_connect_through_microsocks() {
    if !util::require_peer("microsocks") {
        return;
    }
    let echo = EchoServer::start();
    let (port, fe) = crate::raw::raw_frontend(&["--rawports=virtual"]);
    let be = backend(port, &[kite("ssh", "home.test", echo.port(), SECRET)], &[]);
    live(&be, "raw-22:home.test");
    live(&fe, "raw-22:home.test");
    let socks_port = free_port();
    let _proxy = microsocks(socks_port, Some(("sshuser", "pw")));
    let mut client = Piped::rkite(&[
        &format!("--connect=127.0.0.1:{port}"),
        &format!("--proxy=socks5://sshuser:pw@127.0.0.1:{socks_port}"),
        "home.test:22",
    ]);
    let mut stdin = client.stdin();
    stdin.write_all(b"hello through socks\n").expect("write");
    stdin.flush().expect("flush");
    assert_eq!(client.out.take(20, T), b"hello through socks\n");
    drop(stdin);
    client.out.expect_eof(T);
    let status = client.wait_exit(T);
    assert!(status.success(), "{status}\n{}", client.stderr_text());
    assert_eq!(echo.connections(), 1);

    // A wrong password: the client says so and fails.
    let mut bad = Piped::rkite(&[
        &format!("--connect=127.0.0.1:{port}"),
        &format!("--proxy=socks5://sshuser:nope@127.0.0.1:{socks_port}"),
        "home.test:22",
    ]);
    let status = bad.wait_exit(T);
    assert!(!status.success());
    assert!(
        bad.stderr_text()
            .contains("rejected the user name or password"),
        "{}",
        bad.stderr_text()
    );
}
