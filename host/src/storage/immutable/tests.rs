// `[0..16]` here is a list of byte ranges, not a range to collect.
#![allow(clippy::single_range_in_vec_init)]

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::*;
use crate::protocol::ShareKind;
use crate::storage::container::immutable::{ImmutableHeader, ImmutableVersion};
use crate::storage::container::lease::{blake2b_256, LeaseRecord, SecretForm};
use crate::storage::container::mutable::MutableContainer;
use crate::storage::fixture::{lease, shares, si, upload_secret, Fixture, START};

const DAY: u64 = 24 * 60 * 60;
const LEASE: u64 = 31 * DAY;

fn read_all(reader: ShareReader) -> Vec<u8> {
    let mut out = Vec::new();
    reader.file.take(reader.len).read_to_end(&mut out).unwrap();
    out
}

fn leases_of(path: &Path) -> (ImmutableHeader, Vec<LeaseRecord>) {
    let container = ImmutableContainer::open(File::open(path).unwrap())
        .unwrap()
        .unwrap();
    let leases = container.leases().unwrap().map(|l| l.unwrap().1).collect();
    (container.header(), leases)
}

fn write(
    fx: &Fixture,
    n: u16,
    secret: u8,
    offset: u64,
    data: &[u8],
) -> Result<WriteProgress, StorageError> {
    fx.store
        .write_immutable(&si(1), ShareNumber(n), &upload_secret(secret), offset, data)
}

#[test]
fn allocate_creates_incoming_files_with_header_and_lease() {
    let fx = Fixture::new();
    let response = fx.allocate(&si(1), &[0, 3], 1_000, 1);
    assert_eq!(response.allocated, shares(&[0, 3]));
    assert!(response.already_have.is_empty());
    let incoming = fx.store.layout.incoming_path(&si(1), ShareNumber(3));
    assert_eq!(fs::metadata(&incoming).unwrap().len(), 12 + 1_000 + 72);
    let (header, leases) = leases_of(&incoming);
    assert_eq!(header, ImmutableHeader::new(ImmutableVersion::V2, 1_000, 1));
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].owner, 0);
    assert_eq!(u64::from(leases[0].expiry), START + LEASE);
    assert_eq!(leases[0].renew, blake2b_256(&[1; 32]));
    assert_eq!(leases[0].cancel, blake2b_256(&[0xfe; 32]));
    let final_dir = fx.store.layout.share_dir(&si(1));
    assert!(final_dir.is_dir());
    assert_eq!(fs::read_dir(&final_dir).unwrap().count(), 0);
    assert!(
        fx.store.list_immutable(&si(1)).unwrap().is_empty(),
        "uploads are invisible"
    );
}

#[test]
fn completed_26_byte_share_is_110_bytes_and_readable() {
    let fx = Fixture::new();
    fx.upload_share(&si(1), 2, b"abcdefghijklmnopqrstuvwxyz");
    let path = fx.store.layout.share_path(&si(1), ShareNumber(2));
    assert_eq!(fs::metadata(&path).unwrap().len(), 110);
    assert_eq!(fx.store.list_immutable(&si(1)).unwrap(), shares(&[2]));
    let reader = fx.store.open_immutable(&si(1), ShareNumber(2)).unwrap();
    assert_eq!((reader.data_offset, reader.len), (12, 26));
    assert_eq!(read_all(reader), b"abcdefghijklmnopqrstuvwxyz");
    assert!(
        !fx.store.layout.incoming_dir(&si(1)).exists(),
        "empty incoming directories removed"
    );
    assert!(!fx.store.layout.incoming_prefix_dir(&si(1)).exists());
    assert!(fx.store.layout.incoming_root().is_dir());
}

