//! `--settings`: the effective configuration written back as an option file
//! (the format `--optfile` reads), after the command line and every option
//! file have been combined, so a user can see what rkite will actually run
//! with. Secrets are masked; nothing else is changed or invented.

use super::flags::{FLAGS, Kind};

const MASK: &str = "********";

/// Flags that steer the parsing itself rather than the service.
const NOT_SETTINGS: &[&str] = &[
    "optfile", "optdir", "settings", "help", "version", "connect",
];

pub(super) fn render(m: &getopts::Matches, files: &[String]) -> String {
    let mut out = format!(
        "# rkite {}: effective settings (secrets masked)\n",
        env!("CARGO_PKG_VERSION")
    );
    if files.is_empty() {
        out.push_str("# from the command line only\n");
    } else {
        out.push_str("# from the command line and:\n");
        for f in files {
            out.push_str(&format!("#   {f}\n"));
        }
    }
    for flag in FLAGS.iter().filter(|f| !NOT_SETTINGS.contains(&f.long)) {
        match flag.kind {
            Kind::Switch => {
                // Only -v counts (-vv is more than -v); other switches are on or off.
                let most = if flag.long == "verbose" { 2 } else { 1 };
                for _ in 0..m.opt_count(flag.long).min(most) {
                    out.push_str(flag.long);
                    out.push('\n');
                }
            }
            Kind::Value(_) => {
                if let Some(v) = m.opt_strs(flag.long).pop() {
                    out.push_str(&format!("{} = {}\n", flag.long, mask(flag.long, &v)));
                }
            }
            Kind::Multi(_) => {
                for v in m.opt_strs(flag.long) {
                    out.push_str(&format!("{} = {}\n", flag.long, mask(flag.long, &v)));
                }
            }
        }
    }
    if !m.free.is_empty() {
        out.push_str(&format!(
            "# kites in pagekite.py's short form, command line only: {}\n",
            m.free.join(" ")
        ));
    }
    out
}

/// A flag's value with any secret in it replaced by [`MASK`].
pub(super) fn mask(flag: &str, value: &str) -> String {
    let fields: Vec<&str> = value.split(':').collect();
    let secret_field = match (flag, fields.len()) {
        ("kitesecret", _) => return MASK.to_string(),
        ("domain", 3) => Some(2),
        ("service_on" | "backend" | "service_off" | "define_backend", 5) => Some(4),
        // DOMAIN/PORT:password/USER:PASSWORD, and the password may hold `:`.
        ("be_config" | "service_cfg", n) if n >= 3 && fields[1].starts_with("password/") => Some(2),
        _ => None,
    };
    match secret_field {
        Some(i) => {
            let mut kept: Vec<&str> = fields.iter().take(i).copied().collect();
            kept.push(MASK);
            kept.join(":")
        }
        None => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_kind_of_secret() {
        assert_eq!(
            mask("domain", "http:*.x.test:s3cret"),
            "http:*.x.test:********"
        );
        assert_eq!(
            mask("service_on", "http:foo.test:localhost:80:pw"),
            "http:foo.test:localhost:80:********"
        );
        assert_eq!(
            mask("backend", "http:foo.test:localhost:80"),
            "http:foo.test:localhost:80"
        );
        assert_eq!(mask("kitesecret", "pw"), MASK);
        assert_eq!(
            mask("be_config", "foo.test/80:password/bob:hunter2"),
            "foo.test/80:password/bob:********"
        );
        assert_eq!(
            mask("be_config", "foo.test/80:password/bob:pa:ss=word"),
            "foo.test/80:password/bob:********"
        );
        assert_eq!(
            mask("be_config", "foo.test/80:ip/10.0.0.0/8:True"),
            "foo.test/80:ip/10.0.0.0/8:True"
        );
        assert_eq!(mask("ports", "80,443"), "80,443");
    }
}
