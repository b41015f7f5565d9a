//! The authoring SDK: ordinary Rust traits a plugin author implements, and the adapters
//! that turn them into the ABI objects of [`crate::ffi`], catching every panic inside the
//! plugin so that it becomes an error for one request instead of the end of the server.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RNone, ROption, RResult, RSome, RString, RVec};
use async_ffi::{FfiFuture, FutureExt as _};

use crate::ffi::{
    ClientPluginFfi, ClientPluginFfi_TO, ErrorKind, HostApiBox, HostApiFfi_TO, Interests,
    LeaseRenewal, LogLevel, OperationKind, PluginError, Rejection, Roles, RouteRequest,
    RouteResponse, ServerConnectionBox, ServerConnectionFfi_TO, ServerHooks, ServerPluginFfi,
    ServerPluginFfi_TO,
};
use crate::value::{from_cbor, to_cbor, LeaseRequest, Operation, Outcome, ShareInfo};

impl Roles {
    /// Both sides.
    pub const BOTH: Roles = Roles::SERVER.union(Roles::CLIENT);

    /// Both sets of sides. In a `const` item (such as [`Plugin::ROLES`]) write
    /// `Roles::SERVER.union(Roles::CLIENT)` or [`Roles::BOTH`]; elsewhere `|` does the same
    /// (Rust does not yet allow operators on these types in constants).
    pub const fn union(self, other: Roles) -> Roles {
        Roles(self.0 | other.0)
    }
}

impl std::ops::BitOr for Roles {
    type Output = Roles;

    fn bitor(self, other: Roles) -> Roles {
        self.union(other)
    }
}

impl std::ops::BitOrAssign for Roles {
    fn bitor_assign(&mut self, other: Roles) {
        *self = self.union(other);
    }
}

impl Interests {
    /// The set of `kinds`: `Interests::of(&[OperationKind::ALLOCATE, OperationKind::UPLOAD])`.
    pub const fn of(kinds: &[OperationKind]) -> Interests {
        let mut set = Interests(0);
        let mut i = 0;
        while i < kinds.len() {
            set = set.with(kinds[i]);
            i += 1;
        }
        set
    }

    /// Both sets.
    pub const fn union(self, other: Interests) -> Interests {
        Interests(self.0 | other.0)
    }
}

impl std::ops::BitOr for Interests {
    type Output = Interests;

    fn bitor(self, other: Interests) -> Interests {
        self.union(other)
    }
}

impl std::ops::BitOr<OperationKind> for Interests {
    type Output = Interests;

    fn bitor(self, kind: OperationKind) -> Interests {
        self.with(kind)
    }
}

impl std::ops::BitOr for OperationKind {
    type Output = Interests;

    fn bitor(self, other: OperationKind) -> Interests {
        Interests(0).with(self).with(other)
    }
}

impl ServerHooks {
    /// Both sets. In a `const` item (such as [`ServerPlugin::HOOKS`]) write
    /// `ServerHooks::ADMIT.union(ServerHooks::COMMITTED)` or [`ServerHooks::ALL`];
    /// elsewhere `|` does the same.
    pub const fn union(self, other: ServerHooks) -> ServerHooks {
        ServerHooks(self.0 | other.0)
    }
}

impl std::ops::BitOr for ServerHooks {
    type Output = ServerHooks;

    fn bitor(self, other: ServerHooks) -> ServerHooks {
        self.union(other)
    }
}

/// A plugin's settings: the keys of its `[storageserver.plugins.NAME]` or
/// `[storageclient.plugins.NAME]` section, except the host's own (`library`, `url`, `command`).
pub type Settings = BTreeMap<String, String>;

