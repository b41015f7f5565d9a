//! Storage plugins on the wire: `GET /storage/v1/plugins` lists the loaded plugins with
//! their announcements, and `/storage/v1/plugin/{name}/...` reaches a plugin's own routes,
//! behind the same swissnum check as every other route.

use axum::extract::{Path, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use gbs_plugin_interface::RouteRequest;
use serde::Deserialize;

use crate::plugins::data::PLUGIN_INTERFACE_HEADER;
use crate::protocol::paths::route;
use crate::server::error::ApiError;
use crate::server::extract::{read_limited, AcceptsCbor, Authorized, NoSecrets};
use crate::server::AppState;

/// The largest request body passed to a plugin route (large plugin data goes here).
const MAX_ROUTE_REQUEST: usize = 16 << 20;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(route::PLUGINS, get(list))
        .route(route::PLUGIN_ROUTE, any(plugin_route))
        .route(route::PLUGIN_ROOT, any(plugin_route))
}

/// A CBOR list of `{"name", "version", "announcement"}`, encoded once at start-up, with the
/// plugin interface version this server hosts in `X-Tahoe-Plugin-Interface`.
async fn list(State(state): State<AppState>, _: Authorized<NoSecrets>, _: AcceptsCbor) -> Response {
    let (major, minor) = gbs_plugin_interface::INTERFACE_VERSION;
    let interface =
        HeaderValue::from_str(&format!("{major}.{minor}")).unwrap_or(HeaderValue::from_static("1"));
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/cbor")),
            (
                http::HeaderName::from_static(PLUGIN_INTERFACE_HEADER),
                interface,
            ),
        ],
        state.plugins.listing(),
    )
        .into_response()
}

/// The plugin's name (percent-decoded); the rest of the path is taken from the URI as sent.
#[derive(Deserialize)]
struct PluginPath {
    name: String,
}

/// The path below a plugin's root as the client sent it, still percent-encoded as the query
/// is (empty at the root itself): decoded, `%2F` would read as `/`, and `%3F` or `%00` would
/// hand a plugin a `?` or a NUL.
fn raw_route_path(uri: &http::Uri) -> &str {
    let prefix = route::PLUGIN_ROOT.trim_end_matches("{name}");
    uri.path()
        .strip_prefix(prefix)
        .and_then(|rest| rest.split_once('/'))
        .map_or("", |(_name, path)| path)
}

async fn plugin_route(
    Path(PluginPath { name }): Path<PluginPath>,
    _: Authorized<NoSecrets>,
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    if !state.plugins.contains(&name) {
        return Err(ApiError::NotFound);
    }
    let (parts, body) = request.into_parts();
    let body = read_limited(body, MAX_ROUTE_REQUEST, 0).await?;
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let request = RouteRequest {
        method: parts.method.as_str().into(),
        path: raw_route_path(&parts.uri).into(),
        query: parts.uri.query().unwrap_or_default().into(),
        content_type: content_type.into(),
        body: body.to_vec().into(),
    };
    let answer = state.plugins.route(&name, request).await?;
    // The dispatcher checked the status range and the content type's characters.
    let status = StatusCode::from_u16(answer.status).map_err(|_| ApiError::Internal)?;
    let mut response = (status, answer.body.into_vec()).into_response();
    if let Ok(value) = HeaderValue::from_str(answer.content_type.as_str()) {
        if !value.is_empty() {
            response.headers_mut().insert(CONTENT_TYPE, value);
        }
    }
    Ok(response)
}
