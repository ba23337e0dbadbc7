//! ACME's building blocks against real tools: the certificate request rkite
//! signs is one `openssl req` verifies and reads back with its name; and the
//! frontend's `--acme` against Debian's pebble (with `pebble-challtestsrv` as
//! its name server), validating HTTP-01 on the frontend's own port.

use std::process::Command;

use ring::rand::SystemRandom;
use rkite::proto::jose::Key;

use crate::certs;
use crate::fixture::{self, T};
use crate::origin::{INDEX_BODY, Origin};
use crate::util::{self, Proc, free_port};

#[test]
fn openssl_verifies_the_certificate_request() {
    if !util::require_peer("openssl") {
        return;
    }
    let rng = SystemRandom::new();
    let key = Key::generate(&rng).expect("a key");
    let long = format!("{}.example.test", "a".repeat(60));
    for names in [
        vec!["kite.example.test"],
        vec!["kite.example.test", "www.kite.example.test"],
        vec![long.as_str()],
    ] {
        let csr = key.csr(&rng, &names).expect("a request");
        let path = util::temp_dir("acme-csr").join("req.der");
        std::fs::write(&path, &csr).expect("write");
        let out = Command::new("openssl")
            .args(["req", "-inform", "DER", "-in"])
            .arg(&path)
            .args(["-noout", "-verify", "-text"])
            .output()
            .expect("openssl runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(text.contains("verify OK"), "{text}");
        assert!(text.contains("ASN1 OID: prime256v1"), "{text}");
        let sans: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        assert!(text.contains(&sans.join(", ")), "{text}");
    }
}

/// TLS-ALPN-01's self-signed certificate as openssl reads it: v3, the
/// name as SAN, the critical acmeIdentifier holding SHA-256 of the key
/// authorization, and a signature that verifies with its own key.
#[test]
fn openssl_reads_the_tls_alpn_certificate() {
    if !util::require_peer("openssl") {
        return;
    }
    let rng = SystemRandom::new();
    let key = Key::generate(&rng).expect("a key");
    let der = key
        .alpn_certificate(&rng, "kite.example.test", "tok.thumb")
        .expect("a certificate");
    let dir = util::temp_dir("acme-alpn-cert");
    let path = dir.join("alpn.der");
    std::fs::write(&path, &der).expect("write");
    let out = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(&path)
        .args(["-noout", "-text"])
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Version: 3 (0x2)"), "{text}");
    assert!(text.contains("DNS:kite.example.test"), "{text}");
    assert!(text.contains("1.3.6.1.5.5.7.1.31: critical"), "{text}");
    // The extension's value: an OCTET STRING holding the 32-byte digest
    // (openssl shows unknown extensions as raw text; pebble checks it for real).
    let digest = ring::digest::digest(&ring::digest::SHA256, b"tok.thumb");
    let value = [&[0x04, 0x22, 0x04, 0x20][..], digest.as_ref()].concat();
    assert!(der.windows(value.len()).any(|w| w == value));
    // Self-signed: it verifies against itself (openssl rightly refuses the
    // critical extension it does not know unless told to let it be).
    let pem = dir.join("alpn.pem");
    openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        certs::path_str(&path),
        "-out",
        certs::path_str(&pem),
    ]);
    let out = Command::new("openssl")
        .args([
            "verify",
            "-check_ss_sig",
            "-partial_chain",
            "-ignore_critical",
            "-CAfile",
        ])
        .arg(&pem)
        .arg(&pem)
        .output()
        .expect("openssl runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(": OK"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Debian's pebble, its name server `pebble-challtestsrv` answering every
/// name with 127.0.0.1, and pebble's own HTTPS certificate from the test CA.
struct Pebble {
    acme_port: u16,
    mgmt_port: u16,
    _dns: Proc,
    proc: Proc,
}

impl Pebble {
    /// Pebble validating HTTP-01 on `http_port` (the frontend's port 80)
    /// and TLS-ALPN-01 on `tls_port` (its port 443).
    fn start(http_port: u16, tls_port: u16) -> Pebble {
        let dir = util::temp_dir("pebble");
        let leaf = certs::pki().leaf(&["127.0.0.1", "localhost"]);
        let (acme_port, mgmt_port, dns_port, dns_mgmt) =
            (free_port(), free_port(), free_port(), free_port());
        let dns = Proc::start(
            "challtestsrv",
            "pebble-challtestsrv",
            &[
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{dns_mgmt}"),
                "-defaultIPv6",
                "",
            ],
            &[],
        );
        util::wait_port(util::local(dns_mgmt), T);
        let config = dir.join("pebble.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"pebble": {{"listenAddress": "127.0.0.1:{acme_port}",
                "managementListenAddress": "127.0.0.1:{mgmt_port}",
                "certificate": "{}", "privateKey": "{}",
                "httpPort": {http_port}, "tlsPort": {tls_port}, "ocspResponderURL": "",
                "externalAccountBindingRequired": false}}}}"#,
                certs::path_str(&leaf.cert),
                certs::path_str(&leaf.key),
            ),
        )
        .expect("write the config");
        let proc = Proc::start(
            "pebble",
            "pebble",
            &[
                "-config",
                certs::path_str(&config),
                "-dnsserver",
                &format!("127.0.0.1:{dns_port}"),
            ],
            &[("PEBBLE_VA_NOSLEEP", "1")],
        );
        util::wait_port(util::local(acme_port), T);
        Pebble {
            acme_port,
            mgmt_port,
            _dns: dns,
            proc,
        }
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// Pebble's issuing root (made fresh at every start), as a PEM file.
    fn root(&self) -> std::path::PathBuf {
        let got = util::curl(&[
            "--cacert",
            certs::pki().ca_cert_str(),
            &format!("https://127.0.0.1:{}/roots/0", self.mgmt_port),
        ]);
        assert_eq!(got.status, 200);
        let path = util::temp_dir("pebble-root").join("root.pem");
        std::fs::write(&path, &got.body).expect("write");
        path
    }
}

