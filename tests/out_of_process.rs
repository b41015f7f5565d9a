//! Out-of-process plugins: a service the operator runs (`url`), here a test service in
//! this process whose behaviour each test switches, and a process the node starts and
//! supervises (`command`), the Python quota sample. The node fails closed while a plugin is
//! unreachable or past its deadline, serves everything else meanwhile, and recovers
//! without a restart; a plugin answering nonsense costs only the requests it guards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gbs::client::{Client, ClientBuilder, ClientError};
use gbs::config::{PluginSource, PluginSpec};
use gbs::plugins::registry::open_library;
use gbs::plugins::ClientPluginHandle;
use gbs::protocol::{ShareKind, ShareNumber, StorageIndex};
use gbs_plugin_interface::RouteRequest;
use gbs_tests::{
    gbs_binary, sample_plugin, tahoe_python, test_lease, test_upload_secret, Behaviour, GbsNode,
    PluginService, FORGED_VERSION,
};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_declares_only_admit_is_never_sent_committed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = service(dir.path(), Behaviour::AdmitOnly).await;
    let node = node_using(service.url()).await;
    let client = node.client();
    for _ in 0..3 {
        guarded(&client).await.expect("admitted");
    }
    assert_eq!(service.admits(), 3);
    assert_eq!(service.committed(), 0, "it declared no `committed`");
    let status = gbs_json(&["plugin", "status", "--json"], node.dir()).await;
    assert_eq!(status["plugins"][0]["hooks"], serde_json::json!(["admit"]));
}

/// One request at a time, the host keeps using the connection it has: opening one per
/// call would cost a connect and an accept on each side of every hook call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_one_at_a_time_reuse_a_kept_alive_connection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = service(dir.path(), Behaviour::Admit).await;
    let node = node_using(service.url()).await;
    let client = node.client();
    guarded(&client).await.expect("admitted");
    let before = service.connections();
    for _ in 0..20 {
        guarded(&client).await.expect("admitted");
    }
    assert_eq!(service.admits(), 21);
    assert_eq!(service.committed(), 21);
    let opened = service.connections() - before;
    assert!(
        opened <= 2,
        "40 calls one at a time opened {opened} new connections"
    );
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

    // Input tried: a description naming a hook the protocol does not have. It answered,
    // so it is incompatible, not unavailable (as it was called before).
    let misspelt = PluginService::start(
        &dir.path().join("misspelt.sock"),
        "fake",
        Behaviour::MisspeltHook,
    )
    .await;
    let output = refused_start(&misspelt.url(), "5s").await;
    assert!(
        output.contains("storage plugin fake: incompatible: describe: unknown name \"comitted\""),
        "{output}"
    );
}

/// Input tried: a command that starts a process of its own, writes a line and exits with
/// status 3 before serving. What it started goes with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_process_that_exits_at_start_stops_start_up_at_once_with_its_output() {
    let started = Instant::now();
    let output = refused_start_with(
        "command = sh -c 'sleep 601.7 & echo cannot-start-as-configured >&2; exit 3'",
        "30s",
    )
    .await;
    let left = || {
        Command::new("pgrep")
            .args(["-f", "^sleep 601.7$"])
            .output()
            .expect("run pgrep")
            .stdout
    };
    let ended = Instant::now();
    while !left().is_empty() {
        assert!(
            ended.elapsed() < Duration::from_secs(5),
            "the plugin process's own child outlived it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "start-up took {:?} to give up",
        started.elapsed()
    );
    assert!(
        output.contains("storage plugin fake: unavailable") && output.contains("exit status 3"),
        "{output}"
    );
    // Its output reached the node's log, tagged with the plugin.
    assert!(
        output
            .lines()
            .any(|l| l.contains("cannot-start-as-configured") && l.contains("fake")),
        "{output}"
    );
}

/// Runs `gbs run` on a node using the service at `url`, expecting it to refuse to start;
/// answers its stderr.
async fn refused_start(url: &str, deadline: &str) -> String {
    refused_start_with(&format!("url = {url}"), deadline).await
}

