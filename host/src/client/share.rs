//! Operations on the stored shares of either kind: list, read, report corruption, lease.

use std::collections::BTreeSet;

use reqwest::header::RANGE;
use reqwest::{Method, StatusCode};
use tokio::io::AsyncWrite;

use gbs_plugin_interface::Outcome;

use super::request::{Request, OCTET_STREAM};
use super::{Client, ClientError};
use crate::plugins::operation;
use crate::protocol::{
    paths, share_set_from_cbor, CorruptionReport, LeaseSecrets, ReadRange, SecretKind, ShareKind,
    ShareNumber, StorageIndex,
};

impl Client {
    /// `GET /storage/v1/{immutable|mutable}/{si}/shares`: the share numbers the server holds
    /// (for immutable shares, completed ones only). An unknown storage index gives an empty
    /// set.
    pub async fn list_shares(
        &self,
        kind: ShareKind,
        si: &StorageIndex,
    ) -> Result<BTreeSet<ShareNumber>, ClientError> {
        let path = match kind {
            ShareKind::Immutable => paths::immutable_shares(si),
            ShareKind::Mutable => paths::mutable_shares(si),
        };
        let (reply, applied) = self
            .send_with_plugins(Request::new(Method::GET, path), || {
                operation::list(kind, si)
            })
            .await?;
        let shares = reply.cbor_with(share_set_from_cbor).await?;
        self.plugins_committed(applied, || Outcome::Done).await;
        Ok(shares)
    }

    /// `GET /storage/v1/{immutable|mutable}/{si}/{shnum}`: copies share data to `out` and
    /// returns how many bytes were written.
    ///
    /// With a `range`, the server returns the part of it inside the share: possibly fewer
    /// bytes, and none when it starts at or past the end. Without one, the whole share.
    /// [`ClientError::NotFound`] when the server holds no such (completed) share.
    pub async fn read_share<W>(
        &self,
        kind: ShareKind,
        si: &StorageIndex,
        shnum: ShareNumber,
        range: Option<ReadRange>,
        out: &mut W,
    ) -> Result<u64, ClientError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let path = match kind {
            ShareKind::Immutable => paths::immutable_share(si, shnum),
            ShareKind::Mutable => paths::mutable_share(si, shnum),
        };
        let mut request = Request::new(Method::GET, path).accept(OCTET_STREAM);
        if let Some(range) = range {
            request = request.header(RANGE, range.to_string());
        }
        let (reply, applied) = self
            .send_with_plugins(request, || operation::read(kind, si, shnum, range.as_ref()))
            .await?;
        let bytes = reply.share(range, out).await?;
        self.plugins_committed(applied, || Outcome::Read { bytes })
            .await;
        Ok(bytes)
    }

    /// `POST /storage/v1/{immutable|mutable}/{si}/{shnum}/corrupt`: tells the operator a
    /// share looks corrupt. [`ClientError::NotFound`] when the server holds no such share.
    pub async fn advise_corrupt(
        &self,
        kind: ShareKind,
        si: &StorageIndex,
        shnum: ShareNumber,
        reason: &str,
    ) -> Result<(), ClientError> {
        if reason.is_empty() {
            return Err(ClientError::InvalidArgument(
                "a corruption report needs a reason",
            ));
        }
        let report = CorruptionReport {
            reason: reason.to_owned(),
        };
        let request = Request::new(Method::POST, paths::corrupt(kind, si, shnum)).cbor(&report);
        let (reply, applied) = self
            .send_with_plugins(request, || operation::advise_corrupt(kind, si, shnum))
            .await?;
        reply.empty(&[StatusCode::OK]).await?;
        self.plugins_committed(applied, || Outcome::Done).await;
        Ok(())
    }

    /// `PUT /storage/v1/lease/{si}`: adds a lease identified by `lease.renew` to every share
    /// of the storage index, or renews the one it already has for 31 days.
    /// [`ClientError::NotFound`] when the server holds no share of it.
    pub async fn add_or_renew_lease(
        &self,
        si: &StorageIndex,
        lease: &LeaseSecrets,
    ) -> Result<(), ClientError> {
        let request = Request::new(Method::PUT, paths::lease(si))
            .secret(SecretKind::LeaseRenew, lease.renew.expose())
            .secret(SecretKind::LeaseCancel, lease.cancel.expose());
        let (reply, applied) = self
            .send_with_plugins(request, || operation::lease(si, lease))
            .await?;
        reply.empty(&[StatusCode::NO_CONTENT]).await?;
        self.plugins_committed(applied, || Outcome::Done).await;
        Ok(())
    }
}
