use std::fs::File;
use std::io::Read;

use super::*;
use crate::protocol::{ShareKind, TestVector, WriteVector};
use crate::storage::container::lease::{blake2b_256, LeaseRecord};
use crate::storage::container::mutable::{
    MutableHeader, MutableVersion, DATA_OFFSET, EMPTY_CONTAINER_SIZE,
};
use crate::storage::fixture::{lease, shares, si, write_enabler, Fixture, NODEID, START};

const DAY: u64 = 24 * 60 * 60;
const LEASE: u64 = 31 * DAY;

fn test(offset: u64, size: u64, specimen: &[u8]) -> TestVector {
    TestVector {
        offset,
        size,
        specimen: specimen.to_vec(),
    }
}

fn vectors(
    tests: Vec<TestVector>,
    writes: &[(u64, &[u8])],
    new_length: Option<u64>,
) -> TestWriteVectors {
    let write = writes
        .iter()
        .map(|(offset, data)| WriteVector {
            offset: *offset,
            data: data.to_vec(),
        })
        .collect();
    TestWriteVectors {
        test: tests,
        write,
        new_length,
    }
}

fn request(shares: Vec<(u16, TestWriteVectors)>, reads: &[(u64, u64)]) -> ReadTestWriteRequest {
    ReadTestWriteRequest {
        test_write_vectors: shares
            .into_iter()
            .map(|(n, v)| (ShareNumber(n), v))
            .collect(),
        read_vector: reads
            .iter()
            .map(|&(offset, size)| ReadVector { offset, size })
            .collect(),
    }
}

fn rtw(
    fx: &Fixture,
    we: u8,
    renew: u8,
    req: &ReadTestWriteRequest,
) -> Result<ReadTestWriteResponse, StorageError> {
    fx.store.read_test_write(
        &si(1),
        &write_enabler(we),
        &lease(renew),
        req,
        LeaseRenewal::Implicit,
    )
}

/// Writes `data` at `offset` of share `n` unconditionally.
fn put(fx: &Fixture, n: u16, offset: u64, data: &[u8]) {
    let response = rtw(
        fx,
        1,
        1,
        &request(vec![(n, vectors(vec![], &[(offset, data)], None))], &[]),
    )
    .unwrap();
    assert!(response.success);
}

fn data_of(fx: &Fixture, n: u16) -> Vec<u8> {
    let reader = fx.store.open_mutable(&si(1), ShareNumber(n)).unwrap();
    let mut out = Vec::new();
    reader.file.take(reader.len).read_to_end(&mut out).unwrap();
    out
}

fn container_of(fx: &Fixture, n: u16) -> MutableContainer {
    let file = File::open(fx.store.layout.share_path(&si(1), ShareNumber(n))).unwrap();
    MutableContainer::open(file).unwrap().unwrap()
}

fn leases_of(fx: &Fixture, n: u16) -> Vec<LeaseRecord> {
    container_of(fx, n)
        .leases()
        .unwrap()
        .map(|l| l.unwrap().1)
        .collect()
}

fn reads(pairs: &[(u16, &[&[u8]])]) -> BTreeMap<ShareNumber, Vec<Vec<u8>>> {
    pairs
        .iter()
        .map(|(n, r)| (ShareNumber(*n), r.iter().map(|b| b.to_vec()).collect()))
        .collect()
}

#[test]
fn create_if_new_matches_the_stock_client_example() {
    let fx = Fixture::new();
    let req = request(
        vec![(3, vectors(vec![test(0, 1, b"")], &[(0, b"hello")], None))],
        &[(0, 5)],
    );
    let first = rtw(&fx, 1, 1, &req).unwrap();
    assert_eq!(
        first,
        ReadTestWriteResponse {
            success: true,
            data: BTreeMap::new()
        }
    );
    let path = fx.store.layout.share_path(&si(1), ShareNumber(3));
    assert_eq!(fs::metadata(&path).unwrap().len(), 472 + 5);
    let header = container_of(&fx, 3).header();
    assert_eq!(header.version, MutableVersion::V2);
    assert_eq!(header.nodeid, NODEID);
    assert_eq!(header.write_enabler, [1; 32]);
    assert_eq!(data_of(&fx, 3), b"hello");
    let second = rtw(&fx, 1, 1, &req).unwrap();
    assert_eq!(
        second,
        ReadTestWriteResponse {
            success: false,
            data: reads(&[(3, &[b"hello"])])
        }
    );
    assert_eq!(fx.store.list_mutable(&si(1)).unwrap(), shares(&[3]));
}

