//! HTTP/1.1 to a plugin service: kept-alive connections, at most [`MAX_CONNECTIONS`] open
//! at once, answers read up to a limit. Deadlines are the caller's: dropping a call's future
//! drops its connection.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::address::Address;

/// Connections to one plugin open at once; a call past that waits for one.
pub(super) const MAX_CONNECTIONS: usize = 64;

/// How long a kept-alive connection may take to be ready for the next request; it is
/// ready microseconds after its last answer was read, unless the plugin is closing it.
const READY_WAIT: Duration = Duration::from_millis(100);

/// A call that produced no usable answer.
#[derive(Debug)]
pub(super) enum Failure {
    /// No connection, or it broke before the answer was read: the plugin is unavailable.
    Unavailable(String),
    /// The answer is larger than the call allows.
    TooLarge(usize),
}

/// What the plugin answered.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: Bytes,
}

struct Connection {
    sender: SendRequest<Full<Bytes>>,
    _slot: OwnedSemaphorePermit,
}

/// The connections to one plugin service.
#[derive(Debug)]
pub(super) struct Connector {
    address: Address,
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

impl Connector {
    pub(super) fn new(address: Address) -> Self {
        Self {
            address,
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            idle: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn address(&self) -> &Address {
        &self.address
    }

    /// Sends one request and reads the answer's body, at most `limit` bytes. A kept-alive
    /// connection the plugin has closed meanwhile (a restart) is replaced once.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        limit: usize,
        deadline: Duration,
    ) -> Result<Answer, Failure> {
        let body = Bytes::from(body);
        let request = || {
            Request::builder()
                .method(method.clone())
                .uri(path)
                .header(header::HOST, "gbs-plugin")
                .header(header::CONTENT_TYPE, "application/cbor")
                .header("x-gbs-plugin-protocol", "1")
                .header("x-gbs-plugin-deadline-ms", deadline.as_millis().to_string())
                .body(Full::new(body.clone()))
                .map_err(|e| Failure::Unavailable(e.to_string()))
        };
        let (mut connection, reused) = match self.take_idle().await {
            Some(connection) => (connection, true),
            None => (self.connect().await?, false),
        };
        let response = match connection.sender.send_request(request()?).await {
            Ok(response) => response,
            Err(_) if reused => {
                connection = self.connect().await?;
                connection
                    .sender
                    .send_request(request()?)
                    .await
                    .map_err(|e| Failure::Unavailable(e.to_string()))?
            }
            Err(e) => return Err(Failure::Unavailable(e.to_string())),
        };
        let status = response.status().as_u16();
        let body = match Limited::new(response.into_body(), limit).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(Failure::TooLarge(limit))
            }
            Err(e) => return Err(Failure::Unavailable(e.to_string())),
        };
        self.give_back(connection);
        Ok(Answer { status, body })
    }

    /// A kept-alive connection the plugin has not closed, once it can take the next
    /// request: right after an answer was read, its connection task may not have seen the
    /// answer's end yet. One that is not ready within [`READY_WAIT`] is dropped, and the
    /// call opens a new connection.
    async fn take_idle(&self) -> Option<Connection> {
        let mut connection = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let connection = idle.pop()?;
                if !connection.sender.is_closed() {
                    break connection;
                }
            }
        };
        let ready = tokio::time::timeout(READY_WAIT, connection.sender.ready()).await;
        matches!(ready, Ok(Ok(()))).then_some(connection)
    }

    /// Keeps a connection whose answer was read whole, unless the plugin closed it.
    fn give_back(&self, connection: Connection) {
        if !connection.sender.is_closed() {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(connection);
        }
    }

    async fn connect(&self) -> Result<Connection, Failure> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Failure::Unavailable(e.to_string()))?;
        let unavailable =
            |e: std::io::Error| Failure::Unavailable(format!("{}: {e}", self.address));
        let sender = match &self.address {
            Address::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(unavailable)?;
                handshake(stream).await?
            }
            Address::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(unavailable)?;
                let _ = stream.set_nodelay(true);
                handshake(stream).await?
            }
        };
        Ok(Connection {
            sender,
            _slot: slot,
        })
    }
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::Unavailable(e.to_string()))?;
    // Ends when the sender is dropped or the plugin closes the connection.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}
