//! Shared helpers for the integration tests: the stock Tahoe venv, `gbs` and stock
//! Tahoe servers running as real processes on loopback, and the fixture plugin libraries
//! of `tests/fixtures/`.

mod fixtures;
mod in_process;
mod plugin_service;
mod postgres;
mod process;
mod raw;
mod samples;
mod tahoe_client;
mod tahoe_grid;
mod venv;

pub use fixtures::{
    blocking_plugin, build_fixture, build_plugin_crate, failing_constructor_plugin,
    fixture_library, fixtures_dir, panicking_plugin,
};
pub use in_process::InProcessServer;
pub use plugin_service::{Behaviour, PluginService, CLIENT_DATA, FORGED_VERSION};
pub use postgres::Postgres;
pub use process::{
    assert_all_passed, gbs_binary, gbs_stdout, read_line_starting, run_python, wait_for_exit,
    GbsGateway, GbsNode, StockServer,
};
pub use raw::{cpu_time, processes, read_status, ProcessIds, ProcessStats, RawConnection};
pub use samples::sample_plugin;
pub use tahoe_client::TahoeClient;
pub use tahoe_grid::StockNode;
pub use venv::{interop_script, tahoe_python};

use std::path::PathBuf;

use gbs::protocol::{LeaseCancelSecret, LeaseRenewSecret, LeaseSecrets, UploadSecret};

/// A loopback port free now (another process may take it before it is bound).
pub fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The lease secrets tests use where any fixed pair will do.
pub fn test_lease() -> LeaseSecrets {
    LeaseSecrets {
        renew: LeaseRenewSecret::new([1; 32]),
        cancel: LeaseCancelSecret::new([2; 32]),
    }
}

/// The bytes of [`test_upload_secret`], for tests that write the header themselves.
pub const TEST_UPLOAD_SECRET: &[u8] = b"gbs-tests-upload-secret";

/// The upload secret tests use where any fixed one will do.
pub fn test_upload_secret() -> UploadSecret {
    UploadSecret::new(TEST_UPLOAD_SECRET.to_vec()).expect("a non-empty secret")
}

/// `target/<profile>/`: where the running binary is, or the directory above it for test
/// binaries, which live in `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running binary");
    let dir = exe.parent().expect("binaries live in target/<profile>/");
    // Test binaries live one level down, in target/<profile>/deps/.
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent().unwrap_or(dir).to_owned()
    } else {
        dir.to_owned()
    }
}

/// `target/tmp/`, Cargo's scratch directory for tests.
fn target_tmp_dir() -> PathBuf {
    let profile = profile_dir();
    profile.parent().unwrap_or(&profile).join("tmp")
}

/// Every file below `dir`, recursively (none if it does not exist).
pub fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A benchmark binary's one argument: `--short` (every row, few operations, to prove it
/// works) or none. Anything else ends the process with status 2 and a message naming it.
pub fn short_mode(program: &str) -> bool {
    match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--short") => true,
        Some(other) => {
            eprintln!("{program}: unknown argument {other:?}; the only one is --short");
            std::process::exit(2);
        }
    }
}
