//! Several nodes in this process, clustered through an in-memory hub
//! ([`thywill_testkit::hub`]) with cluster-wide trackers, a shared channel manager and shared
//! sessions; and `Rooms`, an application driven by JSON commands that exercises channels,
//! presence and tracker queries, recording its tracker and cluster hooks.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use thywill_core::LocalHistory;
use thywill_core::cluster::MemberStatus;
use thywill_core::protocol::ServerFrame;
use thywill_core::{
    AppContext, Application, ApplicationId, ChannelId, Client, ConnectionId, DynApplication, DynHistory,
    MemberClients, MemberId, Message, SessionId,
};
use thywill_core::{MemoryChannels, MemoryResources, MemorySessionStore};
use thywill_node::{Node, NodeParts};
use thywill_testkit::WsClient;
use thywill_testkit::hub::Hub;
use thywill_tracking::tracked;
use thywill_transport::{Edge, EdgeParts, SessionConfig, Sessions, TransportConfig};

/// What the hooks saw, one line each: `"<local>: <hook> <details>"`.
pub(crate) type Log = Arc<Mutex<Vec<String>>>;

fn record(log: &Log, line: String) {
    log.lock().unwrap_or_else(PoisonError::into_inner).push(line);
}

/// Commands (message data `{"op": ..., ...}`); every command is answered `{"done": op, ...}`
/// once carried out. Presence is on for channels named `p:*`.
pub(crate) struct Rooms {
    pub(crate) log: Log,
}

fn text<'a>(data: &'a Value, key: &str) -> &'a str {
    data.get(key).and_then(Value::as_str).unwrap_or_default()
}

impl Application for Rooms {
    async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
        let d = &message.data;
        let op = text(d, "op").to_owned();
        let channel = ChannelId::from(text(d, "channel"));
        let me = std::slice::from_ref(&client.session);
        let mut reply = json!({"done": op});
        let result = match op.as_str() {
            "join" => ctx.subscribe(&client.connection, &channel).await,
            "leave" => ctx.unsubscribe(&client.connection, &channel).await,
            "add" => ctx.add_sessions(&channel, me).await,
            "add_session" => {
                ctx.add_sessions(&channel, &[SessionId::from(text(d, "session"))])
                    .await
            }
            "remove" => ctx.remove_sessions(&channel, me).await,
            // Adds a session to a channel and says something there at once (see `interest.rs`).
            "add_and_say" => match ctx
                .add_sessions(&channel, &[SessionId::from(text(d, "session"))])
                .await
            {
                Ok(()) => {
                    ctx.send_to_channel(
                        &channel,
                        json!({"said": d["text"], "channel": channel.as_str()}),
                        &[],
                    )
                    .await
                }
                Err(e) => Err(e),
            },
            // Channel events and session data (see `channel_events.rs`, `session_data.rs`).
            "add_many" | "remove_many" => {
                let sessions: Vec<SessionId> = d["sessions"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).map(SessionId::from).collect())
                    .unwrap_or_default();
                if op == "add_many" {
                    ctx.add_sessions(&channel, &sessions).await
                } else {
                    ctx.remove_sessions(&channel, &sessions).await
                }
            }
            "data_get" => ctx.session_data::<Value>(&client.session).await.map(|v| {
                reply["data"] = v.unwrap_or(Value::Null);
            }),
            "data_set" => ctx.set_session_data(&client.session, &d["value"]).await,
            "data_remove" => ctx.remove_session_data(&client.session).await,
            "clear" => ctx.clear_channel(&channel).await.map(|removed| {
                reply["cleared"] = json!(removed.iter().map(SessionId::as_str).collect::<Vec<_>>());
            }),
            "say" => {
                let exclude = if d["others"] == true {
                    vec![client.connection.clone()]
                } else {
                    Vec::new()
                };
                ctx.send_to_channel(
                    &channel,
                    json!({"said": d["text"], "channel": channel.as_str()}),
                    &exclude,
                )
                .await
            }
            "tell" => {
                ctx.send_to_session(&SessionId::from(text(d, "session")), json!({"told": d["text"]}))
                    .await
            }
            "presence" => ctx.presence(&channel).await.map(|p| {
                reply["present"] = json!(p.iter().map(SessionId::as_str).collect::<Vec<_>>());
            }),
            "table" => ctx.connected_clients().await.map(|t| {
                let t: serde_json::Map<String, Value> = t
                    .iter()
                    .map(|(m, mc)| {
                        let conns: Vec<&str> = mc.connections.keys().map(ConnectionId::as_str).collect();
                        (m.to_string(), json!(conns))
                    })
                    .collect();
                reply["table"] = Value::Object(t);
            }),
            "channels" => ctx.session_channels(&client.session).await.map(|c| {
                reply["channels"] = json!(c.iter().map(ChannelId::as_str).collect::<Vec<_>>());
            }),
            "connected" => {
                let session = SessionId::from(text(d, "session"));
                let connection = ConnectionId::from(text(d, "connection"));
                match (
                    ctx.is_session_connected(&session).await,
                    ctx.connections_of_session(&session).await,
                    ctx.member_of(&connection).await,
                ) {
                    (Ok(s), Ok(conns), Ok(member)) => {
                        reply["session"] = json!(s);
                        reply["connections"] = json!(conns.len());
                        reply["member"] = json!(member.map(|m| m.to_string()));
                        Ok(())
                    }
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
                }
            }
            other => {
                reply["error"] = json!(format!("unknown op {other}"));
                Ok(())
            }
        };
        if let Err(e) = result {
            reply["error"] = json!(e.to_string());
        }
        let _ = ctx.send_to_connection(&client.connection, reply).await;
    }

    async fn connection_to(&self, ctx: &AppContext, member: &MemberId, client: &Client) {
        record(
            &self.log,
            format!("{}: connection_to {member} {}", ctx.member(), client.connection),
        );
    }

    async fn disconnection_from(&self, ctx: &AppContext, member: &MemberId, client: &Client) {
        record(
            &self.log,
            format!(
                "{}: disconnection_from {member} {}",
                ctx.member(),
                client.connection
            ),
        );
    }

    async fn cluster_member_down(&self, ctx: &AppContext, member: &MemberId, clients: &MemberClients) {
        record(
            &self.log,
            format!(
                "{}: member_down {member} connections={} sessions={}",
                ctx.member(),
                clients.connections.len(),
                clients.sessions().len()
            ),
        );
    }

    async fn cluster_member_status(&self, ctx: &AppContext, member: &MemberId, status: MemberStatus) {
        record(&self.log, format!("{}: status {member} {status:?}", ctx.member()));
    }

    async fn sessions_added(&self, ctx: &AppContext, channel: &ChannelId, sessions: &[SessionId]) {
        record(
            &self.log,
            format!("{}: sessions_added {channel} {}", ctx.member(), joined(sessions)),
        );
    }

    async fn sessions_removed(&self, ctx: &AppContext, channel: &ChannelId, sessions: &[SessionId]) {
        record(
            &self.log,
            format!(
                "{}: sessions_removed {channel} {}",
                ctx.member(),
                joined(sessions)
            ),
        );
    }

    fn tracks_presence(&self, channel: &ChannelId) -> bool {
        channel.as_str().starts_with("p:")
    }
}

