//! What storage costs in passes (plugin-model §2.4).
//!
//! One pass buys [`PassValue`] bytes of share data (1 MiB unless configured) for one
//! [`LEASE_PERIOD`]. Prices are summed per share: a share of `s` bytes costs
//! `ceil(s / pass_value)` passes. (ZKAPAuthorizer 2022.8.21 takes the ceiling of the sum of
//! the shares in one call instead; a server usually receives one share of a file per call,
//! and then both give the same price.)

use std::num::NonZeroU64;
use std::time::Duration;

/// The default bytes one pass buys for one lease period (ZKAPAuthorizer's `BYTES_PER_PASS`).
pub const BYTES_PER_PASS: u64 = 1024 * 1024;

/// How long a lease bought with passes lasts: Tahoe's 31 days.
pub const LEASE_PERIOD: Duration = Duration::from_secs(31 * 24 * 60 * 60);

/// Bytes of share data one pass buys for one lease period (`pass-value`); never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassValue(NonZeroU64);

impl Default for PassValue {
    fn default() -> Self {
        Self(NonZeroU64::MIN.saturating_add(BYTES_PER_PASS - 1))
    }
}

impl PassValue {
    /// `bytes` per pass; `None` for zero.
    pub fn new(bytes: u64) -> Option<Self> {
        NonZeroU64::new(bytes).map(Self)
    }

    /// The value in bytes.
    pub fn bytes(self) -> u64 {
        self.0.get()
    }

    /// Passes for one share of `size` bytes.
    pub fn passes_for(self, size: u64) -> u64 {
        size.div_ceil(self.bytes())
    }

    /// Passes for shares of these sizes, summed per share.
    pub fn passes_for_shares(self, sizes: impl IntoIterator<Item = u64>) -> u64 {
        sizes
            .into_iter()
            .map(|size| self.passes_for(size))
            .fold(0, u64::saturating_add)
    }

    /// An allocate of `share_count` shares of `allocated_size` bytes. The server asks for
    /// this many passes for every share requested, and spends only those of the shares it
    /// did not already hold: [`PassValue::allocate_spent`].
    pub fn allocate(self, share_count: u64, allocated_size: u64) -> u64 {
        share_count.saturating_mul(self.passes_for(allocated_size))
    }

    /// The passes an allocate spends: those of the newly allocated shares only.
    pub fn allocate_spent(self, newly_allocated: u64, allocated_size: u64) -> u64 {
        self.allocate(newly_allocated, allocated_size)
    }

    /// A lease renewal: every share the server holds for the storage index.
    pub fn add_lease(self, held_share_sizes: impl IntoIterator<Item = u64>) -> u64 {
        self.passes_for_shares(held_share_sizes)
    }

    /// A mutable write. `current` gives, for each share written, its size and whether it
    /// has a lease that has not expired; `writes` gives, for each share written, the length
    /// the write implies (the end of its furthest data vector). A share without an active
    /// lease counts as empty, so the write pays for all of it; reads and tests cost nothing.
    pub fn mutable_write(
        self,
        current: impl Fn(u16) -> Option<MutableShare>,
        writes: impl IntoIterator<Item = (u16, u64)>,
    ) -> u64 {
        let mut price = 0u64;
        for (share, implied) in writes {
            let paid_for = current(share)
                .filter(|s| s.lease_active)
                .map_or(0, |s| s.size);
            let new_size = paid_for.max(implied);
            price = price.saturating_add(self.passes_for(new_size) - self.passes_for(paid_for));
        }
        price
    }

    /// The client's estimate for storing a file of `file_size` bytes with `k`-of-`n`
    /// erasure coding (the HTTP `calculate-price` resource): `n` shares of
    /// `ceil(file_size / k)` bytes. The shares really stored are a little larger (hash
    /// trees), so this is an estimate.
    pub fn estimate_file(self, needed: NonZeroU64, total: u64, file_size: u64) -> u64 {
        total.saturating_mul(self.passes_for(file_size.div_ceil(needed.get())))
    }
}

/// What a mutable write needs to know of a share that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MutableShare {
    /// Its data length in bytes.
    pub size: u64,
    /// Whether it has a lease that has not expired.
    pub lease_active: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn k(n: u64) -> NonZeroU64 {
        NonZeroU64::new(n).unwrap()
    }

    #[test]
    fn single_shares_cost_one_pass_per_started_mebibyte() {
        let value = PassValue::default();
        assert_eq!(value.bytes(), MIB);
        assert_eq!(value.passes_for(100 * 1024), 1);
        assert_eq!(value.passes_for(MIB), 1);
        assert_eq!(value.passes_for(MIB + MIB / 2), 2);
        assert_eq!(value.passes_for(10 * MIB), 10);
        assert_eq!(value.passes_for(0), 0);
        assert_eq!(PassValue::new(0), None);
    }

    #[test]
    fn files_cost_what_plugin_model_works_out() {
        let value = PassValue::default();
        // 10 MiB at 3-of-10: shares of 3,495,254 bytes, 4 passes each, 40 in all.
        assert_eq!((10 * MIB).div_ceil(3), 3_495_254);
        assert_eq!(value.estimate_file(k(3), 10, 10 * MIB), 40);
        assert_eq!(value.allocate(10, 3_495_254), 40);
        // 1 GiB at 3-of-10: 342 passes a share, 3,420 in all.
        assert_eq!(value.passes_for((1024 * MIB).div_ceil(3)), 342);
        assert_eq!(value.estimate_file(k(3), 10, 1024 * MIB), 3420);
    }

    #[test]
    fn an_allocate_spends_only_for_new_shares() {
        let value = PassValue::default();
        assert_eq!(value.allocate(4, 3 * MIB), 12);
        assert_eq!(value.allocate_spent(1, 3 * MIB), 3);
        assert_eq!(value.allocate_spent(0, 3 * MIB), 0);
    }

    #[test]
    fn a_lease_renewal_pays_for_every_held_share() {
        let value = PassValue::default();
        assert_eq!(value.add_lease([MIB, MIB + 1, 10]), 1 + 2 + 1);
        assert_eq!(value.add_lease([]), 0);
    }

    #[test]
    fn mutable_writes_pay_for_growth_or_for_everything_without_a_lease() {
        let value = PassValue::default();
        let share = |lease_active| {
            move |n: u16| {
                (n == 0).then_some(MutableShare {
                    size: 500_000,
                    lease_active,
                })
            }
        };
        // 500,000 -> 1,200,000 bytes: 1 pass with an active lease, 2 without.
        assert_eq!(value.mutable_write(share(true), [(0, 1_200_000)]), 1);
        assert_eq!(value.mutable_write(share(false), [(0, 1_200_000)]), 2);
        // Writing within what is paid for is free; a new share pays for all of it.
        assert_eq!(value.mutable_write(share(true), [(0, 400_000)]), 0);
        assert_eq!(value.mutable_write(share(true), [(1, 3 * MIB)]), 3);
        // Reads and tests (no writes) cost nothing.
        assert_eq!(value.mutable_write(share(false), []), 0);
    }

    #[test]
    fn a_configured_pass_value_changes_every_price() {
        let value = PassValue::new(1000).unwrap();
        assert_eq!(value.passes_for(1001), 2);
        assert_eq!(value.allocate(3, 2500), 9);
    }
}
