//! Damaged share files and a full disk: a damaged share answers a clear error of its own
//! while every other share is served, and a write the disk cannot hold fails with 507,
//! leaving nothing partial behind and everything earlier intact.
//!
//! Shares live in `<node>/storage/shares/<prefix>/<si>/<shnum>`; the tests damage them
//! there behind the node's back. The full-disk tests mount a small tmpfs (as
//! `disk_space.rs` does: they fail when mounting fails, unless `GBS_SKIP_MOUNT_TESTS=1`
//! says to skip them) and fill it with a file of their own.
//!
//! The node measures free space at most once a second. Filled right after a measurement,
//! the disk is full while the node still believes it has room, so the write reaches the
//! filesystem and meets `ENOSPC` itself; filled otherwise, the node refuses from its own
//! measurement. Both paths are exercised.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gbs::client::{Client, ClientError, Forward};
use gbs::protocol::{
    paths, LeaseCancelSecret, LeaseRenewSecret, LeaseSecrets, ReadTestWriteRequest, ReadVector,
    ShareKind, ShareNumber, StorageIndex, TestWriteVectors, WriteEnabler, WriteVector,
};
use gbs_tests::{files_under, test_lease, test_upload_secret, GbsNode};
use reqwest::header::HeaderValue;
use reqwest::Method;

use crate::disk_space::{node_on, Tmpfs};

/// No request here may take longer: a damaged file must not hang a read.
const PATIENCE: Duration = Duration::from_secs(30);

fn si(n: u8) -> StorageIndex {
    StorageIndex::from_bytes([n; 16])
}

/// `<node>/storage/shares/<prefix>/<si>/<shnum>`.
fn share_path(node: &GbsNode, si: &StorageIndex, shnum: u16) -> PathBuf {
    node.dir()
        .join("storage/shares")
        .join(si.shard_prefix())
        .join(si.to_string())
        .join(shnum.to_string())
}

/// `len` bytes that differ for each `seed`.
fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 * 131 + u64::from(seed) * 7 + (i as u64 >> 8)) as u8)
        .collect()
}

fn lease(n: u8) -> LeaseSecrets {
    LeaseSecrets {
        renew: LeaseRenewSecret::new([n; 32]),
        cancel: LeaseCancelSecret::new([n ^ 0xff; 32]),
    }
}

fn enabler() -> WriteEnabler {
    WriteEnabler::new(vec![3; 32]).expect("write enabler")
}

/// Allocates share `shnum` of `si` and uploads `data` into it.
async fn upload(client: &Client, si: StorageIndex, shnum: u16, data: &[u8]) {
    let upload = client
        .allocate(
            si,
            [ShareNumber(shnum)].into(),
            data.len() as u64,
            &test_lease(),
            test_upload_secret(),
        )
        .await
        .expect("allocate");
    assert_eq!(upload.allocated(), &[ShareNumber(shnum)].into());
    upload
        .upload_share(ShareNumber(shnum), data)
        .await
        .expect("upload");
}

async fn read(
    client: &Client,
    kind: ShareKind,
    si: &StorageIndex,
    shnum: u16,
) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    tokio::time::timeout(
        PATIENCE,
        client.read_share(kind, si, ShareNumber(shnum), None, &mut out),
    )
    .await
    .expect("a read answers")
    .map(|_| out)
}

/// The status and body of a plain GET of a share, before the client interprets them.
async fn get(client: &Client, kind: ShareKind, si: &StorageIndex, shnum: u16) -> (u16, String) {
    let path = match kind {
        ShareKind::Immutable => paths::immutable_share(si, ShareNumber(shnum)),
        ShareKind::Mutable => paths::mutable_share(si, ShareNumber(shnum)),
    };
    let forward = Forward {
        method: Method::GET,
        path,
        accept: Some(HeaderValue::from_static("application/octet-stream")),
        secrets: Vec::new(),
        headers: Vec::new(),
        body: None,
    };
    let exchange = async {
        let mut answer = client.forward(forward, None).await.expect("GET");
        let body = answer.bytes(1 << 20).await.expect("body");
        (
            answer.status().as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
        )
    };
    tokio::time::timeout(PATIENCE, exchange)
        .await
        .expect("a GET answers")
}