#[test]
fn new_shares_get_a_lease_with_owner_1_and_the_nodeid() {
    let fx = Fixture::new();
    put(&fx, 0, 0, b"x");
    let leases = leases_of(&fx, 0);
    assert_eq!(leases.len(), 1);
    assert_eq!((leases[0].owner, leases[0].nodeid), (1, NODEID));
    assert_eq!(leases[0].renew, blake2b_256(&[1; 32]));
    assert_eq!(u64::from(leases[0].expiry), START + LEASE);
}

#[test]
fn write_enabler_must_match_every_share_and_stops_everything() {
    let fx = Fixture::new();
    put(&fx, 0, 0, b"zero");
    // Creating share 1 needs write enabler 1 too, since share 0 has it.
    let req = request(vec![(1, vectors(vec![], &[(0, b"one")], None))], &[]);
    assert!(rtw(&fx, 2, 1, &req).is_err(), "share 0 has write enabler 1");
    let before = fs::read(fx.store.layout.share_path(&si(1), ShareNumber(0))).unwrap();
    let reads_only = request(vec![], &[(0, 4)]);
    assert!(matches!(
        rtw(&fx, 2, 1, &reads_only),
        Err(StorageError::WriteEnablerMismatch)
    ));
    let write_zero = request(vec![(0, vectors(vec![], &[(0, b"ZERO")], None))], &[(0, 4)]);
    assert!(matches!(
        rtw(&fx, 2, 9, &write_zero),
        Err(StorageError::WriteEnablerMismatch)
    ));
    assert_eq!(
        fs::read(fx.store.layout.share_path(&si(1), ShareNumber(0))).unwrap(),
        before
    );
    assert_eq!(fx.store.list_mutable(&si(1)).unwrap(), shares(&[0]));
    assert_eq!(
        rtw(&fx, 1, 1, &reads_only).unwrap().data,
        reads(&[(0, &[b"zero"])])
    );
}

#[test]
fn write_enablers_other_than_32_bytes_never_match_again() {
    let fx = Fixture::new();
    let short = WriteEnabler::new(vec![7; 16]).unwrap();
    let req = request(vec![(0, vectors(vec![], &[(0, b"data")], None))], &[]);
    assert!(
        fx.store
            .read_test_write(&si(1), &short, &lease(1), &req, LeaseRenewal::Implicit)
            .unwrap()
            .success
    );
    let mut padded = [0u8; 32];
    padded[..16].copy_from_slice(&[7; 16]);
    assert_eq!(container_of(&fx, 0).header().write_enabler, padded);
    let again = fx
        .store
        .read_test_write(&si(1), &short, &lease(1), &req, LeaseRenewal::Implicit);
    assert!(matches!(again, Err(StorageError::WriteEnablerMismatch)));
    let long = WriteEnabler::new(vec![8; 40]).unwrap();
    let req2 = request(vec![(0, vectors(vec![], &[], None))], &[]);
    assert!(
        fx.store
            .read_test_write(&si(2), &long, &lease(1), &req2, LeaseRenewal::Implicit)
            .unwrap()
            .success
    );
    let file = File::open(fx.store.layout.share_path(&si(2), ShareNumber(0))).unwrap();
    assert_eq!(
        MutableContainer::open(file)
            .unwrap()
            .unwrap()
            .header()
            .write_enabler,
        [8; 32]
    );
}

#[test]
fn reads_cover_every_existing_share_before_the_writes() {
    let fx = Fixture::new();
    put(&fx, 0, 0, b"zero");
    put(&fx, 1, 0, b"one!");
    let req = request(
        vec![
            (0, vectors(vec![], &[(0, b"ZERO")], None)),
            (2, vectors(vec![], &[(0, b"two")], None)),
        ],
        &[(0, 2), (2, 100), (10, 1)],
    );
    let response = rtw(&fx, 1, 1, &req).unwrap();
    assert!(response.success);
    assert_eq!(
        response.data,
        reads(&[(0, &[b"ze", b"ro", b""]), (1, &[b"on", b"e!", b""])])
    );
    assert_eq!(data_of(&fx, 0), b"ZERO");
    assert_eq!(data_of(&fx, 2), b"two");
    let empty = rtw(&fx, 1, 1, &request(vec![], &[])).unwrap();
    assert_eq!(empty.data, reads(&[(0, &[]), (1, &[]), (2, &[])]));
}

