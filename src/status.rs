//! The `--status_file`'s book: where it goes, when it was last written and
//! may be written next (at most once per [`MIN_GAP`], refreshed every
//! [`REFRESH`] while streams run), the last error and the bytes of closed
//! tunnels. The reactor keeps one and arms its timer; what the file says is
//! `report`'s. Written to a temporary file and renamed over the old one, so
//! readers never see half a file. Never on the data path.
//!
//! Also the process's [`Counters`]: what has happened so far (bytes of closed
//! tunnels, handshakes, refusals, close reasons, reloads), kept whether or
//! not anyone reads them, and shown by both the status file and `--metrics`
//! (one set, two views). Counting is a few additions; nothing here does I/O
//! but the status file's write.

use std::time::{Duration, Instant};

use crate::why::{Limit, Why};

/// Writes are at least this far apart.
pub const MIN_GAP: Duration = Duration::from_secs(2);
/// While streams run, the counters are refreshed this often.
pub const REFRESH: Duration = Duration::from_secs(5);

pub struct Status {
    pub(crate) path: String,
    pub(crate) last_write: Option<Instant>,
    pub(crate) armed: bool,
    pub(crate) last_error: Option<(u64, String)>,
    /// The last write failed; say so once, not every time.
    pub(crate) failing: bool,
}

impl Status {
    pub fn new(path: &str) -> Status {
        Status {
            path: path.to_string(),
            last_write: None,
            armed: false,
            last_error: None,
            failing: false,
        }
    }

    pub fn error(&mut self, at_unix: u64, text: &str) {
        self.last_error = Some((at_unix, text.to_string()));
    }

    /// When the next write may happen, if one is not armed yet.
    pub(crate) fn due(&mut self, now: Instant) -> Option<Instant> {
        if self.armed {
            return None;
        }
        self.armed = true;
        Some(self.last_write.map_or(now, |w| (w + MIN_GAP).max(now)))
    }
}

/// Why tunnels and streams closed, as `--metrics` labels them: a few fixed
/// words, so a peer cannot grow the label set.
pub const CLOSE_REASONS: [&str; 11] = [
    "peer_closed",
    "socket",
    "tls",
    "protocol",
    "timeout",
    "done",
    "stopping",
    "no_answer",
    "replaced",
    "refused",
    "other",
];

/// The [`CLOSE_REASONS`] index of `why`.
pub fn close_reason(why: &Why) -> usize {
    match why {
        Why::PeerClosed => 0,
        Why::Failed(_) => 1,
        Why::Tls(_) => 2,
        Why::Protocol(_) | Why::Overrun(_) => 3,
        Why::Timeout(_) => 4,
        Why::Done => 5,
        Why::Stopping => 6,
        Why::NoAnswer => 7,
        Why::Replaced => 8,
        Why::Refused(_) => 9,
        Why::Operator(_) | Why::Proxy(_) => 10,
    }
}

/// Why new work was refused, as `--metrics` labels it.
pub const REFUSAL_REASONS: [&str; 5] = ["conns", "buffers", "per_ip", "acl", "stopping"];

/// What has happened since the process started; see the module text.
pub struct Counters {
    /// When the process started (the reactor's clock, and seconds since 1970).
    pub started: Instant,
    pub started_unix: u64,
    /// Bytes of tunnels that have closed (live ones are counted live).
    pub closed_in: u64,
    pub closed_out: u64,
    /// Closed tunnels that had been live, and that never were (a failed
    /// dial or handshake); `--frontends` pings are not tunnels.
    pub closed_live: u64,
    pub closed_unlive: u64,
    /// Of the closed tunnels, those over TLS that had been live, and those
    /// that ended on a TLS failure before being live.
    pub closed_tls_live: u64,
    pub tls_failed: u64,
    /// Public connections whose TLS this frontend terminates: handshakes
    /// completed, and failed (a TLS error, or closed before completing).
    pub public_tls_ok: u64,
    pub public_tls_failed: u64,
    /// Closed tunnels and streams, by [`CLOSE_REASONS`].
    pub tunnels_closed: [u64; CLOSE_REASONS.len()],
    pub streams_closed: [u64; CLOSE_REASONS.len()],
    /// Refusals, by [`REFUSAL_REASONS`].
    pub refused: [u64; REFUSAL_REASONS.len()],
    /// Errors noted for the status file's `last_error`.
    pub errors: u64,
    /// SIGHUPs received (each reload, applied or refused).
    pub reloads: u64,
    /// Stream bytes per kite; kept only with `--metrics`.
    pub kites: Option<crate::kite_bytes::KiteBytes>,
}

