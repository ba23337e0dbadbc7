//! Every rustls call in rkite lives here: loading certificates and keys,
//! building the frontend's per-endpoint server configurations and the
//! backend's client configuration (with name verification, or none at all
//! for `--fe_nocertcheck`), and `TlsSession`, which drives one rustls
//! connection over a non-blocking socket for the reactor. Nothing here
//! decides routing; nothing here logs key or certificate material.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    ClientConfig, ClientConnection, Connection, DigitallySignedStruct, RootCertStore, ServerConfig,
};
use rustls::{ServerConnection, SignatureScheme};

use crate::net::{self, Failure, Io};
use crate::tls_text::RustlsText;

/// Where the system's CA bundle lives on the systems rkite runs on, in the
/// order tried when `--ca_certs` is not given (Debian/Ubuntu/OpenWrt,
/// Fedora/RHEL, Alpine and others).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Plaintext plus ciphertext a session may buffer before writes push back.
const BUFFER_LIMIT: usize = 64 * 1024;

/// ring's suites, the fastest for this CPU first (`tls_suites`).
fn provider() -> Arc<CryptoProvider> {
    let ring = rustls::crypto::ring::default_provider();
    Arc::new(crate::tls_suites::ordered(
        ring,
        crate::tls_suites::aes_in_hardware(),
    ))
}

/// A problem with certificates, keys or TLS settings (a start-up error).
#[derive(Debug)]
pub struct TlsConfigError(pub String);

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(what: impl Into<String>) -> TlsConfigError {
    TlsConfigError(what.into())
}

/// One `--tls_endpoint`: a name (maybe `*.x`) and its server configuration.
#[derive(Clone)]
pub struct Endpoint {
    pub name: String,
    config: Arc<ServerConfig>,
}

/// The frontend's TLS identities: `--tls_endpoint`s, then certificates
/// issued by ACME (`--acme`), which a configured endpoint always beats.
#[derive(Default)]
pub struct Endpoints {
    list: Vec<Endpoint>,
    default: Option<usize>,
    issued: Vec<Endpoint>,
}

impl Endpoints {
    /// Loads each `NAME:/path.pem` (key and chain in one PEM, as pagekite.py).
    pub fn load(
        specs: &[(String, String)],
        default: Option<&str>,
    ) -> Result<Endpoints, TlsConfigError> {
        let mut list = Vec::new();
        for (name, path) in specs {
            let (chain, key) = load_pem_identity(Path::new(path))?;
            let mut config = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| err(format!("{path}: {}", RustlsText(&e))))?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(|e| {
                    err(format!(
                        "{path}: the key does not fit the certificate: {}",
                        RustlsText(&e)
                    ))
                })?;
            // Terminated HTTPS is relayed as HTTP/1.1; a browser offering h2
            // falls back to it.
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            list.push(Endpoint {
                name: name.to_ascii_lowercase(),
                config: Arc::new(config),
            });
        }
        let default = match default {
            Some(name) => Some(
                list.iter()
                    .position(|e| e.name.eq_ignore_ascii_case(name))
                    .ok_or_else(|| err(format!("--tls_default={name} names no --tls_endpoint")))?,
            ),
            None => None,
        };
        Ok(Endpoints {
            list,
            default,
            issued: Vec::new(),
        })
    }

    /// Whether a `--tls_endpoint` (not an issued certificate) serves `host`.
    pub fn configured(&self, host: &str) -> bool {
        find_in(&self.list, host).is_some()
    }

    /// Serves `name` with an issued certificate chain (PEM) and its key
    /// (PKCS#8 DER), replacing the one it had.
    pub fn install_issued(
        &mut self,
        name: &str,
        chain_pem: &[u8],
        key_pkcs8: &[u8],
    ) -> Result<(), TlsConfigError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(format!("{name}: bad certificate PEM: {e}")))?;
        if chain.is_empty() {
            return Err(err(format!("{name}: no certificate in the chain")));
        }
        let key = PrivateKeyDer::Pkcs8(key_pkcs8.to_vec().into());
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| err(format!("{name}: {}", RustlsText(&e))))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                err(format!(
                    "{name}: the key does not fit the certificate: {}",
                    RustlsText(&e)
                ))
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = name.to_ascii_lowercase();
        self.issued.retain(|e| e.name != name);
        self.issued.push(Endpoint {
            name,
            config: Arc::new(config),
        });
        Ok(())
    }

    /// Keeps the issued certificates of `old` (a reload replaces only the
    /// configured endpoints).
    pub fn keep_issued(&mut self, old: &mut Endpoints) {
        self.issued = std::mem::take(&mut old.issued);
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The endpoint serving `host`: exact name first, then wildcard parents
    /// (`*.b.c` for `a.b.c`, never a bare `*.tld`).
    pub fn find(&self, host: &str) -> Option<&Endpoint> {
        find_in(&self.list, host).or_else(|| find_in(&self.issued, host))
    }

    /// The endpoint for a ClientHello without SNI (`--tls_default`).
    pub fn fallback(&self) -> Option<&Endpoint> {
        self.default.and_then(|i| self.list.get(i))
    }
}

