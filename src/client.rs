//! `rkite --connect=RELAY:PORT TARGET:PORT`: the client end of a raw kite,
//! for ssh's ProxyCommand and the like. It connects to a relay (over TLS if
//! asked, with the same certificate checks as a backend), asks for the
//! target with an HTTP CONNECT, then copies stdin to the relay and the relay
//! to stdout until the relay side ends. EOF on stdin half-closes the
//! connection, so a remote command still delivers its last output. One
//! small poll loop; nothing here is part of the relay's data path. With
//! `--proxy`/`--socksify`/`--torify` the socket goes to the first proxy
//! and the chain's handshake runs first, blocking (the relay's name goes
//! to the proxy, never looked up here).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::buf::Buf;
use crate::config::ClientSettings;
use crate::net::Io;
use crate::proto::frame;
use crate::tls::{self, TlsConfigError, TlsError, TlsSession, Verify};
use crate::transport::{Transport, TransportError};

const SOCKET: Token = Token(0);
const STDIN: Token = Token(1);
/// How long connecting and the CONNECT exchange may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the client stopped; its `Display` is the message for the user.
#[derive(Debug)]
pub enum ClientError {
    Resolve(String, io::Error),
    NoAddress(String),
    Connect(SocketAddr, io::Error),
    Configure(io::Error),
    TlsConfig(TlsConfigError),
    Tls(TlsError),
    Poll(io::Error),
    NoAnswer,
    Transport(TransportError),
    RelayClosed,
    ClosedBeforeAnswer,
    /// The relay's status line.
    Refused(String),
    /// A proxy of the chain refused, closed or timed out.
    Proxy(crate::why::ProxyFailure),
    /// The relay's name or port can't be asked of a proxy.
    ProxyTarget(String),
    StdoutClosed,
    Stdout(io::Error),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Resolve(host, e) => write!(f, "cannot resolve {host}: {e}"),
            ClientError::NoAddress(host) => write!(f, "{host} has no address"),
            ClientError::Connect(addr, e) => write!(f, "cannot connect to {addr}: {e}"),
            ClientError::Configure(e) => write!(f, "cannot configure the connection: {e}"),
            ClientError::TlsConfig(e) => write!(f, "{e}"),
            ClientError::Tls(e) => write!(f, "{e}"),
            ClientError::Poll(e) => write!(f, "{e}"),
            ClientError::NoAnswer => f.write_str("no answer to CONNECT from the relay"),
            ClientError::Transport(e) => write!(f, "{e}"),
            ClientError::RelayClosed => f.write_str("the relay closed"),
            ClientError::ClosedBeforeAnswer => {
                f.write_str("the relay closed before answering CONNECT")
            }
            ClientError::Refused(status) => write!(f, "the relay refused the CONNECT: {status}"),
            ClientError::Proxy(p) => write!(f, "{p}"),
            ClientError::ProxyTarget(relay) => {
                write!(f, "the proxy cannot be asked for the relay {relay}")
            }
            ClientError::StdoutClosed => f.write_str("stdout is closed"),
            ClientError::Stdout(e) => write!(f, "cannot write to stdout: {e}"),
        }
    }
}

/// Runs the client; the error is for the user (exit code 2).
#[inline(never)]
pub fn run(config: &ClientSettings) -> Result<(), ClientError> {
    let (host, port) = (&config.relay.0, config.relay.1);
    let (dial_host, dial_port) = match config.proxies.first() {
        Some(first) => (&first.host, first.port),
        None => (host, port),
    };
    let addr = (dial_host.as_str(), dial_port)
        .to_socket_addrs()
        .map_err(|e| ClientError::Resolve(dial_host.clone(), e))?
        .next()
        .ok_or_else(|| ClientError::NoAddress(dial_host.clone()))?;
    let mut std_sock = StdTcpStream::connect_timeout(&addr, SETUP_TIMEOUT)
        .map_err(|e| ClientError::Connect(addr, e))?;
    let _ = std_sock.set_nodelay(true);
    let early = through_proxies(&mut std_sock, config)?;
    std_sock
        .set_nonblocking(true)
        .map_err(ClientError::Configure)?;
    let mut transport = Transport::plain(TcpStream::from_std(std_sock));
    if let Some(names) = &config.tls {
        let verify = match names {
            Some(names) => Verify::Names {
                ca_file: config.ca_certs.clone(),
                names: names.clone(),
            },
            None => Verify::Nothing,
        };
        let setup = tls::client_config(&verify).map_err(ClientError::TlsConfig)?;
        let sni = names.as_ref().and_then(|n| n.first()).unwrap_or(host);
        let mut session = TlsSession::client(&setup, sni).map_err(ClientError::Tls)?;
        // The relay's first TLS bytes may have come with the proxy's reply.
        session.feed(&early).map_err(ClientError::Tls)?;
        transport.start_tls(session);
    }
    let mut poll = Poll::new().map_err(ClientError::Poll)?;
    poll.registry()
        .register(
            &mut transport.sock,
            SOCKET,
            Interest::READABLE | Interest::WRITABLE,
        )
        .map_err(ClientError::Poll)?;
    let stdin_fd = io::stdin().as_raw_fd();
    let stdin_polled = set_nonblocking(stdin_fd)
        && poll
            .registry()
            .register(&mut SourceFd(&stdin_fd), STDIN, Interest::READABLE)
            .is_ok();
    let mut session = Session {
        transport,
        // No engine, no budget: two fixed buffers, counted nowhere.
        to_relay: Buf::uncounted(64 * 1024),
        from_relay: Buf::uncounted(64 * 1024),
        stdin_open: true,
        stdin_ready: !stdin_polled,
        stdin_polled,
        connected: false,
        shut: false,
        relay_done: false,
    };
    let request = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n",
        target = config.target
    );
    session.to_relay.extend(request.as_bytes());
    if config.tls.is_none() {
        session.from_relay.extend(&early);
    }
    session.pump(&mut poll)
}

