//! The [`Store`]: opening a storage directory, free space, leases and corruption reports.
//! Immutable uploads and reads are in `immutable.rs`, read-test-write in `mutable.rs`.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::container::immutable::ImmutableContainer;
use super::container::lease::{LeaseChange, LeaseGrant};
use super::container::mutable::MutableContainer;
use super::container::{self, ContainerKind, ShareContainer};
use super::layout::{create_dir_durably, Layout};
use super::leftover::{self, Swept};
use super::lock::{lock, SiLocks};
use super::space::SpaceGauge;
use super::upload::Uploads;
use super::{advisory, Clock, StorageError};
use crate::protocol::{LeaseSecrets, ShareKind, ShareNumber, StorageIndex};

/// `maximum-mutable-share-size` as stock Tahoe announces it.
pub const MAXIMUM_MUTABLE_SHARE_SIZE: u64 = 69_105_000_000_000_000;

/// Mutable shares whose file is at most this big are changed by writing a new file and
/// renaming it into place, so a crash leaves either the old share or the new one. Larger
/// shares are changed in place.
const REWRITE_LIMIT: u64 = 8 * 1024 * 1024;

/// Owner number stock Tahoe writes for the lease an immutable allocate adds.
pub(super) const ALLOCATE_LEASE_OWNER: u32 = 0;
/// Owner number for leases added by `PUT /lease` and by mutable writes.
pub(super) const LEASE_OWNER: u32 = 1;

/// Settings of a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Bytes of disk to leave free; subtracted from the available space.
    pub reserved_space: u64,
    /// The 20-byte node id written into new mutable containers and mutable leases.
    pub nodeid: [u8; 20],
}

/// What an upload write achieved. Exactly one write call of an upload (the one whose bytes
/// completed it, or the first to find it complete after a failed finalization) returns
/// [`WriteProgress::Completed`]; every other successful write returns
/// [`WriteProgress::Partial`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteProgress {
    /// Bytes are still missing.
    Partial {
        /// The ranges of `[0, allocated-size)` missing when this write's bytes landed:
        /// ascending, half-open, never empty.
        required: Vec<Range<u64>>,
    },
    /// This call finalized the share: it is durable and visible.
    Completed,
}

impl WriteProgress {
    /// Whether this call completed the share.
    pub fn is_complete(&self) -> bool {
        matches!(self, Self::Completed)
    }

    /// The ranges still missing; empty once completed.
    pub fn required(&self) -> &[Range<u64>] {
        match self {
            Self::Partial { required } => required,
            Self::Completed => &[],
        }
    }
}

/// An open share positioned at the start of its data.
#[derive(Debug)]
pub struct ShareReader {
    /// The container file, positioned at `data_offset`.
    pub file: File,
    /// Offset of share data byte 0 in the file.
    pub data_offset: u64,
    /// Length of the share data.
    pub len: u64,
}

/// The share store of one node: Tahoe's directory layout and containers, leases, and the
/// uploads in progress.
///
/// All methods block (file I/O and fsync); async callers run them on a blocking thread.
/// Operations on one storage index are serialized; different storage indexes proceed in
/// parallel, and writes to different uploads do too.
#[derive(Debug)]
pub struct Store {
    pub(super) layout: Layout,
    pub(super) config: StoreConfig,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) uploads: Uploads,
    pub(super) locks: SiLocks,
    pub(super) space: Arc<SpaceGauge>,
    /// Serializes creating and removing directories under `incoming/`, whose prefix
    /// directories are shared by many storage indexes.
    pub(super) incoming_dirs: Mutex<()>,
    /// The same for the prefix directories of `shares/`.
    pub(super) share_dirs: Mutex<()>,
    /// See [`REWRITE_LIMIT`]; tests lower it to reach the in-place path with small shares.
    pub(super) rewrite_limit: u64,
}

/// How writes grant leases. Storage plugins that charge for leases choose `Explicit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LeaseRenewal {
    /// As stock Tahoe: allocating renews the lease on the shares already there, and a
    /// mutable write renews it on every share written.
    #[default]
    Implicit,
    /// Only a lease request renews: allocating leaves existing shares alone (new shares get
    /// their first lease), and a mutable write leases only written shares whose leases have
    /// all expired (or that are new).
    Explicit,
}