impl Endpoint {
    /// TLS-ALPN-01's answer for `name` (RFC 8737): the self-signed
    /// certificate (DER) with its key (PKCS#8), offered only for the ALPN
    /// protocol `acme-tls/1`.
    #[inline(never)]
    pub fn acme_alpn(
        name: &str,
        cert_der: Vec<u8>,
        key_pkcs8: &[u8],
    ) -> Result<Endpoint, TlsConfigError> {
        let key = PrivateKeyDer::Pkcs8(key_pkcs8.to_vec().into());
        let provider = provider();
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| err(format!("{name}: the acme-tls/1 key: {}", RustlsText(&e))))?;
        // Not `with_single_cert`: webpki refuses to load a certificate with
        // an unknown critical extension, which acmeIdentifier is by design.
        let certified =
            rustls::sign::CertifiedKey::new(vec![CertificateDer::from(cert_der)], signing);
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| err(format!("{name}: {}", RustlsText(&e))))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
        Ok(Endpoint {
            name: name.to_string(),
            config: Arc::new(config),
        })
    }
}

fn find_in<'a>(list: &'a [Endpoint], host: &str) -> Option<&'a Endpoint> {
    list.iter().find(|e| e.name == host).or_else(|| {
        crate::proto::kite::wildcards(host, false).find_map(|w| list.iter().find(|e| e.name == w))
    })
}

/// The first certificate of a PEM chain, DER (to read its validity).
pub fn leaf_der(chain_pem: &[u8]) -> Option<Vec<u8>> {
    CertificateDer::pem_slice_iter(chain_pem)
        .next()
        .and_then(Result::ok)
        .map(|c| c.as_ref().to_vec())
}

#[inline(never)]
fn load_pem_identity(
    path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsConfigError> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| err(format!("cannot read {shown}: {e}")))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("{shown}: bad certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(err(format!("{shown} holds no certificate")));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| err(format!("{shown} holds no usable private key: {e}")))?;
    Ok((chain, key))
}

/// How the backend checks the frontend's certificate.
pub enum Verify {
    /// Chain to these roots and match one of these names.
    Names {
        ca_file: Option<String>,
        names: Vec<String>,
    },
    /// `--fe_nocertcheck`: no identity check at all (signatures are still
    /// verified, so the handshake itself is sound).
    Nothing,
}

/// The backend's TLS client configuration (opaque outside this file).
#[derive(Clone)]
pub struct ClientSetup(Arc<ClientConfig>);

