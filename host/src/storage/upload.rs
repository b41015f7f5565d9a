//! Immutable uploads in progress: kept in memory only, as in stock Tahoe, so a restart
//! forgets them (and `Store::open` deletes their files).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::lock::lock;
use super::space::SpaceClaim;
use super::StorageError;
use crate::protocol::{ShareNumber, StorageIndex, UploadSecret};

/// Which share an upload is for.
pub(super) type UploadKey = (StorageIndex, ShareNumber);

/// Byte ranges, kept as disjoint, non-touching half-open intervals.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct RangeSet(BTreeMap<u64, u64>);

impl RangeSet {
    /// Adds `range`, merging it with the ranges it overlaps or touches.
    pub(super) fn insert(&mut self, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        let (mut start, mut end) = (range.start, range.end);
        if let Some((&before, &before_end)) = self.0.range(..=start).next_back() {
            if before_end >= start {
                start = before;
                end = end.max(before_end);
            }
        }
        let absorbed: Vec<u64> = self.0.range(start..=end).map(|(&s, _)| s).collect();
        for s in absorbed {
            if let Some(e) = self.0.remove(&s) {
                end = end.max(e);
            }
        }
        self.0.insert(start, end);
    }

    /// The parts of `range` that are in the set, ascending.
    pub(super) fn overlaps(&self, range: Range<u64>) -> Vec<Range<u64>> {
        if range.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        if let Some((_, &end)) = self.0.range(..range.start).next_back() {
            if end > range.start {
                out.push(range.start..end.min(range.end));
            }
        }
        for (&start, &end) in self.0.range(range.start..range.end) {
            out.push(start..end.min(range.end));
        }
        out
    }

    /// The parts of `0..total` not in the set, ascending.
    pub(super) fn missing(&self, total: u64) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut at = 0;
        for (&start, &end) in &self.0 {
            if start >= total {
                break;
            }
            if start > at {
                out.push(at..start);
            }
            at = at.max(end);
        }
        if at < total {
            out.push(at..total);
        }
        out
    }
}

/// One upload in progress. It holds no open file: each write opens the incoming file and
/// closes it again, so descriptors do not grow with the number of uploads in progress.
#[derive(Debug)]
pub(super) struct Upload {
    /// Binds the upload to the client that allocated it.
    pub(super) secret: UploadSecret,
    /// Bytes the share will have; promised out of the available space until it completes.
    pub(super) allocated_size: u64,
    /// The incoming file.
    pub(super) path: PathBuf,
    last_write: AtomicU64,
    /// Where the upload stands and what has been written.
    pub(super) state: Mutex<UploadState>,
    /// Signalled when a finalization ends, for writers waiting on it.
    settled: Condvar,
    /// The allocated size, held out of the available space until the upload is dropped.
    _space: SpaceClaim,
}

/// What a write changes.
#[derive(Debug)]
pub(super) struct UploadState {
    pub(super) phase: Phase,
    pub(super) written: RangeSet,
}

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Taking writes.
    Writing,
    /// Every byte is written and one write call is finalizing the share; other writers
    /// wait for it to end.
    Finishing,
    /// Finalized or discarded: writers that raced with that find no upload.
    Closed,
}

impl Upload {
    /// An upload of `allocated_size` bytes whose file has just been created at `now`.
    pub(super) fn new(
        secret: UploadSecret,
        path: PathBuf,
        allocated_size: u64,
        space: SpaceClaim,
        now: u64,
    ) -> Self {
        Self {
            secret,
            allocated_size,
            path,
            last_write: AtomicU64::new(now),
            state: Mutex::new(UploadState {
                phase: Phase::Writing,
                written: RangeSet::default(),
            }),
            settled: Condvar::new(),
            _space: space,
        }
    }

    /// Locks the state once no finalization is under way.
    pub(super) fn settled_state(&self) -> MutexGuard<'_, UploadState> {
        let mut state = lock(&self.state);
        while state.phase == Phase::Finishing {
            state = self
                .settled
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state
    }

    /// Ends a finalization (or a discard) with `phase`, waking the writers waiting on it.
    pub(super) fn settle(&self, state: &mut UploadState, phase: Phase) {
        state.phase = phase;
        self.settled.notify_all();
    }

