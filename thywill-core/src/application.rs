//! The [`Application`] trait and the handle applications use to talk to clients.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::DisconnectReason;
use crate::cache::{Cache, CacheLimits, DynCacheManager};
use crate::cluster::MemberStatus;
use crate::protocol::LoadKind;
use crate::{
    AppTask, ApplicationId, BoxFuture, ChannelId, Client, ConnectionId, CoreError, CoreResult,
    DynClientTracker, DynSessionStore, MAX_APP_SESSION_DATA, MemberClients, MemberId, Message, RpcHandler,
    SessionId, Task, TaskTarget, TrackerEvent,
};

fn unavailable<'a, T: Send + 'a>(what: &'static str) -> BoxFuture<'a, CoreResult<T>> {
    Box::pin(async move {
        Err(CoreError::Unavailable(format!(
            "this client interface has no {what}"
        )))
    })
}

/// Where a message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One connection, on whichever member holds it.
    Connection(ConnectionId),
    /// Every connection of a session, cluster-wide.
    Session(SessionId),
    /// Every connection subscribed to a channel, cluster-wide, except the listed ones.
    Channel {
        /// The channel.
        channel: ChannelId,
        /// Connections that must not receive the message (typically the sender).
        exclude: Vec<ConnectionId>,
    },
}

/// What an application can do with clients: the client interface of a node.
///
/// Implemented by the node runtime (in `thywill-transport`), which routes through the
/// configured cluster to the member holding each client.
pub trait ClientInterface: Send + Sync + 'static {
    /// The local member's id.
    fn member(&self) -> &MemberId;

    /// Sends `message` from application `app` to `target`.
    ///
    /// Delivery is in order per sender and target. An error means the message was not accepted
    /// for delivery (for example: unknown connection, node shutting down).
    fn send(&self, app: &ApplicationId, target: Target, message: Message) -> BoxFuture<'_, CoreResult<()>>;

    /// Subscribes connections to channels, wherever the connections are.
    fn subscribe(
        &self,
        connections: Vec<ConnectionId>,
        channels: Vec<ChannelId>,
    ) -> BoxFuture<'_, CoreResult<()>>;

    /// Unsubscribes connections from channels.
    fn unsubscribe(
        &self,
        connections: Vec<ConnectionId>,
        channels: Vec<ChannelId>,
    ) -> BoxFuture<'_, CoreResult<()>>;

    /// Tells the clients at `target` to load a resource (a [`ServerFrame::Load`] frame):
    /// progressive exposure of scripts, stylesheets and client templates.
    ///
    /// The default refuses: a client interface that cannot send control frames says so.
    ///
    /// [`ServerFrame::Load`]: crate::protocol::ServerFrame::Load
    fn load(&self, target: Target, kind: LoadKind, path: String) -> BoxFuture<'_, CoreResult<()>> {
        let _ = (target, kind, path);
        Box::pin(async {
            Err(CoreError::Unavailable(
                "this client interface cannot expose resources".into(),
            ))
        })
    }

    /// Every member of the cluster, in ring order (the default: the local member alone).
    fn members(&self) -> Vec<MemberId> {
        vec![self.member().clone()]
    }

    /// The cluster-wide client tracker, for connection and session queries (the default:
    /// none).
    fn tracker(&self) -> Option<&dyn DynClientTracker> {
        None
    }

    /// Adds sessions to a channel (persisted by the channel manager) and subscribes every
    /// connection of those sessions, now and whenever one connects later, on any member.
    fn add_sessions(&self, channel: ChannelId, sessions: Vec<SessionId>) -> BoxFuture<'_, CoreResult<()>> {
        let _ = (channel, sessions);
        unavailable("channel manager")
    }

    /// Removes sessions from a channel and unsubscribes their connections.
    fn remove_sessions(&self, channel: ChannelId, sessions: Vec<SessionId>) -> BoxFuture<'_, CoreResult<()>> {
        let _ = (channel, sessions);
        unavailable("channel manager")
    }

    /// Removes every session from a channel, unsubscribes their connections, and returns the
    /// sessions removed.
    fn clear_channel(&self, channel: ChannelId) -> BoxFuture<'_, CoreResult<Vec<SessionId>>> {
        let _ = channel;
        unavailable("channel manager")
    }

    /// The sessions of a channel (from the channel manager).
    fn channel_sessions(&self, channel: ChannelId) -> BoxFuture<'_, CoreResult<Vec<SessionId>>> {
        let _ = channel;
        unavailable("channel manager")
    }

    /// The channels of a session (from the channel manager).
    fn session_channels(&self, session: SessionId) -> BoxFuture<'_, CoreResult<Vec<ChannelId>>> {
        let _ = session;
        unavailable("channel manager")
    }

    /// The sessions present in a channel, cluster-wide: those with at least one connection
    /// subscribed to it on any member. Only channels some application tracks (see
    /// [`Application::tracks_presence`]) have presence.
    fn presence(&self, channel: ChannelId) -> BoxFuture<'_, CoreResult<Vec<SessionId>>> {
        let _ = channel;
        unavailable("presence")
    }

    /// The node's cache manager, as applications use it: writes through it are invalidated on
    /// the other members (see [`crate::cache`]). The default: none.
    fn caches(&self) -> CoreResult<Arc<dyn DynCacheManager>> {
        Err(CoreError::Unavailable(
            "this client interface has no cache manager".into(),
        ))
    }

    /// The node's session store, where applications keep per-session data (the default:
    /// none, as in plain mode, where a session is one connection).
    fn session_store(&self) -> Option<&dyn DynSessionStore> {
        None
    }

    /// The typed state the applications keep on `connection`, if this member holds it (state
    /// is local: it lives on the member holding the connection). The default keeps none.
    fn connection_state(&self, connection: &ConnectionId) -> Option<Arc<crate::ConnectionState>> {
        let _ = connection;
        None
    }

    /// Sends application `app`'s task to the members at `to`, where the same application
    /// receives it in [`Application::task`]. An error means it was not accepted for sending
    /// (a member that is not up, an unknown member, the node shutting down).
    fn send_task(&self, app: &ApplicationId, to: TaskTarget, task: AppTask) -> BoxFuture<'_, CoreResult<()>> {
        let _ = (app, to, task);
        unavailable("cluster tasks")
    }
}

