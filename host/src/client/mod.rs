//! A GBS client: every storage operation of the protocol, against stock Tahoe servers and
//! `gbs` alike.
//!
//! A [`Client`] talks to the one server its NURL names. It pins the server's TLS key to the
//! NURL's SPKI hash (refusing any other key before a request is sent), reuses connections,
//! runs at most a bounded number of requests at once, and puts a deadline on every stage of
//! every request: connecting, waiting for response headers, and each pause in a response
//! body. Uploads read from any `AsyncRead` and downloads write to any `AsyncWrite`, a chunk
//! at a time, so memory use does not grow with share size.
//!
//! ```no_run
//! # async fn demo() -> Result<(), gbs::client::ClientError> {
//! use gbs::client::ClientBuilder;
//! use gbs::protocol::{Nurl, ShareKind, StorageIndex};
//!
//! let nurl: Nurl = "pb://WvQpEy1vElE-08RDYWr_X63JYNn5KR14kgfTbEnIDVU@127.0.0.1:47125/abcdefghijklmnopqrstuvwxyz234567#v=1"
//!     .parse()
//!     .expect("a valid NURL");
//! let client = ClientBuilder::new(nurl).build()?;
//! let version = client.version().await?;
//! println!("{} bytes free", version.available_space);
//! let si: StorageIndex = "aaaqeayeaudaocajbifqydiob4".parse().expect("a valid storage index");
//! let shares = client.list_shares(ShareKind::Immutable, &si).await?;
//! println!("{shares:?}");
//! # Ok(()) }
//! ```
//!
//! Files: `tls` (the pin verifier), `request` and `response` (one exchange, its deadlines and
//! body checks), `error`, then one file per group of operations: `share` (list, read,
//! corruption reports and leases, for both kinds), `immutable` (allocate, chunks, abort),
//! `upload` (streaming a whole share), `mutable` (read-test-write) and `plugin` (client
//! storage plugins: announcements, plugin data, rejections and retries, plugin routes).

mod error;
mod forward;
mod immutable;
mod mutable;
mod plugin;
mod request;
mod response;
mod share;
mod tls;
mod upload;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::Method;
use tokio::sync::Semaphore;

pub use error::{BoxError, ClientError, PluginRejection, Stage};
pub use forward::{Forward, Forwarded};
pub use immutable::{ChunkWritten, ImmutableUpload};
pub use plugin::{AnnouncedPlugins, PluginAnnouncement, MAX_PLUGIN_RETRIES};
pub use tls::pinned_tls_config;
pub use upload::UploadReport;

use crate::plugins::ClientPluginHandle;
use crate::protocol::{authorization_value, paths, Nurl, NurlScheme, VersionInfo};
use request::Request;
use tls::KeyPolicy;

/// The deadlines every request runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// From sending a request to receiving its response headers, request body included.
    pub response: Duration,
    /// The longest pause allowed between two pieces of a response body.
    pub idle: Duration,
}

impl Default for Timeouts {
    /// The stock Python client's values (`gbs-protocol.md` §1.5): 60 s for headers and for
    /// body inactivity; 30 s to connect, as Twisted does.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(30),
            response: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }
}

/// Settings for a [`Client`]; [`ClientBuilder::build`] makes one.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    nurl: Nurl,
    policy: KeyPolicy,
    timeouts: Timeouts,
    max_connections: usize,
    upload_chunk_size: usize,
    uploads_in_flight: usize,
    plugins: Vec<ClientPluginHandle>,
}

impl ClientBuilder {
    /// A client for the server `nurl` names, pinned to its key, with stock-like defaults:
    /// up to 10 requests (and connections) at once, 1 MiB upload chunks, 4 in flight.
    pub fn new(nurl: Nurl) -> Self {
        let policy = KeyPolicy::Pinned(nurl.spki_hash);
        Self {
            nurl,
            policy,
            timeouts: Timeouts::default(),
            max_connections: 10,
            upload_chunk_size: 1 << 20,
            uploads_in_flight: 4,
            plugins: Vec::new(),
        }
    }

    /// Adds a client storage plugin. It takes part in this client's operations if the
    /// server announces a plugin of the same name and the plugin accepts the announcement.
    pub fn plugin(mut self, plugin: ClientPluginHandle) -> Self {
        self.plugins.push(plugin);
        self
    }

