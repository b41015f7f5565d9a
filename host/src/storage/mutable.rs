//! Mutable shares: read-test-write (§5.4), list and open (§4.5, §4.9).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io;
use std::path::PathBuf;

use super::container::lease::{LeaseChange, LeaseGrant};
use super::container::mutable::{MutableContainer, EMPTY_CONTAINER_SIZE};
use super::layout::sync_dir;
use super::store::{at, open_read_write, LeaseRenewal, LEASE_OWNER};
use super::{ShareReader, StorageError, Store, MAXIMUM_MUTABLE_SHARE_SIZE};
use crate::protocol::{
    LeaseSecrets, ReadTestWriteRequest, ReadTestWriteResponse, ReadVector, ShareNumber,
    StorageIndex, TestWriteVectors, WriteEnabler,
};

/// The most bytes the read vectors of one read-test-write may return, over all shares.
/// Stock clients read a few kilobytes this way and fetch share data with ranged GETs; the
/// Python client refuses CBOR answers over 30 MiB anyway.
pub(super) const MAX_READ_BYTES: u64 = 64 * 1024 * 1024;

/// A mutable share of the slot, open for reading and writing.
#[derive(Debug)]
struct SlotShare {
    path: PathBuf,
    container: MutableContainer,
}

/// The files of one storage index, sorted by what they hold.
#[derive(Debug, Default)]
struct Slot {
    shares: BTreeMap<ShareNumber, SlotShare>,
    /// Share files that are not valid mutable containers: left out of the write-enabler
    /// check and the reads, and never written.
    foreign: BTreeMap<ShareNumber, PathBuf>,
}

impl Store {
    /// Read-test-write (§5.4), exactly as stock Tahoe runs it:
    ///
    /// 1. the write enabler must match every share of the slot
    ///    ([`StorageError::WriteEnablerMismatch`], nothing read or written, otherwise);
    /// 2. every test of every named share must pass (a missing share reads as empty);
    /// 3. the read vectors are applied to every share that existed before the request,
    ///    whatever the tests said;
    /// 4. only if the tests passed: each named share is deleted (`new-length` 0) or created
    ///    if missing and then written, truncated and leased (owner 1).
    ///
    /// Files of the slot that are not mutable containers are ignored, unless the request
    /// names them ([`StorageError::WrongContainer`]). A write ending past
    /// [`MAXIMUM_MUTABLE_SHARE_SIZE`] fails with [`StorageError::ShareTooLarge`] before
    /// anything is written.
    pub fn read_test_write(
        &self,
        si: &StorageIndex,
        write_enabler: &WriteEnabler,
        lease: &LeaseSecrets,
        request: &ReadTestWriteRequest,
        renewal: LeaseRenewal,
    ) -> Result<ReadTestWriteResponse, StorageError> {
        let _guard = self.locks.lock(si);
        let mut slot = self.open_slot(si)?;
        let mut enabled = true;
        for share in slot.shares.values() {
            // `&=` rather than `all`: every share is compared, whatever the first says.
            enabled &= share
                .container
                .write_enabler_matches(write_enabler.expose());
        }
        if !enabled {
            return Err(StorageError::WriteEnablerMismatch);
        }
        if let Some(path) = request
            .test_write_vectors
            .keys()
            .find_map(|n| slot.foreign.get(n))
        {
            return Err(StorageError::WrongContainer {
                path: path.clone(),
                expected: "mutable",
            });
        }
        let success = run_tests(&slot.shares, &request.test_write_vectors)?;
        let data = read_all(&slot.shares, &request.read_vector)?;
        if success {
            check_write_sizes(&request.test_write_vectors)?;
            // Stock Tahoe checks no space here and runs into a full disk. A user expects a
            // server that keeps its reserve to refuse, before writing anything, a write that
            // would grow the slot into it (the old version stays intact, and the client can
            // place the share elsewhere), but to accept writes that do not grow shares, so
            // that a full server can still be updated and tidied. Rewriting a small share
            // may dip into the reserve by that share's size (at most the rewrite limit)
            // while its copy is prepared.
            let growth = growth(&slot.shares, &request.test_write_vectors);
            let _space = match growth {
                0 => None,
                bytes => Some(self.space.try_claim(bytes).ok_or(StorageError::NoSpace)?),
            };
            let grant = self.grant(LEASE_OWNER, lease);
            let now = self.clock.now();
            for (&shnum, vectors) in &request.test_write_vectors {
                let existing = slot.shares.remove(&shnum);
                if vectors.new_length == Some(0) {
                    self.delete_share(si, existing)?;
                    continue;
                }
                let leased = match (renewal, &existing) {
                    (LeaseRenewal::Explicit, Some(share)) => {
                        !lease_runs_past(&share.container, now).map_err(at(&share.path))?
                    }
                    _ => true,
                };
                let grant = leased.then_some(&grant);
                self.write_share(si, shnum, existing, vectors, write_enabler, grant)?;
            }
        }
        Ok(ReadTestWriteResponse { success, data })
    }