/// One named plugin: its identity and how to build each side.
///
/// `Server` and `Client` name the types that implement each side; use [`Unused`] for a side
/// the plugin does not have, and leave it out of [`Plugin::ROLES`].
pub trait Plugin: 'static {
    /// Unique name, as operators write it in `tahoe.cfg`.
    const NAME: &'static str;
    /// The plugin's own version.
    const VERSION: &'static str;
    /// Which sides it implements.
    const ROLES: Roles;
    /// Which operations the server side wants to [admit](ServerPlugin::admit).
    const INTERESTS: Interests = Interests(0);

    /// The server side.
    type Server: ServerPlugin;
    /// The client side.
    type Client: ClientPlugin;

    /// Builds the server side. Called once, at node start; an error stops the node.
    fn server(settings: &Settings, host: Host) -> Result<Self::Server, PluginError> {
        let _ = (settings, host);
        Err(PluginError::unsupported("this plugin has no server side"))
    }

    /// Builds the client side.
    fn client(settings: &Settings, host: Host) -> Result<Self::Client, PluginError> {
        let _ = (settings, host);
        Err(PluginError::unsupported("this plugin has no client side"))
    }
}

/// The server side of a plugin. Every method has a default that does nothing.
pub trait ServerPlugin: Send + Sync + 'static {
    /// Which of [`admit`](Self::admit) and [`committed`](Self::committed) this side
    /// implements: the host calls no other, which saves it a hand-off to the plugin's
    /// thread per operation for each hook left at its default. Name every one you
    /// implement: the host never calls one left out (a unit test that calls it directly
    /// does not notice). Interface 1.2; older hosts call both.
    const HOOKS: ServerHooks = ServerHooks::ALL;

    /// The announcement clients see at `GET /storage/v1/plugins`.
    fn announce(&self) -> ciborium::Value {
        ciborium::Value::Null
    }

    /// Admits or rejects an operation before storage is touched. `plugin_data` is what the
    /// client's side of this plugin attached, if anything. Called only for operations in
    /// [`Plugin::INTERESTS`].
    fn admit(
        &self,
        operation: Operation,
        plugin_data: Option<Vec<u8>>,
    ) -> impl Future<Output = Result<(), Rejection>> + Send {
        let _ = (operation, plugin_data);
        async { Ok(()) }
    }

    /// Told after an admitted operation succeeded, with what really happened.
    fn committed(&self, operation: Operation, outcome: Outcome) -> impl Future<Output = ()> + Send {
        let _ = (operation, outcome);
        async {}
    }

    /// Serves `/storage/v1/plugin/<name>/...`, behind the same TLS and swissnum as every route.
    fn route(
        &self,
        request: RouteRequest,
    ) -> impl Future<Output = Result<RouteResponse, PluginError>> + Send {
        let _ = request;
        async { Ok(RouteResponse::text(404, "no such plugin route")) }
    }

    /// The background service: the host runs this future after the server is up, for as
    /// long as it serves, and drops it after [`ServerPlugin::stop`] at shutdown.
    fn start(&self) -> impl Future<Output = Result<(), PluginError>> + Send {
        async { Ok(()) }
    }

    /// Asks the background service to wind down.
    fn stop(&self) -> impl Future<Output = Result<(), PluginError>> + Send {
        async { Ok(()) }
    }
}

