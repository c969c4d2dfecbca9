//! `Edge::service()` and `Edge::layer()` under a plain hyper server of the test's own (no
//! axum): mounted under a prefix the server strips, and in front of another service.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use thywill_core::protocol::ServerFrame;
use thywill_testkit::WsClient;
use thywill_transport::{PeerAddr, TransportConfig};
use tower_service::Service;

use crate::support::{Fixture, http_get};

/// Serves `service` with hyper on a loopback port (upgrades on), each request carrying the
/// client's [`PeerAddr`].
async fn serve_with_hyper<S, B>(service: S) -> anyhow::Result<SocketAddr>
where
    S: Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(PeerAddr(peer));
                    service.clone().call(req)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Strips the mount prefix `/t` from a request's path, as a router nesting a service does
/// (without telling the service the original path).
fn strip_prefix<B>(mut req: http::Request<B>) -> http::Request<B> {
    let stripped = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .and_then(|pq| pq.strip_prefix("/t"))
        .map(|rest| {
            if rest.is_empty() || rest.starts_with('?') {
                format!("/{rest}")
            } else {
                rest.to_owned()
            }
        });
    if let Some(uri) = stripped.and_then(|s| s.parse().ok()) {
        *req.uri_mut() = uri;
    }
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_mounted_under_a_stripped_prefix_serves_its_routes() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    let service = fx.edge.service();
    let nested = tower_service_fn(move |req| {
        let mut service = service.clone();
        async move { service.call(strip_prefix(req)).await }
    });
    let addr = serve_with_hyper(nested).await?;

    let page = http_get(addr, "/t/", "").await?;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let script = http_get(addr, "/t/thywill/thywill.js", "").await?;
    assert!(script.starts_with("HTTP/1.1 200"), "{script}");
    let metrics = http_get(addr, "/t/metrics", "").await?;
    assert!(metrics.starts_with("HTTP/1.1 200"), "loopback metrics: {metrics}");
    let missing = http_get(addr, "/t/no-such-thing", "").await?;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

    let mut c = WsClient::connect(&format!("ws://{addr}/t/ws")).await?;
    c.send("echo", serde_json::json!("mounted")).await?;
    match c.recv().await? {
        ServerFrame::Msg { data, .. } => assert_eq!(data, serde_json::json!("mounted")),
        other => anyhow::bail!("unexpected {other:?}"),
    }
    fx.until("the connection counted", |e| e.connection_count() == 1)
        .await?;
    c.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_answers_the_edges_routes_and_passes_the_rest_on() -> anyhow::Result<()> {
    let fx = Fixture::start(TransportConfig::default().with_base_path("/t")?).await?;
    let inner = tower_service_fn(|req: http::Request<hyper::body::Incoming>| async move {
        let body = format!("inner saw {}", req.uri().path());
        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
    });
    let layered = tower_layer::Layer::layer(&fx.edge.layer(), inner);
    let addr = serve_with_hyper(layered).await?;

    // `/alive` is outside the base path: the application's, not the edge's `/t/alive`.
    for (path, inner) in [
        ("/elsewhere", true),
        ("/alive", true),
        ("/t/alive", false),
        ("/t/app-route", true),
    ] {
        let text = http_get(addr, path, "").await?;
        assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
        assert_eq!(
            text.ends_with(&format!("inner saw {path}")),
            inner,
            "{path}: {text}"
        );
    }
    let mut c = WsClient::connect(&fx.ws_url().replace(&fx.addr.to_string(), &addr.to_string())).await?;
    c.send("echo", serde_json::json!("layered")).await?;
    assert!(matches!(c.recv().await?, ServerFrame::Msg { .. }));
    c.close().await;
    Ok(())
}

/// A cloneable tower service from an async closure.
fn tower_service_fn<F, Fut, Req, Res>(f: F) -> ServiceFn<F>
where
    F: FnMut(Req) -> Fut + Clone,
    Fut: std::future::Future<Output = Result<Res, Infallible>>,
{
    ServiceFn(f)
}

#[derive(Clone)]
struct ServiceFn<F>(F);

impl<F, Fut, Req, Res> Service<Req> for ServiceFn<F>
where
    F: FnMut(Req) -> Fut,
    Fut: std::future::Future<Output = Result<Res, Infallible>>,
{
    type Response = Res;
    type Error = Infallible;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Fut {
        (self.0)(req)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_edges_own_accept_loop_no_path_outside_the_base_path_is_served() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    // Nothing strips a prefix there: `/` and `/alive` are not `/t/` and `/t/alive`.
    for path in ["/", "/alive", "/thywill/thywill.js"] {
        let text = http_get(fx.addr, path, "").await?;
        assert!(text.starts_with("HTTP/1.1 404"), "{path}: {text}");
    }
    let text = http_get(fx.addr, "/t/alive", "").await?;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    Ok(())
}
