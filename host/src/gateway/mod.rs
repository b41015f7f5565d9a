//! `gbs gateway`: a GBS server that stock Tahoe clients use as their storage servers, and
//! that passes every operation on to the real (upstream) servers through this node's client,
//! with the client plugins of its `tahoe.cfg` applied. So a stock client gets what only our
//! client could do before: attach passes, tokens or signatures, retry after a rejection.
//!
//! - One listener (the node's `tub.port`, its TLS identity); each upstream (the NURLs of
//!   `[gateway] upstreams`, and the servers of a stock client's `[gateway] servers.yaml`)
//!   gets a local NURL of its own, whose swissnum is derived from the node's swissnum and
//!   the upstream, so it is the same at every start.
//! - Requests go upstream as they came (`routes`): path, secrets (lease secrets and write
//!   enablers are passed through unchanged, so what is stored stays manageable without the
//!   gateway), `Accept`, `Range`, `Content-Range` and body; answers come back as the upstream
//!   gave them, bodies streamed. See `routes` for the bounds.
//! - `gbs gateway servers-yaml` prints the `servers.yaml` a stock client should use.
//! - It keeps alive the leases stored through it (`leases`), renewing them through the
//!   client plugins (so ZKAP pays for them) `lease-renew-after` after they were last added.

mod leases;
mod routes;
mod servers_yaml;

use std::future::Future;
use std::sync::Arc;

use blake2::{Blake2b512, Digest as _};
use tokio::net::TcpListener;

use crate::client::{Client, ClientBuilder, ClientError};
use crate::config::NodeConfig;
use crate::limits::Limits;
use crate::node::{NodeError, NodeIdentity};
use crate::plugins::{ClientPluginHandle, PluginLoadError};
use crate::protocol::{base32_encode, Nurl, Swissnum};
use crate::server::tls_config;
pub use servers_yaml::{read_servers_yaml, servers_yaml, Announcement};

/// One upstream server and the local NURL that leads to it.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// The upstream server.
    pub(crate) nurl: Nurl,
    /// The swissnum of its local NURL.
    pub(crate) local: Swissnum,
    /// Our client of it, with the node's client plugins.
    pub(crate) client: Client,
}

/// Why a gateway cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The node directory's identity.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// Neither `[gateway] upstreams` nor `[gateway] servers.yaml` names a server.
    #[error("[gateway] upstreams and servers.yaml in tahoe.cfg name no storage server to pass operations on to")]
    NoUpstreams,
    /// `[gateway] servers.yaml` cannot be read.
    #[error("{0}")]
    ServersYaml(String),
    /// A client plugin did not load.
    #[error(transparent)]
    Plugin(#[from] PluginLoadError),
    /// A client could not be built.
    #[error("client of {upstream}: {source}")]
    Client {
        /// The upstream, without its swissnum.
        upstream: String,
        /// Why.
        source: Box<ClientError>,
    },
    /// TLS settings.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The lease book cannot be read.
    #[error("{0}")]
    Leases(String),
    /// Binding the port.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from `tub.port`.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// One upstream: where it is, and how stock clients know it.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    /// Its NURL.
    pub nurl: Nurl,
    /// Its announcement, kept the same through the gateway.
    pub announcement: Announcement,
}

/// The upstreams of `config`: `[gateway] upstreams` (`gbs` nodes), then the servers of
/// `[gateway] servers.yaml`.
pub fn upstreams(config: &NodeConfig) -> Result<Vec<UpstreamSpec>, GatewayError> {
    let mut upstreams: Vec<UpstreamSpec> = config
        .gateway
        .upstreams
        .iter()
        .map(|nurl| UpstreamSpec {
            nurl: nurl.clone(),
            announcement: Announcement::of_gbs_node(nurl),
        })
        .collect();
    if let Some(path) = &config.gateway.servers_yaml {
        let text = std::fs::read_to_string(path)
            .map_err(|e| GatewayError::ServersYaml(format!("{}: {e}", path.display())))?;
        let listed = read_servers_yaml(&text)
            .map_err(|e| GatewayError::ServersYaml(format!("{}: {e}", path.display())))?;
        for (announcement, nurl) in listed {
            if upstreams.iter().all(|u| u.nurl != nurl) {
                upstreams.push(UpstreamSpec { nurl, announcement });
            }
        }
    }
    if upstreams.is_empty() {
        return Err(GatewayError::NoUpstreams);
    }
    Ok(upstreams)
}

