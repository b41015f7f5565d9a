//! The server's record of passes, so that a pass is never accepted twice: across restarts
//! (ZKAPAuthorizer kept spent passes in memory only and never refused a replay), and across
//! the nodes of a fleet that share one store.
//!
//! A pass is first **reserved** when its operation is admitted, and **spent** when the
//! operation succeeded. A reservation keeps any other request (on any node sharing the
//! store) from using the pass meanwhile; one whose operation never reports back (it failed)
//! lapses at the time given to [`SpentPassStore::reserve`], and the pass can be used again.
//! Passes are known by their token preimage, the part the issuer's key makes unique.
//!
//! Two backends, chosen by the `spent-pass-store` setting ([`StoreLocation`]): SQLite in the
//! plugin's state directory (the default, one node) and PostgreSQL (a fleet).

mod backlog;
mod pool;
mod postgresql;
mod sqlite;

use std::path::{Path, PathBuf};

pub use backlog::{Backlog, Deferred, Settlement, MAX_WAITING_PASSES};
pub use postgresql::PostgresStore;
pub(crate) use sqlite::open_durable;
pub use sqlite::SqliteStore;

/// The SQLite file in the plugin's state directory when no store is configured.
pub const LEDGER_FILE: &str = "spent-passes.sqlite3";

/// A store error, as text (the plugin reports it; no password is ever in it).
#[derive(Debug, thiserror::Error)]
#[error("pass ledger: {0}")]
pub struct LedgerError(String);

impl LedgerError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// What reserved passes pay for: recorded with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purpose {
    /// The storage index of the operation.
    pub storage_index: [u8; 16],
    /// The operation, as passes name it (`allocate_buckets`, ...).
    pub operation: &'static str,
}

/// A spent pass as a store records it. Passes spent before the store recorded purposes
/// (SQLite ledgers of plugin versions before 0.2) have none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpentPass {
    /// The token preimage.
    pub preimage: [u8; 64],
    /// The storage index it paid for.
    pub storage_index: Option<[u8; 16]>,
    /// The operation it paid for.
    pub operation: Option<String>,
    /// When it was spent (Unix seconds).
    pub spent_at: Option<u64>,
}

/// Where spent passes are kept.
pub trait SpentPassStore: Send + Sync + std::fmt::Debug {
    /// Reserves every preimage (all distinct) for `purpose` until `until` (Unix seconds),
    /// all or none, atomically against every other user of the store. `Ok(Err(indices))`
    /// names those already spent or reserved by a reservation still running at `now`;
    /// nothing is reserved then.
    fn reserve_distinct(
        &self,
        preimages: &[[u8; 64]],
        purpose: &Purpose,
        now: u64,
        until: u64,
    ) -> Result<Result<(), Vec<usize>>, LedgerError>;

    /// Marks reserved preimages `spent` (at `now`, for good) and gives `released` ones back,
    /// in one transaction.
    fn settle(
        &self,
        spent: &[[u8; 64]],
        released: &[[u8; 64]],
        now: u64,
    ) -> Result<(), LedgerError>;

    /// How many passes are spent.
    fn spent_count(&self) -> Result<u64, LedgerError>;

    /// [`reserve_distinct`](Self::reserve_distinct) for preimages a client chose: a pass
    /// given twice in one request is taken by its first copy, so each later copy is named
    /// as already used (paying twice with one pass is the oldest trick there is).
    fn reserve(
        &self,
        preimages: &[[u8; 64]],
        purpose: &Purpose,
        now: u64,
        until: u64,
    ) -> Result<Result<(), Vec<usize>>, LedgerError> {
        let mut seen = std::collections::HashSet::with_capacity(preimages.len());
        let repeated: Vec<usize> = (0..preimages.len())
            .filter(|&i| !seen.insert(&preimages[i]))
            .collect();
        if !repeated.is_empty() {
            return Ok(Err(repeated));
        }
        self.reserve_distinct(preimages, purpose, now, until)
    }
}

/// The `spent-pass-store` setting: where the server keeps spent passes.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An SQLite file (the default: [`LEDGER_FILE`] in the state directory).
    Sqlite(PathBuf),
    /// A PostgreSQL database, shared by every node of a fleet (`postgresql://...`).
    Postgres(String),
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for StoreLocation {
    /// The location without its password, fit for a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite {}", path.display()),
            Self::Postgres(url) => write!(f, "{}", postgresql::redacted(url)),
        }
    }
}

impl StoreLocation {
    /// Reads the setting: absent or empty means the default SQLite file in `state_dir`;
    /// `postgresql://` (or `postgres://`) URLs name a PostgreSQL database, and
    /// `sqlite:PATH` another SQLite file (a relative path from `node_dir`, as every path
    /// in the configuration).
    pub fn parse(
        setting: Option<&str>,
        state_dir: &Path,
        node_dir: &Path,
    ) -> Result<Self, LedgerError> {
        let setting = setting.map(str::trim).unwrap_or_default();
        if setting.is_empty() {
            return Ok(Self::Sqlite(state_dir.join(LEDGER_FILE)));
        }
        if let Some(path) = setting.strip_prefix("sqlite:") {
            return Ok(Self::Sqlite(node_dir.join(path.trim())));
        }
        if setting.starts_with("postgresql://") || setting.starts_with("postgres://") {
            postgresql::check_url(setting)?;
            return Ok(Self::Postgres(setting.to_owned()));
        }
        Err(LedgerError::new(
            "spent-pass-store must be a postgresql:// URL or sqlite:PATH (or absent, for \
             the SQLite file in the plugin's state directory)",
        ))
    }

    /// Opens the store, applying its migrations.
    pub fn open(&self) -> Result<std::sync::Arc<dyn SpentPassStore>, LedgerError> {
        Ok(match self {
            Self::Sqlite(path) => std::sync::Arc::new(SqliteStore::open(path)?),
            Self::Postgres(url) => std::sync::Arc::new(PostgresStore::open(url)?),
        })
    }
}

#[cfg(test)]
mod tests;
