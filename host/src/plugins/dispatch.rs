//! Calling server plugins' hooks: admit before storage is touched, committed after success,
//! plugin routes, and background services. Whatever a plugin returns is checked here before
//! it reaches a client.
//!
//! - An operation no plugin is interested in costs one bit test: the operation is not even
//!   built, let alone encoded.
//! - `committed` runs after the store succeeded and before the answer is sent, so a plugin
//!   has counted an operation by the time its client learns of it; the plugins that admitted
//!   an operation are told concurrently. Its failures are logged and never change the answer.
//! - A plugin is called only for the hooks it implements (`ServerHooks`, interface 1.2): one
//!   without `admit` admits every operation it is interested in, uncalled.
//! - Every hook runs on the plugin's own thread (`executor`) under a deadline
//!   ([`HOOK_DEADLINE`] unless configured); a plugin that overruns it, or whose thread is
//!   stuck, fails closed (503), and requests it does not guard never wait for it.
//! - A plugin error, a panic caught in the plugin (or one that escaped its future), or an
//!   invalid rejection becomes [`Refusal::Failed`] (500 naming the plugin), logged with the
//!   plugin's message; the server goes on serving.

use std::time::Duration;

use abi_stable::std_types::{RNone, ROption, RResult, RSome, RVec};
use async_ffi::FfiFuture;
use gbs_plugin_interface::ffi::{
    OperationKind, PluginError, Rejection, RouteRequest, RouteResponse, ServerHooks,
};
use gbs_plugin_interface::{to_cbor, Operation, Outcome};
use tokio::task::JoinHandle;

use super::data::{is_one_cbor_item, PluginData};
use super::executor::{run_batch, NotRun, Order};
use super::registry::{ServerEntry, ServerPlugins};
use crate::storage::LeaseRenewal;
use gbs_plugin_interface::ffi::ServerPluginBox;

/// The server hooks a plugin may declare, by the names the out-of-process protocol and
/// `gbs plugin status` give them.
pub(crate) const HOOK_NAMES: [(&str, ServerHooks); 2] = [
    ("admit", ServerHooks::ADMIT),
    ("committed", ServerHooks::COMMITTED),
];

/// How long one hook call may take.
pub const HOOK_DEADLINE: Duration = Duration::from_secs(30);
/// The largest plugin route response body passed on.
pub const MAX_ROUTE_RESPONSE: usize = 16 << 20;
/// The statuses a plugin may reject with (design §3).
pub const REJECTION_STATUSES: [u16; 8] = [400, 401, 402, 403, 409, 413, 429, 503];
/// The largest `details` of a rejection, so that the whole body fits the client's limit.
const MAX_DETAILS: usize = 32 * 1024;
const MAX_CODE: usize = 128;
const MAX_MESSAGE: usize = 1024;
/// The longest `stop` may take, and how long shutdown then waits for a background service
/// to end.
const SERVICE_GRACE: Duration = Duration::from_secs(5);

/// An operation admitted by every interested plugin; hand it back to
/// [`ServerPlugins::committed`] after success.
#[derive(Debug, Default)]
#[must_use = "pass the admission to `committed` after the operation succeeds"]
pub struct Admission {
    /// Indexes of the plugins that admitted it and are told of its outcome (those that
    /// implement `committed`).
    admitted: Vec<usize>,
    /// The encoded operation, for `committed`.
    operation: Vec<u8>,
    /// Explicit when a plugin that admitted it charges for leases.
    lease_renewal: LeaseRenewal,
}

impl Admission {
    /// How the admitted operation grants leases.
    pub fn lease_renewal(&self) -> LeaseRenewal {
        self.lease_renewal
    }
}

/// Why plugins stopped a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// A valid rejection (or a deadline overrun, as 503): send `status` with the CBOR `body`
    /// and `X-Tahoe-Plugin-Rejected: plugin`.
    Rejected {
        /// The plugin.
        plugin: String,
        /// One of [`REJECTION_STATUSES`].
        status: u16,
        /// `{"plugin", "code", "message", "details"}` as CBOR.
        body: Vec<u8>,
    },
    /// The plugin failed or answered something invalid: 500 naming it.
    Failed {
        /// The plugin.
        plugin: String,
    },
    /// A plugin route answered something the host does not pass on: 502 naming it.
    BadRouteResponse {
        /// The plugin.
        plugin: String,
    },
    /// No plugin of that name (a plugin route): 404.
    NoSuchPlugin,
}

