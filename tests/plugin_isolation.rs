//! Plugins are untrusted code: a plugin that blocks its thread holds up only the operations
//! it guards, and cannot stop the node from shutting down.

use std::time::{Duration, Instant};

use gbs::client::ClientError;
use gbs::protocol::{ShareKind, ShareNumber, StorageIndex, UploadSecret};
use gbs_tests::{blocking_plugin, test_lease, GbsNode};

/// A node running `fixture-blocks`, blocking in `hooks`, with a 2 s hook deadline.
fn node_blocking_in(hooks: &str) -> GbsNode {
    GbsNode::start_configured(&format!(
        "[storage]\nplugins = fixture-blocks\n\
         [storageserver.plugins.fixture-blocks]\nlibrary = {}\nblock-in = {hooks}\nblock-seconds = 20\n\
         [gbs]\nplugin_deadline = 2s\n",
        blocking_plugin().display()
    ))
}

/// Input tried: a plugin whose `admit` sleeps its thread for 20 s, guarding listings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_blocks_its_thread_holds_up_only_what_it_guards() {
    let node = node_blocking_in("admit");
    let client = node.client();
    let si = StorageIndex::from_bytes([7; 16]);
    let upload = client
        .allocate(
            si,
            [ShareNumber(0)].into(),
            5,
            &test_lease(),
            UploadSecret::new(b"u".to_vec()).unwrap(),
        )
        .await
        .expect("allocate is not guarded");
    upload
        .upload_share(ShareNumber(0), &b"hello"[..])
        .await
        .expect("upload is not guarded");

    let guarded = {
        let client = client.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = client.list_shares(ShareKind::Immutable, &si).await;
            (answer, started.elapsed())
        })
    };
    // While the plugin's thread sleeps, everything it does not guard keeps its latency.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..20 {
        let started = Instant::now();
        client.version().await.expect("version");
        let mut out = Vec::new();
        client
            .read_share(ShareKind::Immutable, &si, ShareNumber(0), None, &mut out)
            .await
            .expect("read");
        assert_eq!(out, b"hello");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "an unguarded request took {took:?} while a plugin was blocked"
        );
    }
    // The guarded operation fails closed at the deadline, with the structured rejection.
    let (answer, took) = guarded.await.unwrap();
    match answer {
        Err(ClientError::PluginRejected(rejection)) => {
            assert_eq!(
                (
                    rejection.status,
                    rejection.plugin.as_str(),
                    rejection.code.as_str()
                ),
                (503, "fixture-blocks", "plugin-timeout")
            );
        }
        other => panic!("a blocked plugin's listing answered {other:?}"),
    }
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "the guarded listing failed after {took:?}, not at the 2 s deadline"
    );
}

/// Input tried: a plugin whose `start` and `stop` both sleep their thread for 20 s.
#[test]
fn shutdown_completes_whatever_a_plugin_start_or_stop_does() {
    let node = node_blocking_in("start, stop");
    // The node serves while the background service is stuck.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(node.client().version())
        .expect("version while start blocks");
    let started = Instant::now();
    let (status, _dir) = node.stop();
    let took = started.elapsed();
    assert!(status.success(), "gbs run exited with {status}");
    assert!(
        took < Duration::from_secs(15),
        "shutdown took {took:?} with a plugin stuck in start and stop"
    );
}
