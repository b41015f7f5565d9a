//! `gbs gateway`: clients without plugins (ours here, stock Tahoe's below) reach upstream
//! `gbs` nodes through a gateway whose client plugins attach what the upstreams' server
//! plugins require; answers, statuses and bytes come back as the upstreams gave them.

use gbs::client::{Client, ClientBuilder, ClientError};
use gbs::protocol::{
    LeaseSecrets, ReadRange, ReadTestWriteRequest, ShareKind, ShareNumber, StorageIndex,
    WriteEnabler,
};
use gbs_tests::{
    assert_all_passed, gbs_stdout, run_python, sample_plugin, test_lease, test_upload_secret,
    GbsGateway, GbsNode, TahoeClient,
};

/// An upstream node whose allow-list admits only `good-token`.
async fn guarded_node() -> GbsNode {
    let library = sample_plugin("gbs-sample-allow-list");
    tokio::task::spawn_blocking(move || {
        GbsNode::start_configured(&format!(
            "[storage]\nplugins = allow-list\n[storageserver.plugins.allow-list]\n\
             library = {}\ntokens = good-token\n",
            library.display()
        ))
    })
    .await
    .expect("start the node")
}

/// A gateway to `upstreams` whose allow-list client side presents `token`.
async fn gateway(upstreams: Vec<String>, token: &str) -> GbsGateway {
    let library = sample_plugin("gbs-sample-allow-list");
    let count = upstreams.len();
    let extra = format!(
        "[gateway]\nupstreams = {}\n[client]\nstorage.plugins = allow-list\n\
         [storageclient.plugins.allow-list]\nlibrary = {}\ntoken = {token}\n",
        upstreams.join(", "),
        library.display()
    );
    tokio::task::spawn_blocking(move || GbsGateway::start(&extra, count))
        .await
        .expect("start the gateway")
}

fn plain_client(nurl: &str) -> Client {
    ClientBuilder::new(nurl.parse().expect("NURL"))
        .build()
        .expect("client")
}

/// Stores `bytes` as share `shnum` of `si` through `client`.
async fn store(client: &Client, si: StorageIndex, shnum: u16, bytes: &[u8]) {
    let upload = client
        .allocate(
            si,
            [ShareNumber(shnum)].into(),
            bytes.len() as u64,
            &test_lease(),
            test_upload_secret(),
        )
        .await
        .expect("allocate");
    upload
        .upload_share(ShareNumber(shnum), bytes)
        .await
        .expect("upload");
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// Input tried: a client without plugins storing, reading (whole and ranged), listing,
/// leasing and writing a mutable share through the gateway, against an upstream that
/// refuses that same client directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_plugins_stores_and_reads_through_the_gateway() {
    let node = guarded_node().await;
    let si = StorageIndex::from_bytes([9; 16]);
    match plain_client(node.nurl())
        .allocate(
            si,
            [ShareNumber(0)].into(),
            4,
            &test_lease(),
            test_upload_secret(),
        )
        .await
    {
        Err(ClientError::PluginRejected(r)) => assert_eq!(r.plugin, "allow-list"),
        other => panic!("directly, without a token: {other:?}"),
    }

    let gateway = gateway(vec![node.nurl().to_owned()], "good-token").await;
    let client = plain_client(&gateway.nurls()[0]);
    client.version().await.expect("version through the gateway");
    let share = data(300_000, 7);
    let upload = client
        .allocate(
            si,
            [ShareNumber(0), ShareNumber(1)].into(),
            share.len() as u64,
            &test_lease(),
            test_upload_secret(),
        )
        .await
        .expect("allocate through the gateway");
    assert_eq!(upload.allocated().len(), 2);
    for shnum in [ShareNumber(0), ShareNumber(1)] {
        upload
            .upload_share(shnum, &share[..])
            .await
            .expect("upload through the gateway");
    }
    let listed = client
        .list_shares(ShareKind::Immutable, &si)
        .await
        .expect("list through the gateway");
    assert_eq!(listed.len(), 2);
    let mut whole = Vec::new();
    client
        .read_share(ShareKind::Immutable, &si, ShareNumber(1), None, &mut whole)
        .await
        .expect("read through the gateway");
    assert!(whole == share, "the share read back differs");
    let mut part = Vec::new();
    client
        .read_share(
            ShareKind::Immutable,
            &si,
            ShareNumber(0),
            ReadRange::new(1000, 5000).expect("range").into(),
            &mut part,
        )
        .await
        .expect("ranged read through the gateway");
    assert_eq!(part, share[1000..6000]);
    client
        .add_or_renew_lease(&si, &test_lease())
        .await
        .expect("lease through the gateway");

    let mutable_si = StorageIndex::from_bytes([10; 16]);
    let enabler = WriteEnabler::new(vec![5; 32]).expect("write enabler");
    let written = client
        .read_test_write(
            &mutable_si,
            &enabler,
            &test_lease(),
            &ReadTestWriteRequest::write(ShareNumber(0), 0, b"mutable through a gateway".to_vec()),
        )
        .await
        .expect("read-test-write through the gateway");
    assert!(written.success);
    let mut mutable = Vec::new();
    client
        .read_share(
            ShareKind::Mutable,
            &mutable_si,
            ShareNumber(0),
            None,
            &mut mutable,
        )
        .await
        .expect("mutable read through the gateway");
    assert_eq!(mutable, b"mutable through a gateway");

    // What was stored through the gateway is the upstream's: readable directly, and its
    // lease secrets are the client's own.
    let mut direct = Vec::new();
    plain_client(node.nurl())
        .read_share(ShareKind::Immutable, &si, ShareNumber(1), None, &mut direct)
        .await
        .expect_err("direct reads need the token too");
    let other_lease = LeaseSecrets {
        renew: gbs::protocol::LeaseRenewSecret::new([8; 32]),
        cancel: gbs::protocol::LeaseCancelSecret::new([9; 32]),
    };
    client
        .add_or_renew_lease(&si, &other_lease)
        .await
        .expect("another lease");
}

