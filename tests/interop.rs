//! Stock Tahoe-LAFS 1.20 (from PyPI) against `gbs`, and the other way round.

use gbs_tests::{assert_all_passed, run_python, GbsNode, StockServer};

/// Runs the conformance suite and asserts it passed, showing its report otherwise.
fn assert_suite_passes(nurl: &str, target: &str) {
    let output = run_python("stock_client_suite.py", &[nurl, "--target", target]);
    assert_all_passed(&output, &format!("suite against {target}"), 40);
}

#[test]
fn stock_client_suite_passes_against_gbs() {
    let node = GbsNode::start();
    assert_suite_passes(node.nurl(), "gbs");
    let (status, _dir) = node.stop();
    assert!(status.success());
}

/// The suite's expectations are checked against the reference implementation itself, so a
/// wrong expectation cannot make `gbs` look compatible.
#[test]
fn stock_client_suite_passes_against_stock_tahoe() {
    let server = StockServer::start();
    assert_suite_passes(server.nurl(), "stock");
}