#[test]
fn writes_in_any_order_report_missing_ranges_until_the_last_completes() {
    let fx = Fixture::new();
    fx.allocate(&si(1), &[0], 48, 1);
    assert_eq!(write(&fx, 0, 1, 16, &[2; 32]).unwrap().required(), [0..16]);
    assert!(
        fx.store.list_immutable(&si(1)).unwrap().is_empty(),
        "not visible until complete"
    );
    assert_eq!(
        write(&fx, 0, 1, 4, &[1; 4]).unwrap().required(),
        [0..4, 8..16]
    );
    let conflict = write(&fx, 0, 1, 0, &[9; 16]);
    assert!(
        matches!(conflict, Err(StorageError::Conflict)),
        "bytes 4..8 differ"
    );
    assert_eq!(
        write(&fx, 0, 1, 16, &[2; 8]).unwrap().required(),
        [0..4, 8..16],
        "matching overlap"
    );
    assert_eq!(write(&fx, 0, 1, 0, &[1; 8]).unwrap().required(), [8..16]);
    assert_eq!(
        write(&fx, 0, 1, 8, &[1; 8]).unwrap(),
        WriteProgress::Completed
    );
    let mut expected = vec![1; 16];
    expected.extend_from_slice(&[2; 32]);
    assert_eq!(
        read_all(fx.store.open_immutable(&si(1), ShareNumber(0)).unwrap()),
        expected
    );
    assert!(
        matches!(
            write(&fx, 0, 1, 8, &[1; 8]),
            Err(StorageError::NoSuchUpload)
        ),
        "a write after completion finds no upload"
    );
}

#[test]
fn conflicting_bytes_leave_the_file_unchanged() {
    let fx = Fixture::new();
    fx.allocate(&si(1), &[0], 8, 1);
    write(&fx, 0, 1, 0, b"abcd").unwrap();
    // Overlaps "cd" with "cX", and would also write the new bytes 4..6.
    assert!(matches!(
        write(&fx, 0, 1, 2, b"cXef"),
        Err(StorageError::Conflict)
    ));
    let progress = write(&fx, 0, 1, 2, b"cd").unwrap();
    assert_eq!(
        progress.required(),
        [4..8],
        "the refused write wrote nothing"
    );
    let incoming = fs::read(fx.store.layout.incoming_path(&si(1), ShareNumber(0))).unwrap();
    assert_eq!(&incoming[12..20], b"abcd\0\0\0\0");
    assert!(write(&fx, 0, 1, 2, b"cdefgh").unwrap().is_complete());
    assert_eq!(
        read_all(fx.store.open_immutable(&si(1), ShareNumber(0)).unwrap()),
        b"abcdefgh"
    );
}

#[test]
fn conflicts_are_found_across_chunk_boundaries() {
    let fx = Fixture::new();
    let size = (IO_CHUNK * 2 + 10) as u64;
    fx.allocate(&si(1), &[0], size, 1);
    let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    write(&fx, 0, 1, 1, &data[1..]).unwrap();
    let mut changed = data.clone();
    changed[IO_CHUNK + 5] ^= 1;
    assert!(matches!(
        write(&fx, 0, 1, 0, &changed),
        Err(StorageError::Conflict)
    ));
    assert!(write(&fx, 0, 1, 0, &data).unwrap().is_complete());
}

#[test]
fn writes_past_the_allocation_or_overflowing_are_refused() {
    let fx = Fixture::new();
    fx.allocate(&si(1), &[0], 10, 1);
    for (offset, len) in [
        (9, 2),
        (10, 1),
        (u64::MAX, 1),
        (u64::MAX, 0),
        (u64::MAX - 1, 5),
        (11, 0),
    ] {
        let result = write(&fx, 0, 1, offset, &vec![0; len]);
        assert!(
            matches!(result, Err(StorageError::BeyondAllocation)),
            "{offset}+{len}"
        );
    }
    assert_eq!(write(&fx, 0, 1, 10, b"").unwrap().required(), [0..10]);
    let size = fs::metadata(fx.store.layout.incoming_path(&si(1), ShareNumber(0)))
        .unwrap()
        .len();
    assert_eq!(size, 12 + 10 + 72, "nothing written past the data");
}

