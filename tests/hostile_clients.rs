//! Clients that stall, flood, hold connections or are refused mid-body, against the real
//! `gbs` process: each test exceeds one bound of the README's "Limits" and checks the node
//! keeps it and keeps serving others.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gbs::protocol::{
    paths, secret_header_line, ReadRange, ReadTestWriteRequest, SecretKind, ShareKind, ShareNumber,
    StorageIndex, WriteEnabler,
};
use gbs_tests::{
    read_status, test_lease, test_upload_secret, GbsNode, ProcessStats, RawConnection,
    TEST_UPLOAD_SECRET,
};
use tokio::io::AsyncWriteExt as _;

fn upload_secret_line() -> String {
    format!(
        "X-Tahoe-Authorization: {}",
        secret_header_line(SecretKind::Upload, TEST_UPLOAD_SECRET)
    )
}

/// Allocates `count` shares of `size` bytes under `si`.
async fn allocate(node: &GbsNode, si: StorageIndex, count: u16, size: u64) {
    let shares: BTreeSet<ShareNumber> = (0..count).map(ShareNumber).collect();
    let upload = node
        .client()
        .allocate(si, shares, size, &test_lease(), test_upload_secret())
        .await
        .expect("allocate");
    assert_eq!(upload.allocated().len(), usize::from(count));
}

/// Stores `data` as share 0 of `si`, a fresh storage index, through `client`.
async fn store_share(client: &gbs::client::Client, si: StorageIndex, data: &[u8]) {
    let upload = client
        .allocate(
            si,
            [ShareNumber(0)].into(),
            data.len() as u64,
            &test_lease(),
            test_upload_secret(),
        )
        .await
        .expect("allocate");
    upload
        .upload_share(ShareNumber(0), data)
        .await
        .expect("upload");
}

/// A request that must be refused: what is wrong with it, method, path, headers, status.
struct Refused(&'static str, &'static str, String, Vec<String>, u16);

/// A request refused at the header stage while its body is still arriving: the client
/// must read the status, not a reset. Each case sends `body_len` bytes as fast as it can
/// while the answer is read.
#[tokio::test]
async fn refusals_before_the_body_is_read_reach_the_client() {
    let node = GbsNode::start();
    let si = StorageIndex::from_bytes([3; 16]);
    allocate(&node, si, 1, 16 << 20).await;
    let share = paths::immutable_share(&si, ShareNumber(0));
    let patch_headers = |secret: bool| {
        let mut headers = vec!["Content-Range: bytes 0-16777215/*".to_owned()];
        if secret {
            headers.push(upload_secret_line());
        }
        headers
    };
    let wrong_swissnum = {
        let mut headers = patch_headers(true);
        headers.push("Authorization: Tahoe-LAFS d3Jvbmc=".to_owned());
        headers
    };
    let cases = [
        Refused(
            "wrong swissnum",
            "PATCH",
            share.clone(),
            wrong_swissnum,
            401,
        ),
        Refused(
            "no upload secret",
            "PATCH",
            share.clone(),
            patch_headers(false),
            400,
        ),
        Refused(
            "allocate without upload secret",
            "POST",
            paths::immutable_allocate(&StorageIndex::from_bytes([4; 16])),
            vec!["Content-Type: application/cbor".to_owned()],
            400,
        ),
        Refused(
            "no such upload",
            "PATCH",
            paths::immutable_share(&si, ShareNumber(9)),
            patch_headers(true),
            404,
        ),
    ];
    for case in cases {
        assert_refused_while_sending(&node, case).await;
    }
}

/// A storage plugin's refusal of an upload, with the body still arriving.
#[tokio::test]
async fn plugin_refusals_before_the_body_is_read_reach_the_client() {
    let library = gbs_tests::sample_plugin("gbs-sample-allow-list");
    let node = GbsNode::start_configured(&format!(
        "[storage]\nplugins = allow-list\n[storageserver.plugins.allow-list]\nlibrary = {}\ntokens = t\n",
        library.display()
    ));
    let si = StorageIndex::from_bytes([3; 16]);
    let case = Refused(
        "plugin refusal",
        "PATCH",
        paths::immutable_share(&si, ShareNumber(0)),
        vec![
            "Content-Range: bytes 0-16777215/*".to_owned(),
            upload_secret_line(),
        ],
        401,
    );
    assert_refused_while_sending(&node, case).await;
}

