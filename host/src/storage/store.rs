//! PLACEHOLDER: the storage helper replaces this file. Signatures are the contract.
#![allow(unused_variables, clippy::unused_self)]

use std::collections::BTreeSet;
use std::fs::File;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{Clock, StorageError};
use crate::protocol::{
    AllocateResponse, LeaseSecrets, ReadTestWriteRequest, ReadTestWriteResponse, ShareKind,
    ShareNumber, StorageIndex, UploadSecret, WriteEnabler,
};

/// `maximum-mutable-share-size` as stock Tahoe announces it.
pub const MAXIMUM_MUTABLE_SHARE_SIZE: u64 = 69_105_000_000_000_000;

/// Settings of a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Bytes of disk to leave free; subtracted from the available space.
    pub reserved_space: u64,
    /// The 20-byte node id written into new mutable containers and mutable leases.
    pub nodeid: [u8; 20],
}

/// What an upload write left to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteProgress {
    /// Byte ranges of `[0, allocated-size)` still missing, ascending, half-open.
    pub required: Vec<Range<u64>>,
}

/// An open share positioned for reading its data.
#[derive(Debug)]
pub struct ShareReader {
    /// The container file.
    pub file: File,
    /// Offset of share data byte 0 in the file.
    pub data_offset: u64,
    /// Length of the share data.
    pub len: u64,
}

/// The share store of one node.
#[derive(Debug)]
pub struct Store {}

impl Store {
    /// Opens (creating if needed) the store rooted at `<node>/storage`; wipes `incoming/`.
    pub fn open(storage_dir: &Path, config: StoreConfig, clock: Arc<dyn Clock>) -> Result<Self, StorageError> {
        todo!()
    }

    /// Free bytes for new shares: filesystem available space minus reserved space, floored
    /// at 0, minus space promised to uploads in progress. Cached for about a second.
    pub fn available_space(&self) -> u64 {
        todo!()
    }

    /// Allocate buckets (gbs-protocol.md §4.1).
    pub fn allocate(&self, si: &StorageIndex, shares: &BTreeSet<ShareNumber>, allocated_size: u64, lease: &LeaseSecrets, upload: &UploadSecret) -> Result<AllocateResponse, StorageError> {
        todo!()
    }

    /// Writes bytes of an in-progress upload (§4.2 steps 2-4). Does not finalize.
    pub fn write_immutable(&self, si: &StorageIndex, shnum: ShareNumber, upload: &UploadSecret, offset: u64, data: &[u8]) -> Result<WriteProgress, StorageError> {
        todo!()
    }

    /// Finalizes the upload if every byte is written (fsync, rename into place, fsync dir).
    /// Returns the remaining ranges; empty means the share is now complete and visible.
    pub fn finish_immutable(&self, si: &StorageIndex, shnum: ShareNumber, upload: &UploadSecret) -> Result<WriteProgress, StorageError> {
        todo!()
    }

    /// Abort an upload (§4.3).
    pub fn abort_immutable(&self, si: &StorageIndex, shnum: ShareNumber, upload: &UploadSecret) -> Result<(), StorageError> {
        todo!()
    }

    /// Drops uploads with no write for `idle`; returns how many.
    pub fn expire_idle_uploads(&self, idle: Duration) -> usize {
        todo!()
    }

    /// Completed immutable shares of `si` (§4.4).
    pub fn list_immutable(&self, si: &StorageIndex) -> Result<BTreeSet<ShareNumber>, StorageError> {
        todo!()
    }

    /// Opens a completed immutable share for reading (§4.5).
    pub fn open_immutable(&self, si: &StorageIndex, shnum: ShareNumber) -> Result<ShareReader, StorageError> {
        todo!()
    }

    /// Add or renew a lease on every share of `si` (§4.7).
    pub fn add_or_renew_lease(&self, si: &StorageIndex, lease: &LeaseSecrets) -> Result<(), StorageError> {
        todo!()
    }

    /// Read-test-write (§5.4).
    pub fn read_test_write(&self, si: &StorageIndex, write_enabler: &WriteEnabler, lease: &LeaseSecrets, request: &ReadTestWriteRequest) -> Result<ReadTestWriteResponse, StorageError> {
        todo!()
    }

    /// Mutable shares of `si` (§4.9).
    pub fn list_mutable(&self, si: &StorageIndex) -> Result<BTreeSet<ShareNumber>, StorageError> {
        todo!()
    }

    /// Opens a mutable share for reading its data (§4.5).
    pub fn open_mutable(&self, si: &StorageIndex, shnum: ShareNumber) -> Result<ShareReader, StorageError> {
        todo!()
    }

    /// Records a corruption advisory (§4.6, §6.5).
    pub fn advise_corrupt(&self, kind: ShareKind, si: &StorageIndex, shnum: ShareNumber, reason: &str) -> Result<(), StorageError> {
        todo!()
    }
}
