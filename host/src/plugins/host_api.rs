//! What the host offers each plugin through [`HostApiFfi`]: its log, clock and timers, a
//! private state directory, counters, and (server side) storage introspection and lease
//! control.
//!
//! One [`PluginHost`] per plugin instance, so every call is tagged with the plugin's name.
//! Counters live in memory, per plugin; [`PluginHost::counters`] reads them (the registry
//! exposes them through `ServerPlugins::counters` and logs them at shutdown). Plugins that
//! want their counters visible to clients serve them on their own route.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RResult, RStr, RString, RVec};
use async_ffi::{FfiFuture, FutureExt as _};
use gbs_plugin_interface::ffi::{
    ErrorKind, HostApiBox, HostApiFfi, HostApiFfi_TO, LeaseRenewal, LogLevel, PluginError,
};
use gbs_plugin_interface::{from_cbor, to_cbor, LeaseRequest, ShareInfo, ShareKind};

use super::plugin_log::{Escaped, LogBudget};
use crate::protocol::{
    LeaseCancelSecret, LeaseRenewSecret, LeaseSecrets, ShareNumber, StorageIndex,
};
use crate::storage::Store;

/// The longest log line a plugin may write; longer ones are cut.
const MAX_LOG_LINE: usize = 4096;
/// The longest sleep a plugin may ask for at once.
const MAX_SLEEP: Duration = Duration::from_secs(365 * 24 * 3600);
/// At most this many distinct counters per plugin; further names are ignored.
const MAX_COUNTERS: usize = 1024;

/// The host API of one plugin instance.
#[derive(Debug, Clone)]
pub struct PluginHost {
    name: Arc<str>,
    state_dir: PathBuf,
    store: Option<Arc<Store>>,
    counters: Arc<Mutex<BTreeMap<String, u64>>>,
    /// What the plugin chose through `set_lease_renewal` (a `LeaseRenewal` value).
    lease_renewal: Arc<AtomicU8>,
    log_budget: Arc<LogBudget>,
}

impl PluginHost {
    /// The host API for plugin `name`, with its state directory
    /// `<node>/plugins-state/<name>/` (created here) and, on the server side, the store.
    pub fn new(node_dir: &Path, name: &str, store: Option<Arc<Store>>) -> std::io::Result<Self> {
        let state_dir = node_dir.join("plugins-state").join(name);
        std::fs::create_dir_all(&state_dir)?;
        // Another plugin's state is none of a plugin process's business.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self {
            name: name.into(),
            state_dir,
            store,
            counters: Arc::default(),
            lease_renewal: Arc::default(),
            log_budget: Arc::default(),
        })
    }

    /// The plugin's state directory.
    pub fn state_path(&self) -> &Path {
        &self.state_dir
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A snapshot of the plugin's counters.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// How the operations this plugin admits grant leases.
    pub fn lease_renewal(&self) -> crate::storage::LeaseRenewal {
        if LeaseRenewal(self.lease_renewal.load(Ordering::Relaxed)) == LeaseRenewal::EXPLICIT {
            crate::storage::LeaseRenewal::Explicit
        } else {
            crate::storage::LeaseRenewal::Implicit
        }
    }

    /// The FFI object handed to the plugin's constructor; shares counters with `self`.
    pub fn to_ffi(&self) -> HostApiBox {
        HostApiFfi_TO::from_ptr(RArc::new(self.clone()), TD_Opaque)
    }

    fn store(&self) -> Result<Arc<Store>, PluginError> {
        self.store.clone().ok_or_else(|| PluginError {
            kind: ErrorKind::UNSUPPORTED,
            message: "storage is only available to server plugins".into(),
        })
    }
}

fn bad_input(message: impl Into<String>) -> PluginError {
    PluginError {
        kind: ErrorKind::BAD_INPUT,
        message: RString::from(message.into()),
    }
}

fn failed(message: impl Into<String>) -> PluginError {
    PluginError {
        kind: ErrorKind::FAILED,
        message: RString::from(message.into()),
    }
}

/// Cuts `text` to at most `max` bytes at a character boundary.
pub(crate) fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Runs store work on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::storage::StorageError> + Send + 'static,
) -> Result<T, PluginError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(failed(format!("storage: {error}"))),
        Err(_) => Err(failed("storage task failed")),
    }
}

#[derive(serde::Deserialize)]
struct SharesRequest {
    #[serde(rename = "storage-index", with = "serde_bytes_16")]
    storage_index: [u8; 16],
}

