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
//! - [`Backend`]: a cluster backend and the stores it shares, installed as one bundle
//!   ([`BackendParts`]);
//! - the single-member, in-memory defaults of those traits ([`memory`]: [`LocalCluster`],
//!   [`MemoryTracker`], [`MemoryChannels`], [`MemorySessionStore`], [`MemoryResources`],
//!   [`LocalHistory`], bundled as [`LocalBackend`]).
//!
//! Async trait methods return [`BoxFuture`] where the trait must be stored as a trait object;
//! the user-facing [`Application`] trait uses `impl Future` and is erased internally through
//! [`DynApplication`].

mod app_task;
mod application;
mod backend;
pub mod cache;
mod channel;
pub mod cluster;
mod disconnect;
mod error;
pub mod history;
mod id;
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
pub use channel::ChannelManager;
pub use cluster::{Cluster, ClusterEvents, ClusterStats, ClusterTask, DynCluster, MemberStatus, Task};
pub use disconnect::DisconnectReason;
pub use error::{CoreError, CoreResult};
pub use history::{Entry, History, HistoryLimits, Offset, ReadLimit, Replay};
pub use id::{ApplicationId, ChannelId, ConnectionId, MemberId, SessionId};
pub use memory::{
    LocalBackend, LocalCluster, LocalHistory, MemoryChannels, MemoryResources, MemorySessionStore,
    MemoryTracker, SessionLimits,
};
pub use message::{Client, Message, Metadata};
pub use resource::{Minifier, Resource, ResourceKind, ResourceManager, TemplateEngine, attr};
pub use rpc::{RpcError, RpcErrorCode, RpcHandler};
pub use session::{MAX_APP_SESSION_DATA, SessionData, SessionStore};
pub use tracker::{ClientTracker, MemberClients, TrackerEvent, TrackerListener};

/// A boxed, sendable future: the return type of trait methods that must stay object safe.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
