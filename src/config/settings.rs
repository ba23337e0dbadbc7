//! `--settings`: the effective configuration, after the command line and
//! every option file have been combined, written as an option file in
//! pagekite.py's format (`GenerateConfig` in pk.py: its sections, spellings
//! and padding), so the same file can go to pagekite.py and come back.
//! Secrets are written in clear, as pagekite.py writes them: the output is
//! the user's own configuration on their terminal, not a log. Options
//! pagekite.py does not know go in a last section that says so. It renders;
//! it does not decide what any option means (that is `mod` and `service`).

use super::files;
use super::flags::{FLAGS, Kind, Words, words};
use super::service::Service;
use super::{BackendSettings, Common, ServiceKite};
use crate::proto::options::{self, Value};

/// Flags that steer the parsing itself rather than the service.
const NOT_SETTINGS: Words = words![
    "optfile",
    "optdir",
    "settings",
    "help",
    "version",
    "connect",
    "abort_not_configured",
];

/// Flags written in pagekite.py's sections below; every other flag rkite
/// has goes in the rkite-only section.
const PAGEKITE_SECTIONS: Words = words![
    "kitename",
    "kitesecret",
    "defaults",
    "whitelabel",
    "whitelabels",
    "frontends",
    "frontend",
    "nofrontend",
    "fe_certname",
    "fe_nocertcheck",
    "errorurl",
    "dyndns",
    "ca_certs",
    "keepalive",
    "service_on",
    "backend",
    "service_off",
    "define_backend",
    "be_config",
    "service_cfg",
    "insecure",
    "isfrontend",
    "host",
    "ports",
    "protos",
    "rawports",
    "domain",
    "authdomain",
    "authfail_closed",
    "tls_endpoint",
    "tls_default",
    "client_acl",
    "tunnel_acl",
    "portalias",
    "motd",
    "overload",
    "overload_file",
    "overload_mem",
    "overload_cpu",
    "accept_acl_file",
    "ratelimit_ips",
    "logfile",
    "debugio",
    "daemonize",
    "runas",
    "pidfile",
    "httppass",
    "webpath",
    "webroot",
    "webaccess",
    "webindexes",
    "proxy",
    "socksify",
    "torify",
    "noproxy",
];

/// Lines of the file being written, in sections.
#[derive(Default)]
struct Out {
    text: String,
    section: Vec<String>,
}

impl Out {
    /// `name = value`, preceded by a warning when reading the line back
    /// would not give `name` this value (option files drop blanks next to
    /// `:` and `=`, so such a value cannot be kept in any option file).
    fn opt(&mut self, name: &str, value: &str) {
        let line = format!("{name} = {value}");
        self.checked(line, name, value);
    }

    fn checked(&mut self, line: String, name: &str, value: &str) {
        let read = files::line_to_arg(&line).map(|a| files::normalize(&a));
        if read.as_deref() != Some(format!("--{name}={value}").as_str()) {
            self.section.push(format!(
                "# rkite: the next line does not read back as given; check the {name} value"
            ));
        }
        self.section.push(line);
    }

    fn switch(&mut self, name: &str, on: bool) {
        if on {
            self.section.push(name.to_string());
        }
    }

    fn comment(&mut self, text: &str) {
        self.section.push(text.to_string());
    }

    /// `comment` of a formatted line, without a `String` at each caller.
    #[inline(never)]
    fn comment_fmt(&mut self, text: std::fmt::Arguments<'_>) {
        self.section.push(std::fmt::format(text));
    }

    /// Ends a section: its title and lines, if it has any.
    fn close(&mut self, title: &str) {
        if self.section.is_empty() {
            return;
        }
        self.text.push_str("\n##[ ");
        self.text.push_str(title);
        self.text.push_str(" ]##\n");
        for line in self.section.drain(..) {
            self.text.push_str(&line);
            self.text.push('\n');
        }
    }
}

