//! Immutable shares: allocate, upload, abort, list, read, advise corrupt.

use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_RANGE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use bytes::BytesMut;
use http_body_util::BodyExt as _;

use gbs_plugin_interface::ffi::OperationKind;
use gbs_plugin_interface::Outcome;

use super::{cbor, share};
use crate::plugins::operation;
use crate::protocol::paths::route;
use crate::protocol::{
    AllocateRequest, ContentRange, RangeError, ShareNumber, StorageIndex, UploadProgress,
    UploadSecret,
};
use crate::server::error::{blocking, ApiError};
use crate::server::extract::{
    drain, refuse_after_draining, AcceptsCbor, AllocateSecrets, Authorized, Cbor, Plugins,
    SharePath, SiPath, UploadSecrets,
};
use crate::server::AppState;
use crate::storage::WriteProgress;

/// Upload bytes are handed to the store in pieces of at most this size, bounding memory per
/// request; the pieces in memory at once are bounded by the upload budget.
const WRITE_PIECE: usize = 1 << 20;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(route::IMMUTABLE_ALLOCATE, post(allocate))
        .route(
            route::IMMUTABLE_SHARE,
            get(share::read_handler::<share::Immutable>).patch(upload),
        )
        .route(route::IMMUTABLE_ABORT, put(abort))
        .route(
            route::IMMUTABLE_SHARES,
            get(share::list::<share::Immutable>),
        )
        .route(
            route::IMMUTABLE_CORRUPT,
            post(share::corrupt::<share::Immutable>),
        )
}

async fn allocate(
    SiPath(si): SiPath,
    auth: Authorized<AllocateSecrets>,
    Plugins(data): Plugins,
    _: AcceptsCbor,
    State(state): State<AppState>,
    Cbor(request): Cbor<AllocateRequest>,
) -> Result<Response, ApiError> {
    let upload = upload_secret(&auth)?;
    let lease = auth.secrets.lease();
    let admission = state
        .plugins
        .admit(
            OperationKind::ALLOCATE,
            || operation::allocate(&si, &request, &lease),
            &data,
        )
        .await?;
    let store = state.store.clone();
    let renewal = admission.lease_renewal();
    let response = blocking(move || {
        store.allocate(
            &si,
            &request.share_numbers,
            request.allocated_size,
            &lease,
            &upload,
            renewal,
        )
    })
    .await?;
    state
        .plugins
        .committed(admission, || Outcome::Allocated {
            allocated: response.allocated.iter().map(|n| n.0).collect(),
            already_have: response.already_have.iter().map(|n| n.0).collect(),
        })
        .await;
    Ok(cbor(StatusCode::OK, &response))
}

fn upload_secret<S>(auth: &Authorized<S>) -> Result<UploadSecret, ApiError> {
    // The extractor guarantees presence; a missing one would be our bug, not the client's.
    auth.secrets.upload().ok_or(ApiError::Internal)
}

