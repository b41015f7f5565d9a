//! `gbs-bench`: stock Tahoe 1.20 and `gbs` side by side, in one run, with ratios.
//!
//! ```sh
//! cargo run --release -p gbs-tests --bin gbs-bench
//! ```
//!
//! Both servers run as real processes on loopback over TLS and are driven by the same client
//! (ours), so the client's cost is common to both columns. Every loop is bounded in count.
//! Numbers are wall-clock on whatever else the machine is doing: compare the ratios, and run
//! it twice before believing a small difference.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use gbs::client::{Client, ClientBuilder};
use gbs::protocol::{
    Nurl, ReadRange, ReadTestWriteRequest, ShareKind, ShareNumber, StorageIndex, TestWriteVectors,
    UploadSecret, WriteEnabler, WriteVector,
};
use gbs_tests::{test_lease, GbsNode, StockServer};

const VERSION_REQUESTS: usize = 2000;
const CONCURRENCY: usize = 8;
const SHARES: u16 = 16;
const SHARE_SIZE: usize = 1 << 20;
const MUTABLE_WRITES: usize = 300;
const SMALL_READS: usize = 2000;

/// One measured workload: how long each server took.
///
/// Mutable writes are fsynced by `gbs` before it answers and not by stock Tahoe, so that
/// row compares durable writes with buffered ones.
struct Row {
    name: String,
    stock: Duration,
    gbs: Duration,
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let stock = StockServer::start();
    let gbs = GbsNode::start();
    let stock_client = client(stock.nurl());
    let gbs_client = client(gbs.nurl());

    let rows = runtime.block_on(async {
        let mut rows = Vec::new();
        for (name, stock_time, gbs_time) in [
            (
                "version, 8 concurrent",
                version(&stock_client).await,
                version(&gbs_client).await,
            ),
            (
                "upload 16 x 1 MiB",
                upload(&stock_client, 1).await,
                upload(&gbs_client, 1).await,
            ),
            (
                "read 16 x 1 MiB",
                read(&stock_client, 1).await,
                read(&gbs_client, 1).await,
            ),
            (
                "1 KiB ranged read x 2000, 1 connection",
                small_reads(&stock_client, 1).await,
                small_reads(&gbs_client, 1).await,
            ),
            (
                "1 KiB ranged read x 2000, 64 concurrent",
                small_reads(&wide(stock.nurl()), 64).await,
                small_reads(&wide(gbs.nurl()), 64).await,
            ),
            (
                "mutable write 300 x 1 KiB",
                mutable(&stock_client).await,
                mutable(&gbs_client).await,
            ),
        ] {
            rows.push(Row {
                name: name.to_owned(),
                stock: stock_time,
                gbs: gbs_time,
            });
        }
        rows
    });

    println!(
        "{:<40} {:>12} {:>12} {:>10}",
        "workload", "stock Tahoe", "gbs", "speed-up"
    );
    for row in rows {
        println!(
            "{:<40} {:>10.1}ms {:>10.1}ms {:>9.1}x",
            row.name,
            row.stock.as_secs_f64() * 1e3,
            row.gbs.as_secs_f64() * 1e3,
            row.stock.as_secs_f64() / row.gbs.as_secs_f64().max(1e-9)
        );
    }
}

fn client(nurl: &str) -> Client {
    let nurl: Nurl = nurl.parse().expect("NURL");
    ClientBuilder::new(nurl)
        .max_connections(CONCURRENCY)
        .build()
        .expect("client")
}

async fn version(client: &Client) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..VERSION_REQUESTS / CONCURRENCY {
                    client.version().await.expect("version");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("version task");
    }
    start.elapsed()
}

fn storage_index(seed: u8) -> StorageIndex {
    StorageIndex::from_bytes([seed; 16])
}

async fn upload(client: &Client, seed: u8) -> Duration {
    let data = vec![0x5a; SHARE_SIZE];
    let shares: BTreeSet<ShareNumber> = (0..SHARES).map(ShareNumber).collect();
    let start = Instant::now();
    let secret = UploadSecret::new(vec![seed; 20]).expect("secret");
    let upload = client
        .allocate(
            storage_index(seed),
            shares,
            SHARE_SIZE as u64,
            &test_lease(),
            secret,
        )
        .await
        .expect("allocate");
    assert_eq!(
        upload.allocated().len(),
        usize::from(SHARES),
        "fresh storage index"
    );
    for shnum in upload.allocated().clone() {
        upload.upload_share(shnum, &data[..]).await.expect("upload");
    }
    start.elapsed()
}

async fn read(client: &Client, seed: u8) -> Duration {
    let start = Instant::now();
    let mut total = 0;
    for shnum in (0..SHARES).map(ShareNumber) {
        let mut out = Vec::with_capacity(SHARE_SIZE);
        total += client
            .read_share(
                ShareKind::Immutable,
                &storage_index(seed),
                shnum,
                None,
                &mut out,
            )
            .await
            .expect("read");
    }
    assert_eq!(total, u64::from(SHARES) * SHARE_SIZE as u64, "short reads");
    start.elapsed()
}

/// 1 KiB ranged reads of the shares `upload(_, 1)` wrote, `concurrency` at a time: the
/// shape of Tahoe's downloader, which reads hashes and blocks in small pieces.
async fn small_reads(client: &Client, concurrency: usize) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in 0..SMALL_READS / concurrency {
                    let shnum = ShareNumber(u16::try_from(i % usize::from(SHARES)).unwrap_or(0));
                    let offset = ((task * 7919 + i * 4099) % (SHARE_SIZE - 1024)) as u64;
                    let range = ReadRange::new(offset, 1024).expect("range");
                    let mut out = Vec::with_capacity(1024);
                    let read = client
                        .read_share(
                            ShareKind::Immutable,
                            &storage_index(1),
                            shnum,
                            Some(range),
                            &mut out,
                        )
                        .await
                        .expect("small read");
                    assert_eq!(read, 1024, "short read");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("read task");
    }
    start.elapsed()
}

/// A client that keeps up to 64 connections, for the concurrent small-read row.
fn wide(nurl: &str) -> Client {
    ClientBuilder::new(nurl.parse().expect("NURL"))
        .max_connections(64)
        .build()
        .expect("client")
}

async fn mutable(client: &Client) -> Duration {
    let enabler = WriteEnabler::new(vec![3; 32]).expect("write enabler");
    let start = Instant::now();
    for i in 0..MUTABLE_WRITES {
        let mut request = ReadTestWriteRequest::default();
        request.test_write_vectors.insert(
            ShareNumber(0),
            TestWriteVectors {
                test: vec![],
                write: vec![WriteVector {
                    offset: (i as u64 % 64) * 1024,
                    data: vec![i as u8; 1024],
                }],
                new_length: None,
            },
        );
        let answer = client
            .read_test_write(&storage_index(200), &enabler, &test_lease(), &request)
            .await
            .expect("read-test-write");
        assert!(answer.success);
    }
    start.elapsed()
}