/// The file for `common` and `be` (a frontend's flags are written as
/// given; a frontend's run drops `be`, but its flags are shown too).
#[inline(never)]
pub(super) fn render(
    m: &getopts::Matches,
    common: &Common,
    c: &BackendSettings,
    is_frontend: bool,
) -> String {
    let mut out = Out::default();
    out.text.push_str(concat!(
        "###[ Current settings for rkite ",
        env!("CARGO_PKG_VERSION"),
        ", in pagekite.py's format ]#########\n\
         #\n\
         ## pagekite.py reads this file too (not the rkite-only section at the end,\n\
         ## if there is one). Secrets are written in clear, as pagekite.py writes\n\
         ## them: keep this file as private as the configuration it came from.\n",
    ));
    if common.files.is_empty() {
        out.text.push_str("## From the command line only.\n");
    } else {
        out.text.push_str("## From the command line and:\n");
        for f in &common.files {
            out.text.push_str("##   ");
            out.text.push_str(f);
            out.text.push('\n');
        }
    }
    out.text.push_str("#\n");

    if let Some(name) = &c.kitename {
        out.checked(format!("kitename   = {name}"), "kitename", name);
    }
    if let Some(secret) = &c.kitesecret {
        out.checked(format!("kitesecret = {secret}"), "kitesecret", secret);
    }
    out.close("Default kite and account details");

    front_ends(&mut out, m, common, c);
    built_in_httpd(&mut out, m, c);
    kites(&mut out, c, is_frontend);

    // pagekite.py's "Proxy-chain settings": each option as given, in order
    // (a `noproxy` between them starts over, as it did when read).
    for (_, flag, value) in super::proxies::in_order(m) {
        if flag == "noproxy" {
            out.switch(flag, true);
        } else {
            out.opt(flag, &value);
        }
    }
    out.close("Proxy-chain settings");

    out.switch("insecure", c.insecure);
    out.close("Allow risky known-to-be-risky incoming HTTP requests?");

    out.switch("isfrontend", is_frontend);
    all_given(
        &mut out,
        m,
        words![
            "host",
            "ports",
            "protos",
            "portalias",
            "rawports",
            "motd",
            "domain",
            "authdomain",
            "authfail_closed",
        ],
    );
    out.close("Front-end Options");
    all_given(
        &mut out,
        m,
        words!["overload", "overload_file", "overload_mem", "overload_cpu"],
    );
    out.close("Overload settings");
    all_given(&mut out, m, words!["tls_endpoint", "tls_default"]);
    out.close("Domains we terminate SSL/TLS for natively, with key/cert-files");
    all_given(
        &mut out,
        m,
        words![
            "accept_acl_file",
            "ratelimit_ips",
            "client_acl",
            "tunnel_acl",
        ],
    );
    out.close("Front-end access controls (default=deny, if configured)");

    as_given(&mut out, m, "logfile");
    out.switch("debugio", common.process.debug_io);
    out.close("Miscellaneous settings");
    out.switch("daemonize", common.process.daemonize);
    all_given(&mut out, m, words!["runas", "pidfile"]);
    out.close("Systems administration settings");

    rkite_only(&mut out, m);
    out.close(
        "rkite only: pagekite.py does not know these (its buffers means something else); \
         remove them before pagekite.py reads this file",
    );
    out.text
        .push_str("\n###[ End of rkite configuration ]#########\nEND\n");
    out.text
}