/// The client side of a plugin. Every method has a default that does nothing.
pub trait ClientPlugin: Send + Sync + 'static {
    /// Whether to use this plugin with a server that announces it this way.
    fn matches(&self, announcement: &ciborium::Value) -> bool {
        let _ = announcement;
        true
    }

    /// Plugin data to attach to an operation, or none.
    fn prepare(
        &self,
        server: ServerConnection,
        operation: Operation,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, PluginError>> + Send {
        let _ = (server, operation);
        async { Ok(None) }
    }

    /// After the server side rejected the operation: new plugin data to retry with, or
    /// `None` to give up and report the rejection.
    fn rejected(
        &self,
        server: ServerConnection,
        operation: Operation,
        rejection: Rejection,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, PluginError>> + Send {
        let _ = (server, operation, rejection);
        async { Ok(None) }
    }

    /// Told after the operation succeeded.
    fn committed(&self, operation: Operation, outcome: Outcome) -> impl Future<Output = ()> + Send {
        let _ = (operation, outcome);
        async {}
    }

    /// Serves the plugin's local resource, for the client's operator (`gbs client --node
    /// DIR client-route NAME ...`): a wallet, a price calculator. Interface 1.1.
    fn route(
        &self,
        request: RouteRequest,
    ) -> impl Future<Output = Result<RouteResponse, PluginError>> + Send {
        let _ = request;
        async { Ok(RouteResponse::text(404, "this plugin has no client route")) }
    }
}

/// The side a plugin does not have.
#[derive(Debug)]
pub enum Unused {}

impl ServerPlugin for Unused {}
impl ClientPlugin for Unused {}

impl PluginError {
    /// A failure with a message for the host's log.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::FAILED,
            message: RString::from(message.into()),
        }
    }

    /// Something this plugin or host does not offer.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::UNSUPPORTED,
            message: RString::from(message.into()),
        }
    }

    fn bad_input(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::BAD_INPUT,
            message: RString::from(message.into()),
        }
    }

    pub(crate) fn panicked(message: String) -> Self {
        Self {
            kind: ErrorKind::PANICKED,
            message: RString::from(message),
        }
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            ErrorKind::PANICKED => "panicked",
            ErrorKind::FAILED => "failed",
            ErrorKind::BAD_INPUT => "bad input",
            ErrorKind::UNSUPPORTED => "unsupported",
            _ => "error",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

impl std::error::Error for PluginError {}

impl Rejection {
    /// A rejection with an HTTP status, a short code and a message.
    pub fn new(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            details: RVec::new(),
        }
    }

    /// Adds details for the client plugin.
    pub fn with_details(mut self, details: &ciborium::Value) -> Self {
        self.details = to_cbor(details).into();
        self
    }

    /// The details, if any could be decoded.
    pub fn details(&self) -> Option<ciborium::Value> {
        (!self.details.is_empty())
            .then(|| from_cbor(&self.details).ok())
            .flatten()
    }
}

impl RouteResponse {
    /// A plain-text answer.
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            body: body.as_bytes().to_vec().into(),
        }
    }

    /// A CBOR answer.
    pub fn cbor(status: u16, value: &ciborium::Value) -> Self {
        Self {
            status,
            content_type: "application/cbor".into(),
            body: to_cbor(value).into(),
        }
    }
}

impl RouteRequest {
    /// A request with a body.
    pub fn new(method: &str, path: &str, body: Vec<u8>) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            query: RString::new(),
            content_type: RString::new(),
            body: body.into(),
        }
    }
}

/// What the host offers a plugin: logging, time, state, metrics, storage. Cheap to clone.
pub struct Host(HostApiBox);

impl Clone for Host {
    fn clone(&self) -> Self {
        // abi_stable trait objects over RArc clone through the pointer, not the trait.
        Self(HostApiFfi_TO::from_sabi(self.0.obj.shallow_clone()))
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Host")
    }
}

impl Host {
    /// Wraps the host's object; the export machinery does this.
    #[doc(hidden)]
    pub fn from_ffi(host: HostApiBox) -> Self {
        Self(host)
    }

    /// Logs at a level, into the host's log, tagged with the plugin's name.
    pub fn log(&self, level: LogLevel, message: &str) {
        self.0.log(level, message.into());
    }

    /// Logs at info level.
    pub fn info(&self, message: &str) {
        self.log(LogLevel::INFO, message);
    }

