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
//! [`thywill_core`]; each has a single-member default:
//!
//! | component | trait | default |
//! |---|---|---|
//! | cluster backend | [`Cluster`] | [`LocalCluster`] (one member) |
//! | client tracker | [`ClientTracker`] | [`MemoryTracker`] |
//! | channels of sessions | [`ChannelManager`] | [`MemoryChannels`] |
//! | resources | [`ResourceManager`] | [`MemoryResources`] |
//! | sessions | [`SessionStore`] | [`MemorySessionStore`] (sessions are off unless [`Builder::sessions`]) |
//! | remote procedures | [`RpcHandler`] | none; [`rpc::Registry`] is a typed registry of functions (crate `thywill-rpc`) |
//! | page templates | [`TemplateEngine`] | [`templates::MiniJinja`] (HTML autoescaping) |
//! | minifier | [`Minifier`] | [`resources::DefaultMinifier`] (swc_core, lightningcss) |
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
//!   session store ([`cluster_redis::RedisSessions`]).
//! - **Who is connected** ([`AppContext::is_connected`], [`AppContext::connections_of_session`],
//!   [`AppContext::connected_clients`]): the cluster-wide tracker. Clients of other members
//!   reach [`Application::connection_to`] / [`Application::disconnection_from`] on every member;
//!   a member's failure reaches [`Application::cluster_member_down`] (with its purged clients) on
//!   its designated handler and [`Application::cluster_member_status`] everywhere.
//! - **Channels of sessions** ([`AppContext::add_sessions`], [`AppContext::remove_sessions`],
//!   [`AppContext::clear_channel`], [`AppContext::channel_sessions`],
//!   [`AppContext::session_channels`]): persisted by the [`ChannelManager`]
//!   ([`Builder::channels`]; [`cluster_redis::RedisChannels`] in a cluster). Every connection of
//!   those sessions is subscribed, on any member, now and whenever one connects later (a
//!   reconnecting browser is back in its channels before [`Application::connection`] runs).
//!   Connections can also be subscribed one by one ([`AppContext::subscribe`]).
//! - **Presence** ([`Application::tracks_presence`], [`AppContext::presence`]): which sessions
//!   have a connection subscribed to a channel anywhere, with `state` / `join` / `leave`
//!   messages to its subscribers; a member's sessions leave as soon as its failure is detected.
//!
//! ## Cargo features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `minify` | yes | minification with swc_core and lightningcss (without it, bundles are merged unminified and clean builds take about half the time) |
//! | `redis` | yes | the Redis cluster backend: [`RedisCluster`] (crate `thywill-cluster-redis`) |
//! | `http` | yes | the HTTP cluster backend: [`HttpCluster`] (crate `thywill-cluster-http`) |
//!
//! A clustered node also needs a cluster-wide client tracker, to reach a connection held by
//! another member: [`tracked`] wraps a backend and returns it with its [`ClusterTracker`]
//! (`builder.cluster(cluster).tracker(tracker)`).
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

pub use thywill_core::cluster::MemberStatus;
pub use thywill_core::{
    AppContext, Application, ApplicationId, ChannelId, ChannelManager, Client, ClientTracker, Cluster,
    ConnectionId, CoreError, History, HistoryLimits, MemberClients, MemberId, Message, Metadata, ReadLimit,
    Resource, ResourceKind, ResourceManager, RpcError, RpcErrorCode, RpcHandler, SessionData, SessionId,
    SessionStore, TrackerEvent, protocol,
};
pub use thywill_transport::local::{
    LocalCluster, MemoryChannels, MemoryResources, MemorySessionStore, MemoryTracker, SessionLimits,
};
pub use thywill_transport::{
    AllowedHosts, AllowedOrigins, LocalHistory, MetricsAccess, SessionConfig, SessionRefusal, TlsConfig,
    TransportConfig,
};

/// Re-export of the HTTP cluster backend.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use thywill_cluster_http::{self as cluster_http, HttpCluster, HttpClusterConfig};
/// Re-export of the Redis cluster backend.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use thywill_cluster_redis::{self as cluster_redis, RedisCluster, RedisClusterConfig};
/// Re-export of the core crate, for component authors.
pub use thywill_core as core;
pub use thywill_core::{Minifier, TemplateEngine};
/// Re-export of the resources crate: manifests, the bootstrap pipeline, minifiers.
pub use thywill_resources as resources;
pub use thywill_resources::{Entry, Manifest, Source};
/// Re-export of the RPC crate: a typed registry of server functions for browsers to call.
pub use thywill_rpc as rpc;
/// Re-export of the template engine crate.
pub use thywill_templates as templates;
/// Re-export of the transport crate.
pub use thywill_transport as transport;
pub use thywill_transport::tracker::{ClusterTracker, TrackedCluster, tracked};