async fn list(client: &Client, kind: ShareKind, si: &StorageIndex) -> Vec<u16> {
    tokio::time::timeout(PATIENCE, client.list_shares(kind, si))
        .await
        .expect("a listing answers")
        .expect("list")
        .into_iter()
        .map(|n| n.0)
        .collect()
}

/// Read-test-write of whole-share `writes` (share number, offset, data) with no tests;
/// answers the reads of `read` from every share and whether the writes were applied.
async fn write_mutable(
    client: &Client,
    si: &StorageIndex,
    writes: &[(u16, u64, Vec<u8>)],
    read: Option<ReadVector>,
    with: &LeaseSecrets,
) -> Result<(bool, Vec<u16>), ClientError> {
    let mut request = ReadTestWriteRequest::default();
    for (shnum, offset, data) in writes {
        request
            .test_write_vectors
            .entry(ShareNumber(*shnum))
            .or_insert_with(TestWriteVectors::default)
            .write
            .push(WriteVector {
                offset: *offset,
                data: data.clone(),
            });
    }
    request.read_vector.extend(read);
    let response = tokio::time::timeout(
        PATIENCE,
        client.read_test_write(si, &enabler(), with, &request),
    )
    .await
    .expect("a read-test-write answers")?;
    Ok((
        response.success,
        response.data.keys().map(|n| n.0).collect(),
    ))
}

fn assert_no_space(result: Result<impl std::fmt::Debug, ClientError>, what: &str) {
    match result {
        Err(ClientError::UnexpectedStatus {
            status: 507,
            message,
        }) => {
            assert_eq!(message, "not enough disk space", "{what}");
        }
        other => panic!("{what}: expected 507 not enough disk space, got {other:?}"),
    }
}

/// Asserts the node is still running and answering.
async fn assert_serving(node: &mut GbsNode, client: &Client) {
    assert!(node.has_exited().is_none(), "the node died");
    client.version().await.expect("version");
}

