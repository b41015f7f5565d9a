//! `gbs-bench`: where `gbs` stands, in one run: against stock Tahoe 1.20, against what the
//! machine allows, and with plugins against without.
//!
//! ```sh
//! cargo run --release -p gbs-tests --bin gbs-bench            # the full table
//! cargo run --release -p gbs-tests --bin gbs-bench -- --short # seconds; proves it works
//! ```
//!
//! - Stock Tahoe and `gbs` run as real processes on loopback over TLS. Most rows drive both
//!   with the same client (ours, a Rust client that is not the bottleneck at these rates),
//!   so its cost is common to both columns; two rows use stock Tahoe's own Python client.
//! - The machine's ceilings (TLS over loopback with no storage, the disk's sequential write
//!   with fsync) are measured in the same run, and `gbs` is shown as a share of them.
//! - The plugin rows compare a `gbs` node with three in-process plugins to one without,
//!   and one with an out-of-process plugin (a service that admits everything, in a process
//!   of its own on a Unix socket, whose CPU counts as the server's). Each plugin node's
//!   `gbs plugin status` must show its plugins called for every read, none failed.
//! - Every loop is bounded in count, and what is read back is checked. Numbers are
//!   wall-clock on whatever else the machine is doing: compare the ratios, and run it twice
//!   before believing a small difference. The last line is the whole result as JSON.
//!
//! `--short` uses small sizes and counts, so that CI proves in seconds that every row runs
//! and transfers the right bytes; its timings mean nothing. `--only KEY` (`versus_stock`
//! with `ceilings`, `plugins` with the out-of-process rows, `gateway`) runs one section, to
//! look at it closely.

mod ceilings;
mod load;
mod remote_plugin;
mod report;
mod workloads;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use gbs::client::{Client, ClientBuilder};
use gbs::plugins::registry::open_library;
use gbs::plugins::ClientPluginHandle;
use gbs::protocol::StorageIndex;
use gbs_tests::{
    gbs_stdout, panicking_plugin, run_python, sample_plugin, GbsGateway, GbsNode, ProcessStats,
    StockServer, TahoeClient,
};
use remote_plugin::RemotePlugin;
use report::{Better, Row, Section};
use workloads::storage_index;

/// Sizes and counts of one run.
struct Plan {
    short: bool,
    /// `version` requests sent to stock Tahoe; `gbs`, being faster, gets [`FAST`] times as
    /// many so that its measure lasts long enough to mean something.
    version_requests: usize,
    small_reads: usize,
    mutable_writes: usize,
    /// The upload and download through our client.
    big: usize,
    /// The upload and download through stock Tahoe's Python client.
    stock_client: usize,
    /// Each of the 8 concurrent uploads of the memory row.
    memory_upload: usize,
    /// Rounds of each measure, of which the best counts.
    rounds: u8,
}

/// How many more requests `gbs` gets than stock Tahoe in the small-request rows.
const FAST: usize = 8;
/// Connections (and requests in flight) of the concurrent rows.
const WIDE: usize = 64;
/// Uploads at once in the memory row.
const MEMORY_UPLOADS: u8 = 8;
/// The allow-list token of the plugin node.
const TOKEN: &str = "bench-token";

impl Plan {
    fn new(short: bool) -> Self {
        if short {
            Self {
                short,
                version_requests: 128,
                small_reads: 128,
                mutable_writes: 16,
                big: 4 << 20,
                stock_client: 1 << 20,
                memory_upload: 1 << 20,
                rounds: 1,
            }
        } else {
            Self {
                short,
                version_requests: 8192,
                small_reads: 1024,
                mutable_writes: 300,
                big: 256 << 20,
                stock_client: 64 << 20,
                memory_upload: 256 << 20,
                rounds: 3,
            }
        }
    }
}

/// The sections `--only` picks from; `versus_stock` brings `ceilings` (they share a measure).
const SECTIONS: [&str; 3] = ["versus_stock", "plugins", "gateway"];

