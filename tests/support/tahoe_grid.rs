//! The other nodes of a stock Tahoe 1.20 grid, each made by `tahoe create-...` and run by
//! `tahoe run` on loopback: an introducer, and storage nodes announcing themselves to it
//! (with their GBS NURLs, as 1.20 nodes do).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_loopback_port;
use crate::tahoe_client::{stop_tahoe, tahoe_command, tahoe_run};

/// A running stock node, killed when dropped.
#[derive(Debug)]
pub struct StockNode {
    dir: TempDir,
    child: Option<Child>,
}

impl StockNode {
    /// An introducer; its FURL is [`Self::introducer_furl`].
    pub fn introducer() -> Self {
        let node = Self::create_and_run("create-introducer", &[]);
        node.wait_for_file("private/introducer.furl");
        node
    }

    /// The introducer's FURL.
    pub fn introducer_furl(&self) -> String {
        std::fs::read_to_string(self.node().join("private/introducer.furl"))
            .expect("read introducer.furl")
            .trim()
            .to_owned()
    }

    /// A storage node announcing itself as `nickname` to the introducer at `furl`.
    pub fn storage(furl: &str, nickname: &str) -> Self {
        Self::create_and_run(
            "create-node",
            &[
                "--introducer",
                furl,
                "--nickname",
                nickname,
                // Not Tahoe's default 3456, which every node would share.
                "--webport",
                "tcp:0:interface=127.0.0.1",
            ],
        )
    }

    /// A storage node on its own (no introducer), once it has written its certificate and
    /// storage fURL.
    pub fn storage_alone() -> Self {
        let node = Self::create_and_run("create-node", &["--webport", "none"]);
        node.wait_for_file("private/storage.furl");
        node
    }

    /// `tahoe run` of an existing node directory.
    pub fn run_in(dir: TempDir) -> Self {
        Self {
            child: Some(tahoe_run(dir.path())),
            dir,
        }
    }

    /// Stops the node and hands its directory back.
    pub fn stop(mut self) -> TempDir {
        stop_tahoe(&mut self.child);
        let placeholder = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, placeholder)
    }

    /// The node directory.
    pub fn node(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    fn create_and_run(create: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_loopback_port();
        let created = Command::new(tahoe_command())
            .arg(create)
            .arg(format!("--port=tcp:{port}:interface=127.0.0.1"))
            .arg(format!("--location=tcp:127.0.0.1:{port}"))
            .args(extra)
            .arg(dir.path())
            .output()
            .expect("run tahoe create");
        assert!(created.status.success(), "tahoe {create}: {created:?}");
        Self::run_in(dir)
    }

    fn wait_for_file(&self, relative: &str) {
        let path: &Path = &self.node().join(relative);
        let started = Instant::now();
        while !path.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{relative} not written within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for StockNode {
    fn drop(&mut self) {
        stop_tahoe(&mut self.child);
    }
}
