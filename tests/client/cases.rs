//! Every client operation and its error cases, against stock Tahoe and against `gbs`.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use gbs::client::{Client, ClientBuilder, ClientError, ImmutableUpload};
use gbs::protocol::{
    LeaseCancelSecret, LeaseRenewSecret, LeaseSecrets, Nurl, ReadRange, ReadTestWriteRequest,
    ReadVector, ShareKind, ShareNumber, SpkiHash, StorageIndex, Swissnum, TestVector,
    TestWriteVectors, UploadSecret, WriteEnabler, WriteVector,
};

against_both!(run_async:
    version_reports_the_server_and_its_space,
    a_share_uploaded_in_chunks_reads_back_whole_and_in_ranges,
    a_multi_mebibyte_share_streams_both_ways,
    allocating_again_reports_completed_shares,
    an_interrupted_upload_resumes_from_the_required_ranges,
    differing_bytes_conflict_and_abort_frees_the_share,
    another_upload_secret_is_unauthorized,
    abort_refuses_completed_and_unknown_uploads,
    input_of_the_wrong_length_never_completes_a_share,
    missing_shares_are_not_found_and_unknown_indexes_list_empty,
    leases_are_renewed_on_held_shares_only,
    corruption_reports_are_accepted_for_held_shares_only,
    mutable_shares_are_written_tested_and_read,
    a_wrong_write_enabler_is_unauthorized,
    a_wrong_swissnum_is_unauthorized,
    a_pin_mismatch_is_refused_before_any_request,
);

const SI: StorageIndex = StorageIndex::from_bytes([0x42; 16]);
const SH0: ShareNumber = ShareNumber(0);

fn client(nurl: &Nurl) -> Client {
    ClientBuilder::new(nurl.clone()).build().expect("client")
}

/// A client sending 1000-byte chunks, three at a time, so that small shares take many.
fn small_chunk_client(nurl: &Nurl) -> Client {
    ClientBuilder::new(nurl.clone())
        .upload_chunk_size(1000)
        .uploads_in_flight(3)
        .build()
        .expect("client")
}

fn lease(n: u8) -> LeaseSecrets {
    LeaseSecrets {
        renew: LeaseRenewSecret::new([n; 32]),
        cancel: LeaseCancelSecret::new([n ^ 0xff; 32]),
    }
}

fn upload_secret(n: u8) -> UploadSecret {
    UploadSecret::new(vec![n; 32]).expect("non-empty")
}

fn write_enabler(n: u8) -> WriteEnabler {
    WriteEnabler::new(vec![n; 32]).expect("non-empty")
}

/// Deterministic test data that differs for each `seed`.
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn shares(numbers: &[u16]) -> BTreeSet<ShareNumber> {
    numbers.iter().copied().map(ShareNumber).collect()
}

async fn read(
    client: &Client,
    kind: ShareKind,
    si: &StorageIndex,
    shnum: ShareNumber,
    range: Option<(u64, u64)>,
) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    let range = range.map(|(offset, len)| ReadRange::new(offset, len).expect("non-empty range"));
    let written = client.read_share(kind, si, shnum, range, &mut out).await?;
    assert_eq!(written, out.len() as u64);
    Ok(out)
}

/// Allocates and uploads one complete immutable share.
async fn store(client: &Client, si: StorageIndex, shnum: ShareNumber, content: &[u8]) {
    let upload = client
        .allocate(
            si,
            BTreeSet::from([shnum]),
            content.len() as u64,
            &lease(1),
            upload_secret(1),
        )
        .await
        .expect("allocate");
    assert!(upload.allocated().contains(&shnum));
    upload.upload_share(shnum, content).await.expect("upload");
}

async fn version_reports_the_server_and_its_space(nurl: Nurl) {
    let info = client(&nurl).version().await.expect("version");
    assert!(!info.application_version.is_empty());
    assert_eq!(info.maximum_mutable_share_size, 69_105_000_000_000_000);
    assert!(info.available_space > 0);
}

