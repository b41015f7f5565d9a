//! Pass sets too large for the 64 KiB plugin-data header: the client uploads them to the
//! plugin's `passes` route first and names the answered handle in the header.
//!
//! Lifetime: a handle is used up by the first operation that names it (admitted or not: a
//! retry sends new passes anyway) and lapses [`HANDLE_LIFETIME`] after it was issued. Bounds:
//! at most [`MAX_HELD_PASSES`] passes are held for all handles together; an upload beyond
//! that is refused (the client sees 503 and may retry) rather than growing memory. Lapsed
//! handles are dropped whenever a handle is issued or taken.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How long an unused handle stays usable.
pub const HANDLE_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// Passes held for all handles at once (about 58 MB of pass data).
pub const MAX_HELD_PASSES: usize = 327_680;

/// Why an upload got no handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The store holds as many passes as it may.
    #[error("too many passes are waiting for their operations; try again shortly")]
    Full,
}

struct Held {
    passes: Vec<Vec<u8>>,
    expires_at: u64,
}

/// Pass sets waiting for the operation that names them.
#[derive(Default)]
pub struct HandleStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_handle: HashMap<[u8; 16], Held>,
    held_passes: usize,
}

impl std::fmt::Debug for HandleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandleStore(..)")
    }
}

impl HandleStore {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `passes` under a fresh random handle until `now + HANDLE_LIFETIME` (Unix
    /// seconds).
    pub fn issue(&self, passes: Vec<Vec<u8>>, now: u64) -> Result<[u8; 16], HandleError> {
        let mut inner = self.inner();
        inner.drop_lapsed(now);
        if inner.held_passes + passes.len() > MAX_HELD_PASSES {
            return Err(HandleError::Full);
        }
        let mut handle = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut handle);
        inner.held_passes += passes.len();
        inner.by_handle.insert(
            handle,
            Held {
                passes,
                expires_at: now + HANDLE_LIFETIME.as_secs(),
            },
        );
        Ok(handle)
    }

    /// Takes the passes of `handle`, once; `None` for an unknown, used or lapsed handle.
    pub fn take(&self, handle: &[u8], now: u64) -> Option<Vec<Vec<u8>>> {
        let mut inner = self.inner();
        inner.drop_lapsed(now);
        let key: [u8; 16] = handle.try_into().ok()?;
        let held = inner.by_handle.remove(&key)?;
        inner.held_passes -= held.passes.len();
        Some(held.passes)
    }

    /// Passes held now.
    pub fn held_passes(&self) -> usize {
        self.inner().held_passes
    }
}

impl Inner {
    fn drop_lapsed(&mut self, now: u64) {
        let mut freed = 0;
        self.by_handle.retain(|_, held| {
            let keep = held.expires_at > now;
            if !keep {
                freed += held.passes.len();
            }
            keep
        });
        self.held_passes -= freed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_is_used_once_and_lapses() {
        let store = HandleStore::default();
        let handle = store.issue(vec![vec![1; 177]; 3], 1000).unwrap();
        assert_eq!(store.held_passes(), 3);
        assert_eq!(store.take(&handle, 1001).unwrap().len(), 3);
        assert_eq!(store.take(&handle, 1001), None, "used up");
        let lapsing = store.issue(vec![vec![1; 177]], 1000).unwrap();
        assert_eq!(store.take(&lapsing, 1000 + HANDLE_LIFETIME.as_secs()), None);
        assert_eq!(store.held_passes(), 0);
        // Inputs tried: a handle of the wrong length, an unknown one.
        assert_eq!(store.take(&[1, 2, 3], 1000), None);
        assert_eq!(store.take(&[0; 16], 1000), None);
    }

    #[test]
    fn the_store_refuses_more_than_its_bound_until_space_frees() {
        let store = HandleStore::default();
        let big = store
            .issue(vec![Vec::new(); MAX_HELD_PASSES - 1], 1000)
            .unwrap();
        assert_eq!(
            store.issue(vec![Vec::new(); 2], 1000),
            Err(HandleError::Full)
        );
        assert!(store.issue(vec![Vec::new()], 1000).is_ok());
        store.take(&big, 1000).unwrap();
        assert!(store.issue(vec![Vec::new(); 2], 1000).is_ok());
    }
}