/// Runs the proxy chain's handshake on the (still blocking) socket; returns
/// the relay's bytes that came with the last reply.
#[inline(never)]
fn through_proxies(
    sock: &mut StdTcpStream,
    config: &ClientSettings,
) -> Result<Vec<u8>, ClientError> {
    use crate::proto::proxy::{ChainHandshake, Progress, Target};
    use crate::why::{ProxyFailure, ProxyFault};
    let (host, port) = (&config.relay.0, config.relay.1);
    if config.proxies.is_empty() {
        return Ok(Vec::new());
    }
    let relay = || ClientError::ProxyTarget(format!("{host}:{port}"));
    let target = Target::new(host, port).map_err(|_| relay())?;
    let mut hs = ChainHandshake::new(&config.proxies, target).ok_or_else(relay)?;
    let fail = |hop: usize, fault: ProxyFault| {
        ClientError::Proxy(ProxyFailure {
            hop: hop + 1,
            proxy: config
                .proxies
                .get(hop)
                .map_or_else(String::new, ToString::to_string),
            fault,
        })
    };
    let io_fail = |hop: usize, e: io::Error| {
        let failure = crate::net::Failure(e.kind(), e.raw_os_error().unwrap_or(0));
        fail(hop, ProxyFault::Socket(failure))
    };
    sock.set_read_timeout(Some(SETUP_TIMEOUT))
        .map_err(ClientError::Configure)?;
    let mut buf = [0u8; 4096];
    // Each reply takes at least one read; a chain of N hops needs a few
    // per hop. The bound stops a proxy that trickles bytes forever.
    for _ in 0..(64 * (config.proxies.len() + 1)) {
        if let Some(out) = hs.poll_transmit() {
            sock.write_all(&out).map_err(|e| io_fail(hs.hop(), e))?;
        }
        let n = match sock.read(&mut buf) {
            Ok(0) => return Err(fail(hs.hop(), ProxyFault::Closed)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_fail(hs.hop(), e)),
        };
        let got = buf.get(..n).unwrap_or_default();
        match hs.handle_input(got) {
            Ok(Progress::NeedMore) => {}
            Ok(Progress::Done { leftover_from }) => {
                return Ok(got.get(leftover_from..).unwrap_or_default().to_vec());
            }
            Err(e) => return Err(fail(hs.hop(), ProxyFault::Said(e))),
        }
    }
    Err(ClientError::NoAnswer)
}

fn set_nonblocking(fd: RawFd) -> bool {
    // SAFETY: fcntl on our own stdin descriptor with valid commands.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    }
}

struct Session {
    transport: Transport,
    to_relay: Buf,
    from_relay: Buf,
    stdin_open: bool,
    stdin_ready: bool,
    /// stdin is a pipe or socket the poll watches (not a plain file).
    stdin_polled: bool,
    /// The relay answered the CONNECT with 200.
    connected: bool,
    /// Our write side is shut (stdin ended).
    shut: bool,
    /// The relay ended its side.
    relay_done: bool,
}

