//! The [`ChannelManager`] trait: persistent channels of sessions.

use crate::{BoxFuture, ChannelId, CoreResult, SessionId};

/// Channels of sessions that persist across reconnections.
///
/// The node subscribes a session's current connections when the session is added and every
/// later connection of the session automatically.
pub trait ChannelManager: Send + Sync + 'static {
    /// Whether every member of the cluster reads the same channels. A manager that is not
    /// (one per member, in memory) is refused on a cluster of several members with sessions
    /// on: a session reconnecting to another member would not be back in its channels.
    fn is_shared(&self) -> bool;
    /// Adds sessions to a channel and returns those that were not in it yet (each once, in
    /// the order given): what the node reports to
    /// [`Application::sessions_added`](crate::Application::sessions_added).
    fn add_sessions(
        &self,
        channel: &ChannelId,
        sessions: &[SessionId],
    ) -> BoxFuture<'_, CoreResult<Vec<SessionId>>>;
    /// Removes sessions from a channel and returns those that were in it (each once, in the
    /// order given): what the node reports to
    /// [`Application::sessions_removed`](crate::Application::sessions_removed).
    fn remove_sessions(
        &self,
        channel: &ChannelId,
        sessions: &[SessionId],
    ) -> BoxFuture<'_, CoreResult<Vec<SessionId>>>;
    /// Removes every session from a channel and returns the removed ones.
    fn clear(&self, channel: &ChannelId) -> BoxFuture<'_, CoreResult<Vec<SessionId>>>;
    /// The sessions of a channel.
    fn sessions(&self, channel: &ChannelId) -> BoxFuture<'_, CoreResult<Vec<SessionId>>>;
    /// The channels of a session.
    fn channels_of(&self, session: &SessionId) -> BoxFuture<'_, CoreResult<Vec<ChannelId>>>;
}
