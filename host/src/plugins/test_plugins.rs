//! Plugins linked into the test binary (no `.so`), for dispatch and router tests. Each one
//! shows one behaviour; they record what they saw in the host's counters, which tests read
//! through `ServerPlugins::counters`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::RVec;
use gbs_plugin_interface::__private::{describe_list, library};
use gbs_plugin_interface::ffi::LibraryDescription;
use gbs_plugin_interface::{
    ClientPlugin, Host, Interests, Operation, OperationKind, Outcome, Plugin, PluginError,
    Rejection, Roles, RouteRequest, RouteResponse, ServerConnection, ServerHooks, ServerPlugin,
    Settings, Unused,
};

use super::registry::OpenedLibrary;

/// Every operation kind.
const ALL: Interests = Interests(0xfff);

fn op_name(op: &Operation) -> &'static str {
    match op {
        Operation::Version => "version",
        Operation::Allocate { .. } => "allocate",
        Operation::Upload { .. } => "upload",
        Operation::Abort { .. } => "abort",
        Operation::List { .. } => "list",
        Operation::Read { .. } => "read",
        Operation::AdviseCorrupt { .. } => "corrupt",
        Operation::Lease { .. } => "lease",
        Operation::ReadTestWrite { .. } => "read-test-write",
        _ => "other",
    }
}

/// `gate`: admits an operation only with plugin data `"open sesame"`; rejects with 401 and
/// details `{"hint": "say the word"}` otherwise. Counts admits and commits by operation and
/// records outcome numbers. Announces `{"scheme": "word"}`. Client side: attaches the
/// `first` setting (default `"wrong"`) and, after a rejection, the `retry-with` setting
/// (default `"open sesame"`).
pub(crate) struct Gate;

pub(crate) struct GateServer(Host);

impl Plugin for Gate {
    const NAME: &'static str = "gate";
    const VERSION: &'static str = "1.2.3";
    const ROLES: Roles = Roles(Roles::SERVER.0 | Roles::CLIENT.0);
    const INTERESTS: Interests = ALL;
    type Server = GateServer;
    type Client = GateClient;

    fn server(_: &Settings, host: Host) -> Result<GateServer, PluginError> {
        Ok(GateServer(host))
    }

    fn client(settings: &Settings, host: Host) -> Result<GateClient, PluginError> {
        let get = |key: &str, default: &str| {
            settings
                .get(key)
                .cloned()
                .unwrap_or_else(|| default.to_owned())
        };
        Ok(GateClient {
            host,
            first: get("first", "wrong"),
            retry_with: get("retry-with", "open sesame"),
        })
    }
}

impl ServerPlugin for GateServer {
    fn announce(&self) -> ciborium::Value {
        ciborium::Value::Map(vec![(
            ciborium::Value::Text("scheme".into()),
            ciborium::Value::Text("word".into()),
        )])
    }

    async fn admit(&self, op: Operation, data: Option<Vec<u8>>) -> Result<(), Rejection> {
        self.0.counter_add(&format!("admit.{}", op_name(&op)), 1);
        let word: Option<String> = data.and_then(|d| gbs_plugin_interface::from_cbor(&d).ok());
        if word.as_deref() == Some("open sesame") {
            Ok(())
        } else {
            Err(
                Rejection::new(401, "word-required", "say the word").with_details(
                    &ciborium::Value::Map(vec![(
                        ciborium::Value::Text("hint".into()),
                        ciborium::Value::Text("say the word".into()),
                    )]),
                ),
            )
        }
    }

    async fn committed(&self, op: Operation, outcome: Outcome) {
        self.0
            .counter_add(&format!("committed.{}", op_name(&op)), 1);
        match outcome {
            Outcome::Allocated {
                allocated,
                already_have,
            } => {
                self.0.counter_add("allocated", allocated.len() as u64);
                self.0
                    .counter_add("already-have", already_have.len() as u64);
            }
            Outcome::Uploaded { bytes, complete } => {
                self.0.counter_add("uploaded-bytes", bytes);
                self.0.counter_add("completed", u64::from(complete));
            }
            Outcome::Read { bytes } => self.0.counter_add("read-bytes", bytes),
            Outcome::ReadTestWrite { success } => {
                self.0.counter_add("rtw-success", u64::from(success))
            }
            _ => {}
        }
    }

