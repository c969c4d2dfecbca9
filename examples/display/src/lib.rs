//! The Display application: the cluster talking to itself. The page has one column per member
//! with that member's live connection ids and the chatter it observes, timestamped: clients
//! connecting to and disconnecting from other members, members going down and up, and the
//! client tracker's table exchanges.
//!
//! Every connection is subscribed to the channel [`CHANNEL`]; every message below goes to it
//! (so to every page on every member), with the sending member as `clusterMemberId`:
//!
//! | `type` | payload | sent |
//! |---|---|---|
//! | `connectionList` | `connections: {member: [ids]}` (every member, from the cluster-wide tracker) | to a new connection only |
//! | `connection` | `connectionId`, `clusterMemberId` | by the member a client connected to |
//! | `disconnection` | `connectionId`, `clusterMemberId` | by the member a client disconnected from |
//! | `text` | `text`, `clusterMemberId` | by every member, for what it observes (below) |
//! | `disconnectionList` | `connections: {deadMember: [ids]}` (no `clusterMemberId`) | by the designated handler of a member that went down |
//!
//! Texts: `"<id> connected to <member>."`, `"<id> disconnected from <member>."` (clients of other
//! members), `"<member> is down."`, `"<member> is up."`, `"Request for connection data from
//! <member>"`, `"Connection data delivered from <member>"`.
//!
//! Every connection is also subscribed to [`PRESENCE_CHANNEL`], which has presence: the page
//! shows how many sessions (here: connections, as the example runs without session cookies) are
//! present cluster-wide, and the presence messages (`{"presence": ...}`, see
//! [`thywill::Application::tracks_presence`]) show it change, members' crashes included.

use serde_json::{Map, Value, json};
use thywill::resources::{ScriptValues, embed};
use thywill::{
    AppContext, Application, Builder, ChannelId, Client, Entry, Manifest, MemberClients, MemberId,
    MemberStatus, Message, ResourceKind, TrackerEvent,
};

/// Application id.
pub const APP_ID: &str = "display";
/// Base path the example is served under.
pub const BASE: &str = "/display";
/// Default port (the original's).
pub const DEFAULT_PORT: u16 = 10091;
/// The channel every connection joins.
pub const CHANNEL: &str = "display";
/// The channel with presence every connection joins too.
pub const PRESENCE_CHANNEL: &str = "display:presence";

/// Shows the cluster talking to itself; see the [crate docs](crate).
#[derive(Clone, Debug, Default)]
pub struct Display;

impl Display {
    async fn broadcast(ctx: &AppContext, data: Value) {
        if let Err(e) = ctx.send_to_channel(&ChannelId::from(CHANNEL), data, &[]).await {
            tracing::debug!(error = %e, "display message not sent");
        }
    }

    async fn text(ctx: &AppContext, text: String) {
        Self::broadcast(
            ctx,
            json!({"type": "text", "text": text, "clusterMemberId": ctx.member().as_str()}),
        )
        .await;
    }

    /// Every member's connection ids (every configured member present, possibly empty).
    async fn connection_list(ctx: &AppContext) -> Map<String, Value> {
        let mut list: Map<String, Value> = ctx.members().iter().map(|m| (m.to_string(), json!([]))).collect();
        match ctx.connected_clients().await {
            Ok(table) => {
                for (member, clients) in table {
                    let ids: Vec<&str> = clients.connections.keys().map(|c| c.as_str()).collect();
                    list.insert(member.to_string(), json!(ids));
                }
            }
            Err(e) => tracing::warn!(error = %e, "no connection table"),
        }
        list
    }
}

impl Application for Display {
    async fn connection(&self, ctx: &AppContext, client: &Client) {
        if let Err(e) = ctx.subscribe(&client.connection, &ChannelId::from(CHANNEL)).await {
            tracing::warn!(error = %e, "not subscribed to the display channel");
            return;
        }
        let list = json!({"type": "connectionList", "connections": Self::connection_list(ctx).await});
        if let Err(e) = ctx.send_to_connection(&client.connection, list).await {
            tracing::debug!(error = %e, "connection list not sent");
        }
        Self::broadcast(
            ctx,
            json!({
                "type": "connection",
                "connectionId": client.connection.as_str(),
                "clusterMemberId": ctx.member().as_str(),
            }),
        )
        .await;
        if let Err(e) = ctx
            .subscribe(&client.connection, &ChannelId::from(PRESENCE_CHANNEL))
            .await
        {
            tracing::warn!(error = %e, "not subscribed to the presence channel");
        }
    }