/// A boxed serving future, as returned by [`config::Config::serve`].
pub type BoxServe = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;

/// Errors of building or running a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport refused a setting or could not listen.
    #[error(transparent)]
    Transport(#[from] thywill_transport::TransportError),
    /// A component failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The page's resources could not be assembled (a file is missing, a script or style does
    /// not parse: the message names file, line and column).
    #[error(transparent)]
    Resources(#[from] thywill_resources::ResourcesError),
    /// Switching to the configured user and group failed, or the process would serve as root
    /// (see [`privileges`]).
    #[error("privileges: {0}")]
    Privileges(String),
}

impl Error {
    /// Whether the error is an invalid configuration value.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Self::Transport(thywill_transport::TransportError::Config { .. }) | Self::Config(_)
        )
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
    cluster: Option<Arc<dyn Cluster>>,
    tracker: Option<Arc<dyn ClientTracker>>,
    channels: Option<Arc<dyn ChannelManager>>,
    resources: Option<Arc<dyn ResourceManager>>,
    sessions: Option<SessionConfig>,
    session_store: Option<Arc<dyn SessionStore>>,
    initial: Vec<Resource>,
    manifest: Manifest,
    minify: bool,
    minifier: Option<Arc<dyn Minifier>>,
    templates: Option<Arc<dyn TemplateEngine>>,
    history: Option<HistorySource>,
}

/// Where the builder's history comes from.
enum HistorySource {
    Ready(Arc<dyn History>),
    #[cfg(feature = "redis")]
    Redis(thywill_cluster_redis::RedisHistoryConfig),
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
            cluster: None,
            tracker: None,
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
        }
    }
}

impl Builder {
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

    /// The local member's id when no cluster is set (default `alpha`).
    pub fn member(mut self, member: impl Into<MemberId>) -> Self {
        self.member = member.into();
        self
    }

    /// Registers an application under an id. Ids must be unique.
    pub fn application<A: Application>(mut self, id: impl Into<ApplicationId>, app: A) -> Self {
        self.applications.push((id.into(), Arc::new(app)));
        self
    }

    /// Uses this cluster backend (the local member id then comes from it).
    pub fn cluster<C: Cluster>(mut self, cluster: C) -> Self {
        self.cluster = Some(Arc::new(cluster));
        self
    }

    /// Uses this client tracker.
    pub fn tracker<T: ClientTracker>(mut self, tracker: T) -> Self {
        self.tracker = Some(Arc::new(tracker));
        self
    }

    /// Persists channels of sessions in this channel manager (shared by members in a cluster;
    /// default: memory). See [`AppContext::add_sessions`].
    pub fn channels<C: ChannelManager>(mut self, channels: C) -> Self {
        self.channels = Some(Arc::new(channels));
        self
    }

    /// Uses this resource store.
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

    /// Uses this session store (shared by members in a cluster). Enables sessions with a
    /// random secret unless [`Builder::sessions`] sets one.
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

    /// Keeps the replay logs of channel and session streams in this history (default: a
    /// [`LocalHistory`] in memory; in a Redis cluster use
    /// [`cluster_redis::RedisHistory`] so that clients recover on any member).
    pub fn history<H: History>(mut self, history: H) -> Self {
        self.history = Some(HistorySource::Ready(Arc::new(history)));
        self
    }

    /// Like [`Builder::history`], for a history already shared behind an `Arc`.
    pub fn history_arc(mut self, history: Arc<dyn History>) -> Self {
        self.history = Some(HistorySource::Ready(history));
        self
    }

