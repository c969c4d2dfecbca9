//! The node runtime: registered applications, local connections and channel subscriptions,
//! and the routing of messages to local connections or, through the cluster, to other members.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

use serde::{Deserialize, Serialize};
use thywill_core::protocol::{LoadKind, ServerFrame, close};
use thywill_core::{
    AppContext, ApplicationId, BoxFuture, ChannelId, Client, ClientInterface, ClientTracker, Cluster,
    ClusterEvents, ClusterTask, ConnectionId, CoreError, CoreResult, DynApplication, MemberId, Message,
    ResourceManager, Target, Task,
};
use tokio::sync::{mpsc, watch};

use crate::TransportConfig;

/// Everything a node is made of. Built by the facade's builder.
pub struct NodeParts {
    /// Transport configuration.
    pub config: TransportConfig,
    /// Applications by id.
    pub applications: Vec<(ApplicationId, Arc<dyn DynApplication>)>,
    /// The cluster backend.
    pub cluster: Arc<dyn Cluster>,
    /// The client tracker.
    pub tracker: Arc<dyn ClientTracker>,
    /// The resource store pages and assets are served from.
    pub resources: Arc<dyn ResourceManager>,
    /// Sessions bound by signed cookie; `None` for plain mode (session = connection).
    pub sessions: Option<crate::Sessions>,
}

