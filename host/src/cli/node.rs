//! `gbs create-node`, `gbs run` and `gbs nurl`.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::config::NodeConfig;
use crate::node::{create_node, CreateOptions, NodeIdentity};
use crate::server::RunningNode;

#[derive(Debug, clap::Args)]
pub(super) struct DirArg {
    /// Node directory [default: $GBS_NODE_DIR or ~/.gbs]
    dir: Option<PathBuf>,
}

impl DirArg {
    pub(super) fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(super::default_node_dir)
    }
}

#[derive(Debug, clap::Args)]
pub(super) struct CreateArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Host name or address that clients use to reach this node (goes into the NURL)
    #[arg(long, default_value = "127.0.0.1")]
    hostname: String,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    listen: IpAddr,
    /// TCP port [default: a free port, chosen now and kept]
    #[arg(long)]
    port: Option<u16>,
    /// Do not install the sample plugins, even when they are built beside this binary
    #[arg(long)]
    no_sample_plugins: bool,
}

/// Where `cargo build --workspace` leaves the sample plugin libraries: beside `gbs`.
fn sample_plugins_dir() -> Option<std::path::PathBuf> {
    std::env::current_exe()
        .ok()?
        .parent()
        .map(ToOwned::to_owned)
}

pub(super) fn create(args: &CreateArgs) -> anyhow::Result<()> {
    let dir = args.dir.dir();
    let options = CreateOptions {
        hostname: args.hostname.clone(),
        listen: args.listen,
        port: args.port,
        sample_plugins_from: if args.no_sample_plugins {
            None
        } else {
            sample_plugins_dir()
        },
    };
    let nurl = create_node(&dir, &options)?;
    eprintln!("created node in {}", dir.display());
    println!("{nurl}");
    Ok(())
}

pub(super) fn nurl(args: &DirArg) -> anyhow::Result<()> {
    let dir = args.dir();
    let config = NodeConfig::load(&dir)?;
    let identity = NodeIdentity::load(&config.private_dir())?;
    println!("{}", identity.nurl(&config.location.0, config.location.1));
    Ok(())
}

pub(super) fn run(args: &DirArg) -> anyhow::Result<()> {
    init_logging();
    let dir = args.dir();
    if !dir.join("tahoe.cfg").exists() {
        let options = CreateOptions {
            hostname: "127.0.0.1".into(),
            listen: [127, 0, 0, 1].into(),
            port: None,
            sample_plugins_from: sample_plugins_dir(),
        };
        create_node(&dir, &options)?;
        tracing::info!(dir = %dir.display(), "created a new node");
    }
    let config = NodeConfig::load(&dir)?;
    // Not fatal: a node under the old limit still serves, just fewer clients at once.
    if let Err(error) = crate::file_limit::raise_open_file_limit() {
        tracing::warn!(%error, "cannot raise the open-file limit");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Storage calls run on blocking threads; bound them (and the memory each holds).
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(async {
        let mut shutdown = Box::pin(shutdown_signal().context("cannot listen for signals")?);
        let mut hangups = Hangups::new().context("cannot listen for signals")?;
        // Start-up (plugin checks, constructors) runs beside the signal handlers, so that
        // SIGINT and SIGTERM work at every stage of it.
        let mut bind = tokio::spawn(async move { RunningNode::bind(&config).await });
        let node = loop {
            tokio::select! {
                bound = &mut bind => break bound.context("start-up failed")??,
                () = &mut shutdown => {
                    tracing::info!("start-up interrupted");
                    return anyhow::Ok(());
                }
                () = hangups.next() => {
                    tracing::warn!("SIGHUP during start-up ignored: plugins can be reloaded once the node serves");
                }
            }
        };
        tracing::info!(listen = %node.local_addr()?, "serving storage");
        // The NURL goes to stdout alone so that scripts can read it.
        println!("{}", node.nurl());
        let plugins = node.plugins();
        let reloads = tokio::spawn(async move {
            loop {
                hangups.next().await;
                tracing::info!("SIGHUP: reloading storage plugins");
                // The outcome is logged line by line by the reload itself.
                let _ = plugins.reload().await;
            }
        });
        node.serve(shutdown).await;
        reloads.abort();
        anyhow::Ok(())
    });
    // A plugin stuck in its constructor or a hook may hold a thread forever; do not wait.
    runtime.shutdown_background();
    // But plugin processes do not die with the node: stop them (each within 4 s).
    crate::plugins::remote::stop_all_processes();
    served
}

/// Threads for blocking storage calls at most; more calls wait in line.
const MAX_BLOCKING_THREADS: usize = 64;

/// `RUST_LOG` when set, else info-level logs from gbs; colours only on a terminal, so that
/// a log sent to a file or a journal holds no escape codes.
pub(super) fn init_logging() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Registers for SIGINT and SIGTERM now, so that a signal arriving any time after start-up
/// (even before serving begins) shuts down cleanly, and returns a future that completes on
/// the first of them.
#[cfg(unix)]
pub(super) fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutdown requested");
    })
}

#[cfg(not(unix))]
pub(super) fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested");
    })
}

/// SIGHUP, which asks for a plugin reload (and would end the node unhandled).
struct Hangups {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Hangups {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?,
        })
    }

    /// The next SIGHUP (never, where there is none).
    async fn next(&mut self) {
        #[cfg(unix)]
        if self.signal.recv().await.is_some() {
            return;
        }
        std::future::pending::<()>().await;
    }
}
