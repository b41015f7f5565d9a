//! Servers as child processes: `gbs` (the real binary) and stock Tahoe's storage server.
//! Each lives in its own temporary directory, listens on a free loopback port, and is
//! stopped when dropped.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};

use tempfile::TempDir;

/// Runs a script from `tests/interop/` with the stock Tahoe venv's Python.
pub fn run_python(script: &str, args: &[&str]) -> Output {
    Command::new(crate::tahoe_python())
        .arg(crate::interop_script(script))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"))
}

/// Asserts that a run of an interop checker passed, i.e. exited 0 with a last line of
/// `N passed, 0 failed` where `N >= at_least`, and returns `N`. Otherwise panics with the
/// whole report (stdout and stderr), headed by `what`.
pub fn assert_all_passed(output: &Output, what: &str, at_least: usize) -> usize {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        output.status.success() && summary.ends_with(" passed, 0 failed"),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let passed: usize = summary
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        passed >= at_least,
        "{what} ran only {passed} checks, expected at least {at_least}:\n{stdout}"
    );
    passed
}

/// The `gbs` binary built for these tests. Cargo names it in `CARGO_BIN_EXE_gbs-under-test`
/// when it runs a test; this library cannot use `env!` for it, since Cargo sets that at
/// compile time only for test crates. A test binary started by hand finds it in
/// `target/<profile>/`.
pub fn gbs_binary() -> PathBuf {
    std::env::var_os("CARGO_BIN_EXE_gbs-under-test").map_or_else(
        || crate::profile_dir().join(format!("gbs-under-test{}", std::env::consts::EXE_SUFFIX)),
        PathBuf::from,
    )
}

/// Reads the first line of a child's stdout that starts with `prefix`, returning the rest;
/// `None` when the output ends first.
pub fn read_line_starting(stdout: &mut BufReader<ChildStdout>, prefix: &str) -> Option<String> {
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if let Some(rest) = line.trim().strip_prefix(prefix) {
            return Some(rest.trim().to_owned());
        }
    }
}

