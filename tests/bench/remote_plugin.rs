//! The out-of-process plugin of the plugin rows: the tests' plugin service (it admits
//! everything) in a process of its own, this binary run again with [`FLAG`], so that its
//! CPU is counted beside the node's instead of mixing with the load generator's.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use gbs_tests::{read_line_starting, Behaviour, PluginService};

/// Runs this binary as the plugin service, serving the socket named next.
pub(crate) const FLAG: &str = "--plugin-service";

/// The operations of the plugin rows.
const INTERESTS: &[&str] = &["version", "read-immutable"];

/// The plugin's process; killed when dropped.
pub(crate) struct RemotePlugin {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl RemotePlugin {
    /// Starts the service and waits until it listens.
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("plugin.sock");
        let exe = std::env::current_exe().expect("path of gbs-bench");
        let mut child = Command::new(exe)
            .arg(FLAG)
            .arg(&socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the plugin service");
        let mut stdout = BufReader::new(child.stdout.take().expect("its stdout"));
        let ready = read_line_starting(&mut stdout, "ready");
        assert!(ready.is_some(), "the plugin service did not start");
        Self {
            child,
            socket,
            _dir: dir,
        }
    }

    /// The `url = ...` a node's config names it by.
    pub(crate) fn url(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Its process, whose CPU time counts with the node's.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RemotePlugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child's side: serves `socket` on one thread until its stdin closes, which it does
/// when `gbs-bench` ends, however it ends.
pub(crate) fn serve(socket: &Path) -> ! {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let _service =
            PluginService::interested(socket, "remote", Behaviour::Admit, INTERESTS).await;
        println!("ready");
        std::future::pending::<()>().await;
    });
    unreachable!("the service runs until the process exits")
}