/// Sends the request with a 16 MiB body, then reads the answer, three times; the answer
/// must be the expected status each time.
async fn assert_refused_while_sending(node: &GbsNode, case: Refused) {
    let Refused(what, method, path, headers, expected) = case;
    for round in 0..3 {
        let mut connection = RawConnection::connect(node.nurl()).await.expect("connect");
        connection
            .send_head(method, &path, &headers, 16 << 20)
            .await
            .expect("send head");
        // As Python's http.client does: the whole body first, then the answer; a write
        // that fails (the server closed under it) loses the answer for such clients.
        let chunk = vec![0x5a; 64 << 10];
        for sent in 0..256 {
            if let Err(e) = connection.tls.write_all(&chunk).await {
                panic!("{what}, round {round}: sending the body failed after {sent} chunks: {e}");
            }
        }
        connection.tls.flush().await.expect("flush");
        let status = read_status(&mut connection.tls)
            .await
            .unwrap_or_else(|e| panic!("{what}, round {round}: no status: {e}"));
        assert_eq!(status, expected, "{what}, round {round}");
    }
}

/// Inputs tried: `GET version` with 100 headers in all (answered), then with 101 (431, and
/// the node still answers the next connection).
#[tokio::test]
async fn requests_with_more_than_100_headers_are_refused() {
    let node = GbsNode::start();
    let status_with = |total: usize| {
        let nurl = node.nurl().to_owned();
        async move {
            let mut connection = RawConnection::connect(&nurl).await.expect("connect");
            // Host, Content-Length and Authorization are sent too.
            let extra: Vec<String> = (3..total).map(|i| format!("X-Padding-{i}: {i}")).collect();
            connection
                .send_head("GET", &paths::version(), &extra, 0)
                .await
                .expect("send head");
            read_status(&mut connection.tls).await.expect("a status")
        }
    };
    assert_eq!(status_with(100).await, 200);
    assert_eq!(status_with(101).await, 431);
    assert_eq!(status_with(10).await, 200);
}

/// Small ranged reads on one connection: each answer must not wait for a delayed ACK
/// (40 ms on Linux). 200 reads at 40 ms would take 8 s; the bound allows 4 s.
#[tokio::test]
async fn small_reads_do_not_wait_for_delayed_acks() {
    let node = GbsNode::start();
    let client = node.client();
    let si = StorageIndex::from_bytes([5; 16]);
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    store_share(&client, si, &data).await;
    let started = Instant::now();
    for i in 0..200u64 {
        let offset = (i * 4099) % (1 << 20);
        let mut out = Vec::new();
        let range = ReadRange::new(offset, 1024).expect("range");
        client
            .read_share(
                ShareKind::Immutable,
                &si,
                ShareNumber(0),
                Some(range),
                &mut out,
            )
            .await
            .expect("read");
        let start = usize::try_from(offset).expect("small");
        assert_eq!(out, data[start..(start + 1024).min(data.len())]);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "200 reads of 1 KiB took {took:?}: answers wait for delayed ACKs"
    );
}

/// 200 uploads that send all but one byte of a 1 MiB body and stop: memory stays within
/// the budget while they hang, and each is closed after the idle timeout.
#[tokio::test]
async fn stalled_upload_bodies_are_bounded_and_dropped() {
    const STALLED: u16 = 200;
    const BODY: usize = 1 << 20;
    let node = GbsNode::start_configured("[gbs]\nidle_timeout = 3s\n");
    let si = StorageIndex::from_bytes([6; 16]);
    allocate(&node, si, STALLED, BODY as u64).await;
    let before = ProcessStats::of(node.pid());
    let mut stalled = Vec::new();
    for shnum in 0..STALLED {
        let mut connection = RawConnection::connect(node.nurl()).await.expect("connect");
        let headers = vec![
            format!("Content-Range: bytes 0-{}/*", BODY - 1),
            upload_secret_line(),
        ];
        connection
            .send_head(
                "PATCH",
                &paths::immutable_share(&si, ShareNumber(shnum)),
                &headers,
                BODY,
            )
            .await
            .expect("head");
        connection
            .tls
            .write_all(&vec![0xa5; BODY - 1])
            .await
            .expect("all but the last byte");
        connection.tls.flush().await.expect("flush");
        stalled.push(connection);
    }
    // Let the server take in what was sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = ProcessStats::of(node.pid());
    let grown = during.rss.saturating_sub(before.rss);
    assert!(
        grown < 96 << 20,
        "{STALLED} stalled uploads grew the server by {} MiB",
        grown >> 20
    );
    // Each stalled request is answered (400: body could not be read) or closed once idle.
    let deadline = Instant::now() + Duration::from_secs(20);
    for mut connection in stalled {
        let wait = deadline.saturating_duration_since(Instant::now());
        let outcome = tokio::time::timeout(wait, read_status(&mut connection.tls)).await;
        assert!(
            outcome.is_ok(),
            "a stalled upload was still held {:?} after the idle timeout",
            Duration::from_secs(20)
        );
    }
    // And the node still serves.
    node.client()
        .version()
        .await
        .expect("version after the stall");
}