/// The same with the plugin's `source` line (`url = ...` or `command = ...`).
async fn refused_start_with(source: &str, deadline: &str) -> String {
    let extra = format!(
        "[storage]\nplugins = fake\n[storageserver.plugins.fake]\n{source}\n\
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
    assert!(out.contains("plugin: fake 0.1.0 (server, client)"), "{out}");

    service.set(Behaviour::FutureProtocol);
    let (code, out) = check(&[&service.url()]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("it speaks protocol version 2; this host speaks 1"),
        "{out}"
    );

    // Input tried: a description naming a hook the protocol does not have. The service
    // answered, so it is an incompatible plugin, not an unusable address (it was called
    // unusable before).
    service.set(Behaviour::MisspeltHook);
    let (code, out) = check(&[&service.url()]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(": incompatible"), "{out}");
    assert!(
        out.contains("unknown name \"comitted\" in \"hooks\" (known: admit, committed)"),
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

/// The Python quota sample, as `command = ...`.
fn quota_py_command() -> String {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-plugins/quota-py/quota_plugin.py");
    format!("\"{}\" \"{}\"", tahoe_python().display(), script.display())
}

/// How the quota plugin is run.
#[derive(Debug, Clone, Copy)]
enum Twin {
    /// The Rust library, in process.
    InProcess,
    /// The Python sample, started and supervised by the node.
    Python,
}

/// A node running the quota plugin as `twin` with 1,000 bytes per account.
async fn quota_node(twin: Twin) -> GbsNode {
    let source = match twin {
        Twin::InProcess => format!("library = {}", sample_plugin("gbs-quota").display()),
        Twin::Python => format!("command = {}", quota_py_command()),
    };
    tokio::task::spawn_blocking(move || {
        GbsNode::start_configured(&format!(
            "[storage]\nplugins = quota\n[storageserver.plugins.quota]\n{source}\n\
             quota-bytes = 1000\n[gbs]\nplugin_deadline = 5s\n"
        ))
    })
    .await
    .expect("start the node")
}

/// Input tried: `gbs run DIR` with DIR relative to the current directory, and the Python
/// quota plugin as `command = ...`. The plugin runs in the node directory, so the state
/// directory and socket it is handed must be absolute: it starts, and admits and counts an
/// upload within its quota.
#[tokio::test]
async fn a_command_plugin_starts_when_the_node_directory_is_relative() {
    let node = tokio::task::spawn_blocking(|| {
        GbsNode::start_relative(GbsNode::create_configured(&format!(
            "[storage]\nplugins = quota\n[storageserver.plugins.quota]\ncommand = {}\n\
             quota-bytes = 1000\n[gbs]\nplugin_deadline = 5s\n",
            quota_py_command()
        )))
    })
    .await
    .expect("start the node");
    let client = quota_client(&node, "alice");
    allocate(&client, 0x71, 1, 300).await.expect("within quota");
    assert_eq!(used(&client, "alice").await, 300);
}

/// A client of `node` whose quota client plugin presents `account`.
fn quota_client(node: &GbsNode, account: &str) -> Client {
    let library = open_library(&sample_plugin("gbs-quota")).expect("open gbs-quota");
    let settings = [("account".to_owned(), account.to_owned())].into();
    let plugin = ClientPluginHandle::build(node.dir(), "quota", &settings, &library)
        .expect("the quota client plugin");
    ClientBuilder::new(node.nurl().parse().expect("NURL"))
        .plugin(plugin)
        .build()
        .expect("client")
}

async fn allocate(client: &Client, seed: u8, shares: u8, size: u64) -> Result<(), ClientError> {
    let numbers = (0..u16::from(shares)).map(ShareNumber).collect();
    let si = StorageIndex::from_bytes([seed; 16]);
    let upload = client
        .allocate(si, numbers, size, &test_lease(), test_upload_secret())
        .await?;
    for shnum in upload.allocated().clone() {
        let data = vec![seed ^ shnum.0 as u8; size as usize];
        upload.upload_share(shnum, &data[..]).await?;
    }
    Ok(())
}

/// What the `usage` route says `account` used.
async fn used(client: &Client, account: &str) -> u64 {
    let mut request = RouteRequest::new("GET", "usage", Vec::new());
    request.query = format!("account={account}").into();
    let answer = client
        .call_plugin_route("quota", request)
        .await
        .expect("usage route");
    assert_eq!(answer.status, 200, "{answer:?}");
    let value: ciborium::Value = ciborium::from_reader(answer.body.as_slice()).expect("CBOR");
    value
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("used")))
        .and_then(|(_, v)| v.as_integer())
        .and_then(|i| u64::try_from(i).ok())
        .expect("a used count")
}

/// The same traffic against either twin, answering everything the client saw and the
/// usage file left behind, so that the two can be compared.
async fn quota_scenario(node: &GbsNode) -> Vec<String> {
    let alice = quota_client(node, "alice");
    let anonymous = node.client();
    let mut seen = Vec::new();
    let mut record = |what: &str, answer: Result<(), ClientError>| {
        seen.push(match answer {
            Ok(()) => format!("{what}: ok"),
            Err(ClientError::PluginRejected(r)) => {
                let details: Option<ciborium::Value> =
                    ciborium::from_reader(r.details.as_slice()).ok();
                format!("{what}: {} {} {} {details:?}", r.status, r.code, r.message)
            }
            Err(other) => format!("{what}: {other}"),
        })
    };
    record("alice 1 x 300", allocate(&alice, 1, 1, 300).await);
    // Shares the server already holds are free.
    record("alice the same again", allocate(&alice, 1, 1, 300).await);
    record("alice 2 x 300", allocate(&alice, 2, 2, 300).await);
    record("alice 1 x 200", allocate(&alice, 3, 1, 200).await);
    record("anonymous 1 x 10", allocate(&anonymous, 4, 1, 10).await);
    record("alice 1 x 100", allocate(&alice, 5, 1, 100).await);
    seen.push(format!("alice used {}", used(&alice, "alice").await));
    seen
}

/// Input tried: allocations within, at and past the quota, one without an account, one of
/// shares already held; the same answers from the Python process as from the Rust library.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_quota_plugin_behaves_as_its_in_process_twin() {
    let mut transcripts = Vec::new();
    let mut files = Vec::new();
    for twin in [Twin::InProcess, Twin::Python] {
        let node = quota_node(twin).await;
        transcripts.push(quota_scenario(&node).await);
        let file = node.dir().join("plugins-state/quota/usage.json");
        files.push(
            std::fs::read(&file).unwrap_or_else(|e| panic!("{twin:?}: {}: {e}", file.display())),
        );
    }
    let rust = &transcripts[0];
    assert_eq!(
        rust[..3],
        [
            "alice 1 x 300: ok",
            "alice the same again: ok",
            "alice 2 x 300: ok"
        ]
    );
    assert!(
        rust[3].starts_with("alice 1 x 200: 413 quota-exceeded"),
        "{rust:?}"
    );
    assert!(rust[3].contains("900"), "{rust:?}");
    assert!(
        rust[4].starts_with("anonymous 1 x 10: 401 quota-no-account"),
        "{rust:?}"
    );
    assert_eq!(rust[5..], ["alice 1 x 100: ok", "alice used 1000"]);
    assert_eq!(
        transcripts[0], transcripts[1],
        "the twins answered differently"
    );
    assert_eq!(files[0], files[1], "the twins left different usage files");
}

