//! The typed values a plugin sees: operations, outcomes, share facts. They cross the
//! boundary as CBOR maps, so a later 1.x host may add fields without breaking older plugins.

use serde::{Deserialize, Serialize};

/// Fixed-size byte strings as CBOR byte strings (serde's default would be an array).
pub(crate) mod fixed_bytes {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        deserializer: D,
    ) -> Result<[u8; N], D::Error> {
        struct Fixed<const N: usize>;
        impl<'de, const N: usize> Visitor<'de> for Fixed<N> {
            type Value = [u8; N];

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "a byte string of length {N}")
            }

            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<[u8; N], E> {
                v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
                let mut out = [0u8; N];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }
        deserializer.deserialize_bytes(Fixed::<N>)
    }
}

/// A storage index, 16 raw bytes.
pub type StorageIndex = [u8; 16];

/// SHA-256 of a lease renew secret: identifies a lease without revealing the secret.
pub type LeaseHash = [u8; 32];

/// One GBS operation with its parsed arguments, as the server received it or as the client
/// is about to send it. Secrets never appear; leases are named by [`LeaseHash`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Operation {
    /// `GET /storage/v1/version`.
    Version,
    /// `POST /storage/v1/immutable/{si}`.
    #[serde(rename_all = "kebab-case")]
    Allocate {
        /// The storage index.
        #[serde(with = "fixed_bytes")]
        storage_index: StorageIndex,
        /// Requested share numbers.
        share_numbers: Vec<u16>,
        /// Size of each share.
        allocated_size: u64,
        /// The lease the allocation adds or renews.
        #[serde(with = "fixed_bytes")]
        lease: LeaseHash,
    },
    /// `PATCH /storage/v1/immutable/{si}/{shnum}`.
    #[serde(rename_all = "kebab-case")]
    Upload {
        /// The storage index.
        #[serde(with = "fixed_bytes")]
        storage_index: StorageIndex,
        /// The share.
        share_number: u16,
        /// First byte written.
        offset: u64,
        /// Bytes written.
        length: u64,
    },
    /// `PUT /storage/v1/immutable/{si}/{shnum}/abort`.
    #[serde(rename_all = "kebab-case")]
    Abort {
        /// The storage index.
        #[serde(with = "fixed_bytes")]
        storage_index: StorageIndex,
        /// The share.
        share_number: u16,
    },
    /// `GET /storage/v1/{immutable,mutable}/{si}/shares`.
    #[serde(rename_all = "kebab-case")]
    List {
        /// Which kind of share.
        kind: ShareKind,
        /// The storage index.
        #[serde(with = "fixed_bytes")]
        storage_index: StorageIndex,
    },
    /// `GET /storage/v1/{immutable,mutable}/{si}/{shnum}`.
    #[serde(rename_all = "kebab-case")]
    Read {
        /// Which kind of share.
        kind: ShareKind,
        /// The storage index.
        #[serde(with = "fixed_bytes")]
        storage_index: StorageIndex,
        /// The share.
        share_number: u16,
        /// Requested `(offset, length)`, or the whole share.
        range: Option<(u64, u64)>,
    },
    /// `POST /storage/v1/{immutable,mutable}/{si}/{shnum}/corrupt`.
    #[serde(rename_all = "kebab-case")]
    AdviseCorrupt {
        /// Which kind of share.
        kind: ShareKind,
        /// The storage index.
        #[serde(with = "fixed_bytes")]
        storage_index: StorageIndex,
        /// The share.
        share_number: u16,
    },
    /// `PUT /storage/v1/lease/{si}`.
    #[serde(rename_all = "kebab-case")]
    Lease {
        /// The storage index.
        #[serde(with = "fixed_bytes")]
        storage_index: StorageIndex,
        /// The lease added or renewed.
        #[serde(with = "fixed_bytes")]
        lease: LeaseHash,
    },
    /// `POST /storage/v1/mutable/{si}/read-test-write`.
    #[serde(rename_all = "kebab-case")]
    ReadTestWrite {
        /// The storage index.
        #[serde(with = "fixed_bytes")]
        storage_index: StorageIndex,
        /// What each named share gets.
        shares: Vec<MutableShareChange>,
        /// Number of read vectors.
        read_vectors: u32,
        /// The lease added or renewed on written shares.
        #[serde(with = "fixed_bytes")]
        lease: LeaseHash,
    },
}

