//! `allow-list`: a sample `gbs` storage plugin that admits only clients presenting a
//! configured token.
//!
//! Both sides live in this one library:
//!
//! - the **server** side ([`AllowListServer`]) announces `{"scheme": "token-v1"}` and admits
//!   every operation except `version` only when the client's plugin data is a CBOR map
//!   `{"token": text}` naming one of its `tokens`. Otherwise it rejects: 401
//!   `token-required` without plugin data (this is what a stock Tahoe client gets), 400
//!   `bad-plugin-data` for data of the wrong shape, 403 `token-refused` for a token not on
//!   the list. The details are `{"hint": text}` and never echo what the client sent.
//! - the **client** side ([`AllowListClient`]) talks only to servers announcing `token-v1`,
//!   attaches `{"token": token}` to every operation, and after a `token-refused` rejection
//!   either gives up or, with a `fallback-token`, retries once with that.
//!
//! `version` stays open so that any client, stock Tahoe's included, can still learn what
//! the server is and fetch its plugin announcements.
//!
//! # Layout
//!
//! - `scheme`: the announcement and the plugin data format, shared by both sides;
//! - `server`: settings and the admit decision;
//! - `client`: settings, attaching the token, the retry rule.
//!
//! The crate builds as a `cdylib` for the host and as an `rlib` so its unit tests call the
//! code directly.

#![deny(missing_docs)]

mod client;
mod scheme;
mod server;
#[cfg(test)]
mod test_support;

use gbs_plugin_interface::{
    export_plugins, Host, Interests, OperationKind, Plugin, PluginError, Roles, Settings,
};

pub use client::AllowListClient;
pub use scheme::SCHEME;
pub use server::AllowListServer;

/// The `allow-list` plugin: server and client sides, interested in every operation but
/// `version`.
#[derive(Debug)]
pub struct AllowList;

impl Plugin for AllowList {
    const NAME: &'static str = "allow-list";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ROLES: Roles = Roles(Roles::SERVER.0 | Roles::CLIENT.0);
    const INTERESTS: Interests = Interests(0)
        .with(OperationKind::ALLOCATE)
        .with(OperationKind::UPLOAD)
        .with(OperationKind::ABORT)
        .with(OperationKind::LIST_IMMUTABLE)
        .with(OperationKind::READ_IMMUTABLE)
        .with(OperationKind::CORRUPT_IMMUTABLE)
        .with(OperationKind::LEASE)
        .with(OperationKind::READ_TEST_WRITE)
        .with(OperationKind::READ_MUTABLE)
        .with(OperationKind::LIST_MUTABLE)
        .with(OperationKind::CORRUPT_MUTABLE);
    type Server = AllowListServer;
    type Client = AllowListClient;

    fn server(settings: &Settings, _host: Host) -> Result<AllowListServer, PluginError> {
        AllowListServer::new(settings)
    }

    fn client(settings: &Settings, _host: Host) -> Result<AllowListClient, PluginError> {
        AllowListClient::new(settings)
    }
}

export_plugins!(AllowList);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_every_operation_but_version() {
        assert!(!AllowList::INTERESTS.contains(OperationKind::VERSION));
        for kind in 1..=11 {
            assert!(
                AllowList::INTERESTS.contains(OperationKind(kind)),
                "kind {kind}"
            );
        }
    }

    #[test]
    fn has_both_sides() {
        assert!(AllowList::ROLES.contains(Roles::SERVER));
        assert!(AllowList::ROLES.contains(Roles::CLIENT));
    }
}