    async fn route(&self, request: RouteRequest) -> Result<RouteResponse, PluginError> {
        match request.path.as_str() {
            "echo" => Ok(RouteResponse {
                status: 200,
                content_type: "application/octet-stream".into(),
                body: request.body,
            }),
            "status-99" => Ok(RouteResponse::text(99, "too low")),
            "status-600" => Ok(RouteResponse::text(600, "too high")),
            "huge" => Ok(RouteResponse {
                status: 200,
                content_type: "application/octet-stream".into(),
                body: RVec::from(vec![0u8; (16 << 20) + 1]),
            }),
            "fail" => Err(PluginError::failed("route failed on purpose")),
            // The path and query as the plugin got them.
            path if path.starts_with("path/") => Ok(RouteResponse::text(
                200,
                &format!("{path} {}", request.query),
            )),
            _ => Ok(RouteResponse::text(404, "no such gate route")),
        }
    }
}

/// The client side of [`Gate`].
pub(crate) struct GateClient {
    host: Host,
    first: String,
    retry_with: String,
}

impl ClientPlugin for GateClient {
    fn matches(&self, announcement: &ciborium::Value) -> bool {
        matches!(announcement, ciborium::Value::Map(m) if !m.is_empty())
    }

    async fn prepare(
        &self,
        _: ServerConnection,
        _: Operation,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        self.host.counter_add("prepare", 1);
        Ok(Some(gbs_plugin_interface::to_cbor(&self.first)))
    }

    async fn rejected(
        &self,
        _: ServerConnection,
        _: Operation,
        rejection: Rejection,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        self.host.counter_add("rejected", 1);
        if rejection.details().is_some() {
            self.host.counter_add("rejected-with-details", 1);
        }
        Ok(Some(gbs_plugin_interface::to_cbor(&self.retry_with)))
    }

    async fn committed(&self, op: Operation, _: Outcome) {
        self.host
            .counter_add(&format!("client-committed.{}", op_name(&op)), 1);
    }
}

/// `bad-status`: rejects allocations with 418, which no plugin may use.
pub(crate) struct BadStatus;
pub(crate) struct BadStatusServer;

impl Plugin for BadStatus {
    const NAME: &'static str = "bad-status";
    const VERSION: &'static str = "0.1.0";
    const ROLES: Roles = Roles::SERVER;
    const INTERESTS: Interests = Interests(0).with(OperationKind::ALLOCATE);
    type Server = BadStatusServer;
    type Client = Unused;

    fn server(_: &Settings, _: Host) -> Result<BadStatusServer, PluginError> {
        Ok(BadStatusServer)
    }
}

impl ServerPlugin for BadStatusServer {
    async fn admit(&self, _: Operation, _: Option<Vec<u8>>) -> Result<(), Rejection> {
        Err(Rejection::new(418, "teapot", "short and stout"))
    }
}

/// `bad-details`: rejects versions with details that are not CBOR.
pub(crate) struct BadDetails;
pub(crate) struct BadDetailsServer;

impl Plugin for BadDetails {
    const NAME: &'static str = "bad-details";
    const VERSION: &'static str = "0.1.0";
    const ROLES: Roles = Roles::SERVER;
    const INTERESTS: Interests = Interests(0).with(OperationKind::VERSION);
    type Server = BadDetailsServer;
    type Client = Unused;

    fn server(_: &Settings, _: Host) -> Result<BadDetailsServer, PluginError> {
        Ok(BadDetailsServer)
    }
}

impl ServerPlugin for BadDetailsServer {
    async fn admit(&self, _: Operation, _: Option<Vec<u8>>) -> Result<(), Rejection> {
        let mut rejection = Rejection::new(403, "no", "no");
        rejection.details = RVec::from(vec![0xff, 0x00]);
        Err(rejection)
    }
}

/// `panics`: panics in admit for allocations and in every route; admits everything else.
pub(crate) struct Panics;
pub(crate) struct PanicsServer;

impl Plugin for Panics {
    const NAME: &'static str = "panics";
    const VERSION: &'static str = "0.1.0";
    const ROLES: Roles = Roles::SERVER;
    const INTERESTS: Interests = ALL;
    type Server = PanicsServer;
    type Client = Unused;

    fn server(_: &Settings, _: Host) -> Result<PanicsServer, PluginError> {
        Ok(PanicsServer)
    }
}

impl ServerPlugin for PanicsServer {
    async fn admit(&self, op: Operation, _: Option<Vec<u8>>) -> Result<(), Rejection> {
        if matches!(op, Operation::Allocate { .. }) {
            panic!("admit panics on purpose");
        }
        Ok(())
    }

