//! The server's record of passes: an SQLite database in the plugin's state directory, so
//! that a pass is never accepted twice, across restarts too (ZKAPAuthorizer kept spent passes
//! in memory only and never refused a replay).
//!
//! A pass is first **reserved** when its operation is admitted, and **spent** when the
//! operation succeeded. A reservation keeps any other request from using the pass meanwhile;
//! one whose operation never reports back (it failed) lapses after the time given to
//! [`PassLedger::reserve`], and the pass can be used again. Passes are known by their token
//! preimage, the part the issuer's key makes unique.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension as _, TransactionBehavior};

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

/// A database error, as text (the plugin reports it; nothing secret is in it).
#[derive(Debug, thiserror::Error)]
#[error("pass ledger: {0}")]
pub struct LedgerError(String);

impl From<rusqlite::Error> for LedgerError {
    fn from(error: rusqlite::Error) -> Self {
        Self(error.to_string())
    }
}

/// Passes reserved and spent.
#[derive(Debug)]
pub struct PassLedger {
    db: Mutex<Connection>,
}

impl PassLedger {
    /// Opens (or creates) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let db = open_durable(path)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS passes (
                 preimage BLOB PRIMARY KEY NOT NULL,
                 spent INTEGER NOT NULL,      -- 0 reserved, 1 spent
                 until INTEGER NOT NULL       -- a reservation lapses then (Unix seconds)
             ) WITHOUT ROWID;",
        )?;
        Ok(Self { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves every preimage until `until` (Unix seconds), all or none. `Ok(Err(indices))`
    /// names those already spent or reserved by a reservation still running at `now`;
    /// nothing is reserved then.
    pub fn reserve(
        &self,
        preimages: &[[u8; 64]],
        now: u64,
        until: u64,
    ) -> Result<Result<(), Vec<usize>>, LedgerError> {
        let mut db = self.db();
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
                "INSERT OR REPLACE INTO passes (preimage, spent, until) VALUES (?1, 0, ?2)",
            )?;
            let until = i64::try_from(until).unwrap_or(i64::MAX);
            for preimage in preimages {
                put.execute(params![&preimage[..], until])?;
            }
        }
        tx.commit()?;
        Ok(Ok(()))
    }

    /// Marks reserved preimages spent, for good.
    pub fn spend(&self, preimages: &[[u8; 64]]) -> Result<(), LedgerError> {
        self.settle(preimages, &[])
    }

    /// Gives reserved preimages back (an operation that did not need them).
    pub fn release(&self, preimages: &[[u8; 64]]) -> Result<(), LedgerError> {
        self.settle(&[], preimages)
    }

    /// Spends `spent` and releases `released` in one transaction (one sync to disk).
    pub fn settle(&self, spent: &[[u8; 64]], released: &[[u8; 64]]) -> Result<(), LedgerError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (preimages, statement) in [
            (spent, "UPDATE passes SET spent = 1 WHERE preimage = ?1"),
            (
                released,
                "DELETE FROM passes WHERE preimage = ?1 AND spent = 0",
            ),
        ] {
            let mut update = tx.prepare_cached(statement)?;
            for preimage in preimages {
                update.execute(params![&preimage[..]])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// How many passes are spent.
    pub fn spent_count(&self) -> Result<u64, LedgerError> {
        let count: i64 =
            self.db()
                .query_row("SELECT COUNT(*) FROM passes WHERE spent = 1", [], |r| {
                    r.get(0)
                })?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preimage(n: u8) -> [u8; 64] {
        [n; 64]
    }

    #[test]
    fn a_spent_pass_is_refused_again_also_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passes.sqlite3");
        let ledger = PassLedger::open(&path).unwrap();
        assert_eq!(
            ledger
                .reserve(&[preimage(1), preimage(2)], 100, 160)
                .unwrap(),
            Ok(())
        );
        ledger.spend(&[preimage(1), preimage(2)]).unwrap();
        assert_eq!(ledger.spent_count().unwrap(), 2);
        // Input tried: the same passes again, with one fresh one among them.
        assert_eq!(
            ledger
                .reserve(&[preimage(3), preimage(2), preimage(1)], 200, 260)
                .unwrap(),
            Err(vec![1, 2])
        );
        drop(ledger);
        let reopened = PassLedger::open(&path).unwrap();
        assert_eq!(
            reopened.reserve(&[preimage(1)], 10_000, 10_060).unwrap(),
            Err(vec![0])
        );
        // All or none: the fresh pass of the refused set was not reserved.
        assert_eq!(
            reopened.reserve(&[preimage(3)], 10_000, 10_060).unwrap(),
            Ok(())
        );
        assert_eq!(reopened.spent_count().unwrap(), 2);
    }

    #[test]
    fn a_reservation_holds_until_it_lapses_or_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = PassLedger::open(&dir.path().join("passes.sqlite3")).unwrap();
        assert_eq!(ledger.reserve(&[preimage(7)], 100, 160).unwrap(), Ok(()));
        // Input tried: a concurrent request with the same pass while it is reserved.
        assert_eq!(
            ledger.reserve(&[preimage(7)], 120, 180).unwrap(),
            Err(vec![0])
        );
        // The first operation failed and never reported back: the pass is free again later.
        assert_eq!(ledger.reserve(&[preimage(7)], 161, 221).unwrap(), Ok(()));
        ledger.release(&[preimage(7)]).unwrap();
        assert_eq!(ledger.reserve(&[preimage(7)], 162, 222).unwrap(), Ok(()));
        // Release never frees a spent pass.
        ledger.spend(&[preimage(7)]).unwrap();
        ledger.release(&[preimage(7)]).unwrap();
        assert_eq!(
            ledger.reserve(&[preimage(7)], 10_000, 10_060).unwrap(),
            Err(vec![0])
        );
    }
}