/// The front-end choice: `defaults`/`whitelabel` when the values are
/// exactly a service's (pagekite.py's check), else each value.
#[inline(never)]
fn front_ends(out: &mut Out, m: &getopts::Matches, common: &Common, c: &BackendSettings) {
    let front = super::service::Front {
        pool: c.frontend_pool.clone(),
        certs: c.fe_certnames.clone(),
        error_url: common.error_urls.default.clone(),
        dyndns: c.dyndns.clone(),
    };
    if let Some(service) = Service::matching(&front) {
        let d = service.defaults();
        out.comment(&service.line());
        out.comment("# which pagekite.py 1.5.2 and rkite both expand to:");
        out.comment_fmt(format_args!(
            "#   frontends = {}:{}:{}",
            d.pool.count, d.pool.name, d.pool.port
        ));
        for cert in &d.certs {
            out.comment_fmt(format_args!("#   fe_certname = {cert}"));
        }
        out.comment_fmt(format_args!("#   errorurl = {}", d.error_url));
        out.comment_fmt(format_args!(
            "#   dyndns = {}  (rkite sends no dynamic DNS updates yet)",
            d.dyndns.to_arg()
        ));
        let title = match &service {
            Service::PageKiteNet => "pagekite.net".to_string(),
            Service::Whitelabel { domain, .. } => domain.clone(),
        };
        out.close(&format!("Front-end settings: use {title} defaults"));
        manual_front_ends(out, c);
        out.switch("fe_nocertcheck", c.fe_nocertcheck);
        out.close("Manual front-ends");
    } else {
        if let Some(pool) = &c.frontend_pool {
            out.opt(
                "frontends",
                &format!("{}:{}:{}", pool.count, pool.name, pool.port),
            );
        }
        manual_front_ends(out, c);
        for cert in &c.fe_certnames {
            out.opt("fe_certname", cert);
        }
        out.switch("fe_nocertcheck", c.fe_nocertcheck);
        if let Some(d) = &c.dyndns {
            out.opt("dyndns", &d.to_arg());
        }
        if let Some(url) = &common.error_urls.default {
            out.opt("errorurl", url);
        }
        out.close("Custom front-end and dynamic DNS settings");
    }
    all_given(out, m, words!["ca_certs", "keepalive"]);
    for (domain, url) in &common.error_urls.by_domain {
        out.opt("errorurl", &format!("{domain}:{url}"));
    }
    out.close("Front-end connection settings");
}

/// pagekite.py's "Built-in HTTPD settings": `httppass` and every
/// `webpath` (the quick share's included, as pagekite.py keeps them);
/// `--webroot` and friends as given.
#[inline(never)]
fn built_in_httpd(out: &mut Out, m: &getopts::Matches, c: &BackendSettings) {
    if let Some(pw) = &c.web.password {
        out.opt("httppass", pw);
    }
    let webroot = m.opt_present("webroot");
    let listed = c.web.paths.len() - usize::from(webroot);
    for w in c.web.paths.iter().take(listed) {
        out.opt("webpath", &w.to_arg());
    }
    all_given(out, m, words!["webroot", "webaccess", "webindexes"]);
    out.close("Built-in HTTPD settings");
}

fn manual_front_ends(out: &mut Out, c: &BackendSettings) {
    let spell = |host: &str, port: u16| {
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    };
    for (host, port) in &c.frontends {
        out.opt("frontend", &spell(host, *port));
    }
    for (host, port) in &c.nofrontends {
        out.opt("nofrontend", &spell(host, *port));
    }
}

/// Kites as pagekite.py writes them, `@kitename`/`@kitesecret` where they
/// apply, then their options as `service_cfg` lines: the `+options` of
/// short-form kites first (pagekite.py turns them into the same), then every
/// `be_config`/`service_cfg`, in the order they apply.
#[inline(never)]
fn kites(out: &mut Out, c: &BackendSettings, is_frontend: bool) {
    for kite in &c.kites {
        kite_line(out, c, kite, "service_on ");
    }
    for kite in &c.kites_off {
        kite_line(out, c, kite, "service_off");
    }
    let mut cfgs: Vec<String> = Vec::new();
    for kite in &c.kites {
        for opt in &kite.options {
            let port = kite.id.port.unwrap_or(80);
            let (key, value) = match options::parse_short(opt) {
                Ok((_, Value::Flag(on))) => {
                    let name = opt.trim_start_matches('+');
                    let name = if on {
                        name
                    } else {
                        name.get(2..).unwrap_or(name)
                    };
                    (
                        name.to_string(),
                        if on { "True" } else { "False" }.to_string(),
                    )
                }
                _ => match opt.trim_start_matches('+').split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (opt.trim_start_matches('+').to_string(), "True".into()),
                },
            };
            cfgs.push(format!("{}/{port}:{key}:{value}", kite.domain));
        }
    }
    cfgs.extend(c.be_config.iter().cloned());
    let mut configs = Out::default();
    for spec in &cfgs {
        match split_cfg(spec) {
            Some((host, key, value)) => configs.checked(
                format!("service_cfg = {host:<30}: {key:<15}: {value}"),
                "service_cfg",
                spec,
            ),
            None => configs.opt("service_cfg", spec),
        }
    }
    if !configs.section.is_empty() {
        out.section.push(String::new());
        out.section.append(&mut configs.section);
    }
    if !is_frontend || !out.section.is_empty() {
        if c.kites.is_empty() && c.kites_off.is_empty() {
            out.comment("# No back-ends!  How boring!");
        }
        out.close("Back-ends and local services");
    }
}

