//! The WebSocket and HTTP edge of thywill-rs: what serves a node's clients.
//!
//! An [`Edge`] serves a node runtime (any [`Gateway`](thywill_core::edge::Gateway); the
//! facade uses `thywill_node::Node`) over HTTP and WebSocket: it takes each WebSocket upgrade,
//! resolves the client's session from its signed cookie, registers the connection with the
//! node, and runs the connection's IO task — reading and decoding client frames into the
//! node's bounded inbox, writing the frames the node queues and the replays it reads, pinging
//! — while the node's worker runs the application code. [`Edge::routes`] gives its warp
//! routes:
//!
//! | route | what |
//! |---|---|
//! | `GET <base>/ws` | the WebSocket endpoint (protocol v1, see `docs/PROTOCOL.md`) |
//! | `GET <base>/alive` | health check (cheap, always 200 while the process serves), JSON |
//! | `GET <base>/ready` | readiness: 200 when the cluster link works and the node is not draining, else 503 |
//! | `GET <base>/metrics` | Prometheus text format (loopback only by default) |
//! | `GET <base>/thywill/thywill.js` | the browser client library (`.d.ts` beside it) |
//! | `GET <any stored path>` | resources from the [`ResourceManager`](thywill_core::ResourceManager) |
//!
//! [`Edge::service`] gives them as a tower `Service` ([`ThywillService`]), WebSocket upgrades
//! included, for another server that owns the listener (axum, hyper; mounted under its base
//! path, `nest_service` included), and [`Edge::layer`] as a tower `Layer` ([`ThywillLayer`])
//! in front of an application's own service. [`Edge::bind`] and [`Edge::bind_tls`] serve that
//! same service on the edge's own accept loop (deadlines at every stage, a socket cap, TLS with
//! rustls, graceful drain), and [`Edge::serve_app`] serves an application's router with the
//! edge inside it there. Feature `axum`: the service reads axum's `OriginalUri` and
//! `ConnectInfo`.
//!
//! Application authors use the facade crate `thywill`, which builds the node and its edge;
//! this crate is for those who compose nodes by hand or write components.
//!
//! The single-member, in-memory defaults of every component (`LocalCluster`, `MemoryTracker`,
//! `LocalHistory`, ...) live in `thywill-core`'s `memory` module, next to their traits.

mod assets;
mod auth;
mod config;
mod connection;
mod edge;
mod error;
mod metrics;
mod routes;
mod serve;
mod service;
mod session;
mod socket;
mod tls;

pub use assets::{CLIENT_DTS, CLIENT_JS, client_js_path};
pub use auth::{AuthResult, Authenticator, RequestParts};
pub use config::{AllowedHosts, AllowedOrigins, MetricsAccess, TransportConfig};
pub use edge::{DRAIN_WAIT, Edge, EdgeParts};
pub use error::TransportError;
pub use service::{BoxError, PeerAddr, ServiceBody, ThywillLayer, ThywillService, WithThywill};
pub use session::{MIN_SECRET_LEN, SessionConfig, SessionRefusal, Sessions};
pub use tls::TlsConfig;