enum CallError {
    TimedOut(Duration),
    Failed(String),
}

/// Runs one hook on the plugin's thread and awaits it under `deadline`, catching a panic
/// that escaped the plugin's guard. A plugin whose thread is stuck or swamped fails closed
/// like one that overran the deadline.
async fn call<T: Send + 'static>(
    plugin: &ServerEntry,
    deadline: Duration,
    hook: impl FnOnce(&ServerPluginBox) -> FfiFuture<RResult<T, PluginError>> + Send + 'static,
) -> Result<T, CallError> {
    let object = plugin.object.clone();
    let answer = plugin.thread.run(deadline, move || hook(&object)).await;
    answer_of(plugin, deadline, answer)
}

/// What a hook call came to, counted in the plugin's statistics.
fn answer_of<T>(
    plugin: &ServerEntry,
    deadline: Duration,
    answer: Result<RResult<T, PluginError>, NotRun>,
) -> Result<T, CallError> {
    use std::sync::atomic::Ordering::Relaxed;
    plugin.stats.calls.fetch_add(1, Relaxed);
    let result = match answer {
        Err(NotRun::Unavailable | NotRun::TimedOut) => Err(CallError::TimedOut(deadline)),
        Err(NotRun::Panicked) => Err(CallError::Failed("its future panicked".into())),
        Ok(RResult::RErr(error)) => Err(CallError::Failed(error.to_string())),
        Ok(RResult::ROk(value)) => Ok(value),
    };
    if result.is_err() {
        plugin.stats.failures.fetch_add(1, Relaxed);
    }
    result
}

fn text(s: &str) -> ciborium::Value {
    ciborium::Value::Text(s.to_owned())
}

fn rejection_body(plugin: &str, code: &str, message: &str, details: ciborium::Value) -> Vec<u8> {
    to_cbor(&ciborium::Value::Map(vec![
        (text("plugin"), text(plugin)),
        (text("code"), text(code)),
        (text("message"), text(message)),
        (text("details"), details),
    ]))
}

impl CallError {
    fn into_refusal(self, plugin: &str, hook: &str) -> Refusal {
        match self {
            Self::TimedOut(deadline) => {
                tracing::error!(
                    plugin,
                    hook,
                    "storage plugin did not answer within {deadline:?}"
                );
                Refusal::Rejected {
                    plugin: plugin.to_owned(),
                    status: 503,
                    body: rejection_body(
                        plugin,
                        "plugin-timeout",
                        "the storage plugin did not answer in time",
                        ciborium::Value::Null,
                    ),
                }
            }
            Self::Failed(message) => {
                tracing::error!(plugin, hook, %message, "storage plugin failed");
                Refusal::Failed {
                    plugin: plugin.to_owned(),
                }
            }
        }
    }
}

/// Checks a plugin's rejection and encodes the body a client gets. Public for the fuzz
/// targets.
#[doc(hidden)]
pub fn checked_rejection(plugin: &str, rejection: &Rejection) -> Result<Refusal, String> {
    if !REJECTION_STATUSES.contains(&rejection.status) {
        return Err(format!(
            "status {} is not one a plugin may reject with",
            rejection.status
        ));
    }
    if rejection.code.len() > MAX_CODE || rejection.message.len() > MAX_MESSAGE {
        return Err("code or message too long".into());
    }
    let details = if rejection.details.is_empty() {
        ciborium::Value::Null
    } else if rejection.details.len() > MAX_DETAILS || !is_one_cbor_item(&rejection.details) {
        return Err("details are not one CBOR item of at most 32 KiB".into());
    } else {
        ciborium::from_reader(rejection.details.as_slice()).map_err(|e| e.to_string())?
    };
    Ok(Refusal::Rejected {
        plugin: plugin.to_owned(),
        status: rejection.status,
        body: rejection_body(plugin, &rejection.code, &rejection.message, details),
    })
}

