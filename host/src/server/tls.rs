//! The server's TLS settings.

use crate::node::NodeIdentity;

/// rustls settings for a node: its self-signed certificate, no client certificates, and
/// HTTP/1.1 only. Stock clients send neither SNI nor ALPN, and neither is required.
pub fn tls_config(identity: &NodeIdentity) -> Result<rustls::ServerConfig, rustls::Error> {
    let (chain, key) = identity.tls_parts();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
