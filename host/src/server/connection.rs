//! One client connection: TLS handshake, HTTP/1.1, idle timeout, and a lingering close.
//!
//! A server that answers a request before reading its body (a refusal at the header stage)
//! and then closes the socket with the body's bytes unread makes the kernel send a reset,
//! which can destroy the answer before the client reads it. So when HTTP is done with a
//! connection, the server says goodbye (TLS close_notify and a TCP FIN) and keeps reading
//! and discarding what the client still sends for a bounded time, as nginx's lingering
//! close does.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Sleep;
use tokio_rustls::LazyConfigAcceptor;
use tower::ServiceExt as _;

use crate::limits::Limits;

/// How long a closing connection waits for more bytes from the client before giving up.
const LINGER_IDLE: Duration = Duration::from_secs(2);
/// The longest a closing connection lingers in all.
const LINGER_TOTAL: Duration = Duration::from_secs(10);
/// The most a closing connection reads and discards.
const LINGER_BYTES: u64 = 64 << 20;
/// A handshaken connection that has served nothing for this long may be closed to make
/// room for a new one when the server is at its connection cap.
const EVICTABLE_AFTER: Duration = Duration::from_secs(1);

/// What the listener knows of a connection, shared with the connection's task.
#[derive(Debug)]
pub(super) struct ConnectionState {
    phase: AtomicU8,
    requests: AtomicUsize,
    /// Milliseconds since `epoch` at the last byte read or written.
    last_active: AtomicU64,
    epoch: Instant,
    /// Asks the connection's task to close the connection now.
    pub(super) evict: Notify,
}

const HANDSHAKING: u8 = 0;
const OPEN: u8 = 1;
const EVICTED: u8 = 2;

impl ConnectionState {
    pub(super) fn new(epoch: Instant) -> Self {
        let state = Self {
            phase: AtomicU8::new(HANDSHAKING),
            requests: AtomicUsize::new(0),
            last_active: AtomicU64::new(0),
            epoch,
            evict: Notify::new(),
        };
        state.touch();
        state
    }

    fn touch(&self) {
        let millis = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active.store(millis, Ordering::Relaxed);
    }

    /// When the connection last read or wrote a byte.
    fn last_active(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_active.load(Ordering::Relaxed))
    }

    /// If the connection may be closed to make room (still in its handshake, or idle
    /// between requests), when it was last active.
    pub(super) fn evictable_since(&self, now: Instant) -> Option<Instant> {
        let last = self.last_active();
        match self.phase.load(Ordering::Relaxed) {
            HANDSHAKING => Some(last),
            OPEN if self.requests.load(Ordering::Relaxed) == 0
                && now.saturating_duration_since(last) >= EVICTABLE_AFTER =>
            {
                Some(last)
            }
            _ => None,
        }
    }

    /// Marks the connection for closing and wakes its task; false if it already was.
    pub(super) fn mark_evicted(&self) -> bool {
        let was = self.phase.swap(EVICTED, Ordering::Relaxed);
        if was == EVICTED {
            return false;
        }
        self.evict.notify_one();
        true
    }
}

/// Everything a connection task needs besides its socket.
#[derive(Debug, Clone)]
pub(super) struct ConnectionContext {
    pub(super) tls: Arc<rustls::ServerConfig>,
    pub(super) router: Router,
    pub(super) handshakes: Arc<Semaphore>,
    pub(super) limits: Limits,
    pub(super) shutdown: watch::Receiver<bool>,
}

/// Serves one accepted connection to its end. Returns when the connection is closed, by
/// the client, a timeout, eviction, or shutdown.
pub(super) async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    state: Arc<ConnectionState>,
    mut context: ConnectionContext,
) {
    let evicted = state.evict.notified();
    let served = serve(tcp, peer, state.clone(), &mut context);
    tokio::select! {
        () = evicted => tracing::debug!(%peer, "connection closed to make room for another"),
        () = served => {}
    }
}

/// The most bytes a connection keeps queued in the kernel that the network has not taken
/// yet (`TCP_NOTSENT_LOWAT`). Without it the kernel lets a connection queue up to its
/// autotuned send buffer (4 MiB by default) for a client that stopped reading, and a
/// thousand such clients took the machine's TCP memory to its pressure limit, slowing
/// every other connection. Bytes in flight are not counted, so fast links keep their
/// window.
const UNSENT_QUEUE: u32 = 256 << 10;

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn bound_unsent(tcp: &TcpStream) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let value = libc::c_int::try_from(UNSENT_QUEUE).unwrap_or(libc::c_int::MAX);
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: the descriptor is the open socket `tcp` borrows; the option reads an `int`
    // from `value`, which lives across the call, of the length given.
    let done = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            std::ptr::from_ref(&value).cast(),
            len,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn bound_unsent(_: &TcpStream) -> io::Result<()> {
    Ok(())
}

