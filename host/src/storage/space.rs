//! Free disk space, as `statvfs` reports it for the shares directory, cached briefly:
//! clients poll `/version`, which reports it, about once a second.

use std::path::PathBuf;
use std::sync::Mutex;
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

    /// Pretends the disk has `disk` bytes available.
    #[cfg(test)]
    pub(super) fn set_disk_override(&self, disk: Option<u64>) {
        *lock(&self.disk_override) = disk;
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
    fn override_replaces_statvfs() {
        let dir = tempfile::tempdir().unwrap();
        let gauge = SpaceGauge::new(dir.path().to_owned(), 10);
        gauge.set_disk_override(Some(100));
        assert_eq!(gauge.free(), 90);
        gauge.set_disk_override(Some(5));
        assert_eq!(gauge.free(), 0);
    }
}
