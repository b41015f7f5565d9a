//! `GET /storage/v1/version`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use gbs_plugin_interface::ffi::OperationKind;
use gbs_plugin_interface::{Operation, Outcome};

use super::cbor;
use crate::protocol::{paths::route, VersionInfo};
use crate::server::error::ApiError;
use crate::server::extract::{AcceptsCbor, Authorized, NoSecrets, Plugins};
use crate::server::AppState;
use crate::storage::MAXIMUM_MUTABLE_SHARE_SIZE;

pub(super) fn router() -> Router<AppState> {
    Router::new().route(route::VERSION, get(version))
}

/// Polled about once a second by every connected client, so it reads only cached values.
async fn version(
    State(state): State<AppState>,
    _: Authorized<NoSecrets>,
    Plugins(data): Plugins,
    _: AcceptsCbor,
) -> Result<Response, ApiError> {
    let admission = state
        .plugins
        .admit(OperationKind::VERSION, || Operation::Version, &data)
        .await?;
    let available = state.store.available_space();
    let info = VersionInfo {
        // Stock Tahoe announces the available space here; a smaller value would make
        // clients treat the server as read-only for larger shares.
        maximum_immutable_share_size: available,
        maximum_mutable_share_size: MAXIMUM_MUTABLE_SHARE_SIZE,
        available_space: available,
        application_version: format!("gbs/{}", env!("CARGO_PKG_VERSION")).into_bytes(),
    };
    state.plugins.committed(admission, || Outcome::Done).await;
    Ok(cbor(StatusCode::OK, &info))
}
