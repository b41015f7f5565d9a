//! `gbs`: a Great Black Swamp (Tahoe-LAFS HTTPS storage protocol) server and client.
//!
//! # Layout
//!
//! Modules depend only on those listed above them:
//!
//! - [`protocol`]: wire types, CBOR, paths, secrets, NURLs. Pure, no I/O.
//! - [`storage`]: the share store in Tahoe's on-disk layout; knows nothing of HTTP.
//! - [`limits`]: the bounds a server keeps on connections, time and memory.
//! - [`config`], [`node`]: `tahoe.cfg` and the node directory with its TLS identity.
//! - [`plugins`]: storage plugin libraries: loading and checking them, the host API they
//!   get, and the hook dispatch the server and client call.
//! - [`server`]: the HTTPS server: TLS, authorization, one file per group of endpoints.
//! - [`client`]: the HTTPS client: SPKI-pinned TLS, every operation, streaming uploads and reads.
//! - [`gateway`]: `gbs gateway`, the server for stock clients that passes operations on
//!   through the client and its plugins.
//! - `admin`: the node's local admin socket (plugin status, reload, checks).
//! - [`cli`]: the `gbs` command; [`file_limit`] raises the open-file limit it runs with.

#[cfg(unix)]
pub mod admin;
pub mod cli;
pub mod client;
pub mod config;
pub mod file_limit;
pub mod gateway;
pub mod limits;
mod linger;
pub mod node;
pub mod plugins;
pub mod protocol;
pub mod server;
pub mod storage;
