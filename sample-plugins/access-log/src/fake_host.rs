//! What the unit tests add to the SDK's `TestHost`: scripted sleeps, so the background
//! service runs without a clock, and a one-poll executor.

use std::future::{pending, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RResult, RStr, RString, RVec};
use async_ffi::{FfiFuture, FutureExt as _};
use gbs_plugin_interface::ffi::{HostApiFfi, HostApiFfi_TO};
use gbs_plugin_interface::testing::TestHost;
use gbs_plugin_interface::{Host, LeaseRenewal, LogLevel, PluginError};

/// A [`TestHost`] whose sleeps the test scripts: `TestHost` sleeps in real time, unrecorded.
#[derive(Debug, Clone)]
pub(crate) struct ScriptedSleeps {
    test_host: TestHost,
    sleeps: Arc<Sleeps>,
}

#[derive(Debug, Default)]
struct Sleeps {
    /// Sleeps left that complete at once; every later sleep never completes.
    ready: AtomicUsize,
    /// Every sleep asked for, in milliseconds.
    asked: Mutex<Vec<u64>>,
}

impl ScriptedSleeps {
    pub(crate) fn new(test_host: TestHost, ready_sleeps: usize) -> Self {
        let sleeps = Sleeps {
            ready: AtomicUsize::new(ready_sleeps),
            ..Sleeps::default()
        };
        Self {
            test_host,
            sleeps: Arc::new(sleeps),
        }
    }

    pub(crate) fn host(&self) -> Host {
        Host::from_ffi(HostApiFfi_TO::from_ptr(RArc::new(self.clone()), TD_Opaque))
    }

    pub(crate) fn sleeps_millis(&self) -> Vec<u64> {
        self.sleeps.asked.lock().unwrap().clone()
    }
}

impl HostApiFfi for ScriptedSleeps {
    fn sleep_millis(&self, millis: u64) -> FfiFuture<()> {
        self.sleeps.asked.lock().unwrap().push(millis);
        let ready = self
            .sleeps
            .ready
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if ready {
            async {}.into_ffi()
        } else {
            pending().into_ffi()
        }
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        self.test_host.log(level, message);
    }

    fn now_unix_millis(&self) -> u64 {
        self.test_host.now_unix_millis()
    }

    fn state_dir(&self) -> RString {
        self.test_host.state_dir()
    }

    fn counter_add(&self, name: RStr<'_>, delta: u64) {
        self.test_host.counter_add(name, delta);
    }

    fn shares(&self, request: RVec<u8>) -> FfiFuture<RResult<RVec<u8>, PluginError>> {
        self.test_host.shares(request)
    }

    fn add_lease(&self, request: RVec<u8>) -> FfiFuture<RResult<(), PluginError>> {
        self.test_host.add_lease(request)
    }

    fn set_lease_renewal(&self, renewal: LeaseRenewal) -> RResult<(), PluginError> {
        self.test_host.set_lease_renewal(renewal)
    }
}

/// The INFO lines the plugin logged, in order.
pub(crate) fn info_lines(test_host: &TestHost) -> Vec<String> {
    test_host
        .logs()
        .into_iter()
        .filter(|(level, _)| *level == LogLevel::INFO)
        .map(|(_, line)| line)
        .collect()
}

/// Polls a future once.
pub(crate) fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// The output of a future that must not wait: the hooks that do no I/O through the host.
pub(crate) fn now<F: Future>(future: F) -> F::Output {
    match poll_once(pin!(future)) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the future waited, but nothing here should"),
    }
}
