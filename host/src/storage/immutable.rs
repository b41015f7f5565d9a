//! Immutable shares: allocate, upload, finish or abort (§4.1-§4.3), list and open (§4.4,
//! §4.5).
//!
//! An upload is a file under `incoming/` plus an in-memory [`Upload`] record holding its
//! secret and the byte ranges written so far; each write opens the file and closes it.
//!
//! Lock order: storage-index lock, then an upload's state lock, then the upload table's
//! lock; the table's lock is never held while waiting for another, and the directory and
//! space locks are taken last. The write that completes an upload holds only its state
//! lock, so it claims the finalization there (`Phase::Finishing`), lets go, and takes the
//! locks again in order; writers that meet a claimed upload wait on its condition variable
//! without holding a storage-index lock, so the finalizer can always proceed.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::container::immutable::ImmutableContainer;
use super::container::lease::LeaseGrant;
use super::container::{ContainerKind, IO_CHUNK};
use super::layout::{remove_dir_if_empty, sync_dir};
use super::lock::lock;
use super::space::SpaceClaim;
use super::store::{at, LeaseRenewal, ALLOCATE_LEASE_OWNER};
use super::upload::{Phase, RangeSet, Upload, UploadKey, UploadState};
use super::{ShareReader, StorageError, Store, WriteProgress};
use crate::protocol::{AllocateResponse, LeaseSecrets, ShareNumber, StorageIndex, UploadSecret};

impl Store {
    /// Allocate buckets (§4.1). Every completed immutable share of `si` is reported in
    /// `already_have` and, unless `renewal` is explicit, gets the lease (renewed if its renew
    /// secret is there already).
    /// Each requested share that is neither complete, nor being uploaded (by anyone), nor
    /// too big for the space left, gets an upload bound to `upload` with the lease already
    /// in its file. Shares skipped for any of those reasons appear in neither set.
    pub fn allocate(
        &self,
        si: &StorageIndex,
        shares: &BTreeSet<ShareNumber>,
        allocated_size: u64,
        lease: &LeaseSecrets,
        upload: &UploadSecret,
        renewal: LeaseRenewal,
    ) -> Result<AllocateResponse, StorageError> {
        let _guard = self.locks.lock(si);
        let grant = self.grant(ALLOCATE_LEASE_OWNER, lease);
        let existing = self.share_files(si)?;
        let mut response = AllocateResponse::default();
        for (shnum, path) in &existing {
            let kind = match renewal {
                LeaseRenewal::Implicit => {
                    self.lease_share(path, &grant, &[ContainerKind::Immutable])?
                }
                LeaseRenewal::Explicit => self.container_kind(path)?,
            };
            if kind == ContainerKind::Immutable {
                response.already_have.insert(*shnum);
            }
        }
        for &shnum in shares {
            let key = (*si, shnum);
            // A file of another kind at the share's path is skipped too: finishing the
            // upload would replace it. So is anything else there (a directory, a FIFO),
            // which finishing could not replace: the client would send the whole share
            // only to be refused at the end.
            let occupied = fs::symlink_metadata(self.layout.share_path(si, shnum)).is_ok();
            if existing.contains_key(&shnum) || occupied || self.uploads.contains(&key) {
                continue;
            }
            // As in stock Tahoe, a share that does not fit is left out of the answer.
            let Some(space) = self.space.try_claim(allocated_size) else {
                continue;
            };
            if let Err(e) = self.start_upload(key, allocated_size, space, &grant, upload) {
                self.roll_back(si, &response.allocated);
                return Err(e);
            }
            response.allocated.insert(shnum);
        }
        if !response.allocated.is_empty() {
            if let Err(e) = self.create_share_dir(si) {
                self.roll_back(si, &response.allocated);
                return Err(e);
            }
        }
        Ok(response)
    }

    fn start_upload(
        &self,
        key: UploadKey,
        allocated_size: u64,
        space: SpaceClaim,
        grant: &LeaseGrant,
        secret: &UploadSecret,
    ) -> Result<(), StorageError> {
        let (si, shnum) = key;
        let path = self.layout.incoming_path(&si, shnum);
        let file = {
            let _dirs = lock(&self.incoming_dirs);
            let dir = self.layout.incoming_dir(&si);
            fs::create_dir_all(&dir).map_err(at(&dir))?;
            // A stale file here belongs to no upload (the table is the truth), so truncate it.
            let mut options = OpenOptions::new();
            options.read(true).write(true).create(true).truncate(true);
            options.open(&path).map_err(at(&path))?
        };
        // The container (and its file) is dropped here: writes reopen the file.
        match ImmutableContainer::create(file, allocated_size, grant) {
            Ok(_) => {
                let upload = Upload::new(
                    secret.clone(),
                    path,
                    allocated_size,
                    space,
                    self.clock.now(),
                );
                self.uploads.insert(key, Arc::new(upload));
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_file(&path);
                self.tidy_incoming(&si);
                Err(StorageError::io(path, e))
            }
        }
    }

