//! Out-of-process plugins (`url = ...` or `command = ...`): the protocol of
//! `plugin-interface/docs/out-of-process.md`, behind the same plugin object a library
//! gives, so that dispatch, deadlines, status and reloads treat both alike.
//!
//! - `Remote` implements the server hooks as calls to the plugin service. Its futures
//!   only wait on sockets, so its hooks run on the request's task (no plugin thread), and
//!   a caller that gives up drops the call and its connection.
//! - Fail closed: while the service cannot be reached, `admit` answers the structured 503
//!   (`plugin-unavailable`) and its routes 503; an answer that breaks the protocol is a
//!   plugin failure (500 naming it) for that request only. Deadlines are dispatch's.
//! - `command` plugins are started and supervised by `process`; the node does not serve
//!   before each answers `describe` (readiness), and stops them when it stops.

mod address;
mod client;
mod connection;
mod describe;
mod process;
pub mod wire;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::http::Method;
use abi_stable::std_types::{RNone, ROption, RResult, RSome, RString, RVec};
use async_ffi::{FfiFuture, FutureExt as _};
use gbs_plugin_interface::ffi::{
    PluginError, Rejection, Roles, RouteRequest, RouteResponse, ServerPluginFfi,
};
use tokio::runtime::Handle;
use tokio::sync::watch;

pub use address::Address;
use connection::{Answer, Connector, Failure};
pub use describe::{check_service, CommandCheck, Service};
use describe::{describe_process, describe_service, Undescribed};
pub(super) use process::split_command;
pub(crate) use process::stop_all as stop_all_processes;
use process::{Launch, Supervised};
use wire::{envelope, Item};
pub use wire::{Description, PROTOCOL};

use super::data::MAX_PLUGIN_DATA;
use crate::config::PluginSource;

/// The largest answer to any call but `route`.
const MAX_ANSWER: usize = 1 << 20;
/// The largest `route` answer (the body, and its envelope).
const MAX_ROUTE_ANSWER: usize = (16 << 20) + 4096;
/// How long `stop` waits for the plugin's answer before stopping its process.
const STOP_CALL: Duration = Duration::from_secs(1);
/// How often a restarted plugin process is asked to `start` until it listens.
const RESTART_RETRY: Duration = Duration::from_millis(50);
const PREFIX: &str = "/gbs-plugin/v1/";

/// What the service of one plugin shares with its calls in flight.
#[derive(Debug)]
struct Shared {
    name: String,
    connector: Connector,
    deadline: Duration,
    /// Whether the last call found it unreachable: logged once per outage, not per call.
    down: AtomicBool,
}

/// A plugin service, as a server plugin object.
#[derive(Debug)]
pub(super) struct Remote {
    shared: Arc<Shared>,
    /// The runtime it was started on, where calls made off any runtime go.
    runtime: Option<Handle>,
    /// The process, when the host started it.
    process: Mutex<Option<Supervised>>,
    /// The starts of that process, for telling a restarted one to `start` too.
    starts: Option<watch::Receiver<u64>>,
    announcement: Vec<u8>,
}

/// Why a plugin service could not be used at start-up (or reload).
#[derive(Debug)]
pub(super) enum StartFailure {
    /// The configuration cannot be followed (a bad address or command).
    Config(String),
    /// It did not describe itself in time.
    Unavailable(String),
    /// Its description does not fit this host or this configuration.
    Incompatible(String),
    /// A thread or directory could not be made.
    Io(std::io::Error),
}

