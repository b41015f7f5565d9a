//! Asking a plugin service to describe itself: readiness at start-up (until it answers,
//! or its process exits), and `gbs plugin check` of a running service or a command.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ::http::Method;
use gbs_plugin_interface::ffi::Roles;

use super::connection::Connector;
use super::process::{split_command, Launch, Supervised};
use super::{
    answer_of, on_own_runtime, role_name, wire, Address, CallFailed, Description, MAX_ANSWER,
    PREFIX, PROTOCOL,
};
use crate::plugins::check::{PluginLine, Report, Status};

/// How often readiness asks `describe`.
const READY_POLL: Duration = Duration::from_millis(50);

/// What `gbs plugin check` checks besides libraries.
#[derive(Debug, Clone)]
pub enum Service {
    /// A running service.
    At(Address),
    /// A command, started for the check (its state in a scratch directory) and stopped
    /// after it.
    Command(CommandCheck),
}

/// How to start a command for a check.
#[derive(Debug, Clone)]
pub struct CommandCheck {
    pub command: String,
    /// The directory it runs in (a node's, for `gbs plugin list`).
    pub dir: PathBuf,
    /// The plugin's name in `tahoe.cfg`, when known (`GBS_PLUGIN_NAME` is unset otherwise).
    pub name: Option<String>,
    pub role: Roles,
    pub settings: BTreeMap<String, String>,
}

impl CommandCheck {
    /// `gbs plugin check --command`: no name, no settings, in the current directory.
    pub fn bare(command: &str) -> Self {
        Self {
            command: command.to_owned(),
            dir: std::env::current_dir().unwrap_or_default(),
            name: None,
            role: Roles::SERVER,
            settings: BTreeMap::new(),
        }
    }
}

/// `gbs plugin check` of a plugin service: its description, within `deadline`, and whether
/// this host speaks its protocol.
pub fn check_service(service: &Service, deadline: Duration) -> Report {
    let described = match service {
        Service::At(address) => describe_service(address, deadline),
        Service::Command(check) => describe_command(check, deadline),
    };
    let description = match described {
        Ok(description) => description,
        Err(Undescribed::Unanswered(why)) => return Report::unusable(why),
        Err(Undescribed::Invalid(why)) => return Report::incompatible(why),
    };
    let mut reasons = Vec::new();
    if description.protocol != PROTOCOL {
        reasons.push(format!(
            "it speaks protocol version {}; this host speaks {PROTOCOL}",
            description.protocol
        ));
    }
    if description.roles == Roles(0) {
        reasons.push("it declares no role".into());
    }
    if crate::config::check_plugin_name(&description.name).is_err() {
        reasons.push(format!(
            "its name {:?} is not one tahoe.cfg can name",
            description.name
        ));
    }
    if let Err(why) = crate::config::check_plugin_version(&description.version) {
        reasons.push(why);
    }
    Report {
        status: if reasons.is_empty() {
            Status::Compatible
        } else {
            Status::Incompatible
        },
        interface: Some(format!("out-of-process {}", description.protocol)),
        plugins: vec![PluginLine {
            name: description.name,
            version: description.version,
            server: description.roles.contains(Roles::SERVER),
            client: description.roles.contains(Roles::CLIENT),
        }],
        reasons,
        details: None,
    }
}

/// Why a service gave no description.
#[derive(Debug)]
pub(super) enum Undescribed {
    /// It did not answer in time, or its process ended first.
    Unanswered(String),
    /// It answered, but not with a description this host can read: a plugin, but not one
    /// this host can use.
    Invalid(String),
}

impl Undescribed {
    fn map(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            Self::Unanswered(why) => Self::Unanswered(f(why)),
            Self::Invalid(why) => Self::Invalid(f(why)),
        }
    }
}

/// Starts a command with its state in a scratch directory, takes its description and
/// stops it: at once when it gave none (it has had its time), else as the node would.
fn describe_command(check: &CommandCheck, deadline: Duration) -> Result<Description, Undescribed> {
    static CHECKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let argv = split_command(&check.command).map_err(Undescribed::Unanswered)?;
    let scratch = std::env::temp_dir().join(format!(
        "gbs-plugin-check-{}-{}",
        std::process::id(),
        CHECKS.fetch_add(1, Ordering::Relaxed)
    ));
    let state_dir = scratch.join("state");
    std::fs::create_dir_all(&state_dir)
        .map_err(|e| Undescribed::Unanswered(format!("{}: {e}", scratch.display())))?;
    let socket = scratch.join("plugin.sock");
    let launch = Launch {
        name: check.name.clone().unwrap_or_default(),
        argv,
        node_dir: check.dir.clone(),
        socket: socket.clone(),
        state_dir,
        settings: check.settings.clone(),
        role: role_name(check.role),
    };
    let mut process =
        Supervised::start(launch).map_err(|e| Undescribed::Unanswered(e.to_string()))?;
    let described = describe_process(&Address::Unix(socket), &process, deadline);
    match described {
        Ok(_) => process.stop(),
        Err(_) => process.kill(),
    }
    let _ = std::fs::remove_dir_all(&scratch);
    described
}

/// Asks the service at `address` to describe itself until it does, for at most `wait`.
/// Blocking: it runs on a thread of its own with a runtime of its own, so it may be called
/// from anywhere (start-up, a reload, `gbs plugin check`).
pub(super) fn describe_service(
    address: &Address,
    wait: Duration,
) -> Result<Description, Undescribed> {
    describe_until(address, wait, &|| None)
}

/// The same for a process the host started: it gives up as soon as the process has
/// exited (a plugin that cannot start as configured does so at once), with its status.
pub(super) fn describe_process(
    address: &Address,
    process: &Supervised,
    wait: Duration,
) -> Result<Description, Undescribed> {
    describe_until(address, wait, &|| process.last_exit()).map_err(|undescribed| {
        match process.last_exit() {
            Some(exit) => undescribed.map(|why| format!("{why} (its process: {exit})")),
            None => undescribed,
        }
    })
}

fn describe_until(
    address: &Address,
    wait: Duration,
    ended: &(dyn Fn() -> Option<String> + Sync),
) -> Result<Description, Undescribed> {
    let polled = async { Ok(poll_describe(address.clone(), wait, ended).await) };
    on_own_runtime(polled).unwrap_or_else(|why| Err(Undescribed::Unanswered(why)))
}

async fn poll_describe(
    address: Address,
    wait: Duration,
    ended: &(dyn Fn() -> Option<String> + Sync),
) -> Result<Description, Undescribed> {
    use Undescribed::{Invalid, Unanswered};
    let connector = Connector::new(address);
    let until = Instant::now() + wait;
    loop {
        let remaining = until.saturating_duration_since(Instant::now());
        let path = format!("{PREFIX}describe");
        let call = connector.call(Method::GET, &path, Vec::new(), MAX_ANSWER, remaining);
        let why = match tokio::time::timeout(remaining, call).await {
            Err(_) => return Err(Unanswered(format!("no description within {wait:?}"))),
            Ok(result) => match answer_of(result, wire::description) {
                Ok(description) => return Ok(description),
                Err(CallFailed::Failed(why)) => return Err(Invalid(format!("describe: {why}"))),
                Err(CallFailed::Unavailable(why)) => why,
            },
        };
        if ended().is_some() {
            return Err(Unanswered("it exited before answering".into()));
        }
        if Instant::now() + READY_POLL >= until {
            return Err(Unanswered(format!(
                "not answering at {} within {wait:?}: {why}",
                connector.address()
            )));
        }
        tokio::time::sleep(READY_POLL).await;
    }
}
