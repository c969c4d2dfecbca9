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

/// Where sessions live (memory, Redis, ...): what a session store implements (with plain
/// `async fn`s); the node stores it as [`DynSessionStore`].
pub trait SessionStore: Send + Sync + 'static {
    /// Whether every member of the cluster reads the same sessions. A store that is not (one
    /// per member, in memory) is refused on a cluster of several members with sessions on: a
    /// cookie issued by one member would be unknown to the next.
    fn is_shared(&self) -> bool;
    /// Loads a session; `None` if it does not exist or expired.
    fn load(&self, id: &SessionId) -> impl Future<Output = CoreResult<Option<SessionData>>> + Send;
    /// Stores (creates or replaces) a session.
    fn store(&self, id: &SessionId, data: SessionData) -> impl Future<Output = CoreResult<()>> + Send;
    /// Deletes a session, with the data every application kept in it.
    fn remove(&self, id: &SessionId) -> impl Future<Output = CoreResult<()>> + Send;

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
    ) -> impl Future<Output = CoreResult<Option<String>>> + Send {
        let _ = (id, app);
        async { Err(no_app_data()) }
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
    ) -> impl Future<Output = CoreResult<()>> + Send {
        let _ = (id, app, data);
        async { Err(no_app_data()) }
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
    ) -> impl Future<Output = CoreResult<bool>> + Send {
        let _ = (id, app, current, data);
        async { Err(no_app_data()) }
    }
}

/// Object-safe form of [`SessionStore`], implemented for every `SessionStore`: what the node
/// stores (`Arc<dyn DynSessionStore>`). Implement [`SessionStore`], never this.
pub trait DynSessionStore: Send + Sync + 'static {
    /// See [`SessionStore::is_shared`].
    fn is_shared(&self) -> bool;
    /// See [`SessionStore::load`].
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, CoreResult<Option<SessionData>>>;
    /// See [`SessionStore::store`].
    fn store<'a>(&'a self, id: &'a SessionId, data: SessionData) -> BoxFuture<'a, CoreResult<()>>;
    /// See [`SessionStore::remove`].
    fn remove<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, CoreResult<()>>;
    /// See [`SessionStore::load_app_data`].
    fn load_app_data<'a>(
        &'a self,
        id: &'a SessionId,
        app: &'a ApplicationId,
    ) -> BoxFuture<'a, CoreResult<Option<String>>>;
    /// See [`SessionStore::store_app_data`].
    fn store_app_data<'a>(
        &'a self,
        id: &'a SessionId,
        app: &'a ApplicationId,
        data: Option<String>,
    ) -> BoxFuture<'a, CoreResult<()>>;
    /// See [`SessionStore::replace_app_data`].
    fn replace_app_data<'a>(
        &'a self,
        id: &'a SessionId,
        app: &'a ApplicationId,
        current: Option<String>,
        data: Option<String>,
    ) -> BoxFuture<'a, CoreResult<bool>>;
}

impl<S: SessionStore> DynSessionStore for S {
    fn is_shared(&self) -> bool {
        SessionStore::is_shared(self)
    }
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, CoreResult<Option<SessionData>>> {
        Box::pin(SessionStore::load(self, id))
    }
    fn store<'a>(&'a self, id: &'a SessionId, data: SessionData) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(SessionStore::store(self, id, data))
    }
    fn remove<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(SessionStore::remove(self, id))
    }
    fn load_app_data<'a>(
        &'a self,
        id: &'a SessionId,
        app: &'a ApplicationId,
    ) -> BoxFuture<'a, CoreResult<Option<String>>> {
        Box::pin(SessionStore::load_app_data(self, id, app))
    }
    fn store_app_data<'a>(
        &'a self,
        id: &'a SessionId,
        app: &'a ApplicationId,
        data: Option<String>,
    ) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(SessionStore::store_app_data(self, id, app, data))
    }
    fn replace_app_data<'a>(
        &'a self,
        id: &'a SessionId,
        app: &'a ApplicationId,
        current: Option<String>,
        data: Option<String>,
    ) -> BoxFuture<'a, CoreResult<bool>> {
        Box::pin(SessionStore::replace_app_data(self, id, app, current, data))
    }
}

fn no_app_data() -> CoreError {
    CoreError::Unavailable("this session store keeps no application data".into())
}
