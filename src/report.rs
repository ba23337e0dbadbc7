//! What the `--status_file` says: a small JSON picture of the process for
//! LuCI, scripts and monitoring (tunnels, kites and their state, streams,
//! bytes each way, round trips, the buffers, the last error, uptime). Read
//! from the connection table and the role when the book's timer fires;
//! when to write and where is the book's (`status`).

use std::fmt::Write as _;

use log::warn;

use crate::app::Role;
use crate::conn::{Conn, Cx};
use crate::engine::{TimerKey, unix_now};
use crate::relay::{Link, Phase, Side, tag};
use crate::status::{REFRESH, json_str, write_atomically};

/// The status timer: write the file, and come back while streams run.
pub fn write(eng: &mut Cx, role: &mut Role, running: bool) {
    let (text, streams) = render(eng, role, running);
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

/// Kite keys as the status file shows them: `proto:domain`.
#[inline(never)]
fn shown(keys: &[crate::proto::kite::KiteKey]) -> Vec<String> {
    keys.iter().map(ToString::to_string).collect()
}

#[inline(never)]
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
        Phase::Dialing | Phase::Proxy | Phase::ProxyConnect | Phase::AwaitingReply => "connecting",
        Phase::Live => "live",
        Phase::Closing => "closing",
    }
}

/// The status document, and how many streams it counted.
#[inline(never)]
fn render(eng: &mut Cx, role: &mut Role, running: bool) -> (String, usize) {
    let c = &eng.counters;
    let (started, started_unix, mut total_in, mut total_out) =
        (c.started, c.started_unix, c.closed_in, c.closed_out);
    let last_error = eng.status.as_ref().and_then(|s| s.last_error.clone());
    let mut tunnels = Vec::new();
    let mut streams = 0usize;
    let mut live_kites: Vec<(String, String)> = Vec::new();
    for token in eng.conns.tokens() {
        match eng.conns.get_mut(token) {
            Some(Conn::Stream(_)) => streams += 1,
            // A `--frontends` ping is not a tunnel.
            Some(Conn::Tunnel(t)) if matches!(&t.side, Side::Backend(i) if i.is_probe()) => {}
            Some(Conn::Tunnel(t)) => {
                let (bytes_in, bytes_out) = t.bytes();
                total_in = total_in.saturating_add(bytes_in);
                total_out = total_out.saturating_add(bytes_out);
                let (kites, frontend) = match &t.side {
                    Side::Frontend(info) => (shown(info.kites()), None),
                    Side::Backend(info) => (
                        shown(info.live()),
                        match &*role {
                            Role::Backend(be) => crate::backend::frontend_name(be, info),
                            Role::Frontend(_) => None,
                        },
                    ),
                };
                let place = frontend.clone().unwrap_or_else(|| t.peer.to_string());
                for k in &kites {
                    live_kites.push((k.clone(), place.clone()));
                }
                let rtt = t
                    .link
                    .as_deref()
                    .and_then(Link::rtt)
                    .map_or("null".to_string(), |d| {
                        format!("{:.2}", d.as_secs_f64() * 1e3)
                    });
                let up = t
                    .live_since
                    .map_or(0, |at| eng.now.saturating_duration_since(at).as_secs());
                let mut entry = format!(
                    "{{\"id\": {}, \"peer\": {}, ",
                    json_str(&format!("t{}", tag(token))),
                    json_str(&t.peer.to_string())
                );
                if let Some(fe) = &frontend {
                    let _ = write!(entry, "\"frontend\": {}, ", json_str(fe));
                }
                let _ = write!(
                    entry,
                    "\"state\": \"{}\", \"tls\": {}, \"kites\": {}, \"streams\": {}, \
                     \"bytes_in\": {}, \"bytes_out\": {}, \"rtt_ms\": {rtt}, \"up_s\": {up}}}",
                    phase_name(t.phase()),
                    t.transport.is_tls(),
                    json_list(&kites),
                    t.stream_count(),
                    bytes_in,
                    bytes_out,
                );
                tunnels.push(entry);
            }
            _ => {}
        }
    }
    let kites = match &*role {
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
    let frontends = match &*role {
        Role::Backend(be) => Some(be.slot_status(eng.now)),
        Role::Frontend(_) => None,
    };
    let fleet = match role {
        Role::Backend(be) => crate::backend::fleet_status(eng, be),
        Role::Frontend(_) => None,
    };
    let dyndns = match role {
        Role::Backend(be) => be.dyndns_status(eng.now),
        Role::Frontend(_) => None,
    };
    let acme = match role {
        Role::Frontend(fe) => fe.acme_summary().map(|a| {
            let names: Vec<String> = a
                .names
                .iter()
                .map(|(n, s)| format!("{{\"name\": {}, \"state\": {}}}", json_str(n), json_str(s)))
                .collect();
            format!(
                "{{\"issued\": {}, \"failed\": {}, \"names\": [{}]}}",
                a.issued,
                a.failed,
                names.join(", ")
            )
        }),
        Role::Backend(_) => None,
    };
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
        if matches!(role, Role::Frontend(_)) {
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
    let p = eng.pipes.stats();
    let mode = match eng.pipes.mode() {
        crate::splice::Mode::On => "on",
        crate::splice::Mode::Off => "off",
        crate::splice::Mode::Refused => "refused",
    };
    let _ = writeln!(
        out,
        "  \"pipes\": {{\"splice\": \"{mode}\", \"open\": {}, \"lent\": {}, \"peak\": {}, \
         \"exhausted\": {}, \"spliced_bytes\": {}}},",
        p.open, p.lent, p.peak, p.exhausted, p.spliced
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
    if let Some(dyndns) = dyndns {
        let _ = writeln!(out, "  \"dyndns\": {dyndns},");
    }
    if let Some(acme) = acme {
        let _ = writeln!(out, "  \"acme\": {acme},");
    }
    if let Role::Frontend(fe) = &*role {
        if !fe.settings().auth_domains.is_empty() {
            let (lookups, failures, hits) = fe.auth_counts();
            let _ = writeln!(
                out,
                "  \"authdomain\": {{\"auth_lookups\": {lookups}, \"auth_failures\": {failures}, \"auth_cache_hits\": {hits}}},"
            );
        }
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
        let mut node = crate::app::Node::new(*c).expect("an engine");
        let eng = &mut node.eng;
        let held = eng.pool.take(1);
        eng.pool.take(1).recycle();
        let (text, _) = render(eng, &mut node.role, true);
        assert!(
            text.contains(
                "\n  \"buffers\": {\"budget\": 65536, \"held\": 16384, \"pooled\": 16384, \
                 \"peak\": 32768, \"allocations\": 2, \"reuses\": 0, \"frees\": 0},\n"
            ),
            "{text}"
        );
        drop(held);
        drop(node);
        // Engine::new took over the stop signals for this test process.
        crate::signals::restore_defaults();
    }
}
