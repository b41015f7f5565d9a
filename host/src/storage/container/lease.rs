//! Lease records as both container kinds store them (`gbs-protocol.md` §5.2, §6.2, §6.3).
//!
//! Immutable record, 72 bytes: `u32 owner`, `32B renew`, `32B cancel`, `u32 expiry`.
//! Mutable record, 92 bytes: `u32 owner`, `u32 expiry`, `32B renew`, `32B cancel`,
//! `20B nodeid`. All integers big-endian. Version 1 containers keep the secrets in
//! cleartext; version 2 keeps their unkeyed BLAKE2b-256 digests
//! (allmydata/storage/lease_schema.py), so a stolen share file yields no usable secret.

use std::fmt;

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use subtle::ConstantTimeEq;

use super::{array_at, u32_at};
use crate::protocol::LeaseSecrets;

/// Size of a lease record in an immutable container.
pub(crate) const IMMUTABLE_LEASE_SIZE: usize = 72;
/// Size of a lease record (or empty slot) in a mutable container.
pub(crate) const MUTABLE_LEASE_SIZE: usize = 92;
/// How long a lease lasts from the operation that adds or renews it: 31 days.
pub(crate) const LEASE_DURATION_SECS: u64 = 31 * 24 * 60 * 60;

/// How a container version keeps lease secrets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SecretForm {
    /// Version 1 containers.
    Cleartext,
    /// Version 2 containers: BLAKE2b with a 32-byte digest, no key.
    Blake2b256,
}

impl SecretForm {
    /// The bytes a container of this form stores for `secret`.
    pub(crate) fn stored(self, secret: &[u8; 32]) -> [u8; 32] {
        match self {
            Self::Cleartext => *secret,
            Self::Blake2b256 => blake2b_256(secret),
        }
    }

    /// Whether `stored` was made from `presented`, compared in constant time.
    pub(crate) fn matches(self, stored: &[u8; 32], presented: &[u8; 32]) -> bool {
        self.stored(presented).ct_eq(stored).into()
    }
}

/// Unkeyed BLAKE2b with a 32-byte digest, as PyNaCl's `blake2b(digest_size=32)`.
pub(crate) fn blake2b_256(data: &[u8]) -> [u8; 32] {
    Blake2b::<U32>::digest(data).into()
}

/// Expiry of a lease added or renewed at `now`: 31 days later, saturating at the u32 the
/// containers store.
pub(crate) fn expiry_after(now: u64) -> u32 {
    u32::try_from(now.saturating_add(LEASE_DURATION_SECS)).unwrap_or(u32::MAX)
}

/// A lease to add or renew, with the client's cleartext secrets. Containers turn it into a
/// [`LeaseRecord`] in their own [`SecretForm`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeaseGrant {
    /// 0 for immutable allocate, 1 for everything else; 0 marks an empty mutable slot.
    pub(crate) owner: u32,
    /// The client's secrets.
    pub(crate) secrets: LeaseSecrets,
    /// Unix seconds.
    pub(crate) expiry: u32,
    /// The server's node id; stored in mutable records only.
    pub(crate) nodeid: [u8; 20],
}

impl LeaseGrant {
    /// A lease granted at `now` for the standard 31 days.
    pub(crate) fn new(owner: u32, secrets: LeaseSecrets, now: u64, nodeid: [u8; 20]) -> Self {
        Self {
            owner,
            secrets,
            expiry: expiry_after(now),
            nodeid,
        }
    }

    /// The record a container with secrets in `form` stores for this grant.
    pub(crate) fn record(&self, form: SecretForm) -> LeaseRecord {
        LeaseRecord {
            owner: self.owner,
            renew: form.stored(self.secrets.renew.expose()),
            cancel: form.stored(self.secrets.cancel.expose()),
            expiry: self.expiry,
            nodeid: self.nodeid,
        }
    }

    /// Whether `record`, stored in `form`, is this grant's lease (same renew secret).
    pub(crate) fn renews(&self, record: &LeaseRecord, form: SecretForm) -> bool {
        form.matches(&record.renew, self.secrets.renew.expose())
    }
}