#[test]
fn tests_compare_the_clamped_read_with_the_specimen() {
    let fx = Fixture::new();
    put(&fx, 0, 0, b"abc");
    let cases: [(TestVector, bool); 8] = [
        (test(0, 3, b"abc"), true),
        (test(0, 10, b"abc"), true),
        (test(1, u64::MAX, b"bc"), true),
        (test(0, 0, b""), true),
        (test(u64::MAX, u64::MAX, b""), true),
        (test(0, 2, b"abc"), false),
        (test(0, 3, b"abd"), false),
        (test(3, 1, b"x"), false),
    ];
    for (t, expected) in cases {
        let req = request(vec![(0, vectors(vec![t.clone()], &[], None))], &[]);
        assert_eq!(rtw(&fx, 1, 1, &req).unwrap().success, expected, "{t:?}");
    }
    let missing = request(
        vec![(5, vectors(vec![test(0, 1, b"a")], &[(0, b"new")], None))],
        &[],
    );
    assert!(
        !rtw(&fx, 1, 1, &missing).unwrap().success,
        "a missing share reads as empty"
    );
}

#[test]
fn a_failed_test_anywhere_writes_nothing() {
    let fx = Fixture::new();
    put(&fx, 0, 0, b"abc");
    fx.clock.advance(DAY);
    let req = request(
        vec![
            (0, vectors(vec![test(0, 3, b"abc")], &[(0, b"XYZ")], None)),
            (1, vectors(vec![test(0, 1, b"?")], &[(0, b"new")], None)),
        ],
        &[(0, 3)],
    );
    let response = rtw(&fx, 1, 2, &req).unwrap();
    assert_eq!(
        response,
        ReadTestWriteResponse {
            success: false,
            data: reads(&[(0, &[b"abc"])])
        }
    );
    assert_eq!(data_of(&fx, 0), b"abc");
    assert!(!fx.store.layout.share_path(&si(1), ShareNumber(1)).exists());
    let leases = leases_of(&fx, 0);
    assert_eq!(leases.len(), 1, "no lease added");
    assert_eq!(u64::from(leases[0].expiry), START + LEASE, "nor renewed");
}

#[test]
fn new_length_zero_deletes_and_removes_the_empty_directory() {
    let fx = Fixture::new();
    put(&fx, 0, 0, b"zero");
    put(&fx, 1, 0, b"one");
    let delete = |n| request(vec![(n, vectors(vec![], &[(0, b"ignored")], Some(0)))], &[]);
    assert!(rtw(&fx, 1, 1, &delete(0)).unwrap().success);
    assert_eq!(fx.store.list_mutable(&si(1)).unwrap(), shares(&[1]));
    assert!(
        rtw(&fx, 1, 1, &delete(7)).unwrap().success,
        "deleting a missing share is fine"
    );
    assert!(
        !fx.store.layout.share_path(&si(1), ShareNumber(7)).exists(),
        "and creates nothing"
    );
    assert!(rtw(&fx, 1, 1, &delete(1)).unwrap().success);
    assert!(!fx.store.layout.share_dir(&si(1)).exists());
    assert!(matches!(
        fx.store.add_or_renew_lease(&si(1), &lease(1)),
        Err(StorageError::ShareNotFound)
    ));
}

