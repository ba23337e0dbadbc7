//! pagekite.py's configuration files run by rkite as they are: a copy of
//! Debian's stock /etc/pagekite.d (from the installed `pagekite` package),
//! filled in the way its own comments ask, drives an rkite backend against an
//! rkite frontend on loopback. The only change a user would not make is the
//! frontend: `defaults` (pagekite.net's relays) becomes a loopback one,
//! because tests never leave loopback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use crate::fixture::{T, frontend, live};
use crate::origin::{INDEX_BODY, Origin};
use crate::util::{self, free_port, local};

const STOCK: &str = "/etc/pagekite.d";
const NAME: &str = "home.example.test";

/// Copies Debian's files into a fresh directory, as shipped.
fn stock_copy() -> Option<std::path::PathBuf> {
    if !util::require_peer("pagekite") {
        return None;
    }
    assert!(
        Path::new(STOCK).join("10_account.rc").exists(),
        "Debian's pagekite package ships {STOCK}/10_account.rc"
    );
    let dir = util::temp_dir("pagekite.d");
    for entry in std::fs::read_dir(STOCK).expect("read /etc/pagekite.d") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let name = path.file_name().expect("a file name");
            std::fs::copy(&path, dir.join(name)).expect("copy");
        }
    }
    Some(dir)
}

/// Replaces `from` with `to` in `file` of `dir`, checking it was there.
fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains(from), "{file} has no {from:?}:\n{text}");
    std::fs::write(&path, text.replace(from, to)).expect("write");
}

#[test]
fn debians_pagekite_d_configured_as_its_comments_ask() {
    let Some(dir) = stock_copy() else { return };
    let origin = Origin::start();
    let port = free_port();
    let fe = frontend(
        &[port],
        &[&format!("http,raw:{NAME}:s3cret")],
        &["--rawports=virtual"],
    );

    // As shipped, the account file stops everything, naming its line.
    let unedited = util::rkite(&["-O", &dir.to_string_lossy()]);
    let status = unedited.wait_exit(T).expect("exits");
    assert_eq!(status.code(), Some(1));
    unedited.wait_for("10_account.rc:", T);
    unedited.wait_for("abort_not_configured", T);

    // 10_account.rc: "Replace the following with your account details",
    // "Delete this line!".
    edit(&dir, "10_account.rc", "NAME.pagekite.me", NAME);
    edit(&dir, "10_account.rc", "YOURSECRET", "s3cret");
    edit(&dir, "10_account.rc", "abort_not_configured", "");
    edit(
        &dir,
        "20_frontends.rc",
        "\ndefaults",
        &format!("\nfrontend = 127.0.0.1:{port}"),
    );
    // The web server sample, enabled, for the local server on its port, and
    // a password for it in pagekite.py's per-kite option syntax.
    let httpd = std::fs::read_to_string(dir.join("80_httpd.rc.sample")).expect("sample");
    let httpd = httpd.replace("localhost:80 ", &format!("localhost:{} ", origin.port()));
    assert!(httpd.contains(&format!(
        "service_on = http:@kitename : localhost:{} : @kitesecret",
        origin.port()
    )));
    std::fs::write(
        dir.join("80_httpd.rc"),
        format!("{httpd}\nservice_cfg = {NAME}/80 : password/bob : pw\n"),
    )
    .expect("write");
    // The sshd sample, configured but switched off.
    let sshd = std::fs::read_to_string(dir.join("80_sshd.rc.sample")).expect("sample");
    let sshd = sshd.replace("service_on = raw/22", "service_off = raw/22");
    assert!(sshd.contains("service_off = raw/22:@kitename : localhost:22 : @kitesecret"));
    std::fs::write(dir.join("80_sshd.rc"), sshd).expect("write");

    let status = dir.join("status.json");
    let be = util::rkite(&[
        "-O",
        &dir.to_string_lossy(),
        &format!("--status_file={}", status.display()),
    ]);
    live(&be, &format!("http:{NAME}"));
    live(&fe, &format!("http:{NAME}"));
    let url = format!("http://127.0.0.1:{port}/");
    let host = format!("Host: {NAME}");
    let denied = util::curl(&["-H", &host, &url]);
    assert_eq!(denied.status, 401);
    let ok = util::curl(&["-u", "bob:pw", "-H", &host, &url]);
    assert_eq!((ok.status, ok.body_str().as_str()), (200, INDEX_BODY));
    // The switched-off kite is not flown: CONNECT to it finds nobody.
    let mut s = TcpStream::connect(local(port)).expect("connect");
    s.write_all(format!("CONNECT {NAME}:22 HTTP/1.1\r\n\r\n").as_bytes())
        .expect("send");
    s.set_read_timeout(Some(T)).expect("timeout");
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.0 503"), "{reply}");
    assert!(!be.contains("raw-22"), "a service_off kite was flown");
    // The status file shows it as disabled.
    util::wait_until("the status file names the disabled kite", T, || {
        std::fs::read_to_string(&status).is_ok_and(|text| {
            text.contains(&format!(
                "\"name\": \"raw-22:{NAME}\", \"local\": \"127.0.0.1:22\", \"state\": \"disabled\""
            ))
        })
    });
    // Switched on in the file and SIGHUP: it flies, the web kite stays.
    edit(
        &dir,
        "80_sshd.rc",
        "service_off = raw/22",
        "service_on = raw/22",
    );
    be.signal(libc::SIGHUP);
    live(&fe, &format!("raw-22:{NAME}"));
    let again = util::curl(&["-u", "bob:pw", "-H", &host, &url]);
    assert_eq!(again.status, 200);
    eprintln!("served {NAME} from Debian's files: 401, then 200 with the password");
}

/// `errorurl`, as pagekite.py has it: the unavailable page frames the
/// operator's URL (with where/proto/domain added to a URL with a `?`), on the
/// frontend for unknown names and on the backend for a local server that is
/// down; `DOMAIN:URL` for a domain's own page, without PageKite's name.
#[test]
fn errorurl_frames_the_unavailable_pages() {
    let port = free_port();
    let fe = frontend(
        &[port],
        &["http:*.down.test:s3cret"],
        &["--errorurl=http://errors.test/offline/?"],
    );
    let closed = free_port();
    let be = crate::fixture::backend(
        port,
        &[crate::fixture::kite(
            "http",
            "www.down.test",
            closed,
            "s3cret",
        )],
        &["-E", "down.test:http://down.test/sorry.html"],
    );
    live(&fe, "http:www.down.test");
    live(&be, "http:www.down.test");
    let nobody = crate::fixture::get(port, "nosuch.down.test", "/");
    assert_eq!(nobody.status, 503);
    let body = nobody.body_str();
    assert!(
        body.contains(
            "<frame target=\"_top\" src=\"http://errors.test/offline/?&amp;where=FE&amp;proto=http&amp;domain=nosuch.down.test\" />"
        ),
        "{body}"
    );
    let down = crate::fixture::get(port, "www.down.test", "/");
    assert_eq!(down.status, 503);
    let body = down.body_str();
    assert!(
        body.contains("src=\"http://down.test/sorry.html\""),
        "{body}"
    );
    assert!(
        body.contains("Sorry! (be)") && !body.contains("PageKite</i>"),
        "{body}"
    );
}