/// Starts (`command`) or finds (`url`) the service of plugin `name`, waits at most
/// `deadline` until it describes itself, and checks that it is `name` and has `role`
/// (`Roles::SERVER` or `Roles::CLIENT`).
pub(super) fn start(
    name: &str,
    role: Roles,
    source: &PluginSource,
    settings: &BTreeMap<String, String>,
    node_dir: &Path,
    state_dir: &Path,
    deadline: Duration,
) -> Result<(Remote, Description), StartFailure> {
    let runtime = Handle::try_current().ok();
    let (address, mut process) = match source {
        PluginSource::Url(url) => {
            if !settings.is_empty() {
                let keys: Vec<&str> = settings.keys().map(String::as_str).collect();
                tracing::warn!(plugin = name, ?keys, "settings of a plugin service the operator runs are not sent to it; configure the service itself");
            }
            (Address::parse(url).map_err(StartFailure::Config)?, None)
        }
        PluginSource::Command(command) => {
            let argv = split_command(command).map_err(StartFailure::Config)?;
            let socket = socket_path(node_dir, name).map_err(StartFailure::Io)?;
            let launch = Launch {
                name: name.to_owned(),
                argv,
                node_dir: node_dir.to_owned(),
                socket: socket.clone(),
                state_dir: state_dir.to_owned(),
                settings: settings.clone(),
                role: role_name(role),
            };
            let process = Supervised::start(launch).map_err(StartFailure::Io)?;
            (Address::Unix(socket), Some(process))
        }
        PluginSource::Library(_) | PluginSource::Lookup => {
            return Err(StartFailure::Config("not an out-of-process plugin".into()))
        }
    };
    let described = match &process {
        Some(process) => describe_process(&address, process, deadline),
        None => describe_service(&address, deadline),
    }
    .map_err(|undescribed| match undescribed {
        Undescribed::Unanswered(why) => StartFailure::Unavailable(why),
        Undescribed::Invalid(why) => StartFailure::Incompatible(why),
    });
    let description = match described.and_then(|d| fits(&d, name, role).map(|()| d)) {
        Ok(description) => description,
        Err(failure) => {
            if let Some(process) = process.as_mut() {
                process.stop();
            }
            return Err(failure);
        }
    };
    let starts = process.as_ref().and_then(Supervised::starts);
    let announcement = gbs_plugin_interface::to_cbor(&description.announcement);
    if announcement.len() > MAX_PLUGIN_DATA {
        return Err(StartFailure::Incompatible(format!(
            "its announcement is {} bytes, more than {MAX_PLUGIN_DATA}",
            announcement.len()
        )));
    }
    let remote = Remote {
        shared: Arc::new(Shared {
            name: name.to_owned(),
            connector: Connector::new(address),
            deadline,
            down: AtomicBool::new(false),
        }),
        runtime,
        process: Mutex::new(process),
        starts,
        announcement,
    };
    Ok((remote, description))
}

/// Where the host asks a plugin it starts to listen: one socket per start, so that a
/// reloaded version never takes its predecessor's place while that one still serves.
fn socket_path(node_dir: &Path, name: &str) -> std::io::Result<std::path::PathBuf> {
    static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = node_dir.join("private").join("plugin-sockets");
    std::fs::create_dir_all(&dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let start = STARTS.fetch_add(1, Ordering::Relaxed);
    #[cfg(target_os = "linux")]
    if start == 0 {
        remove_sockets_of_ended_processes(&dir);
    }
    Ok(dir.join(format!("{name}.{}.{start}.sock", std::process::id())))
}

/// Removes the sockets that processes no longer running (a node or client that was
/// killed, or one before a crash) left in `dir`: each socket's name holds the process id
/// of the node or client that started its plugin, and `gbs client --node` may share the
/// directory with a running node.
#[cfg(target_os = "linux")]
fn remove_sockets_of_ended_processes(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".sock")) else {
            continue;
        };
        // `{plugin}.{pid}.{start}`; a plugin name may hold dots, the numbers cannot.
        let mut parts = stem.rsplitn(3, '.');
        let (Some(_start), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn role_name(role: Roles) -> &'static str {
    if role == Roles::CLIENT {
        "client"
    } else {
        "server"
    }
}

/// Whether a description is that of plugin `name` in `role`, speaking our protocol.
fn fits(description: &Description, name: &str, role: Roles) -> Result<(), StartFailure> {
    if description.protocol != PROTOCOL {
        return Err(StartFailure::Incompatible(format!(
            "it speaks protocol version {}; this host speaks {PROTOCOL}",
            description.protocol
        )));
    }
    if description.name != name {
        return Err(StartFailure::Incompatible(format!(
            "it calls itself {:?}",
            description.name
        )));
    }
    if !description.roles.contains(role) {
        return Err(StartFailure::Incompatible(format!(
            "it does not have the {} role",
            role_name(role)
        )));
    }
    crate::config::check_plugin_version(&description.version).map_err(StartFailure::Incompatible)
}

/// Runs `future` to its end on a thread of its own with a runtime of its own, blocking the
/// caller: for the calls made from synchronous code (readiness, checks, the client's
/// `matches`), wherever that code runs, a runtime's thread included.
fn on_own_runtime<T: Send>(
    future: impl std::future::Future<Output = Result<T, String>> + Send,
) -> Result<T, String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?
                    .block_on(future)
            })
            .join()
            .unwrap_or_else(|_| Err("the call panicked".into()))
    })
}

/// A call that produced no usable answer, as the hooks see it.
enum CallFailed {
    /// Not reachable: fail closed.
    Unavailable(String),
    /// Reached, but its answer breaks the protocol (or is an error): the plugin failed.
    Failed(String),
}