impl Session {
    // The client is not the reactor: it keeps its own setup deadline.
    #[allow(clippy::disallowed_methods)]
    fn pump(&mut self, poll: &mut Poll) -> Result<(), ClientError> {
        let mut events = Events::with_capacity(16);
        let started = Instant::now();
        loop {
            self.read_relay()?;
            if !self.connected {
                if started.elapsed() > SETUP_TIMEOUT {
                    return Err(ClientError::NoAnswer);
                }
            } else {
                self.write_stdout()?;
            }
            if self.connected
                && self.stdin_open
                && self.stdin_ready
                && self.to_relay.len() < 32 * 1024
            {
                self.read_stdin();
            }
            if let Io::Failed(f) = self.transport.flush() {
                return Err(ClientError::Transport(self.transport.failure(f)));
            }
            while !self.to_relay.is_empty() {
                match self.transport.write(self.to_relay.data()) {
                    Io::Done(n) => self.to_relay.consume(n),
                    Io::WouldBlock | Io::Starved => break,
                    Io::Failed(f) => return Err(ClientError::Transport(self.transport.failure(f))),
                    Io::Eof => return Err(ClientError::RelayClosed),
                }
            }
            if self.connected && !self.stdin_open && self.to_relay.is_empty() && !self.shut {
                self.transport.shutdown_write();
                self.shut = true;
            }
            if self.finished() {
                return Ok(());
            }
            // Don't sleep while there is work we know of: readiness already
            // seen on the socket, or a plain-file stdin (never polled).
            let busy = self.transport.can_read()
                || (self.transport.ready.write && !self.to_relay.is_empty())
                || (!self.stdin_polled && self.stdin_open && self.connected);
            let timeout = Some(if busy {
                Duration::ZERO
            } else {
                Duration::from_millis(500)
            });
            match poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ClientError::Poll(e)),
            }
            for event in events.iter() {
                match event.token() {
                    SOCKET => {
                        self.transport.ready.read |= event.is_readable() || event.is_read_closed();
                        self.transport.ready.write |= event.is_writable() || event.is_error();
                    }
                    _ => self.stdin_ready = true,
                }
            }
        }
    }

    /// The relay ended: everything it sent has reached stdout.
    fn finished(&self) -> bool {
        self.relay_done && self.from_relay.is_empty()
    }

    fn read_relay(&mut self) -> Result<(), ClientError> {
        while self.transport.can_read() && self.from_relay.len() < 60 * 1024 {
            let space = self.from_relay.space_compacted();
            if space.is_empty() {
                break;
            }
            match self.transport.read(space) {
                Io::Done(n) => self.from_relay.commit(n),
                Io::WouldBlock | Io::Starved => break,
                Io::Eof => {
                    self.relay_done = true;
                    break;
                }
                Io::Failed(f) => return Err(ClientError::Transport(self.transport.failure(f))),
            }
        }
        if !self.connected {
            let Some(end) = frame::find(self.from_relay.data(), b"\r\n\r\n") else {
                if self.relay_done {
                    return Err(ClientError::ClosedBeforeAnswer);
                }
                return Ok(());
            };
            let head =
                String::from_utf8_lossy(self.from_relay.data().get(..end).unwrap_or_default())
                    .to_string();
            let status = head.lines().next().unwrap_or("").to_string();
            if status.split(' ').nth(1) != Some("200") {
                return Err(ClientError::Refused(status));
            }
            self.from_relay.consume(end + 4);
            self.connected = true;
        }
        Ok(())
    }

    fn write_stdout(&mut self) -> Result<(), ClientError> {
        if self.from_relay.is_empty() {
            return Ok(());
        }
        // stdout may share a non-blocking file description with stdin (a
        // socketpair from ssh): wait for room rather than fail.
        let mut out = io::stdout().lock();
        while !self.from_relay.is_empty() {
            match out.write(self.from_relay.data()) {
                Ok(0) => return Err(ClientError::StdoutClosed),
                Ok(n) => self.from_relay.consume(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut fd = libc::pollfd {
                        fd: out.as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd, bounded wait.
                    unsafe {
                        libc::poll(&mut fd, 1, 1000);
                    }
                }
                Err(e) => return Err(ClientError::Stdout(e)),
            }
        }
        out.flush().map_err(ClientError::Stdout)
    }

    fn read_stdin(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match io::stdin().lock().read(&mut chunk) {
                Ok(0) => {
                    self.stdin_open = false;
                    return;
                }
                Ok(n) => {
                    self.to_relay.extend(chunk.get(..n).unwrap_or_default());
                    if self.to_relay.len() >= 32 * 1024 {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stdin_ready = !self.stdin_polled;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.stdin_open = false;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_the_user_saw_them() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            ClientError::Connect(addr, refused).to_string(),
            "cannot connect to 127.0.0.1:9: connection refused"
        );
        assert_eq!(
            ClientError::Refused("HTTP/1.1 403 Forbidden".into()).to_string(),
            "the relay refused the CONNECT: HTTP/1.1 403 Forbidden"
        );
        assert_eq!(
            ClientError::NoAnswer.to_string(),
            "no answer to CONNECT from the relay"
        );
        let reset = crate::net::Failure(io::ErrorKind::ConnectionReset, 104);
        assert_eq!(
            ClientError::Transport(TransportError::Socket(reset)).to_string(),
            "socket error: connection reset (os error 104)"
        );
    }
}
