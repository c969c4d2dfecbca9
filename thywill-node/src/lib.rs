//! The node runtime of thywill-rs: applications, local connections, routing across the
//! cluster.
//!
//! A [`Node`] holds the registered applications, the local connections and their channel
//! subscriptions, and routes every message either to a local connection's bounded outbound
//! queue or, through the configured [`Cluster`](thywill_core::Cluster), to the member that
//! holds the client (a channel's messages only to the members where a connection is subscribed
//! to it: interest routing, see `ARCHITECTURE.md`). It numbers channel and session messages in the
//! [`History`](thywill_core::History) and answers reconnecting clients with what they missed,
//! runs the applications' hooks (one worker per connection while it has work, fed through a
//! bounded inbox), dispatches RPC calls, routes cluster tasks by name (the node's own and the
//! applications'), keeps channel presence across members, and invalidates the applications'
//! named caches on the other members.
//!
//! The node serves no socket: an edge does (`thywill-transport`, the HTTP and WebSocket side),
//! through the traits of [`thywill_core::edge`]. The node implements
//! [`Gateway`](thywill_core::edge::Gateway), which the edge calls to open a connection; the
//! edge implements [`Outbound`](thywill_core::edge::Outbound), the connection's bounded
//! queue the node pushes frames to. Neither crate depends on the other; the facade `thywill`
//! builds the node, then the edge over it.
//!
//! Application authors use the facade crate `thywill`; this crate is for those who compose
//! nodes by hand or write components.

mod caches;
mod config;
mod error;
mod interest;
mod metrics;
mod node;
mod presence;
mod queues;
mod streams;
mod tasks;
mod worker;

pub use config::NodeConfig;
pub use error::NodeError;
pub use node::{Node, NodeParts};
