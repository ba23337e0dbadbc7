//! Log set-up: env_logger writing one line per event to stderr (or a file),
//! `RUST_LOG` taking precedence over -v/-q/--debugio. Lines carry a UTC
//! timestamp and the level; the connection context is part of each message.
//! A `--logfile` is opened again on SIGHUP, so logrotate can move it away.
//!
//! It also owns the two defences against a peer writing the log: every line
//! goes out through [`escape`], so bytes a peer sent (versions, kite names,
//! hosts, reasons) can't inject CR/LF, ANSI sequences or bidi overrides, and
//! [`noisy`] rate-limits each kind of line ([`Noise`]) a peer can repeat.
//! It does not decide what is logged or when; the roles do.

use std::cell::RefCell;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use env_logger::{Builder, Target};
use log::LevelFilter;

use crate::config::{LogLevel, ProcessSettings};

/// Why logging could not be set up (the process then exits).
#[derive(Debug)]
pub enum LogError {
    /// The `--logfile` (this path) cannot be opened.
    Open(String, std::io::Error),
    /// A logger is already installed.
    Installed(log::SetLoggerError),
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Open(path, e) => write!(f, "--logfile: cannot open {path}: {e}"),
            LogError::Installed(e) => write!(f, "{e}"),
        }
    }
}

#[inline(never)]
pub fn init(config: &ProcessSettings) -> Result<(), LogError> {
    let mut builder = Builder::new();
    let level = match config.log_level {
        LogLevel::Quiet => LevelFilter::Warn,
        LogLevel::Normal => LevelFilter::Info,
        LogLevel::Verbose => LevelFilter::Debug,
        LogLevel::Trace => LevelFilter::Trace,
    };
    builder.filter_level(level);
    if config.debug_io {
        builder.filter_module("rkite::relay", LevelFilter::Trace);
    }
    if let Ok(spec) = std::env::var("RUST_LOG") {
        builder.parse_filters(&spec);
    }
    if let Some(path) = &config.logfile {
        let file = open(path).map_err(|e| LogError::Open(path.clone(), e))?;
        if let Ok(mut slot) = LOG_FILE.lock() {
            *slot = Some((path.clone(), file));
        }
        builder.target(Target::Pipe(Box::new(LogFile)));
    }
    builder.format(|out, record| {
        write!(out, "{} {:<5} ", timestamp(), record.level())?;
        // Through the escaper: whatever a message embeds stays on its line.
        let mut esc = EscapeTo { out, error: None };
        if fmt::write(&mut esc, *record.args()).is_err() {
            return Err(esc
                .error
                .unwrap_or_else(|| std::io::Error::other("formatting failed")));
        }
        writeln!(out)
    });
    builder.try_init().map_err(LogError::Installed)
}

/// The `--logfile` and its path, shared by the logger and [`reopen`].
static LOG_FILE: Mutex<Option<(String, File)>> = Mutex::new(None);

#[inline(never)]
fn open(path: &str) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Writes to whatever file [`LOG_FILE`] holds now.
struct LogFile;

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match LOG_FILE.lock() {
            Ok(mut slot) => match slot.as_mut() {
                Some((_, file)) => file.write(buf),
                None => Ok(buf.len()),
            },
            Err(_) => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match LOG_FILE.lock() {
            Ok(mut slot) => slot.as_mut().map_or(Ok(()), |(_, f)| f.flush()),
            Err(_) => Ok(()),
        }
    }
}

/// Opens the `--logfile` again (after logrotate moved it). Keeps the old
/// one when the new cannot be opened.
pub fn reopen() {
    let Ok(mut slot) = LOG_FILE.lock() else {
        return;
    };
    let Some((path, _)) = slot.as_ref() else {
        return;
    };
    let path = path.clone();
    match open(&path) {
        Ok(file) => *slot = Some((path, file)),
        Err(e) => {
            drop(slot);
            log::warn!("--logfile: cannot open {path} again: {e}; still writing to the old file");
        }
    }
}

/// Kinds of log line a remote peer can cause, each with its own throttle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Noise {
    /// Refused for the connection limit.
    ConnLimit,
    /// Refused for the buffer budget.
    BufferBudget,
    /// Refused for the per-IP limit.
    PerIpLimit,
    /// Refused by `--client_acl` / `--tunnel_acl`.
    AccessList,
    /// New work refused while shutting down.
    Stopping,
    /// A tunnel request that does not parse.
    BadTunnelRequest,
    /// A tunnel request none of whose kites was accepted at once.
    UnauthenticatedTunnel,
    /// A kite a frontend rejected (signature, unknown domain, protocol, port).
    KiteRejected,
    /// A kite rejected as held by another tunnel.
    KiteDuplicate,
    /// A tunnel closed for too many in-band kite rounds.
    InBandRounds,
    /// A tunnel that took over another one (X-PageKite-Replace).
    Replaced,
    /// A kite a frontend told this backend it rejected.
    RejectedByFrontend,
    /// A public connection closed or answered with an error page (nothing
    /// recognisable, no kite, TLS failure, bad request).
    Visitor,
    /// A stream a backend refuses (no kite, IP list, credentials, filter).
    StreamRefused,
    /// A stream that failed (local server, rewriting, protocol).
    StreamFailed,
    /// No pipe to be had for splicing (descriptors exhausted).
    Pipes,
}

