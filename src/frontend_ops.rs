//! A frontend's pagekite.py operator options at run time: the files they
//! name (the motd, the accept ACL file, the overload file, `/proc/loadavg`
//! and `/proc/meminfo`) read when pagekite.py reads them or on SIGHUP, the
//! `ratelimit_ips` table of each tunnel, the overload level and when it is
//! recalculated, and the port aliases. The rules themselves are
//! `proto::operators`'; where they are applied (accept, routing, ping
//! answers, the tunnel reply) is `frontend`'s and `public`'s. Files read
//! here are small and read at most once a second (the ACL file's stamp) or
//! every 20 s (the overload figures), never per connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use log::{info, warn};
use mio::Token;

use super::State;
use crate::config::OperatorSettings;
use crate::conn::Cx;
use crate::logging::escape;
use crate::proto::handshake::{self, KiteAnswer, Prefix};
use crate::proto::kite::KiteKey;
use crate::proto::operators::{
    self, AcceptAcl, AcceptVerdict, Admit, Limiter, Overload, RateLimit, Recalc,
};
use crate::why::Limit;

/// How often the accept ACL file's stamp is looked at (pagekite.py reads
/// the file for every connection; this is as fresh for a person editing it).
const ACCEPT_RECHECK: Duration = Duration::from_secs(1);
/// How often the overload level is recalculated (pagekite.py: every 20th
/// turn of its one-second tunnel manager loop).
const OVERLOAD_PERIOD: Duration = Duration::from_secs(20);
/// A motd or ACL file larger than this is not read (a motd keeps 8192
/// characters; an ACL of this size is a mistake).
const MAX_FILE: u64 = 1 << 20;

/// The accept ACL file as last read.
struct AcceptFile {
    path: String,
    acl: AcceptAcl,
    /// Modification time and length when read (`None`: missing).
    stamp: Option<(SystemTime, u64)>,
    /// When the stamp was last looked at (`None`: not since it was read).
    checked: Option<Instant>,
}

pub struct Ops {
    settings: OperatorSettings,
    /// The motd text backends get (empty: none).
    pub motd: String,
    limiters: HashMap<Token, Limiter>,
    accept: Option<AcceptFile>,
    overload: Overload,
    overload_at: Option<Instant>,
}

impl Ops {
    pub fn new(settings: &OperatorSettings) -> Ops {
        let mut ops = Ops {
            settings: settings.clone(),
            motd: String::new(),
            limiters: HashMap::new(),
            accept: None,
            overload: Overload::new(settings.overload.clone()),
            overload_at: None,
        };
        ops.load_files();
        ops
    }

    /// SIGHUP: the new settings; every file is read again (the overload
    /// file when next asked), the overload level starts over if its
    /// settings changed, and the tunnels' limits
    /// are worked out again from the kites each serves.
    pub fn reload<'a>(
        &mut self,
        new: &OperatorSettings,
        kites: impl Iterator<Item = (&'a KiteKey, Token)>,
    ) {
        if new.overload != self.settings.overload {
            self.overload = Overload::new(new.overload.clone());
        }
        // The overload file is read again at the next question too.
        self.overload_at = None;
        self.settings = new.clone();
        self.load_files();
        let mut by_tunnel: HashMap<Token, Vec<&KiteKey>> = HashMap::new();
        for (kite, token) in kites {
            by_tunnel.entry(token).or_default().push(kite);
        }
        self.limiters.retain(|t, _| by_tunnel.contains_key(t));
        for (token, kites) in by_tunnel {
            self.tunnel_kites(token, kites.into_iter());
        }
    }

