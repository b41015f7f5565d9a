//! The embedded store: an SQLite file, for one node.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension as _, TransactionBehavior};

use super::{LedgerError, Purpose, SpentPass, SpentPassStore};

/// Opens (or creates) an SQLite database whose committed transactions survive a crash
/// and a power loss: write-ahead log, synced at every commit. The ledger and the client's
/// wallet both keep money in one.
pub(crate) fn open_durable(path: &Path) -> rusqlite::Result<Connection> {
    let db = Connection::open(path)?;
    // WAL: readers do not block the writer; FULL: a commit is on disk when it returns.
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "FULL")?;
    Ok(db)
}

impl From<rusqlite::Error> for LedgerError {
    fn from(error: rusqlite::Error) -> Self {
        Self::new(error.to_string())
    }
}

/// The schema, one step per version (`PRAGMA user_version` counts the steps applied).
/// Version 1 is the table of plugin 0.1, which did not count versions: `IF NOT EXISTS`
/// keeps its ledgers.
const MIGRATIONS: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS passes (
         preimage BLOB PRIMARY KEY NOT NULL,
         spent INTEGER NOT NULL,      -- 0 reserved, 1 spent
         until INTEGER NOT NULL       -- a reservation lapses then (Unix seconds)
     ) WITHOUT ROWID;",
    // What each pass paid for, and when it was reserved, then spent (Unix seconds).
    "ALTER TABLE passes ADD COLUMN storage_index BLOB;
     ALTER TABLE passes ADD COLUMN operation TEXT;
     ALTER TABLE passes ADD COLUMN at INTEGER;",
];

/// Passes reserved and spent, in an SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    db: Mutex<Connection>,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`, bringing its schema up to date.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let mut db = open_durable(path)?;
        let tx = db.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        let applied: usize = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if applied > MIGRATIONS.len() {
            return Err(LedgerError::new(format!(
                "{} has schema version {applied}; this plugin knows up to {}: upgrade the plugin",
                path.display(),
                MIGRATIONS.len()
            )));
        }
        for step in &MIGRATIONS[applied..] {
            tx.execute_batch(step)?;
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len())?;
        tx.commit()?;
        Ok(Self { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Up to `limit` spent passes whose preimages sort after `after`, in preimage order
    /// (pages of a migration).
    pub fn spent_passes(
        &self,
        after: Option<&[u8; 64]>,
        limit: usize,
    ) -> Result<Vec<SpentPass>, LedgerError> {
        let db = self.db();
        let mut page = db.prepare_cached(
            "SELECT preimage, storage_index, operation, at FROM passes
             WHERE spent = 1 AND preimage > ?1 ORDER BY preimage LIMIT ?2",
        )?;
        let after: &[u8] = after.map_or(&[], |p| &p[..]);
        let rows = page.query_map(params![after, to_i64(limit as u64)], |row| {
            let preimage: Vec<u8> = row.get(0)?;
            let storage_index: Option<Vec<u8>> = row.get(1)?;
            let at: Option<i64> = row.get(3)?;
            Ok((preimage, storage_index, row.get(2)?, at))
        })?;
        let mut passes = Vec::new();
        for row in rows {
            let (preimage, storage_index, operation, at) = row?;
            let preimage = preimage
                .try_into()
                .map_err(|_| LedgerError::new("a preimage in the ledger is not 64 bytes"))?;
            passes.push(SpentPass {
                preimage,
                storage_index: storage_index.and_then(|si| si.try_into().ok()),
                operation,
                spent_at: at.and_then(|at| u64::try_from(at).ok()),
            });
        }
        Ok(passes)
    }
}

impl SpentPassStore for SqliteStore {
    fn reserve_distinct(
        &self,
        preimages: &[[u8; 64]],
        purpose: &Purpose,
        now: u64,
        until: u64,
    ) -> Result<Result<(), Vec<usize>>, LedgerError> {
        let mut db = self.db();
        // One writer at a time in the file: checking then writing inside one immediate
        // transaction is atomic.
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut taken = Vec::new();
        {
            let mut find =
                tx.prepare_cached("SELECT spent, until FROM passes WHERE preimage = ?1")?;
            for (index, preimage) in preimages.iter().enumerate() {
                let row: Option<(i64, i64)> = find
                    .query_row(params![&preimage[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                if let Some((spent, reserved_until)) = row {
                    if spent == 1 || u64::try_from(reserved_until).unwrap_or(0) > now {
                        taken.push(index);
                    }
                }
            }
        }
        if !taken.is_empty() {
            return Ok(Err(taken));
        }
        {
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO passes (preimage, spent, until, storage_index, operation, at)
                 VALUES (?1, 0, ?2, ?3, ?4, ?5)",
            )?;
            for preimage in preimages {
                put.execute(params![
                    &preimage[..],
                    to_i64(until),
                    &purpose.storage_index[..],
                    purpose.operation,
                    to_i64(now)
                ])?;
            }
        }
        tx.commit()?;
        Ok(Ok(()))
    }

    fn settle(
        &self,
        spent: &[[u8; 64]],
        released: &[[u8; 64]],
        now: u64,
    ) -> Result<(), LedgerError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut spend =
                tx.prepare_cached("UPDATE passes SET spent = 1, at = ?2 WHERE preimage = ?1")?;
            for preimage in spent {
                spend.execute(params![&preimage[..], to_i64(now)])?;
            }
            let mut release =
                tx.prepare_cached("DELETE FROM passes WHERE preimage = ?1 AND spent = 0")?;
            for preimage in released {
                release.execute(params![&preimage[..]])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn spent_count(&self) -> Result<u64, LedgerError> {
        let count: i64 =
            self.db()
                .query_row("SELECT COUNT(*) FROM passes WHERE spent = 1", [], |r| {
                    r.get(0)
                })?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