async fn a_share_uploaded_in_chunks_reads_back_whole_and_in_ranges(nurl: Nurl) {
    let client = small_chunk_client(&nurl);
    let content = data(10_000, 1);
    let upload = client
        .allocate(SI, shares(&[0, 1]), 10_000, &lease(1), upload_secret(1))
        .await
        .expect("allocate");
    assert_eq!(upload.allocated(), &shares(&[0, 1]));
    assert!(upload.already_have().is_empty());
    let mut seen = Vec::new();
    let report = upload
        .upload_share_with_progress(SH0, &content[..], |done| seen.push(done))
        .await
        .expect("upload");
    assert_eq!((report.bytes_sent, report.bytes_skipped), (10_000, 0));
    assert_eq!(seen.last(), Some(&10_000));
    assert!(seen.windows(2).all(|pair| pair[0] <= pair[1]), "{seen:?}");
    // Share 1 is allocated but incomplete, so it is not listed.
    assert_eq!(
        client
            .list_shares(ShareKind::Immutable, &SI)
            .await
            .expect("list"),
        shares(&[0])
    );
    assert_eq!(
        read(&client, ShareKind::Immutable, &SI, SH0, None)
            .await
            .expect("whole"),
        content
    );
    assert_eq!(
        read(&client, ShareKind::Immutable, &SI, SH0, Some((100, 100)))
            .await
            .expect("range"),
        &content[100..200]
    );
    // A range running past the end is cut short; one starting at the end is empty.
    assert_eq!(
        read(&client, ShareKind::Immutable, &SI, SH0, Some((9_990, 100)))
            .await
            .expect("tail"),
        &content[9_990..]
    );
    assert!(
        read(&client, ShareKind::Immutable, &SI, SH0, Some((10_000, 10)))
            .await
            .expect("past end")
            .is_empty()
    );
}

async fn a_multi_mebibyte_share_streams_both_ways(nurl: Nurl) {
    let client = client(&nurl);
    let content = data(3 * 1024 * 1024 + 17, 2);
    store(&client, SI, ShareNumber(5), &content).await;
    let back = read(&client, ShareKind::Immutable, &SI, ShareNumber(5), None)
        .await
        .expect("read");
    assert!(back == content, "the share read back differs");
}

async fn allocating_again_reports_completed_shares(nurl: Nurl) {
    let client = client(&nurl);
    store(&client, SI, SH0, b"twelve bytes").await;
    let again = client
        .allocate(SI, shares(&[0, 2]), 12, &lease(2), upload_secret(2))
        .await
        .expect("allocate");
    assert_eq!(again.already_have(), &shares(&[0]));
    assert_eq!(again.allocated(), &shares(&[2]));
}

async fn an_interrupted_upload_resumes_from_the_required_ranges(nurl: Nurl) {
    let client = small_chunk_client(&nurl);
    let content = data(5_000, 3);
    let first = client
        .allocate(SI, shares(&[0]), 5_000, &lease(1), upload_secret(7))
        .await
        .expect("allocate");
    // An earlier run wrote two chunks, then stopped.
    for range in [1_000..2_000, 3_000..4_000] {
        let piece = Bytes::copy_from_slice(&content[range.start..range.end]);
        let written = first
            .write_chunk(SH0, range.start as u64, piece)
            .await
            .expect("chunk");
        assert!(!written.complete);
    }
    let resumed = ImmutableUpload::resume(&client, SI, 5_000, upload_secret(7));
    let report = resumed
        .upload_share(SH0, &content[..])
        .await
        .expect("resume");
    assert_eq!((report.bytes_sent, report.bytes_skipped), (3_000, 2_000));
    assert_eq!(
        read(&client, ShareKind::Immutable, &SI, SH0, None)
            .await
            .expect("read"),
        content
    );
}

