//! Giving any [`Application`] remote procedures: [`with_rpc`] / [`WithRpc`], and [`RpcOnly`]
//! for applications that are nothing but functions (the original's `RpcCapableApplication`).

use thywill_core::DisconnectReason;
use thywill_core::cluster::MemberStatus;
use thywill_core::{
    AppContext, AppTask, Application, ChannelId, Client, CoreResult, MemberClients, MemberId, Message,
    RpcHandler, SessionId, TrackerEvent,
};

use crate::Registry;

/// An application plus a registry: every hook goes to the application, RPC calls go to the
/// registry. RPC requests and replies are their own frames, so they never reach the
/// application's [`received`](Application::received).
///
/// Build it with [`with_rpc`].
#[derive(Debug, Clone)]
pub struct WithRpc<A> {
    app: A,
    registry: Registry,
}

/// Adds the functions of `registry` to `app`.
///
/// ```
/// use thywill_core::{AppContext, Application, Client, Message};
/// use thywill_rpc::{Registry, with_rpc};
///
/// struct Quiet;
///
/// impl Application for Quiet {
///     async fn received(&self, _: &AppContext, _: &Client, _: Message) {}
/// }
///
/// let registry = Registry::builder().function("powers.square", |x: f64| x * x).build()?;
/// let app = with_rpc(Quiet, registry);
/// assert!(app.rpc().is_some());
/// # Ok::<(), thywill_rpc::RpcBuildError>(())
/// ```
pub fn with_rpc<A: Application>(app: A, registry: Registry) -> WithRpc<A> {
    WithRpc { app, registry }
}

impl<A> WithRpc<A> {
    /// The wrapped application.
    pub fn inner(&self) -> &A {
        &self.app
    }

    /// The registry answering calls.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl<A: Application> Application for WithRpc<A> {
    async fn setup(&self, ctx: &AppContext) -> CoreResult<()> {
        self.app.setup(ctx).await
    }

    async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
        self.app.received(ctx, client, message).await;
    }

    async fn connection(&self, ctx: &AppContext, client: &Client) {
        self.app.connection(ctx, client).await;
    }

    async fn disconnection(&self, ctx: &AppContext, client: &Client, reason: DisconnectReason) {
        self.app.disconnection(ctx, client, reason).await;
    }

    async fn connection_to(&self, ctx: &AppContext, member: &MemberId, client: &Client) {
        self.app.connection_to(ctx, member, client).await;
    }

    async fn disconnection_from(&self, ctx: &AppContext, member: &MemberId, client: &Client) {
        self.app.disconnection_from(ctx, member, client).await;
    }

    async fn cluster_member_down(&self, ctx: &AppContext, member: &MemberId, clients: &MemberClients) {
        self.app.cluster_member_down(ctx, member, clients).await;
    }

    async fn cluster_member_status(&self, ctx: &AppContext, member: &MemberId, status: MemberStatus) {
        self.app.cluster_member_status(ctx, member, status).await;
    }

    async fn tracker_event(&self, ctx: &AppContext, event: &TrackerEvent) {
        self.app.tracker_event(ctx, event).await;
    }

    async fn sessions_added(&self, ctx: &AppContext, channel: &ChannelId, sessions: &[SessionId]) {
        self.app.sessions_added(ctx, channel, sessions).await;
    }

    async fn sessions_removed(&self, ctx: &AppContext, channel: &ChannelId, sessions: &[SessionId]) {
        self.app.sessions_removed(ctx, channel, sessions).await;
    }

    fn tracks_presence(&self, channel: &ChannelId) -> bool {
        self.app.tracks_presence(channel)
    }

    fn rpc(&self) -> Option<&dyn RpcHandler> {
        Some(&self.registry)
    }

    async fn task(&self, ctx: &AppContext, from: &MemberId, task: AppTask) {
        self.app.task(ctx, from, task).await;
    }
}

/// An application that offers functions and nothing else: ordinary messages are ignored.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use thywill_rpc::{Registry, RpcOnly};
///
/// let registry = Registry::builder().function("powers.square", |x: f64| x * x).build()?;
/// let node = thywill::Thywill::builder()
///     .base_path("/powers")?
///     .application("powers", RpcOnly(registry))
///     .build()
///     .await?;
/// # let _ = node; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RpcOnly(pub Registry);

impl Application for RpcOnly {
    async fn received(&self, _ctx: &AppContext, client: &Client, _message: Message) {
        tracing::debug!(connection = %client.connection, "message ignored: this application only answers rpc");
    }

    fn rpc(&self) -> Option<&dyn RpcHandler> {
        Some(&self.0)
    }
}
