//! The edge as a tower [`Service`] over `http` types, for any server (axum, hyper, ...).
//!
//! [`ThywillService`] answers the edge's routes and owns no listener: the server in front of
//! it accepts the sockets (the edge's own accept loop, [`Edge::bind`], serves this same
//! service). It takes a WebSocket upgrade itself, from the hyper `OnUpgrade` the server leaves
//! in the request's extensions, and runs the connection with the edge's small read buffer,
//! under the same Origin and Host checks, connection limit, socket cap and drain as behind the
//! edge's own accept loop. The routes only read request heads (every one is a `GET` or
//! `HEAD`): a request body is never read.
//!
//! **Where it is mounted.** The edge's base path is its public prefix: mount the service where
//! its base path says (`Router::nest_service("/live", service)` for a base path of `/live`,
//! or `merge` the facade's router). Served at the root, a request's path is the full path.
//! Mounted under a prefix the server strips (axum's `nest`/`nest_service`), the service reads
//! the full path from axum's `OriginalUri` (feature `axum`); without it, a path outside the
//! base path is taken as relative to it (except behind the edge's own accept loop, which
//! strips nothing: there a path outside the base path is answered 404). Session cookies, the pages' script URLs and the
//! client's socket URL (derived from where `thywill.js` was loaded) all name the base path.
//!
//! **Limits under another server.** A WebSocket upgraded through the service takes a place
//! under the socket cap ([`TransportConfig::with_max_sockets`]; 503 before the upgrade at the
//! cap) until it closes, the handshake (the upgrade request's answer, the authentication hook
//! included) is bounded by the handshake timeout (503 past it) and so is the server's handing
//! over of the upgraded socket. [`Edge::shutdown`] closes every connection with 1001 and
//! [`Edge::drained`] waits for them to end. What the service cannot see is the socket before
//! the request: the outer server bounds header reading, idle keep-alive and its own accepts
//! (see SECURITY.md).
//!
//! The client's address, which `<base>/metrics` needs to answer loopback clients, is read from
//! a request extension: [`PeerAddr`], a plain [`SocketAddr`], or (feature `axum`) axum's
//! `ConnectInfo<SocketAddr>` of an app served with
//! `into_make_service_with_connect_info::<SocketAddr>()`.
//!
//! [`ThywillLayer`] puts the edge in front of an application's own service: the edge answers
//! its routes, every other request goes on to the inner service.
//!
//! [`TransportConfig::with_max_sockets`]: crate::TransportConfig::with_max_sockets

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tower_service::Service;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::{Filter, Reply};

use crate::Edge;
use crate::socket::UpgradeSlot;

/// The error type of a [`ServiceBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response of a [`ThywillService`].
pub type ServiceBody = UnsyncBoxBody<Bytes, BoxError>;

/// The client's socket address, as a request extension a [`ThywillService`] reads (a plain
/// [`SocketAddr`] extension works too). Without either, `<base>/metrics` answers nobody when
/// it is loopback-only (the default) and connections have no peer address.
///
/// An axum app served with `into_make_service_with_connect_info::<SocketAddr>()` gets it
/// through the facade's `Thywill::router()`; one that mounts the service by hand adds it with
/// a middleware copying `ConnectInfo<SocketAddr>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// The edge's routes as a tower [`Service`] for any request body: see the
/// [crate docs](crate). Cheap to clone; built by [`Edge::service`]. Requests matching no route
/// of the edge are answered 404.
#[derive(Clone)]
pub struct ThywillService {
    edge: Edge,
    routes: BoxedFilter<(warp::reply::Response,)>,
    /// Whether a request outside the base path was logged (once per service).
    misplaced: Arc<AtomicBool>,
}

impl std::fmt::Debug for ThywillService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThywillService")
            .field("base_path", &self.edge.config().base_path())
            .finish_non_exhaustive()
    }
}

/// Marks the edge's 404 (no route of the edge matched), for [`ThywillLayer`].
#[derive(Clone, Copy, Debug)]
struct NoRoute;

