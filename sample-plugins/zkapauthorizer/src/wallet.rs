//! The client's wallet: an SQLite database in the plugin's state directory holding
//! vouchers, the tokens redeemed for them, and each token's state.
//!
//! Token states: `spendable`; `reserved` (attached to an operation in flight, until a time:
//! a reservation whose operation never reported back lapses and the token is spendable
//! again); `spent` (the server committed the operation); `invalid` (a server refused it,
//! with the reason); `sequestered` (signed by a key not in `allowed-public-keys`: kept, never
//! spent). Voucher states as ZKAPAuthorizer's: `pending`, `redeeming`, `redeemed`,
//! `double-spend`, `unpaid`, `error`.
//!
//! The random tokens of each redemption group are stored before they are sent, so a
//! redemption interrupted by a lost answer retries with the same tokens, which the issuer
//! signs again instead of calling it a double spend.

use std::path::Path;
use std::sync::Mutex;

use challenge_bypass_ristretto::voprf::{Token, UnblindedToken};
use rusqlite::{params, Connection, OptionalExtension as _, TransactionBehavior};
use serde::Serialize;

/// A database error, as text.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The database failed.
    #[error("wallet: {0}")]
    Database(String),
    /// Fewer spendable tokens than asked for.
    #[error("the wallet has {have} spendable passes and this needs {need}; redeem a voucher")]
    Insufficient {
        /// Spendable now.
        have: u64,
        /// Asked for.
        need: u64,
    },
}

impl From<rusqlite::Error> for WalletError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Database(error.to_string())
    }
}

/// A voucher's redemption state, as the client resource reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct VoucherStatus {
    /// Version of this record's shape.
    pub version: u32,
    /// The voucher.
    pub number: String,
    /// Tokens asked for.
    pub expected_tokens: u64,
    /// When it was submitted, Unix seconds.
    pub created: u64,
    /// `pending`, `redeeming`, `redeemed`, `double-spend`, `unpaid` or `error`.
    pub state: String,
    /// Why, for `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Counts of tokens by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenCounts {
    /// Usable now.
    pub spendable: u64,
    /// In flight.
    pub reserved: u64,
    /// Used.
    pub spent: u64,
    /// Refused by a server.
    pub invalid: u64,
    /// From keys not allowed.
    pub sequestered: u64,
}

/// The wallet.
#[derive(Debug)]
pub struct Wallet {
    db: Mutex<Connection>,
}

