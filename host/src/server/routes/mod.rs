//! The twelve GBS endpoints and the storage plugin routes, one file per group, each
//! exposing `router()`.

mod immutable;
mod lease;
mod mutable;
mod plugin;
mod share;
mod version;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::AppState;
use crate::protocol::CborMessage;

/// Every route of the storage API.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .merge(version::router())
        .merge(immutable::router())
        .merge(mutable::router())
        .merge(lease::router())
        .merge(plugin::router())
}

/// A CBOR answer with the content type stock clients require.
fn cbor(status: StatusCode, message: &impl CborMessage) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/cbor")],
        message.to_cbor(),
    )
        .into_response()
}
