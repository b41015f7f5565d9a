//! Work every route needs, written once as extractors: path parameters, the swissnum and
//! secrets, storage plugin data, content negotiation and size-capped CBOR bodies.
//!
//! Handlers list them in the order stock Tahoe checks: path (404), then [`Authorized`]
//! (401, then 400 for secrets), then [`Plugins`] (400, never for stock clients, which send
//! no plugin data), then [`AcceptsCbor`] (406), then the body (415, 413, 400).

use std::marker::PhantomData;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use http_body_util::BodyExt as _;

use super::error::ApiError;
use super::AppState;
use crate::plugins::data::PLUGIN_DATA_HEADER;
use crate::plugins::PluginData;
use crate::protocol::{
    AllocateRequest, CborMessage, CorruptionReport, ReadTestWriteRequest, SecretKind, Secrets,
    ShareNumber, StorageIndex,
};

/// `{si}` of a path; anything but a canonical storage index is 404, as a routing miss.
pub(crate) struct SiPath(pub(crate) StorageIndex);

impl FromRequestParts<AppState> for SiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(si): Path<String> = Path::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        si.parse().map(Self).map_err(|_| ApiError::NotFound)
    }
}

/// `{si}/{shnum}` of a path; 404 unless both parse.
pub(crate) struct SharePath(pub(crate) StorageIndex, pub(crate) ShareNumber);

impl FromRequestParts<AppState> for SharePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path((si, shnum)): Path<(String, String)> = Path::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        let si = si.parse().map_err(|_| ApiError::NotFound)?;
        let shnum = shnum.parse().map_err(|_| ApiError::NotFound)?;
        Ok(Self(si, shnum))
    }
}

/// The set of `X-Tahoe-Authorization` secrets an endpoint takes.
pub(crate) trait SecretSet: Send + Sync + 'static {
    const KINDS: &'static [SecretKind];
}

macro_rules! secret_set {
    ($name:ident, [$($kind:ident),*]) => {
        pub(crate) struct $name;
        impl SecretSet for $name {
            const KINDS: &'static [SecretKind] = &[$(SecretKind::$kind),*];
        }
    };
}

secret_set!(NoSecrets, []);
secret_set!(UploadSecrets, [Upload]);
secret_set!(LeaseSecrets, [LeaseRenew, LeaseCancel]);
secret_set!(AllocateSecrets, [LeaseRenew, LeaseCancel, Upload]);
secret_set!(MutableWriteSecrets, [WriteEnabler, LeaseRenew, LeaseCancel]);

/// Proof that the request presented the swissnum and exactly the secrets `S`.
pub(crate) struct Authorized<S> {
    pub(crate) secrets: Secrets,
    _set: PhantomData<S>,
}

impl<S: SecretSet> FromRequestParts<AppState> for Authorized<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Only the first Authorization header counts, as in stock Tahoe.
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::WrongAuthorization)?;
        std::str::from_utf8(header.as_bytes()).map_err(|_| ApiError::BadAuthorization)?;
        if !state.swissnum.authorizes(header.as_bytes()) {
            return Err(ApiError::WrongAuthorization);
        }
        let lines = parts
            .headers
            .get_all("x-tahoe-authorization")
            .iter()
            .map(|v| v.as_bytes());
        let secrets = Secrets::parse(lines, S::KINDS)?;
        Ok(Self {
            secrets,
            _set: PhantomData,
        })
    }
}

/// The request's `X-Tahoe-Plugin-Data`, checked (400 for anything malformed, over 64 KiB,
/// or for a plugin not loaded here) before any plugin sees it. Free without the header.
pub(crate) struct Plugins(pub(crate) PluginData);

impl FromRequestParts<AppState> for Plugins {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let mut values = parts
            .headers
            .get_all(PLUGIN_DATA_HEADER)
            .iter()
            .map(|v| v.as_bytes())
            .peekable();
        if values.peek().is_none() {
            return Ok(Self(PluginData::default()));
        }
        PluginData::parse(values, |name| state.plugins.contains(name))
            .map(Self)
            .map_err(ApiError::PluginData)
    }
}

/// Refuses (406) a request whose first `Accept` header prefers anything but
/// `application/cbor`. Stock Tahoe checks after the side effects; we check before.
pub(crate) struct AcceptsCbor;

impl<St: Sync> FromRequestParts<St> for AcceptsCbor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, ApiError> {
        match parts.headers.get(ACCEPT) {
            None => Ok(Self),
            Some(value) => {
                let text = value.to_str().map_err(|_| ApiError::NotAcceptable)?;
                (best_media_type(text) == "application/cbor")
                    .then_some(Self)
                    .ok_or(ApiError::NotAcceptable)
            }
        }
    }
}

/// The entry of an `Accept` value with the highest quality, the first among equals.
fn best_media_type(accept: &str) -> &str {
    let mut best = ("", -1.0_f32);
    for entry in accept.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let quality = parts
            .find_map(|p| p.strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        if quality > best.1 {
            best = (media, quality);
        }
    }
    best.0
}