    /// Undoes the uploads an allocate call started before it failed.
    fn roll_back(&self, si: &StorageIndex, started: &BTreeSet<ShareNumber>) {
        for &shnum in started {
            let key = (*si, shnum);
            if let Some(upload) = self.uploads.get(&key) {
                let mut state = lock(&upload.state);
                if let Err(error) = self.discard(&key, &upload, &mut state) {
                    tracing::warn!(%error, "could not remove a partial upload");
                }
            }
        }
    }

    /// Writes bytes of an in-progress upload (§4.2) and, if they complete it, finalizes
    /// the share: fsync, rename into place, fsync the directory.
    ///
    /// Bytes that overlap what was written before must equal it ([`StorageError::Conflict`]
    /// otherwise, with nothing written); bytes past the allocated size are refused with
    /// [`StorageError::BeyondAllocation`]. Of concurrent writes, only the one that completes
    /// the upload finalizes it and returns [`WriteProgress::Completed`]; a write arriving
    /// while that runs waits for it, then finds no upload ([`StorageError::NoSuchUpload`],
    /// as after completion) or, if finalizing failed, retries it. Finalizing fails with
    /// [`StorageError::Conflict`] if a share file has appeared at the final path meanwhile
    /// (only a mutable write can put one there); stock Tahoe would replace it.
    pub fn write_immutable(
        &self,
        si: &StorageIndex,
        shnum: ShareNumber,
        upload: &UploadSecret,
        offset: u64,
        data: &[u8],
    ) -> Result<WriteProgress, StorageError> {
        let key = (*si, shnum);
        let upload = self.uploads.authorized(&key, upload)?;
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|end| *end <= upload.allocated_size)
            .ok_or(StorageError::BeyondAllocation)?;
        let mut state = upload.settled_state();
        if state.phase == Phase::Closed {
            return Err(StorageError::NoSuchUpload);
        }
        if !data.is_empty() {
            write_checked(&upload, &state.written, offset, data).map_err(|e| match e {
                Written::Conflict => StorageError::Conflict,
                Written::Io(e) => StorageError::io(&upload.path, e),
            })?;
            state.written.insert(offset..end);
        }
        upload.touch(self.clock.now());
        let required = state.written.missing(upload.allocated_size);
        if !required.is_empty() {
            return Ok(WriteProgress::Partial { required });
        }
        // Claim the finalization, then take the locks in their documented order.
        state.phase = Phase::Finishing;
        drop(state);
        self.finalize(&key, &upload)?;
        Ok(WriteProgress::Completed)
    }

    /// Finalizes an upload whose finalization this thread has claimed. On failure the
    /// claim is given up, so that a later write can try again.
    fn finalize(&self, key: &UploadKey, upload: &Arc<Upload>) -> Result<(), StorageError> {
        let (si, shnum) = key;
        let _guard = self.locks.lock(si);
        let mut state = lock(&upload.state);
        if state.phase != Phase::Finishing {
            // Aborted while we waited for the lock.
            return Err(StorageError::NoSuchUpload);
        }
        let final_dir = self.layout.share_dir(si);
        let final_path = self.layout.share_path(si, *shnum);
        let moved = if final_path.exists() {
            Err(StorageError::Conflict)
        } else {
            File::open(&upload.path)
                .and_then(|file| file.sync_all())
                .map_err(at(&upload.path))
                .and_then(|()| self.create_share_dir(si).map(drop))
                .and_then(|()| fs::rename(&upload.path, &final_path).map_err(at(&final_path)))
        };
        if let Err(e) = moved {
            upload.settle(&mut state, Phase::Writing);
            return Err(e);
        }
        upload.settle(&mut state, Phase::Closed);
        drop(state);
        self.uploads.remove(key, upload);
        self.tidy_incoming(si);
        sync_dir(&final_dir).map_err(at(&final_dir))
    }

    /// Abort an upload (§4.3): with the right secret the partial file is deleted and the
    /// share can be allocated again.
    pub fn abort_immutable(
        &self,
        si: &StorageIndex,
        shnum: ShareNumber,
        upload: &UploadSecret,
    ) -> Result<(), StorageError> {
        let _guard = self.locks.lock(si);
        let key = (*si, shnum);
        match self.uploads.authorized(&key, upload) {
            Ok(upload) => {
                let mut state = lock(&upload.state);
                self.discard(&key, &upload, &mut state)
            }
            Err(StorageError::NoSuchUpload) if self.layout.share_path(si, shnum).is_file() => {
                Err(StorageError::AlreadyComplete)
            }
            Err(e) => Err(e),
        }
    }

    /// Drops uploads with no write for `idle`, as measured by the store's clock; returns
    /// how many.
    pub fn expire_idle_uploads(&self, idle: Duration) -> usize {
        let idle = idle.as_secs();
        let mut expired = 0;
        for (key, upload) in self.uploads.all() {
            if !upload.idle_for(self.clock.now(), idle) {
                continue;
            }
            let _guard = self.locks.lock(&key.0);
            let mut state = lock(&upload.state);
            // Checked again under the locks: a write may have arrived meanwhile.
            if state.phase != Phase::Writing || !upload.idle_for(self.clock.now(), idle) {
                continue;
            }
            match self.discard(&key, &upload, &mut state) {
                Ok(()) => expired += 1,
                Err(error) => tracing::warn!(%error, "could not remove an idle upload"),
            }
        }
        if expired > 0 {
            tracing::info!(expired, "aborted idle uploads");
        }
        expired
    }

    /// Forgets an upload and deletes its file, and the share directory if that is now
    /// empty (allocate created it). The caller holds the storage index's lock and the
    /// upload's state lock.
    fn discard(
        &self,
        key: &UploadKey,
        upload: &Arc<Upload>,
        state: &mut UploadState,
    ) -> Result<(), StorageError> {
        upload.settle(state, Phase::Closed);
        self.uploads.remove(key, upload);
        let removed = match fs::remove_file(&upload.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StorageError::io(&upload.path, e)),
            _ => Ok(()),
        };
        self.tidy_incoming(&key.0);
        self.tidy_share_dir(&key.0);
        removed
    }

    /// Removes the incoming directories of `si` if no other upload uses them.
    fn tidy_incoming(&self, si: &StorageIndex) {
        let _dirs = lock(&self.incoming_dirs);
        remove_dir_if_empty(&self.layout.incoming_dir(si));
        remove_dir_if_empty(&self.layout.incoming_prefix_dir(si));
    }

    /// Completed immutable shares of `si` (§4.4); empty for an unknown storage index.
    /// Files that are not immutable containers (a mutable share, say) are not listed,
    /// where stock Tahoe fails with a 500.
    pub fn list_immutable(&self, si: &StorageIndex) -> Result<BTreeSet<ShareNumber>, StorageError> {
        self.list_shares::<ImmutableContainer>(si)
    }

    /// Opens a completed immutable share for reading (§4.5).
    /// [`StorageError::ShareNotFound`] if there is none (uploads in progress included);
    /// [`StorageError::WrongContainer`] if the file is not an immutable container.
    pub fn open_immutable(
        &self,
        si: &StorageIndex,
        shnum: ShareNumber,
    ) -> Result<ShareReader, StorageError> {
        self.open_share::<ImmutableContainer>(si, shnum)
    }
}

