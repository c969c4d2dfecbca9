//! The vocabulary and the component traits of thywill-rs.
//!
//! Depend on this crate when you **write a component**: a cluster backend, a session store, a
//! resource manager, a template engine, a minifier. Application authors use the facade crate
//! `thywill`, which re-exports what they need from here.
//!
//! This crate does no IO and starts no runtime. It holds:
//!
//! - identifiers ([`MemberId`], [`ConnectionId`], [`SessionId`], [`ChannelId`],
//!   [`ApplicationId`]), the [`Message`] and [`Client`] types, and why a client disconnected
//!   ([`DisconnectReason`]);
//! - the browser wire protocol v1 ([`protocol`]), shared by the server and the fuzz targets;
//! - the traits every component implements: [`Application`], [`ClientInterface`],
//!   [`Cluster`], [`ClientTracker`], [`ChannelManager`], [`SessionStore`],
//!   [`ResourceManager`], [`TemplateEngine`], [`Minifier`], [`RpcHandler`], [`History`]
//!   (replay logs for recovery after reconnects) and [`CacheManager`] (named, bounded LRU
//!   caches, with the in-memory default [`MemoryCaches`]; see [`cache`]);
//! - [`CoreError`], the error at every seam, with its [`ErrorKind`] (what callers decide by)
//!   and, for a component's failure, the component's own error as its source;
//! - [`Backend`]: a cluster backend and the stores it shares, installed as one bundle
//!   ([`BackendParts`]);
//! - the single-member, in-memory defaults of those traits ([`memory`]: [`LocalCluster`],
//!   [`MemoryTracker`], [`MemoryChannels`], [`MemorySessionStore`], [`MemoryResources`],
//!   [`LocalHistory`], bundled as [`LocalBackend`]);
//! - [`edge`]: where the node runtime meets the edge that serves its WebSockets (the
//!   [`Gateway`](edge::Gateway) the node implements, the [`Outbound`](edge::Outbound) queue
//!   the edge implements, and the [`Pipe`](edge::Pipe) between a connection's IO task and its
//!   worker).
//!
//! Component authors write plain `async fn`s: the traits they implement ([`Application`],
//! [`Cluster`], [`ClientTracker`], [`SessionStore`], [`ChannelManager`], [`ResourceManager`],
//! [`History`], [`CacheManager`], [`Backend`]) declare their async methods as
//! `fn m(..) -> impl Future<Output = ..> + Send`, so an `async fn` in the impl is all it takes
//! and the compiler checks that it is `Send`. Each has an object-safe twin ([`DynApplication`],
//! [`DynCluster`], [`DynClientTracker`], [`DynSessionStore`], [`DynChannelManager`],
//! [`DynResourceManager`], [`DynHistory`], [`DynCacheManager`], [`DynBackend`]) with
//! [`BoxFuture`] methods, implemented for every implementation of the trait and never by hand:
//! the node stores components as `Arc<dyn DynX>` and calls them through it. The twin's methods
//! have the same names, so bring one of the two into scope where you call a concrete type's
//! methods (with both imported, say by a glob, name the trait: `SessionStore::load(&store, id)`).
//!
//! ```
//! use thywill_core::{CoreResult, DynSessionStore, SessionData, SessionId, SessionStore};
//!
//! /// A store that forgets everything (a real one keeps sessions somewhere).
//! struct Forgetful;
//!
//! impl SessionStore for Forgetful {
//!     fn is_shared(&self) -> bool {
//!         true
//!     }
//!     async fn load(&self, _id: &SessionId) -> CoreResult<Option<SessionData>> {
//!         Ok(None)
//!     }
//!     async fn store(&self, _id: &SessionId, _data: SessionData) -> CoreResult<()> {
//!         Ok(())
//!     }
//!     async fn remove(&self, _id: &SessionId) -> CoreResult<()> {
//!         Ok(())
//!     }
//! }
//!
//! let stored: std::sync::Arc<dyn DynSessionStore> = std::sync::Arc::new(Forgetful);
//! assert!(stored.is_shared());
//! ```

mod app_task;
mod application;
mod backend;
pub mod cache;
mod channel;
mod client_table;
pub mod cluster;
mod conn_state;
mod disconnect;
pub mod edge;
mod error;
pub mod history;
mod id;
mod identity;
pub mod memory;
mod message;
pub mod protocol;
mod resource;
mod rpc;
mod session;
mod tracker;

pub use app_task::{AppTask, TaskTarget};
pub use application::{AppContext, Application, ClientInterface, DynApplication, Target, is_plain_path};
pub use backend::{Backend, BackendParts, DynBackend, Tracking};
pub use cache::{Cache, CacheLimits, CacheManager, DynCacheManager, MemoryCaches};
pub use channel::{ChannelManager, DynChannelManager};
pub use client_table::ClientTable;
pub use cluster::{Cluster, ClusterEvents, ClusterStats, ClusterTask, DynCluster, MemberStatus, Task, Topic};
pub use conn_state::{ConnectionState, MAX_STATES_PER_CONNECTION};
pub use disconnect::DisconnectReason;
pub use error::{BoxError, CoreError, CoreResult, ErrorKind};
pub use history::{DynHistory, Entry, History, HistoryLimits, Offset, ReadLimit, Replay};
pub use id::{ApplicationId, ChannelId, ConnectionId, MemberId, SessionId};
pub use identity::{Identity, Refusal};
pub use memory::{
    LocalBackend, LocalCluster, LocalHistory, MemoryChannels, MemoryResources, MemorySessionStore,
    MemoryTracker, SessionLimits,
};
pub use message::{Client, Message, Metadata};
pub use resource::{
    DynResourceManager, Minifier, Resource, ResourceKind, ResourceManager, TemplateEngine, attr,
};
pub use rpc::{RpcError, RpcErrorCode, RpcHandler};
pub use session::{DynSessionStore, MAX_APP_SESSION_DATA, SessionData, SessionStore};
pub use tracker::{ClientTracker, DynClientTracker, MemberClients, TrackerEvent, TrackerListener};

/// A boxed, sendable future: the return type of trait methods that must stay object safe.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