impl std::fmt::Debug for NodeParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeParts")
            .field("config", &self.config)
            .field("applications", &self.applications.iter().map(|(id, _)| id).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A local connection as the router sees it.
pub(crate) struct ConnHandle {
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Next sequence number and the sender, locked together so that sequence order equals
    /// queue order.
    pub(crate) out: Mutex<OutState>,
    /// Set to a close code to make the connection task close the socket.
    pub(crate) kill: watch::Sender<Option<u16>>,
}

pub(crate) struct OutState {
    pub(crate) seq: u64,
    pub(crate) tx: mpsc::Sender<String>,
}

impl ConnHandle {
    /// Queues a frame without waiting; a full queue marks the client a slow consumer.
    pub(crate) fn push(&self, conn: &ConnectionId, frame: impl FnOnce(u64) -> ServerFrame) -> bool {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = out.seq + 1;
        match out.tx.try_send(frame(seq).encode()) {
            Ok(()) => {
                out.seq = seq;
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow(conn);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn overflow(&self, conn: &ConnectionId) {
        self.metrics.queue_drops.inc();
        let previous = self.kill.send_replace(Some(close::SLOW_CONSUMER));
        if previous.is_none() {
            self.metrics.slow_consumers.inc();
            tracing::warn!(connection = %conn, "outbound queue full: closing slow consumer");
        }
    }

    /// Queues a frame that carries no sequence number (RPC replies, errors).
    pub(crate) fn push_control(&self, conn: &ConnectionId, frame: ServerFrame) -> bool {
        let out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        match out.tx.try_send(frame.encode()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow(conn);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) config: TransportConfig,
    pub(crate) member: MemberId,
    pub(crate) apps: BTreeMap<ApplicationId, (Arc<dyn DynApplication>, AppContext)>,
    pub(crate) cluster: Arc<dyn Cluster>,
    pub(crate) tracker: Arc<dyn ClientTracker>,
    pub(crate) resources: Arc<dyn ResourceManager>,
    pub(crate) sessions: Option<crate::Sessions>,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    pub(crate) connections: RwLock<HashMap<ConnectionId, Arc<ConnHandle>>>,
    pub(crate) channels: RwLock<HashMap<ChannelId, HashSet<ConnectionId>>>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) next_conn: AtomicU64,
}

/// A running thywill node: cheap to clone, shared by the routes and every connection task.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("member", &self.inner.member)
            .field("base_path", &self.inner.config.base_path)
            .field("connections", &self.connection_count())
            .finish()
    }
}

/// The client interface handed to applications; holds the node weakly to avoid a cycle.
struct Router {
    inner: Weak<Inner>,
    member: MemberId,
}

/// Cluster task: deliver a message to local connections of the receiving member.
#[derive(Debug, Serialize, Deserialize)]
struct Deliver {
    app: String,
    /// JSON of the [`Message`].
    message: String,
    to: DeliverTo,
}

#[derive(Debug, Serialize, Deserialize)]
enum DeliverTo {
    Connections(Vec<String>),
    Channel { channel: String, exclude: Vec<String> },
}

impl Task for Deliver {
    const NAME: &'static str = "thywill.deliver";
}

/// Cluster task: subscribe or unsubscribe local connections of the receiving member.
#[derive(Debug, Serialize, Deserialize)]
struct Subscription {
    subscribe: bool,
    connections: Vec<String>,
    channels: Vec<String>,
}

impl Task for Subscription {
    const NAME: &'static str = "thywill.subscription";
}

/// Cluster task: tell local connections of the receiving member to load a resource.
#[derive(Debug, Serialize, Deserialize)]
struct Expose {
    kind: LoadKind,
    path: String,
    to: DeliverTo,
}

impl Task for Expose {
    const NAME: &'static str = "thywill.expose";
}

impl Node {
    /// Assembles a node from its parts and runs every application's `setup` and the
    /// cluster's `start`. Does not listen yet: see [`Node::routes`] and [`Node::serve`].
    pub async fn start(parts: NodeParts) -> Result<Self, crate::TransportError> {
        let NodeParts {
            config,
            applications,
            cluster,
            tracker,
            resources,
            sessions,
        } = parts;
        let mut seen = HashSet::new();
        for (id, _) in &applications {
            if !seen.insert(id.clone()) {
                return Err(crate::TransportError::DuplicateApplication(id.to_string()));
            }
        }
        let member = cluster.local_member().clone();
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let router: Arc<dyn ClientInterface> = Arc::new(Router {
                inner: weak.clone(),
                member: member.clone(),
            });
            let apps = applications
                .into_iter()
                .map(|(id, app)| {
                    let ctx = AppContext::new(id.clone(), router.clone());
                    (id, (app, ctx))
                })
                .collect();
            Inner {
                config,
                member,
                apps,
                cluster,
                tracker,
                resources,
                sessions,
                metrics: crate::metrics::Metrics::new(),
                connections: RwLock::new(HashMap::new()),
                channels: RwLock::new(HashMap::new()),
                shutdown,
                next_conn: AtomicU64::new(0),
            }
        });
        let node = Node { inner };
        crate::assets::store_client_assets(&node).await?;
        node.inner
            .cluster
            .start(Arc::new(Events(Arc::downgrade(&node.inner))))
            .await?;
        for (id, (app, ctx)) in &node.inner.apps {
            app.setup(ctx).await?;
            tracing::debug!(app = %id, "application set up");
        }
        tracing::info!(member = %node.inner.member, base = %node.inner.config.base_path, "node started");
        Ok(node)
    }

    /// The local member's id.
    pub fn member(&self) -> &MemberId {
        &self.inner.member
    }

    /// The transport configuration.
    pub fn config(&self) -> &TransportConfig {
        &self.inner.config
    }

    /// The ids of the applications served.
    pub fn applications(&self) -> Vec<ApplicationId> {
        self.inner.apps.keys().cloned().collect()
    }

    /// The context of an application, to send messages from outside its hooks.
    pub fn context(&self, app: &ApplicationId) -> Option<AppContext> {
        self.inner.apps.get(app).map(|(_, ctx)| ctx.clone())
    }

    /// The resource store.
    pub fn resources(&self) -> &Arc<dyn ResourceManager> {
        &self.inner.resources
    }

    /// The node's sessions, when sessions are enabled.
    pub fn sessions(&self) -> Option<&crate::Sessions> {
        self.inner.sessions.as_ref()
    }

    /// The metrics page (Prometheus text format), as served at `<base>/metrics`.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render(self.inner.cluster.as_ref())
    }

    /// Whether the node should receive new clients: the cluster link works and the node is
    /// not draining.
    pub fn is_ready(&self) -> bool {
        !self.is_shutting_down() && self.inner.cluster.is_healthy()
    }

    /// Number of open local connections.
    pub fn connection_count(&self) -> usize {
        self.inner.connections.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Starts a graceful shutdown: every connection is closed with code 1001 (going away) and
    /// [`Node::serve`] returns once open HTTP requests finish.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Whether [`Node::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    pub(crate) fn new_connection_id(&self) -> ConnectionId {
        let n = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let r: u64 = rand::random();
        ConnectionId::from(format!("{}-{n:x}-{r:016x}", self.inner.member))
    }
}

