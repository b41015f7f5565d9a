//! The sample plugins of `sample-plugins/`, built on demand into the workspace's own target
//! directory, in the profile of the running binary.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// Builds a sample plugin package (e.g. `gbs-sample-access-log`) and returns its library,
/// `target/<profile>/lib<crate>.so`.
///
/// # Panics
/// When it does not build; the panic message has Cargo's output.
pub fn sample_plugin(package: &str) -> PathBuf {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _guard = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    let profile = crate::profile_dir();
    let library = profile.join(format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    ));
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["build", "-p", package]);
    if profile.file_name().is_some_and(|n| n == "release") {
        command.arg("--release");
    }
    let output = command.output().expect("run cargo build");
    assert!(
        output.status.success(),
        "building {package} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(library.is_file(), "{} was not built", library.display());
    library
}