    async fn route(&self, _: RouteRequest) -> Result<RouteResponse, PluginError> {
        panic!("route panics on purpose")
    }
}

/// `slow`: takes an hour to admit a version (on the host's timer).
pub(crate) struct Slow;
pub(crate) struct SlowServer(Host);

impl Plugin for Slow {
    const NAME: &'static str = "slow";
    const VERSION: &'static str = "0.1.0";
    const ROLES: Roles = Roles::SERVER;
    const INTERESTS: Interests = Interests(0).with(OperationKind::VERSION);
    type Server = SlowServer;
    type Client = Unused;

    fn server(_: &Settings, host: Host) -> Result<SlowServer, PluginError> {
        Ok(SlowServer(host))
    }
}

impl ServerPlugin for SlowServer {
    async fn admit(&self, _: Operation, _: Option<Vec<u8>>) -> Result<(), Rejection> {
        self.0.sleep(Duration::from_secs(3600)).await;
        Ok(())
    }
}

/// `service`: a background service that ticks every second until `stop`; its constructor
/// fails with setting `fail = yes`; it writes a file into its state directory.
pub(crate) struct Service;
pub(crate) struct ServiceServer {
    host: Host,
    stopping: Arc<AtomicBool>,
}

impl Plugin for Service {
    const NAME: &'static str = "service";
    const VERSION: &'static str = "0.1.0";
    const ROLES: Roles = Roles::SERVER;
    type Server = ServiceServer;
    type Client = Unused;

    fn server(settings: &Settings, host: Host) -> Result<ServiceServer, PluginError> {
        if settings.get("fail").is_some_and(|v| v == "yes") {
            return Err(PluginError::failed("fail = yes"));
        }
        std::fs::write(host.state_dir().join("hello"), b"hi")
            .map_err(|e| PluginError::failed(e.to_string()))?;
        Ok(ServiceServer {
            host,
            stopping: Arc::default(),
        })
    }
}

impl ServerPlugin for ServiceServer {
    async fn start(&self) -> Result<(), PluginError> {
        self.host.counter_add("started", 1);
        while !self.stopping.load(Ordering::SeqCst) {
            self.host.sleep(Duration::from_millis(10)).await;
            self.host.counter_add("ticks", 1);
        }
        self.host.counter_add("ended", 1);
        Ok(())
    }

    async fn stop(&self) -> Result<(), PluginError> {
        self.host.counter_add("stopped", 1);
        self.stopping.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// `admit-only` (`Declared<1>`) and `committed-only` (`Declared<2>`): implement both hooks
/// and count every call, but declare one of them (interface 1.2's `ServerHooks`), so the
/// host must never make the other call.
pub(crate) struct Declared<const HOOKS: u32>;
pub(crate) struct DeclaredServer<const HOOKS: u32>(Host);

impl<const HOOKS: u32> Plugin for Declared<HOOKS> {
    const NAME: &'static str = if HOOKS == ServerHooks::ADMIT.0 {
        "admit-only"
    } else {
        "committed-only"
    };
    const VERSION: &'static str = "0.1.0";
    const ROLES: Roles = Roles::SERVER;
    const INTERESTS: Interests = ALL;
    type Server = DeclaredServer<HOOKS>;
    type Client = Unused;

    fn server(_: &Settings, host: Host) -> Result<DeclaredServer<HOOKS>, PluginError> {
        Ok(DeclaredServer(host))
    }
}

impl<const HOOKS: u32> ServerPlugin for DeclaredServer<HOOKS> {
    const HOOKS: ServerHooks = ServerHooks(HOOKS);

    async fn admit(&self, _: Operation, _: Option<Vec<u8>>) -> Result<(), Rejection> {
        self.0.counter_add("admit", 1);
        Ok(())
    }

    async fn committed(&self, _: Operation, _: Outcome) {
        self.0.counter_add("committed", 1);
    }
}

type All = (
    Gate,
    BadStatus,
    BadDetails,
    Panics,
    Slow,
    Service,
    Declared<1>,
    Declared<2>,
);

extern "C" fn describe() -> LibraryDescription {
    describe_list::<All>(true)
}

/// One library holding every test plugin, as if loaded from a file.
pub(crate) fn test_library() -> OpenedLibrary {
    OpenedLibrary {
        path: "test-plugins.so".into(),
        description: describe(),
        root: library::<All>(describe),
        interface: "1.0.0".to_owned(),
        hash: "linked-into-the-tests".to_owned(),
    }
}
