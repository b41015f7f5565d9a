//! Removing what crashes and abandoned uploads leave under `shares/`: mutable scratch files
//! (`<shnum>.new`, left by a crash during a rewrite) and empty storage-index and prefix
//! directories (left by allocations whose uploads never completed).
//!
//! The sweep looks at names and directory-entry types only, never at file contents, so a
//! big store costs one directory read per storage index. Entries whose names do not follow
//! Tahoe's layout are left alone.

use std::fs::{self, DirEntry};
use std::io;
use std::path::Path;

use super::layout::{is_scratch_name, remove_dir_if_empty, Layout};
use crate::protocol::StorageIndex;

/// What a sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Swept {
    pub(super) scratch_files: usize,
    pub(super) directories: usize,
}

/// Sweeps the whole `shares/` tree (but not `incoming/`, which `Store::open` wipes).
/// Errors on single entries are logged and skipped: leftovers never stop a node starting.
pub(super) fn sweep(layout: &Layout) -> Swept {
    let mut swept = Swept::default();
    for prefix in entries(layout.shares_root()) {
        let name = prefix.file_name();
        let Some(name) = name.to_str().filter(|n| is_prefix_name(n)) else {
            continue;
        };
        if !prefix.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let prefix_dir = prefix.path();
        for si_dir in entries(&prefix_dir) {
            let si_name = si_dir.file_name();
            let belongs = si_name
                .to_str()
                .and_then(|n| n.parse::<StorageIndex>().ok())
                .is_some_and(|si| si.shard_prefix() == name);
            if belongs && si_dir.file_type().is_ok_and(|t| t.is_dir()) {
                sweep_si_dir(&si_dir.path(), &mut swept);
            }
        }
        if fs::remove_dir(&prefix_dir).is_ok() {
            swept.directories += 1;
        }
    }
    swept
}

/// Removes the scratch files of one storage index, then the directory if it is empty.
fn sweep_si_dir(dir: &Path, swept: &mut Swept) {
    for entry in entries(dir) {
        let scratch = entry.file_name().to_str().is_some_and(is_scratch_name)
            && entry.file_type().is_ok_and(|t| t.is_file());
        if !scratch {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => swept.scratch_files += 1,
            Err(error) => {
                tracing::warn!(path = %entry.path().display(), %error, "cannot remove a scratch file")
            }
        }
    }
    if fs::remove_dir(dir).is_ok() {
        swept.directories += 1;
    }
}

/// The entries of `dir`; none (after a warning) if it cannot be read.
fn entries(dir: &Path) -> impl Iterator<Item = DirEntry> {
    let read = fs::read_dir(dir).map_err(|error| {
        if error.kind() != io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), %error, "cannot read a share directory");
        }
    });
    read.into_iter().flatten().filter_map(Result::ok)
}

/// Whether `name` is a shard prefix: two characters of Tahoe's base32 alphabet.
fn is_prefix_name(name: &str) -> bool {
    name.len() == 2
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

/// Removes the directory of `si` and its prefix directory if they are empty. The caller
/// holds the storage index's lock and the store's share-directory lock.
pub(super) fn tidy_share_dir(layout: &Layout, si: &StorageIndex) {
    remove_dir_if_empty(&layout.share_dir(si));
    remove_dir_if_empty(&layout.prefix_dir(si));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ShareNumber;

    #[test]
    fn removes_scratch_files_and_empty_directories_only() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let kept = StorageIndex::from_bytes([1; 16]);
        let empty = StorageIndex::from_bytes([2; 16]);
        let scratch_only = StorageIndex::from_bytes([3; 16]);
        fs::create_dir_all(layout.share_dir(&kept)).unwrap();
        fs::create_dir_all(layout.share_dir(&empty)).unwrap();
        fs::create_dir_all(layout.share_dir(&scratch_only)).unwrap();
        for (si, name) in [(&kept, "0"), (&kept, "3.new"), (&kept, "notes.new")] {
            fs::write(layout.share_dir(si).join(name), b"x").unwrap();
        }
        fs::write(layout.scratch_path(&scratch_only, ShareNumber(1)), b"x").unwrap();
        let odd = layout.shares_root().join("zz/not-a-storage-index");
        fs::create_dir_all(&odd).unwrap();
        fs::create_dir_all(layout.shares_root().join("incoming/aa")).unwrap();

        let swept = sweep(&layout);

        assert_eq!(
            swept,
            Swept {
                scratch_files: 2,
                directories: 4
            }
        );
        let kept_dir = layout.share_dir(&kept);
        assert!(kept_dir.join("0").is_file());
        assert!(!kept_dir.join("3.new").exists());
        assert!(kept_dir.join("notes.new").exists(), "not a scratch name");
        for si in [&empty, &scratch_only] {
            assert!(!layout.share_dir(si).exists());
            assert!(!layout.prefix_dir(si).exists());
        }
        assert!(odd.is_dir(), "names outside the layout are left alone");
        assert!(layout.shares_root().join("incoming/aa").is_dir());
    }

    #[test]
    fn prefix_names_are_two_base32_characters() {
        for name in ["aa", "z7", "2b"] {
            assert!(is_prefix_name(name), "{name}");
        }
        for name in ["a", "aaa", "A1", "a1", "a8", "incoming", "a."] {
            assert!(!is_prefix_name(name), "{name}");
        }
    }
}
