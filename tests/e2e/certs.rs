//! Test certificates made at test time with the `openssl` CLI, and the openssl tools the
//! TLS tests talk through. `Pki` is a certificate authority (EC P-256 key and a self-signed
//! CA:TRUE certificate) in its own temp dir; `Pki::leaf` issues server certificates (DNS
//! SANs, wildcards allowed, CA:FALSE, serverAuth, valid from now for two days) and
//! `Pki::client` client certificates (clientAuth) for mutual TLS. A `Leaf` has its key, its
//! certificate and the combined PEM that `--tls_endpoint` wants (key, leaf, CA: pagekite.py
//! reads key and chain from the one file). `pki()` and `other_pki()` are two unrelated CAs
//! made once per test process, and leaves are cached by name, so a whole run spends well
//! under a second on certificates. `SServer` runs `openssl s_server -www` (its page names
//! the client certificate, if any) and `s_client` runs a bounded `openssl s_client -brief`.
//!
//! The tests here prove the certificates with openssl itself (chain, names, wildcards, the
//! wrong CA, client certificates) and with the real peer: Debian pagekite.py as frontend
//! (`--tls_endpoint`) and backend (`--fe_certname` + `--ca_certs`) tunnels over TLS with
//! them, and refuses the other CA. No rkite involved: these pass on their own.

#![allow(dead_code)] // Shared by the TLS test modules; not all use every helper.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::origin::{INDEX_BODY, Origin};
use crate::peers::{self, PAGEKITE};
use crate::util::{self, Proc, free_port};

/// The program name, for `require_peer`.
pub const OPENSSL: &str = "openssl";

/// Bound on one openssl command (key generation, signing, s_client).
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(25);

/// How long an `SServer` may take to print `ACCEPT`.
const SSERVER_READY: Duration = Duration::from_secs(20);

/// The `req` config: a placeholder DN (every call passes `-subj`) and the CA extensions.
const REQ_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
";

/// A key, its certificate (issued by a `Pki`), and key + certificate + CA in one PEM.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub key: PathBuf,
    pub cert: PathBuf,
    pub combined_pem: PathBuf,
}

impl Leaf {
    /// `path` as a &str, for command lines.
    pub fn key_str(&self) -> &str {
        path_str(&self.key)
    }
    pub fn cert_str(&self) -> &str {
        path_str(&self.cert)
    }
    pub fn pem_str(&self) -> &str {
        path_str(&self.combined_pem)
    }
}

/// A path that the tests made, as &str (they are all ASCII under the temp root).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// A test certificate authority in its own temp dir. Issued leaves are cached by kind and
/// names, so asking twice for the same names returns the same files.
pub struct Pki {
    name: String,
    dir: PathBuf,
    ca_key: PathBuf,
    ca_cert: PathBuf,
    issued: Mutex<HashMap<String, Leaf>>,
}

