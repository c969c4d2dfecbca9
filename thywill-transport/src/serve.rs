//! The accept loop shared by plain HTTP and HTTPS: `TCP_NODELAY` on every socket (small
//! WebSocket frames must not wait for delayed ACKs), an optional TLS handshake with a
//! timeout, the peer address handed to the routes, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::Edge;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

/// Where a request came from and in on, as a request extension set by the node's own accept
/// loop (read with `warp::ext::optional::<PeerAddr>()`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerAddr {
    /// The client's socket address.
    pub(crate) peer: SocketAddr,
    /// The listener's address (unknown when another server accepted the socket).
    pub(crate) local: Option<SocketAddr>,
    /// Whether the connection is TLS.
    pub(crate) tls: bool,
}

/// Accepts connections on `listener` until the node shuts down, then waits (bounded) for
/// open HTTP exchanges and for the WebSocket connections to finish closing.
///
/// Every accepted socket counts against [`TransportConfig::with_max_sockets`] until it
/// closes (one over the cap is closed at once), and has a deadline at every stage: its
/// first byte and the TLS handshake within the handshake timeout, request headers within the
/// handshake timeout, and no more than the idle timeout without a byte either way between
/// HTTP exchanges (HTTP/1 keep-alive and HTTP/2 alike). An upgraded WebSocket is then kept
/// alive, or closed, by the connection task's own keepalive.
///
/// [`TransportConfig::with_max_sockets`]: crate::TransportConfig::with_max_sockets
pub(crate) async fn accept_loop(node: Edge, listener: TcpListener, tls: Option<TlsAcceptor>) {
    let service = node.service();
    serve_service(node, listener, tls, service).await;
}

