//! The `--status_file`'s book: where it goes, when it was last written and
//! may be written next (at most once per [`MIN_GAP`], refreshed every
//! [`REFRESH`] while streams run), the last error and the bytes of closed
//! tunnels. The reactor keeps one and arms its timer; what the file says is
//! `report`'s. Written to a temporary file and renamed over the old one, so
//! readers never see half a file. Never on the data path.

use std::time::{Duration, Instant};

/// Writes are at least this far apart.
pub const MIN_GAP: Duration = Duration::from_secs(2);
/// While streams run, the counters are refreshed this often.
pub const REFRESH: Duration = Duration::from_secs(5);

pub struct Status {
    pub(crate) path: String,
    pub(crate) started: Instant,
    pub(crate) started_unix: u64,
    pub(crate) last_write: Option<Instant>,
    pub(crate) armed: bool,
    pub(crate) last_error: Option<(u64, String)>,
    /// Bytes of tunnels that have closed (live ones are counted live).
    pub(crate) closed_in: u64,
    pub(crate) closed_out: u64,
    /// The last write failed; say so once, not every time.
    pub(crate) failing: bool,
}

impl Status {
    pub fn new(path: &str, now: Instant, now_unix: u64) -> Status {
        Status {
            path: path.to_string(),
            started: now,
            started_unix: now_unix,
            last_write: None,
            armed: false,
            last_error: None,
            closed_in: 0,
            closed_out: 0,
            failing: false,
        }
    }

    /// Keeps a closed tunnel's byte counts in the totals.
    pub fn tunnel_closed(&mut self, bytes_in: u64, bytes_out: u64) {
        self.closed_in = self.closed_in.saturating_add(bytes_in);
        self.closed_out = self.closed_out.saturating_add(bytes_out);
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
        let mut s = Status::new("/nonexistent/x", t0, 0);
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
