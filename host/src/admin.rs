//! The node's local admin channel: a Unix socket at `<node>/private/admin.sock`.
//!
//! It serves `gbs plugin status`, `gbs plugin reload` and `gbs plugin check --node`. Only
//! the node's own user can use it: the socket is created mode 0600 in the owner-only
//! `private/` directory, and each connection's peer credentials must name the node's user.
//!
//! One request per connection: a JSON [`Request`] on one line, answered by one JSON
//! [`Answer`] line. Bounds: [`MAX_CLIENTS`] connections at once, requests of at most
//! [`MAX_REQUEST`] bytes read within [`REQUEST_TIMEOUT`], at most [`MAX_FILES`] files per
//! check, each check at most [`MAX_CHECK_DEADLINE`]. A connection past the bound takes the
//! place of the oldest one still waiting for its request, so idle connections cannot lock
//! `gbs plugin status` out; it is closed at once only when all are being answered.
//!
//! The socket also marks a running node: a second `gbs run` on the same directory finds it
//! answering and refuses to start; one left behind by a node that died is replaced.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};

use crate::plugins::check::{check_with_this_executable, Report};
use crate::plugins::live::{PluginStatus, ReloadReport};
use crate::plugins::LivePlugins;

/// The socket's file name in `private/`.
pub const SOCKET: &str = "admin.sock";
/// Admin connections served at once.
pub const MAX_CLIENTS: usize = 4;
/// The longest request line.
pub const MAX_REQUEST: usize = 64 * 1024;
/// How long a client may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Files one check request may name.
pub const MAX_FILES: usize = 64;
/// The longest deadline a check request may ask for, per file.
pub const MAX_CHECK_DEADLINE: Duration = Duration::from_secs(60);

/// What a client asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Request {
    /// The loaded server plugins.
    Status,
    /// Re-read the plugin configuration and switch to it.
    Reload,
    /// Check libraries with the running node's own executable.
    Check {
        /// Absolute paths.
        files: Vec<PathBuf>,
        /// Per file.
        timeout_seconds: f64,
    },
}

/// The node's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Answer {
    /// For [`Request::Status`].
    Status {
        /// In config order.
        plugins: Vec<PluginStatus>,
    },
    /// For [`Request::Reload`].
    Reload(ReloadReport),
    /// For [`Request::Check`]: one report per file, in order.
    Check {
        /// The reports.
        reports: Vec<Report>,
    },
    /// The request could not be served.
    Error {
        /// Why.
        message: String,
    },
}

/// The socket of the node at `node_dir` (whose `private/` is `private_dir`).
pub fn socket_path(private_dir: &Path) -> PathBuf {
    private_dir.join(SOCKET)
}

/// The bound admin socket; removes its file when dropped.
#[derive(Debug)]
pub struct AdminSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Why the admin socket could not be bound.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// Another node answers on it.
    #[error("another gbs node is already running on this directory (it answers on {0})")]
    InUse(PathBuf),
    /// The socket could not be created.
    #[error("cannot create the admin socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl AdminSocket {
    /// Binds the socket in `private_dir`, replacing one left by a node that is gone.
    pub async fn bind(private_dir: &Path) -> Result<Self, BindError> {
        let path = socket_path(private_dir);
        let io_error = |source| BindError::Io {
            path: path.clone(),
            source,
        };
        if path.exists() {
            if UnixStream::connect(&path).await.is_ok() {
                return Err(BindError::InUse(path));
            }
            std::fs::remove_file(&path).map_err(io_error)?;
        }
        let listener = UnixListener::bind(&path).map_err(io_error)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(io_error)?;
        }
        Ok(Self { listener, path })
    }

    /// Serves requests until the task is dropped.
    pub async fn serve(self, plugins: Arc<LivePlugins>) {
        // Oldest first.
        let mut clients: Vec<Client> = Vec::with_capacity(MAX_CLIENTS);
        let own_uid = rustix::process::geteuid().as_raw();
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "admin socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if stream.peer_cred().map(|c| c.uid()).ok() != Some(own_uid) {
                tracing::warn!("admin socket: refused a connection from another user");
                continue;
            }
            clients.retain(|client| !client.task.is_finished());
            if clients.len() >= MAX_CLIENTS {
                let Some(oldest) = clients.iter().position(Client::evict) else {
                    continue; // all being answered: dropped, closed at once
                };
                clients.remove(oldest);
            }
            let stage = Arc::new(AtomicU8::new(WAITING));
            let task = tokio::spawn({
                let (plugins, stage) = (plugins.clone(), stage.clone());
                async move {
                    if let Err(error) = answer(stream, &plugins, &stage).await {
                        tracing::debug!(%error, "admin connection ended");
                    }
                }
            });
            clients.push(Client {
                stage,
                task: task.abort_handle(),
            });
        }
    }
}

