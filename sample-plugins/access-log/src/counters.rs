//! The bookkeeping: what each committed operation adds to the counters. Pure functions over
//! plain values, so the rules are tested without a host.

use std::collections::BTreeMap;

use gbs_plugin_interface::{Operation, Outcome, ShareKind};
use serde::{Deserialize, Serialize};

/// Counter names of the operation kinds this plugin knows, in
/// [`OperationKind`](gbs_plugin_interface::OperationKind) order. Every one appears in
/// [`Counters::operations`], zero or not, so readers see a fixed shape.
pub const OPERATION_NAMES: [&str; 12] = [
    "version",
    "allocate",
    "upload",
    "abort",
    "list-immutable",
    "read-immutable",
    "advise-corrupt-immutable",
    "lease",
    "read-test-write",
    "read-mutable",
    "list-mutable",
    "advise-corrupt-mutable",
];

/// Counts of committed (successful) operations and the bytes they moved.
///
/// This is what `GET /storage/v1/plugin/access-log/counters` answers (as a CBOR map with
/// kebab-case keys) and what `<state_dir>/counters.cbor` holds. Decode either with
/// [`gbs_plugin_interface::from_cbor`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub struct Counters {
    /// Committed operations per kind, keyed by the names in [`OPERATION_NAMES`].
    #[serde(default)]
    pub operations: BTreeMap<String, u64>,
    /// Bytes received by immutable share uploads.
    #[serde(default)]
    pub uploaded_bytes: u64,
    /// Bytes sent by immutable and mutable share reads.
    #[serde(default)]
    pub read_bytes: u64,
    /// Bytes newly allocated: share size times the shares an allocation really created
    /// (shares the server already had are not counted).
    #[serde(default)]
    pub allocated_bytes: u64,
    /// Bytes in the write vectors of read-test-writes whose tests passed.
    #[serde(default)]
    pub mutable_written_bytes: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            operations: OPERATION_NAMES
                .iter()
                .map(|name| ((*name).to_owned(), 0))
                .collect(),
            uploaded_bytes: 0,
            read_bytes: 0,
            allocated_bytes: 0,
            mutable_written_bytes: 0,
        }
    }
}

/// Which byte counter a [`Delta`] adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteCounter {
    Uploaded,
    Read,
    Allocated,
    MutableWritten,
}

impl ByteCounter {
    /// The counter's name in the host's metrics.
    pub(crate) fn metric(self) -> &'static str {
        match self {
            Self::Uploaded => "bytes.uploaded",
            Self::Read => "bytes.read",
            Self::Allocated => "bytes.allocated",
            Self::MutableWritten => "bytes.mutable-written",
        }
    }
}

/// What one committed operation adds: one to its kind, and maybe some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delta {
    pub(crate) operation: &'static str,
    pub(crate) bytes: Option<(ByteCounter, u64)>,
}

/// The counter name of an operation's kind.
pub(crate) fn operation_name(operation: &Operation) -> &'static str {
    let by_kind = |kind: &ShareKind, immutable, mutable| match kind {
        ShareKind::Immutable => immutable,
        ShareKind::Mutable => mutable,
    };
    match operation {
        Operation::Version => "version",
        Operation::Allocate { .. } => "allocate",
        Operation::Upload { .. } => "upload",
        Operation::Abort { .. } => "abort",
        Operation::List { kind, .. } => by_kind(kind, "list-immutable", "list-mutable"),
        Operation::Read { kind, .. } => by_kind(kind, "read-immutable", "read-mutable"),
        Operation::AdviseCorrupt { kind, .. } => {
            by_kind(kind, "advise-corrupt-immutable", "advise-corrupt-mutable")
        }
        Operation::Lease { .. } => "lease",
        Operation::ReadTestWrite { .. } => "read-test-write",
        // Operations of a newer interface than this plugin was built against.
        _ => "other",
    }
}