/// `gbs ARGS...`, which must succeed; answers its stdout.
pub fn gbs_stdout(args: &[&str]) -> String {
    let output = Command::new(gbs_binary())
        .args(args)
        .output()
        .expect("run gbs");
    assert!(output.status.success(), "gbs {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Starts a `gbs` process that prints its NURLs on stdout (`run`, `gateway`), logging at
/// the level `command` sets, else `$RUST_LOG` or `warn`; answers it and its stdout.
fn spawn_printing(mut command: Command) -> (Child, BufReader<ChildStdout>) {
    if !command.get_envs().any(|(key, _)| key == "RUST_LOG") {
        command.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn gbs");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    (child, stdout)
}

/// A `gbs run` process serving a node directory.
#[derive(Debug)]
pub struct GbsNode {
    child: Option<Child>,
    nurl: String,
    dir: TempDir,
}

impl GbsNode {
    /// Creates a node in a fresh directory and starts serving it. `create-node` picks a
    /// free port that another process may take before the node binds it (tests start many
    /// listeners at once), so a node that exits before printing its NURL gets a new
    /// directory and port, up to three times.
    pub fn start() -> Self {
        let mut attempts = 0;
        loop {
            let dir = tempfile::tempdir().expect("temp dir");
            Self::create(dir.path());
            let mut command = Command::new(gbs_binary());
            command.arg("run").arg(dir.path());
            match Self::try_spawn(command, dir) {
                Ok(node) => return node,
                Err(why) if attempts < 2 => {
                    eprintln!("gbs run {why}; trying another port");
                    attempts += 1;
                }
                Err(why) => panic!("gbs run {why}"),
            }
        }
    }

    /// `gbs create-node DIR` with a free loopback port.
    pub fn create(dir: &Path) -> String {
        let output = Command::new(gbs_binary())
            .arg("create-node")
            // Tests choose their plugins; the samples may or may not be built beside us.
            .arg("--no-sample-plugins")
            .arg(dir)
            .output()
            .expect("run gbs create-node");
        assert!(
            output.status.success(),
            "create-node failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Creates a node whose `tahoe.cfg` ends with `extra` (sections and keys) and serves it.
    pub fn start_configured(extra: &str) -> Self {
        Self::start_with(extra, None)
    }

    /// Like [`GbsNode::start_configured`], in a process whose open-file limit (soft and
    /// hard) is `nofile` when given.
    pub fn start_with(extra: &str, nofile: Option<u64>) -> Self {
        let dir = Self::create_configured(extra);
        let command = match nofile {
            None => {
                let mut command = Command::new(gbs_binary());
                command.arg("run").arg(dir.path());
                command
            }
            Some(limit) => {
                let mut command = Command::new("sh");
                command
                    .arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" run \"$1\""))
                    .arg(gbs_binary())
                    .arg(dir.path());
                command
            }
        };
        Self::spawn(command, dir)
    }

    /// A new node directory whose `tahoe.cfg` ends with `extra` (sections and keys).
    pub fn create_configured(extra: &str) -> TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::create(dir.path());
        let cfg = dir.path().join("tahoe.cfg");
        let mut text = std::fs::read_to_string(&cfg).expect("read tahoe.cfg");
        text.push('\n');
        text.push_str(extra);
        std::fs::write(&cfg, text).expect("write tahoe.cfg");
        dir
    }

    /// Serves an existing node directory.
    pub fn start_in(dir: TempDir) -> Self {
        let mut command = Command::new(gbs_binary());
        command.arg("run").arg(dir.path());
        Self::spawn(command, dir)
    }

    /// Serves an existing node directory, its log (stderr, from level info: plugins'
    /// output is in it) written to `log` instead of the test's output.
    pub fn start_logged(dir: TempDir, log: &Path) -> Self {
        let mut command = Command::new(gbs_binary());
        command
            .arg("run")
            .arg(dir.path())
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(log).expect("create the log file"));
        Self::spawn(command, dir)
    }

    /// Serves an existing node directory named relative to its parent, from which the
    /// node runs.
    pub fn start_relative(dir: TempDir) -> Self {
        let mut command = Command::new(gbs_binary());
        let path = dir.path();
        command
            .current_dir(path.parent().expect("a parent directory"))
            .arg("run")
            .arg(path.file_name().expect("a directory name"));
        Self::spawn(command, dir)
    }

    fn spawn(command: Command, dir: TempDir) -> Self {
        Self::try_spawn(command, dir).unwrap_or_else(|why| panic!("gbs run {why}"))
    }

    fn try_spawn(command: Command, dir: TempDir) -> Result<Self, String> {
        let (mut child, mut stdout) = spawn_printing(command);
        let Some(nurl) = read_line_starting(&mut stdout, "pb://") else {
            let status = child
                .wait()
                .map_or_else(|e| e.to_string(), |s| s.to_string());
            return Err(format!("exited ({status}) before printing its NURL"));
        };
        Ok(Self {
            child: Some(child),
            nurl: format!("pb://{nurl}"),
            dir,
        })
    }

    /// The NURL it printed.
    pub fn nurl(&self) -> &str {
        &self.nurl
    }

    /// A client of this node, without plugins.
    pub fn client(&self) -> gbs::client::Client {
        gbs::client::ClientBuilder::new(self.nurl.parse().expect("gbs printed a valid NURL"))
            .build()
            .expect("client")
    }

    /// The process id of `gbs run`.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The node directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends SIGTERM without waiting for the process to exit.
    pub fn request_stop(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> (ExitStatus, TempDir) {
        let status = terminate(self.child.take().expect("running"));
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        (status, dir)
    }

    /// Sends SIGKILL, as a crash would, and waits for the exit status; hands over the
    /// directory as the process left it, to serve again with [`GbsNode::start_in`].
    pub fn kill(mut self) -> (ExitStatus, TempDir) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("send SIGKILL");
        let status = child.wait().expect("wait for child");
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        (status, dir)
    }

    /// Whether the process has exited (crashed) on its own; reaps it if so.
    pub fn has_exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().expect("poll child"))
    }
}

impl Drop for GbsNode {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child);
        }
    }
}

/// A `gbs gateway` process: a node directory whose `tahoe.cfg` names its upstreams (and
/// client plugins), serving one local NURL per upstream.
#[derive(Debug)]
pub struct GbsGateway {
    child: Option<Child>,
    nurls: Vec<String>,
    dir: TempDir,
    /// Held open: the gateway prints a line for each upstream announced later.
    stdout: Option<BufReader<ChildStdout>>,
}

