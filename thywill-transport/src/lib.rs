//! The WebSocket and HTTP edge of thywill-rs, and the node runtime behind it.
//!
//! A [`Node`] holds the registered applications, the local connections and their channel
//! subscriptions, and routes every message either to a local connection's bounded outbound
//! queue or, through the configured [`Cluster`](thywill_core::Cluster), to the member that
//! holds the client. [`Node::routes`] gives its warp routes:
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
//! Application authors use the facade crate `thywill`, which builds nodes; this crate is for
//! those who compose nodes by hand or write components.
//!
//! The single-member, in-memory defaults of every component (`LocalCluster`, `MemoryTracker`,
//! `LocalHistory`, ...) live in `thywill-core`'s `memory` module, next to their traits.

mod assets;
mod caches;
mod config;
mod connection;
mod error;
mod metrics;
mod node;
mod presence;
mod queues;
mod routes;
mod serve;
mod session;
mod socket;
mod streams;
mod tasks;
mod tls;
pub mod tracker;

pub use assets::{CLIENT_DTS, CLIENT_JS, client_js_path};
pub use config::{AllowedHosts, AllowedOrigins, MetricsAccess, TransportConfig};
pub use error::TransportError;
pub use node::{Node, NodeParts};
pub use session::{MIN_SECRET_LEN, SessionConfig, SessionRefusal, Sessions};
pub use tls::TlsConfig;
