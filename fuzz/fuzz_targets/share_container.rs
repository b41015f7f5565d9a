//! Share container files as the store finds them on disk (immutable v1/v2, mutable v1/v2,
//! their lease records): the input is written as one share file, then the store lists,
//! describes, opens, leases and writes it through its public API. The store never panics
//! on a file, never reports data outside the file, and keeps a container it could open
//! openable after adding a lease or a mutable write.
//!
//! The first input byte picks what is done; the rest is the file.
#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use gbs::protocol::{
    LeaseCancelSecret, LeaseRenewSecret, LeaseSecrets, ReadTestWriteRequest, ReadVector,
    ShareNumber, StorageIndex, TestWriteVectors, WriteEnabler, WriteVector,
};
use gbs::storage::{LeaseRenewal, ManualClock, Store, StoreConfig};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_700_000_000;
const SI: [u8; 16] = *b"fuzz-storage-idx";
const SHNUM: ShareNumber = ShareNumber(3);
/// Where a mutable container keeps its write enabler (`gbs-protocol.md` §6.3).
const WRITE_ENABLER_AT: usize = 52;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    share_dir: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // tmpfs when there is one: the store fsyncs.
        let dir = match std::path::Path::new("/dev/shm").is_dir() {
            true => tempfile::tempdir_in("/dev/shm"),
            false => tempfile::tempdir(),
        }
        .expect("a temporary directory");
        let config = StoreConfig {
            reserved_space: 0,
            nodeid: [7; 20],
        };
        let store = Store::open(dir.path(), config, Arc::new(ManualClock::new(NOW)))
            .expect("open the store");
        let si = StorageIndex::from_bytes(SI);
        let share_dir = dir
            .path()
            .join("shares")
            .join(si.shard_prefix())
            .join(si.to_string());
        Fixture {
            _dir: dir,
            store,
            share_dir,
        }
    })
}

fn lease(seed: u8) -> LeaseSecrets {
    LeaseSecrets {
        renew: LeaseRenewSecret::new([seed; 32]),
        cancel: LeaseCancelSecret::new([seed ^ 0xff; 32]),
    }
}

/// A write of read-test-write that reads the start of every share and writes a few bytes
/// at an offset the input picks (past the end, to move the extra lease block).
fn rtw(op: u8) -> ReadTestWriteRequest {
    let offset = u64::from(op >> 4) * 61;
    let vectors = TestWriteVectors {
        test: Vec::new(),
        write: vec![WriteVector {
            offset,
            data: vec![op; 1 + usize::from(op & 7)],
        }],
        new_length: (op & 8 != 0).then(|| u64::from(op >> 5)),
    };
    ReadTestWriteRequest {
        test_write_vectors: BTreeMap::from([(SHNUM, vectors)]),
        read_vector: vec![ReadVector {
            offset: 0,
            size: 64,
        }],
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&op, file)) = data.split_first() else {
        return;
    };
    let fx = fixture();
    let si = StorageIndex::from_bytes(SI);
    std::fs::create_dir_all(&fx.share_dir).expect("share directory");
    let path = fx.share_dir.join(SHNUM.to_string());
    std::fs::write(&path, file).expect("write the share file");
    let len = file.len() as u64;

    let facts = fx.store.share_facts(&si).expect("describe shares");
    for fact in &facts {
        assert!(fact.size <= len);
    }
    let _ = fx.store.list_immutable(&si).expect("list immutable");
    let _ = fx.store.list_mutable(&si).expect("list mutable");
    let immutable = fx.store.open_immutable(&si, SHNUM);
    let mutable = fx.store.open_mutable(&si, SHNUM);
    for reader in [&immutable, &mutable].into_iter().flatten() {
        assert!(reader
            .data_offset
            .checked_add(reader.len)
            .is_some_and(|end| end <= len));
    }
    let (was_immutable, was_mutable) = (immutable.is_ok(), mutable.is_ok());
    drop((immutable, mutable));

    if op & 1 != 0 {
        let leased = fx.store.add_or_renew_lease(&si, &lease(op));
        if leased.is_ok() {
            assert_eq!(fx.store.open_immutable(&si, SHNUM).is_ok(), was_immutable);
            assert_eq!(fx.store.open_mutable(&si, SHNUM).is_ok(), was_mutable);
        }
    }
    if op & 2 != 0 {
        let enabler = file
            .get(WRITE_ENABLER_AT..WRITE_ENABLER_AT + 32)
            .unwrap_or(&[1; 32]);
        let enabler = WriteEnabler::new(enabler.to_vec()).expect("32 bytes");
        let request = rtw(op);
        let answer =
            fx.store
                .read_test_write(&si, &enabler, &lease(op), &request, LeaseRenewal::Implicit);
        if let Ok(answer) = answer {
            for reads in answer.data.values() {
                assert!(reads.iter().all(|r| r.len() <= 64));
            }
            let deleted = request.test_write_vectors[&SHNUM].new_length == Some(0);
            if answer.success && !deleted {
                let reader = fx
                    .store
                    .open_mutable(&si, SHNUM)
                    .expect("written share opens");
                assert!(reader.len > 0);
            }
        }
    }
    let _ = fx.store.share_facts(&si);
    let _ = std::fs::remove_dir_all(&fx.share_dir);
});
