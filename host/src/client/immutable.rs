//! Immutable uploads: allocate, write chunks, abort.
//!
//! An upload is an [`ImmutableUpload`] handle, made by [`Client::allocate`] (or
//! [`ImmutableUpload::resume`] for one allocated earlier), that carries the storage index,
//! allocated size and upload secret every later request needs.

use std::collections::BTreeSet;
use std::ops::Range;

use bytes::Bytes;
use reqwest::header::CONTENT_RANGE;
use reqwest::{Method, StatusCode};

use gbs_plugin_interface::Outcome;

use super::request::Request;
use super::{Client, ClientError};
use crate::plugins::operation;
use crate::protocol::{
    paths, AllocateRequest, AllocateResponse, ContentRange, LeaseSecrets, SecretKind, ShareNumber,
    StorageIndex, UploadProgress, UploadSecret,
};

/// What the server said after one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChunkWritten {
    /// The share is complete (201): readable and listed from now on.
    pub complete: bool,
    /// Byte ranges the server still needs, ascending and half-open; empty when complete.
    pub required: Vec<Range<u64>>,
}

/// An immutable upload in progress on one server: some shares of one storage index, each of
/// the same allocated size, bound to one upload secret.
///
/// The server keeps an upload for 30 minutes after its last write and forgets every upload
/// when it restarts.
#[derive(Debug, Clone)]
pub struct ImmutableUpload {
    client: Client,
    si: StorageIndex,
    allocated_size: u64,
    secret: UploadSecret,
    allocation: AllocateResponse,
}

impl Client {
    /// `POST /storage/v1/immutable/{si}`: asks the server to accept `shares`, each of
    /// `allocated_size` bytes, under a lease with `lease`'s secrets.
    ///
    /// The server reports the completed shares of `si` it already has (renewing or adding the
    /// lease on them) and which of `shares` it allocated. A share it is already receiving,
    /// from anyone, is in neither set; one allocated earlier with the same secret can be
    /// continued with [`ImmutableUpload::resume`].
    pub async fn allocate(
        &self,
        si: StorageIndex,
        shares: BTreeSet<ShareNumber>,
        allocated_size: u64,
        lease: &LeaseSecrets,
        secret: UploadSecret,
    ) -> Result<ImmutableUpload, ClientError> {
        let body = AllocateRequest {
            share_numbers: shares,
            allocated_size,
        };
        let request = Request::new(Method::POST, paths::immutable_allocate(&si))
            .secret(SecretKind::LeaseRenew, lease.renew.expose())
            .secret(SecretKind::LeaseCancel, lease.cancel.expose())
            .secret(SecretKind::Upload, secret.expose())
            .cbor(&body);
        let (reply, applied) = self
            .send_with_plugins(request, || operation::allocate(&si, &body, lease))
            .await?;
        let (_, allocation) = reply.cbor::<AllocateResponse>(&[StatusCode::OK]).await?;
        self.plugins_committed(applied, || Outcome::Allocated {
            allocated: allocation.allocated.iter().map(|n| n.0).collect(),
            already_have: allocation.already_have.iter().map(|n| n.0).collect(),
        })
        .await;
        Ok(ImmutableUpload {
            client: self.clone(),
            si,
            allocated_size,
            secret,
            allocation,
        })
    }
}

impl ImmutableUpload {
    /// A handle on an upload allocated earlier with `secret` (by this process or another),
    /// to continue writing or to abort it. Its allocation sets are empty.
    pub fn resume(
        client: &Client,
        si: StorageIndex,
        allocated_size: u64,
        secret: UploadSecret,
    ) -> Self {
        Self {
            client: client.clone(),
            si,
            allocated_size,
            secret,
            allocation: AllocateResponse::default(),
        }
    }

    /// The storage index.
    pub fn storage_index(&self) -> &StorageIndex {
        &self.si
    }

    /// The size every share of this upload must reach.
    pub fn allocated_size(&self) -> u64 {
        self.allocated_size
    }

    /// Every completed share of the storage index the server already held.
    pub fn already_have(&self) -> &BTreeSet<ShareNumber> {
        &self.allocation.already_have
    }

    /// The shares allocated to this upload.
    pub fn allocated(&self) -> &BTreeSet<ShareNumber> {
        &self.allocation.allocated
    }

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// `PATCH /storage/v1/immutable/{si}/{shnum}`: writes `data` at `offset`.
    ///
    /// Bytes may be written in any order and more than once, but must match what the server
    /// already has ([`ClientError::Conflict`] otherwise; stock clients then abort).
    pub async fn write_chunk(
        &self,
        shnum: ShareNumber,
        offset: u64,
        data: Bytes,
    ) -> Result<ChunkWritten, ClientError> {
        let range = ContentRange::new(offset, data.len() as u64).ok_or(
            ClientError::InvalidArgument("a chunk must hold at least one byte and end below 2^64"),
        )?;
        let length = data.len() as u64;
        let request = Request::new(Method::PATCH, paths::immutable_share(&self.si, shnum))
            .secret(SecretKind::Upload, self.secret.expose())
            .header(CONTENT_RANGE, range.to_string())
            .bytes(data);
        let (reply, applied) = self
            .client
            .send_with_plugins(request, || {
                operation::upload(&self.si, shnum, offset, length)
            })
            .await?;
        let (status, progress) = reply
            .cbor::<UploadProgress>(&[StatusCode::OK, StatusCode::CREATED])
            .await?;
        let complete = status == StatusCode::CREATED;
        self.client
            .plugins_committed(applied, || Outcome::Uploaded {
                bytes: length,
                complete,
            })
            .await;
        Ok(ChunkWritten {
            complete,
            required: progress.required,
        })
    }

    /// `PUT /storage/v1/immutable/{si}/{shnum}/abort`: drops the partial share, so that it
    /// can be allocated again. [`ClientError::NotAllowed`] once the share is complete.
    pub async fn abort(&self, shnum: ShareNumber) -> Result<(), ClientError> {
        let request = Request::new(Method::PUT, paths::immutable_abort(&self.si, shnum))
            .secret(SecretKind::Upload, self.secret.expose());
        let (reply, applied) = self
            .client
            .send_with_plugins(request, || operation::abort(&self.si, shnum))
            .await?;
        reply.empty(&[StatusCode::OK]).await?;
        self.client
            .plugins_committed(applied, || Outcome::Done)
            .await;
        Ok(())
    }
}
