//! The gateway's routes: the storage API's paths, each passed on to the upstream whose
//! local swissnum the request presents, with the operation its client plugins see.
//!
//! Bounds: a request body is read whole before it goes upstream (a plugin rejection sends
//! it again), at most [`MAX_BODY`] (a mutable write's limit; stock clients upload
//! immutable data in chunks far smaller); answers stream through, except those of
//! allocations and mutable writes (at most [`MAX_CBOR_ANSWER`], Tahoe's client limit), whose
//! content the plugins are told. Connections, handshakes and time are the server's limits.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::Router;
use gbs_plugin_interface::{Operation, Outcome};
use http_body_util::BodyExt as _;

use super::leases::LeaseBook;
use super::upstreams::{Upstream, UpstreamSet};
use crate::client::{ClientError, Forward, Forwarded, PluginRejection};
use crate::limits::Limits;
use crate::plugins::operation;
use crate::protocol::paths::route;
use crate::protocol::{
    AllocateRequest, AllocateResponse, CborMessage, ContentRange, ReadRange, ReadTestWriteRequest,
    ReadTestWriteResponse, SecretKind, Secrets, ShareKind, ShareNumber, StorageIndex,
};

/// The largest request body passed on.
const MAX_BODY: usize = Limits::MUTABLE_WRITE_BODY;
/// The largest CBOR answer read to tell the plugins what an operation did.
const MAX_CBOR_ANSWER: u64 = 30 << 20;

const X_TAHOE_AUTHORIZATION: &str = "x-tahoe-authorization";
const X_TAHOE_PLUGIN_REJECTED: HeaderName = HeaderName::from_static("x-tahoe-plugin-rejected");

/// What every gateway handler shares: the upstreams, and the leases it keeps.
#[derive(Debug, Clone)]
pub(super) struct GatewayState {
    pub(super) upstreams: Arc<UpstreamSet>,
    pub(super) leases: Arc<LeaseBook>,
}

impl GatewayState {
    pub(super) fn new(upstreams: UpstreamSet, leases: Arc<LeaseBook>) -> Self {
        Self {
            upstreams: Arc::new(upstreams),
            leases,
        }
    }

    /// The upstream whose local swissnum the `Authorization` header presents.
    fn upstream(&self, headers: &HeaderMap) -> Option<Arc<Upstream>> {
        self.upstreams
            .by_authorization(headers.get(AUTHORIZATION)?.as_bytes())
    }
}

/// The operation a request stands for, as far as its path says.
#[derive(Debug, Clone, Copy)]
enum Call {
    Version,
    Allocate(StorageIndex),
    Upload(StorageIndex, ShareNumber),
    Abort(StorageIndex, ShareNumber),
    List(ShareKind, StorageIndex),
    Read(ShareKind, StorageIndex, ShareNumber),
    Corrupt(ShareKind, StorageIndex, ShareNumber),
    Lease(StorageIndex),
    ReadTestWrite(StorageIndex),
}

pub(super) fn router(state: GatewayState) -> Router {
    use ShareKind::{Immutable, Mutable};
    Router::new()
        .route(route::VERSION, get(|s, r| pass(s, r, Some(Call::Version))))
        .route(
            route::IMMUTABLE_ALLOCATE,
            post(|s, Path(si): Path<String>, r| by_si(s, r, si, Call::Allocate)),
        )
        .route(
            route::IMMUTABLE_SHARE,
            get(|s, Path(p): Path<(String, String)>, r| {
                by_share(s, r, p, |si, n| Call::Read(Immutable, si, n))
            })
            .patch(|s, Path(p): Path<(String, String)>, r| by_share(s, r, p, Call::Upload)),
        )
        .route(
            route::IMMUTABLE_ABORT,
            put(|s, Path(p): Path<(String, String)>, r| by_share(s, r, p, Call::Abort)),
        )
        .route(
            route::IMMUTABLE_SHARES,
            get(|s, Path(si): Path<String>, r| by_si(s, r, si, |si| Call::List(Immutable, si))),
        )
        .route(
            route::IMMUTABLE_CORRUPT,
            post(|s, Path(p): Path<(String, String)>, r| {
                by_share(s, r, p, |si, n| Call::Corrupt(Immutable, si, n))
            }),
        )
        .route(
            route::LEASE,
            put(|s, Path(si): Path<String>, r| by_si(s, r, si, Call::Lease)),
        )
        .route(
            route::MUTABLE_READ_TEST_WRITE,
            post(|s, Path(si): Path<String>, r| by_si(s, r, si, Call::ReadTestWrite)),
        )
        .route(
            route::MUTABLE_SHARE,
            get(|s, Path(p): Path<(String, String)>, r| {
                by_share(s, r, p, |si, n| Call::Read(Mutable, si, n))
            }),
        )
        .route(
            route::MUTABLE_SHARES,
            get(|s, Path(si): Path<String>, r| by_si(s, r, si, |si| Call::List(Mutable, si))),
        )
        .route(
            route::MUTABLE_CORRUPT,
            post(|s, Path(p): Path<(String, String)>, r| {
                by_share(s, r, p, |si, n| Call::Corrupt(Mutable, si, n))
            }),
        )
        // The upstream's plugin list and plugin routes go as they are, without plugins.
        .route(route::PLUGINS, get(|s, r| pass(s, r, None)))
        .route(route::PLUGIN_ROOT, any(|s, r| pass(s, r, None)))
        .route(route::PLUGIN_ROUTE, any(|s, r| pass(s, r, None)))
        // Any other path is one no storage server routes (URL normalisation upstream could
        // make `/a/../version` into one that it does).
        .fallback(|| async { not_routed() })
        .with_state(state)
}

