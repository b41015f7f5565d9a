//! The ZKAP plugin end to end: the real library loaded by a `gbs run` server and by our
//! client (the `gbs client` command and the client library), a demo issuer process
//! (`gbs-zkap issuer`) the client redeems vouchers with, and passes spent as priced.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use base64::Engine as _;
use gbs::client::{Client, ClientBuilder};
use gbs::config::NodeConfig;
use gbs::plugins::registry::open_library;
use gbs::plugins::ClientPluginHandle;
use gbs::protocol::{
    AllocateRequest, CborMessage as _, LeaseSecrets, ReadTestWriteRequest, ShareKind, ShareNumber,
    StorageIndex, WriteEnabler,
};
use gbs_tests::{
    gbs_binary, gbs_stdout, read_status, sample_plugin, test_upload_secret, GbsGateway, GbsNode,
    RawConnection, TahoeClient,
};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt as _;

mod fleet;

const NAME: &str = "privatestorageio-zkapauthz-v2";
const MIB: u64 = 1024 * 1024;

/// An issuer key, a running demo issuer, and the plugin library.
struct Zkap {
    dir: TempDir,
    key: PathBuf,
    public_key: String,
    issuer: Child,
    url: String,
    library: PathBuf,
}

impl Drop for Zkap {
    fn drop(&mut self) {
        let _ = self.issuer.kill();
        let _ = self.issuer.wait();
    }
}

fn zkap_tool(library: &Path) -> PathBuf {
    library.with_file_name(format!("gbs-zkap{}", std::env::consts::EXE_SUFFIX))
}

fn run_ok(command: &mut Command) -> Output {
    succeeded(command.output().expect("run a command"))
}

