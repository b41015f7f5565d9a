//! ZKAPAuthorizer's pass-based storage payment for gbs: the plugin
//! `privatestorageio-zkapauthz-v2`, ported from ZKAPAuthorizer 2022.8.21 (see
//! `plugin-model.md` §2 in the project's shared notes, and this crate's README for the wire
//! formats, settings and bounds).
//!
//! - [`pass`]: passes as ZKAPAuthorizer makes and checks them (Ristretto privacy pass,
//!   bound to one operation on one storage index), checked against vectors recorded from
//!   the original Python code (`vectors/`);
//! - [`pricing`]: what each operation costs in passes; [`charge`] applies it to an
//!   operation, the same on both sides;
//! - [`server`]: admission (price, check, reserve), settlement after success, the `passes`
//!   and `stat-shares` routes; [`spent`] is its persistent ledger, [`handles`] holds pass
//!   sets too large for a header, [`metrics`] the spending histogram, [`in_flight`] what
//!   each side keeps between an operation's admission and its outcome;
//! - [`client`]: paying, retrying after refused passes, settling; [`wallet`] holds vouchers
//!   and tokens; [`redemption`] trades vouchers for tokens with an issuer over [`http`],
//!   and is also the demo issuer the `gbs-zkap` tool serves;
//! - [`wire`]: the CBOR both sides exchange.
//!
//! The library is a `cdylib` for the host and an `rlib` for its tool and tests.

pub mod charge;
pub mod client;
pub mod handles;
pub mod http;
pub mod in_flight;
pub mod metrics;
pub mod pass;
pub mod pricing;
pub mod redemption;
pub mod server;
pub mod spent;
pub mod wallet;
pub mod wire;

use gbs_plugin_interface::{
    export_plugins, Host, Interests, OperationKind, Plugin, PluginError, Roles, Settings,
};

pub use client::ZkapClient;
pub use server::ZkapServer;

/// The plugin: both sides; the server side charges allocations, lease renewals and
/// mutable writes.
#[derive(Debug)]
pub struct ZkapAuthorizer;

impl Plugin for ZkapAuthorizer {
    const NAME: &'static str = wire::PLUGIN_NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ROLES: Roles = Roles::BOTH;
    const INTERESTS: Interests = Interests::of(&[
        OperationKind::ALLOCATE,
        OperationKind::LEASE,
        OperationKind::READ_TEST_WRITE,
    ]);
    type Server = ZkapServer;
    type Client = ZkapClient;

    fn server(settings: &Settings, host: Host) -> Result<ZkapServer, PluginError> {
        ZkapServer::new(settings, host)
    }

    fn client(settings: &Settings, host: Host) -> Result<ZkapClient, PluginError> {
        ZkapClient::new(settings, host)
    }
}

export_plugins!(ZkapAuthorizer);
