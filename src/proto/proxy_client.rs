//! The client halves of the two proxy handshakes, as byte machines: HTTP
//! CONNECT (RFC 9110 §9.3.6, `Basic` proxy credentials) and SOCKS5 (RFC
//! 1928, with RFC 1929 user/password). Each says what to send
//! (`poll_transmit`) and takes whatever bytes arrived (`handle_input`), in
//! any pieces; it consumes exactly the proxy's handshake and says where the
//! tunnel's own bytes begin. Sans-IO: no sockets, no name look-ups, no
//! clocks (the caller times the handshake out); sizes are bounded.

use super::base64;
use super::proxy::{
    Credentials, Progress, ProxyError, ProxyKind, ProxySpec, Socks5Reply, Target, escape,
};

/// The longest reply head an HTTP proxy may send (heads are a few hundred
/// bytes; a proxy's HTML error body comes after the head and is not read).
pub const MAX_HEAD: usize = 8192;

#[derive(Debug)]
enum HttpState {
    Reading,
    Done,
    Failed(ProxyError),
}

/// `CONNECT host:port HTTP/1.1`, then the proxy's reply head.
#[derive(Debug)]
pub struct HttpConnect {
    out: Option<Vec<u8>>,
    head: Vec<u8>,
    state: HttpState,
}

impl HttpConnect {
    /// The request is ready to send at once.
    pub fn new(target: &Target, auth: Option<&Credentials>) -> HttpConnect {
        // The same request line and Host header as pagekite.py's client.
        let mut req = format!(
            "CONNECT {} HTTP/1.1\r\nHost: {}\r\n",
            target.authority(),
            target.host()
        );
        if let Some(auth) = auth {
            req.push_str("Proxy-Authorization: ");
            req.push_str(&base64::basic(auth.user(), auth.password()));
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        HttpConnect {
            out: Some(req.into_bytes()),
            head: Vec::new(),
            state: HttpState::Reading,
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.take()
    }

    pub fn handle_input(&mut self, input: &[u8]) -> Result<Progress, ProxyError> {
        match &self.state {
            HttpState::Done => return Ok(Progress::Done { leftover_from: 0 }),
            HttpState::Failed(e) => return Err(e.clone()),
            HttpState::Reading => {}
        }
        for (at, &b) in input.iter().enumerate() {
            if self.head.len() >= MAX_HEAD {
                return self.fail(ProxyError::HeadTooLarge);
            }
            self.head.push(b);
            // pagekite.py's SocksiPy ends a head at "\r\n\r\n" or "\n\n";
            // "\n\r\n" (bare LF lines, then CRLF) is a blank line too.
            let ended =
                b == b'\n' && (self.head.ends_with(b"\n\n") || self.head.ends_with(b"\n\r\n"));
            if !ended {
                continue;
            }
            match status(&self.head) {
                Ok(code) if (100..200).contains(&code) => {
                    // An interim reply; the real one follows.
                    self.head.clear();
                }
                Ok(code) if (200..300).contains(&code) => {
                    // Any 2xx opens the tunnel (RFC 9110 §9.3.6).
                    self.state = HttpState::Done;
                    self.head = Vec::new();
                    return Ok(Progress::Done {
                        leftover_from: at + 1,
                    });
                }
                Ok(code) => {
                    let reason = reason(&self.head);
                    return self.fail(ProxyError::Refused {
                        status: code,
                        reason,
                    });
                }
                Err(e) => return self.fail(e),
            }
        }
        Ok(Progress::NeedMore)
    }

    fn fail(&mut self, e: ProxyError) -> Result<Progress, ProxyError> {
        self.state = HttpState::Failed(e.clone());
        self.head = Vec::new();
        Err(e)
    }
}

/// The first line of a head, without its line end.
fn first_line(head: &[u8]) -> &[u8] {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(head);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The status code of `HTTP/1.0 NNN …` or `HTTP/1.1 NNN …`.
fn status(head: &[u8]) -> Result<u16, ProxyError> {
    let line = first_line(head);
    let bad = || ProxyError::NotHttp(escape(line));
    let rest = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))
        .ok_or_else(bad)?;
    let code = rest.get(..3).ok_or_else(bad)?;
    if !code.iter().all(u8::is_ascii_digit) || !matches!(rest.get(3), None | Some(b' ')) {
        return Err(bad());
    }
    Ok(code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0')))
}

/// The reason phrase after the status code, escaped for logs.
fn reason(head: &[u8]) -> String {
    let line = first_line(head);
    escape(line.get(13..).unwrap_or(b""))
}

#[derive(Debug)]
enum SocksState {
    /// Greeting sent; waiting for the chosen method.
    Method,
    /// RFC 1929 request sent; waiting for its status.
    Auth,
    /// CONNECT sent; waiting for the reply.
    Reply,
    Done,
    Failed(ProxyError),
}

/// A SOCKS5 CONNECT, with user/password authentication when credentials
/// are given.
#[derive(Debug)]
pub struct Socks5 {
    target: Target,
    auth: Option<Credentials>,
    /// Requests not yet taken by `poll_transmit`, in order.
    out: Vec<u8>,
    /// The reply being assembled (at most 4 + 1 + 255 + 2 bytes).
    buf: Vec<u8>,
    state: SocksState,
}

/// RFC 1928 method numbers.
const NO_AUTH: u8 = 0;
const USER_PASS: u8 = 2;
const NO_METHOD: u8 = 0xff;

impl Socks5 {
    /// The greeting is ready to send at once. It offers no authentication,
    /// plus user/password when credentials are given (as pagekite.py does).
    pub fn new(target: Target, auth: Option<Credentials>) -> Socks5 {
        let greeting = if auth.is_some() {
            vec![5, 2, NO_AUTH, USER_PASS]
        } else {
            vec![5, 1, NO_AUTH]
        };
        Socks5 {
            target,
            auth,
            out: greeting,
            buf: Vec::new(),
            state: SocksState::Method,
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.out))
        }
    }

