//! What a side keeps from an operation's admission (or preparation) until its outcome. The
//! host hands both hooks the same operation, so the encoded operation is the key; identical
//! operations in flight at once are paired first in, first out, and cost the same.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use gbs_plugin_interface::{to_cbor, Operation};

/// Values by operation, oldest first.
#[derive(Debug)]
pub struct InFlight<T> {
    by_operation: Mutex<HashMap<Vec<u8>, VecDeque<T>>>,
}

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        Self {
            by_operation: Mutex::default(),
        }
    }
}

impl<T> InFlight<T> {
    fn locked(&self) -> MutexGuard<'_, HashMap<Vec<u8>, VecDeque<T>>> {
        self.by_operation.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `value` for `operation`.
    pub fn push(&self, operation: &Operation, value: T) {
        self.locked()
            .entry(to_cbor(operation))
            .or_default()
            .push_back(value);
    }

    /// The oldest value kept for `operation`, taken.
    pub fn pop(&self, operation: &Operation) -> Option<T> {
        let key = to_cbor(operation);
        let mut by_operation = self.locked();
        let queue = by_operation.get_mut(&key)?;
        let value = queue.pop_front();
        if queue.is_empty() {
            by_operation.remove(&key);
        }
        value
    }

    /// Drops every value `keep` says no to (values whose operations will never report back).
    pub fn retain(&self, mut keep: impl FnMut(&T) -> bool) {
        self.locked().retain(|_, queue| {
            queue.retain(|value| keep(value));
            !queue.is_empty()
        });
    }
}
