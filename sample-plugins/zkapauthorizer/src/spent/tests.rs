//! The SQLite store, the settings and the backlog. The PostgreSQL store is tried against a
//! real server in the workspace's tests (`tests/zkap/fleet.rs`).

use std::path::Path;

use super::*;

fn preimage(n: u8) -> [u8; 64] {
    [n; 64]
}

const PURPOSE: Purpose = Purpose {
    storage_index: [9; 16],
    operation: "allocate_buckets",
};

fn sqlite(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join(LEDGER_FILE)).unwrap()
}

#[test]
fn a_spent_pass_is_refused_again_also_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = sqlite(dir.path());
    let both = [preimage(1), preimage(2)];
    assert_eq!(ledger.reserve(&both, &PURPOSE, 100, 160).unwrap(), Ok(()));
    ledger.settle(&both, &[], 120).unwrap();
    assert_eq!(ledger.spent_count().unwrap(), 2);
    // Input tried: the same passes again, with one fresh one among them.
    let again = [preimage(3), preimage(2), preimage(1)];
    assert_eq!(
        ledger.reserve(&again, &PURPOSE, 200, 260).unwrap(),
        Err(vec![1, 2])
    );
    drop(ledger);
    let reopened = sqlite(dir.path());
    assert_eq!(
        reopened
            .reserve(&[preimage(1)], &PURPOSE, 10_000, 10_060)
            .unwrap(),
        Err(vec![0])
    );
    // All or none: the fresh pass of the refused set was not reserved.
    assert_eq!(
        reopened
            .reserve(&[preimage(3)], &PURPOSE, 10_000, 10_060)
            .unwrap(),
        Ok(())
    );
    assert_eq!(reopened.spent_count().unwrap(), 2);
    // Recorded with what they paid for and when they were spent.
    let spent = reopened.spent_passes(None, 10).unwrap();
    assert_eq!(spent.len(), 2);
    assert_eq!(spent[0].preimage, preimage(1));
    assert_eq!(spent[0].storage_index, Some([9; 16]));
    assert_eq!(spent[0].operation.as_deref(), Some("allocate_buckets"));
    assert_eq!(spent[0].spent_at, Some(120));
    // Paged in preimage order.
    let rest = reopened.spent_passes(Some(&preimage(1)), 10).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].preimage, preimage(2));
}

#[test]
fn a_reservation_holds_until_it_lapses_or_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = sqlite(dir.path());
    let seven = [preimage(7)];
    assert_eq!(ledger.reserve(&seven, &PURPOSE, 100, 160).unwrap(), Ok(()));
    // Input tried: a concurrent request with the same pass while it is reserved.
    assert_eq!(
        ledger.reserve(&seven, &PURPOSE, 120, 180).unwrap(),
        Err(vec![0])
    );
    // The first operation failed and never reported back: the pass is free again later.
    assert_eq!(ledger.reserve(&seven, &PURPOSE, 161, 221).unwrap(), Ok(()));
    ledger.settle(&[], &seven, 170).unwrap();
    assert_eq!(ledger.reserve(&seven, &PURPOSE, 162, 222).unwrap(), Ok(()));
    // Release never frees a spent pass.
    ledger.settle(&seven, &[], 170).unwrap();
    ledger.settle(&[], &seven, 171).unwrap();
    assert_eq!(
        ledger.reserve(&seven, &PURPOSE, 10_000, 10_060).unwrap(),
        Err(vec![0])
    );
}

#[test]
fn one_pass_given_twice_in_a_request_pays_once() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = sqlite(dir.path());
    // Input tried: passes [4, 5, 4, 4]: the later copies of 4 are named, nothing reserved.
    let repeated = [preimage(4), preimage(5), preimage(4), preimage(4)];
    assert_eq!(
        ledger.reserve(&repeated, &PURPOSE, 100, 160).unwrap(),
        Err(vec![2, 3])
    );
    assert_eq!(
        ledger
            .reserve(&[preimage(4), preimage(5)], &PURPOSE, 100, 160)
            .unwrap(),
        Ok(())
    );
}

