//! A store in a temporary directory with a manual clock and a fixed disk size, for tests.

use std::collections::BTreeSet;
use std::sync::Arc;

use tempfile::TempDir;

use super::{LeaseRenewal, ManualClock, Store, StoreConfig};
use crate::protocol::{
    AllocateResponse, LeaseCancelSecret, LeaseRenewSecret, LeaseSecrets, ShareNumber, StorageIndex,
    UploadSecret, WriteEnabler,
};

/// Where the manual clock starts.
pub(super) const START: u64 = 1_700_000_000;
/// The disk size tests pretend to have.
pub(super) const DISK: u64 = 1 << 30;
/// The node id of test stores.
pub(super) const NODEID: [u8; 20] = [0x5a; 20];

pub(super) fn si(n: u8) -> StorageIndex {
    StorageIndex::from_bytes([n; 16])
}

pub(super) fn lease(n: u8) -> LeaseSecrets {
    LeaseSecrets {
        renew: LeaseRenewSecret::new([n; 32]),
        cancel: LeaseCancelSecret::new([n ^ 0xff; 32]),
    }
}

pub(super) fn upload_secret(n: u8) -> UploadSecret {
    UploadSecret::new(vec![n; 20]).unwrap()
}

pub(super) fn write_enabler(n: u8) -> WriteEnabler {
    WriteEnabler::new(vec![n; 32]).unwrap()
}

pub(super) fn shares(numbers: &[u16]) -> BTreeSet<ShareNumber> {
    numbers.iter().copied().map(ShareNumber).collect()
}

pub(super) struct Fixture {
    pub(super) dir: TempDir,
    pub(super) clock: Arc<ManualClock>,
    pub(super) store: Store,
    reserved: u64,
}

impl Fixture {
    pub(super) fn new() -> Self {
        Self::with_reserved(0)
    }

    pub(super) fn with_reserved(reserved: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let store = open(&dir, &clock, reserved);
        Self {
            dir,
            clock,
            store,
            reserved,
        }
    }

    /// Opens the same directory again, as a restart does.
    pub(super) fn reopen(self) -> Self {
        let Self {
            dir,
            clock,
            store,
            reserved,
        } = self;
        drop(store);
        let store = open(&dir, &clock, reserved);
        Self {
            dir,
            clock,
            store,
            reserved,
        }
    }

    pub(super) fn allocate(
        &self,
        si: &StorageIndex,
        numbers: &[u16],
        size: u64,
        secret: u8,
    ) -> AllocateResponse {
        self.store
            .allocate(
                si,
                &shares(numbers),
                size,
                &lease(secret),
                &upload_secret(secret),
                LeaseRenewal::Implicit,
            )
            .unwrap()
    }

    /// Uploads and completes one immutable share.
    pub(super) fn upload_share(&self, si: &StorageIndex, shnum: u16, data: &[u8]) {
        let response = self.allocate(si, &[shnum], data.len() as u64, 1);
        assert!(response.allocated.contains(&ShareNumber(shnum)));
        let secret = upload_secret(1);
        let progress = self
            .store
            .write_immutable(si, ShareNumber(shnum), &secret, 0, data)
            .unwrap();
        assert!(progress.is_complete());
    }
}

fn open(dir: &TempDir, clock: &Arc<ManualClock>, reserved: u64) -> Store {
    let config = StoreConfig {
        reserved_space: reserved,
        nodeid: NODEID,
    };
    let store = Store::open(&dir.path().join("storage"), config, clock.clone()).unwrap();
    store.space.set_disk_override(Some(DISK));
    store
}