async fn differing_bytes_conflict_and_abort_frees_the_share(nurl: Nurl) {
    let client = client(&nurl);
    let upload = client
        .allocate(SI, shares(&[0]), 100, &lease(1), upload_secret(1))
        .await
        .expect("allocate");
    let written = upload
        .write_chunk(SH0, 0, Bytes::from_static(&[b'a'; 10]))
        .await
        .expect("chunk");
    assert_eq!(written.required, vec![10..100]);
    // The same bytes again are fine; different ones are not.
    upload
        .write_chunk(SH0, 0, Bytes::from_static(&[b'a'; 10]))
        .await
        .expect("same bytes");
    let error = upload
        .write_chunk(SH0, 5, Bytes::from_static(&[b'b'; 10]))
        .await
        .expect_err("conflict");
    assert!(matches!(error, ClientError::Conflict), "{error:?}");
    upload.abort(SH0).await.expect("abort");
    let again = client
        .allocate(SI, shares(&[0]), 100, &lease(1), upload_secret(2))
        .await
        .expect("allocate");
    assert_eq!(again.allocated(), &shares(&[0]));
}

async fn another_upload_secret_is_unauthorized(nurl: Nurl) {
    let client = client(&nurl);
    client
        .allocate(SI, shares(&[0]), 100, &lease(1), upload_secret(1))
        .await
        .expect("allocate");
    let intruder = ImmutableUpload::resume(&client, SI, 100, upload_secret(2));
    let error = intruder
        .write_chunk(SH0, 0, Bytes::from_static(b"x"))
        .await
        .expect_err("wrong secret");
    assert!(matches!(error, ClientError::Unauthorized), "{error:?}");
    let error = intruder.abort(SH0).await.expect_err("wrong secret");
    assert!(matches!(error, ClientError::Unauthorized), "{error:?}");
    // A share being uploaded is offered to nobody else.
    let other = client
        .allocate(SI, shares(&[0]), 100, &lease(2), upload_secret(2))
        .await
        .expect("allocate");
    assert!(other.allocated().is_empty() && other.already_have().is_empty());
}

async fn abort_refuses_completed_and_unknown_uploads(nurl: Nurl) {
    let client = client(&nurl);
    store(&client, SI, SH0, b"done").await;
    let handle = ImmutableUpload::resume(&client, SI, 4, upload_secret(1));
    let error = handle.abort(SH0).await.expect_err("completed");
    assert!(matches!(error, ClientError::NotAllowed), "{error:?}");
    let error = handle.abort(ShareNumber(9)).await.expect_err("unknown");
    assert!(matches!(error, ClientError::NotFound), "{error:?}");
    let error = handle
        .write_chunk(SH0, 0, Bytes::from_static(b"d"))
        .await
        .expect_err("completed");
    assert!(matches!(error, ClientError::NotFound), "{error:?}");
}

async fn input_of_the_wrong_length_never_completes_a_share(nurl: Nurl) {
    let client = ClientBuilder::new(nurl)
        .upload_chunk_size(400)
        .build()
        .expect("client");
    let upload = client
        .allocate(SI, shares(&[0, 1]), 1_000, &lease(1), upload_secret(1))
        .await
        .expect("allocate");
    let error = upload
        .upload_share(SH0, &data(600, 1)[..])
        .await
        .expect_err("short input");
    assert!(
        matches!(
            error,
            ClientError::InputTooShort {
                expected: 1_000,
                actual: 600
            }
        ),
        "{error:?}"
    );
    let error = upload
        .upload_share(ShareNumber(1), &data(1_500, 1)[..])
        .await
        .expect_err("long input");
    assert!(
        matches!(error, ClientError::InputTooLong { expected: 1_000 }),
        "{error:?}"
    );
    assert!(client
        .list_shares(ShareKind::Immutable, &SI)
        .await
        .expect("list")
        .is_empty());
    let error = upload
        .upload_share(ShareNumber(1), tokio::io::empty())
        .await
        .expect_err("empty input");
    assert!(
        matches!(error, ClientError::InputTooShort { actual: 0, .. }),
        "{error:?}"
    );
}

