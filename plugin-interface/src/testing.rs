//! A host for unit tests of a plugin's hooks: no gbs node, no abi_stable in the test.
//!
//! [`TestHost`] stands in for the node: it gives the plugin a [`Host`] whose logs,
//! counters, clock, shares and leases the test can set and read; [`block_on`] drives a
//! hook's future to completion; [`settings`] makes a constructor's settings.
//!
//! ```
//! use gbs_plugin_interface::testing::{block_on, TestHost};
//! use gbs_plugin_interface::{Operation, OperationKind, Plugin, ServerPlugin, Settings};
//! # use gbs_plugin_interface::{export_plugins, Host, Interests, PluginError, Rejection, Roles, Unused};
//! # pub struct Quiet; pub struct QuietServer(Host);
//! # impl Plugin for Quiet {
//! #     const NAME: &'static str = "quiet"; const VERSION: &'static str = "1.0.0";
//! #     const ROLES: Roles = Roles::SERVER;
//! #     const INTERESTS: Interests = Interests::of(&[OperationKind::VERSION]);
//! #     type Server = QuietServer; type Client = Unused;
//! #     fn server(_: &Settings, host: Host) -> Result<QuietServer, PluginError> { Ok(QuietServer(host)) }
//! # }
//! # impl ServerPlugin for QuietServer {
//! #     async fn admit(&self, _: Operation, _: Option<Vec<u8>>) -> Result<(), Rejection> {
//! #         self.0.counter_add("admitted", 1); Ok(())
//! #     }
//! # }
//! let dir = std::env::temp_dir().join("quiet-plugin-test");
//! let host = TestHost::new(&dir);
//! let server = Quiet::server(&Settings::new(), host.host()).unwrap();
//! assert!(block_on(server.admit(Operation::Version, None)).is_ok());
//! assert_eq!(host.counters()["admitted"], 1);
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RResult, RStr, RString, RVec};
use async_ffi::{FfiFuture, FutureExt as _};

use crate::blocking::pending;
use crate::ffi::{HostApiFfi, HostApiFfi_TO, LeaseRenewal, LogLevel, PluginError};
use crate::sdk::Host;
use crate::value::{from_cbor, to_cbor, LeaseRequest, ShareInfo};

/// A stand-in for the node, for tests. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct TestHost(Arc<State>);

#[derive(Debug, Default)]
struct State {
    state_dir: PathBuf,
    logs: Mutex<Vec<(LogLevel, String)>>,
    counters: Mutex<BTreeMap<String, u64>>,
    now: Mutex<Option<u64>>,
    shares: Mutex<BTreeMap<[u8; 16], Vec<ShareInfo>>>,
    leases: Mutex<Vec<LeaseRequest>>,
    lease_renewal: Mutex<LeaseRenewal>,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl TestHost {
    /// A host whose plugin state directory is `state_dir` (created if missing).
    ///
    /// # Panics
    /// When the directory cannot be created.
    pub fn new(state_dir: impl AsRef<Path>) -> Self {
        let state_dir = state_dir.as_ref().to_owned();
        if let Err(error) = std::fs::create_dir_all(&state_dir) {
            panic!("cannot create {}: {error}", state_dir.display());
        }
        Self(Arc::new(State {
            state_dir,
            ..State::default()
        }))
    }

    /// The [`Host`] to give the plugin's constructor.
    pub fn host(&self) -> Host {
        Host::from_ffi(HostApiFfi_TO::from_ptr(RArc::new(self.clone()), TD_Opaque))
    }

    /// What the plugin logged, in order.
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        locked(&self.0.logs).clone()
    }

    /// The plugin's counters.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        locked(&self.0.counters).clone()
    }

    /// Fixes the clock the plugin reads (`None`: the real clock).
    pub fn set_now_unix_millis(&self, now: Option<u64>) {
        *locked(&self.0.now) = now;
    }

    /// What [`Host::shares`] answers for `storage_index`.
    pub fn set_shares(&self, storage_index: [u8; 16], shares: Vec<ShareInfo>) {
        locked(&self.0.shares).insert(storage_index, shares);
    }

    /// The lease requests the plugin made through [`Host::add_lease`], in order.
    pub fn leases_added(&self) -> Vec<LeaseRequest> {
        locked(&self.0.leases).clone()
    }

    /// What the plugin chose with [`Host::set_lease_renewal`].
    pub fn lease_renewal(&self) -> LeaseRenewal {
        *locked(&self.0.lease_renewal)
    }
}

