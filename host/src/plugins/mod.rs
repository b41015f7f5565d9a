//! Storage plugins: loading compiled libraries, checking their ABI, and calling their hooks.
//!
//! - `dylib` and `compat`: open a library and decide whether it is compatible, without
//!   running any plugin constructor (used by `gbs plugin check` and at start-up).
//! - `registry`: the plugins a node's config names, built and ready, with the hook dispatch
//!   the server and client call.
//! - `host_api`: what the host offers plugins (logging, clock, state, metrics, storage).

pub mod compat;
pub mod dylib;
pub mod host_api;
pub mod registry;
