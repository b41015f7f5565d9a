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
//! - Upstreams may also come from an introducer's storage announcements (`introducer`),
//!   added while the gateway runs.
//! - `gbs gateway servers-yaml` prints the `servers.yaml` a stock client should use.
//! - It keeps alive the leases stored through it (`leases`), renewing them through the
//!   client plugins (so ZKAP pays for them) `lease-renew-after` after they were last added.

mod introducer;
mod leases;
mod routes;
mod servers_yaml;
mod upstreams;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use blake2::{Blake2b512, Digest as _};
use tokio::net::TcpListener;

use crate::client::{ClientBuilder, ClientError};
use crate::config::NodeConfig;
use crate::limits::Limits;
use crate::node::{NodeError, NodeIdentity};
use crate::plugins::{ClientPluginHandle, PluginLoadError};
use crate::protocol::{base32_encode, Nurl, Swissnum};
use crate::server::tls_config;
pub use servers_yaml::{read_servers_yaml, servers_yaml, Announcement};
use upstreams::{Upstream, UpstreamSet};

/// Why a gateway cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The node directory's identity.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// Neither `[gateway] upstreams` nor `[gateway] servers.yaml` names a server, and no
    /// introducer is configured.
    #[error("[gateway] upstreams and servers.yaml in tahoe.cfg name no storage server to pass operations on to, and [client] introducer.furl names no introducer")]
    NoUpstreams,
    /// The introducer cannot be followed, or the servers learned from it cannot be read.
    #[error("introducer: {0}")]
    Introducer(String),
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSpec {
    /// Its NURL.
    pub nurl: Nurl,
    /// Its announcement, kept the same through the gateway.
    pub announcement: Announcement,
    /// Where the gateway learned of it.
    pub source: Source,
}

/// Where a gateway learned of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `[gateway] upstreams` or `[gateway] servers.yaml`.
    Config,
    /// An introducer's announcement.
    Introduced,
}

/// The upstreams of `config`: `[gateway] upstreams` (`gbs` nodes), the servers of
/// `[gateway] servers.yaml`, then those an introducer announced before.
pub fn upstreams(config: &NodeConfig) -> Result<Vec<UpstreamSpec>, GatewayError> {
    Ok(upstreams_and_book(config)?.0)
}

/// [`upstreams`], and the book of introduced servers they were read from when an
/// introducer is configured.
fn upstreams_and_book(
    config: &NodeConfig,
) -> Result<(Vec<UpstreamSpec>, Option<introducer::IntroducedBook>), GatewayError> {
    let mut upstreams: Vec<UpstreamSpec> = config
        .gateway
        .upstreams
        .iter()
        .map(|nurl| UpstreamSpec {
            nurl: nurl.clone(),
            announcement: Announcement::of_gbs_node(nurl),
            source: Source::Config,
        })
        .collect();
    let mut add = |spec: UpstreamSpec| {
        if upstreams
            .iter()
            .all(|u| u.nurl != spec.nurl && u.announcement.server_id != spec.announcement.server_id)
        {
            upstreams.push(spec);
        }
    };
    if let Some(path) = &config.gateway.servers_yaml {
        let text = std::fs::read_to_string(path)
            .map_err(|e| GatewayError::ServersYaml(format!("{}: {e}", path.display())))?;
        let listed = read_servers_yaml(&text)
            .map_err(|e| GatewayError::ServersYaml(format!("{}: {e}", path.display())))?;
        for (announcement, nurl) in listed {
            add(UpstreamSpec {
                nurl,
                announcement,
                source: Source::Config,
            });
        }
    }
    let book = match config.gateway.introducer {
        Some(_) => {
            let path = introducer::book_path(&config.private_dir());
            let book = introducer::IntroducedBook::open(&path).map_err(GatewayError::Introducer)?;
            book.specs()
                .map_err(GatewayError::Introducer)?
                .into_iter()
                .for_each(&mut add);
            Some(book)
        }
        None if upstreams.is_empty() => return Err(GatewayError::NoUpstreams),
        None => None,
    };
    Ok((upstreams, book))
}

/// Each upstream with its local NURL, without starting anything: what `servers-yaml`
/// prints.
pub fn local_nurls(
    config: &NodeConfig,
    port: u16,
) -> Result<Vec<(UpstreamSpec, Nurl)>, GatewayError> {
    let identity = NodeIdentity::load(&config.private_dir())?;
    Ok(upstreams(config)?
        .into_iter()
        .map(|upstream| {
            let local = local_nurl(&identity, &config.location.0, port, &upstream);
            (upstream, local)
        })
        .collect())
}

/// The local NURL of `upstream` on this node at `host:port`.
fn local_nurl(identity: &NodeIdentity, host: &str, port: u16, upstream: &UpstreamSpec) -> Nurl {
    let mut local = identity.nurl(host, port);
    local.swissnum = local_swissnum(identity.swissnum(), upstream);
    local
}

/// The swissnum of an upstream's local NURL: keyed by the node's own swissnum, so only
/// this node knows it, and stable across restarts. A configured upstream's follows its
/// NURL; an introduced one's its server id, so it survives a new address.
fn local_swissnum(node: &Swissnum, upstream: &UpstreamSpec) -> Swissnum {
    let mut hash = Blake2b512::new();
    hash.update(b"gbs-gateway-local-swissnum-v1\0");
    hash.update(node.expose().as_bytes());
    hash.update(b"\0");
    match upstream.source {
        Source::Config => hash.update(upstream.nurl.to_string().as_bytes()),
        Source::Introduced => {
            hash.update(b"introduced\0");
            hash.update(upstream.announcement.server_id.as_bytes());
        }
    }
    let digest = hash.finalize();
    Swissnum::new(base32_encode(&digest[..20]))
}