async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    state: Arc<ConnectionState>,
    context: &mut ConnectionContext,
) {
    // Small answers must not wait for a delayed ACK (Nagle's algorithm).
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    if let Err(error) = bound_unsent(&tcp) {
        tracing::debug!(%peer, %error, "cannot set TCP_NOTSENT_LOWAT");
    }
    let io = Watched::new(tcp, state.clone(), context.limits.idle_timeout);
    // The handshake slot is taken once the client's hello has arrived, so clients that
    // connect and send nothing hold no slot (they are closed at the timeout, or sooner to
    // make room); only the cryptographic part of the handshake is counted.
    let handshake = async {
        let hello = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
        let _permit = context.handshakes.acquire().await;
        hello.into_stream(context.tls.clone()).await
    };
    let tls = match tokio::time::timeout(context.limits.handshake_timeout, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
    };
    // Only a connection still counted as handshaking becomes open; an evicted one stays so.
    let _ = state
        .phase
        .compare_exchange(HANDSHAKING, OPEN, Ordering::Relaxed, Ordering::Relaxed);
    let service = CountedService {
        router: context.router.clone(),
        state: state.clone(),
    };
    let mut connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(context.limits.idle_timeout)
        .max_buf_size(Limits::HTTP_READ_BUFFER)
        // Left at hyper's default, Limits::REQUEST_HEADERS, which it parses without
        // allocating.
        .serve_connection(TokioIo::new(tls), service);
    let mut shutdown = pin!(context.shutdown.wait_for(|stop| *stop));
    let mut stopping = false;
    let result = poll_fn(|cx| {
        if !stopping && shutdown.as_mut().poll(cx).is_ready() {
            stopping = true;
            Pin::new(&mut connection).graceful_shutdown();
        }
        connection.poll_without_shutdown(cx)
    })
    .await;
    match result {
        Ok(()) => linger(connection.into_parts().io.into_inner()).await,
        Err(error) => tracing::debug!(%peer, %error, "connection ended with an error"),
    }
}

/// Closes a connection HTTP is done with: TLS close_notify and FIN, then reads and discards
/// what the client still sends (a request body the server did not want) so that the
/// kernel does not answer those bytes with a reset that destroys the answer.
async fn linger<Io: AsyncRead + AsyncWrite + Unpin>(mut tls: tokio_rustls::server::TlsStream<Io>) {
    let _ = tokio::time::timeout(LINGER_IDLE, tls.shutdown()).await;
    let (mut tcp, _) = tls.into_inner();
    let deadline = Instant::now() + LINGER_TOTAL;
    let mut discarded = 0u64;
    let mut buf = vec![0u8; 16 << 10];
    while discarded < LINGER_BYTES {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(LINGER_IDLE);
        match tokio::time::timeout(wait, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => discarded += n as u64,
            _ => break,
        }
    }
}

/// The router as a hyper service that counts the connection's requests in progress, so
/// that the listener never evicts a connection in the middle of one.
#[derive(Debug, Clone)]
struct CountedService {
    router: Router,
    state: Arc<ConnectionState>,
}

impl hyper::service::Service<http::Request<Incoming>> for CountedService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let busy = Busy::new(self.state.clone());
        let response = self.router.clone().oneshot(request.map(Body::new));
        Box::pin(async move {
            let response = response.await;
            drop(busy);
            response
        })
    }
}

/// Counts one request in progress while it lives.
struct Busy(Arc<ConnectionState>);

impl Busy {
    fn new(state: Arc<ConnectionState>) -> Self {
        state.requests.fetch_add(1, Ordering::Relaxed);
        Self(state)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A socket that records when it last moved a byte and fails once it has moved none for
/// the idle timeout while someone waits on it.
#[derive(Debug)]
pub(super) struct Watched<Io> {
    io: Io,
    state: Arc<ConnectionState>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    armed_for: Option<Instant>,
}

impl<Io> Watched<Io> {
    pub(super) fn new(io: Io, state: Arc<ConnectionState>, idle: Duration) -> Self {
        Self {
            io,
            state,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            armed_for: None,
        }
    }

    /// Called when an operation would wait: an error once the connection has been idle
    /// for the timeout, else arms the timer so that the task wakes when it would be.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let deadline = self.state.last_active() + self.idle;
        if self.armed_for != Some(deadline) {
            self.timer.as_mut().reset(deadline.into());
            self.armed_for = Some(deadline);
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            return Some(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("nothing sent or received for {:?}", self.idle),
            ));
        }
        None
    }

    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
        moved: bool,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(Ok(value)) => {
                if moved {
                    self.state.touch();
                }
                Poll::Ready(Ok(value))
            }
            Poll::Pending => match self.check_idle(cx) {
                Some(error) => Poll::Ready(Err(error)),
                None => Poll::Pending,
            },
            other => other,
        }
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Watched<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let moved = buf.filled().len() > before;
        self.progress(cx, polled, moved)
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Watched<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        let moved = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        self.progress(cx, polled, moved)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        let moved = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        self.progress(cx, polled, moved)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.progress(cx, polled, false)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.io).poll_shutdown(cx))?;
        Poll::Ready(Ok(()))
    }
}
