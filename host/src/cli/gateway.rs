//! `gbs gateway`: serve stock Tahoe clients through this node's client and its client
//! plugins; `gbs gateway servers-yaml` and `gbs servers-yaml`: what such a client reads.

use anyhow::Context as _;
use clap::Subcommand;

use super::node::{init_logging, shutdown_signal, DirArg};
use crate::config::NodeConfig;
use crate::gateway::{local_nurls, servers_yaml, Announcement, RunningGateway, UpstreamSpec};
use crate::protocol::Nurl;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct GatewayArgs {
    #[command(subcommand)]
    command: Option<GatewayCommand>,
    #[command(flatten)]
    dir: DirArg,
}

#[derive(Debug, Subcommand)]
enum GatewayCommand {
    /// Print the servers.yaml a stock Tahoe client should use to reach the upstreams
    /// through this gateway (its `private/servers.yaml`).
    ServersYaml(DirArg),
}

pub(super) fn run(args: &GatewayArgs) -> anyhow::Result<()> {
    match &args.command {
        Some(GatewayCommand::ServersYaml(dir)) => {
            let config = NodeConfig::load(&dir.dir())?;
            let port = config.location.1;
            anyhow::ensure!(
                port != 0,
                "tub.location has port 0; give the gateway a fixed port first"
            );
            let servers: Vec<_> = local_nurls(&config, port)?
                .into_iter()
                .map(|(upstream, local)| (upstream.announcement, local))
                .collect();
            print!("{}", servers_yaml(&servers));
            Ok(())
        }
        None => serve(args),
    }
}

fn serve(args: &GatewayArgs) -> anyhow::Result<()> {
    init_logging();
    let config = NodeConfig::load(&args.dir.dir())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(async {
        let shutdown = shutdown_signal().context("cannot listen for signals")?;
        let gateway = RunningGateway::bind(&config).await?;
        // One line per upstream on stdout: the local NURL, then the upstream it leads to.
        for (upstream, local) in gateway.nurls() {
            print_upstream(upstream, local);
        }
        tracing::info!(upstreams = gateway.nurls().len(), "gateway serving");
        // And one for each upstream an introducer announces (or moves) later.
        gateway.serve(shutdown, print_upstream).await;
        anyhow::Ok(())
    });
    runtime.shutdown_background();
    crate::plugins::remote::stop_all_processes();
    served
}

/// Prints an upstream's line: its local NURL, then where it leads. Not with `println!`,
/// which panics once stdout is closed (the gateway goes on serving).
fn print_upstream(upstream: &UpstreamSpec, local: &Nurl) {
    let line = format!("{local} {}:{}\n", upstream.nurl.host, upstream.nurl.port);
    let mut stdout = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut stdout, line.as_bytes())
        .and_then(|()| std::io::Write::flush(&mut stdout));
}

/// `gbs servers-yaml NURL...`: the servers.yaml for reaching `gbs` nodes directly.
pub(super) fn direct(nurls: &[String]) -> anyhow::Result<()> {
    let servers = nurls
        .iter()
        .map(|text| {
            let nurl: Nurl = text
                .parse()
                .map_err(|e| anyhow::anyhow!("{text:?} is not a NURL: {e}"))?;
            Ok((Announcement::of_gbs_node(&nurl), nurl))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    print!("{}", servers_yaml(&servers));
    Ok(())
}