/// Whether a resource path is one a browser resolves on the page's own site: one leading
/// `/` (not `//`), no backslash (browsers read `/\\host` as `//host`), no ASCII whitespace or
/// control character (browsers drop tabs and newlines from URLs).
pub fn is_plain_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.bytes().any(|b| b == b'\\' || b <= b' ' || b == 0x7f)
}

/// The handle an application gets in every hook: its id plus the node's client interface.
///
/// Cheap to clone.
#[derive(Clone)]
pub struct AppContext {
    app: ApplicationId,
    clients: Arc<dyn ClientInterface>,
}

impl fmt::Debug for AppContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppContext")
            .field("app", &self.app)
            .field("member", self.clients.member())
            .finish()
    }
}

impl AppContext {
    /// Binds a client interface to an application id.
    pub fn new(app: ApplicationId, clients: Arc<dyn ClientInterface>) -> Self {
        Self { app, clients }
    }

    /// This application's id.
    pub fn app(&self) -> &ApplicationId {
        &self.app
    }

    /// The local member's id.
    pub fn member(&self) -> &MemberId {
        self.clients.member()
    }

    /// The underlying client interface.
    pub fn clients(&self) -> &Arc<dyn ClientInterface> {
        &self.clients
    }

    // --- Per-connection state -------------------------------------------------------------

    fn local_state(&self, client: &Client) -> CoreResult<Arc<crate::ConnectionState>> {
        self.clients
            .connection_state(&client.connection)
            .ok_or_else(|| CoreError::NotFound(format!("local connection {}", client.connection)))
    }