/// `--short` and `--only KEY`, in any order; anything else stops the program.
fn arguments() -> (bool, Option<&'static str>) {
    let mut short = false;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let key = (arg == "--only").then(|| args.next()).flatten();
        match (arg.as_str(), key) {
            ("--short", _) => short = true,
            (_, Some(key)) if SECTIONS.contains(&key.as_str()) => {
                only = SECTIONS.into_iter().find(|s| *s == key);
            }
            _ => {
                eprintln!(
                    "gbs-bench: unknown argument {arg:?}; use --short and/or --only {}",
                    SECTIONS.join("|")
                );
                std::process::exit(2);
            }
        }
    }
    (short, only)
}

fn main() {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|arg| arg == remote_plugin::FLAG) {
        let socket = args.next().expect("the plugin service's socket");
        remote_plugin::serve(std::path::Path::new(&socket));
    }
    let (short, only) = arguments();
    let plan = Plan::new(short);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let wanted = |key: &str| only.is_none_or(|only| only == key);
    let sections = runtime.block_on(async {
        let mut sections = Vec::new();
        let data = Arc::new(random_bytes(plan.big));
        if wanted("versus_stock") {
            sections.extend(versus_stock(&plan, &data).await);
        }
        if wanted("plugins") {
            let [in_process, out_of_process] = plugin_rows(&plan, &data).await;
            sections.push(Section {
                key: "plugins",
                title: "gbs with three in-process plugins (access-log, allow-list, fixture-panics)",
                baseline: "no plugins",
                ratio: "times better (below 1: the plugins' cost)",
                rows: in_process,
            });
            sections.push(Section {
                key: "out_of_process_plugin",
                title: "gbs with one out-of-process plugin (admits everything; Unix socket; \
                        its process's CPU counted with the node's)",
                baseline: "no plugins",
                ratio: "times better (below 1: the plugin's cost)",
                rows: out_of_process,
            });
        }
        if wanted("gateway") {
            sections.push(Section {
                key: "gateway",
                title: "stock Tahoe's client node and CLI, directly to gbs and through gbs gateway",
                baseline: "directly",
                ratio: "times directly (below 1: the gateway's cost)",
                rows: gateway_rows(&plan).await,
            });
        }
        sections
    });
    report::print_table(&sections);
    println!("{}", report::json_line(&sections, plan.short));
}

/// Stock Tahoe against `gbs`, and `gbs` against the machine's ceilings.
async fn versus_stock(plan: &Plan, data: &Arc<Vec<u8>>) -> [Section; 2] {
    let stock = StockServer::start();
    let gbs = GbsNode::start();
    let servers = [
        Server::new(stock.nurl(), stock.pid(), 1),
        Server::new(gbs.nurl(), gbs.pid(), FAST),
    ];
    let mut versus = Vec::new();
    let mut ceilings = Vec::new();

    let stock_result = servers[0].measure(plan, data).await;
    let gbs_result = servers[1].measure(plan, data).await;
    let size = format!("{} MiB", plan.big >> 20);
    for (name, unit, better, pick) in Measured::ROWS {
        versus.push(Row::new(
            name.replace("SIZE", &size),
            (unit, *better),
            pick(&stock_result),
            pick(&gbs_result),
        ));
    }

    let stock_client = [stock.nurl(), gbs.nurl()].map(|nurl| stock_client(nurl, plan.stock_client));
    let mib = plan.stock_client >> 20;
    versus.push(Row::new(
        format!("{mib} MiB upload, stock Python client"),
        ("MiB/s", Better::Higher),
        stock_client[0].0,
        stock_client[1].0,
    ));
    versus.push(Row::new(
        format!("{mib} MiB download, stock Python client"),
        ("MiB/s", Better::Higher),
        stock_client[0].1,
        stock_client[1].1,
    ));
    drop((stock, gbs));
    versus.push(Row::new(
        format!(
            "server peak RSS, {MEMORY_UPLOADS} concurrent {} MiB uploads",
            plan.memory_upload >> 20
        ),
        ("MiB", Better::Lower),
        peak_memory(Fresh::Stock, plan.memory_upload).await,
        peak_memory(Fresh::Gbs, plan.memory_upload).await,
    ));

    // The best of five: a ceiling is what the machine can do, not what it did once (the
    // TLS one moved between 1,550 and 2,290 MiB/s across runs of three).
    let mut tls: f64 = 0.0;
    let mut disk: f64 = 0.0;
    let scratch = tempfile::tempdir().expect("temp dir");
    for _ in 0..5 {
        tls = tls.max(ceilings::tls_loopback(plan.big).await);
        disk = disk.max(ceilings::disk_write(scratch.path(), plan.big));
    }
    let big = plan.big >> 20;
    ceilings.push(Row::new(
        format!("{big} MiB upload vs TLS over loopback"),
        ("MiB/s", Better::Higher),
        tls,
        gbs_result.upload,
    ));
    ceilings.push(Row::new(
        format!("{big} MiB download vs TLS over loopback"),
        ("MiB/s", Better::Higher),
        tls,
        gbs_result.download,
    ));
    ceilings.push(Row::new(
        format!("{big} MiB upload vs disk write + fsync"),
        ("MiB/s", Better::Higher),
        disk,
        gbs_result.upload,
    ));

    [
        Section {
            key: "versus_stock",
            title: "stock Tahoe 1.20 and gbs, side by side",
            baseline: "stock Tahoe",
            ratio: "times better",
            rows: versus,
        },
        Section {
            key: "ceilings",
            title: "gbs against the machine's ceilings (measured in this run)",
            baseline: "ceiling",
            ratio: "share of the ceiling",
            rows: ceilings,
        },
    ]
}