impl HostApiFfi for TestHost {
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        locked(&self.0.logs).push((level, message.as_str().to_owned()));
    }

    fn now_unix_millis(&self) -> u64 {
        locked(&self.0.now).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        })
    }

    fn sleep_millis(&self, millis: u64) -> FfiFuture<()> {
        // Timed by a thread of its own: tests may sleep as many at once as they like.
        let (fill, done) = pending();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(millis));
            fill.fill(());
        });
        done.into_ffi()
    }

    fn state_dir(&self) -> RString {
        self.0.state_dir.to_string_lossy().into_owned().into()
    }

    fn counter_add(&self, name: RStr<'_>, delta: u64) {
        let mut counters = locked(&self.0.counters);
        let value = counters.entry(name.as_str().to_owned()).or_default();
        *value = value.saturating_add(delta);
    }

    fn shares(&self, request: RVec<u8>) -> FfiFuture<RResult<RVec<u8>, PluginError>> {
        #[derive(serde::Deserialize)]
        struct Request {
            #[serde(rename = "storage-index", with = "crate::value::fixed_bytes")]
            storage_index: [u8; 16],
        }
        let answer = from_cbor::<Request>(&request)
            .map_err(|e| PluginError::failed(format!("shares request: {e}")))
            .map(|request| {
                let shares = locked(&self.0.shares)
                    .get(&request.storage_index)
                    .cloned()
                    .unwrap_or_default();
                RVec::from(to_cbor(&shares))
            });
        async move { RResult::from(answer) }.into_ffi()
    }

    fn add_lease(&self, request: RVec<u8>) -> FfiFuture<RResult<(), PluginError>> {
        let answer = from_cbor::<LeaseRequest>(&request)
            .map_err(|e| PluginError::failed(format!("lease request: {e}")))
            .map(|request| locked(&self.0.leases).push(request));
        async move { RResult::from(answer) }.into_ffi()
    }

    fn set_lease_renewal(&self, renewal: LeaseRenewal) -> RResult<(), PluginError> {
        *locked(&self.0.lease_renewal) = renewal;
        RResult::ROk(())
    }
}

/// Wakes the thread that [`block_on`] parks.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Settings as a plugin's constructor gets them, from `(key, value)` pairs.
pub fn settings(pairs: &[(&str, &str)]) -> crate::Settings {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Runs `future` to completion on this thread (hooks' futures, in tests).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Interests, OperationKind, Roles};

    #[test]
    fn the_test_host_records_and_answers_what_a_node_would() {
        let dir = std::env::temp_dir().join(format!("gbs-test-host-{}", std::process::id()));
        let test_host = TestHost::new(&dir);
        let host = test_host.host();
        host.info("hello");
        host.counter_add("a", 2);
        host.counter_add("a", 3);
        assert_eq!(test_host.logs(), [(LogLevel::INFO, "hello".to_owned())]);
        assert_eq!(test_host.counters()["a"], 5);
        assert_eq!(host.state_dir(), dir);
        test_host.set_now_unix_millis(Some(42));
        assert_eq!(host.now_unix_millis(), 42);

        let share = ShareInfo {
            kind: crate::ShareKind::Immutable,
            share_number: 3,
            size: 10,
            lease_expiry: 99,
        };
        test_host.set_shares([1; 16], vec![share.clone()]);
        assert_eq!(block_on(host.shares([1; 16])).unwrap(), [share]);
        assert!(block_on(host.shares([2; 16])).unwrap().is_empty());
        let lease = LeaseRequest {
            storage_index: [1; 16],
            share_numbers: vec![3],
            renew_secret: [5; 32],
            cancel_secret: [6; 32],
        };
        block_on(host.add_lease(&lease)).unwrap();
        assert_eq!(test_host.leases_added(), [lease]);

        let started = std::time::Instant::now();
        block_on(host.sleep(Duration::from_millis(50)));
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn roles_and_interests_combine() {
        let mut roles = Roles::SERVER | Roles::CLIENT;
        assert_eq!(roles, Roles::BOTH);
        assert!(roles.contains(Roles::CLIENT));
        roles |= Roles::SERVER;
        assert_eq!(roles, Roles::SERVER.union(Roles::CLIENT));
        const SOME: Interests = Interests::of(&[OperationKind::ALLOCATE, OperationKind::UPLOAD]);
        assert_eq!(SOME, OperationKind::ALLOCATE | OperationKind::UPLOAD);
        let more = SOME | OperationKind::VERSION;
        assert!(more.contains(OperationKind::VERSION) && more.contains(OperationKind::UPLOAD));
        assert!(!more.contains(OperationKind::LEASE));
        assert_eq!(SOME | Interests(0), SOME);
    }
}