#[test]
fn zero_size_share_cannot_take_a_byte() {
    let fx = Fixture::new();
    assert_eq!(fx.allocate(&si(1), &[0], 0, 1).allocated, shares(&[0]));
    assert!(matches!(
        write(&fx, 0, 1, 0, b"x"),
        Err(StorageError::BeyondAllocation)
    ));
}

#[test]
fn wrong_secrets_and_unknown_uploads_are_refused() {
    let fx = Fixture::new();
    fx.allocate(&si(1), &[0], 4, 1);
    assert!(matches!(
        write(&fx, 0, 2, 0, b"abcd"),
        Err(StorageError::UploadSecretMismatch)
    ));
    let short = UploadSecret::new(vec![1; 19]).unwrap();
    let result = fx
        .store
        .write_immutable(&si(1), ShareNumber(0), &short, 0, b"abcd");
    assert!(matches!(result, Err(StorageError::UploadSecretMismatch)));
    assert!(matches!(
        write(&fx, 1, 1, 0, b"abcd"),
        Err(StorageError::NoSuchUpload)
    ));
    assert!(write(&fx, 0, 1, 0, b"abcd").unwrap().is_complete());
    assert!(
        matches!(
            write(&fx, 0, 1, 0, b"abcd"),
            Err(StorageError::NoSuchUpload)
        ),
        "completed"
    );
}

/// Storage plugins that charge for leases (ZKAP) make allocation leave held shares alone.
#[test]
fn explicit_renewal_allocates_without_touching_the_leases_of_held_shares() {
    let fx = Fixture::new();
    fx.upload_share(&si(1), 0, b"zero");
    let share0 = fx.store.layout.share_path(&si(1), ShareNumber(0));
    let before = std::fs::read(&share0).unwrap();
    fx.clock.advance(10 * DAY);
    let response = fx
        .store
        .allocate(
            &si(1),
            &shares(&[0, 1]),
            4,
            &lease(2),
            &upload_secret(2),
            LeaseRenewal::Explicit,
        )
        .unwrap();
    assert_eq!(response.already_have, shares(&[0]));
    assert_eq!(response.allocated, shares(&[1]));
    assert_eq!(
        std::fs::read(&share0).unwrap(),
        before,
        "no lease added or renewed"
    );
    // The new share still gets its first lease.
    fx.store
        .write_immutable(&si(1), ShareNumber(1), &upload_secret(2), 0, b"one!")
        .unwrap();
    let share1 = fx.store.layout.share_path(&si(1), ShareNumber(1));
    let (_, leases) = leases_of(&share1);
    assert_eq!(u64::from(leases[0].expiry), START + 10 * DAY + LEASE);
}

#[test]
fn allocate_reports_every_completed_share_and_renews_or_adds_leases() {
    let fx = Fixture::new();
    fx.upload_share(&si(1), 0, b"zero");
    fx.upload_share(&si(1), 5, b"five");
    fx.clock.advance(10 * DAY);
    let response = fx.allocate(&si(1), &[0, 1], 4, 1);
    assert_eq!(
        response.already_have,
        shares(&[0, 5]),
        "unrequested shares included"
    );
    assert_eq!(response.allocated, shares(&[1]));
    let share0 = fx.store.layout.share_path(&si(1), ShareNumber(0));
    let (_, leases) = leases_of(&share0);
    assert_eq!(leases.len(), 1);
    assert_eq!(
        u64::from(leases[0].expiry),
        START + 10 * DAY + LEASE,
        "renewed"
    );
    let response = fx
        .store
        .allocate(
            &si(1),
            &shares(&[0]),
            4,
            &lease(2),
            &upload_secret(2),
            LeaseRenewal::Implicit,
        )
        .unwrap();
    assert_eq!(response.already_have, shares(&[0, 5]));
    assert!(response.allocated.is_empty());
    let (header, leases) = leases_of(&share0);
    assert_eq!(header.lease_count, 2);
    assert_eq!(
        (leases[1].owner, leases[1].renew),
        (0, blake2b_256(&[2; 32]))
    );
    assert_eq!(
        read_all(fx.store.open_immutable(&si(1), ShareNumber(0)).unwrap()),
        b"zero"
    );
}

