//! Mutable shares: read-test-write. Reading, listing and corruption reports are shared with
//! immutable shares (see `share.rs`).

use reqwest::{Method, StatusCode};

use gbs_plugin_interface::Outcome;

use super::request::Request;
use super::{Client, ClientError};
use crate::plugins::operation;
use crate::protocol::{
    paths, LeaseSecrets, ReadTestWriteRequest, ReadTestWriteResponse, SecretKind, StorageIndex,
    WriteEnabler,
};

impl Client {
    /// `POST /storage/v1/mutable/{si}/read-test-write`: runs the tests of `request`; if all
    /// pass, applies its writes and adds or renews the lease on the shares written. The reads
    /// are taken before any write, from every share that existed, whatever the tests said.
    ///
    /// [`ClientError::Unauthorized`] when any existing share of the slot has another write
    /// enabler; then nothing was read or written.
    pub async fn read_test_write(
        &self,
        si: &StorageIndex,
        write_enabler: &WriteEnabler,
        lease: &LeaseSecrets,
        request: &ReadTestWriteRequest,
    ) -> Result<ReadTestWriteResponse, ClientError> {
        let http = Request::new(Method::POST, paths::mutable_read_test_write(si))
            .secret(SecretKind::LeaseRenew, lease.renew.expose())
            .secret(SecretKind::LeaseCancel, lease.cancel.expose())
            .secret(SecretKind::WriteEnabler, write_enabler.expose())
            .cbor(request);
        let (reply, applied) = self
            .send_with_plugins(http, || operation::read_test_write(si, request, lease))
            .await?;
        let (_, response): (_, ReadTestWriteResponse) = reply.cbor(&[StatusCode::OK]).await?;
        let success = response.success;
        self.plugins_committed(applied, || Outcome::ReadTestWrite { success })
            .await;
        Ok(response)
    }
}
