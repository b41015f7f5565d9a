//! Client storage plugins: which of them a server takes, the plugin data they attach, what
//! they do with a rejection, and the plugin routes they call.
//!
//! A client with no plugins sends exactly what it sent before. With plugins, the server's
//! `GET /storage/v1/plugins` is fetched once per [`Client`] (and its clones); a server
//! without that route (stock Tahoe answers 404) takes none. For each operation, every
//! plugin the server announces and whose `matches` accepts the announcement may attach data
//! (`prepare`); a rejection by one of them is offered to it (`rejected`) and the request is
//! sent again with the new data, at most [`MAX_PLUGIN_RETRIES`] times; after success each is
//! told the outcome (`committed`).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use abi_stable::std_types::{ROption, RResult};
use async_ffi::{FfiFuture, FutureExt as _};
use bytes::Bytes;
use ciborium::Value;
use futures_util::FutureExt as _;
use gbs_plugin_interface::ffi::{
    ErrorKind, PluginError, Rejection, RouteRequest, RouteResponse, ServerConnectionBox,
    ServerConnectionFfi,
};
use gbs_plugin_interface::{to_cbor, Operation, Outcome};
use reqwest::header::HeaderName;
use reqwest::{Method, StatusCode};

use super::request::Request;
use super::response::Reply;
use super::{Client, ClientError};
use crate::plugins::data::{
    PluginData, MAX_PLUGIN_DATA, PLUGIN_DATA_HEADER, PLUGIN_INTERFACE_HEADER,
};
use crate::plugins::ClientPluginHandle;
use crate::protocol::paths;

/// How many times one operation is sent again after plugin rejections.
pub const MAX_PLUGIN_RETRIES: usize = 3;
/// How long one client plugin hook may take, its own route calls included.
const PLUGIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);
/// The largest `GET /storage/v1/plugins` answer or plugin route answer read.
const MAX_PLUGIN_RESPONSE: u64 = 16 << 20;

const DATA_HEADER: HeaderName = HeaderName::from_static(PLUGIN_DATA_HEADER);

/// One plugin a server announces.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PluginAnnouncement {
    /// The plugin's name.
    pub name: String,
    /// The server side's version.
    pub version: String,
    /// What it announces.
    pub announcement: Value,
}

/// What `GET /storage/v1/plugins` told about a server's plugins.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AnnouncedPlugins {
    /// The plugin interface version the server hosts (`1.2`), when it says one.
    pub interface: Option<String>,
    /// The plugins it runs.
    pub plugins: Vec<PluginAnnouncement>,
}

/// The longest interface version believed from a server.
const MAX_INTERFACE_VERSION: usize = 32;

/// The client plugins that apply to this client's server, found once.
pub(super) type ActivePlugins = Arc<Vec<ClientPluginHandle>>;

/// What was sent with plugin data, for [`Client::plugins_committed`].
#[derive(Debug)]
pub(super) struct Applied {
    plugins: ActivePlugins,
    operation: Vec<u8>,
}

fn plugin_error(plugin: &str, error: impl std::fmt::Display) -> ClientError {
    ClientError::Plugin {
        plugin: plugin.to_owned(),
        message: error.to_string(),
    }
}

/// Awaits a plugin future under [`PLUGIN_DEADLINE`], turning a panic that escaped its
/// guard into an error.
async fn call<T>(future: FfiFuture<RResult<T, PluginError>>) -> Result<T, String> {
    match tokio::time::timeout(PLUGIN_DEADLINE, AssertUnwindSafe(future).catch_unwind()).await {
        Ok(Ok(RResult::ROk(value))) => Ok(value),
        Ok(Ok(RResult::RErr(error))) => Err(error.to_string()),
        Ok(Err(_)) => Err("its future panicked".into()),
        Err(_) => Err(format!("it did not answer within {PLUGIN_DEADLINE:?}")),
    }
}

impl ClientPluginHandle {
    /// Calls the plugin's local resource (interface 1.1; a 1.0 plugin answers 404).
    pub async fn route(&self, request: RouteRequest) -> Result<RouteResponse, ClientError> {
        call(self.object.route(request))
            .await
            .map_err(|e| plugin_error(&self.name, e))
    }
}

fn text_of(value: &Value, key: &str) -> Option<String> {
    let Value::Map(entries) = value else {
        return None;
    };
    entries.iter().find_map(|(k, v)| match (k, v) {
        (Value::Text(k), Value::Text(v)) if k == key => Some(v.clone()),
        _ => None,
    })
}

