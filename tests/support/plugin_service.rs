//! A plugin service speaking the out-of-process protocol
//! (`plugin-interface/docs/out-of-process.md`) from inside the test process, on a Unix
//! socket, whose behaviour a test switches while a node uses it: admitting, rejecting,
//! hanging, answering garbage, a huge body, or a body that drips.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ciborium::Value;

/// How the service answers `admit` (and `describe`, for [`Behaviour::FutureProtocol`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Admits everything.
    Admit,
    /// Rejects everything with 403 `fake-says-no`.
    Reject,
    /// Never answers.
    Hang,
    /// Answers 200 with bytes that are not CBOR.
    Garbage,
    /// Answers 200 with 4 MiB of CBOR.
    Huge,
    /// Answers 200 with a body of 100 bytes, one every 100 ms.
    Drip,
    /// Describes itself as speaking protocol 2.
    FutureProtocol,
    /// Admits only requests carrying the plugin data its client side attaches.
    RequireData,
    /// Admits everything, and describes itself as implementing `admit` only (`"hooks"`), so
    /// that the host never sends it `committed`.
    AdmitOnly,
    /// Admits everything, and gives a version that holds a newline and a terminal escape,
    /// as if to print a line of its own in an operator's terminal.
    ForgedVersion,
    /// Admits everything, and describes itself with a hook the protocol does not have
    /// (`"comitted"`).
    MisspeltHook,
}

/// The version [`Behaviour::ForgedVersion`] gives.
pub const FORGED_VERSION: &str = "0.1.0\nother: added 9.9\u{1b}[2J";

/// The plugin data the service's client side attaches, and its server side requires.
pub const CLIENT_DATA: &[u8] = b"\x43abc";

#[derive(Debug)]
struct Shared {
    name: String,
    behaviour: Mutex<Behaviour>,
    interests: &'static [&'static str],
    admits: AtomicU64,
    committed: AtomicU64,
    prepared: AtomicU64,
    connections: AtomicU64,
}

/// The service; it stops when dropped.
#[derive(Debug)]
pub struct PluginService {
    socket: PathBuf,
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PluginService {
    /// Serves plugin `name` on `socket`; interested in immutable listings and allocations.
    pub async fn start(socket: &Path, name: &str, behaviour: Behaviour) -> Self {
        Self::interested(socket, name, behaviour, &["list-immutable", "allocate"]).await
    }

    /// [`PluginService::start`], interested in the operation kinds `interests`.
    pub async fn interested(
        socket: &Path,
        name: &str,
        behaviour: Behaviour,
        interests: &'static [&'static str],
    ) -> Self {
        let mut service = Self {
            socket: socket.to_owned(),
            shared: Arc::new(Shared {
                name: name.to_owned(),
                behaviour: Mutex::new(behaviour),
                interests,
                admits: AtomicU64::new(0),
                committed: AtomicU64::new(0),
                prepared: AtomicU64::new(0),
                connections: AtomicU64::new(0),
            }),
            task: None,
        };
        service.serve();
        service
    }