    async fn disconnection(&self, ctx: &AppContext, client: &Client) {
        Self::broadcast(
            ctx,
            json!({
                "type": "disconnection",
                "connectionId": client.connection.as_str(),
                "clusterMemberId": ctx.member().as_str(),
            }),
        )
        .await;
    }

    async fn received(&self, _ctx: &AppContext, client: &Client, _message: Message) {
        tracing::debug!(connection = %client.connection, "display pages send nothing: ignored");
    }

    async fn connection_to(&self, ctx: &AppContext, member: &MemberId, client: &Client) {
        Self::text(ctx, format!("{} connected to {member}.", client.connection)).await;
    }

    async fn disconnection_from(&self, ctx: &AppContext, member: &MemberId, client: &Client) {
        Self::text(ctx, format!("{} disconnected from {member}.", client.connection)).await;
    }

    async fn cluster_member_status(&self, ctx: &AppContext, member: &MemberId, status: MemberStatus) {
        let what = if status == MemberStatus::Up { "up" } else { "down" };
        Self::text(ctx, format!("{member} is {what}.")).await;
    }

    async fn tracker_event(&self, ctx: &AppContext, event: &TrackerEvent) {
        match event {
            TrackerEvent::SnapshotRequested { member } => {
                Self::text(ctx, format!("Request for connection data from {member}")).await;
            }
            TrackerEvent::SnapshotReceived { member, .. } => {
                Self::text(ctx, format!("Connection data delivered from {member}")).await;
            }
            _ => {}
        }
    }

    async fn cluster_member_down(&self, ctx: &AppContext, member: &MemberId, clients: &MemberClients) {
        let ids: Vec<&str> = clients.connections.keys().map(|c| c.as_str()).collect();
        tracing::warn!(%member, connections = ids.len(), "member down: sending its disconnection list");
        let mut connections = Map::new();
        connections.insert(member.to_string(), json!(ids));
        Self::broadcast(
            ctx,
            json!({"type": "disconnectionList", "connections": connections}),
        )
        .await;
    }

    fn tracks_presence(&self, channel: &ChannelId) -> bool {
        channel.as_str() == PRESENCE_CHANNEL
    }
}

/// The page (a template with the bootstrap slots) and its style; its script comes with
/// [`script`], which knows the members.
pub fn manifest() -> Manifest {
    Manifest::new()
        .entry(Entry::new("/display/", embed!("static/index.html")).kind(ResourceKind::Html))
        .entry(example_support::example_css("/display"))
        .entry(Entry::new(
            "/display/css/display.css",
            embed!("static/display.css"),
        ))
}

/// The page's script, a template rendered at start-up with the application id and the
/// members in ring order (`{{ application_id }}`, `{{ members }}`, written as JSON): the
/// original baked them into the page at start-up too.
pub fn script(members: &[MemberId]) -> Result<Manifest, thywill::Error> {
    let ids: Vec<&str> = members.iter().map(MemberId::as_str).collect();
    let values = ScriptValues::new().application(APP_ID).value("members", ids)?;
    Ok(Manifest::new().entry(
        Entry::new("/display/js/display.js", embed!("static/display.js"))
            .weight(10)
            .rendered(values),
    ))
}

/// A builder with the display application, its page and its script for these members (in
/// ring order).
pub fn builder_for(members: &[MemberId]) -> Result<Builder, thywill::Error> {
    Ok(builder()?.bootstrap(script(members)?))
}

/// A builder with the display application and its page, without its script: add
/// [`script`] once the members are known (or use [`builder_for`]).
pub fn builder() -> Result<Builder, thywill::Error> {
    Ok(thywill::Thywill::builder()
        .base_path(BASE)?
        .application(APP_ID, Display)
        .bootstrap(manifest()))
}