fn answer_of<T>(
    result: Result<Answer, Failure>,
    decode: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, CallFailed> {
    match result {
        Err(Failure::Unavailable(why)) => Err(CallFailed::Unavailable(why)),
        Err(Failure::TooLarge(limit)) => Err(CallFailed::Failed(format!(
            "it answered more than {limit} bytes"
        ))),
        Ok(answer) if (200..300).contains(&answer.status) => {
            decode(&answer.body).map_err(CallFailed::Failed)
        }
        Ok(answer) => Err(CallFailed::Failed(wire::error_message(
            answer.status,
            &answer.body,
        ))),
    }
}

fn failed(message: impl Into<String>) -> PluginError {
    PluginError::failed(message)
}

/// Ignores a body: any 2xx answer acknowledges.
fn acknowledged(_: &[u8]) -> Result<(), String> {
    Ok(())
}

impl Shared {
    /// POSTs `body` to `call` under the hook deadline and decodes the answer.
    async fn post<T>(
        &self,
        call: &str,
        body: Vec<u8>,
        limit: usize,
        decode: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<T, CallFailed> {
        let path = format!("{PREFIX}{call}");
        let result = self
            .connector
            .call(Method::POST, &path, body, limit, self.deadline)
            .await;
        answer_of(result, decode)
    }

    /// Logs the first failure to reach the plugin and its return, not every call between.
    fn note<T>(&self, result: &Result<T, CallFailed>) {
        let unreachable = matches!(result, Err(CallFailed::Unavailable(_)));
        if self.down.swap(unreachable, Ordering::Relaxed) != unreachable {
            match result {
                Err(CallFailed::Unavailable(why)) => {
                    tracing::warn!(plugin = %self.name, %why, "storage plugin unreachable; the operations it guards fail closed")
                }
                _ => tracing::info!(plugin = %self.name, "storage plugin reachable again"),
            }
        }
    }
}

/// Aborts a call's task when its caller gives up on it.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Remote {
    /// POSTs `body` to `call` as a task of the node's runtime; `finish` turns the outcome
    /// into the hook's answer.
    fn call<T, D>(
        &self,
        call: &'static str,
        body: Vec<u8>,
        limit: usize,
        decode: D,
        finish: fn(&Shared, Result<T, CallFailed>) -> RResult<T, PluginError>,
    ) -> FfiFuture<RResult<T, PluginError>>
    where
        T: Send + 'static,
        D: FnOnce(&[u8]) -> Result<T, String> + Send + 'static,
    {
        let shared = self.shared.clone();
        let work = async move {
            let result = shared.post(call, body, limit, decode).await;
            shared.note(&result);
            finish(&shared, result)
        };
        let runtime = self.runtime.clone();
        async move {
            // On a runtime's thread (a request's task), the call runs right there; anywhere
            // else it becomes a task of the node's runtime, aborted if the caller gives up.
            let runtime = match (Handle::try_current(), runtime) {
                (Ok(_), _) | (Err(_), None) => return work.await,
                (Err(_), Some(runtime)) => runtime,
            };
            let task = runtime.spawn(work);
            let _abort = AbortOnDrop(task.abort_handle());
            task.await
                .unwrap_or_else(|e| RResult::RErr(failed(format!("the call failed: {e}"))))
        }
        .into_ffi()
    }
}

/// The usual ending: an unreachable plugin or a broken answer is a failed call.
fn plainly<T>(_: &Shared, result: Result<T, CallFailed>) -> RResult<T, PluginError> {
    match result {
        Ok(value) => RResult::ROk(value),
        Err(CallFailed::Unavailable(why)) => {
            RResult::RErr(failed(format!("the plugin is unreachable: {why}")))
        }
        Err(CallFailed::Failed(why)) => RResult::RErr(failed(why)),
    }
}

impl ServerPluginFfi for Remote {
    fn announce(&self) -> RResult<RVec<u8>, PluginError> {
        RResult::ROk(self.announcement.clone().into())
    }

    fn admit(
        &self,
        operation: RVec<u8>,
        plugin_data: ROption<RVec<u8>>,
    ) -> FfiFuture<RResult<ROption<Rejection>, PluginError>> {
        let data = match &plugin_data {
            RSome(data) => Item::Bytes(data),
            RNone => Item::Null,
        };
        let body = envelope(&[("operation", Item::Encoded(&operation)), ("data", data)]);
        self.call(
            "server/admit",
            body,
            MAX_ANSWER,
            |body| wire::admission(body).map(ROption::from),
            |shared, result| match result {
                // Fail closed, with the structured body a client can read.
                Err(CallFailed::Unavailable(_)) => RResult::ROk(RSome(Rejection {
                    status: 503,
                    code: "plugin-unavailable".into(),
                    message: "the storage plugin is not reachable".into(),
                    details: RVec::new(),
                })),
                other => plainly(shared, other),
            },
        )
    }

    fn committed(
        &self,
        operation: RVec<u8>,
        outcome: RVec<u8>,
    ) -> FfiFuture<RResult<(), PluginError>> {
        let body = committed_envelope(&operation, &outcome);
        self.call("server/committed", body, MAX_ANSWER, acknowledged, plainly)
    }

    fn route(&self, request: RouteRequest) -> FfiFuture<RResult<RouteResponse, PluginError>> {
        self.call(
            "server/route",
            route_envelope(&request),
            MAX_ROUTE_ANSWER,
            wire::route_response,
            |shared, result| match result {
                Err(CallFailed::Unavailable(_)) => RResult::ROk(RouteResponse {
                    status: 503,
                    content_type: "text/plain; charset=utf-8".into(),
                    body: format!("storage plugin {} is not reachable", shared.name)
                        .into_bytes()
                        .into(),
                }),
                other => plainly(shared, other),
            },
        )
    }

    fn start(&self) -> FfiFuture<RResult<(), PluginError>> {
        let first = self.call(
            "server/start",
            vec![0xa0],
            MAX_ANSWER,
            acknowledged,
            optional,
        );
        let Some(mut starts) = self.starts.clone() else {
            return first;
        };
        // The process running now is the one `first` tells.
        starts.borrow_and_update();
        let shared = self.shared.clone();
        async move {
            let answer = first.await;
            if answer.is_rok() {
                // A process started again (it exited, or was killed) is told to start as
                // well, or a service it runs in the background would never run again.
                // Until the plugin is stopped, which closes `starts`.
                while starts.changed().await.is_ok() {
                    start_again(&shared).await;
                }
            }
            answer
        }
        .into_ffi()
    }

    fn stop(&self) -> FfiFuture<RResult<(), PluginError>> {
        let asked = self.call(
            "server/stop",
            vec![0xa0],
            MAX_ANSWER,
            acknowledged,
            optional,
        );
        let process = self
            .process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        async move {
            // The hook is the plugin's answer (at most 1 s). Its process then exits on its
            // own time: dropping `process` closes its stdin, and its supervisor kills it
            // `process::STOP_GRACE` later if need be (and the node's exit waits for that).
            // Waited for here, a slow exit read as a `stop` that was not answered.
            let answer = tokio::time::timeout(STOP_CALL, asked)
                .await
                .unwrap_or_else(|_| RResult::RErr(failed("no answer to stop within 1 s")));
            drop(process);
            answer
        }
        .into_ffi()
    }
}

/// Tells a plugin process its supervisor has just started again to `start`, once it
/// listens: asked again every [`RESTART_RETRY`] while it is unreachable, for at most the
/// hook deadline.
async fn start_again(shared: &Shared) {
    let until = tokio::time::Instant::now() + shared.deadline;
    loop {
        let result = shared
            .post("server/start", vec![0xa0], MAX_ANSWER, acknowledged)
            .await;
        let unreachable = matches!(result, Err(CallFailed::Unavailable(_)));
        if unreachable && tokio::time::Instant::now() < until {
            tokio::time::sleep(RESTART_RETRY).await;
            continue;
        }
        shared.note(&result);
        match optional(shared, result) {
            RResult::ROk(()) => {
                tracing::info!(plugin = %shared.name, "plugin process started again; told to start")
            }
            RResult::RErr(error) => {
                tracing::warn!(plugin = %shared.name, %error, "plugin process started again; start failed")
            }
        }
        return;
    }
}

/// A `committed` call as the protocol sends it, to either side.
fn committed_envelope(operation: &[u8], outcome: &[u8]) -> Vec<u8> {
    envelope(&[
        ("operation", Item::Encoded(operation)),
        ("outcome", Item::Encoded(outcome)),
    ])
}

/// A route request as the protocol sends it, to either side.
fn route_envelope(request: &RouteRequest) -> Vec<u8> {
    let text = |s: &RString| Item::Value(ciborium::Value::Text(s.as_str().to_owned()));
    envelope(&[
        ("method", text(&request.method)),
        ("path", text(&request.path)),
        ("query", text(&request.query)),
        ("content-type", text(&request.content_type)),
        ("body", Item::Bytes(&request.body)),
    ])
}

/// `start` and `stop` are optional: a 404 answer means there is nothing to do.
fn optional(shared: &Shared, result: Result<(), CallFailed>) -> RResult<(), PluginError> {
    match result {
        Err(CallFailed::Failed(why)) if why.starts_with("status 404") => RResult::ROk(()),
        other => plainly(shared, other),
    }
}
