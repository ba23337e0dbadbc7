//! Option files in pagekite.py's format (`--optfile`/`-o`, `--optdir`/`-O`):
//! one option per line without the leading `--`, `name = value` or a bare
//! switch, `#` comments, blank lines, `END` to stop reading. A file is read
//! where it is named, so flags after it override it and flags before it are
//! overridden, exactly as pagekite.py combines them. Every line is checked
//! against the flag table here, so a bad line is reported with its file and
//! line number. Reads files (none while `offline` parses text for the fuzz
//! checks); knows nothing of what the options mean.

use super::flags::{self, Kind};
use super::{ConfigError, bad_fmt};

/// pagekite.py's limit on option files naming option files.
const MAX_DEPTH: usize = 25;

/// The command line with every option file spliced in, and where each
/// argument came from (for error messages).
#[derive(Debug, Default)]
pub(super) struct Expanded {
    pub args: Vec<String>,
    /// `FILE:LINE` for arguments read from a file, None for the command line.
    pub origins: Vec<Option<String>>,
    /// Every option file read, in order.
    pub files: Vec<String>,
}

impl Expanded {
    fn push(&mut self, arg: String, origin: Option<String>) {
        self.args.push(arg);
        self.origins.push(origin);
    }

    /// Puts the file and line of the argument an error is about in front of
    /// it: the one whose value the message quotes, else the last one of the
    /// flag (the one that wins).
    #[inline(never)]
    pub fn locate(&self, mut err: ConfigError) -> ConfigError {
        if err.flag.is_empty() || err.origin.is_some() {
            return err;
        }
        let prefix = format!("--{}=", err.flag);
        let candidates: Vec<(usize, &str)> = self
            .args
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.strip_prefix(&prefix).map(|v| (i, v)))
            .collect();
        let quoted = candidates
            .iter()
            .rev()
            .find(|(_, v)| !v.is_empty() && err.problem.contains(v));
        let at = quoted.or(candidates.last()).map(|(i, _)| *i);
        if let Some(origin) = at.and_then(|i| self.origins.get(i).cloned().flatten()) {
            err.origin = Some(origin);
        }
        err
    }
}

/// Spells `--service-on` as `--service_on`, leaving values alone.
pub(super) fn normalize(arg: &str) -> String {
    match arg.strip_prefix("--") {
        Some(rest) if !rest.is_empty() => {
            let (name, value) = match rest.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (rest, None),
            };
            let name = name.replace('-', "_");
            match value {
                Some(v) => format!("--{name}={v}"),
                None => format!("--{name}"),
            }
        }
        _ => arg.to_string(),
    }
}

/// Which file-reading flag an argument is, with its value if attached.
enum FileFlag {
    File,
    Dir,
}

fn file_flag(arg: &str) -> Option<(FileFlag, Option<String>)> {
    let pick = |name: &str| match name {
        "optfile" => Some(FileFlag::File),
        "optdir" => Some(FileFlag::Dir),
        _ => None,
    };
    if let Some(rest) = arg.strip_prefix("--") {
        return match rest.split_once('=') {
            Some((n, v)) => pick(n).map(|f| (f, Some(v.to_string()))),
            None => pick(rest).map(|f| (f, None)),
        };
    }
    let rest = arg.strip_prefix('-')?;
    let (letter, value) = rest.split_at_checked(1)?;
    let flag = match letter {
        "o" => FileFlag::File,
        "O" => FileFlag::Dir,
        _ => return None,
    };
    Some((flag, (!value.is_empty()).then(|| value.to_string())))
}

/// Splices option files into the command line.
#[inline(never)]
pub(super) fn expand(args: &[String]) -> Result<Expanded, ConfigError> {
    let mut out = Expanded::default();
    let mut i = 0;
    while i < args.len() {
        let arg = normalize(&args[i]);
        i += 1;
        if arg == "--" {
            // Everything after `--` is free arguments, as getopts sees it.
            out.push(arg, None);
            for rest in &args[i..] {
                out.push(rest.clone(), None);
            }
            break;
        }
        match file_flag(&arg) {
            Some((flag, value)) => {
                let value = match value {
                    Some(v) => v,
                    None => {
                        let v = args.get(i).cloned().ok_or_else(|| {
                            bad_fmt("", format_args!("{arg} needs a file or directory name"))
                        })?;
                        i += 1;
                        v
                    }
                };
                read_flag(&mut out, flag, &value, 0)?;
            }
            None => out.push(arg, None),
        }
    }
    Ok(out)
}

fn read_flag(
    out: &mut Expanded,
    flag: FileFlag,
    path: &str,
    depth: usize,
) -> Result<(), ConfigError> {
    match flag {
        FileFlag::File => read_file(out, path, depth),
        FileFlag::Dir if super::offline::active() => Err(bad_fmt(
            "optdir",
            format_args!("cannot read {path}: offline"),
        )),
        FileFlag::Dir => {
            let entries = std::fs::read_dir(path)
                .map_err(|e| bad_fmt("optdir", format_args!("cannot read {path}: {e}")))?;
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.') && n.ends_with(".rc"))
                .collect();
            names.sort();
            for name in names {
                read_file(
                    out,
                    &format!("{}/{name}", path.trim_end_matches('/')),
                    depth,
                )?;
            }
            Ok(())
        }
    }
}