#[test]
fn writes_that_would_grow_into_the_reserve_are_refused_before_writing() {
    const RESERVED: u64 = 1_000;
    let fx = Fixture::with_reserved(RESERVED);
    put(&fx, 0, 0, b"0123456789");
    // What is left above the reserve once the share is on disk.
    fx.store.space.set_disk_override(Some(RESERVED + 50));
    put(&fx, 0, 10, &[b'a'; 40]);
    fx.store.space.set_disk_override(Some(RESERVED + 10));
    let grow = request(vec![(0, vectors(vec![], &[(45, &[b'b'; 20])], None))], &[]);
    assert!(matches!(rtw(&fx, 1, 1, &grow), Err(StorageError::NoSpace)));
    let mut expected = b"0123456789".to_vec();
    expected.extend_from_slice(&[b'a'; 40]);
    assert_eq!(
        data_of(&fx, 0),
        expected,
        "nothing of the refused write landed"
    );
    let new_share = request(vec![(1, vectors(vec![], &[(0, b"x")], None))], &[]);
    assert!(
        matches!(rtw(&fx, 1, 1, &new_share), Err(StorageError::NoSpace)),
        "a new share needs room for its container"
    );
    assert!(fx.store.list_mutable(&si(1)).unwrap() == shares(&[0]));

    fx.store.space.set_disk_override(Some(0));
    put(&fx, 0, 0, b"in place");
    let shrink = request(vec![(0, vectors(vec![], &[], Some(4)))], &[]);
    assert!(rtw(&fx, 1, 1, &shrink).unwrap().success);
    assert_eq!(
        data_of(&fx, 0),
        b"in p",
        "writes that do not grow are accepted"
    );
    let delete = request(vec![(0, vectors(vec![], &[], Some(0)))], &[]);
    assert!(rtw(&fx, 1, 1, &delete).unwrap().success);
}

#[test]
fn uploads_in_progress_and_mutable_writes_share_the_space() {
    let fx = Fixture::new();
    fx.store
        .space
        .set_disk_override(Some(EMPTY_CONTAINER_SIZE + 100));
    fx.allocate(&si(2), &[0], 50, 1);
    let write = |len: usize| {
        let data = vec![7; len];
        rtw(
            &fx,
            1,
            1,
            &request(vec![(0, vectors(vec![], &[(0, &data)], None))], &[]),
        )
    };
    assert!(matches!(write(51), Err(StorageError::NoSpace)));
    assert!(write(50).unwrap().success);
}

#[test]
fn naming_a_share_without_writes_creates_an_empty_share() {
    let fx = Fixture::new();
    assert!(
        rtw(
            &fx,
            1,
            1,
            &request(vec![(4, vectors(vec![], &[], None))], &[])
        )
        .unwrap()
        .success
    );
    assert_eq!(
        fs::metadata(fx.store.layout.share_path(&si(1), ShareNumber(4)))
            .unwrap()
            .len(),
        472
    );
    assert_eq!(data_of(&fx, 4), b"");
    assert_eq!(leases_of(&fx, 4).len(), 1);
    let response = rtw(&fx, 1, 1, &request(vec![], &[(0, 10)])).unwrap();
    assert_eq!(response.data, reads(&[(4, &[b""])]));
}

#[test]
fn gaps_are_zero_filled_and_truncation_never_exposes_stale_bytes() {
    let fx = Fixture::new();
    put(&fx, 0, 4, b"tail");
    assert_eq!(data_of(&fx, 0), b"\0\0\0\0tail");
    put(&fx, 0, 0, b"0123456789");
    let truncate = |len| request(vec![(0, vectors(vec![], &[], Some(len)))], &[]);
    assert!(rtw(&fx, 1, 1, &truncate(100)).unwrap().success);
    assert_eq!(
        data_of(&fx, 0),
        b"0123456789",
        "a larger new-length is ignored"
    );
    assert!(rtw(&fx, 1, 1, &truncate(3)).unwrap().success);
    assert_eq!(data_of(&fx, 0), b"012");
    put(&fx, 0, 6, b"X");
    assert_eq!(data_of(&fx, 0), b"012\0\0\0X");
    let write_then_truncate = request(
        vec![(0, vectors(vec![], &[(0, b"abcdefgh")], Some(2)))],
        &[],
    );
    assert!(rtw(&fx, 1, 1, &write_then_truncate).unwrap().success);
    assert_eq!(data_of(&fx, 0), b"ab");
}