/// Immutable share files truncated, overwritten, emptied or replaced by a directory or a
/// FIFO: each answers a clear error for itself (409 naming an invalid share, or 404 for
/// what is no file at all), never hangs, is left out of the listing, and the intact shares
/// of the same and other storage indexes are served, leased and listed. A share cut short
/// inside its data is still a valid container (the format records no data length), so it
/// is served shorter: its first bytes, never bytes from elsewhere. The node starts again
/// on the damaged directory and answers the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_immutable_shares_answer_clearly_and_the_rest_are_served() {
    let mut node = GbsNode::start();
    let client = node.client();
    const SIZE: usize = 40_000;
    for shnum in 0..=6 {
        upload(&client, si(1), shnum, &data(shnum as u8, SIZE)).await;
    }
    upload(&client, si(2), 0, &data(20, SIZE)).await;
    assert_eq!(
        list(&client, ShareKind::Immutable, &si(1)).await,
        [0, 1, 2, 3, 4, 5, 6]
    );

    let path = |shnum| share_path(&node, &si(1), shnum);
    // 0: cut inside the header and lease; 1: a garbage header; 2: a directory;
    // 3: a FIFO, which would block an open for reading; 4: cut inside the data; 5: empty.
    OpenOptions::new()
        .write(true)
        .open(path(0))
        .expect("share 0")
        .set_len(40)
        .expect("truncate");
    let mut garbage = OpenOptions::new()
        .write(true)
        .open(path(1))
        .expect("share 1");
    garbage.write_all(&[0xff; 12]).expect("garbage header");
    drop(garbage);
    fs::remove_file(path(2)).expect("remove share 2");
    fs::create_dir(path(2)).expect("a directory in its place");
    fs::remove_file(path(3)).expect("remove share 3");
    let made = std::process::Command::new("mkfifo")
        .arg(path(3))
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let cut = fs::metadata(path(4)).expect("share 4").len() - 1000;
    OpenOptions::new()
        .write(true)
        .open(path(4))
        .expect("share 4")
        .set_len(cut)
        .expect("truncate");
    File::create(path(5)).expect("empty share 5");
    let damaged_header = fs::read(path(1)).expect("share 1");

    let check = |client: Client, listed: &'static [u16]| async move {
        for shnum in [0, 1, 5] {
            assert_eq!(
                get(&client, ShareKind::Immutable, &si(1), shnum).await,
                (409, "share is not a valid immutable share".to_owned()),
                "share {shnum}"
            );
            assert!(matches!(
                read(&client, ShareKind::Immutable, &si(1), shnum).await,
                Err(ClientError::Conflict)
            ));
        }
        for shnum in [2, 3] {
            assert_eq!(
                get(&client, ShareKind::Immutable, &si(1), shnum).await,
                (404, "no such share".to_owned()),
                "share {shnum}"
            );
        }
        let short = read(&client, ShareKind::Immutable, &si(1), 4)
            .await
            .expect("share 4");
        assert_eq!(
            short,
            data(4, SIZE)[..SIZE - 1000],
            "the share cut inside its data"
        );
        assert_eq!(
            read(&client, ShareKind::Immutable, &si(1), 6)
                .await
                .expect("share 6"),
            data(6, SIZE)
        );
        assert_eq!(
            read(&client, ShareKind::Immutable, &si(2), 0)
                .await
                .expect("other si"),
            data(20, SIZE)
        );
        assert_eq!(list(&client, ShareKind::Immutable, &si(1)).await, listed);
        assert_eq!(
            list(&client, ShareKind::Mutable, &si(1)).await,
            [] as [u16; 0]
        );
    };
    check(client.clone(), &[4, 6]).await;

    // Leasing skips what is not a share; corruption can be reported for a damaged file.
    client
        .add_or_renew_lease(&si(1), &lease(9))
        .await
        .expect("lease");
    assert_eq!(
        fs::read(path(1)).expect("share 1"),
        damaged_header,
        "left alone"
    );
    client
        .advise_corrupt(ShareKind::Immutable, &si(1), ShareNumber(1), "bad header")
        .await
        .expect("corruption report");
    // Allocating reports the intact shares and offers only the free share numbers: a
    // damaged file, a directory or a FIFO blocks its number.
    let upload = client
        .allocate(
            si(1),
            (0..=7).map(ShareNumber).collect(),
            1000,
            &test_lease(),
            test_upload_secret(),
        )
        .await
        .expect("allocate beside damaged shares");
    assert_eq!(
        upload.already_have(),
        &[ShareNumber(4), ShareNumber(6)].into()
    );
    assert_eq!(upload.allocated(), &[ShareNumber(7)].into());
    upload
        .upload_share(ShareNumber(7), &data(7, 1000)[..])
        .await
        .expect("upload beside damaged shares");
    assert_eq!(
        read(&client, ShareKind::Immutable, &si(1), 7)
            .await
            .expect("share 7"),
        data(7, 1000)
    );
    assert_serving(&mut node, &client).await;
    check(client, &[4, 6, 7]).await;

    // A restart on the damaged directory is clean, and changes no answer.
    let (status, dir) = node.stop();
    assert!(status.success(), "gbs run exited with {status}");
    let mut node = GbsNode::start_in(dir);
    let client = node.client();
    check(client.clone(), &[4, 6, 7]).await;
    assert_serving(&mut node, &client).await;
}

