//! What immutable and mutable shares have in common: ranged reads and corruption reports.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use gbs_plugin_interface::ffi::OperationKind;
use gbs_plugin_interface::Outcome;

use crate::plugins::operation;
use crate::protocol::{CorruptionReport, ReadRange, ShareKind, ShareNumber, StorageIndex};
use crate::server::error::{blocking, small_read, ApiError};
use crate::server::extract::{
    AcceptsCbor, Authorized, Cbor, NoSecrets, Plugins, SharePath, SiPath,
};
use crate::server::memory::{Held, MemoryBudget};
use crate::server::AppState;
use crate::storage::read_vec_at;

/// Which kind of share a route serves, as a type so that one handler serves both.
pub(super) trait Kind {
    const KIND: ShareKind;
    /// The plugin operation kinds of listing, reading and reporting corruption.
    const LIST: OperationKind;
    const READ: OperationKind;
    const CORRUPT: OperationKind;
}

/// Routes under `/storage/v1/immutable/`.
pub(super) struct Immutable;

impl Kind for Immutable {
    const KIND: ShareKind = ShareKind::Immutable;
    const LIST: OperationKind = OperationKind::LIST_IMMUTABLE;
    const READ: OperationKind = OperationKind::READ_IMMUTABLE;
    const CORRUPT: OperationKind = OperationKind::CORRUPT_IMMUTABLE;
}

/// Routes under `/storage/v1/mutable/`.
pub(super) struct Mutable;

impl Kind for Mutable {
    const KIND: ShareKind = ShareKind::Mutable;
    const LIST: OperationKind = OperationKind::LIST_MUTABLE;
    const READ: OperationKind = OperationKind::READ_MUTABLE;
    const CORRUPT: OperationKind = OperationKind::CORRUPT_MUTABLE;
}

/// `GET .../{si}/shares`: the share numbers held, as a tag-258 set.
pub(super) async fn list<K: Kind>(
    SiPath(si): SiPath,
    _: Authorized<NoSecrets>,
    Plugins(data): Plugins,
    _: AcceptsCbor,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    let admission = state
        .plugins
        .admit(K::LIST, || operation::list(K::KIND, &si), &data)
        .await?;
    let store = state.store.clone();
    // A directory listing and a header per share: as quick as a small read, and as
    // common (clients list before they read), so it takes the small-read thread too.
    let shares = small_read(move || match K::KIND {
        ShareKind::Immutable => store.list_immutable(&si),
        ShareKind::Mutable => store.list_mutable(&si),
    })
    .await?;
    state.plugins.committed(admission, || Outcome::Done).await;
    let body = crate::protocol::share_set_cbor(&shares);
    Ok((
        StatusCode::OK,
        [(CONTENT_TYPE, HeaderValue::from_static("application/cbor"))],
        body,
    )
        .into_response())
}