/// Input tried: 100 connections that ask for a 4 MiB share and never read the answer, on a
/// node whose download budget is 4 MiB. Streams beyond the budget read 8 KiB pieces, so the
/// node stays within the README's bound (it grew by about 0.9 MiB per such connection
/// before), and a client reading beside them gets every byte right.
#[tokio::test]
async fn downloads_nobody_reads_stay_within_the_download_budget() {
    const STALLED: usize = 100;
    const SIZE: usize = 4 << 20;
    let node = GbsNode::start_configured("[gbs]\ndownload_buffer = 4MiB\n");
    let si = StorageIndex::from_bytes([0x61; 16]);
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    store_share(&node.client(), si, &data).await;
    let before = ProcessStats::of(node.pid());
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut connection = RawConnection::connect(node.nurl()).await.expect("connect");
        connection
            .send_head("GET", &paths::immutable_share(&si, ShareNumber(0)), &[], 0)
            .await
            .expect("head");
        stalled.push(connection);
    }
    // Let every stream fill what it may.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut out = Vec::new();
    let read = node
        .client()
        .read_share(ShareKind::Immutable, &si, ShareNumber(0), None, &mut out)
        .await
        .expect("read beside the stalled downloads");
    assert_eq!(read, SIZE as u64);
    assert!(out == data, "the download beside them differs");
    let during = ProcessStats::of(node.pid());
    // The README's bound for these connections and this budget, and 8 MiB for the reader
    // beside them and the allocator.
    let bound = STALLED * gbs::limits::Limits::CONNECTION_MEMORY + (4 << 20) + (8 << 20);
    let grown = during.peak_rss.saturating_sub(before.rss);
    assert!(
        grown < bound as u64,
        "{STALLED} downloads nobody reads grew the server by {} MiB",
        grown >> 20
    );
    drop(stalled);
}

/// Input tried: one client that asks for a 64 MiB share and stops reading. The bytes the
/// node's kernel holds queued for it (`tx_queue` of the node's socket in `/proc/net/tcp`)
/// stay near the unsent-queue bound (256 KiB), not the autotuned send buffer (up to
/// 4 MiB, which a thousand such clients multiplied into the machine's TCP memory limit).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_client_that_stops_reading_holds_little_of_the_kernels_memory() {
    const SIZE: usize = 64 << 20;
    let node = GbsNode::start();
    let si = StorageIndex::from_bytes([0x62; 16]);
    store_share(&node.client(), si, &vec![0x3c; SIZE]).await;
    let mut connection = RawConnection::connect(node.nurl()).await.expect("connect");
    connection
        .send_head("GET", &paths::immutable_share(&si, ShareNumber(0)), &[], 0)
        .await
        .expect("head");
    let client_port = connection
        .tls
        .get_ref()
        .0
        .local_addr()
        .expect("address")
        .port();
    let node_port = node
        .nurl()
        .parse::<gbs::protocol::Nurl>()
        .expect("NURL")
        .port;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let queued = (0..50)
        .find_map(|_| {
            let queued = tx_queue(node_port, client_port);
            if queued.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            queued
        })
        .expect("the node's socket in /proc/net/tcp");
    assert!(
        queued < 1 << 20,
        "the node's kernel holds {queued} bytes queued for a client that stopped reading"
    );
    drop(connection);
}