/// The backend's TLS client configuration.
pub fn client_config(verify: &Verify) -> Result<ClientSetup, TlsConfigError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(RustlsText(&e).to_string()))?;
    let config = match verify {
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCheck(provider())))
            .with_no_client_auth(),
        Verify::Names { ca_file, names } => {
            let roots = load_roots(ca_file.as_deref())?;
            let names = names
                .iter()
                .map(|n| {
                    ServerName::try_from(n.clone())
                        .map_err(|_| err(format!("--fe_certname={n} is not a host name")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyOfNames {
                    roots,
                    names,
                    provider: provider(),
                }))
                .with_no_client_auth()
        }
    };
    Ok(ClientSetup(Arc::new(config)))
}

#[inline(never)]
fn load_roots(ca_file: Option<&str>) -> Result<RootCertStore, TlsConfigError> {
    let path = match ca_file {
        Some(p) => p.to_string(),
        None => SYSTEM_BUNDLES
            .iter()
            .find(|p| Path::new(p).exists())
            .map(|p| p.to_string())
            .ok_or_else(|| err("no system CA bundle found; give --ca_certs=FILE"))?,
    };
    let pem =
        std::fs::read(&path).map_err(|e| err(format!("--ca_certs: cannot read {path}: {e}")))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| err(format!("--ca_certs: {path}: {e}")))?;
        // A bundle may carry a certificate rustls can't use; skip it.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(err(format!(
            "--ca_certs: {path} holds no usable CA certificate"
        )));
    }
    Ok(roots)
}

