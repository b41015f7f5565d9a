//! The ABI: what crosses the library boundary, checked by abi_stable at load time.
//!
//! Plugin authors never touch this module; [`crate::export_plugins!`] builds it from the
//! [SDK traits](crate::ServerPlugin). The rules for changing it within 1.x: new root-module
//! fields and new trait methods go **last**, with defaults; nothing is reordered, renamed or
//! removed; structured values travel as CBOR bytes so that adding a field never changes a
//! layout.

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RArc, RBox, ROption, RResult, RStr, RString, RVec};
use abi_stable::{declare_root_module_statics, package_version_strings, sabi_trait, StableAbi};
use async_ffi::FfiFuture;

/// The root module each plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginLibraryRef)))]
#[sabi(missing_field(option))]
pub struct PluginLibrary {
    /// Facts about the library and its plugins. Runs no plugin constructor.
    pub describe: extern "C" fn() -> LibraryDescription,
    /// Builds the server side of the named plugin from its settings (CBOR map of text to text).
    pub new_server:
        extern "C" fn(RStr<'_>, RVec<u8>, HostApiBox) -> RResult<ServerPluginBox, PluginError>,
    /// Builds the client side of the named plugin.
    #[sabi(last_prefix_field)]
    pub new_client:
        extern "C" fn(RStr<'_>, RVec<u8>, HostApiBox) -> RResult<ClientPluginBox, PluginError>,
}

impl RootModule for PluginLibraryRef {
    declare_root_module_statics! {PluginLibraryRef}
    const BASE_NAME: &'static str = "gbs_plugin";
    const NAME: &'static str = "gbs_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// What a library says about itself.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct LibraryDescription {
    /// Major version of the interface crate the library was built against.
    pub interface_major: u16,
    /// Minor version of the interface crate the library was built against.
    pub interface_minor: u16,
    /// Whether the library was built with `panic = "unwind"`, so its panics can be caught.
    pub panic_unwind: bool,
    /// The plugins it provides.
    pub plugins: RVec<PluginDescription>,
}

/// One named plugin of a library.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct PluginDescription {
    /// Unique name, as written in `tahoe.cfg`.
    pub name: RString,
    /// The plugin's own version.
    pub version: RString,
    /// Which sides it implements.
    pub roles: Roles,
    /// Which operations the server side wants to admit (bits of [`OperationKind`]).
    pub interests: Interests,
}

/// Bit set of the sides a plugin implements.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles(pub u32);

impl Roles {
    /// Runs in a storage server.
    pub const SERVER: Roles = Roles(1);
    /// Runs in a storage client.
    pub const CLIENT: Roles = Roles(2);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Roles) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Bit set of [`OperationKind`]s.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interests(pub u32);

impl Interests {
    /// Whether `kind` is in the set.
    pub const fn contains(self, kind: OperationKind) -> bool {
        kind.0 < 32 && self.0 & (1 << kind.0) != 0
    }

    /// The set with `kind` added.
    pub const fn with(self, kind: OperationKind) -> Interests {
        Interests(self.0 | (1 << kind.0))
    }
}

/// Bit set of the server hooks a plugin implements, so that the host calls no other (added
/// in 1.2; a 1.0 or 1.1 plugin is called for all of them).
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerHooks(pub u32);

impl ServerHooks {
    /// `admit`: without it, every operation the plugin is interested in is admitted with no
    /// call.
    pub const ADMIT: ServerHooks = ServerHooks(1);
    /// `committed`: without it, the plugin is not told of operations that succeeded.
    pub const COMMITTED: ServerHooks = ServerHooks(2);
    /// Both, as a plugin built against 1.0 or 1.1 is treated.
    pub const ALL: ServerHooks = ServerHooks(Self::ADMIT.0 | Self::COMMITTED.0);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: ServerHooks) -> bool {
        self.0 & other.0 == other.0
    }
}

/// The GBS operations, numbered for [`Interests`]. New kinds get new numbers.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OperationKind(pub u32);

#[allow(missing_docs)]
impl OperationKind {
    pub const VERSION: Self = Self(0);
    pub const ALLOCATE: Self = Self(1);
    pub const UPLOAD: Self = Self(2);
    pub const ABORT: Self = Self(3);
    pub const LIST_IMMUTABLE: Self = Self(4);
    pub const READ_IMMUTABLE: Self = Self(5);
    pub const CORRUPT_IMMUTABLE: Self = Self(6);
    pub const LEASE: Self = Self(7);
    pub const READ_TEST_WRITE: Self = Self(8);
    pub const READ_MUTABLE: Self = Self(9);
    pub const LIST_MUTABLE: Self = Self(10);
    pub const CORRUPT_MUTABLE: Self = Self(11);
}

