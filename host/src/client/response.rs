//! Reading a response: status and `Content-Type` checks, capped CBOR bodies, share bodies
//! streamed within their `Content-Range`, and error bodies turned into [`ClientError`]s.

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use ciborium::Value;
use reqwest::header::{HeaderName, CONTENT_RANGE, CONTENT_TYPE};
use reqwest::StatusCode;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;

use super::request::{CBOR, OCTET_STREAM};
use super::{ClientError, PluginRejection, Stage};
use crate::protocol::{CborMessage, ReadRange};

/// The largest CBOR response accepted, as in the stock client.
pub(super) const MAX_CBOR_RESPONSE: u64 = 30 * 1024 * 1024;
/// How much of an error body is read, as in the stock client.
const MAX_ERROR_BODY: u64 = 10_000;
/// How much of the server's text an error message keeps.
const MAX_MESSAGE_CHARS: usize = 200;
/// The largest plugin rejection body read (the plugin-data header limit).
const MAX_REJECTION_BODY: u64 = 64 * 1024;

const X_TAHOE_PLUGIN_REJECTED: HeaderName = HeaderName::from_static("x-tahoe-plugin-rejected");

/// A response whose body has not been read yet. Holds one of the client's request slots.
pub(super) struct Reply {
    response: reqwest::Response,
    /// Secret values sent with the request, removed from any server text we keep.
    redact: Vec<String>,
    idle: Duration,
    _permit: OwnedSemaphorePermit,
}