fn read_file(out: &mut Expanded, path: &str, depth: usize) -> Result<(), ConfigError> {
    if depth >= MAX_DEPTH {
        return Err(bad_fmt(
            "optfile",
            format_args!("{path}: option files nested more than {MAX_DEPTH} deep"),
        ));
    }
    if super::offline::active() {
        return Err(bad_fmt(
            "optfile",
            format_args!("cannot read {path}: offline"),
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad_fmt("optfile", format_args!("cannot read {path}: {e}")))?;
    splice(out, path, &text, depth)
}

/// Splices the lines of option file `path`, whose contents are `text`, into
/// `out`; option files it names are read at `depth + 1`.
#[inline(never)]
pub(super) fn splice(
    out: &mut Expanded,
    path: &str,
    text: &str,
    depth: usize,
) -> Result<(), ConfigError> {
    out.files.push(path.to_string());
    for (n, raw) in text.lines().enumerate() {
        let at = format!("{path}:{}", n + 1);
        let Some(arg) = line_to_arg(raw) else {
            continue;
        };
        if arg == "END" {
            break;
        }
        let arg = normalize(&arg);
        if arg == "--abort_not_configured" {
            // Debian's account file ships with this line: stop here, before
            // later files (its `defaults`) are even looked at.
            return Err(ConfigError::new(
                "abort_not_configured".into(),
                super::NOT_CONFIGURED.into(),
                Some(at),
            ));
        }
        check(&arg).map_err(|problem| {
            ConfigError::new(String::new(), problem.to_string(), Some(at.clone()))
        })?;
        match file_flag(&arg) {
            Some((flag, Some(value))) => read_flag(out, flag, &value, depth + 1)?,
            _ => out.push(arg, Some(at)),
        }
    }
    Ok(())
}

/// One line of an option file as a command-line argument, as pagekite.py
/// reads it: trimmed, `--` added unless the line starts with `-`, and blanks
/// around `=` and `:` removed. None for blank lines and comments.
pub(super) fn line_to_arg(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    if line.starts_with("END") {
        return Some("END".to_string());
    }
    let mut arg = String::with_capacity(line.len() + 2);
    if !line.starts_with('-') {
        arg.push_str("--");
    }
    arg.push_str(&squeeze_around(line, &['=', ':']));
    Some(arg)
}

/// Removes whitespace on both sides of each of `marks`.
#[inline(never)]
fn squeeze_around(text: &str, marks: &[char]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut after_mark = false;
    for c in text.chars() {
        if marks.contains(&c) {
            out.truncate(out.trim_end().len());
            out.push(c);
            after_mark = true;
        } else if c.is_whitespace() && after_mark {
            continue;
        } else {
            after_mark = false;
            out.push(c);
        }
    }
    out
}

/// What is wrong with one option-file line (the flag as written).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LineError {
    /// pagekite.py has this flag; rkite refuses it, for this reason.
    Refused(String, &'static str),
    Unknown(String),
    NoValue(String),
    /// The flag and the hint for its value.
    NeedsValue(String, &'static str),
    NotAnOption(String),
    /// A short flag without its value on the same line.
    ShortNeedsValue(String),
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::Refused(name, why) => write!(f, "{name}: refused: {why}"),
            LineError::Unknown(name) => write!(f, "unknown option {name:?}"),
            LineError::NoValue(name) => write!(f, "{name} takes no value"),
            LineError::NeedsValue(name, hint) => {
                write!(f, "{name} needs a value ({name} = {hint})")
            }
            LineError::NotAnOption(arg) => write!(f, "{arg:?} is not an option"),
            LineError::ShortNeedsValue(arg) => write!(f, "{arg} needs a value on the same line"),
        }
    }
}

/// Whether one option-file argument names a known flag used the right way.
#[inline(never)]
pub(super) fn check(arg: &str) -> Result<(), LineError> {
    if let Some(rest) = arg.strip_prefix("--") {
        let (name, value) = match rest.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (rest, None),
        };
        if let Some(super::compat::Status::Refused(why)) = super::compat::status(name) {
            return Err(LineError::Refused(name.to_string(), why));
        }
        return match (flags::lookup(name), value) {
            (None, _) => Err(LineError::Unknown(name.to_string())),
            (Some(Kind::Switch), Some(_)) => Err(LineError::NoValue(name.to_string())),
            (Some(Kind::Value(hint) | Kind::Multi(hint)), None | Some("")) => {
                Err(LineError::NeedsValue(name.to_string(), hint))
            }
            _ => Ok(()),
        };
    }
    // A short flag such as `-v` or `-p80`.
    let letters = arg.strip_prefix('-').unwrap_or(arg);
    let (letter, value) = letters
        .split_at_checked(1)
        .ok_or_else(|| LineError::NotAnOption(arg.to_string()))?;
    if let Some(super::compat::Status::Refused(why)) = super::compat::short_status(letter) {
        return Err(LineError::Refused(format!("-{letter}"), why));
    }
    match flags::short_kind(letter) {
        None => Err(LineError::Unknown(arg.to_string())),
        Some(Kind::Switch) if !value.is_empty() => {
            // Bundled switches such as `-vv`.
            let all_switches = value.chars().all(|c| {
                flags::lookup_short(c.encode_utf8(&mut [0; 4]))
                    .is_some_and(|f| f.kind == Kind::Switch)
            });
            if all_switches {
                Ok(())
            } else {
                Err(LineError::Unknown(arg.to_string()))
            }
        }
        Some(Kind::Value(_) | Kind::Multi(_)) if value.is_empty() => {
            Err(LineError::ShortNeedsValue(arg.to_string()))
        }
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