const KITE: &str = "kite.example.test";

fn acme_frontend(http: u16, tls: u16, pebble: &Pebble, dir: &std::path::Path) -> Proc {
    acme_frontend_with(http, tls, pebble, dir, &[])
}

fn acme_frontend_with(
    http: u16,
    tls: u16,
    pebble: &Pebble,
    dir: &std::path::Path,
    extra: &[&str],
) -> Proc {
    let mut args = vec![
        "--isfrontend".to_string(),
        "--host=127.0.0.1".to_string(),
        format!("--ports={http},{tls}"),
        "--protos=http,https".to_string(),
        "--domain=http:*.example.test:s3cret".to_string(),
        format!("--acme={}", pebble.directory()),
        format!("--acme_dir={}", dir.display()),
        format!("--acme_ca={}", certs::pki().ca_cert_str()),
        "--acme_email=ops@example.test".to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let fe = util::rkite(&refs);
    fe.wait_for(&format!("listening on 127.0.0.1:{tls}"), T);
    fe
}

/// A backend flying KITE through the frontend on `http`, live.
fn fly(http: u16, origin: &Origin) -> Proc {
    let be = fixture::backend(
        http,
        &[fixture::kite("http", KITE, origin.port(), "s3cret")],
        &[],
    );
    fixture::live(&be, &format!("http:{KITE}"));
    be
}

fn https_get(tls: u16, root: &std::path::Path) -> crate::util::CurlResult {
    util::curl(&[
        "--cacert",
        certs::path_str(root),
        "--resolve",
        &format!("{KITE}:{tls}:127.0.0.1"),
        &format!("https://{KITE}:{tls}/"),
    ])
}

/// The whole story against pebble: a kite comes up, its name gets a
/// certificate by HTTP-01 on the frontend's port, https serves the kite
/// with it; a name nobody flies gets none; a restart reuses the stored one.
#[test]
fn a_kite_gets_a_certificate_from_pebble_and_keeps_it_across_restarts() {
    if !util::require_peer("pebble") || !util::require_peer("pebble-challtestsrv") {
        return;
    }
    let (http, tls) = (free_port(), free_port());
    let pebble = Pebble::start(http, tls);
    let dir = util::temp_dir("acme-state").join("acme");
    let origin = Origin::start();
    let status = util::temp_dir("acme-status").join("status.json");
    let metrics = free_port();
    let fe = acme_frontend_with(
        http,
        tls,
        &pebble,
        &dir,
        &[
            &format!("--status_file={}", status.display()),
            &format!("--metrics=127.0.0.1:{metrics}"),
        ],
    );
    // A visitor asking for an unregistered name orders nothing.
    let got = fixture::get(http, "nobody.example.test", "/");
    assert_ne!(got.status, 200);
    let be = fly(http, &origin);
    fe.wait_for(
        &format!("acme: certificate for {KITE} issued and installed"),
        T + T,
    );
    pebble.proc.wait_for("authz", T);
    let root = pebble.root();
    let got = https_get(tls, &root);
    assert_eq!(got.status, 200);
    assert_eq!(got.body_str(), INDEX_BODY);
    assert!(!fe.contains("ordering a certificate for nobody"));
    // The operator sees it in the status file and the metrics.
    util::wait_until("the status file shows the certificate", T, || {
        std::fs::read_to_string(&status).is_ok_and(|s| {
            s.contains("\"acme\": {\"issued\": 1, \"failed\": 0")
                && s.contains(&format!("{{\"name\": \"{KITE}\", \"state\": \"valid until"))
        })
    });
    // A client that does not trust the certificate gives up mid-handshake.
    let refused = util::try_curl(&[
        "--resolve",
        &format!("{KITE}:{tls}:127.0.0.1"),
        &format!("https://{KITE}:{tls}/"),
    ]);
    assert!(refused.is_err(), "curl trusted pebble's certificate");
    let scrape = || util::curl(&[&format!("http://127.0.0.1:{metrics}/metrics")]).body_str();
    util::wait_until("the metrics count the TLS handshakes", T, || {
        let m = scrape();
        m.contains("rkite_public_tls_handshakes_total{result=\"ok\"} 1\n")
            && m.contains("rkite_public_tls_handshakes_total{result=\"failed\"} 1\n")
    });
    let scraped = scrape();
    assert!(
        scraped.contains("rkite_acme_certificates{state=\"valid\"} 1\n")
            && scraped.contains("rkite_acme_orders_total 1\n"),
        "{scraped}"
    );
    let mode = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).expect("exists").permissions().mode() & 0o777
    };
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("account.key")), 0o600);
    assert_eq!(mode(&dir.join(format!("{KITE}.key"))), 0o600);
    // A restart serves the stored certificate without a new order.
    drop(be);
    drop(fe);
    let fe = acme_frontend(http, tls, &pebble, &dir);
    fe.wait_for(
        &format!("acme: serving the stored certificate for {KITE}"),
        T,
    );
    let _be = fly(http, &origin);
    let got = https_get(tls, &root);
    assert_eq!(got.body_str(), INDEX_BODY);
    assert!(!fe.contains("ordering a certificate"), "{:?}", fe.lines());
}