/// The accept loop of [`accept_loop`] for any tower service: the edge's own
/// ([`ThywillService`](crate::ThywillService)), an application's router with the edge inside
/// it, or the HTTPS redirect listener's. Each request carries the socket's [`OwnSocket`],
/// its [`PeerAddr`] (the crate's and the public one) and, with the `axum` feature, axum's
/// `ConnectInfo<SocketAddr>`.
pub(crate) async fn serve_service<S, B>(
    node: Edge,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: S,
) where
    S: Service<http::Request<Incoming>, Response = http::Response<B>, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let cfg = node.config();
    let limits = Deadlines {
        handshake: cfg.handshake_timeout,
        idle: cfg.idle_timeout,
    };
    let sockets = node.inner.sockets.clone();
    let mut stop = node.inner.shutdown.subscribe();
    let stopped = async move {
        // The guard `wait_for` returns is dropped here, before any other await.
        let _ = stop.wait_for(|s| *s).await.map(|_| ());
    };
    tokio::pin!(stopped);
    let mut backoff = Backoff::default();
    let mut refused = Throttled::default();
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff.reset();
                    a
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off (up to a second) instead
                    // of spinning, and say so once a second at most.
                    let pause = backoff.next();
                    if refused.due() {
                        tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64, "accept failed; backing off");
                    }
                    node.inner.metrics.accept_errors.inc();
                    tokio::select! {
                        () = &mut stopped => break,
                        () = tokio::time::sleep(pause) => continue,
                    }
                }
            },
        };
        let Ok(permit) = sockets.clone().try_acquire_owned() else {
            // Over the cap: closed at once (dropping the socket), counted and logged.
            node.inner.metrics.sockets_refused.inc();
            if refused.due() {
                tracing::warn!(%peer, max_sockets = node.config().max_sockets, "socket refused: too many open sockets");
            }
            drop(tcp);
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let local = tcp.local_addr().unwrap_or(peer);
        let stage = Arc::new(Stage::default());
        let io = Guarded::new(tcp, limits, stage.clone());
        let service = service.clone();
        let watcher = graceful.watcher();
        let acceptor = tls.clone();
        // Held by the socket's stage: given to its WebSocket's task if it is upgraded, dropped
        // with this task otherwise.
        stage.hold(Counted::new(permit, node.inner.metrics.clone()));
        let held = stage.clone();
        tokio::spawn(async move {
            let _released = Release(held);
            let handshake = limits.handshake;
            match acceptor {
                None => {
                    let addr = PeerAddr {
                        peer,
                        local: Some(local),
                        tls: false,
                    };
                    serve_connection(io, addr, service, watcher, handshake, stage).await;
                }
                Some(acceptor) => match tokio::time::timeout(handshake, acceptor.accept(io)).await {
                    Ok(Ok(stream)) => {
                        let addr = PeerAddr {
                            peer,
                            local: Some(local),
                            tls: true,
                        };
                        serve_connection(stream, addr, service, watcher, handshake, stage).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
    let _ = tokio::time::timeout(crate::DRAIN_WAIT, graceful.shutdown()).await;
    // Upgraded connections are not HTTP exchanges: wait (bounded) until they have told their
    // clients to reconnect and saved what the next member needs.
    node.drained().await;
}

/// The socket a request came in on, when the edge's own accept loop accepted it: its stage
/// (told when a request is read and when it is upgraded). Its place under the socket cap is
/// held by the loop.
#[derive(Clone, Debug)]
pub(crate) struct OwnSocket(pub(crate) Arc<Stage>);

/// A socket's place under the cap, shown in the `sockets` gauge until it is dropped (even
/// by a panic).
pub(crate) struct Counted(
    #[allow(dead_code, reason = "held for its drop")] tokio::sync::OwnedSemaphorePermit,
    Arc<crate::metrics::Metrics>,
);

impl Counted {
    pub(crate) fn new(
        permit: tokio::sync::OwnedSemaphorePermit,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        metrics.sockets.inc();
        Self(permit, metrics)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.1.sockets.dec();
    }
}

/// Exponential pause after failed accepts: 10 ms doubling up to 1 s.
#[derive(Default)]
struct Backoff(Option<Duration>);

impl Backoff {
    fn next(&mut self) -> Duration {
        let next = self
            .0
            .map_or(Duration::from_millis(10), |d| (d * 2).min(Duration::from_secs(1)));
        self.0 = Some(next);
        next
    }

    fn reset(&mut self) {
        self.0 = None;
    }
}

/// Lets a repeated warning through once a second.
#[derive(Default)]
pub(crate) struct Throttled(Option<std::time::Instant>);

impl Throttled {
    pub(crate) fn due(&mut self) -> bool {
        let now = std::time::Instant::now();
        if self
            .0
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        {
            return false;
        }
        self.0 = Some(now);
        true
    }
}

/// The deadlines of a socket before (and between) HTTP exchanges.
#[derive(Clone, Copy, Debug)]
struct Deadlines {
    /// For the first byte (and the TLS handshake, and each request's headers).
    handshake: Duration,
    /// Without a byte read or written, once the first byte came.
    idle: Duration,
}

/// The stage of a socket, shared by its [`Guarded`] IO and the service answering it, and its
/// place under the socket cap.
#[derive(Default)]
pub(crate) struct Stage {
    stage: AtomicU8,
    /// Held for the socket by its HTTP task, then by its WebSocket's task once upgraded.
    place: std::sync::Mutex<Option<Counted>>,
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage")
            .field("stage", &self.get())
            .finish_non_exhaustive()
    }
}

/// Releases a socket's place under the cap when its HTTP task ends, unless its WebSocket's
/// task took it.
struct Release(Arc<Stage>);

impl Drop for Release {
    fn drop(&mut self) {
        drop(self.0.take_place());
    }
}

impl Stage {
    /// No request yet: the handshake deadline counts from the accept, whatever arrives.
    const OPENED: u8 = 0;
    /// A request was read: the idle deadline counts from the last byte either way.
    const SERVING: u8 = 1;
    /// Upgraded to a WebSocket: the connection task's keepalive decides.
    const UPGRADED: u8 = 2;

    /// A request's head was read.
    pub(crate) fn request(&self) {
        let _ =
            self.stage
                .compare_exchange(Self::OPENED, Self::SERVING, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The connection became a WebSocket.
    pub(crate) fn upgraded(&self) {
        self.stage.store(Self::UPGRADED, Ordering::Relaxed);
    }

    fn get(&self) -> u8 {
        self.stage.load(Ordering::Relaxed)
    }

    fn places(&self) -> std::sync::MutexGuard<'_, Option<Counted>> {
        self.place
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The socket's place under the cap, held until taken.
    fn hold(&self, place: Counted) {
        *self.places() = Some(place);
    }

    /// Takes the socket's place under the cap (once): its WebSocket's task holds it until the
    /// connection ends.
    pub(crate) fn take_place(&self) -> Option<Counted> {
        self.places().take()
    }
}

pin_project_lite::pin_project! {
    /// A socket that fails with `TimedOut` past its deadline: before its first request, the
    /// handshake timeout from the accept (a client trickling bytes gains nothing); then the
    /// idle timeout without a byte read or written; none once upgraded to a WebSocket (whose
    /// keepalive takes over).
    struct Guarded<IO> {
        #[pin]
        io: IO,
        limits: Deadlines,
        opened: tokio::time::Instant,
        last: tokio::time::Instant,
        // Dropped once the socket is upgraded: a timer keeps the waker of the task that last
        // polled it, and that task (the HTTP connection's, finished at the upgrade) would stay
        // allocated until the deadline fired.
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
        stage: Arc<Stage>,
    }
}

impl<IO> Guarded<IO> {
    fn new(io: IO, limits: Deadlines, stage: Arc<Stage>) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            io,
            limits,
            opened: now,
            last: now,
            timer: Some(Box::pin(tokio::time::sleep_until(now + limits.handshake))),
            stage,
        }
    }
}

impl<IO> Guarded<IO> {
    /// After progress: the idle deadline counts from now.
    fn progressed(self: Pin<&mut Self>) {
        *self.project().last = tokio::time::Instant::now();
    }

    /// Whether the deadline passed (registering a wake-up for it otherwise).
    fn expired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let this = self.project();
        let deadline = match this.stage.get() {
            Stage::OPENED => *this.opened + this.limits.handshake,
            Stage::SERVING => *this.last + this.limits.idle,
            _ => {
                *this.timer = None;
                return false;
            }
        };
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "no progress before the deadline")
}

impl<IO: AsyncRead> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match self.as_mut().project().io.poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.progressed();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncWrite> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.as_mut().project().io.poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.as_mut().project().io.poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.as_mut().project().io.poll_flush(cx) {
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

async fn serve_connection<IO, S, B>(
    io: IO,
    addr: PeerAddr,
    service: S,
    watcher: hyper_util::server::graceful::Watcher,
    handshake: Duration,
    stage: Arc<Stage>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<http::Request<Incoming>, Response = http::Response<B>, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        stage.request();
        let ext = req.extensions_mut();
        ext.insert(addr);
        ext.insert(crate::PeerAddr(addr.peer));
        #[cfg(feature = "axum")]
        ext.insert(axum::extract::ConnectInfo(addr.peer));
        // A WebSocket upgrade is finished by the edge's service (small buffers), which tells
        // the stage.
        ext.insert(OwnSocket(stage.clone()));
        let answered = service.clone().call(req);
        let stage = stage.clone();
        async move {
            let response = answered.await;
            // An upgrade the application's own routes made (an app served by `serve_app`):
            // the socket is no longer HTTP, its idle deadline stops too.
            if let Ok(r) = &response
                && r.status() == http::StatusCode::SWITCHING_PROTOCOLS
            {
                stage.upgraded();
            }
            response
        }
    });
    let mut builder = ConnBuilder::new(TokioExecutor::new());
    // A client that opens a socket and never finishes its request headers (the WebSocket
    // handshake included) is dropped after the handshake timeout.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(handshake)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(MAX_H2_STREAMS)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Some(handshake))
        .keep_alive_timeout(handshake);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(peer = %addr.peer, error = %e, "connection ended with an error");
    }
}

/// Largest request head (request line and headers) in bytes, over HTTP/1 and HTTP/2.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Concurrent requests on one HTTP/2 connection.
const MAX_H2_STREAMS: u32 = 64;
