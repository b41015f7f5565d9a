//! The GBS HTTPS server: TLS listener, authorization, the twelve endpoints.
//!
//! [`router`] serves requests without a socket (tests use it with `oneshot`); [`serve`]
//! runs it behind TLS on a listener until a shutdown future completes; [`RunningNode`]
//! puts a node directory's config, identity and store together.

mod connection;
mod error;
mod extract;
mod listener;
mod memory;
mod read_thread;
mod routes;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

pub use tls::tls_config;

#[cfg(test)]
mod plugin_tests;
#[cfg(test)]
mod tests;

use crate::config::NodeConfig;
use crate::limits::Limits;
use crate::node::{NodeError, NodeIdentity};
use crate::plugins::{LivePlugins, ServerPlugins};
use crate::protocol::{Nurl, Swissnum};
use crate::storage::{Store, StoreConfig, SystemClock};
use connection::ConnectionContext;
use listener::Connections;
use memory::MemoryBudget;

/// An upload with no PATCH for this long is aborted, as in stock Tahoe.
const UPLOAD_IDLE_LIMIT: Duration = Duration::from_secs(30 * 60);

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    store: Arc<Store>,
    swissnum: Swissnum,
    plugins: Arc<LivePlugins>,
    memory: Arc<MemoryBudget>,
}

impl AppState {
    /// State for a server of `store` guarded by `swissnum`, without plugins.
    pub fn new(store: Arc<Store>, swissnum: Swissnum) -> Self {
        Self {
            store,
            swissnum,
            plugins: Arc::new(LivePlugins::fixed(Arc::new(ServerPlugins::none()))),
            memory: Arc::new(MemoryBudget::new(&Limits::default())),
        }
    }

    /// The same state with the memory budgets of `limits`.
    pub fn with_limits(mut self, limits: &Limits) -> Self {
        self.memory = Arc::new(MemoryBudget::new(limits));
        self
    }

    /// The same state with these storage plugins, fixed.
    pub fn with_plugins(self, plugins: Arc<ServerPlugins>) -> Self {
        self.with_live_plugins(Arc::new(LivePlugins::fixed(plugins)))
    }

    /// The same state with storage plugins that may be reloaded.
    pub fn with_live_plugins(mut self, plugins: Arc<LivePlugins>) -> Self {
        self.plugins = plugins;
        self
    }
}

/// The storage API as a router, without transport.
pub fn router(state: AppState) -> Router {
    routes::router().with_state(state)
}

/// Serves `state` over TLS on `listener` until `shutdown` completes, within `limits`, then
/// lets requests in flight finish for up to the drain timeout. Storage plugins' background
/// services start first and are stopped last. Uploads cut off by shutdown stay in
/// `incoming/`, which the next start wipes; completed data was fsynced before it was
/// acknowledged.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: AppState,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let sweeper = tokio::spawn(expire_idle_uploads(state.store.clone()));
    // The listener is bound: plugins' background services may start.
    state.plugins.start_services();
    serve_router(listener, tls, router(state.clone()), &limits, shutdown).await;
    sweeper.abort();
    state.plugins.stop_services().await;
}

/// Binds `tub.port` and answers the listener with the port to publish: `tub.location`'s,
/// or for `tcp:0` (any free port) the one bound.
pub(crate) async fn bind_published(config: &NodeConfig) -> std::io::Result<(TcpListener, u16)> {
    let listener = TcpListener::bind(config.listen).await?;
    let port = match config.location.1 {
        0 => listener.local_addr()?.port(),
        port => port,
    };
    Ok((listener, port))
}

/// Serves `router` over TLS on `listener` within `limits` until `shutdown` completes, then
/// lets requests in flight finish for up to the drain timeout: the connection handling of
/// a node and of `gbs gateway` alike.
pub(crate) async fn serve_router(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) {
    let (stop, stopping) = watch::channel(false);
    let context = ConnectionContext {
        tls,
        router,
        handshakes: Arc::new(Semaphore::new(limits.max_handshakes.max(1))),
        limits: limits.clone(),
        shutdown: stopping,
    };
    let connections = Connections::new(limits.max_connections);
    listener::accept_loop(listener, connections.clone(), context, shutdown).await;
    tracing::info!(
        connections = connections.len(),
        "shutting down; draining requests in flight"
    );
    let _ = stop.send(true);
    if tokio::time::timeout(limits.drain_timeout, stop.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {:?}; dropping them",
            limits.drain_timeout
        );
    }
}

