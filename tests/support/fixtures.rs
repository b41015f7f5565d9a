//! The crates in `tests/fixtures/`, built on demand: plugin libraries for every way loading
//! can go right or wrong, interface snapshots they are built against, and hosts built
//! against an older and a newer interface.
//!
//! Each fixture is its own Cargo workspace (never a member of ours), with a committed
//! `Cargo.lock`, built with the `cargo` running the tests into one shared target directory,
//! `target/fixtures/`, so the dependencies are compiled once for all of them. The first
//! build takes about 15 s; later ones are no-ops.
//!
//! | fixture | what it is |
//! |---|---|
//! | `plugin-1.0` | a plain plugin (`fixture-1.0`, server and client) on interface 1.0 |
//! | `plugin-1.1` | the same (`fixture-1.1`) on interface 1.1, calling nothing 1.1 added |
//! | `plugin-1.3` | the same (`fixture-1.3`) on interface 1.3 (one field and one trait method more) |
//! | `plugin-2.0` | the same on interface 2.0 |
//! | `plugin-changed` | the same on a 1.2 interface whose `LogLevel` holds an `i8` |
//! | `plugin-abort` | the same built with `panic = "abort"` |
//! | `plugin-abi-0.10` | a gbs-shaped root module exported with abi_stable 0.10 |
//! | `plugin-ctor-fails` | `fixture-ctor-fails`: describes itself, both constructors fail |
//! | `plugin-lease-renewal` | `fixture-lease-renewal` (server): its constructor needs the 1.1 host call `set_lease_renewal` |
//! | `plugin-panics` | `fixture-panics`: every hook panics, or those in its `panic-in` setting |
//! | `plugin-blocks` | `fixture-blocks`: guards listing immutable shares; blocks its thread (sleeping, or spinning with `block-by = spin`) in the hooks its `block-in` setting lists |
//! | `plugin-v1`, `plugin-v2` | `fixture-versioned` 1.0.0 and 2.0.0 (one source): admits everything, announces its version, answers route `version` |
//! | `samples-1.0` | the sample plugins' sources (allow-list, access-log) on interface 1.0: two libraries, see [`fixture_library`] |
//! | `not-a-plugin` | a shared library without an abi_stable root module |
//! | `crashes-on-load` | a shared library whose initialiser aborts the process (ELF only) |
//! | `misbehaves-on-load` | a shared library whose initialiser hangs or prints a forged check report, as `GBS_FIXTURE_ON_LOAD` says (ELF only) |
//! | `plugin-bad-names` | declares `fixture-twin` twice and a plugin named `../escape` |
//! | `plugin-bad-describe` | a plugin library whose `describe` hangs or panics, as `GBS_FIXTURE_DESCRIBE` says |
//! | `host-1.3` | an executable on interface 1.3 that loads a library with the host's `compat.rs` |
//! | `host-1.0` | the same on interface 1.0, building the library's server side with a 1.0 host API |

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Builds `tests/fixtures/<name>` (once per test process; concurrent test processes wait
/// for each other) and returns the path of what it builds: the executable for `host-*`
/// fixtures, the shared library for the others.
///
/// # Panics
/// When the fixture does not build; the panic message has Cargo's output.
pub fn build_fixture(name: &str) -> PathBuf {
    built_artifact(name, &artifact_name(name))
}

/// Builds `tests/fixtures/<fixture>`, a workspace of several libraries (`samples-1.0`), and
/// returns the shared library of its package `package`, which [`build_fixture`] cannot name.
///
/// # Panics
/// When the fixture does not build, or builds no such library.
pub fn fixture_library(fixture: &str, package: &str) -> PathBuf {
    built_artifact(fixture, &library_name(package))
}

/// `artifact` in the output directory of `fixture`, built first unless this process has.
fn built_artifact(fixture: &str, artifact: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = match built.get(fixture) {
        Some(dir) => dir.clone(),
        None => {
            let dir = build(fixture).unwrap_or_else(|e| panic!("fixture {fixture}: {e}"));
            built.insert(fixture.to_owned(), dir.clone());
            dir
        }
    };
    let path = dir.join(artifact);
    assert!(
        path.is_file(),
        "fixture {fixture}: built, but {} is missing",
        path.display()
    );
    path
}

/// `fixture-panics`, whose hooks panic: for the tests that a plugin panic fails one
/// request and the server keeps serving.
pub fn panicking_plugin() -> PathBuf {
    build_fixture("plugin-panics")
}

/// `fixture-blocks`, whose hooks block their thread: for the tests that a stuck plugin
/// holds up only what it guards.
pub fn blocking_plugin() -> PathBuf {
    build_fixture("plugin-blocks")
}

/// `fixture-ctor-fails`, which passes `gbs plugin check` but whose constructors fail.
pub fn failing_constructor_plugin() -> PathBuf {
    build_fixture("plugin-ctor-fails")
}

/// `tests/fixtures/`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Builds fixture `name` and returns the directory its artifacts are in.
fn build(name: &str) -> Result<PathBuf, String> {
    let manifest = fixtures_dir().join(name).join("Cargo.toml");
    if !manifest.is_file() {
        return Err(format!(
            "no such fixture ({} is missing)",
            manifest.display()
        ));
    }
    build_manifest(&manifest)
}

/// Builds the crate of `manifest`, one made by a test as a plugin author would (a
/// `cdylib` depending on `plugin-interface`), beside the fixtures, and returns its library
/// `package` builds.
///
/// # Panics
/// When it does not build; the panic message has Cargo's output.
pub fn build_plugin_crate(manifest: &Path, package: &str) -> PathBuf {
    let dir = build_manifest(manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    dir.join(library_name(package))
}

/// Builds the crate of `manifest` into the fixtures' target directory, in the profile of
/// the running binary; returns the directory its artifacts are in.
fn build_manifest(manifest: &Path) -> Result<PathBuf, String> {
    let profile = crate::profile_dir();
    let target = profile.parent().unwrap_or(&profile).join("fixtures");
    std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    let lock_path = target.join("build.lock");
    let lock = File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    // fs4's lock, not std's `File::lock`, which needs a newer Rust than the workspace's MSRV.
    fs4::FileExt::lock(&lock).map_err(|e| format!("lock {}: {e}", lock_path.display()))?;

    // The cargo running these tests (it sets $CARGO), else the one that built them.
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    // The profile of the running binary, so that a benchmark measures optimised plugins.
    let release = profile.file_name().is_some_and(|n| n == "release");
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(&target);
    if release {
        command.arg("--release");
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo build failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(target.join(if release { "release" } else { "debug" }))
}

/// Package `gbs-fixture-<name>` with dots as dashes; its library or executable follows.
fn artifact_name(name: &str) -> String {
    let package = format!("gbs-fixture-{}", name.replace('.', "-"));
    if name.starts_with("host-") {
        format!("{package}{}", std::env::consts::EXE_SUFFIX)
    } else {
        library_name(&package)
    }
}

/// The file name of package `package`'s shared library.
fn library_name(package: &str) -> String {
    format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}
