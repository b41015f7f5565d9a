//! `access-log`: a sample `gbs` storage plugin that counts what the server does.
//!
//! It admits every operation, and after each one succeeds it counts it by kind and adds the
//! bytes it really moved (uploaded, read, newly allocated, written to mutable shares). It
//! exercises every server hook of the plugin interface:
//!
//! - **announce**: `{"counters-route": "counters"}`;
//! - **committed**: updates the [`Counters`] and the host's metrics (`operations.<kind>`,
//!   `bytes.<counter>`);
//! - **route**: `GET /storage/v1/plugin/access-log/counters` answers the counters as a CBOR
//!   map, `GET .../counters.json` as JSON;
//! - **background service**: logs a summary line through the host every `interval-seconds`
//!   (default 60) on the host's timer, until the host calls `stop`, which also saves the
//!   counters to `<state_dir>/counters.cbor`. The next start restores them.
//!
//! # Layout
//!
//! - `counters`: the counting rules, pure functions over [`Operation`](gbs_plugin_interface::Operation)
//!   and [`Outcome`](gbs_plugin_interface::Outcome);
//! - `server`: settings, the hooks, the route, the background service, the state file;
//! - `stop`: the stop signal the background service waits on (plugins cannot use tokio).
//!
//! The crate builds as a `cdylib` for the host and as an `rlib` so its unit tests call the
//! code directly, on the SDK's `TestHost`.

#![deny(missing_docs)]

mod counters;
#[cfg(test)]
mod fake_host;
mod server;
mod stop;

use gbs_plugin_interface::{
    export_plugins, Host, Interests, OperationKind, Plugin, PluginError, Roles, Settings, Unused,
};

pub use counters::{Counters, OPERATION_NAMES};
pub use server::{
    state_file, AccessLogServer, COUNTERS_JSON_ROUTE, COUNTERS_ROUTE, DEFAULT_INTERVAL, STATE_FILE,
};

/// The `access-log` plugin: server side only, interested in every operation kind.
#[derive(Debug)]
pub struct AccessLog;

impl Plugin for AccessLog {
    const NAME: &'static str = "access-log";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ROLES: Roles = Roles::SERVER;
    const INTERESTS: Interests = Interests(0)
        .with(OperationKind::VERSION)
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
    type Server = AccessLogServer;
    type Client = Unused;

    fn server(settings: &Settings, host: Host) -> Result<AccessLogServer, PluginError> {
        AccessLogServer::new(settings, host)
    }
}

export_plugins!(AccessLog);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interested_in_every_operation_kind() {
        for kind in 0..OPERATION_NAMES.len() {
            let kind = OperationKind(u32::try_from(kind).unwrap());
            assert!(AccessLog::INTERESTS.contains(kind), "{kind:?}");
        }
        assert!(!AccessLog::INTERESTS.contains(OperationKind(12)));
    }

    #[test]
    fn library_builds_access_log_through_the_abi() {
        use gbs_plugin_interface::ciborium::Value;
        use gbs_plugin_interface::testing::TestHost;
        use gbs_plugin_interface::{from_cbor, PluginList};

        let descriptions = <(AccessLog,) as PluginList>::descriptions();
        assert_eq!(descriptions.len(), 1);
        assert_eq!(descriptions[0].name.as_str(), "access-log");
        assert_eq!(descriptions[0].interests, AccessLog::INTERESTS);

        let dir = tempfile::tempdir().unwrap();
        let host = TestHost::new(dir.path()).host();
        let bad: Settings = [("interval-seconds".to_owned(), "0".to_owned())].into();
        let Some(Err(error)) = <(AccessLog,) as PluginList>::new_server("access-log", &bad, &host)
        else {
            panic!("interval-seconds = 0 was accepted");
        };
        assert!(error.to_string().contains("interval-seconds"), "{error}");

        let server =
            <(AccessLog,) as PluginList>::new_server("access-log", &Settings::new(), &host)
                .unwrap()
                .unwrap();
        let announcement: Value = from_cbor(&server.announce().into_result().unwrap()).unwrap();
        assert!(
            announcement.as_map().is_some_and(|m| m.len() == 1),
            "{announcement:?}"
        );
        assert!(
            <(AccessLog,) as PluginList>::new_client("access-log", &Settings::new(), &host)
                .unwrap()
                .is_err(),
            "access-log has no client side"
        );
    }

    #[test]
    fn server_only() {
        assert!(AccessLog::ROLES.contains(Roles::SERVER));
        assert!(!AccessLog::ROLES.contains(Roles::CLIENT));
    }
}