    /// Records a write at `now`, restarting the idle timer.
    pub(super) fn touch(&self, now: u64) {
        self.last_write.store(now, Ordering::SeqCst);
    }

    /// Whether nothing was written for at least `idle_secs` before `now`.
    pub(super) fn idle_for(&self, now: u64, idle_secs: u64) -> bool {
        now.saturating_sub(self.last_write.load(Ordering::SeqCst)) >= idle_secs
    }
}

/// The table of uploads in progress. Its lock is only ever held for a map operation, never
/// while waiting for another lock.
#[derive(Debug, Default)]
pub(super) struct Uploads(Mutex<HashMap<UploadKey, Arc<Upload>>>);

impl Uploads {
    /// Whether `key` has an upload in progress, under any secret.
    pub(super) fn contains(&self, key: &UploadKey) -> bool {
        lock(&self.0).contains_key(key)
    }

    /// Starts tracking an upload.
    pub(super) fn insert(&self, key: UploadKey, upload: Arc<Upload>) {
        lock(&self.0).insert(key, upload);
    }

    /// The upload of `key`, whatever its secret.
    pub(super) fn get(&self, key: &UploadKey) -> Option<Arc<Upload>> {
        lock(&self.0).get(key).cloned()
    }

    /// The upload of `key` if `secret` is its secret (compared in constant time).
    pub(super) fn authorized(
        &self,
        key: &UploadKey,
        secret: &UploadSecret,
    ) -> Result<Arc<Upload>, StorageError> {
        let upload = self.get(key).ok_or(StorageError::NoSuchUpload)?;
        if upload.secret.matches(secret) {
            Ok(upload)
        } else {
            Err(StorageError::UploadSecretMismatch)
        }
    }

    /// Stops tracking `upload`, if it is still the one registered for `key`.
    pub(super) fn remove(&self, key: &UploadKey, upload: &Arc<Upload>) {
        let mut map = lock(&self.0);
        if map
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, upload))
        {
            map.remove(key);
        }
    }

    /// Every upload in progress.
    pub(super) fn all(&self) -> Vec<(UploadKey, Arc<Upload>)> {
        lock(&self.0).iter().map(|(k, v)| (*k, v.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    // `[0..16]` here is a list of byte ranges, not a range to collect.
    #![allow(clippy::single_range_in_vec_init)]

    use super::*;

    fn set(ranges: &[Range<u64>]) -> RangeSet {
        let mut set = RangeSet::default();
        for r in ranges {
            set.insert(r.clone());
        }
        set
    }

    #[test]
    fn insert_merges_overlapping_and_touching_ranges() {
        let s = set(&[10..20, 30..40, 20..25, 5..12, 50..50]);
        assert_eq!(
            s.0.iter().map(|(a, b)| *a..*b).collect::<Vec<_>>(),
            [5..25, 30..40]
        );
        let s = set(&[0..10, 20..30, 40..50, 5..45]);
        assert_eq!(s.0.len(), 1);
        assert_eq!(s.0.get(&0), Some(&50));
        let s = set(&[10..20, 12..15]);
        assert_eq!(s.0.get(&10), Some(&20));
    }

    #[test]
    fn overlaps_clips_to_the_query() {
        let s = set(&[0..10, 20..30, 40..50]);
        assert_eq!(s.overlaps(5..25), [5..10, 20..25]);
        assert_eq!(s.overlaps(10..20), Vec::<Range<u64>>::new());
        assert_eq!(s.overlaps(45..100), [45..50]);
        assert_eq!(s.overlaps(25..25), Vec::<Range<u64>>::new());
        assert_eq!(
            set(&[0..u64::MAX]).overlaps(u64::MAX - 1..u64::MAX),
            [u64::MAX - 1..u64::MAX]
        );
    }

    #[test]
    fn missing_lists_the_gaps() {
        assert_eq!(RangeSet::default().missing(48), [0..48]);
        assert_eq!(set(&[0..16]).missing(48), [16..48]);
        assert_eq!(set(&[4..8, 10..12]).missing(12), [0..4, 8..10]);
        assert_eq!(set(&[0..48]).missing(48), Vec::<Range<u64>>::new());
        assert_eq!(RangeSet::default().missing(0), Vec::<Range<u64>>::new());
    }
}