    /// Keeps the replay logs in Redis, connecting when the node is built.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_history(mut self, config: thywill_cluster_redis::RedisHistoryConfig) -> Self {
        self.history = Some(HistorySource::Redis(config));
        self
    }

    /// Starts the components and the applications. The node does not listen yet: see
    /// [`Thywill::bind`] and [`Thywill::routes`].
    pub async fn build(self) -> Result<Thywill, Error> {
        let member = self.member;
        let history: Arc<dyn History> = match self.history {
            None => Arc::new(LocalHistory::default()),
            Some(HistorySource::Ready(h)) => h,
            #[cfg(feature = "redis")]
            Some(HistorySource::Redis(config)) => Arc::new(
                thywill_cluster_redis::RedisHistory::connect(config)
                    .await
                    .map_err(|e| Error::Core(CoreError::component("cluster-redis", e)))?,
            ),
        };
        let cluster = self
            .cluster
            .unwrap_or_else(|| Arc::new(LocalCluster::new(member)));
        let store = self.resources.unwrap_or_else(|| Arc::new(MemoryResources::new()));
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
        let resources: Arc<dyn ResourceManager> =
            Arc::new(thywill_resources::PreparedStore::new(store, pipeline));
        for r in assembly.resources {
            resources.store(r).await?;
        }
        let node = thywill_transport::Node::start(thywill_transport::NodeParts {
            config: self.config,
            applications: self.applications,
            cluster,
            tracker: self.tracker.unwrap_or_else(|| Arc::new(MemoryTracker::new())),
            channels: self.channels.unwrap_or_else(|| Arc::new(MemoryChannels::new())),
            resources,
            sessions: match (self.sessions, self.session_store) {
                (None, None) => None,
                (config, store) => Some(thywill_transport::Sessions::new(
                    config.unwrap_or_else(SessionConfig::random),
                    store.unwrap_or_else(|| Arc::new(MemorySessionStore::new())),
                )),
            },
            history,
        })
        .await?;
        Ok(Thywill { node })
    }
}

/// A running node: cheap to clone.
#[derive(Clone, Debug)]
pub struct Thywill {
    node: thywill_transport::Node,
}

impl Thywill {
    /// Starts building a node.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The node's warp routes, to mount next to your own (`routes().or(mine)`).
    pub fn routes(&self) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
        self.node.routes()
    }

    /// Binds `addr` and returns the bound address and the future that serves until
    /// [`Thywill::shutdown`].
    pub async fn bind(
        &self,
        addr: SocketAddr,
    ) -> Result<(SocketAddr, impl std::future::Future<Output = ()> + Send + 'static), Error> {
        Ok(self.node.clone().bind(addr).await?)
    }

    /// Binds `addr` for HTTPS and WSS with `tls` and returns the bound address and the future
    /// that serves until [`Thywill::shutdown`].
    pub async fn bind_tls(
        &self,
        addr: SocketAddr,
        tls: TlsConfig,
    ) -> Result<(SocketAddr, impl std::future::Future<Output = ()> + Send + 'static), Error> {
        Ok(self.node.clone().bind_tls(addr, tls).await?)
    }

    /// Binds `addr` for plain HTTP that redirects every request to HTTPS on `https_port`.
    pub async fn bind_https_redirect(
        &self,
        addr: SocketAddr,
        https_port: u16,
    ) -> Result<(SocketAddr, impl std::future::Future<Output = ()> + Send + 'static), Error> {
        Ok(self.node.clone().bind_https_redirect(addr, https_port).await?)
    }

    /// The metrics page in the Prometheus text format (also served at `<base>/metrics`).
    pub fn metrics_text(&self) -> String {
        self.node.metrics_text()
    }

    /// Whether the node should receive new clients (cluster link up, not draining); served at
    /// `<base>/ready`.
    pub fn is_ready(&self) -> bool {
        self.node.is_ready()
    }

    /// Closes every connection with code 1001 and stops serving.
    pub fn shutdown(&self) {
        self.node.shutdown();
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

    /// A warp filter giving your own routes the browser's session (see
    /// [`Builder::sessions`]): `None` without a valid session cookie.
    pub fn session(&self) -> warp::filters::BoxedFilter<(Option<SessionId>,)> {
        self.node.session()
    }

    /// The session store, when sessions are on: load and store a session's data.
    pub fn session_store(&self) -> Option<&Arc<dyn SessionStore>> {
        self.node.sessions().map(|s| s.store())
    }

    /// Number of open local connections.
    pub fn connection_count(&self) -> usize {
        self.node.connection_count()
    }

    /// The resource store. Resources stored while running are minified, compressed and served
    /// like the bootstrap set; tell pages to load them with [`AppContext::expose`].
    pub fn resources(&self) -> &Arc<dyn ResourceManager> {
        self.node.resources()
    }

    /// The underlying transport node.
    pub fn node(&self) -> &thywill_transport::Node {
        &self.node
    }
}

/// The README's code samples, compiled as doctests so that they cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
