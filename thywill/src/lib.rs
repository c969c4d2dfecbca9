//! # thywill-rs
//!
//! A framework for clustered single-page web applications that talk to their server by
//! asynchronous messages, pushed either way at any time over one WebSocket per browser tab.
//!
//! You write an [`Application`]; thywill carries its messages between browsers and the server,
//! multiplexes several applications on one connection, reconnects browsers automatically, and
//! serves your page and the browser client library.
//!
//! ```no_run
//! use thywill::{AppContext, Application, Client, Message, Thywill};
//!
//! /// Sends every message back to the connection it came from.
//! struct Echo;
//!
//! impl Application for Echo {
//!     async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
//!         let _ = ctx.send_to_connection(&client.connection, message).await;
//!     }
//! }
//!
//! # async fn run() -> Result<(), thywill::Error> {
//! let node = Thywill::builder()
//!     .base_path("/echo")?
//!     .application("echo", Echo)
//!     .build()
//!     .await?;
//! let (addr, serving) = node.bind(([127, 0, 0, 1], 10081).into()).await?;
//! println!("listening on http://{addr}/echo/");
//! serving.await;
//! # Ok(()) }
//! ```
//!
//! ## Components
//!
//! A node is composed by type from components that implement the traits of
//! [`thywill_core`]; each has a single-member default. A **backend** is installed as one bundle
//! ([`Builder::backend`], a [`Backend`]): its cluster, the cluster-wide client tracker (wired by
//! the builder) and the stores its members share. [`RedisBackend`] has them all,
//! [`HttpBackend`] only the cluster; the default [`LocalBackend`] is one member with everything
//! in memory. [`Builder::build`] refuses parts that do not fit together (sessions on several
//! members in a store each keeps for itself, and the like), saying what to add.
//!
//! | component | trait | default ([`LocalBackend`]) | [`RedisBackend`] |
//! |---|---|---|---|
//! | cluster backend | [`Cluster`] | [`LocalCluster`] (one member) | [`RedisCluster`] |
//! | client tracker | [`ClientTracker`] | [`MemoryTracker`] | [`ClusterTracker`] (wired by the builder) |
//! | replay history | [`History`] | [`LocalHistory`] | `RedisHistory` (shared) |
//! | channels of sessions | [`ChannelManager`] | [`MemoryChannels`] | `RedisChannels` |
//! | sessions | [`SessionStore`] | [`MemorySessionStore`] (sessions are off unless [`Builder::sessions`]) | `RedisSessions` |
//! | resources | [`ResourceManager`] | [`MemoryResources`] | memory, or `RedisResources` if asked |
//! | remote procedures | [`RpcHandler`] | none; [`rpc::Registry`] is a typed registry of functions (crate `thywill-rpc`) |
//! | page templates | [`TemplateEngine`] | [`templates::MiniJinja`] (HTML autoescaping) |
//! | minifier | [`Minifier`] | [`resources::DefaultMinifier`] (swc_core, lightningcss) |
//! | named caches | [`CacheManager`] | [`MemoryCaches`] (a bounded LRU per cache and member, invalidated across the cluster) |
//!
//! ## Pages and resources
//!
//! A service ships one page: [`Builder::bootstrap`] takes a [`Manifest`] of its files. At
//! start-up the scripts (the client library first) and styles are minified, merged in weight
//! order into one content-hashed bundle each (served as immutable), and the page template is
//! rendered with them. Every resource is served with an ETag (304 when current) and, where the
//! browser accepts it, brotli or gzip. A syntax error in a script or style fails
//! [`Builder::build`] with file, line and column. Entries marked [`Entry::on_demand`] and
//! resources stored while running ([`Thywill::resources`]) are served the same way and loaded
//! by pages when they ask (`Thywill.loadScript(path)`) or the server tells them
//! ([`AppContext::expose`]).
//!
//! An application's script can be a template rendered at start-up, so that it does not
//! hard-code its application id, the ids of its client templates or values the server knows:
//! [`Entry::rendered`] with [`resources::ScriptValues`]; `{{ application_id }}`, `{{ templates.row }}`
//! and the application's own values are written as JSON literals (see [`resources::script`]).
//!
//! ## Sessions, channels, presence and the cluster-wide tracker
//!
//! - **Sessions** ([`Builder::sessions`]): the page issues a signed cookie; every tab of one
//!   browser, on any member, is then one [`SessionId`]. A cluster shares the secret and a
//!   session store (the backend's, such as [`cluster_redis::RedisSessions`]).
//! - **Who is connected** ([`AppContext::is_connected`], [`AppContext::connections_of_session`],
//!   [`AppContext::connected_clients`]): the cluster-wide tracker. Clients of other members
//!   reach [`Application::connection_to`] / [`Application::disconnection_from`] on every member;
//!   a member's failure reaches [`Application::cluster_member_down`] (with its purged clients) on
//!   its designated handler and [`Application::cluster_member_status`] everywhere.
//! - **Channels of sessions** ([`AppContext::add_sessions`], [`AppContext::remove_sessions`],
//!   [`AppContext::clear_channel`], [`AppContext::channel_sessions`],
//!   [`AppContext::session_channels`]): persisted by the [`ChannelManager`] (the backend's,
//!   such as [`cluster_redis::RedisChannels`]; [`Builder::channels`] replaces it). Every connection of
//!   those sessions is subscribed, on any member, now and whenever one connects later (a
//!   reconnecting browser is back in its channels before [`Application::connection`] runs).
//!   Connections can also be subscribed one by one ([`AppContext::subscribe`]).
//!   Every member, the one that made a change included, runs [`Application::sessions_added`] /
//!   [`Application::sessions_removed`] with the sessions that actually joined or left.
//! - **Session data** ([`AppContext::session_data`], [`AppContext::set_session_data`],
//!   [`AppContext::remove_session_data`]): per-user state, typed with serde, kept in the session
//!   store apart per application (at most [`MAX_APP_SESSION_DATA`] bytes of JSON each), so it
//!   follows the user across reconnections to any member; RPC functions registered with
//!   [`RegistryBuilder::async_function_with_context`](rpc::RegistryBuilder::async_function_with_context)
//!   get it too.
//! - **Presence** ([`Application::tracks_presence`], [`AppContext::presence`]): which sessions
//!   have a connection subscribed to a channel anywhere, with `state` / `join` / `leave`
//!   messages to its subscribers; a member's sessions leave as soon as its failure is detected.
//! - **Named caches** ([`AppContext::create_cache`], [`AppContext::cache`], [`Cache`]): LRU
//!   caches bounded in entries and bytes, for bytes or any serde value. In memory by default
//!   (each member has its copies; a `set`, `remove` or `clear` on one member evicts the key on
//!   every other member), or shared in Redis ([`Builder::redis_caches`], or `[cache] backend =
//!   "redis"` in the [`config`] file).
//! - **Tasks between members** ([`AppContext::send_task_to`],
//!   [`AppContext::send_task_to_others`], [`AppContext::send_task_to_all`]): an application's
//!   own serde types ([`Task`]) for the same application on other members, received in
//!   [`Application::task`] with the sender.
//!
//! ## Cargo features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `minify` | yes | minification with swc_core and lightningcss (without it, bundles are merged unminified and clean builds take about half the time) |
//! | `redis` | yes | the Redis backend: [`RedisBackend`] (crate `thywill-cluster-redis`) |
//! | `http` | yes | the HTTP backend: [`HttpBackend`] (crate `thywill-cluster-http`) |
//!
//! ## Running as root
//!
//! A member started as root to bind ports 80 and 443 drops to an unprivileged user and group
//! once bound ([`privileges`]: `[process] user`, `group` in the configuration, or
//! [`privileges::RunAs`]); [`config::Config::serve`] refuses to serve as root unless
//! `process.allow_root` is set.
//!
//! See `ARCHITECTURE.md` for the map of the crates and the path of a message.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod config;
pub mod privileges;

