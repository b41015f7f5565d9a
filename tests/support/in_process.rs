//! A server called in this process, without TLS or sockets, for the benchmarks that measure
//! what plugins cost: requests go straight into the router, so nothing hides their share.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gbs::plugins::ServerPlugins;
use gbs::protocol::{authorization_value, Swissnum};
use gbs::server::AppState;
use gbs::storage::{Store, StoreConfig, SystemClock};

/// A share store in a directory of its own, with the swissnum requests must carry.
#[derive(Debug)]
pub struct InProcessServer {
    /// The node directory (plugins' state goes under it).
    pub dir: PathBuf,
    /// The share store, in `dir/storage`, with no reserved space.
    pub store: Arc<Store>,
    swissnum: Swissnum,
}

impl InProcessServer {
    /// Opens a store under `dir`.
    ///
    /// # Panics
    /// When the store cannot be opened.
    pub fn new(dir: &Path) -> Self {
        let store = Store::open(
            &dir.join("storage"),
            StoreConfig {
                reserved_space: 0,
                nodeid: [0; 20],
            },
            Arc::new(SystemClock),
        )
        .expect("open the store");
        Self {
            dir: dir.to_owned(),
            store: Arc::new(store),
            swissnum: Swissnum::new("benchbenchbenchbenchbenchbench23"),
        }
    }

    /// The `Authorization` header value for this server.
    pub fn authorization(&self) -> String {
        authorization_value(&self.swissnum)
    }

    /// The router's state with `plugins` loaded.
    pub fn state(&self, plugins: ServerPlugins) -> AppState {
        AppState::new(self.store.clone(), self.swissnum.clone()).with_plugins(Arc::new(plugins))
    }
}
