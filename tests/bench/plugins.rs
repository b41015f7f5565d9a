//! `gbs-plugin-bench`: the per-request cost of storage plugins, with 0, 1 and 3 loaded.
//!
//! ```sh
//! cargo run --release -p gbs-tests --bin gbs-plugin-bench
//! ```
//!
//! Requests go straight into the server's router, in this process, without TLS or sockets,
//! so the plugins' share of the time is not hidden behind the network. The operation is
//! `GET /storage/v1/immutable/{si}/shares`, which every loaded plugin is interested in:
//!
//! - 1 plugin: `access-log` (admits, counts in `committed`);
//! - 3 plugins: `access-log`, `allow-list` (checks a token in the request's plugin data)
//!   and the `fixture-panics` test fixture with no hook set to panic (admits everything).
//!
//! - 1 out-of-process: a plugin service that admits everything, on a Unix socket (the
//!   tests' `PluginService`, in this process), so the row shows what the protocol costs.
//!
//! Each plugin row runs twice: with hooks on the plugin thread, as a node runs them, and
//! inline on the request's task, as before plugins were isolated, so the isolation's cost
//! shows. The plugins are built on demand in the profile of this binary. Numbers are wall-clock on
//! whatever else the machine is doing; each row is the best of several rounds.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use gbs::config::PluginSource;
use gbs::plugins::registry::open_library;
use gbs::plugins::{PluginData, ServerPlugins, ServerPluginsBuilder};
use gbs::protocol::{paths, StorageIndex};
use gbs::server::{router, AppState};
use gbs::storage::Store;
use gbs_tests::{build_fixture, sample_plugin, Behaviour, InProcessServer, PluginService};
use tower::ServiceExt as _;

const REQUESTS: u32 = 20_000;
const ROUNDS: usize = 3;
const TOKEN: &str = "bench-token";

fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// How hooks run: on the plugin thread (as a node runs them), or inline on the request's
/// task (as before plugins were isolated).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hooks {
    Isolated,
    Inline,
}