    /// Logs at warning level.
    pub fn warn(&self, message: &str) {
        self.log(LogLevel::WARN, message);
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_unix_millis(&self) -> u64 {
        self.0.now_unix_millis()
    }

    /// Waits on the host's timer.
    pub fn sleep(&self, duration: Duration) -> FfiFuture<()> {
        self.0
            .sleep_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    /// This plugin's private directory.
    pub fn state_dir(&self) -> PathBuf {
        PathBuf::from(self.0.state_dir().into_string())
    }

    /// Adds to one of this plugin's counters.
    pub fn counter_add(&self, name: &str, delta: u64) {
        self.0.counter_add(name.into(), delta);
    }

    /// Shares of a storage index with their sizes and lease expiry (server side only).
    pub async fn shares(&self, storage_index: [u8; 16]) -> Result<Vec<ShareInfo>, PluginError> {
        let request = ciborium::Value::Map(vec![(
            ciborium::Value::Text("storage-index".into()),
            ciborium::Value::Bytes(storage_index.to_vec()),
        )]);
        let answer = self
            .0
            .shares(to_cbor(&request).into())
            .await
            .into_result()?;
        from_cbor(&answer).map_err(PluginError::bad_input)
    }

    /// Chooses how leases are granted on the operations this plugin admits (server side
    /// only; by default [`LeaseRenewal::IMPLICIT`], as stock Tahoe). A plugin that charges for
    /// leases calls this from its constructor with [`LeaseRenewal::EXPLICIT`]; a host older
    /// than interface 1.1 answers an `unsupported` error, so the plugin can refuse to run
    /// there instead of giving leases away.
    pub fn set_lease_renewal(&self, renewal: LeaseRenewal) -> Result<(), PluginError> {
        self.0.set_lease_renewal(renewal).into_result()
    }

    /// Adds or renews a lease on given shares (server side only).
    pub async fn add_lease(&self, request: &LeaseRequest) -> Result<(), PluginError> {
        self.0
            .add_lease(to_cbor(request).into())
            .await
            .into_result()
    }
}

/// The server a client plugin is preparing a request for.
pub struct ServerConnection(ServerConnectionBox);

impl std::fmt::Debug for ServerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerConnection")
    }
}

impl ServerConnection {
    /// Wraps the host's object; the host's client does this.
    #[doc(hidden)]
    pub fn from_ffi(server: ServerConnectionBox) -> Self {
        Self(server)
    }

    /// Calls this plugin's own route on the server. A refusal the server made on the
    /// plugin's behalf (its route timed out or its service is unreachable: 503, or another
    /// plugin's `admit` said no) is an `Err` naming the refusing plugin, status and code.
    pub async fn call_route(&self, request: RouteRequest) -> Result<RouteResponse, PluginError> {
        self.0.call_route(request).await.into_result()
    }
}

/// Polls a future inside `catch_unwind`, so a panic becomes an error value here, in the
/// plugin, instead of unwinding into the host.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-text payload".to_owned())
}

/// Runs plugin code that returns a future, catching panics both while the future is made and
/// while it runs.
fn guarded<T, F, Fut>(make: F) -> FfiFuture<RResult<T, PluginError>>
where
    T: Send + 'static,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, PluginError>> + Send + 'static,
{
    match catch_unwind(AssertUnwindSafe(make)) {
        Ok(future) => async move {
            match CatchUnwind(Box::pin(future)).await {
                Ok(result) => result.into(),
                Err(message) => RResult::RErr(PluginError::panicked(message)),
            }
        }
        .into_ffi(),
        Err(payload) => {
            let error = PluginError::panicked(panic_message(payload.as_ref()));
            async move { RResult::RErr(error) }.into_ffi()
        }
    }
}

/// Runs synchronous plugin code, catching a panic.
pub(crate) fn guarded_sync<T>(
    work: impl FnOnce() -> Result<T, PluginError>,
) -> RResult<T, PluginError> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(result) => result.into(),
        Err(payload) => RResult::RErr(PluginError::panicked(panic_message(payload.as_ref()))),
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, PluginError> {
    from_cbor(bytes).map_err(bad(what))
}

/// The error for an argument from the host that does not decode.
fn bad(what: &str) -> impl FnOnce(String) -> PluginError + '_ {
    move |e| PluginError::bad_input(format!("{what}: {e}"))
}

/// Adapts an SDK server plugin to the ABI.
pub(crate) struct ServerAdapter<T>(pub(crate) Arc<T>);

impl<T: ServerPlugin> ServerPluginFfi for ServerAdapter<T> {
    fn announce(&self) -> RResult<RVec<u8>, PluginError> {
        guarded_sync(|| Ok(to_cbor(&self.0.announce()).into()))
    }

    fn admit(
        &self,
        operation: RVec<u8>,
        plugin_data: ROption<RVec<u8>>,
    ) -> FfiFuture<RResult<ROption<Rejection>, PluginError>> {
        let this = self.0.clone();
        guarded(move || async move {
            let operation = Operation::from_cbor(&operation).map_err(bad("operation"))?;
            let data = plugin_data.into_option().map(RVec::into_vec);
            Ok(match this.admit(operation, data).await {
                Ok(()) => RNone,
                Err(rejection) => RSome(rejection),
            })
        })
    }