/// Input tried: a gateway whose client plugin presents a token the upstream refuses; the
/// plugin gives up, and the client gets the upstream's structured rejection as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_the_plugin_gives_up_on_reaches_the_client_as_the_upstream_sent_it() {
    let node = guarded_node().await;
    let gateway = gateway(vec![node.nurl().to_owned()], "bad-token").await;
    let client = plain_client(&gateway.nurls()[0]);
    match client
        .allocate(
            StorageIndex::from_bytes([1; 16]),
            [ShareNumber(0)].into(),
            4,
            &test_lease(),
            test_upload_secret(),
        )
        .await
    {
        Err(ClientError::PluginRejected(r)) => {
            assert_eq!((r.status, r.plugin.as_str()), (403, "allow-list"), "{r:?}");
            assert!(!r.code.is_empty());
        }
        other => panic!("through a gateway with a bad token: {other:?}"),
    }
    // A swissnum the gateway does not know is refused by the gateway itself.
    let mut wrong: gbs::protocol::Nurl = gateway.nurls()[0].parse().expect("NURL");
    wrong.swissnum = gbs::protocol::Swissnum::new("abcdefghijklmnopqrstuvwxyz234567");
    let stranger = ClientBuilder::new(wrong).build().expect("client");
    assert!(matches!(
        stranger.version().await,
        Err(ClientError::Unauthorized)
    ));
}

/// One gateway, several upstreams: each local NURL leads to its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_upstream_has_its_own_local_nurl() {
    let (a, b) = (guarded_node().await, guarded_node().await);
    let gateway = gateway(vec![a.nurl().to_owned(), b.nurl().to_owned()], "good-token").await;
    assert_eq!(gateway.nurls().len(), 2);
    assert_ne!(gateway.nurls()[0], gateway.nurls()[1]);
    let si = StorageIndex::from_bytes([4; 16]);
    store(&plain_client(&gateway.nurls()[1]), si, 3, b"hi").await;
    for (nurl, expected) in [(&gateway.nurls()[0], 0), (&gateway.nurls()[1], 1)] {
        let listed = plain_client(nurl)
            .list_shares(ShareKind::Immutable, &si)
            .await
            .expect("list");
        assert_eq!(listed.len(), expected, "{nurl}");
    }
}

/// Stock Tahoe's own storage client and raw requests (the conformance suite the interop
/// tests run against a node) give the same results through a gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_tahoe_s_client_suite_passes_through_the_gateway() {
    let node = tokio::task::spawn_blocking(GbsNode::start)
        .await
        .expect("node");
    let gateway = gateway(vec![node.nurl().to_owned()], "unused").await;
    let nurl = gateway.nurls()[0].clone();
    let output = tokio::task::spawn_blocking(move || {
        run_python("stock_client_suite.py", &[&nurl, "--target", "gbs"])
    })
    .await
    .expect("the suite");
    assert_all_passed(&output, "stock_client_suite.py through the gateway", 30);
}

/// The end to end of the issue, with real processes only: a stock Tahoe 1.20 client node
/// whose storage servers are three `gbs` nodes running allow-list. Directly its uploads are
/// refused; through `gbs gateway` (whose client plugin presents the token) `tahoe put` of
/// files from 0 bytes to 32 MiB, `tahoe get` byte for byte, a mutable directory with files
/// linked in, and `tahoe check --verify` all work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_tahoe_client_node_uses_plugin_guarded_servers_through_the_gateway() {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(guarded_node().await);
    }
    let nurls: Vec<String> = nodes.iter().map(|n| n.nurl().to_owned()).collect();
    let gateway = gateway(nurls.clone(), "good-token").await;
    let gateway_dir = gateway.dir().to_owned();
    tokio::task::spawn_blocking(move || {
        let mut direct_args = vec!["servers-yaml"];
        direct_args.extend(nurls.iter().map(String::as_str));
        let direct = TahoeClient::start(&gbs_stdout(&direct_args), 2, 3, 3);
        assert!(
            direct.put_is_refused(),
            "a direct upload without the token succeeded"
        );

        let yaml = gbs_stdout(&[
            "gateway",
            "servers-yaml",
            gateway_dir.to_str().expect("path"),
        ]);
        TahoeClient::start(&yaml, 2, 3, 3).store_files_in_a_directory(32 << 20);
    })
    .await
    .expect("the stock client's session");
}

