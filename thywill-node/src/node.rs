//! The node runtime: registered applications, local connections and channel subscriptions,
//! and the routing of messages to local connections or, through the cluster, to other members.
//!
//! Besides routing, the node ties the components together:
//!
//! - **Client tracker.** The node records local connections in the tracker and registers as
//!   its listener: what the tracker learns from other members becomes the applications'
//!   `connection_to` / `disconnection_from` / `tracker_event` hooks; a member down becomes
//!   `cluster_member_status` everywhere and `cluster_member_down` (with the member's purged
//!   connections) on its designated handler. These hooks run one at a time, in order, on one
//!   task.
//! - **Channel manager.** Sessions added to a channel are persisted by the
//!   [`ChannelManager`](thywill_core::ChannelManager); every member then subscribes its local connections of those sessions
//!   (a `thywill.channel-sessions` task), and a connection that opens later is subscribed to its
//!   session's channels before the applications' `connection` hook runs. A reconnecting browser
//!   is therefore back in its channels at once.
//!   Every member, the one that made the change included, then runs the applications'
//!   `sessions_added` / `sessions_removed` hooks with the sessions the manager reported as
//!   changed (on the hook task, in order with the tracker hooks).
//! - **Presence** (see [`crate::presence`]): for channels an application tracks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use serde::{Deserialize, Serialize};
use thywill_core::DynCacheManager;
use thywill_core::cluster::MemberStatus;
use thywill_core::edge::{Outbound, SharedFrame};
use thywill_core::protocol::{LoadKind, ServerFrame};
use thywill_core::{
    AppContext, AppTask, ApplicationId, BoxFuture, ChannelId, Client, ClientInterface, ClusterEvents,
    ClusterTask, ConnectionId, CoreError, CoreResult, DynApplication, DynChannelManager, DynClientTracker,
    DynCluster, DynHistory, DynSessionStore, MemberId, Message, SessionId, Target, Task, TaskTarget, Topic,
    TrackerEvent, TrackerListener,
};
use tokio::sync::{mpsc, watch};

use crate::NodeConfig;
use crate::presence::{Effect, PresenceTask, Subs};
use crate::streams::{At, Numbering, log_payload};
use crate::tasks::{AppTaskEnvelope, TaskRouter};

/// Everything a node is made of. Built by the facade's builder.
pub struct NodeParts {
    /// The node's configuration.
    pub config: NodeConfig,
    /// Applications by id.
    pub applications: Vec<(ApplicationId, Arc<dyn DynApplication>)>,
    /// The cluster backend.
    pub cluster: Arc<dyn DynCluster>,
    /// The client tracker.
    pub tracker: Arc<dyn DynClientTracker>,
    /// Where channels of sessions are persisted.
    pub channels: Arc<dyn DynChannelManager>,
    /// Where applications keep per-session data, when sessions outlive connections (`None`
    /// in plain mode, where the session is the connection).
    pub session_store: Option<Arc<dyn DynSessionStore>>,
    /// Replay logs of channel and session streams, and received marks of tabs.
    pub history: Arc<dyn DynHistory>,
    /// The named caches of applications ([`thywill_core::MemoryCaches`] by default); the node
    /// invalidates their copies across the cluster.
    pub caches: Arc<dyn DynCacheManager>,
}

impl std::fmt::Debug for NodeParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeParts")
            .field("config", &self.config)
            .field(
                "applications",
                &self.applications.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A local connection as the router sees it: where its frames go (the edge's bounded queue)
/// and its browser tab.
pub(crate) struct Local {
    /// The connection's outbound queue, kept by the edge.
    pub(crate) out: Arc<dyn Outbound>,
    /// The browser tab, once its `hello` named it.
    pub(crate) tab: Mutex<Option<String>>,
}

impl Local {
    pub(crate) fn new(out: Arc<dyn Outbound>) -> Self {
        Self {
            out,
            tab: Mutex::new(None),
        }
    }

    /// The tab of the connection, if known.
    pub(crate) fn tab(&self) -> Option<String> {
        self.tab.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The hasher of maps keyed by connection id: foldhash, seeded at random per map. Connection
/// ids are made by the member that accepts the connection (with 64 random bits), never chosen
/// by a client, so a fast hash cannot be flooded; ids a client can choose (sessions, channels)
/// keep std's keyed SipHash.
pub(crate) type ConnHasher = foldhash::fast::RandomState;

/// A map keyed by connection id (see [`ConnHasher`]).
pub(crate) type ConnMap<V> = HashMap<ConnectionId, V, ConnHasher>;

/// A set of connection ids (see [`ConnHasher`]).
pub(crate) type ConnSet = std::collections::HashSet<ConnectionId, ConnHasher>;

pub(crate) struct Inner {
    pub(crate) config: NodeConfig,
    pub(crate) member: MemberId,
    /// The ids of `apps`, in order (named in every `welcome`).
    pub(crate) app_ids: Vec<ApplicationId>,
    pub(crate) apps: BTreeMap<ApplicationId, (Arc<dyn DynApplication>, AppContext)>,
    pub(crate) cluster: Arc<dyn DynCluster>,
    pub(crate) tracker: Arc<dyn DynClientTracker>,
    pub(crate) channel_store: Arc<dyn DynChannelManager>,
    /// Where sessions keep data (`None` in plain mode: the session is the connection).
    pub(crate) session_store: Option<Arc<dyn DynSessionStore>>,
    pub(crate) history: Arc<dyn DynHistory>,
    /// The cache manager itself (applications use it through [`crate::caches::Invalidating`]).
    pub(crate) caches: Arc<dyn DynCacheManager>,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Counters of the registered applications, resolved at start.
    /// (A fixed map, only read: a fast hash cannot be flooded through it.)
    pub(crate) app_counters: HashMap<ApplicationId, crate::metrics::AppCounters, ConnHasher>,
    pub(crate) connections: RwLock<ConnMap<Arc<Local>>>,
    /// The applications' typed state of each local connection: registered with the
    /// connection, kept through its `disconnection` hooks, then dropped.
    pub(crate) states: RwLock<ConnMap<Arc<thywill_core::ConnectionState>>>,
    /// Local subscriptions and presence. Presence effects are carried out under its write
    /// lock; a channel's fan-out pushes to the subscribers' queues under its read lock (see
    /// [`Subs::fan_out`]).
    ///
    /// Lock order: `subs` is never taken while `connections` or `states` is held, and neither
    /// of those is taken under `subs`; under `subs` only a connection's own outbound lock is
    /// taken (by a push, which never waits).
    pub(crate) subs: RwLock<Subs>,
    /// The channels whose traffic this member takes from the cluster (see [`crate::interest`]).
    pub(crate) interests: crate::interest::Interests,
    /// Presence tasks for other members, sent in order by one task.
    outbox: crate::queues::Outbox<Outgoing>,
    /// Application hooks fed by the tracker and cluster events, run in order by one task.
    hooks: crate::queues::HookQueue<Hook>,
    pub(crate) shutdown: watch::Sender<bool>,
    /// The handlers of cluster tasks, by name.
    tasks: TaskRouter<Inner>,
    /// Each application's queue of tasks from its instances on other members, run in order by
    /// one task per application.
    app_tasks: TaskQueues,
    pub(crate) next_conn: AtomicU64,
}

/// A presence task waiting to be sent.
enum Outgoing {
    Others(PresenceTask),
    To(MemberId, PresenceTask),
    /// The local presence snapshot, taken when it is sent.
    SnapshotTo(MemberId),
}

/// An application hook waiting to run.
enum Hook {
    Tracker(TrackerEvent),
    Status(MemberId, MemberStatus),
    Down {
        member: MemberId,
        designated: bool,
    },
    /// Sessions added to (`added`) or removed from a channel, on any member.
    ChannelSessions {
        added: bool,
        channel: ChannelId,
        sessions: Vec<SessionId>,
    },
}

/// A running thywill node: cheap to clone, shared by the edge (as its
/// [`Gateway`](thywill_core::edge::Gateway)) and every connection's worker.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("member", &self.inner.member)
            .field("connections", &self.connection_count())
            .finish()
    }
}

/// The client interface handed to applications; holds the node weakly to avoid a cycle.
struct Router {
    inner: Weak<Inner>,
    member: MemberId,
    members: Vec<MemberId>,
    tracker: Arc<dyn DynClientTracker>,
    /// The cache manager, its writes invalidated on the other members.
    caches: Arc<dyn DynCacheManager>,
    /// Where applications keep session data (`None` in plain mode).
    session_store: Option<Arc<dyn thywill_core::DynSessionStore>>,
}

/// Cluster task: deliver a message, or a `load` frame, to local connections of the receiving
/// member.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Deliver {
    payload: Payload,
    to: DeliverTo,
    numbering: Numbering,
    /// A channel message also sent straight to some members (see [`crate::interest`]).
    copy: Option<Copied>,
}

/// The members a channel message was also sent to directly, and the message's id there.
#[derive(Debug, Serialize, Deserialize)]
struct Copied {
    id: u64,
    to: Vec<String>,
}

/// What a [`Deliver`] task carries.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Payload {
    /// An application message; `message` is the JSON of the [`Message`] (bincode cannot
    /// carry `serde_json::Value`).
    Msg { app: String, message: String },
    /// A `load` frame (progressive exposure).
    Load { kind: LoadKind, path: String },
}