/// `output`, after checking its process succeeded.
fn succeeded(output: Output) -> Output {
    assert!(
        output.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `gbs client --json ls`: the completed immutable shares `node` has of `si`.
fn listed_shares(node: &GbsNode, si: &str) -> serde_json::Value {
    let listed = succeeded(gbs_client(None, &["--json", "ls", node.nurl(), si]));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    listed["shares"].clone()
}

fn cbor(value: &gbs_plugin_interface::ciborium::Value) -> Vec<u8> {
    let mut out = Vec::new();
    gbs_plugin_interface::ciborium::into_writer(value, &mut out).expect("encode");
    out
}

impl Zkap {
    fn new() -> Self {
        let library = sample_plugin("gbs-sample-zkapauthorizer");
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("issuer.key");
        let made = run_ok(
            Command::new(zkap_tool(&library))
                .arg("signing-key")
                .arg(&key),
        );
        let public_key = String::from_utf8_lossy(&made.stdout).trim().to_owned();
        let (issuer, url) = Self::issuer(&library, &key);
        Self {
            dir,
            key,
            public_key,
            issuer,
            url,
            library,
        }
    }

    fn issuer(library: &Path, key: &Path) -> (Child, String) {
        let mut issuer = Command::new(zkap_tool(library))
            .arg("issuer")
            .arg("--signing-key")
            .arg(key)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the issuer");
        let mut line = String::new();
        BufReader::new(issuer.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the issuer's URL");
        assert!(line.starts_with("http://127.0.0.1:"), "{line}");
        (issuer, line.trim().to_owned())
    }

    /// `[storage]` and plugin sections for a server charging with this issuer.
    fn server_config(&self, extra: &str) -> String {
        format!(
            "[storage]\nplugins = {NAME}\n[storageserver.plugins.{NAME}]\nlibrary = {}\n\
             ristretto-issuer-root-url = {}\nristretto-signing-key-path = {}\n{extra}",
            self.library.display(),
            self.url,
            self.key.display()
        )
    }

    /// A `gbs gateway` directory to `upstreams` whose client side is the plugin with this
    /// issuer, its wallet funded with one voucher; `extra` goes into `[gateway]`.
    fn funded_gateway_dir(&self, upstreams: &[&str], extra: &str) -> TempDir {
        let dir = GbsNode::create_configured(&format!(
            "[gateway]\nupstreams = {}\n{extra}",
            upstreams.join(", ")
        ));
        let cfg = dir.path().join("tahoe.cfg");
        let text = std::fs::read_to_string(&cfg).expect("tahoe.cfg");
        let client_section = format!(
            "[client]\nstorage.plugins = {NAME}\n[storageclient.plugins.{NAME}]\nlibrary = {}\n\
             ristretto-issuer-root-url = {}\nallowed-public-keys = {}\n\
             default-token-count = 200\nredemption-groups = 4\n",
            self.library.display(),
            self.url,
            self.public_key
        );
        assert!(text.contains("[client]\n"), "{text}");
        std::fs::write(&cfg, text.replacen("[client]\n", &client_section, 1)).expect("tahoe.cfg");
        let status = redeem(dir.path(), &voucher(9));
        assert_eq!(status["state"], "redeemed", "{status}");
        dir
    }

    /// A client node directory using the plugin with this issuer.
    fn client_dir(&self, extra: &str) -> TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        write_client_config(
            dir.path(),
            &self.library,
            &self.url,
            &self.public_key,
            extra,
        );
        dir
    }
}

fn write_client_config(dir: &Path, library: &Path, url: &str, keys: &str, extra: &str) {
    std::fs::write(
        dir.join("tahoe.cfg"),
        format!(
            "[node]\ntub.port = tcp:0\n[client]\nstorage.plugins = {NAME}\n\
             [storageclient.plugins.{NAME}]\nlibrary = {}\nristretto-issuer-root-url = {url}\n\
             allowed-public-keys = {keys}\ndefault-token-count = 60\nredemption-groups = 4\n{extra}",
            library.display()
        ),
    )
    .expect("write tahoe.cfg");
}

fn voucher(n: u8) -> String {
    base64::engine::general_purpose::URL_SAFE.encode([n; 32])
}

/// `gbs client --node DIR ARGS...`.
fn gbs_client(dir: Option<&Path>, args: &[&str]) -> Output {
    let mut command = Command::new(gbs_binary());
    command.arg("client");
    if let Some(dir) = dir {
        command.arg("--node").arg(dir);
    }
    command.args(args).output().expect("run gbs client")
}

/// `gbs client --node DIR client-route` of the plugin: `method` on `path` with the body
/// `body` (written to a file in `dir` first, as an operator would).
fn client_route(dir: &Path, method: &str, path: &str, body: &str) -> Output {
    let file = dir.join("body.json");
    std::fs::write(&file, body).expect("write body");
    let file = file.to_str().expect("a UTF-8 path");
    gbs_client(
        Some(dir),
        &[
            "client-route",
            NAME,
            path,
            "--method",
            method,
            "--body",
            file,
        ],
    )
}

/// Redeems `voucher` through the client plugin's resource, as an operator would.
fn redeem(dir: &Path, voucher: &str) -> serde_json::Value {
    let body = serde_json::json!({ "voucher": voucher }).to_string();
    let output = succeeded(client_route(dir, "PUT", "voucher", &body));
    serde_json::from_slice(&output.stdout).expect("a JSON voucher status")
}

/// The wallet's token counts.
fn wallet(dir: &Path) -> serde_json::Value {
    let output = gbs_client(Some(dir), &["client-route", NAME, "lease-maintenance"]);
    let output = succeeded(output);
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    answer["tokens"].clone()
}

/// Our client library with the plugin of client node `dir` (opened directly: the checked
/// loading `gbs` does runs the `gbs` executable, which this test binary is not).
async fn client_with_plugin(node: &GbsNode, dir: &Path, library: &Path) -> Client {
    let config = NodeConfig::load(dir).expect("client config");
    let spec = &config.client_plugins[0];
    let library = open_library(library).expect("open the plugin");
    let plugin = ClientPluginHandle::build(dir, &spec.name, &spec.settings, &library)
        .expect("build the client plugin");
    ClientBuilder::new(node.nurl().parse().expect("NURL"))
        .plugin(plugin)
        .build()
        .expect("client")
}

fn random_si() -> StorageIndex {
    let mut bytes = [0u8; 16];
    bytes
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = rand_byte(i));
    StorageIndex::from_bytes(bytes)
}

fn rand_byte(i: usize) -> u8 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_usize(i);
    hasher.finish() as u8
}

fn lease(n: u8) -> LeaseSecrets {
    LeaseSecrets {
        renew: gbs::protocol::LeaseRenewSecret::new([n; 32]),
        cancel: gbs::protocol::LeaseCancelSecret::new([n.wrapping_add(100); 32]),
    }
}