/// Decodes the `GET /storage/v1/plugins` answer; malformed entries are skipped.
fn decode_announcements(body: &[u8]) -> Result<Vec<PluginAnnouncement>, ClientError> {
    let mut reader = body;
    let value: Value = ciborium::from_reader(&mut reader)
        .map_err(|_| ClientError::Decode(crate::protocol::DecodeError::NotCbor))?;
    if !reader.is_empty() {
        return Err(ClientError::Decode(
            crate::protocol::DecodeError::TrailingBytes,
        ));
    }
    let Value::Array(items) = value else {
        return Err(ClientError::Decode(crate::protocol::DecodeError::Schema(
            "the plugin list is not a CBOR array".into(),
        )));
    };
    Ok(items
        .into_iter()
        .filter_map(|item| {
            let name = text_of(&item, "name")?;
            let version = text_of(&item, "version").unwrap_or_default();
            let Value::Map(entries) = item else {
                return None;
            };
            let announcement = entries
                .into_iter()
                .find_map(|(k, v)| matches!(&k, Value::Text(k) if k == "announcement").then_some(v))
                .unwrap_or(Value::Null);
            Some(PluginAnnouncement {
                name,
                version,
                announcement,
            })
        })
        .collect())
}

/// A server as a client plugin sees it: its own routes there.
struct Connection {
    client: Client,
    plugin: Arc<str>,
}

impl ServerConnectionFfi for Connection {
    fn call_route(&self, request: RouteRequest) -> FfiFuture<RResult<RouteResponse, PluginError>> {
        let (client, plugin) = (self.client.clone(), self.plugin.clone());
        async move {
            client
                .call_plugin_route(&plugin, request)
                .await
                .map_err(|e| PluginError {
                    kind: ErrorKind::FAILED,
                    message: e.to_string().into(),
                })
                .into()
        }
        .into_ffi()
    }
}

impl Client {
    /// `GET /storage/v1/plugins`: the storage plugins the server runs, with their
    /// announcements. A server without plugin support (stock Tahoe: 404) has none.
    pub async fn plugin_announcements(&self) -> Result<Vec<PluginAnnouncement>, ClientError> {
        Ok(self.announced_plugins().await?.plugins)
    }

    /// [`Client::plugin_announcements`], with the plugin interface version the server says
    /// it hosts (stock Tahoe: none).
    pub async fn announced_plugins(&self) -> Result<AnnouncedPlugins, ClientError> {
        let reply = self
            .send(Request::new(Method::GET, paths::plugins()))
            .await?;
        match reply.status() {
            StatusCode::OK => {
                // Shown to operators: only a short, printable version is believed.
                let interface = reply
                    .headers()
                    .get(PLUGIN_INTERFACE_HEADER)
                    .and_then(|value| value.to_str().ok())
                    .filter(|v| {
                        v.len() <= MAX_INTERFACE_VERSION && v.bytes().all(|b| b.is_ascii_graphic())
                    })
                    .map(str::to_owned);
                let (_, _, body) = reply.raw(MAX_PLUGIN_RESPONSE).await?;
                Ok(AnnouncedPlugins {
                    interface,
                    plugins: decode_announcements(&body)?,
                })
            }
            // Stock Tahoe has no such route.
            StatusCode::NOT_FOUND => Ok(AnnouncedPlugins {
                interface: None,
                plugins: Vec::new(),
            }),
            _ => Err(reply.into_error().await),
        }
    }