    fn committed(
        &self,
        operation: RVec<u8>,
        outcome: RVec<u8>,
    ) -> FfiFuture<RResult<(), PluginError>> {
        let this = self.0.clone();
        guarded(move || async move {
            let operation = Operation::from_cbor(&operation).map_err(bad("operation"))?;
            let outcome = Outcome::from_cbor(&outcome).map_err(bad("outcome"))?;
            this.committed(operation, outcome).await;
            Ok(())
        })
    }

    fn route(&self, request: RouteRequest) -> FfiFuture<RResult<RouteResponse, PluginError>> {
        let this = self.0.clone();
        guarded(move || async move { this.route(request).await })
    }

    fn start(&self) -> FfiFuture<RResult<(), PluginError>> {
        let this = self.0.clone();
        guarded(move || async move { this.start().await })
    }

    fn stop(&self) -> FfiFuture<RResult<(), PluginError>> {
        let this = self.0.clone();
        guarded(move || async move { this.stop().await })
    }

    fn hooks(&self) -> ServerHooks {
        T::HOOKS
    }
}

/// Adapts an SDK client plugin to the ABI.
pub(crate) struct ClientAdapter<T>(pub(crate) Arc<T>);

impl<T: ClientPlugin> ClientPluginFfi for ClientAdapter<T> {
    fn matches(&self, announcement: RVec<u8>) -> RResult<bool, PluginError> {
        guarded_sync(|| {
            let announcement: ciborium::Value = decode(&announcement, "announcement")?;
            Ok(self.0.matches(&announcement))
        })
    }

    fn prepare(
        &self,
        server: ServerConnectionBox,
        operation: RVec<u8>,
    ) -> crate::ffi::PluginDataFuture {
        let this = self.0.clone();
        guarded(move || async move {
            let operation = Operation::from_cbor(&operation).map_err(bad("operation"))?;
            let data = this.prepare(ServerConnection(server), operation).await?;
            Ok(data.map(RVec::from).into())
        })
    }

    fn rejected(
        &self,
        server: ServerConnectionBox,
        operation: RVec<u8>,
        rejection: Rejection,
    ) -> crate::ffi::PluginDataFuture {
        let this = self.0.clone();
        guarded(move || async move {
            let operation = Operation::from_cbor(&operation).map_err(bad("operation"))?;
            let data = this
                .rejected(ServerConnection(server), operation, rejection)
                .await?;
            Ok(data.map(RVec::from).into())
        })
    }

    fn committed(
        &self,
        operation: RVec<u8>,
        outcome: RVec<u8>,
    ) -> FfiFuture<RResult<(), PluginError>> {
        let this = self.0.clone();
        guarded(move || async move {
            let operation = Operation::from_cbor(&operation).map_err(bad("operation"))?;
            let outcome = Outcome::from_cbor(&outcome).map_err(bad("outcome"))?;
            this.committed(operation, outcome).await;
            Ok(())
        })
    }

    fn route(&self, request: RouteRequest) -> FfiFuture<RResult<RouteResponse, PluginError>> {
        let this = self.0.clone();
        guarded(move || async move { this.route(request).await })
    }
}

pub(crate) fn server_box<T: ServerPlugin>(plugin: T) -> crate::ffi::ServerPluginBox {
    ServerPluginFfi_TO::from_value(ServerAdapter(Arc::new(plugin)), TD_Opaque)
}

pub(crate) fn client_box<T: ClientPlugin>(plugin: T) -> crate::ffi::ClientPluginBox {
    ClientPluginFfi_TO::from_value(ClientAdapter(Arc::new(plugin)), TD_Opaque)
}

/// Wraps a host-side server connection (used by hosts, not plugins).
#[doc(hidden)]
pub fn server_connection_box<T: crate::ffi::ServerConnectionFfi + Send + Sync + 'static>(
    connection: T,
) -> ServerConnectionBox {
    ServerConnectionFfi_TO::from_ptr(abi_stable::std_types::RArc::new(connection), TD_Opaque)
}