async fn upload(
    client: &Client,
    si: StorageIndex,
    shares: &[u16],
    data: &[u8],
) -> BTreeSet<ShareNumber> {
    let upload = client
        .allocate(
            si,
            shares.iter().map(|&n| ShareNumber(n)).collect(),
            data.len() as u64,
            &lease(1),
            test_upload_secret(),
        )
        .await
        .expect("a paid allocation");
    for shnum in upload.allocated().clone() {
        upload.upload_share(shnum, data).await.expect("upload");
    }
    upload.allocated().clone()
}

async fn read_back(client: &Client, kind: ShareKind, si: &StorageIndex, shnum: u16) -> Vec<u8> {
    let mut out = Vec::new();
    client
        .read_share(kind, si, ShareNumber(shnum), None, &mut out)
        .await
        .expect("read back");
    out
}

fn count(tokens: &serde_json::Value, state: &str) -> u64 {
    tokens[state]
        .as_u64()
        .unwrap_or_else(|| panic!("no {state} in {tokens}"))
}

/// A client redeems a voucher with the issuer, then uploads and downloads a multi-share
/// file, allocates again (held shares free), writes a mutable share and renews a lease;
/// the wallet and the server's spending histogram show exactly the priced passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paying_client_stores_reads_and_renews_and_pays_what_each_operation_costs() {
    let zkap = Zkap::new();
    let metrics = zkap.dir.path().join("spending.prom");
    let node = GbsNode::start_configured(&zkap.server_config(&format!(
        "prometheus-metrics-path = {}\nprometheus-metrics-interval = 1\n",
        metrics.display()
    )));
    let client_dir = zkap.client_dir("");
    let status = redeem(client_dir.path(), &voucher(1));
    assert_eq!(status["state"], "redeemed", "{status}");
    assert_eq!(count(&wallet(client_dir.path()), "spendable"), 60);

    let client = client_with_plugin(&node, client_dir.path(), &zkap.library).await;
    let si = random_si();
    let data: Vec<u8> = (0..3 * MIB / 2).map(|i| (i % 251) as u8).collect();
    // Three shares of 1.5 MiB: 2 passes each.
    let allocated = upload(&client, si, &[0, 1, 2], &data).await;
    assert_eq!(allocated.len(), 3);
    for shnum in 0..3 {
        assert!(read_back(&client, ShareKind::Immutable, &si, shnum).await == data);
    }
    // Shares 0-2 held: asking for 0-3 pays for all four, spends for share 3 only.
    let again = upload(&client, si, &[0, 1, 2, 3], &data).await;
    assert_eq!(again, BTreeSet::from([ShareNumber(3)]));
    // A new 4 KiB mutable share: one pass.
    let slot = random_si();
    let write = ReadTestWriteRequest::write(ShareNumber(0), 0, vec![7; 4096]);
    let enabler = WriteEnabler::new(vec![5; 32]).expect("a write enabler");
    let written = client
        .read_test_write(&slot, &enabler, &lease(1), &write)
        .await
        .expect("a paid mutable write");
    assert!(written.success);
    assert_eq!(
        read_back(&client, ShareKind::Mutable, &slot, 0).await,
        vec![7; 4096]
    );
    // Renewing the lease on the four 1.5 MiB shares: 8 passes.
    client
        .add_or_renew_lease(&si, &lease(2))
        .await
        .expect("a paid lease renewal");
    drop(client);

    let tokens = wallet(client_dir.path());
    assert_eq!(count(&tokens, "spent"), 6 + 2 + 1 + 8, "{tokens}");
    assert_eq!(count(&tokens, "spendable"), 60 - 17, "{tokens}");
    assert_eq!(count(&tokens, "invalid"), 0, "{tokens}");
    // The server's histogram (written every second) saw the same four spends.
    let mut text = String::new();
    for _ in 0..50 {
        text = std::fs::read_to_string(&metrics).unwrap_or_default();
        if text.contains("_count 4\n") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        text.contains("zkapauthorizer_server_spending_successes_count 4\n"),
        "{text}"
    );
    assert!(
        text.contains("zkapauthorizer_server_spending_successes_sum 17.0\n"),
        "{text}"
    );
    assert!(
        text.contains("zkapauthorizer_server_spending_successes_bucket{le=\"1.0\"} 1\n"),
        "{text}"
    );
    // And as the node shows every plugin's counters.
    let status = run_ok(
        Command::new(gbs_binary())
            .args(["plugin", "status", "--json"])
            .arg(node.dir()),
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    let counters = &status["plugins"][0]["counters"];
    assert_eq!(counters["spending_successes_sum"], 17, "{status}");
    assert_eq!(counters["spending_successes_bucket_le_8"], 4, "{status}");
}