impl Store {
    /// Opens (creating if needed) the store rooted at `<node>/storage`; wipes `incoming/`,
    /// since uploads do not survive a restart, and removes scratch files and empty
    /// directories that crashes and abandoned uploads left (see `leftover.rs`).
    pub fn open(
        storage_dir: &Path,
        config: StoreConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StorageError> {
        let layout = Layout::new(storage_dir);
        let shares = layout.shares_root();
        // Durably: a power loss must not take the directory every share lives in.
        create_dir_durably(shares).map_err(at(shares))?;
        let incoming = layout.incoming_root();
        match fs::remove_dir_all(incoming) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(StorageError::io(incoming, e))
            }
            _ => {}
        }
        fs::create_dir_all(incoming).map_err(at(incoming))?;
        let advisories = layout.advisories_dir();
        create_dir_durably(advisories).map_err(at(advisories))?;
        let swept = leftover::sweep(&layout);
        if swept != Swept::default() {
            tracing::info!(
                scratch_files = swept.scratch_files,
                directories = swept.directories,
                "removed leftovers of crashes and abandoned uploads"
            );
        }
        Ok(Self {
            space: Arc::new(SpaceGauge::new(shares.to_owned(), config.reserved_space)),
            layout,
            config,
            clock,
            uploads: Uploads::default(),
            locks: SiLocks::default(),
            incoming_dirs: Mutex::new(()),
            share_dirs: Mutex::new(()),
            rewrite_limit: REWRITE_LIMIT,
        })
    }

    /// Free bytes for new shares: filesystem available space minus reserved space, floored
    /// at 0, minus space promised to uploads in progress and to mutable writes under way.
    /// The measurement is cached for about a second, and taken again as soon as an upload
    /// or a growing mutable write ends.
    pub fn available_space(&self) -> u64 {
        self.space.unclaimed()
    }

    /// Add or renew a lease on every share of `si` (§4.7): a lease with the same renew
    /// secret is extended to 31 days from now (never shortened); otherwise a lease with
    /// owner 1 is added. Files that are not share containers are skipped.
    /// [`StorageError::ShareNotFound`] when `si` has no share files at all.
    pub fn add_or_renew_lease(
        &self,
        si: &StorageIndex,
        lease: &LeaseSecrets,
    ) -> Result<(), StorageError> {
        let _guard = self.locks.lock(si);
        let files = self.share_files(si)?;
        if files.is_empty() {
            return Err(StorageError::ShareNotFound);
        }
        let grant = self.grant(LEASE_OWNER, lease);
        for path in files.values() {
            self.lease_share(
                path,
                &grant,
                &[ContainerKind::Immutable, ContainerKind::Mutable],
            )?;
        }
        Ok(())
    }

    /// Records a corruption advisory (§4.6, §6.5) for a share this store holds; the report
    /// is dropped, as in stock Tahoe, when the disk has no room for it.
    pub fn advise_corrupt(
        &self,
        kind: ShareKind,
        si: &StorageIndex,
        shnum: ShareNumber,
        reason: &str,
    ) -> Result<(), StorageError> {
        if !self.layout.share_path(si, shnum).is_file() {
            return Err(StorageError::ShareNotFound);
        }
        let report = advisory::render(kind, si, shnum, reason);
        if report.len() as u64 > self.available_space() {
            tracing::warn!(%si, %shnum, "no space to record a corruption advisory");
            return Ok(());
        }
        let dir = self.layout.advisories_dir();
        let path =
            advisory::write(dir, self.clock.now_micros(), si, shnum, &report).map_err(at(dir))?;
        tracing::warn!(kind = kind.as_str(), %si, %shnum, report = %path.display(), "client reports a corrupt share");
        Ok(())
    }

    /// Creates `shares/<prefix>/<si>` durably if needed, and returns it.
    pub(super) fn create_share_dir(&self, si: &StorageIndex) -> Result<PathBuf, StorageError> {
        let dir = self.layout.share_dir(si);
        let _dirs = lock(&self.share_dirs);
        create_dir_durably(&dir).map_err(at(&dir))?;
        Ok(dir)
    }

    /// Removes the directory of `si`, and its prefix directory, if empty. The caller holds
    /// the storage index's lock.
    pub(super) fn tidy_share_dir(&self, si: &StorageIndex) {
        let _dirs = lock(&self.share_dirs);
        leftover::tidy_share_dir(&self.layout, si);
    }

    /// A lease granted now by this node.
    pub(super) fn grant(&self, owner: u32, lease: &LeaseSecrets) -> LeaseGrant {
        LeaseGrant::new(owner, *lease, self.clock.now(), self.config.nodeid)
    }

    /// The share files of `si`, by number.
    /// Share numbers of `si` whose files are containers of kind `C`; other files are
    /// skipped, where stock Tahoe fails with a 500 or lists them anyway.
    pub(super) fn list_shares<C: ShareContainer>(
        &self,
        si: &StorageIndex,
    ) -> Result<BTreeSet<ShareNumber>, StorageError> {
        let mut listed = BTreeSet::new();
        for (shnum, path) in self.share_files(si)? {
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io(path, e)),
            };
            if C::open(file)
                .map_err(|e| StorageError::io(&path, e))?
                .is_some()
            {
                listed.insert(shnum);
            }
        }
        Ok(listed)
    }

    /// Opens a share of kind `C` positioned at its data. [`StorageError::ShareNotFound`]
    /// if there is none (uploads in progress included); [`StorageError::WrongContainer`]
    /// if the file is of the other kind or no container at all.
    pub(super) fn open_share<C: ShareContainer>(
        &self,
        si: &StorageIndex,
        shnum: ShareNumber,
    ) -> Result<ShareReader, StorageError> {
        // Under the lock, so that the header is not read halfway through a write.
        let _guard = self.locks.lock(si);
        let path = self.layout.share_path(si, shnum);
        if !path.is_file() {
            return Err(StorageError::ShareNotFound);
        }
        let io_error = |e| StorageError::io(&path, e);
        let file = File::open(&path).map_err(io_error)?;
        let container =
            C::open(file)
                .map_err(io_error)?
                .ok_or_else(|| StorageError::WrongContainer {
                    path: path.clone(),
                    expected: C::KIND_NAME,
                })?;
        let (data_offset, len) = (container.data_offset(), container.data_len());
        let mut file = container.into_file();
        file.seek(SeekFrom::Start(data_offset)).map_err(at(&path))?;
        Ok(ShareReader {
            file,
            data_offset,
            len,
        })
    }

    pub(super) fn share_files(
        &self,
        si: &StorageIndex,
    ) -> Result<std::collections::BTreeMap<ShareNumber, PathBuf>, StorageError> {
        self.layout
            .share_files(si)
            .map_err(at(self.layout.share_dir(si)))
    }

    /// The kind of valid container at `path`, or `Unknown` (also for a missing file).
    pub(super) fn container_kind(&self, path: &Path) -> Result<ContainerKind, StorageError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ContainerKind::Unknown),
            Err(e) => return Err(StorageError::io(path, e)),
        };
        let kind = container::sniff(&file).map_err(at(path))?;
        let valid = match kind {
            ContainerKind::Immutable => ImmutableContainer::open(file).map_err(at(path))?.is_some(),
            ContainerKind::Mutable => MutableContainer::open(file).map_err(at(path))?.is_some(),
            ContainerKind::Unknown => false,
        };
        Ok(if valid { kind } else { ContainerKind::Unknown })
    }

    /// Adds or renews `grant` on the share at `path` if it is a valid container of one of
    /// `kinds`, and syncs the change. Returns the kind leased, or `Unknown` for a file left
    /// alone.
    pub(super) fn lease_share(
        &self,
        path: &Path,
        grant: &LeaseGrant,
        kinds: &[ContainerKind],
    ) -> Result<ContainerKind, StorageError> {
        let Some(file) = open_read_write(path)? else {
            return Ok(ContainerKind::Unknown);
        };
        let kind = container::sniff(&file).map_err(at(path))?;
        if !kinds.contains(&kind) {
            return Ok(ContainerKind::Unknown);
        }
        let change = match kind {
            ContainerKind::Immutable => ImmutableContainer::open(file)
                .map_err(at(path))?
                .map(|mut share| (share.add_or_renew_lease(grant), share.into_file())),
            ContainerKind::Mutable => MutableContainer::open(file)
                .map_err(at(path))?
                .map(|mut share| (share.add_or_renew_lease(grant), share.into_file())),
            ContainerKind::Unknown => None,
        };
        let Some((change, file)) = change else {
            tracing::debug!(path = %path.display(), "not a share container; lease skipped");
            return Ok(ContainerKind::Unknown);
        };
        if change.map_err(at(path))? != LeaseChange::Keep {
            file.sync_all().map_err(at(path))?;
        }
        Ok(kind)
    }
}

