//! Protocol values turned into the typed [`Operation`]s plugins see, for the server and the
//! client alike. Secrets never cross: a lease is named by the SHA-256 of its renew secret.

use gbs_plugin_interface::ffi::OperationKind;
use gbs_plugin_interface::{
    LeaseHash, MutableShareChange, Operation, ShareKind as PluginShareKind,
};
use sha2::{Digest, Sha256};

use crate::protocol::{
    AllocateRequest, LeaseSecrets, ReadRange, ReadTestWriteRequest, ShareKind, ShareNumber,
    StorageIndex,
};

/// The SHA-256 of the lease renew secret: names a lease without revealing it.
pub fn lease_hash(lease: &LeaseSecrets) -> LeaseHash {
    Sha256::digest(lease.renew.expose()).into()
}

/// The interface's spelling of a share kind.
pub fn share_kind(kind: ShareKind) -> PluginShareKind {
    match kind {
        ShareKind::Immutable => PluginShareKind::Immutable,
        ShareKind::Mutable => PluginShareKind::Mutable,
    }
}

/// The [`OperationKind`] of an operation, for matching plugin interests.
pub fn kind_of(operation: &Operation) -> OperationKind {
    let by_share = |kind: &PluginShareKind, immutable, mutable| match kind {
        PluginShareKind::Immutable => immutable,
        PluginShareKind::Mutable => mutable,
    };
    match operation {
        Operation::Version => OperationKind::VERSION,
        Operation::Allocate { .. } => OperationKind::ALLOCATE,
        Operation::Upload { .. } => OperationKind::UPLOAD,
        Operation::Abort { .. } => OperationKind::ABORT,
        Operation::List { kind, .. } => by_share(
            kind,
            OperationKind::LIST_IMMUTABLE,
            OperationKind::LIST_MUTABLE,
        ),
        Operation::Read { kind, .. } => by_share(
            kind,
            OperationKind::READ_IMMUTABLE,
            OperationKind::READ_MUTABLE,
        ),
        Operation::AdviseCorrupt { kind, .. } => by_share(
            kind,
            OperationKind::CORRUPT_IMMUTABLE,
            OperationKind::CORRUPT_MUTABLE,
        ),
        Operation::Lease { .. } => OperationKind::LEASE,
        Operation::ReadTestWrite { .. } => OperationKind::READ_TEST_WRITE,
        // Operations added by a later interface are of no kind a 1.0 plugin names.
        _ => OperationKind(u32::MAX),
    }
}

/// `POST /storage/v1/immutable/{si}`.
pub fn allocate(si: &StorageIndex, request: &AllocateRequest, lease: &LeaseSecrets) -> Operation {
    Operation::Allocate {
        storage_index: *si.as_bytes(),
        share_numbers: request.share_numbers.iter().map(|n| n.0).collect(),
        allocated_size: request.allocated_size,
        lease: lease_hash(lease),
    }
}

/// `PATCH /storage/v1/immutable/{si}/{shnum}`.
pub fn upload(si: &StorageIndex, shnum: ShareNumber, offset: u64, length: u64) -> Operation {
    Operation::Upload {
        storage_index: *si.as_bytes(),
        share_number: shnum.0,
        offset,
        length,
    }
}

/// `PUT /storage/v1/immutable/{si}/{shnum}/abort`.
pub fn abort(si: &StorageIndex, shnum: ShareNumber) -> Operation {
    Operation::Abort {
        storage_index: *si.as_bytes(),
        share_number: shnum.0,
    }
}

/// `GET /storage/v1/{kind}/{si}/shares`.
pub fn list(kind: ShareKind, si: &StorageIndex) -> Operation {
    Operation::List {
        kind: share_kind(kind),
        storage_index: *si.as_bytes(),
    }
}

/// `GET /storage/v1/{kind}/{si}/{shnum}`.
pub fn read(
    kind: ShareKind,
    si: &StorageIndex,
    shnum: ShareNumber,
    range: Option<&ReadRange>,
) -> Operation {
    Operation::Read {
        kind: share_kind(kind),
        storage_index: *si.as_bytes(),
        share_number: shnum.0,
        range: range
            .and_then(|r| r.clamp(u64::MAX))
            .map(|r| (r.start, r.end - r.start)),
    }
}

/// `POST /storage/v1/{kind}/{si}/{shnum}/corrupt`.
pub fn advise_corrupt(kind: ShareKind, si: &StorageIndex, shnum: ShareNumber) -> Operation {
    Operation::AdviseCorrupt {
        kind: share_kind(kind),
        storage_index: *si.as_bytes(),
        share_number: shnum.0,
    }
}

/// `PUT /storage/v1/lease/{si}`.
pub fn lease(si: &StorageIndex, lease: &LeaseSecrets) -> Operation {
    Operation::Lease {
        storage_index: *si.as_bytes(),
        lease: lease_hash(lease),
    }
}

/// `POST /storage/v1/mutable/{si}/read-test-write`.
pub fn read_test_write(
    si: &StorageIndex,
    request: &ReadTestWriteRequest,
    lease: &LeaseSecrets,
) -> Operation {
    let shares = request
        .test_write_vectors
        .iter()
        .map(|(shnum, vectors)| MutableShareChange {
            share_number: shnum.0,
            tests: u32::try_from(vectors.test.len()).unwrap_or(u32::MAX),
            write_bytes: vectors
                .write
                .iter()
                .fold(0u64, |sum, w| sum.saturating_add(w.data.len() as u64)),
            write_end: vectors
                .write
                .iter()
                .map(|w| w.offset.saturating_add(w.data.len() as u64))
                .max()
                .unwrap_or(0),
            new_length: vectors.new_length,
        })
        .collect();
    Operation::ReadTestWrite {
        storage_index: *si.as_bytes(),
        shares,
        read_vectors: u32::try_from(request.read_vector.len()).unwrap_or(u32::MAX),
        lease: lease_hash(lease),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{LeaseCancelSecret, LeaseRenewSecret};

    #[test]
    fn leases_are_named_by_a_hash_never_the_secret() {
        let lease = LeaseSecrets {
            renew: LeaseRenewSecret::new([1; 32]),
            cancel: LeaseCancelSecret::new([2; 32]),
        };
        let op = self::lease(&StorageIndex::from_bytes([3; 16]), &lease);
        let bytes = gbs_plugin_interface::to_cbor(&op);
        assert!(!bytes.windows(32).any(|w| w == [1; 32] || w == [2; 32]));
        let Operation::Lease { lease: hash, .. } = op else {
            panic!("not a lease operation")
        };
        assert_eq!(hash, <[u8; 32]>::from(Sha256::digest([1u8; 32])));
        assert_eq!(kind_of(&Operation::Version), OperationKind::VERSION);
    }

    #[test]
    fn read_ranges_become_offset_and_length() {
        let si = StorageIndex::from_bytes([0; 16]);
        let range = ReadRange::new(10, 5);
        let op = read(ShareKind::Mutable, &si, ShareNumber(1), range.as_ref());
        assert!(matches!(
            op,
            Operation::Read {
                range: Some((10, 5)),
                ..
            }
        ));
        assert_eq!(kind_of(&op), OperationKind::READ_MUTABLE);
    }
}