use std::net::SocketAddr;
use std::sync::Arc;

pub use thywill_core::DisconnectReason;
/// The largest data one application keeps in one session (see
/// [`AppContext::set_session_data`]).
pub use thywill_core::MAX_APP_SESSION_DATA;
pub use thywill_core::cluster::MemberStatus;
pub use thywill_core::memory::{
    LocalBackend, LocalCluster, LocalHistory, MemoryChannels, MemoryResources, MemorySessionStore,
    MemoryTracker, SessionLimits,
};
pub use thywill_core::{
    AppContext, Application, ApplicationId, Backend, BackendParts, ChannelId, ChannelManager, Client,
    ClientTracker, Cluster, ConnectionId, CoreError, DynBackend, DynChannelManager, DynClientTracker,
    DynCluster, DynHistory, DynResourceManager, DynSessionStore, History, HistoryLimits, Identity,
    MemberClients, MemberId, Message, Metadata, ReadLimit, Refusal, Resource, ResourceKind, ResourceManager,
    RpcError, RpcErrorCode, RpcHandler, SessionData, SessionId, SessionStore, TrackerEvent, Tracking,
    protocol,
};
pub use thywill_transport::{
    AllowedHosts, AllowedOrigins, AuthResult, MetricsAccess, RequestParts, SessionConfig, SessionRefusal,
    TlsConfig, TransportConfig,
};
pub use thywill_transport::{PeerAddr, ServiceBody, ThywillLayer, ThywillService, WithThywill};

/// The Prometheus client library of [`Thywill::register_metrics`]'s registry.
pub use prometheus_client;
/// Re-export of the HTTP cluster backend.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use thywill_cluster_http::{self as cluster_http, HttpBackend, HttpCluster, HttpClusterConfig};
/// Re-export of the Redis cluster backend.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use thywill_cluster_redis::{self as cluster_redis, RedisBackend, RedisCluster, RedisClusterConfig};
/// Re-export of the core crate, for component authors.
pub use thywill_core as core;
pub use thywill_core::cache::{Cache, CacheLimits, CacheManager, DynCacheManager, MemoryCaches};
/// Application tasks between members: [`AppContext::send_task_to`] and [`Application::task`].
pub use thywill_core::{AppTask, Task, TaskTarget};
pub use thywill_core::{Minifier, TemplateEngine};
/// Re-export of the node runtime crate.
pub use thywill_node as node;
/// Re-export of the resources crate: manifests, the bootstrap pipeline, minifiers.
pub use thywill_resources as resources;
pub use thywill_resources::{Entry, Manifest, Source};
/// Re-export of the RPC crate: a typed registry of server functions for browsers to call.
pub use thywill_rpc as rpc;
/// Re-export of the template engine crate.
pub use thywill_templates as templates;
/// Re-export of the client tracking crate: the cluster-wide [`ClientTracker`].
pub use thywill_tracking as tracking;
use thywill_tracking::tracked_arc;
pub use thywill_tracking::{ClusterTracker, TrackedCluster};
/// Re-export of the transport crate: the edge (HTTP, WebSocket, TLS).
pub use thywill_transport as transport;

