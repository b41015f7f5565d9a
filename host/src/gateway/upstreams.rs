//! The upstreams a running gateway passes operations on to. The set grows while it runs
//! (an introducer announces a server) and an entry is replaced when its server announces a
//! new address; requests take a snapshot, so a change never disturbs one in flight.

use std::sync::{Arc, RwLock};

use subtle::ConstantTimeEq as _;

use crate::client::Client;
use crate::protocol::{authorization_value, Nurl, Swissnum};

/// The most upstreams one gateway serves; announcements beyond it are ignored (logged).
pub(crate) const MAX_UPSTREAMS: usize = 1_000;

/// One upstream server and the local NURL that leads to it.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// The upstream server.
    pub(crate) nurl: Nurl,
    /// Its server id (`v0-...`), which identifies it across new addresses.
    pub(crate) server_id: String,
    /// The `Authorization` value of its local NURL, computed once: every request is
    /// compared with every upstream's.
    authorization: String,
    /// Our client of it, with the node's client plugins.
    pub(crate) client: Client,
}

impl Upstream {
    pub(crate) fn new(nurl: Nurl, server_id: String, local: &Swissnum, client: Client) -> Self {
        Self {
            nurl,
            server_id,
            authorization: authorization_value(local),
            client,
        }
    }
}

/// The current upstreams.
#[derive(Debug)]
pub(crate) struct UpstreamSet {
    current: RwLock<Arc<Vec<Arc<Upstream>>>>,
}

impl UpstreamSet {
    pub(crate) fn new(upstreams: Vec<Upstream>) -> Self {
        Self {
            current: RwLock::new(Arc::new(upstreams.into_iter().map(Arc::new).collect())),
        }
    }

    /// The upstreams as they are now.
    pub(crate) fn snapshot(&self) -> Arc<Vec<Arc<Upstream>>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The upstream whose local `Authorization` value is `presented`, comparing every one
    /// in constant time.
    pub(crate) fn by_authorization(&self, presented: &[u8]) -> Option<Arc<Upstream>> {
        let mut found = None;
        for upstream in self.snapshot().iter() {
            if bool::from(upstream.authorization.as_bytes().ct_eq(presented)) {
                found = Some(upstream.clone());
            }
        }
        found
    }

    /// Adds `upstream`, or replaces the one with its server id. Refused (answers `false`)
    /// when it is new and the set is full.
    pub(crate) fn insert(&self, upstream: Upstream) -> bool {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next: Vec<Arc<Upstream>> = current.as_ref().clone();
        match next.iter().position(|u| u.server_id == upstream.server_id) {
            Some(at) => next[at] = Arc::new(upstream),
            None if next.len() >= MAX_UPSTREAMS => return false,
            None => next.push(Arc::new(upstream)),
        }
        *current = Arc::new(next);
        true
    }
}