impl Edge {
    /// The edge's routes as a tower [`Service`] ([`ThywillService`]), to mount in another
    /// server (axum's `Router::nest_service` under the base path, `route_service`,
    /// `fallback_service`; hyper's `serve_connection_with_upgrades`): WebSocket upgrades
    /// included, with the edge's small read buffer.
    pub fn service(&self) -> ThywillService {
        let not_found = warp::any().map(|| {
            let mut r = warp::reply::with_status("No such resource.", StatusCode::NOT_FOUND).into_response();
            r.extensions_mut().insert(NoRoute);
            r
        });
        ThywillService {
            edge: self.clone(),
            routes: self.routes().or(not_found).unify().boxed(),
            misplaced: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A tower `Layer` putting the edge in front of an application's own service
    /// ([`ThywillLayer`]).
    pub fn layer(&self) -> ThywillLayer {
        ThywillLayer {
            service: self.service(),
        }
    }
}

impl ThywillService {
    /// The request's path as the public sees it, when the server in front stripped a mount
    /// prefix: axum's `OriginalUri`, or the base path before a path outside it.
    /// Behind the edge's own accept loop nothing strips a prefix but an application's axum
    /// router (which leaves `OriginalUri`): the path outside the base path is not relative.
    fn public_uri(&self, uri: &http::Uri, extensions: &http::Extensions) -> Option<http::Uri> {
        #[cfg(feature = "axum")]
        if let Some(original) = extensions.get::<axum::extract::OriginalUri>() {
            return (original.0 != *uri).then(|| original.0.clone());
        }
        if extensions.get::<crate::serve::OwnSocket>().is_some() {
            return None;
        }
        let base = self.edge.config().base_path();
        let path = uri.path();
        if under(base, path) {
            return None;
        }
        let rest = if path == "/" { "/" } else { path };
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        format!("{base}{rest}{query}").parse().ok()
    }

    /// Whether a request for `path` (the public one) may be the edge's: it is under the base
    /// path.
    fn may_answer(&self, path: &str) -> bool {
        under(self.edge.config().base_path(), path)
    }
}

/// Whether `path` is `base` or under it.
fn under(base: &str, path: &str) -> bool {
    base == "/"
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The client's address from the request's extensions, if a server put it there.
fn peer_of(extensions: &http::Extensions) -> Option<SocketAddr> {
    let peer = extensions
        .get::<PeerAddr>()
        .map(|p| p.0)
        .or_else(|| extensions.get::<SocketAddr>().copied());
    #[cfg(feature = "axum")]
    let peer = peer.or_else(|| {
        extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
    });
    peer
}

impl<B> Service<http::Request<B>> for ThywillService
where
    B: http_body::Body + Send + 'static,
{
    type Response = http::Response<ServiceBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The routes read heads only: the body is left unread (and dropped).
        let (mut parts, _body) = req.into_parts();
        let own = parts.extensions.get::<crate::serve::OwnSocket>().is_some();
        if let Some(uri) = self.public_uri(&parts.uri, &parts.extensions) {
            parts.uri = uri;
        }
        if !own && !self.may_answer(parts.uri.path()) && !self.misplaced.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                path = parts.uri.path(),
                base_path = self.edge.config().base_path(),
                "a request outside the base path reached the service: mount it at its base path"
            );
        }
        if parts.extensions.get::<crate::serve::PeerAddr>().is_none()
            && let Some(peer) = peer_of(&parts.extensions)
        {
            parts.extensions.insert(crate::serve::PeerAddr {
                peer,
                local: None,
                tls: false,
            });
        }
        // A WebSocket upgrade is finished by the edge's own route (small buffers, its checks).
        let upgrade = parts
            .headers
            .get(http::header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        if upgrade && let Some(pending) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() {
            let slot = match parts.extensions.get::<crate::serve::OwnSocket>() {
                Some(own) => UpgradeSlot::new(pending, own.0.clone(), false),
                // Another server's socket: no deadlines of the edge's accept loop on it.
                None => UpgradeSlot::new(pending, Arc::new(crate::serve::Stage::default()), true),
            };
            parts.extensions.insert(slot);
        }
        let req = http::Request::from_parts(parts, http_body_util::Empty::<Bytes>::new());
        let mut routes = warp::service(self.routes.clone());
        let deadline = self.edge.config().handshake_timeout;
        Box::pin(async move {
            let answered = routes.call(req);
            let response = if upgrade {
                // The handshake's HTTP part (checks, the authentication hook) is bounded.
                match tokio::time::timeout(deadline, answered).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(never)) => match never {},
                    Err(_) => {
                        tracing::info!("websocket refused: handshake timed out");
                        warp::reply::with_status("handshake timed out", StatusCode::SERVICE_UNAVAILABLE)
                            .into_response()
                    }
                }
            } else {
                match answered.await {
                    Ok(r) => r,
                    Err(never) => match never {},
                }
            };
            Ok(response.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
        })
    }
}

/// A tower `Layer` putting the edge in front of an application's own service: requests under
/// the base path go to the edge first, and whatever the edge has no route for (and every
/// other request) goes on to the inner service. Built by [`Edge::layer`].
///
/// Responses of the inner service have their bodies boxed into a [`ServiceBody`].
#[derive(Clone, Debug)]
pub struct ThywillLayer {
    service: ThywillService,
}

impl<S> tower_layer::Layer<S> for ThywillLayer {
    type Service = WithThywill<S>;

    fn layer(&self, inner: S) -> WithThywill<S> {
        WithThywill {
            thywill: self.service.clone(),
            inner,
        }
    }
}

/// An application's service with the edge in front of it: see [`ThywillLayer`].
#[derive(Clone, Debug)]
pub struct WithThywill<S> {
    thywill: ThywillService,
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for WithThywill<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body + Send + 'static,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = http::Response<ServiceBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The inner service that was made ready is the one called (tower's clone rule).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let box_body = |r: http::Response<RB>| r.map(|b| b.map_err(Into::into).boxed_unsync());
        // The layer wraps the application where it is served: a path outside the base path
        // is not the edge's (unless axum nested the application, which `OriginalUri` says).
        #[cfg(feature = "axum")]
        let path = req
            .extensions()
            .get::<axum::extract::OriginalUri>()
            .map_or_else(|| req.uri().path().to_owned(), |u| u.0.path().to_owned());
        #[cfg(not(feature = "axum"))]
        let path = req.uri().path().to_owned();
        if !self.thywill.may_answer(&path) {
            return Box::pin(async move { inner.call(req).await.map(box_body) });
        }
        // The edge reads the head only; the inner service may still need the body.
        let mut copy = http::Request::new(http_body_util::Empty::<Bytes>::new());
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        let mut thywill = self.thywill.clone();
        Box::pin(async move {
            let answer = match thywill.call(copy).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            if answer.extensions().get::<NoRoute>().is_none() {
                return Ok(answer);
            }
            inner.call(req).await.map(box_body)
        })
    }
}
