//! The memory request bodies and streamed reads may hold, shared by all requests (see
//! [`Limits`]).
//!
//! Budgets count KiB, so that a tokio semaphore's `u32` permits cover any size.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::limits::Limits;

/// Memory held on behalf of a request; given back when dropped.
pub(crate) type Held = OwnedSemaphorePermit;

/// The memory budgets of a server.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    uploads: Budget,
    /// Upload buffers given back, reused so that memory is not allocated and freed per
    /// piece (freed pieces scattered over the allocator's per-thread arenas stay resident).
    spare_pieces: Arc<Mutex<Vec<BytesMut>>>,
    mutable_writes: Budget,
    downloads: Budget,
    /// The longest a read-test-write waits for room before it is answered 503.
    mutable_wait: Duration,
}

impl MemoryBudget {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            uploads: Budget::new(limits.upload_buffer),
            spare_pieces: Arc::default(),
            mutable_writes: Budget::new(limits.mutable_write_buffer),
            downloads: Budget::new(limits.download_buffer),
            // Well inside the idle timeout, which would otherwise close the waiting
            // connection without an answer.
            mutable_wait: (limits.idle_timeout / 2).min(Duration::from_secs(30)),
        }
    }

    /// A buffer of `bytes` for upload data, if the budget has room now. Without it, an
    /// upload writes each piece of its body as it arrives.
    pub(crate) fn upload_buffer(&self, bytes: usize) -> Option<PieceBuffer> {
        let held = self.uploads.try_hold(bytes)?;
        let spare = self
            .spare_pieces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut buffer = spare.unwrap_or_default();
        buffer.clear();
        buffer.reserve(bytes);
        Some(PieceBuffer {
            buffer: Some(buffer),
            spares: self.spare_pieces.clone(),
            _held: held,
        })
    }

    /// Room for a streamed read's piece of `bytes`, if the budget has it now.
    pub(crate) fn download_piece(&self, bytes: usize) -> Option<Held> {
        self.downloads.try_hold(bytes)
    }

    /// Room for a read-test-write body of `body_len` bytes, which is held twice while it
    /// is decoded; all of the budget for a body too big to share it. Waits in line for
    /// room; `None` when none came in time.
    pub(crate) async fn mutable_write(&self, body_len: usize) -> Option<Held> {
        let wanted = body_len.saturating_mul(2);
        tokio::time::timeout(self.mutable_wait, self.mutable_writes.hold(wanted))
            .await
            .ok()
            .flatten()
    }
}

/// An upload buffer within the budget; dropping it gives the room (and the buffer) back.
#[derive(Debug)]
pub(crate) struct PieceBuffer {
    buffer: Option<BytesMut>,
    spares: Arc<Mutex<Vec<BytesMut>>>,
    _held: Held,
}

impl PieceBuffer {
    /// The buffer, empty, to fill; hand it back with [`PieceBuffer::give_back`].
    pub(crate) fn take(&mut self) -> BytesMut {
        self.buffer.take().unwrap_or_default()
    }

    /// Returns the buffer taken, for reuse once this request is done.
    pub(crate) fn give_back(&mut self, mut buffer: BytesMut) {
        buffer.clear();
        self.buffer = Some(buffer);
    }
}

impl Drop for PieceBuffer {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            // The budget bounds how many exist at once, so the spares stay within it too.
            self.spares
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(buffer);
        }
    }
}

/// One budget of bytes.
#[derive(Debug)]
struct Budget {
    semaphore: Arc<Semaphore>,
    total_kib: u32,
}

impl Budget {
    fn new(bytes: usize) -> Self {
        let total_kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX))
            .max(1);
        Self {
            semaphore: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// `bytes` in KiB, at least 1 and at most the whole budget.
    fn kib(&self, bytes: usize) -> u32 {
        u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_kib)
    }

    fn try_hold(&self, bytes: usize) -> Option<Held> {
        self.semaphore
            .clone()
            .try_acquire_many_owned(self.kib(bytes))
            .ok()
    }

    /// Waits for room; `None` only if the semaphore were closed, which it never is.
    async fn hold(&self, bytes: usize) -> Option<Held> {
        self.semaphore
            .clone()
            .acquire_many_owned(self.kib(bytes))
            .await
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(upload: usize, mutable: usize) -> Limits {
        Limits {
            upload_buffer: upload,
            mutable_write_buffer: mutable,
            idle_timeout: Duration::from_millis(200),
            ..Limits::default()
        }
    }

    #[test]
    fn upload_buffers_are_reused() {
        let budget = MemoryBudget::new(&limits(3 << 20, 64 << 20));
        let mut first = budget.upload_buffer(1 << 20).expect("room");
        let mut buffer = first.take();
        let address = buffer.as_ptr();
        buffer.extend_from_slice(b"data");
        first.give_back(buffer);
        drop(first);
        let mut second = budget.upload_buffer(1 << 20).expect("room");
        let reused = second.take();
        assert!(reused.is_empty() && reused.capacity() >= 1 << 20);
        assert_eq!(reused.as_ptr(), address, "the same allocation");
    }

    #[test]
    fn upload_buffers_stop_at_the_budget_and_come_back() {
        let budget = MemoryBudget::new(&limits(3 << 20, 64 << 20));
        let held: Vec<_> = (0..3)
            .map(|_| budget.upload_buffer(1 << 20).expect("room"))
            .collect();
        assert!(budget.upload_buffer(1 << 20).is_none(), "a fourth MiB");
        drop(held);
        assert!(budget.upload_buffer(1 << 20).is_some());
    }

    #[tokio::test]
    async fn mutable_writes_queue_and_give_up_in_time() {
        let budget = MemoryBudget::new(&limits(1 << 20, 64 << 20));
        let first = budget
            .mutable_write(20 << 20)
            .await
            .expect("room for 40 MiB");
        assert!(
            budget.mutable_write(20 << 20).await.is_none(),
            "a second 40 MiB does not fit beside the first"
        );
        let small = budget.mutable_write(1 << 20).await.expect("2 MiB fit");
        drop((first, small));
        // A body bigger than the budget takes all of it and so runs alone.
        let huge = budget.mutable_write(100 << 20).await.expect("alone");
        assert!(budget.mutable_write(1).await.is_none());
        drop(huge);
    }
}
