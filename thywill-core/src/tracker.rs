//! The [`ClientTracker`] trait: who is connected where, cluster-wide.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{BoxFuture, Client, ConnectionId, CoreResult, MemberId, SessionId};

/// The connections and sessions one member holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberClients {
    /// Connections, each with its session.
    pub connections: BTreeMap<ConnectionId, SessionId>,
}

impl MemberClients {
    /// The distinct sessions among the connections.
    pub fn sessions(&self) -> Vec<SessionId> {
        let mut s: Vec<SessionId> = self.connections.values().cloned().collect();
        s.sort();
        s.dedup();
        s
    }
}

/// What a cluster-wide tracker learnt about other members, reported in the order its table
/// changed (see [`ClientTracker::set_listener`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrackerEvent {
    /// A client connected to another member.
    ConnectedTo {
        /// The member holding the client.
        member: MemberId,
        /// The client.
        client: Client,
    },
    /// A client disconnected from another member.
    DisconnectedFrom {
        /// The member that held the client.
        member: MemberId,
        /// The client.
        client: Client,
    },
    /// Another member asked for this member's table of local connections.
    SnapshotRequested {
        /// Who asked.
        member: MemberId,
    },
    /// Another member's table of connections arrived and replaced what was known of it.
    SnapshotReceived {
        /// Whose table.
        member: MemberId,
        /// How many connections it holds.
        connections: usize,
    },
}

/// Receives a tracker's [`TrackerEvent`]s. Called synchronously, in order: implementations
/// queue the event and return at once.
pub trait TrackerListener: Send + Sync + 'static {
    /// One event.
    fn tracker_event(&self, event: TrackerEvent);
}

/// The cluster-wide table of connections and sessions: what a client tracker implements (with
/// plain `async fn`s); the node stores it as [`DynClientTracker`].
///
/// The node calls [`connected`](ClientTracker::connected) and
/// [`disconnected`](ClientTracker::disconnected) for local clients; a clustered tracker
/// announces them to other members, takes snapshots when members come up and purges a member's
/// entries when it goes down.
pub trait ClientTracker: Send + Sync + 'static {
    /// Records a client that connected to `client.member`.
    fn connected(&self, client: &Client) -> impl Future<Output = CoreResult<()>> + Send;
    /// Records a client that disconnected.
    fn disconnected(&self, client: &Client) -> impl Future<Output = CoreResult<()>> + Send;
    /// The member holding a connection, if it is connected anywhere.
    fn member_of(
        &self,
        connection: &ConnectionId,
    ) -> impl Future<Output = CoreResult<Option<MemberId>>> + Send;
    /// Every connection of a session, with the member holding each.
    fn connections_of_session(
        &self,
        session: &SessionId,
    ) -> impl Future<Output = CoreResult<Vec<(ConnectionId, MemberId)>>> + Send;
    /// The whole table, by member.
    fn snapshot(&self) -> impl Future<Output = CoreResult<BTreeMap<MemberId, MemberClients>>> + Send;
    /// Removes and returns a member's entries (on member down).
    fn purge_member(&self, member: &MemberId) -> impl Future<Output = CoreResult<MemberClients>> + Send;
    /// Registers the listener of changes learnt from other members (the node registers one at
    /// start). A tracker that only knows the local member ignores it (the default).
    fn set_listener(&self, listener: Arc<dyn TrackerListener>) {
        let _ = listener;
    }
}

/// Object-safe form of [`ClientTracker`], implemented for every `ClientTracker`: what the node
/// stores (`Arc<dyn DynClientTracker>`). Implement [`ClientTracker`], never this.
pub trait DynClientTracker: Send + Sync + 'static {
    /// See [`ClientTracker::connected`].
    fn connected<'a>(&'a self, client: &'a Client) -> BoxFuture<'a, CoreResult<()>>;
    /// See [`ClientTracker::disconnected`].
    fn disconnected<'a>(&'a self, client: &'a Client) -> BoxFuture<'a, CoreResult<()>>;
    /// See [`ClientTracker::member_of`].
    fn member_of<'a>(&'a self, connection: &'a ConnectionId) -> BoxFuture<'a, CoreResult<Option<MemberId>>>;
    /// See [`ClientTracker::connections_of_session`].
    fn connections_of_session<'a>(
        &'a self,
        session: &'a SessionId,
    ) -> BoxFuture<'a, CoreResult<Vec<(ConnectionId, MemberId)>>>;
    /// See [`ClientTracker::snapshot`].
    fn snapshot(&self) -> BoxFuture<'_, CoreResult<BTreeMap<MemberId, MemberClients>>>;
    /// See [`ClientTracker::purge_member`].
    fn purge_member<'a>(&'a self, member: &'a MemberId) -> BoxFuture<'a, CoreResult<MemberClients>>;
    /// See [`ClientTracker::set_listener`].
    fn set_listener(&self, listener: Arc<dyn TrackerListener>);
}

impl<T: ClientTracker> DynClientTracker for T {
    fn connected<'a>(&'a self, client: &'a Client) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(ClientTracker::connected(self, client))
    }
    fn disconnected<'a>(&'a self, client: &'a Client) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(ClientTracker::disconnected(self, client))
    }
    fn member_of<'a>(&'a self, connection: &'a ConnectionId) -> BoxFuture<'a, CoreResult<Option<MemberId>>> {
        Box::pin(ClientTracker::member_of(self, connection))
    }
    fn connections_of_session<'a>(
        &'a self,
        session: &'a SessionId,
    ) -> BoxFuture<'a, CoreResult<Vec<(ConnectionId, MemberId)>>> {
        Box::pin(ClientTracker::connections_of_session(self, session))
    }
    fn snapshot(&self) -> BoxFuture<'_, CoreResult<BTreeMap<MemberId, MemberClients>>> {
        Box::pin(ClientTracker::snapshot(self))
    }
    fn purge_member<'a>(&'a self, member: &'a MemberId) -> BoxFuture<'a, CoreResult<MemberClients>> {
        Box::pin(ClientTracker::purge_member(self, member))
    }
    fn set_listener(&self, listener: Arc<dyn TrackerListener>) {
        ClientTracker::set_listener(self, listener)
    }
}