    /// Keeps `value` on `client`'s connection for this application, one value per type,
    /// replacing (and returning) the previous value of that type.
    ///
    /// The state lives on the member holding the connection (it is never shared with other
    /// members) and is dropped after the `disconnection` hooks ran, so set it in
    /// `connection` and read it in `received` and `disconnection`. It is application memory:
    /// an application keeps at most [`MAX_STATES_PER_CONNECTION`](crate::MAX_STATES_PER_CONNECTION)
    /// types per connection (past that [`CoreError::Invalid`]); the size of each value is the
    /// application's to keep small. [`CoreError::NotFound`] if this member does not hold the
    /// connection (it is on another member, or closed).
    ///
    /// ```
    /// use thywill_core::{AppContext, Application, Client, Message};
    ///
    /// struct Counting;
    /// struct Count(u64);
    ///
    /// impl Application for Counting {
    ///     async fn connection(&self, ctx: &AppContext, client: &Client) {
    ///         let _ = ctx.set_state(client, Count(0));
    ///     }
    ///
    ///     async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
    ///         let n = ctx.with_state(client, |c: &mut Count| { c.0 += 1; c.0 });
    ///         let _ = ctx.send_to_connection(&client.connection, serde_json::json!(n)).await;
    ///     }
    /// }
    /// ```
    pub fn set_state<T: Send + Sync + 'static>(&self, client: &Client, value: T) -> CoreResult<Option<T>> {
        self.local_state(client)?.set(&self.app, value)
    }

    /// A copy of this application's value of type `T` on `client`'s connection (keep an
    /// `Arc<U>` to share rather than copy). `None` if there is none or the connection is not
    /// held here.
    pub fn state<T: Clone + Send + Sync + 'static>(&self, client: &Client) -> Option<T> {
        self.with_state(client, |value: &mut T| value.clone())
    }

    /// Runs `f` on this application's value of type `T` on `client`'s connection and returns
    /// its result; `None` if there is none or the connection is not held here. `f` runs under
    /// the connection's state lock: keep it short (it cannot await).
    pub fn with_state<T: Send + Sync + 'static, R>(
        &self,
        client: &Client,
        f: impl FnOnce(&mut T) -> R,
    ) -> Option<R> {
        self.local_state(client).ok()?.with(&self.app, f)
    }

    /// Removes and returns this application's value of type `T` on `client`'s connection.
    pub fn take_state<T: Send + Sync + 'static>(&self, client: &Client) -> Option<T> {
        self.local_state(client).ok()?.take(&self.app)
    }

    /// Sends a message to one connection.
    pub async fn send_to_connection(
        &self,
        connection: &ConnectionId,
        message: impl Into<Message>,
    ) -> CoreResult<()> {
        self.clients
            .send(&self.app, Target::Connection(connection.clone()), message.into())
            .await
    }

    /// Sends a message to every connection of a session.
    pub async fn send_to_session(&self, session: &SessionId, message: impl Into<Message>) -> CoreResult<()> {
        self.clients
            .send(&self.app, Target::Session(session.clone()), message.into())
            .await
    }

    /// Sends a message to every connection of user `user` (its session
    /// [`SessionId::of_user`]), on every member: for connections whose session follows the
    /// identity the authentication hook gave (the facade's `Builder::session_from_identity`);
    /// without it no connection has that session and nothing is sent.
    pub async fn send_to_user(&self, user: &str, message: impl Into<Message>) -> CoreResult<()> {
        self.send_to_session(&SessionId::of_user(user), message).await
    }

    /// Sends a message to every connection subscribed to `channel`, except `exclude`.
    pub async fn send_to_channel(
        &self,
        channel: &ChannelId,
        message: impl Into<Message>,
        exclude: &[ConnectionId],
    ) -> CoreResult<()> {
        let target = Target::Channel {
            channel: channel.clone(),
            exclude: exclude.to_vec(),
        };
        self.clients.send(&self.app, target, message.into()).await
    }

    /// Subscribes a connection to a channel.
    pub async fn subscribe(&self, connection: &ConnectionId, channel: &ChannelId) -> CoreResult<()> {
        self.clients
            .subscribe(vec![connection.clone()], vec![channel.clone()])
            .await
    }

    /// Unsubscribes a connection from a channel.
    pub async fn unsubscribe(&self, connection: &ConnectionId, channel: &ChannelId) -> CoreResult<()> {
        self.clients
            .unsubscribe(vec![connection.clone()], vec![channel.clone()])
            .await
    }

    /// Tells one connection's page to load the resource at `path` (progressive exposure); the
    /// kind follows from the extension (see [`LoadKind::from_path`]). The resource must be
    /// stored (for example in the manifest with `bootstrap: false`, or added at run time).
    pub async fn expose(&self, connection: &ConnectionId, path: &str) -> CoreResult<()> {
        self.expose_to(
            Target::Connection(connection.clone()),
            LoadKind::from_path(path),
            path,
        )
        .await
    }

    /// Tells every client at `target` to load the resource at `path` as `kind`.
    ///
    /// `path` must be a plain absolute path of this site (one leading `/`, no backslash, no
    /// whitespace or control character), which is all `thywill.js` loads; anything else is
    /// refused here already.
    pub async fn expose_to(&self, target: Target, kind: LoadKind, path: &str) -> CoreResult<()> {
        if !is_plain_path(path) {
            return Err(CoreError::Invalid(format!(
                "{path:?} is not a plain absolute path of this site"
            )));
        }
        self.clients.load(target, kind, path.to_owned()).await
    }

    /// Every member of the cluster, in ring order.
    pub fn members(&self) -> Vec<MemberId> {
        self.clients.members()
    }

    fn tracker(&self) -> CoreResult<&dyn DynClientTracker> {
        self.clients
            .tracker()
            .ok_or_else(|| CoreError::Unavailable("no client tracker".into()))
    }

    /// The member holding a connection, if it is connected anywhere in the cluster.
    pub async fn member_of(&self, connection: &ConnectionId) -> CoreResult<Option<MemberId>> {
        self.tracker()?.member_of(connection).await
    }

    /// The client holding a connection anywhere in the cluster: its member, its session and
    /// its user (the identity's user id only: the identity's data stays on the member holding
    /// the connection, where [`Client::identity`] in the hooks has it whole).
    pub async fn client_of(&self, connection: &ConnectionId) -> CoreResult<Option<Client>> {
        self.tracker()?.client_of(connection).await
    }

    /// Whether a connection is connected to any member.
    pub async fn is_connected(&self, connection: &ConnectionId) -> CoreResult<bool> {
        Ok(self.member_of(connection).await?.is_some())
    }

    /// Every connection of a session, cluster-wide, with the member holding each.
    pub async fn connections_of_session(
        &self,
        session: &SessionId,
    ) -> CoreResult<Vec<(ConnectionId, MemberId)>> {
        self.tracker()?.connections_of_session(session).await
    }

    /// Whether a session has a connection on any member.
    pub async fn is_session_connected(&self, session: &SessionId) -> CoreResult<bool> {
        Ok(!self.connections_of_session(session).await?.is_empty())
    }

    /// The whole table of connections (each with its session), by member.
    pub async fn connected_clients(&self) -> CoreResult<BTreeMap<MemberId, MemberClients>> {
        self.tracker()?.snapshot().await
    }

    /// Adds sessions to a channel: persisted, and every connection of those sessions (on any
    /// member, now and whenever one connects later) is subscribed to it.
    pub async fn add_sessions(&self, channel: &ChannelId, sessions: &[SessionId]) -> CoreResult<()> {
        self.clients
            .add_sessions(channel.clone(), sessions.to_vec())
            .await
    }

    /// Removes sessions from a channel and unsubscribes their connections.
    pub async fn remove_sessions(&self, channel: &ChannelId, sessions: &[SessionId]) -> CoreResult<()> {
        self.clients
            .remove_sessions(channel.clone(), sessions.to_vec())
            .await
    }

    /// Removes every session from a channel (unsubscribing their connections) and returns
    /// them.
    pub async fn clear_channel(&self, channel: &ChannelId) -> CoreResult<Vec<SessionId>> {
        self.clients.clear_channel(channel.clone()).await
    }

    /// The sessions of a channel.
    pub async fn channel_sessions(&self, channel: &ChannelId) -> CoreResult<Vec<SessionId>> {
        self.clients.channel_sessions(channel.clone()).await
    }

    /// The channels a session belongs to.
    pub async fn session_channels(&self, session: &SessionId) -> CoreResult<Vec<ChannelId>> {
        self.clients.session_channels(session.clone()).await
    }

    /// The sessions present in a channel cluster-wide (see [`Application::tracks_presence`]).
    pub async fn presence(&self, channel: &ChannelId) -> CoreResult<Vec<SessionId>> {
        self.clients.presence(channel.clone()).await
    }

    /// Creates the named cache with `limits` on this member (or sets the limits of the existing
    /// one) and returns it. Cache names belong to the node: applications that use one name
    /// share the cache. Call it in [`Application::setup`], or whenever the cache is needed:
    /// it is cheap.
    ///
    /// A write through the cache on any member evicts the key from every member's copy (or,
    /// with a shared store such as Redis, there is one copy). See [`crate::cache`]. A write
    /// whose invalidation could not be handed to the cluster returns the cluster's error: the
    /// write happened on this member, but another may keep its old copy until it evicts it.
    pub async fn create_cache(&self, name: &str, limits: CacheLimits) -> CoreResult<Cache> {
        let caches = self.clients.caches()?;
        caches.create(name, limits).await?;
        Ok(Cache::new(name, caches))
    }

    /// The named cache, if it was created on this member ([`CoreError::NotFound`] otherwise).
    pub fn cache(&self, name: &str) -> CoreResult<Cache> {
        let caches = self.clients.caches()?;
        match caches.limits(name) {
            Some(_) => Ok(Cache::new(name, caches)),
            None => Err(crate::cache::not_created(name)),
        }
    }

    /// Removes every value of the named cache (on every member) and forgets the cache on this
    /// member.
    pub async fn destroy_cache(&self, name: &str) -> CoreResult<()> {
        self.clients.caches()?.destroy(name).await
    }

    fn session_store(&self) -> CoreResult<&dyn DynSessionStore> {
        self.clients
            .session_store()
            .ok_or_else(|| CoreError::Unavailable("no session store: sessions are off".into()))
    }

    /// The data this application keeps in `session`, decoded as `T`; `None` when it keeps
    /// none (or the session no longer exists).
    ///
    /// Session data lives in the node's [`SessionStore`](crate::SessionStore) (in memory, or in Redis where every
    /// member sees it), one entry per application: applications never see or overwrite each
    /// other's, nor the session's own [`SessionData`](crate::SessionData). It follows the user
    /// across reconnections, to any member, for as long as the session lives. Reading counts
    /// as a use of the session (renews its expiry).
    ///
    /// Errors: [`CoreError::Unavailable`] without sessions (plain mode);
    /// [`CoreError::Codec`] when the stored data does not decode as `T`; the store's errors.
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use thywill_core::{AppContext, Application, Client, Message};
    ///
    /// /// What this application remembers of a user.
    /// #[derive(Serialize, Deserialize)]
    /// struct Profile {
    ///     name: String,
    /// }
    ///
    /// /// `{"name": N}` sets the user's name; any message is answered with a greeting.
    /// struct Greeter;
    ///
    /// impl Application for Greeter {
    ///     async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
    ///         if let Some(name) = message.data.get("name").and_then(|n| n.as_str()) {
    ///             let profile = Profile { name: name.to_owned() };
    ///             let _ = ctx.set_session_data(&client.session, &profile).await;
    ///         }
    ///         // On whichever member the browser is connected to now.
    ///         let greeting = match ctx.session_data::<Profile>(&client.session).await {
    ///             Ok(Some(profile)) => format!("Hello again, {}", profile.name),
    ///             _ => "Hello, stranger".to_owned(),
    ///         };
    ///         let _ = ctx.send_to_connection(&client.connection, serde_json::json!(greeting)).await;
    ///     }
    /// }
    /// ```
    pub async fn session_data<T: serde::de::DeserializeOwned>(
        &self,
        session: &SessionId,
    ) -> CoreResult<Option<T>> {
        let Some(json) = self.session_store()?.load_app_data(session, &self.app).await? else {
            return Ok(None);
        };
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| CoreError::Codec(format!("session data of `{}`: {e}", self.app)))
    }

    /// Stores `value` (encoded as JSON) as this application's data in `session`, replacing
    /// what it kept there; see [`session_data`](AppContext::session_data).
    ///
    /// Refused with [`CoreError::Invalid`] when the JSON is larger than
    /// [`MAX_APP_SESSION_DATA`] (16 KiB), with [`CoreError::NotFound`] when the session does
    /// not exist (any more), with [`CoreError::Unavailable`] without sessions. Two writes of
    /// the same application and session race: the last one wins (see
    /// [`update_session_data`](AppContext::update_session_data) for read-modify-write).
    pub async fn set_session_data<T: serde::Serialize + ?Sized>(
        &self,
        session: &SessionId,
        value: &T,
    ) -> CoreResult<()> {
        let json = self.encode_session_data(value)?;
        self.session_store()?
            .store_app_data(session, &self.app, Some(json))
            .await
    }

    /// Updates this application's data in `session` atomically: `f` gets the current value
    /// (`None`: none stored) and returns the new one (`None` deletes it), which is stored only
    /// if nobody changed the data meanwhile (on any member); otherwise `f` runs again on what
    /// is there now, up to 16 times, after which the update fails with
    /// [`CoreError::Unavailable`]. Returns the value stored. Errors as
    /// [`set_session_data`](AppContext::set_session_data) and
    /// [`session_data`](AppContext::session_data).
    ///
    /// ```
    /// # async fn count(ctx: &thywill_core::AppContext, session: &thywill_core::SessionId) -> thywill_core::CoreResult<()> {
    /// // Two tabs counting at the same instant both count.
    /// let visits = ctx
    ///     .update_session_data(session, |n: Option<u64>| Some(n.unwrap_or(0) + 1))
    ///     .await?;
    /// # let _ = visits; Ok(()) }
    /// ```
    pub async fn update_session_data<T, F>(&self, session: &SessionId, mut f: F) -> CoreResult<Option<T>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send,
        F: FnMut(Option<T>) -> Option<T> + Send,
    {
        const ATTEMPTS: usize = 16;
        let store = self.session_store()?;
        for _ in 0..ATTEMPTS {
            let current = store.load_app_data(session, &self.app).await?;
            let value = match &current {
                Some(json) => Some(
                    serde_json::from_str(json)
                        .map_err(|e| CoreError::Codec(format!("session data of `{}`: {e}", self.app)))?,
                ),
                None => None,
            };
            let new = f(value);
            let json = new.as_ref().map(|v| self.encode_session_data(v)).transpose()?;
            if store.replace_app_data(session, &self.app, current, json).await? {
                return Ok(new);
            }
        }
        Err(CoreError::Unavailable(format!(
            "session data of `{}` changed {ATTEMPTS} times during one update",
            self.app
        )))
    }

    /// The JSON of session data, refused past [`MAX_APP_SESSION_DATA`].
    fn encode_session_data<T: serde::Serialize + ?Sized>(&self, value: &T) -> CoreResult<String> {
        let json = serde_json::to_string(value).map_err(|e| CoreError::Codec(e.to_string()))?;
        if json.len() > MAX_APP_SESSION_DATA {
            return Err(CoreError::Invalid(format!(
                "session data of `{}` is {} bytes, above the limit of {MAX_APP_SESSION_DATA}",
                self.app,
                json.len()
            )));
        }
        Ok(json)
    }

    /// Deletes this application's data in `session` (other applications' stays).
    pub async fn remove_session_data(&self, session: &SessionId) -> CoreResult<()> {
        self.session_store()?
            .store_app_data(session, &self.app, None)
            .await
    }
}

