//! Passing on a request another client made, for `gbs gateway`: its method, path, secrets,
//! `Accept`, range headers and body go upstream as they came, with this client's plugins
//! applied (data attached, rejections retried as they decide); the answer comes back as
//! the upstream gave it, to be streamed on, and the plugins are told what it did.

use bytes::Bytes;
use gbs_plugin_interface::{Operation, Outcome};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};

use super::plugin::Applied;
use super::request::Request;
use super::response::Reply;
use super::{Client, ClientError};

/// A request as another client sent it.
#[derive(Debug, Clone)]
pub struct Forward {
    /// Its method.
    pub method: Method,
    /// Its path and query, `/storage/v1/...`.
    pub path: String,
    /// Its `Accept`, if any.
    pub accept: Option<HeaderValue>,
    /// Its `X-Tahoe-Authorization` values, in order.
    pub secrets: Vec<String>,
    /// Other headers that mean something to the server (`Range`, `Content-Range`).
    pub headers: Vec<(HeaderName, String)>,
    /// Its `Content-Type` and body, if it had one.
    pub body: Option<(String, Bytes)>,
}

/// The upstream's answer, its body not read yet. Holds one of the client's request slots
/// until the body has been read or dropped.
#[must_use = "read or stream the body, then report the outcome with `committed`"]
pub struct Forwarded {
    reply: Reply,
    applied: Option<Applied>,
    received: u64,
}

impl std::fmt::Debug for Forwarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarded")
            .field("status", &self.reply.status())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Sends `forward` upstream; with `operation`, through this client's plugins (a
    /// rejection they give up on is the error), without, as it is.
    pub async fn forward(
        &self,
        forward: Forward,
        operation: Option<Operation>,
    ) -> Result<Forwarded, ClientError> {
        let mut request = Request::new(forward.method, forward.path).accept_as_sent(forward.accept);
        for line in forward.secrets {
            request = request.secret_as_sent(line);
        }
        for (name, value) in forward.headers {
            request = request.header(name, value);
        }
        if let Some((content_type, body)) = forward.body {
            request = request.body(&content_type, body);
        }
        let (reply, applied) = match operation {
            Some(operation) => self.send_with_plugins(request, || operation).await?,
            None => (self.send(request).await?, None),
        };
        Ok(Forwarded {
            reply,
            applied,
            received: 0,
        })
    }
}

impl Forwarded {
    /// The upstream's status.
    pub fn status(&self) -> StatusCode {
        self.reply.status()
    }

    /// The upstream's headers.
    pub fn headers(&self) -> &HeaderMap {
        self.reply.headers()
    }

    /// The next piece of the body, or `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        let chunk = self.reply.next_chunk(self.received).await?;
        if let Some(chunk) = &chunk {
            self.received += chunk.len() as u64;
        }
        Ok(chunk)
    }

    /// The whole body, at most `limit` bytes.
    pub async fn bytes(&mut self, limit: u64) -> Result<Bytes, ClientError> {
        self.reply.read_capped(limit).await.map(Bytes::from)
    }

    /// Tells the plugins that took part what the operation did (after a success; once).
    /// The body can still be read afterwards.
    pub async fn committed(&mut self, client: &Client, outcome: Outcome) {
        client
            .plugins_committed(self.applied.take(), || outcome)
            .await;
    }
}
