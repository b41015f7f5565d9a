//! A stock Tahoe 1.20 client node (`tahoe create-client`, `tahoe run`) whose storage
//! servers come from a `servers.yaml`, driven with the `tahoe` command line.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::tahoe_python;

/// A running stock client node.
#[derive(Debug)]
pub struct TahoeClient {
    dir: TempDir,
    child: Option<Child>,
}

/// `tahoe run` of the node in `node`, its output discarded (it logs to the node's own
/// `logs/`).
pub(crate) fn tahoe_run(node: &Path) -> Child {
    Command::new(tahoe_command())
        .args(["run", "--allow-stdin-close"])
        .arg(node)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run tahoe run")
}

/// Kills and reaps a node `tahoe_run` started.
pub(crate) fn stop_tahoe(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The venv's `tahoe`.
pub(crate) fn tahoe_command() -> PathBuf {
    tahoe_python()
        .parent()
        .expect("the venv's bin/")
        .join("tahoe")
}

impl TahoeClient {
    /// Creates a client node encoding files `needed`-of-`total` on at least `happy`
    /// servers, whose servers are those of `servers_yaml`, and runs it until every one of
    /// them is connected.
    pub fn start(servers_yaml: &str, needed: u8, happy: u8, total: u8) -> Self {
        let servers = servers_yaml.matches("anonymous-storage-NURLs").count();
        Self::create(&[], Some(servers_yaml), (needed, happy, total), servers)
    }

    /// Creates a client node of the grid of the introducer at `furl` (encoding as
    /// [`Self::start`]), and runs it until `servers` storage servers are connected.
    pub fn of_introducer(furl: &str, needed: u8, happy: u8, total: u8, servers: usize) -> Self {
        Self::create(
            &["--introducer", furl],
            None,
            (needed, happy, total),
            servers,
        )
    }

    fn create(
        extra: &[&str],
        servers_yaml: Option<&str>,
        (needed, happy, total): (u8, u8, u8),
        servers: usize,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let created = Command::new(tahoe_command())
            .args(["create-client", "--webport", "tcp:0:interface=127.0.0.1"])
            .args(["--shares-needed", &needed.to_string()])
            .args(["--shares-happy", &happy.to_string()])
            .args(["--shares-total", &total.to_string()])
            .args(extra)
            .arg(dir.path().join("node"))
            .output()
            .expect("run tahoe create-client");
        assert!(created.status.success(), "tahoe create-client: {created:?}");
        let node = dir.path().join("node");
        if let Some(yaml) = servers_yaml {
            std::fs::write(node.join("private/servers.yaml"), yaml).expect("write servers.yaml");
        }
        let client = Self {
            child: Some(tahoe_run(&node)),
            dir,
        };
        client.wait_until_connected(servers);
        client
    }

    fn node(&self) -> PathBuf {
        self.dir.path().join("node")
    }

    /// Waits (at most 60 s) until the node's web status lists `servers` connected servers.
    fn wait_until_connected(&self, servers: usize) {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(url) = std::fs::read_to_string(self.node().join("node.url")) {
                let output = Command::new(tahoe_python())
                    .args([
                        "-c",
                        "import json,sys,urllib.request as u;\
                         d=json.load(u.urlopen(sys.argv[1]+'?t=json'));\
                         print(sum(s['connection_status']=='connected' for s in d['servers']))",
                        url.trim(),
                    ])
                    .output()
                    .expect("run python");
                last = String::from_utf8_lossy(&output.stdout).trim().to_owned();
                if last == servers.to_string() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the stock client connected to {last:?} of {servers} servers within 60 s");
    }

    /// Runs `tahoe -d NODE ARGS...`.
    pub fn tahoe(&self, args: &[&str]) -> Output {
        Command::new(tahoe_command())
            .arg("-d")
            .arg(self.node())
            .args(args)
            .output()
            .expect("run tahoe")
    }

    /// Runs `tahoe -d NODE ARGS...`, which must succeed; answers its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.tahoe(args);
        assert!(
            output.status.success(),
            "tahoe {args:?}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Whether `tahoe put` of a small file (stored on the servers, not in its cap) fails.
    pub fn put_is_refused(&self) -> bool {
        let file = self.scratch().join("refused");
        std::fs::write(&file, vec![1u8; 5000]).expect("write a file");
        !self
            .tahoe(&["put", file.to_str().expect("path")])
            .status
            .success()
    }

    /// The usual session of a stock client, checked at each step: a new directory; files
    /// of 0 B, 56 B, 300 KB and `large` bytes put, got back byte for byte, linked into it,
    /// and (those stored on servers, not in their cap) checked with `--verify`; then the
    /// directory listed and verified.
    pub fn store_files_in_a_directory(&self, large: usize) {
        let dir = self.ok(&["mkdir"]).trim().to_owned();
        let files = [
            (0, "empty"),
            (56, "tiny"),
            (300_000, "medium"),
            (large, "large"),
        ];
        for (size, name) in files {
            let path = self.scratch().join(name);
            let bytes: Vec<u8> = (0..size).map(|i| (i % 253) as u8 ^ size as u8).collect();
            std::fs::write(&path, &bytes).expect("write a file");
            let cap = self
                .ok(&["put", path.to_str().expect("path")])
                .trim()
                .to_owned();
            let back = self.scratch().join(format!("{name}.back"));
            self.ok(&["get", &cap, back.to_str().expect("path")]);
            assert!(
                std::fs::read(&back).expect("read back") == bytes,
                "{name} came back different"
            );
            self.ok(&["ln", &cap, &format!("{dir}/{name}")]);
            // Files of at most 55 bytes live in their cap; the others are on the servers.
            if size > 55 {
                let checked = self.ok(&["check", "--verify", &cap]);
                assert!(checked.contains("Healthy"), "{name}: {checked}");
            }
        }
        let listed = self.ok(&["ls", &dir]);
        for (_, name) in files {
            assert!(
                listed.lines().any(|l| l.trim() == name),
                "{name} not in {listed}"
            );
        }
        let checked = self.ok(&["check", "--verify", &dir]);
        assert!(checked.contains("Healthy"), "the directory: {checked}");
    }

    /// A scratch directory beside the node, for files to put and get.
    pub fn scratch(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for TahoeClient {
    fn drop(&mut self) {
        stop_tahoe(&mut self.child);
    }
}
