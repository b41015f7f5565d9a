//! Settlements the store could not take when their operations succeeded (a shared database
//! away for a while), kept and retried until it takes them. Without this, a pass whose
//! operation succeeded during an outage would stay merely reserved, lapse, and be spendable
//! again.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use super::{LedgerError, SpentPassStore};

/// The most passes waiting; beyond it the oldest settlements are given up (and said so).
pub const MAX_WAITING_PASSES: usize = 1_000_000;

/// One operation's passes to settle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// Passes the operation used.
    pub spent: Vec<[u8; 64]>,
    /// Passes it did not need.
    pub released: Vec<[u8; 64]>,
    /// When it succeeded (Unix seconds).
    pub at: u64,
}

impl Settlement {
    fn passes(&self) -> usize {
        self.spent.len() + self.released.len()
    }
}

/// Settlements waiting for the store, oldest first.
#[derive(Debug, Default)]
pub struct Backlog {
    waiting: Mutex<VecDeque<Settlement>>,
}

/// What [`Backlog::settle`] came to when the store did not take it.
#[derive(Debug)]
pub struct Deferred {
    /// The store's error.
    pub error: LedgerError,
    /// Passes now waiting.
    pub waiting: usize,
    /// Passes of older settlements given up to stay within [`MAX_WAITING_PASSES`].
    pub dropped: usize,
}

impl Backlog {
    fn waiting(&self) -> MutexGuard<'_, VecDeque<Settlement>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Passes waiting.
    pub fn len(&self) -> usize {
        self.waiting().iter().map(Settlement::passes).sum()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting().is_empty()
    }

    /// Settles `settlement` in `store` (after whatever waits), or keeps it for
    /// [`flush`](Self::flush).
    pub fn settle(
        &self,
        store: &dyn SpentPassStore,
        settlement: Settlement,
    ) -> Result<(), Deferred> {
        let earlier = self.flush(store);
        let error = match earlier
            .and_then(|()| store.settle(&settlement.spent, &settlement.released, settlement.at))
        {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let mut waiting = self.waiting();
        waiting.push_back(settlement);
        let mut total: usize = waiting.iter().map(Settlement::passes).sum();
        let mut dropped = 0;
        while total > MAX_WAITING_PASSES && waiting.len() > 1 {
            let oldest = waiting.pop_front().map_or(0, |s| s.passes());
            total -= oldest;
            dropped += oldest;
        }
        Err(Deferred {
            error,
            waiting: total,
            dropped,
        })
    }

    /// Settles what waits, oldest first, until the store fails; the rest keeps waiting.
    pub fn flush(&self, store: &dyn SpentPassStore) -> Result<(), LedgerError> {
        let taken = std::mem::take(&mut *self.waiting());
        let mut taken = taken.into_iter();
        while let Some(next) = taken.next() {
            if let Err(error) = store.settle(&next.spent, &next.released, next.at) {
                // Back in front of anything that arrived meanwhile.
                let mut waiting = self.waiting();
                let newer = std::mem::take(&mut *waiting);
                waiting.extend(std::iter::once(next).chain(taken).chain(newer));
                return Err(error);
            }
        }
        Ok(())
    }
}