fn kite_line(out: &mut Out, c: &BackendSettings, kite: &ServiceKite, flag: &str) {
    let is_kitename = c
        .kitename
        .as_deref()
        .is_some_and(|n| n.eq_ignore_ascii_case(&kite.domain));
    let domain = if is_kitename {
        "@kitename"
    } else {
        &kite.domain
    };
    let secret = if c.kitesecret.as_deref() == Some(kite.secret.as_str()) {
        "@kitesecret"
    } else {
        &kite.secret
    };
    let fe = format!("{}:{domain}", kite.id.name());
    let be = if kite.builtin {
        format!("{}:builtin", kite.host)
    } else {
        format!("{}:{}", kite.host, kite.local.port())
    };
    out.checked(
        format!("{flag} = {fe:<33}: {be:<18}: {secret}"),
        flag.trim_end(),
        &format!("{fe}:{be}:{secret}"),
    );
}

/// `HOST/PORT:KEY:VALUE` split as `options::parse_be_config` splits it.
fn split_cfg(spec: &str) -> Option<(&str, &str, &str)> {
    let (host, rest) = spec.split_once(':')?;
    let is_ip = rest.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("ip/"));
    let (key, value) = if is_ip {
        rest.rsplit_once(':')?
    } else {
        rest.split_once(':')?
    };
    Some((host, key, value))
}

/// Every value given for `name`, as given (the last one for single values).
fn as_given(out: &mut Out, m: &getopts::Matches, name: &str) {
    let Some(flag) = FLAGS.iter().find(|f| f.long == name) else {
        return;
    };
    match flag.kind {
        Kind::Switch => out.switch(name, m.opt_present(name)),
        Kind::Value(_) => {
            if let Some(v) = m.opt_strs(name).pop() {
                out.opt(name, &v);
            }
        }
        Kind::Multi(_) => {
            for v in m.opt_strs(name) {
                out.opt(name, &v);
            }
        }
    }
}

/// `as_given` for each of `names`, in order: one string rather than an
/// array of `&str` built on the stack at each of its callers.
#[inline(never)]
fn all_given(out: &mut Out, m: &getopts::Matches, names: Words) {
    for name in names {
        as_given(out, m, name);
    }
}

/// rkite's own options, which pagekite.py does not know.
#[inline(never)]
fn rkite_only(out: &mut Out, m: &getopts::Matches) {
    for flag in FLAGS
        .iter()
        .filter(|f| !NOT_SETTINGS.contains(&f.long) && !PAGEKITE_SECTIONS.contains(&f.long))
    {
        if flag.kind == Kind::Switch {
            // Only -v counts (-vv is more than -v); other switches are on or off.
            let most = if flag.long == "verbose" { 2 } else { 1 };
            for _ in 0..m.opt_count(flag.long).min(most) {
                out.switch(flag.long, true);
            }
        } else {
            as_given(out, m, flag.long);
        }
    }
}

#[cfg(test)]
#[path = "settings_tests.rs"]
mod tests;