async fn by_si(
    state: State<GatewayState>,
    request: Request,
    si: String,
    call: impl FnOnce(StorageIndex) -> Call,
) -> Response {
    match si.parse() {
        Ok(si) => pass(state, request, Some(call(si))).await,
        Err(_) => not_routed(),
    }
}

/// A storage index or share number that is not canonical: a routing miss, as on a server
/// (passed on, URL normalisation could turn `..` into a path the upstream routes).
fn not_routed() -> Response {
    text(StatusCode::NOT_FOUND, "no such storage API path")
}

async fn by_share(
    state: State<GatewayState>,
    request: Request,
    (si, shnum): (String, String),
    call: impl FnOnce(StorageIndex, ShareNumber) -> Call,
) -> Response {
    match (si.parse(), shnum.parse()) {
        (Ok(si), Ok(shnum)) => pass(state, request, Some(call(si, shnum))).await,
        _ => not_routed(),
    }
}

fn text(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.to_owned(),
    )
        .into_response()
}

/// Passes one request on to its upstream and its answer back.
async fn pass(State(state): State<GatewayState>, request: Request, call: Option<Call>) -> Response {
    let (parts, body) = request.into_parts();
    let Some(upstream) = state.upstream(&parts.headers) else {
        return text(StatusCode::UNAUTHORIZED, "wrong or missing swissnum");
    };
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
    };
    let secrets = call.and_then(|call| secrets_of(call, &parts.headers));
    let operation =
        call.and_then(|call| operation_of(call, &parts.headers, secrets.as_ref(), &body));
    let header = |name: &HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let forward = Forward {
        method: parts.method.clone(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned()),
        // Our HTTP client would send `*/*` for an absent `Accept`, which a server refuses
        // where no `Accept` passes: CBOR is what such a request accepts.
        accept: Some(
            parts
                .headers
                .get(axum::http::header::ACCEPT)
                .cloned()
                .unwrap_or(HeaderValue::from_static("application/cbor")),
        ),
        secrets: parts
            .headers
            .get_all(X_TAHOE_AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect(),
        headers: [RANGE, CONTENT_RANGE]
            .into_iter()
            .filter_map(|name| header(&name).map(|value| (name, value)))
            .collect(),
        body: (!body.is_empty() || parts.headers.contains_key(CONTENT_TYPE)).then(|| {
            (
                header(&CONTENT_TYPE).unwrap_or_else(|| "application/octet-stream".into()),
                body.clone(),
            )
        }),
    };
    let upload_length = body.len() as u64;
    let forwarded = match upstream.client.forward(forward, operation).await {
        Ok(forwarded) => forwarded,
        Err(ClientError::PluginRejected(rejection)) => return rejected(&rejection),
        Err(error) => {
            tracing::warn!(upstream = %format!("{}:{}", upstream.nurl.host, upstream.nurl.port), %error, "upstream request failed");
            return text(
                StatusCode::BAD_GATEWAY,
                "the upstream storage server did not answer",
            );
        }
    };
    let response = answer(&upstream, call, forwarded, upload_length).await;
    // A lease added or renewed through the gateway is one it keeps alive.
    if let (
        true,
        Some(Call::Allocate(si) | Call::Lease(si) | Call::ReadTestWrite(si)),
        Some(secrets),
    ) = (response.status().is_success(), call, secrets)
    {
        state
            .leases
            .record(&upstream.nurl.to_string(), &si, &secrets.lease());
    }
    response
}

/// The secrets a request carries, for the calls that take a lease; `None` when they are
/// not exactly the set the endpoint takes (the upstream then refuses the request).
fn secrets_of(call: Call, headers: &HeaderMap) -> Option<Secrets> {
    let kinds: &[SecretKind] = match call {
        Call::Allocate(_) => &[
            SecretKind::LeaseRenew,
            SecretKind::LeaseCancel,
            SecretKind::Upload,
        ],
        Call::Lease(_) => &[SecretKind::LeaseRenew, SecretKind::LeaseCancel],
        Call::ReadTestWrite(_) => &[
            SecretKind::WriteEnabler,
            SecretKind::LeaseRenew,
            SecretKind::LeaseCancel,
        ],
        _ => return None,
    };
    let lines = headers
        .get_all(X_TAHOE_AUTHORIZATION)
        .iter()
        .map(|v| v.as_bytes());
    Secrets::parse(lines, kinds).ok()
}

