//! The edge as a tower [`Service`] over `http` types, for any server (axum, hyper, ...).
//!
//! [`ThywillService`] answers the same routes as [`Edge::routes`] and owns no listener: the
//! server in front of it accepts the sockets. It takes a WebSocket upgrade itself, from the
//! hyper `OnUpgrade` the server leaves in the request's extensions, and runs the connection
//! with the edge's small read buffer, under the same Origin and Host checks, connection limit
//! and drain as the edge's own accept loop. The routes only read request heads (every one is a
//! `GET` or `HEAD`): a request body is never read.
//!
//! The client's address, which `<base>/metrics` needs to answer loopback clients, is read from
//! a request extension: [`PeerAddr`] or a plain [`SocketAddr`]. An axum app served with
//! `into_make_service_with_connect_info::<SocketAddr>()` has `ConnectInfo<SocketAddr>`
//! instead: the facade's `Thywill::router()` (feature `axum`) copies it into a [`PeerAddr`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
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
    routes: BoxedFilter<(warp::reply::Response,)>,
}

impl std::fmt::Debug for ThywillService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThywillService").finish_non_exhaustive()
    }
}

impl Edge {
    /// The edge's routes as a tower [`Service`] ([`ThywillService`]), to mount in another
    /// server (axum's `Router::route_service`/`fallback_service`, hyper's `serve_connection`
    /// with upgrades): WebSocket upgrades included, with the edge's small read buffer.
    pub fn service(&self) -> ThywillService {
        let not_found = warp::any()
            .map(|| warp::reply::with_status("No such resource.", StatusCode::NOT_FOUND).into_response());
        ThywillService {
            routes: self.routes().or(not_found).unify().boxed(),
        }
    }
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
        let peer = parts
            .extensions
            .get::<PeerAddr>()
            .map(|p| p.0)
            .or_else(|| parts.extensions.get::<SocketAddr>().copied());
        if let Some(peer) = peer {
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
            // No deadlines of the edge's accept loop here: the stage is nobody's.
            let stage = Arc::new(crate::serve::Stage::default());
            parts.extensions.insert(UpgradeSlot::new(pending, stage));
        }
        let req = http::Request::from_parts(parts, http_body_util::Empty::<Bytes>::new());
        let mut routes = warp::service(self.routes.clone());
        Box::pin(async move {
            let response = match routes.call(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok(response.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
        })
    }
}
