//! `gbs-zkap-bench`: what the ZKAP plugin costs a storage server.
//!
//! ```sh
//! cargo run --release -p gbs-tests --bin gbs-zkap-bench
//! ```
//!
//! - **Pass validation**: the server's check of the 342 passes one share of a 1 GiB file
//!   (3-of-10) costs, in passes per second (one core, in process).
//! - **Upload with and without the plugin**: allocate and upload one 64 KiB share per fresh
//!   storage index, straight into the server's router in this process (no TLS or sockets,
//!   so the plugin's share is not hidden behind the network): no plugin, and the ZKAP plugin
//!   (one pass per allocate, checked, reserved and spent in its SQLite ledger, fsynced).
//!   The passes are made before the clock starts: the client's cost is not counted.
//! - **Spent-pass stores**: passes checked against the store (reserved) and recorded as
//!   spent per second, for the embedded SQLite file and for a PostgreSQL server this
//!   benchmark starts (as the fleet tests do): operations of 1 pass one at a time and 8 at
//!   once, and of 100 passes 8 at once. The passes' signatures are not checked here (see the
//!   first row); only the store's work is counted.
//!
//! `--short` runs every row with few operations, to prove it works (CI); its numbers mean
//! little.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use gbs::plugins::registry::open_library;
use gbs::plugins::{PluginData, ServerPlugins, ServerPluginsBuilder};
use gbs::protocol::{paths, AllocateRequest, CborMessage as _, ShareNumber, StorageIndex};
use gbs::server::{router, AppState};
use gbs_sample_zkapauthorizer::pass::{
    self, issue_tokens, message, new_signing_key, validate, Pass, SigningKey,
};
use gbs_sample_zkapauthorizer::spent::{
    Purpose, SpentPassStore, SqliteStore, StoreLocation, LEDGER_FILE,
};
use gbs_sample_zkapauthorizer::wire::{Payment, PLUGIN_NAME};
use gbs_tests::{sample_plugin, InProcessServer, Postgres};
use tower::ServiceExt as _;

const PASSES_PER_GIB_SHARE: usize = 342;
const SHARE: usize = 64 * 1024;

/// One shape of store traffic: `threads` at once, each doing `operations` operations of
/// `passes` fresh passes (reserve, then spend).
#[derive(Debug, Clone, Copy)]
struct StoreLoad {
    name: &'static str,
    key: &'static str,
    threads: usize,
    operations: usize,
    passes: usize,
}

