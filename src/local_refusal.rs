//! What the visitor of a backend's stream gets when the local side refuses
//! or fails it: pagekite.py's page for HTTP (the `(be)` page, a 401, a 500),
//! the TLS alert for HTTPS, nothing for the rest; and the completion of a
//! local connect. Written into the tunnel's output as chunks; deciding to
//! refuse is `local`'s (new streams) and the request guard's (mid-stream).

use log::{Level, debug};
use mio::Token;

use crate::conn::{Conn, Cx};
use crate::conns::tag;
use crate::engine::TimerKind;
use crate::logging::Noise;
use crate::proto::frame::{self, Line};
use crate::proto::http::Refused;
use crate::proto::pages::{self, ErrorFrame, Refusal};
use crate::stream::Stream;
use crate::tunnel::TunnelCore;
use crate::why::Why;

pub(crate) fn is_http(proto: &str) -> bool {
    matches!(proto, "http" | "http2" | "http3" | "websocket")
}

pub(crate) fn send_refusal(
    core: &mut TunnelCore,
    sid: u32,
    proto: &str,
    host: &str,
    uuid: &str,
    why: Refusal,
    frame: Option<ErrorFrame<'_>>,
) {
    let body = match proto {
        p if is_http(p) => pages::refused(why, "http", host, uuid, frame),
        "https" => pages::TLS_ALERT.to_vec(),
        _ => return,
    };
    let sid = Line::number("SID", u64::from(sid));
    frame::encode(&mut core.out, &[sid.as_bytes()], &body);
}

/// A request the guard refused mid-stream: the visitor gets its page
/// before the stream's EOF.
pub fn refused_midstream(core: &mut TunnelCore, s: &Stream, uuid: &str, why: Refused) {
    let Some((proto, host)) = &s.kite else { return };
    send_refusal(core, s.sid, proto, host, uuid, refusal_for(why), None);
}

/// The page a refused request gets.
pub(crate) fn refusal_for(why: Refused) -> Refusal {
    match why {
        Refused::BadRequest(_) => Refusal::BadRequest,
        Refused::Misdirected => Refusal::Misdirected,
        Refused::NeedsAuth => Refusal::NeedsAuth,
        Refused::Blocked => Refusal::Blocked,
    }
}

/// Connect completion of a local stream: Ok(true) once connected.
pub fn finish_local_connect(token: Token, s: &mut Stream) -> Result<bool, Why> {
    if !s.transport.ready.write {
        return Ok(false);
    }
    match crate::net::connected(&s.transport.sock) {
        Ok(true) => {
            s.connecting = false;
            s.deadlines.clear(TimerKind::Deadline);
            debug!(
                "[s{} sid={}] connected to the local server",
                tag(token),
                s.sid
            );
            Ok(true)
        }
        Ok(false) => {
            s.transport.ready.write = false;
            Ok(false)
        }
        Err(f) => Err(Why::Failed(f)),
    }
}

/// The local server is down: the visitor gets the `(be)` page.
pub fn local_connect_failed(eng: &mut Cx, uuid: &str, token: Token, s: &mut Stream, why: &Why) {
    crate::logging::noisy(
        eng.now,
        Noise::StreamFailed,
        Level::Info,
        format_args!(
            "[s{} sid={}] {}: local server unavailable: {why}",
            tag(token),
            s.sid,
            s.label
        ),
    );
    let Some((proto, host)) = s.kite.clone() else {
        return;
    };
    let frame = eng.config.error_urls.frame_for(&host);
    if let Some(Conn::Tunnel(t)) = eng.conns.get_mut(s.tunnel) {
        send_refusal(
            &mut t.core,
            s.sid,
            &proto,
            &host,
            uuid,
            Refusal::Unavailable,
            frame,
        );
    }
}