/// Sixteen paid uploads in flight at once from one client and one wallet: every one is
/// admitted, no pass is taken twice or refused, and the wallet spends exactly the price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_paid_uploads_each_pay_once() {
    let zkap = Zkap::new();
    let node = GbsNode::start_configured(&zkap.server_config(""));
    let client_dir = zkap.client_dir("");
    assert_eq!(redeem(client_dir.path(), &voucher(7))["state"], "redeemed");
    let client = client_with_plugin(&node, client_dir.path(), &zkap.library).await;
    let uploads: Vec<_> = (0..16u8)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                let si = StorageIndex::from_bytes([n; 16]);
                let data = vec![n; 10_000];
                upload(&client, si, &[0, 1], &data).await;
                assert!(read_back(&client, ShareKind::Immutable, &si, 1).await == data);
            })
        })
        .collect();
    for upload in uploads {
        upload.await.expect("a paid upload");
    }
    drop(client);
    let tokens = wallet(client_dir.path());
    // Two shares of 10 kB each: 2 passes per upload.
    assert_eq!(count(&tokens, "spent"), 32, "{tokens}");
    assert_eq!(count(&tokens, "invalid"), 0, "{tokens}");
    assert_eq!(count(&tokens, "spendable"), 60 - 32, "{tokens}");
}

/// Inputs tried: a client without the plugin, and a client with it but an empty wallet.
/// Each is refused with a clear error and nothing is stored.
#[test]
fn a_client_without_passes_is_refused_with_the_structured_error() {
    let zkap = Zkap::new();
    let node = GbsNode::start_configured(&zkap.server_config(""));
    let file = zkap.dir.path().join("data");
    std::fs::write(&file, vec![1u8; 1000]).expect("write data");
    let si = random_si().to_string();
    let file = file.to_str().expect("UTF-8");
    let refused = gbs_client(None, &["--json", "put", node.nurl(), &si, "0", file]);
    assert!(!refused.status.success());
    let answer: serde_json::Value = serde_json::from_slice(&refused.stdout).expect("JSON");
    let rejection = &answer["rejection"];
    assert_eq!(rejection["plugin"], NAME);
    assert_eq!(rejection["status"], 402);
    assert_eq!(rejection["code"], "more-passes-required");
    assert_eq!(rejection["details"]["valid"], 0);
    assert_eq!(rejection["details"]["required"], 1);

    let empty = zkap.client_dir("");
    let broke = gbs_client(Some(empty.path()), &["put", node.nurl(), &si, "0", file]);
    assert!(!broke.status.success());
    let stderr = String::from_utf8_lossy(&broke.stderr);
    assert!(stderr.contains("spendable passes"), "{stderr}");

    assert_eq!(listed_shares(&node, &si), serde_json::json!([]));
}

/// The wallet is put back to before an upload, so the client offers the passes it already
/// spent; the server, restarted in between, refuses them as spent, the client marks them
/// invalid and pays with fresh ones.
#[test]
fn replayed_passes_are_refused_also_after_a_server_restart() {
    let zkap = Zkap::new();
    let node = GbsNode::start_configured(&zkap.server_config(""));
    let client_dir = zkap.client_dir("");
    redeem(client_dir.path(), &voucher(2));
    // The database and its write-ahead log: the client process keeps its connection to the
    // end, so recent changes may live in the log only.
    let wallet_files: Vec<PathBuf> = ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            client_dir
                .path()
                .join("plugins-state")
                .join(NAME)
                .join(format!("wallet.sqlite3{suffix}"))
        })
        .collect();
    let before: Vec<Option<Vec<u8>>> = wallet_files.iter().map(|f| std::fs::read(f).ok()).collect();
    let file = zkap.dir.path().join("data");
    std::fs::write(&file, vec![3u8; 3000]).expect("write data");
    let (si, file) = (random_si().to_string(), file.to_str().expect("UTF-8"));
    let put = |node: &GbsNode, shnum: &str| {
        gbs_client(
            Some(client_dir.path()),
            &["put", node.nurl(), &si, shnum, file],
        )
    };
    succeeded(put(&node, "0"));
    assert_eq!(count(&wallet(client_dir.path()), "spent"), 1);

    let (_, dir) = node.stop();
    let node = GbsNode::start_in(dir);
    for (file, contents) in wallet_files.iter().zip(&before) {
        match contents {
            Some(bytes) => std::fs::write(file, bytes).expect("put the wallet back"),
            None => {
                let _ = std::fs::remove_file(file);
            }
        }
    }
    succeeded(put(&node, "1"));
    let tokens = wallet(client_dir.path());
    assert_eq!(count(&tokens, "invalid"), 1, "the replayed pass: {tokens}");
    assert_eq!(count(&tokens, "spent"), 1, "{tokens}");
    assert_eq!(count(&tokens, "spendable"), 58, "{tokens}");
    assert_eq!(listed_shares(&node, &si), serde_json::json!([0, 1]));
}

