//! Log set-up: env_logger writing one line per event to stderr (or a file),
//! `RUST_LOG` taking precedence over -v/-q/--debugio. Lines carry a UTC
//! timestamp and the level; the connection context is part of each message.

use std::io::Write;

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
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("--logfile: cannot open {path}: {e}"))?;
        builder.target(Target::Pipe(Box::new(file)));
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
