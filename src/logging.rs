//! Log set-up: env_logger writing one line per event to stderr (or a file),
//! `RUST_LOG` taking precedence over -v/-q/--debugio. Lines carry a UTC
//! timestamp and the level; the connection context is part of each message.
//! A `--logfile` is opened again on SIGHUP, so logrotate can move it away.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

use env_logger::{Builder, Target};
use log::LevelFilter;

use crate::config::{Config, LogLevel};

pub fn init(config: &Config) -> Result<(), String> {
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
        let file = open(path).map_err(|e| format!("--logfile: cannot open {path}: {e}"))?;
        if let Ok(mut slot) = LOG_FILE.lock() {
            *slot = Some((path.clone(), file));
        }
        builder.target(Target::Pipe(Box::new(LogFile)));
    }
    builder.format(|out, record| {
        writeln!(
            out,
            "{} {:<5} {}",
            timestamp(),
            record.level(),
            record.args()
        )
    });
    builder.try_init().map_err(|e| e.to_string())
}

/// The `--logfile` and its path, shared by the logger and [`reopen`].
static LOG_FILE: Mutex<Option<(String, File)>> = Mutex::new(None);

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
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_779), (2026, 11, 22));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
