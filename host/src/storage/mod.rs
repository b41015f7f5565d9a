//! The share store: Tahoe's on-disk layout and containers, leases, uploads.
//!
//! [`Store`] is the transport-free core the server adapts to HTTP. It never sees HTTP or
//! plugins. All methods are blocking (file I/O and fsync); async callers run them on a
//! blocking thread.
//!
//! On-disk layout (shared with stock Tahoe, see `gbs-protocol.md` §6):
//!
//! ```text
//! <storage>/shares/<prefix>/<si>/<shnum>           completed immutable and all mutable shares
//! <storage>/shares/incoming/<prefix>/<si>/<shnum>  uploads in progress (wiped at start)
//! <storage>/corruption-advisories/                 one file per report
//! ```
//!
//! Inside the module: `container/` owns every byte layout (one file per container format,
//! plus lease records); `store.rs`, `immutable.rs` and `mutable.rs` implement the operations
//! on top of it without computing offsets; `upload.rs` tracks uploads in progress (memory
//! only, as in stock Tahoe); `lock.rs` serializes work per storage index; `layout.rs` names
//! the paths; `leftover.rs` removes what crashes and abandoned uploads leave;
//! `space.rs` measures free disk; `advisory.rs` writes corruption reports.
//!
//! # Crash safety
//!
//! - An immutable share becomes visible only when complete: it is written under
//!   `incoming/`, fsynced, renamed into place, and the directory fsynced before success is
//!   reported.
//! - A new mutable share, or a changed one up to 8 MiB, is prepared in a scratch file
//!   (`<shnum>.new`, a name listings ignore), fsynced and renamed over the old one, so a crash
//!   leaves the old share or the new one. Larger mutable shares are changed in place as stock
//!   Tahoe does, in an order that keeps the lease block intact (see `container/mutable.rs`),
//!   and fsynced before success is reported.
//! - Lease changes are fsynced.

mod advisory;
mod clock;
mod container;
mod error;
mod immutable;
mod inspect;
mod layout;
mod leftover;
mod lock;
mod mutable;
mod space;
mod store;
mod upload;
mod writeback;

#[cfg(test)]
mod fixture;

pub use clock::{Clock, ManualClock, SystemClock};
pub(crate) use container::read_vec_at;
pub use error::StorageError;
pub use inspect::ShareFacts;
pub use store::LeaseRenewal;
pub use store::{ShareReader, Store, StoreConfig, WriteProgress, MAXIMUM_MUTABLE_SHARE_SIZE};
