//! A cluster-wide [`ClientTracker`]: every member keeps the table of who is connected where,
//! fed by announcements over the cluster.
//!
//! [`tracked`] wraps a [`Cluster`] backend and returns the wrapped cluster and its tracker;
//! give both to the node builder. The wrapper intercepts the tracker's own tasks
//! (`thywill.tracker`) before the node sees the cluster's events:
//!
//! - a local connect or disconnect is announced to the other members (`send_to_others`);
//! - when a member comes up, every member sends it a snapshot of its local connections, which
//!   the receiver merges into its table;
//! - when a member goes down, the node purges its entries (through
//!   [`ClientTracker::purge_member`]) and tells the designated handler's applications.
//!
//! Announcements travel in per-sender order, so a connect is always applied before its
//! disconnect. Lost announcements (a cluster gap) are not repaired until the member restarts;
//! a later version may re-request snapshots on gaps.
//!
//! ```no_run
//! # fn f(cluster: thywill_transport::local::LocalCluster) {
//! let (cluster, tracker) = thywill_transport::tracker::tracked(cluster);
//! // Thywill::builder().cluster(cluster).tracker(tracker)
//! # let _ = (cluster, tracker); }
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock, Weak};

use serde::{Deserialize, Serialize};
use thywill_core::{
    BoxFuture, Client, ClientTracker, Cluster, ClusterEvents, ClusterTask, ConnectionId, CoreResult,
    MemberClients, MemberId, MemberStatus, SessionId, Task,
};

/// Cluster task of the tracker.
#[derive(Debug, Serialize, Deserialize)]
enum TrackerTask {
    /// A client connected to the sender.
    Connected { connection: String, session: String },
    /// A client disconnected from the sender.
    Disconnected { connection: String },
    /// The sender's local connections, each with its session.
    Snapshot { connections: Vec<(String, String)> },
}

impl Task for TrackerTask {
    const NAME: &'static str = "thywill.tracker";
}

struct Table {
    local: MemberId,
    cluster: Arc<dyn Cluster>,
    members: RwLock<BTreeMap<MemberId, MemberClients>>,
}

