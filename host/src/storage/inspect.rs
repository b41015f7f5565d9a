//! Introspection and lease control for storage plugins (through the host API): what shares
//! a storage index has, their sizes and latest lease expiry, and leases on chosen shares.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;

use super::container::immutable::ImmutableContainer;
use super::container::mutable::MutableContainer;
use super::container::{self, ContainerKind};
use super::store::{at, LEASE_OWNER};
use super::{StorageError, Store};
use crate::protocol::{LeaseSecrets, ShareKind, ShareNumber, StorageIndex};

/// Facts about one stored share.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShareFacts {
    /// Immutable or mutable.
    pub kind: ShareKind,
    /// The share number.
    pub share_number: ShareNumber,
    /// Length of the share data in bytes.
    pub size: u64,
    /// The latest lease expiry, Unix seconds; 0 without leases.
    pub lease_expiry: u64,
}

impl Store {
    /// Every completed share of `si`, immutable or mutable, with its size and latest lease
    /// expiry. Files that are not share containers are left out; uploads in progress too.
    pub fn share_facts(&self, si: &StorageIndex) -> Result<Vec<ShareFacts>, StorageError> {
        let _guard = self.locks.lock(si);
        let mut facts = Vec::new();
        for (shnum, path) in self.share_files(si)? {
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io(path, e)),
            };
            let kind = container::sniff(&file).map_err(at(&path))?;
            let found = match kind {
                ContainerKind::Immutable => ImmutableContainer::open(file)
                    .map_err(at(&path))?
                    .map(|c| latest(c.leases()).map(|e| (ShareKind::Immutable, c.data_len(), e)))
                    .transpose(),
                ContainerKind::Mutable => MutableContainer::open(file)
                    .map_err(at(&path))?
                    .map(|c| latest(c.leases()).map(|e| (ShareKind::Mutable, c.data_len(), e)))
                    .transpose(),
                ContainerKind::Unknown => Ok(None),
            };
            if let Some((kind, size, lease_expiry)) = found.map_err(at(&path))? {
                facts.push(ShareFacts {
                    kind,
                    share_number: shnum,
                    size,
                    lease_expiry,
                });
            }
        }
        Ok(facts)
    }

    /// Adds or renews a lease on the given shares of `si` (all of them when `shares` is
    /// empty), as `PUT /lease` does. [`StorageError::ShareNotFound`] when none of them exists.
    pub fn add_or_renew_lease_on(
        &self,
        si: &StorageIndex,
        shares: &BTreeSet<ShareNumber>,
        lease: &LeaseSecrets,
    ) -> Result<(), StorageError> {
        if shares.is_empty() {
            return self.add_or_renew_lease(si, lease);
        }
        let _guard = self.locks.lock(si);
        let files = self.share_files(si)?;
        let grant = self.grant(LEASE_OWNER, lease);
        let mut leased = false;
        for (_, path) in files.iter().filter(|(n, _)| shares.contains(n)) {
            let kind = self.lease_share(
                path,
                &grant,
                &[ContainerKind::Immutable, ContainerKind::Mutable],
            )?;
            leased |= kind != ContainerKind::Unknown;
        }
        if leased {
            Ok(())
        } else {
            Err(StorageError::ShareNotFound)
        }
    }
}

fn latest<I>(records: io::Result<I>) -> io::Result<u64>
where
    I: Iterator<Item = io::Result<(u64, super::container::lease::LeaseRecord)>>,
{
    let mut latest = 0u64;
    for record in records? {
        latest = latest.max(u64::from(record?.1.expiry));
    }
    Ok(latest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::fixture::{lease, si, Fixture};

    #[test]
    fn share_facts_report_size_and_lease_expiry() {
        let fx = Fixture::new();
        assert!(fx.store.share_facts(&si(1)).unwrap().is_empty());
        fx.upload_share(&si(1), 2, b"hello");
        let facts = fx.store.share_facts(&si(1)).unwrap();
        assert_eq!(facts.len(), 1);
        assert_eq!(facts[0].kind, ShareKind::Immutable);
        assert_eq!(facts[0].share_number, ShareNumber(2));
        assert_eq!(facts[0].size, 5);
        assert!(facts[0].lease_expiry > 0);
    }

    #[test]
    fn lease_on_chosen_shares_needs_one_of_them() {
        let fx = Fixture::new();
        fx.upload_share(&si(1), 0, b"a");
        let only_missing = BTreeSet::from([ShareNumber(7)]);
        assert!(matches!(
            fx.store
                .add_or_renew_lease_on(&si(1), &only_missing, &lease(2)),
            Err(StorageError::ShareNotFound)
        ));
        let present = BTreeSet::from([ShareNumber(0)]);
        fx.store
            .add_or_renew_lease_on(&si(1), &present, &lease(2))
            .unwrap();
    }
}