#[test]
fn allocate_skips_uploads_in_progress_silently() {
    let fx = Fixture::new();
    assert_eq!(
        fx.allocate(&si(1), &[0, 1], 10, 1).allocated,
        shares(&[0, 1])
    );
    let again = fx.allocate(&si(1), &[0, 1], 10, 1);
    assert!(
        again.allocated.is_empty() && again.already_have.is_empty(),
        "{again:?}"
    );
    let other = fx.allocate(&si(1), &[1, 2], 10, 2);
    assert_eq!(other.allocated, shares(&[2]));
    assert!(matches!(
        write(&fx, 2, 1, 0, b"x"),
        Err(StorageError::UploadSecretMismatch)
    ));
    write(&fx, 2, 2, 0, b"x").unwrap();
}

#[test]
fn allocate_stops_when_space_runs_out() {
    let fx = Fixture::new();
    fx.store.space.set_disk_override(Some(100));
    let response = fx.allocate(&si(1), &[0, 1, 2], 40, 1);
    assert_eq!(response.allocated, shares(&[0, 1]));
    assert_eq!(fx.store.available_space(), 20);
    assert!(fx.allocate(&si(2), &[0], 21, 1).allocated.is_empty());
    assert_eq!(fx.allocate(&si(2), &[0], 20, 1).allocated, shares(&[0]));
    assert!(!fx
        .store
        .layout
        .incoming_path(&si(1), ShareNumber(2))
        .exists());
}

