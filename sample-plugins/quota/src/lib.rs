//! `quota`: a sample `gbs` storage plugin that gives each account a storage quota.
//!
//! It is the in-process twin of `sample-plugins/quota-py` (an out-of-process plugin in
//! Python): the same behaviour, answers and file format, so the two transports can be
//! compared.
//!
//! - **admit** (`allocate` only): the client names its account in its plugin data, a CBOR
//!   map `{"account": NAME}`. Without one: 401 `quota-no-account`. If the account's usage
//!   plus share size × share count would pass `quota-bytes`: 413 `quota-exceeded`, details
//!   `{"used", "limit", "requested"}`.
//! - **committed**: charges share size × the shares really allocated (not those the server
//!   already had) to the account remembered at `admit`, and rewrites
//!   `<state dir>/usage.json` atomically, on the host's blocking pool.
//! - **route**: `GET /storage/v1/plugin/quota/usage?account=NAME` answers
//!   `{"account", "used", "limit"}` in CBOR.
//! - **announce**: `{"quota-bytes": N}`.
//! - **client side** (setting `account = NAME`): attaches `{"account": NAME}` to every
//!   allocation sent to a server announcing `quota-bytes`, whichever twin runs there.
//!
//! # Layout
//!
//! - `account`: the account name rule and the plugin data that carries it;
//! - `pending`: admitted allocations waiting for `committed`, bounded;
//! - `usage_file`: `usage.json`, loading and atomic rewriting;
//! - `server`: the setting, the quota arithmetic, the hooks, the route.
//!
//! The crate builds as a `cdylib` for the host and as an `rlib` so its unit tests call the
//! code directly, with the SDK's test host.

#![deny(missing_docs)]

mod account;
mod client;
mod pending;
mod server;
mod usage_file;

use gbs_plugin_interface::{
    export_plugins, Host, Interests, OperationKind, Plugin, PluginError, Roles, Settings,
};

pub use account::{account_of, Account, ACCOUNT_KEY};
pub use client::QuotaClient;
pub use pending::MAX_PENDING;
pub use server::{QuotaServer, QUOTA_KEY};
pub use usage_file::{load, save, LoadError, Usage, USAGE_FILE};

/// The `quota` plugin: the server side (interested in allocations) and a client side that
/// presents an account.
#[derive(Debug)]
pub struct Quota;

impl Plugin for Quota {
    const NAME: &'static str = "quota";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ROLES: Roles = Roles::BOTH;
    const INTERESTS: Interests = Interests::of(&[OperationKind::ALLOCATE]);
    type Server = QuotaServer;
    type Client = QuotaClient;

    fn server(settings: &Settings, host: Host) -> Result<QuotaServer, PluginError> {
        QuotaServer::new(settings, host)
    }

    fn client(settings: &Settings, host: Host) -> Result<QuotaClient, PluginError> {
        let _ = host;
        QuotaClient::new(settings)
    }
}

export_plugins!(Quota);

#[cfg(test)]
mod tests {
    use gbs_plugin_interface::testing::TestHost;
    use gbs_plugin_interface::PluginList;

    use super::*;

    #[test]
    fn describes_itself_as_quota_py_does() {
        let descriptions = <(Quota,) as PluginList>::descriptions();
        assert_eq!(descriptions.len(), 1);
        assert_eq!(descriptions[0].name.as_str(), "quota");
        assert_eq!(Quota::VERSION, "1.0.0");
        assert_eq!(Quota::ROLES, Roles::BOTH);
        assert_eq!(Quota::INTERESTS, Interests::of(&[OperationKind::ALLOCATE]));
    }

    #[test]
    fn the_library_refuses_a_missing_quota_through_the_abi() {
        let dir = tempfile::tempdir().unwrap();
        let host = TestHost::new(dir.path()).host();
        let Some(Err(error)) =
            <(Quota,) as PluginList>::new_server("quota", &Settings::new(), &host)
        else {
            panic!("a quota plugin without quota-bytes was built");
        };
        assert!(error.to_string().contains("quota-bytes"), "{error}");
    }
}
