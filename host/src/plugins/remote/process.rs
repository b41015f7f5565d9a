//! A plugin process the host starts (`command = ...`): run without a shell in the node
//! directory with its environment, its output logged line by line, started again with
//! backoff whenever it exits, and stopped by closing its stdin (killed if it lingers).
//!
//! Threads: one supervisor per plugin, and one reader of the current process's output.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::plugins::check::{describe_exit, kill_group, wait_until};
use crate::plugins::host_api::clip;
use crate::plugins::plugin_log::{Escaped, LogBudget};

/// How long a process has to exit once its stdin is closed.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(4);
/// The first wait before a restart, doubled while the process keeps failing.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A process that ran this long is restarted after [`FIRST_BACKOFF`] again.
const HEALTHY: Duration = Duration::from_secs(30);
/// How often the supervisor looks at its process.
const POLL: Duration = Duration::from_millis(50);
/// Output lines longer than this are cut into pieces.
const MAX_LINE: u64 = 4096;
/// How much of a process's last line of output is kept to tell why it ended.
const LAST_OUTPUT: usize = 300;
/// How long an ended process's output is waited for, for its last line.
const OUTPUT_GRACE: Duration = Duration::from_millis(200);

/// What to start, and with what.
#[derive(Debug, Clone)]
pub(super) struct Launch {
    /// Empty for `gbs plugin check`, which knows no name: `GBS_PLUGIN_NAME` is then unset.
    pub(super) name: String,
    /// Program and arguments.
    pub(super) argv: Vec<String>,
    pub(super) node_dir: PathBuf,
    pub(super) socket: PathBuf,
    pub(super) state_dir: PathBuf,
    pub(super) settings: BTreeMap<String, String>,
    pub(super) role: &'static str,
}

/// Splits a `command = ...` value as a shell would split words (quotes, no expansion).
pub(in crate::plugins) fn split_command(command: &str) -> Result<Vec<String>, String> {
    match shlex::split(command) {
        Some(argv) if !argv.is_empty() => Ok(argv),
        Some(_) => Err("the command is empty".into()),
        None => Err(format!("{command:?}: unbalanced quotes")),
    }
}

/// A started plugin process and its supervisor; dropping it stops both (in the background).
#[derive(Debug)]
pub(super) struct Supervised {
    control: Arc<Control>,
    last_exit: Arc<Mutex<Option<String>>>,
}

/// How a supervisor is told to stop its process, and waited for.
#[derive(Debug)]
struct Control {
    /// Dropped to stop the process with [`STOP_GRACE`]; a grace sent first replaces it.
    stop: Mutex<Option<mpsc::Sender<Duration>>>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    /// How many times the process was started; closed once the supervisor is told to stop.
    starts: Mutex<Option<watch::Sender<u64>>>,
}

impl Control {
    /// Tells the supervisor to stop its process; returns at once.
    fn signal(&self) {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.starts.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Counts a start of the process, unless the supervisor was told to stop.
    fn started(&self) {
        if let Some(starts) = &*self.starts.lock().unwrap_or_else(|e| e.into_inner()) {
            starts.send_modify(|n| *n += 1);
        }
    }

    /// Waits until the supervisor has stopped its process (at most [`STOP_GRACE`], then
    /// the process is killed). The lock is held while waiting, so that a second caller
    /// (the node exiting while a plugin's `stop` waits here) returns only once it is done.
    fn join(&self) {
        let mut supervisor = self.supervisor.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = supervisor.take() {
            let _ = running.join();
        }
    }

    /// Whether the supervisor has ended; `false` while someone waits for it.
    fn finished(&self) -> bool {
        self.supervisor
            .try_lock()
            .is_ok_and(|supervisor| supervisor.as_ref().is_none_or(JoinHandle::is_finished))
    }
}

/// Every supervisor not known to have finished: stopped by [`stop_all`] before the node
/// exits, since one told to stop in the background (its plugin set dropped while requests
/// still held it) would otherwise die with the node and leave its process running.
static SUPERVISORS: Mutex<Vec<Arc<Control>>> = Mutex::new(Vec::new());

/// Stops every plugin process this process started and waits for them (each at most
/// [`STOP_GRACE`], in parallel, then killed). For the end of `gbs run`, `gbs gateway` and
/// `gbs client`.
pub(crate) fn stop_all() {
    let all = std::mem::take(&mut *SUPERVISORS.lock().unwrap_or_else(|e| e.into_inner()));
    for control in &all {
        control.signal();
    }
    for control in &all {
        control.join();
    }
}

impl Supervised {
    /// Starts the process and its supervisor.
    pub(super) fn start(launch: Launch) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel();
        let last_exit = Arc::new(Mutex::new(None));
        let recorded = last_exit.clone();
        let control = Arc::new(Control {
            stop: Mutex::new(Some(stop)),
            supervisor: Mutex::new(None),
            starts: Mutex::new(Some(watch::Sender::new(0))),
        });
        let supervising = control.clone();
        let supervisor = std::thread::Builder::new()
            .name(format!("plugin-process-{}", launch.name))
            .spawn(move || {
                supervise(&launch, &stopped, &recorded, &supervising);
                // Stopped for good: its socket goes too.
                let _ = std::fs::remove_file(&launch.socket);
            })?;
        *control.supervisor.lock().unwrap_or_else(|e| e.into_inner()) = Some(supervisor);
        let mut all = SUPERVISORS.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|control| !control.finished());
        all.push(control.clone());
        Ok(Self { control, last_exit })
    }

    /// How many times the process has been started, changing with each restart; closed
    /// once it is told to stop.
    pub(super) fn starts(&self) -> Option<watch::Receiver<u64>> {
        let starts = self
            .control
            .starts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        starts.as_ref().map(watch::Sender::subscribe)
    }

    /// How the process last ended (or failed to start), if it did.
    pub(super) fn last_exit(&self) -> Option<String> {
        self.last_exit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Asks the process to exit and waits until it has (at most [`STOP_GRACE`], then it
    /// is killed). Blocking.
    pub(super) fn stop(&mut self) {
        self.control.signal();
        self.control.join();
    }

    /// Kills the process (and what it started) without waiting for it to exit on its own,
    /// and waits for that: for a process that has already had its time. Blocking.
    pub(super) fn kill(&mut self) {
        if let Some(stop) = &*self.control.stop.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = stop.send(Duration::ZERO);
        }
        self.stop();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // The supervisor sees the channel close and stops the process on its own.
        self.control.signal();
    }
}