impl Noise {
    const COUNT: usize = Noise::Pipes as usize + 1;
}

/// Rate limit for one kind of line: up to [`Throttle::BURST`] lines per
/// [`Throttle::PERIOD`], then silence with a count that the next line
/// reports.
#[derive(Default)]
pub struct Throttle {
    period_start: Option<Instant>,
    sent: u32,
    suppressed: u64,
}

impl Throttle {
    const PERIOD: Duration = Duration::from_secs(10);
    /// Enough for a few legitimate events to show in full.
    const BURST: u32 = 5;

    /// Some(number suppressed since the last line) when a line may go out.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .period_start
            .is_none_or(|start| now.saturating_duration_since(start) >= Self::PERIOD);
        if fresh {
            self.period_start = Some(now);
            self.sent = 0;
        }
        if self.sent >= Self::BURST {
            self.suppressed += 1;
            return None;
        }
        self.sent += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

thread_local! {
    /// One [`Throttle`] per [`Noise`], for the reactor's thread (the only
    /// one that logs what peers cause).
    static THROTTLES: RefCell<[Throttle; Noise::COUNT]> = RefCell::new(Default::default());
}

/// Logs `line` at `level` unless its kind is over its rate; the first line
/// after a quiet spell says how many were left out. For every line a remote
/// peer can make us repeat.
pub fn noisy(now: Instant, kind: Noise, level: log::Level, line: fmt::Arguments<'_>) {
    let allowed = THROTTLES.with(|t| {
        t.borrow_mut()
            .get_mut(kind as usize)
            .and_then(|throttle| throttle.allow(now))
    });
    match allowed {
        Some(0) => log::log!(level, "{line}"),
        Some(n) => log::log!(level, "{line} ({n} more such lines left out)"),
        None => {}
    }
}

/// `s` for a log line: control characters (C0, DEL, C1), and the Unicode
/// format characters that reorder or hide text, written as `\r`, `\x1b`,
/// `\u{202e}`. Printable text, including non-ASCII, is left as is, and so
/// are backslashes (our own lines quote ACL regexes): a peer's literal
/// `\x1b` then reads like an escaped one, which is harmless. Every
/// log line is written through this (see [`init`]); call it directly to
/// escape peer text that goes elsewhere.
pub fn escape(s: &str) -> Escaped<'_> {
    Escaped(s)
}

/// Peer bytes that are not UTF-8, escaped the same way (invalid bytes as
/// `\xNN`).
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(&escape(chunk.valid()).to_string());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// See [`escape`].
pub struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0)
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

fn write_escaped(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    let mut rest = s;
    while let Some(at) = rest.find(needs_escape) {
        let (plain, tail) = rest.split_at(at);
        out.write_str(plain)?;
        let mut chars = tail.chars();
        let Some(c) = chars.next() else {
            return Ok(());
        };
        match c {
            '\r' => out.write_str("\\r")?,
            '\n' => out.write_str("\\n")?,
            '\t' => out.write_str("\\t")?,
            c if u32::from(c) < 0x100 => write!(out, "\\x{:02x}", u32::from(c))?,
            c => write!(out, "\\u{{{:x}}}", u32::from(c))?,
        }
        rest = chars.as_str();
    }
    out.write_str(rest)
}

/// A `fmt::Write` that escapes into an `io::Write` (the log line), keeping
/// the I/O error for the caller.
struct EscapeTo<'a, W: Write> {
    out: &'a mut W,
    error: Option<std::io::Error>,
}

impl<W: Write> fmt::Write for EscapeTo<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        struct Plain<'b, W: Write>(&'b mut W, &'b mut Option<std::io::Error>);
        impl<W: Write> fmt::Write for Plain<'_, W> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0.write_all(s.as_bytes()).map_err(|e| {
                    *self.1 = Some(e);
                    fmt::Error
                })
            }
        }
        write_escaped(&mut Plain(self.out, &mut self.error), s)
    }
}

/// `2026-11-22T00:10:00.123Z`, computed here because env_logger's own
/// timestamps need a feature this build leaves out.
fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// well-known algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests need a base instant
mod tests {
    use super::*;

    #[test]
    fn escapes_control_and_format_characters_only() {
        assert_eq!(
            escape("a\rb\nc\u{1b}[31m\u{9b}\u{202e}é\\x").to_string(),
            "a\\rb\\nc\\x1b[31m\\x9b\\u{202e}é\\x"
        );
        assert_eq!(escape_bytes(b"ok\xff\x07"), "ok\\xff\\x07");
        let mut out = Vec::new();
        let mut esc = EscapeTo {
            out: &mut out,
            error: None,
        };
        fmt::write(&mut esc, format_args!("v={}", "1\r\n2")).expect("write");
        assert_eq!(out, b"v=1\\r\\n2");
    }

    #[test]
    fn a_throttle_lets_a_burst_through_then_counts() {
        let start = Instant::now();
        let mut t = Throttle::default();
        for _ in 0..Throttle::BURST {
            assert_eq!(t.allow(start), Some(0));
        }
        assert_eq!(t.allow(start), None);
        assert_eq!(t.allow(start + Duration::from_secs(9)), None);
        assert_eq!(t.allow(start + Throttle::PERIOD), Some(2));
        assert_eq!(t.allow(start + Throttle::PERIOD), Some(0));
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_779), (2026, 11, 22));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
