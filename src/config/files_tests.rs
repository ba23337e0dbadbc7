//! Option files: pagekite.py's line format, splicing where the file is
//! named, precedence against the command line, nesting, and errors that
//! name the file and line.

use super::*;
use crate::config::{Parsed, parse};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A scratch directory removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "rkite-files-{name}-{}-{}",
            std::process::id(),
            crate::random::hex(4)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }
    fn path(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(list: &[String]) -> Result<crate::config::Config, ConfigError> {
    match parse(list)? {
        Parsed::Run(c) => Ok(*c),
        other => panic!("{other:?}"),
    }
}

#[test]
fn lines_become_flags_as_pagekite_reads_them() {
    assert_eq!(line_to_arg("  # comment"), None);
    assert_eq!(line_to_arg("   "), None);
    assert_eq!(line_to_arg("isfrontend").as_deref(), Some("--isfrontend"));
    assert_eq!(
        line_to_arg("ports = 80,443").as_deref(),
        Some("--ports=80,443")
    );
    assert_eq!(
        line_to_arg("service_on = http : foo.test : localhost : 80 : pw").as_deref(),
        Some("--service_on=http:foo.test:localhost:80:pw")
    );
    assert_eq!(line_to_arg("--verbose").as_deref(), Some("--verbose"));
    assert_eq!(line_to_arg("-v").as_deref(), Some("-v"));
    assert_eq!(line_to_arg("END of the file").as_deref(), Some("END"));
    // Blanks inside a value, away from `=` and `:`, stay.
    assert_eq!(
        line_to_arg("be_config = a.test/80:password/bob:two words").as_deref(),
        Some("--be_config=a.test/80:password/bob:two words")
    );
}

#[test]
fn a_backend_from_an_option_file() {
    let dir = Scratch::new("backend");
    let rc = dir.file(
        "backend.rc",
        "# my kites\n\nfrontend = 127.0.0.1:9080\nservice_on = http:foo.test:127.0.0.1:8000:pw\n\
         service_on=http-8080:foo.test:127.0.0.1:8001:pw\nkeepalive = 30\nEND\nnot an option at all\n",
    );
    let c = config(&args(&["--optfile", &rc])).unwrap();
    assert_eq!(
        c.backend().unwrap().frontends,
        [("127.0.0.1".to_string(), 9080)]
    );
    assert_eq!(c.backend().unwrap().kites.len(), 2);
    assert_eq!(c.common.keepalive, std::time::Duration::from_secs(30));
    assert_eq!(c.common.files, std::slice::from_ref(&rc));
    // The short flag and the attached forms work too.
    let c = config(&args(&[&format!("-o{rc}")])).unwrap();
    assert_eq!(c.backend().unwrap().kites.len(), 2);
    let c = config(&args(&[&format!("--optfile={rc}")])).unwrap();
    assert_eq!(c.backend().unwrap().kites.len(), 2);
}

#[test]
fn later_flags_override_earlier_files_and_files_override_earlier_flags() {
    let dir = Scratch::new("order");
    let rc = dir.file(
        "fe.rc",
        "isfrontend\nports = 9000\ndomain = http:a.test:pa\nkeepalive = 30\n",
    );
    // The file comes after --ports=1000: its 9000 wins; --keepalive after it wins.
    let c = config(&args(&[
        "--ports=1000",
        "-o",
        &rc,
        "--keepalive=40",
        "--domain=http:b.test:pb",
    ]))
    .unwrap();
    assert_eq!(c.frontend().unwrap().ports, [9000]);
    assert_eq!(c.common.keepalive, std::time::Duration::from_secs(40));
    // Repeatable flags add up from every source.
    assert_eq!(c.frontend().unwrap().domain_secrets.len(), 2);
    let c = config(&args(&["-o", &rc, "--ports=1000"])).unwrap();
    assert_eq!(c.frontend().unwrap().ports, [1000]);
}

#[test]
fn a_directory_is_read_in_name_order_and_files_nest() {
    let dir = Scratch::new("dir");
    dir.file("20_second.rc", "ports = 2000\n");
    dir.file(
        "10_first.rc",
        "isfrontend\nports = 1000\ndomain = http:a.test:pa\n",
    );
    dir.file("30_not_rc.txt", "this is not read\n");
    dir.file(".40_hidden.rc", "this is not read either\n");
    let c = config(&args(&["--optdir", &dir.path()])).unwrap();
    assert_eq!(c.frontend().unwrap().ports, [2000]);
    assert_eq!(c.common.files.len(), 2);

    let inner = dir.file("inner.conf", "ports = 3000\n");
    let outer = dir.file(
        "outer.conf",
        &format!("isfrontend\ndomain = http:a.test:pa\noptfile = {inner}\nkeepalive = 9\n"),
    );
    let c = config(&args(&["-O", &dir.path(), "-o", &outer])).unwrap();
    assert_eq!(c.frontend().unwrap().ports, [3000]);
    assert_eq!(c.common.keepalive, std::time::Duration::from_secs(9));

    let looping = dir.file("loop.conf", "");
    std::fs::write(&looping, format!("optfile = {looping}\n")).unwrap();
    let err = config(&args(&["-o", &looping])).unwrap_err();
    assert!(err.to_string().contains("nested more than 25"), "{err}");
}

#[test]
fn bad_lines_name_the_file_and_line() {
    let dir = Scratch::new("bad");
    let cases = [
        ("isfrontend\nportz = 80\n", ":2: unknown option \"portz\""),
        (
            "isfrontend\n\n# c\nisfrontend = yes\n",
            ":4: isfrontend takes no value",
        ),
        ("ports\n", ":1: ports needs a value"),
        ("-x\n", ":1: unknown option \"-x\""),
    ];
    for (text, expected) in cases {
        let rc = dir.file("bad.rc", text);
        let err = config(&args(&["-o", &rc])).unwrap_err();
        let shown = err.to_string();
        assert!(shown.starts_with(&rc), "{shown}");
        assert!(shown.contains(expected), "{shown} lacks {expected}");
    }
    // A value the flag's own parser rejects is found in the file, too.
    let rc = dir.file(
        "values.rc",
        "isfrontend\ndomain = http:a.test:pa\n\nports = 80,eighty\n",
    );
    let err = config(&args(&["-o", &rc])).unwrap_err();
    assert_eq!(err.origin.as_deref(), Some(format!("{rc}:4").as_str()));
    assert_eq!(err.flag, "ports");
    // The same mistake on the command line has no file to name.
    let err = config(&args(&["--isfrontend", "--ports=80,eighty"])).unwrap_err();
    assert_eq!(err.origin, None);
    // A file that is not there.
    let err = config(&args(&["-o", "/nonexistent/rkite.rc"])).unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot read /nonexistent/rkite.rc")
    );
    let err = config(&args(&["--optfile"])).unwrap_err();
    assert!(err.to_string().contains("needs a file"), "{err}");
}

