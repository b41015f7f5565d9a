//! Mutable shares: read-test-write, list, read, advise corrupt.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use super::{cbor, share};
use crate::protocol::paths::route;
use crate::protocol::{CorruptionReport, ReadTestWriteRequest, ShareKind};
use crate::server::error::{blocking, ApiError};
use crate::server::extract::{
    AcceptsCbor, Authorized, Cbor, MutableWriteSecrets, NoSecrets, SharePath, SiPath,
};
use crate::server::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(route::MUTABLE_READ_TEST_WRITE, post(read_test_write))
        .route(route::MUTABLE_SHARE, get(read))
        .route(route::MUTABLE_SHARES, get(list))
        .route(route::MUTABLE_CORRUPT, post(corrupt))
}

async fn read_test_write(
    SiPath(si): SiPath,
    auth: Authorized<MutableWriteSecrets>,
    _: AcceptsCbor,
    State(state): State<AppState>,
    Cbor(request): Cbor<ReadTestWriteRequest>,
) -> Result<Response, ApiError> {
    let write_enabler = auth.secrets.write_enabler().ok_or(ApiError::Internal)?;
    let lease = auth.secrets.lease();
    let store = state.store.clone();
    let response =
        blocking(move || store.read_test_write(&si, &write_enabler, &lease, &request)).await?;
    Ok(cbor(StatusCode::OK, &response))
}

async fn list(
    SiPath(si): SiPath,
    _: Authorized<NoSecrets>,
    _: AcceptsCbor,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let shares = blocking(move || store.list_mutable(&si)).await?;
    Ok(share::share_set_response(&shares))
}

async fn read(
    path: Result<SharePath, ApiError>,
    auth: Result<Authorized<NoSecrets>, ApiError>,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Response {
    share::octet_stream(
        async {
            let SharePath(si, shnum) = path?;
            auth?;
            share::read(&state, ShareKind::Mutable, si, shnum, &headers).await
        }
        .await,
    )
}

async fn corrupt(
    SharePath(si, shnum): SharePath,
    _: Authorized<NoSecrets>,
    State(state): State<AppState>,
    Cbor(report): Cbor<CorruptionReport>,
) -> Result<Response, ApiError> {
    share::advise_corrupt(&state, ShareKind::Mutable, si, shnum, report.reason).await
}
