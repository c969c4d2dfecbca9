//! The [`SessionStore`] trait: server-side session data shared with ordinary HTTP routes.

use serde_json::{Map, Value};

use crate::{BoxFuture, CoreResult, SessionId};

/// The data stored for a session: a JSON object.
pub type SessionData = Map<String, Value>;

/// Where sessions live (memory, Redis, ...).
pub trait SessionStore: Send + Sync + 'static {
    /// Whether every member of the cluster reads the same sessions. A store that is not (one
    /// per member, in memory) is refused on a cluster of several members with sessions on: a
    /// cookie issued by one member would be unknown to the next.
    fn is_shared(&self) -> bool;
    /// Loads a session; `None` if it does not exist or expired.
    fn load(&self, id: &SessionId) -> BoxFuture<'_, CoreResult<Option<SessionData>>>;
    /// Stores (creates or replaces) a session.
    fn store(&self, id: &SessionId, data: SessionData) -> BoxFuture<'_, CoreResult<()>>;
    /// Deletes a session.
    fn remove(&self, id: &SessionId) -> BoxFuture<'_, CoreResult<()>>;
}
