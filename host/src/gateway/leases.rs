//! The gateway keeps the leases of what stock clients store through it: it is the
//! long-running client that knows the lease secrets (ZKAPAuthorizer's client kept leases
//! alive with a crawler for the same reason). Every allocation, mutable write and lease
//! renewal that succeeds through the gateway records its storage index and lease secrets
//! with the time; a keeper renews each lease `lease-renew-after` later through the
//! upstream's client, so the client plugins attach (and a paying plugin pays) as for any
//! renewal. A storage index the upstream no longer has is forgotten.
//!
//! The book is `private/gateway-leases.json` (owner-only, since it holds lease secrets),
//! rewritten atomically when it changed, at most every few seconds. Bound: [`MAX_LEASES`]
//! entries; past that, new leases are not kept (logged), existing ones still are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::upstreams::{Upstream, UpstreamSet};
use crate::client::ClientError;
use crate::protocol::{LeaseCancelSecret, LeaseRenewSecret, LeaseSecrets, StorageIndex};

/// The most leases kept.
pub(super) const MAX_LEASES: usize = 1_000_000;
/// How often a changed book is written.
const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// One lease: on which upstream, which storage index, which secrets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Key {
    /// The upstream's NURL.
    upstream: String,
    /// The storage index, in Tahoe's base32.
    si: String,
    /// The renew secret, base64.
    renew: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    #[serde(flatten)]
    key: Key,
    /// The cancel secret, base64.
    cancel: String,
    /// When it was last added or renewed, Unix seconds.
    renewed: u64,
}

/// The leases the gateway keeps.
#[derive(Debug)]
pub(super) struct LeaseBook {
    path: PathBuf,
    entries: Mutex<BTreeMap<Key, Entry>>,
    changed: AtomicBool,
    full_logged: AtomicBool,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl LeaseBook {
    /// The book at `path`, empty when there is none; a file that is not a book is an
    /// error naming it (never silently emptied: its leases would lapse).
    pub(super) fn open(path: &Path) -> Result<Self, String> {
        let entries = super::read_private_json::<Entry>(path, "a lease book")?
            .into_iter()
            .map(|entry| (entry.key.clone(), entry))
            .collect();
        Ok(Self {
            path: path.to_owned(),
            entries: Mutex::new(entries),
            changed: AtomicBool::new(false),
            full_logged: AtomicBool::new(false),
        })
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that a lease of `si` on `upstream` was added or renewed now.
    pub(super) fn record(&self, upstream: &str, si: &StorageIndex, lease: &LeaseSecrets) {
        let key = Key {
            upstream: upstream.to_owned(),
            si: si.to_string(),
            renew: STANDARD.encode(lease.renew.expose()),
        };
        let mut entries = self.entries();
        if entries.len() >= MAX_LEASES && !entries.contains_key(&key) {
            if !self.full_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "the gateway keeps {MAX_LEASES} leases already; new ones are not renewed by it"
                );
            }
            return;
        }
        entries.insert(
            key.clone(),
            Entry {
                key,
                cancel: STANDARD.encode(lease.cancel.expose()),
                renewed: now(),
            },
        );
        self.changed.store(true, Ordering::Relaxed);
    }

    /// The leases last renewed at least `after` ago.
    fn due(&self, after: Duration) -> Vec<Entry> {
        let before = now().saturating_sub(after.as_secs());
        self.entries()
            .values()
            .filter(|entry| entry.renewed <= before)
            .cloned()
            .collect()
    }

    fn renewed(&self, key: &Key) {
        if let Some(entry) = self.entries().get_mut(key) {
            entry.renewed = now();
            self.changed.store(true, Ordering::Relaxed);
        }
    }

    fn forget(&self, key: &Key) {
        if self.entries().remove(key).is_some() {
            self.changed.store(true, Ordering::Relaxed);
        }
    }