impl Pki {
    /// A new CA whose certificate's subject is `CN=<name> Test CA`. Needs openssl (check
    /// `util::require_peer(OPENSSL)` first).
    pub fn new(name: &str) -> Pki {
        let dir = util::temp_dir(&format!("pki-{name}"));
        std::fs::write(dir.join("req.cnf"), REQ_CNF).expect("write req.cnf");
        let subj = format!("/CN={name} Test CA");
        let serial = serial();
        openssl(
            &dir,
            "req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout ca.key -out ca.crt -days 3 -config req.cnf -extensions ca_ext",
            &["-subj", &subj, "-set_serial", &serial],
        );
        Pki {
            name: name.to_string(),
            ca_key: dir.join("ca.key"),
            ca_cert: dir.join("ca.crt"),
            dir,
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// The CA certificate (PEM), for `--ca_certs`, `--cacert`, `-CAfile`.
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    pub fn ca_cert_str(&self) -> &str {
        path_str(&self.ca_cert)
    }

    /// A server certificate for `names` (DNS SANs, or IP SANs for addresses, in order; the
    /// first is also the CN; `*.x` wildcards allowed), CA:FALSE, serverAuth, valid from now for two days.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        assert!(!names.is_empty(), "a leaf needs at least one name");
        // An IP address is an IP SAN (for servers reached by address).
        let san: Vec<String> = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(_) => format!("IP:{n}"),
                Err(_) => format!("DNS:{n}"),
            })
            .collect();
        let ext = format!(
            "basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth\n\
             subjectAltName = {}\n\
             subjectKeyIdentifier = hash\n\
             authorityKeyIdentifier = keyid\n",
            san.join(", ")
        );
        self.issue(&format!("server:{}", names.join(",")), names[0], &ext)
    }

    /// A client certificate with subject `CN=<cn>`: CA:FALSE, clientAuth, two days.
    pub fn client(&self, cn: &str) -> Leaf {
        let ext = "basicConstraints = critical, CA:FALSE\n\
                   keyUsage = critical, digitalSignature\n\
                   extendedKeyUsage = clientAuth\n\
                   subjectKeyIdentifier = hash\n\
                   authorityKeyIdentifier = keyid\n";
        self.issue(&format!("client:{cn}"), cn, ext)
    }

    /// Key, CSR, signature, combined PEM; cached under `cache_key`.
    fn issue(&self, cache_key: &str, cn: &str, ext: &str) -> Leaf {
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(leaf) = issued.get(cache_key) {
            return leaf.clone();
        }
        let base: String = cn
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let base = format!("{base}-{}", util::unique());
        let (key, csr, crt, extf) = (
            format!("{base}.key"),
            format!("{base}.csr"),
            format!("{base}.crt"),
            format!("{base}.ext"),
        );
        std::fs::write(self.dir.join(&extf), format!("[ext]\n{ext}")).expect("write ext file");
        let subj = format!("/CN={cn}");
        openssl(
            &self.dir,
            "req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -config req.cnf",
            &["-keyout", &key, "-out", &csr, "-subj", &subj],
        );
        let serial = serial();
        openssl(
            &self.dir,
            "x509 -req -CA ca.crt -CAkey ca.key -days 2 -extensions ext",
            &[
                "-in",
                &csr,
                "-set_serial",
                &serial,
                "-extfile",
                &extf,
                "-out",
                &crt,
            ],
        );
        let mut combined = std::fs::read(self.dir.join(&key)).expect("read key");
        combined.extend(std::fs::read(self.dir.join(&crt)).expect("read cert"));
        combined.extend(std::fs::read(&self.ca_cert).expect("read CA cert"));
        let combined_pem = self.dir.join(format!("{base}.pem"));
        std::fs::write(&combined_pem, combined).expect("write combined PEM");
        let leaf = Leaf {
            key: self.dir.join(key),
            cert: self.dir.join(crt),
            combined_pem,
        };
        issued.insert(cache_key.to_string(), leaf.clone());
        leaf
    }
}

/// The run's main test CA, made on first use.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| Pki::new("rkite"))
}

/// A second CA, unrelated to `pki()`: what a wrong `--ca_certs` points at.
pub fn other_pki() -> &'static Pki {
    static OTHER: OnceLock<Pki> = OnceLock::new();
    OTHER.get_or_init(|| Pki::new("stranger"))
}

/// A serial number unique in this run and unlikely to repeat across runs.
fn serial() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("0x{nanos:016x}{:06x}", util::unique())
}

/// Runs `openssl WORDS... MORE...` in `dir` (bounded; WORDS split on whitespace); returns
/// its output lines, panics on failure.
pub fn openssl(dir: &Path, words: &str, more: &[&str]) -> Vec<String> {
    let mut args: Vec<&str> = words.split_whitespace().collect();
    args.extend_from_slice(more);
    let mut cmd = Command::new(OPENSSL);
    cmd.current_dir(dir).args(&args);
    let p = Proc::spawn("openssl", cmd);
    match p.wait_exit(OPENSSL_TIMEOUT) {
        Some(s) if s.success() => p.lines(),
        Some(s) => panic!("openssl {args:?} failed ({s}):\n{}", p.lines().join("\n")),
        None => panic!("openssl {args:?} still running after {OPENSSL_TIMEOUT:?}"),
    }
}

/// `openssl s_server -accept 127.0.0.1:<free port> -cert -key ... -www EXTRA...`: answers
/// `GET /` with a page that starts with the s_server command line and ends with either
/// `no client certificate available` or `Client certificate` and its text (`Subject:
/// CN=...`). One connection at a time. Killed on Drop.
pub struct SServer {
    proc: Proc,
    port: u16,
}

