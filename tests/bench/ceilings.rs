//! What this machine allows at all, measured in the same run as the servers: TLS over
//! loopback with no storage behind it, and the disk's sequential write with fsync.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gbs::client::pinned_tls_config;
use gbs::node::NodeIdentity;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The pieces data is written in.
const WRITE: usize = 256 * 1024;

/// MiB/s of `bytes` sent over one TLS connection on loopback with the server's and the
/// client's own settings (rustls, the node's key type and cipher preferences), the receiver
/// discarding it: the most an upload or download through one connection could reach.
pub(crate) async fn tls_loopback(bytes: usize) -> f64 {
    let identity = NodeIdentity::generate().expect("node identity");
    let server_config = gbs::server::tls_config(&identity).expect("server TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let port = listener.local_addr().expect("local address").port();
    let receiver = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accept");
        socket.set_nodelay(true).expect("nodelay");
        let mut tls = acceptor.accept(socket).await.expect("TLS accept");
        let mut buffer = vec![0; WRITE];
        let mut received = 0;
        while received < bytes {
            let n = tls.read(&mut buffer).await.expect("read");
            assert!(n > 0, "sender closed after {received} of {bytes} bytes");
            received += n;
        }
        tls.write_all(b"k").await.expect("acknowledge");
        tls.flush().await.expect("flush");
    });

    let nurl = identity.nurl("127.0.0.1", port);
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(pinned_tls_config(&nurl).expect("client TLS")));
    let socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    socket.set_nodelay(true).expect("nodelay");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    let mut tls = connector.connect(name, socket).await.expect("TLS connect");
    let chunk = vec![0x5a; WRITE];
    let started = Instant::now();
    let mut sent = 0;
    while sent < bytes {
        let n = WRITE.min(bytes - sent);
        tls.write_all(&chunk[..n]).await.expect("write");
        sent += n;
    }
    tls.flush().await.expect("flush");
    let mut ack = [0; 1];
    tls.read_exact(&mut ack).await.expect("acknowledgement");
    let elapsed = started.elapsed();
    receiver.await.expect("receiver");
    mib_per_second(bytes, elapsed)
}

/// MiB/s of writing `bytes` to a new file in `dir` in 256 KiB pieces and fsyncing it, as a
/// share upload ends. The file is removed, so the next call writes into pages just freed:
/// this is what the disk takes, not what a new share costs (a stored share's pages stay
/// cached, and fresh pages cost this VM about three times as much; README "What limits").
pub(crate) fn disk_write(dir: &Path, bytes: usize) -> f64 {
    let path = dir.join("gbs-bench-disk-ceiling");
    let chunk = vec![0x5a; WRITE];
    let started = Instant::now();
    let mut file = std::fs::File::create(&path).expect("create the ceiling's file");
    let mut written = 0;
    while written < bytes {
        let n = WRITE.min(bytes - written);
        file.write_all(&chunk[..n]).expect("write");
        written += n;
    }
    file.sync_all().expect("fsync");
    let elapsed = started.elapsed();
    drop(file);
    std::fs::remove_file(&path).expect("remove the ceiling's file");
    mib_per_second(bytes, elapsed)
}

pub(crate) fn mib_per_second(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / f64::from(1 << 20) / elapsed.as_secs_f64().max(1e-9)
}