impl Wallet {
    /// Opens (or creates) the wallet at `path`.
    pub fn open(path: &Path) -> Result<Self, WalletError> {
        let db = crate::spent::open_durable(path)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS vouchers (
                 voucher TEXT PRIMARY KEY NOT NULL,
                 expected_tokens INTEGER NOT NULL,
                 created INTEGER NOT NULL,
                 state TEXT NOT NULL,
                 detail TEXT,
                 groups_done INTEGER NOT NULL DEFAULT 0
             );
             CREATE TABLE IF NOT EXISTS unredeemed (
                 voucher TEXT NOT NULL,
                 counter INTEGER NOT NULL,
                 position INTEGER NOT NULL,
                 token BLOB NOT NULL,
                 PRIMARY KEY (voucher, counter, position)
             );
             CREATE TABLE IF NOT EXISTS tokens (
                 id INTEGER PRIMARY KEY,
                 token BLOB NOT NULL UNIQUE,
                 public_key TEXT NOT NULL,
                 voucher TEXT NOT NULL,
                 state TEXT NOT NULL,
                 reserved_until INTEGER NOT NULL DEFAULT 0,
                 reason TEXT
             );
             CREATE INDEX IF NOT EXISTS tokens_by_state ON tokens (state, id);",
        )?;
        Ok(Self { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a voucher to redeem (`pending`); a voucher already known is left as it is.
    /// Answers its status.
    pub fn add_voucher(
        &self,
        voucher: &str,
        tokens: u64,
        now: u64,
    ) -> Result<VoucherStatus, WalletError> {
        self.db().execute(
            "INSERT OR IGNORE INTO vouchers (voucher, expected_tokens, created, state)
             VALUES (?1, ?2, ?3, 'pending')",
            params![voucher, to_i64(tokens), to_i64(now)],
        )?;
        self.voucher(voucher)?
            .ok_or_else(|| WalletError::Database("the voucher vanished".into()))
    }

    /// A voucher's status.
    pub fn voucher(&self, voucher: &str) -> Result<Option<VoucherStatus>, WalletError> {
        Ok(self
            .db()
            .query_row(
                "SELECT voucher, expected_tokens, created, state, detail FROM vouchers WHERE voucher = ?1",
                params![voucher],
                voucher_row,
            )
            .optional()?)
    }

    /// Every voucher, oldest first.
    pub fn vouchers(&self) -> Result<Vec<VoucherStatus>, WalletError> {
        let db = self.db();
        let mut query = db.prepare(
            "SELECT voucher, expected_tokens, created, state, detail FROM vouchers ORDER BY created, voucher",
        )?;
        let rows = query.query_map([], voucher_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many redemption groups of `voucher` are done.
    pub fn groups_done(&self, voucher: &str) -> Result<u32, WalletError> {
        let done: i64 = self.db().query_row(
            "SELECT groups_done FROM vouchers WHERE voucher = ?1",
            params![voucher],
            |r| r.get(0),
        )?;
        Ok(u32::try_from(done).unwrap_or(0))
    }

    /// Sets a voucher's state.
    pub fn set_voucher_state(
        &self,
        voucher: &str,
        state: &str,
        detail: Option<&str>,
    ) -> Result<(), WalletError> {
        self.db().execute(
            "UPDATE vouchers SET state = ?2, detail = ?3 WHERE voucher = ?1",
            params![voucher, state, detail],
        )?;
        Ok(())
    }

    /// The random tokens of one redemption group: those stored earlier, or `count` new ones
    /// stored now.
    pub fn group_tokens(
        &self,
        voucher: &str,
        counter: u32,
        count: usize,
    ) -> Result<Vec<Token>, WalletError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored: Vec<Vec<u8>> = {
            let mut query = tx.prepare(
                "SELECT token FROM unredeemed WHERE voucher = ?1 AND counter = ?2 ORDER BY position",
            )?;
            let rows = query.query_map(params![voucher, counter], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let tokens = if stored.is_empty() {
            let fresh: Vec<Token> = (0..count)
                .map(|_| Token::random::<sha2::Sha512, _>(&mut rand_core::OsRng))
                .collect();
            {
                let mut put = tx.prepare(
                    "INSERT INTO unredeemed (voucher, counter, position, token) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (position, token) in fresh.iter().enumerate() {
                    put.execute(params![
                        voucher,
                        counter,
                        to_i64(position as u64),
                        &token.to_bytes()[..]
                    ])?;
                }
            }
            fresh
        } else {
            stored
                .iter()
                .map(|bytes| Token::from_bytes(bytes))
                .collect::<Result<_, _>>()
                .map_err(|e| WalletError::Database(format!("a stored token is damaged: {e}")))?
        };
        tx.commit()?;
        Ok(tokens)
    }

    /// Stores a redeemed group's tokens (sequestered unless `allowed`), marks the group done
    /// and forgets its random tokens, in one transaction.
    pub fn add_tokens(
        &self,
        voucher: &str,
        counter: u32,
        tokens: &[UnblindedToken],
        public_key: &str,
        allowed: bool,
    ) -> Result<(), WalletError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut put = tx.prepare(
                "INSERT OR IGNORE INTO tokens (token, public_key, voucher, state) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let state = if allowed { "spendable" } else { "sequestered" };
            for token in tokens {
                put.execute(params![&token.to_bytes()[..], public_key, voucher, state])?;
            }
        }
        tx.execute(
            "UPDATE vouchers SET groups_done = MAX(groups_done, ?2 + 1) WHERE voucher = ?1",
            params![voucher, counter],
        )?;
        tx.execute(
            "DELETE FROM unredeemed WHERE voucher = ?1 AND counter = ?2",
            params![voucher, counter],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Reserves `count` spendable tokens until `until` (Unix seconds), oldest first, all or
    /// none. Reservations that lapsed by `now` count as spendable.
    pub fn take(
        &self,
        count: u64,
        now: u64,
        until: u64,
    ) -> Result<Vec<(i64, UnblindedToken)>, WalletError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rows: Vec<(i64, Vec<u8>)> = {
            let mut query = tx.prepare_cached(
                "SELECT id, token FROM tokens
                 WHERE state = 'spendable' OR (state = 'reserved' AND reserved_until <= ?1)
                 ORDER BY id LIMIT ?2",
            )?;
            let rows = query.query_map(params![to_i64(now), to_i64(count)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        if (rows.len() as u64) < count {
            return Err(WalletError::Insufficient {
                have: rows.len() as u64,
                need: count,
            });
        }
        let mut taken = Vec::with_capacity(rows.len());
        {
            let mut reserve = tx.prepare_cached(
                "UPDATE tokens SET state = 'reserved', reserved_until = ?2 WHERE id = ?1",
            )?;
            for (id, bytes) in rows {
                reserve.execute(params![id, to_i64(until)])?;
                let token = UnblindedToken::from_bytes(&bytes).map_err(|e| {
                    WalletError::Database(format!("a stored token is damaged: {e}"))
                })?;
                taken.push((id, token));
            }
        }
        tx.commit()?;
        Ok(taken)
    }

    /// The tokens `ids`, which must be reserved (an operation's passes kept for a retry).
    pub fn take_ids(&self, ids: &[i64]) -> Result<Vec<(i64, UnblindedToken)>, WalletError> {
        let db = self.db();
        let mut query =
            db.prepare_cached("SELECT token FROM tokens WHERE id = ?1 AND state = 'reserved'")?;
        ids.iter()
            .map(|&id| {
                let bytes: Vec<u8> = query
                    .query_row(params![id], |r| r.get(0))
                    .optional()?
                    .ok_or_else(|| {
                        WalletError::Database(format!("token {id} is no longer reserved"))
                    })?;
                let token = UnblindedToken::from_bytes(&bytes).map_err(|e| {
                    WalletError::Database(format!("a stored token is damaged: {e}"))
                })?;
                Ok((id, token))
            })
            .collect()
    }

    /// Marks tokens spent.
    pub fn spend(&self, ids: &[i64]) -> Result<(), WalletError> {
        self.set_state(ids, "spent", None)
    }

    /// Makes reserved tokens spendable again.
    pub fn release(&self, ids: &[i64]) -> Result<(), WalletError> {
        self.set_state(ids, "spendable", None)
    }

    /// Marks tokens invalid, with why.
    pub fn invalidate(&self, ids: &[i64], reason: &str) -> Result<(), WalletError> {
        self.set_state(ids, "invalid", Some(reason))
    }

    fn set_state(&self, ids: &[i64], state: &str, reason: Option<&str>) -> Result<(), WalletError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut update = tx.prepare_cached(
                "UPDATE tokens SET state = ?2, reason = ?3, reserved_until = 0
                 WHERE id = ?1 AND state = 'reserved'",
            )?;
            for id in ids {
                update.execute(params![id, state, reason])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Tokens by state (lapsed reservations count as spendable).
    pub fn counts(&self, now: u64) -> Result<TokenCounts, WalletError> {
        let db = self.db();
        let mut query = db.prepare(
            "SELECT CASE WHEN state = 'reserved' AND reserved_until <= ?1 THEN 'spendable' ELSE state END,
                    COUNT(*)
             FROM tokens GROUP BY 1",
        )?;
        let mut counts = TokenCounts::default();
        let rows = query.query_map(params![to_i64(now)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (state, n) = row?;
            let n = u64::try_from(n).unwrap_or(0);
            match state.as_str() {
                "spendable" => counts.spendable += n,
                "reserved" => counts.reserved += n,
                "spent" => counts.spent += n,
                "invalid" => counts.invalid += n,
                _ => counts.sequestered += n,
            }
        }
        Ok(counts)
    }
}

fn voucher_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<VoucherStatus> {
    Ok(VoucherStatus {
        version: 1,
        number: row.get(0)?,
        expected_tokens: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
        created: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
        state: row.get(3)?,
        detail: row.get(4)?,
    })
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use challenge_bypass_ristretto::voprf::SigningKey;

    fn tokens(n: usize) -> Vec<UnblindedToken> {
        crate::pass::issue_tokens(&SigningKey::random(&mut rand_core::OsRng), n)
    }

    #[test]
    fn tokens_move_through_their_states_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.sqlite3");
        let wallet = Wallet::open(&path).unwrap();
        wallet.add_voucher("v", 5, 100).unwrap();
        wallet.add_tokens("v", 0, &tokens(4), "key", true).unwrap();
        wallet
            .add_tokens("v", 1, &tokens(1), "other", false)
            .unwrap();
        assert_eq!(wallet.groups_done("v").unwrap(), 2);
        let taken = wallet.take(3, 100, 200).unwrap();
        assert_eq!(taken.len(), 3);
        // Input tried: more than is left.
        assert!(matches!(
            wallet.take(2, 100, 200),
            Err(WalletError::Insufficient { have: 1, need: 2 })
        ));
        let ids: Vec<i64> = taken.iter().map(|t| t.0).collect();
        wallet.spend(&ids[..1]).unwrap();
        wallet
            .invalidate(&ids[1..2], "signature check failed")
            .unwrap();
        wallet.release(&ids[2..]).unwrap();
        // Spending again changes nothing: only reserved tokens move.
        wallet.release(&ids[..1]).unwrap();
        drop(wallet);
        let wallet = Wallet::open(&path).unwrap();
        assert_eq!(
            wallet.counts(100).unwrap(),
            TokenCounts {
                spendable: 2,
                reserved: 0,
                spent: 1,
                invalid: 1,
                sequestered: 1
            }
        );
    }

    #[test]
    fn a_lapsed_reservation_is_spendable_again() {
        let dir = tempfile::tempdir().unwrap();
        let wallet = Wallet::open(&dir.path().join("w.sqlite3")).unwrap();
        wallet.add_voucher("v", 1, 0).unwrap();
        wallet.add_tokens("v", 0, &tokens(1), "key", true).unwrap();
        wallet.take(1, 100, 200).unwrap();
        assert!(wallet.take(1, 199, 300).is_err());
        assert_eq!(wallet.take(1, 200, 300).unwrap().len(), 1);
    }

    #[test]
    fn a_group_keeps_its_random_tokens_until_redeemed() {
        let dir = tempfile::tempdir().unwrap();
        let wallet = Wallet::open(&dir.path().join("w.sqlite3")).unwrap();
        wallet.add_voucher("v", 2, 0).unwrap();
        let first = wallet.group_tokens("v", 0, 2).unwrap();
        let again = wallet.group_tokens("v", 0, 2).unwrap();
        assert_eq!(
            first.iter().map(Token::to_bytes).collect::<Vec<_>>(),
            again.iter().map(Token::to_bytes).collect::<Vec<_>>()
        );
        wallet.add_tokens("v", 0, &tokens(2), "key", true).unwrap();
        let fresh = wallet.group_tokens("v", 0, 2).unwrap();
        assert_ne!(fresh[0].to_bytes(), first[0].to_bytes());
        // Re-adding a voucher keeps its state.
        wallet.set_voucher_state("v", "redeemed", None).unwrap();
        assert_eq!(wallet.add_voucher("v", 9, 5).unwrap().state, "redeemed");
    }
}