/// The send queue (`tx_queue`) of the IPv4 socket from `local` to `remote` port, from
/// `/proc/net/tcp`.
#[cfg(target_os = "linux")]
fn tx_queue(local: u16, remote: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port = |address: &str| {
        address
            .rsplit_once(':')
            .and_then(|(_, port)| u16::from_str_radix(port, 16).ok())
    };
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (from, to, queues) = (fields.get(1)?, fields.get(2)?, fields.get(4)?);
        if port(from)? != local || port(to)? != remote {
            return None;
        }
        u64::from_str_radix(queues.split_once(':')?.0, 16).ok()
    })
}

/// Connections that never start their TLS handshake, more than the cap allows: a real
/// client still gets its answer within the 5 s stock clients wait.
#[tokio::test]
async fn idle_connections_cannot_lock_out_a_client() {
    let node = GbsNode::start_configured("[gbs]\nmax_connections = 64\n");
    let _idle = assert_answers_beside_idle_connections(&node, 300).await;
    let fds = ProcessStats::of(node.pid()).open_fds;
    assert!(
        fds < 64 + 40,
        "{fds} descriptors open with a cap of 64 connections"
    );
}

/// The same with the node's own descriptor limit as the bound: 1,100 idle connections
/// against a limit of 1,024 descriptors.
#[tokio::test]
async fn idle_connections_beyond_the_descriptor_limit_cannot_lock_out_a_client() {
    let node = GbsNode::start_with("", Some(1024));
    let _idle = assert_answers_beside_idle_connections(&node, 1100).await;
}