fn load(
    dir: &Path,
    store: &Arc<Store>,
    plugins: &[(&str, &Path, BTreeMap<String, String>)],
    hooks: Hooks,
) -> ServerPlugins {
    let mut builder = ServerPluginsBuilder::new(dir, Some(store.clone()));
    if hooks == Hooks::Inline {
        builder.without_isolation();
    }
    for (name, library, settings) in plugins {
        let library = open_library(library).unwrap_or_else(|e| panic!("{name}: {e}"));
        builder
            .add(name, settings, &library)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    builder.build()
}

/// Requests in flight at once in the concurrent measure.
const IN_FLIGHT: usize = 64;

/// Mean time per request over the best of [`ROUNDS`] rounds: one request at a time
/// (latency) and `IN_FLIGHT` at a time (throughput).
async fn measure(state: &AppState, auth: &str, plugin_data: Option<&str>) -> (Duration, Duration) {
    let si = StorageIndex::from_bytes([7; 16]);
    let path = paths::immutable_shares(&si);
    let request = || {
        let mut builder = Request::get(&path).header("authorization", auth);
        if let Some(data) = plugin_data {
            builder = builder.header("x-tahoe-plugin-data", data);
        }
        builder.body(Body::empty()).expect("a request")
    };
    let app = router(state.clone());
    let one = |app: axum::Router, request: Request<Body>| async move {
        let response = app.oneshot(request).await.expect("infallible");
        assert!(response.status().is_success(), "{}", response.status());
        let _ = axum::body::to_bytes(response.into_body(), 1 << 20).await;
    };
    let (mut sequential, mut concurrent) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..REQUESTS {
            one(app.clone(), request()).await;
        }
        sequential = sequential.min(started.elapsed() / REQUESTS);
        let started = Instant::now();
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let (app, requests) = (
                    app.clone(),
                    (0..REQUESTS as usize / IN_FLIGHT)
                        .map(|_| request())
                        .collect::<Vec<_>>(),
                );
                tokio::spawn(async move {
                    for request in requests {
                        one(app.clone(), request).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("a request task");
        }
        concurrent = concurrent.min(started.elapsed() / REQUESTS);
    }
    (sequential, concurrent)
}

fn main() {
    let access_log = sample_plugin("gbs-sample-access-log");
    let allow_list = sample_plugin("gbs-sample-allow-list");
    let admit_all = build_fixture("plugin-panics");

    let dir = tempfile::tempdir().expect("temp dir");
    let server = InProcessServer::new(dir.path());
    let (store, auth) = (&server.store, server.authorization());
    let mut token = Vec::new();
    ciborium::into_writer(
        &ciborium::Value::Map(vec![(
            ciborium::Value::Text("token".into()),
            ciborium::Value::Text(TOKEN.into()),
        )]),
        &mut token,
    )
    .expect("CBOR into a Vec");
    let token_header = PluginData::header_value("allow-list", &token);

    let one_plugin = [("access-log", access_log.as_path(), settings(&[]))];
    let three_plugins = [
        ("access-log", access_log.as_path(), settings(&[])),
        (
            "allow-list",
            allow_list.as_path(),
            settings(&[("tokens", TOKEN)]),
        ),
        (
            "fixture-panics",
            admit_all.as_path(),
            settings(&[("panic-in", "nothing")]),
        ),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let state = |plugins: ServerPlugins| server.state(plugins);
    let rows = runtime.block_on(async {
        let mut rows = vec![(
            "0 plugins",
            measure(
                &state(load(dir.path(), store, &[], Hooks::Isolated)),
                &auth,
                None,
            )
            .await,
        )];
        for (name, hooks) in [
            ("1 plugin, inline (before)", Hooks::Inline),
            ("1 plugin, plugin thread", Hooks::Isolated),
        ] {
            let plugins = load(dir.path(), store, &one_plugin, hooks);
            rows.push((name, measure(&state(plugins), &auth, None).await));
        }
        for (name, hooks) in [
            ("3 plugins, inline (before)", Hooks::Inline),
            ("3 plugins, plugin thread", Hooks::Isolated),
        ] {
            let plugins = load(dir.path(), store, &three_plugins, hooks);
            rows.push((
                name,
                measure(&state(plugins), &auth, Some(&token_header)).await,
            ));
        }
        // The same calls over the out-of-process protocol, to a service in this process
        // that admits everything: what the transport costs, not what a plugin does.
        let service =
            PluginService::start(&dir.path().join("bench.sock"), "bench", Behaviour::Admit).await;
        let mut builder = ServerPluginsBuilder::new(dir.path(), Some(store.clone()));
        builder
            .add_remote("bench", &PluginSource::Url(service.url()), &BTreeMap::new())
            .unwrap_or_else(|e| panic!("{e}"));
        rows.push((
            "1 out-of-process (socket)",
            measure(&state(builder.build()), &auth, None).await,
        ));
        rows
    });
    let base = rows[0].1 .0;
    let base_concurrent = rows[0].1 .1;
    println!(
        "GET .../shares in process, {REQUESTS} requests, best of {ROUNDS} rounds ({} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "{:<28} {:>14} {:>8}   {:>14} {:>8}",
        "",
        "one at a time",
        "ratio",
        format!("{IN_FLIGHT} in flight"),
        "ratio"
    );
    for (name, (sequential, concurrent)) in rows {
        println!(
            "{name:<28} {:>11.2} µs {:>7.2}×   {:>11.2} µs {:>7.2}×",
            sequential.as_secs_f64() * 1e6,
            sequential.as_secs_f64() / base.as_secs_f64(),
            concurrent.as_secs_f64() * 1e6,
            concurrent.as_secs_f64() / base_concurrent.as_secs_f64(),
        );
    }
    println!(
        "(µs per request: wall-clock time of a round over its requests; ratio: over 0 plugins)"
    );
}
