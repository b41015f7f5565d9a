//! The fleet's store: a PostgreSQL database shared by every node.
//!
//! Spending is atomic across nodes without any read-then-write: a reservation is one
//! `INSERT ... ON CONFLICT DO UPDATE ... WHERE` that takes a row only if it is free, inside a
//! transaction that is rolled back unless it took every row. The primary key makes two nodes
//! offered the same pass at the same moment wait for each other; the second sees the first's
//! row and takes nothing.

use std::collections::HashSet;

use postgres::error::SqlState;
use postgres::{Config, Transaction};

use super::pool::Pool;
use super::{LedgerError, Purpose, SpentPass, SpentPassStore};

/// The schema, one step per version, recorded in `zkap_schema_migrations`.
const MIGRATIONS: [&str; 1] = ["CREATE TABLE zkap_spent_passes (
         preimage bytea PRIMARY KEY,
         spent boolean NOT NULL,
         reserved_until bigint NOT NULL,  -- a reservation lapses then (Unix seconds)
         storage_index bytea,             -- what the pass paid for (unknown for passes
         operation text,                  -- migrated from ledgers that did not record it)
         at bigint                        -- reserved, then spent, at (Unix seconds)
     );"];

/// Any number, the same on every node: migrations run one node at a time.
const MIGRATION_LOCK: i64 = 0x7a6b_6170_5f73_7031;

/// How many times a transaction that lost a deadlock or serialization race is retried.
const RETRIES: usize = 3;

/// How a transaction ends.
enum End {
    Commit,
    Rollback,
}

/// `url` with its password replaced, for log lines and errors.
pub(super) fn redacted(url: &str) -> String {
    // postgresql://user:password@host/...: the password sits between the first ':' after
    // the scheme and the last '@' of the authority.
    let Some((scheme, rest)) = url.split_once("://") else {
        return "postgresql://…".into();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split(':').next().unwrap_or_default();
            let hidden = if user_info.contains(':') { ":…" } else { "" };
            // Query parameters may carry `password=` too.
            let tail = if tail.contains("password") {
                tail.split('?').next().unwrap_or_default().to_owned() + "?…"
            } else {
                tail.to_owned()
            };
            format!("{scheme}://{user}{hidden}@{host}{tail}")
        }
        None if tail.contains("password") => {
            format!(
                "{scheme}://{authority}{}?…",
                tail.split('?').next().unwrap_or_default()
            )
        }
        None => url.to_owned(),
    }
}

fn config_of(url: &str) -> Result<Config, LedgerError> {
    url.parse().map_err(|_| {
        LedgerError::new(format!(
            "spent-pass-store {} is not a PostgreSQL connection URL",
            redacted(url)
        ))
    })
}

/// Checks that `url` parses (at configuration time, before anything connects).
pub(super) fn check_url(url: &str) -> Result<(), LedgerError> {
    config_of(url).map(drop)
}

