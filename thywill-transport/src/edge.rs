//! The edge: a node's HTTP and WebSocket side, over any node runtime reached through its
//! [`Gateway`].

use std::sync::Arc;

use thywill_core::edge::Gateway;
use thywill_core::{DynResourceManager, MemberId};
use tokio::sync::watch;

use crate::{Sessions, TransportConfig, TransportError};

/// Everything an edge is made of. Built by the facade's builder.
pub struct EdgeParts {
    /// Transport configuration.
    pub config: TransportConfig,
    /// The node runtime the edge serves (`thywill_node::Node` implements [`Gateway`]).
    pub node: Arc<dyn Gateway>,
    /// The resource store pages and assets are served from.
    pub resources: Arc<dyn DynResourceManager>,
    /// Sessions bound by signed cookie; `None` for plain mode (session = connection).
    pub sessions: Option<Sessions>,
}

impl std::fmt::Debug for EdgeParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeParts")
            .field("config", &self.config)
            .field("member", self.node.member())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) config: TransportConfig,
    pub(crate) node: Arc<dyn Gateway>,
    pub(crate) resources: Arc<dyn DynResourceManager>,
    pub(crate) sessions: Option<Sessions>,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Set when the edge drains: connections close with 1001, the accept loops stop.
    pub(crate) shutdown: watch::Sender<bool>,
    /// Connection tasks running (including those still closing).
    pub(crate) live: watch::Sender<usize>,
    /// The socket cap ([`TransportConfig::with_max_sockets`]), shared by the edge's own accept
    /// loops (one place per accepted socket) and [`ThywillService`](crate::ThywillService)
    /// under another server (one place per WebSocket it upgrades).
    pub(crate) sockets: Arc<tokio::sync::Semaphore>,
}

/// A running edge: the routes (`<base>/ws`, health, metrics, resources), the accept loops,
/// TLS, and one IO task per WebSocket connection. Cheap to clone.
#[derive(Clone)]
pub struct Edge {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("member", self.member())
            .field("base_path", &self.inner.config.base_path)
            .field("connections", &self.connection_count())
            .finish()
    }
}

impl Edge {
    /// Assembles an edge over a started node, and stores the browser client library among
    /// the resources. Does not listen yet: see [`Edge::routes`] and [`Edge::bind`].
    pub async fn start(parts: EdgeParts) -> Result<Self, TransportError> {
        let EdgeParts {
            config,
            node,
            resources,
            sessions,
        } = parts;
        let max_sockets = config.max_sockets;
        let edge = Edge {
            inner: Arc::new(Inner {
                config,
                node,
                resources,
                sessions,
                metrics: crate::metrics::Metrics::new(),
                shutdown: watch::channel(false).0,
                live: watch::channel(0).0,
                sockets: Arc::new(tokio::sync::Semaphore::new(max_sockets)),
            }),
        };
        crate::assets::store_client_assets(&edge).await?;
        Ok(edge)
    }

    /// The local member's id.
    pub fn member(&self) -> &MemberId {
        self.inner.node.member()
    }

    /// The node the edge serves.
    pub fn node(&self) -> &Arc<dyn Gateway> {
        &self.inner.node
    }

    /// The transport configuration.
    pub fn config(&self) -> &TransportConfig {
        &self.inner.config
    }

    /// The resource store.
    pub fn resources(&self) -> &Arc<dyn DynResourceManager> {
        &self.inner.resources
    }

    /// The sessions, when sessions are enabled.
    pub fn sessions(&self) -> Option<&Sessions> {
        self.inner.sessions.as_ref()
    }

    /// Registers the edge's metrics (sockets, connections, bytes, outbound queues) in an
    /// application's own Prometheus `registry`, under the `thywill_` prefix: registered clones
    /// that share their values with the edge's. The node's are registered by the node's own
    /// `register_metrics`; to stop serving `<base>/metrics` as well, set
    /// [`MetricsAccess::Off`](crate::MetricsAccess::Off).
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.metrics.register(registry);
    }

    /// The metrics page (Prometheus text format), as served at `<base>/metrics`: the edge's
    /// (sockets, connections, bytes) and the node's.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render(self.inner.node.as_ref())
    }

    /// Whether the member should receive new clients: the node is ready (its cluster link
    /// works) and the edge is not draining.
    pub fn is_ready(&self) -> bool {
        !self.is_shutting_down() && self.inner.node.is_ready()
    }

    /// Number of open connections (registered with the node).
    pub fn connection_count(&self) -> usize {
        self.inner.node.connection_count()
    }

    /// Starts a graceful shutdown: the node refuses sends from now on, every connection is
    /// closed with code 1001 (going away) and [`Edge::serve`] returns once open HTTP requests
    /// finish and every connection has closed (bounded).
    pub fn shutdown(&self) {
        self.inner.node.shutdown();
        self.inner.shutdown.send_replace(true);
    }

    /// Whether [`Edge::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// Completes once [`Edge::shutdown`] has been called (at once if it was already).
    pub async fn shutdown_started(&self) {
        let mut stop = self.inner.shutdown.subscribe();
        // The guard `wait_for` returns is dropped here, before any other await.
        let _ = stop.wait_for(|s| *s).await.map(|_| ());
    }

    /// Waits (at most [`DRAIN_WAIT`]) until every WebSocket connection task of the edge has
    /// ended: after [`Edge::shutdown`], each has told its client to reconnect elsewhere (code
    /// 1001) and saved what the next member needs. The edge's own accept loops end with it;
    /// under another server, await it after that server's graceful shutdown (which does not
    /// wait for upgraded connections). Returns whether every connection ended in time.
    pub async fn drained(&self) -> bool {
        let mut live = self.inner.live.subscribe();
        let ended = tokio::time::timeout(DRAIN_WAIT, live.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok());
        if !ended {
            tracing::warn!(open = *live.borrow(), "connections still closing at shutdown");
        }
        ended
    }

    /// A place under the socket cap for a socket the edge did not accept itself (a WebSocket
    /// upgraded through [`ThywillService`](crate::ThywillService)), or `None` at the cap.
    pub(crate) fn socket_place(&self) -> Option<crate::serve::Counted> {
        let permit = self.inner.sockets.clone().try_acquire_owned().ok()?;
        Some(crate::serve::Counted::new(permit, self.inner.metrics.clone()))
    }
}

/// How long a draining edge waits for its connections to finish closing.
pub const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
