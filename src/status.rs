//! `--status_file`: a small JSON picture of the process for LuCI, scripts
//! and monitoring: tunnels, kites and their state, streams, bytes each way,
//! round trips, the last error, uptime. Written to a temporary file and
//! renamed over the old one, so readers never see half a file; written when
//! something changes, but at most once per [`MIN_GAP`], and refreshed every
//! [`REFRESH`] while streams run (for the byte counters). Never on the data
//! path: the reactor only sets a flag and arms one timer.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use log::warn;

use crate::engine::{Conn, Engine, Role, TimerKey, unix_now};
use crate::relay::{Phase, Side, tag};

/// Writes are at least this far apart.
pub const MIN_GAP: Duration = Duration::from_secs(2);
/// While streams run, the counters are refreshed this often.
pub const REFRESH: Duration = Duration::from_secs(5);

pub struct Status {
    path: String,
    started: Instant,
    started_unix: u64,
    last_write: Option<Instant>,
    armed: bool,
    last_error: Option<(u64, String)>,
    /// Bytes of tunnels that have closed (live ones are counted live).
    closed_in: u64,
    closed_out: u64,
    /// The last write failed; say so once, not every time.
    failing: bool,
}

impl Status {
    pub fn new(path: &str, now: Instant) -> Status {
        Status {
            path: path.to_string(),
            started: now,
            started_unix: unix_now(),
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

    pub fn error(&mut self, text: &str) {
        self.last_error = Some((unix_now(), text.to_string()));
    }

    /// When the next write may happen, if one is not armed yet.
    fn due(&mut self, now: Instant) -> Option<Instant> {
        if self.armed {
            return None;
        }
        self.armed = true;
        Some(self.last_write.map_or(now, |w| (w + MIN_GAP).max(now)))
    }
}

/// Something the status shows has changed: write soon.
pub fn changed(eng: &mut Engine) {
    let now = eng.now;
    if let Some(at) = eng.status.as_mut().and_then(|s| s.due(now)) {
        eng.timers.arm(at, TimerKey::Status);
    }
}

/// The status timer: write the file, and come back while streams run.
pub fn on_timer(eng: &mut Engine, running: bool) {
    let (text, streams) = render(eng, running);
    let now = eng.now;
    let Some(status) = eng.status.as_mut() else {
        return;
    };
    status.armed = false;
    status.last_write = Some(now);
    match write_atomically(&status.path, &text) {
        Ok(()) => status.failing = false,
        Err(e) => {
            if !status.failing {
                warn!("--status_file: cannot write {}: {e}", status.path);
            }
            status.failing = true;
        }
    }
    if running && streams > 0 {
        if let Some(s) = eng.status.as_mut() {
            s.armed = true;
        }
        eng.timers.arm(now + REFRESH, TimerKey::Status);
    }
}

fn write_atomically(path: &str, text: &str) -> std::io::Result<()> {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// A JSON string literal.
pub fn json_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Kite keys as the status file shows them: `proto:domain`.
fn shown(keys: &[crate::proto::kite::KiteKey]) -> Vec<String> {
    keys.iter().map(ToString::to_string).collect()
}

fn json_list(items: &[String]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|i| json_str(i))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Dialing | Phase::ProxyConnect | Phase::AwaitingReply => "connecting",
        Phase::Live => "live",
        Phase::Closing => "closing",
    }
}

/// The status document, and how many streams it counted.
fn render(eng: &mut Engine, running: bool) -> (String, usize) {
    let (started, started_unix, last_error, mut total_in, mut total_out) = match &eng.status {
        Some(s) => (
            s.started,
            s.started_unix,
            s.last_error.clone(),
            s.closed_in,
            s.closed_out,
        ),
        None => (eng.now, unix_now(), None, 0, 0),
    };
    let mut tunnels = Vec::new();
    let mut streams = 0usize;
    let mut live_kites: Vec<(String, String)> = Vec::new();
    for token in eng.conns.tokens() {
        match eng.conns.get_mut(token) {
            Some(Conn::Stream(_)) => streams += 1,
            // A `--frontends` ping is not a tunnel.
            Some(Conn::Tunnel(t)) if matches!(&t.core.side, Side::Backend(i) if i.is_probe()) => {}
            Some(Conn::Tunnel(t)) => {
                let core = &t.core;
                total_in = total_in.saturating_add(core.bytes_in);
                total_out = total_out.saturating_add(core.bytes_out);
                let (kites, frontend) = match &core.side {
                    Side::Frontend(info) => (shown(info.kites()), None),
                    Side::Backend(info) => (
                        shown(info.live()),
                        crate::backend::frontend_name(&eng.role, info),
                    ),
                };
                let place = frontend.clone().unwrap_or_else(|| core.peer.to_string());
                for k in &kites {
                    live_kites.push((k.clone(), place.clone()));
                }
                let rtt = core.keepalive.rtt().map_or("null".to_string(), |d| {
                    format!("{:.2}", d.as_secs_f64() * 1e3)
                });
                let up = core
                    .live_since
                    .map_or(0, |at| eng.now.saturating_duration_since(at).as_secs());
                let mut entry = format!(
                    "{{\"id\": {}, \"peer\": {}, ",
                    json_str(&format!("t{}", tag(token))),
                    json_str(&core.peer.to_string())
                );
                if let Some(fe) = &frontend {
                    let _ = write!(entry, "\"frontend\": {}, ", json_str(fe));
                }
                let _ = write!(
                    entry,
                    "\"state\": \"{}\", \"tls\": {}, \"kites\": {}, \"streams\": {}, \
                     \"bytes_in\": {}, \"bytes_out\": {}, \"rtt_ms\": {rtt}, \"up_s\": {up}}}",
                    phase_name(core.phase),
                    t.transport.is_tls(),
                    json_list(&kites),
                    core.streams.len(),
                    core.bytes_in,
                    core.bytes_out,
                );
                tunnels.push(entry);
            }
            _ => {}
        }
    }
    let kites = match &eng.role {
        Role::Backend(be) => be
            .kite_names()
            .into_iter()
            .map(|(name, local)| {
                let on: Vec<String> = live_kites
                    .iter()
                    .filter(|(k, _)| *k == name)
                    .map(|(_, fe)| fe.clone())
                    .collect();
                format!(
                    "{{\"name\": {}, \"local\": {}, \"state\": \"{}\", \"live_on\": {}}}",
                    json_str(&name),
                    json_str(&local),
                    if on.is_empty() { "down" } else { "live" },
                    json_list(&on)
                )
            })
            // Kites configured with service_off: known, not flown.
            .chain(be.settings().kites_off.iter().map(|k| {
                format!(
                    "{{\"name\": {}, \"local\": {}, \"state\": \"disabled\", \"live_on\": []}}",
                    json_str(&crate::proto::kite::key(&k.id.name(), &k.domain).to_string()),
                    json_str(&k.local.to_string())
                )
            }))
            .collect::<Vec<_>>(),
        Role::Frontend(_) => live_kites
            .iter()
            .map(|(name, peer)| {
                format!(
                    "{{\"name\": {}, \"state\": \"live\", \"backend\": {}}}",
                    json_str(name),
                    json_str(peer)
                )
            })
            .collect(),
    };
    let frontends = match &eng.role {
        Role::Backend(be) => Some(be.slot_status(eng.now)),
        Role::Frontend(_) => None,
    };
    let fleet = crate::backend::fleet_status(eng);
    let mut out = String::with_capacity(1024);
    out.push_str("{\n");
    let _ = writeln!(
        out,
        "  \"version\": {},",
        json_str(env!("CARGO_PKG_VERSION"))
    );
    let _ = writeln!(
        out,
        "  \"role\": \"{}\",",
        if matches!(eng.role, Role::Frontend(_)) {
            "frontend"
        } else {
            "backend"
        }
    );
    let _ = writeln!(out, "  \"pid\": {},", std::process::id());
    let _ = writeln!(out, "  \"running\": {running},");
    let _ = writeln!(out, "  \"started\": {started_unix},");
    let _ = writeln!(out, "  \"updated\": {},", unix_now());
    let _ = writeln!(
        out,
        "  \"uptime_s\": {},",
        eng.now.saturating_duration_since(started).as_secs()
    );
    let _ = writeln!(out, "  \"connections\": {},", eng.conns.len());
    let _ = writeln!(out, "  \"streams\": {streams},");
    let _ = writeln!(out, "  \"bytes_in\": {total_in},");
    let _ = writeln!(out, "  \"bytes_out\": {total_out},");
    let b = eng.pool.stats();
    let _ = writeln!(
        out,
        "  \"buffers\": {{\"budget\": {}, \"held\": {}, \"pooled\": {}, \"peak\": {}, \
         \"allocations\": {}, \"reuses\": {}, \"frees\": {}}},",
        b.budget, b.held, b.pooled, b.peak, b.allocations, b.reuses, b.frees
    );
    match last_error {
        Some((at, text)) => {
            let _ = writeln!(
                out,
                "  \"last_error\": {{\"at\": {at}, \"text\": {}}},",
                json_str(&text)
            );
        }
        None => out.push_str("  \"last_error\": null,\n"),
    }
    if let Some(frontends) = frontends {
        let _ = writeln!(out, "  \"frontends\": [{}],", frontends.join(", "));
    }
    if let Some(fleet) = fleet {
        let _ = writeln!(out, "  \"fleet\": {fleet},");
    }
    let _ = writeln!(out, "  \"kites\": [{}],", kites.join(", "));
    let _ = writeln!(out, "  \"tunnels\": [{}]", tunnels.join(", "));
    out.push_str("}\n");
    (out, streams)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_for_json() {
        assert_eq!(json_str("plain"), "\"plain\"");
        assert_eq!(json_str("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
        assert_eq!(json_list(&["x".into(), "y".into()]), "[\"x\", \"y\"]");
    }

    #[test]
    fn the_engine_pool_is_shown() {
        let args = [
            "--isfrontend",
            "--host=127.0.0.1",
            "--ports=0",
            "--buffers=64",
        ];
        let Ok(crate::config::Parsed::Run(c)) = crate::config::parse(&args.map(String::from))
        else {
            panic!("a frontend configuration");
        };
        let mut eng = Engine::new(*c).expect("an engine");
        let held = eng.pool.take(1);
        eng.pool.take(1).recycle();
        let (text, _) = render(&mut eng, true);
        assert!(
            text.contains(
                "\n  \"buffers\": {\"budget\": 65536, \"held\": 16384, \"pooled\": 16384, \
                 \"peak\": 32768, \"allocations\": 2, \"reuses\": 0, \"frees\": 0},\n"
            ),
            "{text}"
        );
        drop(held);
        drop(eng);
        // Engine::new took over the stop signals for this test process.
        crate::signals::restore_defaults();
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a base instant for the arithmetic
    fn writes_are_spaced_and_armed_once() {
        let t0 = Instant::now();
        let mut s = Status::new("/nonexistent/x", t0);
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
