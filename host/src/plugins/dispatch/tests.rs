//! Dispatch with plugins linked into the test binary. Each test names the input it tries.

use std::collections::BTreeMap;
use std::sync::Arc;

use gbs_plugin_interface::ffi::OperationKind;
use gbs_plugin_interface::{Operation, Outcome, RouteRequest};

use super::*;
use crate::plugins::registry::{LoadFailure, ServerPluginsBuilder};
use crate::plugins::test_plugins::test_library;

fn load(names: &[&str]) -> (tempfile::TempDir, Arc<ServerPlugins>) {
    let dir = tempfile::tempdir().unwrap();
    let library = test_library();
    let mut builder = ServerPluginsBuilder::new(dir.path(), None);
    for name in names {
        builder.add(name, &BTreeMap::new(), &library).unwrap();
    }
    (dir, Arc::new(builder.build()))
}

fn word(text: &str) -> PluginData {
    let header = PluginData::header_value("gate", &to_cbor(&text));
    PluginData::parse([header.as_bytes()], |n| n == "gate").unwrap()
}

/// Asks `plugins` to admit a version-shaped operation of `kind` with no plugin data.
async fn admit_plain(plugins: &ServerPlugins, kind: OperationKind) -> Result<Admission, Refusal> {
    plugins
        .admit(kind, || Operation::Version, &PluginData::default())
        .await
}

fn failed(plugin: &str) -> Refusal {
    Refusal::Failed {
        plugin: plugin.into(),
    }
}

fn decode_body(body: &[u8]) -> BTreeMap<String, ciborium::Value> {
    let value: ciborium::Value = ciborium::from_reader(body).unwrap();
    value
        .into_map()
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.into_text().unwrap(), v))
        .collect()
}

#[tokio::test]
async fn no_interested_plugin_never_builds_the_operation() {
    let (_dir, plugins) = load(&["bad-status"]);
    // bad-status only cares about allocations.
    let admission = plugins
        .admit(
            OperationKind::VERSION,
            || panic!("the operation must not be built"),
            &PluginData::default(),
        )
        .await
        .unwrap();
    plugins
        .committed(admission, || panic!("the outcome must not be built"))
        .await;
    let (_dir, none) = load(&[]);
    let admission = none
        .admit(
            OperationKind::ALLOCATE,
            || panic!("not built"),
            &PluginData::default(),
        )
        .await
        .unwrap();
    none.committed(admission, || panic!("not built")).await;
}