/// A failure inside a plugin (not a decision to refuse a request: that is a [`Rejection`]).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// For logs; never shown to remote clients.
    pub message: RString,
}

/// Kinds of [`PluginError`].
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorKind(pub u32);

#[allow(missing_docs)]
impl ErrorKind {
    /// The plugin code panicked; the panic was caught inside the plugin.
    pub const PANICKED: Self = Self(1);
    /// The plugin reported a failure.
    pub const FAILED: Self = Self(2);
    /// The host handed the plugin something it could not decode.
    pub const BAD_INPUT: Self = Self(3);
    /// No plugin of that name or role in this library, or a hook the other side lacks.
    pub const UNSUPPORTED: Self = Self(4);
}

/// A plugin's decision to refuse a request, sent to the client as a structured error.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// One of 400, 401, 402, 403, 409, 413, 429, 503; the host refuses anything else.
    pub status: u16,
    /// Short machine-readable code, e.g. `more-passes-required`.
    pub code: RString,
    /// Human-readable explanation.
    pub message: RString,
    /// CBOR-encoded details for the client plugin; empty means none.
    pub details: RVec<u8>,
}

/// A request to a plugin's own route, `/storage/v1/plugin/<name>/<path>`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct RouteRequest {
    /// HTTP method, upper case.
    pub method: RString,
    /// The part after `/storage/v1/plugin/<name>/`, without the query, as the client sent
    /// it: still percent-encoded, as `query` is (`%2F` stays `%2F`; decode it yourself).
    pub path: RString,
    /// The query string without `?`, possibly empty.
    pub query: RString,
    /// The request's `Content-Type`, possibly empty.
    pub content_type: RString,
    /// The request body.
    pub body: RVec<u8>,
}

/// A plugin route's answer.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct RouteResponse {
    /// HTTP status; the host refuses 1xx and anything above 599.
    pub status: u16,
    /// `Content-Type` of the body.
    pub content_type: RString,
    /// The body.
    pub body: RVec<u8>,
}

/// How the host grants leases on the operations a plugin admits (added in 1.1).
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaseRenewal(pub u8);

impl LeaseRenewal {
    /// As stock Tahoe: an allocation renews the lease on the shares the server already has,
    /// and a mutable write renews it on every share written.
    pub const IMPLICIT: Self = Self(0);
    /// Leases only when asked for (`PUT /storage/v1/lease`): an allocation leaves the shares
    /// the server already has alone (new shares still get their first lease), and a mutable
    /// write adds a lease only to written shares without an unexpired one.
    pub const EXPLICIT: Self = Self(1);
}

/// Severity of a log line sent to the host.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLevel(pub u8);

#[allow(missing_docs)]
impl LogLevel {
    pub const ERROR: Self = Self(1);
    pub const WARN: Self = Self(2);
    pub const INFO: Self = Self(3);
    pub const DEBUG: Self = Self(4);
    pub const TRACE: Self = Self(5);
}

/// The server side of a plugin, as the host calls it. Structured arguments are CBOR: an
/// [`Operation`](crate::Operation) and an [`Outcome`](crate::Outcome).
#[sabi_trait]
pub trait ServerPluginFfi: Send + Sync {
    /// The announcement published at `GET /storage/v1/plugins` (CBOR).
    fn announce(&self) -> RResult<RVec<u8>, PluginError>;

    /// Admit (`ROk(RNone)`) or reject (`ROk(RSome(_))`) an operation before storage is touched.
    fn admit(
        &self,
        operation: RVec<u8>,
        plugin_data: ROption<RVec<u8>>,
    ) -> FfiFuture<RResult<ROption<Rejection>, PluginError>>;

    /// Told after an admitted operation succeeded, with what really happened.
    fn committed(
        &self,
        operation: RVec<u8>,
        outcome: RVec<u8>,
    ) -> FfiFuture<RResult<(), PluginError>>;

    /// Serves the plugin's own routes.
    fn route(&self, request: RouteRequest) -> FfiFuture<RResult<RouteResponse, PluginError>>;

    /// Starts background services, after the server is up.
    fn start(&self) -> FfiFuture<RResult<(), PluginError>>;

    /// Stops background services, at shutdown.
    #[sabi(last_prefix_field)]
    fn stop(&self) -> FfiFuture<RResult<(), PluginError>>;

