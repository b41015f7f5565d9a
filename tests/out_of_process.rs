//! Out-of-process plugins: a service the operator runs (`url`), here a test service in
//! this process whose behaviour each test switches, and a process the node starts and
//! supervises (`command`), the Python quota sample. The node fails closed while a plugin is
//! unreachable or past its deadline, serves everything else meanwhile, and recovers
//! without a restart; a plugin answering nonsense costs only the requests it guards.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gbs::client::{Client, ClientError};
use gbs::protocol::{ShareKind, ShareNumber, StorageIndex};
use gbs_tests::{gbs_binary, test_lease, test_upload_secret, Behaviour, GbsNode, PluginService};

/// A node whose one server plugin is the service at `url`, with a 2 s hook deadline.
async fn node_using(url: String) -> GbsNode {
    tokio::task::spawn_blocking(move || {
        GbsNode::start_configured(&format!(
            "[storage]\nplugins = fake\n[storageserver.plugins.fake]\nurl = {url}\n\
             [gbs]\nplugin_deadline = 2s\n"
        ))
    })
    .await
    .expect("start the node")
}

async fn service(dir: &Path, behaviour: Behaviour) -> PluginService {
    PluginService::start(&dir.join("fake.sock"), "fake", behaviour).await
}

fn si() -> StorageIndex {
    StorageIndex::from_bytes([3; 16])
}

/// Lists shares (guarded by the service) and reads `version` (not guarded).
async fn guarded(client: &Client) -> Result<(), ClientError> {
    client
        .list_shares(ShareKind::Immutable, &si())
        .await
        .map(drop)
}

fn rejection(answer: Result<(), ClientError>) -> (u16, String, String) {
    match answer {
        Err(ClientError::PluginRejected(r)) => (r.status, r.plugin, r.code),
        other => panic!("expected a plugin rejection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_run_service_admits_rejects_and_is_told_of_commits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = service(dir.path(), Behaviour::Admit).await;
    let node = node_using(service.url()).await;
    let client = node.client();

    let announcements = client.plugin_announcements().await.expect("announcements");
    assert_eq!(announcements.len(), 1);
    assert_eq!(announcements[0].name, "fake");

    guarded(&client).await.expect("admitted");
    let upload = client
        .allocate(
            si(),
            [ShareNumber(0)].into(),
            4,
            &test_lease(),
            test_upload_secret(),
        )
        .await
        .expect("allocation admitted");
    upload
        .upload_share(ShareNumber(0), &b"data"[..])
        .await
        .expect("upload is not guarded");
    // Every admitted operation's `committed` reached the service (listing and allocation).
    assert_eq!(service.committed(), 2);

    service.set(Behaviour::Reject);
    assert_eq!(
        rejection(guarded(&client).await),
        (403, "fake".into(), "fake-says-no".into())
    );
    client.version().await.expect("version is not guarded");
    assert_eq!(service.admits(), 3);
}

/// Inputs tried: an `admit` that never answers, one that answers bytes that are not
/// CBOR, one 4 MiB answer, and one that drips a byte every 100 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_hangs_garbles_floods_or_drips_costs_only_its_requests() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = service(dir.path(), Behaviour::Admit).await;
    let node = node_using(service.url()).await;
    let client = node.client();
    for (behaviour, timed_out) in [
        (Behaviour::Hang, true),
        (Behaviour::Drip, true),
        (Behaviour::Garbage, false),
        (Behaviour::Huge, false),
    ] {
        service.set(behaviour);
        let call = {
            let client = client.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                (guarded(&client).await, started.elapsed())
            })
        };
        // Meanwhile, what the plugin does not guard keeps being served.
        for _ in 0..5 {
            let started = Instant::now();
            client.version().await.expect("version");
            assert!(started.elapsed() < Duration::from_secs(1), "{behaviour:?}");
        }
        let (answer, took) = call.await.expect("the guarded call");
        if timed_out {
            assert_eq!(
                rejection(answer),
                (503, "fake".into(), "plugin-timeout".into()),
                "{behaviour:?}"
            );
            assert!(
                took >= Duration::from_secs(2) && took < Duration::from_secs(6),
                "{behaviour:?} failed after {took:?}, not at the 2 s deadline"
            );
        } else {
            match answer {
                Err(ClientError::UnexpectedStatus { status, .. }) => {
                    assert_eq!(status, 500, "{behaviour:?}")
                }
                other => panic!("{behaviour:?}: expected 500, got {other:?}"),
            }
        }
        service.set(Behaviour::Admit);
        guarded(&client).await.expect("admitted again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_service_fails_closed_and_traffic_resumes_when_it_returns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut service = service(dir.path(), Behaviour::Admit).await;
    let node = node_using(service.url()).await;
    let client = node.client();
    guarded(&client).await.expect("admitted");

    service.stop().await;
    for _ in 0..3 {
        assert_eq!(
            rejection(guarded(&client).await),
            (503, "fake".into(), "plugin-unavailable".into())
        );
        client.version().await.expect("version is served meanwhile");
    }
    service.restart();
    guarded(&client)
        .await
        .expect("admitted again without restarting the node");
}

/// Input tried: a socket nobody listens on, and a service that calls itself another name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_does_not_start_with_a_service_that_is_absent_or_not_the_named_plugin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let absent = format!("unix:{}", dir.path().join("nobody.sock").display());
    let output = refused_start(&absent, "1s").await;
    assert!(
        output.contains("storage plugin fake: unavailable") && output.contains("nobody.sock"),
        "{output}"
    );

    let other =
        PluginService::start(&dir.path().join("other.sock"), "other", Behaviour::Admit).await;
    let output = refused_start(&other.url(), "5s").await;
    assert!(
        output.contains("storage plugin fake: incompatible: it calls itself \"other\""),
        "{output}"
    );
}

/// Runs `gbs run` on a node using the service at `url`, expecting it to refuse to start;
/// answers its stderr.
async fn refused_start(url: &str, deadline: &str) -> String {
    let extra = format!(
        "[storage]\nplugins = fake\n[storageserver.plugins.fake]\nurl = {url}\n\
         [gbs]\nplugin_deadline = {deadline}\n"
    );
    tokio::task::spawn_blocking(move || {
        let dir = GbsNode::create_configured(&extra);
        let output = Command::new(gbs_binary())
            .arg("run")
            .arg(dir.path())
            .output()
            .expect("run gbs");
        assert!(!output.status.success(), "gbs run started");
        String::from_utf8_lossy(&output.stderr).into_owned()
    })
    .await
    .expect("gbs run")
}

/// `gbs plugin check` of a service: compatible, a future protocol, and nobody there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_check_asks_a_service_to_describe_itself() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = service(dir.path(), Behaviour::Admit).await;
    let (code, out) = check(&[&service.url()]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(": compatible"), "{out}");
    assert!(out.contains("plugin: fake 0.1.0 (server)"), "{out}");

    service.set(Behaviour::FutureProtocol);
    let (code, out) = check(&[&service.url()]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("it speaks protocol version 2; this host speaks 1"),
        "{out}"
    );

    let absent = format!("unix:{}", dir.path().join("nobody.sock").display());
    let (code, out) = check(&["--timeout", "1", &absent]).await;
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("unusable"), "{out}");

    let (code, out) = check(&["http://10.1.2.3:80"]).await;
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("not a loopback address"), "{out}");
}

async fn check(args: &[&str]) -> (Option<i32>, String) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let output = Command::new(gbs_binary())
            .args(["plugin", "check"])
            .args(&args)
            .output()
            .expect("run gbs plugin check");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    })
    .await
    .expect("gbs plugin check")
}