/// The plugin process killed mid-traffic: what it guards fails closed (503), everything
/// else is served, it is started again and traffic resumes, with nothing stored lost; when
/// the node stops, so does the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_plugin_process_fails_closed_restarts_and_loses_nothing() {
    let node = quota_node(Twin::Python).await;
    let alice = quota_client(&node, "alice");
    allocate(&alice, 1, 1, 300).await.expect("within the quota");
    let first = plugin_processes(node.pid());
    assert_eq!(first.len(), 1, "one plugin process: {first:?}");
    kill(first[0]);

    let mut refused = 0;
    let started = Instant::now();
    loop {
        match allocate(&alice, 2, 1, 100).await {
            Ok(()) => break,
            Err(ClientError::PluginRejected(r)) if r.status == 503 => {
                assert_eq!(
                    (r.plugin.as_str(), r.code.as_str()),
                    ("quota", "plugin-unavailable")
                );
                refused += 1;
                // Unguarded operations are served meanwhile.
                alice
                    .version()
                    .await
                    .expect("version while the plugin is down");
            }
            Err(other) => panic!("while the plugin restarts: {other}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the plugin did not come back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused > 0,
        "no allocation failed closed while the plugin was down"
    );
    let second = plugin_processes(node.pid());
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(
        second[0], first[0],
        "the plugin process was not started again"
    );
    // What it had charged survived the kill; what was stored is intact.
    assert_eq!(used(&alice, "alice").await, 400);
    let mut out = Vec::new();
    alice
        .read_share(
            ShareKind::Immutable,
            &StorageIndex::from_bytes([1; 16]),
            ShareNumber(0),
            None,
            &mut out,
        )
        .await
        .expect("read the share stored before the kill");
    assert_eq!(out, vec![1u8; 300]);

    let (status, _dir) = tokio::task::spawn_blocking(move || node.stop())
        .await
        .expect("stop the node");
    assert!(status.success(), "gbs run exited with {status}");
    assert!(
        !Path::new(&format!("/proc/{}", second[0])).exists(),
        "the plugin process outlived the node"
    );
}

/// Input tried: SIGKILL to a plugin process the node started (the quota sample, which
/// logs a line when told to `start`). The node starts it again and tells the new process to
/// `start` too: it used to send `start` once, so a service a plugin runs in the background
/// never ran again after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_plugin_process_is_told_to_start_again() {
    let (node, log, _logs) = logged_node(format!(
        "[storage]\nplugins = quota\n[storageserver.plugins.quota]\ncommand = {}\n\
         quota-bytes = 1000\n",
        quota_py_command()
    ))
    .await;
    let starts = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("plugin output: quota: serving: 1000 bytes per account")
            .count()
    };
    let waited = Instant::now();
    while starts() < 1 {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "never told to start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = plugin_processes(node.pid());
    assert_eq!(first.len(), 1, "{first:?}");
    kill(first[0]);
    let killed = Instant::now();
    while starts() < 2 {
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "the process started again was not told to start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = plugin_processes(node.pid());
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second, first, "the plugin process was not started again");
    // What it guards is served again.
    let alice = quota_client(&node, "alice");
    allocate(&alice, 3, 1, 300).await.expect("within the quota");
    let (status, _dir) = tokio::task::spawn_blocking(move || node.stop())
        .await
        .expect("stop the node");
    assert!(status.success(), "gbs run exited with {status}");
    assert_eq!(starts(), 2, "told to start once per process");
}