async fn missing_shares_are_not_found_and_unknown_indexes_list_empty(nurl: Nurl) {
    let client = client(&nurl);
    for kind in [ShareKind::Immutable, ShareKind::Mutable] {
        let error = read(&client, kind, &SI, SH0, Some((0, 10)))
            .await
            .expect_err("missing");
        assert!(
            matches!(error, ClientError::NotFound),
            "{kind:?}: {error:?}"
        );
        assert!(client
            .list_shares(kind, &SI)
            .await
            .expect("list")
            .is_empty());
    }
}

async fn leases_are_renewed_on_held_shares_only(nurl: Nurl) {
    let client = client(&nurl);
    store(&client, SI, SH0, b"leased").await;
    client
        .add_or_renew_lease(&SI, &lease(1))
        .await
        .expect("renew");
    client
        .add_or_renew_lease(&SI, &lease(9))
        .await
        .expect("add");
    let unknown = StorageIndex::from_bytes([0x43; 16]);
    let error = client
        .add_or_renew_lease(&unknown, &lease(1))
        .await
        .expect_err("no shares");
    assert!(matches!(error, ClientError::NotFound), "{error:?}");
}

async fn corruption_reports_are_accepted_for_held_shares_only(nurl: Nurl) {
    let client = client(&nurl);
    store(&client, SI, SH0, b"suspicious").await;
    client
        .advise_corrupt(ShareKind::Immutable, &SI, SH0, "bad hash")
        .await
        .expect("report");
    let error = client
        .advise_corrupt(ShareKind::Immutable, &SI, ShareNumber(3), "bad hash")
        .await
        .expect_err("missing");
    assert!(matches!(error, ClientError::NotFound), "{error:?}");
    let slot = StorageIndex::from_bytes([0x44; 16]);
    write_mutable(&client, &slot, b"mutable").await;
    client
        .advise_corrupt(ShareKind::Mutable, &slot, SH0, "bad signature")
        .await
        .expect("report");
}

async fn write_mutable(client: &Client, si: &StorageIndex, content: &[u8]) {
    let vectors = TestWriteVectors {
        write: vec![WriteVector {
            offset: 0,
            data: content.to_vec(),
        }],
        ..Default::default()
    };
    let request = ReadTestWriteRequest {
        test_write_vectors: BTreeMap::from([(SH0, vectors)]),
        read_vector: Vec::new(),
    };
    let answer = client
        .read_test_write(si, &write_enabler(1), &lease(1), &request)
        .await
        .expect("write");
    assert!(answer.success);
}