/// Runs `launch` again whenever it exits, until told to stop; returns once it is stopped.
fn supervise(
    launch: &Launch,
    stopped: &mpsc::Receiver<Duration>,
    last_exit: &Mutex<Option<String>>,
    control: &Control,
) {
    let record = |what: String| *last_exit.lock().unwrap_or_else(|e| e.into_inner()) = Some(what);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        let last_output = Arc::new(Mutex::new(None));
        match spawn(launch, &last_output) {
            Ok((mut child, output)) => {
                control.started();
                let stdin = child.stdin.take();
                loop {
                    let grace = match stopped.recv_timeout(POLL) {
                        Err(RecvTimeoutError::Timeout) => None,
                        Ok(grace) => Some(grace),
                        Err(RecvTimeoutError::Disconnected) => Some(STOP_GRACE),
                    };
                    if let Some(grace) = grace {
                        drop(stdin);
                        if wait_until(&mut child, Instant::now() + grace).is_none() {
                            if !grace.is_zero() {
                                tracing::warn!(plugin = %launch.name, "plugin process did not exit within {grace:?} of its stdin closing; killed");
                            }
                            kill_group(&mut child);
                        }
                        return;
                    }
                    if let Ok(Some(status)) = child.try_wait() {
                        // What it started in its group goes with it: left behind, a child
                        // holding its socket would answer nothing until the restart.
                        kill_group(&mut child);
                        let mut how = describe_exit(status);
                        // Why it ended is usually the last thing it said.
                        let until = Instant::now() + OUTPUT_GRACE;
                        while !output.is_finished() && Instant::now() < until {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        if let Some(said) =
                            last_output.lock().unwrap_or_else(|e| e.into_inner()).take()
                        {
                            how = format!("{how}; its last output: {said}");
                        }
                        tracing::warn!(plugin = %launch.name, "plugin process ended ({how}); starting it again in {backoff:?}");
                        record(how);
                        break;
                    }
                }
                if started.elapsed() >= HEALTHY {
                    backoff = FIRST_BACKOFF;
                }
            }
            Err(e) => {
                tracing::error!(plugin = %launch.name, "cannot start plugin process {:?}: {e}", launch.argv[0]);
                record(format!("cannot start {:?}: {e}", launch.argv[0]));
            }
        }
        match stopped.recv_timeout(backoff) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Starts the process, and the thread that logs its output (keeping its last line in
/// `last_output`).
fn spawn(
    launch: &Launch,
    last_output: &Arc<Mutex<Option<String>>>,
) -> std::io::Result<(Child, JoinHandle<()>)> {
    let settings = serde_json::to_string(&launch.settings).map_err(std::io::Error::other)?;
    let _ = std::fs::remove_file(&launch.socket);
    let (reader, writer) = std::io::pipe()?;
    let mut command = Command::new(&launch.argv[0]);
    command
        .args(&launch.argv[1..])
        .current_dir(&launch.node_dir)
        .env(
            "GBS_PLUGIN_LISTEN",
            format!("unix:{}", launch.socket.display()),
        )
        .env("GBS_PLUGIN_ROLE", launch.role)
        .env("GBS_PLUGIN_STATE_DIR", &launch.state_dir)
        .env("GBS_PLUGIN_SETTINGS", settings)
        .stdin(Stdio::piped())
        .stdout(writer.try_clone()?)
        .stderr(writer);
    if !launch.name.is_empty() {
        command.env("GBS_PLUGIN_NAME", &launch.name);
    }
    // Its own process group, so that a kill reaches whatever it started too.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command.spawn()?;
    // `command` holds the pipe's write end until dropped; the reader ends at the last one.
    drop(command);
    let name = launch.name.clone();
    let last_output = last_output.clone();
    let output = std::thread::Builder::new()
        .name(format!("plugin-output-{name}"))
        .spawn(move || log_lines(&name, reader, &last_output))?;
    Ok((child, output))
}

/// Logs each line the process writes, tagged with the plugin, within the same budget as an
/// in-process plugin's log, and keeps the last one that is not blank (its first
/// [`LAST_OUTPUT`] bytes, escaped) in `last`; ends at end of file.
fn log_lines(name: &str, pipe: impl std::io::Read, last: &Mutex<Option<String>>) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    let budget = LogBudget::default();
    loop {
        line.clear();
        match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']);
                if !text.trim().is_empty() {
                    let kept = Escaped(clip(text, LAST_OUTPUT)).to_string();
                    *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(kept);
                }
                if !budget.admits(name) {
                    continue;
                }
                tracing::info!(plugin = %name, "plugin output: {}", Escaped(text));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_a_shell_without_one() {
        assert_eq!(
            split_command("python3 'my plugin.py' --flag \"a b\"").expect("valid"),
            ["python3", "my plugin.py", "--flag", "a b"]
        );
        // Tried: an unbalanced quote and an empty command.
        assert!(split_command("python3 'oops").is_err());
        assert!(split_command("   ").is_err());
    }
}
