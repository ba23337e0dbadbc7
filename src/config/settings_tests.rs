//! `--settings` in pagekite.py's format: what a backend and a frontend
//! print, that rkite reads its own output back to the same configuration,
//! and that `defaults`/`whitelabel` show as pagekite.py shows them.

use super::*;
use crate::config::{Config, Parsed, RoleConfig, parse};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A file in a fresh scratch directory, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(text: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!(
            "rkite-settings-{}-{}",
            std::process::id(),
            crate::random::hex(4)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("settings.rc");
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
    fn path(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn settings(list: &[&str]) -> String {
    match parse(&args(list)).unwrap() {
        Parsed::Settings(text) => text,
        other => panic!("{other:?}"),
    }
}

fn config(list: &[String]) -> Config {
    match parse(list).unwrap() {
        Parsed::Run(c) => *c,
        other => panic!("{other:?}"),
    }
}

/// Everything in a Config but where it came from (argv, files), with a
/// frontend's domain secrets in a stable order.
fn comparable(c: &Config) -> String {
    let mut c = c.clone();
    c.common.argv.clear();
    c.common.files.clear();
    let secrets: std::collections::BTreeMap<_, _> = match &mut c.role {
        RoleConfig::Frontend(fe) => fe.domain_secrets.drain().collect(),
        RoleConfig::Backend(_) => Default::default(),
    };
    format!("{c:?} {secrets:?}")
}

/// The configuration of `list`, and of its `--settings` read back as an
/// option file: they must be the same, and print the same again.
fn round_trip(list: &[&str]) -> String {
    let text = settings(&[list, &["--settings"]].concat());
    let file = TempFile::new(&text);
    let again = config(&args(&["-o", &file.path()]));
    assert_eq!(
        comparable(&config(&args(list))),
        comparable(&again),
        "read back differently:\n{text}"
    );
    let text2 = settings(&["-o", &file.path(), "--settings"]);
    let body = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with("##"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(body(&text), body(&text2));
    text
}

/// The sections between the header and `END`.
fn body(text: &str) -> String {
    let start = text.find("#\n\n").map_or(0, |i| i + 3);
    text[start..].to_string()
}

#[test]
fn a_backend_in_pagekite_py_s_sections_and_padding() {
    let text = round_trip(&[
        "--kitename=home.example.test",
        "--kitesecret=s3cret",
        "--frontend=127.0.0.1:9080",
        "--service_on=http:@kitename:localhost:8000:@kitesecret",
        "--service_on=raw/22:@kitename:localhost:22:@kitesecret",
        "--service_on=http/8080:other.test:127.0.0.1:8002:pw2",
        "--service_off=https:off.test:localhost:8443:pw3",
        "--service_cfg=home.example.test/80:password/alice:wonder",
        "--be_config=other.test/8080:ip/10.0.0.0/8:True",
        "--errorurl=http://errors.test/?",
        "--errorurl=other.test:http://other.test/down.html",
        "--keepalive=30",
        "--insecure",
        "--logfile=/tmp/rkite.log",
        "--stream_idle=60",
        "-v",
    ]);
    assert_eq!(
        body(&text),
        "\
##[ Default kite and account details ]##
kitename   = home.example.test
kitesecret = s3cret

##[ Custom front-end and dynamic DNS settings ]##
frontend = 127.0.0.1:9080
errorurl = http://errors.test/?

##[ Front-end connection settings ]##
keepalive = 30
errorurl = other.test:http://other.test/down.html

##[ Back-ends and local services ]##
service_on  = http:@kitename                   : localhost:8000    : @kitesecret
service_on  = raw-22:@kitename                 : localhost:22      : @kitesecret
service_on  = http-8080:other.test             : 127.0.0.1:8002    : pw2
service_off = https:off.test                   : localhost:8443    : pw3

service_cfg = other.test/8080               : ip/10.0.0.0/8  : True
service_cfg = home.example.test/80          : password/alice : wonder

##[ Allow risky known-to-be-risky incoming HTTP requests? ]##
insecure

##[ Miscellaneous settings ]##
logfile = /tmp/rkite.log

##[ rkite only: pagekite.py does not know these (its buffers means something else); remove them before pagekite.py reads this file ]##
stream_idle = 60
verbose

###[ End of rkite configuration ]#########
END
"
    );
    // Secrets in clear, as pagekite.py writes them; the header says so.
    assert!(text.contains("Secrets are written in clear"), "{text}");
}

#[test]
fn a_frontend_prints_its_own_options() {
    let text = round_trip(&[
        "--isfrontend",
        "--host=127.0.0.1",
        "--ports=9080,9443",
        "--protos=http,https,raw",
        "--rawports=virtual",
        "--domain=http,raw:*.x.test:s3cret",
        "--domain=https:y.test:pw",
        "--client_acl=deny:10.0.0.1",
        "--tunnel_acl=allow:127.0.0.1",
        "--max_conns_per_ip=5",
        "--buffers=4096",
        "--status_file=/tmp/st.json",
        "--errorurl=http://errors.test/?",
    ]);
    assert_eq!(
        body(&text),
        "\
##[ Custom front-end and dynamic DNS settings ]##
errorurl = http://errors.test/?

##[ Front-end Options ]##
isfrontend
host = 127.0.0.1
ports = 9080,9443
protos = http,https,raw
rawports = virtual
domain = http,raw:*.x.test:s3cret
domain = https:y.test:pw

##[ Front-end access controls (default=deny, if configured) ]##
client_acl = deny:10.0.0.1
tunnel_acl = allow:127.0.0.1

##[ rkite only: pagekite.py does not know these (its buffers means something else); remove them before pagekite.py reads this file ]##
max_conns_per_ip = 5
buffers = 4096
status_file = /tmp/st.json

###[ End of rkite configuration ]#########
END
"
    );
}

#[test]
fn defaults_show_as_pagekite_py_writes_them_with_what_they_mean() {
    let kite = "--service_on=http:home.example.test:127.0.0.1:80:pw";
    let text = round_trip(&["--defaults", kite]);
    let front = text
        .split("##[ Front-end settings: use pagekite.net defaults ]##\n")
        .nth(1)
        .unwrap_or_default();
    assert!(front.starts_with("defaults\n"), "{text}");
    for shown in [
        "#   frontends = 1:fe4_152.b5p.us:443\n",
        "#   fe_certname = b5p.us\n",
        "#   fe_certname = frontends.b5p.us\n",
        "#   fe_certname = 302.is\n",
        "#   errorurl = https://pagekite.net/offline/?\n",
        "#   dyndns = pagekite.net  (rkite sends no dynamic DNS updates yet)\n",
    ] {
        assert!(front.contains(shown), "{shown:?} missing:\n{text}");
    }
    let c = config(&args(&["--defaults", kite]));
    let pool = c.backend().unwrap().frontend_pool.clone().unwrap();
    assert_eq!(
        (pool.count, pool.name.as_str(), pool.port),
        (1, "fe4_152.b5p.us", 443)
    );
    assert_eq!(c.backend().unwrap().fe_certnames.len(), 8);
    assert_eq!(
        c.common.error_urls.default.as_deref(),
        Some("https://pagekite.net/offline/?")
    );
    assert_eq!(
        c.backend()
            .unwrap()
            .dyndns
            .as_ref()
            .map(|d| d.to_arg())
            .as_deref(),
        Some("pagekite.net")
    );
    // Sent now, so not among the options that mean nothing here.
    assert!(
        !c.common.ignored.iter().any(|i| i.contains("dyndns")),
        "{:?}",
        c.common.ignored
    );

    // Options before `defaults` are clobbered, later ones win (pagekite.py's
    // order); then the values are no longer the defaults, and are written out.
    let text = round_trip(&["--errorurl=http://mine.test/", "--defaults", kite]);
    assert!(text.contains("\ndefaults\n"), "{text}");
    let text = round_trip(&["--defaults", "--errorurl=http://mine.test/", kite]);
    assert!(!text.contains("\ndefaults\n"), "{text}");
    for line in [
        "frontends = 1:fe4_152.b5p.us:443\n",
        "fe_certname = pagekite.net\n",
        "dyndns = pagekite.net\n",
        "errorurl = http://mine.test/\n",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    let c = config(&args(&[
        "--defaults",
        "--frontends=2:relays.test:443",
        kite,
    ]));
    assert_eq!(
        c.backend().unwrap().frontend_pool.as_ref().unwrap().name,
        "relays.test"
    );
    // A later explicit name is added; an empty one (command line) clears.
    let c = config(&args(&["--defaults", "--fe_certname=Mine.test", kite]));
    assert_eq!(c.backend().unwrap().fe_certnames.len(), 9);
    assert_eq!(
        c.backend().unwrap().fe_certnames.last().map(String::as_str),
        Some("mine.test")
    );
    let c = config(&args(&["--defaults", "--fe_certname=", kite]));
    assert!(c.backend().unwrap().fe_certnames.is_empty());
    // A frontend added to the defaults stays a manual one.
    let text = round_trip(&["--defaults", "--frontend=127.0.0.1:9", kite]);
    assert!(
        text.contains("\ndefaults\n") && text.contains("frontend = 127.0.0.1:9\n"),
        "{text}"
    );
}

#[test]
fn whitelabels_show_as_pagekite_py_writes_them() {
    let kite = "--service_on=http:home.example.com:127.0.0.1:80:pw";
    let text = round_trip(&["--whitelabel=Example.com", kite]);
    assert!(text.contains("\nwhitelabel = example.com\n"), "{text}");
    assert!(
        text.contains("#   errorurl = http://www.example.com/offline/?\n")
            && text.contains("#   fe_certname = fe.example.com\n")
            && text.contains("#   frontends = 1:fe4_152.example.com:443\n"),
        "{text}"
    );
    let text = round_trip(&["--whitelabels=example.com", kite]);
    assert!(text.contains("\nwhitelabels = example.com\n"), "{text}");
    assert!(
        text.contains("#   dyndns = https://dnsup.example.com/?hostname=%(domain)s"),
        "{text}"
    );
    let err = parse(&args(&["--whitelabel=not a domain", kite])).unwrap_err();
    assert_eq!(err.flag, "whitelabel", "{err}");
}

#[test]
fn dyndns_is_kept_and_written_back() {
    let kite = "--service_on=http:a.test:127.0.0.1:80:pw";
    let text = round_trip(&["--frontend=127.0.0.1:9", "-D", "bob:pa55@dyndns.org", kite]);
    assert!(text.contains("\ndyndns = bob:pa55@dyndns.org\n"), "{text}");
    let c = config(&args(&[
        "--frontend=127.0.0.1:9",
        "--dyndns=bob:pa55@dyndns.org",
        kite,
    ]));
    // Used now, so not among the options that mean nothing.
    assert!(!c.common.ignored.iter().any(|i| i.contains("dyndns")));
    // A setting that can't be a template is a usage error at start.
    let err = parse(&args(&[
        "--frontend=127.0.0.1:9",
        "--dyndns=custom.test",
        kite,
    ]))
    .unwrap_err();
    assert_eq!(err.flag, "dyndns", "{err}");
    assert!(err.to_string().contains("neither a provider"), "{err}");
}

#[test]
fn short_form_kites_become_service_lines_with_their_options() {
    let text = settings(&[
        "--frontend=127.0.0.1:9",
        "--kitesecret=pw",
        "8000",
        "foo.test",
        "+ip/10.1.2.3",
        "+norewritehost",
        "+password/bob=pw2",
        "--settings",
    ]);
    for line in [
        "service_on  = http:foo.test                    : localhost:8000    : @kitesecret\n",
        "service_cfg = foo.test/80                   : ip/10.1.2.3    : True\n",
        "service_cfg = foo.test/80                   : rewritehost    : False\n",
        "service_cfg = foo.test/80                   : password/bob   : pw2\n",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    let file = TempFile::new(&text);
    let c = config(&args(&["-o", &file.path()]));
    let before = config(&args(&[
        "--frontend=127.0.0.1:9",
        "--kitesecret=pw",
        "8000",
        "foo.test",
        "+ip/10.1.2.3",
        "+norewritehost",
        "+password/bob=pw2",
    ]));
    assert_eq!(
        crate::config::kite_options(c.backend().unwrap()).unwrap(),
        crate::config::kite_options(before.backend().unwrap()).unwrap()
    );
}

#[test]
fn a_value_no_option_file_can_keep_is_flagged() {
    // Option files drop blanks next to `:`; only the command line has them.
    let text = settings(&[
        "--frontend=127.0.0.1:9",
        "--service_on=http:a.test:127.0.0.1:80:pw",
        "--be_config=a.test/80:password/bob:two : words",
        "--settings",
    ]);
    assert!(
        text.contains("# rkite: the next line does not read back as given; check the service_cfg value\nservice_cfg = a.test/80"),
        "{text}"
    );
}

#[test]
fn every_flag_has_a_place_and_rkite_only_ones_are_not_pagekite_py_s() {
    let pagekite: Vec<&str> = crate::config::compat::tests::OPT_ARGS
        .iter()
        .map(|a| a.trim_end_matches('='))
        .collect();
    for flag in FLAGS {
        let known = pagekite.contains(&flag.long);
        if PAGEKITE_SECTIONS.contains(&flag.long) {
            assert!(known, "{} is written as pagekite.py's", flag.long);
        } else if !NOT_SETTINGS.contains(&flag.long) {
            // buffers is pagekite.py's name for something else.
            assert!(
                !known || flag.long == "buffers",
                "{} is pagekite.py's but written as rkite's own",
                flag.long
            );
        }
    }
}

#[test]
fn front_end_choices_go_round() {
    let text = round_trip(&[
        "--frontends=2:relays.example.test:443",
        "--frontend=[::1]:9080",
        "--frontend=127.0.0.1:9081",
        "--nofrontend=10.1.2.3:443",
        "--fe_certname=Relays.example.test",
        "--ca_certs=/etc/ssl/certs/ca-certificates.crt",
        "--service_on=http:a.test:127.0.0.1:80:pw",
        "--daemonize",
        "--pidfile=/run/rkite.pid",
    ]);
    for line in [
        "\n##[ Custom front-end and dynamic DNS settings ]##\n\
         frontends = 2:relays.example.test:443\n\
         frontend = [::1]:9080\n\
         frontend = 127.0.0.1:9081\n\
         nofrontend = 10.1.2.3:443\n\
         fe_certname = relays.example.test\n",
        "ca_certs = /etc/ssl/certs/ca-certificates.crt\n",
        "\n##[ Systems administration settings ]##\ndaemonize\npidfile = /run/rkite.pid\n",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
}

#[test]
fn webpaths_and_the_quick_share_go_round() {
    let dir = TempFile::new("shared");
    let path = dir.path();
    let shared = std::path::Path::new(&path)
        .parent()
        .unwrap()
        .to_str()
        .unwrap();
    let webpath = format!("--webpath=*:/docs:public:{shared}");
    let text = round_trip(&[
        "--frontend=127.0.0.1:9",
        "--service_on=http:files.test:localhost:builtin:pw",
        &webpath,
        "--httppass=open",
        "--webindexes=all",
    ]);
    for line in [
        "httppass = open\n".to_string(),
        format!("webpath = *:/docs/:public:{shared}\n"),
        "webindexes = all\n".to_string(),
        "service_on  = http:files.test                  : localhost:builtin : pw\n".to_string(),
    ] {
        assert!(text.contains(&line), "{line:?} missing:\n{text}");
    }
    // The quick share: a builtin kite and a webpath at `/` of it.
    let text = settings(&[
        "--frontend=127.0.0.1:9",
        "--kitesecret=pw",
        shared,
        "blog.test",
        "--settings",
    ]);
    assert!(
        text.contains(&format!("webpath = blog.test/80:/:default:{shared}\n")),
        "{text}"
    );
    assert!(text.contains("localhost:builtin : @kitesecret"), "{text}");
}
