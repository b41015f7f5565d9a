//! Storage plugin hooks end to end: the real `gbs` binary serving a node whose `tahoe.cfg`
//! names the sample plugins (real `.so` files built by the test) and the fixture plugins,
//! driven by our client with and without the client side of the plugins.
//!
//! Covered: announcements, admission and the structured rejection, the client's retry with
//! new plugin data, plugin routes, `committed` with real outcomes (through access-log's
//! counters), the background service's stop (access-log saves its counters), a panicking
//! plugin failing one request while the server goes on, start-up refusals naming the
//! plugin, and plugins built against other interface minors (the samples on 1.0 included).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use gbs::client::{Client, ClientBuilder, ClientError};
use gbs::plugins::registry::open_library;
use gbs::plugins::ClientPluginHandle;
use gbs::protocol::{Nurl, ShareKind, ShareNumber, StorageIndex};
use gbs_plugin_interface::RouteRequest;
use gbs_tests::{
    fixture_library, gbs_binary, panicking_plugin, sample_plugin, test_lease, test_upload_secret,
    GbsNode,
};

fn access_log() -> PathBuf {
    sample_plugin("gbs-sample-access-log")
}

fn allow_list() -> PathBuf {
    sample_plugin("gbs-sample-allow-list")
}

/// A new node directory whose `tahoe.cfg` lists `plugins` with their sections (keys and
/// values as written).
fn node_with_plugins(plugins: &[(&str, &[(&str, &str)])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    GbsNode::create(dir.path());
    let cfg_path = dir.path().join("tahoe.cfg");
    let mut cfg = std::fs::read_to_string(&cfg_path).expect("read tahoe.cfg");
    let names: Vec<&str> = plugins.iter().map(|(name, _)| *name).collect();
    cfg = cfg.replacen(
        "[storage]\n",
        &format!("[storage]\nplugins = {}\n", names.join(", ")),
        1,
    );
    for (name, keys) in plugins {
        cfg.push_str(&format!("\n[storageserver.plugins.{name}]\n"));
        for (key, value) in *keys {
            cfg.push_str(&format!("{key} = {value}\n"));
        }
    }
    std::fs::write(&cfg_path, cfg).expect("write tahoe.cfg");
    dir
}

fn client_plugin(name: &str, library: &Path, settings: &[(&str, &str)]) -> ClientPluginHandle {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings: BTreeMap<String, String> = settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let library = open_library(library).expect("open the library");
    ClientPluginHandle::build(dir.path(), name, &settings, &library).expect("build client plugin")
}

fn client(node: &GbsNode, plugins: Vec<ClientPluginHandle>) -> Client {
    let nurl: Nurl = node.nurl().parse().expect("NURL");
    plugins
        .into_iter()
        .fold(ClientBuilder::new(nurl), ClientBuilder::plugin)
        .build()
        .expect("client")
}

/// Allocates share 0 of `si` (size 4), writes it and reads it back.
async fn store_and_read(client: &Client, si: StorageIndex) -> Result<Vec<u8>, ClientError> {
    let upload = client
        .allocate(
            si,
            BTreeSet::from([ShareNumber(0)]),
            4,
            &test_lease(),
            test_upload_secret(),
        )
        .await?;
    let written = upload
        .write_chunk(ShareNumber(0), 0, Bytes::from_static(b"data"))
        .await?;
    assert!(written.complete);
    let mut out = Vec::new();
    client
        .read_share(ShareKind::Immutable, &si, ShareNumber(0), None, &mut out)
        .await?;
    Ok(out)
}

/// The access-log's `counters` route through `client` (200, CBOR), as a lookup of one
/// counter by name.
async fn access_log_counters(client: &Client) -> impl Fn(&str) -> Option<u64> {
    let answer = client
        .call_plugin_route(
            "access-log",
            RouteRequest::new("GET", "counters", Vec::new()),
        )
        .await
        .expect("counters route");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.content_type.as_str(), "application/cbor");
    let counters: ciborium::Value =
        ciborium::from_reader(answer.body.as_slice()).expect("CBOR counters");
    move |key: &str| {
        counters
            .as_map()?
            .iter()
            .find(|(k, _)| k.as_text() == Some(key))
            .and_then(|(_, v)| v.as_integer())
            .and_then(|i| u64::try_from(i).ok())
    }
}