/// Streams exactly the bytes named by `Content-Range` into the upload, in bounded pieces,
/// then answers 201 if one of this request's writes completed the share and 200 with what
/// is still missing otherwise. Once the share is complete, the rest of the body (bytes the
/// share already holds) is read and dropped.
async fn upload(
    SharePath(si, shnum): SharePath,
    auth: Authorized<UploadSecrets>,
    Plugins(data): Plugins,
    _: AcceptsCbor,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let parsed = headers
        .get(CONTENT_RANGE)
        .ok_or(RangeError)
        .and_then(|v| ContentRange::parse(v.to_str().map_err(|_| RangeError)?));
    let range = match parsed {
        Ok(range) => range,
        Err(e) => return Err(refuse_after_draining(body, e.into()).await),
    };
    let admitted = state
        .plugins
        .admit(
            OperationKind::UPLOAD,
            || operation::upload(&si, shnum, range.start(), range.len()),
            &data,
        )
        .await;
    let admission = match admitted {
        Ok(admission) => admission,
        Err(refusal) => return Err(refuse_after_draining(body, refusal.into()).await),
    };
    let plugins = state.plugins.clone();
    // A piece of up to 1 MiB while the upload budget has room; else each frame as it comes
    // (at most the HTTP read buffer), so stalled uploads cannot pile up memory.
    let mut buffer = state.memory.upload_buffer(WRITE_PIECE);
    let piece_limit = buffer.as_ref().map(|_| WRITE_PIECE);
    let writer = PieceWriter {
        state,
        si,
        shnum,
        secret: upload_secret(&auth)?,
    };
    // An empty write checks the secret and that the upload exists before any body is read.
    let mut progress = match writer.write(range.start(), BytesMut::new()).await {
        Ok((progress, _)) => progress,
        Err(e) => return Err(refuse_after_draining(body, e).await),
    };

    let mut body = body;
    let mut offset = range.start();
    let mut piece = buffer
        .as_mut()
        .map_or_else(BytesMut::new, |buffer| buffer.take());
    while !progress.is_complete() && offset + (piece.len() as u64) < range.end() {
        let frame = match body.frame().await {
            Some(Ok(frame)) => frame,
            Some(Err(_)) => return Err(ApiError::BodyRead),
            None => {
                if !piece.is_empty() {
                    let _ = writer.write(offset, piece).await?;
                }
                return Err(ApiError::ShortBody);
            }
        };
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        // A frame may straddle pieces: fill the piece, write it, go on with the rest.
        while !data.is_empty() && !progress.is_complete() {
            let wanted = range.end() - offset - piece.len() as u64;
            let room =
                piece_limit.map_or(usize::MAX, |limit| limit.saturating_sub(piece.len()).max(1));
            let take = data
                .len()
                .min(room)
                .min(usize::try_from(wanted).unwrap_or(usize::MAX));
            if take == 0 {
                break;
            }
            piece.extend_from_slice(&data.split_to(take));
            if piece.len() >= piece_limit.unwrap_or(1) {
                let len = piece.len() as u64;
                (progress, piece) = match writer.write(offset, piece).await {
                    Ok(written) => written,
                    // Read the rest first, so that the client sees the answer (a full
                    // disk, say).
                    Err(e) => return Err(refuse_after_draining(body, e).await),
                };
                offset += len;
            }
        }
    }
    // No empty trailing write: after another request completed the share it would find
    // no upload.
    if !progress.is_complete() && !piece.is_empty() {
        (progress, piece) = writer.write(offset, piece).await?;
    }
    if let Some(buffer) = buffer.as_mut() {
        buffer.give_back(piece);
    }
    if progress.is_complete() {
        drain(body).await;
    }
    drop(buffer);
    let complete = progress.is_complete();
    plugins
        .committed(admission, || Outcome::Uploaded {
            bytes: range.len(),
            complete,
        })
        .await;
    let status = if complete {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(cbor(
        status,
        &UploadProgress {
            required: progress.required().to_vec(),
        },
    ))
}

/// The store calls of one PATCH request.
struct PieceWriter {
    state: AppState,
    si: StorageIndex,
    shnum: ShareNumber,
    secret: UploadSecret,
}

impl PieceWriter {
    /// Writes `piece` at `offset`; hands the buffer back, emptied, for the next piece.
    async fn write(
        &self,
        offset: u64,
        piece: BytesMut,
    ) -> Result<(WriteProgress, BytesMut), ApiError> {
        let (store, si, shnum, secret) = (
            self.state.store.clone(),
            self.si,
            self.shnum,
            self.secret.clone(),
        );
        blocking(move || {
            let progress = store.write_immutable(&si, shnum, &secret, offset, &piece)?;
            let mut piece = piece;
            piece.clear();
            Ok::<_, crate::storage::StorageError>((progress, piece))
        })
        .await
    }
}

async fn abort(
    SharePath(si, shnum): SharePath,
    auth: Authorized<UploadSecrets>,
    Plugins(data): Plugins,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    let secret = upload_secret(&auth)?;
    let admission = state
        .plugins
        .admit(OperationKind::ABORT, || operation::abort(&si, shnum), &data)
        .await?;
    let store = state.store.clone();
    blocking(move || store.abort_immutable(&si, shnum, &secret)).await?;
    state.plugins.committed(admission, || Outcome::Done).await;
    Ok(StatusCode::OK.into_response())
}