/// At 1 KiB per pass, three 100 KiB shares cost 300 passes, about 70 KB of header: the
/// client sends them to the plugin's route and names the handle instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allocation_whose_passes_exceed_the_header_limit_succeeds() {
    let zkap = Zkap::new();
    let node = GbsNode::start_configured(&zkap.server_config("pass-value = 1024\n"));
    let client_dir = zkap.client_dir("pass-value = 1024\ndefault-token-count = 400\n");
    assert_eq!(redeem(client_dir.path(), &voucher(3))["state"], "redeemed");
    let client = client_with_plugin(&node, client_dir.path(), &zkap.library).await;
    let si = random_si();
    let data = vec![9u8; 100 * 1024];
    assert_eq!(upload(&client, si, &[0, 1, 2], &data).await.len(), 3);
    assert!(read_back(&client, ShareKind::Immutable, &si, 2).await == data);
    drop(client);
    assert_eq!(count(&wallet(client_dir.path()), "spent"), 300);
}

/// Input tried: passes signed by another issuer's key (the client redeemed from an issuer
/// that is not the server's). The server refuses them all with their indexes; the client
/// marks them invalid and, with nothing left, gives up with the rejection. Nothing is
/// spent, nothing stored.
#[test]
fn passes_signed_by_another_key_are_refused_and_marked_invalid() {
    let zkap = Zkap::new();
    let node = GbsNode::start_configured(&zkap.server_config(""));
    // Another issuer, another key: the client redeems there first ...
    let other_key = zkap.dir.path().join("other.key");
    let made = run_ok(
        Command::new(zkap_tool(&zkap.library))
            .arg("signing-key")
            .arg(&other_key),
    );
    let other_public = String::from_utf8_lossy(&made.stdout).trim().to_owned();
    let (mut other, other_url) = Zkap::issuer(&zkap.library, &other_key);
    let client_dir = tempfile::tempdir().expect("temp dir");
    let configure = |url: &str| {
        write_client_config(
            client_dir.path(),
            &zkap.library,
            url,
            &other_public,
            "default-token-count = 3\n",
        );
    };
    configure(&other_url);
    assert_eq!(redeem(client_dir.path(), &voucher(4))["state"], "redeemed");
    let _ = other.kill();
    let _ = other.wait();
    // ... then is pointed at the server's issuer, with the other key's tokens in its wallet.
    configure(&zkap.url);
    let file = zkap.dir.path().join("data");
    std::fs::write(&file, vec![1u8; 10]).expect("write data");
    let (si, file) = (random_si().to_string(), file.to_str().expect("UTF-8"));
    let refused = gbs_client(
        Some(client_dir.path()),
        &["--json", "put", node.nurl(), &si, "0", file],
    );
    assert!(!refused.status.success());
    let answer: serde_json::Value = serde_json::from_slice(&refused.stdout).expect("JSON");
    let details = &answer["rejection"]["details"];
    assert_eq!(
        answer["rejection"]["code"], "more-passes-required",
        "{answer}"
    );
    assert_eq!(details["required"], 1, "{answer}");
    assert_eq!(details["valid"], 0, "{answer}");
    assert_eq!(
        details["signature-check-failed"],
        serde_json::json!([0]),
        "{answer}"
    );
    let tokens = wallet(client_dir.path());
    assert_eq!(
        count(&tokens, "invalid"),
        3,
        "each pass tried once, all refused: {tokens}"
    );
    assert_eq!(count(&tokens, "spent"), 0, "{tokens}");
    assert_eq!(listed_shares(&node, &si), serde_json::json!([]));
}

