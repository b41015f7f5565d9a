//! Serializing operations per storage index.
//!
//! Every operation that reads and then changes files of one SI (allocate, finishing or
//! aborting an upload, leases, read-test-write, opening a share's header) holds that SI's
//! lock, so that two requests can never interleave their steps on the same files. The lock
//! set holds only the SIs locked right now, so memory does not grow with the number of SIs
//! ever seen.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::protocol::StorageIndex;

/// Locks a mutex, carrying on if another thread panicked while holding it: every structure
/// guarded here stays consistent between statements, so a poisoned lock holds valid data.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The set of storage indexes whose lock is held.
#[derive(Debug, Default)]
pub(super) struct SiLocks {
    held: Mutex<HashSet<StorageIndex>>,
    released: Condvar,
}

impl SiLocks {
    /// Blocks until no one else holds `si`, then holds it until the guard is dropped.
    pub(super) fn lock(&self, si: &StorageIndex) -> SiGuard<'_> {
        let mut held = lock(&self.held);
        while held.contains(si) {
            held = self
                .released
                .wait(held)
                .unwrap_or_else(PoisonError::into_inner);
        }
        held.insert(*si);
        SiGuard {
            locks: self,
            si: *si,
        }
    }
}

/// Holds one storage index's lock.
#[derive(Debug)]
pub(super) struct SiGuard<'a> {
    locks: &'a SiLocks,
    si: StorageIndex,
}

impl Drop for SiGuard<'_> {
    fn drop(&mut self) {
        lock(&self.locks.held).remove(&self.si);
        self.locks.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    use super::*;

    #[test]
    fn one_holder_per_storage_index() {
        let locks = Arc::new(SiLocks::default());
        let si = StorageIndex::from_bytes([1; 16]);
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (locks, inside, most) = (locks.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _guard = locks.lock(&si);
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert!(lock(&locks.held).is_empty(), "nothing stays held");
    }

    #[test]
    fn different_storage_indexes_do_not_wait_for_each_other() {
        let locks = Arc::new(SiLocks::default());
        let _first = locks.lock(&StorageIndex::from_bytes([1; 16]));
        let (done, finished) = mpsc::channel();
        let other = locks.clone();
        std::thread::spawn(move || {
            let _second = other.lock(&StorageIndex::from_bytes([2; 16]));
            done.send(()).unwrap();
        });
        // A deadline, not a sleep: the other thread answers as soon as it has its lock.
        finished.recv_timeout(Duration::from_secs(30)).unwrap();
    }
}