/// What a committed operation with this outcome adds to the counters.
pub(crate) fn delta(operation: &Operation, outcome: &Outcome) -> Delta {
    let bytes = match (operation, outcome) {
        (Operation::Upload { .. }, Outcome::Uploaded { bytes, .. }) => {
            Some((ByteCounter::Uploaded, *bytes))
        }
        (Operation::Read { .. }, Outcome::Read { bytes }) => Some((ByteCounter::Read, *bytes)),
        (Operation::Allocate { allocated_size, .. }, Outcome::Allocated { allocated, .. }) => {
            let shares = u64::try_from(allocated.len()).unwrap_or(u64::MAX);
            Some((
                ByteCounter::Allocated,
                allocated_size.saturating_mul(shares),
            ))
        }
        (Operation::ReadTestWrite { shares, .. }, Outcome::ReadTestWrite { success: true }) => {
            let written = shares
                .iter()
                .fold(0u64, |sum, share| sum.saturating_add(share.write_bytes));
            Some((ByteCounter::MutableWritten, written))
        }
        _ => None,
    };
    Delta {
        operation: operation_name(operation),
        bytes,
    }
}

impl Counters {
    /// Adds one committed operation. Counters saturate instead of wrapping.
    pub(crate) fn add(&mut self, delta: &Delta) {
        let count = self
            .operations
            .entry(delta.operation.to_owned())
            .or_default();
        *count = count.saturating_add(1);
        if let Some((counter, bytes)) = delta.bytes {
            let slot = match counter {
                ByteCounter::Uploaded => &mut self.uploaded_bytes,
                ByteCounter::Read => &mut self.read_bytes,
                ByteCounter::Allocated => &mut self.allocated_bytes,
                ByteCounter::MutableWritten => &mut self.mutable_written_bytes,
            };
            *slot = slot.saturating_add(bytes);
        }
    }

    /// Counters saved by an earlier run, on top of a fresh set, so every known kind is
    /// present even if the file predates it.
    pub(crate) fn restored(saved: Counters) -> Counters {
        let mut counters = Counters::default();
        counters.operations.extend(saved.operations);
        Counters {
            uploaded_bytes: saved.uploaded_bytes,
            read_bytes: saved.read_bytes,
            allocated_bytes: saved.allocated_bytes,
            mutable_written_bytes: saved.mutable_written_bytes,
            ..counters
        }
    }

    /// The line the background service logs: the total, the non-zero kinds, the bytes.
    pub(crate) fn summary(&self) -> String {
        let total = self
            .operations
            .values()
            .fold(0u64, |sum, n| sum.saturating_add(*n));
        let kinds: Vec<String> = self
            .operations
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        let kinds = if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        };
        format!(
            "{total} operations{kinds}; bytes: {} uploaded, {} read, {} allocated, {} mutable written",
            self.uploaded_bytes, self.read_bytes, self.allocated_bytes, self.mutable_written_bytes
        )
    }
}

#[cfg(test)]
mod tests {
    use gbs_plugin_interface::ciborium::Value;
    use gbs_plugin_interface::{from_cbor, to_cbor, MutableShareChange};

    use super::*;

    fn upload(length: u64) -> Operation {
        Operation::Upload {
            storage_index: [1; 16],
            share_number: 0,
            offset: 0,
            length,
        }
    }

    fn allocate(size: u64, shares: &[u16]) -> Operation {
        Operation::Allocate {
            storage_index: [1; 16],
            share_numbers: shares.to_vec(),
            allocated_size: size,
            lease: [2; 32],
        }
    }

    fn read_test_write(write_bytes: &[u64]) -> Operation {
        Operation::ReadTestWrite {
            storage_index: [1; 16],
            shares: write_bytes
                .iter()
                .zip(0u16..)
                .map(|(bytes, share_number)| MutableShareChange {
                    share_number,
                    tests: 0,
                    write_bytes: *bytes,
                    write_end: *bytes,
                    new_length: None,
                })
                .collect(),
            read_vectors: 0,
            lease: [2; 32],
        }
    }

    #[test]
    fn fresh_counters_list_every_kind_at_zero() {
        let counters = Counters::default();
        assert_eq!(counters.operations.len(), OPERATION_NAMES.len());
        assert!(counters.operations.values().all(|n| *n == 0));
        assert_eq!(counters.summary().split(';').next(), Some("0 operations"));
    }

    #[test]
    fn mutable_and_immutable_reads_count_apart() {
        let read = |kind| Operation::Read {
            kind,
            storage_index: [0; 16],
            share_number: 1,
            range: None,
        };
        assert_eq!(
            operation_name(&read(ShareKind::Immutable)),
            "read-immutable"
        );
        assert_eq!(operation_name(&read(ShareKind::Mutable)), "read-mutable");
    }

