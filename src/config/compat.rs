//! Every option pagekite.py 1.5.2 knows, and what rkite does with those it
//! does not implement: *accepted* (no effect worth having here: UI,
//! packaging, Python tuning, deprecated no-ops), or *refused* with a reason
//! and what to use instead, so an existing command line or `.rc` file never
//! meets "unknown option". Options rkite implements live in `flags`' table.
//! Data only: the parser (`flags`, `files`, `mod`) applies it.

use super::flags::{Table, fields};

/// pagekite.py's options that rkite accepts and ignores, with a value
/// (`name = value`) or without (`None` hint), and why they mean nothing here.
pub(super) const ACCEPTED: Table<(&str, &str, Option<&str>, &str)> = Table {
    text: ACCEPTED_TABLE,
    record: |record| {
        let mut next = fields(record);
        let (short, long, hint) = (next(), next(), next());
        (short, long, (!hint.is_empty()).then_some(hint), next())
    },
};

/// The tables below as `Table`s' strings (see `flags::flag_table!`): a
/// tuple's fields separated by U+001F, a `None` hint empty, a `bool` as its
/// word; U+001E ends each tuple.
macro_rules! accepted_table {
    ($(($short:literal, $long:literal, $hint:ident$(($h:literal))?, $why:literal $(,)?)),+ $(,)?) => {
        concat!($($short, "\u{1f}", $long, "\u{1f}", hint!($hint$(($h))?), "\u{1f}", $why, "\u{1e}",)+)
    };
}

/// An `accepted_table!` hint: `None` or `Some("HINT")`, nothing else
/// compiles.
macro_rules! hint {
    (None) => {
        ""
    };
    (Some($h:literal)) => {
        $h
    };
}

macro_rules! refused_table {
    ($(($short:literal, $long:literal, $value:ident, $why:literal $(,)?)),+ $(,)?) => {
        concat!($($short, "\u{1f}", $long, "\u{1f}", takes_value!($value), "\u{1f}", $why, "\u{1e}",)+)
    };
}

/// A `refused_table!` value flag: `true` or `false`, nothing else compiles.
macro_rules! takes_value {
    (true) => {
        "true"
    };
    (false) => {
        "false"
    };
}

const ACCEPTED_TABLE: &str = accepted_table![
    // (short, long, value hint, why)
    ("", "nopyopenssl", None, "Python TLS library choice"),
    (
        "",
        "nossl",
        None,
        "rkite's TLS is built in and used only where asked for",
    ),
    ("", "friendly", None, "interactive UI"),
    ("", "uiport", Some("PORT"), "pagekite.py's built-in UI"),
    (
        "S",
        "savefile",
        Some("FILE"),
        "rkite never rewrites option files",
    ),
    (
        "",
        "service_xmlrpc",
        Some("URL"),
        "pagekite.net's account service",
    ),
    (
        "",
        "controlpanel",
        None,
        "opens pagekite.net's control panel",
    ),
    (
        "",
        "controlpass",
        None,
        "prints the pagekite.net control-panel secret",
    ),
    ("", "noisfrontend", None, "the default"),
    (
        "",
        "auththreads",
        Some("N"),
        "the relay is single-threaded; --authdomain look-ups run on at most 8 short-lived resolver threads",
    ),
    ("", "noupgradeinfo", None, "pagekite.net upgrade notices"),
    (
        "",
        "upgradeinfo",
        Some("TEXT"),
        "pagekite.net upgrade notices",
    ),
    ("", "tls_legacy", None, "rustls speaks TLS 1.2 and 1.3 only"),
    (
        "",
        "max_read_bytes",
        Some("N"),
        "Python buffer tuning; rkite's memory is set by --buffers",
    ),
    (
        "",
        "select_loop_min_ms",
        Some("MS"),
        "Python select-loop tuning",
    ),
    ("", "noall", None, "the default"),
    (
        "",
        "sslzlib",
        None,
        "rkite offers no compression inside TLS",
    ),
    ("", "loglevel", Some("LEVEL"), "use -v or -q (or RUST_LOG)"),
    (
        "",
        "watchdog",
        Some("SECONDS"),
        "pagekite.py's self-watchdog thread",
    ),
    (
        "",
        "reloadfile",
        Some("FILE"),
        "deprecated; pagekite.py ignores it too",
    ),
    (
        "",
        "delete_backend",
        Some("SPEC"),
        "deprecated; pagekite.py ignores it too",
    ),
    (
        "R",
        "",
        Some("VALUE"),
        "-R is in pagekite.py's list but does nothing there",
    ),
    (
        "",
        "local",
        Some("PORTS"),
        "pagekite.py's local-only mode for its built-in server",
    ),
    ("N", "new", None, "pagekite.py's interactive kite creation"),
    (
        "a",
        "all",
        None,
        "pagekite.py's require-every-frontend mode; rkite keeps a tunnel to each",
    ),
    (
        "",
        "watch",
        Some("LEVEL"),
        "pagekite.py's UI traffic display; see -v and --debugio",
    ),
];

