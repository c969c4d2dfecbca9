//! The accept loop shared by plain HTTP and HTTPS: `TCP_NODELAY` on every socket (small
//! WebSocket frames must not wait for delayed ACKs), an optional TLS handshake with a
//! timeout, the peer address handed to the routes, and graceful shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::Reply;

use crate::Node;
use crate::socket::UpgradeSlot;

/// The client's socket address, as a request extension (read with
/// `warp::ext::optional::<PeerAddr>()`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerAddr(pub(crate) SocketAddr);

/// Accepts connections on `listener` until the node shuts down, then waits (bounded) for
/// open HTTP exchanges and for the WebSocket connections to finish closing.
pub(crate) async fn accept_loop(node: Node, listener: TcpListener, tls: Option<TlsAcceptor>) {
    let not_found = warp::any()
        .map(|| warp::reply::with_status("No such resource.", StatusCode::NOT_FOUND).into_response());
    let service = warp::service(node.routes().or(not_found).unify());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let handshake = node.config().handshake_timeout;
    let mut stop = node.inner.shutdown.subscribe();
    let stopped = async move {
        // The guard `wait_for` returns is dropped here, before any other await.
        let _ = stop.wait_for(|s| *s).await.map(|_| ());
    };
    tokio::pin!(stopped);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let service = service.clone();
        let watcher = graceful.watcher();
        let acceptor = tls.clone();
        tokio::spawn(async move {
            match acceptor {
                None => serve_connection(tcp, peer, service, watcher, handshake).await,
                Some(acceptor) => match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => serve_connection(stream, peer, service, watcher, handshake).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    // Upgraded connections are not HTTP exchanges: wait (bounded) until they have told their
    // clients to reconnect and saved what the next member needs.
    let mut live = node.inner.live.subscribe();
    if tokio::time::timeout(Duration::from_secs(10), live.wait_for(|n| *n == 0))
        .await
        .is_err()
    {
        tracing::warn!(open = *live.borrow(), "connections still closing at shutdown");
    }
}

async fn serve_connection<IO, S>(
    io: IO,
    peer: SocketAddr,
    service: S,
    watcher: hyper_util::server::graceful::Watcher,
    handshake: Duration,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<
            warp::http::Request<Incoming>,
            Response = warp::reply::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: warp::http::Request<Incoming>| {
        req.extensions_mut().insert(PeerAddr(peer));
        // A WebSocket upgrade is finished by the node's own route (small buffers).
        let upgrade = req
            .headers()
            .get(warp::http::header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        if upgrade && let Some(pending) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() {
            req.extensions_mut()
                .insert(UpgradeSlot(std::sync::Arc::new(std::sync::Mutex::new(Some(
                    pending,
                )))));
        }
        let mut service = service.clone();
        service.call(req)
    });
    let mut builder = ConnBuilder::new(TokioExecutor::new());
    // A client that opens a socket and never finishes its request headers (the WebSocket
    // handshake included) is dropped after the handshake timeout.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(handshake);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