#[test]
fn a_ledger_of_plugin_0_1_is_migrated_and_keeps_its_spent_passes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LEDGER_FILE);
    {
        // The 0.1 schema, with no version recorded.
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE passes (preimage BLOB PRIMARY KEY NOT NULL, spent INTEGER NOT NULL,
                                  until INTEGER NOT NULL) WITHOUT ROWID;",
        )
        .unwrap();
        db.execute("INSERT INTO passes VALUES (?1, 1, 0)", [&preimage(8)[..]])
            .unwrap();
    }
    let ledger = SqliteStore::open(&path).unwrap();
    assert_eq!(
        ledger
            .reserve(&[preimage(8)], &PURPOSE, 10_000, 10_060)
            .unwrap(),
        Err(vec![0])
    );
    let spent = ledger.spent_passes(None, 10).unwrap();
    assert_eq!(spent.len(), 1);
    assert_eq!(spent[0].storage_index, None);
    drop(ledger);
    // Opening again applies nothing twice; a newer schema than this plugin knows is refused.
    SqliteStore::open(&path).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let refused = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(refused.contains("schema version 99"), "{refused}");
}

#[test]
fn the_setting_names_sqlite_or_postgresql_and_logs_no_password() {
    let (state, node) = (Path::new("/n/plugins-state/z"), Path::new("/n"));
    assert_eq!(
        StoreLocation::parse(None, state, node).unwrap(),
        StoreLocation::Sqlite(state.join(LEDGER_FILE))
    );
    assert_eq!(
        StoreLocation::parse(Some(" sqlite:db/passes.sqlite3 "), state, node).unwrap(),
        StoreLocation::Sqlite(node.join("db/passes.sqlite3"))
    );
    let url = "postgresql://zkap:s3cret-pw@db.example:5432/passes";
    let location = StoreLocation::parse(Some(url), state, node).unwrap();
    assert_eq!(location, StoreLocation::Postgres(url.into()));
    let shown = location.to_string();
    assert!(!shown.contains("s3cret-pw"), "{shown}");
    assert!(
        shown.contains("zkap") && shown.contains("db.example:5432/passes"),
        "{shown}"
    );
    let in_query = "postgres://db.example/passes?user=z&password=s3cret-pw";
    let shown = StoreLocation::parse(Some(in_query), state, node)
        .unwrap()
        .to_string();
    assert!(!shown.contains("s3cret-pw"), "{shown}");
    // Inputs tried: another scheme, and a URL the driver cannot read.
    for bad in [
        "mysql://db/passes",
        "postgresql://z:s3cret-pw@db:notaport/x",
    ] {
        let error = StoreLocation::parse(Some(bad), state, node)
            .unwrap_err()
            .to_string();
        assert!(error.contains("spent-pass-store"), "{error}");
        assert!(!error.contains("s3cret-pw"), "{error}");
    }
}

/// A store that fails while `down` is set.
#[derive(Debug)]
struct Flaky {
    inner: SqliteStore,
    down: std::sync::atomic::AtomicBool,
}

impl SpentPassStore for Flaky {
    fn reserve_distinct(
        &self,
        preimages: &[[u8; 64]],
        purpose: &Purpose,
        now: u64,
        until: u64,
    ) -> Result<Result<(), Vec<usize>>, LedgerError> {
        self.inner.reserve_distinct(preimages, purpose, now, until)
    }
    fn settle(
        &self,
        spent: &[[u8; 64]],
        released: &[[u8; 64]],
        now: u64,
    ) -> Result<(), LedgerError> {
        if self.down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(LedgerError::new("away"));
        }
        self.inner.settle(spent, released, now)
    }
    fn spent_count(&self) -> Result<u64, LedgerError> {
        self.inner.spent_count()
    }
}

#[test]
fn settlements_the_store_cannot_take_wait_and_land_once_it_is_back() {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky {
        inner: sqlite(dir.path()),
        down: true.into(),
    };
    let backlog = Backlog::default();
    let passes: Vec<[u8; 64]> = (10..14).map(preimage).collect();
    assert_eq!(store.reserve(&passes, &PURPOSE, 100, 700).unwrap(), Ok(()));
    let deferred = backlog
        .settle(
            &store,
            Settlement {
                spent: passes[..3].to_vec(),
                released: passes[3..].to_vec(),
                at: 110,
            },
        )
        .unwrap_err();
    assert_eq!((deferred.waiting, deferred.dropped), (4, 0));
    assert!(backlog.flush(&store).is_err());
    assert_eq!(backlog.len(), 4);
    store.down.store(false, Relaxed);
    backlog.flush(&store).unwrap();
    assert!(backlog.is_empty());
    assert_eq!(store.spent_count().unwrap(), 3);
    // The released pass is free again; the spent ones never are, even after the lapse.
    assert_eq!(
        store.reserve(&passes[3..], &PURPOSE, 120, 180).unwrap(),
        Ok(())
    );
    assert_eq!(
        store
            .reserve(&passes[..1], &PURPOSE, 10_000, 10_060)
            .unwrap(),
        Err(vec![0])
    );
}