    fn open_slot(&self, si: &StorageIndex) -> Result<Slot, StorageError> {
        let mut slot = Slot::default();
        for (shnum, path) in self.share_files(si)? {
            let Some(file) = open_read_write(&path)? else {
                continue;
            };
            match MutableContainer::open(file).map_err(at(&path))? {
                Some(container) => {
                    slot.shares.insert(shnum, SlotShare { path, container });
                }
                None => {
                    slot.foreign.insert(shnum, path);
                }
            }
        }
        Ok(slot)
    }

    fn delete_share(
        &self,
        si: &StorageIndex,
        existing: Option<SlotShare>,
    ) -> Result<(), StorageError> {
        let dir = self.layout.share_dir(si);
        if let Some(share) = existing {
            drop(share.container);
            fs::remove_file(&share.path).map_err(at(&share.path))?;
            sync_dir(&dir).map_err(at(&dir))?;
        }
        self.tidy_share_dir(si);
        Ok(())
    }

    /// Applies the writes and truncation to one share and leases it, creating it first if
    /// needed, then syncs. New and small shares are rebuilt in a scratch file and renamed
    /// into place; large ones are changed in place.
    fn write_share(
        &self,
        si: &StorageIndex,
        shnum: ShareNumber,
        existing: Option<SlotShare>,
        vectors: &TestWriteVectors,
        write_enabler: &WriteEnabler,
        grant: Option<&LeaseGrant>,
    ) -> Result<(), StorageError> {
        match existing {
            Some(mut share)
                if !changes_data(&share.container, vectors)
                    || share.container.file_len() > self.rewrite_limit =>
            {
                let path = share.path;
                let changed = changes_data(&share.container, vectors);
                apply(&mut share.container, vectors).map_err(at(&path))?;
                let leased = match grant {
                    Some(grant) => share
                        .container
                        .add_or_renew_lease(grant)
                        .map_err(at(&path))?,
                    None => LeaseChange::Keep,
                };
                if changed || leased != LeaseChange::Keep {
                    share.container.sync().map_err(at(&path))?;
                }
                Ok(())
            }
            existing => self.replace_share(si, shnum, existing, vectors, write_enabler, grant),
        }
    }

    fn replace_share(
        &self,
        si: &StorageIndex,
        shnum: ShareNumber,
        existing: Option<SlotShare>,
        vectors: &TestWriteVectors,
        write_enabler: &WriteEnabler,
        grant: Option<&LeaseGrant>,
    ) -> Result<(), StorageError> {
        let dir = self.create_share_dir(si)?;
        let path = self.layout.share_path(si, shnum);
        let scratch = self.layout.scratch_path(si, shnum);
        let result = (|| -> io::Result<()> {
            let mut container = match existing {
                Some(share) => {
                    drop(share.container);
                    fs::copy(&share.path, &scratch)?;
                    let file = OpenOptions::new().read(true).write(true).open(&scratch)?;
                    MutableContainer::open(file)?.ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidData, "copy is not a container")
                    })?
                }
                None => {
                    let mut options = OpenOptions::new();
                    options.read(true).write(true).create(true).truncate(true);
                    MutableContainer::create(
                        options.open(&scratch)?,
                        self.config.nodeid,
                        write_enabler.expose(),
                    )?
                }
            };
            apply(&mut container, vectors)?;
            if let Some(grant) = grant {
                container.add_or_renew_lease(grant)?;
            }
            container.sync()?;
            drop(container);
            fs::rename(&scratch, &path)?;
            sync_dir(&dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&scratch);
            self.tidy_share_dir(si);
        }
        result.map_err(at(path))
    }

    /// Mutable shares of `si` (§4.9); empty for an unknown storage index. Unlike stock
    /// Tahoe, which lists every numeric file name, only valid mutable containers are
    /// listed, so that every listed share can be read.
    pub fn list_mutable(&self, si: &StorageIndex) -> Result<BTreeSet<ShareNumber>, StorageError> {
        self.list_shares::<MutableContainer>(si)
    }

    /// Opens a mutable share for reading its data (§4.5). [`StorageError::ShareNotFound`]
    /// if there is none; [`StorageError::WrongContainer`] if the file is not a mutable
    /// container.
    pub fn open_mutable(
        &self,
        si: &StorageIndex,
        shnum: ShareNumber,
    ) -> Result<ShareReader, StorageError> {
        self.open_share::<MutableContainer>(si, shnum)
    }
}

