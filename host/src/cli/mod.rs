//! The `gbs` command line: parsing, dispatch and exit codes.
//!
//! Each command lives in its own file; [`main`] is the only place that turns errors into
//! exit statuses.

mod client;
mod gateway;
mod node;
mod plugin;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A Tahoe-LAFS "Great Black Swamp" storage node with storage plugins.
#[derive(Debug, Parser)]
#[command(name = "gbs", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a node directory: tahoe.cfg, TLS key and certificate, swissnum. Prints the NURL.
    CreateNode(node::CreateArgs),
    /// Serve a node directory (created first if it holds no tahoe.cfg).
    Run(node::DirArg),
    /// Print a node's NURL.
    Nurl(node::DirArg),
    /// Talk to a storage server: version, put, get, ls, lease, abort, corrupt, mutable, plugins.
    Client(Box<client::ClientArgs>),
    /// Check plugin libraries, and list the plugins a node's config names.
    Plugin(plugin::PluginArgs),
    /// Serve stock Tahoe clients: pass their operations on to the servers of
    /// `[gateway] upstreams` through this node's client plugins. Prints one local NURL per
    /// upstream.
    Gateway(gateway::GatewayArgs),
    /// Print the servers.yaml a stock Tahoe client needs to reach these gbs nodes directly.
    ServersYaml {
        /// The nodes' NURLs.
        #[arg(required = true)]
        nurls: Vec<String>,
    },
}

/// Runs the `gbs` command with the process arguments.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version go to stdout with success; usage errors exit 2.
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { 2 } else { 0 });
        }
    };
    if !matches!(cli.command, Command::Run(_) | Command::Gateway(_)) {
        end_quietly_when_stdout_closes();
    }
    let result = match cli.command {
        Command::CreateNode(args) => node::create(&args),
        Command::Run(args) => node::run(&args),
        Command::Nurl(args) => node::nurl(&args),
        Command::Client(args) => client::run(*args),
        Command::Gateway(args) => gateway::run(&args),
        Command::ServersYaml { nurls } => gateway::direct(&nurls),
        // Plugin commands have their own exit statuses (see `gbs plugin check --help`).
        Command::Plugin(args) => match plugin::run(&args) {
            Ok(code) => return code,
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gbs: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Makes a command whose reader went away (`gbs client plugins NURL | head`) end as Unix
/// tools do, with the status of a death by `SIGPIPE` and no message, instead of the panic
/// `println!` raises. Rust ignores `SIGPIPE` (so that writes to closed sockets fail rather
/// than kill), and restoring it would also kill a command writing to a plugin's closed
/// Unix socket, so only printing is caught.
fn end_quietly_when_stdout_closes() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout")
            && message.ends_with(&format!("(os error {})", libc::EPIPE))
        {
            std::process::exit(128 + libc::SIGPIPE);
        }
        report(info);
    }));
}

/// The node directory when none is given: `$GBS_NODE_DIR`, else `~/.gbs`.
fn default_node_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GBS_NODE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".gbs")
}