    /// Added in 1.2: the hooks this plugin implements; the host calls no other. A 1.0 or 1.1
    /// plugin lacks it, and this default says it implements them all.
    fn hooks(&self) -> ServerHooks {
        ServerHooks::ALL
    }
}

/// An owned server plugin object.
pub type ServerPluginBox = ServerPluginFfi_TO<'static, RBox<()>>;

/// The client side of a plugin, as the host's GBS client calls it.
#[sabi_trait]
pub trait ClientPluginFfi: Send + Sync {
    /// Whether this plugin will talk to a server with this announcement (CBOR).
    fn matches(&self, announcement: RVec<u8>) -> RResult<bool, PluginError>;

    /// Plugin data to attach to an operation (CBOR), or none.
    fn prepare(&self, server: ServerConnectionBox, operation: RVec<u8>) -> PluginDataFuture;

    /// After a rejection by this plugin's server side: new plugin data to retry with, or none
    /// to give up.
    fn rejected(
        &self,
        server: ServerConnectionBox,
        operation: RVec<u8>,
        rejection: Rejection,
    ) -> PluginDataFuture;

    /// Told after the operation succeeded.
    #[sabi(last_prefix_field)]
    fn committed(
        &self,
        operation: RVec<u8>,
        outcome: RVec<u8>,
    ) -> FfiFuture<RResult<(), PluginError>>;

    /// Added in 1.1: serves the client plugin's own local resource (a wallet, a price
    /// calculator). A 1.0 plugin has none.
    fn route(&self, request: RouteRequest) -> FfiFuture<RResult<RouteResponse, PluginError>> {
        let _ = request;
        async_ffi::FutureExt::into_ffi(async {
            RResult::ROk(RouteResponse {
                status: 404,
                content_type: "text/plain; charset=utf-8".into(),
                body: RVec::from(b"this plugin has no client route".to_vec()),
            })
        })
    }
}

/// Plugin data to attach (CBOR bytes), none, or a failure.
pub type PluginDataFuture = FfiFuture<RResult<ROption<RVec<u8>>, PluginError>>;

/// An owned client plugin object.
pub type ClientPluginBox = ClientPluginFfi_TO<'static, RBox<()>>;

/// The server a client plugin is preparing a request for.
#[sabi_trait]
pub trait ServerConnectionFfi: Send + Sync {
    /// Calls this plugin's own route on that server.
    #[sabi(last_prefix_field)]
    fn call_route(&self, request: RouteRequest) -> FfiFuture<RResult<RouteResponse, PluginError>>;
}

/// A shared handle on a server connection.
pub type ServerConnectionBox = ServerConnectionFfi_TO<'static, RArc<()>>;

/// What the host offers every plugin. All I/O and timers go through here: plugins cannot run
/// their own async runtime inside the host.
#[sabi_trait]
pub trait HostApiFfi: Send + Sync {
    /// Writes a line to the host's log, tagged with the plugin's name.
    fn log(&self, level: LogLevel, message: RStr<'_>);

    /// Wall-clock time in milliseconds since the Unix epoch.
    fn now_unix_millis(&self) -> u64;

    /// Completes after `millis` milliseconds, on the host's timer.
    fn sleep_millis(&self, millis: u64) -> FfiFuture<()>;

    /// A directory private to this plugin, created by the host.
    fn state_dir(&self) -> RString;

    /// Adds `delta` to the named counter of this plugin.
    fn counter_add(&self, name: RStr<'_>, delta: u64);

    /// Share numbers, sizes and latest lease expiry of a storage index (CBOR request
    /// `{"storage-index": bstr}`, CBOR answer: list of [`ShareInfo`](crate::ShareInfo)).
    /// Server side only.
    fn shares(&self, request: RVec<u8>) -> FfiFuture<RResult<RVec<u8>, PluginError>>;

    /// Adds or renews a lease on given shares (CBOR [`LeaseRequest`](crate::LeaseRequest)).
    /// Server side only.
    #[sabi(last_prefix_field)]
    fn add_lease(&self, request: RVec<u8>) -> FfiFuture<RResult<(), PluginError>>;

    /// Added in 1.1: how leases are granted on the operations this plugin admits. Server
    /// side only. A 1.0 host lacks it, and this default says so.
    fn set_lease_renewal(&self, renewal: LeaseRenewal) -> RResult<(), PluginError> {
        let _ = renewal;
        RResult::RErr(PluginError {
            kind: ErrorKind::UNSUPPORTED,
            message: "the host implements plugin interface 1.0; choosing lease renewal needs 1.1"
                .into(),
        })
    }
}

/// A shared handle on the host API.
pub type HostApiBox = HostApiFfi_TO<'static, RArc<()>>;