/// Opens `count` TCP connections that never send a byte, then asserts that a real client
/// gets its version answer within 5 s. Returns the idle connections, still open.
async fn assert_answers_beside_idle_connections(
    node: &GbsNode,
    count: usize,
) -> Vec<tokio::net::TcpStream> {
    let nurl: gbs::protocol::Nurl = node.nurl().parse().expect("nurl");
    let mut idle = Vec::new();
    for _ in 0..count {
        match tokio::net::TcpStream::connect((nurl.host.as_str(), nurl.port)).await {
            Ok(stream) => idle.push(stream),
            Err(e) => panic!("connect {}: {e}", idle.len()),
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(5), node.client().version()).await;
    assert!(
        matches!(answer, Ok(Ok(_))),
        "version with {count} idle connections open: {answer:?} after {:?}",
        started.elapsed()
    );
    idle
}

/// Thousands of uploads in progress hold no descriptor each: with 2,560 shares allocated
/// under a limit of 1,024 descriptors, the node's descriptors stay few and it still serves.
#[tokio::test]
async fn uploads_in_progress_hold_no_descriptors() {
    let node = GbsNode::start_with("", Some(1024));
    let before = ProcessStats::of(node.pid()).open_fds;
    for seed in 0..10u8 {
        allocate(
            &node,
            StorageIndex::from_bytes([0x80 + seed; 16]),
            256,
            1 << 20,
        )
        .await;
    }
    let during = ProcessStats::of(node.pid()).open_fds;
    assert!(
        during < before + 50,
        "{during} descriptors open with 2,560 uploads in progress ({before} before)"
    );
    let si = StorageIndex::from_bytes([0x90; 16]);
    let upload = node
        .client()
        .allocate(
            si,
            [ShareNumber(0)].into(),
            4,
            &test_lease(),
            test_upload_secret(),
        )
        .await
        .expect("allocate beside them");
    let report = upload
        .upload_share(ShareNumber(0), &b"data"[..])
        .await
        .expect("upload beside them");
    assert_eq!(report.bytes_skipped, 0);
}

/// Eight 48 MiB read-test-writes at once: they queue for the mutable-write budget instead
/// of each holding its body (and its decoded copy) at the same time.
#[tokio::test]
async fn concurrent_large_mutable_writes_queue_within_the_budget() {
    const SIZE: usize = 48 << 20;
    let node = GbsNode::start();
    let before = ProcessStats::of(node.pid());
    let writes = (0..8u8).map(|i| {
        let client = node.client();
        async move {
            let si = StorageIndex::from_bytes([0x40 + i; 16]);
            let request = ReadTestWriteRequest::write(ShareNumber(0), 0, vec![i; SIZE]);
            let response = client
                .read_test_write(
                    &si,
                    &WriteEnabler::new(vec![9; 32]).expect("write enabler"),
                    &test_lease(),
                    &request,
                )
                .await
                .expect("read-test-write");
            assert!(response.success);
        }
    });
    futures_util::future::join_all(writes).await;
    let after = ProcessStats::of(node.pid());
    assert!(
        after.peak_rss.saturating_sub(before.rss) < 200 << 20,
        "8 concurrent 48 MiB writes peaked {} MiB above the idle node",
        after.peak_rss.saturating_sub(before.rss) >> 20
    );
    let mut out = Vec::new();
    let read = node
        .client()
        .read_share(
            ShareKind::Mutable,
            &StorageIndex::from_bytes([0x47; 16]),
            ShareNumber(0),
            Some(ReadRange::new(SIZE as u64 - 10, 10).expect("range")),
            &mut out,
        )
        .await
        .expect("read back");
    assert_eq!((read, out), (10, vec![7; 10]));
}

/// Input tried: a 15 MB read-test-write body of a million empty write vectors (15 bytes
/// each on the wire, five CBOR items). Decoded whole, it would take about 400 MB; it is
/// refused (400) before decoding, the node's memory barely moves, and it keeps serving.
#[tokio::test]
async fn a_body_of_many_tiny_items_is_refused_before_it_is_decoded() {
    const WRITES: u32 = 1_000_000;
    let node = GbsNode::start();
    let before = ProcessStats::of(node.pid());
    let mut body = Vec::with_capacity(15 * WRITES as usize + 64);
    body.extend_from_slice(b"\xa2\x72test-write-vectors\xa1\x00\xa3\x64test\x80\x65write\x9a");
    body.extend_from_slice(&WRITES.to_be_bytes());
    for _ in 0..WRITES {
        body.extend_from_slice(b"\xa2\x66offset\x00\x64data\x40");
    }
    body.extend_from_slice(b"\x6anew-length\xf6\x6bread-vector\x80");
    let secrets = [
        (SecretKind::WriteEnabler, [9; 32]),
        (SecretKind::LeaseRenew, [1; 32]),
        (SecretKind::LeaseCancel, [2; 32]),
    ]
    .map(|(kind, value)| {
        format!(
            "X-Tahoe-Authorization: {}",
            secret_header_line(kind, &value)
        )
    });
    let mut headers = vec!["Content-Type: application/cbor".to_owned()];
    headers.extend(secrets);
    let mut connection = RawConnection::connect(node.nurl()).await.expect("connect");
    let si = StorageIndex::from_bytes([0x51; 16]);
    connection
        .send_head(
            "POST",
            &paths::mutable_read_test_write(&si),
            &headers,
            body.len(),
        )
        .await
        .expect("send head");
    connection.tls.write_all(&body).await.expect("send body");
    connection.tls.flush().await.expect("flush");
    let status = read_status(&mut connection.tls).await.expect("status");
    assert_eq!(status, 400);
    let after = ProcessStats::of(node.pid());
    let grown = after.peak_rss.saturating_sub(before.rss);
    assert!(
        grown < 100 << 20,
        "the refused body's decoding peaked {} MiB above the idle node",
        grown >> 20
    );
    node.client().version().await.expect("still answers");
}

/// Eight concurrent 64 MiB uploads: the server's peak memory stays under 64 MiB.
#[tokio::test]
async fn concurrent_large_uploads_stay_under_64_mib() {
    const SIZE: usize = 64 << 20;
    let node = GbsNode::start();
    let data = Bytes::from(vec![0x33u8; SIZE]);
    let uploads = (0..8u8).map(|i| {
        let client = node.client();
        let data = data.clone();
        async move { store_share(&client, StorageIndex::from_bytes([0x60 + i; 16]), &data).await }
    });
    futures_util::future::join_all(uploads).await;
    let peak = ProcessStats::of(node.pid()).peak_rss;
    eprintln!(
        "8 concurrent 64 MiB uploads: server peak RSS {} MiB",
        peak >> 20
    );
    assert!(
        peak < 64 << 20,
        "8 concurrent 64 MiB uploads peaked at {} MiB",
        peak >> 20
    );
}
