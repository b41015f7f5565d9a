//! TLS for the client: rustls with the ring provider, TLS 1.3 only, and a verifier that
//! checks the server's key against the NURL's SPKI pin and nothing else.
//!
//! Stock Tahoe presents X.509 version 1 certificates that are self-signed and usually
//! expired (`gbs-protocol.md` §1.2). webpki refuses v1 outright, so the end-entity is parsed
//! with `x509-parser`, its `SubjectPublicKeyInfo` hashed and compared with the pin, and the
//! handshake signature verified against that same key. Names, dates, CAs and extensions are
//! ignored, as the Python client ignores them. TLS 1.3 only, so the one signature check
//! needed is [`rustls::crypto::verify_tls13_signature_with_raw_key`].

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature_with_raw_key, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::error::PinMismatch;
use crate::node::spki_hash_of;
use crate::protocol::SpkiHash;

/// Which server keys the verifier accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyPolicy {
    /// Only the key whose SPKI hash is this pin.
    Pinned(SpkiHash),
    /// Any key (the handshake still proves the server holds it). Reached only through
    /// [`super::ClientBuilder::danger`].
    AcceptAny,
}

/// The rustls client settings: TLS 1.3, no SNI (stock clients send none and servers must not
/// need it), no ALPN (stock servers fall back to HTTP/1.1 without it), no client certificate.
pub(crate) fn client_config(policy: KeyPolicy) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(provider());
    let verifier = PinnedKeyVerifier {
        policy,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.enable_sni = false;
    Ok(config)
}

/// ring's suites with AES-128-GCM first. The server takes the client's order, and
/// AES-128-GCM does the same job as AES-256-GCM (the first by default) in ten rounds
/// instead of fourteen: ring's encryption and decryption were the largest single cost of
/// a transfer on both sides. Go's TLS stack prefers it the same way on AES hardware.
fn provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    provider
}

/// The client's TLS settings pinned to `nurl`'s key, for tools and tests that speak HTTP
/// over the TLS connection themselves.
pub fn pinned_tls_config(
    nurl: &crate::protocol::Nurl,
) -> Result<rustls::ClientConfig, rustls::Error> {
    client_config(KeyPolicy::Pinned(nurl.spki_hash))
}

#[derive(Debug)]
struct PinnedKeyVerifier {
    policy: KeyPolicy,
    algorithms: WebPkiSupportedAlgorithms,
}

/// The raw `SubjectPublicKeyInfo` of a certificate of any X.509 version.
fn spki_of<'a>(certificate: &'a CertificateDer<'_>) -> Result<&'a [u8], rustls::Error> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    Ok(parsed.tbs_certificate.subject_pki.raw)
}

impl PinnedKeyVerifier {
    /// Refuses a key that the policy does not accept.
    fn check(&self, presented: SpkiHash) -> Result<(), rustls::Error> {
        match self.policy {
            KeyPolicy::Pinned(expected) if !expected.matches(&presented) => {
                let mismatch = PinMismatch {
                    expected,
                    presented,
                };
                Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    rustls::OtherError(Arc::new(mismatch)),
                )))
            }
            _ => Ok(()),
        }
    }
}

