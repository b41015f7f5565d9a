//! Admitted allocations waiting for `committed`, and whose account they charge.
//!
//! `committed` gets the operation and its outcome but not the client's plugin data, so the
//! account is remembered from `admit`, keyed by what both calls see: the storage index and
//! the lease hash of the allocation.

use std::collections::VecDeque;

use gbs_plugin_interface::{LeaseHash, StorageIndex};

use crate::account::Account;

/// Allocations remembered at most. One that never commits (another plugin refused it, the
/// store failed) would otherwise stay for ever; past the bound the oldest is forgotten, and
/// if it commits after all it is not charged.
pub const MAX_PENDING: usize = 4096;

/// What this plugin (and quota-py, in the same words) logs when a committed allocation
/// has no pending charge.
pub(crate) const NOT_PENDING: &str = "an allocation committed that this plugin did not admit \
     (admitted before a restart, or more than 4096 admitted allocations waited); it is not charged";

type Key = (StorageIndex, LeaseHash);

/// The pending charges, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Pending(VecDeque<(Key, Account)>);

impl Pending {
    /// Remembers an admitted allocation; the same one admitted again moves to the newest.
    pub(crate) fn insert(&mut self, key: Key, account: Account) {
        // A linear search: the bound keeps it to a few microseconds.
        self.take(&key);
        self.0.push_back((key, account));
        if self.0.len() > MAX_PENDING {
            self.0.pop_front();
        }
    }

    /// The account of a committed allocation, forgetting it.
    pub(crate) fn take(&mut self, key: &Key) -> Option<Account> {
        let index = self.0.iter().position(|(k, _)| k == key)?;
        self.0.remove(index).map(|(_, account)| account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> Key {
        let mut si = [0u8; 16];
        si[..8].copy_from_slice(&u64::try_from(n).unwrap().to_le_bytes());
        (si, [1; 32])
    }

    fn account(name: &str) -> Account {
        Account::parse(name).unwrap()
    }

    #[test]
    fn take_returns_the_account_once() {
        let mut pending = Pending::default();
        pending.insert(key(1), account("alice"));
        assert_eq!(pending.take(&key(1)), Some(account("alice")));
        assert_eq!(pending.take(&key(1)), None);
    }

    #[test]
    fn the_lease_is_part_of_the_key() {
        let mut pending = Pending::default();
        pending.insert(([0; 16], [1; 32]), account("alice"));
        assert_eq!(pending.take(&([0; 16], [2; 32])), None);
    }

    #[test]
    fn a_second_admit_replaces_the_first() {
        let mut pending = Pending::default();
        pending.insert(key(1), account("alice"));
        pending.insert(key(1), account("bob"));
        assert_eq!(pending.take(&key(1)), Some(account("bob")));
        assert_eq!(pending.take(&key(1)), None);
    }

    #[test]
    fn past_the_bound_the_oldest_is_forgotten() {
        let mut pending = Pending::default();
        for n in 0..=MAX_PENDING {
            pending.insert(key(n), account("alice"));
        }
        assert_eq!(pending.0.len(), MAX_PENDING);
        assert_eq!(pending.take(&key(0)), None);
        assert_eq!(pending.take(&key(1)), Some(account("alice")));
        assert_eq!(pending.take(&key(MAX_PENDING)), Some(account("alice")));
    }

    #[test]
    fn admitting_again_saves_an_old_entry_from_eviction() {
        let mut pending = Pending::default();
        for n in 0..MAX_PENDING {
            pending.insert(key(n), account("alice"));
        }
        pending.insert(key(0), account("alice"));
        pending.insert(key(MAX_PENDING), account("alice"));
        assert_eq!(pending.take(&key(0)), Some(account("alice")));
        assert_eq!(pending.take(&key(1)), None);
    }
}
