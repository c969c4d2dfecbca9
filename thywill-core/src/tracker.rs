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

/// The cluster-wide table of connections and sessions.
///
/// The node calls [`connected`](ClientTracker::connected) and
/// [`disconnected`](ClientTracker::disconnected) for local clients; a clustered tracker
/// announces them to other members, takes snapshots when members come up and purges a member's
/// entries when it goes down.
pub trait ClientTracker: Send + Sync + 'static {
    /// Records a client that connected to `client.member`.
    fn connected(&self, client: &Client) -> BoxFuture<'_, CoreResult<()>>;
    /// Records a client that disconnected.
    fn disconnected(&self, client: &Client) -> BoxFuture<'_, CoreResult<()>>;
    /// The member holding a connection, if it is connected anywhere.
    fn member_of(&self, connection: &ConnectionId) -> BoxFuture<'_, CoreResult<Option<MemberId>>>;
    /// Every connection of a session, with the member holding each.
    fn connections_of_session(
        &self,
        session: &SessionId,
    ) -> BoxFuture<'_, CoreResult<Vec<(ConnectionId, MemberId)>>>;
    /// The whole table, by member.
    fn snapshot(&self) -> BoxFuture<'_, CoreResult<BTreeMap<MemberId, MemberClients>>>;
    /// Removes and returns a member's entries (on member down).
    fn purge_member(&self, member: &MemberId) -> BoxFuture<'_, CoreResult<MemberClients>>;
    /// Registers the listener of changes learnt from other members (the node registers one at
    /// start). A tracker that only knows the local member ignores it (the default).
    fn set_listener(&self, listener: Arc<dyn TrackerListener>) {
        let _ = listener;
    }
}