/// What the client plugins see of a request; `None` for one the upstream will refuse
/// anyway (no valid secrets, an unreadable body), which then goes without plugin data.
fn operation_of(
    call: Call,
    headers: &HeaderMap,
    secrets: Option<&Secrets>,
    body: &[u8],
) -> Option<Operation> {
    Some(match call {
        Call::Version => Operation::Version,
        Call::Allocate(si) => {
            let request = AllocateRequest::from_cbor(body).ok()?;
            operation::allocate(&si, &request, &secrets?.lease())
        }
        Call::Upload(si, shnum) => {
            let range = headers.get(CONTENT_RANGE)?.to_str().ok()?;
            let range = ContentRange::parse(range).ok()?;
            operation::upload(&si, shnum, range.start(), range.len())
        }
        Call::Abort(si, shnum) => operation::abort(&si, shnum),
        Call::List(kind, si) => operation::list(kind, &si),
        Call::Read(kind, si, shnum) => {
            let range = match headers.get(RANGE) {
                Some(value) => Some(ReadRange::parse(value.to_str().ok()?).ok()?),
                None => None,
            };
            operation::read(kind, &si, shnum, range.as_ref())
        }
        Call::Corrupt(kind, si, shnum) => operation::advise_corrupt(kind, &si, shnum),
        Call::Lease(si) => operation::lease(&si, &secrets?.lease()),
        Call::ReadTestWrite(si) => {
            let request = ReadTestWriteRequest::from_cbor(body).ok()?;
            operation::read_test_write(&si, &request, &secrets?.lease())
        }
    })
}

/// A rejection the client plugins gave up on, as the upstream sent it.
fn rejected(rejection: &PluginRejection) -> Response {
    tracing::warn!(
        plugin = %rejection.plugin,
        code = %rejection.code,
        message = %rejection.message,
        status = rejection.status,
        "upstream storage plugin refused; the client plugin gave up"
    );
    let details: ciborium::Value =
        ciborium::from_reader(rejection.details.as_slice()).unwrap_or(ciborium::Value::Null);
    let text = |s: &str| ciborium::Value::Text(s.to_owned());
    let body = gbs_plugin_interface::to_cbor(&ciborium::Value::Map(vec![
        (text("plugin"), text(&rejection.plugin)),
        (text("code"), text(&rejection.code)),
        (text("message"), text(&rejection.message)),
        (text("details"), details),
    ]));
    let status = StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let plugin = HeaderValue::from_str(&rejection.plugin)
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    (
        status,
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/cbor")),
            (X_TAHOE_PLUGIN_REJECTED, plugin),
        ],
        body,
    )
        .into_response()
}

/// The upstream's answer, with the headers that mean something to a client; after a
/// success the plugins are told what the operation did.
async fn answer(
    upstream: &Upstream,
    call: Option<Call>,
    mut forwarded: Forwarded,
    upload_length: u64,
) -> Response {
    let status = forwarded.status();
    let mut headers = HeaderMap::new();
    for name in [CONTENT_TYPE, CONTENT_RANGE, X_TAHOE_PLUGIN_REJECTED] {
        if let Some(value) = forwarded.headers().get(&name) {
            headers.insert(name, value.clone());
        }
    }
    let success = status.is_success();
    let client = &upstream.client;
    match call {
        Some(Call::Allocate(_) | Call::ReadTestWrite(_)) if success => {
            let body = match forwarded.bytes(MAX_CBOR_ANSWER).await {
                Ok(body) => body,
                Err(_) => return text(StatusCode::BAD_GATEWAY, "the upstream's answer broke off"),
            };
            let outcome = match call {
                Some(Call::Allocate(_)) => {
                    AllocateResponse::from_cbor(&body)
                        .ok()
                        .map(|r| Outcome::Allocated {
                            allocated: r.allocated.iter().map(|n| n.0).collect(),
                            already_have: r.already_have.iter().map(|n| n.0).collect(),
                        })
                }
                _ => ReadTestWriteResponse::from_cbor(&body)
                    .ok()
                    .map(|r| Outcome::ReadTestWrite { success: r.success }),
            };
            if let Some(outcome) = outcome {
                forwarded.committed(client, outcome).await;
            }
            return (status, headers, body).into_response();
        }
        Some(call) if success => {
            let outcome = match call {
                Call::Upload(..) => Outcome::Uploaded {
                    bytes: upload_length,
                    complete: status == StatusCode::CREATED,
                },
                Call::Read(..) => Outcome::Read {
                    bytes: content_length(forwarded.headers()),
                },
                _ => Outcome::Done,
            };
            // Told when the answer starts: the body streams on after.
            forwarded.committed(client, outcome).await;
        }
        _ => {}
    }
    (status, headers, stream(forwarded)).into_response()
}

fn content_length(headers: &HeaderMap) -> u64 {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The upstream's body as it arrives.
fn stream(forwarded: Forwarded) -> Body {
    let pieces = futures_util::stream::unfold(Some(forwarded), |forwarded| async move {
        let mut forwarded = forwarded?;
        match forwarded.chunk().await {
            Ok(Some(piece)) => Some((Ok::<Bytes, std::io::Error>(piece), Some(forwarded))),
            Ok(None) => None,
            Err(error) => Some((Err(std::io::Error::other(error.to_string())), None)),
        }
    });
    Body::from_stream(pieces)
}
