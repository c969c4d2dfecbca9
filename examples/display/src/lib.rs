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
//!
//! Members also talk to each other with application tasks, as the original's headline example
//! did (`sendTo("beta", task)` and a task event): every [`ASK_EVERY`] each member asks the next
//! member in ring order (itself when alone) how many connections it holds ([`HowMany`]); the
//! asked member answers with its own count ([`Count`], see [`thywill::Application::task`]),
//! and the asker tells every page, on the channel [`COUNTS_CHANNEL`]:
//!
//! | `type` | payload | sent |
//! |---|---|---|
//! | `connectionCount` | `member` (the asked one), `connections`, `clusterMemberId` (the asker) | by the asker, when the answer arrives |
//! | `connectionCount` | `member`, `error` (why it could not be asked: down, not up yet), `clusterMemberId` | by the asker, when the ask is refused |

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use thywill::DisconnectReason;
use thywill::resources::{ScriptValues, embed};
use thywill::{
    AppContext, AppTask, Application, Builder, ChannelId, Client, CoreError, Entry, Manifest, MemberClients,
    MemberId, MemberStatus, Message, ResourceKind, Task, TrackerEvent,
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
/// The channel of the connection counts members ask each other for (joined last, so that a
/// new connection's first messages are its connection list and its own announcement).
pub const COUNTS_CHANNEL: &str = "display:counts";
/// How often each member asks the next one for its connection count.
pub const ASK_EVERY: Duration = Duration::from_secs(1);

/// Application task: "how many connections do you hold?"
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct HowMany;

impl Task for HowMany {
    const NAME: &'static str = "display.how-many";
}

/// Application task: the answer to [`HowMany`], the sender's own count.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Count {
    /// Connections the sender holds.
    pub connections: usize,
}

impl Task for Count {
    const NAME: &'static str = "display.count";
}

/// Shows the cluster talking to itself; see the [crate docs](crate).
#[derive(Clone, Debug)]
pub struct Display {
    /// Connections of this member (counted by the connection hooks).
    local: Arc<AtomicUsize>,
    ask_every: Duration,
}

impl Default for Display {
    fn default() -> Self {
        Self {
            local: Arc::default(),
            ask_every: ASK_EVERY,
        }
    }
}

impl Display {
    /// Asks the next member for its connection count every `every` (instead of [`ASK_EVERY`]).
    pub fn asking_every(mut self, every: Duration) -> Self {
        self.ask_every = every;
        self
    }

    /// The member after this one in ring order (this one when alone).
    fn next_member(ctx: &AppContext) -> MemberId {
        let members = ctx.members();
        members
            .iter()
            .position(|m| m == ctx.member())
            .and_then(|i| members.get((i + 1) % members.len()))
            .cloned()
            .unwrap_or_else(|| ctx.member().clone())
    }

    /// Asks `member` for its connection count every `every`, until the node shuts down.
    async fn ask_around(ctx: AppContext, member: MemberId, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match ctx.send_task_to(&member, &HowMany).await {
                Ok(()) => {}
                Err(CoreError::ShuttingDown) => break,
                Err(e) => {
                    Self::count(&ctx, json!({"member": member.as_str(), "error": e.to_string()})).await;
                }
            }
        }
    }

    /// Tells every page a connection count (or why there is none).
    async fn count(ctx: &AppContext, mut data: Value) {
        data["type"] = json!("connectionCount");
        data["clusterMemberId"] = json!(ctx.member().as_str());
        if let Err(e) = ctx
            .send_to_channel(&ChannelId::from(COUNTS_CHANNEL), data, &[])
            .await
        {
            tracing::debug!(error = %e, "connection count not sent");
        }
    }

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
    async fn setup(&self, ctx: &AppContext) -> thywill::core::CoreResult<()> {
        tokio::spawn(Self::ask_around(
            ctx.clone(),
            Self::next_member(ctx),
            self.ask_every,
        ));
        Ok(())
    }

    async fn task(&self, ctx: &AppContext, from: &MemberId, task: AppTask) {
        if let Some(asked) = task.decode::<HowMany>() {
            if let Err(e) = asked {
                tracing::warn!(%from, error = %e, "undecodable connection count request");
                return;
            }
            let count = Count {
                connections: self.local.load(Ordering::Relaxed),
            };
            if let Err(e) = ctx.send_task_to(from, &count).await {
                tracing::debug!(%from, error = %e, "connection count not answered");
            }
        } else if let Some(answer) = task.decode::<Count>() {
            match answer {
                Ok(count) => {
                    Self::count(
                        ctx,
                        json!({"member": from.as_str(), "connections": count.connections}),
                    )
                    .await;
                }
                Err(e) => tracing::warn!(%from, error = %e, "undecodable connection count"),
            }
        } else {
            tracing::warn!(%from, task = task.name(), "unknown display task dropped");
        }
    }

    async fn connection(&self, ctx: &AppContext, client: &Client) {
        self.local.fetch_add(1, Ordering::Relaxed);
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
        if let Err(e) = ctx
            .subscribe(&client.connection, &ChannelId::from(COUNTS_CHANNEL))
            .await
        {
            tracing::warn!(error = %e, "not subscribed to the counts channel");
        }
    }

    async fn disconnection(&self, ctx: &AppContext, client: &Client, _reason: DisconnectReason) {
        let _ = self
            .local
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
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
    builder_with(Display::default())
}

/// [`builder`] with this instance of the application (to ask more often, say).
pub fn builder_with(display: Display) -> Result<Builder, thywill::Error> {
    Ok(thywill::Thywill::builder()
        .base_path(BASE)?
        .application(APP_ID, display)
        .bootstrap(manifest()))
}
