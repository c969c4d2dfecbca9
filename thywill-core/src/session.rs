//! The [`SessionStore`] trait: server-side session data shared with ordinary HTTP routes.

use serde_json::{Map, Value};

use crate::{BoxFuture, CoreResult, SessionId};

/// The data stored for a session: a JSON object.
pub type SessionData = Map<String, Value>;

/// Where sessions live (memory, Redis, ...).
pub trait SessionStore: Send + Sync + 'static {
    /// Loads a session; `None` if it does not exist or expired.
    fn load(&self, id: &SessionId) -> BoxFuture<'_, CoreResult<Option<SessionData>>>;
    /// Stores (creates or replaces) a session.
    fn store(&self, id: &SessionId, data: SessionData) -> BoxFuture<'_, CoreResult<()>>;
    /// Deletes a session.
    fn remove(&self, id: &SessionId) -> BoxFuture<'_, CoreResult<()>>;
}