/// Allocates `si` share 0 by hand with `data` as the plugin's data: the status and body.
async fn allocate_by_hand(node: &GbsNode, si: &StorageIndex, data: &[u8]) -> (u16, Vec<u8>) {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let body = AllocateRequest {
        share_numbers: BTreeSet::from([ShareNumber(0)]),
        allocated_size: 10,
    }
    .to_cbor();
    let mut connection = RawConnection::connect(node.nurl()).await.expect("connect");
    let headers = [
        format!(
            "X-Tahoe-Authorization: lease-renew-secret {}",
            b64(&[1; 32])
        ),
        format!(
            "X-Tahoe-Authorization: lease-cancel-secret {}",
            b64(&[2; 32])
        ),
        format!("X-Tahoe-Authorization: upload-secret {}", b64(&[3; 32])),
        format!(
            "X-Tahoe-Plugin-Data: {NAME} {}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
        ),
        "Content-Type: application/cbor".to_owned(),
        "Accept: application/cbor".to_owned(),
    ];
    connection
        .send_head(
            "POST",
            &format!("/storage/v1/immutable/{si}"),
            &headers,
            body.len(),
        )
        .await
        .expect("send the head");
    connection
        .tls
        .write_all(&body)
        .await
        .expect("send the body");
    let status = read_status(&mut connection.tls).await.expect("a status");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tokio::io::AsyncReadExt::read_to_end(&mut connection.tls, &mut rest),
    )
    .await;
    (status, rest)
}

/// Inputs tried, by hand on the wire: a pass of 176 bytes, a truncated CBOR payload, and a
/// handle nobody issued. A structured rejection each; nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payment_data_gets_a_structured_rejection_and_nothing_is_stored() {
    let zkap = Zkap::new();
    let node = GbsNode::start_configured(&zkap.server_config(""));
    let si = random_si();
    use gbs_plugin_interface::ciborium::Value;
    let short_pass = cbor(&Value::Map(vec![(
        "passes".into(),
        Value::Array(vec![Value::Bytes(vec![b'a'; 176])]),
    )]));
    let mut truncated = short_pass.clone();
    truncated.truncate(truncated.len() / 2);
    let unknown_handle = cbor(&Value::Map(vec![(
        "handle".into(),
        Value::Bytes(vec![0; 16]),
    )]));
    for (data, status, code) in [
        (short_pass, 400, "malformed-pass"),
        // Cut short, it is not one CBOR item: the host refuses it before the plugin runs.
        (truncated, 400, "is not CBOR"),
        (unknown_handle, 400, "unknown-handle"),
    ] {
        let (got, body) = allocate_by_hand(&node, &si, &data).await;
        assert_eq!(got, status, "{code}");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(code), "{code}: {text}");
    }
    let client = node.client();
    let listed = client
        .list_shares(ShareKind::Immutable, &si)
        .await
        .expect("list");
    assert!(listed.is_empty());
}