/// Builds the client of each upstream, with the node's client plugins.
#[derive(Debug, Clone)]
struct Connector {
    identity: Arc<NodeIdentity>,
    host: String,
    port: u16,
    plugins: Vec<ClientPluginHandle>,
}

impl Connector {
    /// The upstream and its local NURL.
    fn connect(&self, spec: &UpstreamSpec) -> Result<(Upstream, Nurl), GatewayError> {
        let local = local_nurl(&self.identity, &self.host, self.port, spec);
        let client = self
            .plugins
            .iter()
            .cloned()
            .fold(ClientBuilder::new(spec.nurl.clone()), ClientBuilder::plugin)
            .build()
            .map_err(|source| GatewayError::Client {
                upstream: format!("{}:{}", spec.nurl.host, spec.nurl.port),
                source: Box::new(source),
            })?;
        let upstream = Upstream::new(
            spec.nurl.clone(),
            spec.announcement.server_id.clone(),
            &local.swissnum,
            client,
        );
        Ok((upstream, local))
    }
}

/// A gateway bound to its port, ready to serve.
#[derive(Debug)]
pub struct RunningGateway {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    upstreams: Vec<(UpstreamSpec, Nurl)>,
    state: routes::GatewayState,
    connector: Connector,
    follower: Option<introducer::Follower>,
    limits: Limits,
    renew_after: std::time::Duration,
    check_interval: std::time::Duration,
}

impl RunningGateway {
    /// Loads the node's identity and client plugins, starts following the introducer if
    /// one is configured, builds a client per upstream and binds the port.
    pub async fn bind(config: &NodeConfig) -> Result<Self, GatewayError> {
        // Read before the port is bound: a config naming no server says so first.
        let (specs, book) = upstreams_and_book(config)?;
        let private = config.private_dir();
        let identity = Arc::new(NodeIdentity::load(&private)?);
        let leases = leases::LeaseBook::open(&private.join("gateway-leases.json"))
            .map_err(GatewayError::Leases)?;
        let plugins = ClientPluginHandle::load_all(config)?;
        let follower = match (&config.gateway.introducer, book) {
            (Some(furl), Some(book)) => Some(
                introducer::Follower::start(
                    config.gateway.introducer_python.clone(),
                    furl.clone(),
                    private.clone(),
                    book,
                )
                .await
                .map_err(GatewayError::Introducer)?,
            ),
            _ => None,
        };
        let (listener, port) = crate::server::bind_published(config)
            .await
            .map_err(|source| GatewayError::Bind {
                addr: config.listen,
                source,
            })?;
        let connector = Connector {
            identity: identity.clone(),
            host: config.location.0.clone(),
            port,
            plugins,
        };
        let mut upstreams = Vec::new();
        let mut nurls = Vec::new();
        for spec in specs {
            let (upstream, local) = connector.connect(&spec)?;
            upstreams.push(upstream);
            nurls.push((spec, local));
        }
        Ok(Self {
            listener,
            tls: Arc::new(tls_config(&identity)?),
            upstreams: nurls,
            state: routes::GatewayState::new(UpstreamSet::new(upstreams), Arc::new(leases)),
            connector,
            follower,
            limits: config.limits.clone(),
            renew_after: config.gateway.lease_renew_after,
            check_interval: config.gateway.lease_check_interval,
        })
    }

    /// Each upstream known at start with the local NURL that leads to it.
    pub fn nurls(&self) -> &[(UpstreamSpec, Nurl)] {
        &self.upstreams
    }

    /// Serves until `shutdown` completes, keeping leases meanwhile, and following the
    /// introducer: `learned` is called with each upstream it adds or changes, and its
    /// local NURL.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()>,
        learned: impl Fn(&UpstreamSpec, &Nurl) + Send + 'static,
    ) {
        let keeper = tokio::spawn(leases::keep(
            self.state.leases.clone(),
            self.state.upstreams.clone(),
            self.renew_after,
            self.check_interval,
        ));
        let follower = self.follower.map(|follower| {
            let (set, connector) = (self.state.upstreams.clone(), self.connector);
            tokio::spawn(follower.run(
                move |spec| {
                    let server_id = &spec.announcement.server_id;
                    let (upstream, local) = match connector.connect(spec) {
                        Ok(connected) => connected,
                        Err(error) => {
                            tracing::warn!(%error, "announced upstream not used");
                            return None;
                        }
                    };
                    if !set.insert(upstream) {
                        tracing::warn!(
                            %server_id,
                            max = upstreams::MAX_UPSTREAMS,
                            "announced upstream ignored: the gateway serves its most upstreams"
                        );
                        return None;
                    }
                    tracing::info!(%server_id, "upstream announced by the introducer");
                    Some(local)
                },
                learned,
            ))
        });
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
        if let Some(follower) = follower {
            // Dropping the relay closes its stdin: it exits (and is killed besides).
            follower.abort();
        }
        if let Err(error) = tokio::task::spawn_blocking(move || leases.flush())
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        {
            tracing::error!(%error, "cannot write the gateway's lease book");
        }
    }
}

/// The JSON list at `path` (one of the gateway's books in `private/`), empty when there is
/// none; a file that is not such a list is an error naming it and `what` it should be
/// (never silently emptied: what it remembers would be lost).
fn read_private_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
) -> Result<Vec<T>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not {what}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes `bytes` to `path` (owner-only) so that it holds either the old or the new
/// contents after a crash: a temporary file, synced, renamed over.
fn replace_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let temporary = path.with_extension("new");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}
