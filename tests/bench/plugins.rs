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
//! whatever else the machine is doing; each row is the best of several rounds. Beside each,
//! the process's CPU time per request in the same round (user and system, all threads: the
//! client's side of the request too), which a busy neighbour moves less than wall-clock.
//!
//! For profiling: `--only TEXT` runs `0 plugins` and the rows whose name contains `TEXT`,
//! and `--requests N` makes each round `N` requests (default 20,000).

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

/// This process's CPU time so far (user and system, every thread).
fn cpu_time() -> Duration {
    gbs_tests::cpu_time(std::process::id())
}

/// Wall-clock and CPU time per request of one way of sending requests.
#[derive(Clone, Copy)]
struct Timing {
    wall: Duration,
    cpu: Duration,
}

impl Timing {
    const NONE: Timing = Timing {
        wall: Duration::MAX,
        cpu: Duration::MAX,
    };

    /// The round that took `started` (at `cpu_started`) until now, if it was the fastest.
    fn keep_best(&mut self, started: Instant, cpu_started: Duration, requests: u32) {
        let wall = started.elapsed() / requests;
        if wall < self.wall {
            self.wall = wall;
            self.cpu = cpu_time().saturating_sub(cpu_started) / requests;
        }
    }
}

/// Time per request over the best of [`ROUNDS`] rounds of `requests`: one request at a time
/// (latency) and `IN_FLIGHT` at a time (throughput).
async fn measure(
    state: &AppState,
    auth: &str,
    plugin_data: Option<&str>,
    requests: u32,
) -> (Timing, Timing) {
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
    let (mut sequential, mut concurrent) = (Timing::NONE, Timing::NONE);
    for _ in 0..ROUNDS {
        let (started, cpu_started) = (Instant::now(), cpu_time());
        for _ in 0..requests {
            one(app.clone(), request()).await;
        }
        sequential.keep_best(started, cpu_started, requests);
        let (started, cpu_started) = (Instant::now(), cpu_time());
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let (app, requests) = (
                    app.clone(),
                    (0..requests as usize / IN_FLIGHT)
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
        let sent = requests / IN_FLIGHT as u32 * IN_FLIGHT as u32;
        concurrent.keep_best(started, cpu_started, sent.max(1));
    }
    (sequential, concurrent)
}

/// `--only TEXT` and `--requests N`; anything else ends the process with status 2.
fn arguments() -> (Option<String>, u32) {
    let (mut only, mut requests) = (None, REQUESTS);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--only", Some(text)) => only = Some(text),
            ("--requests", Some(n)) if n.parse::<u32>().is_ok_and(|n| n > 0) => {
                requests = n.parse().unwrap_or(REQUESTS);
            }
            _ => {
                eprintln!(
                    "gbs-plugin-bench: unknown argument {arg:?}; it takes --only TEXT and --requests N"
                );
                std::process::exit(2);
            }
        }
    }
    (only, requests)
}

fn main() {
    let (only, requests) = arguments();
    let wanted = |row: &str| only.as_deref().is_none_or(|text| row.contains(text));
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
                requests,
            )
            .await,
        )];
        for (name, hooks) in [
            ("1 plugin, inline (before)", Hooks::Inline),
            ("1 plugin, plugin thread", Hooks::Isolated),
        ] {
            if wanted(name) {
                let plugins = load(dir.path(), store, &one_plugin, hooks);
                rows.push((name, measure(&state(plugins), &auth, None, requests).await));
            }
        }
        for (name, hooks) in [
            ("3 plugins, inline (before)", Hooks::Inline),
            ("3 plugins, plugin thread", Hooks::Isolated),
        ] {
            if wanted(name) {
                let plugins = load(dir.path(), store, &three_plugins, hooks);
                let data = Some(token_header.as_str());
                rows.push((name, measure(&state(plugins), &auth, data, requests).await));
            }
        }
        // The same calls over the out-of-process protocol, to a service in this process
        // that admits everything: what the transport costs, not what a plugin does.
        let name = "1 out-of-process (socket)";
        if wanted(name) {
            let service =
                PluginService::start(&dir.path().join("bench.sock"), "bench", Behaviour::Admit)
                    .await;
            let mut builder = ServerPluginsBuilder::new(dir.path(), Some(store.clone()));
            builder
                .add_remote("bench", &PluginSource::Url(service.url()), &BTreeMap::new())
                .unwrap_or_else(|e| panic!("{e}"));
            rows.push((
                name,
                measure(&state(builder.build()), &auth, None, requests).await,
            ));
        }
        rows
    });
    let (base, base_concurrent) = rows[0].1;
    println!(
        "GET .../shares in process, {requests} requests, best of {ROUNDS} rounds ({} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "{:<28} {:>14} {:>8} {:>9}   {:>14} {:>8} {:>9}",
        "",
        "one at a time",
        "ratio",
        "CPU",
        format!("{IN_FLIGHT} in flight"),
        "ratio",
        "CPU"
    );
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    for (name, (sequential, concurrent)) in rows {
        println!(
            "{name:<28} {:>11.2} µs {:>7.2}× {:>6.1} µs   {:>11.2} µs {:>7.2}× {:>6.1} µs",
            micros(sequential.wall),
            micros(sequential.wall) / micros(base.wall),
            micros(sequential.cpu),
            micros(concurrent.wall),
            micros(concurrent.wall) / micros(base_concurrent.wall),
            micros(concurrent.cpu),
        );
    }
    println!(
        "(µs per request: wall-clock time of the best round over its requests; ratio: over 0 plugins;"
    );
    println!("CPU: this process's CPU time per request in that round, every thread)");
}
