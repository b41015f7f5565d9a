//! Stock Tahoe-LAFS 1.20 (from PyPI) against `gbs`, and the other way round.

use gbs_tests::{run_python, GbsNode, StockServer};

/// Runs the conformance suite and asserts it passed, showing its report otherwise.
fn assert_suite_passes(nurl: &str, target: &str) {
    let output = run_python("stock_client_suite.py", &[nurl, "--target", target]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        output.status.success() && summary.ends_with(" 0 failed"),
        "suite against {target} failed:\n{stdout}\n{stderr}"
    );
    let passed: usize = summary.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(passed >= 40, "the suite ran only {passed} cases:\n{stdout}");
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