/// Whether every test of every named share passes: the share's bytes at the test's range,
/// clamped to its data, equal the specimen exactly. A missing share reads as empty.
fn run_tests(
    shares: &BTreeMap<ShareNumber, SlotShare>,
    vectors: &BTreeMap<ShareNumber, TestWriteVectors>,
) -> Result<bool, StorageError> {
    for (shnum, share_vectors) in vectors {
        let share = shares.get(shnum);
        for test in &share_vectors.test {
            let passed = match share {
                None => test.specimen.is_empty(),
                Some(share) => {
                    let range = share.container.clamp(test.offset, test.size);
                    // Lengths first: a huge `size` never makes us read more than the specimen.
                    range.end - range.start == test.specimen.len() as u64
                        && share
                            .container
                            .read_data(range.start, range.end - range.start)
                            .map_err(at(&share.path))?
                            == test.specimen
                }
            };
            if !passed {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Applies every read vector, clamped, to every share, refusing answers over
/// [`MAX_READ_BYTES`] before reading anything.
fn read_all(
    shares: &BTreeMap<ShareNumber, SlotShare>,
    reads: &[ReadVector],
) -> Result<BTreeMap<ShareNumber, Vec<Vec<u8>>>, StorageError> {
    let total = shares
        .values()
        .flat_map(|share| {
            reads
                .iter()
                .map(|r| share.container.clamp(r.offset, r.size))
        })
        .fold(0u64, |sum, range| {
            sum.saturating_add(range.end - range.start)
        });
    if total > MAX_READ_BYTES {
        return Err(StorageError::ReadTooLarge {
            limit: MAX_READ_BYTES,
        });
    }
    let mut data = BTreeMap::new();
    for (&shnum, share) in shares {
        let results = reads
            .iter()
            .map(|r| share.container.read_data(r.offset, r.size))
            .collect::<io::Result<Vec<_>>>()
            .map_err(at(&share.path))?;
        data.insert(shnum, results);
    }
    Ok(data)
}

/// Refuses writes ending past the maximum mutable share size, before any is applied.
fn check_write_sizes(
    vectors: &BTreeMap<ShareNumber, TestWriteVectors>,
) -> Result<(), StorageError> {
    let too_large = vectors
        .values()
        .filter(|v| v.new_length != Some(0))
        .flat_map(|v| &v.write)
        .any(|w| {
            w.offset
                .checked_add(w.data.len() as u64)
                .is_none_or(|end| end > MAXIMUM_MUTABLE_SHARE_SIZE)
        });
    if too_large {
        return Err(StorageError::ShareTooLarge);
    }
    Ok(())
}

/// Bytes the writes would add to the disk: data past each share's current end, plus a whole
/// empty container for each new share. Truncation never shrinks a container file, and
/// deleted shares add nothing.
fn growth(
    shares: &BTreeMap<ShareNumber, SlotShare>,
    vectors: &BTreeMap<ShareNumber, TestWriteVectors>,
) -> u64 {
    let added = |(shnum, v): (&ShareNumber, &TestWriteVectors)| {
        let end = v
            .write
            .iter()
            .map(|w| w.offset.saturating_add(w.data.len() as u64))
            .max()
            .unwrap_or(0);
        match shares.get(shnum) {
            Some(share) => end.saturating_sub(share.container.data_len()),
            None => EMPTY_CONTAINER_SIZE.saturating_add(end),
        }
    };
    vectors
        .iter()
        .filter(|(_, v)| v.new_length != Some(0))
        .map(added)
        .fold(0, u64::saturating_add)
}

/// Whether the vectors would change a share's data (as opposed to only leasing it).
fn changes_data(container: &MutableContainer, vectors: &TestWriteVectors) -> bool {
    !vectors.write.is_empty()
        || vectors
            .new_length
            .is_some_and(|length| length < container.data_len())
}

/// The writes in order, then the truncation.
fn apply(container: &mut MutableContainer, vectors: &TestWriteVectors) -> io::Result<()> {
    for write in &vectors.write {
        container.write_data(write.offset, &write.data)?;
    }
    if let Some(length) = vectors.new_length {
        container.truncate(length)?;
    }
    Ok(())
}

/// Whether some lease on `container` expires after `now` (Unix seconds).
fn lease_runs_past(container: &MutableContainer, now: u64) -> io::Result<bool> {
    for record in container.leases()? {
        if u64::from(record?.1.expiry) > now {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests;