/// `GET .../{si}/{shnum}`: a share's data, whole or ranged. Plugins are told the outcome
/// once the answer is ready to stream, with the number of bytes it carries.
pub(super) async fn read_handler<K: Kind>(
    path: Result<SharePath, ApiError>,
    auth: Result<Authorized<NoSecrets>, ApiError>,
    data: Result<Plugins, ApiError>,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Response {
    octet_stream(
        async {
            let SharePath(si, shnum) = path?;
            auth?;
            let Plugins(data) = data?;
            let range = headers
                .get(RANGE)
                .map(|value| ReadRange::parse(value.to_str().unwrap_or_default()))
                .transpose()?;
            let admission = state
                .plugins
                .admit(
                    K::READ,
                    || operation::read(K::KIND, &si, shnum, range.as_ref()),
                    &data,
                )
                .await?;
            let (response, bytes) = read(&state, K::KIND, si, shnum, range).await?;
            state
                .plugins
                .committed(admission, || Outcome::Read { bytes })
                .await;
            Ok(response)
        }
        .await,
    )
}

/// `POST .../{si}/{shnum}/corrupt`: records a corruption report for an existing share.
pub(super) async fn corrupt<K: Kind>(
    SharePath(si, shnum): SharePath,
    _: Authorized<NoSecrets>,
    Plugins(data): Plugins,
    State(state): State<AppState>,
    Cbor(report): Cbor<CorruptionReport>,
) -> Result<Response, ApiError> {
    let admission = state
        .plugins
        .admit(
            K::CORRUPT,
            || operation::advise_corrupt(K::KIND, &si, shnum),
            &data,
        )
        .await?;
    let store = state.store.clone();
    blocking(move || store.advise_corrupt(K::KIND, &si, shnum, &report.reason)).await?;
    state.plugins.committed(admission, || Outcome::Done).await;
    Ok(StatusCode::OK.into_response())
}

const OCTET_STREAM: HeaderValue = HeaderValue::from_static("application/octet-stream");

/// Sets `Content-Type: application/octet-stream` on every answer of a read endpoint, errors
/// included: stock clients check it before the status.
fn octet_stream(result: Result<Response, ApiError>) -> Response {
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response.headers_mut().insert(CONTENT_TYPE, OCTET_STREAM);
    response
}

/// Reads up to this many bytes are answered from one buffer read in the same blocking call
/// that opens the share: Tahoe's downloader makes many small reads, and each hop to a
/// blocking thread costs more than the read itself.
const SMALL_READ: u64 = 256 << 10;

/// What a read answers with, decided where the share is opened.
enum Served {
    /// The range starts at or past the end.
    Nothing,
    /// A small range, read whole.
    Bytes(std::ops::Range<u64>, Vec<u8>),
    /// A larger range, streamed from the share file, which holds its first byte at the
    /// offset given.
    Stream(std::fs::File, u64, std::ops::Range<u64>),
}

/// Answers a read: 200 with everything without `Range`, 206 with the clamped range, 204
/// when the range starts at or past the end. Also returns how many bytes it sends.
async fn read(
    state: &AppState,
    kind: ShareKind,
    si: StorageIndex,
    shnum: ShareNumber,
    range: Option<ReadRange>,
) -> Result<(Response, u64), ApiError> {
    let store = state.store.clone();
    let ranged = range.is_some();
    // Most reads are small: see `read_thread`.
    let served = small_read(move || -> Result<Served, ApiError> {
        let reader = match kind {
            ShareKind::Immutable => store.open_immutable(&si, shnum),
            ShareKind::Mutable => store.open_mutable(&si, shnum),
        }?;
        let wanted = match range {
            None => 0..reader.len,
            Some(range) => match range.clamp(reader.len) {
                None => return Ok(Served::Nothing),
                Some(served) => served,
            },
        };
        let failed = |e: std::io::Error| {
            tracing::error!(error = %e, "reading a share failed");
            ApiError::Internal
        };
        let start = reader
            .data_offset
            .checked_add(wanted.start)
            .ok_or(ApiError::Internal)?;
        if wanted.end - wanted.start > SMALL_READ {
            return Ok(Served::Stream(reader.file, start, wanted));
        }
        let len = usize::try_from(wanted.end - wanted.start).map_err(|_| ApiError::Internal)?;
        let bytes = read_vec_at(&reader.file, start, len).map_err(failed)?;
        Ok(Served::Bytes(wanted, bytes))
    })
    .await?;
    let (status, wanted, body) = match served {
        Served::Nothing => return Ok((StatusCode::NO_CONTENT.into_response(), 0)),
        Served::Bytes(wanted, bytes) => (status_of(ranged), wanted, Body::from(bytes)),
        Served::Stream(file, at, wanted) => {
            let body = stream(file, at, wanted.end - wanted.start, state.memory.clone());
            (status_of(ranged), wanted, body)
        }
    };
    let len = wanted.end - wanted.start;
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    if ranged {
        if let Ok(value) = HeaderValue::from_str(&ReadRange::content_range(&wanted)) {
            response.headers_mut().insert(CONTENT_RANGE, value);
        }
    }
    Ok((response, len))
}

/// 206 for a ranged read, 200 for the whole share.
fn status_of(ranged: bool) -> StatusCode {
    if ranged {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    }
}

/// Bytes a streamed read reads at a time, within the download budget.
const STREAM_PIECE: usize = 512 << 10;
/// Bytes it reads at a time when the budget is spent: a client that does not read its
/// answer then holds two of these, not two large pieces (1,024 such clients held 940 MB).
const LEAN_PIECE: usize = 8 << 10;

/// A piece read within the download budget, which it gives back when dropped (once it has
/// been sent).
struct Budgeted {
    bytes: Vec<u8>,
    _held: Held,
}

impl AsRef<[u8]> for Budgeted {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Streams `len` bytes of a share file from offset `at`, one piece read ahead: while a piece
/// is being sent, the next is read on a blocking thread, so disk and network overlap.
/// Pieces are large while `memory`'s download budget has room and small otherwise, so a
/// stream holds at most two large pieces or two small ones, and no thread is held while a
/// slow client reads.
fn stream(file: std::fs::File, at: u64, len: u64, memory: Arc<MemoryBudget>) -> Body {
    type Piece = tokio::task::JoinHandle<std::io::Result<bytes::Bytes>>;
    let file = Arc::new(file);
    let read = move |at: u64, remaining: u64| -> Option<Piece> {
        let large = usize::try_from(remaining.min(STREAM_PIECE as u64)).ok()?;
        let held = memory.download_piece(large);
        let n = if held.is_some() {
            large
        } else {
            large.min(LEAN_PIECE)
        };
        (n > 0).then(|| {
            let file = file.clone();
            tokio::task::spawn_blocking(move || {
                let bytes = read_vec_at(&file, at, n)?;
                Ok(match held {
                    Some(held) => bytes::Bytes::from_owner(Budgeted { bytes, _held: held }),
                    None => bytes::Bytes::from(bytes),
                })
            })
        })
    };
    let first = read(at, len);
    let pieces = futures_util::stream::unfold((first, at, len), move |(next, at, remaining)| {
        let read = read.clone();
        async move {
            let piece = match next?.await {
                Ok(piece) => piece,
                Err(join) => Err(std::io::Error::other(join)),
            };
            let n = piece.as_ref().map_or(0, |p| p.len() as u64);
            let (at, remaining) = (at + n, remaining - n);
            // After an error the stream ends: the client sees a short body.
            let next = if piece.is_ok() {
                read(at, remaining)
            } else {
                None
            };
            Some((piece, (next, at, remaining)))
        }
    });
    Body::from_stream(pieces)
}