/// Input tried: SIGTERM to a node whose plugin process ignores its stdin closing (the quota
/// sample with its stdin held open by `tail`), while a download nobody reads is still in
/// flight when the drain time runs out, with a 2 s plugin deadline (shorter than the 4 s
/// the process is given to exit). The node still stops the plugin's process group before
/// it exits: it used to give up with the deadline and leave it running, adopted by init.
/// Its log tells the process's kill, not a `stop` left unanswered: the plugin answered at
/// once, and the log used to say it had not answered within the 2 s its exit took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_process_that_ignores_its_stdin_closing_does_not_outlive_the_node() {
    let command = format!(
        "sh -c 'tail -f /dev/null | exec \"$0\" \"$1\"' {}",
        quota_py_command()
    );
    let (node, log, _logs) = logged_node(format!(
        "[storage]\nplugins = quota\n[storageserver.plugins.quota]\ncommand = {command}\n\
         quota-bytes = 100000000\n[gbs]\nplugin_deadline = 2s\ndrain_timeout = 1s\n"
    ))
    .await;
    let started = plugin_processes(node.pid());
    assert_eq!(started.len(), 1, "{started:?}");
    let group = started[0];
    // A share large enough that its download is still in flight at the drain time.
    let alice = quota_client(&node, "alice");
    allocate(&alice, 0x72, 1, 32 << 20).await.expect("upload");
    let mut stalled = gbs_tests::RawConnection::connect(node.nurl())
        .await
        .expect("connect");
    let path = gbs::protocol::paths::immutable_share(
        &StorageIndex::from_bytes([0x72; 16]),
        ShareNumber(0),
    );
    stalled
        .send_head("GET", &path, &[], 0)
        .await
        .expect("ask for the share");
    let in_group = move || {
        gbs_tests::processes()
            .into_iter()
            .filter(|p| p.group == group)
            .count()
    };
    assert!(
        in_group() >= 2,
        "the plugin's process group (sh, tail, python)"
    );
    let (status, _dir) = tokio::task::spawn_blocking(move || node.stop())
        .await
        .expect("stop the node");
    assert!(status.success(), "gbs run exited with {status}");
    let stopped = Instant::now();
    while in_group() > 0 {
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "the plugin's processes outlived the node"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stalled);
    let log = std::fs::read_to_string(&log).expect("read the node's log");
    assert!(
        log.contains("did not exit within 4s of its stdin closing; killed"),
        "{log}"
    );
    assert!(!log.contains("did not answer"), "{log}");
}

