//! Storage plugins: loading compiled libraries, checking their ABI, and calling their hooks.
//!
//! - `dylib` and `compat`: open a library and decide whether it is compatible, without
//!   running any plugin constructor (used by `gbs plugin check` and at start-up);
//!   [`check`] does it in a child process with a deadline.
//! - [`registry`]: the plugins a node's config names, built and ready ([`ServerPlugins`],
//!   [`ClientPluginHandle`]), with one start-up error line per failure.
//! - [`dispatch`]: calling server hooks (admit, committed, routes, services) and checking
//!   whatever plugins return; `executor`: the thread each server plugin's hooks run on.
//! - [`live`]: the set a running node uses, and reloading it while it serves.
//! - [`remote`]: out-of-process plugins (`url`, `command`) behind the same plugin object.
//! - [`data`]: the `X-Tahoe-Plugin-Data` header, parsed and encoded.
//! - [`operation`]: protocol values as the typed operations plugins see.
//! - [`host_api`]: what the host offers plugins (logging, clock, state, counters, storage).

pub mod check;
pub mod compat;
pub mod data;
pub mod dispatch;
pub mod dylib;
pub mod elf;
mod executor;
pub mod host_api;
pub mod live;
pub mod operation;
mod plugin_log;
pub mod registry;
pub mod remote;
#[cfg(test)]
pub(crate) mod test_plugins;

pub use data::{PluginData, PluginDataError};
pub use dispatch::{Admission, Refusal};
pub use live::LivePlugins;
pub use registry::{
    ClientPluginHandle, LoadFailure, OpenedLibrary, PluginLoadError, ServerPlugins,
    ServerPluginsBuilder,
};
