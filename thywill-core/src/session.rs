//! The [`SessionStore`] trait: server-side session data shared with ordinary HTTP routes.

use serde_json::{Map, Value};

use crate::{ApplicationId, BoxFuture, CoreError, CoreResult, SessionId};

/// The data stored for a session: a JSON object.
pub type SessionData = Map<String, Value>;

/// The largest data one application may keep in one session: 16 KiB of JSON text.
///
/// [`AppContext::set_session_data`](crate::AppContext::set_session_data) refuses anything
/// larger with [`CoreError::Invalid`], so a store holds at most this much per application and
/// session (on top of the session's own [`SessionData`]).
pub const MAX_APP_SESSION_DATA: usize = 16 * 1024;

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
    /// Deletes a session, with the data every application kept in it.
    fn remove(&self, id: &SessionId) -> BoxFuture<'_, CoreResult<()>>;

    /// The data application `app` keeps in session `id` (JSON text, as stored by
    /// [`store_app_data`](SessionStore::store_app_data)); `None` when it keeps none or the
    /// session does not exist. Counts as a use of the session, like [`load`](SessionStore::load).
    ///
    /// Application data lives beside the session's [`SessionData`], one entry per
    /// application: [`store`](SessionStore::store) leaves it alone, and applications never
    /// overwrite each other's. The default refuses: a store that keeps no application data
    /// says so.
    fn load_app_data(
        &self,
        id: &SessionId,
        app: &ApplicationId,
    ) -> BoxFuture<'_, CoreResult<Option<String>>> {
        let _ = (id, app);
        Box::pin(async { Err(no_app_data()) })
    }

    /// Stores (`Some`) or deletes (`None`) the data application `app` keeps in session `id`,
    /// atomically with respect to other applications' data; renews the session like
    /// [`store`](SessionStore::store). [`CoreError::NotFound`] when the session does not
    /// exist (expired, or removed). Callers bound the data (see [`MAX_APP_SESSION_DATA`]).
    fn store_app_data(
        &self,
        id: &SessionId,
        app: &ApplicationId,
        data: Option<String>,
    ) -> BoxFuture<'_, CoreResult<()>> {
        let _ = (id, app, data);
        Box::pin(async { Err(no_app_data()) })
    }

    /// Compare and set: stores (`Some`) or deletes (`None`) application `app`'s data in
    /// session `id` only if it is still `current` (as [`load_app_data`](SessionStore::load_app_data)
    /// returned it; `None`: no data), atomically; `Ok(false)` when it changed meanwhile and
    /// nothing was written. Renews the session; [`CoreError::NotFound`] when it does not exist.
    /// The default refuses, like the other application data methods.
    fn replace_app_data(
        &self,
        id: &SessionId,
        app: &ApplicationId,
        current: Option<String>,
        data: Option<String>,
    ) -> BoxFuture<'_, CoreResult<bool>> {
        let _ = (id, app, current, data);
        Box::pin(async { Err(no_app_data()) })
    }
}

fn no_app_data() -> CoreError {
    CoreError::Unavailable("this session store keeps no application data".into())
}