#[tokio::test]
async fn a_plugin_is_called_only_for_the_hooks_it_declares() {
    // Both plugins implement admit and committed; each declares one of them.
    let (_dir, plugins) = load(&["admit-only", "committed-only"]);
    for kind in [OperationKind::VERSION, OperationKind::READ_IMMUTABLE] {
        let admission = admit_plain(&plugins, kind).await.unwrap();
        plugins.committed(admission, || Outcome::Done).await;
    }
    let counted = |name: &str, hook: &str| {
        let counters = plugins.counters(name).unwrap();
        counters.get(hook).copied().unwrap_or(0)
    };
    assert_eq!(counted("admit-only", "admit"), 2);
    assert_eq!(counted("admit-only", "committed"), 0);
    assert_eq!(counted("committed-only", "admit"), 0);
    assert_eq!(counted("committed-only", "committed"), 2);
    // Neither counts calls it did not get.
    let stats = |name: &str| {
        plugins
            .entry(name)
            .unwrap()
            .stats
            .calls
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!((stats("admit-only"), stats("committed-only")), (2, 2));
}

#[tokio::test]
async fn gate_without_data_rejects_with_a_structured_body() {
    let (_dir, plugins) = load(&["gate"]);
    let refusal = admit_plain(&plugins, OperationKind::VERSION)
        .await
        .unwrap_err();
    let Refusal::Rejected {
        plugin,
        status,
        body,
    } = refusal
    else {
        panic!("expected a rejection, got {refusal:?}")
    };
    assert_eq!((plugin.as_str(), status), ("gate", 401));
    let body = decode_body(&body);
    assert_eq!(body["plugin"].as_text(), Some("gate"));
    assert_eq!(body["code"].as_text(), Some("word-required"));
    assert_eq!(body["message"].as_text(), Some("say the word"));
    assert!(body["details"].is_map());
}

#[tokio::test]
async fn gate_with_the_word_admits_and_is_told_the_real_outcome() {
    let (_dir, plugins) = load(&["gate"]);
    let admission = plugins
        .admit(
            OperationKind::UPLOAD,
            || Operation::Version,
            &word("open sesame"),
        )
        .await
        .unwrap();
    plugins
        .committed(admission, || Outcome::Uploaded {
            bytes: 42,
            complete: true,
        })
        .await;
    let counters = plugins.counters("gate").unwrap();
    assert_eq!(counters["admit.version"], 1);
    assert_eq!(counters["committed.version"], 1);
    assert_eq!(counters["uploaded-bytes"], 42);
    assert_eq!(counters["completed"], 1);
}

#[tokio::test]
async fn rejection_with_status_418_becomes_a_failure_naming_the_plugin() {
    let (_dir, plugins) = load(&["bad-status"]);
    let refusal = admit_plain(&plugins, OperationKind::ALLOCATE)
        .await
        .unwrap_err();
    assert_eq!(refusal, failed("bad-status"));
    // Counted as a failed call, as `gbs plugin status` shows it.
    let stats = &plugins.plugins[0].stats;
    assert_eq!(stats.calls.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(stats.failures.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn rejection_with_details_0xff00_becomes_a_failure() {
    let (_dir, plugins) = load(&["bad-details"]);
    let refusal = admit_plain(&plugins, OperationKind::VERSION)
        .await
        .unwrap_err();
    assert_eq!(refusal, failed("bad-details"));
}

#[tokio::test]
async fn panic_in_admit_fails_that_request_and_the_next_one_is_served() {
    let (_dir, plugins) = load(&["panics"]);
    let refusal = plugins
        .admit(
            OperationKind::ALLOCATE,
            || Operation::Allocate {
                storage_index: [0; 16],
                share_numbers: vec![0],
                allocated_size: 1,
                lease: [0; 32],
            },
            &PluginData::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(refusal, failed("panics"));
    let admitted = admit_plain(&plugins, OperationKind::VERSION).await;
    assert!(admitted.is_ok());
}

#[tokio::test(start_paused = true)]
async fn admit_that_sleeps_an_hour_fails_closed_with_503() {
    let (_dir, plugins) = load(&["slow"]);
    let refusal = admit_plain(&plugins, OperationKind::VERSION)
        .await
        .unwrap_err();
    let Refusal::Rejected { status, body, .. } = refusal else {
        panic!("expected 503, got {refusal:?}")
    };
    assert_eq!(status, 503);
    assert_eq!(decode_body(&body)["code"].as_text(), Some("plugin-timeout"));
}

#[tokio::test]
async fn route_answers_are_checked() {
    let (_dir, plugins) = load(&["gate", "panics"]);
    let request = |path: &str| RouteRequest::new("POST", path, b"ping".to_vec());
    let echo = plugins.route("gate", request("echo")).await.unwrap();
    assert_eq!((echo.status, echo.body.as_slice()), (200, &b"ping"[..]));
    for path in ["status-99", "status-600", "huge"] {
        assert_eq!(
            plugins.route("gate", request(path)).await,
            Err(Refusal::BadRouteResponse {
                plugin: "gate".into()
            }),
            "{path}"
        );
    }
    assert_eq!(
        plugins.route("gate", request("fail")).await,
        Err(failed("gate"))
    );
    assert_eq!(
        plugins.route("panics", request("anything")).await,
        Err(failed("panics"))
    );
    assert_eq!(
        plugins.route("zkap", request("echo")).await,
        Err(Refusal::NoSuchPlugin)
    );
}

#[tokio::test]
async fn services_start_and_stop() {
    let (dir, plugins) = load(&["service"]);
    assert_eq!(
        std::fs::read(dir.path().join("plugins-state/service/hello")).unwrap(),
        b"hi"
    );
    plugins.start_services();
    // Starting twice starts nothing more.
    plugins.start_services();
    while !plugins.counters("service").unwrap().contains_key("ticks") {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    plugins.stop_services().await;
    // Stopping twice stops nothing more.
    plugins.stop_services().await;
    let counters = plugins.counters("service").unwrap();
    assert_eq!(counters["started"], 1);
    assert_eq!(counters["stopped"], 1);
    assert_eq!(counters["ended"], 1);
}

#[test]
fn announcements_are_listed_with_name_and_version() {
    let (_dir, plugins) = load(&["gate", "service"]);
    let value: ciborium::Value = ciborium::from_reader(plugins.listing()).unwrap();
    let items = value.into_array().unwrap();
    assert_eq!(items.len(), 2);
    let first = decode_body(&to_cbor(&items[0]));
    assert_eq!(first["name"].as_text(), Some("gate"));
    assert_eq!(first["version"].as_text(), Some("1.2.3"));
    assert!(first["announcement"].is_map());
    let second = decode_body(&to_cbor(&items[1]));
    assert!(second["announcement"].is_null());
}

#[test]
fn load_failures_name_the_plugin_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let library = test_library();
    let mut builder = ServerPluginsBuilder::new(dir.path(), None);
    let fail = BTreeMap::from([("fail".to_owned(), "yes".to_owned())]);
    let error = builder.add("service", &fail, &library).unwrap_err();
    assert!(matches!(error.reason, LoadFailure::Constructor(_)));
    assert_eq!(
        error.to_string(),
        "storage plugin service: constructor failed: failed: fail = yes"
    );
    let error = builder.add("zkap", &BTreeMap::new(), &library).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("storage plugin zkap: missing: test-plugins.so provides no plugin"),
        "{error}"
    );
    builder.add("gate", &BTreeMap::new(), &library).unwrap();
    let error = builder.add("gate", &BTreeMap::new(), &library).unwrap_err();
    assert_eq!(
        error.to_string(),
        "storage plugin gate: duplicate plugin name"
    );
}