/// A boxed serving future, as returned by [`config::Config::serve`].
pub type BoxServe = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;

/// Errors of building or running a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport refused a setting or could not listen.
    #[error(transparent)]
    Transport(#[from] thywill_transport::TransportError),
    /// The node runtime refused a setting or could not start.
    #[error(transparent)]
    Node(#[from] thywill_node::NodeError),
    /// A component failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The components do not fit together ([`Builder::build`]); the message says what to add.
    #[error("inconsistent node: {message}")]
    Inconsistent {
        /// Which combination was refused.
        kind: Inconsistency,
        /// What is wrong and what to add.
        message: String,
    },
    /// The page's resources could not be assembled (a file is missing, a script or style does
    /// not parse: the message names file, line and column).
    #[error(transparent)]
    Resources(#[from] thywill_resources::ResourcesError),
    /// Switching to the configured user and group failed, or the process would serve as root
    /// (see [`privileges`]).
    #[error("privileges: {0}")]
    Privileges(String),
}

/// A setting of the Redis backend was refused, or Redis failed.
#[cfg(feature = "redis")]
impl From<thywill_cluster_redis::Error> for Error {
    fn from(e: thywill_cluster_redis::Error) -> Self {
        Self::Core(e.into())
    }
}

/// A setting of the HTTP backend was refused.
#[cfg(feature = "http")]
impl From<thywill_cluster_http::Error> for Error {
    fn from(e: thywill_cluster_http::Error) -> Self {
        Self::Core(e.into())
    }
}

impl Error {
    /// Whether the error is an invalid configuration value.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Self::Transport(thywill_transport::TransportError::Config { .. })
                | Self::Node(thywill_node::NodeError::Config { .. })
                | Self::Config(_)
        )
    }

    /// The refused combination, if [`Builder::build`] found the components inconsistent.
    pub fn inconsistency(&self) -> Option<Inconsistency> {
        match self {
            Self::Inconsistent { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Whether the error is a syntax error in a script or stylesheet.
    pub fn is_syntax(&self) -> bool {
        match self {
            Self::Resources(e) => e.is_syntax(),
            Self::Core(CoreError::Component { component, .. }) => {
                *component == thywill_resources::SYNTAX_COMPONENT
            }
            _ => false,
        }
    }
}

/// Builds a [`Thywill`] node. Components are chosen by type; whatever is not set uses the
/// single-member default.
#[must_use]
pub struct Builder {
    config: TransportConfig,
    member: MemberId,
    applications: Vec<(ApplicationId, Arc<dyn thywill_core::DynApplication>)>,
    backend: Option<Box<dyn DynBackend>>,
    recovery: Option<Recovery>,
    channels: Option<Arc<dyn DynChannelManager>>,
    resources: Option<Arc<dyn DynResourceManager>>,
    sessions: Option<SessionConfig>,
    session_store: Option<Arc<dyn DynSessionStore>>,
    initial: Vec<Resource>,
    manifest: Manifest,
    minify: bool,
    minifier: Option<Arc<dyn Minifier>>,
    templates: Option<Arc<dyn TemplateEngine>>,
    history: Option<Arc<dyn DynHistory>>,
    caches: Option<CachesSource>,
    authenticator: Option<thywill_transport::Authenticator>,
    session_from_identity: bool,
}

/// Where the builder's cache manager comes from.
enum CachesSource {
    Ready(Arc<dyn DynCacheManager>),
    #[cfg(feature = "redis")]
    Redis(thywill_cluster_redis::RedisCachesConfig),
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("member", &self.member)
            .field(
                "applications",
                &self.applications.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            config: TransportConfig::default(),
            member: MemberId::from("alpha"),
            applications: Vec::new(),
            backend: None,
            recovery: None,
            channels: None,
            resources: None,
            sessions: None,
            session_store: None,
            initial: Vec::new(),
            manifest: Manifest::new(),
            minify: true,
            minifier: None,
            templates: None,
            history: None,
            caches: None,
            authenticator: None,
            session_from_identity: false,
        }
    }
}

impl Builder {
    /// Authenticates every WebSocket handshake with the application's own login (its
    /// session cookie, a bearer token, a JWT) before the upgrade. `hook` sees the upgrade
    /// request's parts (method, URI with its query, headers with their cookies) and answers:
    ///
    /// - `Ok(Some(identity))`: the connection opens, and [`Client::identity`] is `identity` in
    ///   every application hook (`connection`, `received`, `disconnection`) and in the RPC
    ///   permission hook;
    /// - `Ok(None)`: the connection opens anonymously (no identity);
    /// - `Err(refusal)`: the handshake is answered with the refusal's HTTP status
    ///   ([`Refusal::unauthorized`]: 401, [`Refusal::forbidden`]: 403) and its reason as a
    ///   plain-text body; no WebSocket is opened, no connection registered.
    ///
    /// A hook that takes longer than the handshake timeout
    /// ([`TransportConfig::with_handshake_timeout`], 10 s by default) or panics refuses with
    /// 503. The hook runs after the origin, drain and connection-limit checks. thywill's own
    /// signed-cookie sessions ([`Builder::sessions`]) work as before beside it: the identity
    /// says who the user is, the session which browser. The future the hook returns must own
    /// what it uses of the parts (clone the header it reads).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), thywill::Error> {
    /// use thywill::{Identity, Refusal, Thywill};
    ///
    /// let node = Thywill::builder()
    ///     .authenticate(|parts| {
    ///         let token = parts
    ///             .headers
    ///             .get("authorization")
    ///             .and_then(|v| v.to_str().ok())
    ///             .and_then(|v| v.strip_prefix("Bearer "))
    ///             .map(str::to_owned);
    ///         async move {
    ///             match token.as_deref() {
    ///                 Some("good") => Ok(Some(Identity::new("u1"))),
    ///                 _ => Err(Refusal::unauthorized("bad token")),
    ///             }
    ///         }
    ///     })
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn authenticate<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(&thywill_transport::RequestParts) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = AuthResult> + Send + 'static,
    {
        self.authenticator = Some(thywill_transport::Authenticator::new(hook));
        self
    }

    /// With `true`, a connection [`Builder::authenticate`] gave an identity is bound to its
    /// user's session (`user:<user id>`) rather than its browser's: sending to that session
    /// reaches every tab of the user on every member, and session data and channels of
    /// sessions follow the user. Default `false` (see
    /// [`TransportConfig::with_session_from_identity`]).
    pub fn session_from_identity(mut self, on: bool) -> Self {
        self.session_from_identity = on;
        self
    }

    /// Serves everything under this path prefix, such as `/echo`.
    pub fn base_path(mut self, base: impl AsRef<str>) -> Result<Self, Error> {
        self.config = self.config.with_base_path(base)?;
        Ok(self)
    }

    /// The transport configuration so far (its base path, limits).
    pub fn transport_config(&self) -> &TransportConfig {
        &self.config
    }

    /// Replaces the whole transport configuration.
    pub fn transport(mut self, config: TransportConfig) -> Self {
        self.config = config;
        self
    }

    /// Who may read `<base>/metrics` (default: loopback only); [`MetricsAccess::Off`] serves
    /// no metrics route, for an application that registers thywill's metrics in its own
    /// registry ([`Thywill::register_metrics`]).
    pub fn metrics(mut self, access: MetricsAccess) -> Self {
        self.config = self.config.with_metrics(access);
        self
    }

    /// The local member's id when no backend is installed (default `alpha`); a backend names
    /// the local member itself.
    pub fn member(mut self, member: impl Into<MemberId>) -> Self {
        self.member = member.into();
        self
    }

    /// Registers an application under an id. Ids must be unique.
    pub fn application<A: Application>(mut self, id: impl Into<ApplicationId>, app: A) -> Self {
        self.applications.push((id.into(), Arc::new(app)));
        self
    }

    /// Installs a cluster backend as one bundle: its cluster (the local member id then comes
    /// from it), the cluster-wide client tracker (wired here, over the backend's cluster), and
    /// the stores it shares — replay history, channels of sessions, sessions, resources.
    /// Parts a backend does not have are the in-memory defaults. Default:
    /// [`LocalBackend`] (a single member, everything in memory).
    ///
    /// ```no_run
    /// # #[cfg(feature = "redis")]
    /// # async fn run() -> Result<(), thywill::Error> {
    /// use thywill::{RedisBackend, Thywill};
    ///
    /// let backend = RedisBackend::new("redis://127.0.0.1:6379")?
    ///     .with_members(["alpha", "beta"])?
    ///     .with_local("alpha")?
    ///     .with_prefix("thywill:chat:")?;
    /// let node = Thywill::builder().backend(backend).build().await?;
    /// # let _ = node; Ok(()) }
    /// ```
    ///
    /// [`Builder::history`], [`Builder::channels`], [`Builder::session_store`] and
    /// [`Builder::resources`] replace one part of the bundle; [`Builder::build`] refuses a
    /// combination that cannot work (see there).
    pub fn backend<B: Backend>(mut self, backend: B) -> Self {
        self.backend = Some(Box::new(backend));
        self
    }

    /// Where a client recovers the messages it missed (see `docs/PROTOCOL.md`, "Recovery
    /// after a reconnect"). Default: [`Recovery::AnyMember`] when the backend shares its
    /// history, else [`Recovery::SameMember`]. [`Builder::build`] refuses
    /// [`Recovery::AnyMember`] with a history that each member keeps for itself.
    pub fn recovery(mut self, recovery: Recovery) -> Self {
        self.recovery = Some(recovery);
        self
    }

    /// Persists channels of sessions in this channel manager, instead of the backend's
    /// (shared by the members in a cluster; default: memory). See [`AppContext::add_sessions`].
    pub fn channels<C: ChannelManager>(mut self, channels: C) -> Self {
        self.channels = Some(Arc::new(channels));
        self
    }

    /// Uses this resource store, instead of the backend's.
    pub fn resources<R: ResourceManager>(mut self, resources: R) -> Self {
        self.resources = Some(Arc::new(resources));
        self
    }

    /// Binds connections to browser sessions by signed cookie (issued with the page); without
    /// this, every connection is its own session. The store defaults to memory.
    pub fn sessions(mut self, config: SessionConfig) -> Self {
        self.sessions = Some(config);
        self
    }

    /// Uses this session store, instead of the backend's (shared by the members in a cluster).
    /// Enables sessions with a random secret unless [`Builder::sessions`] sets one (refused on a
    /// cluster of several members, whose members must share the secret).
    pub fn session_store<S: SessionStore>(mut self, store: S) -> Self {
        self.session_store = Some(Arc::new(store));
        self
    }

    /// Stores a resource (a page, a script, a style) when the node starts. Resources marked
    /// [`Resource::bootstrap`] join the page's bundles, like manifest entries.
    pub fn resource(mut self, resource: Resource) -> Self {
        self.initial.push(resource);
        self
    }

    /// Adds the resources of a bootstrap manifest. At start-up the page's scripts (the client
    /// library first) and styles are minified and merged in weight order into one
    /// content-hashed bundle each, and every `text/html` entry is rendered as a page template
    /// with the slots `{{ bootstrap_css }}`, `{{ bootstrap_js }}`, `{{ bootstrap_templates }}`.
    /// Entries marked [`Entry::on_demand`] are stored and served for progressive exposure.
    pub fn bootstrap(mut self, manifest: Manifest) -> Self {
        self.manifest = self.manifest.extend(manifest);
        self
    }

    /// Minifies scripts and styles (default on; needs the `minify` cargo feature, else it is
    /// a no-op).
    pub fn minify(mut self, on: bool) -> Self {
        self.minify = on;
        self
    }

    /// Uses this minifier instead of swc_core and lightningcss.
    pub fn minifier<M: Minifier>(mut self, minifier: M) -> Self {
        self.minifier = Some(Arc::new(minifier));
        self
    }

    /// Renders page templates with this engine instead of minijinja.
    pub fn templates<T: TemplateEngine>(mut self, templates: T) -> Self {
        self.templates = Some(Arc::new(templates));
        self
    }

    /// Keeps the replay logs of channel and session streams in this history, instead of the
    /// backend's (default: a [`LocalHistory`] in memory, one per member).
    pub fn history<H: History>(mut self, history: H) -> Self {
        self.history = Some(Arc::new(history));
        self
    }

    /// Like [`Builder::history`], for a history already shared behind an `Arc`.
    pub fn history_arc(mut self, history: Arc<dyn DynHistory>) -> Self {
        self.history = Some(history);
        self
    }

    /// Keeps the applications' named caches in this cache manager (default:
    /// [`MemoryCaches`], a bounded LRU per cache on each member, invalidated across the
    /// cluster by the node). See [`AppContext::create_cache`].
    pub fn caches<C: CacheManager>(mut self, caches: C) -> Self {
        self.caches = Some(CachesSource::Ready(Arc::new(caches)));
        self
    }

    /// Keeps the named caches in Redis, shared by the members
    /// ([`cluster_redis::RedisCaches`]), connecting when the node is built.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_caches(mut self, config: thywill_cluster_redis::RedisCachesConfig) -> Self {
        self.caches = Some(CachesSource::Redis(config));
        self
    }

    /// Connects the backend, checks that its parts fit together, starts the components and
    /// the applications. The node does not listen yet: see [`Thywill::bind`] and
    /// [`Thywill::service`].
    ///
    /// On a cluster of several members it refuses, with an [`Error::Inconsistent`] that says
    /// what to add:
    ///
    /// - a backend that tracks clients per member ([`Tracking::Local`]): clients of other
    ///   members would be unreachable;
    /// - sessions on with a session store or a channel manager that each member keeps for
    ///   itself ([`SessionStore::is_shared`], [`ChannelManager::is_shared`]) or with a random
    ///   secret: a cookie issued by one member would be refused by the next (4401), and a
    ///   session would lose its channels there;
    /// - [`Recovery::AnyMember`] (the default when the backend shares its history) with a
    ///   history each member keeps for itself ([`History::is_shared`]), while replay is on.
    pub async fn build(self) -> Result<Thywill, Error> {
        let backend = self
            .backend
            .unwrap_or_else(|| Box::new(LocalBackend::new(self.member)));
        let parts = backend.connect_boxed().await?;
        let members = parts.cluster().members().len();
        let backend_shares_history = parts.history().is_some_and(|h| h.is_shared());
        let history = self
            .history
            .or_else(|| parts.history().cloned())
            .unwrap_or_else(|| Arc::new(LocalHistory::default()));
        let channels = self
            .channels
            .or_else(|| parts.channels().cloned())
            .unwrap_or_else(|| Arc::new(MemoryChannels::new()));
        let sessions = match (self.sessions, self.session_store) {
            (None, None) => None,
            (config, store) => {
                let config = config.unwrap_or_else(SessionConfig::random);
                let random = config.is_random();
                let store = store
                    .or_else(|| parts.session_store().cloned())
                    .unwrap_or_else(|| Arc::new(MemorySessionStore::new()));
                Some((thywill_transport::Sessions::new(config, store), random))
            }
        };
        let caches: Arc<dyn DynCacheManager> = match self.caches {
            None => Arc::new(MemoryCaches::new()),
            Some(CachesSource::Ready(c)) => c,
            #[cfg(feature = "redis")]
            Some(CachesSource::Redis(config)) => Arc::new(
                thywill_cluster_redis::RedisCaches::connect(config)
                    .await
                    .map_err(|e| Error::Core(CoreError::from(e)))?,
            ),
        };
        let recovery = self.recovery.unwrap_or(if backend_shares_history {
            Recovery::AnyMember
        } else {
            Recovery::SameMember
        });
        check(&Composition {
            backend: parts.name(),
            members,
            tracking: parts.tracking(),
            sessions: sessions
                .as_ref()
                .map(|(s, random)| (s.store().is_shared(), *random)),
            channels_shared: channels.is_shared(),
            recovery: self.config.replay().then_some(recovery),
            history_shared: history.is_shared(),
        })?;
        let (cluster, tracker): (Arc<dyn DynCluster>, Arc<dyn DynClientTracker>) = match parts.tracking() {
            Tracking::Local => (parts.cluster().clone(), Arc::new(MemoryTracker::new())),
            Tracking::Own(tracker) => (parts.cluster().clone(), tracker.clone()),
            _ => {
                let (cluster, tracker) = tracked_arc(parts.cluster().clone());
                (Arc::new(cluster), Arc::new(tracker))
            }
        };
        let store = self
            .resources
            .or_else(|| parts.resources().cloned())
            .unwrap_or_else(|| Arc::new(MemoryResources::new()));
        let base = self.config.base_path().to_owned();
        let pipeline = thywill_resources::Pipeline::new(
            thywill_resources::PipelineConfig::new(&base).with_minify(self.minify),
        )
        .with_minifier(self.minifier.unwrap_or_else(thywill_resources::default_minifier));
        let templates = self
            .templates
            .unwrap_or_else(|| Arc::new(thywill_templates::MiniJinja::new()));
        // Script templates (`Entry::rendered`) are rendered first, then bundled like the rest.
        let mut inputs = self.manifest.render(&*templates, &base, &self.initial)?;
        let pipeline = pipeline.with_templates(templates);
        inputs.extend(self.initial);
        if inputs.iter().any(|r| r.bootstrap) {
            // The client library opens the page's bundle.
            let client = Resource::new(
                self.config.path("thywill/thywill.js"),
                thywill_transport::CLIENT_JS,
            )
            .with_kind(ResourceKind::Javascript)
            .with_weight(i32::MIN)
            .with_origin("thywill-transport/client/thywill.js")
            .bootstrap();
            inputs.insert(0, client);
        }
        let assembly = pipeline.assemble_async(inputs).await?;
        let resources: Arc<dyn DynResourceManager> =
            Arc::new(thywill_resources::PreparedStore::new(store, pipeline));
        for r in assembly.resources {
            resources.store(r).await?;
        }
        // The node runtime first, then the edge that serves it: they meet through
        // `thywill_core::edge` only.
        let sessions = sessions.map(|(s, _)| s);
        let node_config = thywill_node::NodeConfig::default()
            .with_replay(self.config.replay())
            .with_append_timeout(self.config.append_timeout())?;
        let node = thywill_node::Node::start(thywill_node::NodeParts {
            config: node_config,
            applications: self.applications,
            cluster: cluster.clone(),
            tracker,
            channels,
            session_store: sessions.as_ref().map(|s| s.store().clone()),
            history,
            caches,
        })
        .await?;
        let config = match self.authenticator {
            Some(hook) => self.config.with_authenticator(hook),
            None => self.config,
        };
        let config = if self.session_from_identity {
            config.with_session_from_identity(true)
        } else {
            config
        };
        let edge = thywill_transport::Edge::start(thywill_transport::EdgeParts {
            config,
            node: Arc::new(node.clone()),
            resources,
            sessions,
        })
        .await?;
        Ok(Thywill { node, edge, cluster })
    }
}

/// Where a client recovers the messages it missed while disconnected ([`Builder::recovery`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// Only on the member it was connected to: a history per member suffices (its streams are
    /// named after the member).
    SameMember,
    /// On any member: the history must be shared by the members (such as
    /// `cluster_redis::RedisHistory`).
    AnyMember,
}

