//! Stopping a node mid-upload: acknowledged data survives, abandoned uploads leave nothing.

use std::collections::BTreeSet;

use bytes::Bytes;
use gbs::protocol::{ShareKind, ShareNumber, StorageIndex, UploadSecret};
use gbs_tests::{read_status, test_lease, GbsNode, RawConnection};
use tokio::io::AsyncWriteExt as _;

fn share0() -> BTreeSet<ShareNumber> {
    [ShareNumber(0)].into()
}

#[tokio::test]
async fn sigterm_keeps_completed_shares_and_drops_unfinished_uploads() {
    let node = GbsNode::start();
    let complete_si = StorageIndex::from_bytes([1; 16]);
    let partial_si = StorageIndex::from_bytes([2; 16]);
    let data = Bytes::from(vec![7u8; 10_000]);
    {
        let client = node.client();
        let done = client
            .allocate(
                complete_si,
                share0(),
                10_000,
                &test_lease(),
                UploadSecret::new(b"a".to_vec()).unwrap(),
            )
            .await
            .unwrap();
        assert!(
            done.write_chunk(ShareNumber(0), 0, data.clone())
                .await
                .unwrap()
                .complete
        );
        let partial = client
            .allocate(
                partial_si,
                share0(),
                1 << 20,
                &test_lease(),
                UploadSecret::new(b"b".to_vec()).unwrap(),
            )
            .await
            .unwrap();
        let written = partial
            .write_chunk(ShareNumber(0), 0, Bytes::from(vec![9u8; 4096]))
            .await
            .unwrap();
        assert!(!written.complete);
    }

    let (status, dir) = node.stop();
    assert!(status.success(), "gbs run exited with {status}");

    let node = GbsNode::start_in(dir);
    let incoming = node.dir().join("storage/shares/incoming");
    let leftovers = std::fs::read_dir(&incoming).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        leftovers,
        0,
        "{} still holds abandoned uploads",
        incoming.display()
    );

    let client = node.client();
    let mut read_back = Vec::new();
    client
        .read_share(
            ShareKind::Immutable,
            &complete_si,
            ShareNumber(0),
            None,
            &mut read_back,
        )
        .await
        .unwrap();
    assert_eq!(read_back, data);
    assert!(client
        .list_shares(ShareKind::Immutable, &partial_si)
        .await
        .unwrap()
        .is_empty());
    // The abandoned share can be allocated afresh.
    let again = client
        .allocate(
            partial_si,
            share0(),
            1 << 20,
            &test_lease(),
            UploadSecret::new(b"c".to_vec()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(again.allocated(), &share0());
}

/// SIGTERM while an upload's body is half sent: the request finishes within the drain
/// period and is acknowledged, and the share is there after a restart.
#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish() {
    const SIZE: usize = 4 << 20;
    let node = GbsNode::start();
    let si = StorageIndex::from_bytes([3; 16]);
    let upload = node
        .client()
        .allocate(
            si,
            share0(),
            SIZE as u64,
            &test_lease(),
            UploadSecret::new(b"d".to_vec()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(upload.allocated(), &share0());
    let mut connection = RawConnection::connect(node.nurl()).await.unwrap();
    let headers = vec![
        format!("Content-Range: bytes 0-{}/*", SIZE - 1),
        format!(
            "X-Tahoe-Authorization: {}",
            gbs::protocol::secret_header_line(gbs::protocol::SecretKind::Upload, b"d")
        ),
    ];
    let path = gbs::protocol::paths::immutable_share(&si, ShareNumber(0));
    connection
        .send_head("PATCH", &path, &headers, SIZE)
        .await
        .unwrap();
    let data = vec![0x42u8; SIZE];
    connection.tls.write_all(&data[..SIZE / 2]).await.unwrap();
    connection.tls.flush().await.unwrap();
    node.request_stop();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    connection.tls.write_all(&data[SIZE / 2..]).await.unwrap();
    connection.tls.flush().await.unwrap();
    assert_eq!(read_status(&mut connection.tls).await.unwrap(), 201);

    let (status, dir) = node.stop();
    assert!(status.success(), "gbs run exited with {status}");
    let node = GbsNode::start_in(dir);
    let mut read_back = Vec::new();
    node.client()
        .read_share(
            ShareKind::Immutable,
            &si,
            ShareNumber(0),
            None,
            &mut read_back,
        )
        .await
        .unwrap();
    assert!(
        read_back == data,
        "the share acknowledged during shutdown reads back"
    );
}

/// SIGHUP used to end the node without a word; it now keeps serving.
#[tokio::test]
async fn sighup_does_not_stop_the_node() {
    let node = GbsNode::start();
    let sent = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(node.pid().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    node.client()
        .version()
        .await
        .expect("the node serves after SIGHUP");
    let (status, _dir) = node.stop();
    assert!(status.success(), "gbs run exited with {status}");
}
