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

mod clock;
mod error;
mod store;

pub use clock::{Clock, SystemClock};
pub use error::StorageError;
pub use store::{ShareReader, Store, StoreConfig, WriteProgress, MAXIMUM_MUTABLE_SHARE_SIZE};