/// One lease as a container stores it: secrets already in the container's form.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct LeaseRecord {
    /// Owner number; 0 in a mutable slot means "empty".
    pub(crate) owner: u32,
    /// Renew secret (cleartext in v1, hashed in v2).
    pub(crate) renew: [u8; 32],
    /// Cancel secret (cleartext in v1, hashed in v2).
    pub(crate) cancel: [u8; 32],
    /// Expiry, Unix seconds.
    pub(crate) expiry: u32,
    /// Node that accepted the lease; all zeros in immutable records, which do not store it.
    pub(crate) nodeid: [u8; 20],
}

impl fmt::Debug for LeaseRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets stay out of logs even in v1 containers, where they are cleartext.
        f.debug_struct("LeaseRecord")
            .field("owner", &self.owner)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

impl LeaseRecord {
    /// The 72-byte immutable encoding.
    pub(crate) fn to_immutable_bytes(&self) -> [u8; IMMUTABLE_LEASE_SIZE] {
        let mut out = [0u8; IMMUTABLE_LEASE_SIZE];
        let parts: [&[u8]; 4] = [
            &self.owner.to_be_bytes(),
            &self.renew,
            &self.cancel,
            &self.expiry.to_be_bytes(),
        ];
        concat_into(&mut out, &parts);
        out
    }

    /// Decodes a 72-byte immutable record.
    pub(crate) fn from_immutable_bytes(bytes: &[u8; IMMUTABLE_LEASE_SIZE]) -> Self {
        Self {
            owner: u32_at(bytes, 0).unwrap_or_default(),
            renew: array_at(bytes, 4).unwrap_or_default(),
            cancel: array_at(bytes, 36).unwrap_or_default(),
            expiry: u32_at(bytes, 68).unwrap_or_default(),
            nodeid: [0; 20],
        }
    }

    /// The 92-byte mutable encoding.
    pub(crate) fn to_mutable_bytes(&self) -> [u8; MUTABLE_LEASE_SIZE] {
        let mut out = [0u8; MUTABLE_LEASE_SIZE];
        let parts: [&[u8]; 5] = [
            &self.owner.to_be_bytes(),
            &self.expiry.to_be_bytes(),
            &self.renew,
            &self.cancel,
            &self.nodeid,
        ];
        concat_into(&mut out, &parts);
        out
    }

    /// Decodes a 92-byte mutable record or slot.
    pub(crate) fn from_mutable_bytes(bytes: &[u8; MUTABLE_LEASE_SIZE]) -> Self {
        Self {
            owner: u32_at(bytes, 0).unwrap_or_default(),
            expiry: u32_at(bytes, 4).unwrap_or_default(),
            renew: array_at(bytes, 8).unwrap_or_default(),
            cancel: array_at(bytes, 40).unwrap_or_default(),
            nodeid: array_at(bytes, 72).unwrap_or_default(),
        }
    }
}

/// Copies `parts` one after another into `out`, whose length is their total.
fn concat_into(out: &mut [u8], parts: &[&[u8]]) {
    let mut at = 0;
    for part in parts {
        if let Some(dest) = out.get_mut(at..at + part.len()) {
            dest.copy_from_slice(part);
        }
        at += part.len();
    }
}

/// What a grant does to a container, given the leases already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseChange {
    /// The lease in this slot has the grant's renew secret and an earlier expiry.
    Renew(u64),
    /// The lease with the grant's renew secret already lasts at least as long.
    Keep,
    /// No lease has the grant's renew secret.
    Add,
}

