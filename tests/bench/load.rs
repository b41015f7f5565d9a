//! The load generator of the small-request rows: HTTP/1.1 written by hand over TLS
//! connections pinned to the server's key, one request in flight on each. It does only
//! what a request needs (no CBOR decoding, no plugin hooks, no pool, no retries), so that
//! on this 2-core machine the server, not the client, gets the CPU and is what is
//! measured; our full client cost as much CPU per `version` request as `gbs` itself. Every
//! answer's status and body are still checked.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use gbs::protocol::{paths, Nurl, ReadRange, ShareNumber, StorageIndex};
use gbs_tests::RawConnection;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A server to load, and the headers every request to it carries.
#[derive(Clone)]
pub(crate) struct Target {
    nurl: String,
    /// `Host`, `Authorization` and any extra headers, each line ending in CRLF.
    headers: Arc<str>,
}

impl Target {
    /// `extra` headers (`Name: value`) go on every request, e.g. plugin data.
    pub(crate) fn new(nurl: &str, extra: &[String]) -> Self {
        let parsed: Nurl = nurl.parse().expect("a valid NURL");
        let mut headers = format!(
            "Host: {}:{}\r\nAuthorization: {}\r\n",
            parsed.host,
            parsed.port,
            gbs::protocol::authorization_value(&parsed.swissnum)
        );
        for header in extra {
            headers.push_str(header);
            headers.push_str("\r\n");
        }
        Self {
            nurl: nurl.to_owned(),
            headers: headers.into(),
        }
    }

    async fn connect(&self) -> Connection {
        let tls = RawConnection::connect(&self.nurl)
            .await
            .expect("connect")
            .tls;
        tls.get_ref().0.set_nodelay(true).expect("TCP_NODELAY");
        Connection {
            tls,
            input: Vec::with_capacity(16 << 10),
            headers: self.headers.clone(),
        }
    }
}

/// One keep-alive connection and what it has read past the last answer.
struct Connection {
    tls: TlsStream<TcpStream>,
    input: Vec<u8>,
    headers: Arc<str>,
}

impl Connection {
    /// Sends `GET path` with `more` headers (lines ending in CRLF) and answers the status
    /// and body.
    async fn get(&mut self, path: &str, more: &str) -> (u16, Vec<u8>) {
        let request = format!("GET {path} HTTP/1.1\r\n{}{more}\r\n", self.headers);
        self.tls
            .write_all(request.as_bytes())
            .await
            .expect("send a request");
        let head_len = loop {
            if let Some(at) = find(&self.input, b"\r\n\r\n") {
                break at + 4;
            }
            self.fill().await;
        };
        let head = String::from_utf8_lossy(&self.input[..head_len]).into_owned();
        self.input.drain(..head_len);
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let header = |name: &str| {
            head.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
        };
        let body = if let Some(len) = header("content-length") {
            self.take(len.parse().expect("a Content-Length")).await
        } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            self.chunked().await
        } else {
            Vec::new()
        };
        (status, body)
    }

    async fn fill(&mut self) {
        let mut piece = [0u8; 16 << 10];
        let n = self.tls.read(&mut piece).await.expect("read an answer");
        assert!(n > 0, "the server closed the connection mid-answer");
        self.input.extend_from_slice(&piece[..n]);
    }

    async fn take(&mut self, len: usize) -> Vec<u8> {
        while self.input.len() < len {
            self.fill().await;
        }
        self.input.drain(..len).collect()
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(at) = find(&self.input, b"\r\n") {
                let line = String::from_utf8_lossy(&self.input[..at]).into_owned();
                self.input.drain(..at + 2);
                return line;
            }
            self.fill().await;
        }
    }

    /// A chunked body (Twisted sends one when a handler sets no length); no trailers.
    async fn chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16).expect("a chunk size");
            if size == 0 {
                self.line().await;
                return body;
            }
            body.extend(self.take(size).await);
            self.line().await;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Requests per second of `requests` requests over `in_flight` connections, each task
/// making its share with `each(connection, task, i)`, which hands the connection back.
async fn drive<F, Fut>(target: &Target, requests: usize, in_flight: usize, each: F) -> f64
where
    F: Fn(Connection, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Connection> + Send,
{
    let mut connections = Vec::with_capacity(in_flight);
    for _ in 0..in_flight {
        connections.push(target.connect().await);
    }
    let per_task = requests / in_flight;
    let started = Instant::now();
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(task, mut connection)| {
            let each = each.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    connection = each(connection, task, i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("load task");
    }
    (per_task * in_flight) as f64 / started.elapsed().as_secs_f64()
}

/// Requests per second of `GET /storage/v1/version`. Every answer must be 200 and a CBOR
/// map naming the GBS protocol: each begins as the first did (the map and that key), and
/// every 64th is decoded whole. (The rest of an answer, free space, may change.)
pub(crate) async fn version(target: &Target, requests: usize, in_flight: usize) -> f64 {
    const V1: &[u8] = b"http://allmydata.org/tahoe/protocols/storage/v1";
    let names_v1 = |body: &[u8]| {
        let decoded: ciborium::Value = ciborium::from_reader(body).expect("CBOR");
        decoded.as_map().is_some_and(|map| {
            map.iter()
                .any(|(key, _)| key.as_bytes().map(Vec::as_slice) == Some(V1))
        })
    };
    let (status, first) = target.connect().await.get(&paths::version(), "").await;
    assert_eq!(status, 200, "GET version");
    assert!(
        names_v1(&first),
        "the version answer names no storage protocol"
    );
    let start = first
        .windows(V1.len())
        .position(|w| w == V1)
        .expect("the key")
        + V1.len();
    let prefix: Arc<[u8]> = first[..start].into();
    drive(target, requests, in_flight, move |mut connection, _, i| {
        let prefix = prefix.clone();
        async move {
            let (status, body) = connection.get(&paths::version(), "").await;
            assert_eq!(status, 200, "GET version");
            assert!(
                body.starts_with(&prefix),
                "a version answer of another shape"
            );
            assert!(
                i % 64 != 0 || names_v1(&body),
                "a version answer of another shape"
            );
            connection
        }
    })
    .await
}

/// Requests per second of 1 KiB ranged reads of share 0 of `si`, which holds `data`: the
/// shape of Tahoe's downloader, which reads hashes and blocks in small pieces. Each piece
/// is checked.
pub(crate) async fn small_reads(
    target: &Target,
    si: StorageIndex,
    data: &Arc<Vec<u8>>,
    requests: usize,
    in_flight: usize,
) -> f64 {
    const PIECE: usize = 1024;
    let path: Arc<str> = paths::immutable_share(&si, ShareNumber(0)).into();
    let data = data.clone();
    drive(
        target,
        requests,
        in_flight,
        move |mut connection, task, i| {
            let (path, data) = (path.clone(), data.clone());
            async move {
                let offset = (task * 7919 + i * 4099) * 64 % (data.len() - PIECE);
                let range = ReadRange::new(offset as u64, PIECE as u64).expect("range");
                let (status, body) = connection.get(&path, &format!("Range: {range}\r\n")).await;
                assert_eq!(status, 206, "a ranged read");
                assert!(body == data[offset..offset + PIECE], "read the wrong bytes");
                connection
            }
        },
    )
    .await
}
