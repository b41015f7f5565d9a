//! What can go wrong talking to a GBS server, as one typed error.
//!
//! No variant carries a secret: server text is cut short and scrubbed of the secrets the
//! request sent (stock Tahoe echoes them in some 400 bodies), and the swissnum never leaves
//! the `Authorization` header.

use std::fmt;
use std::io;
use std::ops::Range;
use std::time::Duration;

use crate::protocol::{DecodeError, SpkiHash};

/// A boxed lower-level cause (network, TLS, HTTP framing); shown by `{:#}` chains.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Which part of an exchange ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// TCP connect and TLS handshake.
    Connect,
    /// Sending the request and waiting for the response headers.
    Response,
    /// Waiting for the next piece of the response body.
    Body,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connecting",
            Self::Response => "waiting for the response",
            Self::Body => "waiting for more of the response body",
        })
    }
}

/// A structured refusal by a server-side storage plugin (see `design.md` §3): the response
/// carried `X-Tahoe-Plugin-Rejected` and a CBOR body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PluginRejection {
    /// HTTP status the plugin chose.
    pub status: u16,
    /// The plugin's name.
    pub plugin: String,
    /// A machine-readable code, defined by the plugin.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
    /// The `details` value for the client plugin, re-encoded as CBOR; empty when absent or
    /// null.
    pub details: Vec<u8>,
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The NURL names a transport this client cannot use (`pb+tor`).
    #[error("unsupported NURL: {0}")]
    UnsupportedNurl(&'static str),
    /// The server's TLS key is not the one the NURL pins. Refused during the handshake, so
    /// no request reached the server.
    #[error(
        "the server's TLS key does not match the NURL (expected {expected}, server presented \
         {presented}); no request was sent"
    )]
    PinMismatch {
        /// The hash in the NURL.
        expected: SpkiHash,
        /// The hash of the key the server presented.
        presented: SpkiHash,
    },
    /// The server's certificate could not be parsed, so its key cannot be checked.
    #[error("the server's TLS certificate cannot be parsed; no request was sent")]
    BadCertificate,
    /// The TLS or HTTP settings could not be built.
    #[error("cannot set up the HTTP client")]
    Setup(#[source] BoxError),
    /// The TCP connection or TLS handshake failed.
    #[error("cannot connect to the server")]
    Connect(#[source] BoxError),
    /// A deadline passed.
    #[error("timed out after {after:?} {stage}")]
    Timeout {
        /// What was being waited for.
        stage: Stage,
        /// The deadline that passed.
        after: Duration,
    },
    /// The request failed after connecting, before a response arrived (for example the
    /// server closed the connection).
    #[error("the request failed before a response arrived")]
    Transport(#[source] BoxError),
    /// The connection failed part-way through the response body.
    #[error("the server stopped sending after {received} bytes of the response body")]
    BodyInterrupted {
        /// Bytes received before the failure.
        received: u64,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// 401: the swissnum, upload secret or write enabler was not accepted.
    #[error("unauthorized (401): the server refused the swissnum, upload secret or write enabler")]
    Unauthorized,
    /// 404: no such share, upload or storage index.
    #[error("not found (404)")]
    NotFound,
    /// 405: the operation does not apply in the share's state (for example aborting a
    /// completed upload).
    #[error("not allowed (405) in the share's current state")]
    NotAllowed,
    /// 409: uploaded bytes differ from bytes the server already holds.
    #[error("conflict (409): the data differs from what the server already holds")]
    Conflict,
    /// 416: the server refused the byte range.
    #[error("range not satisfiable (416)")]
    RangeNotSatisfiable,
    /// 400, with the server's explanation.
    #[error("bad request (400): {message}")]
    BadRequest {
        /// The server's text, shortened and scrubbed of secrets.
        message: String,
    },
    /// A storage plugin on the server refused the operation.
    #[error("refused by server plugin {} ({}, {}): {}", .0.plugin, .0.status, .0.code, .0.message)]
    PluginRejected(PluginRejection),
    /// A client-side storage plugin failed while preparing the request or handling a
    /// rejection; nothing was sent for this attempt.
    #[error("client storage plugin {plugin} failed: {message}")]
    Plugin {
        /// The plugin.
        plugin: String,
        /// The plugin's explanation.
        message: String,
    },
    /// Any other status.
    #[error("unexpected HTTP status {status}{}", detail(.message))]
    UnexpectedStatus {
        /// The status code.
        status: u16,
        /// The server's text, shortened and scrubbed of secrets.
        message: String,
    },
    /// The response's `Content-Type` is not what the endpoint sends.
    #[error("unexpected Content-Type {content_type:?} with status {status}, expected {expected}")]
    UnexpectedContentType {
        /// The status code.
        status: u16,
        /// The header as sent, shortened; empty when absent.
        content_type: String,
        /// What the endpoint should send.
        expected: &'static str,
    },
    /// The body is not the CBOR message the endpoint answers with.
    #[error("the response body is not the expected CBOR message: {0}")]
    Decode(#[from] DecodeError),
    /// A CBOR or error body larger than the client accepts.
    #[error("the response body exceeds the {limit}-byte limit")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// A share body longer than its `Content-Range` announced.
    #[error("the server sent more than the {announced} bytes it announced")]
    BodyTooLong {
        /// Bytes announced.
        announced: u64,
    },
    /// A share body shorter than its `Content-Range` announced.
    #[error("the server sent {received} of the {announced} bytes it announced")]
    BodyTooShort {
        /// Bytes announced.
        announced: u64,
        /// Bytes received.
        received: u64,
    },
    /// A missing or malformed `Content-Range`, or one outside the requested range.
    #[error(
        "the server's Content-Range {header:?} does not fit the request for bytes {requested:?}"
    )]
    BadContentRange {
        /// The header as sent, shortened; empty when absent.
        header: String,
        /// The half-open range asked for.
        requested: Range<u64>,
    },
    /// Reading the data to upload failed.
    #[error("cannot read the data to upload")]
    Input(#[source] io::Error),
    /// The data to upload ended before the share's allocated size.
    #[error(
        "the data to upload ended after {actual} bytes, but the share was allocated {expected}"
    )]
    InputTooShort {
        /// The allocated size.
        expected: u64,
        /// What the input held.
        actual: u64,
    },
    /// The data to upload goes on past the share's allocated size; nothing past it was sent
    /// and the share was not completed.
    #[error("the data to upload is longer than the {expected} bytes allocated for the share")]
    InputTooLong {
        /// The allocated size.
        expected: u64,
    },
    /// Writing downloaded data failed.
    #[error("cannot write the downloaded data")]
    Output(#[source] io::Error),
    /// Every chunk was accepted, yet the server still reports missing ranges.
    #[error("the upload did not complete; the server still needs bytes {required:?}")]
    UploadIncomplete {
        /// Ranges the server still needs.
        required: Vec<Range<u64>>,
    },
    /// An argument the protocol cannot express.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}

fn detail(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// Why the pin check refused a server; travels through rustls and the HTTP stack inside
/// `rustls::Error`, and is found again by [`ClientError::from_transport`].
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("server key {presented} does not match the pinned {expected}")]
pub(crate) struct PinMismatch {
    pub(crate) expected: SpkiHash,
    pub(crate) presented: SpkiHash,
}

impl ClientError {
    /// Classifies a failed `send` or body read from the HTTP stack. A TLS refusal by our
    /// verifier is found in the cause chain and reported as itself.
    pub(crate) fn from_transport(error: reqwest::Error) -> Self {
        if let Some(tls) = find_tls_refusal(&error) {
            return tls;
        }
        if error.is_connect() {
            Self::Connect(Box::new(error.without_url()))
        } else {
            Self::Transport(Box::new(error.without_url()))
        }
    }
}

/// Walks the cause chain for our verifier's verdict. `io::Error::source` skips the error it
/// wraps, so that one is unwrapped with `get_ref` instead.
fn find_tls_refusal(error: &(dyn std::error::Error + 'static)) -> Option<ClientError> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(mismatch) = error.downcast_ref::<PinMismatch>() {
            return Some(ClientError::PinMismatch {
                expected: mismatch.expected,
                presented: mismatch.presented,
            });
        }
        if let Some(rustls::Error::InvalidCertificate(cert)) = error.downcast_ref::<rustls::Error>()
        {
            return Some(match cert {
                rustls::CertificateError::Other(other) => find_tls_refusal(&*other.0)?,
                _ => ClientError::BadCertificate,
            });
        }
        current = match error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
        {
            Some(inner) => Some(inner),
            None => error.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_mismatch_is_found_through_io_and_rustls_wrappers() {
        let mismatch = PinMismatch {
            expected: SpkiHash::of_spki_der(b"a"),
            presented: SpkiHash::of_spki_der(b"b"),
        };
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
            rustls::OtherError(std::sync::Arc::new(mismatch)),
        ));
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, tls);
        let found = find_tls_refusal(&wrapped);
        assert!(
            matches!(found, Some(ClientError::PinMismatch { expected, .. }) if expected == mismatch.expected)
        );
        let other = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding),
        );
        assert!(matches!(
            find_tls_refusal(&other),
            Some(ClientError::BadCertificate)
        ));
        assert!(find_tls_refusal(&io::Error::other("plain")).is_none());
    }

    #[test]
    fn messages_name_the_problem() {
        let error = ClientError::BodyTooShort {
            announced: 100,
            received: 50,
        };
        assert_eq!(
            error.to_string(),
            "the server sent 50 of the 100 bytes it announced"
        );
        let error = ClientError::UnexpectedStatus {
            status: 503,
            message: String::new(),
        };
        assert_eq!(error.to_string(), "unexpected HTTP status 503");
    }
}