    pub fn handle_input(&mut self, input: &[u8]) -> Result<Progress, ProxyError> {
        match &self.state {
            SocksState::Done => return Ok(Progress::Done { leftover_from: 0 }),
            SocksState::Failed(e) => return Err(e.clone()),
            _ => {}
        }
        let mut pos = 0;
        loop {
            let need = match self.needed() {
                Ok(need) => need,
                Err(e) => return self.fail(e),
            };
            if self.buf.len() < need {
                let rest = input.get(pos..).unwrap_or(&[]);
                if rest.is_empty() {
                    return Ok(Progress::NeedMore);
                }
                let take = (need - self.buf.len()).min(rest.len());
                self.buf.extend_from_slice(rest.get(..take).unwrap_or(&[]));
                pos += take;
                continue;
            }
            if let Err(e) = self.complete() {
                return self.fail(e);
            }
            self.buf.clear();
            if matches!(self.state, SocksState::Done) {
                self.buf = Vec::new();
                return Ok(Progress::Done { leftover_from: pos });
            }
        }
    }

    /// How many bytes the message being read has in all, as far as the
    /// bytes so far tell; fails as soon as they show an error.
    fn needed(&self) -> Result<usize, ProxyError> {
        let b = |i: usize| self.buf.get(i).copied();
        match self.state {
            SocksState::Method | SocksState::Auth => Ok(2),
            SocksState::Reply => {
                if let Some(version) = b(0).filter(|&v| v != 5) {
                    return Err(ProxyError::NotSocks5(version));
                }
                if let Some(rep) = b(1).filter(|&r| r != 0) {
                    return Err(ProxyError::ConnectFailed(Socks5Reply::from_code(rep)));
                }
                match b(3) {
                    None => Ok(4),
                    Some(1) => Ok(4 + 4 + 2),
                    Some(4) => Ok(4 + 16 + 2),
                    Some(3) => Ok(b(4).map_or(5, |len| 5 + usize::from(len) + 2)),
                    Some(other) => Err(ProxyError::BadAddressType(other)),
                }
            }
            SocksState::Done | SocksState::Failed(_) => Ok(0),
        }
    }

    /// Acts on a complete message in `buf`.
    fn complete(&mut self) -> Result<(), ProxyError> {
        let b = |i: usize| self.buf.get(i).copied().unwrap_or(0);
        match self.state {
            SocksState::Method => {
                if b(0) != 5 {
                    return Err(ProxyError::NotSocks5(b(0)));
                }
                match b(1) {
                    NO_AUTH => self.send_connect(),
                    USER_PASS if self.auth.is_some() => self.send_auth(),
                    NO_METHOD => return Err(ProxyError::NoAcceptableMethod),
                    other => return Err(ProxyError::UnexpectedMethod(other)),
                }
            }
            SocksState::Auth => {
                if b(0) != 1 {
                    return Err(ProxyError::BadAuthVersion(b(0)));
                }
                if b(1) != 0 {
                    return Err(ProxyError::AuthRejected(b(1)));
                }
                self.send_connect();
            }
            // needed() has checked the version and the reply code; the
            // bound address is of no use to a tunnel.
            SocksState::Reply => self.state = SocksState::Done,
            SocksState::Done | SocksState::Failed(_) => {}
        }
        Ok(())
    }

    fn send_auth(&mut self) {
        let Some(auth) = &self.auth else { return };
        // Credentials::new bounds both parts to 255 bytes.
        let (user, pass) = (auth.user().as_bytes(), auth.password().as_bytes());
        let mut req = Vec::with_capacity(3 + user.len() + pass.len());
        req.push(1);
        req.push(u8::try_from(user.len()).unwrap_or(u8::MAX));
        req.extend_from_slice(user.get(..255).unwrap_or(user));
        req.push(u8::try_from(pass.len()).unwrap_or(u8::MAX));
        req.extend_from_slice(pass.get(..255).unwrap_or(pass));
        self.out.extend(req);
        self.state = SocksState::Auth;
    }

