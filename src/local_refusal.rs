//! What the visitor of a backend's stream gets when the local side refuses
//! or fails it: pagekite.py's page for HTTP (the `(be)` page, a 401, a 500),
//! the TLS alert for HTTPS, nothing for the rest; and the completion of a
//! local connect. The pages go to the tunnel core, which sends them before
//! the stream's EOF; deciding to refuse is `local`'s (new streams) and the
//! request guard's (mid-stream).

use log::{Level, debug};
use mio::Token;

use crate::conn::{Conn, Cx};
use crate::conns::tag;
use crate::engine::TimerKind;
use crate::logging::Noise;
use crate::proto::http::Refused;
use crate::proto::pages::{self, ErrorFrame, Refusal};
use crate::stream::Stream;
use crate::why::Why;

pub(crate) fn is_http(proto: &str) -> bool {
    matches!(proto, "http" | "http2" | "http3" | "websocket")
}

/// The page a refused stream's visitor gets, if its protocol has one.
pub(crate) fn refusal_page(
    proto: &str,
    host: &str,
    uuid: &str,
    why: Refusal,
    frame: Option<ErrorFrame<'_>>,
) -> Option<Vec<u8>> {
    match proto {
        p if is_http(p) => Some(pages::refused(why, "http", host, uuid, frame)),
        "https" => Some(pages::TLS_ALERT.to_vec()),
        _ => None,
    }
}

/// A request the guard refused mid-stream: the page the visitor gets
/// before the stream's EOF.
pub fn refused_page(s: &Stream, uuid: &str, why: Refused) -> Option<Vec<u8>> {
    let (proto, host) = s.kite.as_ref()?;
    refusal_page(proto, host, uuid, refusal_for(why), None)
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
    let Some(page) = refusal_page(&proto, &host, uuid, Refusal::Unavailable, frame) else {
        return;
    };
    if let Some(Conn::Tunnel(t)) = eng.conns.get_mut(s.tunnel) {
        if let Some(link) = t.link.as_deref_mut() {
            link.send_page(s.sid, &page);
        }
    }
}