/// Mutable share containers with a garbage magic, a data length past the end of the file,
/// or cut short: each read answers 409 naming an invalid mutable share, the listing holds
/// only the intact share, and the slot goes on working: the intact share is read, written
/// and leased, reads of a read-test-write come from it alone, a write naming a damaged
/// share is refused (409) with nothing written, and the write enabler is still enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_mutable_shares_answer_clearly_and_the_slot_keeps_working() {
    let mut node = GbsNode::start();
    let client = node.client();
    let slot = si(10);
    let writes: Vec<_> = (0..4u16)
        .map(|n| (n, 0, data(n as u8 + 30, 20_000)))
        .collect();
    assert!(
        write_mutable(&client, &slot, &writes, None, &test_lease())
            .await
            .expect("create")
            .0
    );
    let path = |shnum| share_path(&node, &slot, shnum);
    let mut magic = OpenOptions::new()
        .write(true)
        .open(path(0))
        .expect("share 0");
    magic
        .write_all(b"Tahoe mutable container v9\n\0\0\0\0\0")
        .expect("garbage magic");
    drop(magic);
    let length = OpenOptions::new()
        .write(true)
        .open(path(1))
        .expect("share 1");
    std::os::unix::fs::FileExt::write_all_at(&length, &u64::MAX.to_be_bytes(), 84)
        .expect("data length");
    drop(length);
    OpenOptions::new()
        .write(true)
        .open(path(2))
        .expect("share 2")
        .set_len(200)
        .expect("cut");
    let before: Vec<_> = (0..3)
        .map(|n| fs::read(path(n)).expect("damaged share"))
        .collect();

    for shnum in 0..3 {
        assert_eq!(
            get(&client, ShareKind::Mutable, &slot, shnum).await,
            (409, "share is not a valid mutable share".to_owned()),
            "share {shnum}"
        );
    }
    assert_eq!(list(&client, ShareKind::Mutable, &slot).await, [3]);
    assert_eq!(
        list(&client, ShareKind::Immutable, &slot).await,
        [] as [u16; 0]
    );
    assert_eq!(
        read(&client, ShareKind::Mutable, &slot, 3)
            .await
            .expect("share 3"),
        data(33, 20_000)
    );

    let whole = ReadVector {
        offset: 0,
        size: 10,
    };
    let (applied, read_from) = write_mutable(
        &client,
        &slot,
        &[(3, 0, b"rewritten".to_vec())],
        Some(whole),
        &lease(5),
    )
    .await
    .expect("write the intact share");
    assert!(applied);
    assert_eq!(read_from, [3], "reads come from valid shares only");
    let mut expected = data(33, 20_000);
    expected[..9].copy_from_slice(b"rewritten");
    assert_eq!(
        read(&client, ShareKind::Mutable, &slot, 3)
            .await
            .expect("share 3"),
        expected
    );

    let refused = write_mutable(
        &client,
        &slot,
        &[(0, 0, b"x".to_vec()), (3, 0, b"y".to_vec())],
        None,
        &test_lease(),
    )
    .await;
    assert!(matches!(refused, Err(ClientError::Conflict)), "{refused:?}");
    assert_eq!(
        read(&client, ShareKind::Mutable, &slot, 3)
            .await
            .expect("share 3"),
        expected,
        "nothing written by a refused request"
    );
    let other = WriteEnabler::new(vec![4; 32]).expect("write enabler");
    let request = ReadTestWriteRequest::write(ShareNumber(3), 0, b"z".to_vec());
    assert!(matches!(
        client
            .read_test_write(&slot, &other, &test_lease(), &request)
            .await,
        Err(ClientError::Unauthorized)
    ));
    client
        .add_or_renew_lease(&slot, &lease(6))
        .await
        .expect("lease the slot");
    for (n, before) in before.iter().enumerate() {
        assert_eq!(
            &fs::read(path(n as u16)).expect("damaged share"),
            before,
            "share {n} untouched"
        );
    }
    assert_eq!(
        read(&client, ShareKind::Mutable, &slot, 3)
            .await
            .expect("share 3"),
        expected
    );
    assert_serving(&mut node, &client).await;
}