/// A 16-byte CBOR byte string.
mod serde_bytes_16 {
    use serde::de::{Error, Visitor};
    use serde::Deserializer;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        struct Bytes16;
        impl Visitor<'_> for Bytes16 {
            type Value = [u8; 16];
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a 16-byte byte string")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<[u8; 16], E> {
                v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(Bytes16)
    }
}

impl HostApiFfi for PluginHost {
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let plugin = &*self.name;
        if !self.log_budget.admits(plugin) {
            return;
        }
        let message = Escaped(clip(message.as_str(), MAX_LOG_LINE));
        match level {
            LogLevel::ERROR => tracing::error!(plugin, "{message}"),
            LogLevel::WARN => tracing::warn!(plugin, "{message}"),
            LogLevel::INFO => tracing::info!(plugin, "{message}"),
            LogLevel::DEBUG => tracing::debug!(plugin, "{message}"),
            _ => tracing::trace!(plugin, "{message}"),
        }
    }

    fn now_unix_millis(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    fn sleep_millis(&self, millis: u64) -> FfiFuture<()> {
        let duration = Duration::from_millis(millis).min(MAX_SLEEP);
        tokio::time::sleep(duration).into_ffi()
    }

    fn state_dir(&self) -> RString {
        self.state_dir.to_string_lossy().into_owned().into()
    }

    fn counter_add(&self, name: RStr<'_>, delta: u64) {
        let Ok(mut counters) = self.counters.lock() else {
            return;
        };
        let name = clip(name.as_str(), 200);
        if let Some(value) = counters.get_mut(name) {
            *value = value.saturating_add(delta);
        } else if counters.len() < MAX_COUNTERS {
            counters.insert(name.to_owned(), delta);
        }
    }

    fn shares(&self, request: RVec<u8>) -> FfiFuture<RResult<RVec<u8>, PluginError>> {
        let store = self.store();
        let work = async move {
            let store = store?;
            let request: SharesRequest =
                from_cbor(&request).map_err(|e| bad_input(format!("shares request: {e}")))?;
            let si = StorageIndex::from_bytes(request.storage_index);
            let facts = blocking(move || store.share_facts(&si)).await?;
            let infos: Vec<ShareInfo> = facts
                .into_iter()
                .map(|f| ShareInfo {
                    kind: match f.kind {
                        crate::protocol::ShareKind::Immutable => ShareKind::Immutable,
                        crate::protocol::ShareKind::Mutable => ShareKind::Mutable,
                    },
                    share_number: f.share_number.0,
                    size: f.size,
                    lease_expiry: f.lease_expiry,
                })
                .collect();
            Ok(RVec::from(to_cbor(&infos)))
        };
        async move { RResult::from(work.await) }.into_ffi()
    }

    fn add_lease(&self, request: RVec<u8>) -> FfiFuture<RResult<(), PluginError>> {
        let store = self.store();
        let work = async move {
            let store = store?;
            let request: LeaseRequest =
                from_cbor(&request).map_err(|e| bad_input(format!("lease request: {e}")))?;
            let si = StorageIndex::from_bytes(request.storage_index);
            let shares: BTreeSet<ShareNumber> = request
                .share_numbers
                .iter()
                .map(|&n| ShareNumber(n))
                .collect();
            let lease = LeaseSecrets {
                renew: LeaseRenewSecret::new(request.renew_secret),
                cancel: LeaseCancelSecret::new(request.cancel_secret),
            };
            blocking(move || store.add_or_renew_lease_on(&si, &shares, &lease)).await
        };
        async move { RResult::from(work.await) }.into_ffi()
    }

    fn set_lease_renewal(&self, renewal: LeaseRenewal) -> RResult<(), PluginError> {
        let chosen = self.store().and_then(|_| {
            if [LeaseRenewal::IMPLICIT, LeaseRenewal::EXPLICIT].contains(&renewal) {
                self.lease_renewal.store(renewal.0, Ordering::Relaxed);
                Ok(())
            } else {
                Err(bad_input(format!("unknown lease renewal {}", renewal.0)))
            }
        });
        RResult::from(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dir_is_created_under_the_node() {
        let node = tempfile::tempdir().unwrap();
        let host = PluginHost::new(node.path(), "access-log", None).unwrap();
        let dir = PathBuf::from(host.state_dir().into_string());
        assert_eq!(dir, node.path().join("plugins-state/access-log"));
        assert!(dir.is_dir());
    }

    #[test]
    fn counters_add_up_and_saturate() {
        let node = tempfile::tempdir().unwrap();
        let host = PluginHost::new(node.path(), "p", None).unwrap();
        let ffi = host.to_ffi();
        ffi.counter_add("uploads".into(), 2);
        ffi.counter_add("uploads".into(), 3);
        ffi.counter_add("bytes".into(), u64::MAX);
        ffi.counter_add("bytes".into(), 1);
        let counters = host.counters();
        assert_eq!(counters["uploads"], 5);
        assert_eq!(counters["bytes"], u64::MAX);
    }

    /// A log writer the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Inputs tried: 1,500 lines at once from one plugin, each holding a newline and an
    /// escape sequence to forge a line of the node's own; then, after a pause, one more.
    /// The budget refills while the lines are written (one line per 10 ms): on a loaded
    /// machine a line or two more gets through, as many as the time taken allows.
    #[test]
    fn a_plugin_log_is_escaped_and_within_its_budget() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let node = tempfile::tempdir().unwrap();
        let host = PluginHost::new(node.path(), "chatty", None).unwrap();
        let ffi = host.to_ffi();
        let mut writing = Duration::ZERO;
        tracing::subscriber::with_default(subscriber, || {
            let started = std::time::Instant::now();
            for _ in 0..1500 {
                ffi.log(LogLevel::INFO, "said\nERROR forged \u{1b}[2J".into());
            }
            writing = started.elapsed();
            // Long enough to refill a line or two of the budget.
            std::thread::sleep(Duration::from_millis(30));
            ffi.log(LogLevel::INFO, "after the pause".into());
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let said = lines.iter().filter(|l| l.contains("said")).count();
        let burst = super::super::plugin_log::LOG_BURST as usize;
        let refilled = writing.as_secs_f64() * f64::from(super::super::plugin_log::LOG_RATE);
        assert!(
            said >= burst && said as f64 <= burst as f64 + refilled.ceil(),
            "{said} lines in {writing:?}"
        );
        assert!(
            lines
                .iter()
                .all(|l| !l.starts_with("ERROR forged") && !l.contains('\u{1b}')),
            "a forged line or a raw escape"
        );
        assert!(lines
            .iter()
            .any(|l| l.contains("said\\nERROR forged \\u{1b}[2J")));
        let dropped = lines
            .iter()
            .position(|l| l.contains(&format!("dropped {} log lines of the plugin", 1500 - said)))
            .expect("the dropped lines are told");
        let after = lines
            .iter()
            .position(|l| l.contains("after the pause"))
            .expect("a line after the pause");
        assert!(dropped < after);
        assert!(
            lines[after].contains("plugin=\"chatty\"") || lines[after].contains("plugin=chatty")
        );
    }

    #[test]
    fn clip_cuts_at_a_character_boundary() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("abc", 10), "abc");
    }

    #[tokio::test]
    async fn client_side_hosts_have_no_storage() {
        let node = tempfile::tempdir().unwrap();
        let host = PluginHost::new(node.path(), "p", None).unwrap();
        let request = to_cbor(&ciborium::Value::Map(vec![(
            ciborium::Value::Text("storage-index".into()),
            ciborium::Value::Bytes(vec![0; 16]),
        )]));
        let error = host.to_ffi().shares(request.into()).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::UNSUPPORTED);
    }

    #[tokio::test]
    async fn shares_refuses_a_malformed_request() {
        let node = tempfile::tempdir().unwrap();
        let store = crate::storage::Store::open(
            &node.path().join("storage"),
            crate::storage::StoreConfig {
                reserved_space: 0,
                nodeid: [0; 20],
            },
            Arc::new(crate::storage::SystemClock),
        )
        .unwrap();
        let host = PluginHost::new(node.path(), "p", Some(Arc::new(store))).unwrap();
        let error = host.to_ffi().shares(vec![0xff].into()).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::BAD_INPUT);
        let empty = to_cbor(&ciborium::Value::Map(vec![(
            ciborium::Value::Text("storage-index".into()),
            ciborium::Value::Bytes(vec![1; 16]),
        )]));
        let answer = host.to_ffi().shares(empty.into()).await.unwrap();
        assert_eq!(from_cbor::<Vec<ShareInfo>>(&answer).unwrap(), vec![]);
    }
}
