//! The one place that turns failures into HTTP statuses.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

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
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = if status.is_server_error() {
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

/// `spawn_blocking` for store calls: a panic or cancellation there becomes a 500.
pub(crate) async fn blocking<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Into::into),
        Err(join_error) => {
            tracing::error!(%join_error, "storage task failed");
            Err(ApiError::Internal)
        }
    }
}
