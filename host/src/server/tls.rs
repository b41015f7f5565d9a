//! The server's TLS settings.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::node::NodeIdentity;

/// rustls settings for a node: its self-signed certificate, no client certificates, and
/// HTTP/1.1 only. Stock clients send neither SNI nor ALPN, and neither is required.
///
/// Not `with_single_cert`: it parses the certificate with webpki to match it to the key,
/// and webpki refuses the X.509 v1 certificates stock Tahoe makes (Foolscap's `node.pem`),
/// so a stock node's directory would not start. The key is matched to the certificate
/// here instead, by their public keys.
pub fn tls_config(identity: &NodeIdentity) -> Result<rustls::ServerConfig, rustls::Error> {
    let (chain, key) = identity.tls_parts();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signing_key = provider.key_provider.load_private_key(key)?;
    let certificate_key = crate::node::spki_of(&chain[0]).map_err(rustls::Error::General)?;
    if signing_key
        .public_key()
        .is_some_and(|public| public.as_ref() != certificate_key.as_slice())
    {
        return Err(rustls::Error::General(
            "the private key in node.pem is not the certificate's".into(),
        ));
    }
    let certified = Arc::new(CertifiedKey::new(chain, signing_key));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(OneCertificate(certified)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The node's one certificate, whatever the client asks for.
#[derive(Debug)]
struct OneCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Writes `cert_of`'s certificate with `key_of`'s key as a node's `private/`.
    fn mixed(cert_of: &Path, key_of: &Path, into: &Path) {
        let pem = |dir: &Path| std::fs::read_to_string(dir.join("node.pem")).expect("node.pem");
        let (cert_pem, key_pem) = (pem(cert_of), pem(key_of));
        let cert = &cert_pem[..cert_pem.find("-----BEGIN PRIVATE KEY").expect("key block")];
        let key = &key_pem[key_pem.find("-----BEGIN PRIVATE KEY").expect("key block")..];
        std::fs::create_dir_all(into).expect("dir");
        std::fs::write(into.join("node.pem"), format!("{cert}{key}")).expect("write");
        std::fs::copy(cert_of.join("swissnum"), into.join("swissnum")).expect("swissnum");
    }

    #[test]
    fn the_key_must_be_the_certificates() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (a, b, mixed_dir) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("m"),
        );
        for side in [&a, &b] {
            NodeIdentity::generate()
                .expect("identity")
                .write(side)
                .expect("write");
        }
        let own = NodeIdentity::load(&a).expect("load");
        assert!(tls_config(&own).is_ok());
        // Tried: node.pem with one node's certificate and another's key.
        mixed(&a, &b, &mixed_dir);
        let mismatched = NodeIdentity::load(&mixed_dir).expect("load");
        let error = tls_config(&mismatched).expect_err("a foreign key");
        assert!(
            error
                .to_string()
                .contains("the private key in node.pem is not the certificate's"),
            "{error}"
        );
    }
}