#[test]
fn settings_print_an_option_file_that_reads_back_the_same() {
    let dir = Scratch::new("settings");
    let rc = dir.file(
        "be.rc",
        "frontend = 127.0.0.1:9080\nservice_on = http:foo.test:127.0.0.1:8000:hunter2\n\
         be_config = foo.test/80:password/bob:pw2\nkitesecret = s3\n",
    );
    let Parsed::Settings(text) = parse(&args(&["-o", &rc, "--settings", "-v"])).unwrap() else {
        panic!()
    };
    // Secrets in clear, as pagekite.py writes them.
    assert!(text.contains("kitesecret = s3\n"), "{text}");
    assert!(
        text.contains(
            "service_on  = http:foo.test                    : 127.0.0.1:8000    : hunter2\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("service_cfg = foo.test/80                   : password/bob   : pw2\n"),
        "{text}"
    );
    assert!(text.contains(&rc), "the files read are listed: {text}");
    assert!(text.lines().any(|l| l == "verbose"));
    // Read back, the printed settings give the same configuration.
    let again = dir.file("again.rc", &text);
    let Parsed::Settings(text2) = parse(&args(&["-o", &again, "--settings"])).unwrap() else {
        panic!()
    };
    let body = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(body(&text), body(&text2));
}

#[test]
fn files_are_checked_even_for_flags_that_come_later() {
    // Expansion is lazy about nothing: a bad directory fails at once.
    let err = expand(&args(&["--optdir=/nonexistent/rkite.d"])).unwrap_err();
    assert!(err.to_string().contains("cannot read /nonexistent/rkite.d"));
    // `--` ends the flags; what follows is left alone.
    let e = expand(&args(&["--", "-o", "x"])).unwrap();
    assert_eq!(e.args, ["--", "-o", "x"]);
}

/// Debian's /etc/pagekite.d as its comments ask a user to fill it in, and
/// the kite lines pagekite.py writes: `kitename`, `@kitename`/`@kitesecret`,
/// blanks around colons, `raw/22`, `service_off`, `service_cfg`.
#[test]
fn debian_style_account_and_kite_files() {
    let dir = Scratch::new("debian");
    dir.file(
        "10_account.rc",
        "# Replace the following with your account details.\n\n\
         kitename   = home.example.test\nkitesecret = s3cret\n",
    );
    dir.file("20_frontends.rc", "frontend = 127.0.0.1:9080\n");
    dir.file(
        "80_httpd.rc",
        "service_on = http:@kitename : localhost:8080 : @kitesecret\n\
         service_cfg = home.example.test/80          : password/bob   : pw\n",
    );
    dir.file(
        "80_sshd.rc",
        "service_off = raw/22:@kitename : localhost:22 : @kitesecret\n\
         define_backend = http/8080:@kitename : localhost:8081 : @kitesecret\n",
    );
    let c = match parse(&args(&["-O", &dir.path()])).unwrap() {
        Parsed::Run(c) => *c,
        other => panic!("{other:?}"),
    };
    assert_eq!(c.backend().unwrap().kites.len(), 1);
    let kite = &c.backend().unwrap().kites[0];
    assert_eq!(kite.domain, "home.example.test");
    assert_eq!(kite.secret, "s3cret");
    assert_eq!(kite.local.port(), 8080);
    assert_eq!(c.backend().unwrap().kites_off.len(), 2);
    assert_eq!(c.backend().unwrap().kites_off[0].id.name(), "raw-22");
    assert_eq!(c.backend().unwrap().kites_off[1].id.name(), "http-8080");
    assert_eq!(
        c.backend().unwrap().be_config,
        ["home.example.test/80:password/bob:pw"]
    );
    // --settings shows every kite as pagekite.py writes it.
    let Parsed::Settings(text) = parse(&args(&["-O", &dir.path(), "--settings"])).unwrap() else {
        panic!("no settings");
    };
    for line in [
        "kitename   = home.example.test\n",
        "kitesecret = s3cret\n",
        "service_on  = http:@kitename                   : localhost:8080    : @kitesecret\n",
        "service_off = raw-22:@kitename                 : localhost:22      : @kitesecret\n",
        "service_off = http-8080:@kitename              : localhost:8081    : @kitesecret\n",
        "service_cfg = home.example.test/80          : password/bob   : pw\n",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
}

/// pagekite.py reads options in order: `@kitename` is the kitename set
/// above the line, and with none set yet the first kite's domain and
/// secret become the kitename and kitesecret.
#[test]
fn kite_markers_take_the_value_set_above_them() {
    let dir = Scratch::new("order");
    let a = dir.file(
        "a.rc",
        "kitename = a.test\nkitesecret = sa\n\
         service_on = http:@kitename : localhost:8080 : @kitesecret\n",
    );
    let b = dir.file(
        "b.rc",
        "kitename = b.test\nkitesecret = sb\n\
         service_on = http:@kitename : localhost:8081 : @kitesecret\n",
    );
    let c = config(&args(&["--frontend=127.0.0.1:9080", "-o", &a, "-o", &b])).unwrap();
    let kites: Vec<_> = c
        .backend()
        .unwrap()
        .kites
        .iter()
        .map(|k| (k.domain.as_str(), k.secret.as_str(), k.local.port()))
        .collect();
    assert_eq!(kites, [("a.test", "sa", 8080), ("b.test", "sb", 8081)]);
    // No kitename at all: the first kite names it.
    let c = config(&args(&[
        "--frontend=127.0.0.1:9080",
        "--service_on=http:First.test:localhost:80:s1",
        "--service_on=raw/22:@kitename:localhost:22:@kitesecret",
    ]))
    .unwrap();
    let kites: Vec<_> = c
        .backend()
        .unwrap()
        .kites
        .iter()
        .map(|k| (k.id.name(), k.domain.clone(), k.secret.clone()))
        .collect();
    assert_eq!(
        kites,
        [
            (
                "http".to_string(),
                "first.test".to_string(),
                "s1".to_string()
            ),
            (
                "raw-22".to_string(),
                "first.test".to_string(),
                "s1".to_string()
            )
        ]
    );
    // A marker above every value still takes the last one given (pagekite.py
    // would write an empty name there).
    let c = config(&args(&[
        "--frontend=127.0.0.1:9080",
        "--service_on",
        "http:@kitename:localhost:80:@kitesecret",
        "--kitename",
        "late.test",
        "--kitesecret=sl",
    ]))
    .unwrap();
    assert_eq!(
        (
            c.backend().unwrap().kites[0].domain.as_str(),
            c.backend().unwrap().kites[0].secret.as_str()
        ),
        ("late.test", "sl")
    );
}

#[test]
fn debian_account_file_left_unedited_stops_with_its_line() {
    let dir = Scratch::new("unedited");
    let file = dir.file(
        "10_account.rc",
        "kitename   = NAME.pagekite.me\nkitesecret = YOURSECRET\n\n# Delete this line!\nabort_not_configured\n",
    );
    let err = parse(&args(&["-O", &dir.path()])).unwrap_err();
    assert_eq!(
        err.origin.as_deref(),
        Some(format!("{file}:5").as_str()),
        "{err}"
    );
    assert!(err.to_string().contains("never edited"), "{err}");
    // @kitename without a kitename says what is missing.
    let err = parse(&args(&[
        "--frontend=127.0.0.1:9080",
        "--service_on=http:@kitename:localhost:80:pw",
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("no kitename is set"), "{err}");
}

/// Lines from pagekite.py's own `--settings` output and its manual that rkite
/// does not implement: accepted ones are read and ignored, refused ones stop
/// with the file, the line and why (never "unknown option").
#[test]
fn pagekite_options_rkite_does_not_implement() {
    let dir = Scratch::new("compat");
    let ok = dir.file(
        "ok.rc",
        "frontend = 127.0.0.1:9080\nservice_on = http:a.test:localhost:80:pw\n\
         max_read_bytes = 102400\nselect_loop_min_ms = 5\nsavefile = /tmp/x.rc\n\
         uiport = 9999\nnullui\nnoisfrontend\nwatch = 2\nlocal = 80\n-R7\n-a\n\
         errorurl = http://errors.test/?\nerrorurl = a.test : http://a.test/down\n",
    );
    assert!(matches!(parse(&args(&["-o", &ok])), Ok(Parsed::Run(_))));
    // A fleet under one name, in pagekite.py's spacing, is enough for a backend.
    let fleet = dir.file(
        "fleet.rc",
        "frontends = 2:relays.example.test:443\nnofrontend = 10.1.2.3:443\n\
         service_on = http:a.test:localhost:80:pw\n",
    );
    let Ok(Parsed::Run(c)) = parse(&args(&["-o", &fleet])) else {
        panic!("frontends= alone names the relays");
    };
    assert_eq!(
        c.backend().unwrap().frontend_pool,
        Some(crate::config::FrontendPool {
            count: 2,
            name: "relays.example.test".into(),
            port: 443
        })
    );
    assert_eq!(
        c.backend().unwrap().nofrontends,
        [("10.1.2.3".to_string(), 443)]
    );
    for bad in [
        "0:relays.test:443",
        "2:relays.test",
        "2::443",
        "x:relays.test:443",
    ] {
        let err = parse(&args(&[
            &format!("--frontends={bad}"),
            "--service_on=http:a.test:localhost:80:pw",
        ]))
        .unwrap_err();
        assert_eq!(err.flag, "frontends", "{bad}: {err}");
    }
    for (line, why) in [
        ("frontends = two:relays.example.test:443", "N must be"),
        ("register = a.example.test", "registration"),
        ("httpd = localhost:9999", "web server"),
    ] {
        let file = dir.file(
            "bad.rc",
            &format!(
                "frontend = 127.0.0.1:9080\n{line}\nservice_on = http:a.test:localhost:80:pw\n"
            ),
        );
        let err = parse(&args(&["-o", &file])).unwrap_err();
        assert_eq!(
            err.origin.as_deref(),
            Some(format!("{file}:2").as_str()),
            "{line}: {err}"
        );
        let text = err.to_string();
        assert!(
            text.contains(why) && !text.contains("unknown option"),
            "{line}: {text}"
        );
    }
    // The same on the command line.
    let err = parse(&args(&[
        "--frontend=127.0.0.1:9080",
        "--service_on=http:a.test:localhost:80:pw",
        "--wschunks",
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("not supported"), "{err}");
    // Proxy lines as pagekite.py writes them are read in file order.
    let rc = dir.file(
        "proxy.rc",
        "frontend = 127.0.0.1:9080\nsocksify = 127.0.0.1:1\nnoproxy\n\
         proxy = socks://u:p@127.0.0.1:1080/\n\
         service_on = http:a.test:localhost:80:pw\n",
    );
    let Ok(Parsed::Run(c)) = parse(&args(&["-o", &rc])) else {
        panic!("proxy lines are options");
    };
    let chain = &c.backend().unwrap().proxies;
    assert_eq!(chain.len(), 1, "{chain:?}");
    assert_eq!((chain[0].port, chain[0].auth.is_some()), (1080, true));
    // -h is pagekite.py's --host.
    let Ok(Parsed::Run(c)) = parse(&args(&["--isfrontend", "-h", "127.0.0.1", "--ports=9080"]))
    else {
        panic!("-h is --host");
    };
    assert_eq!(
        c.frontend().unwrap().host,
        Some("127.0.0.1".parse().unwrap())
    );
}

#[test]
fn authfile_and_authdomain_are_read_and_their_errors_named() {
    let dir = Scratch::new("authfile");
    let users = dir.file(
        "users",
        "# users\nalice pw alice.test,*.alice.test http 2\n",
    );
    let Ok(c) = config(&args(&[
        "--isfrontend",
        "--ports=0",
        &format!("--authfile={users}"),
        "--authdomain=auth.test",
        "--authdomain=org.test:org-auth.test",
        "--authfail_closed",
    ])) else {
        panic!("a frontend configuration");
    };
    let crate::config::RoleConfig::Frontend(fe) = c.role else {
        panic!("a frontend");
    };
    assert_eq!(fe.auth_users.len(), 1);
    assert_eq!(fe.auth_users[0].max_tunnels, 2);
    assert_eq!(
        fe.auth_domains.for_domain("k.org.test"),
        Some("org-auth.test")
    );
    assert_eq!(fe.auth_domains.for_domain("k.test"), Some("auth.test"));
    assert!(fe.authfail_closed);

    let broken = dir.file("broken", "alice pw alice.test http\nbob pw\n");
    for (arg, flag, what) in [
        (
            format!("--authfile={broken}"),
            "authfile",
            format!("{broken}:2: expected"),
        ),
        (
            format!("--authfile={}/missing", dir.path()),
            "authfile",
            "missing".to_string(),
        ),
        (
            "--authdomain=/usr/bin/app".to_string(),
            "authdomain",
            "auth apps".to_string(),
        ),
    ] {
        let Err(err) = config(&args(&["--isfrontend", "--ports=0", &arg])) else {
            panic!("{arg} must be refused");
        };
        assert_eq!(err.flag, flag, "{arg}: {err}");
        assert!(err.to_string().contains(&what), "{arg}: {err}");
    }
}
