//! Option-file text parsed with no side effects, for the fuzz checks and the
//! corpus replay test: while [`parse_text`] runs, no file is read (a nested
//! `optfile`/`optdir` fails as an unreadable file would) and no local server
//! name is resolved (only IP literals pass), so fuzzed input can never reach
//! the filesystem or DNS. It owns that switch and the option-file invariants
//! in [`fuzz_check`]; it does not change what any option means.

use std::cell::Cell;

use super::files::{self, Expanded};
use super::{ConfigError, Parsed, flags};

thread_local! {
    static OFFLINE: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is inside [`parse_text`].
pub(super) fn active() -> bool {
    OFFLINE.with(Cell::get)
}

/// Sets the switch for as long as it lives (also when a check panics), then
/// puts back what was there, so nested uses keep it on.
struct Offline(bool);

impl Offline {
    fn on() -> Offline {
        Offline(OFFLINE.with(|o| o.replace(true)))
    }
}

impl Drop for Offline {
    fn drop(&mut self) {
        OFFLINE.with(|o| o.set(self.0));
    }
}

/// The name the text is given in messages, as if `--optfile=rc` named it.
const NAME: &str = "rc";

fn expand(text: &str) -> Result<Expanded, ConfigError> {
    let _offline = Offline::on();
    let mut out = Expanded::default();
    files::splice(&mut out, NAME, text, 0)?;
    Ok(out)
}

/// Parses `text` as the only option file of an empty command line.
pub fn parse_text(text: &str) -> Result<Parsed, ConfigError> {
    let _offline = Offline::on();
    let expanded = expand(text)?;
    super::parse_expanded(&[], &expanded).map_err(|e| expanded.locate(e))
}

/// Option files from hostile bytes: every invariant below must hold, and
/// nothing may panic.
pub fn fuzz_check(data: &[u8]) {
    // read_to_string refuses what is not UTF-8, so the parser never sees it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines() {
        check_line(line);
    }
    check_split(text);
    check_settings(text);
}

/// One line: its argument is stable when read again, and a line the
/// file checker accepts is one getopts accepts too (else the error for it
/// would come without its file and line).
fn check_line(line: &str) {
    let Some(arg) = files::line_to_arg(line) else {
        return;
    };
    if arg == "END" {
        return;
    }
    assert_eq!(
        files::line_to_arg(&arg).as_deref(),
        Some(arg.as_str()),
        "reading {line:?} again changes it"
    );
    let arg = files::normalize(&arg);
    assert_eq!(files::normalize(&arg), arg, "normalize is not stable");
    if files::check(&arg).is_ok() {
        if let Err(e) = flags::options().parse([arg.as_str()]) {
            panic!("{line:?} passes the line check as {arg:?} but getopts says: {e}");
        }
    }
}

/// Reading a file in two pieces (split at a line) gives the arguments of
/// reading it whole, unless the first piece ends the file with `END`.
fn check_split(text: &str) {
    let whole = expand(text).map(|e| e.args);
    let lines: Vec<&str> = text.lines().collect();
    let stops = |l: &&str| files::line_to_arg(l).as_deref() == Some("END");
    let cuts = crate::fuzz_checks::cut_points(lines.len());
    for cut in cuts {
        let (a, b) = lines.split_at(cut.min(lines.len()));
        if a.iter().any(stops) {
            break;
        }
        let first = expand(&a.join("\n"));
        let second = expand(&b.join("\n"));
        let joined = match (first, second) {
            (Ok(mut a), Ok(b)) => {
                a.args.extend(b.args);
                Ok(a.args)
            }
            (Err(e), _) | (_, Err(e)) => Err(e.0.problem),
        };
        match (&whole, joined) {
            (Ok(w), Ok(j)) => assert_eq!(w, &j, "split at line {cut}"),
            (Err(w), Err(j)) => assert_eq!(w.problem, j, "split at line {cut}"),
            (w, j) => panic!("split at line {cut}: whole {w:?}, in pieces {j:?}"),
        }
    }
}

/// `--settings` writes an option file: reading it back must give the same
/// settings (a fixed point), so what users see is what runs.
fn check_settings(text: &str) {
    // First, because an `END` line stops the reading.
    let with_settings = |t: &str| parse_text(&format!("settings\n{t}"));
    let Ok(Parsed::Run(_)) = parse_text(text) else {
        return;
    };
    let first = match with_settings(text) {
        Ok(Parsed::Settings(s)) => s,
        other => panic!("runs without --settings, but with it: {other:?}"),
    };
    match with_settings(&first) {
        Ok(Parsed::Settings(second)) => assert_eq!(first, second, "settings are not stable"),
        other => panic!("settings {first:?} read back as {other:?}"),
    }
}