    fn load_files(&mut self) {
        self.motd = match &self.settings.motd {
            Some(path) => match read_small(path) {
                Ok(text) => {
                    let motd = operators::motd_from_file(&text);
                    let total = text.trim().chars().count();
                    if total > motd.chars().count() {
                        // pagekite.py's cut, said once.
                        warn!(
                            "--motd {}: {total} characters; only the first {} are sent",
                            escape(path),
                            operators::MOTD_MAX
                        );
                    }
                    motd
                }
                Err(e) => {
                    // pagekite.py keeps what it had; at start that is none.
                    warn!("--motd {}: {e}; keeping the previous one", escape(path));
                    std::mem::take(&mut self.motd)
                }
            },
            None => String::new(),
        };
        self.accept = self.settings.accept_acl_file.as_ref().map(|path| {
            let mut file = AcceptFile {
                path: path.clone(),
                acl: AcceptAcl::default(),
                stamp: None,
                checked: None,
            };
            file.read();
            file
        });
    }

    /// The port a connection to listening port `port` is handled as.
    pub fn port(&self, port: u16) -> u16 {
        self.settings.portalias.map(port)
    }

    /// The ports to report to backends for the listening ports `ports`.
    pub fn reported_ports(&self, ports: impl Iterator<Item = u16>) -> Vec<u16> {
        ports.map(|p| self.port(p)).collect()
    }

    /// A tunnel's kites changed: its `ratelimit_ips` limit follows them
    /// (who it has seen stays counted).
    pub fn tunnel_kites<'a>(&mut self, token: Token, kites: impl Iterator<Item = &'a KiteKey>) {
        let limit = self
            .settings
            .ratelimit_ips
            .for_tunnel(kites.map(|k| k.domain.as_str()));
        match limit {
            Some(limit) => {
                self.limiters
                    .entry(token)
                    .and_modify(|l| l.set_limit(limit))
                    .or_insert_with(|| Limiter::new(limit));
            }
            None => {
                self.limiters.remove(&token);
            }
        }
    }

    /// A tunnel reply head with pagekite.py's `IPsPerSec` for the kites it
    /// accepts, when they have a limit of their own.
    pub fn finish_reply(&self, prefix: Prefix, answers: &[KiteAnswer], reply: String) -> String {
        match self.announced_limit(answers) {
            Some(limit) => {
                handshake::with_last_line(reply, &handshake::ips_per_sec_line(prefix, &limit))
            }
            None => reply,
        }
    }

    /// The same for the lines of an in-band answer.
    pub fn finish_lines(&self, prefix: Prefix, answers: &[KiteAnswer], lines: &mut Vec<String>) {
        if let Some(limit) = self.announced_limit(answers) {
            lines.push(handshake::ips_per_sec_line(prefix, &limit));
        }
    }

    fn announced_limit(&self, answers: &[KiteAnswer]) -> Option<RateLimit> {
        let kites: Vec<KiteKey> = answers
            .iter()
            .filter_map(|a| match a {
                KiteAnswer::Ok { what } => KiteKey::of_answer(what),
                _ => None,
            })
            .collect();
        self.settings
            .ratelimit_ips
            .strictest_own(kites.iter().map(|k| k.domain.as_str()))
    }

    pub fn forget_tunnel(&mut self, token: Token) {
        self.limiters.remove(&token);
    }

    /// Whether `tunnel` has a `--ratelimit_ips` limit (most have none: the
    /// visitor's id is then not even worked out).
    pub fn is_limited(&self, tunnel: Token) -> bool {
        self.limiters.contains_key(&tunnel)
    }

    /// The limiter's verdict on a visitor of `tunnel`, and the limit (for
    /// the log line of a refusal).
    pub fn admit(
        &mut self,
        tunnel: Token,
        client: &str,
        now: Instant,
    ) -> (Admit, Option<RateLimit>) {
        match self.limiters.get_mut(&tunnel) {
            Some(l) => (l.admit(client, now), Some(l.limit())),
            None => (Admit::New, None),
        }
    }

    /// The accept ACL file's verdict on a new connection from `ip` (`None`:
    /// no file is configured). The file is read again if it changed.
    pub fn accept(&mut self, ip: IpAddr, now: Instant) -> Option<AcceptVerdict> {
        let file = self.accept.as_mut()?;
        let due = file
            .checked
            .is_none_or(|at| now.saturating_duration_since(at) >= ACCEPT_RECHECK);
        if due {
            file.checked = Some(now);
            if stamp(&file.path) != file.stamp {
                file.read();
            }
        }
        Some(file.acl.check(&ip.to_string()))
    }

    /// pagekite.py's `Overloaded()` with `load` connections open; the level
    /// is recalculated first if it is due.
    pub fn overloaded(&mut self, load: usize, now: Instant) -> bool {
        if !self.overload.enabled() {
            return false;
        }
        let load = u64::try_from(load).unwrap_or(u64::MAX);
        let due = self
            .overload_at
            .is_none_or(|at| now.saturating_duration_since(at) >= OVERLOAD_PERIOD);
        if due {
            self.overload_at = Some(now);
            self.recalc(load);
        }
        self.overload.overloaded(load)
    }

    fn recalc(&mut self, load: u64) {
        let s = self.overload.settings();
        let file = s
            .file
            .as_ref()
            .and_then(|path| read_small(path).ok())
            .and_then(|text| operators::parse_overload_file(&text));
        let file_path = s.file.clone().unwrap_or_default();
        let system = if file.is_none() && (s.cpu > 0.0 || s.mem > 0.0) {
            let loadavg = std::fs::read_to_string("/proc/loadavg").ok();
            let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
            loadavg
                .as_deref()
                .and_then(operators::parse_loadavg)
                .zip(meminfo.as_deref().and_then(operators::parse_meminfo))
        } else {
            None
        };
        match self.overload.recalc(file, system, load) {
            Some(Recalc::FromFile(level)) => info!(
                "overload level is now {level} (from {})",
                escape(&file_path)
            ),
            Some(Recalc::Dynamic {
                level,
                mem_level,
                cpu_level,
                load,
                munit,
                lunit,
            }) => info!(
                "overload level is now {level} (baseline {}, memory {mem_level}, cpu {cpu_level}; {load} connections, {munit:.0} KiB and {lunit:.4} load each)",
                self.overload.settings().baseline
            ),
            None => {}
        }
    }
}