/// Accepts a certificate valid for any of several names: pagekite.py lets a
/// backend accept any of its `--fe_certname`s. It does what rustls'
/// `WebPkiServerVerifier` does without CRLs (rkite configures none): the
/// chain to a root, then the name, with the provider's algorithms. Calling
/// the two checks directly keeps rustls' CRL parsing and revocation code
/// (about 15 KB) out of the binary, and checks the chain once, not per name.
#[derive(Debug)]
struct AnyOfNames {
    roots: RootCertStore,
    names: Vec<ServerName<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyOfNames {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let mut last = None;
        let names = std::iter::once(server_name).chain(self.names.iter());
        for name in names {
            match verify_server_name(&cert, name) {
                Ok(()) => return Ok(ServerCertVerified::assertion()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(rustls::Error::General("no name to verify".into())))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Debug)]
struct NoCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a TLS session failed or could not start. The variant is the kind a
/// caller may decide on; the words are rustls' (or the socket's), shown only
/// through `Display`.
#[derive(Clone, Debug)]
pub enum TlsError {
    /// This name cannot be sent as SNI nor checked against a certificate.
    BadName(String),
    /// rustls refused to start a session.
    Setup(rustls::Error),
    /// A certificate was refused: the peer's by us, or ours by the peer.
    Certificate(rustls::Error),
    /// The peer ended the session with a fatal alert.
    Alert(rustls::Error),
    /// The handshake or a record broke the protocol.
    Protocol(rustls::Error),
    /// Moving bytes through the session failed (shared: `io::Error` is not
    /// `Clone`, and close reasons are).
    Io(Arc<io::Error>),
}

impl TlsError {
    /// Sorts a failure of an established or handshaking session.
    fn from_rustls(e: rustls::Error) -> TlsError {
        use rustls::AlertDescription as A;
        match e {
            rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::InvalidCertRevocationList(_)
            | rustls::Error::AlertReceived(
                A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA,
            ) => TlsError::Certificate(e),
            rustls::Error::AlertReceived(_) => TlsError::Alert(e),
            _ => TlsError::Protocol(e),
        }
    }
}

impl From<io::Error> for TlsError {
    fn from(e: io::Error) -> TlsError {
        TlsError::Io(Arc::new(e))
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::BadName(name) => write!(f, "{name:?} is not a host name"),
            TlsError::Setup(e)
            | TlsError::Certificate(e)
            | TlsError::Alert(e)
            | TlsError::Protocol(e) => write!(f, "{}", RustlsText(e)),
            TlsError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// One TLS connection driven over a non-blocking socket.
pub struct TlsSession {
    conn: Connection,
    /// The reason of the first failure, for the close log line.
    error: Option<TlsError>,
    /// Peer closed the TCP stream (ciphertext EOF).
    eof: bool,
}

impl TlsSession {
    pub fn server(endpoint: &Endpoint) -> Result<TlsSession, TlsError> {
        let mut conn =
            ServerConnection::new(Arc::clone(&endpoint.config)).map_err(TlsError::Setup)?;
        conn.set_buffer_limit(Some(BUFFER_LIMIT));
        Ok(TlsSession::wrap(conn.into()))
    }

    /// A client session; `name` is sent as SNI (unless it is an IP address)
    /// and is the first name the certificate is checked against.
    pub fn client(setup: &ClientSetup, name: &str) -> Result<TlsSession, TlsError> {
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|_| TlsError::BadName(name.to_string()))?;
        let mut conn =
            ClientConnection::new(Arc::clone(&setup.0), server_name).map_err(TlsError::Setup)?;
        conn.set_buffer_limit(Some(BUFFER_LIMIT));
        Ok(TlsSession::wrap(conn.into()))
    }

    fn wrap(conn: Connection) -> TlsSession {
        TlsSession {
            conn,
            error: None,
            eof: false,
        }
    }

    /// Ciphertext that was read before the session existed (the sniffed
    /// ClientHello, or bytes after a CONNECT reply).
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), TlsError> {
        while !bytes.is_empty() {
            match self.conn.read_tls(&mut bytes) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(self.fail(e.into())),
            }
            self.conn
                .process_new_packets()
                .map_err(|e| self.fail(TlsError::from_rustls(e)))?;
        }
        Ok(())
    }

    fn fail(&mut self, why: TlsError) -> TlsError {
        self.error.get_or_insert_with(|| why.clone());
        why
    }

    /// The first failure, for the close reason.
    pub fn error(&self) -> Option<&TlsError> {
        self.error.as_ref()
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Whether decrypted bytes are waiting to be read.
    pub fn has_plaintext(&mut self) -> bool {
        self.conn
            .process_new_packets()
            .is_ok_and(|state| state.plaintext_bytes_to_read() > 0)
    }

    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Reads plaintext, pulling ciphertext from `sock` as needed. `sock_ready`
    /// says whether the socket may have more; it is cleared on WouldBlock.
    pub fn read(&mut self, sock: &mut impl ReadWrite, sock_ready: &mut bool, buf: &mut [u8]) -> Io {
        loop {
            match self.conn.reader().read(buf) {
                Ok(0) if !buf.is_empty() => return Io::Eof,
                Ok(n) => return Io::Done(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Io::Eof,
                Err(e) => return self.failed(e.into()),
            }
            if self.eof {
                return Io::Eof;
            }
            if !*sock_ready {
                return Io::WouldBlock;
            }
            match self.conn.read_tls(sock) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) => match net::classify(&e) {
                    None => continue,
                    Some(Io::WouldBlock) => {
                        *sock_ready = false;
                        return Io::WouldBlock;
                    }
                    Some(other) => return other,
                },
            }
            if let Err(e) = self.conn.process_new_packets() {
                let why = TlsError::from_rustls(e);
                // Tell the peer why (the alert is queued by rustls).
                let _ = self.conn.write_tls(sock);
                return self.failed(why);
            }
            // Handshake messages and key updates go out at once.
            if self.conn.wants_write() {
                let mut ready = true;
                if let Io::Failed(f) = self.flush(sock, &mut ready) {
                    return Io::Failed(f);
                }
            }
        }
    }

    fn failed(&mut self, why: TlsError) -> Io {
        self.fail(why);
        Io::Failed(Failure(io::ErrorKind::InvalidData, TLS_FAILURE))
    }

    /// Encrypts `buf` (as much as the session takes) and sends what it can.
    pub fn write(&mut self, sock: &mut impl ReadWrite, sock_ready: &mut bool, buf: &[u8]) -> Io {
        let accepted = match self.conn.writer().write(buf) {
            Ok(n) => n,
            Err(e) => return self.failed(e.into()),
        };
        match self.flush(sock, sock_ready) {
            Io::Failed(f) => Io::Failed(f),
            _ if accepted > 0 || buf.is_empty() => Io::Done(accepted),
            _ => Io::WouldBlock,
        }
    }

    /// Sends queued ciphertext: `Done(0)` when nothing is left.
    pub fn flush(&mut self, sock: &mut impl ReadWrite, sock_ready: &mut bool) -> Io {
        while self.conn.wants_write() {
            if !*sock_ready {
                return Io::WouldBlock;
            }
            match self.conn.write_tls(sock) {
                Ok(_) => {}
                Err(e) => match net::classify(&e) {
                    None => {}
                    Some(Io::WouldBlock) => {
                        *sock_ready = false;
                        return Io::WouldBlock;
                    }
                    Some(other) => return other,
                },
            }
        }
        Io::Done(0)
    }

    /// Queues a close_notify (our side will send nothing more).
    pub fn close(&mut self) {
        self.conn.send_close_notify();
    }

    /// The SNI a client sent (server sessions).
    pub fn sni(&self) -> Option<&str> {
        match &self.conn {
            Connection::Server(s) => s.server_name(),
            Connection::Client(_) => None,
        }
    }
}

/// The OS error code rkite uses to mark a TLS failure inside a [`Failure`].
pub const TLS_FAILURE: i32 = -71;

/// A socket rustls can read ciphertext from and write it to.
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_clear_errors() {
        let e = Endpoints::load(&[("a.test".into(), "/nonexistent/x.pem".into())], None)
            .err()
            .unwrap();
        assert!(e.0.contains("cannot read /nonexistent/x.pem"), "{e}");
        let e = Endpoints::load(&[], Some("a.test")).err().unwrap();
        assert!(e.0.contains("names no --tls_endpoint"), "{e}");
        let e = client_config(&Verify::Names {
            ca_file: Some("/nonexistent/ca.pem".into()),
            names: vec!["a.test".into()],
        })
        .err()
        .unwrap();
        assert!(e.0.contains("--ca_certs: cannot read"), "{e}");
        assert!(client_config(&Verify::Nothing).is_ok());
    }