/// A server under test, how to reach it and its process.
struct Server {
    client: Client,
    nurl: String,
    /// The small-request rows' load generator.
    target: load::Target,
    pid: u32,
    /// Multiplier of the small-request counts.
    scale: usize,
}

/// What one server did in the rows both columns of which come from our client.
#[derive(Default)]
struct Measured {
    version: f64,
    version_cpu_micros: f64,
    small_read_one: f64,
    small_read_wide: f64,
    mutable: f64,
    /// Listing shares, renewing a lease, allocating and aborting ([`workloads::bookkeeping`]).
    bookkeeping: [f64; 3],
    upload: f64,
    download: f64,
}

type Pick = fn(&Measured) -> f64;

impl Measured {
    const ROWS: &'static [(&'static str, &'static str, Better, Pick)] = &[
        (
            "GET version, 64 connections",
            "req/s",
            Better::Higher,
            |m| m.version,
        ),
        (
            "server CPU per version request",
            "µs",
            Better::Lower,
            |m| m.version_cpu_micros,
        ),
        (
            "1 KiB ranged read, 1 connection",
            "req/s",
            Better::Higher,
            |m| m.small_read_one,
        ),
        (
            "1 KiB ranged read, 64 connections",
            "req/s",
            Better::Higher,
            |m| m.small_read_wide,
        ),
        (
            "mutable read-test-write 4 KiB, 1 connection",
            "req/s",
            Better::Higher,
            |m| m.mutable,
        ),
        ("list shares, 1 connection", "req/s", Better::Higher, |m| {
            m.bookkeeping[0]
        }),
        (
            "add or renew a lease, 1 connection",
            "req/s",
            Better::Higher,
            |m| m.bookkeeping[1],
        ),
        (
            "allocate and abort a share, 1 connection",
            "pairs/s",
            Better::Higher,
            |m| m.bookkeeping[2],
        ),
        ("SIZE upload, our client", "MiB/s", Better::Higher, |m| {
            m.upload
        }),
        ("SIZE download, our client", "MiB/s", Better::Higher, |m| {
            m.download
        }),
    ];
}

impl Server {
    fn new(nurl: &str, pid: u32, scale: usize) -> Self {
        Self {
            client: client(nurl, 1, Vec::new()),
            nurl: nurl.to_owned(),
            target: load::Target::new(nurl, &[]),
            pid,
            scale,
        }
    }

    /// The upload and download rows, with our client as `gbs client` runs it (see
    /// [`workloads::on_own_thread`]). On the multi-threaded runtime the other rows need, its
    /// connection's task and the task reading the body woke each other across threads, at a
    /// third of its download rate on this machine.
    async fn transfers(&self, si: StorageIndex, data: &Arc<Vec<u8>>) -> (f64, f64) {
        let (nurl, data) = (self.nurl.clone(), data.clone());
        workloads::on_own_thread(move || async move {
            let client = client(&nurl, WIDE, Vec::new());
            let upload = workloads::upload(&client, si, &data).await;
            (upload, workloads::download(&client, &si, &data).await)
        })
        .await
    }