/// Where an admin connection is: waiting for its request, being answered, or closed to
/// make room. It moves from [`WAITING`] once, to whichever of the others comes first.
const WAITING: u8 = 0;
const ANSWERING: u8 = 1;
const EVICTED: u8 = 2;

/// An admin connection in progress.
struct Client {
    stage: Arc<AtomicU8>,
    task: tokio::task::AbortHandle,
}

impl Client {
    /// Closes the connection if it is still waiting for its request; whether it was.
    fn evict(&self) -> bool {
        let evicted = self
            .stage
            .compare_exchange(WAITING, EVICTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if evicted {
            self.task.abort();
        }
        evicted
    }
}

async fn answer(
    stream: UnixStream,
    plugins: &Arc<LivePlugins>,
    stage: &AtomicU8,
) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut limited = tokio::io::BufReader::new(read).take(MAX_REQUEST as u64 + 1);
    tokio::time::timeout(REQUEST_TIMEOUT, limited.read_until(b'\n', &mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request in time"))??;
    // Once answering, a connection is never closed to make room (a reload is not cut
    // short); evicted first, it ends here.
    if stage
        .compare_exchange(WAITING, ANSWERING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Ok(());
    }
    let answer = if line.len() > MAX_REQUEST {
        Answer::Error {
            message: format!("request over {MAX_REQUEST} bytes"),
        }
    } else {
        match serde_json::from_slice::<Request>(&line) {
            Ok(request) => serve_request(request, plugins).await,
            Err(error) => Answer::Error {
                message: format!("not a request: {error}"),
            },
        }
    };
    let mut bytes = serde_json::to_vec(&answer).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    write.shutdown().await
}

async fn serve_request(request: Request, plugins: &Arc<LivePlugins>) -> Answer {
    match request {
        Request::Status => Answer::Status {
            plugins: plugins.status(),
        },
        Request::Reload => Answer::Reload(plugins.reload().await),
        Request::Check {
            files,
            timeout_seconds,
        } => {
            if files.len() > MAX_FILES {
                return Answer::Error {
                    message: format!("at most {MAX_FILES} files per check"),
                };
            }
            if files.iter().any(|f| !f.is_absolute()) {
                return Answer::Error {
                    message: "file paths must be absolute".into(),
                };
            }
            let deadline = Duration::try_from_secs_f64(timeout_seconds)
                .unwrap_or(MAX_CHECK_DEADLINE)
                .min(MAX_CHECK_DEADLINE);
            let checked = tokio::task::spawn_blocking(move || {
                files
                    .iter()
                    .map(|file| check_with_this_executable(file, deadline))
                    .collect()
            })
            .await;
            match checked {
                Ok(reports) => Answer::Check { reports },
                Err(error) => Answer::Error {
                    message: format!("check failed: {error}"),
                },
            }
        }
    }
}

/// Asks the node whose `private/` is `private_dir`, waiting at most `timeout` for the answer.
pub fn ask(private_dir: &Path, request: &Request, timeout: Duration) -> anyhow::Result<Answer> {
    use anyhow::Context as _;
    use std::io::{BufRead as _, Write as _};
    let path = socket_path(private_dir);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).with_context(|| {
        format!(
            "no running node answers on {} (is `gbs run` serving this directory?)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut answer = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut answer)
        .context("the node did not answer")?;
    serde_json::from_str(&answer).context("the node's answer is not understood")
}