/// Input tried: a node directory holding a socket left by a process that no longer runs
/// (a node killed earlier). The node removes it when it starts its plugin process, and
/// removes that process's own socket when it stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_sockets_are_removed_once_their_processes_are_gone() {
    let dir = GbsNode::create_configured(&format!(
        "[storage]\nplugins = quota\n[storageserver.plugins.quota]\ncommand = {}\n\
         quota-bytes = 1000\n",
        quota_py_command()
    ));
    let sockets = dir.path().join("private").join("plugin-sockets");
    std::fs::create_dir_all(&sockets).expect("create the sockets' directory");
    // Above any Linux pid_max, so no process has it.
    let stale = sockets.join("quota.999999999.0.sock");
    std::fs::write(&stale, b"").expect("a stale socket file");
    let listed = move || -> Vec<String> {
        std::fs::read_dir(&sockets)
            .expect("the sockets' directory")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    };
    let node = tokio::task::spawn_blocking(move || GbsNode::start_in(dir))
        .await
        .expect("start the node");
    let running = listed();
    assert_eq!(running.len(), 1, "{running:?}");
    assert!(
        running[0].starts_with(&format!("quota.{}.", node.pid())),
        "{running:?}"
    );
    let (status, _dir) = tokio::task::spawn_blocking(move || node.stop())
        .await
        .expect("stop the node");
    assert!(status.success(), "gbs run exited with {status}");
    assert_eq!(listed(), Vec::<String>::new());
}

/// The processes `pid` started (the children of each of its threads).
/// A node whose `tahoe.cfg` ends with `extra`, logging (from level info) to the file
/// returned, which lasts as long as the directory returned with it.
async fn logged_node(extra: String) -> (GbsNode, PathBuf, tempfile::TempDir) {
    let logs = tempfile::tempdir().expect("a directory for the log");
    let log = logs.path().join("gbs.log");
    let node = tokio::task::spawn_blocking({
        let log = log.clone();
        move || GbsNode::start_logged(GbsNode::create_configured(&extra), &log)
    })
    .await
    .expect("start the node");
    (node, log, logs)
}

fn plugin_processes(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the node's threads");
    for task in tasks.flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        children.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    children
}

