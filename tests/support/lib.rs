//! Shared helpers for the integration tests: the stock Tahoe venv, and `gbs` and stock
//! Tahoe servers running as real processes on loopback.

mod process;
mod venv;

pub use process::{assert_all_passed, gbs_binary, run_python, GbsNode, StockServer};
pub use venv::{interop_script, tahoe_python};

use std::path::{Path, PathBuf};

/// `target/<profile>/`, the directory above the running test binary's `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running test binary");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps/")
        .to_owned()
}

/// `target/tmp/`, Cargo's scratch directory for tests.
fn target_tmp_dir() -> PathBuf {
    let profile = profile_dir();
    profile.parent().unwrap_or(&profile).join("tmp")
}
