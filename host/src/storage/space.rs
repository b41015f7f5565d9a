//! Free disk space, as `statvfs` reports it for the shares directory, cached briefly:
//! clients poll `/version`, which reports it, about once a second.
//!
//! Space is handed out in [`SpaceClaim`]s: an upload claims its allocated size for as long
//! as it is in progress, a mutable write claims what it adds for as long as it runs. A claim
//! is granted only if the measured space minus the reserve minus every other claim covers
//! it, so concurrent requests cannot together eat into the reserve. Releasing a claim
//! forgets the cached measurement: the bytes it covered are on disk now (or deleted), and
//! the next answer must see that, not a measurement from before they were written.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lock::lock;

/// How long one `statvfs` answer is reused.
const CACHE_FOR: Duration = Duration::from_secs(1);

/// Measures the space left for shares.
#[derive(Debug)]
pub(super) struct SpaceGauge {
    dir: PathBuf,
    reserved: u64,
    cached: Mutex<Option<(Instant, u64)>>,
    /// Bytes of all claims not yet released. Taken before `cached`, never after.
    claimed: Mutex<u64>,
    /// Replaces `statvfs` in tests, which need exact numbers.
    disk_override: Mutex<Option<u64>>,
}

impl SpaceGauge {
    /// A gauge for the filesystem holding `dir`, keeping `reserved` bytes free.
    pub(super) fn new(dir: PathBuf, reserved: u64) -> Self {
        Self {
            dir,
            reserved,
            cached: Mutex::new(None),
            claimed: Mutex::new(0),
            disk_override: Mutex::new(None),
        }
    }

    /// Bytes available to unprivileged users minus the reserved space, at least 0. When the
    /// filesystem cannot be measured this is 0, so nothing new is accepted (stock Tahoe
    /// does the same).
    pub(super) fn free(&self) -> u64 {
        if let Some(disk) = *lock(&self.disk_override) {
            return disk.saturating_sub(self.reserved);
        }
        // Holding the lock while measuring means one `statvfs` per second, however many
        // callers arrive at once.
        let mut cached = lock(&self.cached);
        if let Some((at, free)) = *cached {
            if at.elapsed() < CACHE_FOR {
                return free;
            }
        }
        let free = match fs4::available_space(&self.dir) {
            Ok(available) => available.saturating_sub(self.reserved),
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot measure free disk space");
                0
            }
        };
        *cached = Some((Instant::now(), free));
        free
    }

    /// Free bytes not claimed by anyone.
    pub(super) fn unclaimed(&self) -> u64 {
        let claimed = lock(&self.claimed);
        self.free().saturating_sub(*claimed)
    }

    /// Claims `bytes` if that much is free and unclaimed; `None` otherwise.
    pub(super) fn try_claim(self: &Arc<Self>, bytes: u64) -> Option<SpaceClaim> {
        let mut claimed = lock(&self.claimed);
        if self.free().saturating_sub(*claimed) < bytes {
            return None;
        }
        *claimed += bytes;
        Some(SpaceClaim {
            gauge: self.clone(),
            bytes,
        })
    }

    /// Pretends the disk has `disk` bytes available.
    #[cfg(test)]
    pub(super) fn set_disk_override(&self, disk: Option<u64>) {
        *lock(&self.disk_override) = disk;
    }
}

/// Space promised to one upload or write, given back when dropped.
#[derive(Debug)]
pub(super) struct SpaceClaim {
    gauge: Arc<SpaceGauge>,
    bytes: u64,
}

impl Drop for SpaceClaim {
    fn drop(&mut self) {
        let mut claimed = lock(&self.gauge.claimed);
        *claimed = claimed.saturating_sub(self.bytes);
        *lock(&self.gauge.cached) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_real_filesystem_and_subtracts_the_reservation() {
        let dir = tempfile::tempdir().unwrap();
        let unreserved = SpaceGauge::new(dir.path().to_owned(), 0).free();
        assert!(unreserved > 0);
        assert_eq!(SpaceGauge::new(dir.path().to_owned(), u64::MAX).free(), 0);
    }

    #[test]
    fn answers_from_the_cache_within_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let gauge = SpaceGauge::new(dir.path().to_owned(), 0);
        *lock(&gauge.cached) = Some((Instant::now(), 42));
        assert_eq!(gauge.free(), 42);
        *lock(&gauge.cached) = Some((Instant::now() - Duration::from_secs(2), 42));
        assert_ne!(gauge.free(), 42, "a stale answer is measured again");
    }

    #[test]
    fn an_unmeasurable_filesystem_has_no_space() {
        let dir = tempfile::tempdir().unwrap();
        let gauge = SpaceGauge::new(dir.path().join("missing"), 0);
        assert_eq!(gauge.free(), 0);
    }

    #[test]
    fn claims_never_exceed_the_free_space_together() {
        let dir = tempfile::tempdir().unwrap();
        let gauge = Arc::new(SpaceGauge::new(dir.path().to_owned(), 10));
        gauge.set_disk_override(Some(100));
        let first = gauge.try_claim(60).unwrap();
        assert!(
            gauge.try_claim(31).is_none(),
            "only 30 left above the reserve"
        );
        let second = gauge.try_claim(30).unwrap();
        assert_eq!(gauge.unclaimed(), 0);
        drop(first);
        assert_eq!(gauge.unclaimed(), 60);
        drop(second);
        assert_eq!(gauge.unclaimed(), 90);
    }

    #[test]
    fn releasing_a_claim_forces_a_new_measurement() {
        let dir = tempfile::tempdir().unwrap();
        let gauge = Arc::new(SpaceGauge::new(dir.path().to_owned(), 0));
        *lock(&gauge.cached) = Some((Instant::now(), 1 << 40));
        let claim = gauge.try_claim(1 << 39).unwrap();
        assert_eq!(gauge.unclaimed(), 1 << 39, "answered from the cache");
        drop(claim);
        assert!(
            gauge.unclaimed() < 1 << 40,
            "the cached answer from before the claimed bytes were written is gone"
        );
    }

    #[test]
    fn override_replaces_statvfs() {
        let dir = tempfile::tempdir().unwrap();
        let gauge = SpaceGauge::new(dir.path().to_owned(), 10);
        gauge.set_disk_override(Some(100));
        assert_eq!(gauge.free(), 90);
        gauge.set_disk_override(Some(5));
        assert_eq!(gauge.free(), 0);
    }
}