/// Opens an existing file for reading and writing; `None` if it is gone.
pub(super) fn open_read_write(path: &Path) -> Result<Option<File>, StorageError> {
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io(path, e)),
    }
}

/// Turns an I/O error into a [`StorageError`] naming `path`.
pub(super) fn at(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StorageError {
    let path = path.into();
    move |source| StorageError::io(path, source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::fixture::{lease, si, Fixture};

    #[test]
    fn open_creates_the_layout_and_wipes_incoming() {
        let fx = Fixture::new();
        let root = fx.dir.path().join("storage");
        assert!(root.join("shares").is_dir());
        assert!(root.join("shares/incoming").is_dir());
        assert!(root.join("corruption-advisories").is_dir());
        let stale = root.join("shares/incoming/aa/aaaqeayeaudaocajbifqydiob4/0");
        fs::create_dir_all(stale.parent().unwrap()).unwrap();
        fs::write(&stale, b"partial").unwrap();
        let fx = fx.reopen();
        assert!(!stale.exists());
        assert!(fx.dir.path().join("storage/shares/incoming").is_dir());
    }

    #[test]
    fn open_removes_scratch_files_and_empty_share_directories() {
        let fx = Fixture::new();
        fx.upload_share(&si(1), 0, b"kept");
        let scratch = fx.store.layout.scratch_path(&si(1), ShareNumber(4));
        fs::write(&scratch, b"half a rewrite").unwrap();
        let abandoned = fx.store.layout.share_dir(&si(2));
        fs::create_dir_all(&abandoned).unwrap();
        let crashed = fx.store.layout.scratch_path(&si(3), ShareNumber(0));
        fs::create_dir_all(crashed.parent().unwrap()).unwrap();
        fs::write(&crashed, b"new share, never renamed").unwrap();
        let fx = fx.reopen();
        assert!(!scratch.exists());
        assert_eq!(fx.store.list_immutable(&si(1)).unwrap().len(), 1);
        for n in [2, 3] {
            assert!(!fx.store.layout.share_dir(&si(n)).exists(), "si {n}");
            assert!(!fx.store.layout.prefix_dir(&si(n)).exists(), "si {n}");
        }
    }

    #[test]
    fn available_space_subtracts_reserved_space_and_promises() {
        let fx = Fixture::with_reserved(100);
        fx.store.space.set_disk_override(Some(1_000));
        assert_eq!(fx.store.available_space(), 900);
        fx.allocate(&si(1), &[0, 1], 300, 1);
        assert_eq!(fx.store.available_space(), 300);
        fx.store.space.set_disk_override(Some(50));
        assert_eq!(fx.store.available_space(), 0);
    }

    #[test]
    fn store_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Store>();
        shareable::<ShareReader>();
    }

    #[test]
    fn real_available_space_is_positive() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            reserved_space: 0,
            nodeid: [0; 20],
        };
        let store = Store::open(dir.path(), config, Arc::new(crate::storage::SystemClock)).unwrap();
        assert!(store.available_space() > 0);
    }

    #[test]
    fn lease_on_unknown_storage_index_is_not_found() {
        let fx = Fixture::new();
        assert!(matches!(
            fx.store.add_or_renew_lease(&si(9), &lease(1)),
            Err(StorageError::ShareNotFound)
        ));
        fs::create_dir_all(fx.store.layout.share_dir(&si(9))).unwrap();
        fs::write(fx.store.layout.share_dir(&si(9)).join("notes"), b"x").unwrap();
        assert!(matches!(
            fx.store.add_or_renew_lease(&si(9), &lease(1)),
            Err(StorageError::ShareNotFound)
        ));
    }

    #[test]
    fn lease_skips_files_that_are_not_containers() {
        let fx = Fixture::new();
        let dir = fx.store.layout.share_dir(&si(2));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("0"), b"not a share").unwrap();
        fx.store.add_or_renew_lease(&si(2), &lease(1)).unwrap();
        assert_eq!(fs::read(dir.join("0")).unwrap(), b"not a share");
    }

    #[test]
    fn corruption_advisory_needs_an_existing_share() {
        let fx = Fixture::new();
        let err = fx
            .store
            .advise_corrupt(ShareKind::Immutable, &si(1), ShareNumber(0), "bad");
        assert!(matches!(err, Err(StorageError::ShareNotFound)));
        fx.allocate(&si(1), &[0], 4, 1);
        let err = fx
            .store
            .advise_corrupt(ShareKind::Immutable, &si(1), ShareNumber(0), "bad");
        assert!(
            matches!(err, Err(StorageError::ShareNotFound)),
            "in-progress uploads are not shares"
        );
        assert_eq!(
            fs::read_dir(fx.store.layout.advisories_dir())
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn corruption_advisory_writes_the_report_file() {
        let fx = Fixture::new();
        fx.upload_share(&si(1), 3, b"data");
        fx.clock.set(1_769_000_000);
        fx.store
            .advise_corrupt(
                ShareKind::Immutable,
                &si(1),
                ShareNumber(3),
                "hash mismatch",
            )
            .unwrap();
        let reports: Vec<_> = fs::read_dir(fx.store.layout.advisories_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(reports.len(), 1);
        let name = reports[0].file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(name, format!("2026-01-21T125320--{}-3", si(1)));
        let text = fs::read_to_string(&reports[0]).unwrap();
        assert_eq!(
            text,
            format!(
                "report: Share Corruption\ntype: immutable\nstorage_index: {}\nshare_number: 3\n\nhash mismatch\n\n",
                si(1)
            )
        );
    }

    #[test]
    fn corruption_advisory_is_dropped_without_space() {
        let fx = Fixture::new();
        fx.upload_share(&si(1), 0, b"data");
        fx.store.space.set_disk_override(Some(10));
        fx.store
            .advise_corrupt(ShareKind::Immutable, &si(1), ShareNumber(0), "bad")
            .unwrap();
        assert_eq!(
            fs::read_dir(fx.store.layout.advisories_dir())
                .unwrap()
                .count(),
            0
        );
    }
}