/// Input tried: upstreams from a stock client's `servers.yaml` (here naming a stock Tahoe
/// 1.20 storage server, with a server id and FURL of its own). The gateway serves it, and
/// its `servers.yaml` keeps the id and FURL (Tahoe derives lease secrets from the FURL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_come_from_a_stock_servers_yaml_and_keep_their_ids() {
    let stock = tokio::task::spawn_blocking(gbs_tests::StockServer::start)
        .await
        .expect("stock server");
    let furl = "pb://ab3kqjwfz2ncs4fi5ilqz2ycn3mbdgqr@tcp:127.0.0.1:1/stock";
    let yaml = format!(
        "storage:\n  v0-stock-server-id:\n    ann:\n      nickname: stock\n\
         \x20     anonymous-storage-FURL: {furl}\n      anonymous-storage-NURLs:\n\
         \x20       - {}\n",
        stock.nurl()
    );
    let gateway = tokio::task::spawn_blocking(move || {
        let dir = GbsNode::create_configured("[gateway]\nservers.yaml = upstreams.yaml\n");
        std::fs::write(dir.path().join("upstreams.yaml"), yaml).expect("write upstreams.yaml");
        GbsGateway::start_in(dir, 1)
    })
    .await
    .expect("gateway");
    let client = plain_client(&gateway.nurls()[0]);
    let si = StorageIndex::from_bytes([6; 16]);
    store(&client, si, 0, b"stock").await;
    let mut back = Vec::new();
    client
        .read_share(ShareKind::Immutable, &si, ShareNumber(0), None, &mut back)
        .await
        .expect("read");
    assert_eq!(back, b"stock");

    let dir = gateway.dir().to_str().expect("path").to_owned();
    let written =
        tokio::task::spawn_blocking(move || gbs_stdout(&["gateway", "servers-yaml", &dir]))
            .await
            .expect("servers-yaml");
    assert!(written.contains("\"v0-stock-server-id\":"), "{written}");
    assert!(
        written.contains(&format!("anonymous-storage-FURL: \"{furl}\"")),
        "{written}"
    );
    assert!(written.contains(&gateway.nurls()[0]), "{written}");
}

/// The `lease` operations the upstream's access-log counted.
async fn leases_counted(node: &GbsNode) -> u64 {
    let answer = plain_client(node.nurl())
        .call_plugin_route(
            "access-log",
            gbs_plugin_interface::RouteRequest::new("GET", "counters", Vec::new()),
        )
        .await
        .expect("counters");
    let counters: ciborium::Value = ciborium::from_reader(answer.body.as_slice()).expect("CBOR");
    let field = |value: &ciborium::Value, key: &str| {
        value
            .as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some(key)))
            .map(|(_, v)| v.clone())
    };
    field(&counters, "operations")
        .and_then(|operations| field(&operations, "lease"))
        .and_then(|n| n.as_integer())
        .and_then(|n| u64::try_from(n).ok())
        .expect("a lease count")
}

/// The gateway keeps the leases of what is stored through it: with `lease-renew-after`
/// of 1 s, an immutable and a mutable storage index stored through it get their leases
/// renewed upstream without any client asking, and the book is private.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_renews_the_leases_of_what_was_stored_through_it() {
    let library = sample_plugin("gbs-sample-access-log");
    let node = tokio::task::spawn_blocking(move || {
        GbsNode::start_configured(&format!(
            "[storage]\nplugins = access-log\n[storageserver.plugins.access-log]\nlibrary = {}\n",
            library.display()
        ))
    })
    .await
    .expect("node");
    let extra = format!(
        "[gateway]\nupstreams = {}\nlease-renew-after = 1s\nlease-check-interval = 1s\n",
        node.nurl()
    );
    let gateway = tokio::task::spawn_blocking(move || GbsGateway::start(&extra, 1))
        .await
        .expect("gateway");
    let client = plain_client(&gateway.nurls()[0]);
    store(&client, StorageIndex::from_bytes([12; 16]), 0, b"abc").await;
    let enabler = WriteEnabler::new(vec![7; 32]).expect("write enabler");
    client
        .read_test_write(
            &StorageIndex::from_bytes([13; 16]),
            &enabler,
            &test_lease(),
            &ReadTestWriteRequest::write(ShareNumber(0), 0, b"m".to_vec()),
        )
        .await
        .expect("mutable write");
    assert_eq!(leases_counted(&node).await, 0, "no client renewed anything");

    let started = std::time::Instant::now();
    while leases_counted(&node).await < 2 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the gateway renewed {} leases in 20 s",
            leases_counted(&node).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let book = gateway.dir().join("private/gateway-leases.json");
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&book).expect("the lease book")).expect("JSON");
    assert_eq!(kept.as_array().map(Vec::len), Some(2), "{kept}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&book)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