/// A share file that fails while it is being read: a large share (streamed in pieces) is
/// cut to its header as soon as the first bytes arrive, so the node's next reads of it
/// fail. The client gets an error for that read, not a hang and not a full-length body of
/// wrong bytes; the next read of the share answers 409, and everything else is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_that_fails_mid_read_ends_that_read_only() {
    let mut node = GbsNode::start();
    let client = node.client();
    const BIG: usize = 32 << 20;
    let big = data(40, BIG);
    upload(&client, si(20), 0, &big).await;
    upload(&client, si(21), 0, &data(41, 5000)).await;
    let path = share_path(&node, &si(20), 0);

    /// Cuts the share file to 12 bytes on the first write it is given.
    struct Cutter {
        path: PathBuf,
        received: usize,
    }
    impl tokio::io::AsyncWrite for Cutter {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            if self.received == 0 {
                OpenOptions::new()
                    .write(true)
                    .open(&self.path)
                    .and_then(|f| f.set_len(12))
                    .expect("cut the share");
            }
            self.received += buf.len();
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }
    let mut cutter = Cutter {
        path: path.clone(),
        received: 0,
    };
    let result = tokio::time::timeout(
        PATIENCE,
        client.read_share(
            ShareKind::Immutable,
            &si(20),
            ShareNumber(0),
            None,
            &mut cutter,
        ),
    )
    .await
    .expect("the read ends");
    assert!(
        matches!(
            result,
            Err(ClientError::BodyInterrupted { .. } | ClientError::BodyTooShort { .. })
        ),
        "{result:?} after {} bytes",
        cutter.received
    );
    assert!(cutter.received < BIG, "{} bytes", cutter.received);
    assert_eq!(
        get(&client, ShareKind::Immutable, &si(20), 0).await,
        (409, "share is not a valid immutable share".to_owned())
    );
    assert_eq!(
        list(&client, ShareKind::Immutable, &si(20)).await,
        [] as [u16; 0]
    );
    assert_eq!(
        read(&client, ShareKind::Immutable, &si(21), 0)
            .await
            .expect("other share"),
        data(41, 5000)
    );
    assert_serving(&mut node, &client).await;
}

/// A file filling the rest of a tmpfs, removed by [`Filler::remove`].
struct Filler {
    path: PathBuf,
}

impl Filler {
    /// Writes until the filesystem refuses even one more page.
    fn fill(fs: &Tmpfs) -> Self {
        let path = fs.path().join("filler");
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .expect("filler");
        let big = vec![0u8; 1 << 20];
        while file.write_all(&big).is_ok() {}
        let page = vec![0u8; 4096];
        while file.write_all(&page).is_ok() {}
        assert!(fs.available() < 4096, "{} bytes still free", fs.available());
        Self { path }
    }

    /// Fills the disk right after the node measured its free space, so that for about a
    /// second it still believes it has room and a write meets the full disk itself.
    async fn fill_behind_the_gauge(fs: &Tmpfs, client: &Client) -> Self {
        // Let any earlier measurement expire, then have the node take a new one.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let measured = Instant::now();
        let room = client.version().await.expect("version").available_space;
        assert!(room > 1 << 20, "the node sees {room} bytes free");
        let filler = Self::fill(fs);
        assert!(
            measured.elapsed() < Duration::from_millis(700),
            "filling took {:?}, too long for the node's one-second measurement to hold",
            measured.elapsed()
        );
        filler
    }

    fn remove(self) {
        fs::remove_file(&self.path).expect("remove the filler");
    }
}

/// Asserts nothing is half-written on disk: no upload file in `incoming/`, no mutable
/// scratch file.
fn assert_no_leftovers(node: &GbsNode, when: &str) {
    let shares = node.dir().join("storage/shares");
    let left: Vec<_> = files_under(&shares)
        .into_iter()
        .filter(|p| {
            p.starts_with(shares.join("incoming")) || p.extension().is_some_and(|e| e == "new")
        })
        .collect();
    assert!(left.is_empty(), "{when}: left on disk: {left:?}");
}