/// Application tasks: typed messages from this application to itself on other members.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use thywill_core::{AppContext, AppTask, Application, Client, MemberId, Message, Task};
///
/// /// "How many connections do you hold?"
/// #[derive(Serialize, Deserialize)]
/// struct HowMany;
///
/// impl Task for HowMany {
///     const NAME: &'static str = "counter.how-many";
/// }
///
/// /// The answer.
/// #[derive(Serialize, Deserialize)]
/// struct Count {
///     connections: usize,
/// }
///
/// impl Task for Count {
///     const NAME: &'static str = "counter.count";
/// }
///
/// struct Counter;
///
/// impl Application for Counter {
///     async fn received(&self, ctx: &AppContext, _: &Client, _: Message) {
///         // Ask every other member; the answers arrive in `task` below.
///         if let Err(e) = ctx.send_task_to_others(&HowMany).await {
///             eprintln!("not asked: {e}");
///         }
///     }
///
///     async fn task(&self, ctx: &AppContext, from: &MemberId, task: AppTask) {
///         if let Some(Ok(HowMany)) = task.decode::<HowMany>() {
///             let count = Count { connections: 3 };
///             // A member that is down is an error, not silence.
///             let _ = ctx.send_task_to(from, &count).await;
///         } else if let Some(Ok(count)) = task.decode::<Count>() {
///             println!("{from} holds {} connections", count.connections);
///         }
///     }
/// }
/// ```
impl AppContext {
    /// Sends a task to one member's instance of this application (the local member's
    /// included). Refused with an error when the member is not up (down, or not heard from
    /// yet) or is not a member of the cluster.
    ///
    /// The task is encoded when this is called: the future does not borrow it.
    pub fn send_task_to<T: Task>(
        &self,
        member: &MemberId,
        task: &T,
    ) -> impl Future<Output = CoreResult<()>> + Send + '_ {
        self.send_task(TaskTarget::Member(member.clone()), AppTask::encode(task))
    }

    /// Sends a task to this application on every other member (those the cluster backend
    /// reaches: a member that is down misses it).
    pub fn send_task_to_others<T: Task>(&self, task: &T) -> impl Future<Output = CoreResult<()>> + Send + '_ {
        self.send_task(TaskTarget::Others, AppTask::encode(task))
    }

    /// Sends a task to this application on every member, the local one included.
    pub fn send_task_to_all<T: Task>(&self, task: &T) -> impl Future<Output = CoreResult<()>> + Send + '_ {
        self.send_task(TaskTarget::All, AppTask::encode(task))
    }

    async fn send_task(&self, to: TaskTarget, task: CoreResult<AppTask>) -> CoreResult<()> {
        self.clients.send_task(&self.app, to, task?).await
    }
}