impl Reply {
    pub(super) fn new(
        response: reqwest::Response,
        redact: Vec<String>,
        idle: Duration,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            response,
            redact,
            idle,
            _permit: permit,
        }
    }

    pub(super) fn status(&self) -> StatusCode {
        self.response.status()
    }

    fn header(&self, name: &HeaderName) -> Option<&str> {
        self.response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    /// Whether the media type (parameters ignored, case-insensitive) is `expected`.
    fn has_content_type(&self, expected: &str) -> bool {
        self.header(&CONTENT_TYPE)
            .and_then(|v| v.split(';').next())
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(expected))
    }

    fn content_type_error(&self, expected: &'static str) -> ClientError {
        let content_type = self
            .response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| shorten(&String::from_utf8_lossy(v.as_bytes()), 100));
        ClientError::UnexpectedContentType {
            status: self.status().as_u16(),
            content_type: content_type.unwrap_or_default(),
            expected,
        }
    }

    /// The next piece of the body, waiting at most the idle deadline; `received` is for the
    /// error message.
    /// The response's headers.
    pub(super) fn headers(&self) -> &reqwest::header::HeaderMap {
        self.response.headers()
    }

    /// The next piece of the body (`received` bytes came before it), within the idle
    /// timeout; `None` at its end.
    pub(super) async fn next_chunk(&mut self, received: u64) -> Result<Option<Bytes>, ClientError> {
        match tokio::time::timeout(self.idle, self.response.chunk()).await {
            Err(_) => Err(ClientError::Timeout {
                stage: Stage::Body,
                after: self.idle,
            }),
            Ok(Err(error)) => Err(ClientError::BodyInterrupted {
                received,
                source: Box::new(error.without_url()),
            }),
            Ok(Ok(chunk)) => Ok(chunk),
        }
    }

    /// The whole body, refused once it passes `limit` (before reading, when the announced
    /// length already does).
    pub(super) async fn read_capped(&mut self, limit: u64) -> Result<Vec<u8>, ClientError> {
        if self
            .response
            .content_length()
            .is_some_and(|announced| announced > limit)
        {
            return Err(ClientError::BodyTooLarge { limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = self.next_chunk(body.len() as u64).await? {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(ClientError::BodyTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// At most `limit` bytes of the body; the rest is left unread.
    async fn read_prefix(&mut self, limit: u64) -> Vec<u8> {
        let mut body = Vec::new();
        while (body.len() as u64) < limit {
            match self.next_chunk(body.len() as u64).await {
                Ok(Some(chunk)) => {
                    let room = usize::try_from(limit - body.len() as u64).unwrap_or(usize::MAX);
                    body.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
                }
                // A broken error body still leaves the status to report.
                Ok(None) | Err(_) => break,
            }
        }
        body
    }

    /// A CBOR answer with one of the `ok` statuses, decoded as `T`.
    pub(super) async fn cbor<T: CborMessage>(
        mut self,
        ok: &[StatusCode],
    ) -> Result<(StatusCode, T), ClientError> {
        let status = self.status();
        if !ok.contains(&status) {
            return Err(self.into_error().await);
        }
        if !self.has_content_type(CBOR) {
            return Err(self.content_type_error(CBOR));
        }
        let body = self.read_capped(MAX_CBOR_RESPONSE).await?;
        Ok((status, T::from_cbor(&body)?))
    }

    /// A CBOR answer decoded by `decode` (for messages without a [`CborMessage`] type).
    pub(super) async fn cbor_with<T>(
        mut self,
        decode: impl FnOnce(&[u8]) -> Result<T, crate::protocol::DecodeError>,
    ) -> Result<T, ClientError> {
        if self.status() != StatusCode::OK {
            return Err(self.into_error().await);
        }
        if !self.has_content_type(CBOR) {
            return Err(self.content_type_error(CBOR));
        }
        let body = self.read_capped(MAX_CBOR_RESPONSE).await?;
        Ok(decode(&body)?)
    }

    /// An answer with one of the `ok` statuses whose body, if any, does not matter.
    pub(super) async fn empty(mut self, ok: &[StatusCode]) -> Result<StatusCode, ClientError> {
        let status = self.status();
        if !ok.contains(&status) {
            return Err(self.into_error().await);
        }
        // Read what little there is, so that the connection can be reused.
        let _ = self.read_prefix(MAX_ERROR_BODY).await;
        Ok(status)
    }

    /// A share read, copied to `out`; returns the number of bytes written.
    ///
    /// As in the stock client, `Content-Type` is checked before the status: every answer of a
    /// share-read endpoint is `application/octet-stream`, so anything else (an HTML 404 from
    /// a server that does not route the path, say) is not a share answer. 401 is the one
    /// exception, kept as itself because stock servers send it without a `Content-Type`.
    /// With `requested`, the answer must be 204 (nothing there) or 206 whose
    /// `Content-Range` starts where asked and ends within the request, followed by exactly
    /// that many bytes. Without it, 200 and the whole share.
    pub(super) async fn share<W>(
        mut self,
        requested: Option<ReadRange>,
        out: &mut W,
    ) -> Result<u64, ClientError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let status = self.status();
        if status != StatusCode::UNAUTHORIZED && !self.has_content_type(OCTET_STREAM) {
            return Err(self.content_type_error(OCTET_STREAM));
        }
        // `clamp(u64::MAX)` gives back the requested half-open range.
        match (status, requested.and_then(|r| r.clamp(u64::MAX))) {
            (StatusCode::NO_CONTENT, Some(_)) => Ok(0),
            (StatusCode::PARTIAL_CONTENT, Some(asked)) => {
                let header = self.header(&CONTENT_RANGE).unwrap_or_default().to_owned();
                let served = ReadRange::parse_content_range(&header)
                    .ok()
                    .filter(|served| served.start == asked.start && served.end <= asked.end)
                    .ok_or_else(|| ClientError::BadContentRange {
                        header: shorten(&header, 100),
                        requested: asked,
                    })?;
                self.copy(Some(served), out).await
            }
            (StatusCode::OK, None) => self.copy(None, out).await,
            _ => Err(self.into_error().await),
        }
    }

    /// Copies the body to `out`. With `announced`, exactly that many bytes must arrive.
    async fn copy<W>(
        &mut self,
        announced: Option<Range<u64>>,
        out: &mut W,
    ) -> Result<u64, ClientError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let announced = announced.map(|r| r.end - r.start);
        let mut received: u64 = 0;
        while let Some(chunk) = self.next_chunk(received).await? {
            received = received.saturating_add(chunk.len() as u64);
            if let Some(announced) = announced.filter(|&a| received > a) {
                return Err(ClientError::BodyTooLong { announced });
            }
            out.write_all(&chunk).await.map_err(ClientError::Output)?;
        }
        if let Some(announced) = announced.filter(|&a| received < a) {
            return Err(ClientError::BodyTooShort {
                announced,
                received,
            });
        }
        out.flush().await.map_err(ClientError::Output)?;
        Ok(received)
    }

    /// Whether a storage plugin on the server refused the request.
    pub(super) fn is_plugin_rejection(&self) -> bool {
        !self.status().is_success()
            && self
                .response
                .headers()
                .contains_key(X_TAHOE_PLUGIN_REJECTED)
    }

    /// Status, content type and body (at most `limit` bytes) of any answer: for plugin
    /// routes, whose answers are the plugin's business.
    pub(super) async fn raw(mut self, limit: u64) -> Result<(u16, String, Vec<u8>), ClientError> {
        let status = self.status().as_u16();
        let content_type = self.header(&CONTENT_TYPE).unwrap_or_default().to_owned();
        let body = self.read_capped(limit).await?;
        Ok((status, content_type, body))
    }

    /// The error a non-success answer stands for.
    pub(super) async fn into_error(mut self) -> ClientError {
        let status = self.status();
        if self
            .response
            .headers()
            .contains_key(X_TAHOE_PLUGIN_REJECTED)
            && self.has_content_type(CBOR)
        {
            if let Ok(body) = self.read_capped(MAX_REJECTION_BODY).await {
                if let Some(rejection) = plugin_rejection(status, &body) {
                    return ClientError::PluginRejected(rejection);
                }
            }
            return ClientError::UnexpectedStatus {
                status: status.as_u16(),
                message: String::new(),
            };
        }
        let html = self.has_content_type("text/html");
        let body = self.read_prefix(MAX_ERROR_BODY).await;
        // Framework HTML pages say nothing the status does not.
        let message = if html {
            String::new()
        } else {
            self.scrub(&body)
        };
        match status {
            StatusCode::BAD_REQUEST => ClientError::BadRequest { message },
            StatusCode::UNAUTHORIZED => ClientError::Unauthorized,
            StatusCode::NOT_FOUND => ClientError::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ClientError::NotAllowed,
            StatusCode::CONFLICT => ClientError::Conflict,
            StatusCode::RANGE_NOT_SATISFIABLE => ClientError::RangeNotSatisfiable,
            _ => ClientError::UnexpectedStatus {
                status: status.as_u16(),
                message,
            },
        }
    }

    /// Server text fit for an error message: secrets we sent removed (stock Tahoe echoes
    /// them in some 400 bodies), one line, shortened.
    fn scrub(&self, body: &[u8]) -> String {
        let mut text = String::from_utf8_lossy(body).into_owned();
        for secret in &self.redact {
            text = text.replace(secret.as_str(), "<secret>");
        }
        shorten(&text, MAX_MESSAGE_CHARS)
    }
}

/// One line of at most `max` characters, control characters replaced.
fn shorten(text: &str, max: usize) -> String {
    let mut out: String = text
        .trim()
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.trim().chars().count() > max {
        out.push('…');
    }
    out
}

/// Decodes `{"plugin": tstr, "code": tstr, "message": tstr, "details": any}`.
fn plugin_rejection(status: StatusCode, body: &[u8]) -> Option<PluginRejection> {
    let Value::Map(entries) = ciborium::from_reader::<Value, _>(body).ok()? else {
        return None;
    };
    let text = |key: &str| {
        entries.iter().find_map(|(k, v)| match (k, v) {
            (Value::Text(k), Value::Text(v)) if k == key => Some(shorten(v, MAX_MESSAGE_CHARS)),
            _ => None,
        })
    };
    let details = entries
        .iter()
        .find_map(|(k, v)| match k {
            Value::Text(k) if k == "details" && !v.is_null() => {
                let mut bytes = Vec::new();
                ciborium::into_writer(v, &mut bytes).ok().map(|()| bytes)
            }
            _ => None,
        })
        .unwrap_or_default();
    Some(PluginRejection {
        status: status.as_u16(),
        plugin: text("plugin")?,
        code: text("code")?,
        message: text("message")?,
        details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_keeps_one_short_line() {
        assert_eq!(shorten("  a\nb  ", 10), "a b");
        assert_eq!(shorten("abcdef", 3), "abc…");
    }

    #[test]
    fn plugin_rejections_decode_and_garbage_does_not() {
        let value = Value::Map(vec![
            (Value::Text("plugin".into()), Value::Text("zkap".into())),
            (Value::Text("code".into()), Value::Text("no-passes".into())),
            (
                Value::Text("message".into()),
                Value::Text("spend passes first".into()),
            ),
            (Value::Text("details".into()), Value::Null),
        ]);
        let mut body = Vec::new();
        ciborium::into_writer(&value, &mut body).unwrap();
        let rejection = plugin_rejection(StatusCode::PAYMENT_REQUIRED, &body).unwrap();
        assert_eq!(
            (
                rejection.status,
                rejection.plugin.as_str(),
                rejection.code.as_str()
            ),
            (402, "zkap", "no-passes")
        );
        assert!(plugin_rejection(StatusCode::FORBIDDEN, b"\xff").is_none());
        assert!(plugin_rejection(StatusCode::FORBIDDEN, &[0xa0]).is_none());
    }
}