impl From<postgres::Error> for LedgerError {
    fn from(error: postgres::Error) -> Self {
        // The driver's messages name the server's complaint, never the password.
        Self::new(error.to_string())
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Whether `error` means the connection is gone: no SQL-level error at all (I/O, closed),
/// or the server ending the session (`FATAL`, as when it shuts down). The synchronous
/// client never notices by itself (`is_closed` stays false), so such a connection is
/// dropped here.
fn is_broken(error: &postgres::Error) -> bool {
    error.is_closed()
        || error.code().is_none()
        || error
            .as_db_error()
            .is_some_and(|db| matches!(db.severity(), "FATAL" | "PANIC"))
}

/// Whether a failed transaction may simply be run again on the same connection.
fn is_race(error: &postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(&SqlState::T_R_DEADLOCK_DETECTED | &SqlState::T_R_SERIALIZATION_FAILURE)
    )
}

/// Passes reserved and spent, in a PostgreSQL database.
pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.pool.location())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` and brings its schema up to date (one node at a
    /// time, under an advisory lock).
    pub fn open(url: &str) -> Result<Self, LedgerError> {
        let store = Self {
            pool: Pool::new(config_of(url)?, redacted(url)),
        };
        let known = MIGRATIONS.len();
        store
            .transaction(|tx| {
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
                tx.batch_execute(
                    "CREATE TABLE IF NOT EXISTS zkap_schema_migrations (
                         version integer PRIMARY KEY,
                         applied_at timestamptz NOT NULL DEFAULT now()
                     )",
                )?;
                let applied: Option<i32> = tx
                    .query_one("SELECT max(version) FROM zkap_schema_migrations", &[])?
                    .get(0);
                let applied = usize::try_from(applied.unwrap_or(0)).unwrap_or(usize::MAX);
                if applied > known {
                    return Ok((Err(applied), End::Rollback));
                }
                for (step, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
                    tx.batch_execute(sql)?;
                    let version = i32::try_from(step + 1).unwrap_or(i32::MAX);
                    tx.execute(
                        "INSERT INTO zkap_schema_migrations (version) VALUES ($1)",
                        &[&version],
                    )?;
                }
                Ok((Ok(()), End::Commit))
            })?
            .map_err(|applied| {
                LedgerError::new(format!(
                    "{} has schema version {applied}; this plugin knows up to {known}: \
                     upgrade the plugin",
                    store.pool.location()
                ))
            })?;
        Ok(store)
    }

    /// Runs `work` in a transaction on a pooled connection, ending it as `work` says; again
    /// on a fresh connection if the pooled one turned out dead (the database restarted),
    /// and again after a lost deadlock or serialization race.
    fn transaction<T>(
        &self,
        mut work: impl FnMut(&mut Transaction<'_>) -> Result<(T, End), postgres::Error>,
    ) -> Result<T, LedgerError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut client = self.pool.get()?;
            let result = client.transaction().and_then(|mut tx| {
                let (value, end) = work(&mut tx)?;
                match end {
                    End::Commit => tx.commit()?,
                    End::Rollback => tx.rollback()?,
                }
                Ok(value)
            });
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let broken = is_broken(&error);
            if broken {
                client.discard();
            }
            if attempts > RETRIES || !(broken || is_race(&error)) {
                return Err(LedgerError::new(format!(
                    "spent-pass store {}: {error}",
                    self.pool.location()
                )));
            }
        }
    }

    /// Records spent passes from elsewhere (a migration from SQLite) as spent here; passes
    /// already spent here are left as they are. Returns how many were newly recorded.
    pub fn import(&self, passes: &[SpentPass]) -> Result<u64, LedgerError> {
        self.transaction(|tx| {
            let statement = tx.prepare(
                "INSERT INTO zkap_spent_passes
                     (preimage, spent, reserved_until, storage_index, operation, at)
                 VALUES ($1, true, 0, $2, $3, $4)
                 ON CONFLICT (preimage) DO UPDATE
                     SET spent = true, storage_index = EXCLUDED.storage_index,
                         operation = EXCLUDED.operation, at = EXCLUDED.at
                     WHERE NOT zkap_spent_passes.spent",
            )?;
            let mut recorded = 0;
            for pass in passes {
                let storage_index = pass.storage_index.as_ref().map(|si| &si[..]);
                let at = pass.spent_at.map(to_i64);
                recorded += tx.execute(
                    &statement,
                    &[&&pass.preimage[..], &storage_index, &pass.operation, &at],
                )?;
            }
            Ok((recorded, End::Commit))
        })
    }
}

impl SpentPassStore for PostgresStore {
    fn reserve_distinct(
        &self,
        preimages: &[[u8; 64]],
        purpose: &Purpose,
        now: u64,
        until: u64,
    ) -> Result<Result<(), Vec<usize>>, LedgerError> {
        // Rows are taken in preimage order, so two nodes reserving overlapping sets lock
        // them in the same order and never deadlock each other.
        let mut sorted: Vec<&[u8]> = preimages.iter().map(|p| &p[..]).collect();
        sorted.sort_unstable();
        let (until, now) = (to_i64(until), to_i64(now));
        self.transaction(|tx| {
            let rows = tx.query(
                "INSERT INTO zkap_spent_passes
                     (preimage, spent, reserved_until, storage_index, operation, at)
                 SELECT p, false, $2, $3, $4, $5
                     FROM unnest($1::bytea[]) WITH ORDINALITY AS u(p, n) ORDER BY n
                 ON CONFLICT (preimage) DO UPDATE
                     SET reserved_until = EXCLUDED.reserved_until,
                         storage_index = EXCLUDED.storage_index,
                         operation = EXCLUDED.operation, at = EXCLUDED.at
                     WHERE NOT zkap_spent_passes.spent
                         AND zkap_spent_passes.reserved_until <= $5
                 RETURNING preimage",
                &[
                    &sorted,
                    &until,
                    &&purpose.storage_index[..],
                    &purpose.operation,
                    &now,
                ],
            )?;
            if rows.len() == preimages.len() {
                return Ok((Ok(()), End::Commit));
            }
            // Some were not free: take none, and say which.
            let got: HashSet<Vec<u8>> = rows.iter().map(|row| row.get(0)).collect();
            let taken = (0..preimages.len())
                .filter(|&i| !got.contains(&preimages[i][..]))
                .collect();
            Ok((Err(taken), End::Rollback))
        })
    }

    fn settle(
        &self,
        spent: &[[u8; 64]],
        released: &[[u8; 64]],
        now: u64,
    ) -> Result<(), LedgerError> {
        let spent: Vec<&[u8]> = spent.iter().map(|p| &p[..]).collect();
        let released: Vec<&[u8]> = released.iter().map(|p| &p[..]).collect();
        let now = to_i64(now);
        self.transaction(|tx| {
            if !spent.is_empty() {
                tx.execute(
                    "UPDATE zkap_spent_passes SET spent = true, at = $2 WHERE preimage = ANY($1)",
                    &[&spent, &now],
                )?;
            }
            if !released.is_empty() {
                tx.execute(
                    "DELETE FROM zkap_spent_passes WHERE preimage = ANY($1) AND NOT spent",
                    &[&released],
                )?;
            }
            Ok(((), End::Commit))
        })
    }

    fn spent_count(&self) -> Result<u64, LedgerError> {
        let count: i64 = self.transaction(|tx| {
            let row = tx.query_one("SELECT count(*) FROM zkap_spent_passes WHERE spent", &[])?;
            Ok((row.get(0), End::Rollback))
        })?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