impl From<serde_json::Value> for Message {
    fn from(data: serde_json::Value) -> Self {
        Message::new(data)
    }
}

/// A thywill application: server-side logic that clients talk to by messages.
///
/// Every hook has a default that does nothing, except [`received`](Application::received).
/// Hooks of one connection run one at a time, in the order the events happened; hooks of
/// different connections run concurrently.
///
/// ```
/// use thywill_core::{AppContext, Application, Client, Message};
///
/// /// Sends every message back to the connection it came from.
/// struct Echo;
///
/// impl Application for Echo {
///     async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
///         let _ = ctx.send_to_connection(&client.connection, message).await;
///     }
/// }
/// ```
pub trait Application: Send + Sync + 'static {
    /// Runs once before the node accepts connections.
    fn setup(&self, ctx: &AppContext) -> impl Future<Output = CoreResult<()>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// A message from a client arrived for this application.
    fn received(
        &self,
        ctx: &AppContext,
        client: &Client,
        message: Message,
    ) -> impl Future<Output = ()> + Send;

    /// A client connected to this member.
    fn connection(&self, ctx: &AppContext, client: &Client) -> impl Future<Output = ()> + Send {
        let _ = (ctx, client);
        async {}
    }

    /// A client of this member disconnected, for `reason`.
    ///
    /// Runs after every other hook of the connection (its last `received` included) has
    /// returned.
    fn disconnection(
        &self,
        ctx: &AppContext,
        client: &Client,
        reason: DisconnectReason,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, client, reason);
        async {}
    }

    /// A client connected to another member (needs a cluster-wide client tracker).
    fn connection_to(
        &self,
        ctx: &AppContext,
        member: &MemberId,
        client: &Client,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, member, client);
        async {}
    }

    /// A client disconnected from another member (needs a cluster-wide client tracker).
    fn disconnection_from(
        &self,
        ctx: &AppContext,
        member: &MemberId,
        client: &Client,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, member, client);
        async {}
    }

    /// A cluster member went down; `clients` are the connections and sessions it held.
    /// Called on the designated handler of the failed member only.
    fn cluster_member_down(
        &self,
        ctx: &AppContext,
        member: &MemberId,
        clients: &MemberClients,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, member, clients);
        async {}
    }

    /// Another member came up or went down. Called on every member (unlike
    /// [`cluster_member_down`](Application::cluster_member_down)).
    fn cluster_member_status(
        &self,
        ctx: &AppContext,
        member: &MemberId,
        status: MemberStatus,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, member, status);
        async {}
    }

    /// Something the cluster-wide client tracker learnt from another member (connections,
    /// disconnections, table snapshots). Connections and disconnections also call
    /// [`connection_to`](Application::connection_to) and
    /// [`disconnection_from`](Application::disconnection_from).
    fn tracker_event(&self, ctx: &AppContext, event: &TrackerEvent) -> impl Future<Output = ()> + Send {
        let _ = (ctx, event);
        async {}
    }

    /// Sessions were added to `channel` (by [`AppContext::add_sessions`] on any member,
    /// this one included). Called on every member, for every application, once per change,
    /// after this member subscribed its connections of those sessions.
    ///
    /// `sessions` are the ones the [`ChannelManager`](crate::ChannelManager) reports as new
    /// to the channel (each once): sessions already in it are left out, and a change that
    /// added none calls no hook. Hooks of channel changes run one at a time, in the order this
    /// member learnt of them, with the tracker and cluster hooks.
    fn sessions_added(
        &self,
        ctx: &AppContext,
        channel: &ChannelId,
        sessions: &[SessionId],
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, channel, sessions);
        async {}
    }

    /// Sessions were removed from `channel` (by [`AppContext::remove_sessions`] or
    /// [`AppContext::clear_channel`] on any member, this one included). Called like
    /// [`sessions_added`](Application::sessions_added), with the sessions that were in the
    /// channel (a session that was not is left out).
    fn sessions_removed(
        &self,
        ctx: &AppContext,
        channel: &ChannelId,
        sessions: &[SessionId],
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, channel, sessions);
        async {}
    }

    /// Whether this application wants presence on `channel`: the node then keeps, cluster-wide,
    /// which sessions have a connection subscribed to it, answers
    /// [`AppContext::presence`], and sends this application's presence messages to the
    /// channel's subscribers:
    ///
    /// | message data | when |
    /// |---|---|
    /// | `{"presence": "state", "channel": C, "sessions": [S, ...]}` | to a connection, as it subscribes: who is present |
    /// | `{"presence": "join", "channel": C, "session": S}` | to every subscriber: S became present (its first connection subscribed) |
    /// | `{"presence": "leave", "channel": C, "session": S}` | to every subscriber: S left (its last connection unsubscribed or disconnected, or the member holding it went down) |
    ///
    /// Every member must answer the same (they run the same applications). The default: no
    /// presence.
    fn tracks_presence(&self, channel: &ChannelId) -> bool {
        let _ = channel;
        false
    }

    /// The application's remote procedures, if it offers any (see the `thywill-rpc` crate).
    fn rpc(&self) -> Option<&dyn RpcHandler> {
        None
    }

    /// A task this application sent from member `from` (maybe the local member) with
    /// [`AppContext::send_task_to`] and friends; decode it with [`AppTask::decode`]. Tasks run
    /// one at a time, in the order they arrived, per application. The default drops it.
    fn task(&self, ctx: &AppContext, from: &MemberId, task: AppTask) -> impl Future<Output = ()> + Send {
        let _ = (ctx, from, task);
        async {}
    }
}

