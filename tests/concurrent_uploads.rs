//! Stock Tahoe 1.20's own client writing one immutable share with 4 PATCH requests in
//! flight (`tests/interop/concurrent_uploads.py`), as its uploader pipelines chunks.

use gbs_tests::{assert_all_passed, run_python, GbsNode, StockServer};

/// Rounds per chunk size; with 3 chunk sizes, the number of checks the script reports.
const ROUNDS: usize = 10;

/// Runs the script against `nurl` and asserts every round passed.
fn assert_concurrent_uploads_pass(nurl: &str, what: &str) {
    let rounds = ROUNDS.to_string();
    let output = run_python("concurrent_uploads.py", &[nurl, "--rounds", &rounds]);
    assert_all_passed(
        &output,
        &format!("concurrent uploads against {what}"),
        3 * ROUNDS,
    );
}

/// The expectations hold for the reference implementation, so a failure against `gbs` is
/// a `gbs` defect, not a wrong expectation.
#[test]
fn stock_client_concurrent_patches_against_stock_tahoe() {
    let server = StockServer::start();
    assert_concurrent_uploads_pass(server.nurl(), "stock Tahoe");
}

#[test]
fn stock_client_concurrent_patches_against_gbs() {
    let node = GbsNode::start();
    assert_concurrent_uploads_pass(node.nurl(), "gbs");
    let (status, _dir) = node.stop();
    assert!(status.success());
}
