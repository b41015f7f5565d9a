//! The Python venv with stock Tahoe-LAFS, created once and shared by every test.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `tests/interop/`, where the Python side of the interop tests lives.
fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}

/// The path of a script in `tests/interop/`.
pub fn interop_script(name: &str) -> PathBuf {
    interop_dir().join(name)
}

/// The venv's Python, with `tests/interop/requirements.txt` installed. The venv lives in
/// `target/tmp/` (where `CARGO_TARGET_TMPDIR` points; this library cannot read that, since
/// Cargo sets it only for test crates) or at `$GBS_TAHOE_VENV`, and is rebuilt when the requirements
/// change. A file lock makes concurrent test processes wait for one installer.
///
/// # Panics
/// When the venv cannot be built: the interop tests cannot run without it, and saying why
/// is better than skipping them.
pub fn tahoe_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| ensure_venv().unwrap_or_else(|e| panic!("stock Tahoe venv: {e}")))
        .clone()
}

fn ensure_venv() -> Result<PathBuf, String> {
    let venv = std::env::var_os("GBS_TAHOE_VENV")
        .map_or_else(|| crate::target_tmp_dir().join("tahoe-venv"), PathBuf::from);
    let python = venv.join("bin").join("python");
    let requirements_path = interop_dir().join("requirements.txt");
    let requirements = std::fs::read_to_string(&requirements_path)
        .map_err(|e| format!("{}: {e}", requirements_path.display()))?;
    let marker = venv.join("gbs-requirements.txt");

    std::fs::create_dir_all(venv.parent().unwrap_or(Path::new("."))).map_err(|e| e.to_string())?;
    let lock_path = venv.with_extension("lock");
    let lock = File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    // fs4's lock, not std's `File::lock`, which needs a newer Rust than the workspace's MSRV.
    fs4::FileExt::lock(&lock).map_err(|e| format!("lock {}: {e}", lock_path.display()))?;

    if std::fs::read_to_string(&marker).ok().as_deref() == Some(requirements.as_str())
        && python.exists()
    {
        return Ok(python);
    }
    eprintln!("creating the stock Tahoe venv in {} (once)", venv.display());
    let _ = std::fs::remove_dir_all(&venv);
    run(
        Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
            .arg("-m")
            .arg("venv")
            .arg(&venv),
    )?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements_path))?;
    std::fs::write(&marker, requirements).map_err(|e| e.to_string())?;
    Ok(python)
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