fn kill(pid: u32) {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// `gbs plugin check --command`: the process is started, describes itself and is stopped;
/// one that exits at once is unusable, with its exit status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_check_starts_a_command_and_stops_it() {
    let command = format!("{} --setting quota-bytes=1000", quota_py_command());
    let (code, out) = check(&["--command", &command]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("plugin: quota 1.0.0 (server)"), "{out}");
    assert!(out.contains("interface: out-of-process 1"), "{out}");
    // Input tried: the same plugin without its required setting (it exits with status 2).
    // The report gives its exit status and the last line it wrote, which says why (it
    // gave only the status before).
    let (code, out) = check(&["--command", &quota_py_command()]).await;
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("exit status 2; its last output: quota: "),
        "{out}"
    );
    assert!(out.contains("quota-bytes"), "{out}");
    // Input tried: a command that never listens and ignores its stdin closing, checked
    // with a 1 s timeout. It has had its time, so it is killed at once; the check waited
    // out the 4 s stop grace as well before.
    let started = Instant::now();
    let (code, out) = check(&["--timeout", "1", "--command", "sleep 30"]).await;
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("unusable"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// Reloads of a host-started plugin: unchanged, it keeps its process; with new settings a
/// new process takes over and the old one is stopped; removed, its process is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_keep_replace_and_stop_plugin_processes() {
    let node = quota_node(Twin::Python).await;
    let cfg = node.dir().join("tahoe.cfg");
    let original = std::fs::read_to_string(&cfg).expect("tahoe.cfg");
    let first = plugin_processes(node.pid());
    assert_eq!(first.len(), 1, "{first:?}");

    // `status` and `list` treat it as they treat a library.
    let status = gbs_json(&["plugin", "status", "--json"], node.dir()).await;
    let status = &status["plugins"];
    assert_eq!(status[0]["interface"], "out-of-process 1", "{status}");
    assert!(
        status[0]["library"]
            .as_str()
            .is_some_and(|l| l.starts_with("command ")),
        "{status}"
    );
    // A hash of the files its command line names (the script, the venv's Python).
    let hash = status[0]["library_hash"].as_str().unwrap_or_default();
    assert!(
        hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{status}"
    );
    let dir = node.dir().to_owned();
    let list = tokio::task::spawn_blocking(move || {
        Command::new(gbs_binary())
            .args(["plugin", "list"])
            .arg(&dir)
            .output()
    })
    .await
    .expect("list")
    .expect("run gbs plugin list");
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{listed}");
    assert!(listed.contains("quota 1.0.0"), "{listed}");

    let answer = reload(node.dir()).await;
    assert_eq!(answer["plugins"][0]["change"], "kept", "{answer}");
    assert_eq!(plugin_processes(node.pid()), first);

    std::fs::write(
        &cfg,
        original.replace("quota-bytes = 1000", "quota-bytes = 2000"),
    )
    .expect("write tahoe.cfg");
    let answer = reload(node.dir()).await;
    assert_eq!(answer["plugins"][0]["change"], "replaced", "{answer}");
    let alice = quota_client(&node, "alice");
    allocate(&alice, 1, 1, 1500)
        .await
        .expect("the new settings are in force");
    let second = wait_for_processes(node.pid(), |p| p.len() == 1 && p[0] != first[0]).await;
    assert!(!Path::new(&format!("/proc/{}", first[0])).exists());

    let without = original.replace("plugins = quota\n", "plugins =\n");
    std::fs::write(&cfg, without).expect("write tahoe.cfg");
    let answer = reload(node.dir()).await;
    assert_eq!(answer["plugins"][0]["change"], "removed", "{answer}");
    wait_for_processes(node.pid(), Vec::is_empty).await;
    assert!(!Path::new(&format!("/proc/{}", second[0])).exists());
    node.client().version().await.expect("the node serves on");
}

/// Input tried: a service whose version holds a newline and a terminal escape, added by
/// `gbs plugin reload`. It is refused (a version is printable text), and the reload
/// prints one line for it, escaped, as `status` does: nothing it says reaches the terminal
/// raw.
#[tokio::test]
async fn reload_refuses_a_forged_version_and_prints_it_escaped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _service = service(dir.path(), Behaviour::ForgedVersion).await;
    let node = tokio::task::spawn_blocking(|| GbsNode::start_configured("[storage]\nplugins =\n"))
        .await
        .expect("start the node");
    let cfg = node.dir().join("tahoe.cfg");
    let text = std::fs::read_to_string(&cfg).expect("tahoe.cfg");
    let url = format!("unix:{}", dir.path().join("fake.sock").display());
    std::fs::write(
        &cfg,
        text.replace(
            "[storage]\nplugins =\n",
            &format!("[storage]\nplugins = fake\n[storageserver.plugins.fake]\nurl = {url}\n"),
        ),
    )
    .expect("write tahoe.cfg");
    let dir_of_node = node.dir().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(gbs_binary())
            .args(["plugin", "reload"])
            .arg(&dir_of_node)
            .output()
            .expect("run gbs plugin reload")
    })
    .await
    .expect("gbs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(stdout.starts_with("fake: refused: "), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
    assert!(stdout.contains("holds control characters"), "{stdout}");
    assert!(FORGED_VERSION.contains('\u{1b}'));
}

async fn reload(dir: &Path) -> serde_json::Value {
    gbs_json(&["plugin", "reload", "--json"], dir).await
}