/// Allocation on a full disk: refused from the node's own measurement (nothing allocated)
/// and, when the node still believes it has room, by the filesystem (507) with the new
/// upload file removed. Nothing is listed or readable, and once there is room the same
/// allocation and upload succeed, with the earlier share intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_before_allocation_allocates_nothing() {
    let Some(fs) = Tmpfs::mount("32m", "a_full_disk_before_allocation_allocates_nothing") else {
        return;
    };
    let mut node = node_on(&fs, "0");
    let client = node.client();
    let kept = data(1, 300_000);
    upload(&client, si(1), 0, &kept).await;
    let shares = || [ShareNumber(0), ShareNumber(1)].into();

    let filler = Filler::fill(&fs);
    let refused = client
        .allocate(
            si(2),
            shares(),
            100_000,
            &test_lease(),
            test_upload_secret(),
        )
        .await
        .expect("allocate on a full disk");
    assert!(refused.allocated().is_empty(), "{:?}", refused.allocated());
    filler.remove();

    let filler = Filler::fill_behind_the_gauge(&fs, &client).await;
    let failed = client
        .allocate(
            si(3),
            shares(),
            100_000,
            &test_lease(),
            test_upload_secret(),
        )
        .await;
    assert_no_space(
        failed.map(|u| u.allocated().clone()),
        "allocate meeting ENOSPC",
    );
    assert_no_leftovers(&node, "after a failed allocation");
    for n in [2, 3] {
        assert_eq!(
            list(&client, ShareKind::Immutable, &si(n)).await,
            [] as [u16; 0]
        );
        assert!(matches!(
            read(&client, ShareKind::Immutable, &si(n), 0).await,
            Err(ClientError::NotFound)
        ));
    }
    assert_eq!(
        read(&client, ShareKind::Immutable, &si(1), 0)
            .await
            .expect("kept"),
        kept
    );
    filler.remove();

    for n in [2, 3] {
        let upload = client
            .allocate(
                si(n),
                shares(),
                100_000,
                &test_lease(),
                test_upload_secret(),
            )
            .await
            .expect("allocate with room");
        assert_eq!(upload.allocated(), &shares());
        for shnum in [0, 1] {
            upload
                .upload_share(ShareNumber(shnum), &data(n + shnum as u8, 100_000)[..])
                .await
                .expect("upload with room");
        }
        assert_eq!(list(&client, ShareKind::Immutable, &si(n)).await, [0, 1]);
    }
    assert_eq!(
        read(&client, ShareKind::Immutable, &si(1), 0)
            .await
            .expect("kept"),
        kept
    );
    assert_serving(&mut node, &client).await;
}

/// A chunked upload whose disk fills between chunks: the chunk that does not fit is
/// refused (507) every time it is sent, the share is neither listed nor readable, and once
/// there is room the same chunk (part of which may have reached the disk) and the rest are
/// accepted and the share reads back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_during_a_chunked_upload_refuses_the_chunk_and_resumes() {
    let Some(fs) = Tmpfs::mount(
        "32m",
        "a_full_disk_during_a_chunked_upload_refuses_the_chunk_and_resumes",
    ) else {
        return;
    };
    let mut node = node_on(&fs, "0");
    let client = node.client();
    const CHUNK: usize = 256 << 10;
    let share = data(5, 8 * CHUNK);
    let chunk = |n: usize| bytes::Bytes::copy_from_slice(&share[n * CHUNK..(n + 1) * CHUNK]);
    let upload = client
        .allocate(
            si(5),
            [ShareNumber(0)].into(),
            share.len() as u64,
            &test_lease(),
            test_upload_secret(),
        )
        .await
        .expect("allocate");
    assert_eq!(upload.allocated(), &[ShareNumber(0)].into());
    for n in 0..3 {
        let written = upload
            .write_chunk(ShareNumber(0), (n * CHUNK) as u64, chunk(n))
            .await;
        assert!(!written.expect("chunk with room").complete);
    }

    let filler = Filler::fill(&fs);
    for _ in 0..2 {
        assert_no_space(
            upload
                .write_chunk(ShareNumber(0), (3 * CHUNK) as u64, chunk(3))
                .await,
            "a chunk on a full disk",
        );
    }
    assert_eq!(
        list(&client, ShareKind::Immutable, &si(5)).await,
        [] as [u16; 0]
    );
    assert!(matches!(
        read(&client, ShareKind::Immutable, &si(5), 0).await,
        Err(ClientError::NotFound)
    ));
    filler.remove();

    for n in 3..8 {
        let written = upload
            .write_chunk(ShareNumber(0), (n * CHUNK) as u64, chunk(n))
            .await
            .expect("chunk after room was made");
        assert_eq!(written.complete, n == 7, "chunk {n}");
    }
    assert_eq!(
        read(&client, ShareKind::Immutable, &si(5), 0)
            .await
            .expect("share"),
        share
    );
    assert_no_leftovers(&node, "after the upload");
    assert_serving(&mut node, &client).await;
}