impl Table {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<MemberId, MemberClients>> {
        self.members.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<MemberId, MemberClients>> {
        self.members.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn insert(&self, member: &MemberId, connection: ConnectionId, session: SessionId) {
        self.write()
            .entry(member.clone())
            .or_default()
            .connections
            .insert(connection, session);
    }

    fn remove(&self, member: &MemberId, connection: &ConnectionId) {
        if let Some(mc) = self.write().get_mut(member) {
            mc.connections.remove(connection);
        }
    }

    fn local_snapshot(&self) -> Vec<(String, String)> {
        self.read()
            .get(&self.local)
            .map(|mc| {
                mc.connections
                    .iter()
                    .map(|(c, s)| (c.to_string(), s.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }
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
            .field("members", &self.table.read().len())
            .finish()
    }
}

/// A [`Cluster`] wrapped so that the tracker sees its tasks and events first. Made by
/// [`tracked`].
pub struct TrackedCluster {
    cluster: Arc<dyn Cluster>,
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
    pub fn inner(&self) -> &Arc<dyn Cluster> {
        &self.cluster
    }
}

/// Wraps a cluster backend with a cluster-wide client tracker.
pub fn tracked<C: Cluster>(cluster: C) -> (TrackedCluster, ClusterTracker) {
    tracked_arc(Arc::new(cluster))
}

/// [`tracked`] for a backend already shared (to keep a handle on it, for health or gaps).
pub fn tracked_arc(cluster: Arc<dyn Cluster>) -> (TrackedCluster, ClusterTracker) {
    let table = Arc::new(Table {
        local: cluster.local_member().clone(),
        cluster: cluster.clone(),
        members: RwLock::new(BTreeMap::new()),
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
        match decoded {
            Ok(TrackerTask::Connected { connection, session }) => {
                table.insert(&from, connection.into(), session.into());
            }
            Ok(TrackerTask::Disconnected { connection }) => table.remove(&from, &connection.into()),
            Ok(TrackerTask::Snapshot { connections }) => {
                for (c, s) in connections {
                    table.insert(&from, c.into(), s.into());
                }
            }
            Err(e) => tracing::warn!(%from, error = %e, "bad tracker task"),
        }
    }

    fn member_up(&self, member: MemberId) {
        if let Some(table) = self.table.upgrade() {
            let snapshot = TrackerTask::Snapshot {
                connections: table.local_snapshot(),
            };
            match snapshot.to_task() {
                Ok(task) => {
                    let cluster = table.cluster.clone();
                    let to = member.clone();
                    tokio::spawn(async move {
                        if let Err(e) = cluster.send_to(&to, task).await {
                            tracing::warn!(member = %to, error = %e, "tracker snapshot not sent");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "tracker snapshot not encoded"),
            }
        }
        self.next.member_up(member);
    }

    fn member_down(&self, member: MemberId, designated: bool) {
        self.next.member_down(member, designated);
    }

    fn gap(&self, from: MemberId, missing: u64) {
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
    fn start(&self, events: Arc<dyn ClusterEvents>) -> BoxFuture<'_, CoreResult<()>> {
        let events = Arc::new(TrackerEvents {
            table: Arc::downgrade(&self.table),
            next: events,
        });
        self.cluster.start(events)
    }
    fn stop(&self) -> BoxFuture<'_, CoreResult<()>> {
        self.cluster.stop()
    }
    fn send_to(&self, member: &MemberId, task: ClusterTask) -> BoxFuture<'_, CoreResult<()>> {
        self.cluster.send_to(member, task)
    }
    fn send_to_others(&self, task: ClusterTask) -> BoxFuture<'_, CoreResult<()>> {
        self.cluster.send_to_others(task)
    }
    fn send_to_all(&self, task: ClusterTask) -> BoxFuture<'_, CoreResult<()>> {
        self.cluster.send_to_all(task)
    }
    fn is_healthy(&self) -> bool {
        self.cluster.is_healthy()
    }
    fn designated_handler(&self, failed: &MemberId) -> Option<MemberId> {
        self.cluster.designated_handler(failed)
    }
}

impl ClusterTracker {
    /// Tells the other members; a failure (cluster stopped, queue full) is logged, not
    /// returned: the local table is right, and the others purge this member when it goes down.
    async fn announce(&self, task: TrackerTask) -> CoreResult<()> {
        if self.table.cluster.members().len() > 1
            && let Err(e) = self.table.cluster.send_to_others(task.to_task()?).await
        {
            tracing::debug!(error = %e, "tracker announcement not sent");
        }
        Ok(())
    }
}

impl ClientTracker for ClusterTracker {
    fn connected(&self, client: &Client) -> BoxFuture<'_, CoreResult<()>> {
        let client = client.clone();
        Box::pin(async move {
            self.table
                .insert(&client.member, client.connection.clone(), client.session.clone());
            if client.member == self.table.local {
                self.announce(TrackerTask::Connected {
                    connection: client.connection.to_string(),
                    session: client.session.to_string(),
                })
                .await?;
            }
            Ok(())
        })
    }

    fn disconnected(&self, client: &Client) -> BoxFuture<'_, CoreResult<()>> {
        let client = client.clone();
        Box::pin(async move {
            self.table.remove(&client.member, &client.connection);
            if client.member == self.table.local {
                self.announce(TrackerTask::Disconnected {
                    connection: client.connection.to_string(),
                })
                .await?;
            }
            Ok(())
        })
    }

    fn member_of(&self, connection: &ConnectionId) -> BoxFuture<'_, CoreResult<Option<MemberId>>> {
        let found = self
            .table
            .read()
            .iter()
            .find(|(_, mc)| mc.connections.contains_key(connection))
            .map(|(id, _)| id.clone());
        Box::pin(std::future::ready(Ok(found)))
    }

    fn connections_of_session(
        &self,
        session: &SessionId,
    ) -> BoxFuture<'_, CoreResult<Vec<(ConnectionId, MemberId)>>> {
        let found = self
            .table
            .read()
            .iter()
            .flat_map(|(id, mc)| {
                mc.connections
                    .iter()
                    .filter(|(_, s)| *s == session)
                    .map(move |(c, _)| (c.clone(), id.clone()))
            })
            .collect();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn snapshot(&self) -> BoxFuture<'_, CoreResult<BTreeMap<MemberId, MemberClients>>> {
        Box::pin(std::future::ready(Ok(self.table.read().clone())))
    }

    fn purge_member(&self, member: &MemberId) -> BoxFuture<'_, CoreResult<MemberClients>> {
        let removed = self.table.write().remove(member).unwrap_or_default();
        Box::pin(std::future::ready(Ok(removed)))
    }
}
