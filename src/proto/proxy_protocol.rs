//! The PROXY protocol header a load balancer (HAProxy `send-proxy` /
//! `send-proxy-v2`, nginx stream `proxy_protocol on`, cloud balancers) puts
//! in front of a connection to say who the visitor is: version 1 (one text
//! line, at most 107 bytes) and version 2 (a binary block after a 12-byte
//! signature), as haproxy's doc/proxy-protocol.txt defines them. Given
//! everything the connection has sent so far, [`parse`] says whether more
//! bytes are needed, where the header ends and which source address it
//! names, or why the bytes are not a header. It keeps no state (the caller
//! calls again with the grown buffer), reads no socket and decides nothing
//! about whom to believe: which sources may send a header is the
//! frontend's (`public`).
//!
//! Every input is hostile: all indexing goes through `get`, and a header
//! may never be longer than [`MAX_V1`] / [`MAX_V2`], so a sender cannot make
//! the caller buffer more than that before an answer.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest v1 line the spec allows, CRLF included.
pub const MAX_V1: usize = 107;
/// The v2 signature: it can't start an HTTP request, a TLS record or a v1
/// line, which is why a receiver can tell a header from what follows.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 prefix.
pub const V1_PREFIX: &[u8] = b"PROXY ";
/// Bytes of a v2 header before its address block.
const V2_FIXED: usize = 16;
/// The longest v2 address block (addresses and TLVs) accepted: the
/// addresses take at most 216 bytes (AF_UNIX), and the TLVs balancers add
/// (ALPN, authority, unique id, SSL details, cloud endpoint ids) stay well
/// inside this; anything longer is refused rather than buffered.
pub const MAX_V2_BLOCK: usize = 2048;
/// The longest header of either version.
pub const MAX_V2: usize = V2_FIXED + MAX_V2_BLOCK;

/// What [`parse`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// The bytes so far are a valid start of a header: call again with more.
    NeedMore,
    /// A whole header.
    Done(Header),
    /// Not a valid header: close the connection (the reason is for the log).
    Err(Error),
}

/// A parsed header.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    /// 1 or 2.
    pub version: u8,
    /// The visitor's address and port; `None` for v1 `UNKNOWN`, v2 `LOCAL`
    /// (the balancer's own health check) and v2 `UNSPEC`, where the spec
    /// says to use the connection's own address.
    pub source: Option<SocketAddr>,
    /// Bytes the header takes: what follows is the visitor's own.
    pub consumed: usize,
}

/// Why the bytes are not a PROXY header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// They start with neither the v1 prefix nor the v2 signature.
    NotProxy,
    /// No CRLF within [`MAX_V1`] bytes.
    V1TooLong,
    /// A byte a v1 line may not hold (only printable ASCII, then CRLF).
    V1BadByte,
    /// The protocol is not `TCP4`, `TCP6` or `UNKNOWN`.
    V1BadProtocol,
    /// Not `PROXY PROTO SRC DST SPORT DPORT` with single spaces.
    V1BadFields,
    /// An address that is not one of the protocol's family.
    V1BadAddress,
    /// A port that is not a decimal 0..=65535 without leading zeros.
    V1BadPort,
    /// The version nibble is not 2.
    V2BadVersion(u8),
    /// The command is neither LOCAL (0) nor PROXY (1).
    V2BadCommand(u8),
    /// A family/transport byte other than UNSPEC, TCP over IPv4 or IPv6.
    V2BadFamily(u8),
    /// The address block is shorter than its family's addresses.
    V2ShortBlock { family: u8, len: usize },
    /// The address block is longer than [`MAX_V2_BLOCK`].
    V2TooLong(usize),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotProxy => f.write_str("no PROXY protocol header"),
            Error::V1TooLong => write!(f, "PROXY v1 line longer than {MAX_V1} bytes"),
            Error::V1BadByte => f.write_str("PROXY v1 line with a byte that is not printable"),
            Error::V1BadProtocol => f.write_str("PROXY v1 protocol not TCP4, TCP6 or UNKNOWN"),
            Error::V1BadFields => f.write_str("PROXY v1 line without its four fields"),
            Error::V1BadAddress => f.write_str("PROXY v1 address not of its protocol"),
            Error::V1BadPort => f.write_str("PROXY v1 port not a number 0-65535"),
            Error::V2BadVersion(v) => write!(f, "PROXY v2 header with version {v}"),
            Error::V2BadCommand(c) => write!(f, "PROXY v2 header with command {c}"),
            Error::V2BadFamily(b) => write!(f, "PROXY v2 family/transport 0x{b:02x} unsupported"),
            Error::V2ShortBlock { family, len } => write!(
                f,
                "PROXY v2 address block of {len} bytes too short for family 0x{family:02x}"
            ),
            Error::V2TooLong(n) => write!(
                f,
                "PROXY v2 address block of {n} bytes (at most {MAX_V2_BLOCK})"
            ),
        }
    }
}

/// Whether bytes begin like a PROXY header, for a source that may not send
/// one: a connection saying `PROXY ` or the v2 signature is refused, not
/// sniffed, so an unlisted client can't pass for a balancer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Looks {
    /// The whole v1 prefix or v2 signature is there.
    Proxy,
    /// The bytes so far are a strict prefix of one of them.
    Maybe,
    /// Neither.
    Not,
}

/// See [`Looks`].
pub fn looks(data: &[u8]) -> Looks {
    let mut maybe = false;
    for sig in [V1_PREFIX, &V2_SIGNATURE[..]] {
        if data.starts_with(sig) {
            return Looks::Proxy;
        }
        maybe |= sig.starts_with(data);
    }
    if maybe && !data.is_empty() {
        Looks::Maybe
    } else {
        Looks::Not
    }
}

