//! The [`Application`] trait and the handle applications use to talk to clients.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::protocol::LoadKind;
use crate::{
    ApplicationId, BoxFuture, ChannelId, Client, ConnectionId, CoreError, CoreResult, MemberClients, MemberId,
    Message, RpcHandler, SessionId,
};

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
    fn subscribe(&self, connections: Vec<ConnectionId>, channels: Vec<ChannelId>) -> BoxFuture<'_, CoreResult<()>>;

    /// Unsubscribes connections from channels.
    fn unsubscribe(&self, connections: Vec<ConnectionId>, channels: Vec<ChannelId>) -> BoxFuture<'_, CoreResult<()>>;

    /// Tells the clients at `target` to load a resource (a [`ServerFrame::Load`] frame):
    /// progressive exposure of scripts, stylesheets and client templates.
    ///
    /// The default refuses: a client interface that cannot send control frames says so.
    ///
    /// [`ServerFrame::Load`]: crate::protocol::ServerFrame::Load
    fn load(&self, target: Target, kind: LoadKind, path: String) -> BoxFuture<'_, CoreResult<()>> {
        let _ = (target, kind, path);
        Box::pin(async { Err(CoreError::Unavailable("this client interface cannot expose resources".into())) })
    }
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

    /// Sends a message to one connection.
    pub async fn send_to_connection(&self, connection: &ConnectionId, message: impl Into<Message>) -> CoreResult<()> {
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
        self.expose_to(Target::Connection(connection.clone()), LoadKind::from_path(path), path)
            .await
    }

    /// Tells every client at `target` to load the resource at `path` as `kind`.
    pub async fn expose_to(&self, target: Target, kind: LoadKind, path: &str) -> CoreResult<()> {
        self.clients.load(target, kind, path.to_owned()).await
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
    fn received(&self, ctx: &AppContext, client: &Client, message: Message) -> impl Future<Output = ()> + Send;

    /// A client connected to this member.
    fn connection(&self, ctx: &AppContext, client: &Client) -> impl Future<Output = ()> + Send {
        let _ = (ctx, client);
        async {}
    }

    /// A client of this member disconnected.
    fn disconnection(&self, ctx: &AppContext, client: &Client) -> impl Future<Output = ()> + Send {
        let _ = (ctx, client);
        async {}
    }

    /// A client connected to another member (needs a cluster-wide client tracker).
    fn connection_to(&self, ctx: &AppContext, member: &MemberId, client: &Client) -> impl Future<Output = ()> + Send {
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

    /// The application's remote procedures, if it offers any (see the `thywill-rpc` crate).
    fn rpc(&self) -> Option<&dyn RpcHandler> {
        None
    }
}

/// Object-safe form of [`Application`], implemented for every `Application`.
///
/// The node stores applications as `Arc<dyn DynApplication>`; authors never implement this.
pub trait DynApplication: Send + Sync + 'static {
    /// See [`Application::setup`].
    fn setup<'a>(&'a self, ctx: &'a AppContext) -> BoxFuture<'a, CoreResult<()>>;
    /// See [`Application::received`].
    fn received<'a>(&'a self, ctx: &'a AppContext, client: &'a Client, message: Message) -> BoxFuture<'a, ()>;
    /// See [`Application::connection`].
    fn connection<'a>(&'a self, ctx: &'a AppContext, client: &'a Client) -> BoxFuture<'a, ()>;
    /// See [`Application::disconnection`].
    fn disconnection<'a>(&'a self, ctx: &'a AppContext, client: &'a Client) -> BoxFuture<'a, ()>;
    /// See [`Application::connection_to`].
    fn connection_to<'a>(&'a self, ctx: &'a AppContext, member: &'a MemberId, client: &'a Client) -> BoxFuture<'a, ()>;
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
    /// See [`Application::rpc`].
    fn rpc(&self) -> Option<&dyn RpcHandler>;
}

impl<A: Application> DynApplication for A {
    fn setup<'a>(&'a self, ctx: &'a AppContext) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(Application::setup(self, ctx))
    }
    fn received<'a>(&'a self, ctx: &'a AppContext, client: &'a Client, message: Message) -> BoxFuture<'a, ()> {
        Box::pin(Application::received(self, ctx, client, message))
    }
    fn connection<'a>(&'a self, ctx: &'a AppContext, client: &'a Client) -> BoxFuture<'a, ()> {
        Box::pin(Application::connection(self, ctx, client))
    }
    fn disconnection<'a>(&'a self, ctx: &'a AppContext, client: &'a Client) -> BoxFuture<'a, ()> {
        Box::pin(Application::disconnection(self, ctx, client))
    }
    fn connection_to<'a>(&'a self, ctx: &'a AppContext, member: &'a MemberId, client: &'a Client) -> BoxFuture<'a, ()> {
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
    fn rpc(&self) -> Option<&dyn RpcHandler> {
        Application::rpc(self)
    }
}