/// The price calculator and voucher listing of the client resource answer as the
/// original's HTTP resource does.
#[test]
fn the_client_resource_prices_files_and_lists_vouchers() {
    let zkap = Zkap::new();
    let client_dir = zkap.client_dir("");
    let priced = client_route(
        client_dir.path(),
        "POST",
        "calculate-price",
        r#"{"version": 1, "sizes": [10485760, 0]}"#,
    );
    let priced = succeeded(priced);
    let priced: serde_json::Value = serde_json::from_slice(&priced.stdout).expect("JSON");
    // plugin-model §2.4: 10 MiB at 3-of-10 costs 40 passes, for 31 days.
    assert_eq!(
        priced,
        serde_json::json!({ "price": 40, "period": 31 * 24 * 3600 })
    );
    redeem(client_dir.path(), &voucher(5));
    let listed = gbs_client(Some(client_dir.path()), &["client-route", NAME, "voucher"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(listed["vouchers"][0]["number"], voucher(5));
    assert_eq!(listed["vouchers"][0]["state"], "redeemed");
    // Input tried: a voucher of the wrong shape.
    let refused = client_route(
        client_dir.path(),
        "PUT",
        "voucher",
        r#"{"voucher": "short"}"#,
    );
    assert!(!refused.status.success());
    let unknown = gbs_client(
        Some(client_dir.path()),
        &["client-route", NAME, &format!("voucher/{}", voucher(6))],
    );
    assert!(!unknown.status.success(), "an unknown voucher is 404");
}

/// Issue 11's end to end, with real processes only: a stock Tahoe 1.20 client node whose
/// storage servers are three `gbs` nodes charging with ZKAP. Directly, its uploads are
/// refused (it has no passes); through `gbs gateway` with a funded wallet, `tahoe put` of
/// files from 0 bytes to 32 MiB, `tahoe get` byte for byte, a directory with the files
/// linked in and `tahoe check --verify` work, and the passes the wallet spent are the ones
/// the three servers recorded.
#[test]
fn a_stock_tahoe_client_pays_through_the_gateway() {
    let zkap = Zkap::new();
    let nodes: Vec<GbsNode> = (0..3)
        .map(|_| GbsNode::start_configured(&zkap.server_config("")))
        .collect();
    let nurls: Vec<&str> = nodes.iter().map(GbsNode::nurl).collect();

    let mut direct_args = vec!["servers-yaml"];
    direct_args.extend(nurls.iter().copied());
    let direct = TahoeClient::start(&gbs_stdout(&direct_args), 2, 3, 3);
    assert!(
        direct.put_is_refused(),
        "an upload without passes succeeded"
    );

    let dir = zkap.funded_gateway_dir(&nurls, "");
    let gateway_dir = dir.path().to_owned();
    let gateway = GbsGateway::start_in(dir, 3);
    assert_eq!(gateway.nurls().len(), 3);

    let yaml = gbs_stdout(&[
        "gateway",
        "servers-yaml",
        gateway_dir.to_str().expect("path"),
    ]);
    let client = TahoeClient::start(&yaml, 2, 3, 3);
    client.store_files_in_a_directory(32 << 20);
    drop(client);

    // What the wallet spent is what the three servers recorded, and some was spent.
    let spent = count(&wallet(&gateway_dir), "spent");
    drop(gateway);
    let recorded: u64 = nodes.iter().map(recorded_spending).sum();
    // The 32 MiB file alone: three shares of over 16 MiB, 17 passes each.
    assert!(spent >= 51, "the wallet spent {spent} passes");
    assert_eq!(spent, recorded, "the wallet and the servers disagree");
}

/// The passes `node`'s ZKAP plugin recorded as spent.
fn recorded_spending(node: &GbsNode) -> u64 {
    let status = run_ok(
        Command::new(gbs_binary())
            .args(["plugin", "status", "--json"])
            .arg(node.dir()),
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    status["plugins"][0]["counters"]["spending_successes_sum"]
        .as_u64()
        .unwrap_or(0)
}

/// ZKAP's lease crawler, here: the gateway renews the leases of what was stored through it,
/// paid with passes from its wallet like any renewal (with `lease-renew-after` of 1 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_renews_leases_paid_with_passes() {
    let zkap = Zkap::new();
    let server = zkap.server_config("");
    let node = tokio::task::spawn_blocking(move || GbsNode::start_configured(&server))
        .await
        .expect("node");
    let nurl = node.nurl().to_owned();
    let gateway_dir = zkap.funded_gateway_dir(
        &[&nurl],
        "lease-renew-after = 1s\nlease-check-interval = 1s\n",
    );
    let gateway = tokio::task::spawn_blocking(move || GbsGateway::start_in(gateway_dir, 1))
        .await
        .expect("gateway");
    let client = ClientBuilder::new(gateway.nurls()[0].parse().expect("NURL"))
        .build()
        .expect("client");
    // Three shares of 100 KiB: one pass each.
    let si = random_si();
    let data = vec![3u8; 100 << 10];
    upload(&client, si, &[0, 1, 2], &data).await;
    let stored = recorded_spending(&node);
    assert_eq!(stored, 3);
    let started = std::time::Instant::now();
    while recorded_spending(&node) < stored + 3 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "no paid renewal within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let gateway_dir = gateway.stop();
    // Every renewal paid three passes, and the wallet spent what the server recorded.
    let recorded = recorded_spending(&node);
    assert_eq!(recorded % 3, 0, "{recorded}");
    assert_eq!(count(&wallet(gateway_dir.path()), "spent"), recorded);
}