/// Parses the header at the start of `data` (everything the connection
/// sent so far). Wrong bytes are refused as soon as they arrive, not when
/// the header would have ended.
pub fn parse(data: &[u8]) -> Parse {
    match data.first() {
        None => Parse::NeedMore,
        Some(b'P') => v1(data),
        Some(b'\r') => v2(data),
        Some(_) => Parse::Err(Error::NotProxy),
    }
}

fn v1(data: &[u8]) -> Parse {
    let prefix = data.len().min(V1_PREFIX.len());
    if data.get(..prefix) != V1_PREFIX.get(..prefix) {
        return Parse::Err(Error::NotProxy);
    }
    // Every byte up to the CR must be printable ASCII; a lone LF or CR
    // (not followed by LF) ends the hope of a header at once. The CRLF
    // counts in the 107 bytes, so the CR is at index 105 at the latest.
    let mut end = None;
    for (i, &b) in data.iter().enumerate() {
        match b {
            b'\r' => match data.get(i + 1) {
                Some(b'\n') => {
                    end = Some(i);
                    break;
                }
                Some(_) => return Parse::Err(Error::V1BadByte),
                None => return Parse::NeedMore,
            },
            // A CR after this byte would make the line too long.
            0x20..=0x7e if i + 3 > MAX_V1 => return Parse::Err(Error::V1TooLong),
            0x20..=0x7e => {}
            _ => return Parse::Err(Error::V1BadByte),
        }
    }
    let Some(end) = end else {
        return Parse::NeedMore;
    };
    let line = data.get(V1_PREFIX.len()..end).unwrap_or_default();
    // Printable ASCII was checked above, so this can't fail.
    let Ok(line) = std::str::from_utf8(line) else {
        return Parse::Err(Error::V1BadByte);
    };
    match v1_source(line) {
        Ok(source) => Parse::Done(Header {
            version: 1,
            source,
            consumed: end + 2,
        }),
        Err(e) => Parse::Err(e),
    }
}

/// `TCP4 SRC DST SPORT DPORT`, `TCP6 …` or `UNKNOWN[ anything]`.
fn v1_source(line: &str) -> Result<Option<SocketAddr>, Error> {
    let (proto, rest) = line.split_once(' ').unwrap_or((line, ""));
    let v6 = match proto {
        "UNKNOWN" => return Ok(None),
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(Error::V1BadProtocol),
    };
    // Exactly four fields, single spaces (no allocation per connection).
    let mut fields = rest.split(' ');
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(Error::V1BadFields);
    };
    let ip = |text: &str| -> Result<IpAddr, Error> {
        if v6 {
            text.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            text.parse::<Ipv4Addr>().map(IpAddr::V4)
        }
        .map_err(|_| Error::V1BadAddress)
    };
    let src = ip(src)?;
    ip(dst)?;
    let port = v1_port(sport)?;
    v1_port(dport)?;
    Ok(Some(SocketAddr::new(src, port)))
}

fn v1_port(text: &str) -> Result<u16, Error> {
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return Err(Error::V1BadPort);
    }
    text.parse().map_err(|_| Error::V1BadPort)
}

fn v2(data: &[u8]) -> Parse {
    let sig = data.len().min(V2_SIGNATURE.len());
    if data.get(..sig) != V2_SIGNATURE.get(..sig) {
        return Parse::Err(Error::NotProxy);
    }
    // Each fixed byte is judged as soon as it is there.
    let ver_cmd = data.get(12).copied();
    if let Some(b) = ver_cmd {
        if b >> 4 != 2 {
            return Parse::Err(Error::V2BadVersion(b >> 4));
        }
        if b & 0x0f > 1 {
            return Parse::Err(Error::V2BadCommand(b & 0x0f));
        }
    }
    let local = ver_cmd.is_some_and(|b| b & 0x0f == 0);
    let family = data.get(13).copied();
    let needs = match family {
        // LOCAL: the balancer speaks for itself; the block is skipped.
        Some(_) if local => 0,
        Some(0x00) => 0,
        Some(0x11) => 12,
        Some(0x21) => 36,
        Some(other) => return Parse::Err(Error::V2BadFamily(other)),
        None => 0,
    };
    let (Some(&hi), Some(&lo), Some(family)) = (data.get(14), data.get(15), family) else {
        return Parse::NeedMore;
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > MAX_V2_BLOCK {
        return Parse::Err(Error::V2TooLong(len));
    }
    if len < needs {
        return Parse::Err(Error::V2ShortBlock { family, len });
    }
    let Some(block) = data.get(V2_FIXED..V2_FIXED + len) else {
        return Parse::NeedMore;
    };
    let source = if local {
        None
    } else {
        v2_source(family, block)
    };
    Parse::Done(Header {
        version: 2,
        source,
        consumed: V2_FIXED + len,
    })
}

/// The source address of a block already checked to be long enough.
fn v2_source(family: u8, block: &[u8]) -> Option<SocketAddr> {
    match family {
        0x11 => {
            let ip: [u8; 4] = block.get(0..4)?.try_into().ok()?;
            let port: [u8; 2] = block.get(8..10)?.try_into().ok()?;
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(ip)),
                u16::from_be_bytes(port),
            ))
        }
        0x21 => {
            let ip: [u8; 16] = block.get(0..16)?.try_into().ok()?;
            let port: [u8; 2] = block.get(32..34)?.try_into().ok()?;
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(ip)),
                u16::from_be_bytes(port),
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "proxy_protocol_tests.rs"]
mod tests;