/// pagekite.py's options that rkite refuses: (short, long, takes a value,
/// why, and what to use instead).
pub(super) const REFUSED: Table<(&str, &str, bool, &str)> = Table {
    text: REFUSED_TABLE,
    record: |record| {
        let mut next = fields(record);
        let (short, long, value) = (next(), next(), next());
        (short, long, value == "true", next())
    },
};

const REFUSED_TABLE: &str = refused_table![
    (
        "",
        "shell",
        false,
        "pagekite.py's interactive shell is not part of rkite",
    ),
    (
        "",
        "signup",
        false,
        "pagekite.net sign-up is not part of rkite; create kites with your relay's operator",
    ),
    (
        "",
        "list",
        false,
        "rkite keeps no kite list of its own: use --settings",
    ),
    (
        "",
        "add",
        false,
        "rkite never rewrites option files: add a service_on line to one",
    ),
    (
        "",
        "only",
        false,
        "rkite never rewrites option files: edit the service_on lines",
    ),
    (
        "",
        "disable",
        false,
        "rkite never rewrites option files: change the kite's service_on to service_off",
    ),
    (
        "",
        "remove",
        false,
        "rkite never rewrites option files: delete the kite's service_on line",
    ),
    (
        "",
        "register",
        true,
        "pagekite.net kite registration is not part of rkite",
    ),
    (
        "H",
        "httpd",
        true,
        "the built-in web server listens on no local port: it serves `builtin` kites through the tunnel (see --webpath)",
    ),
    (
        "P",
        "pemfile",
        true,
        "the built-in web server's TLS is not supported: use --tls_endpoint on the frontend",
    ),
    (
        "",
        "selfsign",
        false,
        "make a certificate with openssl and use --tls_endpoint",
    ),
    (
        "",
        "wschunks",
        false,
        "the WebSocket tunnel transport is not supported: tunnels use CONNECT, with TLS if asked",
    ),
];