impl Inner {
    fn local(&self, conn: &ConnectionId) -> Option<Arc<ConnHandle>> {
        self.connections
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(conn)
            .cloned()
    }

    pub(crate) fn deliver_local(&self, app: &ApplicationId, conn: &ConnectionId, message: &Message) -> bool {
        let Some(h) = self.local(conn) else {
            return false;
        };
        let queued = h.push(conn, |seq| ServerFrame::Msg {
            app: app.clone(),
            seq,
            data: message.data.clone(),
            meta: message.meta.clone(),
        });
        if queued {
            self.metrics
                .messages_out
                .get_or_create(&crate::metrics::AppLabel { app: app.to_string() })
                .inc();
        }
        queued
    }

    fn count_out(&self) {
        self.metrics
            .cluster_tasks
            .get_or_create(&crate::metrics::DirectionLabel { direction: "out".into() })
            .inc();
    }

    fn deliver_channel_local(&self, app: &ApplicationId, channel: &ChannelId, exclude: &[ConnectionId], message: &Message) {
        let members: Vec<ConnectionId> = self
            .channels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(channel)
            .map(|s| s.iter().filter(|c| !exclude.contains(c)).cloned().collect())
            .unwrap_or_default();
        for c in &members {
            self.deliver_local(app, c, message);
        }
    }

    fn subscribe_local(&self, subscribe: bool, connections: &[ConnectionId], channels: &[ChannelId]) {
        let mut map = self.channels.write().unwrap_or_else(PoisonError::into_inner);
        for ch in channels {
            if subscribe {
                let set = map.entry(ch.clone()).or_default();
                set.extend(connections.iter().cloned());
            } else if let Some(set) = map.get_mut(ch) {
                for c in connections {
                    set.remove(c);
                }
                if set.is_empty() {
                    map.remove(ch);
                }
            }
        }
    }

    pub(crate) fn forget_connection(&self, conn: &ConnectionId) {
        self.connections
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(conn);
        let mut map = self.channels.write().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, set| {
            set.remove(conn);
            !set.is_empty()
        });
    }

    fn codec_err(e: serde_json::Error) -> CoreError {
        CoreError::Codec(e.to_string())
    }

    async fn send(&self, app: &ApplicationId, target: Target, message: Message) -> CoreResult<()> {
        if *self.shutdown.borrow() {
            return Err(CoreError::ShuttingDown);
        }
        match target {
            Target::Connection(conn) => {
                if self.local(&conn).is_some() {
                    return if self.deliver_local(app, &conn, &message) {
                        Ok(())
                    } else {
                        Err(CoreError::Unavailable(format!("connection {conn} is closing")))
                    };
                }
                let member = self
                    .tracker
                    .member_of(&conn)
                    .await?
                    .ok_or_else(|| CoreError::NotFound(format!("connection {conn}")))?;
                let task = Deliver {
                    app: app.to_string(),
                    message: serde_json::to_string(&message).map_err(Self::codec_err)?,
                    to: DeliverTo::Connections(vec![conn.to_string()]),
                };
                self.count_out();
                self.cluster.send_to(&member, task.to_task()?).await
            }
            Target::Session(session) => {
                let conns = self.tracker.connections_of_session(&session).await?;
                let mut remote: BTreeMap<MemberId, Vec<String>> = BTreeMap::new();
                for (conn, member) in conns {
                    if member == self.member {
                        self.deliver_local(app, &conn, &message);
                    } else {
                        remote.entry(member).or_default().push(conn.to_string());
                    }
                }
                for (member, conns) in remote {
                    let task = Deliver {
                        app: app.to_string(),
                        message: serde_json::to_string(&message).map_err(Self::codec_err)?,
                        to: DeliverTo::Connections(conns),
                    };
                    self.count_out();
                    self.cluster.send_to(&member, task.to_task()?).await?;
                }
                Ok(())
            }
            Target::Channel { channel, exclude } => {
                self.deliver_channel_local(app, &channel, &exclude, &message);
                if self.cluster.members().len() > 1 {
                    let task = Deliver {
                        app: app.to_string(),
                        message: serde_json::to_string(&message).map_err(Self::codec_err)?,
                        to: DeliverTo::Channel {
                            channel: channel.to_string(),
                            exclude: exclude.iter().map(ToString::to_string).collect(),
                        },
                    };
                    self.count_out();
                    self.cluster.send_to_others(task.to_task()?).await?;
                }
                Ok(())
            }
        }
    }

    async fn subscription(&self, subscribe: bool, conns: Vec<ConnectionId>, channels: Vec<ChannelId>) -> CoreResult<()> {
        let mut remote: BTreeMap<MemberId, Vec<String>> = BTreeMap::new();
        let mut local = Vec::new();
        for c in conns {
            if self.local(&c).is_some() {
                local.push(c);
            } else if let Some(m) = self.tracker.member_of(&c).await? {
                remote.entry(m).or_default().push(c.to_string());
            }
        }
        self.subscribe_local(subscribe, &local, &channels);
        for (member, connections) in remote {
            let task = Subscription {
                subscribe,
                connections,
                channels: channels.iter().map(ToString::to_string).collect(),
            };
            self.count_out();
            self.cluster.send_to(&member, task.to_task()?).await?;
        }
        Ok(())
    }
}