#[test]
fn concurrent_allocations_never_promise_more_than_the_free_space() {
    let fx = Fixture::with_reserved(100);
    fx.store.space.set_disk_override(Some(100 + 100));
    let store = &fx.store;
    let allocated: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..=8u8)
            .map(|n| {
                scope.spawn(move || {
                    store
                        .allocate(
                            &si(n),
                            &shares(&[0, 1]),
                            30,
                            &lease(n),
                            &upload_secret(n),
                            LeaseRenewal::Implicit,
                        )
                        .unwrap()
                        .allocated
                        .len()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(allocated, 3, "three 30-byte shares fit in 100 bytes");
    assert_eq!(fx.store.available_space(), 10);
}

#[test]
fn absurd_sizes_are_not_allocated_and_create_nothing() {
    let fx = Fixture::new();
    for size in [1 << 63, u64::MAX, super::super::fixture::DISK + 1] {
        let response = fx.allocate(&si(1), &[0], size, 1);
        assert!(response.allocated.is_empty(), "{size}");
    }
    assert!(!fx.store.layout.incoming_dir(&si(1)).exists());
    assert!(
        !fx.store.layout.share_dir(&si(1)).exists(),
        "nothing allocated, no directory"
    );
    fx.store.space.set_disk_override(None);
    let response = fx.allocate(&si(1), &[0], 1 << 63, 1);
    assert!(
        response.allocated.is_empty(),
        "the real disk has no 2^63 bytes free"
    );
}

#[test]
fn abort_deletes_the_partial_upload_and_frees_the_share_number() {
    let fx = Fixture::new();
    fx.allocate(&si(1), &[0, 1], 10, 1);
    write(&fx, 0, 1, 0, b"partial").unwrap();
    let result = fx
        .store
        .abort_immutable(&si(1), ShareNumber(0), &upload_secret(2));
    assert!(matches!(result, Err(StorageError::UploadSecretMismatch)));
    write(&fx, 0, 1, 7, b"!").unwrap();
    let before = fx.store.available_space();
    fx.store
        .abort_immutable(&si(1), ShareNumber(0), &upload_secret(1))
        .unwrap();
    assert!(!fx
        .store
        .layout
        .incoming_path(&si(1), ShareNumber(0))
        .exists());
    assert_eq!(fx.store.available_space(), before + 10, "promise released");
    assert!(matches!(
        write(&fx, 0, 1, 0, b"x"),
        Err(StorageError::NoSuchUpload)
    ));
    let result = fx
        .store
        .abort_immutable(&si(1), ShareNumber(0), &upload_secret(1));
    assert!(matches!(result, Err(StorageError::NoSuchUpload)));
    fx.store
        .abort_immutable(&si(1), ShareNumber(1), &upload_secret(1))
        .unwrap();
    assert!(!fx.store.layout.incoming_dir(&si(1)).exists());
    assert_eq!(fx.allocate(&si(1), &[0], 10, 3).allocated, shares(&[0]));
}

#[test]
fn abort_of_a_completed_share_is_refused() {
    let fx = Fixture::new();
    fx.upload_share(&si(1), 0, b"done");
    let result = fx
        .store
        .abort_immutable(&si(1), ShareNumber(0), &upload_secret(1));
    assert!(matches!(result, Err(StorageError::AlreadyComplete)));
    assert_eq!(fx.store.list_immutable(&si(1)).unwrap(), shares(&[0]));
}

#[test]
fn idle_uploads_expire_by_the_store_clock() {
    let fx = Fixture::new();
    fx.allocate(&si(1), &[0, 1], 10, 1);
    let idle = Duration::from_secs(30 * 60);
    fx.clock.advance(1_000);
    write(&fx, 1, 1, 0, b"x").unwrap();
    fx.clock.advance(799);
    assert_eq!(fx.store.expire_idle_uploads(idle), 0);
    fx.clock.advance(1);
    assert_eq!(fx.store.expire_idle_uploads(idle), 1);
    assert!(!fx
        .store
        .layout
        .incoming_path(&si(1), ShareNumber(0))
        .exists());
    assert!(matches!(
        write(&fx, 0, 1, 1, b"y"),
        Err(StorageError::NoSuchUpload)
    ));
    write(&fx, 1, 1, 1, b"y").unwrap();
    fx.clock.advance(30 * 60);
    assert_eq!(fx.store.expire_idle_uploads(idle), 1);
    assert_eq!(fx.store.available_space(), super::super::fixture::DISK);
    assert!(!fx.store.layout.incoming_dir(&si(1)).exists());
}

#[test]
fn aborted_and_expired_uploads_leave_no_share_directories() {
    let fx = Fixture::new();
    fx.upload_share(&si(3), 0, b"kept");
    for n in [1, 2] {
        fx.allocate(&si(n), &[0, 1], 10, 1);
        assert!(fx.store.layout.share_dir(&si(n)).is_dir());
    }
    for shnum in [0, 1] {
        fx.store
            .abort_immutable(&si(1), ShareNumber(shnum), &upload_secret(1))
            .unwrap();
    }
    fx.clock.advance(30 * 60);
    assert_eq!(
        fx.store.expire_idle_uploads(Duration::from_secs(30 * 60)),
        2
    );
    for n in [1, 2] {
        assert!(!fx.store.layout.share_dir(&si(n)).exists(), "si {n}");
        assert!(!fx.store.layout.prefix_dir(&si(n)).exists(), "si {n}");
    }
    assert_eq!(fx.store.list_immutable(&si(3)).unwrap(), shares(&[0]));
}

#[test]
fn restart_forgets_uploads() {
    let fx = Fixture::new();
    fx.allocate(&si(1), &[0], 10, 1);
    write(&fx, 0, 1, 0, b"abc").unwrap();
    let fx = fx.reopen();
    assert!(matches!(
        write(&fx, 0, 1, 3, b"d"),
        Err(StorageError::NoSuchUpload)
    ));
    assert!(!fx
        .store
        .layout
        .incoming_path(&si(1), ShareNumber(0))
        .exists());
    assert_eq!(fx.allocate(&si(1), &[0], 10, 1).allocated, shares(&[0]));
}

#[test]
fn completed_shares_survive_a_restart() {
    let fx = Fixture::new();
    fx.upload_share(&si(4), 1, b"kept");
    let fx = fx.reopen();
    assert_eq!(fx.store.list_immutable(&si(4)).unwrap(), shares(&[1]));
    assert_eq!(
        read_all(fx.store.open_immutable(&si(4), ShareNumber(1)).unwrap()),
        b"kept"
    );
}

fn put_mutable_share(fx: &Fixture, n: u16) {
    let dir = fx.store.layout.share_dir(&si(1));
    fs::create_dir_all(&dir).unwrap();
    let file = File::create_new(dir.join(n.to_string())).unwrap();
    MutableContainer::create(file, [0; 20], &[0; 32]).unwrap();
}

#[test]
fn listing_and_reading_skip_files_of_other_kinds() {
    let fx = Fixture::new();
    assert!(
        fx.store.list_immutable(&si(1)).unwrap().is_empty(),
        "unknown SI"
    );
    fx.upload_share(&si(1), 0, b"imm");
    put_mutable_share(&fx, 1);
    let dir = fx.store.layout.share_dir(&si(1));
    fs::write(dir.join("2"), b"garbage").unwrap();
    fs::write(dir.join("notes"), b"ignored").unwrap();
    assert_eq!(fx.store.list_immutable(&si(1)).unwrap(), shares(&[0]));
    for n in [1, 2] {
        let result = fx.store.open_immutable(&si(1), ShareNumber(n));
        assert!(
            matches!(
                result,
                Err(StorageError::WrongContainer {
                    expected: "immutable",
                    ..
                })
            ),
            "{n}"
        );
    }
    assert!(matches!(
        fx.store.open_immutable(&si(1), ShareNumber(3)),
        Err(StorageError::ShareNotFound)
    ));
    assert!(matches!(
        fx.store.open_immutable(&si(9), ShareNumber(0)),
        Err(StorageError::ShareNotFound)
    ));
    fx.allocate(&si(1), &[7], 3, 1);
    assert!(matches!(
        fx.store.open_immutable(&si(1), ShareNumber(7)),
        Err(StorageError::ShareNotFound)
    ));
}

#[test]
fn allocate_neither_reports_nor_replaces_files_of_other_kinds() {
    let fx = Fixture::new();
    put_mutable_share(&fx, 1);
    let response = fx.allocate(&si(1), &[1, 2], 4, 1);
    assert!(response.already_have.is_empty());
    assert_eq!(response.allocated, shares(&[2]));
    let path = fx.store.layout.share_path(&si(1), ShareNumber(1));
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let container = MutableContainer::open(file).unwrap().unwrap();
    assert_eq!(
        container.leases().unwrap().count(),
        0,
        "allocate leases immutable shares only"
    );
}

#[test]
fn completion_refuses_to_replace_a_share_that_appeared_meanwhile() {
    let fx = Fixture::new();
    fx.allocate(&si(1), &[1], 4, 1);
    write(&fx, 1, 1, 0, b"da").unwrap();
    put_mutable_share(&fx, 1);
    let result = write(&fx, 1, 1, 2, b"ta");
    assert!(matches!(result, Err(StorageError::Conflict)));
    assert!(fx.store.open_mutable(&si(1), ShareNumber(1)).is_ok());
    let retry = write(&fx, 1, 1, 0, b"data");
    assert!(
        matches!(retry, Err(StorageError::Conflict)),
        "a failed finalization is retried by the next write"
    );
    fx.store
        .abort_immutable(&si(1), ShareNumber(1), &upload_secret(1))
        .unwrap();
}

#[test]
fn a_failed_finalization_is_completed_by_the_next_write() {
    let fx = Fixture::new();
    fx.allocate(&si(1), &[1], 4, 1);
    let blocker = fx.store.layout.share_path(&si(1), ShareNumber(1));
    fs::write(&blocker, b"in the way").unwrap();
    assert!(matches!(
        write(&fx, 1, 1, 0, b"data"),
        Err(StorageError::Conflict)
    ));
    fs::remove_file(&blocker).unwrap();
    assert!(matches!(
        write(&fx, 1, 1, 0, b""),
        Ok(WriteProgress::Completed)
    ));
    assert_eq!(
        read_all(fx.store.open_immutable(&si(1), ShareNumber(1)).unwrap()),
        b"data"
    );
}

#[test]
fn leases_renew_only_to_a_later_expiry_and_new_secrets_append() {
    let fx = Fixture::new();
    fx.upload_share(&si(1), 0, b"data");
    let path = fx.store.layout.share_path(&si(1), ShareNumber(0));
    fx.clock.advance(10 * DAY);
    fx.store.add_or_renew_lease(&si(1), &lease(1)).unwrap();
    assert_eq!(
        u64::from(leases_of(&path).1[0].expiry),
        START + 10 * DAY + LEASE
    );
    fx.clock.set(START);
    fx.store.add_or_renew_lease(&si(1), &lease(1)).unwrap();
    assert_eq!(
        u64::from(leases_of(&path).1[0].expiry),
        START + 10 * DAY + LEASE,
        "never shortened"
    );
    fx.store.add_or_renew_lease(&si(1), &lease(2)).unwrap();
    let (header, leases) = leases_of(&path);
    assert_eq!(header.lease_count, 2);
    assert_eq!(leases[1].owner, 1);
    assert_eq!(u64::from(leases[1].expiry), START + LEASE);
    assert_eq!(
        read_all(fx.store.open_immutable(&si(1), ShareNumber(0)).unwrap()),
        b"data"
    );
}

#[test]
fn version_1_shares_are_read_listed_and_leased_in_cleartext() {
    let fx = Fixture::new();
    let dir = fx.store.layout.share_dir(&si(1));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("3");
    let first = fx.store.grant(0, &lease(1));
    let file = File::create_new(&path).unwrap();
    let container =
        ImmutableContainer::create_version(file, ImmutableVersion::V1, 5, &first).unwrap();
    container.write_data(0, b"old!!").unwrap();
    drop(container);
    assert_eq!(fx.store.list_immutable(&si(1)).unwrap(), shares(&[3]));
    assert_eq!(
        read_all(fx.store.open_immutable(&si(1), ShareNumber(3)).unwrap()),
        b"old!!"
    );
    fx.clock.advance(DAY);
    fx.store.add_or_renew_lease(&si(1), &lease(1)).unwrap();
    fx.store.add_or_renew_lease(&si(1), &lease(2)).unwrap();
    let (header, leases) = leases_of(&path);
    assert_eq!(header.version, ImmutableVersion::V1);
    assert_eq!(leases.len(), 2);
    assert_eq!(u64::from(leases[0].expiry), START + DAY + LEASE);
    assert_eq!(leases[0].renew, [1; 32], "v1 keeps cleartext");
    assert_eq!(leases[1].renew, SecretForm::Cleartext.stored(&[2; 32]));
    let response = fx.allocate(&si(1), &[3], 5, 1);
    assert_eq!(response.already_have, shares(&[3]));
}

#[test]
fn concurrent_allocations_hand_out_each_share_once() {
    let fx = Fixture::new();
    let store = &fx.store;
    let winners: Vec<BTreeSet<ShareNumber>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..=4u8)
            .map(|n| {
                scope.spawn(move || {
                    store
                        .allocate(
                            &si(1),
                            &shares(&[0, 1, 2, 3]),
                            8,
                            &lease(n),
                            &upload_secret(n),
                            LeaseRenewal::Implicit,
                        )
                        .unwrap()
                        .allocated
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total: usize = winners.iter().map(BTreeSet::len).sum();
    assert_eq!(total, 4);
    let union: BTreeSet<_> = winners.iter().flatten().copied().collect();
    assert_eq!(union, shares(&[0, 1, 2, 3]));
}

#[test]
fn concurrent_uploads_complete_independently() {
    let fx = Fixture::new();
    fx.allocate(&si(1), &[0, 1, 2, 3], 64 * 1024, 1);
    let store = &fx.store;
    std::thread::scope(|scope| {
        for n in 0..4u16 {
            scope.spawn(move || {
                let secret = upload_secret(1);
                for chunk in (0..64u64).rev() {
                    let data = vec![n as u8; 1024];
                    let progress = store
                        .write_immutable(&si(1), ShareNumber(n), &secret, chunk * 1024, &data)
                        .unwrap();
                    assert_eq!(progress.is_complete(), chunk == 0);
                }
            });
        }
    });
    assert_eq!(
        fx.store.list_immutable(&si(1)).unwrap(),
        shares(&[0, 1, 2, 3])
    );
    let data = read_all(fx.store.open_immutable(&si(1), ShareNumber(2)).unwrap());
    assert_eq!(data, vec![2; 64 * 1024]);
    assert!(!fx.store.layout.incoming_prefix_dir(&si(1)).exists());
}

#[test]
fn concurrent_writes_of_one_upload_complete_it_exactly_once() {
    const THREADS: u64 = 8;
    const CHUNK: u64 = 1024;
    let fx = Fixture::new();
    let store = &fx.store;
    for round in 0..40u8 {
        let si = si(round);
        fx.allocate(&si, &[0], THREADS * CHUNK, 1);
        let barrier = std::sync::Barrier::new(THREADS as usize);
        let completions = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        let data = vec![t as u8 + round; CHUNK as usize];
                        barrier.wait();
                        let progress = store
                            .write_immutable(
                                &si,
                                ShareNumber(0),
                                &upload_secret(1),
                                t * CHUNK,
                                &data,
                            )
                            .unwrap();
                        if let WriteProgress::Partial { required } = &progress {
                            assert!(!required.is_empty(), "only completion has nothing missing");
                        }
                        progress.is_complete()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|c| *c)
                .count()
        });
        assert_eq!(completions, 1, "round {round}");
        let expected: Vec<u8> = (0..THREADS)
            .flat_map(|t| vec![t as u8 + round; CHUNK as usize])
            .collect();
        assert_eq!(
            read_all(store.open_immutable(&si, ShareNumber(0)).unwrap()),
            expected
        );
    }
}

#[test]
fn uploads_in_progress_hold_no_file_descriptors() {
    fn open_descriptors() -> usize {
        fs::read_dir("/proc/self/fd").unwrap().count()
    }
    let fx = Fixture::new();
    let before = open_descriptors();
    let all: Vec<u16> = (0..250).collect();
    for n in 0..8 {
        assert_eq!(fx.allocate(&si(n), &all, 1_000, 1).allocated.len(), 250);
    }
    write(&fx, 0, 1, 0, b"partial").unwrap();
    // Other tests run in parallel threads of this process, so allow them some descriptors.
    let grown = open_descriptors().saturating_sub(before);
    assert!(grown < 100, "{grown} descriptors opened for 2,000 uploads");
    assert!(write(&fx, 0, 1, 7, &[0; 993]).unwrap().is_complete());
}

#[test]
fn advisory_for_completed_immutable_share() {
    let fx = Fixture::new();
    fx.upload_share(&si(1), 0, b"x");
    fx.store
        .advise_corrupt(ShareKind::Immutable, &si(1), ShareNumber(0), "why")
        .unwrap();
    assert_eq!(
        fs::read_dir(fx.store.layout.advisories_dir())
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn allocate_skips_share_numbers_whose_path_holds_something_else() {
    let fx = Fixture::new();
    fx.upload_share(&si(1), 0, b"kept");
    let taken = fx.store.layout.share_path(&si(1), ShareNumber(1));
    fs::create_dir(&taken).unwrap();
    let response = fx.allocate(&si(1), &[0, 1, 2], 4, 1);
    assert_eq!(response.already_have, shares(&[0]));
    assert_eq!(
        response.allocated,
        shares(&[2]),
        "no upload that could never finish"
    );
}
