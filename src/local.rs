//! A backend's local side: a chunk for a new stream becomes a non-blocking
//! connection to the local server of the matching kite, after the kite's
//! options had their say (visitor address allow list, HTTP Basic auth, the
//! security filter); the visitor gets pagekite.py's `(be)` page, a 401, a
//! 500 or the TLS alert when the stream is refused or the server is down.
//! A `builtin` kite's stream goes to the built-in file server instead
//! (`webserve`), over a socket pair.
//! Bytes then flow as on any stream (`relay`, `stream`).

use std::net::IpAddr;

use crate::logging::Noise;
use crate::net::Socket;
use log::Level;
use log::{debug, warn};
use mio::Token;
use mio::net::TcpStream;

use crate::backend::{self, State};
use crate::conn::{Conn, Cx};
use crate::engine::TimerKind;
use crate::local_refusal::{is_http, refusal_for, refusal_page};
use crate::proto::http::{ForwardInfo, RequestRewriter, Rules};
use crate::proto::pages::{ErrorFrame, Refusal};
use crate::proto::tunnel::{NewStream, Open};
use crate::relay::tag;
use crate::stream::Stream;
use crate::transport::Transport;
use crate::why::Limit;

/// A local server that doesn't accept within this time is down.
const LOCAL_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A chunk for a new SID: connect to the local server of the matching kite.
pub fn open_stream(eng: &mut Cx, be: &mut State, token: Token, f: &NewStream<'_>) -> Open<Token> {
    let sid = f.sid;
    let proto = f.proto.to_ascii_lowercase();
    let host = f.host.to_ascii_lowercase();
    let port = f.port;
    let rip = f.remote_ip;
    let label = format!("{proto}://{host}:{}", port.unwrap_or(0));
    let uuid = be.uuid.clone();
    let refusal = if eng.stopping {
        Some(Limit::Stopping)
    } else {
        let busy = backend::streams_open(eng, be);
        eng.limit_reached(busy, 0)
    };
    if let Some(limit) = refusal {
        eng.refuse(&limit, &format!("stream {label}"));
        return unavailable(eng, &proto, &host, &uuid);
    }
    let Some((service, options)) = backend::service(be, &proto, &host, port) else {
        crate::logging::noisy(
            eng.now,
            Noise::StreamRefused,
            Level::Info,
            format_args!("[t{}] sid={sid}: no kite for {label}", tag(token)),
        );
        return unavailable(eng, &proto, &host, &uuid);
    };
    if !options.ip_allowed(rip) {
        crate::logging::noisy(
            eng.now,
            Noise::StreamRefused,
            Level::Info,
            format_args!(
                "[t{}] sid={sid}: {label}: visitor {rip} is not on the kite's ip list",
                tag(token)
            ),
        );
        return unavailable(eng, &proto, &host, &uuid);
    }
    let http = is_http(&proto);
    let filter = http && options.filters_dangerous(be.settings().insecure);
    // Every request of the stream is judged by the guard, the first one
    // included, before anything reaches the local server. Only a
    // `+rawheaders` kite with nothing to check goes unguarded.
    let duties = filter || options.has_passwords() || !options.ip_allow.is_empty();
    let local = service.local;
    let mut rewrite = (http && (!options.raw_headers || duties)).then(|| {
        let mut rules = Rules::new(&host);
        rules.filter = filter;
        rules.auth = options.has_passwords().then(|| Box::new(options.clone()));
        let rewriter = RequestRewriter::new(
            ForwardInfo {
                remote_ip: rip.to_string(),
                port: port.unwrap_or(0),
                tls: f.tls,
                rewrite_host: options.host_header(&local.to_string()),
            },
            rules,
        );
        Box::new(rewriter.raw_headers(options.raw_headers))
    });
    let mut first = Vec::new();
    if let Some(rw) = rewrite.as_mut() {
        if let Err(r) = rw.feed(f.body, &mut |b| first.extend_from_slice(b)) {
            crate::logging::noisy(
                eng.now,
                Noise::StreamRefused,
                Level::Info,
                format_args!("[t{}] sid={sid}: {label} from {rip}: {r}", tag(token)),
            );
            return refuse(&proto, &host, &uuid, refusal_for(r), None);
        }
    }
    let connected = if service.builtin {
        // No local server: the built-in file server answers in-process.
        let site = crate::webserve::Site {
            web: be.settings().web.clone(),
            host: host.clone(),
            domain: service.domain.clone(),
            port: service.id.port.unwrap_or(80),
            indexes: options.indexes.unwrap_or(be.settings().web.indexes),
        };
        crate::webserve::open(eng, site, &label).map(Socket::Unix)
    } else {
        TcpStream::connect(local).map(Socket::Tcp)
    };
    let sock = match connected {
        Ok(sock) => sock,
        Err(e) => {
            crate::logging::noisy(
                eng.now,
                Noise::StreamFailed,
                Level::Info,
                format_args!(
                    "[t{}] sid={sid}: {label}: cannot connect to {local}: {e}",
                    tag(token)
                ),
            );
            return unavailable(eng, &proto, &host, &uuid);
        }
    };
    if let Socket::Tcp(tcp) = &sock {
        let _ = tcp.set_nodelay(true);
    }
    let rport = f.remote_port.unwrap_or(0);
    let proxy = options.proxy_header(rip, rport, port.unwrap_or(0));
    let stream_label = if service.builtin {
        format!("{label} -> builtin")
    } else {
        format!("{label} -> {local}")
    };
    let pool = eng.pool.clone();
    let added = eng.add(sock, |sock, _| {
        let mut stream = Stream::new(&pool, Transport::plain(sock), token, sid, stream_label);
        // A built-in kite's pair is connected from the start.
        stream.connecting = !service.builtin;
        stream.kite = Some((proto.clone(), host.clone()));
        Conn::Stream(stream)
    });
    let st = match added {
        Ok(st) => st,
        Err(e) => {
            warn!(
                "[t{}] sid={sid}: cannot watch a local connection: {e}",
                tag(token)
            );
            return Open::Refused { page: None };
        }
    };
    debug!(
        "[s{} sid={sid}] {label} from {rip} -> {}",
        tag(st),
        service.origin()
    );
    let mut queued = 0;
    if let Some(Conn::Stream(s)) = eng.conns.get_mut(st) {
        if let Some(header) = proxy {
            // The PROXY header is not visitor data: not acknowledged.
            s.push_unacked(&header);
        }
        match &rewrite {
            // Judged and rewritten above; the guard takes over from here.
            Some(_) => s.queue_first(st, &first),
            None => s.queue_first(st, f.body),
        }
        s.set_guard(rewrite);
        queued = s.queued();
    }
    if service.builtin {
        eng.mark_dirty(st);
    } else {
        eng.arm(st, TimerKind::Deadline, eng.now + LOCAL_CONNECT_TIMEOUT);
    }
    Open::Accepted { handle: st, queued }
}

/// The answer for a stream nobody local will serve (protocol doc §4.1): a
/// page for HTTP, the TLS alert for HTTPS, nothing for the rest; then EOF.
/// [`refuse`] with the unavailable page (`--errorurl`'s, if set).
fn unavailable(eng: &Cx, proto: &str, host: &str, uuid: &str) -> Open<Token> {
    let frame = eng.config.error_urls.frame_for(host);
    refuse(proto, host, uuid, Refusal::Unavailable, frame)
}

/// No stream: the page (if its protocol has one), then the core's EOF.
fn refuse(
    proto: &str,
    host: &str,
    uuid: &str,
    why: Refusal,
    frame: Option<ErrorFrame<'_>>,
) -> Open<Token> {
    Open::Refused {
        page: refusal_page(proto, host, uuid, why, frame),
    }
}

/// Whether a visitor address is an IPv4 literal (for PROXY v1 wording).
pub fn is_v4(rip: &str) -> bool {
    rip.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv4())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_literals() {
        assert!(is_v4("1.2.3.4") && !is_v4("::1"));
    }
}