    /// The bookkeeping rows ([`workloads::bookkeeping`]), with our client on a thread of its
    /// own as in [`Server::transfers`]: one request at a time is all latency, which the
    /// multi-threaded runtime's wakes across threads would add to.
    async fn bookkeeping(&self, si: StorageIndex, count: usize) -> [f64; 3] {
        let nurl = self.nurl.clone();
        workloads::on_own_thread(move || async move {
            workloads::bookkeeping(&client(&nurl, 1, Vec::new()), si, count).await
        })
        .await
    }

    async fn measure(&self, plan: &Plan, data: &Arc<Vec<u8>>) -> Measured {
        let requests = plan.version_requests * self.scale;
        let reads = plan.small_reads * self.scale;
        let mut best = Measured {
            version_cpu_micros: f64::MAX,
            ..Measured::default()
        };
        // The best of a few rounds: what the server can do, not what a noisy neighbour
        // let it do once.
        for round in 0..plan.rounds {
            let (version, cpu) = cpu_per_request(&[self.pid], requests, async {
                load::version(&self.target, requests, WIDE).await
            })
            .await;
            let si = storage_index(10 + round);
            let (upload, download) = self.transfers(si, data).await;
            let round = Measured {
                version,
                version_cpu_micros: cpu,
                small_read_one: load::small_reads(&self.target, si, data, reads, 1).await,
                small_read_wide: load::small_reads(&self.target, si, data, reads, WIDE).await,
                mutable: workloads::mutable_writes(
                    &self.client,
                    storage_index(20 + round),
                    plan.mutable_writes,
                )
                .await,
                bookkeeping: self.bookkeeping(si, plan.mutable_writes).await,
                upload,
                download,
            };
            best = best.best(&round);
        }
        best
    }
}

impl Measured {
    /// Each number at its best of `self` and `other`.
    fn best(&self, other: &Self) -> Self {
        Self {
            version: self.version.max(other.version),
            version_cpu_micros: self.version_cpu_micros.min(other.version_cpu_micros),
            small_read_one: self.small_read_one.max(other.small_read_one),
            small_read_wide: self.small_read_wide.max(other.small_read_wide),
            mutable: self.mutable.max(other.mutable),
            bookkeeping: std::array::from_fn(|i| self.bookkeeping[i].max(other.bookkeeping[i])),
            upload: self.upload.max(other.upload),
            download: self.download.max(other.download),
        }
    }
}