impl GbsGateway {
    /// Creates a node directory whose `tahoe.cfg` ends with `extra` and runs `gbs gateway`
    /// on it, reading the local NURL of each of its `upstreams`.
    pub fn start(extra: &str, upstreams: usize) -> Self {
        Self::start_in(GbsNode::create_configured(extra), upstreams)
    }

    /// Runs `gbs gateway` on an existing node directory until it printed the local NURLs
    /// of `upstreams` upstreams (those of its config at once; those an introducer
    /// announces later), at most 3 minutes.
    pub fn start_in(dir: TempDir, upstreams: usize) -> Self {
        let mut command = Command::new(gbs_binary());
        command.arg("gateway").arg(dir.path());
        let (child, stdout) = spawn_printing(command);
        let mut gateway = Self {
            child: Some(child),
            nurls: Vec::new(),
            dir,
            stdout: Some(stdout),
        };
        gateway.wait_for_nurls(upstreams);
        gateway
    }

    /// Waits (at most 3 minutes) until the gateway printed `more` local NURLs after those
    /// read so far, and answers them. Killed at the deadline.
    pub fn wait_for_nurls(&mut self, more: usize) -> Vec<String> {
        const WITHIN: std::time::Duration = std::time::Duration::from_secs(180);
        let (Some(child), Some(mut stdout)) = (self.child.as_mut(), self.stdout.take()) else {
            panic!("the gateway is not running");
        };
        // Read on another thread, so that a gateway still waiting for announcements can be
        // killed at the deadline.
        let (sender, lines) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for _ in 0..more {
                let line = read_line_starting(&mut stdout, "pb://");
                let ended = line.is_none();
                if sender.send(line).is_err() || ended {
                    break;
                }
            }
            stdout
        });
        let deadline = std::time::Instant::now() + WITHIN;
        let mut nurls = Vec::new();
        while nurls.len() < more {
            match lines.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            {
                Ok(Some(line)) => {
                    let nurl = line.split_whitespace().next().unwrap_or_default();
                    nurls.push(format!("pb://{nurl}"));
                }
                Ok(None) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "gbs gateway exited ({:?}) before printing its NURLs",
                    child.wait()
                ),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "gbs gateway printed {} of {more} local NURLs within {} s",
                        nurls.len(),
                        WITHIN.as_secs()
                    );
                }
            }
        }
        self.stdout = reader.join().ok();
        self.nurls.extend(nurls.iter().cloned());
        nurls
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The local NURL of each upstream, in config order.
    pub fn nurls(&self) -> &[String] {
        &self.nurls
    }

    /// The gateway's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends SIGTERM, waits for the exit, and hands over the directory.
    pub fn stop(mut self) -> TempDir {
        if let Some(child) = self.child.take() {
            terminate(child);
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"))
    }
}

impl Drop for GbsGateway {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child);
        }
    }
}

/// A stock Tahoe 1.20 storage server (`tests/interop/stock_server.py`).
#[derive(Debug)]
pub struct StockServer {
    child: Option<Child>,
    nurl: String,
    dir: TempDir,
}

impl StockServer {
    /// Starts one on a fresh storage directory.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(crate::tahoe_python())
            .arg(crate::interop_script("stock_server.py"))
            .arg(dir.path().join("storage"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Stock Tahoe logs a traceback for each of its own 500s, which the suite provokes
            // on purpose; keep them out of the test output but on disk for a failing test.
            .stderr(std::fs::File::create(dir.path().join("stock_server.log")).expect("log file"))
            .spawn()
            .expect("spawn stock_server.py");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let nurl = read_line_starting(&mut stdout, "NURL ")
            .unwrap_or_else(|| panic!("stock_server.py exited before printing its NURL"));
        Self {
            child: Some(child),
            nurl,
            dir,
        }
    }

    /// Its NURL.
    pub fn nurl(&self) -> &str {
        &self.nurl
    }

    /// The process id of its Python process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Its storage directory (its log, `stock_server.log`, sits beside it).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }
}

impl Drop for StockServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child);
        }
    }
}

/// Waits for `child` to exit, at most `within`; `None` if it is still running then.
pub fn wait_for_exit(child: &mut Child, within: std::time::Duration) -> Option<ExitStatus> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return Some(status);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn terminate(mut child: Child) -> ExitStatus {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    child.wait().expect("wait for child")
}