async fn mutable_shares_are_written_tested_and_read(nurl: Nurl) {
    let client = client(&nurl);
    // Create shares 0 and 1 only if the slot is empty: the stock client's idiom.
    let if_new = |content: &[u8]| TestWriteVectors {
        test: vec![TestVector {
            offset: 0,
            size: 1,
            specimen: Vec::new(),
        }],
        write: vec![WriteVector {
            offset: 0,
            data: content.to_vec(),
        }],
        new_length: None,
    };
    let create = ReadTestWriteRequest {
        test_write_vectors: BTreeMap::from([
            (SH0, if_new(b"hello world")),
            (ShareNumber(1), if_new(b"second")),
        ]),
        read_vector: vec![ReadVector { offset: 0, size: 5 }],
    };
    let answer = client
        .read_test_write(&SI, &write_enabler(1), &lease(1), &create)
        .await
        .expect("create");
    assert!(answer.success);
    assert!(
        answer.data.is_empty(),
        "nothing existed before: {:?}",
        answer.data
    );
    assert_eq!(
        client
            .list_shares(ShareKind::Mutable, &SI)
            .await
            .expect("list"),
        shares(&[0, 1])
    );
    assert_eq!(
        read(&client, ShareKind::Mutable, &SI, SH0, None)
            .await
            .expect("whole"),
        b"hello world"
    );
    assert_eq!(
        read(&client, ShareKind::Mutable, &SI, SH0, Some((6, 100)))
            .await
            .expect("range"),
        b"world"
    );

    // Running it again fails the tests, writes nothing, and still returns the reads.
    let again = client
        .read_test_write(&SI, &write_enabler(1), &lease(1), &create)
        .await
        .expect("retry");
    assert!(!again.success);
    assert_eq!(again.data.get(&SH0), Some(&vec![b"hello".to_vec()]));
    assert_eq!(
        again.data.get(&ShareNumber(1)),
        Some(&vec![b"secon".to_vec()])
    );
    assert_eq!(
        read(&client, ShareKind::Mutable, &SI, SH0, None)
            .await
            .expect("unchanged"),
        b"hello world"
    );

    // A write past the end fills the gap with zeros; new-length 0 deletes.
    let vectors = TestWriteVectors {
        write: vec![WriteVector {
            offset: 13,
            data: b"!".to_vec(),
        }],
        ..Default::default()
    };
    let extend = ReadTestWriteRequest {
        test_write_vectors: BTreeMap::from([(SH0, vectors)]),
        read_vector: Vec::new(),
    };
    assert!(
        client
            .read_test_write(&SI, &write_enabler(1), &lease(1), &extend)
            .await
            .expect("extend")
            .success
    );
    assert_eq!(
        read(&client, ShareKind::Mutable, &SI, SH0, None)
            .await
            .expect("extended"),
        b"hello world\0\0!"
    );
    let delete = ReadTestWriteRequest {
        test_write_vectors: BTreeMap::from([(
            ShareNumber(1),
            TestWriteVectors {
                new_length: Some(0),
                ..Default::default()
            },
        )]),
        read_vector: Vec::new(),
    };
    assert!(
        client
            .read_test_write(&SI, &write_enabler(1), &lease(1), &delete)
            .await
            .expect("delete")
            .success
    );
    assert_eq!(
        client
            .list_shares(ShareKind::Mutable, &SI)
            .await
            .expect("list"),
        shares(&[0])
    );
}

async fn a_wrong_write_enabler_is_unauthorized(nurl: Nurl) {
    let client = client(&nurl);
    write_mutable(&client, &SI, b"guarded").await;
    let request = ReadTestWriteRequest {
        read_vector: vec![ReadVector { offset: 0, size: 7 }],
        ..Default::default()
    };
    let error = client
        .read_test_write(&SI, &write_enabler(2), &lease(1), &request)
        .await
        .expect_err("wrong enabler");
    assert!(matches!(error, ClientError::Unauthorized), "{error:?}");
}

async fn a_wrong_swissnum_is_unauthorized(nurl: Nurl) {
    let wrong = Nurl {
        swissnum: Swissnum::new("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        ..nurl
    };
    let client = client(&wrong);
    let error = client.version().await.expect_err("wrong swissnum");
    assert!(matches!(error, ClientError::Unauthorized), "{error:?}");
    // Reads check Content-Type first, but a 401 stays a 401.
    let error = read(&client, ShareKind::Immutable, &SI, SH0, Some((0, 1)))
        .await
        .expect_err("wrong swissnum");
    assert!(matches!(error, ClientError::Unauthorized), "{error:?}");
}

async fn a_pin_mismatch_is_refused_before_any_request(nurl: Nurl) {
    let other = SpkiHash::of_spki_der(b"a key the server does not hold");
    let impostor = client(&Nurl {
        spki_hash: other,
        ..nurl.clone()
    });
    let error = impostor
        .allocate(SI, shares(&[0]), 10, &lease(1), upload_secret(1))
        .await
        .expect_err("wrong pin");
    match error {
        ClientError::PinMismatch {
            expected,
            presented,
        } => {
            assert_eq!(expected, other);
            assert_eq!(presented, nurl.spki_hash);
        }
        other => panic!("expected a pin mismatch, got {other:?}"),
    }
    // Had the allocate reached the server, share 0 would now be in progress and not offered.
    let real = client(&nurl)
        .allocate(SI, shares(&[0]), 10, &lease(1), upload_secret(1))
        .await
        .expect("allocate");
    assert_eq!(real.allocated(), &shares(&[0]));
}
