//! A TLS server on loopback that answers requests with canned bytes, to play
//! the servers that misbehave: closing mid-body, lying in `Content-Range`, stalling. It
//! records what it saw so that tests can check what the client sent (or that it sent
//! nothing).

use std::sync::{Arc, Mutex};

use gbs::protocol::{Nurl, NurlScheme, SpkiHash, Swissnum};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the server does after writing its canned response.
#[derive(Debug, Clone, Copy)]
pub(super) enum Then {
    /// Closes the connection.
    Close,
    /// Keeps the connection open and says nothing more.
    Stall,
    /// Reads and answers the next request on the same connection.
    KeepAlive,
}

/// What the server saw.
#[derive(Debug, Default, Clone)]
pub(super) struct Log {
    /// Request heads (request line and headers), one per request.
    pub(super) requests: Vec<String>,
    /// The SNI name of each completed handshake.
    pub(super) sni: Vec<Option<String>>,
    /// Handshakes that failed.
    pub(super) failed_handshakes: usize,
}

/// The running server; stops when dropped.
#[derive(Debug)]
pub(super) struct FakeServer {
    nurl: Nurl,
    log: Arc<Mutex<Log>>,
    task: JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    /// Starts a server that writes `response` for each request, then does `then`.
    pub(super) async fn start(response: impl Into<Vec<u8>>, then: Then) -> Self {
        Self::start_sequence(vec![response.into()], then).await
    }

    /// Starts a server whose n-th request, counted over all connections, gets
    /// `responses[n]` (the last one once they run out).
    pub(super) async fn start_sequence(responses: Vec<Vec<u8>>, then: Then) -> Self {
        let key_pair = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["fake".to_owned()]).expect("params");
        let certificate = params.self_signed(&key_pair).expect("certificate");
        let cert_der: CertificateDer<'static> = certificate.der().clone();
        let key_der = PrivateKeyDer::try_from(key_pair.serialize_der()).expect("key DER");
        let spki_hash = gbs::node::spki_hash_of(&cert_der).expect("SPKI");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key_der)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let port = listener.local_addr().expect("address").port();
        let log = Arc::new(Mutex::new(Log::default()));
        let task = tokio::spawn(serve(
            listener,
            acceptor,
            Arc::new(responses),
            then,
            log.clone(),
        ));
        let nurl = Nurl {
            scheme: NurlScheme::Tcp,
            spki_hash,
            host: "127.0.0.1".to_owned(),
            port,
            swissnum: Swissnum::new("fakeswissnumfakeswissnumfakeswis"),
        };
        Self { nurl, log, task }
    }

    /// The server's true NURL.
    pub(super) fn nurl(&self) -> Nurl {
        self.nurl.clone()
    }

    /// The same NURL pinning another key.
    pub(super) fn nurl_pinning(&self, other: SpkiHash) -> Nurl {
        Nurl {
            spki_hash: other,
            ..self.nurl()
        }
    }

    /// What the server has seen so far.
    pub(super) fn log(&self) -> Log {
        self.log.lock().expect("log lock").clone()
    }
}

async fn serve(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    responses: Arc<Vec<Vec<u8>>>,
    then: Then,
    log: Arc<Mutex<Log>>,
) {
    while let Ok((tcp, _)) = listener.accept().await {
        let (acceptor, responses, log) = (acceptor.clone(), responses.clone(), log.clone());
        tokio::spawn(async move {
            let mut tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(_) => {
                    log.lock().expect("log lock").failed_handshakes += 1;
                    return;
                }
            };
            let sni = tls.get_ref().1.server_name().map(str::to_owned);
            log.lock().expect("log lock").sni.push(sni);
            while let Some(head) = read_request(&mut tls).await {
                let response = {
                    let mut log = log.lock().expect("log lock");
                    log.requests.push(head);
                    let n = log.requests.len() - 1;
                    responses
                        .get(n)
                        .or(responses.last())
                        .cloned()
                        .unwrap_or_default()
                };
                if tls.write_all(&response).await.is_err() || tls.flush().await.is_err() {
                    return;
                }
                match then {
                    Then::Close => {
                        let _ = tls.shutdown().await;
                        return;
                    }
                    Then::Stall => std::future::pending::<()>().await,
                    Then::KeepAlive => {}
                }
            }
        });
    }
}

/// Reads one request: its head, returned as text, and a `Content-Length` body, discarded.
async fn read_request<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length: u64 = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    tokio::io::copy(&mut stream.take(length), &mut tokio::io::sink())
        .await
        .ok()?;
    Some(head)
}

/// An HTTP/1.1 response head with the given status line and headers, then `body`.
pub(super) fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}