impl ServerCertVerifier for PinnedKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = spki_hash_of(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        self.check(presented)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Unreachable: the config offers TLS 1.3 only. Refuse rather than skip the check.
        Err(rustls::Error::General("TLS 1.2 is not offered".to_owned()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The pin is checked again here so that the signature can only ever be verified
        // with the pinned key, whatever order rustls calls these in.
        let spki = spki_of(cert)?;
        self.check(SpkiHash::of_spki_der(spki))?;
        verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(spki),
            dss,
            &self.algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's P-256 certificate (`gbs-protocol.md` §1.3), a v3 certificate whose
    /// validity ended in 2026; the verifier must not care.
    const REFERENCE_CERT: &str = "MIIBczCCARmgAwIBAgIUZ8VAgQY3aLXycK+1b+3Gh6o1+98wCgYIKoZIzj0EAwIw\
DzENMAsGA1UEAwwEcnVzdDAeFw0yNjExMjUxNzAyMzFaFw0yNjExMjYxNzAyMzFa\
MA8xDTALBgNVBAMMBHJ1c3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAS1/Nq2\
D7EoYiPwpB8zYFOpzeLdHFeg16L3tn2qQBOpHmz+JX2QoAibntAoWdXuXt/CJEJU\
omtKHDhfjdliFnGTo1MwUTAdBgNVHQ4EFgQU8OhQT13Ww0KB74aUXyak3G406F0w\
HwYDVR0jBBgwFoAU8OhQT13Ww0KB74aUXyak3G406F0wDwYDVR0TAQH/BAUwAwEB\
/zAKBggqhkjOPQQDAgNIADBFAiEA/ZNBDpGkomkmvBf8hg/mNYcBUtVFteW4ZdcM\
lhoSeQACIFvMRqg9/zLhY3GkzJfFv9Y3LeFPCLM5nLghfWd9Ja9c";

    fn reference_cert() -> CertificateDer<'static> {
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD
            .decode(REFERENCE_CERT)
            .unwrap();
        CertificateDer::from(der)
    }

    fn verifier(policy: KeyPolicy) -> PinnedKeyVerifier {
        let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        PinnedKeyVerifier { policy, algorithms }
    }

    fn verify(
        verifier: &PinnedKeyVerifier,
        cert: &CertificateDer<'_>,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = ServerName::try_from("ignored.example").unwrap();
        verifier.verify_server_cert(cert, &[], &name, &[], UnixTime::now())
    }

    #[test]
    fn accepts_the_pinned_key_whatever_the_dates() {
        let pin: SpkiHash = "WvQpEy1vElE-08RDYWr_X63JYNn5KR14kgfTbEnIDVU"
            .parse()
            .unwrap();
        assert!(verify(&verifier(KeyPolicy::Pinned(pin)), &reference_cert()).is_ok());
    }

    #[test]
    fn refuses_another_key_with_a_pin_mismatch() {
        let pin = SpkiHash::of_spki_der(b"some other key");
        let error = verify(&verifier(KeyPolicy::Pinned(pin)), &reference_cert()).unwrap_err();
        let rustls::Error::InvalidCertificate(CertificateError::Other(other)) = error else {
            panic!("wrong error: {error:?}");
        };
        let mismatch = other.0.downcast_ref::<PinMismatch>().unwrap();
        assert_eq!(
            mismatch.presented.to_string(),
            "WvQpEy1vElE-08RDYWr_X63JYNn5KR14kgfTbEnIDVU"
        );
    }

    #[test]
    fn refuses_garbage_certificates_even_when_accepting_any_key() {
        let error = verify(
            &verifier(KeyPolicy::AcceptAny),
            &CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]),
        );
        assert!(matches!(
            error,
            Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding
            ))
        ));
    }

    #[test]
    fn config_sends_neither_sni_nor_alpn() {
        let pin = SpkiHash::of_spki_der(b"k");
        let config = client_config(KeyPolicy::Pinned(pin)).unwrap();
        assert!(!config.enable_sni);
        assert!(config.alpn_protocols.is_empty());
    }

    /// Input tried: a handshake, in memory, between a node's server settings and ours.
    #[test]
    fn our_client_and_server_agree_on_aes_128_gcm() {
        let identity = crate::node::NodeIdentity::generate().unwrap();
        let server_config = crate::server::tls_config(&identity).unwrap();
        let mut server = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
        let nurl = identity.nurl("127.0.0.1", 1);
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut client =
            rustls::ClientConnection::new(Arc::new(pinned_tls_config(&nurl).unwrap()), name)
                .unwrap();
        let mut wire = Vec::new();
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
            wire.clear();
            client.write_tls(&mut wire).unwrap();
            server.read_tls(&mut wire.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            wire.clear();
            server.write_tls(&mut wire).unwrap();
            client.read_tls(&mut wire.as_slice()).unwrap();
            client.process_new_packets().unwrap();
        }
        assert!(!client.is_handshaking(), "the handshake finished");
        let suite = |s: Option<rustls::SupportedCipherSuite>| s.map(|s| s.suite());
        let aes_128 = Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(suite(client.negotiated_cipher_suite()), aes_128);
        assert_eq!(suite(server.negotiated_cipher_suite()), aes_128);
    }
}