/// Object-safe form of [`Application`], implemented for every `Application`.
///
/// The node stores applications as `Arc<dyn DynApplication>`; authors never implement this.
pub trait DynApplication: Send + Sync + 'static {
    /// See [`Application::setup`].
    fn setup<'a>(&'a self, ctx: &'a AppContext) -> BoxFuture<'a, CoreResult<()>>;
    /// See [`Application::received`].
    fn received<'a>(&'a self, ctx: &'a AppContext, client: &'a Client, message: Message)
    -> BoxFuture<'a, ()>;
    /// See [`Application::connection`].
    fn connection<'a>(&'a self, ctx: &'a AppContext, client: &'a Client) -> BoxFuture<'a, ()>;
    /// See [`Application::disconnection`].
    fn disconnection<'a>(
        &'a self,
        ctx: &'a AppContext,
        client: &'a Client,
        reason: DisconnectReason,
    ) -> BoxFuture<'a, ()>;
    /// See [`Application::connection_to`].
    fn connection_to<'a>(
        &'a self,
        ctx: &'a AppContext,
        member: &'a MemberId,
        client: &'a Client,
    ) -> BoxFuture<'a, ()>;
    /// See [`Application::disconnection_from`].
    fn disconnection_from<'a>(
        &'a self,
        ctx: &'a AppContext,
        member: &'a MemberId,
        client: &'a Client,
    ) -> BoxFuture<'a, ()>;
    /// See [`Application::cluster_member_down`].
    fn cluster_member_down<'a>(
        &'a self,
        ctx: &'a AppContext,
        member: &'a MemberId,
        clients: &'a MemberClients,
    ) -> BoxFuture<'a, ()>;
    /// See [`Application::cluster_member_status`].
    fn cluster_member_status<'a>(
        &'a self,
        ctx: &'a AppContext,
        member: &'a MemberId,
        status: MemberStatus,
    ) -> BoxFuture<'a, ()>;
    /// See [`Application::tracker_event`].
    fn tracker_event<'a>(&'a self, ctx: &'a AppContext, event: &'a TrackerEvent) -> BoxFuture<'a, ()>;
    /// See [`Application::sessions_added`].
    fn sessions_added<'a>(
        &'a self,
        ctx: &'a AppContext,
        channel: &'a ChannelId,
        sessions: &'a [SessionId],
    ) -> BoxFuture<'a, ()>;
    /// See [`Application::sessions_removed`].
    fn sessions_removed<'a>(
        &'a self,
        ctx: &'a AppContext,
        channel: &'a ChannelId,
        sessions: &'a [SessionId],
    ) -> BoxFuture<'a, ()>;
    /// See [`Application::tracks_presence`].
    fn tracks_presence(&self, channel: &ChannelId) -> bool;
    /// See [`Application::rpc`].
    fn rpc(&self) -> Option<&dyn RpcHandler>;
    /// See [`Application::task`].
    fn task<'a>(&'a self, ctx: &'a AppContext, from: &'a MemberId, task: AppTask) -> BoxFuture<'a, ()>;
}