/// How rkite treats one of pagekite.py's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Implemented,
    Accepted(&'static str),
    Refused(&'static str),
}

/// The status of pagekite.py's long option `name`, if rkite knows it.
pub fn status(name: &str) -> Option<Status> {
    if super::flags::FLAGS.iter().any(|f| f.long == name) {
        return Some(Status::Implemented);
    }
    if super::flags::IGNORED_SWITCHES.contains(&name) {
        return Some(Status::Accepted("means nothing to rkite"));
    }
    if let Some((_, _, _, why)) = ACCEPTED.iter().find(|a| a.1 == name && !name.is_empty()) {
        return Some(Status::Accepted(why));
    }
    REFUSED
        .iter()
        .find(|r| r.1 == name)
        .map(|(_, _, _, why)| Status::Refused(why))
}

/// The status of pagekite.py's short option `letter`.
pub fn short_status(letter: &str) -> Option<Status> {
    if let Some(f) = super::flags::FLAGS.iter().find(|f| f.short == letter) {
        return status(f.long);
    }
    if let Some(a) = ACCEPTED
        .iter()
        .find(|a| a.0 == letter && !letter.is_empty())
    {
        return Some(Status::Accepted(a.3));
    }
    REFUSED
        .iter()
        .find(|r| r.0 == letter && !letter.is_empty())
        .map(|r| Status::Refused(r.3))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// pagekite.py 1.5.2's `OPT_FLAGS` and `OPT_ARGS` (pk.py), as shipped.
    pub(crate) const OPT_FLAGS: &str = "o:O:S:H:P:X:L:ZI:fA:R:h:p:aD:U:NE:";
    pub(crate) const OPT_ARGS: &[&str] = &[
        "noloop",
        "clean",
        "nopyopenssl",
        "nossl",
        "nocrashreport",
        "nullui",
        "remoteui",
        "uiport=",
        "help",
        "settings",
        "optfile=",
        "optdir=",
        "savefile=",
        "friendly",
        "shell",
        "signup",
        "list",
        "add",
        "only",
        "disable",
        "remove",
        "save",
        "service_xmlrpc=",
        "controlpanel",
        "controlpass",
        "httpd=",
        "pemfile=",
        "httppass=",
        "errorurl=",
        "webpath=",
        "logfile=",
        "daemonize",
        "nodaemonize",
        "runas=",
        "pidfile=",
        "isfrontend",
        "noisfrontend",
        "settings",
        "defaults",
        "whitelabel=",
        "whitelabels=",
        "local=",
        "domain=",
        "auththreads=",
        "authdomain=",
        "authfail_closed",
        "motd=",
        "register=",
        "host=",
        "noupgradeinfo",
        "upgradeinfo=",
        "ports=",
        "protos=",
        "portalias=",
        "rawports=",
        "tls_legacy",
        "tls_default=",
        "tls_endpoint=",
        "selfsign",
        "fe_certname=",
        "fe_nocertcheck",
        "ca_certs=",
        "kitename=",
        "kitesecret=",
        "backend=",
        "define_backend=",
        "be_config=",
        "insecure",
        "ratelimit_ips=",
        "max_read_bytes=",
        "select_loop_min_ms=",
        "service_on=",
        "service_off=",
        "service_cfg=",
        "tunnel_acl=",
        "client_acl=",
        "accept_acl_file=",
        "frontend=",
        "nofrontend=",
        "frontends=",
        "keepalive=",
        "torify=",
        "socksify=",
        "proxy=",
        "noproxy",
        "new",
        "all",
        "noall",
        "dyndns=",
        "nozchunks",
        "sslzlib",
        "wschunks",
        "buffers=",
        "noprobes",
        "debugio",
        "watch=",
        "loglevel=",
        "watchdog=",
        "overload=",
        "overload_cpu=",
        "overload_mem=",
        "overload_file=",
        "reloadfile=",
        "autosave",
        "noautosave",
        "webroot=",
        "webaccess=",
        "webindexes=",
        "delete_backend=",
    ];

    #[test]
    fn every_pagekite_option_has_a_status() {
        let mut missing = Vec::new();
        for arg in OPT_ARGS {
            let name = arg.trim_end_matches('=');
            if status(name).is_none() {
                missing.push(format!("--{name}"));
            }
        }
        for letter in OPT_FLAGS.chars().filter(|c| *c != ':') {
            if short_status(&letter.to_string()).is_none() {
                missing.push(format!("-{letter}"));
            }
        }
        assert!(missing.is_empty(), "no status for {missing:?}");
        // Nothing is listed twice, and nothing rkite implements is also
        // accepted or refused.
        let mut names: Vec<&str> = ACCEPTED
            .iter()
            .map(|a| a.1)
            .chain(REFUSED.iter().map(|r| r.1))
            .filter(|n| !n.is_empty())
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "listed twice");
        for name in names {
            assert!(
                !super::super::flags::FLAGS.iter().any(|f| f.long == name),
                "{name} is implemented and listed"
            );
        }
    }

    /// The README's option table and its counts are this data, written out:
    /// the test fails when they differ, and `RKITE_BLESS=1 cargo test --lib
    /// readme_table` rewrites them.
    #[test]
    fn readme_table() {
        let mut table = String::new();
        let shorts: Vec<char> = OPT_FLAGS.chars().filter(|c| *c != ':').collect();
        let mut counts = [0; 3];
        let mut seen = Vec::new();
        for arg in OPT_ARGS {
            let name = arg.trim_end_matches('=');
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            let short = shorts.iter().find(|c| {
                let letter = c.to_string();
                super::super::flags::FLAGS
                    .iter()
                    .any(|f| f.long == name && f.short == letter)
                    || ACCEPTED.iter().any(|a| a.1 == name && a.0 == letter)
                    || REFUSED.iter().any(|r| r.1 == name && r.0 == letter)
            });
            let short = short.map(|c| format!(", `-{c}`")).unwrap_or_default();
            let (status, note) = match status(name) {
                Some(Status::Implemented) => ("implemented", "see Flags"),
                Some(Status::Accepted(why)) => ("accepted", why),
                Some(Status::Refused(why)) => ("refused", why),
                None => ("?", "?"),
            };
            counts[match status {
                "implemented" => 0,
                "accepted" => 1,
                _ => 2,
            }] += 1;
            table.push_str(&format!("| `--{name}`{short} | {status} | {note} |\n"));
        }
        table.push_str(&format!(
            "| `-R` | accepted | {} |\n",
            ACCEPTED.iter().find(|a| a.0 == "R").map_or("", |a| a.3)
        ));
        counts[1] += 1;
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let wanted = readme_with(&readme, &table, counts).unwrap();
        if std::env::var_os("RKITE_BLESS").is_some() {
            std::fs::write(path, &wanted).unwrap();
            return;
        }
        assert!(
            readme == wanted,
            "README.md's option table is stale: run RKITE_BLESS=1 cargo test --lib readme_table"
        );
    }

    /// `readme` with the table after its header row and the three counts in
    /// the paragraph above replaced.
    fn readme_with(readme: &str, table: &str, counts: [usize; 3]) -> Option<String> {
        let head = "| option | status | note |\n|---|---|---|\n";
        let start = readme.find(head)? + head.len();
        let end = start + readme[start..].find("\n\n")? + 1;
        let mut out = format!("{}{table}{}", &readme[..start], &readme[end..]);
        for (word, n) in ["implemented", "accepted", "refused"].iter().zip(counts) {
            let at = out.find(&format!("**{word}** ("))? + word.len() + 6;
            let close = at + out[at..].find(')')?;
            out.replace_range(at..close, &n.to_string());
        }
        Some(out)
    }
}
