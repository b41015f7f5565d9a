//! `PUT /storage/v1/lease/{si}`: add or renew a lease on every share of a storage index.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::Router;

use gbs_plugin_interface::ffi::OperationKind;
use gbs_plugin_interface::Outcome;

use crate::plugins::operation;
use crate::protocol::paths::route;
use crate::server::error::{blocking, ApiError};
use crate::server::extract::{Authorized, LeaseSecrets, Plugins, SiPath};
use crate::server::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new().route(route::LEASE, put(add_or_renew))
}

async fn add_or_renew(
    SiPath(si): SiPath,
    auth: Authorized<LeaseSecrets>,
    Plugins(data): Plugins,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    let lease = auth.secrets.lease();
    let admission = state
        .plugins
        .admit(
            OperationKind::LEASE,
            || operation::lease(&si, &lease),
            &data,
        )
        .await?;
    let store = state.store.clone();
    blocking(move || store.add_or_renew_lease(&si, &lease)).await?;
    state.plugins.committed(admission, || Outcome::Done).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
