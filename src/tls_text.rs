//! rustls' error texts, spelled out where rustls' own `Display` prints a
//! derived `Debug` of a variant that carries data. The static binary is built
//! with `-Zfmt-debug=shallow` (bench/size.md: derived `Debug` then prints only
//! the variant's name, 20 KB smaller), which would cut "received corrupt
//! message of type MissingData(\"ServerHello\")" to "... MissingData". This
//! file only formats; it decides nothing and holds no TLS state.

use std::fmt;

use rustls::{CertificateError as Cert, Error, InvalidMessage as Msg};

/// Shows a rustls error in exactly the words of its `Display` in a normal
/// build, whatever the build does to derived `Debug`.
pub struct RustlsText<'a>(pub &'a Error);

impl fmt::Display for RustlsText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Error::InvalidMessage(m) => {
                f.write_str("received corrupt message of type ")?;
                match m {
                    Msg::MissingData(s) => write!(f, "MissingData({s:?})"),
                    Msg::TrailingData(s) => write!(f, "TrailingData({s:?})"),
                    Msg::UnexpectedMessage(s) => write!(f, "UnexpectedMessage({s:?})"),
                    Msg::IllegalEmptyList(s) => write!(f, "IllegalEmptyList({s:?})"),
                    Msg::DuplicateExtension(n) => write!(f, "DuplicateExtension({n:?})"),
                    // `KeyExchangeAlgorithm` has only plain variants.
                    Msg::UnsupportedKeyExchangeAlgorithm(k) => {
                        write!(f, "UnsupportedKeyExchangeAlgorithm({k:?})")
                    }
                    // The other variants carry nothing: shallow `Debug` is the same.
                    other => write!(f, "{other:?}"),
                }
            }
            Error::InvalidCertificate(c) => {
                f.write_str("invalid peer certificate: ")?;
                match c {
                    // webpki's errors that rustls passes on as `Other` are the
                    // ones without data (rustls maps the others to variants).
                    Cert::Other(o) => write!(f, "Other(OtherError({:?}))", o.0),
                    Cert::UnsupportedSignatureAlgorithmContext {
                        signature_algorithm_id,
                        supported_algorithms,
                    } => write!(
                        f,
                        "UnsupportedSignatureAlgorithmContext {{ signature_algorithm_id: \
                         {signature_algorithm_id:?}, supported_algorithms: \
                         {supported_algorithms:?} }}"
                    ),
                    Cert::UnsupportedSignatureAlgorithmForPublicKeyContext {
                        signature_algorithm_id,
                        public_key_algorithm_id,
                    } => write!(
                        f,
                        "UnsupportedSignatureAlgorithmForPublicKeyContext {{ \
                         signature_algorithm_id: {signature_algorithm_id:?}, \
                         public_key_algorithm_id: {public_key_algorithm_id:?} }}"
                    ),
                    // rustls writes the rest itself, or they carry nothing.
                    other => write!(f, "{other}"),
                }
            }
            // `InappropriateMessage` and `AlertReceived` print rustls' own
            // (not derived) `Debug`; `PeerMisbehaved` and `InconsistentKeys`
            // have only plain variants; `PeerIncompatible`'s one variant with
            // data is about encrypted client hellos, which rkite never offers;
            // rkite configures no CRLs.
            other => write!(f, "{other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Test builds derive `Debug` fully, so rustls' own `Display` is the
    /// reference for every variant written out above.
    #[test]
    fn the_words_are_rustls_own() {
        let errors = [
            Error::InvalidMessage(Msg::MissingData("ServerHello")),
            Error::InvalidMessage(Msg::TrailingData("ClientHello")),
            Error::InvalidMessage(Msg::UnexpectedMessage("HelloRetryRequest")),
            Error::InvalidMessage(Msg::IllegalEmptyList("CipherSuites")),
            Error::InvalidMessage(Msg::DuplicateExtension(43)),
            Error::InvalidMessage(Msg::MessageTooShort),
            Error::InvalidCertificate(Cert::Other(rustls::OtherError(Arc::new(
                std::io::Error::other("opaque"),
            )))),
            Error::InvalidCertificate(Cert::UnsupportedSignatureAlgorithmContext {
                signature_algorithm_id: vec![6, 8, 42],
                supported_algorithms: vec![rustls::pki_types::alg_id::ECDSA_SHA256],
            }),
            Error::InvalidCertificate(Cert::UnsupportedSignatureAlgorithmForPublicKeyContext {
                signature_algorithm_id: vec![1, 2],
                public_key_algorithm_id: vec![3],
            }),
            Error::InvalidCertificate(Cert::UnknownIssuer),
            Error::InvalidCertificate(Cert::BadEncoding),
            Error::AlertReceived(rustls::AlertDescription::BadCertificate),
            Error::AlertReceived(rustls::AlertDescription::Unknown(200)),
            Error::PeerMisbehaved(rustls::PeerMisbehaved::IllegalMiddleboxChangeCipherSpec),
            Error::General("something".into()),
        ];
        for e in &errors {
            assert_eq!(RustlsText(e).to_string(), e.to_string(), "{e:?}");
        }
    }
}
