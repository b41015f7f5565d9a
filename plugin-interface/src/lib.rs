//! The contract between a `gbs` host and its storage plugins, and the SDK to write them.
//!
//! A plugin library is a `cdylib` that depends on this crate only. It implements
//! [`Plugin`] for each named plugin it provides, with a [`ServerPlugin`] and/or
//! [`ClientPlugin`] side, and exports them with [`export_plugins!`]. The host loads the
//! library, checks its ABI before running any of its code, and calls the hooks for every
//! storage operation. The semantics of every hook follow the example below.
//!
//! # Building a plugin
//!
//! A plugin is a crate of its own, built as a `cdylib`, that depends on this crate alone
//! (it re-exports [`ciborium`], the CBOR library its API uses):
//!
//! ```toml
//! [package]
//! name = "size-limit"
//! version = "1.0.0"
//! edition = "2021"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! # The crate in a checkout of the gbs repository (or `git = "<its URL>"` instead of `path`).
//! gbs-plugin-interface = { path = "../gbs-plugins/plugin-interface", version = "1" }
//!
//! # Keep the default panic = "unwind": the host refuses libraries built to abort.
//! ```
//!
//! `cargo build --release` leaves `target/release/libsize_limit.so`; `gbs plugin check` on it
//! says whether a node can load it, and `tahoe.cfg` names it (see the Plugins section of the
//! repository's README). Hooks can be unit-tested without a node: see [`testing`].
//!
//! A complete plugin that refuses uploads larger than a configured size:
//!
//! ```
//! use gbs_plugin_interface::{
//!     export_plugins, Host, Interests, Operation, OperationKind, Plugin, PluginError,
//!     Rejection, Roles, ServerHooks, ServerPlugin, Settings, Unused,
//! };
//!
//! pub struct SizeLimit;
//!
//! pub struct SizeLimitServer {
//!     max: u64,
//! }
//!
//! impl Plugin for SizeLimit {
//!     const NAME: &'static str = "size-limit";
//!     const VERSION: &'static str = "1.0.0";
//!     const ROLES: Roles = Roles::SERVER;
//!     const INTERESTS: Interests = Interests::of(&[OperationKind::ALLOCATE]);
//!     type Server = SizeLimitServer;
//!     type Client = Unused;
//!
//!     fn server(settings: &Settings, _host: Host) -> Result<SizeLimitServer, PluginError> {
//!         let max = settings.get("max-share-size").map_or(Ok(u64::MAX), |v| v.parse())
//!             .map_err(|_| PluginError::failed("max-share-size must be a number"))?;
//!         Ok(SizeLimitServer { max })
//!     }
//! }
//!
//! impl ServerPlugin for SizeLimitServer {
//!     // Only `admit`: the host then skips a hand-off per operation for `committed`.
//!     const HOOKS: ServerHooks = ServerHooks::ADMIT;
//!
//!     async fn admit(&self, op: Operation, _data: Option<Vec<u8>>) -> Result<(), Rejection> {
//!         match op {
//!             Operation::Allocate { allocated_size, .. } if allocated_size > self.max => {
//!                 Err(Rejection::new(413, "share-too-large", "shares here are smaller"))
//!             }
//!             _ => Ok(()),
//!         }
//!     }
//! }
//!
//! export_plugins!(SizeLimit);
//! # fn main() {}
//! ```
#![doc = include_str!("../docs/hooks.md")]

// The abi_stable derives expand to unsafe code (vtables, Send/Sync impls); this module is
// only declarations, and the layout checks at load time are what keep it sound.
mod blocking;
mod export;
#[allow(unsafe_code)]
pub mod ffi;
mod hook_cbor;
mod sdk;
pub mod testing;
mod value;

pub use blocking::{MAX_QUEUED as BLOCKING_QUEUE, MAX_THREADS as BLOCKING_THREADS};
/// The CBOR library of the SDK's API (announcements, rejection details): use it from here
/// rather than pinning a version of your own.
pub use ciborium;
pub use export::{PluginList, INTERFACE_VERSION};
pub use ffi::{
    Interests, LeaseRenewal, LogLevel, OperationKind, PluginError, Rejection, Roles, RouteRequest,
    RouteResponse, ServerHooks,
};
pub use sdk::{ClientPlugin, Host, Plugin, ServerConnection, ServerPlugin, Settings, Unused};
pub use value::{
    from_cbor, to_cbor, LeaseHash, LeaseRequest, MutableShareChange, Operation, Outcome, ShareInfo,
    ShareKind, StorageIndex,
};

#[doc(hidden)]
pub mod __private {
    pub use crate::export::{describe_list, library};
    #[doc(hidden)]
    pub use crate::sdk::server_connection_box;
    pub use abi_stable;
}
