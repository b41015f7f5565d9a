//! Stopping a node mid-upload: acknowledged data survives, abandoned uploads leave nothing.

use std::collections::BTreeSet;

use bytes::Bytes;
use gbs::client::{Client, ClientBuilder};
use gbs::protocol::{
    LeaseCancelSecret, LeaseRenewSecret, LeaseSecrets, ShareKind, ShareNumber, StorageIndex,
    UploadSecret,
};
use gbs_tests::GbsNode;

fn client(node: &GbsNode) -> Client {
    ClientBuilder::new(node.nurl().parse().expect("gbs printed a valid NURL"))
        .build()
        .expect("client")
}

fn lease() -> LeaseSecrets {
    LeaseSecrets {
        renew: LeaseRenewSecret::new([1; 32]),
        cancel: LeaseCancelSecret::new([2; 32]),
    }
}

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
        let client = client(&node);
        let done = client
            .allocate(
                complete_si,
                share0(),
                10_000,
                &lease(),
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
                &lease(),
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

    let client = client(&node);
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
            &lease(),
            UploadSecret::new(b"c".to_vec()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(again.allocated(), &share0());
}
