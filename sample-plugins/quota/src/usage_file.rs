//! `<state dir>/usage.json`: the bytes each account has allocated, `{account: bytes}`.
//!
//! quota-py reads and writes the same file, byte for byte: sorted keys, two-space indent,
//! a final newline.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::account::Account;

/// The file's name in the plugin's state directory.
pub const USAGE_FILE: &str = "usage.json";

/// Bytes allocated per account name.
pub type Usage = BTreeMap<String, u64>;

/// A usage file that exists but cannot be used.
#[derive(Debug)]
pub struct LoadError {
    path: PathBuf,
    reason: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never reset silently: that would give every account its quota again.
        write!(
            f,
            "cannot load usage from {} ({}); repair it, or move it away to start from zero",
            self.path.display(),
            self.reason
        )
    }
}

impl std::error::Error for LoadError {}

/// The usage saved in `path`; empty if there is no such file.
///
/// # Errors
///
/// A file that cannot be read, or is not a JSON object of account names to whole numbers
/// of bytes.
pub fn load(path: &Path) -> Result<Usage, LoadError> {
    let failed = |reason: String| LoadError {
        path: path.to_owned(),
        reason,
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Usage::new()),
        Err(e) => return Err(failed(e.to_string())),
    };
    let usage: Usage = serde_json::from_slice(&bytes).map_err(|e| failed(e.to_string()))?;
    if let Some(name) = usage.keys().find(|name| Account::parse(name).is_none()) {
        return Err(failed(format!("{name:?} is not an account name")));
    }
    Ok(usage)
}

/// The file's bytes.
pub(crate) fn encode(usage: &Usage) -> Vec<u8> {
    // A map of strings to integers always encodes.
    let mut bytes = serde_json::to_vec_pretty(usage).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Replaces `path` with `usage`, so that a crash leaves the old file or the new one, whole:
/// a temporary file in the same directory, fsync, rename over, fsync the directory.
///
/// # Errors
///
/// Any I/O error; the temporary file is removed.
pub fn save(path: &Path, usage: &Usage) -> std::io::Result<()> {
    // Unique per write: during a reload the old and the new plugin may both write.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let directory = path.parent().unwrap_or(Path::new("."));
    let temp = directory.join(format!(
        ".{USAGE_FILE}.{}-{}.tmp",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(&encode(usage))?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    // The rename itself is durable only once the directory is.
    File::open(directory)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(pairs: &[(&str, u64)]) -> Usage {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn a_missing_file_is_no_usage_yet() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(&dir.path().join(USAGE_FILE)).unwrap(), Usage::new());
    }

    #[test]
    fn a_valid_file_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(USAGE_FILE);
        std::fs::write(&path, b"{\"bob\": 18446744073709551615, \"alice\": 0}").unwrap();
        assert_eq!(
            load(&path).unwrap(),
            usage(&[("alice", 0), ("bob", u64::MAX)])
        );
    }

    #[test]
    fn a_corrupt_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(USAGE_FILE);
        for corrupt in [
            "",
            "not json",
            "[]",
            "{\"a\": 1.5}",
            "{\"a\": -1}",
            "{\"a\": 18446744073709551616}",
            "{\"a\": \"1\"}",
            "{\"a\": true}",
            "{\"a b\": 1}",
            "{\"a\": 1} {}",
            "\u{feff}{}",
        ] {
            std::fs::write(&path, corrupt).unwrap();
            let message = load(&path).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!("cannot load usage from {}", path.display())),
                "{corrupt:?}: {message}"
            );
        }
    }

    #[test]
    fn an_unreadable_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be.
        let path = dir.path().join(USAGE_FILE);
        std::fs::create_dir(&path).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains(USAGE_FILE));
    }

    #[test]
    fn save_replaces_the_file_and_load_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(USAGE_FILE);
        save(&path, &usage(&[("old", 1)])).unwrap();
        let saved = usage(&[("zed", 7), ("alice", 400)]);
        save(&path, &saved).unwrap();
        assert_eq!(load(&path).unwrap(), saved);
        // Sorted keys, two-space indent, a final newline: what quota-py writes.
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\n  \"alice\": 400,\n  \"zed\": 7\n}\n"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, [USAGE_FILE], "no temporary file is left");
    }

    #[test]
    fn an_empty_usage_is_an_empty_object() {
        assert_eq!(encode(&Usage::new()), b"{}\n");
    }

    #[test]
    fn save_into_a_missing_directory_fails_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join(USAGE_FILE);
        assert!(save(&path, &usage(&[("a", 1)])).is_err());
        assert!(!path.exists());
    }
}