/// Why [`Builder::build`] refused a combination of components ([`Error::Inconsistent`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inconsistency {
    /// A cluster of several members whose backend tracks clients per member.
    NoClusterTracker,
    /// Sessions on a cluster of several members, in a store each member keeps for itself.
    SessionsNotShared,
    /// Sessions on a cluster of several members, signed with a random secret per member.
    SecretNotShared,
    /// Sessions on a cluster of several members, with channels of sessions each member keeps
    /// for itself.
    ChannelsNotShared,
    /// Recovery on any member with a history each member keeps for itself.
    HistoryNotShared,
}

/// What [`check`] looks at.
struct Composition<'a> {
    backend: &'a str,
    members: usize,
    tracking: &'a Tracking,
    /// With sessions on: whether the store is shared, whether the secret is a random one.
    sessions: Option<(bool, bool)>,
    channels_shared: bool,
    /// With replay on: where clients recover.
    recovery: Option<Recovery>,
    history_shared: bool,
}

/// Refuses a composition that cannot work, saying what to add.
fn check(c: &Composition<'_>) -> Result<(), Error> {
    if c.members < 2 {
        return Ok(());
    }
    let (backend, n) = (c.backend, c.members);
    let refuse = |kind, message: String| Err(Error::Inconsistent { kind, message });
    if matches!(c.tracking, Tracking::Local) {
        return refuse(
            Inconsistency::NoClusterTracker,
            format!(
                "the `{backend}` backend has {n} members but tracks clients per member: clients on                  other members would be unreachable; give it the cluster-wide tracker                  (`BackendParts::with_tracking(Tracking::ClusterWide)`, the default)"
            ),
        );
    }
    if let Some((store_shared, random_secret)) = c.sessions {
        if !store_shared {
            return refuse(
                Inconsistency::SessionsNotShared,
                format!(
                    "sessions are on and the `{backend}` backend has {n} members, but the session                      store is each member's own: a cookie issued by one member would be refused by                      the next; add a shared store (`.session_store(RedisSessions)`, or a backend                      that has one: `.backend(RedisBackend)`)"
                ),
            );
        }
        if random_secret {
            return refuse(
                Inconsistency::SecretNotShared,
                format!(
                    "sessions are on and the `{backend}` backend has {n} members, but each member                      draws a random secret: a cookie signed by one member would be refused by the                      next; add `.sessions(SessionConfig::new(secret))` with the same secret on every                      member"
                ),
            );
        }
        if !c.channels_shared {
            return refuse(
                Inconsistency::ChannelsNotShared,
                format!(
                    "sessions are on and the `{backend}` backend has {n} members, but channels of                      sessions are each member's own: a session reconnecting to another member would                      not be back in its channels; add a shared channel manager                      (`.channels(RedisChannels)`, or a backend that has one: `.backend(RedisBackend)`)"
                ),
            );
        }
    }
    if c.recovery == Some(Recovery::AnyMember) && !c.history_shared {
        return refuse(
            Inconsistency::HistoryNotShared,
            format!(
                "clients are to recover missed messages on any member of the `{backend}` backend's                  {n}, but the replay history is each member's own; add a shared history                  (`.history(RedisHistory)`, or drop the `.history(...)` that replaced the backend's),                  or accept recovery on the same member only (`.recovery(Recovery::SameMember)`)"
            ),
        );
    }
    Ok(())
}