    fn serve(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let listener = tokio::net::UnixListener::bind(&self.socket).expect("bind the socket");
        let app = Router::new()
            .route("/gbs-plugin/v1/describe", get(describe))
            .route("/gbs-plugin/v1/server/admit", post(admit))
            .route("/gbs-plugin/v1/server/committed", post(committed))
            .route("/gbs-plugin/v1/client/matches", post(client_matches))
            .route("/gbs-plugin/v1/client/prepare", post(client_prepare))
            .route("/gbs-plugin/v1/client/rejected", post(client_rejected))
            .route("/gbs-plugin/v1/client/committed", post(committed))
            .with_state(self.shared.clone());
        let shared = self.shared.clone();
        // Connections are served by tasks the serving task owns, so that stopping it
        // closes kept-alive connections too: a stopped service is unreachable at once.
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                while connections.try_join_next().is_some() {}
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        }));
    }

    /// The `url = ...` a node's config names it by.
    pub fn url(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Changes how it answers from the next call on.
    pub fn set(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().expect("lock") = behaviour;
    }

    /// Stops serving and removes the socket: the plugin is unreachable.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Serves again on the same socket.
    pub fn restart(&mut self) {
        self.serve();
    }

    /// `admit` calls answered so far.
    pub fn admits(&self) -> u64 {
        self.shared.admits.load(Ordering::SeqCst)
    }

    /// Client `prepare` calls answered so far.
    pub fn prepared(&self) -> u64 {
        self.shared.prepared.load(Ordering::SeqCst)
    }

    /// `committed` calls received so far (server and client side).
    pub fn committed(&self) -> u64 {
        self.shared.committed.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for PluginService {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn cbor(value: &Value) -> Response {
    let mut body = Vec::new();
    ciborium::into_writer(value, &mut body).expect("encode");
    ([(header::CONTENT_TYPE, "application/cbor")], body).into_response()
}

async fn describe(State(shared): State<Arc<Shared>>) -> Response {
    let behaviour = *shared.behaviour.lock().expect("lock");
    let protocol = if behaviour == Behaviour::FutureProtocol {
        2
    } else {
        1
    };
    let hooks = match behaviour {
        Behaviour::AdmitOnly => vec![(text("hooks"), Value::Array(vec![text("admit")]))],
        Behaviour::MisspeltHook => vec![(
            text("hooks"),
            Value::Array(vec![text("admit"), text("comitted")]),
        )],
        _ => Vec::new(),
    };
    cbor(&Value::Map(
        [
            (text("protocol"), Value::Integer(protocol.into())),
            (text("name"), text(&shared.name)),
            (
                text("version"),
                text(if behaviour == Behaviour::ForgedVersion {
                    FORGED_VERSION
                } else {
                    "0.1.0"
                }),
            ),
            (
                text("roles"),
                Value::Array(vec![text("server"), text("client")]),
            ),
            (
                text("interests"),
                Value::Array(shared.interests.iter().map(|kind| text(kind)).collect()),
            ),
            (
                text("announcement"),
                Value::Map(vec![(text("test"), Value::Bool(true))]),
            ),
        ]
        .into_iter()
        .chain(hooks)
        .collect(),
    ))
}

async fn admit(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Value = match ciborium::from_reader(&body[..]) {
        Ok(request) => request,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    assert!(request.as_map().is_some(), "admit body is a map");
    let behaviour = *shared.behaviour.lock().expect("lock");
    shared.admits.fetch_add(1, Ordering::SeqCst);
    let data = request
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("data")))
        .and_then(|(_, v)| v.as_bytes().cloned());
    let admit = || cbor(&Value::Map(vec![(text("admit"), Value::Bool(true))]));
    match behaviour {
        Behaviour::Admit
        | Behaviour::FutureProtocol
        | Behaviour::AdmitOnly
        | Behaviour::ForgedVersion
        | Behaviour::MisspeltHook => admit(),
        Behaviour::RequireData if data.as_deref() == Some(CLIENT_DATA) => admit(),
        Behaviour::Reject | Behaviour::RequireData => cbor(&Value::Map(vec![
            (text("admit"), Value::Bool(false)),
            (
                text("rejection"),
                Value::Map(vec![
                    (text("status"), Value::Integer(403.into())),
                    (text("code"), text("fake-says-no")),
                    (text("message"), text("the test service refuses")),
                    (
                        text("details"),
                        Value::Map(vec![(text("n"), Value::Integer(7.into()))]),
                    ),
                ]),
            ),
        ])),
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        Behaviour::Garbage => (StatusCode::OK, "this is not CBOR at all").into_response(),
        Behaviour::Huge => cbor(&Value::Bytes(vec![0; 4 << 20])),
        Behaviour::Drip => {
            let drops = futures_util::stream::unfold(0u8, |sent| async move {
                if sent == 100 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                Some((
                    Ok::<_, std::io::Error>(Bytes::from_static(b"\xa0")),
                    sent + 1,
                ))
            });
            Response::new(Body::from_stream(drops))
        }
    }
}

async fn committed(State(shared): State<Arc<Shared>>) -> Response {
    shared.committed.fetch_add(1, Ordering::SeqCst);
    cbor(&Value::Map(Vec::new()))
}

/// Its client side works with any server announcing `{"test": true}`.
async fn client_matches(body: Bytes) -> Response {
    let request: Value = ciborium::from_reader(&body[..]).unwrap_or(Value::Null);
    let announced = request
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("announcement")))
        .and_then(|(_, a)| a.as_map())
        .is_some_and(|a| a.iter().any(|(k, _)| k.as_text() == Some("test")));
    cbor(&Value::Map(vec![(text("matches"), Value::Bool(announced))]))
}

/// Attaches [`CLIENT_DATA`] to every operation.
async fn client_prepare(State(shared): State<Arc<Shared>>) -> Response {
    shared.prepared.fetch_add(1, Ordering::SeqCst);
    cbor(&Value::Map(vec![(
        text("data"),
        Value::Bytes(CLIENT_DATA.to_vec()),
    )]))
}

/// Gives up on every rejection.
async fn client_rejected() -> Response {
    cbor(&Value::Map(vec![(text("data"), Value::Null)]))
}