/// A CBOR request body type with its size cap.
pub(crate) trait CborBody: CborMessage + Send {
    /// Largest accepted encoded body, in bytes.
    const LIMIT: usize;
}

impl CborBody for AllocateRequest {
    const LIMIT: usize = 8192;
}

impl CborBody for CorruptionReport {
    const LIMIT: usize = 32768;
}

impl CborBody for ReadTestWriteRequest {
    /// Stock Tahoe allows 2^48; we bound the memory a single request may take.
    const LIMIT: usize = 64 << 20;
}

/// Room in the read-test-write memory budget for this request's body, held until the
/// request ends; 503 when none came in time. Runs before the body is read.
pub(crate) struct MutableWriteMemory(#[allow(dead_code)] pub(crate) super::memory::Held);

impl FromRequestParts<AppState> for MutableWriteMemory {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Without a length, as much as the largest body accepted.
        let len = declared_length(&parts.headers).map_or(ReadTestWriteRequest::LIMIT, |len| {
            usize::try_from(len).map_or(ReadTestWriteRequest::LIMIT, |len| {
                len.min(ReadTestWriteRequest::LIMIT)
            })
        });
        state
            .memory
            .mutable_write(len)
            .await
            .map(Self)
            .ok_or(ApiError::Busy)
    }
}

/// The request's `Content-Length`, when it has a valid one.
fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A decoded CBOR body: 415 for another content type, 413 over the cap, 400 if malformed.
pub(crate) struct Cbor<T>(pub(crate) T);

impl<T: CborBody, St: Sync> FromRequest<St> for Cbor<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &St) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        if let Some(content_type) = parts.headers.get(CONTENT_TYPE) {
            let media = content_type
                .to_str()
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default();
            if media.trim() != "application/cbor" {
                return Err(refuse_after_draining(body, ApiError::UnsupportedMediaType).await);
            }
        }
        let declared = declared_length(&parts.headers);
        if declared.is_some_and(|len| len > (T::LIMIT + DRAIN_LIMIT) as u64) {
            // Far too large to be worth reading: answer now and let the connection close.
            return Err(ApiError::PayloadTooLarge);
        }
        let expected = declared.map_or(0, |len| usize::try_from(len).unwrap_or(0));
        let bytes = read_limited(body, T::LIMIT, expected).await?;
        T::from_cbor(&bytes).map(Self).map_err(ApiError::from)
    }
}

/// How much of an unwanted request body is read and thrown away before an error answer.
///
/// A server that answers while the client is still sending and then closes makes the
/// kernel reset the connection, and the client may lose the answer; reading the rest of a
/// modest body first lets it see the status.
pub(crate) const DRAIN_LIMIT: usize = 4 << 20;

/// Reads and discards up to [`DRAIN_LIMIT`] bytes of `body`, then hands back `error`.
pub(crate) async fn refuse_after_draining(body: Body, error: ApiError) -> ApiError {
    drain(body).await;
    error
}

/// Reads and discards up to [`DRAIN_LIMIT`] bytes of `body`, a frame at a time: nothing is
/// kept, so refused requests cost no memory beyond the connection's own buffers.
pub(crate) async fn drain(body: Body) {
    let mut body = body;
    let mut drained = 0usize;
    while drained < DRAIN_LIMIT {
        match body.frame().await {
            Some(Ok(frame)) => drained += frame.data_ref().map_or(0, |data| data.len()),
            _ => break,
        }
    }
}

/// Reads a whole body of at most `limit` bytes; a longer one is drained (within
/// [`DRAIN_LIMIT`]) and refused with 413. `expected` (the declared length) sizes the buffer
/// once, so that a large body is not copied as the buffer grows.
pub(crate) async fn read_limited(
    body: Body,
    limit: usize,
    expected: usize,
) -> Result<bytes::Bytes, ApiError> {
    let mut body = body;
    let mut collected = bytes::BytesMut::with_capacity(expected.min(limit));
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| ApiError::BodyRead)?.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > limit + DRAIN_LIMIT {
            return Err(ApiError::PayloadTooLarge);
        }
        if total <= limit {
            collected.extend_from_slice(&data);
        }
    }
    if total > limit {
        return Err(ApiError::PayloadTooLarge);
    }
    Ok(collected.freeze())
}

#[cfg(test)]
mod tests {
    use super::best_media_type;

    #[test]
    fn accept_picks_the_best_entry_like_stock_tahoe() {
        assert_eq!(best_media_type("application/cbor"), "application/cbor");
        assert_eq!(
            best_media_type("application/cbor;q=0.9"),
            "application/cbor"
        );
        assert_eq!(best_media_type("application/cbor, */*"), "application/cbor");
        assert_eq!(best_media_type("*/*, application/cbor"), "*/*");
        assert_eq!(
            best_media_type("text/html;q=0.1, application/cbor;q=0.5"),
            "application/cbor"
        );
        assert_eq!(best_media_type("application/json"), "application/json");
    }
}
