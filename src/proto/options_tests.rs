//! Tests of `options.rs` (kept apart so the module itself stays readable).
use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn cidr(text: &str) -> Cidr {
    Cidr::parse(text).unwrap()
}

fn opts(list: &[&str]) -> KiteOptions {
    let mut o = KiteOptions::default();
    for opt in list {
        o.apply_short(opt).unwrap();
    }
    o
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

#[test]
fn short_forms() {
    let cases = [
        (
            "+ip/1.2.3.4",
            Key::Ip(cidr("1.2.3.4/32")),
            Value::Flag(true),
        ),
        ("+ip/1.2.3", Key::Ip(cidr("1.2.3.0/24")), Value::Flag(true)),
        (
            "+ip/10.0.0.0/8",
            Key::Ip(cidr("10.0.0.0/8")),
            Value::Flag(true),
        ),
        (
            "+ip/2001:db8::1",
            Key::Ip(cidr("2001:db8::1/128")),
            Value::Flag(true),
        ),
        (
            "+IP/2001:db8::/32",
            Key::Ip(cidr("2001:db8::/32")),
            Value::Flag(true),
        ),
        (
            "+ip/::ffff:1.2.3.4",
            Key::Ip(cidr("1.2.3.4/32")),
            Value::Flag(true),
        ),
        (
            "+password/bob=secret",
            Key::Password("bob".into()),
            text("secret"),
        ),
        (
            "+user/Bob=s=e:c",
            Key::Password("Bob".into()),
            text("s=e:c"),
        ),
        ("+rewritehost", Key::RewriteHost, Value::Flag(true)),
        (
            "+rewritehost=h.test:8080",
            Key::RewriteHost,
            text("h.test:8080"),
        ),
        ("+norewritehost", Key::RewriteHost, Value::Flag(false)),
        ("+rawheaders", Key::RawHeaders, Value::Flag(true)),
        ("+proxyproto", Key::ProxyProto, Value::Flag(true)),
        ("+proxyproto=2", Key::ProxyProto, text("2")),
        ("+insecure", Key::Insecure, Value::Flag(true)),
        ("+InSecure", Key::Insecure, Value::Flag(true)),
        ("+noinsecure", Key::Insecure, Value::Flag(false)),
        ("+NOrawheaders", Key::RawHeaders, Value::Flag(false)),
        ("+insecure=", Key::Insecure, text("")),
    ];
    for (opt, key, value) in cases {
        assert_eq!(parse_short(opt), Ok((key, value)), "{opt}");
    }
}

#[test]
fn short_form_errors_name_the_text() {
    let cases = [
        ("insecure", OptionError::NotAnOption("insecure".into())),
        ("+", OptionError::UnknownKey("".into())),
        ("+no", OptionError::UnknownKey("no".into())),
        ("+insecur", OptionError::UnknownKey("insecur".into())),
        ("+nofoo", OptionError::UnknownKey("foo".into())),
        ("+insecure/x", OptionError::UnknownKey("insecure/x".into())),
        ("+hide", OptionError::UnknownKey("hide".into())),
        (
            "+norewritehost=x",
            OptionError::UnknownKey("norewritehost".into()),
        ),
        ("+ip/1.2", OptionError::BadAddress("1.2".into())),
        ("+ip/1.2.3.", OptionError::BadAddress("1.2.3.".into())),
        ("+ip/1.2.3.256", OptionError::BadAddress("1.2.3.256".into())),
        ("+ip/01.2.3", OptionError::BadAddress("01.2.3".into())),
        (
            "+ip/1.2.3.0/33",
            OptionError::BadAddress("1.2.3.0/33".into()),
        ),
        ("+ip/", OptionError::BadAddress("".into())),
        ("+ip/host.test", OptionError::BadAddress("host.test".into())),
        ("+password/=pw", OptionError::BadUser("".into())),
        ("+password/a:b=pw", OptionError::BadUser("a:b".into())),
        ("+user/a\tb=pw", OptionError::BadUser("a\tb".into())),
    ];
    for (opt, want) in cases {
        assert_eq!(parse_short(opt), Err(want), "{opt}");
    }
    let shown = [
        (
            OptionError::NotAnOption("x".into()),
            "kite option \"x\" does not start with +",
        ),
        (
            OptionError::UnknownKey("foo".into()),
            "unknown kite option \"foo\"",
        ),
        (
            OptionError::BadValue {
                key: "insecure".into(),
                value: "maybe".into(),
            },
            "kite option \"insecure\" can't be \"maybe\"",
        ),
        (
            OptionError::BadAddress("1.2".into()),
            "kite option ip/1.2: not an address, a.b.c prefix or CIDR block",
        ),
        (
            OptionError::BadUser("a:b".into()),
            "kite option password/a:b: bad user name",
        ),
        (
            OptionError::NoPassword("bob".into()),
            "kite option password/bob has no password",
        ),
        (
            OptionError::BadConfig("x".into()),
            "backend config \"x\" is not HOST[/PORT]:KEY:VALUE",
        ),
        (
            OptionError::BadPort("0".into()),
            "backend config port \"0\" is not 1-65535",
        ),
    ];
    for (e, want) in shown {
        assert_eq!(e.to_string(), want);
    }
}

#[test]
fn values_per_key() {
    let o = opts(&["+insecure=false", "+rawheaders=True"]);
    assert!(!o.insecure, "unlike pagekite.py, false means false");
    assert!(o.raw_headers);
    let o = opts(&["+insecure", "+noinsecure"]);
    assert!(!o.insecure, "the last setting wins");

    let proxy = |v: &str| opts(&[&format!("+proxyproto={v}")]).proxy_proto;
    for v in ["1", "true", "True", "yes", "ON"] {
        assert_eq!(proxy(v), ProxyProto::V1, "{v}");
    }
    assert_eq!(proxy("2"), ProxyProto::V2);
    for v in ["0", "false", "no", "off", "None"] {
        assert_eq!(proxy(v), ProxyProto::Off, "{v}");
    }
    assert_eq!(opts(&["+proxyproto"]).proxy_proto, ProxyProto::V1);
    assert_eq!(
        opts(&["+proxyproto=2", "+noproxyproto"]).proxy_proto,
        ProxyProto::Off
    );

    let host = |v: &str| opts(&[v]).rewrite_host;
    assert_eq!(host("+rewritehost"), RewriteHost::Local);
    assert_eq!(host("+rewritehost=true"), RewriteHost::Local);
    assert_eq!(host("+rewritehost=False"), RewriteHost::Off);
    assert_eq!(host("+norewritehost"), RewriteHost::Off);
    assert_eq!(
        host("+rewritehost=h.test"),
        RewriteHost::Name("h.test".into())
    );
    assert_eq!(
        opts(&["+rewritehost"]).host_header("localhost"),
        Some("localhost".into())
    );
    assert_eq!(
        opts(&["+rewritehost=h"]).host_header("localhost"),
        Some("h".into())
    );
    assert_eq!(KiteOptions::default().host_header("localhost"), None);

    let bad = |opt: &str, key: &str, value: &str| {
        let want = OptionError::BadValue {
            key: key.into(),
            value: value.into(),
        };
        assert_eq!(KiteOptions::default().apply_short(opt), Err(want), "{opt}");
    };
    bad("+insecure=maybe", "insecure", "maybe");
    bad("+insecure=", "insecure", "");
    bad("+rawheaders=2", "rawheaders", "2");
    bad("+proxyproto=3", "proxyproto", "3");
    bad("+proxyproto=v2", "proxyproto", "v2");
    bad("+rewritehost=a b", "rewritehost", "a b");
    bad("+rewritehost=", "rewritehost", "");
    // pagekite.py would *restrict* the kite to an address given as false.
    bad("+noip/1.2.3.4", "ip/1.2.3.4/32", "false");
    bad("+ip/1.2.3=0", "ip/1.2.3.0/24", "0");
    let mut o = KiteOptions::default();
    for opt in ["+password/bob", "+nopassword/bob", "+password/bob="] {
        assert_eq!(
            o.apply_short(opt),
            Err(OptionError::NoPassword("bob".into())),
            "{opt}"
        );
    }
    assert!(o.apply(Key::Ip(cidr("1.2.3.4/32")), text("True")).is_ok());
    assert_eq!(o.ip_allow, [cidr("1.2.3.4/32")]);
}

#[test]
fn be_config_forms() {
    let cases = [
        (
            "foo.test/80:insecure:True",
            "foo.test",
            Some(80),
            Key::Insecure,
            "True",
        ),
        (
            "Foo.Test:password/bob:pa:ss",
            "foo.test",
            None,
            Key::Password("bob".into()),
            "pa:ss",
        ),
        (
            "foo.test/443:user/bob:x",
            "foo.test",
            Some(443),
            Key::Password("bob".into()),
            "x",
        ),
        (
            "foo.test/80:ip/1.2.3.4:True",
            "foo.test",
            Some(80),
            Key::Ip(cidr("1.2.3.4/32")),
            "True",
        ),
        (
            "foo.test/80:ip/2001:db8::/32:True",
            "foo.test",
            Some(80),
            Key::Ip(cidr("2001:db8::/32")),
            "True",
        ),
        (
            "*.foo.test/8080:rewritehost:h:81",
            "*.foo.test",
            Some(8080),
            Key::RewriteHost,
            "h:81",
        ),
        (
            "foo.test/80:proxyproto:",
            "foo.test",
            Some(80),
            Key::ProxyProto,
            "",
        ),
    ];
    for (spec, host, port, key, value) in cases {
        assert_eq!(
            parse_be_config(spec),
            Ok((host.to_owned(), port, key, text(value))),
            "{spec}"
        );
    }
    let errors = [
        ("foo.test", OptionError::BadConfig("foo.test".into())),
        (
            "foo.test/80:insecure",
            OptionError::BadConfig("foo.test/80:insecure".into()),
        ),
        (":insecure:True", OptionError::BadConfig("".into())),
        ("/80:insecure:True", OptionError::BadConfig("/80".into())),
        ("foo.test/0:insecure:True", OptionError::BadPort("0".into())),
        ("foo.test/:insecure:True", OptionError::BadPort("".into())),
        ("foo.test/x:insecure:True", OptionError::BadPort("x".into())),
        (
            "foo.test/+80:insecure:True",
            OptionError::BadPort("+80".into()),
        ),
        (
            "foo.test/65536:insecure:True",
            OptionError::BadPort("65536".into()),
        ),
        (
            "foo.test/80:bogus:1",
            OptionError::UnknownKey("bogus".into()),
        ),
        ("foo.test/80:ip/::1", OptionError::BadAddress(":".into())),
    ];
    for (spec, want) in errors {
        assert_eq!(parse_be_config(spec), Err(want), "{spec}");
    }
    // A bad host is named without the rest, which may hold a password.
    let e = parse_be_config("bad host:password/bob:secret").unwrap_err();
    assert_eq!(e, OptionError::BadConfig("bad host".into()));
    assert!(!e.to_string().contains("secret"));
    let e = parse_be_config("foo.test/99999:password/bob:secret").unwrap_err();
    assert!(!e.to_string().contains("secret"));
}

#[test]
fn be_config_applies_like_short_forms() {
    let mut o = KiteOptions::default();
    for spec in [
        "h/80:password/bob:pa:ss",
        "h/80:insecure:True",
        "h/80:proxyproto:2",
    ] {
        let (_, _, key, value) = parse_be_config(spec).unwrap();
        o.apply(key, value).unwrap();
    }
    assert!(o.insecure);
    assert_eq!(o.proxy_proto, ProxyProto::V2);
    assert_eq!(o.users().collect::<Vec<_>>(), ["bob"]);
    let head = b"GET / HTTP/1.1\r\nAuthorization: Basic Ym9iOnBhOnNz\r\n\r\n";
    assert_eq!(o.check_basic_auth(head), AuthCheck::Ok);
}

#[test]
fn ip_checks() {
    let open = KiteOptions::default();
    for rip in ["1.2.3.4", "::1", "garbage", ""] {
        assert!(open.ip_allowed(rip), "{rip}");
    }
    let o = opts(&[
        "+ip/1.2.3.4",
        "+ip/10.9.8",
        "+ip/192.168.0.0/16",
        "+ip/2001:db8::/32",
    ]);
    for rip in [
        "1.2.3.4",
        "::ffff:1.2.3.4",
        "::FFFF:1.2.3.4",
        "10.9.8.0",
        "10.9.8.255",
        "192.168.77.1",
        "2001:db8::5",
        "2001:DB8:0::5",
        "::ffff:192.168.1.1",
    ] {
        assert!(o.ip_allowed(rip), "{rip}");
    }
    for rip in [
        "1.2.3.5",
        "10.9.9.1",
        "10.9.8",
        "192.169.0.1",
        "2001:db9::1",
        "::1",
        "",
        "x",
        " 1.2.3.4",
        "::ffff:",
    ] {
        assert!(!o.ip_allowed(rip), "{rip}");
    }
    // Repeats are kept once.
    assert_eq!(opts(&["+ip/1.2.3.4", "+ip/1.2.3.4"]).ip_allow.len(), 1);
}

#[test]
fn basic_auth() {
    let head = |auth: &str| format!("GET / HTTP/1.1\r\nHost: h\r\n{auth}\r\n\r\n");
    assert_eq!(
        KiteOptions::default().check_basic_auth(b"GET / HTTP/1.1\r\n\r\n"),
        AuthCheck::Ok
    );
    let o = opts(&["+password/bob=secret", "+password/alice=pa:ss"]);
    let cases = [
        ("Authorization: Basic Ym9iOnNlY3JldA==", AuthCheck::Ok),
        ("authorization:basic   Ym9iOnNlY3JldA==  ", AuthCheck::Ok),
        ("AUTHORIZATION: BASIC YWxpY2U6cGE6c3M=", AuthCheck::Ok),
        ("X-Other: 1", AuthCheck::Missing),
        ("Authorization: Bearer Ym9iOnNlY3JldA==", AuthCheck::Missing),
        ("Authorization : Basic Ym9iOnNlY3JldA==", AuthCheck::Missing),
        ("Authorization: Basic Ym9iOndyb25n", AuthCheck::Wrong),
        ("Authorization: Basic ZXZlOnNlY3JldA==", AuthCheck::Wrong),
        ("Authorization: Basic Ym9ic2VjcmV0", AuthCheck::Wrong),
        ("Authorization: Basic OnNlY3JldA==", AuthCheck::Wrong),
        ("Authorization: Basic Ym9iOg==", AuthCheck::Wrong),
        ("Authorization: Basic Ym9iOnNlY3JldA=", AuthCheck::Wrong),
        ("Authorization: Basic Ym9iOnNlY3JldA== x", AuthCheck::Wrong),
        ("Authorization: Basic", AuthCheck::Wrong),
        ("Authorization:", AuthCheck::Wrong),
        // The first Authorization header is the one pagekite.py reads.
        (
            "Authorization: Basic Ym9iOndyb25n\r\nAuthorization: Basic Ym9iOnNlY3JldA==",
            AuthCheck::Wrong,
        ),
    ];
    for (auth, want) in cases {
        assert_eq!(o.check_basic_auth(head(auth).as_bytes()), want, "{auth}");
    }
    // Bare LF, and credentials in the body or the request line don't count.
    let lf = b"GET / HTTP/1.1\nAuthorization: Basic Ym9iOnNlY3JldA==\n\n";
    assert_eq!(o.check_basic_auth(lf), AuthCheck::Ok);
    let body =
        b"POST / HTTP/1.1\r\nContent-Length: 40\r\n\r\nAuthorization: Basic Ym9iOnNlY3JldA==";
    assert_eq!(o.check_basic_auth(body), AuthCheck::Missing);
    let line = b"Authorization: Basic Ym9iOnNlY3JldA==\r\n\r\n";
    assert_eq!(o.check_basic_auth(line), AuthCheck::Missing);
    assert_eq!(o.check_basic_auth(b""), AuthCheck::Missing);
    // A later setting for a user replaces the earlier one.
    let o = opts(&["+password/bob=old", "+user/bob=secret"]);
    assert_eq!(o.users().count(), 1);
    assert_eq!(
        o.check_basic_auth(head("Authorization: Basic Ym9iOnNlY3JldA==").as_bytes()),
        AuthCheck::Ok
    );
}

#[test]
fn base64_vectors() {
    // RFC 4648 §10.
    let good: [(&str, &str); 6] = [
        ("Zg==", "f"),
        ("Zm8=", "fo"),
        ("Zm9v", "foo"),
        ("Zm9vYg==", "foob"),
        ("Zm9vYmE=", "fooba"),
        ("Zm9vYmFy", "foobar"),
    ];
    for (enc, dec) in good {
        assert_eq!(
            base64_decode(enc.as_bytes()),
            Some(dec.as_bytes().to_vec()),
            "{enc}"
        );
    }
    assert_eq!(base64_decode(b"+/+/"), Some(vec![0xfb, 0xff, 0xbf]));
    for bad in [
        "", "Zg=", "Zg", "Z===", "====", "Zg==Zg==", "Zm9v!A==", "Zm=v", "Zm9v\n", "Zm-_",
    ] {
        assert_eq!(base64_decode(bad.as_bytes()), None, "{bad}");
    }
}

#[test]
fn trusted_kites_skip_the_filter() {
    assert!(KiteOptions::default().filters_dangerous(false));
    assert!(!KiteOptions::default().filters_dangerous(true));
    assert!(!opts(&["+insecure"]).filters_dangerous(false));
    assert!(!opts(&["+ip/1.2.3.4"]).filters_dangerous(false));
    assert!(!opts(&["+password/a=b"]).filters_dangerous(false));
    assert!(opts(&["+rawheaders", "+noinsecure"]).filters_dangerous(false));
}

#[test]
fn debug_hides_passwords() {
    let o = opts(&["+password/bob=hunter2", "+ip/1.2.3.4"]);
    let shown = format!("{o:?}");
    assert!(
        shown.contains("bob") && shown.contains("1.2.3.4"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// `(line, HTTP_DANGER.search(line))`, computed with CPython 3.11 on
/// pagekite.py 1.5's regex; a differential run of 900,000 generated lines
/// agreed too.
const PYTHON_DANGER: &[(&str, bool)] = &[
    ("GET /xampp/ HTTP/1.1", true),
    ("GET /xampp HTTP/1.1", false),
    ("GET ///XAMPP/index HTTP/1.1", true),
    ("GET /a/xampp/ HTTP/1.1", false),
    ("POST /security/x HTTP/1.1", true),
    ("GET /securityx/ HTTP/1.1", false),
    ("PUT /licenses/ HTTP/1.0", true),
    ("GET /license/ HTTP/1.1", false),
    ("PATCH /webalizer/ HTTP/1.1", true),
    ("GET /webalizer HTTP/1.1", false),
    ("DELETE /server-status HTTP/1.1", true),
    ("GET /server-statu HTTP/1.1", false),
    ("GET /server-info?x HTTP/1.1", true),
    ("GET /x/server-info HTTP/1.1", false),
    ("GET /adm HTTP/1.1", true),
    ("GET /administrator/ HTTP/1.1", true),
    ("GET /ad HTTP/1.1", false),
    ("GET /x/admin HTTP/1.1", false),
    ("GET /wp-admin/ HTTP/1.1", true),
    ("GET /blog/wp-admin/index.php HTTP/1.1", true),
    ("GET /wp-admin/admin-ajax.php HTTP/1.1", true),
    ("GET /wp-admin/css/x.css HTTP/1.1", false),
    ("GET /wp-admin/CSS/x.css HTTP/1.1", false),
    ("GET /wp-admin HTTP/1.1", false),
    ("GET /wp-admin/admin-aja HTTP/1.1", true),
    ("GET /wp-config.php HTTP/1.1", true),
    ("GET /a/wp-config.php.bak HTTP/1.1", true),
    ("GET /wp-config.phx HTTP/1.1", false),
    ("GET /xwp-config.php HTTP/1.1", false),
    ("GET /c/windows/system32/cmd.exe HTTP/1.1", true),
    ("GET /system32 HTTP/1.1", false),
    ("GET /a/../b HTTP/1.1", true),
    ("GET /.. HTTP/1.1", true),
    ("GET /a..b HTTP/1.1", false),
    ("GET /a/.%2e/b HTTP/1.1", false),
    ("GET /.htaccess HTTP/1.1", true),
    ("GET /x/.htpasswd HTTP/1.1", true),
    ("GET /.htpass HTTP/1.1", true),
    ("GET /.htacces HTTP/1.1", false),
    ("GET /x.htaccess HTTP/1.1", false),
    ("GET /phpmyadmin/ HTTP/1.1", true),
    ("GET /phpMyAdmin HTTP/1.1", true),
    ("GET /mysqladmin HTTP/1.1", true),
    ("GET /myadm HTTP/1.1", true),
    ("GET /sqlmyadm HTTP/1.1", true),
    ("GET /mymanager HTTP/1.1", true),
    ("GET /phpmysqlmanager HTTP/1.1", true),
    ("GET /sqlmanager HTTP/1.1", false),
    ("GET /pma/ HTTP/1.1", false),
    ("GET /php/myadm HTTP/1.1", true),
    ("GET /x/phpmy HTTP/1.1", false),
    ("GET /my HTTP/1.1", false),
    ("GET /x/admin.php HTTP/1.1", true),
    ("GET /x/adm/x/y.php HTTP/1.1", true),
    ("GET /x/admin HTTP/1.1", false),
    ("GET /x/adm.phq HTTP/1.1", false),
    ("GET /x/adm?.php HTTP/1.1", true),
    ("GET /install.php HTTP/1.1", true),
    ("GET /x/installer/step.PHP HTTP/1.1", true),
    ("GET /x/install HTTP/1.1", false),
    ("GET /x/instal.php HTTP/1.1", false),
    ("GET /setup.php HTTP/1.1", true),
    ("GET /x/setup.phps HTTP/1.1", true),
    ("GET /x/setup.ph HTTP/1.1", false),
    ("GET /x/setupx.php HTTP/1.1", false),
    ("GET /x/admx HTTP/1.1?.php", false),
    ("GET /x/adm HTTP/1.1 .php", false),
    ("get /xampp/ HTTP/1.1", true),
    ("gEt /xampp/ HTTP/1.1", true),
    ("HEAD /xampp/ HTTP/1.1", false),
    ("OPTIONS /xampp/ HTTP/1.1", false),
    ("GETS /xampp/ HTTP/1.1", false),
    (" GET /xampp/ HTTP/1.1", false),
    ("GET  /xampp/ HTTP/1.1", false),
    ("GET\t/xampp/ HTTP/1.1", false),
    ("CONNECT /xampp/ HTTP/1.1", false),
    ("GET /xampp/ HTTP/1.1\r", true),
    ("GET /xampp/ HTTP/1.1 \t \r", true),
    ("GET /xampp/ http/2.0", true),
    ("GET /xampp/ HTTP/10.20", true),
    ("GET /xampp/ HTTP/1.1x", false),
    ("GET /xampp/ HTTP/1", false),
    ("GET /xampp/ HTTP/.1", false),
    ("GET /xampp/", false),
    ("GET /xampp/ HTTP/1.1 x", false),
    ("GET /xampp/  HTTP/1.1", true),
    ("GET /xampp/\tHTTP/1.1", false),
    ("GET /xampp/ HTTP/1.1\x0b\x0c", true),
    ("GET /xampp/HTTP/1.1", false),
    ("GET / HTTP/1.1", false),
    ("GET /a/b HTTP/1.1", false),
    ("GET /?q=/../ HTTP/1.1", true),
    ("GET /x HTTP/1.1/.. HTTP/1.1", true),
    ("GET /x /.. HTTP/1.1", true),
    ("GET x/.. HTTP/1.1", true),
    ("GET .. HTTP/1.1", false),
    ("Host: x\nGET /xampp/ HTTP/1.1\r\n", true),
    ("GET / HTTP/1.1\r\nX: GET /xampp/ HTTP/1.1\r\n", false),
    ("GET /xampp/\n HTTP/1.1", false),
];

#[test]
fn security_filter_agrees_with_pagekite() {
    for &(line, want) in PYTHON_DANGER {
        assert_eq!(security_blocks(line.as_bytes()), want, "{line:?}");
    }
}

#[test]
fn security_filter_on_raw_bytes() {
    // pagekite.py reads bytes as Latin-1: 0x85 and 0xa0 are whitespace.
    assert!(security_blocks(b"GET /xampp/ HTTP/1.1\x85\xa0\x1c"));
    assert!(!security_blocks(b"GET /xampp/ HTTP/1.1\xe9"));
    assert!(security_blocks(b"GET /\xff/../ HTTP/1.1\r\n"));
    assert!(!security_blocks(b""));
    assert!(!security_blocks(b"\n\n"));
    assert!(!security_blocks(b"GET"));
    assert!(!security_blocks(b"GET "));
    assert!(!security_blocks(b"GET  HTTP/1.1"));
    assert!(!security_blocks(b" HTTP/1.1"));
    assert!(!security_blocks(b"HTTP/1.1"));
    assert!(!security_blocks(b"GET /.php HTTP/1.1"));
    // Long lines stay linear.
    let mut long = b"GET ".to_vec();
    for _ in 0..20_000 {
        long.extend_from_slice(b"/adm");
    }
    long.extend_from_slice(b" HTTP/1.1");
    assert!(security_blocks(&long));
    long.truncate(long.len() - 9);
    assert!(!security_blocks(&long));
}

#[test]
fn proxy_v1_lines() {
    let cases = [
        ("1.2.3.4", "PROXY TCP4 1.2.3.4 0.0.0.0 5678 80\r\n"),
        ("::ffff:1.2.3.4", "PROXY TCP4 1.2.3.4 0.0.0.0 5678 80\r\n"),
        ("2001:DB8::1", "PROXY TCP6 2001:db8::1 :: 5678 80\r\n"),
        ("::1", "PROXY TCP6 ::1 :: 5678 80\r\n"),
        ("", "PROXY UNKNOWN\r\n"),
        ("1.2.3.4\r\nGET /", "PROXY UNKNOWN\r\n"),
    ];
    for (rip, want) in cases {
        assert_eq!(
            String::from_utf8(proxy_v1(rip, 5678, 80)).unwrap(),
            want,
            "{rip:?}"
        );
    }
}

#[test]
fn proxy_v2_headers() {
    let sig = b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a";
    let mut want = sig.to_vec();
    want.extend_from_slice(&[
        0x21, 0x11, 0x00, 0x0c, 1, 2, 3, 4, 0, 0, 0, 0, 0x16, 0x2e, 0x01, 0xbb,
    ]);
    assert_eq!(proxy_v2(ip("1.2.3.4"), 5678, 443), want);
    assert_eq!(proxy_v2(ip("::ffff:1.2.3.4"), 5678, 443), want);

    let mut want = sig.to_vec();
    want.extend_from_slice(&[0x21, 0x21, 0x00, 0x24]);
    want.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
    ]);
    want.extend_from_slice(&[0; 16]);
    want.extend_from_slice(&[0xff, 0xff, 0x00, 0x50]);
    assert_eq!(proxy_v2(ip("2001:db8::1"), 65535, 80), want);
    assert_eq!(want.len(), 16 + 36);
}

#[test]
fn proxy_header_per_kite() {
    assert_eq!(KiteOptions::default().proxy_header("1.2.3.4", 1, 2), None);
    let v1 = opts(&["+proxyproto"]);
    assert_eq!(
        v1.proxy_header("1.2.3.4", 1, 2),
        Some(proxy_v1("1.2.3.4", 1, 2))
    );
    let v2 = opts(&["+proxyproto=2"]);
    assert_eq!(
        v2.proxy_header("::ffff:1.2.3.4", 1, 2),
        Some(proxy_v2(ip("1.2.3.4"), 1, 2))
    );
    let mut unspec = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    unspec.extend_from_slice(&[0x21, 0x00, 0x00, 0x00]);
    assert_eq!(v2.proxy_header("unknown", 1, 2), Some(unspec));
}