#[test]
fn writes_past_the_maximum_size_fail_before_anything_is_written() {
    let fx = Fixture::new();
    put(&fx, 0, 0, b"keep");
    for offset in [
        MAXIMUM_MUTABLE_SHARE_SIZE - 1,
        MAXIMUM_MUTABLE_SHARE_SIZE,
        u64::MAX,
    ] {
        let req = request(
            vec![
                (0, vectors(vec![], &[(0, b"lost")], None)),
                (1, vectors(vec![], &[(offset, b"xy")], None)),
            ],
            &[],
        );
        assert!(
            matches!(rtw(&fx, 1, 1, &req), Err(StorageError::ShareTooLarge)),
            "{offset}"
        );
    }
    assert_eq!(data_of(&fx, 0), b"keep");
    assert!(!fx.store.layout.share_path(&si(1), ShareNumber(1)).exists());
    let deleted = request(
        vec![(0, vectors(vec![], &[(u64::MAX, b"x")], Some(0)))],
        &[],
    );
    assert!(
        rtw(&fx, 1, 1, &deleted).unwrap().success,
        "writes of a deleted share are ignored"
    );
    let failing = request(
        vec![(
            2,
            vectors(vec![test(0, 1, b"x")], &[(u64::MAX, b"x")], None),
        )],
        &[],
    );
    assert!(
        !rtw(&fx, 1, 1, &failing).unwrap().success,
        "writes are only checked when they would run"
    );
}

#[test]
fn huge_read_vectors_are_refused() {
    let fx = Fixture::new();
    put(&fx, 0, 3 << 20, b"!");
    let many: Vec<(u64, u64)> = vec![(0, u64::MAX); 30];
    let result = rtw(&fx, 1, 1, &request(vec![], &many));
    assert!(matches!(
        result,
        Err(StorageError::ReadTooLarge {
            limit: MAX_READ_BYTES
        })
    ));
    let response = rtw(
        &fx,
        1,
        1,
        &request(vec![], &[(3 << 20, u64::MAX), (u64::MAX, u64::MAX)]),
    )
    .unwrap();
    assert_eq!(response.data, reads(&[(0, &[b"!", b""])]));
}

/// Storage plugins that charge for leases (ZKAP): a write leases only shares without a
/// live lease, and never renews one.
#[test]
fn explicit_renewal_leases_only_written_shares_without_a_live_lease() {
    let fx = Fixture::new();
    put(&fx, 0, 0, b"held");
    put(&fx, 1, 0, b"lapsing");
    fx.clock.advance(20 * DAY);
    put(&fx, 1, 0, b"renewed at day 20");
    fx.clock.advance(20 * DAY); // share 0's lease ran out at day 31; share 1's runs to day 51
    let explicit = |renew, shares: Vec<(u16, TestWriteVectors)>| {
        fx.store
            .read_test_write(
                &si(1),
                &write_enabler(1),
                &lease(renew),
                &request(shares, &[]),
                LeaseRenewal::Explicit,
            )
            .unwrap()
    };
    let response = explicit(
        2,
        vec![
            (0, vectors(vec![], &[(0, b"grown share zero")], None)),
            (1, vectors(vec![], &[(0, b"grown share one")], None)),
            (2, vectors(vec![], &[(0, b"new")], None)),
        ],
    );
    assert!(response.success);
    let expiries = |n| -> Vec<u64> {
        leases_of(&fx, n)
            .iter()
            .map(|l| u64::from(l.expiry))
            .collect()
    };
    // Share 0 had only an expired lease: it gets the new one.
    assert_eq!(expiries(0), [START + LEASE, START + 40 * DAY + LEASE]);
    // Share 1's lease was live: left as it was, no second lease.
    assert_eq!(expiries(1), [START + 20 * DAY + LEASE]);
    // A new share gets its lease.
    assert_eq!(expiries(2), [START + 40 * DAY + LEASE]);
    assert_eq!(data_of(&fx, 1), b"grown share one20");
}

#[test]
fn leases_are_renewed_or_added_on_named_shares_only() {
    let fx = Fixture::new();
    put(&fx, 0, 0, b"a");
    put(&fx, 1, 0, b"b");
    fx.clock.advance(DAY);
    let touch0 = request(vec![(0, vectors(vec![], &[], None))], &[]);
    rtw(&fx, 1, 1, &touch0).unwrap();
    assert_eq!(u64::from(leases_of(&fx, 0)[0].expiry), START + DAY + LEASE);
    assert_eq!(
        u64::from(leases_of(&fx, 1)[0].expiry),
        START + LEASE,
        "unnamed share untouched"
    );
    rtw(&fx, 1, 2, &touch0).unwrap();
    let leases = leases_of(&fx, 0);
    assert_eq!(leases.len(), 2);
    assert_eq!(leases[1].renew, blake2b_256(&[2; 32]));
    assert_eq!(data_of(&fx, 0), b"a");
}