impl Counters {
    pub fn new(now: Instant, now_unix: u64) -> Counters {
        Counters {
            started: now,
            started_unix: now_unix,
            closed_in: 0,
            closed_out: 0,
            closed_live: 0,
            closed_unlive: 0,
            closed_tls_live: 0,
            tls_failed: 0,
            public_tls_ok: 0,
            public_tls_failed: 0,
            tunnels_closed: [0; CLOSE_REASONS.len()],
            streams_closed: [0; CLOSE_REASONS.len()],
            refused: [0; REFUSAL_REASONS.len()],
            errors: 0,
            reloads: 0,
            kites: None,
        }
    }

    /// Keeps a closed tunnel's byte counts in the totals, and how it ended:
    /// `shape` is whether it had been live and ran over TLS, None for a
    /// `--frontends` ping (bytes, but no tunnel).
    pub fn tunnel_closed(&mut self, bytes: (u64, u64), shape: Option<(bool, bool)>, why: &Why) {
        self.closed_in = self.closed_in.saturating_add(bytes.0);
        self.closed_out = self.closed_out.saturating_add(bytes.1);
        let Some((live, tls)) = shape else {
            return;
        };
        bump(&mut self.tunnels_closed, close_reason(why));
        if live {
            self.closed_live += 1;
            if tls {
                self.closed_tls_live += 1;
            }
        } else {
            self.closed_unlive += 1;
            if matches!(why, Why::Tls(_)) {
                self.tls_failed += 1;
            }
        }
    }

    /// A stream ended: its close reason, and (with `--metrics`) its bytes
    /// under the `label` it was opened with.
    pub fn stream_closed(&mut self, label: &str, bytes: (u64, u64), why: &Why) {
        bump(&mut self.streams_closed, close_reason(why));
        if let Some(k) = self.kites.as_mut() {
            k.add_pending(label, bytes);
        }
    }

    pub fn refused(&mut self, limit: &Limit) {
        let at = match limit {
            Limit::Conns(_) => 0,
            Limit::Buffers { .. } => 1,
            Limit::PerIp(_) => 2,
            Limit::Acl(_) => 3,
            Limit::Stopping => 4,
        };
        bump(&mut self.refused, at);
    }
}

fn bump(counts: &mut [u64], at: usize) {
    if let Some(n) = counts.get_mut(at) {
        *n = n.saturating_add(1);
    }
}

pub(crate) fn write_atomically(path: &str, text: &str) -> std::io::Result<()> {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// A JSON string literal: one quoter for every JSON rkite writes.
pub use crate::proto::json::quote as json_str;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // a base instant for the arithmetic
    fn writes_are_spaced_and_armed_once() {
        let t0 = Instant::now();
        let mut s = Status::new("/nonexistent/x");
        assert_eq!(s.due(t0), Some(t0));
        assert_eq!(s.due(t0), None, "already armed");
        s.armed = false;
        s.last_write = Some(t0);
        assert_eq!(s.due(t0 + Duration::from_millis(500)), Some(t0 + MIN_GAP));
        s.armed = false;
        let later = t0 + Duration::from_secs(10);
        assert_eq!(s.due(later), Some(later));
    }
}
