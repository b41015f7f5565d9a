//! Where shares live on disk (`gbs-protocol.md` §6.1), shared with stock Tahoe.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::protocol::{ShareNumber, StorageIndex};

/// The directories of one store.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    shares: PathBuf,
    incoming: PathBuf,
    advisories: PathBuf,
}

impl Layout {
    /// The layout under `<node>/storage`.
    pub(super) fn new(storage_dir: &Path) -> Self {
        let shares = storage_dir.join("shares");
        Self {
            incoming: shares.join("incoming"),
            advisories: storage_dir.join("corruption-advisories"),
            shares,
        }
    }

    /// `shares/`: completed immutable shares and all mutable shares.
    pub(super) fn shares_root(&self) -> &Path {
        &self.shares
    }

    /// `shares/incoming/`: uploads in progress.
    pub(super) fn incoming_root(&self) -> &Path {
        &self.incoming
    }

    /// `corruption-advisories/`.
    pub(super) fn advisories_dir(&self) -> &Path {
        &self.advisories
    }

    /// `shares/<prefix>`.
    pub(super) fn prefix_dir(&self, si: &StorageIndex) -> PathBuf {
        self.shares.join(si.shard_prefix())
    }

    /// `shares/<prefix>/<si>`.
    pub(super) fn share_dir(&self, si: &StorageIndex) -> PathBuf {
        self.prefix_dir(si).join(si.to_string())
    }

    /// `shares/<prefix>/<si>/<shnum>`.
    pub(super) fn share_path(&self, si: &StorageIndex, shnum: ShareNumber) -> PathBuf {
        self.share_dir(si).join(shnum.to_string())
    }

    /// Where a new or rewritten mutable share is prepared before it is renamed into place.
    /// The name is not numeric, so listings (ours and stock Tahoe's) never see it.
    pub(super) fn scratch_path(&self, si: &StorageIndex, shnum: ShareNumber) -> PathBuf {
        self.share_dir(si).join(format!("{shnum}.new"))
    }

    /// `shares/incoming/<prefix>`.
    pub(super) fn incoming_prefix_dir(&self, si: &StorageIndex) -> PathBuf {
        self.incoming.join(si.shard_prefix())
    }

    /// `shares/incoming/<prefix>/<si>`.
    pub(super) fn incoming_dir(&self, si: &StorageIndex) -> PathBuf {
        self.incoming_prefix_dir(si).join(si.to_string())
    }

    /// `shares/incoming/<prefix>/<si>/<shnum>`.
    pub(super) fn incoming_path(&self, si: &StorageIndex, shnum: ShareNumber) -> PathBuf {
        self.incoming_dir(si).join(shnum.to_string())
    }

    /// The share files of `si`: regular files whose names are share numbers. An SI with no
    /// directory has none.
    pub(super) fn share_files(
        &self,
        si: &StorageIndex,
    ) -> io::Result<BTreeMap<ShareNumber, PathBuf>> {
        let entries = match fs::read_dir(self.share_dir(si)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(e),
        };
        let mut files = BTreeMap::new();
        for entry in entries {
            let entry = entry?;
            let Some(shnum) = entry.file_name().to_str().and_then(share_number) else {
                continue;
            };
            let path = entry.path();
            if path.is_file() {
                files.insert(shnum, path);
            }
        }
        Ok(files)
    }
}

/// The share number a file name stands for. Tahoe counts names matching `^[0-9]+$`; of
/// those we take the ones it writes itself (no leading zeros) that fit a [`ShareNumber`], so
/// that a listed number always opens the listed file.
fn share_number(name: &str) -> Option<ShareNumber> {
    let canonical = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_digit())
        && (name == "0" || !name.starts_with('0'));
    canonical.then(|| name.parse().ok()).flatten()
}

/// Whether `name` is that of a scratch file ([`Layout::scratch_path`]).
pub(super) fn is_scratch_name(name: &str) -> bool {
    name.strip_suffix(".new").and_then(share_number).is_some()
}

/// Removes `dir` if it is empty; a directory that is not empty, or gone, is left alone.
pub(super) fn remove_dir_if_empty(dir: &Path) {
    // `remove_dir` refuses non-empty directories, which is exactly the test we want.
    let _ = fs::remove_dir(dir);
}

/// Creates `dir` and any missing parents, syncing the parent of each directory it creates,
/// so that a share later renamed into `dir` does not vanish with its directory in a crash.
pub(super) fn create_dir_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent();
    if let Some(parent) = parent {
        create_dir_durably(parent)?;
    }
    match fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
        Ok(()) => parent.map_or(Ok(()), sync_dir),
    }
}

/// Makes a directory's entries (a rename, a new or deleted file) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_tahoe() {
        let layout = Layout::new(Path::new("/node/storage"));
        let si: StorageIndex = "aaaqeayeaudaocajbifqydiob4".parse().unwrap();
        assert_eq!(
            layout.share_path(&si, ShareNumber(7)),
            Path::new("/node/storage/shares/aa/aaaqeayeaudaocajbifqydiob4/7")
        );
        assert_eq!(
            layout.incoming_path(&si, ShareNumber(0)),
            Path::new("/node/storage/shares/incoming/aa/aaaqeayeaudaocajbifqydiob4/0")
        );
        assert_eq!(
            layout.advisories_dir(),
            Path::new("/node/storage/corruption-advisories")
        );
        assert!(share_number(
            layout
                .scratch_path(&si, ShareNumber(3))
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
        )
        .is_none());
        assert!(is_scratch_name("3.new"));
        assert!(!is_scratch_name("03.new") && !is_scratch_name("3") && !is_scratch_name(".new"));
    }

    #[test]
    fn only_canonical_numeric_names_are_shares() {
        assert_eq!(share_number("0"), Some(ShareNumber(0)));
        assert_eq!(share_number("255"), Some(ShareNumber(255)));
        for name in ["", "007", "1a", "-1", "+1", "70000", "3.new", " 1"] {
            assert_eq!(share_number(name), None, "{name:?}");
        }
    }

    #[test]
    fn share_files_lists_numeric_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let si = StorageIndex::from_bytes([1; 16]);
        assert!(layout.share_files(&si).unwrap().is_empty());
        let share_dir = layout.share_dir(&si);
        fs::create_dir_all(share_dir.join("5")).unwrap();
        for name in ["0", "12", "notes", "3.new"] {
            fs::write(share_dir.join(name), b"x").unwrap();
        }
        let files = layout.share_files(&si).unwrap();
        assert_eq!(
            files.keys().copied().collect::<Vec<_>>(),
            [ShareNumber(0), ShareNumber(12)]
        );
        assert_eq!(files[&ShareNumber(12)], share_dir.join("12"));
    }

    #[test]
    fn remove_dir_if_empty_keeps_full_directories() {
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("full");
        let empty = dir.path().join("empty");
        fs::create_dir_all(&full).unwrap();
        fs::create_dir_all(&empty).unwrap();
        fs::write(full.join("0"), b"x").unwrap();
        remove_dir_if_empty(&full);
        remove_dir_if_empty(&empty);
        remove_dir_if_empty(&dir.path().join("missing"));
        assert!(full.join("0").exists());
        assert!(!empty.exists());
        sync_dir(dir.path()).unwrap();
    }

    #[test]
    fn create_dir_durably_makes_every_missing_level() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("shares/ab/abcd");
        create_dir_durably(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_durably(&deep).unwrap();
        fs::write(dir.path().join("file"), b"x").unwrap();
        assert!(create_dir_durably(&dir.path().join("file/sub")).is_err());
    }
}