    #[test]
    fn upload_counts_the_bytes_received_not_the_bytes_asked() {
        // The operation claims 1000 bytes; the outcome says 600 arrived.
        let d = delta(
            &upload(1000),
            &Outcome::Uploaded {
                bytes: 600,
                complete: false,
            },
        );
        assert_eq!(d.operation, "upload");
        assert_eq!(d.bytes, Some((ByteCounter::Uploaded, 600)));
    }

    #[test]
    fn allocate_counts_only_newly_allocated_shares() {
        // Three shares asked for, one already on the server: two are charged.
        let d = delta(
            &allocate(100, &[0, 1, 2]),
            &Outcome::Allocated {
                allocated: vec![0, 2],
                already_have: vec![1],
            },
        );
        assert_eq!(d.bytes, Some((ByteCounter::Allocated, 200)));
    }

    #[test]
    fn allocate_of_huge_size_saturates_instead_of_overflowing() {
        let d = delta(
            &allocate(u64::MAX, &[0, 1]),
            &Outcome::Allocated {
                allocated: vec![0, 1],
                already_have: vec![],
            },
        );
        assert_eq!(d.bytes, Some((ByteCounter::Allocated, u64::MAX)));
    }

    #[test]
    fn failed_read_test_write_writes_no_bytes() {
        let op = read_test_write(&[10, 20]);
        let passed = delta(&op, &Outcome::ReadTestWrite { success: true });
        let failed = delta(&op, &Outcome::ReadTestWrite { success: false });
        assert_eq!(passed.bytes, Some((ByteCounter::MutableWritten, 30)));
        assert_eq!(failed.bytes, None);
        assert_eq!(failed.operation, "read-test-write");
    }

    #[test]
    fn outcome_of_another_kind_adds_no_bytes() {
        // An upload with a read outcome is a host bug; it must not count as upload bytes.
        let d = delta(&upload(5), &Outcome::Read { bytes: 5 });
        assert_eq!(d.bytes, None);
    }

    #[test]
    fn add_accumulates_and_saturates() {
        let mut counters = Counters::default();
        let big = Delta {
            operation: "read-immutable",
            bytes: Some((ByteCounter::Read, u64::MAX - 1)),
        };
        counters.add(&big);
        counters.add(&big);
        assert_eq!(counters.operations.get("read-immutable"), Some(&2));
        assert_eq!(counters.read_bytes, u64::MAX);
        assert_eq!(counters.uploaded_bytes, 0);
    }

    #[test]
    fn summary_names_non_zero_kinds_and_bytes() {
        let mut counters = Counters::default();
        counters.add(&delta(
            &upload(7),
            &Outcome::Uploaded {
                bytes: 7,
                complete: true,
            },
        ));
        counters.add(&delta(&Operation::Version, &Outcome::Done));
        let line = counters.summary();
        assert!(
            line.starts_with("2 operations (upload 1, version 1); bytes: 7 uploaded"),
            "{line}"
        );
        assert!(!line.contains("lease"), "{line}");
    }

    #[test]
    fn counters_round_trip_through_cbor_and_restore_missing_kinds() {
        let mut saved = Counters::default();
        saved.operations.clear();
        saved.operations.insert("upload".into(), 4);
        saved.uploaded_bytes = 99;
        let bytes = to_cbor(&saved);
        let decoded: Counters = from_cbor(&bytes).unwrap();
        assert_eq!(decoded, saved);
        let restored = Counters::restored(decoded);
        assert_eq!(restored.operations.get("upload"), Some(&4));
        assert_eq!(restored.operations.get("lease"), Some(&0));
        assert_eq!(restored.uploaded_bytes, 99);
    }

    #[test]
    fn cbor_keys_are_kebab_case() {
        let value: Value = from_cbor(&to_cbor(&Counters::default())).unwrap();
        let keys: Vec<String> = value
            .as_map()
            .unwrap()
            .iter()
            .filter_map(|(k, _)| k.as_text().map(str::to_owned))
            .collect();
        assert!(keys.contains(&"uploaded-bytes".to_owned()), "{keys:?}");
        assert!(keys.contains(&"operations".to_owned()), "{keys:?}");
    }
}