    /// Calls a plugin's own route on the server, `/storage/v1/plugin/<plugin>/<path>`. Any
    /// answer is the plugin's, except a refusal the server made for it (it timed out or is
    /// unreachable): [`ClientError::PluginRejected`].
    pub async fn call_plugin_route(
        &self,
        plugin: &str,
        request: RouteRequest,
    ) -> Result<RouteResponse, ClientError> {
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|_| ClientError::InvalidArgument("not an HTTP method"))?;
        let mut path = paths::plugin_route(plugin, request.path.as_str());
        if !request.query.is_empty() {
            path = format!("{path}?{}", request.query);
        }
        let mut http = Request::new(method, path).accept("*/*");
        if !request.body.is_empty() || !request.content_type.is_empty() {
            http = http.body(
                request.content_type.as_str(),
                Bytes::from(request.body.into_vec()),
            );
        }
        let reply = self.send(http).await?;
        // The host's own refusal on the plugin's behalf (it timed out, or is unreachable).
        if reply.is_plugin_rejection() {
            return Err(reply.into_error().await);
        }
        let (status, content_type, body) = reply.raw(MAX_PLUGIN_RESPONSE).await?;
        Ok(RouteResponse {
            status,
            content_type: content_type.into(),
            body: body.into(),
        })
    }

    /// The client plugins that apply to this server, asked for once per client.
    async fn active_plugins(&self) -> Result<ActivePlugins, ClientError> {
        let inner = &self.inner;
        inner
            .active_plugins
            .get_or_try_init(|| async {
                let announced = self.plugin_announcements().await?;
                let mut active = Vec::new();
                for plugin in &inner.plugins {
                    let Some(entry) = announced.iter().find(|a| a.name == plugin.name()) else {
                        continue;
                    };
                    match plugin.object.matches(to_cbor(&entry.announcement).into()) {
                        RResult::ROk(true) => active.push(plugin.clone()),
                        RResult::ROk(false) => {}
                        RResult::RErr(error) => {
                            tracing::warn!(plugin = plugin.name(), %error, "client plugin failed to match an announcement; not used")
                        }
                    }
                }
                Ok(Arc::new(active))
            })
            .await
            .cloned()
    }

    fn connection(&self, plugin: &ClientPluginHandle) -> ServerConnectionBox {
        gbs_plugin_interface::__private::server_connection_box(Connection {
            client: self.clone(),
            plugin: plugin.name.clone(),
        })
    }

    /// Sends `request` for an operation, with the data of every applicable client plugin,
    /// retrying after rejections the rejecting plugin answers with new data.
    pub(super) async fn send_with_plugins(
        &self,
        request: Request,
        operation: impl FnOnce() -> Operation,
    ) -> Result<(Reply, Option<Applied>), ClientError> {
        if self.inner.plugins.is_empty() {
            return Ok((self.send(request).await?, None));
        }
        let plugins = self.active_plugins().await?;
        if plugins.is_empty() {
            return Ok((self.send(request).await?, None));
        }
        let operation = operation().to_cbor();
        let mut data: Vec<Option<Vec<u8>>> = Vec::with_capacity(plugins.len());
        for plugin in plugins.iter() {
            let prepared = call(
                plugin
                    .object
                    .prepare(self.connection(plugin), operation.clone().into()),
            )
            .await
            .map_err(|e| plugin_error(plugin.name(), e))?;
            data.push(prepared.into_option().map(|d| d.into_vec()));
        }
        let mut retries = 0;
        loop {
            let mut attempt = request.clone();
            let mut total = 0usize;
            for (plugin, data) in plugins.iter().zip(&data) {
                if let Some(data) = data {
                    let value = PluginData::header_value(plugin.name(), data);
                    total = total.saturating_add(value.len());
                    // Refused here with a reason rather than by the server mid-send.
                    if total > MAX_PLUGIN_DATA {
                        return Err(plugin_error(
                            plugin.name(),
                            format!(
                                "its plugin data brings the request's X-Tahoe-Plugin-Data to {total} bytes; \
                                 at most {MAX_PLUGIN_DATA} fit (send larger payloads to the plugin's own route first)"
                            ),
                        ));
                    }
                    attempt = attempt.header(DATA_HEADER, value);
                }
            }
            let reply = self.send(attempt).await?;
            if !reply.is_plugin_rejection() || retries >= MAX_PLUGIN_RETRIES {
                let applied = Applied {
                    plugins: plugins.clone(),
                    operation,
                };
                return Ok((reply, Some(applied)));
            }
            let error = reply.into_error().await;
            let ClientError::PluginRejected(rejection) = &error else {
                return Err(error);
            };
            let Some(index) = plugins.iter().position(|p| p.name() == rejection.plugin) else {
                return Err(error);
            };
            let plugin = &plugins[index];
            let offered = Rejection {
                status: rejection.status,
                code: rejection.code.as_str().into(),
                message: rejection.message.as_str().into(),
                details: rejection.details.clone().into(),
            };
            let answer = call(plugin.object.rejected(
                self.connection(plugin),
                operation.clone().into(),
                offered,
            ))
            .await;
            match answer {
                Ok(ROption::RSome(new)) => {
                    data[index] = Some(new.into_vec());
                    retries += 1;
                }
                Ok(ROption::RNone) => return Err(error),
                Err(message) => {
                    tracing::warn!(plugin = plugin.name(), %message, "client plugin failed on a rejection");
                    return Err(error);
                }
            }
        }
    }

    /// Tells the plugins that took part in a successful operation what it did.
    pub(super) async fn plugins_committed(
        &self,
        applied: Option<Applied>,
        outcome: impl FnOnce() -> Outcome,
    ) {
        let Some(applied) = applied else {
            return;
        };
        let outcome = outcome().to_cbor();
        for plugin in applied.plugins.iter() {
            let future = plugin
                .object
                .committed(applied.operation.clone().into(), outcome.clone().into());
            if let Err(message) = call(future).await {
                tracing::warn!(plugin = plugin.name(), %message, "client plugin failed in committed");
            }
        }
    }
}

#[cfg(test)]
mod server_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcement_lists_decode_and_skip_malformed_entries() {
        let text = |s: &str| Value::Text(s.into());
        let list = Value::Array(vec![
            Value::Map(vec![
                (text("name"), text("allow-list")),
                (text("version"), text("1.0.0")),
                (text("announcement"), Value::Integer(7.into())),
            ]),
            Value::Integer(3.into()),
            Value::Map(vec![(text("version"), text("1"))]),
        ]);
        let decoded = decode_announcements(&to_cbor(&list)).unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].name, "allow-list");
        assert_eq!(decoded[0].announcement, Value::Integer(7.into()));
        assert!(decode_announcements(b"\xff").is_err());
        assert!(decode_announcements(&to_cbor(&Value::Null)).is_err());
    }
}