/// Runs openssl, panicking with its output when it fails.
fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stored certificate past two thirds of its lifetime (valid 2020 to
/// 2027, made with `openssl ca -startdate -enddate`) is renewed once the
/// kite flies: afterwards https verifies against pebble's root, which the
/// old self-signed certificate never could.
#[test]
fn a_certificate_past_two_thirds_of_its_life_is_renewed() {
    if !util::require_peer("pebble") || !util::require_peer("pebble-challtestsrv") {
        return;
    }
    let work = util::temp_dir("acme-old");
    let dir = work.join("acme");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let w = |name: &str| work.join(name).display().to_string();
    std::fs::write(work.join("index.txt"), "").expect("index");
    std::fs::write(work.join("serial"), "01\n").expect("serial");
    std::fs::write(
        work.join("ca.cnf"),
        format!(
            "[ca]\ndefault_ca = d\n[d]\ndatabase = {}\nnew_certs_dir = {}\nserial = {}\n\
             default_md = sha256\npolicy = p\nx509_extensions = x\n[p]\ncommonName = supplied\n\
             [x]\nbasicConstraints = CA:FALSE\nsubjectAltName = DNS:{KITE}\n",
            w("index.txt"),
            work.display(),
            w("serial")
        ),
    )
    .expect("cnf");
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &w("k.pem"),
    ]);
    openssl(&[
        "req",
        "-new",
        "-key",
        &w("k.pem"),
        "-subj",
        &format!("/CN={KITE}"),
        "-out",
        &w("r.csr"),
    ]);
    openssl(&[
        "ca",
        "-batch",
        "-selfsign",
        "-config",
        &w("ca.cnf"),
        "-keyfile",
        &w("k.pem"),
        "-in",
        &w("r.csr"),
        "-startdate",
        "200101000000Z",
        "-enddate",
        "270101000000Z",
        "-out",
        &dir.join(format!("{KITE}.crt")).display().to_string(),
    ]);
    openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        &w("k.pem"),
        "-outform",
        "DER",
        "-out",
        &dir.join(format!("{KITE}.key")).display().to_string(),
    ]);
    let (http, tls) = (free_port(), free_port());
    let pebble = Pebble::start(http, tls);
    let origin = Origin::start();
    let fe = acme_frontend(http, tls, &pebble, &dir);
    fe.wait_for(
        &format!("acme: serving the stored certificate for {KITE}"),
        T,
    );
    let _be = fly(http, &origin);
    fe.wait_for(&format!("acme: ordering a certificate for {KITE}"), T);
    fe.wait_for(
        &format!("acme: certificate for {KITE} issued and installed"),
        T + T,
    );
    let got = https_get(tls, &pebble.root());
    assert_eq!(got.body_str(), INDEX_BODY);
}

/// TLS-ALPN-01 (RFC 8737): with `--acme_challenge=tls-alpn-01` the CA
/// validates on the frontend's TLS port, asking for `acme-tls/1`; plain
/// HTTP plays no part (pebble is given a port with nothing on it for it).
#[test]
fn tls_alpn_01_validates_on_the_tls_port() {
    if !util::require_peer("pebble") || !util::require_peer("pebble-challtestsrv") {
        return;
    }
    let (http, tls) = (free_port(), free_port());
    let pebble = Pebble::start(free_port(), tls);
    let dir = util::temp_dir("acme-alpn").join("acme");
    let origin = Origin::start();
    let fe = acme_frontend_with(http, tls, &pebble, &dir, &["--acme_challenge=tls-alpn-01"]);
    let _be = fly(http, &origin);
    fe.wait_for(
        &format!("acme: certificate for {KITE} issued and installed"),
        T + T,
    );
    assert!(
        !fe.contains("ACME challenge for"),
        "no HTTP-01 answer was needed"
    );
    let got = https_get(tls, &pebble.root());
    assert_eq!(got.body_str(), INDEX_BODY);
}
