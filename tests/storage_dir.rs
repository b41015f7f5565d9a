//! A node's storage directory shared with stock Tahoe-LAFS 1.20: written by one side, then
//! served or read by the other (`tests/interop/stock_storage.py`).

use std::path::Path;
use std::process::Output;

use gbs_tests::{assert_all_passed, files_under, run_python, GbsNode};

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