/// Mutable writes on a full disk: a new slot and a growing write are refused from the
/// node's measurement; a rewrite that does not grow a small share still needs room for
/// its copy and meets ENOSPC; a growing write to a large share (changed in place) that the
/// node believed would fit meets ENOSPC part-way. Each answers 507 and leaves every share
/// as it was, with no scratch file. A write that neither grows a large share nor needs a
/// copy fits in the blocks it already has and succeeds. With room again, all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_during_mutable_writes_leaves_every_share_as_it_was() {
    let Some(fs) = Tmpfs::mount(
        "48m",
        "a_full_disk_during_mutable_writes_leaves_every_share_as_it_was",
    ) else {
        return;
    };
    let mut node = node_on(&fs, "0");
    let client = node.client();
    let (small, large, new) = (si(6), si(7), si(8));
    let mut small_data = data(6, 100_000);
    let mut large_data = data(7, 9 << 20);
    for (slot, contents) in [(&small, &small_data), (&large, &large_data)] {
        let written = write_mutable(
            &client,
            slot,
            &[(0, 0, contents.clone())],
            None,
            &test_lease(),
        )
        .await;
        assert!(written.expect("create with room").0);
    }
    let check = |small_data: Vec<u8>, large_data: Vec<u8>, when: &'static str| {
        let client = client.clone();
        async move {
            assert!(
                read(&client, ShareKind::Mutable, &small, 0)
                    .await
                    .expect("small")
                    == small_data,
                "{when}: small share changed"
            );
            assert!(
                read(&client, ShareKind::Mutable, &large, 0)
                    .await
                    .expect("large")
                    == large_data,
                "{when}: large share changed"
            );
            assert_eq!(
                list(&client, ShareKind::Mutable, &new).await,
                [] as [u16; 0],
                "{when}"
            );
        }
    };

    let filler = Filler::fill(&fs);
    let patch = vec![0xab; 10_000];
    assert_no_space(
        write_mutable(&client, &new, &[(0, 0, patch.clone())], None, &test_lease()).await,
        "a new slot",
    );
    assert_no_space(
        write_mutable(
            &client,
            &small,
            &[(0, 100_000, patch.clone())],
            None,
            &test_lease(),
        )
        .await,
        "growing a small share",
    );
    assert_no_space(
        write_mutable(
            &client,
            &small,
            &[(0, 0, patch.clone())],
            None,
            &test_lease(),
        )
        .await,
        "rewriting a small share",
    );
    assert_no_leftovers(&node, "after refused mutable writes");
    check(small_data.clone(), large_data.clone(), "full disk").await;
    let in_place = write_mutable(
        &client,
        &large,
        &[(0, 0, patch.clone())],
        None,
        &test_lease(),
    )
    .await;
    assert!(in_place.expect("an in-place write into existing blocks").0);
    large_data[..patch.len()].copy_from_slice(&patch);
    check(
        small_data.clone(),
        large_data.clone(),
        "after the in-place write",
    )
    .await;
    filler.remove();

    let filler = Filler::fill_behind_the_gauge(&fs, &client).await;
    let tail = data(8, 2 << 20);
    let end = large_data.len() as u64;
    assert_no_space(
        write_mutable(
            &client,
            &large,
            &[(0, end, tail.clone())],
            None,
            &test_lease(),
        )
        .await,
        "growing a large share in place",
    );
    check(
        small_data.clone(),
        large_data.clone(),
        "after growing in place failed",
    )
    .await;
    filler.remove();

    for (slot, offset) in [(&new, 0), (&small, 100_000), (&small, 0)] {
        let written = write_mutable(
            &client,
            slot,
            &[(0, offset, patch.clone())],
            None,
            &test_lease(),
        )
        .await;
        assert!(written.expect("with room").0);
    }
    small_data[..patch.len()].copy_from_slice(&patch);
    small_data.extend_from_slice(&patch);
    assert!(
        write_mutable(
            &client,
            &large,
            &[(0, end, tail.clone())],
            None,
            &test_lease()
        )
        .await
        .expect("growing in place with room")
        .0
    );
    large_data.extend_from_slice(&tail);
    assert_eq!(
        read(&client, ShareKind::Mutable, &small, 0)
            .await
            .expect("small"),
        small_data
    );
    assert!(
        read(&client, ShareKind::Mutable, &large, 0)
            .await
            .expect("large")
            == large_data
    );
    assert_eq!(
        read(&client, ShareKind::Mutable, &new, 0)
            .await
            .expect("new"),
        patch
    );
    assert_no_leftovers(&node, "at the end");
    assert_serving(&mut node, &client).await;
}