/// What to push to local connections: the borrowed form of [`Payload`].
#[derive(Clone, Copy)]
enum Push<'a> {
    Msg(&'a ApplicationId, &'a Message, Option<&'a At>),
    Load(LoadKind, &'a str),
}

impl<'a> Push<'a> {
    /// The same push, its message numbered `at` (when given).
    fn numbered(self, at: Option<&'a At>) -> Self {
        match (self, at) {
            (Push::Msg(app, message, _), Some(at)) => Push::Msg(app, message, Some(at)),
            (push, _) => push,
        }
    }

    fn payload(self) -> CoreResult<Payload> {
        Ok(match self {
            Push::Msg(app, message, _) => Payload::Msg {
                app: app.to_string(),
                message: serde_json::to_string(message).map_err(|e| CoreError::Codec(e.to_string()))?,
            },
            Push::Load(kind, path) => Payload::Load {
                kind,
                path: path.to_owned(),
            },
        })
    }
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
pub(crate) struct Subscription {
    subscribe: bool,
    connections: Vec<String>,
    channels: Vec<String>,
}

impl Task for Subscription {
    const NAME: &'static str = "thywill.subscription";
}

/// Cluster task: sessions were added to (or removed from) a channel; the receiving member
/// subscribes (or unsubscribes) its local connections of those sessions.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ChannelSessions {
    subscribe: bool,
    channel: String,
    sessions: Vec<String>,
    /// The sessions the channel manager reported as changed (added or removed): what the
    /// applications' `sessions_added` / `sessions_removed` hooks are given.
    changed: Vec<String>,
}

impl Task for ChannelSessions {
    const NAME: &'static str = "thywill.channel-sessions";
}

/// Passes what the tracker learns from other members to the hook task.
struct HookListener(crate::queues::HookQueue<Hook>, Arc<crate::metrics::Metrics>);

impl TrackerListener for HookListener {
    fn tracker_event(&self, event: TrackerEvent) {
        if !self.0.push_or_drop(Hook::Tracker(event)) {
            self.1.hook_dropped("tracker");
        }
    }
}

impl Node {
    /// Assembles a node from its parts and runs every application's `setup` and the
    /// cluster's `start`. It serves no client yet: an edge (`thywill-transport`) serves its
    /// WebSockets, through the node's [`Gateway`](thywill_core::edge::Gateway).
    pub async fn start(parts: NodeParts) -> Result<Self, crate::NodeError> {
        let NodeParts {
            config,
            applications,
            cluster,
            tracker,
            channels,
            session_store,
            history,
            caches,
        } = parts;
        let mut seen = HashSet::new();
        for (id, _) in &applications {
            if !seen.insert(id.clone()) {
                return Err(crate::NodeError::DuplicateApplication(id.to_string()));
            }
        }
        let member = cluster.local_member().clone();
        let (shutdown, _) = watch::channel(false);
        let (outbox, outbox_rx) = crate::queues::Outbox::new(crate::queues::OUTBOX_BOUND);
        let (hooks, hooks_rx) = crate::queues::HookQueue::new(crate::queues::HOOKS_BOUND);
        let metrics = crate::metrics::Metrics::new();
        tracker.set_listener(Arc::new(HookListener(hooks.clone(), metrics.clone())));
        let (app_tasks, app_task_queues) = app_task_queues(&applications);
        let presence_apps: Vec<Arc<dyn DynApplication>> =
            applications.iter().map(|(_, a)| a.clone()).collect();
        let subs = Subs::new(member.clone(), move |ch: &ChannelId| {
            presence_apps.iter().any(|a| a.tracks_presence(ch))
        });
        let interests = crate::interest::Interests::new(
            cluster.members().len() > 1,
            history.is_shared() || !config.replay,
            config.interest_linger,
        );
        let invalidating: Arc<dyn DynCacheManager> =
            Arc::new(crate::caches::Invalidating::new(caches.clone(), cluster.clone()));
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let router: Arc<dyn ClientInterface> = Arc::new(Router {
                inner: weak.clone(),
                member: member.clone(),
                members: cluster.members(),
                tracker: tracker.clone(),
                caches: invalidating,
                session_store: session_store.clone(),
            });
            let apps: BTreeMap<ApplicationId, _> = applications
                .into_iter()
                .map(|(id, app)| {
                    let ctx = AppContext::new(id.clone(), router.clone());
                    (id, (app, ctx))
                })
                .collect();
            let app_counters = apps
                .keys()
                .map(|id| (id.clone(), metrics.app_counters(id.as_str())))
                .collect();
            Inner {
                config,
                member,
                app_ids: apps.keys().cloned().collect(),
                apps,
                cluster,
                tracker,
                channel_store: channels,
                session_store,
                history,
                caches,
                metrics,
                app_counters,
                connections: RwLock::new(ConnMap::default()),
                states: RwLock::new(ConnMap::default()),
                subs: RwLock::new(subs),
                interests,
                outbox,
                hooks,
                shutdown,
                tasks: crate::tasks::node_tasks(),
                app_tasks,
                next_conn: AtomicU64::new(0),
            }
        });
        tokio::spawn(send_presence(Arc::downgrade(&inner), outbox_rx));
        tokio::spawn(run_hooks(Arc::downgrade(&inner), hooks_rx));
        if inner.interests.routed {
            tokio::spawn(keep_interest(Arc::downgrade(&inner)));
        }
        for (app, rx) in app_task_queues {
            tokio::spawn(run_app_tasks(Arc::downgrade(&inner), app, rx));
        }
        let node = Node { inner };
        node.inner
            .cluster
            .start(Arc::new(Events(Arc::downgrade(&node.inner))))
            .await?;
        for (id, (app, ctx)) in &node.inner.apps {
            app.setup(ctx).await?;
            tracing::debug!(app = %id, "application set up");
        }
        tracing::info!(member = %node.inner.member, "node started");
        Ok(node)
    }

    /// The local member's id.
    pub fn member(&self) -> &MemberId {
        &self.inner.member
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// The ids of the applications served.
    pub fn applications(&self) -> &[ApplicationId] {
        &self.inner.app_ids
    }

    /// The context of an application, to send messages from outside its hooks.
    pub fn context(&self, app: &ApplicationId) -> Option<AppContext> {
        self.inner.apps.get(app).map(|(_, ctx)| ctx.clone())
    }

    /// Where sessions keep their data, when sessions outlive connections.
    pub fn session_store(&self) -> Option<&Arc<dyn DynSessionStore>> {
        self.inner.session_store.as_ref()
    }

    /// The node's metrics in the Prometheus text format (the edge serves them at
    /// `<base>/metrics` with its own).
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render(self.inner.cluster.as_ref())
    }

    /// Whether the node should receive new clients: the cluster link works and the node is
    /// not draining.
    pub fn is_ready(&self) -> bool {
        !self.is_shutting_down() && self.inner.cluster.is_healthy()
    }

    /// Registers the node's metrics (messages, RPC, cluster tasks, replays, hooks, panics) in
    /// an application's own Prometheus `registry`, under the `thywill_` prefix: the counters
    /// are shared with the node's (registered clones), and the cluster figures
    /// (`thywill_cluster_*`) are read from the cluster whenever `registry` is encoded.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.metrics.register(registry, self.inner.cluster.clone());
    }

    /// Number of local connections whose application state the node holds (registered with
    /// the connection, dropped after its `disconnection` hooks): for tests and diagnostics.
    pub fn connection_states(&self) -> usize {
        self.inner
            .states
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Number of open local connections.
    pub fn connection_count(&self) -> usize {
        self.inner
            .connections
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Stops the node: sends and tasks are refused from now on (the edge closes the
    /// connections, with code 1001, when it drains).
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Whether [`Node::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// A new connection id, unique in the cluster: the member, a counter and 64 random bits.
    pub fn new_connection_id(&self) -> ConnectionId {
        let n = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let r: u64 = rand::random();
        ConnectionId::from(format!("{}-{n:x}-{r:016x}", self.inner.member))
    }
}

impl Inner {
    pub(crate) fn local(&self, conn: &ConnectionId) -> Option<Arc<Local>> {
        self.connections
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(conn)
            .cloned()
    }

    /// Queues a message for local connections (unknown ones are skipped): encoded once, the
    /// sequence number spliced in per connection. Returns how many were queued. (A channel's
    /// subscribers are reached without a lookup: [`Inner::push_channel_local`].)
    fn deliver_local_many(
        &self,
        app: &ApplicationId,
        conns: &[ConnectionId],
        message: &Message,
        at: Option<&At>,
    ) -> usize {
        if conns.is_empty() {
            return 0;
        }
        let encoded = Arc::new(SharedFrame::new(
            app,
            message,
            at.map(|at| (at.stream.as_str(), &at.offset)),
        ));
        // Pushed under the map's read lock (a push never waits): no handle is cloned for it.
        let queued = {
            let map = self.connections.read().unwrap_or_else(PoisonError::into_inner);
            conns
                .iter()
                .filter(|c| map.get(*c).is_some_and(|h| h.out.push(&encoded)))
                .count()
        };
        self.count_messages_out(app, queued);
        queued
    }

    /// Counts `queued` messages of `app` queued for local connections.
    fn count_messages_out(&self, app: &ApplicationId, queued: usize) {
        if queued > 0 {
            match self.app_counters.get(app) {
                Some(c) => c.messages_out.inc_by(queued as u64),
                // An application this member does not serve (a task from another member).
                None => self
                    .metrics
                    .app_counters(app.as_str())
                    .messages_out
                    .inc_by(queued as u64),
            };
        }
    }

    /// Lost member-to-member traffic and a per-member history: the lost messages were never
    /// numbered here, so no client can see a hole in its streams. Every local connection is
    /// told `continuity_lost` for each stream it reads (its channels', its session's) that has
    /// a log here, at the stream's next offset. (A shared history numbers at the sender: a
    /// client sees the hole and replays it.)
    fn tell_of_lost_messages(&self, from: &MemberId) {
        use futures_util::FutureExt;
        if self.history.is_shared() || !self.config.replay {
            return;
        }
        let connections = self.subs_read().all_connections();
        let mut told = 0u64;
        for (conn, session, channels) in connections {
            let Some(handle) = self.local(&conn) else { continue };
            let bases = channels
                .iter()
                .filter_map(|c| {
                    self.stream_of(&Target::Channel {
                        channel: c.clone(),
                        exclude: Vec::new(),
                    })
                })
                .chain(self.stream_of(&Target::Session(session.clone())));
            for base in bases {
                let start = thywill_core::Offset {
                    epoch: String::new(),
                    off: 0,
                };
                let limit = thywill_core::ReadLimit {
                    max_entries: 1,
                    max_bytes: 1,
                };
                let Some(Ok(log)) = self.history.read_after(&base, &start, limit).now_or_never() else {
                    continue;
                };
                if log.epoch.is_empty() {
                    continue;
                }
                handle.out.push_control(ServerFrame::ContinuityLost {
                    stream: self.wire_stream(&base),
                    epoch: log.epoch,
                    next: log.last.saturating_add(1),
                });
                told += 1;
            }
        }
        if told > 0 {
            self.metrics.continuity_lost.inc_by(told);
            tracing::info!(%from, streams = told, "clients told of messages lost between members");
        }
    }

    fn count_out(&self) {
        self.metrics
            .cluster_tasks
            .get_or_create(&crate::metrics::DirectionLabel {
                direction: "out".into(),
            })
            .inc();
    }

    /// The subscriptions, to change them (and carry out the effects of the change).
    pub(crate) fn subs(&self) -> RwLockWriteGuard<'_, Subs> {
        self.subs.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The subscriptions, to read them or fan a message out.
    pub(crate) fn subs_read(&self) -> RwLockReadGuard<'_, Subs> {
        self.subs.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Carries out presence effects; called with the subscriptions write-locked (`subs`), so
    /// that every subscriber sees presence changes in the order they happened. The notified
    /// connections' queues are taken from `subs` (no lookup in `connections`).
    fn run_effects(&self, subs: &Subs, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Announce(task) => {
                    if self.cluster.members().len() > 1 {
                        self.outbox.push(Outgoing::Others(task));
                    }
                }
                Effect::Notify { channel, to, data } => {
                    let message = Message::new(data);
                    for (id, (app, _)) in &self.apps {
                        if app.tracks_presence(&channel) {
                            let encoded = Arc::new(SharedFrame::new(id, &message, None));
                            let queued = to
                                .iter()
                                .filter(|c| subs.out(c).is_some_and(|out| out.push(&encoded)))
                                .count();
                            self.count_messages_out(id, queued);
                        }
                    }
                }
            }
        }
    }

    /// Pushes to local connections (unknown ones are skipped); returns how many were queued.
    /// Queues `push` for one local connection (a send to a connection that is here: one
    /// lookup, no list); whether it was queued.
    fn push_one(&self, handle: &Local, push: Push<'_>) -> bool {
        match push {
            Push::Msg(app, message, at) => {
                let encoded = Arc::new(SharedFrame::new(
                    app,
                    message,
                    at.map(|at| (at.stream.as_str(), &at.offset)),
                ));
                let queued = handle.out.push(&encoded);
                if queued {
                    self.count_messages_out(app, 1);
                }
                queued
            }
            Push::Load(kind, path) => handle.out.push_control(ServerFrame::Load {
                kind,
                path: path.to_owned(),
            }),
        }
    }

    fn push_local(&self, conns: &[ConnectionId], push: Push<'_>) -> usize {
        match push {
            Push::Msg(app, message, at) => self.deliver_local_many(app, conns, message, at),
            Push::Load(kind, path) => conns
                .iter()
                .filter(|c| {
                    self.local(c).is_some_and(|h| {
                        h.out.push_control(ServerFrame::Load {
                            kind,
                            path: path.to_owned(),
                        })
                    })
                })
                .count(),
        }
    }

    /// Pushes to the local subscribers of `channel` but `exclude`; those excluded get a
    /// `skip` of the message's offset instead, when it has one (they count it as seen).
    ///
    /// The subscriber set holds the connections' queues: the pushes walk it under the read
    /// lock of the subscriptions (a push never waits), with no lookup in `connections` and no
    /// list of ids per message.
    fn push_channel_local(&self, channel: &ChannelId, exclude: &[ConnectionId], push: Push<'_>) {
        match push {
            Push::Msg(app, message, at) => {
                let subs = self.subs_read();
                if !subs.has_subscribers(channel) {
                    return;
                }
                let encoded = Arc::new(SharedFrame::new(
                    app,
                    message,
                    at.map(|at| (at.stream.as_str(), &at.offset)),
                ));
                let queued = subs.fan_out(
                    channel,
                    exclude,
                    |out| out.push(&encoded),
                    |out| {
                        if let Some(at) = at {
                            out.push_control(ServerFrame::Skip {
                                stream: at.stream.clone(),
                                epoch: at.offset.epoch.clone(),
                                off: at.offset.off,
                            });
                        }
                    },
                );
                drop(subs);
                self.count_messages_out(app, queued);
            }
            Push::Load(kind, path) => {
                let subs = self.subs_read();
                subs.fan_out(
                    channel,
                    exclude,
                    |out| {
                        out.push_control(ServerFrame::Load {
                            kind,
                            path: path.to_owned(),
                        })
                    },
                    |_| {},
                );
            }
        }
    }

    /// Records a new local connection (before the tracker and the applications hear of it).
    pub(crate) fn register(&self, conn: &ConnectionId, session: &SessionId, handle: Arc<Local>) {
        let handle_out = handle.out.clone();
        self.connections
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(conn.clone(), handle);
        self.states
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(conn.clone(), Arc::default());
        self.subs().register(conn, session, handle_out);
    }

    /// Drops the applications' state of a connection (after its `disconnection` hooks).
    pub(crate) fn drop_state(&self, conn: &ConnectionId) {
        let state = self
            .states
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(conn);
        // Dropped outside the lock: the values are the applications'.
        drop(state);
    }

    /// Subscribes a new local connection to its session's channels.
    pub(crate) async fn subscribe_to_session_channels(&self, client: &Client) {
        match self.channel_store.channels_of(&client.session).await {
            Ok(channels) if !channels.is_empty() => {
                tracing::debug!(count = channels.len(), "subscribed to the session's channels");
                let declare = self.subscribe_local(true, std::slice::from_ref(&client.connection), &channels);
                // Logged: the keeper declares it again.
                let _ = self.interests.declare(self.cluster.as_ref(), &declare).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "channels of the session not loaded"),
        }
    }

    /// (Un)subscribes local connections; returns the channels whose interest is now to be
    /// declared ([`crate::interest::Interests::declare`]).
    #[must_use]
    fn subscribe_local(
        &self,
        subscribe: bool,
        connections: &[ConnectionId],
        channels: &[ChannelId],
    ) -> Vec<ChannelId> {
        let mut subs = self.subs();
        let fx = subs.subscribe(subscribe, connections, channels);
        self.run_effects(&subs, fx);
        self.interest_flips(&mut subs)
    }

    /// Subscribes (or unsubscribes) the local connections of `sessions`; returns the channels
    /// whose interest is now to be declared.
    #[must_use]
    fn subscribe_sessions_local(
        &self,
        subscribe: bool,
        channel: &ChannelId,
        sessions: &[SessionId],
    ) -> Vec<ChannelId> {
        let mut subs = self.subs();
        let conns: Vec<ConnectionId> = sessions.iter().flat_map(|s| subs.connections_of(s)).collect();
        let fx = subs.subscribe(subscribe, &conns, std::slice::from_ref(channel));
        self.run_effects(&subs, fx);
        self.interest_flips(&mut subs)
    }

    /// Hands the channels whose local subscribers appeared or vanished to the interest
    /// bookkeeping; returns those whose interest is to be declared.
    fn interest_flips(&self, subs: &mut Subs) -> Vec<ChannelId> {
        let flips = subs.take_flips();
        self.interests.note(flips, |c| subs.has_subscribers(c))
    }

    /// Has the keeper task declare `channels` (from a task handler, which cannot await).
    fn declare_later(&self, channels: &[ChannelId]) {
        if !channels.is_empty() {
            self.interests.wake.notify_one();
        }
    }

    pub(crate) fn forget_connection(&self, conn: &ConnectionId) {
        // Out of the subscriber sets first (they hold its queue), then out of `connections`:
        // a connection is in a set only while it is registered.
        {
            let mut subs = self.subs();
            let fx = subs.forget(conn);
            self.run_effects(&subs, fx);
            // Only channels that lost subscribers: nothing to declare.
            let _ = self.interest_flips(&mut subs);
        }
        self.connections
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(conn);
    }

    /// (Un)subscribes the connections of `sessions` to `channel` on every member, and has
    /// every member (this one included) run the applications' `sessions_added` /
    /// `sessions_removed` hooks with `changed`, the sessions whose membership the channel
    /// manager reported as changed (a subset of `sessions`).
    async fn change_channel_sessions(
        &self,
        subscribe: bool,
        channel: ChannelId,
        sessions: Vec<SessionId>,
        changed: Vec<SessionId>,
    ) -> CoreResult<()> {
        if sessions.is_empty() {
            return Ok(());
        }
        let declare = self.subscribe_sessions_local(subscribe, &channel, &sessions);
        if subscribe {
            // Any member may hold connections of these sessions (see `crate::interest`).
            self.interests
                .asked(std::slice::from_ref(&channel), &self.others());
        }
        let task = (self.cluster.members().len() > 1).then(|| ChannelSessions {
            subscribe,
            channel: channel.to_string(),
            sessions: sessions.iter().map(ToString::to_string).collect(),
            changed: changed.iter().map(ToString::to_string).collect(),
        });
        self.channel_sessions_changed(subscribe, channel, changed);
        let sent = match task {
            Some(task) => {
                self.count_out();
                self.cluster.send_to_others(task.to_task()?).await
            }
            None => Ok(()),
        };
        let _ = self.interests.declare(self.cluster.as_ref(), &declare).await;
        sent
    }

    /// Queues the applications' hooks of a change of a channel's sessions (none when no
    /// session changed).
    fn channel_sessions_changed(&self, added: bool, channel: ChannelId, sessions: Vec<SessionId>) {
        if !sessions.is_empty() {
            let queued = self.hooks.push_or_drop(Hook::ChannelSessions {
                added,
                channel,
                sessions,
            });
            if !queued {
                self.metrics.hook_dropped("channel_sessions");
            }
        }
    }

    async fn add_sessions(&self, channel: ChannelId, sessions: Vec<SessionId>) -> CoreResult<()> {
        let added = self.channel_store.add_sessions(&channel, &sessions).await?;
        self.change_channel_sessions(true, channel, sessions, added).await
    }

    async fn remove_sessions(&self, channel: ChannelId, sessions: Vec<SessionId>) -> CoreResult<()> {
        let removed = self.channel_store.remove_sessions(&channel, &sessions).await?;
        self.change_channel_sessions(false, channel, sessions, removed)
            .await
    }

    async fn clear_channel(&self, channel: ChannelId) -> CoreResult<Vec<SessionId>> {
        let removed = self.channel_store.clear(&channel).await?;
        self.change_channel_sessions(false, channel, removed.clone(), removed.clone())
            .await?;
        Ok(removed)
    }

    /// Numbers a message here when its stream is per member (see [`Numbering::Local`]).
    fn number_here(&self, numbering: &Numbering, push: Push<'_>, exclude: &[ConnectionId]) -> Option<At> {
        match (numbering, push) {
            (Numbering::Local(base), Push::Msg(app, message, _)) => {
                self.append_now(base, app, message, exclude)
            }
            _ => None,
        }
    }

    /// Pushes `push` to `target`: local connections directly, connections on other members
    /// through a [`Deliver`] task to each member holding some. A message to a channel or a
    /// session is first numbered in its stream (see [`Inner::stream_of`]).
    async fn route(&self, target: Target, push: Push<'_>) -> CoreResult<()> {
        // A client message admitted before the shutdown is acknowledged: it must still go out.
        if *self.shutdown.borrow() && crate::worker::ADMITTED.try_with(|()| ()).is_err() {
            return Err(CoreError::ShuttingDown);
        }
        let shared = self.history.is_shared();
        let at: Option<At>;
        let mut numbering = Numbering::None;
        let push = match (push, self.stream_of(&target)) {
            (Push::Msg(app, message, _), Some(base)) => {
                if shared {
                    let excluded = match &target {
                        Target::Channel { exclude, .. } => self.tabs_of(exclude),
                        _ => Vec::new(),
                    };
                    let numbered = self.append(&base, log_payload(app, message, excluded)?).await?;
                    numbering = Numbering::Numbered(numbered.clone());
                    at = Some(numbered);
                } else {
                    numbering = Numbering::Local(base.clone());
                    // Numbered below, only where this member delivers (or logs) it.
                    at = None;
                }
                Push::Msg(app, message, at.as_ref())
            }
            (push, _) => push,
        };
        match target {
            Target::Connection(conn) => {
                if let Some(handle) = self.local(&conn) {
                    return if self.push_one(&handle, push) {
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
                    payload: push.payload()?,
                    to: DeliverTo::Connections(vec![conn.to_string()]),
                    numbering,
                    copy: None,
                };
                self.count_out();
                self.cluster.send_to(&member, task.to_task()?).await
            }
            Target::Session(session) => {
                // Visited in the tracker's table: no list of the session's connections, no
                // clone of an id but those this send keeps.
                let mut local = Vec::new();
                let mut remote: Vec<(MemberId, Vec<String>)> = Vec::new();
                self.tracker
                    .for_each_connection_of_session(&session, &mut |conn, member| {
                        if *member == self.member {
                            local.push(conn.clone());
                        } else if let Some((_, conns)) = remote.iter_mut().find(|(m, _)| m == member) {
                            conns.push(conn.to_string());
                        } else {
                            remote.push((member.clone(), vec![conn.to_string()]));
                        }
                    })
                    .await?;
                // A per-member stream is numbered where it is delivered; with no connection
                // anywhere, here, so that the session's next connection can replay it.
                let here = (!local.is_empty() || remote.is_empty())
                    .then(|| self.number_here(&numbering, push, &[]))
                    .flatten();
                let push = push.numbered(here.as_ref());
                self.push_local(&local, push);
                if remote.is_empty() {
                    return Ok(());
                }
                let payload = push.payload()?;
                let mut sends = Vec::with_capacity(remote.len());
                for (member, conns) in remote {
                    let task = Deliver {
                        payload: payload.clone(),
                        to: DeliverTo::Connections(conns),
                        numbering: numbering.clone(),
                        copy: None,
                    };
                    sends.push((member, task.to_task()?));
                }
                self.send_to_each(sends).await
            }
            Target::Channel { channel, exclude } => {
                // Every member logs a per-member channel stream, whoever subscribes.
                let here = self.number_here(&numbering, push, &exclude);
                let push = push.numbered(here.as_ref());
                self.push_channel_local(&channel, &exclude, push);
                if self.cluster.members().len() > 1 {
                    // To the members interested in the channel, and straight to those asked
                    // to subscribe connections to it a moment ago (see `crate::interest`).
                    let copies = self.interests.copies(&channel, || self.others());
                    let task = Deliver {
                        payload: push.payload()?,
                        to: DeliverTo::Channel {
                            channel: channel.to_string(),
                            exclude: exclude.iter().map(ToString::to_string).collect(),
                        },
                        numbering,
                        copy: (!copies.is_empty()).then(|| Copied {
                            id: rand::random(),
                            to: copies.iter().map(ToString::to_string).collect(),
                        }),
                    }
                    .to_task()?;
                    self.count_out();
                    let sent = self
                        .cluster
                        .send_to_interested(&Topic::channel(&channel), task.clone())
                        .await;
                    let copied = self
                        .send_to_each(copies.into_iter().map(|m| (m, task.clone())).collect())
                        .await;
                    sent.and(copied)?;
                }
                Ok(())
            }
        }
    }

    async fn subscription(
        &self,
        subscribe: bool,
        conns: Vec<ConnectionId>,
        channels: Vec<ChannelId>,
    ) -> CoreResult<()> {
        let mut remote: BTreeMap<MemberId, Vec<String>> = BTreeMap::new();
        let mut local = Vec::new();
        for c in conns {
            if self.local(&c).is_some() {
                local.push(c);
            } else if let Some(m) = self.tracker.member_of(&c).await? {
                remote.entry(m).or_default().push(c.to_string());
            }
        }
        let declare = self.subscribe_local(subscribe, &local, &channels);
        if subscribe {
            let asked: Vec<MemberId> = remote.keys().cloned().collect();
            self.interests.asked(&channels, &asked);
        }
        let mut sends = Vec::with_capacity(remote.len());
        for (member, connections) in remote {
            let task = Subscription {
                subscribe,
                connections,
                channels: channels.iter().map(ToString::to_string).collect(),
            };
            sends.push((member, task.to_task()?));
        }
        let sent = self.send_to_each(sends).await;
        // A subscription made here is in place, interest included, when the call returns
        // (unless the backend fails to confirm it: logged, and declared by the keeper later).
        let _ = self.interests.declare(self.cluster.as_ref(), &declare).await;
        sent
    }

    /// Every member but this one.
    fn others(&self) -> Vec<MemberId> {
        self.cluster
            .members()
            .into_iter()
            .filter(|m| *m != self.member)
            .collect()
    }

    /// Sends each task to its member, all of them even when some fail (one unreachable
    /// member must not keep the others from their share); the first failure, if any.
    async fn send_to_each(&self, sends: Vec<(MemberId, ClusterTask)>) -> CoreResult<()> {
        let mut first_error = None;
        for (member, task) in sends {
            self.count_out();
            if let Err(e) = self.cluster.send_to(&member, task).await {
                tracing::warn!(%member, error = %e, "task not sent to member");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
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
            inner.route(target, Push::Msg(&app, &message, None)).await
        })
    }

    fn subscribe(
        &self,
        connections: Vec<ConnectionId>,
        channels: Vec<ChannelId>,
    ) -> BoxFuture<'_, CoreResult<()>> {
        Box::pin(async move {
            let inner = self.inner.upgrade().ok_or(CoreError::ShuttingDown)?;
            inner.subscription(true, connections, channels).await
        })
    }

    fn unsubscribe(
        &self,
        connections: Vec<ConnectionId>,
        channels: Vec<ChannelId>,
    ) -> BoxFuture<'_, CoreResult<()>> {
        Box::pin(async move {
            let inner = self.inner.upgrade().ok_or(CoreError::ShuttingDown)?;
            inner.subscription(false, connections, channels).await
        })
    }

    fn load(&self, target: Target, kind: LoadKind, path: String) -> BoxFuture<'_, CoreResult<()>> {
        Box::pin(async move {
            let inner = self.inner.upgrade().ok_or(CoreError::ShuttingDown)?;
            inner.route(target, Push::Load(kind, &path)).await
        })
    }

    fn members(&self) -> Vec<MemberId> {
        self.members.clone()
    }

    fn tracker(&self) -> Option<&dyn DynClientTracker> {
        Some(self.tracker.as_ref())
    }

    fn add_sessions(&self, channel: ChannelId, sessions: Vec<SessionId>) -> BoxFuture<'_, CoreResult<()>> {
        Box::pin(async move {
            let inner = self.inner.upgrade().ok_or(CoreError::ShuttingDown)?;
            inner.add_sessions(channel, sessions).await
        })
    }

    fn remove_sessions(&self, channel: ChannelId, sessions: Vec<SessionId>) -> BoxFuture<'_, CoreResult<()>> {
        Box::pin(async move {
            let inner = self.inner.upgrade().ok_or(CoreError::ShuttingDown)?;
            inner.remove_sessions(channel, sessions).await
        })
    }

    fn clear_channel(&self, channel: ChannelId) -> BoxFuture<'_, CoreResult<Vec<SessionId>>> {
        Box::pin(async move {
            let inner = self.inner.upgrade().ok_or(CoreError::ShuttingDown)?;
            inner.clear_channel(channel).await
        })
    }

    fn channel_sessions(&self, channel: ChannelId) -> BoxFuture<'_, CoreResult<Vec<SessionId>>> {
        Box::pin(async move {
            let inner = self.inner.upgrade().ok_or(CoreError::ShuttingDown)?;
            inner.channel_store.sessions(&channel).await
        })
    }

    fn session_channels(&self, session: SessionId) -> BoxFuture<'_, CoreResult<Vec<ChannelId>>> {
        Box::pin(async move {
            let inner = self.inner.upgrade().ok_or(CoreError::ShuttingDown)?;
            inner.channel_store.channels_of(&session).await
        })
    }

    fn presence(&self, channel: ChannelId) -> BoxFuture<'_, CoreResult<Vec<SessionId>>> {
        let r = match self.inner.upgrade() {
            Some(inner) => Ok(inner.subs_read().present(&channel)),
            None => Err(CoreError::ShuttingDown),
        };
        Box::pin(std::future::ready(r))
    }

    fn caches(&self) -> CoreResult<Arc<dyn DynCacheManager>> {
        Ok(self.caches.clone())
    }

    fn session_store(&self) -> Option<&dyn thywill_core::DynSessionStore> {
        self.session_store.as_deref()
    }

    fn connection_state(&self, connection: &ConnectionId) -> Option<Arc<thywill_core::ConnectionState>> {
        self.inner
            .upgrade()?
            .states
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(connection)
            .cloned()
    }

    fn send_task(&self, app: &ApplicationId, to: TaskTarget, task: AppTask) -> BoxFuture<'_, CoreResult<()>> {
        let app = app.clone();
        Box::pin(async move {
            let inner = self.inner.upgrade().ok_or(CoreError::ShuttingDown)?;
            inner.send_app_task(&app, to, task).await
        })
    }
}

/// Sends presence tasks to other members, in the order they were queued.
async fn send_presence(inner: Weak<Inner>, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(out) = rx.recv().await {
        let Some(inner) = inner.upgrade() else { break };
        if inner.outbox.take_overflow() {
            // Deltas were dropped: every member's whole presence, both ways, replaces them.
            for member in inner.cluster.members().into_iter().filter(|m| *m != inner.member) {
                inner
                    .outbox
                    .push(Outgoing::To(member.clone(), PresenceTask::SnapshotRequest));
                inner.outbox.push(Outgoing::SnapshotTo(member));
            }
        }
        let (to, task) = match out {
            Outgoing::Others(task) => (None, task),
            Outgoing::To(member, task) => (Some(member), task),
            Outgoing::SnapshotTo(member) => {
                let entries = inner.subs_read().local_snapshot();
                (Some(member), PresenceTask::Snapshot { entries })
            }
        };
        let encoded = match task.to_task() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "presence task not encoded");
                continue;
            }
        };
        inner.count_out();
        let sent = match &to {
            None => inner.cluster.send_to_others(encoded).await,
            Some(member) => inner.cluster.send_to(member, encoded).await,
        };
        if let Err(e) = sent {
            tracing::warn!(member = ?to, error = %e, "presence task not sent");
        }
    }
}

/// Declares the interest that task handlers asked for and withdraws what lingered idle (see
/// [`crate::interest`]), until the node is gone.
async fn keep_interest(inner: Weak<Inner>) {
    let Some((period, wake)) = inner
        .upgrade()
        .map(|i| (i.interests.period(), i.interests.wake.clone()))
    else {
        return;
    };
    loop {
        // The node is not held while waiting: it may go away meanwhile.
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(period) => {}
        }
        let Some(inner) = inner.upgrade() else { break };
        inner.interests.reconcile(inner.cluster.as_ref()).await;
    }
}

/// Runs the applications' tracker and cluster hooks, one at a time, in order.
async fn run_hooks(inner: Weak<Inner>, mut rx: mpsc::Receiver<Hook>) {
    while let Some(hook) = rx.recv().await {
        let Some(inner) = inner.upgrade() else { break };
        // A panicking hook costs its own event, never the hooks after it.
        crate::worker::unwinding(&inner.metrics, "tracker or cluster hook", run_hook(&inner, hook)).await;
    }
}

async fn run_hook(inner: &Inner, hook: Hook) {
    {
        match hook {
            Hook::Tracker(event) => {
                for (app, ctx) in inner.apps.values() {
                    match &event {
                        TrackerEvent::ConnectedTo { member, client } => {
                            app.connection_to(ctx, member, client).await
                        }
                        TrackerEvent::DisconnectedFrom { member, client } => {
                            app.disconnection_from(ctx, member, client).await
                        }
                        _ => {}
                    }
                    app.tracker_event(ctx, &event).await;
                }
            }
            Hook::Status(member, status) => {
                for (app, ctx) in inner.apps.values() {
                    app.cluster_member_status(ctx, &member, status).await;
                }
            }
            Hook::Down { member, designated } => {
                let clients = match inner.tracker.purge_member(&member).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(%member, error = %e, "tracker purge failed");
                        Default::default()
                    }
                };
                tracing::info!(%member, designated, connections = clients.connections.len(), "member down: its clients purged");
                for (app, ctx) in inner.apps.values() {
                    app.cluster_member_status(ctx, &member, MemberStatus::Down).await;
                }
                if designated {
                    for (app, ctx) in inner.apps.values() {
                        app.cluster_member_down(ctx, &member, &clients).await;
                    }
                }
            }
            Hook::ChannelSessions {
                added,
                channel,
                sessions,
            } => {
                for (app, ctx) in inner.apps.values() {
                    if added {
                        app.sessions_added(ctx, &channel, &sessions).await;
                    } else {
                        app.sessions_removed(ctx, &channel, &sessions).await;
                    }
                }
            }
        }
    }
}

/// The handlers of the node's cluster tasks, reached through the task router
/// ([`crate::tasks::node_tasks`]).
impl Inner {
    /// A message, or a `load` frame, for local connections.
    pub(crate) fn on_deliver(&self, from: MemberId, d: Deliver) {
        if let Some(copy) = &d.copy
            && copy.to.iter().any(|m| m.as_str() == self.member.as_str())
            && !self.interests.first_time(&from, copy.id)
        {
            // Its other arrival (by the topic, or the direct copy) came first.
            return;
        }
        let message: Message;
        let app: ApplicationId;
        let at: Option<At>;
        let push = match &d.payload {
            Payload::Msg { app: a, message: m } => {
                message = match serde_json::from_str(m) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(%from, error = %e, "undecodable message in deliver task");
                        return;
                    }
                };
                app = ApplicationId::from(a.as_str());
                at = match d.numbering {
                    Numbering::None => None,
                    Numbering::Numbered(at) => Some(at),
                    Numbering::Local(ref base) => {
                        let exclude: Vec<ConnectionId> = match &d.to {
                            DeliverTo::Channel { exclude, .. } => {
                                exclude.iter().map(|c| ConnectionId::from(c.as_str())).collect()
                            }
                            DeliverTo::Connections(_) => Vec::new(),
                        };
                        self.append_now(base, &app, &message, &exclude)
                    }
                };
                Push::Msg(&app, &message, at.as_ref())
            }
            Payload::Load { kind, path } => Push::Load(*kind, path),
        };
        match d.to {
            DeliverTo::Connections(conns) => {
                let conns: Vec<ConnectionId> = conns.into_iter().map(ConnectionId::from).collect();
                self.push_local(&conns, push);
            }
            DeliverTo::Channel { channel, exclude } => {
                let exclude: Vec<ConnectionId> = exclude.into_iter().map(ConnectionId::from).collect();
                self.push_channel_local(&ChannelId::from(channel), &exclude, push);
            }
        }
    }

    /// Local connections (un)subscribed by another member.
    pub(crate) fn on_subscription(&self, _from: MemberId, s: Subscription) {
        let conns: Vec<ConnectionId> = s.connections.into_iter().map(ConnectionId::from).collect();
        let chans: Vec<ChannelId> = s.channels.into_iter().map(ChannelId::from).collect();
        let declare = self.subscribe_local(s.subscribe, &conns, &chans);
        self.declare_later(&declare);
    }

    /// Sessions added to (or removed from) a channel: their local connections follow.
    pub(crate) fn on_channel_sessions(&self, _from: MemberId, c: ChannelSessions) {
        let sessions: Vec<SessionId> = c.sessions.into_iter().map(SessionId::from).collect();
        let channel = ChannelId::from(c.channel);
        let declare = self.subscribe_sessions_local(c.subscribe, &channel, &sessions);
        self.declare_later(&declare);
        let changed = c.changed.into_iter().map(SessionId::from).collect();
        self.channel_sessions_changed(c.subscribe, channel, changed);
    }

    /// Another member's cache write: the key (or the cache) leaves this member's copy.
    pub(crate) fn on_cache_invalidation(&self, from: MemberId, task: crate::caches::Invalidate) {
        crate::caches::on_cache_task(self.caches.as_ref(), &from, Ok(task));
    }

    /// Presence of another member's connections.
    pub(crate) fn on_presence(&self, from: MemberId, p: PresenceTask) {
        if from == self.member {
            return;
        }
        if let PresenceTask::SnapshotRequest = p {
            // Answered even while the asker is seen as down: it asks when it sees this
            // member come back, which may be before this member sees it come back.
            self.outbox.push(Outgoing::SnapshotTo(from));
            return;
        }
        if self.cluster.status(&from) == MemberStatus::Down {
            // Its presence is asked for again when it comes back up.
            tracing::debug!(%from, "presence task from a member seen as down ignored");
            return;
        }
        let mut subs = self.subs();
        let fx = subs.remote(&from, p);
        self.run_effects(&subs, fx);
    }
}

/// How many tasks of one application wait for its `task` hook at most; past it, tasks are
/// dropped (logged and counted) rather than queued without bound.
const APP_TASK_QUEUE: usize = 1024;

/// An application task waiting for its hook, with its sender.
type QueuedTask = (MemberId, AppTask);

/// The task queue of each application.
type TaskQueues = HashMap<ApplicationId, mpsc::Sender<QueuedTask>>;

/// A task queue per application, and their receiving ends (for [`run_app_tasks`]).
fn app_task_queues(
    applications: &[(ApplicationId, Arc<dyn DynApplication>)],
) -> (TaskQueues, Vec<(ApplicationId, mpsc::Receiver<QueuedTask>)>) {
    let mut senders = HashMap::new();
    let mut receivers = Vec::new();
    for (id, _) in applications {
        let (tx, rx) = mpsc::channel(APP_TASK_QUEUE);
        senders.insert(id.clone(), tx);
        receivers.push((id.clone(), rx));
    }
    (senders, receivers)
}

/// Runs one application's `task` hook for each of its tasks, one at a time, in order.
async fn run_app_tasks(inner: Weak<Inner>, app: ApplicationId, mut rx: mpsc::Receiver<QueuedTask>) {
    while let Some((from, task)) = rx.recv().await {
        let Some(inner) = inner.upgrade() else { break };
        let Some((hook, ctx)) = inner.apps.get(&app) else {
            break;
        };
        // A panicking hook costs its own task, never the tasks after it.
        crate::worker::unwinding(&inner.metrics, "task hook", hook.task(ctx, &from, task)).await;
    }
}

/// Application tasks: sent through the cluster in an [`AppTaskEnvelope`], handed to the same
/// application on the receiving member.
impl Inner {
    /// Queues a task for its application's hook.
    pub(crate) fn on_app_task(&self, from: MemberId, envelope: AppTaskEnvelope) {
        let AppTaskEnvelope { app, name, payload } = envelope;
        let app = ApplicationId::from(app);
        let Some(queue) = self.app_tasks.get(&app) else {
            tracing::warn!(%from, %app, task = %name, "task for an application this member does not serve: dropped");
            self.metrics.task_dropped("unknown_app");
            return;
        };
        match queue.try_send((from, AppTask::from_parts(name, payload))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full((from, task))) => {
                tracing::warn!(%from, %app, task = %task.name(), "application task queue full: task dropped");
                self.metrics.task_dropped("queue_full");
            }
            // The node is going away.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Sends application `app`'s task to the members at `to`.
    async fn send_app_task(&self, app: &ApplicationId, to: TaskTarget, task: AppTask) -> CoreResult<()> {
        if *self.shutdown.borrow() {
            return Err(CoreError::ShuttingDown);
        }
        let (name, payload) = task.into_parts();
        let envelope = AppTaskEnvelope {
            app: app.to_string(),
            name,
            payload,
        }
        .to_task()?;
        match to {
            TaskTarget::Member(member) => {
                if member != self.member {
                    if !self.cluster.members().contains(&member) {
                        return Err(CoreError::NotFound(format!("member {member}")));
                    }
                    let status = self.cluster.status(&member);
                    if status != MemberStatus::Up {
                        return Err(CoreError::Unavailable(format!(
                            "member {member} is not up ({status:?})"
                        )));
                    }
                }
                self.count_out();
                self.cluster.send_to(&member, envelope).await
            }
            TaskTarget::Others => {
                if self.cluster.members().len() < 2 {
                    return Ok(());
                }
                self.count_out();
                self.cluster.send_to_others(envelope).await
            }
            TaskTarget::All => {
                self.count_out();
                self.cluster.send_to_all(envelope).await
            }
        }
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
            .get_or_create(&crate::metrics::DirectionLabel {
                direction: "in".into(),
            })
            .inc();
        if let Some(reason) = inner.tasks.route(&inner, from, &task).dropped() {
            inner.metrics.task_dropped(reason);
        }
    }

    fn gap(&self, from: MemberId, missing: u64) {
        tracing::warn!(%from, missing, "lost member-to-member messages detected");
        if let Some(inner) = self.0.upgrade() {
            inner.metrics.cluster_gaps.inc_by(missing);
            // Presence announcements may be among the lost: ask for the sender's again.
            inner
                .outbox
                .push(Outgoing::To(from.clone(), PresenceTask::SnapshotRequest));
            inner.tell_of_lost_messages(&from);
            crate::caches::on_link_loss(inner.caches.as_ref(), &from, "lost member-to-member messages");
        }
    }

    fn member_up(&self, member: MemberId) {
        tracing::info!(%member, "cluster member up");
        let Some(inner) = self.0.upgrade() else { return };
        crate::caches::on_link_loss(inner.caches.as_ref(), &member, "a member came up");
        // Both ways: its presence is asked for, and ours is pushed, since what it asked of us
        // while we saw it as down may never have left this member.
        inner
            .outbox
            .push(Outgoing::To(member.clone(), PresenceTask::SnapshotRequest));
        inner.outbox.push(Outgoing::SnapshotTo(member.clone()));
        inner.hooks.push_always(Hook::Status(member, MemberStatus::Up));
    }

    fn member_down(&self, member: MemberId, designated: bool) {
        tracing::warn!(%member, designated, "cluster member down");
        let Some(inner) = self.0.upgrade() else { return };
        // Presence is purged at once: its sessions that vanish leave now.
        {
            let mut subs = inner.subs();
            let fx = subs.purge(&member);
            inner.run_effects(&subs, fx);
        }
        inner.hooks.push_always(Hook::Down { member, designated });
    }
}

/// A client as the application sees it.
pub(crate) fn client(node: &Node, connection: &ConnectionId, session: &SessionId) -> Client {
    Client {
        connection: connection.clone(),
        session: session.clone(),
        member: node.inner.member.clone(),
        identity: None,
    }
}

#[cfg(test)]
mod session_send_tests {
    //! A send to a session groups its connections by member as the tracker's table lists them:
    //! one `Deliver` task per other member holding some, none for the local member.

    use super::*;
    use thywill_core::{Application, ClusterEvents, MemoryTracker, Message};

    /// A cluster that records what it is asked to send to each member.
    struct Recorder {
        members: Vec<MemberId>,
        sent: Mutex<Vec<(MemberId, ClusterTask)>>,
    }

    impl thywill_core::Cluster for Recorder {
        fn local_member(&self) -> &MemberId {
            &self.members[0]
        }
        fn members(&self) -> Vec<MemberId> {
            self.members.clone()
        }
        fn status(&self, _member: &MemberId) -> MemberStatus {
            MemberStatus::Up
        }
        async fn start(&self, _events: Arc<dyn ClusterEvents>) -> CoreResult<()> {
            Ok(())
        }
        async fn send_to(&self, member: &MemberId, task: ClusterTask) -> CoreResult<()> {
            self.sent
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((member.clone(), task));
            Ok(())
        }
        async fn send_to_others(&self, _task: ClusterTask) -> CoreResult<()> {
            Ok(())
        }
    }

    struct Quiet;

    impl Application for Quiet {
        async fn received(&self, _ctx: &thywill_core::AppContext, _client: &Client, _message: Message) {}
    }

    /// The connections each task was addressed to, by member, in the order sent.
    fn delivered(cluster: &Recorder) -> Vec<(String, Vec<String>)> {
        std::mem::take(&mut *cluster.sent.lock().unwrap_or_else(PoisonError::into_inner))
            .into_iter()
            .map(|(member, task)| {
                let to = match task.decode::<Deliver>() {
                    Some(Ok(Deliver {
                        to: DeliverTo::Connections(to),
                        ..
                    })) => to,
                    other => panic!("not a delivery to connections: {other:?}"),
                };
                (member.to_string(), to)
            })
            .collect()
    }

    #[tokio::test]
    async fn one_task_per_other_member_with_its_connections() -> Result<(), Box<dyn std::error::Error>> {
        let members: Vec<MemberId> = ["alpha", "beta", "gamma"].map(MemberId::from).to_vec();
        let cluster = Arc::new(Recorder {
            members: members.clone(),
            sent: Mutex::new(Vec::new()),
        });
        let tracker = Arc::new(MemoryTracker::new());
        for (conn, session, member) in [
            ("g1", "s1", "gamma"),
            ("b2", "s1", "beta"),
            ("b1", "s1", "beta"),
            // Held by this member in the table, with no local handle: skipped, not sent.
            ("a1", "s1", "alpha"),
            ("b3", "s2", "beta"),
            ("b4", "s2", "beta"),
            ("b5", "s2", "beta"),
            ("g2", "s2", "gamma"),
            ("g3", "s3", "gamma"),
        ] {
            let client = Client::new(conn.into(), session.into(), member.into());
            thywill_core::ClientTracker::connected(tracker.as_ref(), &client).await?;
        }
        let app = ApplicationId::from("app");
        let applications: Vec<(ApplicationId, Arc<dyn thywill_core::DynApplication>)> =
            vec![(app.clone(), Arc::new(Quiet))];
        let node = Node::start(NodeParts {
            config: NodeConfig::default(),
            applications,
            cluster: cluster.clone(),
            tracker: tracker.clone(),
            channels: Arc::new(thywill_core::MemoryChannels::new()),
            session_store: None,
            history: Arc::new(thywill_core::LocalHistory::default()),
            caches: Arc::new(thywill_core::MemoryCaches::new()),
        })
        .await?;
        let ctx = node.context(&app).ok_or("no context for the application")?;
        let owned = |v: &[(&str, &[&str])]| -> Vec<(String, Vec<String>)> {
            v.iter()
                .map(|(m, cs)| ((*m).to_owned(), cs.iter().map(|c| (*c).to_owned()).collect()))
                .collect()
        };

        ctx.send_to_session(&"s1".into(), serde_json::json!(1)).await?;
        assert_eq!(
            delivered(&cluster),
            owned(&[("beta", &["b1", "b2"]), ("gamma", &["g1"])])
        );
        // Three connections on one member (the table's set beyond two), one on another.
        ctx.send_to_session(&"s2".into(), serde_json::json!(2)).await?;
        assert_eq!(
            delivered(&cluster),
            owned(&[("beta", &["b3", "b4", "b5"]), ("gamma", &["g2"])])
        );
        // After a disconnection and a member's purge, only what is left.
        thywill_core::ClientTracker::disconnected(
            tracker.as_ref(),
            &Client::new("b4".into(), "s2".into(), "beta".into()),
        )
        .await?;
        thywill_core::ClientTracker::purge_member(tracker.as_ref(), &"gamma".into()).await?;
        ctx.send_to_session(&"s2".into(), serde_json::json!(3)).await?;
        assert_eq!(delivered(&cluster), owned(&[("beta", &["b3", "b5"])]));
        // No connection anywhere: nothing sent, no error.
        ctx.send_to_session(&"s3".into(), serde_json::json!(4)).await?;
        assert_eq!(delivered(&cluster), owned(&[]));
        node.shutdown();
        Ok(())
    }
}