    fn send_connect(&mut self) {
        let mut req = vec![5, 1, 0];
        let port = match &self.target {
            Target::Addr(addr) => {
                match addr.ip() {
                    std::net::IpAddr::V4(ip) => {
                        req.push(1);
                        req.extend_from_slice(&ip.octets());
                    }
                    std::net::IpAddr::V6(ip) => {
                        req.push(4);
                        req.extend_from_slice(&ip.octets());
                    }
                }
                addr.port()
            }
            Target::Name { host, port } => {
                // Target::new bounds names to 255 bytes.
                let name = host.as_bytes();
                req.push(3);
                req.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
                req.extend_from_slice(name.get(..255).unwrap_or(name));
                *port
            }
        };
        req.extend_from_slice(&port.to_be_bytes());
        self.out.extend(req);
        self.state = SocksState::Reply;
    }

    fn fail(&mut self, e: ProxyError) -> Result<Progress, ProxyError> {
        self.state = SocksState::Failed(e.clone());
        self.buf = Vec::new();
        Err(e)
    }
}

/// The client side of one proxy hop, whichever kind.
#[derive(Debug)]
pub enum ProxyHandshake {
    Http(HttpConnect),
    Socks5(Socks5),
}

impl ProxyHandshake {
    /// Starts a handshake with `spec`'s proxy (already connected) to reach
    /// `target`.
    pub fn new(spec: &ProxySpec, target: Target) -> ProxyHandshake {
        match spec.kind {
            ProxyKind::HttpConnect => {
                ProxyHandshake::Http(HttpConnect::new(&target, spec.auth.as_ref()))
            }
            ProxyKind::Socks5 => ProxyHandshake::Socks5(Socks5::new(target, spec.auth.clone())),
        }
    }

    /// Bytes to send to the proxy now, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        match self {
            ProxyHandshake::Http(h) => h.poll_transmit(),
            ProxyHandshake::Socks5(s) => s.poll_transmit(),
        }
    }

    /// Takes bytes the proxy sent.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<Progress, ProxyError> {
        match self {
            ProxyHandshake::Http(h) => h.handle_input(input),
            ProxyHandshake::Socks5(s) => s.handle_input(input),
        }
    }
}

/// The handshakes of a whole proxy chain, one hop after the other over the
/// one connection to the first proxy: each hop is asked for the next
/// proxy, the last for the target (pagekite.py chains `--proxy` options
/// the same way). A chain of one is a plain hop.
#[derive(Debug)]
pub struct ChainHandshake {
    /// What each later hop is asked for, in order.
    rest: std::collections::VecDeque<(ProxySpec, Target)>,
    current: ProxyHandshake,
    hop: usize,
    /// Requests of a finished hop not yet taken.
    out: Vec<u8>,
}

impl ChainHandshake {
    /// `None` for an empty chain or a hop whose host can't be a target.
    /// The caller connects to `chain[0]`'s host and port.
    pub fn new(chain: &[ProxySpec], target: Target) -> Option<ChainHandshake> {
        let mut targets = Vec::with_capacity(chain.len());
        for next in chain.iter().skip(1) {
            targets.push(Target::new(&next.host, next.port).ok()?);
        }
        targets.push(target);
        let mut hops = chain.iter().cloned().zip(targets);
        let (first, first_target) = hops.next()?;
        Some(ChainHandshake {
            current: ProxyHandshake::new(&first, first_target),
            rest: hops.collect(),
            hop: 0,
            out: Vec::new(),
        })
    }

    /// Which hop (0 = the first proxy) the handshake is at, or failed at.
    pub fn hop(&self) -> usize {
        self.hop
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if let Some(more) = self.current.poll_transmit() {
            self.out.extend(more);
        }
        if self.out.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.out))
        }
    }

    pub fn handle_input(&mut self, input: &[u8]) -> Result<Progress, ProxyError> {
        let mut pos = 0;
        loop {
            let piece = input.get(pos..).unwrap_or(&[]);
            match self.current.handle_input(piece)? {
                Progress::NeedMore => return Ok(Progress::NeedMore),
                Progress::Done { leftover_from } => {
                    let Some((spec, target)) = self.rest.pop_front() else {
                        return Ok(Progress::Done {
                            leftover_from: pos + leftover_from,
                        });
                    };
                    if let Some(more) = self.current.poll_transmit() {
                        self.out.extend(more);
                    }
                    self.current = ProxyHandshake::new(&spec, target);
                    self.hop += 1;
                    pos += leftover_from;
                }
            }
        }
    }
}