impl ServerPlugins {
    fn interested(&self, kind: OperationKind) -> impl Iterator<Item = (usize, &ServerEntry)> {
        self.plugins
            .iter()
            .enumerate()
            .filter(move |(_, p)| p.interests.contains(kind))
            .map(|(index, p)| (index, &**p))
    }

    /// Asks every plugin interested in `kind`, in config order, to admit the operation
    /// `operation` builds (called only if some plugin is interested).
    pub async fn admit(
        &self,
        kind: OperationKind,
        operation: impl FnOnce() -> Operation,
        data: &PluginData,
    ) -> Result<Admission, Refusal> {
        if !self.interests.contains(kind) {
            return Ok(Admission::default());
        }
        let encoded = operation().to_cbor();
        let interested: Vec<(usize, &ServerEntry)> = self.interested(kind).collect();
        // A plugin without `admit` admits every operation it is interested in, uncalled.
        let asked: Vec<&ServerEntry> = interested
            .iter()
            .map(|(_, plugin)| *plugin)
            .filter(|plugin| plugin.hooks.contains(ServerHooks::ADMIT))
            .collect();
        let calls = asked
            .iter()
            .map(|plugin| {
                let plugin_data: ROption<RVec<u8>> = match data.get(&plugin.name) {
                    Some(bytes) => RSome(bytes.to_vec().into()),
                    None => RNone,
                };
                let (object, operation) = (plugin.object.clone(), encoded.clone());
                let hook = move || object.admit(operation.into(), plugin_data);
                (&plugin.thread, hook)
            })
            .collect();
        // In config order, stopping at the first plugin that does not admit.
        let admitted_by = |answer: &Result<RResult<ROption<Rejection>, PluginError>, NotRun>| {
            !matches!(answer, Ok(RResult::ROk(RNone)))
        };
        let answers = run_batch(calls, self.deadline, Order::InTurn { stop: admitted_by }).await;
        for (plugin, answer) in asked.into_iter().zip(answers) {
            let answer = answer_of(plugin, self.deadline, answer)
                .map_err(|e| e.into_refusal(&plugin.name, "admit"))?;
            if let RSome(rejection) = answer {
                return Err(match checked_rejection(&plugin.name, &rejection) {
                    Ok(refusal) => {
                        tracing::debug!(plugin = %plugin.name, status = rejection.status, code = %rejection.code, "request rejected by storage plugin");
                        refusal
                    }
                    Err(why) => {
                        tracing::error!(plugin = %plugin.name, %why, "storage plugin sent an invalid rejection");
                        // A failed call, as `gbs plugin status` counts them.
                        plugin
                            .stats
                            .failures
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Refusal::Failed {
                            plugin: plugin.name.clone(),
                        }
                    }
                });
            }
        }
        let explicit = interested
            .iter()
            .any(|(_, plugin)| plugin.host.lease_renewal() == LeaseRenewal::Explicit);
        let lease_renewal = if explicit {
            LeaseRenewal::Explicit
        } else {
            LeaseRenewal::Implicit
        };
        // Only the plugins with `committed` are told of the outcome.
        let admitted = interested
            .into_iter()
            .filter(|(_, plugin)| plugin.hooks.contains(ServerHooks::COMMITTED))
            .map(|(index, _)| index)
            .collect();
        Ok(Admission {
            admitted,
            operation: encoded,
            lease_renewal,
        })
    }

    /// Tells the plugins that admitted an operation what it did, all at once (each on its
    /// own thread). Failures are logged only: the operation already happened.
    pub async fn committed(&self, admission: Admission, outcome: impl FnOnce() -> Outcome) {
        if admission.admitted.is_empty() {
            return;
        }
        let outcome = outcome().to_cbor();
        let plugins: Vec<&ServerEntry> = admission
            .admitted
            .iter()
            .filter_map(|&index| self.plugins.get(index).map(|p| &**p))
            .collect();
        let calls = plugins
            .iter()
            .map(|plugin| {
                let (object, operation, outcome) = (
                    plugin.object.clone(),
                    admission.operation.clone(),
                    outcome.clone(),
                );
                let hook = move || object.committed(operation.into(), outcome.into());
                (&plugin.thread, hook)
            })
            .collect();
        let answers = run_batch(calls, self.deadline, Order::Together).await;
        for (plugin, answer) in plugins.into_iter().zip(answers) {
            if let Err(error) = answer_of(plugin, self.deadline, answer) {
                // Logged inside; the client's request already succeeded.
                let _ = error.into_refusal(&plugin.name, "committed");
            }
        }
    }