async fn expire_idle_uploads(store: Arc<Store>) {
    let mut interval = tokio::time::interval(Duration::from_secs(60));
    loop {
        interval.tick().await;
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.expire_idle_uploads(UPLOAD_IDLE_LIMIT))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(uploads = n, "aborted idle uploads"),
            Err(error) => tracing::error!(%error, "upload sweeper failed"),
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Identity files.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The share store.
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    /// TLS settings.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// Binding the port.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from `tub.port`.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A configured storage plugin could not be loaded (one line naming it and why).
    #[error(transparent)]
    Plugin(#[from] crate::plugins::PluginLoadError),
    /// The admin socket: another node runs here, or it cannot be created.
    #[cfg(unix)]
    #[error(transparent)]
    Admin(#[from] crate::admin::BindError),
    /// `[storage] enabled = false`: nothing to serve.
    #[error("[storage] enabled is not true in tahoe.cfg; this node has nothing to serve")]
    StorageDisabled,
}

/// A node's server, bound and ready to serve.
#[derive(Debug)]
pub struct RunningNode {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: AppState,
    limits: Limits,
    nurl: Nurl,
    #[cfg(unix)]
    admin: crate::admin::AdminSocket,
}

impl RunningNode {
    /// Loads the identity, opens the store, loads the storage plugins and binds the port
    /// named in `config`.
    pub async fn bind(config: &NodeConfig) -> Result<Self, StartError> {
        if !config.storage_enabled {
            return Err(StartError::StorageDisabled);
        }
        let identity = NodeIdentity::load(&config.private_dir())?;
        // First: it refuses to start a second node on this directory.
        #[cfg(unix)]
        let admin = crate::admin::AdminSocket::bind(&config.private_dir()).await?;
        let store_config = StoreConfig {
            // Read-only, as in stock Tahoe, is a node that reports no space: it allocates no
            // immutable share. Unlike stock (whose docs call it a bug), a mutable write
            // that would grow a share is refused too.
            reserved_space: if config.readonly {
                u64::MAX
            } else {
                config.reserved_space
            },
            nodeid: identity.nodeid(),
        };
        let storage_dir = config.storage_dir();
        let store = tokio::task::spawn_blocking(move || {
            Store::open(&storage_dir, store_config, Arc::new(SystemClock))
        })
        .await
        .map_err(|e| {
            StartError::Storage(crate::storage::StorageError::io(
                "storage",
                std::io::Error::other(e),
            ))
        })??;
        let store = Arc::new(store);
        // Before the port is bound: a plugin that does not load stops the node.
        let plugins = Arc::new(LivePlugins::load(config, store.clone())?);
        let (listener, port) = bind_published(config)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let nurl = identity.nurl(&config.location.0, port);
        let tls = Arc::new(tls_config(&identity)?);
        let state = AppState::new(store, identity.swissnum().clone())
            .with_live_plugins(plugins)
            .with_limits(&config.limits);
        Ok(Self {
            listener,
            tls,
            state,
            limits: match crate::file_limit::open_file_limit() {
                Some(nofile) => config.limits.clone().fit_descriptors(nofile),
                None => config.limits.clone(),
            },
            nurl,
            #[cfg(unix)]
            admin,
        })
    }

    /// The node's storage plugins (to reload them).
    pub fn plugins(&self) -> Arc<LivePlugins> {
        self.state.plugins.clone()
    }

    /// The NURL clients use.
    pub fn nurl(&self) -> &Nurl {
        &self.nurl
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, with the admin socket beside.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        #[cfg(unix)]
        let admin = tokio::spawn(self.admin.serve(self.state.plugins.clone()));
        serve(self.listener, self.tls, self.state, self.limits, shutdown).await;
        #[cfg(unix)]
        {
            // Awaited so that the socket file is gone when this returns.
            admin.abort();
            let _ = admin.await;
        }
    }
}