/// Decides what `grant` does: the first lease with its renew secret is extended, but only
/// to a later expiry (renewal never shortens a lease); otherwise a lease is added.
pub(crate) fn decide<I>(
    grant: &LeaseGrant,
    form: SecretForm,
    leases: I,
) -> std::io::Result<LeaseChange>
where
    I: IntoIterator<Item = std::io::Result<(u64, LeaseRecord)>>,
{
    for lease in leases {
        let (slot, record) = lease?;
        if grant.renews(&record, form) {
            return Ok(if grant.expiry > record.expiry {
                LeaseChange::Renew(slot)
            } else {
                LeaseChange::Keep
            });
        }
    }
    Ok(LeaseChange::Add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{LeaseCancelSecret, LeaseRenewSecret};

    fn secrets(renew: u8, cancel: u8) -> LeaseSecrets {
        LeaseSecrets {
            renew: LeaseRenewSecret::new([renew; 32]),
            cancel: LeaseCancelSecret::new([cancel; 32]),
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn blake2b_256_matches_the_protocol_test_vector() {
        assert_eq!(
            hex(&blake2b_256(&[b'R'; 32])),
            "0666d16d6f9960d32c9e59c59b33800be038644ece4cb3da310b258e6d852204"
        );
    }

    #[test]
    fn v1_stores_cleartext_and_v2_stores_hashes() {
        let grant = LeaseGrant::new(0, secrets(b'R', b'C'), 100, [7; 20]);
        let v1 = grant.record(SecretForm::Cleartext);
        assert_eq!(v1.renew, [b'R'; 32]);
        assert_eq!(v1.cancel, [b'C'; 32]);
        let v2 = grant.record(SecretForm::Blake2b256);
        assert_eq!(v2.renew, blake2b_256(&[b'R'; 32]));
        assert_eq!(v2.cancel, blake2b_256(&[b'C'; 32]));
        assert!(grant.renews(&v1, SecretForm::Cleartext));
        assert!(grant.renews(&v2, SecretForm::Blake2b256));
        assert!(!grant.renews(&v2, SecretForm::Cleartext));
        let other = LeaseGrant::new(0, secrets(b'S', b'C'), 100, [7; 20]);
        assert!(!other.renews(&v2, SecretForm::Blake2b256));
    }

    #[test]
    fn immutable_record_layout_and_round_trip() {
        let record = LeaseGrant::new(0x0102_0304, secrets(0xaa, 0xbb), 0, [9; 20])
            .record(SecretForm::Cleartext);
        let bytes = record.to_immutable_bytes();
        assert_eq!(&bytes[..4], &[1, 2, 3, 4]);
        assert_eq!(&bytes[4..36], &[0xaa; 32]);
        assert_eq!(&bytes[36..68], &[0xbb; 32]);
        assert_eq!(&bytes[68..], &2_678_400u32.to_be_bytes());
        let back = LeaseRecord::from_immutable_bytes(&bytes);
        assert_eq!(
            back,
            LeaseRecord {
                nodeid: [0; 20],
                ..record
            }
        );
    }

    #[test]
    fn mutable_record_layout_and_round_trip() {
        let record =
            LeaseGrant::new(1, secrets(0xaa, 0xbb), 10, [9; 20]).record(SecretForm::Cleartext);
        let bytes = record.to_mutable_bytes();
        assert_eq!(&bytes[..4], &[0, 0, 0, 1]);
        assert_eq!(&bytes[4..8], &2_678_410u32.to_be_bytes());
        assert_eq!(&bytes[8..40], &[0xaa; 32]);
        assert_eq!(&bytes[40..72], &[0xbb; 32]);
        assert_eq!(&bytes[72..], &[9; 20]);
        assert_eq!(LeaseRecord::from_mutable_bytes(&bytes), record);
    }

    #[test]
    fn expiry_is_31_days_later_and_saturates() {
        assert_eq!(expiry_after(1_000), 1_000 + 2_678_400);
        assert_eq!(expiry_after(u64::from(u32::MAX)), u32::MAX);
        assert_eq!(expiry_after(u64::MAX), u32::MAX);
    }

    #[test]
    fn decide_renews_only_to_a_later_expiry() {
        let form = SecretForm::Blake2b256;
        let old = LeaseGrant::new(0, secrets(1, 2), 0, [0; 20]);
        let other = LeaseGrant::new(0, secrets(3, 4), 0, [0; 20]).record(form);
        let leases = || vec![Ok((0, other.clone())), Ok((1, old.record(form)))];
        let later = LeaseGrant::new(0, secrets(1, 9), 5, [0; 20]);
        assert_eq!(
            decide(&later, form, leases()).unwrap(),
            LeaseChange::Renew(1)
        );
        let earlier = LeaseGrant { expiry: 0, ..later };
        assert_eq!(decide(&earlier, form, leases()).unwrap(), LeaseChange::Keep);
        let stranger = LeaseGrant::new(0, secrets(5, 5), 5, [0; 20]);
        assert_eq!(decide(&stranger, form, leases()).unwrap(), LeaseChange::Add);
    }

    #[test]
    fn debug_hides_secrets() {
        let record =
            LeaseGrant::new(1, secrets(0x41, 0x42), 0, [0; 20]).record(SecretForm::Cleartext);
        let text = format!("{record:?}");
        assert!(
            !text.contains("renew") && !text.contains("65, 65"),
            "{text}"
        );
        assert!(text.contains("owner: 1"));
    }
}