/// Passes reserved and spent per second under `load`. Each preimage is unique to its
/// thread, operation and place, and `round` keeps runs apart.
fn store_rate(store: &Arc<dyn SpentPassStore>, load: StoreLoad, round: u8) -> f64 {
    let started = Instant::now();
    let workers: Vec<_> = (0..load.threads)
        .map(|thread| {
            let store = store.clone();
            std::thread::spawn(move || {
                for operation in 0..load.operations {
                    let preimages: Vec<[u8; 64]> = (0..load.passes)
                        .map(|i| {
                            let mut p = [round; 64];
                            p[1..9].copy_from_slice(&(thread as u64).to_be_bytes());
                            p[9..17].copy_from_slice(&(operation as u64).to_be_bytes());
                            p[17..25].copy_from_slice(&(i as u64).to_be_bytes());
                            p
                        })
                        .collect();
                    let purpose = Purpose {
                        storage_index: [round; 16],
                        operation: "allocate_buckets",
                    };
                    let reserved = store
                        .reserve(&preimages, &purpose, 1_000, 1_600)
                        .expect("the store answers");
                    assert_eq!(reserved, Ok(()), "fresh passes are free");
                    store
                        .settle(&preimages, &[], 1_010)
                        .expect("the store records");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a store worker");
    }
    (load.threads * load.operations * load.passes) as f64 / started.elapsed().as_secs_f64()
}

fn validation_rate(key: &SigningKey) -> f64 {
    let si = [3u8; 16];
    let message = message(pass::Operation::AllocateBuckets, &si);
    let passes: Vec<Vec<u8>> = issue_tokens(key, PASSES_PER_GIB_SHARE)
        .iter()
        .map(|t| Pass::new(t, message.as_bytes()).to_bytes())
        .collect();
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let checked = validate(key, message.as_bytes(), &passes).expect("well-formed passes");
        best = best.min(started.elapsed());
        assert_eq!(checked.valid.len(), PASSES_PER_GIB_SHARE);
    }
    PASSES_PER_GIB_SHARE as f64 / best.as_secs_f64()
}

struct Upload {
    si: StorageIndex,
    plugin_data: Option<String>,
}

/// Mean time to allocate and upload one share, over `uploads`.
async fn measure(state: &AppState, auth: &str, uploads: Vec<Upload>) -> Duration {
    let app = router(state.clone());
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let (renew, cancel, secret) = (b64(&[1; 32]), b64(&[2; 32]), b64(&[3; 32]));
    let data = vec![5u8; SHARE];
    let count = uploads.len() as u32;
    let started = Instant::now();
    for upload in uploads {
        let body = AllocateRequest {
            share_numbers: BTreeSet::from([ShareNumber(0)]),
            allocated_size: SHARE as u64,
        }
        .to_cbor();
        let mut request = Request::post(paths::immutable_allocate(&upload.si))
            .header("authorization", auth)
            .header("content-type", "application/cbor")
            .header("accept", "application/cbor")
            .header(
                "x-tahoe-authorization",
                format!("lease-renew-secret {renew}"),
            )
            .header(
                "x-tahoe-authorization",
                format!("lease-cancel-secret {cancel}"),
            )
            .header("x-tahoe-authorization", format!("upload-secret {secret}"));
        if let Some(value) = &upload.plugin_data {
            request = request.header("x-tahoe-plugin-data", value);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::from(body)).expect("a request"))
            .await
            .expect("infallible");
        assert!(
            response.status().is_success(),
            "allocate: {}",
            response.status()
        );
        let write = Request::patch(paths::immutable_share(&upload.si, ShareNumber(0)))
            .header("authorization", auth)
            .header("accept", "application/cbor")
            .header("content-range", format!("bytes 0-{}/*", SHARE - 1))
            .header("x-tahoe-authorization", format!("upload-secret {secret}"))
            .body(Body::from(data.clone()))
            .expect("a request");
        let response = app.clone().oneshot(write).await.expect("infallible");
        assert_eq!(response.status().as_u16(), 201, "upload");
    }
    started.elapsed() / count
}

fn main() {
    let short = gbs_tests::short_mode("gbs-zkap-bench");
    let uploads = if short { 20 } else { 300 };
    let library = sample_plugin("gbs-sample-zkapauthorizer");
    let key = new_signing_key();
    let rate = validation_rate(&key);

    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("issuer.key");
    std::fs::write(&key_file, key.encode_base64()).expect("write the key");
    let server = InProcessServer::new(dir.path());
    let auth = server.authorization();
    let state = |plugins: ServerPlugins| server.state(plugins);
    let zkap = {
        let mut builder = ServerPluginsBuilder::new(dir.path(), Some(server.store.clone()));
        let settings: BTreeMap<String, String> = [
            (
                "ristretto-issuer-root-url",
                "http://issuer.invalid/".to_owned(),
            ),
            ("ristretto-signing-key-path", key_file.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let opened = open_library(&library).expect("open the ZKAP plugin");
        builder
            .add(PLUGIN_NAME, &settings, &opened)
            .expect("load the ZKAP plugin");
        builder.build()
    };
    let fresh = |n: u8| {
        (0..uploads).map(move |i| {
            let mut bytes = [n; 16];
            bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
            StorageIndex::from_bytes(bytes)
        })
    };
    let plain: Vec<Upload> = fresh(1)
        .map(|si| Upload {
            si,
            plugin_data: None,
        })
        .collect();
    let paid: Vec<Upload> = fresh(2)
        .zip(issue_tokens(&key, uploads))
        .map(|(si, token)| {
            let message = message(pass::Operation::AllocateBuckets, si.as_bytes());
            let data =
                Payment::inline(vec![Pass::new(&token, message.as_bytes()).to_bytes()]).to_cbor();
            Upload {
                si,
                plugin_data: Some(PluginData::header_value(PLUGIN_NAME, &data)),
            }
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (without, with) = runtime.block_on(async {
        let without = measure(&state(ServerPlugins::none()), &auth, plain).await;
        let with = measure(&state(zkap), &auth, paid).await;
        (without, with)
    });
    let stores = store_rows(short, dir.path());
    println!("| row | value |");
    println!("|---|---|");
    println!(
        "| pass validation | {rate:.0} passes/s ({:.1} ms for the {PASSES_PER_GIB_SHARE} passes of one 1 GiB-file share) |",
        PASSES_PER_GIB_SHARE as f64 / rate * 1000.0
    );
    println!(
        "| allocate + upload 64 KiB, no plugin | {:.0} µs |",
        without.as_secs_f64() * 1e6
    );
    println!(
        "| allocate + upload 64 KiB, ZKAP (1 pass) | {:.0} µs ({:.2}×) |",
        with.as_secs_f64() * 1e6,
        with.as_secs_f64() / without.as_secs_f64()
    );
    let mut store_json = serde_json::Map::new();
    for (backend, rows) in &stores {
        let mut json = serde_json::Map::new();
        for (load, rate) in rows {
            println!(
                "| {backend} spent-pass store, {} | {rate:.0} passes/s |",
                load.name
            );
            json.insert(load.key.to_owned(), rate.round().into());
        }
        store_json.insert(backend.to_lowercase(), json.into());
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "zkap",
            "short": short,
            "passes_per_second": rate.round(),
            "upload_us_without_plugin": (without.as_secs_f64() * 1e6).round(),
            "upload_us_with_zkap": (with.as_secs_f64() * 1e6).round(),
            "store_passes_per_second": store_json,
        })
    );
}

/// Every [`StoreLoad`] against SQLite (in `dir`) and a PostgreSQL server started here.
fn store_rows(short: bool, dir: &std::path::Path) -> Vec<(&'static str, Vec<(StoreLoad, f64)>)> {
    let scale = if short { 10 } else { 1 };
    let loads = [
        StoreLoad {
            name: "1 pass per operation, 1 at a time",
            key: "one_pass_serial",
            threads: 1,
            operations: 1000 / scale,
            passes: 1,
        },
        StoreLoad {
            name: "1 pass per operation, 8 at once",
            key: "one_pass_8_at_once",
            threads: 8,
            operations: 250 / scale,
            passes: 1,
        },
        StoreLoad {
            name: "100 passes per operation, 8 at once",
            key: "hundred_passes_8_at_once",
            threads: 8,
            operations: 40 / scale,
            passes: 100,
        },
    ];
    let run = |store: Arc<dyn SpentPassStore>| -> Vec<(StoreLoad, f64)> {
        (0u8..)
            .zip(loads)
            .map(|(round, load)| (load, store_rate(&store, load, round)))
            .collect()
    };
    let sqlite: Arc<dyn SpentPassStore> =
        Arc::new(SqliteStore::open(&dir.join(LEDGER_FILE)).expect("an SQLite store"));
    // Synced commits, as SQLite's: the comparison is of durable stores.
    let postgres = Postgres::start_durable();
    let pg_store = StoreLocation::Postgres(postgres.url())
        .open()
        .expect("the PostgreSQL store");
    vec![("SQLite", run(sqlite)), ("PostgreSQL", run(pg_store))]
}