impl AcceptFile {
    fn read(&mut self) {
        self.stamp = stamp(&self.path);
        let path = escape(&self.path);
        if self.stamp.is_none() {
            // pagekite.py: no file, the default (allow).
            if self.acl.rules() > 0 {
                warn!("--accept_acl_file {path}: gone; every connection is accepted");
            }
            self.acl = AcceptAcl::default();
            return;
        }
        match read_small(&self.path) {
            Ok(text) => {
                self.acl = AcceptAcl::parse(&text);
                match self.acl.broken_at {
                    Some(line) => warn!(
                        "--accept_acl_file {path}: {} rules; line {line} cannot be read, nothing below it counts (as in pagekite.py)",
                        self.acl.rules()
                    ),
                    None => info!("--accept_acl_file {path}: {} rules", self.acl.rules()),
                }
            }
            Err(e) => {
                warn!("--accept_acl_file {path}: {e}; every connection is accepted");
                self.acl = AcceptAcl::default();
            }
        }
    }
}

/// Whether `--accept_acl_file` lets a new connection from `peer` in; a
/// refusal is counted and logged (rate-limited) with the deciding line, and
/// the caller closes the connection without a byte (as pagekite.py does).
pub fn accepts(eng: &mut Cx, fe: &mut State, peer: SocketAddr) -> bool {
    let Some(verdict) = fe.ops.accept(peer.ip(), eng.now) else {
        return true;
    };
    if !verdict.allow {
        let what = format!(
            "a connection from {peer} (line {}: {})",
            verdict.line,
            escape(&verdict.reason)
        );
        eng.refuse(&Limit::Acl("--accept_acl_file"), &what);
    }
    verdict.allow
}

/// pagekite.py's `Overloaded()`: its load is every live connection but the
/// listeners (its `backends_live` plus `selectables_live`).
pub fn overloaded(eng: &Cx, fe: &mut State) -> bool {
    let load = eng.conns.len().saturating_sub(fe.listeners.len());
    fe.ops.overloaded(load, eng.now)
}

fn stamp(path: &str) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// A small text file (at most [`MAX_FILE`] bytes; bytes that are not UTF-8
/// replaced).
fn read_small(path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_FILE} bytes"
        )));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
