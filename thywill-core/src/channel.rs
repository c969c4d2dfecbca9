//! The [`ChannelManager`] trait: persistent channels of sessions.

use crate::{BoxFuture, ChannelId, CoreResult, SessionId};

/// Channels of sessions that persist across reconnections: what a channel store implements
/// (with plain `async fn`s); the node stores it as [`DynChannelManager`].
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
    ) -> impl Future<Output = CoreResult<Vec<SessionId>>> + Send;
    /// Removes sessions from a channel and returns those that were in it (each once, in the
    /// order given): what the node reports to
    /// [`Application::sessions_removed`](crate::Application::sessions_removed).
    fn remove_sessions(
        &self,
        channel: &ChannelId,
        sessions: &[SessionId],
    ) -> impl Future<Output = CoreResult<Vec<SessionId>>> + Send;
    /// Removes every session from a channel and returns the removed ones.
    fn clear(&self, channel: &ChannelId) -> impl Future<Output = CoreResult<Vec<SessionId>>> + Send;
    /// The sessions of a channel.
    fn sessions(&self, channel: &ChannelId) -> impl Future<Output = CoreResult<Vec<SessionId>>> + Send;
    /// The channels of a session.
    fn channels_of(&self, session: &SessionId) -> impl Future<Output = CoreResult<Vec<ChannelId>>> + Send;
}

/// Object-safe form of [`ChannelManager`], implemented for every `ChannelManager`: what the node
/// stores (`Arc<dyn DynChannelManager>`). Implement [`ChannelManager`], never this.
pub trait DynChannelManager: Send + Sync + 'static {
    /// See [`ChannelManager::is_shared`].
    fn is_shared(&self) -> bool;
    /// See [`ChannelManager::add_sessions`].
    fn add_sessions<'a>(
        &'a self,
        channel: &'a ChannelId,
        sessions: &'a [SessionId],
    ) -> BoxFuture<'a, CoreResult<Vec<SessionId>>>;
    /// See [`ChannelManager::remove_sessions`].
    fn remove_sessions<'a>(
        &'a self,
        channel: &'a ChannelId,
        sessions: &'a [SessionId],
    ) -> BoxFuture<'a, CoreResult<Vec<SessionId>>>;
    /// See [`ChannelManager::clear`].
    fn clear<'a>(&'a self, channel: &'a ChannelId) -> BoxFuture<'a, CoreResult<Vec<SessionId>>>;
    /// See [`ChannelManager::sessions`].
    fn sessions<'a>(&'a self, channel: &'a ChannelId) -> BoxFuture<'a, CoreResult<Vec<SessionId>>>;
    /// See [`ChannelManager::channels_of`].
    fn channels_of<'a>(&'a self, session: &'a SessionId) -> BoxFuture<'a, CoreResult<Vec<ChannelId>>>;
}

impl<C: ChannelManager> DynChannelManager for C {
    fn is_shared(&self) -> bool {
        ChannelManager::is_shared(self)
    }
    fn add_sessions<'a>(
        &'a self,
        channel: &'a ChannelId,
        sessions: &'a [SessionId],
    ) -> BoxFuture<'a, CoreResult<Vec<SessionId>>> {
        Box::pin(ChannelManager::add_sessions(self, channel, sessions))
    }
    fn remove_sessions<'a>(
        &'a self,
        channel: &'a ChannelId,
        sessions: &'a [SessionId],
    ) -> BoxFuture<'a, CoreResult<Vec<SessionId>>> {
        Box::pin(ChannelManager::remove_sessions(self, channel, sessions))
    }
    fn clear<'a>(&'a self, channel: &'a ChannelId) -> BoxFuture<'a, CoreResult<Vec<SessionId>>> {
        Box::pin(ChannelManager::clear(self, channel))
    }
    fn sessions<'a>(&'a self, channel: &'a ChannelId) -> BoxFuture<'a, CoreResult<Vec<SessionId>>> {
        Box::pin(ChannelManager::sessions(self, channel))
    }
    fn channels_of<'a>(&'a self, session: &'a SessionId) -> BoxFuture<'a, CoreResult<Vec<ChannelId>>> {
        Box::pin(ChannelManager::channels_of(self, session))
    }
}
