//! The cluster-wide client tracker of thywill-rs: every member keeps the table of who is
//! connected where, fed by announcements over the cluster.
//!
//! Client tracking is a component of its own: it implements [`ClientTracker`] from
//! `thywill-core` over any [`Cluster`] backend, and depends on nothing else of the framework.
//! A node asks its tracker which member holds a connection and which connections a session
//! has, wherever they are; a backend that tracks clients its own way says so
//! ([`Tracking::Own`](thywill_core::Tracking::Own)) and this crate is not used.
//!
//! [`tracked`] wraps a [`Cluster`] backend and returns the wrapped cluster and its tracker.
//! The facade's builder does it for every backend installed with
//! [`Tracking::ClusterWide`](thywill_core::Tracking::ClusterWide) (the default); those who
//! compose a node by hand give both to the node. The wrapper intercepts the tracker's own tasks
//! (`thywill.tracker`) before the node sees the cluster's events:
//!
//! - a local connect or disconnect is announced to the other members (`send_to_others`),
//!   with the connection's user ([`thywill_core::tracked_user`]: the identity's user id, at
//!   most [`MAX_TRACKED_USER_LEN`] bytes; not its data), so that every member's
//!   [`ClientTracker::client_of`] and tracker events say who the user is;
//! - when a member comes up (at start, every other member does), the tracker asks it for its
//!   table of local connections; the answer **replaces** what was known of that member, and the
//!   differences are reported as connections and disconnections;
//! - when a member goes down, its entries are purged at once (no ghosts once the failure is
//!   detected); the node takes them with [`ClientTracker::purge_member`] and tells the
//!   designated handler's applications;
//! - when the backend reports lost traffic from a member (a gap), the tracker asks that member
//!   for its table again, which repairs whatever announcement was lost;
//! - tasks from a member currently seen as down are ignored (its table is asked for again
//!   when it comes back up).
//!
//! Announcements and answers leave in the order the local table changed (one ordering lock),
//! and the backend keeps per-sender order, so a table never misses a disconnection that
//! followed its snapshot. What the tracker learns from other members reaches the listener
//! ([`ClientTracker::set_listener`]: the node, which calls the applications' hooks) in the
//! order the table changed.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn f(cluster: impl thywill_core::Cluster) {
//! let (cluster, tracker) = thywill_tracking::tracked(cluster);
//! // The node gets both: the wrapped cluster and the tracker.
//! let (cluster, tracker): (Arc<dyn thywill_core::DynCluster>, Arc<dyn thywill_core::DynClientTracker>) =
//!     (Arc::new(cluster), Arc::new(tracker));
//! # let _ = (cluster, tracker); }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

use serde::{Deserialize, Serialize};
use thywill_core::cluster::{ClusterStats, Topic};
use thywill_core::{
    Client, ClientTable, ClientTracker, Cluster, ClusterEvents, ClusterTask, ConnectionId, CoreResult,
    DynCluster, MAX_TRACKED_USER_LEN, MemberClients, MemberId, MemberStatus, SessionId, Task, TrackerEvent,
    TrackerListener,
};

/// Cluster task of the tracker. The user of a connection is its identity's user id
/// ([`thywill_core::tracked_user`]), at most [`MAX_TRACKED_USER_LEN`] bytes: a longer one
/// received is dropped (the connection is tracked without a user).
#[derive(Debug, Serialize, Deserialize)]
enum TrackerTask {
    /// A client connected to the sender.
    Connected {
        connection: String,
        session: String,
        user: Option<String>,
    },
    /// A client disconnected from the sender.
    Disconnected { connection: String },
    /// The sender's local connections, each with its session and user: replaces what the
    /// receiver knew.
    Snapshot {
        connections: Vec<(String, String, Option<String>)>,
    },
    /// The sender asks for the receiver's snapshot.
    SnapshotRequest,
}

impl Task for TrackerTask {
    const NAME: &'static str = "thywill.tracker";
}

/// Indexed: lookups on the send path cost the same whatever the cluster's size.
type Members = ClientTable;

struct Table {
    local: MemberId,
    cluster: Arc<dyn DynCluster>,
    members: RwLock<Members>,
    /// Entries purged when members went down, one set per down event, until the node takes
    /// them ([`ClientTracker::purge_member`]).
    purged: Mutex<BTreeMap<MemberId, VecDeque<MemberClients>>>,
    listener: RwLock<Option<Arc<dyn TrackerListener>>>,
    /// Held while the local table changes and the matching task is queued, so that tasks
    /// leave in the order of the changes.
    order: tokio::sync::Mutex<()>,
}

