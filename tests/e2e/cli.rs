//! The command line as a user meets it: --help, bad flags and kite specs
//! (exit 1, naming the flag), runtime failures (exit 2), pagekite.py flags
//! that are accepted and ignored.

use std::net::TcpListener;

use crate::fixture::T;
use crate::util::{self, free_port};

fn exit_code(args: &[&str]) -> (Option<i32>, Vec<String>) {
    let p = util::rkite(args);
    let status = p.wait_exit(T).expect("rkite exits");
    (status.code(), p.lines())
}

#[test]
fn help_is_complete_and_exits_zero() {
    let (code, lines) = exit_code(&["--help"]);
    assert_eq!(code, Some(0));
    let text = lines.join("\n");
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
        "--version",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    // Option lines are indented a little; wrapped descriptions a lot.
    let option_line = |l: &&str| {
        let indent = l.len() - l.trim_start().len();
        indent < 10 && l.trim_start().starts_with('-')
    };
    for line in text.lines().filter(option_line) {
        let flag = line
            .split_whitespace()
            .find(|w| w.starts_with("--"))
            .unwrap_or("");
        let flag = flag.split('=').next().unwrap_or(flag).trim_end_matches(',');
        assert!(
            readme.contains(&format!("`{flag}")),
            "README does not document {flag}"
        );
    }
    let (code, lines) = exit_code(&["--version"]);
    assert_eq!(code, Some(0));
    assert!(lines.join("").contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_command_lines_exit_one_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--nosuchflag"], "nosuchflag"),
        (&["--isfrontend", "--ports=80,eighty"], "--ports"),
        (&["--isfrontend", "--domain=http:only-two"], "--domain"),
        (&["--frontend=127.0.0.1"], "--frontend"),
        (
            &[
                "--frontend=127.0.0.1:9",
                "--service_on=http:x.test:127.0.0.1:80",
            ],
            "--service_on",
        ),
        (
            &[
                "--frontend=127.0.0.1:9",
                "--backend=htt p:x.test:127.0.0.1:80:s",
            ],
            "--backend",
        ),
        (&["--frontend=127.0.0.1:9"], "--service_on"),
    ];
    for (args, flag) in cases {
        let (code, lines) = exit_code(args);
        assert_eq!(code, Some(1), "{args:?}");
        let text = lines.join("\n");
        assert!(text.contains(flag), "{args:?} should name {flag}: {text}");
    }
}

#[test]
fn a_port_in_use_is_a_runtime_failure() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let (code, lines) = exit_code(&[
        "--isfrontend",
        "--host=127.0.0.1",
        "--ports",
        &port,
        "--domain=*:x.test:s",
    ]);
    assert_eq!(code, Some(2));
    assert!(
        lines
            .join("\n")
            .contains(&format!("cannot listen on 127.0.0.1:{port}"))
    );
}

#[test]
fn pagekite_only_flags_are_accepted_and_ignored() {
    let port = free_port().to_string();
    let fe = util::rkite(&[
        "--clean",
        "--nullui",
        "--nozchunks",
        "--isfrontend",
        "--host=127.0.0.1",
        "--ports",
        &port,
        "--domain=*:x.test:s",
    ]);
    fe.wait_for(
        "--clean (means nothing to rkite): accepted for pagekite.py compatibility and ignored",
        T,
    );
    fe.wait_for(&format!("listening on 127.0.0.1:{port}"), T);
    // pagekite.py's options with a value that mean nothing here are
    // accepted too, in either spelling; one rkite can't honour stops it,
    // saying why, with exit 1.
    let fe2 = util::rkite(&[
        "--isfrontend",
        "--host=127.0.0.1",
        "--ports=0",
        "--select_loop_min_ms",
        "5",
        "--max_read_bytes=4096",
        "--domain=*:x.test:s",
    ]);
    fe2.wait_for("--max_read_bytes (Python buffer tuning", T);
    let refused = util::rkite(&["--isfrontend", "--ports=0", "--wschunks"]);
    assert_eq!(refused.wait_exit(T).and_then(|s| s.code()), Some(1));
    refused.wait_for("--wschunks: refused: the WebSocket tunnel transport", T);
}