    /// Serves `/storage/v1/plugin/<name>/<path>`: the plugin's answer if it is a valid one.
    pub async fn route(&self, name: &str, request: RouteRequest) -> Result<RouteResponse, Refusal> {
        let plugin = self
            .plugins
            .iter()
            .find(|p| p.name == name)
            .ok_or(Refusal::NoSuchPlugin)?;
        let response = call(plugin, self.deadline, move |object| object.route(request))
            .await
            .map_err(|e| e.into_refusal(&plugin.name, "route"))?;
        if !passable_route_response(&response) {
            tracing::error!(plugin = %plugin.name, status = response.status, bytes = response.body.len(), "storage plugin route answered something invalid");
            return Err(Refusal::BadRouteResponse {
                plugin: plugin.name.clone(),
            });
        }
        Ok(response)
    }

    /// Starts the background service of every plugin whose service has not started yet;
    /// call once the server is listening (and again after a reload, for new plugins).
    pub fn start_services(&self) {
        for plugin in &self.plugins {
            let mut service = plugin.service.lock().unwrap_or_else(|e| e.into_inner());
            if service.is_none() {
                *service = Some(start_service(plugin));
            }
        }
    }

    /// Stops every plugin's background service (see `stop_plugin`).
    pub async fn stop_services(&self) {
        for plugin in &self.plugins {
            stop_plugin(plugin, self.deadline).await;
        }
    }
}

/// Whether a plugin route's answer may be passed on to the client: a status from 200 to
/// 599, a body of at most [`MAX_ROUTE_RESPONSE`] and a short, printable content type.
/// Public for the fuzz targets.
#[doc(hidden)]
pub fn passable_route_response(response: &RouteResponse) -> bool {
    let content_type_ok = response.content_type.len() <= 256
        && response
            .content_type
            .bytes()
            .all(|b| b == b' ' || b.is_ascii_graphic());
    (200..=599).contains(&response.status)
        && response.body.len() <= MAX_ROUTE_RESPONSE
        && content_type_ok
}

fn start_service(plugin: &ServerEntry) -> JoinHandle<()> {
    let name = plugin.name.clone();
    let object = plugin.object.clone();
    // On the plugin's thread, with no deadline: a service runs until `stop`.
    let service = plugin.thread.run_service(move || object.start());
    tokio::spawn(async move {
        match service.await {
            Ok(RResult::ROk(())) => {
                tracing::debug!(plugin = %name, "background service ended")
            }
            Ok(RResult::RErr(error)) => {
                tracing::error!(plugin = %name, %error, "background service failed")
            }
            Err(NotRun::Panicked) => {
                tracing::error!(plugin = %name, "background service panicked")
            }
            Err(NotRun::Unavailable | NotRun::TimedOut) => {
                tracing::error!(plugin = %name, "background service could not start")
            }
        }
    })
}

/// Calls a plugin's `stop` (under `deadline`, at most [`SERVICE_GRACE`]), then waits as
/// long again for its background service to end and drops it if it does not. A plugin
/// whose service never started gets no `stop`.
pub(super) async fn stop_plugin(plugin: &ServerEntry, deadline: Duration) {
    let service = plugin
        .service
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let Some(task) = service else {
        return;
    };
    let deadline = deadline.min(SERVICE_GRACE);
    if let Err(error) = call(plugin, deadline, |object| object.stop()).await {
        let _ = error.into_refusal(&plugin.name, "stop");
    }
    let abort = task.abort_handle();
    if tokio::time::timeout(SERVICE_GRACE, task).await.is_err() {
        tracing::warn!(plugin = %plugin.name, "background service still running after stop; dropped");
        abort.abort();
    }
    tracing::debug!(plugin = %plugin.name, counters = ?plugin.host.counters(), "storage plugin stopped");
}

#[cfg(test)]
mod tests;
