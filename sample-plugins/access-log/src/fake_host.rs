//! A host API for unit tests: records what the plugin logs, sleeps and counts, and lets a
//! test decide how many sleeps complete, so the background service runs without a clock.

use std::collections::BTreeMap;
use std::future::{pending, Future};
use std::path::{Path, PathBuf};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RResult, RStr, RString, RVec};
use async_ffi::{FfiFuture, FutureExt as _};
use gbs_plugin_interface::ffi::{HostApiFfi, HostApiFfi_TO};
use gbs_plugin_interface::{Host, LogLevel, PluginError};

#[derive(Debug, Default)]
pub(crate) struct FakeHost {
    state_dir: PathBuf,
    /// Sleeps left that complete at once; every later sleep never completes.
    ready_sleeps: AtomicUsize,
    pub(crate) logs: Mutex<Vec<(LogLevel, String)>>,
    pub(crate) sleeps_millis: Mutex<Vec<u64>>,
    pub(crate) metrics: Mutex<BTreeMap<String, u64>>,
}

impl FakeHost {
    pub(crate) fn new(state_dir: &Path, ready_sleeps: usize) -> Arc<Self> {
        Arc::new(Self {
            state_dir: state_dir.to_owned(),
            ready_sleeps: AtomicUsize::new(ready_sleeps),
            ..Self::default()
        })
    }

    pub(crate) fn host(self: &Arc<Self>) -> Host {
        Host::from_ffi(HostApiFfi_TO::from_ptr(
            RArc::new(Api(self.clone())),
            TD_Opaque,
        ))
    }

    pub(crate) fn info_lines(&self) -> Vec<String> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|(level, _)| *level == LogLevel::INFO)
            .map(|(_, line)| line.clone())
            .collect()
    }
}

struct Api(Arc<FakeHost>);

impl HostApiFfi for Api {
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let line = message.as_str().to_owned();
        self.0.logs.lock().unwrap().push((level, line));
    }

    fn now_unix_millis(&self) -> u64 {
        1_700_000_000_000
    }

    fn sleep_millis(&self, millis: u64) -> FfiFuture<()> {
        self.0.sleeps_millis.lock().unwrap().push(millis);
        let ready = self
            .0
            .ready_sleeps
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if ready {
            async {}.into_ffi()
        } else {
            pending().into_ffi()
        }
    }

    fn state_dir(&self) -> RString {
        self.0.state_dir.to_string_lossy().into_owned().into()
    }

    fn counter_add(&self, name: RStr<'_>, delta: u64) {
        *self
            .0
            .metrics
            .lock()
            .unwrap()
            .entry(name.as_str().to_owned())
            .or_default() += delta;
    }

    fn shares(&self, _request: RVec<u8>) -> FfiFuture<RResult<RVec<u8>, PluginError>> {
        async { RResult::RErr(PluginError::unsupported("fake host")) }.into_ffi()
    }

    fn add_lease(&self, _request: RVec<u8>) -> FfiFuture<RResult<(), PluginError>> {
        async { RResult::RErr(PluginError::unsupported("fake host")) }.into_ffi()
    }
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