/// Every plugin of `node` was called at least `calls` times and never failed: the plugin
/// rows measured plugins at work, not a node that skipped them. (`calls` counts hook calls
/// of all kinds.)
fn assert_plugins_called(node: &GbsNode, calls: u64) {
    let status = gbs_stdout(&["plugin", "status", "--json", &node.dir().to_string_lossy()]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("status as JSON");
    for plugin in status["plugins"].as_array().expect("the plugins") {
        let called = plugin["calls"].as_u64().unwrap_or(0);
        assert!(
            called >= calls,
            "{called} calls, at least {calls} expected: {plugin}"
        );
        assert_eq!(plugin["failures"], 0, "{plugin}");
    }
}

/// Runs `work` (`requests` requests) and answers its result with the CPU time processes
/// `pids` spent per request together, in µs.
async fn cpu_per_request<T>(
    pids: &[u32],
    requests: usize,
    work: impl Future<Output = T>,
) -> (T, f64) {
    let cpu = || -> std::time::Duration { pids.iter().map(|pid| ProcessStats::of(*pid).cpu).sum() };
    let before = cpu();
    let result = work.await;
    let spent = cpu() - before;
    (result, spent.as_secs_f64() * 1e6 / requests as f64)
}

fn client(nurl: &str, connections: usize, plugins: Vec<ClientPluginHandle>) -> Client {
    plugins
        .into_iter()
        .fold(
            ClientBuilder::new(nurl.parse().expect("NURL")),
            ClientBuilder::plugin,
        )
        .max_connections(connections)
        .build()
        .expect("client")
}

fn random_bytes(len: usize) -> Vec<u8> {
    // A cheap generator is enough: the bytes only have to differ from place to place.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// (upload, download) MiB/s of one share of `size` bytes through stock Tahoe's client.
fn stock_client(nurl: &str, size: usize) -> (f64, f64) {
    let output = run_python(
        "bench_stock_client.py",
        &[nurl, "--size", &size.to_string()],
    );
    assert!(
        output.status.success(),
        "bench_stock_client.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let times: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("bench_stock_client.py printed {line:?}: {e}"));
    let rate = |key: &str| {
        let seconds = times[key].as_f64().unwrap_or_else(|| panic!("no {key}"));
        size as f64 / f64::from(1 << 20) / seconds
    };
    (rate("upload_seconds"), rate("download_seconds"))
}

enum Fresh {
    Stock,
    Gbs,
}

/// Peak resident MiB of a fresh server process during [`MEMORY_UPLOADS`] concurrent
/// uploads of `size` bytes each.
async fn peak_memory(which: Fresh, size: usize) -> f64 {
    let data = Arc::new(random_bytes(size));
    let (nurl, pid, _keep): (String, u32, Box<dyn std::any::Any>) = match which {
        Fresh::Stock => {
            let server = StockServer::start();
            (server.nurl().to_owned(), server.pid(), Box::new(server))
        }
        Fresh::Gbs => {
            let node = GbsNode::start();
            (node.nurl().to_owned(), node.pid(), Box::new(node))
        }
    };
    let client = client(&nurl, usize::from(MEMORY_UPLOADS), Vec::new());
    workloads::concurrent_uploads(&client, 100, MEMORY_UPLOADS, &data).await;
    ProcessStats::of(pid).peak_rss as f64 / f64::from(1 << 20)
}

/// A node directly and through a gateway to it (no plugins on either side, so the rows show
/// what passing on costs): the latency of one small request through our client, and
/// `tahoe put` and `tahoe get` of one file by a stock client node (1-of-1 encoding), in
/// MiB/s of file data; best of the plan's rounds.
async fn gateway_rows(plan: &Plan) -> Vec<Row> {
    let node = GbsNode::start();
    let gateway = GbsGateway::start(&format!("[gateway]\nupstreams = {}\n", node.nurl()), 1);
    let yaml = gbs_tests::gbs_stdout;
    let gateway_dir = gateway.dir().to_str().expect("a UTF-8 path").to_owned();
    let clients = [
        TahoeClient::start(&yaml(&["servers-yaml", node.nurl()]), 1, 1, 1),
        TahoeClient::start(&yaml(&["gateway", "servers-yaml", &gateway_dir]), 1, 1, 1),
    ];
    let size = plan.stock_client / 2;
    let mut rates = [(0.0_f64, 0.0_f64); 2];
    for (client, rate) in clients.iter().zip(&mut rates) {
        for round in 0..plan.rounds {
            let file = client.scratch().join(format!("file-{round}"));
            let data = random_bytes(size);
            std::fs::write(&file, &data).expect("write the file");
            let started = std::time::Instant::now();
            let cap = client.ok(&["put", file.to_str().expect("path")]);
            let put = started.elapsed().as_secs_f64();
            let back = client.scratch().join(format!("back-{round}"));
            let started = std::time::Instant::now();
            client.ok(&["get", cap.trim(), back.to_str().expect("path")]);
            let get = started.elapsed().as_secs_f64();
            assert!(
                std::fs::read(&back).expect("read back") == data,
                "the file came back different"
            );
            let mib = size as f64 / f64::from(1 << 20);
            *rate = (rate.0.max(mib / put), rate.1.max(mib / get));
        }
    }
    let mut latency = [f64::MAX; 2];
    for (nurl, best) in [node.nurl(), gateway.nurls()[0].as_str()]
        .into_iter()
        .zip(&mut latency)
    {
        let one = client(nurl, 1, Vec::new());
        for _ in 0..plan.rounds {
            let rate = workloads::version(&one, plan.version_requests, 1).await;
            *best = best.min(1e6 / rate);
        }
    }
    let mib = size as f64 / f64::from(1 << 20);
    vec![
        Row::new(
            "GET version, 1 connection, latency",
            ("µs", Better::Lower),
            latency[0],
            latency[1],
        ),
        Row::new(
            format!("tahoe put {mib} MiB"),
            ("MiB/s", Better::Higher),
            rates[0].0,
            rates[1].0,
        ),
        Row::new(
            format!("tahoe get {mib} MiB"),
            ("MiB/s", Better::Higher),
            rates[0].1,
            rates[1].1,
        ),
    ]
}

/// The plugin rows, on small requests, where a plugin's cost shows most: a node with no
/// plugins against one with the three in-process plugins, and against one with an
/// out-of-process plugin.
async fn plugin_rows(plan: &Plan, data: &Arc<Vec<u8>>) -> [Vec<Row>; 2] {
    let plain = GbsNode::start();
    let allow_list = sample_plugin("gbs-sample-allow-list");
    let plugged = GbsNode::start_configured(&format!(
        "[storage]\nplugins = access-log, allow-list, fixture-panics\n\
         [storageserver.plugins.access-log]\nlibrary = {}\n\
         [storageserver.plugins.allow-list]\nlibrary = {}\ntokens = {TOKEN}\n\
         [storageserver.plugins.fixture-panics]\nlibrary = {}\npanic-in = nothing\n",
        sample_plugin("gbs-sample-access-log").display(),
        allow_list.display(),
        panicking_plugin().display(),
    ));
    let service = RemotePlugin::start();
    let remote = GbsNode::start_configured(&format!(
        "[storage]\nplugins = remote\n[storageserver.plugins.remote]\nurl = {}\n",
        service.url()
    ));
    let token = |dir: &Path| {
        let settings = [("token".to_owned(), TOKEN.to_owned())].into();
        let library = open_library(&allow_list).expect("open the allow-list");
        ClientPluginHandle::build(dir, "allow-list", &settings, &library).expect("client plugin")
    };
    let state = tempfile::tempdir().expect("temp dir");
    let (reads, requests) = (plan.small_reads * FAST, plan.version_requests * FAST);
    let data = Arc::new(data[..data.len().min(1 << 20)].to_vec());
    let si = storage_index(3);
    // The allow-list's data, as our client sends it to a node that announces the plugin
    // (the other nodes refuse data for a plugin they have not loaded).
    let token_data = {
        let mut data = Vec::new();
        let token = [("token", TOKEN)]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>();
        ciborium::into_writer(&token, &mut data).expect("CBOR into a Vec");
        format!(
            "{}: {}",
            gbs::plugins::data::PLUGIN_DATA_HEADER,
            gbs::plugins::PluginData::header_value("allow-list", &data)
        )
    };
    let mut measured = Vec::new();
    for (node, extra, pids) in [
        (&plain, Vec::new(), vec![plain.pid()]),
        (&plugged, vec![token_data], vec![plugged.pid()]),
        (&remote, Vec::new(), vec![remote.pid(), service.pid()]),
    ] {
        workloads::upload(
            &client(node.nurl(), 1, vec![token(state.path())]),
            si,
            &data,
        )
        .await;
        let target = load::Target::new(node.nurl(), &extra);
        let mut best = [0.0, f64::MAX, f64::MAX];
        for _ in 0..plan.rounds {
            let latency = load::small_reads(&target, si, &data, reads, 1).await;
            let (_, version) = cpu_per_request(&pids, requests, async {
                load::version(&target, requests, WIDE).await
            })
            .await;
            let (_, read) = cpu_per_request(&pids, reads, async {
                load::small_reads(&target, si, &data, reads, WIDE).await
            })
            .await;
            best = [
                best[0].max(latency),
                best[1].min(version),
                best[2].min(read),
            ];
        }
        measured.push(best);
        // Every plugin here guards reads (allow-list not `version`, which is public).
        let reads_made = usize::from(plan.rounds) * 2 * reads;
        assert_plugins_called(node, u64::try_from(reads_made).expect("a count"));
    }
    let names = [
        ("1 KiB ranged read, 1 connection", "req/s", Better::Higher),
        (
            "server CPU per version request, 64 connections",
            "µs",
            Better::Lower,
        ),
        (
            "server CPU per 1 KiB ranged read, 64 connections",
            "µs",
            Better::Lower,
        ),
    ];
    [1, 2].map(|with| {
        names
            .iter()
            .enumerate()
            .map(|(i, (name, unit, better))| {
                Row::new(*name, (*unit, *better), measured[0][i], measured[with][i])
            })
            .collect()
    })
}