    /// Writes the book if it changed: a temporary file, synced, renamed over.
    pub(super) fn flush(&self) -> std::io::Result<()> {
        if !self.changed.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let entries: Vec<Entry> = self.entries().values().cloned().collect();
        let bytes = serde_json::to_vec(&entries).map_err(std::io::Error::other)?;
        super::replace_private_file(&self.path, &bytes)
            .inspect_err(|_| self.changed.store(true, Ordering::Relaxed))
    }

    /// How many leases it keeps.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }
}

fn secrets(entry: &Entry) -> Option<(StorageIndex, LeaseSecrets)> {
    let fixed = |text: &str| -> Option<[u8; 32]> { STANDARD.decode(text).ok()?.try_into().ok() };
    Some((
        entry.key.si.parse().ok()?,
        LeaseSecrets {
            renew: LeaseRenewSecret::new(fixed(&entry.key.renew)?),
            cancel: LeaseCancelSecret::new(fixed(&entry.cancel)?),
        },
    ))
}

/// Renews due leases every `interval`, and writes the book when it changed, until the
/// task is dropped.
pub(super) async fn keep(
    book: Arc<LeaseBook>,
    upstreams: Arc<UpstreamSet>,
    renew_after: Duration,
    interval: Duration,
) {
    let mut last_check = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(FLUSH_EVERY.min(interval)).await;
        if last_check.elapsed() >= interval {
            last_check = tokio::time::Instant::now();
            renew_due(&book, &upstreams.snapshot(), renew_after).await;
        }
        let flushing = book.clone();
        match tokio::task::spawn_blocking(move || flushing.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "cannot write the gateway's lease book"),
            Err(error) => tracing::error!(%error, "cannot write the gateway's lease book"),
        }
    }
}

async fn renew_due(book: &LeaseBook, upstreams: &[Arc<Upstream>], renew_after: Duration) {
    for entry in book.due(renew_after) {
        let upstream = upstreams
            .iter()
            .find(|u| u.nurl.to_string() == entry.key.upstream);
        let (Some(upstream), Some((si, lease))) = (upstream, secrets(&entry)) else {
            // No longer an upstream of this gateway, or a damaged entry.
            book.forget(&entry.key);
            continue;
        };
        match upstream.client.add_or_renew_lease(&si, &lease).await {
            Ok(()) => {
                tracing::info!(si = %si, "lease renewed by the gateway");
                book.renewed(&entry.key);
            }
            Err(ClientError::NotFound) => {
                tracing::info!(si = %si, "the upstream no longer has these shares; lease forgotten");
                book.forget(&entry.key);
            }
            Err(error) => {
                tracing::warn!(si = %si, %error, "lease renewal failed; tried again at the next check");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(n: u8) -> LeaseSecrets {
        LeaseSecrets {
            renew: LeaseRenewSecret::new([n; 32]),
            cancel: LeaseCancelSecret::new([n + 1; 32]),
        }
    }

    #[test]
    fn the_book_survives_a_restart_and_refuses_a_damaged_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("leases.json");
        let book = LeaseBook::open(&path).expect("a new book");
        let si = StorageIndex::from_bytes([3; 16]);
        book.record("pb://a", &si, &lease(1));
        book.record("pb://a", &si, &lease(1));
        book.record("pb://a", &si, &lease(5));
        assert_eq!(book.len(), 2);
        book.flush().expect("write");
        let again = LeaseBook::open(&path).expect("read back");
        assert_eq!(again.len(), 2);
        // Nothing is due at once; everything is due after 0 s.
        assert!(again.due(Duration::from_secs(3600)).is_empty());
        let due = again.due(Duration::ZERO);
        assert_eq!(due.len(), 2);
        assert_eq!(secrets(&due[0]), Some((si, lease(1))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Input tried: a file that is not a book.
        std::fs::write(&path, b"{not json").expect("damage");
        let error = LeaseBook::open(&path).expect_err("damaged");
        assert!(error.contains("not a lease book"), "{error}");
    }
}