/// Adding a lease on a full disk. An immutable share's new lease record goes at the end of
/// its file, and the data length is what precedes the leases, so a record only partly
/// written would read as extra share data. The share's size puts its end 30 bytes before
/// a page boundary: 30 bytes of the record fit in its last page and the rest meets
/// ENOSPC. The lease request, and an allocation (which leases the shares already there),
/// answer 507 and the share reads back exactly as before, its file the same size; renewing
/// an existing lease (no new bytes) still works. A mutable share's fifth lease (past its
/// four slots) meets the full disk the same way. With room again, the leases are added and
/// every share is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_during_lease_writes_leaves_every_share_as_it_was() {
    let Some(fs) = Tmpfs::mount(
        "32m",
        "a_full_disk_during_lease_writes_leaves_every_share_as_it_was",
    ) else {
        return;
    };
    let mut node = node_on(&fs, "0");
    let client = node.client();
    // tmpfs allocates whole pages.
    let page = std::process::Command::new("getconf")
        .arg("PAGESIZE")
        .output()
        .expect("getconf PAGESIZE");
    let page: usize = String::from_utf8_lossy(&page.stdout)
        .trim()
        .parse()
        .expect("a page size");
    // Header 12 and one 72-byte lease: the file ends 30 bytes before page 25 ends.
    let immutable = data(9, 25 * page - 30 - 84);
    upload(&client, si(9), 0, &immutable).await;
    let file = share_path(&node, &si(9), 0);
    let size = fs::metadata(&file).expect("share").len();
    assert_eq!(size, (25 * page - 30) as u64);
    // Header 100, four lease slots of 92, the extra-lease count 4: likewise.
    let mutable = data(10, 5 * page - 30 - 472);
    let slot = si(10);
    assert!(
        write_mutable(&client, &slot, &[(0, 0, mutable.clone())], None, &lease(1))
            .await
            .expect("mutable")
            .0
    );
    for n in 2..=4 {
        client
            .add_or_renew_lease(&slot, &lease(n))
            .await
            .expect("fill the lease slots");
    }
    let check = |when: &'static str| {
        let client = client.clone();
        let (immutable, mutable) = (immutable.clone(), mutable.clone());
        async move {
            assert!(
                read(&client, ShareKind::Immutable, &si(9), 0)
                    .await
                    .expect("immutable")
                    == immutable,
                "{when}: immutable share changed"
            );
            assert!(
                read(&client, ShareKind::Mutable, &slot, 0)
                    .await
                    .expect("mutable")
                    == mutable,
                "{when}: mutable share changed"
            );
        }
    };

    let filler = Filler::fill(&fs);
    assert_no_space(
        client.add_or_renew_lease(&si(9), &lease(20)).await,
        "a new immutable lease",
    );
    check("after a refused immutable lease").await;
    assert_eq!(
        fs::metadata(&file).expect("share").len(),
        size,
        "partial lease left behind"
    );
    let allocated = client
        .allocate(
            si(9),
            [ShareNumber(1)].into(),
            1000,
            &lease(21),
            test_upload_secret(),
        )
        .await;
    assert_no_space(
        allocated.map(|u| u.allocated().clone()),
        "allocate adding a lease",
    );
    check("after a refused allocation").await;
    assert_eq!(
        fs::metadata(&file).expect("share").len(),
        size,
        "partial lease left behind"
    );
    client
        .add_or_renew_lease(&si(9), &test_lease())
        .await
        .expect("renewing needs no room");
    assert_no_space(
        client.add_or_renew_lease(&slot, &lease(22)).await,
        "a fifth mutable lease",
    );
    check("after a refused mutable lease").await;
    assert_no_leftovers(&node, "full disk");
    filler.remove();

    client
        .add_or_renew_lease(&si(9), &lease(20))
        .await
        .expect("lease with room");
    client
        .add_or_renew_lease(&slot, &lease(22))
        .await
        .expect("mutable lease with room");
    assert_eq!(fs::metadata(&file).expect("share").len(), size + 72);
    check("with room again").await;
    assert_serving(&mut node, &client).await;
}
