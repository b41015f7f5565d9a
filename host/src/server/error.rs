//! The one place that turns failures into HTTP statuses.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::plugins::data::PLUGIN_REJECTED_HEADER;
use crate::plugins::{PluginDataError, Refusal};
use crate::protocol::{DecodeError, RangeError, SecretError};
use crate::storage::StorageError;

/// Everything a request can fail with. Bodies are short plain text and never contain a
/// secret or client data; internal causes are logged, not sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("Wrong Authorization header")]
    WrongAuthorization,
    #[error("Bad Authorization header")]
    BadAuthorization,
    #[error(transparent)]
    Secrets(#[from] SecretError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("Content-Type must be application/cbor")]
    UnsupportedMediaType,
    #[error("only application/cbor responses are available")]
    NotAcceptable,
    #[error("request body is too large")]
    PayloadTooLarge,
    #[error(transparent)]
    Range(#[from] RangeError),
    #[error("request body is shorter than its Content-Range")]
    ShortBody,
    #[error("request body could not be read")]
    BodyRead,
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("internal error")]
    Internal,
    #[error(transparent)]
    PluginData(#[from] PluginDataError),
    #[error("refused by a storage plugin")]
    Plugin(Refusal),
    #[error("the server is busy; try again shortly")]
    Busy,
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        Self::Plugin(refusal)
    }
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::WrongAuthorization => StatusCode::UNAUTHORIZED,
            Self::BadAuthorization | Self::Secrets(_) | Self::Decode(_) => StatusCode::BAD_REQUEST,
            Self::ShortBody | Self::BodyRead => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Range(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::PluginData(_) => StatusCode::BAD_REQUEST,
            Self::Plugin(refusal) => match refusal {
                // The status was checked against the allowed set by the dispatcher.
                Refusal::Rejected { status, .. } => {
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                }
                Refusal::Failed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                Refusal::BadRouteResponse { .. } => StatusCode::BAD_GATEWAY,
                Refusal::NoSuchPlugin => StatusCode::NOT_FOUND,
            },
            Self::Storage(e) => match e {
                StorageError::UploadSecretMismatch | StorageError::WriteEnablerMismatch => {
                    StatusCode::UNAUTHORIZED
                }
                StorageError::NoSuchUpload | StorageError::ShareNotFound => StatusCode::NOT_FOUND,
                StorageError::AlreadyComplete => StatusCode::METHOD_NOT_ALLOWED,
                StorageError::Conflict | StorageError::WrongContainer { .. } => {
                    StatusCode::CONFLICT
                }
                StorageError::BeyondAllocation => StatusCode::RANGE_NOT_SATISFIABLE,
                StorageError::ShareTooLarge | StorageError::ReadTooLarge { .. } => {
                    StatusCode::PAYLOAD_TOO_LARGE
                }
                StorageError::NoSpace => StatusCode::INSUFFICIENT_STORAGE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Self::Plugin(refusal) = self {
            return plugin_response(status, refusal);
        }
        let body = if matches!(self, Self::Storage(StorageError::NoSpace) | Self::Busy) {
            // Logged where it was found; the client learns what to do next.
            self.to_string()
        } else if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            "internal error".to_owned()
        } else {
            tracing::debug!(error = %self, %status, "request refused");
            match &self {
                // Paths are ours, not the client's business.
                Self::Storage(StorageError::WrongContainer { expected, .. }) => {
                    format!("share is not a valid {expected} share")
                }
                other => other.to_string(),
            }
        };
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

/// A plugin's refusal: the structured rejection body, or a short text naming the plugin.
/// Plugin messages for the log never reach the client.
fn plugin_response(status: StatusCode, refusal: Refusal) -> Response {
    let text = |body: String| {
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response()
    };
    match refusal {
        Refusal::Rejected { plugin, body, .. } => {
            let mut response =
                (status, [(header::CONTENT_TYPE, "application/cbor")], body).into_response();
            if let Ok(value) = header::HeaderValue::from_str(&plugin) {
                response.headers_mut().insert(PLUGIN_REJECTED_HEADER, value);
            }
            response
        }
        Refusal::Failed { plugin } => text(format!("storage plugin {plugin} failed")),
        Refusal::BadRouteResponse { plugin } => text(format!(
            "storage plugin {plugin} answered with an invalid response"
        )),
        Refusal::NoSuchPlugin => text("no such storage plugin".to_owned()),
    }
}

/// `spawn_blocking` for store calls: a panic or cancellation there becomes a 500.
pub(crate) async fn blocking<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    settled(tokio::task::spawn_blocking(work).await)
}

/// [`blocking`] for a small share read or a share listing: on the small-read thread, or on
/// the blocking pool when that thread is busy (see `read_thread`).
pub(crate) async fn small_read<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    settled(super::read_thread::run(work).await)
}

/// What a store call run off the async threads came to: its own error, or a logged 500
/// when it did not finish (`why`: it panicked, or its task was cancelled).
fn settled<T, E: Into<ApiError>>(
    ran: Result<Result<T, E>, impl std::fmt::Display>,
) -> Result<T, ApiError> {
    match ran {
        Ok(result) => result.map_err(Into::into),
        Err(why) => {
            tracing::error!(%why, "storage task failed");
            Err(ApiError::Internal)
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    #[tokio::test]
    async fn a_full_disk_answers_507_naming_the_lack_of_space() {
        let response = ApiError::Storage(StorageError::NoSpace).into_response();
        assert_eq!(response.status(), StatusCode::INSUFFICIENT_STORAGE);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"not enough disk space");
    }
}
