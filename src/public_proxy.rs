//! The PROXY protocol step of a public connection (`--proxyproto_from`): a
//! connection from a listed load balancer must begin with a v1 or v2 header,
//! and the visitor it names becomes the connection's peer before anything
//! else is judged: `--client_acl`/`--tunnel_acl` and `--max_conns_per_ip`
//! (counted against the visitor from then on, not the balancer), and so
//! `RIP`/`X-Forwarded-For` and every later log line. From any other
//! address (or a second time), bytes that begin like a header are refused,
//! so nobody can claim an address by sending one. Parsing is
//! `proto::proxy_protocol`'s; the sniffing that follows is `public`'s.

use std::net::SocketAddr;

use log::debug;
use mio::Token;

use super::{Next, Sniff, Standing, fill};
use crate::conn::Cx;
use crate::frontend::State;
use crate::net;
use crate::proto::proxy_protocol::{self as pp, Looks, Parse};
use crate::relay::tag;
use crate::why::Limit;

/// The flag every refusal here names.
const FLAG: Limit = Limit::Acl("--proxyproto_from");

/// Whether a connection from `peer` to public port `port` comes from a
/// balancer and must begin with a PROXY header.
pub fn from_balancer(fe: &State, peer: SocketAddr, port: u16) -> bool {
    let s = fe.settings();
    (s.proxyproto_ports.is_empty() || s.proxyproto_ports.contains(&port))
        && s.proxyproto_from.iter().any(|c| c.contains(peer.ip()))
}

/// Reads a balancer's PROXY header; once it is whole, the connection is the
/// visitor's, admitted (or not) as if it had been accepted from there.
pub(super) fn header(eng: &mut Cx, fe: &State, token: Token, mut s: Sniff) -> Next {
    let Some(eof) = fill(eng, token, &mut s) else {
        return Next::Done(None);
    };
    let head = match pp::parse(s.buf.data()) {
        // A balancer's plain TCP health check connects and closes.
        Parse::NeedMore if eof && s.buf.is_empty() => {
            debug!(
                "[p{} {}] closed before its PROXY header",
                tag(token),
                s.peer
            );
            return Next::Done(None);
        }
        Parse::NeedMore if eof => {
            let what = format!(
                "a connection from {} that closed before its PROXY header",
                s.peer
            );
            eng.refuse(&FLAG, &what);
            return Next::Done(None);
        }
        Parse::NeedMore => return Next::Wait(s),
        Parse::Err(e) => {
            let what = format!(
                "a connection from {} without a valid PROXY header ({e})",
                s.peer
            );
            eng.refuse(&FLAG, &what);
            return Next::Done(None);
        }
        Parse::Done(head) => head,
    };
    let balancer = s.peer;
    // LOCAL (a health check) and UNKNOWN name nobody: the balancer itself
    // is the client then, as the spec says.
    let visitor = head.source.map_or(balancer, net::canonical);
    let standing = Standing::of(fe, visitor);
    if !standing.visitor && !standing.backend {
        eng.refuse(
            &Limit::Acl("--client_acl and --tunnel_acl"),
            &format!("a connection from {visitor} via {balancer}"),
        );
        return Next::Done(None);
    }
    let per_ip = fe.settings().max_conns_per_ip;
    if per_ip > 0 && eng.conns.from_ip(visitor.ip()) as usize >= per_ip {
        eng.refuse(
            &Limit::PerIp(per_ip),
            &format!("a connection from {visitor} via {balancer}"),
        );
        return Next::Done(None);
    }
    eng.conns.count_as(token, visitor.ip());
    debug!(
        "[p{}] PROXY v{} header from {balancer}: visitor {visitor}",
        tag(token),
        head.version
    );
    s.buf.consume(head.consumed);
    s.proxy_header = false;
    s.via = Some(balancer);
    s.peer = visitor;
    Next::Again(s)
}

/// Whether a connection that may not send a PROXY header (not from a
/// balancer, or past the balancer's one) began with one; if so it is
/// refused (rate-limited line) and the caller closes it.
pub(super) fn spoofed(eng: &mut Cx, s: &Sniff) -> bool {
    if pp::looks(s.buf.data()) != Looks::Proxy {
        return false;
    }
    let what = match s.via {
        Some(via) => format!("a second PROXY header from {} via {via}", s.peer),
        None => format!("a PROXY header from {}, not a listed balancer", s.peer),
    };
    eng.refuse(&FLAG, &what);
    true
}