/// Session ids joined by commas, in the order given.
fn joined(sessions: &[SessionId]) -> String {
    sessions
        .iter()
        .map(SessionId::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

/// A second application of every member, to show that applications' session data is kept
/// apart (driven through [`Node::context`] by the tests).
pub(crate) struct Notes;

impl Application for Notes {
    async fn received(&self, _: &AppContext, _: &Client, _: Message) {}
}

/// One served member.
pub(crate) struct Member {
    pub(crate) id: MemberId,
    pub(crate) node: Node,
    pub(crate) edge: Edge,
    pub(crate) url: String,
    pub(crate) serving: tokio::task::JoinHandle<()>,
}

/// Members of one hub, with shared sessions and channels.
pub(crate) struct Cluster {
    pub(crate) hub: Hub,
    pub(crate) members: Vec<Member>,
    pub(crate) log: Log,
    channels: Arc<MemoryChannels>,
    pub(crate) sessions: Sessions,
    /// Makes each member's history (a fresh in-memory one by default).
    history: HistoryFactory,
    /// How long members stay interested in a channel after its last local subscriber left.
    pub(crate) interest_linger: Duration,
}

/// Makes a member's history.
pub(crate) type HistoryFactory = Arc<dyn Fn() -> Arc<dyn DynHistory> + Send + Sync>;

impl Cluster {
    /// Starts a node for each member id, in order.
    pub(crate) async fn start(ids: &[&str]) -> anyhow::Result<Cluster> {
        Self::start_with_history(ids, Arc::new(|| Arc::new(LocalHistory::default()))).await
    }

    /// Members whose histories `history` makes.
    pub(crate) async fn start_with_history(ids: &[&str], history: HistoryFactory) -> anyhow::Result<Cluster> {
        Self::start_with(
            ids,
            history,
            thywill_node::NodeConfig::default().interest_linger(),
        )
        .await
    }

    /// Members whose histories `history` makes, which withdraw their interest in a channel
    /// `interest_linger` after its last local subscriber left.
    pub(crate) async fn start_with(
        ids: &[&str],
        history: HistoryFactory,
        interest_linger: Duration,
    ) -> anyhow::Result<Cluster> {
        let config = SessionConfig::new([9u8; 32])?;
        let mut c = Cluster {
            hub: Hub::new(ids.iter().copied()),
            members: Vec::new(),
            log: Arc::new(Mutex::new(Vec::new())),
            channels: Arc::new(MemoryChannels::new()),
            sessions: Sessions::new(config, Arc::new(MemorySessionStore::new())),
            history,
            interest_linger,
        };
        for id in ids {
            let m = c.start_member(id).await?;
            c.members.push(m);
        }
        Ok(c)
    }

    /// Starts (or starts again) member `id`.
    pub(crate) async fn start_member(&self, id: &str) -> anyhow::Result<Member> {
        let (cluster, tracker) = tracked(self.hub.member(id));
        let applications: Vec<(ApplicationId, Arc<dyn DynApplication>)> = vec![
            (
                "rooms".into(),
                Arc::new(Rooms {
                    log: self.log.clone(),
                }),
            ),
            ("notes".into(), Arc::new(Notes)),
        ];
        let config = TransportConfig::default().with_base_path("/t")?;
        let node = Node::start(NodeParts {
            config: crate::support::node_config(&config)?.with_interest_linger(self.interest_linger),
            applications,
            cluster: Arc::new(cluster),
            tracker: Arc::new(tracker),
            channels: self.channels.clone(),
            session_store: Some(self.sessions.store().clone()),
            history: (self.history)(),
            caches: Arc::new(thywill_core::MemoryCaches::new()),
        })
        .await?;
        let edge = Edge::start(EdgeParts {
            config,
            node: Arc::new(node.clone()),
            resources: Arc::new(MemoryResources::new()),
            sessions: Some(self.sessions.clone()),
        })
        .await?;
        let (addr, serving) = edge.clone().bind(([127, 0, 0, 1], 0).into()).await?;
        Ok(Member {
            id: MemberId::from(id),
            node,
            edge,
            url: format!("ws://{addr}/t/ws"),
            serving: tokio::spawn(serving),
        })
    }

    /// A new browser session: its id and its `Cookie` header value.
    pub(crate) async fn session(&self) -> anyhow::Result<(SessionId, String)> {
        let id = self.sessions.create().await?;
        let cookie = format!("thywill.sid={}", self.sessions.config().sign(&id));
        Ok((id, cookie))
    }

    /// Opens a tab of the session with `cookie` on member `i`.
    pub(crate) async fn connect(&self, i: usize, cookie: &str) -> anyhow::Result<Tab> {
        Ok(Tab {
            ws: WsClient::connect_with_cookie(&self.members[i].url, cookie).await?,
            backlog: Default::default(),
        })
    }

    /// Every line of the hooks' log so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits until the log has a line containing every one of `parts`.
    pub(crate) async fn logged(&self, parts: &[&str]) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
        loop {
            if let Some(l) = self
                .lines()
                .into_iter()
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return Ok(l);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("no log line with {parts:?}; log: {:#?}", self.lines());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Kills member `i` (the hub tells the others at once).
    pub(crate) fn kill(&self, i: usize) {
        let m = &self.members[i];
        self.hub.kill(m.id.clone());
        m.edge.shutdown();
        m.serving.abort();
    }
}

/// A browser tab: a protocol client whose `rooms` messages are kept until a wait asks for
/// them (a wait takes the first matching one and leaves the others).
pub(crate) struct Tab {
    pub(crate) ws: WsClient,
    backlog: std::collections::VecDeque<Value>,
}

impl Tab {
    /// The connection id.
    pub(crate) fn connection(&self) -> String {
        self.ws.connection.to_string()
    }

    /// Closes the connection.
    pub(crate) async fn close(self) {
        self.ws.close().await;
    }
}

/// The data of the first `rooms` message on `t` satisfying `pred` (kept or new).
pub(crate) async fn next(t: &mut Tab, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    if let Some(i) = t.backlog.iter().position(&pred) {
        return Ok(t.backlog.remove(i).unwrap_or_default());
    }
    let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match t.ws.recv_within(left).await {
            Ok(ServerFrame::Msg { app, data, .. }) if app.as_str() == "rooms" => {
                if pred(&data) {
                    return Ok(data);
                }
                t.backlog.push_back(data);
            }
            Ok(_) => continue,
            Err(e) => anyhow::bail!("no matching message: {e}; kept: {:?}", t.backlog),
        }
    }
}

/// Sends a command and waits for its answer.
pub(crate) async fn cmd(t: &mut Tab, command: Value) -> anyhow::Result<Value> {
    let op = command["op"].clone();
    t.ws.send("rooms", command).await?;
    let answer = next(t, |d| d["done"] == op).await?;
    if let Some(e) = answer.get("error") {
        anyhow::bail!("{op}: {e}");
    }
    Ok(answer)
}

/// Asserts that no `rooms` message satisfying `pred` arrived, or arrives before a command
/// round trip completes (messages from the same member arrive in order, so the answer bounds
/// what that member sent before).
pub(crate) async fn none_before_answer(t: &mut Tab, pred: impl Fn(&Value) -> bool) -> anyhow::Result<()> {
    t.ws.send("rooms", json!({"op": "nothing"})).await?;
    next(t, |d| d["done"] == "nothing").await?;
    if let Some(d) = t.backlog.iter().find(|d| pred(d)) {
        anyhow::bail!("unexpected message {d}");
    }
    Ok(())
}

/// The session id of a tab (from its welcome frame).
pub(crate) fn session_of(t: &Tab) -> String {
    match &t.ws.welcome {
        ServerFrame::Welcome { session, .. } => session.to_string(),
        _ => String::new(),
    }
}