#[test]
fn lease_endpoint_covers_mutable_shares() {
    let fx = Fixture::new();
    put(&fx, 0, 0, b"a");
    fx.clock.advance(DAY);
    fx.store.add_or_renew_lease(&si(1), &lease(1)).unwrap();
    fx.store.add_or_renew_lease(&si(1), &lease(3)).unwrap();
    let leases = leases_of(&fx, 0);
    assert_eq!(leases.len(), 2);
    assert_eq!(u64::from(leases[0].expiry), START + DAY + LEASE);
    assert_eq!((leases[1].owner, leases[1].nodeid), (1, NODEID));
}

/// Runs the same requests with the rewrite and the in-place paths; both must leave the same
/// bytes on disk.
fn growth_with_many_leases(rewrite_limit: u64) -> (Vec<u8>, Vec<LeaseRecord>) {
    let mut fx = Fixture::new();
    fx.store.rewrite_limit = rewrite_limit;
    put(&fx, 0, 0, b"start");
    for renew in 2..=7 {
        fx.store.add_or_renew_lease(&si(1), &lease(renew)).unwrap();
    }
    put(&fx, 0, 5, b"-grown");
    put(&fx, 0, 40, b"far");
    let truncate = request(vec![(0, vectors(vec![], &[], Some(8)))], &[]);
    assert!(rtw(&fx, 1, 1, &truncate).unwrap().success);
    put(&fx, 0, 12, b"end");
    assert_eq!(data_of(&fx, 0), b"start-gr\0\0\0\0end");
    let container = container_of(&fx, 0);
    assert_eq!(container.header().extra_lease_offset, DATA_OFFSET + 43);
    let leases = leases_of(&fx, 0);
    (
        fs::read(fx.store.layout.share_path(&si(1), ShareNumber(0))).unwrap(),
        leases,
    )
}

#[test]
fn growing_data_moves_the_extra_lease_block_in_both_write_paths() {
    let (rewritten, leases) = growth_with_many_leases(u64::MAX);
    let (in_place, in_place_leases) = growth_with_many_leases(0);
    assert_eq!(rewritten, in_place);
    assert_eq!(leases, in_place_leases);
    assert_eq!(leases.len(), 7);
    let renews: Vec<_> = leases.iter().map(|l| l.renew).collect();
    let expected: Vec<_> = (1..=7).map(|r| blake2b_256(&[r; 32])).collect();
    assert_eq!(renews, expected);
    assert_eq!(rewritten.len() as u64, DATA_OFFSET + 43 + 4 + 3 * 92);
    let data_area = &rewritten[DATA_OFFSET as usize..DATA_OFFSET as usize + 43];
    for renew in &renews {
        assert!(
            !data_area.windows(32).any(|w| w == renew),
            "old lease block zeroed"
        );
    }
}

#[test]
fn a_rewrite_leaves_open_readers_on_the_old_version() {
    let fx = Fixture::new();
    put(&fx, 0, 0, b"version one");
    let reader = fx.store.open_mutable(&si(1), ShareNumber(0)).unwrap();
    put(&fx, 0, 0, b"VERSION TWO");
    let mut old = Vec::new();
    reader.file.take(reader.len).read_to_end(&mut old).unwrap();
    assert_eq!(old, b"version one");
    assert_eq!(data_of(&fx, 0), b"VERSION TWO");
}

#[test]
fn version_1_containers_are_written_read_and_leased() {
    let fx = Fixture::new();
    let dir = fx.store.layout.share_dir(&si(1));
    fs::create_dir_all(&dir).unwrap();
    let file = File::create_new(dir.join("2")).unwrap();
    let mut v1 =
        MutableContainer::create_version(file, MutableVersion::V1, [3; 20], &[1; 32]).unwrap();
    v1.write_data(0, b"old data").unwrap();
    drop(v1);
    assert_eq!(fx.store.list_mutable(&si(1)).unwrap(), shares(&[2]));
    assert_eq!(data_of(&fx, 2), b"old data");
    let req = request(
        vec![(2, vectors(vec![test(0, 3, b"old")], &[(0, b"new")], None))],
        &[(0, 8)],
    );
    let response = rtw(&fx, 1, 5, &req).unwrap();
    assert_eq!(
        response,
        ReadTestWriteResponse {
            success: true,
            data: reads(&[(2, &[b"old data"])])
        }
    );
    assert_eq!(data_of(&fx, 2), b"new data");
    let container = container_of(&fx, 2);
    assert_eq!(
        container.header().version,
        MutableVersion::V1,
        "kept at version 1"
    );
    assert_eq!(container.header().nodeid, [3; 20], "creator kept");
    let leases = leases_of(&fx, 2);
    assert_eq!(leases[0].renew, [5; 32], "v1 leases in cleartext");
}

