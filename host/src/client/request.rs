//! One request as the protocol wants it sent (`gbs-protocol.md` §9): the swissnum in
//! `Authorization`, one `X-Tahoe-Authorization` line per secret and none where the endpoint
//! takes none, `Accept: application/cbor` exactly on CBOR endpoints, and a deadline.

use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;

use super::response::Reply;
use super::{Client, ClientError, Stage};
use crate::protocol::{secret_header_line, CborMessage, SecretKind};

/// The media type of CBOR bodies.
pub(super) const CBOR: &str = "application/cbor";
/// The media type of share data.
pub(super) const OCTET_STREAM: &str = "application/octet-stream";

const X_TAHOE_AUTHORIZATION: HeaderName = HeaderName::from_static("x-tahoe-authorization");

/// A request being put together; cheap to clone (the body is shared), so that a request
/// refused by a storage plugin can be sent again with new plugin data.
#[derive(Clone)]
pub(super) struct Request {
    method: Method,
    path: String,
    /// `None` sends no `Accept` (a gateway passing on a request that had none).
    accept: Option<HeaderValue>,
    /// Complete `X-Tahoe-Authorization` values, in the order the stock client sends them.
    secrets: Vec<String>,
    headers: Vec<(HeaderName, String)>,
    body: Option<(HeaderValue, Bytes)>,
}

impl Request {
    /// A request for a path from `protocol::paths`, accepting CBOR.
    pub(super) fn new(method: Method, path: String) -> Self {
        Self {
            method,
            path,
            accept: Some(HeaderValue::from_static(CBOR)),
            secrets: Vec::new(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Accepts another media type instead of CBOR.
    pub(super) fn accept(mut self, media_type: &'static str) -> Self {
        self.accept = Some(HeaderValue::from_static(media_type));
        self
    }

    /// The `Accept` value of a request passed on as it came, or none.
    pub(super) fn accept_as_sent(mut self, value: Option<HeaderValue>) -> Self {
        self.accept = value;
        self
    }

    /// Adds one `X-Tahoe-Authorization` value exactly as another client sent it.
    pub(super) fn secret_as_sent(mut self, line: String) -> Self {
        self.secrets.push(line);
        self
    }

    /// Adds one secret as its own header line.
    pub(super) fn secret(mut self, kind: SecretKind, value: &[u8]) -> Self {
        self.secrets.push(secret_header_line(kind, value));
        self
    }

    /// Adds a header.
    pub(super) fn header(mut self, name: HeaderName, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Sends a CBOR message as the body.
    pub(super) fn cbor(mut self, message: &impl CborMessage) -> Self {
        self.body = Some((
            HeaderValue::from_static(CBOR),
            Bytes::from(message.to_cbor()),
        ));
        self
    }

    /// Sends raw bytes as the body.
    pub(super) fn bytes(mut self, data: Bytes) -> Self {
        self.body = Some((HeaderValue::from_static(OCTET_STREAM), data));
        self
    }

    /// Sends bytes of any media type (an invalid one is sent as octet-stream).
    pub(super) fn body(mut self, content_type: &str, data: Bytes) -> Self {
        let content_type =
            HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static(OCTET_STREAM));
        self.body = Some((content_type, data));
        self
    }
}

/// A header value; the values built here are ASCII by construction, so failure means a bug,
/// reported as a refused argument rather than a panic.
fn header_value(text: &str, sensitive: bool) -> Result<HeaderValue, ClientError> {
    let mut value = HeaderValue::from_str(text)
        .map_err(|_| ClientError::InvalidArgument("a header value is not valid ASCII"))?;
    value.set_sensitive(sensitive);
    Ok(value)
}

impl Client {
    /// Sends `request` once the concurrency limit allows, and waits for the response headers
    /// within the response deadline. The returned [`Reply`] keeps the request's slot until
    /// its body has been dealt with.
    pub(super) async fn send(&self, request: Request) -> Result<Reply, ClientError> {
        let inner = &self.inner;
        let url = inner
            .base
            .join(&request.path)
            .map_err(|_| ClientError::InvalidArgument("path is not a URL path"))?;
        let mut builder = inner
            .http
            .request(request.method, url)
            .header(AUTHORIZATION, inner.authorization.clone());
        if let Some(accept) = request.accept {
            builder = builder.header(ACCEPT, accept);
        }
        for line in &request.secrets {
            builder = builder.header(X_TAHOE_AUTHORIZATION, header_value(line, true)?);
        }
        for (name, value) in request.headers {
            builder = builder.header(name, header_value(&value, false)?);
        }
        if let Some((content_type, body)) = request.body {
            builder = builder.header(CONTENT_TYPE, content_type).body(body);
        }
        // The semaphore lives as long as the client and is never closed.
        let permit = inner
            .limit
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ClientError::InvalidArgument("the client is shutting down"))?;
        let timeouts = inner.timeouts;
        let response = match tokio::time::timeout(timeouts.response, builder.send()).await {
            Err(_) => {
                return Err(ClientError::Timeout {
                    stage: Stage::Response,
                    after: timeouts.response,
                })
            }
            Ok(Err(error)) if error.is_timeout() && error.is_connect() => {
                return Err(ClientError::Timeout {
                    stage: Stage::Connect,
                    after: timeouts.connect,
                })
            }
            Ok(Err(error)) => return Err(ClientError::from_transport(error)),
            Ok(Ok(response)) => response,
        };
        // Only the base64 part of each line is secret; it is what a server could echo.
        let redact = request
            .secrets
            .iter()
            .filter_map(|line| line.split_once(' ').map(|(_, v)| v.to_owned()))
            .collect();
        Ok(Reply::new(response, redact, timeouts.idle, permit))
    }
}