impl<A: Application> DynApplication for A {
    fn setup<'a>(&'a self, ctx: &'a AppContext) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(Application::setup(self, ctx))
    }
    fn received<'a>(
        &'a self,
        ctx: &'a AppContext,
        client: &'a Client,
        message: Message,
    ) -> BoxFuture<'a, ()> {
        Box::pin(Application::received(self, ctx, client, message))
    }
    fn connection<'a>(&'a self, ctx: &'a AppContext, client: &'a Client) -> BoxFuture<'a, ()> {
        Box::pin(Application::connection(self, ctx, client))
    }
    fn disconnection<'a>(
        &'a self,
        ctx: &'a AppContext,
        client: &'a Client,
        reason: DisconnectReason,
    ) -> BoxFuture<'a, ()> {
        Box::pin(Application::disconnection(self, ctx, client, reason))
    }
    fn connection_to<'a>(
        &'a self,
        ctx: &'a AppContext,
        member: &'a MemberId,
        client: &'a Client,
    ) -> BoxFuture<'a, ()> {
        Box::pin(Application::connection_to(self, ctx, member, client))
    }
    fn disconnection_from<'a>(
        &'a self,
        ctx: &'a AppContext,
        member: &'a MemberId,
        client: &'a Client,
    ) -> BoxFuture<'a, ()> {
        Box::pin(Application::disconnection_from(self, ctx, member, client))
    }
    fn cluster_member_down<'a>(
        &'a self,
        ctx: &'a AppContext,
        member: &'a MemberId,
        clients: &'a MemberClients,
    ) -> BoxFuture<'a, ()> {
        Box::pin(Application::cluster_member_down(self, ctx, member, clients))
    }
    fn cluster_member_status<'a>(
        &'a self,
        ctx: &'a AppContext,
        member: &'a MemberId,
        status: MemberStatus,
    ) -> BoxFuture<'a, ()> {
        Box::pin(Application::cluster_member_status(self, ctx, member, status))
    }
    fn tracker_event<'a>(&'a self, ctx: &'a AppContext, event: &'a TrackerEvent) -> BoxFuture<'a, ()> {
        Box::pin(Application::tracker_event(self, ctx, event))
    }
    fn sessions_added<'a>(
        &'a self,
        ctx: &'a AppContext,
        channel: &'a ChannelId,
        sessions: &'a [SessionId],
    ) -> BoxFuture<'a, ()> {
        Box::pin(Application::sessions_added(self, ctx, channel, sessions))
    }
    fn sessions_removed<'a>(
        &'a self,
        ctx: &'a AppContext,
        channel: &'a ChannelId,
        sessions: &'a [SessionId],
    ) -> BoxFuture<'a, ()> {
        Box::pin(Application::sessions_removed(self, ctx, channel, sessions))
    }
    fn tracks_presence(&self, channel: &ChannelId) -> bool {
        Application::tracks_presence(self, channel)
    }
    fn rpc(&self) -> Option<&dyn RpcHandler> {
        Application::rpc(self)
    }
    fn task<'a>(&'a self, ctx: &'a AppContext, from: &'a MemberId, task: AppTask) -> BoxFuture<'a, ()> {
        Box::pin(Application::task(self, ctx, from, task))
    }
}

#[cfg(test)]
mod path_tests {
    use super::is_plain_path;

    #[test]
    fn only_plain_absolute_paths_of_the_site_pass() {
        for ok in ["/a.js", "/draw/app.css", "/%5cx.js", "/a/b?c=d"] {
            assert!(is_plain_path(ok), "{ok}");
        }
        for bad in [
            "//evil.example/a.js",
            "/\\evil.example/b.js",
            "/\t/evil.example/c.js",
            "/\n/x",
            "/ x",
            "/\u{7f}x",
            "a.js",
            "https://evil.example/a.js",
            "javascript:alert(1)",
            "",
        ] {
            assert!(!is_plain_path(bad), "{bad:?}");
        }
    }
}