/// Why [`write_checked`] wrote nothing.
enum Written {
    Conflict,
    Io(io::Error),
}

impl From<io::Error> for Written {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Writes `data` at share offset `offset` into the upload's file, opened for this write
/// only, after checking that the bytes overlapping `written` equal what is on disk.
fn write_checked(
    upload: &Upload,
    written: &RangeSet,
    offset: u64,
    data: &[u8],
) -> Result<(), Written> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&upload.path)?;
    let container = ImmutableContainer::open(file)?
        .filter(|c| c.data_len() == upload.allocated_size)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "upload file was changed"))?;
    let end = offset + data.len() as u64;
    for overlap in written.overlaps(offset..end) {
        if !matches_on_disk(&container, overlap, offset, data)? {
            return Err(Written::Conflict);
        }
    }
    container.write_data(offset, data)?;
    container.start_writeback(offset, data.len());
    Ok(())
}

/// Whether the bytes of `overlap` (share offsets) already in the file equal the matching
/// part of `data`, which starts at share offset `offset`. Compares a chunk at a time.
fn matches_on_disk(
    container: &ImmutableContainer,
    overlap: std::ops::Range<u64>,
    offset: u64,
    data: &[u8],
) -> io::Result<bool> {
    let mut buf = vec![0u8; IO_CHUNK];
    let mut at = overlap.start;
    while at < overlap.end {
        let step = (overlap.end - at).min(IO_CHUNK as u64);
        let (Ok(from), Ok(len)) = (usize::try_from(at - offset), usize::try_from(step)) else {
            return Ok(false);
        };
        let (Some(expected), Some(on_disk)) = (data.get(from..from + len), buf.get_mut(..len))
        else {
            return Ok(false);
        };
        container.read_data(at, on_disk)?;
        if on_disk != expected {
            return Ok(false);
        }
        at += step;
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