/// Each upstream with its local NURL, without starting anything: what `servers-yaml`
/// prints.
pub fn local_nurls(
    config: &NodeConfig,
    port: u16,
) -> Result<Vec<(UpstreamSpec, Nurl)>, GatewayError> {
    let identity = NodeIdentity::load(&config.private_dir())?;
    Ok(with_local_nurls(
        upstreams(config)?,
        &identity,
        &config.location.0,
        port,
    ))
}

/// Each upstream with its local NURL on this node at `host:port`.
fn with_local_nurls(
    upstreams: Vec<UpstreamSpec>,
    identity: &NodeIdentity,
    host: &str,
    port: u16,
) -> Vec<(UpstreamSpec, Nurl)> {
    upstreams
        .into_iter()
        .map(|upstream| {
            let mut local = identity.nurl(host, port);
            local.swissnum = local_swissnum(identity.swissnum(), &upstream.nurl);
            (upstream, local)
        })
        .collect()
}

/// The swissnum of an upstream's local NURL: keyed by the node's own swissnum, so only
/// this node knows it, and stable across restarts.
fn local_swissnum(node: &Swissnum, upstream: &Nurl) -> Swissnum {
    let mut hash = Blake2b512::new();
    hash.update(b"gbs-gateway-local-swissnum-v1\0");
    hash.update(node.expose().as_bytes());
    hash.update(b"\0");
    hash.update(upstream.to_string().as_bytes());
    let digest = hash.finalize();
    Swissnum::new(base32_encode(&digest[..20]))
}

/// A gateway bound to its port, ready to serve.
#[derive(Debug)]
pub struct RunningGateway {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    upstreams: Vec<(UpstreamSpec, Nurl)>,
    state: routes::GatewayState,
    limits: Limits,
    renew_after: std::time::Duration,
    check_interval: std::time::Duration,
}

impl RunningGateway {
    /// Loads the node's identity and client plugins, builds a client per upstream and binds
    /// the port.
    pub async fn bind(config: &NodeConfig) -> Result<Self, GatewayError> {
        // Read before the port is bound: a config naming no server says so first.
        let specs = upstreams(config)?;
        let identity = NodeIdentity::load(&config.private_dir())?;
        let leases = leases::LeaseBook::open(&config.private_dir().join("gateway-leases.json"))
            .map_err(GatewayError::Leases)?;
        let plugins = ClientPluginHandle::load_all(config)?;
        let (listener, port) = crate::server::bind_published(config)
            .await
            .map_err(|source| GatewayError::Bind {
                addr: config.listen,
                source,
            })?;
        let nurls = with_local_nurls(specs, &identity, &config.location.0, port);
        let mut upstreams = Vec::new();
        for (upstream, local) in &nurls {
            let upstream = &upstream.nurl;
            let client = plugins
                .iter()
                .cloned()
                .fold(ClientBuilder::new(upstream.clone()), ClientBuilder::plugin)
                .build()
                .map_err(|source| GatewayError::Client {
                    upstream: format!("{}:{}", upstream.host, upstream.port),
                    source: Box::new(source),
                })?;
            upstreams.push(Upstream {
                nurl: upstream.clone(),
                local: local.swissnum.clone(),
                client,
            });
        }
        Ok(Self {
            listener,
            tls: Arc::new(tls_config(&identity)?),
            upstreams: nurls,
            state: routes::GatewayState::new(upstreams, Arc::new(leases)),
            limits: config.limits.clone(),
            renew_after: config.gateway.lease_renew_after,
            check_interval: config.gateway.lease_check_interval,
        })
    }

    /// Each upstream with the local NURL that leads to it.
    pub fn nurls(&self) -> &[(UpstreamSpec, Nurl)] {
        &self.upstreams
    }

    /// Serves until `shutdown` completes, keeping leases meanwhile.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let keeper = tokio::spawn(leases::keep(
            self.state.leases.clone(),
            self.state.upstreams.clone(),
            self.renew_after,
            self.check_interval,
        ));
        let leases = self.state.leases.clone();
        crate::server::serve_router(
            self.listener,
            self.tls,
            routes::router(self.state),
            &self.limits,
            shutdown,
        )
        .await;
        keeper.abort();
        if let Err(error) = tokio::task::spawn_blocking(move || leases.flush())
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        {
            tracing::error!(%error, "cannot write the gateway's lease book");
        }
    }
}
