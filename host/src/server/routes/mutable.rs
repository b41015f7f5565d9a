//! Mutable shares: read-test-write, list, read, advise corrupt.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use gbs_plugin_interface::ffi::OperationKind;
use gbs_plugin_interface::Outcome;

use super::{cbor, share};
use crate::plugins::operation;
use crate::protocol::paths::route;
use crate::protocol::ReadTestWriteRequest;
use crate::server::error::{blocking, ApiError};
use crate::server::extract::{
    AcceptsCbor, Authorized, Cbor, MutableWriteMemory, MutableWriteSecrets, Plugins, SiPath,
};
use crate::server::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(route::MUTABLE_READ_TEST_WRITE, post(read_test_write))
        .route(
            route::MUTABLE_SHARE,
            get(share::read_handler::<share::Mutable>),
        )
        .route(route::MUTABLE_SHARES, get(share::list::<share::Mutable>))
        .route(
            route::MUTABLE_CORRUPT,
            post(share::corrupt::<share::Mutable>),
        )
}

async fn read_test_write(
    SiPath(si): SiPath,
    auth: Authorized<MutableWriteSecrets>,
    Plugins(data): Plugins,
    _: AcceptsCbor,
    State(state): State<AppState>,
    // Before the body is read: concurrent large writes queue instead of multiplying memory.
    _memory: MutableWriteMemory,
    Cbor(request): Cbor<ReadTestWriteRequest>,
) -> Result<Response, ApiError> {
    let write_enabler = auth.secrets.write_enabler().ok_or(ApiError::Internal)?;
    let lease = auth.secrets.lease();
    let admission = state
        .plugins
        .admit(
            OperationKind::READ_TEST_WRITE,
            || operation::read_test_write(&si, &request, &lease),
            &data,
        )
        .await?;
    let store = state.store.clone();
    let renewal = admission.lease_renewal();
    let response =
        blocking(move || store.read_test_write(&si, &write_enabler, &lease, &request, renewal))
            .await?;
    let success = response.success;
    state
        .plugins
        .committed(admission, || Outcome::ReadTestWrite { success })
        .await;
    Ok(cbor(StatusCode::OK, &response))
}