impl Inner {
    fn expose_local(&self, conn: &ConnectionId, kind: LoadKind, path: &str) -> bool {
        match self.local(conn) {
            Some(h) => h.push_control(
                conn,
                ServerFrame::Load {
                    kind,
                    path: path.to_owned(),
                },
            ),
            None => false,
        }
    }

    fn expose_channel_local(
        &self,
        channel: &ChannelId,
        exclude: &[ConnectionId],
        kind: LoadKind,
        path: &str,
    ) {
        let members: Vec<ConnectionId> = self
            .channels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(channel)
            .map(|s| s.iter().filter(|c| !exclude.contains(c)).cloned().collect())
            .unwrap_or_default();
        for c in &members {
            self.expose_local(c, kind, path);
        }
    }

    /// Sends `load` frames to `target`, through the cluster for connections elsewhere.
    async fn expose(&self, target: Target, kind: LoadKind, path: String) -> CoreResult<()> {
        if *self.shutdown.borrow() {
            return Err(CoreError::ShuttingDown);
        }
        let remote = |to: DeliverTo| Expose {
            kind,
            path: path.clone(),
            to,
        };
        match target {
            Target::Connection(conn) => {
                if self.local(&conn).is_some() {
                    return if self.expose_local(&conn, kind, &path) {
                        Ok(())
                    } else {
                        Err(CoreError::Unavailable(format!("connection {conn} is closing")))
                    };
                }
                let member = self
                    .tracker
                    .member_of(&conn)
                    .await?
                    .ok_or_else(|| CoreError::NotFound(format!("connection {conn}")))?;
                let task = remote(DeliverTo::Connections(vec![conn.to_string()]));
                self.cluster.send_to(&member, task.to_task()?).await
            }
            Target::Session(session) => {
                let mut elsewhere: BTreeMap<MemberId, Vec<String>> = BTreeMap::new();
                for (conn, member) in self.tracker.connections_of_session(&session).await? {
                    if member == self.member {
                        self.expose_local(&conn, kind, &path);
                    } else {
                        elsewhere.entry(member).or_default().push(conn.to_string());
                    }
                }
                for (member, conns) in elsewhere {
                    let task = remote(DeliverTo::Connections(conns));
                    self.cluster.send_to(&member, task.to_task()?).await?;
                }
                Ok(())
            }
            Target::Channel { channel, exclude } => {
                self.expose_channel_local(&channel, &exclude, kind, &path);
                if self.cluster.members().len() > 1 {
                    let task = remote(DeliverTo::Channel {
                        channel: channel.to_string(),
                        exclude: exclude.iter().map(ToString::to_string).collect(),
                    });
                    self.cluster.send_to_others(task.to_task()?).await?;
                }
                Ok(())
            }
        }
    }
}

impl ClientInterface for Router {
    fn member(&self) -> &MemberId {
        &self.member
    }