impl Table {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Members> {
        self.members.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Members> {
        self.members.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn listener(&self) -> Option<Arc<dyn TrackerListener>> {
        self.listener
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn local_snapshot(&self) -> Vec<(String, String, Option<String>)> {
        self.read()
            .member(&self.local)
            .map(|mc| {
                mc.connections
                    .iter()
                    .map(|(c, s)| (c.to_string(), s.to_string(), mc.users.get(c).cloned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Applies a task from another member; returns the events, in order.
    fn apply(&self, from: &MemberId, task: TrackerTask, events: &mut Vec<TrackerEvent>) {
        let client = |clients: &MemberClients, connection: &ConnectionId| {
            clients
                .client(from, connection)
                .unwrap_or_else(|| Client::new(connection.clone(), SessionId::from(""), from.clone()))
        };
        let mut table = self.write();
        match task {
            TrackerTask::Connected {
                connection,
                session,
                user,
            } => {
                let (c, s) = (ConnectionId::from(connection), SessionId::from(session));
                if table
                    .insert_with_user(from, c.clone(), s.clone(), bounded(from, user))
                    .as_ref()
                    != Some(&s)
                    && let Some(clients) = table.member(from)
                {
                    events.push(TrackerEvent::ConnectedTo {
                        member: from.clone(),
                        client: client(clients, &c),
                    });
                }
            }
            TrackerTask::Disconnected { connection } => {
                let c = ConnectionId::from(connection);
                let gone = table.member(from).and_then(|m| m.client(from, &c));
                if table.remove(from, &c).is_some()
                    && let Some(gone) = gone
                {
                    events.push(TrackerEvent::DisconnectedFrom {
                        member: from.clone(),
                        client: gone,
                    });
                }
            }
            TrackerTask::Snapshot { connections } => {
                let mut fresh = MemberClients::default();
                for (c, s, u) in connections {
                    let c = ConnectionId::from(c);
                    if let Some(u) = bounded(from, u) {
                        fresh.users.insert(c.clone(), u);
                    }
                    fresh.connections.insert(c, SessionId::from(s));
                }
                let count = fresh.connections.len();
                let old = table.replace_member_clients(from, fresh.clone());
                for (c, s) in &old.connections {
                    if fresh.connections.get(c) != Some(s) {
                        events.push(TrackerEvent::DisconnectedFrom {
                            member: from.clone(),
                            client: client(&old, c),
                        });
                    }
                }
                for (c, s) in &fresh.connections {
                    if old.connections.get(c) != Some(s) {
                        events.push(TrackerEvent::ConnectedTo {
                            member: from.clone(),
                            client: client(&fresh, c),
                        });
                    }
                }
                events.push(TrackerEvent::SnapshotReceived {
                    member: from.clone(),
                    connections: count,
                });
            }
            TrackerTask::SnapshotRequest => {
                events.push(TrackerEvent::SnapshotRequested { member: from.clone() })
            }
        }
        // Reported under the lock: the listener sees changes in table order.
        if let Some(l) = self.listener() {
            for e in events.iter() {
                l.tracker_event(e.clone());
            }
        }
    }

    /// Removes a member's entries (it went down) and keeps them for the node.
    fn purge(&self, member: &MemberId) {
        let removed = self.write().remove_member(member).unwrap_or_default();
        self.purged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(member.clone())
            .or_default()
            .push_back(removed);
    }
}

/// A user received from `from`, if within [`MAX_TRACKED_USER_LEN`] (a longer one is dropped
/// and logged: the connection is tracked without it).
fn bounded(from: &MemberId, user: Option<String>) -> Option<String> {
    let user = user?;
    if user.len() > MAX_TRACKED_USER_LEN {
        tracing::warn!(%from, bytes = user.len(), "tracked user id over the limit dropped");
        return None;
    }
    Some(user)
}

/// Sends a task to one member from a spawned task (event callbacks must not block).
fn send_later(
    table: &Arc<Table>,
    to: MemberId,
    what: &'static str,
    task: impl FnOnce(&Table) -> TrackerTask + Send + 'static,
) {
    let table = table.clone();
    tokio::spawn(async move {
        let _order = table.order.lock().await;
        let result = match task(&table).to_task() {
            Ok(t) => table.cluster.send_to(&to, t).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(member = %to, error = %e, "tracker {what} not sent");
        }
    });
}

/// The cluster-wide client tracker made by [`tracked`]. Cheap to clone.
#[derive(Clone)]
pub struct ClusterTracker {
    table: Arc<Table>,
}

impl std::fmt::Debug for ClusterTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTracker")
            .field("local", &self.table.local)
            .field("members", &self.table.read().members().len())
            .finish()
    }
}

/// A [`Cluster`] wrapped so that the tracker sees its tasks and events first. Made by
/// [`tracked`].
pub struct TrackedCluster {
    cluster: Arc<dyn DynCluster>,
    table: Arc<Table>,
}

impl std::fmt::Debug for TrackedCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackedCluster")
            .field("local", &self.table.local)
            .finish()
    }
}

impl TrackedCluster {
    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn DynCluster> {
        &self.cluster
    }
}

/// Wraps a cluster backend with a cluster-wide client tracker.
pub fn tracked<C: Cluster>(cluster: C) -> (TrackedCluster, ClusterTracker) {
    tracked_arc(Arc::new(cluster))
}

/// [`tracked`] for a backend already shared (to keep a handle on it, for health or gaps).
pub fn tracked_arc(cluster: Arc<dyn DynCluster>) -> (TrackedCluster, ClusterTracker) {
    let table = Arc::new(Table {
        local: cluster.local_member().clone(),
        cluster: cluster.clone(),
        members: RwLock::new(ClientTable::new()),
        purged: Mutex::new(BTreeMap::new()),
        listener: RwLock::new(None),
        order: tokio::sync::Mutex::new(()),
    });
    (
        TrackedCluster {
            cluster,
            table: table.clone(),
        },
        ClusterTracker { table },
    )
}

/// Sees the backend's events before the node does.
struct TrackerEvents {
    table: Weak<Table>,
    next: Arc<dyn ClusterEvents>,
}

impl ClusterEvents for TrackerEvents {
    fn task(&self, from: MemberId, task: ClusterTask) {
        let Some(decoded) = task.decode::<TrackerTask>() else {
            self.next.task(from, task);
            return;
        };
        let Some(table) = self.table.upgrade() else { return };
        if from == table.local {
            return;
        }
        if table.cluster.status(&from) == MemberStatus::Down {
            // Its table is asked for again when it comes back up.
            tracing::debug!(%from, "tracker task from a member seen as down ignored");
            return;
        }
        match decoded {
            Ok(t) => {
                let answer = matches!(t, TrackerTask::SnapshotRequest);
                let mut events = Vec::new();
                table.apply(&from, t, &mut events);
                if answer {
                    send_later(&table, from, "snapshot", |t| TrackerTask::Snapshot {
                        connections: t.local_snapshot(),
                    });
                }
            }
            Err(e) => tracing::warn!(%from, error = %e, "bad tracker task"),
        }
    }

    fn member_up(&self, member: MemberId) {
        if let Some(table) = self.table.upgrade() {
            // Both ways: our table to the member that came up (it may have seen us up before
            // we saw it, when its request could not reach us), and a request for its table.
            send_later(&table, member.clone(), "snapshot", |t| TrackerTask::Snapshot {
                connections: t.local_snapshot(),
            });
            send_later(&table, member.clone(), "snapshot request", |_| {
                TrackerTask::SnapshotRequest
            });
        }
        self.next.member_up(member);
    }

    fn member_down(&self, member: MemberId, designated: bool) {
        if let Some(table) = self.table.upgrade() {
            table.purge(&member);
        }
        self.next.member_down(member, designated);
    }

    fn gap(&self, from: MemberId, missing: u64) {
        if let Some(table) = self.table.upgrade() {
            // Announcements were lost: ask for the whole table again.
            send_later(&table, from.clone(), "snapshot request", |_| {
                TrackerTask::SnapshotRequest
            });
        }
        self.next.gap(from, missing);
    }
}

impl Cluster for TrackedCluster {
    fn local_member(&self) -> &MemberId {
        self.cluster.local_member()
    }
    fn members(&self) -> Vec<MemberId> {
        self.cluster.members()
    }
    fn status(&self, member: &MemberId) -> MemberStatus {
        self.cluster.status(member)
    }
    async fn start(&self, events: Arc<dyn ClusterEvents>) -> CoreResult<()> {
        let events = Arc::new(TrackerEvents {
            table: Arc::downgrade(&self.table),
            next: events,
        });
        self.cluster.start(events).await
    }
    async fn stop(&self) -> CoreResult<()> {
        self.cluster.stop().await
    }
    async fn send_to(&self, member: &MemberId, task: ClusterTask) -> CoreResult<()> {
        self.cluster.send_to(member, task).await
    }
    async fn send_to_others(&self, task: ClusterTask) -> CoreResult<()> {
        self.cluster.send_to_others(task).await
    }
    async fn send_to_all(&self, task: ClusterTask) -> CoreResult<()> {
        self.cluster.send_to_all(task).await
    }
    async fn interest(&self, topic: &Topic, on: bool) -> CoreResult<()> {
        self.cluster.interest(topic, on).await
    }
    async fn send_to_interested(&self, topic: &Topic, task: ClusterTask) -> CoreResult<()> {
        self.cluster.send_to_interested(topic, task).await
    }
    fn is_healthy(&self) -> bool {
        self.cluster.is_healthy()
    }
    fn stats(&self) -> ClusterStats {
        self.cluster.stats()
    }
    fn designated_handler(&self, failed: &MemberId) -> Option<MemberId> {
        self.cluster.designated_handler(failed)
    }
}

impl ClusterTracker {
    /// Changes the local table and announces the change, in order with every other change.
    async fn local_change(
        &self,
        change: impl FnOnce(&mut Members),
        announce: Option<TrackerTask>,
    ) -> CoreResult<()> {
        let _order = self.table.order.lock().await;
        change(&mut self.table.write());
        if let Some(task) = announce
            && self.table.cluster.members().len() > 1
        {
            self.table.cluster.send_to_others(task.to_task()?).await?;
        }
        Ok(())
    }
}

impl ClientTracker for ClusterTracker {
    async fn connected(&self, client: &Client) -> CoreResult<()> {
        let announce = (client.member == self.table.local).then(|| TrackerTask::Connected {
            connection: client.connection.to_string(),
            session: client.session.to_string(),
            user: thywill_core::tracked_user(client).map(str::to_owned),
        });
        self.local_change(
            |t| {
                t.insert_client(client);
            },
            announce,
        )
        .await
    }

    async fn disconnected(&self, client: &Client) -> CoreResult<()> {
        let announce = (client.member == self.table.local).then(|| TrackerTask::Disconnected {
            connection: client.connection.to_string(),
        });
        self.local_change(
            |t| {
                t.remove(&client.member, &client.connection);
            },
            announce,
        )
        .await
    }

    async fn member_of(&self, connection: &ConnectionId) -> CoreResult<Option<MemberId>> {
        Ok(self.table.read().member_of(connection))
    }

    async fn connections_of_session(&self, session: &SessionId) -> CoreResult<Vec<(ConnectionId, MemberId)>> {
        Ok(self.table.read().connections_of_session(session))
    }

    async fn for_each_connection_of_session(
        &self,
        session: &SessionId,
        visit: &mut (dyn FnMut(&ConnectionId, &MemberId) + Send),
    ) -> CoreResult<()> {
        for (connection, member) in self.table.read().session_connections(session) {
            visit(connection, member);
        }
        Ok(())
    }

    async fn snapshot(&self) -> CoreResult<BTreeMap<MemberId, MemberClients>> {
        Ok(self.table.read().members().clone())
    }

    async fn client_of(&self, connection: &ConnectionId) -> CoreResult<Option<Client>> {
        Ok(self.table.read().client_of(connection))
    }

    /// The entries purged when `member` went down (one call per down event); a member purged by
    /// hand (no down event pending) is removed from the table now.
    async fn purge_member(&self, member: &MemberId) -> CoreResult<MemberClients> {
        let stashed = self
            .table
            .purged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(member)
            .and_then(VecDeque::pop_front);
        let removed = match stashed {
            Some(s) => s,
            None => self.table.write().remove_member(member).unwrap_or_default(),
        };
        Ok(removed)
    }

    fn set_listener(&self, listener: Arc<dyn TrackerListener>) {
        *self
            .table
            .listener
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(listener);
    }
}