/// A running node: cheap to clone.
#[derive(Clone)]
pub struct Thywill {
    node: thywill_node::Node,
    edge: thywill_transport::Edge,
    cluster: Arc<dyn DynCluster>,
}

impl std::fmt::Debug for Thywill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Thywill")
            .field("node", &self.node)
            .field("edge", &self.edge)
            .finish_non_exhaustive()
    }
}

impl Thywill {
    /// Starts building a node.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The node's warp routes, to mount next to your own (`routes().or(mine)`) in a warp
    /// server (feature `warp`). Served that way, WebSockets are upgraded by warp (with its
    /// larger read buffer) and nothing bounds the handshake: prefer [`Thywill::service`].
    #[cfg(feature = "warp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "warp")))]
    #[deprecated(note = "mount `Thywill::service()` (a tower service) or `Thywill::router()` instead")]
    pub fn routes(&self) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
        self.edge.routes()
    }

    /// The node's routes as a tower `Service` over `http` types for any request body, owning
    /// no listener, to mount in another server: WebSocket upgrades included (taken from
    /// hyper's `OnUpgrade`, with the node's small read buffer, its Origin and Host checks,
    /// connection limit, socket cap, handshake timeout and drain). Mount it under the base
    /// path: `axum::Router::nest_service("/live", thywill.service())` for a base path of
    /// `/live` (see [`ThywillService`]). The client's address comes from a [`PeerAddr`] (or
    /// `SocketAddr`, or with feature `axum` axum's `ConnectInfo`) request extension; without
    /// it `<base>/metrics` answers nobody by default.
    pub fn service(&self) -> ThywillService {
        self.edge.service()
    }

    /// A tower `Layer` putting the node in front of your own service: the node answers its
    /// routes (under the base path), everything else goes on to your service.
    pub fn layer(&self) -> ThywillLayer {
        self.edge.layer()
    }

    /// The node's routes as an axum [`Router`](axum::Router) (feature `axum`), to
    /// [`merge`](axum::Router::merge) into your app: `<base>`, `<base>/` and everything under
    /// `<base>/` go to [`Thywill::service`]; your own routes win over it where both match.
    /// (`Router::nest_service(base, thywill.service())` works as well.) Serve the app with
    /// `into_make_service_with_connect_info::<SocketAddr>()` (or
    /// [`Thywill::serve_router_with_shutdown`]): the service reads axum's
    /// `ConnectInfo<SocketAddr>` (loopback-only `<base>/metrics`, connections' peer
    /// addresses).
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn router(&self) -> axum::Router {
        let service = self.edge.service();
        let base = self.edge.config().base_path().trim_end_matches('/').to_owned();
        let router = axum::Router::new();
        if base.is_empty() {
            router
                .route_service("/", service.clone())
                .route_service("/{*rest}", service)
        } else {
            router
                .route_service(&base, service.clone())
                .route_service(&format!("{base}/"), service.clone())
                .route_service(&format!("{base}/{{*rest}}"), service)
        }
    }

    /// Serves the node on its own accept loop at `listener` until `signal` completes (such as
    /// [`shutdown_signal`]: Ctrl-C or SIGTERM), then drains: every connection is told to
    /// reconnect elsewhere (code 1001) and this returns once they have ended (bounded by
    /// [`DRAIN_WAIT`](thywill_transport::DRAIN_WAIT)) and open HTTP requests have finished.
    pub async fn serve_with_shutdown(
        &self,
        listener: tokio::net::TcpListener,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let stopper = tokio::spawn(self.shutdown_on(signal));
        self.edge.clone().serve(listener).await;
        stopper.abort();
    }

    /// Serves an axum app (feature `axum`) with the node merged or nested in it on the node's
    /// own accept loop at `listener`, until `signal` completes, then drains as
    /// [`Thywill::serve_with_shutdown`] does. Every socket gets the node's protection:
    /// deadlines for the first byte, the request headers and idle keep-alive, and the socket
    /// cap, which `axum::serve` does not give. Handlers can extract
    /// `ConnectInfo<SocketAddr>`.
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub async fn serve_router_with_shutdown(
        &self,
        listener: tokio::net::TcpListener,
        app: axum::Router,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let stopper = tokio::spawn(self.shutdown_on(signal));
        self.edge.clone().serve_app(listener, None, app).await;
        stopper.abort();
    }

    /// A future that waits for `signal`, then starts the node's shutdown
    /// ([`Thywill::shutdown`]): for another server's graceful shutdown, such as
    /// `axum::serve(..).with_graceful_shutdown(thywill.shutdown_on(shutdown_signal()))`,
    /// followed by [`Thywill::drained`].
    pub fn shutdown_on(
        &self,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let node = self.clone();
        async move {
            signal.await;
            tracing::info!("shutdown signal: draining");
            node.shutdown();
        }
    }

    /// Waits (bounded by [`DRAIN_WAIT`](thywill_transport::DRAIN_WAIT)) until every
    /// WebSocket connection has ended after [`Thywill::shutdown`]: what another server's
    /// graceful shutdown does not wait for (upgraded connections are no HTTP exchanges).
    /// Returns whether they all ended in time.
    pub async fn drained(&self) -> bool {
        self.edge.drained().await
    }

    /// Binds `addr` and returns the bound address and the future that serves until
    /// [`Thywill::shutdown`].
    pub async fn bind(
        &self,
        addr: SocketAddr,
    ) -> Result<(SocketAddr, impl std::future::Future<Output = ()> + Send + 'static), Error> {
        Ok(self.edge.clone().bind(addr).await?)
    }

    /// Binds `addr` for HTTPS and WSS with `tls` and returns the bound address and the future
    /// that serves until [`Thywill::shutdown`].
    pub async fn bind_tls(
        &self,
        addr: SocketAddr,
        tls: TlsConfig,
    ) -> Result<(SocketAddr, impl std::future::Future<Output = ()> + Send + 'static), Error> {
        Ok(self.edge.clone().bind_tls(addr, tls).await?)
    }

    /// Binds `addr` for plain HTTP that redirects every request to HTTPS on `https_port`.
    pub async fn bind_https_redirect(
        &self,
        addr: SocketAddr,
        https_port: u16,
    ) -> Result<(SocketAddr, impl std::future::Future<Output = ()> + Send + 'static), Error> {
        Ok(self.edge.clone().bind_https_redirect(addr, https_port).await?)
    }

    /// The metrics page in the Prometheus text format (also served at `<base>/metrics`).
    pub fn metrics_text(&self) -> String {
        self.edge.metrics_text()
    }

    /// Registers thywill's metrics in the application's own Prometheus `registry`, for an
    /// application that already serves its metrics: the edge's (sockets, connections, bytes,
    /// queues) and the node's (messages, RPC, cluster tasks, replays, hooks), all under the
    /// `thywill_` prefix. They are registered clones sharing their values with the node's;
    /// the cluster figures (`thywill_cluster_*`) are read whenever `registry` is encoded.
    /// Call it once per registry. To stop serving `<base>/metrics` too, set
    /// [`MetricsAccess::Off`] with [`Builder::metrics`].
    ///
    /// ```no_run
    /// # async fn run(thywill: thywill::Thywill) {
    /// use thywill::prometheus_client::registry::Registry;
    ///
    /// let mut registry = Registry::default();
    /// thywill.register_metrics(&mut registry);
    /// let mut page = String::new();
    /// thywill::prometheus_client::encoding::text::encode(&mut page, &registry).unwrap();
    /// # }
    /// ```
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.edge.register_metrics(registry);
        self.node.register_metrics(registry);
    }

    /// Whether the node should receive new clients (cluster link up, not draining); served at
    /// `<base>/ready`.
    pub fn is_ready(&self) -> bool {
        self.edge.is_ready()
    }

    /// Closes every connection with code 1001 and stops serving.
    pub fn shutdown(&self) {
        self.edge.shutdown();
    }

    /// An application's context, to push messages from outside its hooks (timers, other
    /// routes).
    pub fn context(&self, app: impl Into<ApplicationId>) -> Option<AppContext> {
        self.node.context(&app.into())
    }

    /// The local member's id.
    pub fn member(&self) -> &MemberId {
        self.node.member()
    }

    /// The backend's cluster (with the cluster-wide tracker the builder wired): members, their
    /// status, the link's health and counters.
    pub fn cluster(&self) -> &Arc<dyn DynCluster> {
        &self.cluster
    }

    /// A warp filter giving your own routes the browser's session (see
    /// [`Builder::sessions`]): `None` without a valid session cookie (feature `warp`).
    #[cfg(feature = "warp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "warp")))]
    #[deprecated(note = "use `Thywill::session_of(cookie)`")]
    pub fn session(&self) -> warp::filters::BoxedFilter<(Option<SessionId>,)> {
        self.edge.session()
    }

    /// The browser's session from a request's `Cookie` header (every `Cookie` field joined
    /// with `"; "`), the same one its WebSocket is bound to: `None` without sessions or
    /// without a valid session cookie. For your own routes, whatever server serves them.
    pub async fn session_of(&self, cookie: Option<&str>) -> Option<SessionId> {
        self.edge.sessions()?.resolve(cookie).await.ok()
    }

    /// The session store, when sessions are on: load and store a session's data.
    pub fn session_store(&self) -> Option<&Arc<dyn DynSessionStore>> {
        self.edge.sessions().map(|s| s.store())
    }

    /// Number of open local connections.
    pub fn connection_count(&self) -> usize {
        self.node.connection_count()
    }

    /// The resource store. Resources stored while running are minified, compressed and served
    /// like the bootstrap set; tell pages to load them with [`AppContext::expose`].
    pub fn resources(&self) -> &Arc<dyn DynResourceManager> {
        self.edge.resources()
    }

    /// The node runtime: applications, connections, routing.
    pub fn node(&self) -> &thywill_node::Node {
        &self.node
    }

    /// The edge that serves the node: routes, accept loops, sessions, connections' IO.
    pub fn edge(&self) -> &thywill_transport::Edge {
        &self.edge
    }
}

/// Completes on Ctrl-C or (on Unix) SIGTERM: the signal to give
/// [`Thywill::serve_with_shutdown`] or [`Thywill::shutdown_on`].
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests;

/// The README's code samples, compiled as doctests so that they cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
