//! A node's storage directory shared with stock Tahoe-LAFS 1.20: written by one side, then
//! served or read by the other (`tests/interop/stock_storage.py`).

use std::path::Path;
use std::process::Output;

use gbs_tests::{assert_all_passed, files_under, gbs_binary, run_python, GbsNode, StockNode};

/// The scripts take paths as text; temporary paths are ASCII.
fn text(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Asserts that `stock_storage.py write` or `write-http` succeeded and returns how many
/// shares it wrote (its `wrote N shares` line).
fn shares_written(output: &Output, what: &str) -> usize {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let count = stdout.lines().find_map(|line| {
        line.strip_prefix("wrote ")?
            .strip_suffix(" shares")?
            .parse()
            .ok()
    });
    match count {
        Some(count) if output.status.success() && count > 0 => count,
        _ => panic!("{what} failed ({}):\n{stdout}\n{stderr}", output.status),
    }
}

#[test]
fn gbs_serves_a_storage_directory_written_by_stock_tahoe() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let manifest = work.path().join("manifest.json");
    GbsNode::create(dir.path());
    let storage = dir.path().join("storage");
    let written = run_python(
        "stock_storage.py",
        &["write", text(&storage), text(&manifest)],
    );
    let shares = shares_written(&written, "stock_storage.py write");

    let node = GbsNode::start_in(dir);
    let verified = run_python(
        "stock_storage.py",
        &["verify-http", node.nurl(), text(&manifest)],
    );
    // One check per share at least (share sets and lease renewals come on top).
    assert_all_passed(&verified, "verify-http against gbs", shares);
    let (status, dir) = node.stop();
    assert!(status.success(), "gbs run exited with {status}");

    // verify-http renewed and added leases through gbs; stock must still read it all.
    let storage = dir.path().join("storage");
    let read = run_python(
        "stock_storage.py",
        &["read", text(&storage), text(&manifest)],
    );
    assert_all_passed(&read, "stock read after gbs served the directory", shares);
}

#[test]
fn stock_tahoe_reads_a_storage_directory_written_by_gbs() {
    let work = tempfile::tempdir().unwrap();
    let manifest = work.path().join("manifest.json");
    let node = GbsNode::start();
    let written = run_python(
        "stock_storage.py",
        &["write-http", node.nurl(), text(&manifest)],
    );
    let shares = shares_written(&written, "stock_storage.py write-http to gbs");
    let (status, dir) = node.stop();
    assert!(status.success(), "gbs run exited with {status}");

    let storage = dir.path().join("storage");
    // Every upload completed, so nothing may be left in the incoming tree.
    let leftovers = files_under(&storage.join("shares/incoming"));
    assert!(
        leftovers.is_empty(),
        "files left in incoming/: {leftovers:?}"
    );
    let read = run_python(
        "stock_storage.py",
        &["read", text(&storage), text(&manifest)],
    );
    assert_all_passed(&read, "stock read of the directory gbs wrote", shares);
}

/// Whether `gbs client version NURL` is answered within `within`, asking every 200 ms.
fn answers_version(nurl: &str, within: std::time::Duration) -> Result<(), String> {
    let started = std::time::Instant::now();
    loop {
        let output = std::process::Command::new(gbs_binary())
            .args(["client", "version", nurl])
            .output()
            .expect("run gbs client version");
        if output.status.success() {
            return Ok(());
        }
        if started.elapsed() > within {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Input tried: a node directory that `tahoe create-node` made and stock Tahoe ran, whose
/// `node.pem` Foolscap wrote as an X.509 v1 certificate. gbs serves it (it refused to start
/// before: "invalid peer certificate: UnsupportedCertVersion"), with the swissnum of stock's
/// `storage.furl`; then stock runs it again.
#[test]
fn gbs_runs_the_node_directory_of_a_stock_node_and_gives_it_back() {
    let stock = StockNode::storage_alone();
    let dir = stock.stop();
    let pem = std::fs::read_to_string(dir.path().join("private/node.pem")).expect("node.pem");
    assert!(pem.contains("BEGIN CERTIFICATE"), "{pem}");
    let node = GbsNode::start_in(dir);
    let nurl = node.nurl().to_owned();
    answers_version(&nurl, std::time::Duration::ZERO).expect("gbs answers on a stock directory");
    let (_, dir) = node.stop();
    let _stock = StockNode::run_in(dir);
    answers_version(&nurl, std::time::Duration::from_secs(60))
        .expect("stock answers the same NURL again");
}

/// Input tried: a node directory `gbs create-node` made, run by stock Tahoe. Stock finds the
/// file it takes for a node directory, and keeps the swissnum from the `storage.furl` gbs
/// wrote: the NURL gbs printed reaches the stock node (before, stock refused the directory,
/// then made a new swissnum and the NURL got 401).
#[test]
fn stock_tahoe_runs_a_node_directory_gbs_made_under_the_same_nurl() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nurl = GbsNode::create(dir.path());
    let _stock = StockNode::run_in(dir);
    answers_version(&nurl, std::time::Duration::from_secs(60))
        .expect("stock answers the NURL gbs made");
}
