//! The requests `gbs-bench` times, each against any GBS server through our client. Every
//! loop is bounded in count, and what is read is checked.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use gbs::client::Client;
use gbs::protocol::{
    ReadTestWriteRequest, ShareKind, ShareNumber, StorageIndex, UploadSecret, WriteEnabler,
};
use gbs_tests::test_lease;

use crate::ceilings::mib_per_second;

/// Runs `task` on a thread of its own with a runtime of one thread, as `gbs client` runs:
/// it gets a core to itself, and its tasks never wake each other across threads.
pub(crate) async fn on_own_thread<T, F>(task: impl FnOnce() -> F + Send + 'static) -> T
where
    F: Future<Output = T>,
    T: Send + 'static,
{
    let (answer, answered) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let _ = answer.send(runtime.block_on(task()));
    });
    answered.await.expect("the task on its own thread panicked")
}

/// Requests per second of `requests` `GET /storage/v1/version`, `in_flight` at a time.
pub(crate) async fn version(client: &Client, requests: usize, in_flight: usize) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..requests / in_flight {
                    client.version().await.expect("version");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("version task");
    }
    (requests / in_flight * in_flight) as f64 / started.elapsed().as_secs_f64()
}

/// MiB/s of uploading `data` as share 0 of a fresh storage index `si`.
pub(crate) async fn upload(client: &Client, si: StorageIndex, data: &[u8]) -> f64 {
    let started = Instant::now();
    let secret = UploadSecret::new(si.as_bytes().to_vec()).expect("secret");
    let size = data.len() as u64;
    let upload = client
        .allocate(
            si,
            BTreeSet::from([ShareNumber(0)]),
            size,
            &test_lease(),
            secret,
        )
        .await
        .expect("allocate");
    assert_eq!(upload.allocated().len(), 1, "a fresh storage index");
    let report = upload
        .upload_share(ShareNumber(0), data)
        .await
        .expect("upload");
    assert_eq!(report.bytes_sent, size, "sent the whole share");
    mib_per_second(data.len(), started.elapsed())
}

/// `count` uploads of `data` at once, to fresh storage indexes from `seed` on.
pub(crate) async fn concurrent_uploads(client: &Client, seed: u8, count: u8, data: &Arc<Vec<u8>>) {
    let uploads: Vec<_> = (0..count)
        .map(|i| {
            let (client, data) = (client.clone(), data.clone());
            tokio::spawn(async move { upload(&client, storage_index(seed + i), &data).await })
        })
        .collect();
    for upload in uploads {
        upload.await.expect("upload task");
    }
}

/// MiB/s of downloading share 0 of `si` whole, which must be `expected`. The bytes are
/// compared with `expected` as they arrive rather than gathered: filling a fresh 256 MiB
/// buffer costs the client a page fault every 4 KiB, which neither server should pay for.
pub(crate) async fn download(client: &Client, si: &StorageIndex, expected: &[u8]) -> f64 {
    let started = Instant::now();
    let mut out = Compare::new(expected);
    client
        .read_share(ShareKind::Immutable, si, ShareNumber(0), None, &mut out)
        .await
        .expect("download");
    let elapsed = started.elapsed();
    assert!(out.matched(), "downloaded bytes differ from the upload");
    mib_per_second(expected.len(), elapsed)
}

/// A writer that checks what is written against the bytes it should be.
struct Compare<'a> {
    expected: &'a [u8],
    written: usize,
    differs: bool,
}

impl<'a> Compare<'a> {
    fn new(expected: &'a [u8]) -> Self {
        Self {
            expected,
            written: 0,
            differs: false,
        }
    }

    /// Whether exactly the expected bytes were written.
    fn matched(&self) -> bool {
        !self.differs && self.written == self.expected.len()
    }
}

impl tokio::io::AsyncWrite for Compare<'_> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let at = self.written;
        let same = self.expected.get(at..at + buf.len()) == Some(buf);
        self.differs |= !same;
        self.written += buf.len();
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

/// Requests per second of `writes` read-test-writes of 4 KiB into one mutable share, one
/// at a time; the share is then read back and checked.
pub(crate) async fn mutable_writes(client: &Client, si: StorageIndex, writes: usize) -> f64 {
    const PIECE: usize = 4096;
    const SLOTS: usize = 64;
    let enabler = WriteEnabler::new(vec![3; 32]).expect("write enabler");
    let mut expected = vec![0; PIECE * SLOTS];
    let started = Instant::now();
    for i in 0..writes {
        let offset = (i % SLOTS) * PIECE;
        let data = vec![(i % 251) as u8 + 1; PIECE];
        expected[offset..offset + PIECE].copy_from_slice(&data);
        let request = ReadTestWriteRequest::write(ShareNumber(0), offset as u64, data);
        let answer = client
            .read_test_write(&si, &enabler, &test_lease(), &request)
            .await
            .expect("read-test-write");
        assert!(answer.success, "write {i} was refused");
    }
    let rate = writes as f64 / started.elapsed().as_secs_f64();
    let mut out = Vec::new();
    client
        .read_share(ShareKind::Mutable, &si, ShareNumber(0), None, &mut out)
        .await
        .expect("read the mutable share");
    let written = (writes.min(SLOTS)) * PIECE;
    assert!(
        out[..written] == expected[..written],
        "the mutable share does not hold what was written"
    );
    rate
}

pub(crate) fn storage_index(seed: u8) -> StorageIndex {
    StorageIndex::from_bytes([seed; 16])
}

/// Requests per second, one at a time, of the bookkeeping requests a client makes around its
/// transfers, on share 0 of `si` (which must hold a complete immutable share): listing its
/// shares, renewing its lease, and allocating then aborting a share of a fresh storage index
/// (a pair of requests, counted as one). Each answer is checked.
pub(crate) async fn bookkeeping(client: &Client, si: StorageIndex, count: usize) -> [f64; 3] {
    let list = per_second(count, || async move {
        let shares = client
            .list_shares(ShareKind::Immutable, &si)
            .await
            .expect("list shares");
        assert_eq!(
            shares,
            BTreeSet::from([ShareNumber(0)]),
            "the shares of {si:?}"
        );
    })
    .await;
    let lease = per_second(count, || async move {
        client
            .add_or_renew_lease(&si, &test_lease())
            .await
            .expect("renew the lease");
    })
    .await;
    let fresh = StorageIndex::from_bytes([0xab; 16]);
    let secret = &UploadSecret::new(vec![7; 32]).expect("secret");
    let allocate = per_second(count, || async move {
        let upload = client
            .allocate(
                fresh,
                BTreeSet::from([ShareNumber(0)]),
                4096,
                &test_lease(),
                secret.clone(),
            )
            .await
            .expect("allocate");
        assert_eq!(
            upload.allocated().len(),
            1,
            "share 0 allocated again after its abort"
        );
        upload.abort(ShareNumber(0)).await.expect("abort");
    })
    .await;
    [list, lease, allocate]
}

/// Calls per second of `count` calls of `call`, one at a time.
async fn per_second<F: Future<Output = ()>>(count: usize, mut call: impl FnMut() -> F) -> f64 {
    let started = Instant::now();
    for _ in 0..count {
        call().await;
    }
    count as f64 / started.elapsed().as_secs_f64()
}
