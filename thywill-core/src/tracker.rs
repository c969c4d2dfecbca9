//! The [`ClientTracker`] trait: who is connected where, cluster-wide.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{BoxFuture, Client, ConnectionId, CoreResult, Identity, MemberId, SessionId};

/// The longest user id (in bytes) a tracker records and carries to other members: a
/// connection whose identity's user is longer is tracked without its user.
pub const MAX_TRACKED_USER_LEN: usize = 256;

/// The user id a tracker records for `client`: its identity's user, when it has one no longer
/// than [`MAX_TRACKED_USER_LEN`].
pub fn tracked_user(client: &Client) -> Option<&str> {
    client
        .identity()
        .map(|i| i.user.as_str())
        .filter(|u| u.len() <= MAX_TRACKED_USER_LEN)
}

/// The connections and sessions one member holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberClients {
    /// Connections, each with its session.
    pub connections: BTreeMap<ConnectionId, SessionId>,
    /// The user of each of those connections that has one ([`tracked_user`]): the identity's
    /// user id, without its data, which stays on the member holding the connection.
    #[serde(default)]
    pub users: BTreeMap<ConnectionId, String>,
}

impl MemberClients {
    /// `connection` as a [`Client`] of `member`, its identity the user alone, if it is here.
    pub fn client(&self, member: &MemberId, connection: &ConnectionId) -> Option<Client> {
        let session = self.connections.get(connection)?;
        let identity = self.users.get(connection).map(|u| Identity::new(u.as_str()));
        Some(Client::new(connection.clone(), session.clone(), member.clone()).with_identity(identity))
    }

    /// Every connection as a [`Client`] of `member` (see [`MemberClients::client`]).
    pub fn clients(&self, member: &MemberId) -> Vec<Client> {
        self.connections
            .keys()
            .filter_map(|c| self.client(member, c))
            .collect()
    }

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
    /// Calls `visit` with every connection of a session and the member holding it, as
    /// [`connections_of_session`](ClientTracker::connections_of_session) lists them: what the
    /// node's send to a session uses, so that a tracker keeping its table in memory answers
    /// in place, without a `Vec` or a clone of each id. The default calls
    /// `connections_of_session`.
    fn for_each_connection_of_session(
        &self,
        session: &SessionId,
        visit: &mut (dyn FnMut(&ConnectionId, &MemberId) + Send),
    ) -> impl Future<Output = CoreResult<()>> + Send {
        async move {
            for (connection, member) in self.connections_of_session(session).await? {
                visit(&connection, &member);
            }
            Ok(())
        }
    }
    /// The whole table, by member.
    fn snapshot(&self) -> impl Future<Output = CoreResult<BTreeMap<MemberId, MemberClients>>> + Send;
    /// Removes and returns a member's entries (on member down).
    fn purge_member(&self, member: &MemberId) -> impl Future<Output = CoreResult<MemberClients>> + Send;
    /// The client holding `connection`, wherever it is: its member, its session and its user
    /// ([`MemberClients::client`]). The default knows none: a tracker that keeps a table
    /// answers from it.
    fn client_of(
        &self,
        connection: &ConnectionId,
    ) -> impl Future<Output = CoreResult<Option<Client>>> + Send {
        let _ = connection;
        std::future::ready(Ok(None))
    }
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
    /// See [`ClientTracker::for_each_connection_of_session`].
    fn for_each_connection_of_session<'a>(
        &'a self,
        session: &'a SessionId,
        visit: &'a mut (dyn FnMut(&ConnectionId, &MemberId) + Send),
    ) -> BoxFuture<'a, CoreResult<()>>;
    /// See [`ClientTracker::snapshot`].
    fn snapshot(&self) -> BoxFuture<'_, CoreResult<BTreeMap<MemberId, MemberClients>>>;
    /// See [`ClientTracker::purge_member`].
    fn purge_member<'a>(&'a self, member: &'a MemberId) -> BoxFuture<'a, CoreResult<MemberClients>>;
    /// See [`ClientTracker::client_of`].
    fn client_of<'a>(&'a self, connection: &'a ConnectionId) -> BoxFuture<'a, CoreResult<Option<Client>>>;
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
    fn for_each_connection_of_session<'a>(
        &'a self,
        session: &'a SessionId,
        visit: &'a mut (dyn FnMut(&ConnectionId, &MemberId) + Send),
    ) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(ClientTracker::for_each_connection_of_session(
            self, session, visit,
        ))
    }
    fn snapshot(&self) -> BoxFuture<'_, CoreResult<BTreeMap<MemberId, MemberClients>>> {
        Box::pin(ClientTracker::snapshot(self))
    }
    fn purge_member<'a>(&'a self, member: &'a MemberId) -> BoxFuture<'a, CoreResult<MemberClients>> {
        Box::pin(ClientTracker::purge_member(self, member))
    }
    fn client_of<'a>(&'a self, connection: &'a ConnectionId) -> BoxFuture<'a, CoreResult<Option<Client>>> {
        Box::pin(ClientTracker::client_of(self, connection))
    }
    fn set_listener(&self, listener: Arc<dyn TrackerListener>) {
        ClientTracker::set_listener(self, listener)
    }
}