    /// Replaces all deadlines.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Deadline for TCP connect plus TLS handshake.
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.timeouts.connect = limit;
        self
    }

    /// Deadline from sending a request to its response headers.
    pub fn response_timeout(mut self, limit: Duration) -> Self {
        self.timeouts.response = limit;
        self
    }

    /// Longest pause allowed inside a response body.
    pub fn idle_timeout(mut self, limit: Duration) -> Self {
        self.timeouts.idle = limit;
        self
    }

    /// How many requests may run at once, which also bounds the connections kept open
    /// (at least 1).
    pub fn max_connections(mut self, limit: usize) -> Self {
        self.max_connections = limit.max(1);
        self
    }

    /// Bytes per upload request (at least 1). Memory used by an upload is about this times
    /// [`ClientBuilder::uploads_in_flight`].
    pub fn upload_chunk_size(mut self, bytes: usize) -> Self {
        self.upload_chunk_size = bytes.max(1);
        self
    }

    /// How many upload requests of one share may be in flight at once (at least 1).
    pub fn uploads_in_flight(mut self, limit: usize) -> Self {
        self.uploads_in_flight = limit.max(1);
        self
    }

    /// Options that weaken the client's security, for tests and debugging only.
    pub fn danger(self) -> DangerousClientBuilder {
        DangerousClientBuilder(self)
    }

    /// Makes the client. Nothing is sent until the first operation.
    pub fn build(self) -> Result<Client, ClientError> {
        if self.nurl.scheme != NurlScheme::Tcp {
            return Err(ClientError::UnsupportedNurl(
                "pb+tor:// needs Tor, which this client does not dial",
            ));
        }
        let base = reqwest::Url::parse(&self.nurl.base_url())
            .map_err(|_| ClientError::UnsupportedNurl("the host is not a valid URL host"))?;
        let tls = tls::client_config(self.policy).map_err(|e| ClientError::Setup(Box::new(e)))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .http1_only()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.timeouts.connect)
            // Small requests must not wait for a delayed ACK (reqwest's default, said aloud).
            .tcp_nodelay(true)
            .pool_max_idle_per_host(self.max_connections)
            // Below the 60 s after which Twisted closes idle connections, so that a request
            // rarely meets a connection the server is closing.
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Setup(Box::new(e)))?;
        let mut authorization = HeaderValue::from_str(&authorization_value(&self.nurl.swissnum))
            .map_err(|_| ClientError::UnsupportedNurl("the swissnum is not valid in a header"))?;
        authorization.set_sensitive(true);
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                authorization,
                limit: Arc::new(Semaphore::new(self.max_connections)),
                timeouts: self.timeouts,
                upload_chunk_size: self.upload_chunk_size,
                uploads_in_flight: self.uploads_in_flight,
                server: format!("{:?}", self.nurl),
                plugins: self.plugins,
                active_plugins: tokio::sync::OnceCell::new(),
            }),
        })
    }
}

/// Options that weaken security; reached through [`ClientBuilder::danger`].
#[derive(Debug, Clone)]
pub struct DangerousClientBuilder(ClientBuilder);

impl DangerousClientBuilder {
    /// Accepts whatever key the server presents instead of the NURL's pin. The handshake
    /// still proves the server holds that key, but anyone on the path can be that server.
    pub fn accept_any_server_key(mut self) -> ClientBuilder {
        self.0.policy = KeyPolicy::AcceptAny;
        self.0
    }
}

/// A client of one GBS server. Cheap to clone; clones share connections and the limit on
/// concurrent requests.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: reqwest::Url,
    /// `Tahoe-LAFS <base64 swissnum>`, marked sensitive.
    authorization: HeaderValue,
    limit: Arc<Semaphore>,
    timeouts: Timeouts,
    upload_chunk_size: usize,
    uploads_in_flight: usize,
    /// The NURL's `Debug` form, which leaves out the swissnum.
    server: String,
    /// Client storage plugins, as configured.
    plugins: Vec<ClientPluginHandle>,
    /// Those that apply to this server, found at the first operation.
    active_plugins: tokio::sync::OnceCell<plugin::ActivePlugins>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.inner.server)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// `GET /storage/v1/version`: the server's version and free space.
    pub async fn version(&self) -> Result<VersionInfo, ClientError> {
        let (reply, applied) = self
            .send_with_plugins(Request::new(Method::GET, paths::version()), || {
                gbs_plugin_interface::Operation::Version
            })
            .await?;
        let (_, info) = reply.cbor(&[reqwest::StatusCode::OK]).await?;
        self.plugins_committed(applied, || gbs_plugin_interface::Outcome::Done)
            .await;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NURL: &str = "pb://WvQpEy1vElE-08RDYWr_X63JYNn5KR14kgfTbEnIDVU@127.0.0.1:47125/abcdefghijklmnopqrstuvwxyz234567#v=1";

    #[test]
    fn debug_output_leaves_out_the_swissnum() {
        let builder = ClientBuilder::new(NURL.parse().unwrap());
        assert!(!format!("{builder:?}").contains("abcdefgh"));
        let client = builder.build().unwrap();
        let shown = format!("{client:?}");
        assert!(
            shown.contains("127.0.0.1:47125") && !shown.contains("abcdefgh"),
            "{shown}"
        );
    }
}