    /// A client session fed one record from a "server": what the session
    /// reports, kind and words.
    fn fed(record: &[u8]) -> TlsError {
        let setup = client_config(&Verify::Nothing).unwrap();
        let mut session = TlsSession::client(&setup, "fe.example.test").unwrap();
        let e = session.feed(record).unwrap_err();
        assert_eq!(
            session.error().map(ToString::to_string),
            Some(e.to_string()),
            "the session keeps the reason for the close line"
        );
        e
    }

    #[test]
    fn failures_are_sorted_by_kind() {
        // A fatal bad_certificate alert (42), a handshake_failure (40), then
        // bytes that are no TLS record at all.
        let e = fed(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 42]);
        assert!(matches!(e, TlsError::Certificate(_)), "{e:?}");
        assert_eq!(e.to_string(), "received fatal alert: BadCertificate");
        let e = fed(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 40]);
        assert!(matches!(e, TlsError::Alert(_)), "{e:?}");
        assert_eq!(e.to_string(), "received fatal alert: HandshakeFailure");
        let e = fed(b"HTTP/1.1 200 OK\r\n\r\n");
        assert!(matches!(e, TlsError::Protocol(_)), "{e:?}");
        let setup = client_config(&Verify::Nothing).unwrap();
        let e = TlsSession::client(&setup, "not a name").err().unwrap();
        assert!(matches!(e, TlsError::BadName(_)));
        assert_eq!(e.to_string(), "\"not a name\" is not a host name");
    }
}
