//! The command line's parsing as a whole: the issue's frontend and backend
//! commands, `*` protocols and defaults, errors naming their flag, and
//! `--help` listing every flag.

use super::*;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn run(list: &[&str]) -> Result<Config, ConfigError> {
    match parse(&args(list))? {
        Parsed::Run(c) => Ok(*c),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_issue_frontend_command() {
    let c = run(&[
        "--isfrontend",
        "--host=127.0.0.1",
        "--ports=9080,9082",
        "--protos=http,https,raw,websocket",
        "--domain=http,websocket:*.example.test:s3cret",
        "--domain=http:other.test:pw2",
        "--clean",
        "--nullui",
    ])
    .unwrap();
    assert!(c.is_frontend());
    assert_eq!(c.frontend().unwrap().ports, [9080, 9082]);
    assert_eq!(
        c.frontend().unwrap().protos,
        ["http", "https", "raw", "websocket"]
    );
    let secret = |kite: &str| {
        let fe = c.frontend().unwrap();
        fe.domain_secrets.get(kite).map(String::as_str)
    };
    assert_eq!(secret("http:*.example.test"), Some("s3cret"));
    assert_eq!(secret("websocket:*.example.test"), Some("s3cret"));
    assert_eq!(secret("http:other.test"), Some("pw2"));
    assert_eq!(c.frontend().unwrap().domain_secrets.len(), 3);
}

#[test]
fn the_issue_backend_command() {
    let c = run(&[
        "--frontend=127.0.0.1:9080",
        "--service_on=http:foo.example.test:127.0.0.1:8000:s3cret",
        "--service-on",
        "http/9082:foo.example.test:127.0.0.1:8001:s3cret",
        "--backend=ssh:home.test:localhost:22:pw",
    ])
    .unwrap();
    assert!(!c.is_frontend());
    assert_eq!(
        c.backend().unwrap().frontends,
        [("127.0.0.1".to_string(), 9080)]
    );
    let names: Vec<_> = c
        .backend()
        .unwrap()
        .kites
        .iter()
        .map(|k| k.id.name())
        .collect();
    assert_eq!(names, ["http", "http-9082", "raw-22"]);
    assert_eq!(
        c.backend().unwrap().kites[1].local,
        "127.0.0.1:8001".parse().unwrap()
    );
    assert_eq!(c.backend().unwrap().kites[2].local.port(), 22);
}

#[test]
fn star_protos_and_defaults() {
    let c = run(&["--isfrontend", "--domain=*:x.test:pw"]).unwrap();
    assert_eq!(c.frontend().unwrap().ports, [80]);
    assert_eq!(
        c.frontend().unwrap().domain_secrets.len(),
        DEFAULT_PROTOS.len()
    );
    assert_eq!(c.common.keepalive, DEFAULT_INTERVAL);
    let c = run(&[
        "--isfrontend",
        "--protos=http",
        "--domain=*:x.test:pw",
        "--keepalive",
        "20",
    ])
    .unwrap();
    assert_eq!(c.frontend().unwrap().domain_secrets.len(), 1);
    assert_eq!(c.common.keepalive, Duration::from_secs(20));
}

#[test]
fn errors_name_the_flag() {
    let err = |list: &[&str]| run(list).unwrap_err();
    assert_eq!(err(&["--isfrontend", "--ports=80,x"]).flag, "ports");
    assert_eq!(
        err(&["--isfrontend", "--domain=http:x.test"]).flag,
        "domain"
    );
    assert_eq!(err(&["--isfrontend", "--host=nope"]).flag, "host");
    assert_eq!(err(&["--frontend=a"]).flag, "frontend");
    assert_eq!(err(&["--frontend=a:1"]).flag, "service_on");
    assert_eq!(
        err(&["--frontend=a:1", "--service_on=http:x:127.0.0.1:80"]).flag,
        "service_on"
    );
    assert_eq!(
        err(&["--frontend=a:1", "--backend=bogus!:x:127.0.0.1:80:s"]).flag,
        "backend"
    );
    assert_eq!(
        err(&["--frontend=a:1", "--service_on=http:x:127.0.0.1:99999:s"]).flag,
        "service_on"
    );
    assert_eq!(err(&["--isfrontend", "--keepalive=1"]).flag, "keepalive");
    assert_eq!(
        err(&["--isfrontend", "--metrics=localhost:9"]).flag,
        "metrics"
    );
    let Parsed::Run(c) = parse(&args(&["--isfrontend", "--metrics=[::1]:9100"])).unwrap() else {
        panic!()
    };
    assert_eq!(
        c.common.process.metrics,
        Some("[::1]:9100".parse().unwrap())
    );
    assert!(err(&["--nosuchflag"]).to_string().contains("nosuchflag"));
    assert!(err(&["stray"]).to_string().contains("stray"));
}

#[test]
fn help_lists_every_flag() {
    let Parsed::Help(text) = parse(&args(&["--help"])).unwrap() else {
        panic!()
    };
    for flag in [
        "--isfrontend",
        "--host",
        "--ports",
        "--protos",
        "--rawports",
        "--domain",
        "--frontend",
        "--service_on",
        "--backend",
        "--kitesecret",
        "--keepalive",
        "--logfile",
        "--verbose",
        "--quiet",
        "--debugio",
        "--help",
        "--version",
        "--clean",
        "--nullui",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
}