/// The changes read-test-write asks for on one share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MutableShareChange {
    /// The share.
    pub share_number: u16,
    /// Number of test vectors.
    pub tests: u32,
    /// Total bytes in the write vectors.
    pub write_bytes: u64,
    /// One past the last byte written, or 0 without writes.
    pub write_end: u64,
    /// Requested new length (`Some(0)` deletes the share).
    pub new_length: Option<u64>,
}

/// Immutable or mutable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShareKind {
    /// Write-once shares.
    Immutable,
    /// Shares changed by read-test-write.
    Mutable,
}

/// What an operation really did, told to plugins after success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Outcome {
    /// Nothing worth reporting beyond success.
    Done,
    /// Allocation result.
    #[serde(rename_all = "kebab-case")]
    Allocated {
        /// Shares newly allocated to this request.
        allocated: Vec<u16>,
        /// Completed shares the server already had.
        already_have: Vec<u16>,
    },
    /// Upload chunk result.
    #[serde(rename_all = "kebab-case")]
    Uploaded {
        /// Bytes received.
        bytes: u64,
        /// Whether this chunk completed the share.
        complete: bool,
    },
    /// Read result.
    #[serde(rename_all = "kebab-case")]
    Read {
        /// Bytes sent.
        bytes: u64,
    },
    /// Read-test-write result.
    #[serde(rename_all = "kebab-case")]
    ReadTestWrite {
        /// Whether the tests passed and the writes were applied.
        success: bool,
    },
}

/// One share of a storage index, as [`crate::Host::shares`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ShareInfo {
    /// Which kind.
    pub kind: ShareKind,
    /// The share number.
    pub share_number: u16,
    /// Size of its data in bytes.
    pub size: u64,
    /// Latest lease expiry, Unix seconds; 0 without leases.
    pub lease_expiry: u64,
}

/// A request to add or renew a lease on some shares of a storage index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LeaseRequest {
    /// The storage index.
    #[serde(with = "fixed_bytes")]
    pub storage_index: StorageIndex,
    /// The shares to lease; empty means all.
    pub share_numbers: Vec<u16>,
    /// The lease renew secret.
    #[serde(with = "fixed_bytes")]
    pub renew_secret: [u8; 32],
    /// The lease cancel secret.
    #[serde(with = "fixed_bytes")]
    pub cancel_secret: [u8; 32],
}

/// Encodes a value as CBOR.
pub fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail, and every type here serializes.
    let _ = ciborium::into_writer(value, &mut out);
    out
}

/// Decodes a value from CBOR.
pub fn from_cbor<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    ciborium::from_reader(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_round_trip_with_byte_strings() {
        let op = Operation::Allocate {
            storage_index: [7; 16],
            share_numbers: vec![0, 3],
            allocated_size: 1000,
            lease: [9; 32],
        };
        let bytes = to_cbor(&op);
        // The storage index is a 16-byte CBOR byte string (0x50), not an array.
        assert!(bytes.windows(17).any(|w| w[0] == 0x50 && w[1..] == [7; 16]));
        assert_eq!(from_cbor::<Operation>(&bytes).unwrap(), op);
        assert!(from_cbor::<Operation>(b"\x01").is_err());
    }

    #[test]
    fn outcomes_round_trip() {
        let outcome = Outcome::Allocated {
            allocated: vec![1],
            already_have: vec![2],
        };
        assert_eq!(from_cbor::<Outcome>(&to_cbor(&outcome)).unwrap(), outcome);
    }
}