/// Input tried: the script of a `command =` plugin edited on disk while its section stays
/// the same. A reload replaces the plugin, and a new process runs the new script; the old
/// process was kept before, since only the configuration was compared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_replaces_a_command_plugin_whose_script_changed() {
    let scripts = tempfile::tempdir().expect("temp dir");
    let script = scripts.path().join("quota_plugin.py");
    let original =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-plugins/quota-py/quota_plugin.py");
    std::fs::copy(&original, &script).expect("copy the script");
    let command = format!("\"{}\" \"{}\"", tahoe_python().display(), script.display());
    let node = tokio::task::spawn_blocking(move || {
        GbsNode::start_configured(&format!(
            "[storage]\nplugins = quota\n[storageserver.plugins.quota]\ncommand = {command}\n\
             quota-bytes = 1000\n[gbs]\nplugin_deadline = 5s\n"
        ))
    })
    .await
    .expect("start the node");
    let first = plugin_processes(node.pid());
    assert_eq!(first.len(), 1, "{first:?}");
    let answer = reload(node.dir()).await;
    assert_eq!(answer["plugins"][0]["change"], "kept", "{answer}");

    let mut edited = std::fs::read_to_string(&script).expect("read the script");
    edited.push_str("\n# edited while the node runs\n");
    std::fs::write(&script, edited).expect("edit the script");
    let answer = reload(node.dir()).await;
    assert_eq!(answer["plugins"][0]["change"], "replaced", "{answer}");
    wait_for_processes(node.pid(), |p| p.len() == 1 && p[0] != first[0]).await;
    let alice = quota_client(&node, "alice");
    allocate(&alice, 1, 1, 500)
        .await
        .expect("the new process admits within the quota");
}

/// Runs `gbs ARGS DIR`, which must succeed, and answers its JSON output.
async fn gbs_json(args: &[&str], dir: &Path) -> serde_json::Value {
    let (args, dir): (Vec<String>, _) = (
        args.iter().map(|a| (*a).to_owned()).collect(),
        dir.to_owned(),
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new(gbs_binary())
            .args(&args)
            .arg(&dir)
            .output()
            .expect("run gbs")
    })
    .await
    .expect("gbs");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// The node's child processes once `done` says so (the old process of a replaced plugin
/// is stopped when the requests that used it are done).
async fn wait_for_processes(pid: u32, done: impl Fn(&Vec<u32>) -> bool) -> Vec<u32> {
    let started = Instant::now();
    loop {
        let processes = plugin_processes(pid);
        if done(&processes) {
            return processes;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "plugin processes are still {processes:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The client side out of process: the service's client hooks attach the data its server
/// side requires; without them the server refuses; while the client plugin is unreachable
/// the operation fails in the client, before any request is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_process_client_plugin_attaches_what_its_server_side_requires() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut service = service(dir.path(), Behaviour::RequireData).await;
    let node = node_using(service.url()).await;

    assert_eq!(
        rejection(guarded(&node.client()).await),
        (403, "fake".into(), "fake-says-no".into())
    );

    let spec = PluginSpec {
        name: "fake".into(),
        source: PluginSource::Url(service.url()),
        settings: BTreeMap::new(),
    };
    let client_dir = tempfile::tempdir().expect("temp dir");
    let (spec_dir, deadline) = (client_dir.path().to_owned(), Duration::from_secs(2));
    let plugin =
        tokio::task::spawn_blocking(move || ClientPluginHandle::remote(&spec_dir, &spec, deadline))
            .await
            .expect("load")
            .expect("the out-of-process client plugin");
    let client = ClientBuilder::new(node.nurl().parse().expect("NURL"))
        .plugin(plugin)
        .build()
        .expect("client");
    guarded(&client)
        .await
        .expect("admitted with the client plugin's data");
    assert!(service.prepared() >= 1);
    let committed = service.committed();
    guarded(&client).await.expect("admitted again");
    // The server side and the client side were both told.
    assert_eq!(service.committed(), committed + 2);

    service.stop().await;
    let admits = service.admits();
    match guarded(&client).await {
        Err(ClientError::Plugin { plugin, .. }) => assert_eq!(plugin, "fake"),
        other => panic!("with the client plugin unreachable: {other:?}"),
    }
    assert_eq!(
        service.admits(),
        admits,
        "a request went out without the plugin"
    );
}