impl SServer {
    pub fn start(leaf: &Leaf, extra: &[&str]) -> SServer {
        let port = free_port();
        let accept = format!("127.0.0.1:{port}");
        let mut args = vec![
            "s_server",
            "-accept",
            &accept,
            "-cert",
            leaf.cert_str(),
            "-key",
            leaf.key_str(),
            "-www",
        ];
        args.extend_from_slice(extra);
        let proc = Proc::start("s_server", OPENSSL, &args, &[]);
        proc.wait_for("ACCEPT", SSERVER_READY);
        SServer { proc, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn proc(&self) -> &Proc {
        &self.proc
    }
}

/// What a bounded `openssl s_client` run said.
#[derive(Debug)]
pub struct TlsCheck {
    /// Exit status 0: the handshake (and any verification asked for) succeeded.
    pub ok: bool,
    /// stdout and stderr, one line each.
    pub output: String,
}

/// `openssl s_client -brief -connect CONNECT ARGS...` with stdin at EOF: it handshakes,
/// prints the peer certificate (`Peer certificate: CN = ...`) and the verification result,
/// and quits. Panics if it is still running after 25 s.
pub fn s_client(connect: &str, args: &[&str]) -> TlsCheck {
    let mut all = vec!["s_client", "-brief", "-connect", connect];
    all.extend_from_slice(args);
    let p = Proc::start("s_client", OPENSSL, &all, &[]);
    let Some(status) = p.wait_exit(OPENSSL_TIMEOUT) else {
        panic!(
            "openssl {all:?} still running after {OPENSSL_TIMEOUT:?}:\n{}",
            p.lines().join("\n")
        );
    };
    TlsCheck {
        ok: status.success(),
        output: p.lines().join("\n"),
    }
}

// ---------------------------------------------------------------------------------------
// Tests

/// `openssl x509 -noout ARGS` on `cert`; its output.
fn x509(cert: &Path, args: &[&str]) -> String {
    let mut all = vec!["-in", path_str(cert)];
    all.extend_from_slice(args);
    openssl(Path::new("/"), "x509 -noout", &all).join("\n")
}

#[test]
fn certificates_have_the_right_shape_and_verify_with_openssl() {
    if !util::require_peer(OPENSSL) {
        return;
    }
    let started = Instant::now();
    let fresh = Pki::new("timing");
    let leaf = fresh.leaf(&["relay.example.test", "*.wild.example.test"]);
    eprintln!("a fresh CA and one leaf took {:?}", started.elapsed());
    let again = fresh.leaf(&["relay.example.test", "*.wild.example.test"]);
    assert_eq!(again.cert, leaf.cert, "leaves are cached by name");

    let ca = x509(fresh.ca_cert(), &["-text"]);
    assert!(ca.contains("CA:TRUE"), "{ca}");
    assert!(ca.contains("Subject: CN = timing Test CA"), "{ca}");
    let text = x509(&leaf.cert, &["-text"]);
    for want in [
        "CA:FALSE",
        "TLS Web Server Authentication",
        "DNS:relay.example.test, DNS:*.wild.example.test",
        "Issuer: CN = timing Test CA",
        "ASN1 OID: prime256v1",
    ] {
        assert!(text.contains(want), "leaf lacks {want:?}:\n{text}");
    }
    // Valid now and for at least another day.
    x509(&leaf.cert, &["-checkend", "86400"]);
    let combined = std::fs::read_to_string(&leaf.combined_pem).expect("combined PEM");
    let leaf_pem = std::fs::read_to_string(&leaf.cert).expect("leaf PEM");
    let ca_pem = std::fs::read_to_string(fresh.ca_cert()).expect("CA PEM");
    assert!(combined.starts_with("-----BEGIN PRIVATE KEY-----"));
    let key_end = combined.find("-----END PRIVATE KEY-----\n").expect("key") + 26;
    assert_eq!(&combined[key_end..], format!("{leaf_pem}{ca_pem}"));

    let server = SServer::start(&leaf, &[]);
    let connect = format!("127.0.0.1:{}", server.port());
    let verify = |ca: &Path, host: &str| {
        s_client(
            &connect,
            &[
                "-CAfile",
                path_str(ca),
                "-verify_return_error",
                "-servername",
                host,
                "-verify_hostname",
                host,
            ],
        )
    };
    let good = verify(fresh.ca_cert(), "relay.example.test");
    assert!(good.ok, "{}", good.output);
    assert!(good.output.contains("Verification: OK"), "{}", good.output);
    assert!(
        good.output.contains("CN = relay.example.test"),
        "{}",
        good.output
    );
    let wild = verify(fresh.ca_cert(), "a.wild.example.test");
    assert!(
        wild.ok,
        "the wildcard SAN covers a.wild.example.test: {}",
        wild.output
    );
    let wrong_name = verify(fresh.ca_cert(), "other.example.test");
    assert!(!wrong_name.ok, "{}", wrong_name.output);
    assert!(
        wrong_name.output.contains("hostname mismatch"),
        "{}",
        wrong_name.output
    );
    let wrong_ca = verify(other_pki().ca_cert(), "relay.example.test");
    assert!(!wrong_ca.ok, "{}", wrong_ca.output);
    assert!(
        wrong_ca.output.contains("verify error"),
        "{}",
        wrong_ca.output
    );
}

#[test]
fn client_certificates_get_through_mutual_tls() {
    if !util::require_peer(OPENSSL) {
        return;
    }
    let leaf = pki().leaf(&["mtls.example.test"]);
    let visitor = pki().client("visitor-1");
    let stranger = other_pki().client("visitor-2");
    let server = SServer::start(
        &leaf,
        &[
            "-Verify",
            "1",
            "-verify_return_error",
            "-CAfile",
            pki().ca_cert_str(),
        ],
    );
    let resolve = format!("mtls.example.test:{}:127.0.0.1", server.port());
    let url = format!("https://mtls.example.test:{}/", server.port());
    let base = ["--cacert", pki().ca_cert_str(), "--resolve", &resolve];
    let with = |cert: &Leaf| {
        let mut args = base.to_vec();
        args.extend(["--cert", cert.cert_str(), "--key", cert.key_str(), &url]);
        util::try_curl(&args)
    };
    let page = with(&visitor).expect("a client certificate from the CA gets through");
    assert_eq!(page.status, 200);
    let body = page.body_str();
    assert!(body.contains("s_server -accept"), "{body}");
    assert!(body.contains("Client certificate"), "{body}");
    assert!(body.contains("Subject: CN=visitor-1"), "{body}");
    let mut bare = base.to_vec();
    bare.push(&url);
    let refused = util::try_curl(&bare).expect_err("no client certificate, no page");
    assert!(refused.contains("certificate required"), "{refused}");
    assert!(
        with(&stranger).is_err(),
        "a client cert from another CA fails"
    );
}

/// The reference peer at both ends: pagekite.py frontend with `--tls_endpoint`, pagekite.py
/// backend with `--fe_certname` and `--ca_certs` (CONNECT fe.example.test:443, then TLS).
#[test]
fn pagekite_tunnels_over_tls_with_these_certificates() {
    if !util::require_peer(OPENSSL) || !util::require_peer(PAGEKITE) {
        return;
    }
    let origin = Origin::start();
    let relay = pki().leaf(&["fe.example.test"]);
    let site = pki().leaf(&["pk.example.test"]);
    let port = free_port();
    let started = Instant::now();
    let fe_endpoint = format!("--tls_endpoint=fe.example.test:{}", relay.pem_str());
    let site_endpoint = format!("--tls_endpoint=pk.example.test:{}", site.pem_str());
    let fe = peers::pagekite_frontend(
        port,
        &[
            "--protos=http,https,raw,websocket",
            "--domain=http:*.example.test:s3cret",
            &fe_endpoint,
            &site_endpoint,
        ],
    );
    peers::wait_frontend_ready(&fe, port);
    let ca = format!("--ca_certs={}", pki().ca_cert_str());
    let good = peers::kite("http", "pk.example.test", origin.port(), "s3cret");
    let be = peers::pagekite_backend(port, &[&good], &["--fe_certname=fe.example.test", &ca]);
    let up = peers::wait_kite_up(&be, "http", "pk.example.test");
    let ready = started.elapsed();
    // The FE has a --tls_endpoint for the kite's name, so it answered X-PageKite-SSL-OK.
    assert!(up.contains("ssl=True"), "{up}");
    fe.wait_for(
        &peers::fe_kite_live("http", "pk.example.test"),
        peers::PK_READY,
    );

    let page = util::curl(&[
        "-H",
        "Host: pk.example.test",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert_eq!((page.status, page.body_str().as_str()), (200, INDEX_BODY));
    eprintln!(
        "pagekite.py TLS tunnel: kite up {ready:?} after the FE started, curl done after {:?}",
        started.elapsed()
    );

    // The same backend with the other CA is refused by pagekite.py's own check.
    let wrong = format!("--ca_certs={}", other_pki().ca_cert_str());
    let other = peers::kite("http", "other.example.test", origin.port(), "s3cret");
    let stranger =
        peers::pagekite_backend(port, &[&other], &["--fe_certname=fe.example.test", &wrong]);
    stranger.wait_for("CERTIFICATE_VERIFY_FAILED", peers::PK_READY);
    stranger.wait_for("Failed to connect", peers::PK_READY);
    assert!(!stranger.contains("domain=other.example.test; ssl="));
}
