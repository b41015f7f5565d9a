//! A real PostgreSQL server for the tests: Debian's `postgresql` package (`.ci/run` installs
//! it), a cluster made by `initdb` in a temporary directory, owned by an unprivileged user
//! when the tests run as root (PostgreSQL refuses to run as root), listening on a free
//! loopback port, stopped when dropped.

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The user the cluster belongs to when the tests run as root.
const UNPRIVILEGED: (u32, u32) = (65534, 65534); // nobody:nogroup

/// The role the tests connect as (trusted: loopback only).
const USER: &str = "gbs";

/// A running PostgreSQL server.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    server: Option<Child>,
    /// Whether commits are synced to disk (off for tests: the page cache survives a stop).
    fsync: bool,
}

/// The directory of `initdb` and `postgres`: the newest Debian cluster version, or `PATH`.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!("PostgreSQL is not installed (no initdb): `.ci/run` installs it, or `apt-get install postgresql`")
    })
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

impl Postgres {
    /// Makes a cluster and starts it, without syncing to disk (tests stop the server, never
    /// the machine).
    pub fn start() -> Self {
        Self::make(false)
    }

    /// Makes a cluster that syncs every commit, as a production server does, and starts it
    /// (for benchmarks).
    pub fn start_durable() -> Self {
        Self::make(true)
    }

    fn make(fsync: bool) -> Self {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("temp dir");
        if running_as_root() {
            std::os::unix::fs::chown(dir.path(), Some(UNPRIVILEGED.0), Some(UNPRIVILEGED.1))
                .expect("give the cluster directory to nobody");
        }
        let mut pg = Self {
            bin,
            dir,
            port: crate::free_loopback_port(),
            server: None,
            fsync,
        };
        let made = pg
            .command("initdb")
            .args([
                "-U",
                USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
                "-D",
            ])
            .arg(pg.data())
            .output()
            .expect("run initdb");
        assert!(
            made.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        pg.restart();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command of the cluster's binaries, as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if running_as_root() {
            command
                .uid(UNPRIVILEGED.0)
                .gid(UNPRIVILEGED.1)
                .env("HOME", self.dir.path());
        }
        command
    }

    /// The URL nodes use.
    pub fn url(&self) -> String {
        format!("postgresql://{USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again, on the same port and data) and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.server.is_none(), "the server is running");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("server log");
        let server = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
            ])
            .args(["-c", if self.fsync { "fsync=on" } else { "fsync=off" }])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ready() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                self.log()
            );
            if let Some(status) = self
                .server
                .as_mut()
                .and_then(|s| s.try_wait().ok().flatten())
            {
                panic!("PostgreSQL exited ({status}): {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ready(&self) -> bool {
        self.command("pg_isready")
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the server with a fast shutdown (open transactions are rolled back, clients
    /// disconnected, committed work kept), and waits for it to exit.
    pub fn stop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(server.id().to_string())
            .status();
        if crate::wait_for_exit(&mut server, Duration::from_secs(30)).is_none() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    /// Runs `sql` with `psql` and returns its unaligned, tuples-only output.
    pub fn sql(&self, sql: &str) -> String {
        let output: Output = Command::new(psql(&self.bin))
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                "-d",
                "postgres",
            ])
            .args(["-c", sql])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

/// `psql`: beside the server's binaries, or Debian's wrapper on `PATH`.
fn psql(bin: &Path) -> PathBuf {
    let beside = bin.join("psql");
    if beside.is_file() {
        beside
    } else {
        PathBuf::from("psql")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