    fn send(&self, app: &ApplicationId, target: Target, message: Message) -> BoxFuture<'_, CoreResult<()>> {
        let app = app.clone();
        Box::pin(async move {
            let inner = self.inner.upgrade().ok_or(CoreError::ShuttingDown)?;
            inner.send(&app, target, message).await
        })
    }

    fn subscribe(&self, connections: Vec<ConnectionId>, channels: Vec<ChannelId>) -> BoxFuture<'_, CoreResult<()>> {
        Box::pin(async move {
            let inner = self.inner.upgrade().ok_or(CoreError::ShuttingDown)?;
            inner.subscription(true, connections, channels).await
        })
    }

    fn unsubscribe(&self, connections: Vec<ConnectionId>, channels: Vec<ChannelId>) -> BoxFuture<'_, CoreResult<()>> {
        Box::pin(async move {
            let inner = self.inner.upgrade().ok_or(CoreError::ShuttingDown)?;
            inner.subscription(false, connections, channels).await
        })
    }

    fn load(&self, target: Target, kind: LoadKind, path: String) -> BoxFuture<'_, CoreResult<()>> {
        Box::pin(async move {
            let inner = self.inner.upgrade().ok_or(CoreError::ShuttingDown)?;
            inner.expose(target, kind, path).await
        })
    }
}

/// Receives cluster tasks and member events for the node.
struct Events(Weak<Inner>);

impl ClusterEvents for Events {
    fn task(&self, from: MemberId, task: ClusterTask) {
        let Some(inner) = self.0.upgrade() else { return };
        inner
            .metrics
            .cluster_tasks
            .get_or_create(&crate::metrics::DirectionLabel { direction: "in".into() })
            .inc();
        if let Some(d) = task.decode::<Deliver>() {
            match d {
                Ok(d) => {
                    let message: Message = match serde_json::from_str(&d.message) {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(%from, error = %e, "undecodable message in deliver task");
                            return;
                        }
                    };
                    let app = ApplicationId::from(d.app);
                    match d.to {
                        DeliverTo::Connections(conns) => {
                            for c in conns {
                                inner.deliver_local(&app, &ConnectionId::from(c), &message);
                            }
                        }
                        DeliverTo::Channel { channel, exclude } => {
                            let exclude: Vec<ConnectionId> = exclude.into_iter().map(ConnectionId::from).collect();
                            inner.deliver_channel_local(&app, &ChannelId::from(channel), &exclude, &message);
                        }
                    }
                }
                Err(e) => tracing::warn!(%from, error = %e, "bad deliver task"),
            }
        } else if let Some(s) = task.decode::<Subscription>() {
            match s {
                Ok(s) => {
                    let conns: Vec<ConnectionId> = s.connections.into_iter().map(ConnectionId::from).collect();
                    let chans: Vec<ChannelId> = s.channels.into_iter().map(ChannelId::from).collect();
                    inner.subscribe_local(s.subscribe, &conns, &chans);
                }
                Err(e) => tracing::warn!(%from, error = %e, "bad subscription task"),
            }
        } else if let Some(x) = task.decode::<Expose>() {
            match x {
                Ok(x) => match x.to {
                    DeliverTo::Connections(conns) => {
                        for c in conns {
                            inner.expose_local(&ConnectionId::from(c), x.kind, &x.path);
                        }
                    }
                    DeliverTo::Channel { channel, exclude } => {
                        let exclude: Vec<ConnectionId> =
                            exclude.into_iter().map(ConnectionId::from).collect();
                        inner.expose_channel_local(&ChannelId::from(channel), &exclude, x.kind, &x.path);
                    }
                },
                Err(e) => tracing::warn!(%from, error = %e, "bad expose task"),
            }
        } else {
            tracing::debug!(%from, task = %task.name, "cluster task with no handler");
        }
    }

    fn gap(&self, from: MemberId, missing: u64) {
        tracing::warn!(%from, missing, "lost member-to-member messages detected");
        if let Some(inner) = self.0.upgrade() {
            inner.metrics.cluster_gaps.inc_by(missing);
        }
    }

    fn member_up(&self, member: MemberId) {
        tracing::info!(%member, "cluster member up");
    }

    fn member_down(&self, member: MemberId, designated: bool) {
        tracing::warn!(%member, designated, "cluster member down");
        let Some(inner) = self.0.upgrade() else { return };
        tokio::spawn(async move {
            let clients = match inner.tracker.purge_member(&member).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%member, error = %e, "tracker purge failed");
                    return;
                }
            };
            if designated {
                for (app, ctx) in inner.apps.values() {
                    app.cluster_member_down(ctx, &member, &clients).await;
                }
            }
        });
    }
}

/// A client as the application sees it.
pub(crate) fn client(node: &Node, connection: &ConnectionId, session: &thywill_core::SessionId) -> Client {
    Client {
        connection: connection.clone(),
        session: session.clone(),
        member: node.inner.member.clone(),
    }
}
