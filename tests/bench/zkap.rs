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

use std::collections::{BTreeMap, BTreeSet};
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
use gbs_sample_zkapauthorizer::wire::{Payment, PLUGIN_NAME};
use gbs_tests::{sample_plugin, InProcessServer};
use tower::ServiceExt as _;

const PASSES_PER_GIB_SHARE: usize = 342;
const UPLOADS: usize = 300;
const SHARE: usize = 64 * 1024;

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
        (0..UPLOADS).map(move |i| {
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
        .zip(issue_tokens(&key, UPLOADS))
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
    println!(
        "{}",
        serde_json::json!({
            "bench": "zkap",
            "passes_per_second": rate.round(),
            "upload_us_without_plugin": (without.as_secs_f64() * 1e6).round(),
            "upload_us_with_zkap": (with.as_secs_f64() * 1e6).round(),
        })
    );
}
