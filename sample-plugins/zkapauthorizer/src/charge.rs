//! What an operation costs and what it used, computed the same way on both sides: the
//! client prices before it pays, the server before it admits, and both settle the same
//! number of passes afterwards.

use std::future::Future;

use gbs_plugin_interface::{Operation, Outcome, ShareInfo, ShareKind};

use crate::pass;
use crate::pricing::{MutableShare, PassValue};

/// The price of one chargeable operation, and what its passes must sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The operation as passes name it.
    pub operation: pass::Operation,
    /// The storage index the passes are bound to.
    pub storage_index: [u8; 16],
    /// Passes it costs (possibly 0).
    pub required: u64,
}

impl Charge {
    /// The charge for `operation` at `value`, or `None` for operations that are free by their
    /// kind (reads, listings, test-and-read calls without writes). `shares` answers the
    /// shares the server holds for a storage index; it is asked only for lease renewals and
    /// writes. `now` is Unix seconds, to tell live leases from expired ones.
    pub async fn of<E, F>(
        value: PassValue,
        operation: &Operation,
        now: u64,
        shares: impl FnOnce([u8; 16]) -> F,
    ) -> Result<Option<Self>, E>
    where
        F: Future<Output = Result<Vec<ShareInfo>, E>>,
    {
        let (operation, storage_index, required) = match operation {
            Operation::Allocate {
                storage_index,
                share_numbers,
                allocated_size,
                ..
            } => (
                pass::Operation::AllocateBuckets,
                *storage_index,
                value.allocate(share_numbers.len() as u64, *allocated_size),
            ),
            Operation::Lease { storage_index, .. } => {
                let held = shares(*storage_index).await?;
                (
                    pass::Operation::AddLease,
                    *storage_index,
                    value.add_lease(held.iter().map(|s| s.size)),
                )
            }
            Operation::ReadTestWrite {
                storage_index,
                shares: changes,
                ..
            } => {
                let writes: Vec<(u16, u64)> = changes
                    .iter()
                    .filter(|c| c.write_bytes > 0)
                    .map(|c| (c.share_number, c.write_end))
                    .collect();
                if writes.is_empty() {
                    return Ok(None);
                }
                let held = shares(*storage_index).await?;
                let current = |n: u16| {
                    held.iter()
                        .find(|s| s.kind == ShareKind::Mutable && s.share_number == n)
                        .map(|s| MutableShare {
                            size: s.size,
                            lease_active: s.lease_expiry > now,
                        })
                };
                (
                    pass::Operation::SlotTestvAndReadvAndWritev,
                    *storage_index,
                    value.mutable_write(current, writes),
                )
            }
            _ => return Ok(None),
        };
        Ok(Some(Self {
            operation,
            storage_index,
            required,
        }))
    }

    /// The message its passes sign.
    pub fn message(&self) -> String {
        pass::message(self.operation, &self.storage_index)
    }
}

/// How many of the `paid` passes an operation that succeeded with `outcome` used: for an
/// allocation, those for the shares it really allocated; none for a mutable write whose
/// tests failed; all of them otherwise.
pub fn used(value: PassValue, operation: &Operation, outcome: &Outcome, paid: usize) -> usize {
    let used = match (operation, outcome) {
        (Operation::Allocate { allocated_size, .. }, Outcome::Allocated { allocated, .. }) => {
            let n = value.allocate_spent(allocated.len() as u64, *allocated_size);
            usize::try_from(n).unwrap_or(usize::MAX)
        }
        (_, Outcome::ReadTestWrite { success: false }) => 0,
        _ => paid,
    };
    used.min(paid)
}