fn rejection(result: Result<impl std::fmt::Debug, ClientError>) -> gbs::client::PluginRejection {
    match result {
        Err(ClientError::PluginRejected(rejection)) => rejection,
        other => panic!("expected a plugin rejection, got {other:?}"),
    }
}

/// Inputs tried against `node`, whose allow-list (from `allow_list`) admits `good-token`: our
/// client without any client plugin (401 `token-required`), then the client side with the
/// token, which stores and reads a share of `si`. Answers that client.
async fn assert_allow_list_gates(node: &GbsNode, allow_list: &Path, si: StorageIndex) -> Client {
    let refused = rejection(
        client(node, Vec::new())
            .list_shares(ShareKind::Immutable, &si)
            .await,
    );
    assert_eq!(
        (
            refused.status,
            refused.plugin.as_str(),
            refused.code.as_str()
        ),
        (401, "allow-list", "token-required")
    );
    let with_token = client(
        node,
        vec![client_plugin(
            "allow-list",
            allow_list,
            &[("token", "good-token")],
        )],
    );
    let data = store_and_read(&with_token, si).await.expect("admitted");
    assert_eq!(data, b"data");
    with_token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_refuses_clients_without_the_token_and_admits_those_with_it() {
    let allow_list = allow_list();
    let library = allow_list.display().to_string();
    let dir = node_with_plugins(&[(
        "allow-list",
        &[("library", &library), ("tokens", "good-token")],
    )]);
    let node = GbsNode::start_in(dir);

    // Version stays open to any client.
    client(&node, Vec::new())
        .version()
        .await
        .expect("version is open");
    assert_allow_list_gates(&node, &allow_list, StorageIndex::from_bytes([2; 16])).await;

    // Input tried: a wrong token, without a fallback: 403 token-refused.
    let wrong = client(
        &node,
        vec![client_plugin(
            "allow-list",
            &allow_list,
            &[("token", "bad-token")],
        )],
    );
    let refused = rejection(
        wrong
            .list_shares(ShareKind::Immutable, &StorageIndex::from_bytes([2; 16]))
            .await,
    );
    assert_eq!(
        (refused.status, refused.code.as_str()),
        (403, "token-refused")
    );

    // Input tried: a wrong token with the right fallback: one retry, then admitted.
    let rotated = client(
        &node,
        vec![client_plugin(
            "allow-list",
            &allow_list,
            &[("token", "bad-token"), ("fallback-token", "good-token")],
        )],
    );
    let shares = rotated
        .list_shares(ShareKind::Immutable, &StorageIndex::from_bytes([2; 16]))
        .await
        .expect("admitted after the retry");
    assert_eq!(shares, BTreeSet::from([ShareNumber(0)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_announces_counts_outcomes_serves_its_route_and_saves_at_stop() {
    let access_log = access_log();
    // Found by name in <node>/plugins/, without `library =`.
    let node_dir = node_with_plugins(&[("access-log", &[])]);
    std::fs::create_dir_all(node_dir.path().join("plugins")).expect("plugins dir");
    std::fs::copy(
        &access_log,
        node_dir
            .path()
            .join("plugins")
            .join(access_log.file_name().expect("file name")),
    )
    .expect("copy the library");
    let node = GbsNode::start_in(node_dir);
    let client = client(&node, Vec::new());

    let announced = client.plugin_announcements().await.expect("plugin list");
    assert_eq!(announced.len(), 1);
    assert_eq!(announced[0].name, "access-log");
    assert!(!announced[0].version.is_empty());

    let data = store_and_read(&client, StorageIndex::from_bytes([5; 16]))
        .await
        .expect("access-log admits everything");
    assert_eq!(data, b"data");

    let get = access_log_counters(&client).await;
    assert_eq!(get("uploaded-bytes"), Some(4));
    assert_eq!(get("read-bytes"), Some(4));
    assert_eq!(get("allocated-bytes"), Some(4));

    // The background service's stop saves the counters into the plugin's state directory.
    let (status, dir) = node.stop();
    assert!(status.success(), "{status:?}");
    let saved = dir.path().join("plugins-state/access-log/counters.cbor");
    assert!(saved.is_file(), "{} missing after stop", saved.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_plugin_fails_one_request_naming_it_and_the_server_goes_on() {
    let library = panicking_plugin().display().to_string();
    let dir = node_with_plugins(&[(
        "fixture-panics",
        &[("library", &library), ("panic-in", "admit, route")],
    )]);
    let node = GbsNode::start_in(dir);
    let client = client(&node, Vec::new());
    for _ in 0..2 {
        match client.version().await {
            Err(ClientError::UnexpectedStatus { status, message }) => {
                assert_eq!(status, 500);
                assert_eq!(message, "storage plugin fixture-panics failed");
            }
            other => panic!("expected a 500, got {other:?}"),
        }
    }
    let answer = client
        .call_plugin_route("fixture-panics", RouteRequest::new("GET", "x", Vec::new()))
        .await
        .expect("an answer");
    assert_eq!(answer.status, 500);
    assert_eq!(
        answer.body.as_slice(),
        b"storage plugin fixture-panics failed"
    );
    // Still serving: the plugin list needs no admission.
    assert_eq!(client.plugin_announcements().await.expect("list").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_in_committed_and_the_background_service_do_not_fail_requests_or_shutdown() {
    // Input tried: fixture-panics with `panic-in = committed, start, stop`: the request was
    // already served when `committed` runs, and the service hooks run outside any request.
    let library = panicking_plugin().display().to_string();
    let dir = node_with_plugins(&[(
        "fixture-panics",
        &[
            ("library", &library),
            ("panic-in", "committed, start, stop"),
        ],
    )]);
    let node = GbsNode::start_in(dir);
    let client = client(&node, Vec::new());
    for _ in 0..3 {
        client
            .version()
            .await
            .expect("served despite the panic in committed");
    }
    let (status, _dir) = node.stop();
    assert!(status.success(), "gbs run exited with {status:?}");
}

/// `gbs run` on a node whose config names a plugin that cannot load: exit status and the
/// last line of stderr.
fn refused_start(plugins: &[(&str, &[(&str, &str)])]) -> String {
    let dir = node_with_plugins(plugins);
    let output = Command::new(gbs_binary())
        .arg("run")
        .arg(dir.path())
        .output()
        .expect("run gbs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    stderr.trim().lines().last().unwrap_or_default().to_owned()
}

#[test]
fn start_up_refuses_a_missing_library_naming_the_plugin() {
    // Input tried: `library = plugins/nothing-here.so`.
    let line = refused_start(&[("ghost", &[("library", "plugins/nothing-here.so")])]);
    assert!(
        line.contains("storage plugin ghost: missing: no file") && line.contains("nothing-here.so"),
        "{line}"
    );
    // Input tried: no `library` and nothing in <node>/plugins/.
    let line = refused_start(&[("ghost", &[])]);
    assert!(
        line.contains("storage plugin ghost: missing: no library in"),
        "{line}"
    );
}

#[test]
fn start_up_refuses_a_failing_constructor_and_a_wrong_name() {
    let failing = gbs_tests::failing_constructor_plugin()
        .display()
        .to_string();
    let line = refused_start(&[("fixture-ctor-fails", &[("library", &failing)])]);
    assert!(
        line.contains("storage plugin fixture-ctor-fails: constructor failed"),
        "{line}"
    );
    // Input tried: a library that does not provide the configured name.
    let line = refused_start(&[("other-name", &[("library", &failing)])]);
    assert!(
        line.contains("storage plugin other-name: missing:")
            && line.contains("provides no plugin of that name"),
        "{line}"
    );
}

#[test]
fn start_up_refuses_an_announcement_that_panics() {
    // Input tried: fixture-panics with every hook panicking, announce included.
    let library = panicking_plugin().display().to_string();
    let line = refused_start(&[("fixture-panics", &[("library", &library)])]);
    assert!(
        line.contains("storage plugin fixture-panics: invalid announcement: panicked"),
        "{line}"
    );
}

#[test]
fn stock_client_works_against_a_plugin_that_admits_everything() {
    let library = access_log().display().to_string();
    let dir = node_with_plugins(&[("access-log", &[("library", &library)])]);
    let node = GbsNode::start_in(dir);
    let output = gbs_tests::run_python("stock_client_suite.py", &[node.nurl(), "--target", "gbs"]);
    gbs_tests::assert_all_passed(&output, "stock client suite with access-log", 40);
}

#[test]
fn stock_client_is_refused_with_a_clear_status_by_a_plugin_requiring_data() {
    let library = allow_list().display().to_string();
    let dir = node_with_plugins(&[(
        "allow-list",
        &[("library", &library), ("tokens", "good-token")],
    )]);
    let node = GbsNode::start_in(dir);
    let output = gbs_tests::run_python("stock_client_refused.py", &[node.nurl()]);
    gbs_tests::assert_all_passed(&output, "stock client against allow-list", 5);
}

#[test]
fn start_up_refuses_incompatible_libraries_naming_the_plugin() {
    // Inputs tried: a plugin built against interface 2.0, and one built with panic=abort.
    let major = gbs_tests::build_fixture("plugin-2.0").display().to_string();
    let line = refused_start(&[("fixture-2.0", &[("library", &major)])]);
    assert!(
        line.contains("storage plugin fixture-2.0: incompatible: "),
        "{line}"
    );
    let abort = gbs_tests::build_fixture("plugin-abort")
        .display()
        .to_string();
    let line = refused_start(&[("fixture-abort", &[("library", &abort)])]);
    assert!(
        line.contains(
            "storage plugin fixture-abort: incompatible: built with panic=abort; plugins must unwind"
        ),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_built_against_interface_1_3_serves_requests() {
    let newer = gbs_tests::build_fixture("plugin-1.3").display().to_string();
    let dir = node_with_plugins(&[("fixture-1.3", &[("library", &newer)])]);
    let node = GbsNode::start_in(dir);
    let client = client(&node, Vec::new());
    let data = store_and_read(&client, StorageIndex::from_bytes([9; 16]))
        .await
        .expect("the 1.3 plugin admits");
    assert_eq!(data, b"data");
    let announced = client.plugin_announcements().await.expect("list");
    assert_eq!(announced[0].name, "fixture-1.3");
}

/// An operator's plugins built before interface 1.1 keep working after the upgrade: the
/// samples' own sources, built against 1.0 (`samples-1.0`), in this host, both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_plugins_built_against_interface_1_0_load_and_work() {
    let allow_list = fixture_library("samples-1.0", "gbs-fixture-samples-1-0-allow-list");
    let access_log = fixture_library("samples-1.0", "gbs-fixture-samples-1-0-access-log");
    let output = Command::new(gbs_binary())
        .args(["plugin", "check"])
        .args([&allow_list, &access_log])
        .output()
        .expect("run gbs plugin check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert_eq!(
        stdout,
        format!(
            "{}: compatible\n    interface: 1.0.0\n    plugin: allow-list 1.0.0 (server, client)\n\
             {}: compatible\n    interface: 1.0.0\n    plugin: access-log 1.0.0 (server)\n",
            allow_list.display(),
            access_log.display()
        )
    );

    let (allow_list_path, access_log_path) = (
        allow_list.display().to_string(),
        access_log.display().to_string(),
    );
    let dir = node_with_plugins(&[
        (
            "allow-list",
            &[("library", &allow_list_path), ("tokens", "good-token")],
        ),
        ("access-log", &[("library", &access_log_path)]),
    ]);
    let node = GbsNode::start_in(dir);

    // The 1.0 allow-list gates as the current one does, and access-log counts the bytes
    // that moved.
    let with_token =
        assert_allow_list_gates(&node, &allow_list, StorageIndex::from_bytes([3; 16])).await;
    let announced = with_token.plugin_announcements().await.expect("list");
    let names: BTreeSet<&str> = announced.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["access-log", "allow-list"]));
    let get = access_log_counters(&with_token).await;
    assert_eq!(get("uploaded-bytes"), Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_plugins_stay_silent_against_stock_tahoe() {
    // Input tried: our client with the allow-list client side, against stock Tahoe, which
    // has no plugin list (404) and must see no plugin data.
    let server = gbs_tests::StockServer::start();
    let nurl: Nurl = server.nurl().parse().expect("NURL");
    let client = ClientBuilder::new(nurl)
        .plugin(client_plugin(
            "allow-list",
            &allow_list(),
            &[("token", "good-token")],
        ))
        .build()
        .expect("client");
    assert!(client
        .plugin_announcements()
        .await
        .expect("list")
        .is_empty());
    let data = store_and_read(&client, StorageIndex::from_bytes([6; 16]))
        .await
        .expect("stock Tahoe serves us");
    assert_eq!(data, b"data");
}

#[test]
fn gbs_client_uses_the_client_plugins_of_a_node_directory() {
    let library = allow_list().display().to_string();
    let server = node_with_plugins(&[(
        "allow-list",
        &[("library", &library), ("tokens", "open-sesame")],
    )]);
    let node = GbsNode::start_in(server);
    let si = "aaaqeayeaudaocajbifqydiob4";
    let ls = |extra: &[&std::ffi::OsStr]| {
        Command::new(gbs_binary())
            .arg("client")
            .args(extra)
            .args(["ls", node.nurl(), si])
            .output()
            .expect("run gbs client")
    };
    // Input tried: no --node, so no plugin data: refused by the server's allow-list.
    let refused = ls(&[]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refused by server plugin allow-list (401, token-required)"),
        "{stderr}"
    );
    // The details on the line after the error's, as the README says (they came first).
    let lines: Vec<&str> = stderr.lines().collect();
    let error = lines
        .iter()
        .position(|l| l.contains("refused by server plugin allow-list"))
        .expect("the error line");
    assert!(
        lines
            .get(error + 1)
            .is_some_and(|l| l.starts_with("details: {\"hint\":")),
        "{stderr}"
    );
    // The same with --json: the whole rejection, as one object on stdout.
    let refused = ls(&["--json".as_ref()]);
    assert!(!refused.status.success());
    let answer: serde_json::Value =
        serde_json::from_slice(&refused.stdout).expect("one JSON object on stdout");
    let rejection = &answer["rejection"];
    assert_eq!(rejection["plugin"], "allow-list");
    assert_eq!(rejection["status"], 401);
    assert_eq!(rejection["code"], "token-required");
    assert!(rejection["details"]["hint"].is_string(), "{answer}");

    let client_dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        client_dir.path().join("tahoe.cfg"),
        format!(
            "[node]\ntub.port = tcp:0\n[client]\nstorage.plugins = allow-list\n\
             [storageclient.plugins.allow-list]\nlibrary = {library}\ntoken = open-sesame\n"
        ),
    )
    .expect("write tahoe.cfg");
    let admitted = ls(&["--node".as_ref(), client_dir.path().as_os_str()]);
    assert!(
        admitted.status.success(),
        "{}",
        String::from_utf8_lossy(&admitted.stderr)
    );
}