#[test]
fn files_of_other_kinds_are_skipped_unless_named() {
    let fx = Fixture::new();
    put(&fx, 0, 0, b"mutable");
    let dir = fx.store.layout.share_dir(&si(1));
    fs::write(dir.join("1"), b"garbage").unwrap();
    fs::write(
        dir.join("2"),
        MutableHeader::new(MutableVersion::V2, NODEID, &[9; 32]).to_bytes(),
    )
    .unwrap();
    fs::write(dir.join("0.new"), b"stale scratch").unwrap();
    assert_eq!(fx.store.list_mutable(&si(1)).unwrap(), shares(&[0]));
    let response = rtw(&fx, 1, 1, &request(vec![], &[(0, 3)])).unwrap();
    assert_eq!(response.data, reads(&[(0, &[b"mut"])]));
    for n in [1, 2] {
        let named = request(vec![(n, vectors(vec![], &[(0, b"x")], None))], &[]);
        assert!(
            matches!(
                rtw(&fx, 1, 1, &named),
                Err(StorageError::WrongContainer { .. })
            ),
            "{n}"
        );
        let opened = fx.store.open_mutable(&si(1), ShareNumber(n));
        assert!(matches!(
            opened,
            Err(StorageError::WrongContainer {
                expected: "mutable",
                ..
            })
        ));
    }
    assert_eq!(fs::read(dir.join("1")).unwrap(), b"garbage");
    put(&fx, 0, 0, b"MUTABLE");
    assert_eq!(data_of(&fx, 0), b"MUTABLE");
    assert!(
        !dir.join("0.new").exists(),
        "the scratch file was reused and renamed"
    );
}

#[test]
fn immutable_shares_in_the_slot_are_neither_listed_nor_opened_as_mutable() {
    let fx = Fixture::new();
    fx.upload_share(&si(1), 0, b"imm");
    assert!(fx.store.list_mutable(&si(1)).unwrap().is_empty());
    assert!(matches!(
        fx.store.open_mutable(&si(1), ShareNumber(0)),
        Err(StorageError::WrongContainer { .. })
    ));
    assert!(matches!(
        fx.store.open_mutable(&si(1), ShareNumber(1)),
        Err(StorageError::ShareNotFound)
    ));
    assert!(
        fx.store.list_mutable(&si(9)).unwrap().is_empty(),
        "unknown SI"
    );
}

#[test]
fn open_mutable_positions_at_the_data() {
    let fx = Fixture::new();
    put(&fx, 0, 0, b"payload");
    let reader = fx.store.open_mutable(&si(1), ShareNumber(0)).unwrap();
    assert_eq!((reader.data_offset, reader.len), (468, 7));
}

#[test]
fn concurrent_create_if_new_has_one_winner() {
    let fx = Fixture::new();
    let store = &fx.store;
    let wins: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4u8)
            .map(|n| {
                scope.spawn(move || {
                    let req = request(
                        vec![(
                            0,
                            vectors(vec![test(0, 1, b"")], &[(0, &[n; 100][..])], None),
                        )],
                        &[],
                    );
                    store
                        .read_test_write(
                            &si(1),
                            &write_enabler(1),
                            &lease(n),
                            &req,
                            LeaseRenewal::Implicit,
                        )
                        .unwrap()
                        .success
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum()
    });
    assert_eq!(wins, 1);
    let data = data_of(&fx, 0);
    assert_eq!(data.len(), 100);
    assert!(data.iter().all(|b| *b == data[0]), "no interleaved writes");
}

#[test]
fn advisory_for_mutable_share() {
    let fx = Fixture::new();
    put(&fx, 0, 0, b"x");
    fx.store
        .advise_corrupt(ShareKind::Mutable, &si(1), ShareNumber(0), "bad sig")
        .unwrap();
    let report = fs::read_dir(fx.store.layout.advisories_dir())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(fs::read_to_string(report)
        .unwrap()
        .starts_with("report: Share Corruption\ntype: mutable\n"));
}
