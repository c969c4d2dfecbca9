//! The `node` target: a real node, in process, driven by several client connections at once
//! with arbitrary sequences of frames.
//!
//! Each input (see [`ops`]) starts a fresh node (`Node::start` with the single-member
//! defaults, a small [`LocalHistory`] and, when the input asks for it, signed-cookie sessions)
//! serving two applications: `rooms` ([`Rooms`]: channels, sessions, presence on `p:*`
//! channels, sends to channels, sessions and connections, and RPC) and `plain` (echoes).
//! Its connections run over `tokio::io::duplex` pipes through `Edge::serve_upgraded`, the
//! edge's own connection task (its IO side, the node's worker behind it). The steps open and
//! close connections and send `hello`,
//! `resume`, `msg`, `rpc`, malformed text, binary and oversized frames and pings, with tabs,
//! stream names, epochs, offsets and message ids chosen among real and hostile ones (the
//! epochs and offsets the clients received included).
//!
//! Everything runs on a current-thread runtime whose clock is paused (time jumps ahead when
//! every task waits), within bounded virtual time. Properties, for every input:
//!
//! 1. Nothing panics: not the harness, and not the node (its connection tasks catch panics and
//!    count them in `thywill_panics_total`, which must stay 0).
//! 2. What the node writes to a client is a welcome first, then frames that decode as
//!    `ServerFrame`, with `msg` sequence numbers going up by exactly one from 1; a stream
//!    message (stream, epoch, offset) is the same message whoever receives it, live or
//!    replayed; no `ack` acknowledges an id above every id the clients sent.
//! 3. After the input every connection is closed; each connection task then ends (bounded),
//!    and the node has no connection left: not in its table, not in the client tracker, not
//!    in the presence of any channel.
//! 4. The history holds no more than its bound of bytes.

pub mod ops;
pub mod seeds;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use thywill_core::protocol::{ClientFrame, ServerFrame};
use thywill_core::{
    AppContext, Application, ApplicationId, ChannelId, Client, ConnectionId, DynApplication, HistoryLimits,
    LocalCluster, LocalHistory, MemoryChannels, MemoryResources, MemorySessionStore, MemoryTracker, Message,
    Offset, SessionId,
};
use thywill_rpc::Registry;
use thywill_node::{Node, NodeConfig, NodeParts};
use thywill_transport::{Edge, EdgeParts, SessionConfig, Sessions, TransportConfig};
use tokio::io::DuplexStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::Role;

use self::ops::{
    App, Channel, Command, ConnRef, Cookie, Epoch, Frag, Id, Input, Json, Off, Op, RpcName, SessionRef, Step,
    Stream, StreamPos, Tab, Version,
};

/// Connection slots.
pub const CONNS: usize = 4;
/// Steps of one input that are carried out (the rest is ignored).
pub const MAX_STEPS: usize = 96;
/// The member's id.
pub const MEMBER: &str = "alpha";
/// The node's frame size limit (its default).
const FRAME_LIMIT: usize = crate::FRAME_LIMIT;
/// Outbound queue of a connection: small, so that a flood makes a slow consumer.
const OUTBOUND_QUEUE: usize = 64;
/// Bytes of every pipe between a client and the node.
const PIPE: usize = 64 * 1024;
/// Virtual time one step may take (a send the node does not read, say).
const STEP_TIME: Duration = Duration::from_secs(5);
/// Virtual time the connection tasks have to end once their clients closed.
const END_TIME: Duration = Duration::from_secs(120);
/// Virtual time a whole input may take.
const INPUT_TIME: Duration = Duration::from_secs(1800);

/// The history's bounds: small, so that inputs reach trimming.
pub fn history_limits() -> HistoryLimits {
    HistoryLimits {
        max_entries: 16,
        max_age: Duration::from_secs(60),
        max_stream_bytes: 4 * 1024,
        max_total_bytes: 12 * 1024,
    }
}

/// Decodes and runs one input; panics when a property does not hold.
pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(input) = Input::arbitrary(&mut u) else {
        return;
    };
    run(&input);
}

/// Runs one decoded input; panics when a property does not hold.
pub fn run(input: &Input) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => panic!("no tokio runtime: {e}"),
    };
    let outcome = runtime.block_on(async {
        tokio::time::timeout(INPUT_TIME, async {
            let mut h = Harness::start(input.sessions).await;
            for step in input.steps.iter().take(MAX_STEPS) {
                h.step(step).await;
            }
            h.finish().await
        })
        .await
    });
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(problem)) => panic!("node target: {problem}\ninput: {input:?}"),
        Err(_) => panic!(
            "node target: the input did not finish within {INPUT_TIME:?} of virtual time\ninput: {input:?}"
        ),
    }
}

/// Whether to print every step and every frame received (`THYWILL_FUZZ_TRACE` set), to see
/// what an input does.
fn trace() -> bool {
    static TRACE: std::sync::LazyLock<bool> =
        std::sync::LazyLock::new(|| std::env::var_os("THYWILL_FUZZ_TRACE").is_some());
    *TRACE
}

/// The `rooms` application: data `{"op": ..., ...}` commands, each answered `{"done": op}`
/// (with `"error"` when the node refused it). Presence is tracked on channels `p:*`; the
/// functions of [`registry`] answer its `rpc` frames.
///
/// It offers the registry itself rather than through `thywill_rpc::with_rpc`, whose wrapper
/// does not pass `tracks_presence` on (see `with_rpc_keeps_presence`).
struct Rooms {
    registry: Registry,
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
            "remove" => ctx.remove_sessions(&channel, me).await,
            "clear" => ctx.clear_channel(&channel).await.map(|_| ()),
            "say" => {
                let exclude = if d["others"] == true {
                    vec![client.connection.clone()]
                } else {
                    Vec::new()
                };
                ctx.send_to_channel(&channel, json!({"said": d["text"]}), &exclude)
                    .await
            }
            "tell" => {
                ctx.send_to_session(&SessionId::from(text(d, "session")), json!({"told": true}))
                    .await
            }
            "direct" => {
                ctx.send_to_connection(
                    &ConnectionId::from(text(d, "connection")),
                    json!({"direct": true}),
                )
                .await
            }
            "presence" => ctx.presence(&channel).await.map(|p| {
                reply["present"] = json!(p.len());
            }),
            "table" => ctx.connected_clients().await.map(|t| {
                reply["members"] = json!(t.len());
            }),
            "flood" => {
                let n = d["n"].as_u64().unwrap_or(0);
                for i in 0..n {
                    if ctx
                        .send_to_connection(&client.connection, json!({"i": i}))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            reply["error"] = json!(e.to_string());
        }
        let _ = ctx.send_to_connection(&client.connection, reply).await;
    }

    fn tracks_presence(&self, channel: &ChannelId) -> bool {
        channel.as_str().starts_with("p:")
    }

    fn rpc(&self) -> Option<&dyn thywill_core::RpcHandler> {
        Some(&self.registry)
    }
}

/// The `plain` application: sends every message back to its connection.
struct Plain;

impl Application for Plain {
    async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
        let _ = ctx.send_to_connection(&client.connection, message).await;
    }
}

/// The functions of `rooms`.
fn registry() -> Registry {
    let built = Registry::builder()
        .async_function_with_caller("room.who", |caller: Client, (): ()| async move {
            Ok::<_, std::convert::Infallible>(caller.connection.to_string())
        })
        .function("room.echo", |v: Value| v)
        .try_function("room.fail", |_: Value| Err::<(), _>("refused"))
        .async_function("room.join", |channel: String| async move {
            // Answers only: a function has no context to subscribe with.
            Ok::<_, std::convert::Infallible>(channel.len())
        })
        .build();
    match built {
        Ok(r) => r,
        Err(e) => panic!("the fuzz registry does not build: {e}"),
    }
}

/// What a client saw, kept by its reader task.
#[derive(Debug, Default)]
struct Seen {
    /// The connection and session of the welcome.
    ids: Option<(ConnectionId, SessionId)>,
    /// Frames read so far.
    frames: u64,
    /// The last `msg` sequence number.
    seq: u64,
}

/// What every client saw and sent, shared by the harness and the reader tasks.
#[derive(Debug, Default)]
struct Known {
    /// Per wire stream name, the epoch last seen and the highest offset in it.
    streams: HashMap<String, Offset>,
    /// Every stream message seen, by stream, epoch and offset: its application and data (a
    /// message replayed must be the one delivered live, whoever receives it).
    logged: HashMap<(String, String, u64), (ApplicationId, Value)>,
    /// The highest client message id sent by any connection (no `ack` may go past it).
    max_id: u64,
}

type Streams = Arc<Mutex<Known>>;

/// Property violations found by reader tasks.
type Problems = Arc<Mutex<Vec<String>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One client connection.
struct Conn {
    sink: SplitSink<WebSocketStream<DuplexStream>, WsMessage>,
    reader: JoinHandle<()>,
    seen: Arc<Mutex<Seen>>,
    /// The last message id sent.
    last_id: u64,
}

struct Harness {
    node: Node,
    /// The node's edge, which runs the connections' IO tasks.
    edge: Edge,
    history: Arc<LocalHistory>,
    cookies: Vec<String>,
    forged: String,
    slots: Vec<Option<Conn>>,
    /// The sessions of the slots' latest connections (kept after they close).
    sessions: Vec<Option<SessionId>>,
    connections: Vec<Option<ConnectionId>>,
    /// Every connection task, to the end.
    served: Vec<JoinHandle<()>>,
    streams: Streams,
    problems: Problems,
}

impl Harness {
    async fn start(with_sessions: bool) -> Harness {
        let history = Arc::new(LocalHistory::new(history_limits()));
        let (sessions, cookies, forged) = if with_sessions {
            let config = match SessionConfig::new([7u8; 32]) {
                Ok(c) => c,
                Err(e) => panic!("session config: {e}"),
            };
            let sessions = Sessions::new(config, Arc::new(MemorySessionStore::new()));
            let mut cookies = Vec::new();
            for _ in 0..2 {
                match sessions.create().await {
                    Ok(id) => cookies.push(format!("thywill.sid={}", sessions.config().sign(&id))),
                    Err(e) => panic!("no session: {e}"),
                }
            }
            let forged = format!("thywill.sid={}", "f".repeat(40));
            (Some(sessions), cookies, forged)
        } else {
            (None, Vec::new(), String::new())
        };
        let config = TransportConfig::default().with_outbound_queue(OUTBOUND_QUEUE);
        let config = match config {
            Ok(c) => c,
            Err(e) => panic!("transport config: {e}"),
        };
        let applications: Vec<(ApplicationId, Arc<dyn DynApplication>)> = vec![
            ("rooms".into(), Arc::new(Rooms { registry: registry() })),
            ("plain".into(), Arc::new(Plain)),
        ];
        let node = Node::start(NodeParts {
            config: NodeConfig::default().with_replay(config.replay()),
            applications,
            cluster: Arc::new(LocalCluster::new(MEMBER)),
            tracker: Arc::new(MemoryTracker::new()),
            channels: Arc::new(MemoryChannels::new()),
            session_store: sessions.as_ref().map(|s| s.store().clone()),
            history: history.clone(),
            caches: Arc::new(thywill_core::MemoryCaches::new()),
        })
        .await;
        let node = match node {
            Ok(n) => n,
            Err(e) => panic!("the node does not start: {e}"),
        };
        let edge = Edge::start(EdgeParts {
            config,
            node: Arc::new(node.clone()),
            resources: Arc::new(MemoryResources::new()),
            sessions,
        })
        .await;
        let edge = match edge {
            Ok(e) => e,
            Err(e) => panic!("the edge does not start: {e}"),
        };
        Harness {
            node,
            edge,
            history,
            cookies,
            forged,
            slots: (0..CONNS).map(|_| None).collect(),
            sessions: vec![None; CONNS],
            connections: vec![None; CONNS],
            served: Vec::new(),
            streams: Arc::default(),
            problems: Arc::default(),
        }
    }

    /// Lets everything runnable run (and the clock move on by a millisecond).
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    async fn step(&mut self, step: &Step) {
        let i = usize::from(step.conn) % CONNS;
        if trace() {
            eprintln!("{i} {:?}", step.op);
        }
        match &step.op {
            Op::Open(cookie) => self.open(i, *cookie).await,
            Op::Close => self.close(i).await,
            Op::Drop => self.drop_conn(i).await,
            Op::Ping => self.send(i, WsMessage::Ping(Vec::new().into())).await,
            Op::Binary(n) => {
                self.send(i, WsMessage::Binary(vec![0xa5; usize::from(*n)].into()))
                    .await;
            }
            Op::Big => {
                let text = format!(
                    "{{\"t\":\"msg\",\"app\":\"plain\",\"data\":\"{}\"}}",
                    "x".repeat(FRAME_LIMIT)
                );
                self.send(i, WsMessage::text(text)).await;
            }
            Op::Raw(frags) => {
                let text = raw_text(frags);
                self.send(i, WsMessage::text(text)).await;
            }
            Op::Wait(n) => {
                tokio::time::sleep(Duration::from_millis(20) * u32::from(*n)).await;
            }
            Op::Shutdown => self.edge.shutdown(),
            Op::Hello {
                version,
                tab,
                streams,
            } => {
                let frame = ClientFrame::Hello {
                    v: match version {
                        Version::One => 1,
                        Version::Zero => 0,
                        Version::Two => 2,
                        Version::Max => u32::MAX,
                    },
                    last_seq: None,
                    tab: tab.map(tab_id),
                    streams: self.positions(i, streams),
                };
                self.send(i, WsMessage::text(frame.encode())).await;
            }
            Op::Resume(streams) => {
                let frame = ClientFrame::Resume {
                    streams: self.positions(i, streams),
                };
                self.send(i, WsMessage::text(frame.encode())).await;
            }
            Op::Msg { app, data, id } => {
                let id = id.map(|id| self.message_id(i, id));
                let frame = ClientFrame::Msg {
                    app: app_id(*app),
                    data: self.command(i, data),
                    meta: Default::default(),
                    id,
                };
                self.send(i, WsMessage::text(frame.encode())).await;
            }
            Op::Rpc { app, id, name, args } => {
                let frame = ClientFrame::Rpc {
                    app: app_id(*app),
                    id: *id,
                    name: match name {
                        RpcName::Who => "room.who",
                        RpcName::Echo => "room.echo",
                        RpcName::Fail => "room.fail",
                        RpcName::Join => "room.join",
                        RpcName::Unknown => "room.nope",
                        RpcName::Empty => "",
                    }
                    .to_owned(),
                    args: json_value(*args),
                };
                self.send(i, WsMessage::text(frame.encode())).await;
            }
        }
        if step.conn & 0x80 == 0 {
            self.settle().await;
        }
    }

    async fn open(&mut self, i: usize, cookie: Cookie) {
        self.drop_conn(i).await;
        let cookie = if self.cookies.is_empty() {
            None
        } else {
            match cookie {
                Cookie::First => self.cookies.first().cloned(),
                Cookie::Second => self.cookies.get(1).cloned(),
                Cookie::Missing => None,
                Cookie::Forged => Some(self.forged.clone()),
            }
        };
        let (client, server) = tokio::io::duplex(PIPE);
        let edge = self.edge.clone();
        self.served.push(tokio::spawn(
            async move { edge.serve_upgraded(server, cookie).await },
        ));
        let ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let (sink, stream) = ws.split();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let reader = tokio::spawn(read(
            i,
            stream,
            seen.clone(),
            self.streams.clone(),
            self.problems.clone(),
        ));
        self.slots[i] = Some(Conn {
            sink,
            reader,
            seen,
            last_id: 0,
        });
        // The welcome (or the refusal) before the next step.
        self.settle().await;
        if let Some(conn) = &self.slots[i]
            && let Some((c, s)) = lock(&conn.seen).ids.clone()
        {
            self.connections[i] = Some(c);
            self.sessions[i] = Some(s);
        }
    }

    /// Sends a close frame and waits (bounded) for the end of the socket.
    async fn close(&mut self, i: usize) {
        let Some(mut conn) = self.slots[i].take() else {
            return;
        };
        let _ = tokio::time::timeout(STEP_TIME, async {
            let _ = conn.sink.send(WsMessage::Close(None)).await;
            let _ = (&mut conn.reader).await;
        })
        .await;
        conn.reader.abort();
    }

    /// Drops the socket: the node sees its end without a close frame.
    async fn drop_conn(&mut self, i: usize) {
        if let Some(conn) = self.slots[i].take() {
            conn.reader.abort();
            let _ = conn.reader.await;
            drop(conn.sink);
        }
    }

    async fn send(&mut self, i: usize, msg: WsMessage) {
        if let Some(conn) = &mut self.slots[i] {
            // A node that stopped reading (or closed) makes the send fail or wait: bounded.
            let _ = tokio::time::timeout(STEP_TIME, conn.sink.send(msg)).await;
        }
    }

    fn message_id(&mut self, i: usize, id: Id) -> u64 {
        let Some(conn) = &mut self.slots[i] else {
            return 0;
        };
        let id = match id {
            Id::Same => conn.last_id,
            Id::Next => conn.last_id.saturating_add(1),
            Id::Zero => 0,
            Id::Max => u64::MAX,
            Id::Any(n) => n,
        };
        conn.last_id = id;
        let mut known = lock(&self.streams);
        known.max_id = known.max_id.max(id);
        id
    }

    fn session_of(&self, i: usize) -> String {
        self.sessions[i % CONNS]
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    fn positions(&self, i: usize, streams: &[StreamPos]) -> BTreeMap<String, Offset> {
        let known = lock(&self.streams);
        let known = &known.streams;
        streams
            .iter()
            .map(|p| {
                let name = match p.stream {
                    Stream::Room => format!("c:room@{MEMBER}"),
                    Stream::Lobby => format!("c:p:lobby@{MEMBER}"),
                    Stream::OwnSession => format!("s:{}@{MEMBER}", self.session_of(i)),
                    Stream::SessionOf(k) => format!("s:{}@{MEMBER}", self.session_of(usize::from(k))),
                    Stream::RoomShared => "c:room".to_owned(),
                    Stream::RoomElsewhere => "c:room@beta".to_owned(),
                    Stream::Junk => format!("x:room@{MEMBER}"),
                    Stream::Empty => String::new(),
                    Stream::Numbered(n) => format!("c:room{n}@{MEMBER}"),
                };
                let seen = known.get(&name);
                let last = seen.map_or(0, |o| o.off);
                let epoch = match p.epoch {
                    Epoch::Real => seen.map(|o| o.epoch.clone()).unwrap_or_default(),
                    Epoch::Empty => String::new(),
                    Epoch::Other => "0123456789abcdef".to_owned(),
                    Epoch::Junk => "épo\u{0}ch".to_owned(),
                };
                let off = match p.off {
                    Off::Zero => 0,
                    Off::One => 1,
                    Off::Last => last,
                    Off::Next => last.saturating_add(1),
                    Off::Before => last.saturating_sub(1),
                    Off::Max => u64::MAX,
                    Off::AlmostMax => u64::MAX - 1,
                    Off::Any(n) => n,
                };
                (name, Offset { epoch, off })
            })
            .collect()
    }

    fn command(&self, i: usize, command: &Command) -> Value {
        let cmd = |op: &str, channel: &Channel| json!({"op": op, "channel": channel_name(*channel)});
        match command {
            Command::Join(c) => cmd("join", c),
            Command::Leave(c) => cmd("leave", c),
            Command::Add(c) => cmd("add", c),
            Command::Remove(c) => cmd("remove", c),
            Command::Clear(c) => cmd("clear", c),
            Command::Say { channel, others } => {
                json!({"op": "say", "channel": channel_name(*channel), "others": others, "text": i})
            }
            Command::Tell(s) => {
                let session = match s {
                    SessionRef::Own => self.session_of(i),
                    SessionRef::Of(k) => self.session_of(usize::from(*k)),
                    SessionRef::Junk => "nobody".to_owned(),
                };
                json!({"op": "tell", "session": session})
            }
            Command::Direct(c) => {
                let of = |k: usize| {
                    self.connections[k % CONNS]
                        .as_ref()
                        .map(|c| c.to_string())
                        .unwrap_or_default()
                };
                let connection = match c {
                    ConnRef::Own => of(i),
                    ConnRef::Of(k) => of(usize::from(*k)),
                    ConnRef::Junk => "alpha-9-nobody".to_owned(),
                };
                json!({"op": "direct", "connection": connection})
            }
            Command::Presence(c) => cmd("presence", c),
            Command::Table => json!({"op": "table"}),
            Command::Flood(n) => json!({"op": "flood", "n": n}),
            Command::Data(j) => json_value(*j),
        }
    }

    /// Closes every connection, waits for the connection tasks to end and checks what is
    /// left.
    async fn finish(mut self) -> Result<(), String> {
        for i in 0..CONNS {
            if i % 2 == 0 {
                self.close(i).await;
            } else {
                self.drop_conn(i).await;
            }
        }
        let served = std::mem::take(&mut self.served);
        let ended = tokio::time::timeout(END_TIME, async {
            for task in served {
                if let Err(e) = task.await
                    && e.is_panic()
                {
                    return Err(format!("a connection task panicked: {e}"));
                }
            }
            Ok(())
        })
        .await;
        match ended {
            Err(_) => {
                return Err(format!(
                    "connection tasks still running {END_TIME:?} after their clients left"
                ));
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(())) => {}
        }
        // Disconnection hooks and presence effects the tasks queued.
        self.settle().await;

        let problems = std::mem::take(&mut *lock(&self.problems));
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        let metrics = self.edge.metrics_text();
        let panics = metrics
            .lines()
            .find_map(|l| l.strip_prefix("thywill_panics_total "))
            .map(str::trim);
        if panics != Some("0") {
            return Err(format!("the node caught panics ({panics:?}):\n{metrics}"));
        }
        if self.node.connection_count() != 0 {
            return Err(format!(
                "{} connection(s) still in the node after every client left",
                self.node.connection_count()
            ));
        }
        let Some(ctx) = self.node.context(&"rooms".into()) else {
            return Err("no context for `rooms`".to_owned());
        };
        match ctx.connected_clients().await {
            Ok(table) => {
                let left: Vec<String> = table
                    .values()
                    .flat_map(|m| m.connections.keys().map(ToString::to_string))
                    .collect();
                if !left.is_empty() {
                    return Err(format!("the tracker still lists {left:?}"));
                }
            }
            Err(e) => return Err(format!("the tracker does not answer: {e}")),
        }
        let mut channels: Vec<String> = ["room", "p:lobby", "p:other", ""]
            .into_iter()
            .map(str::to_owned)
            .collect();
        channels.extend((0..8).map(|n| format!("room{n}")));
        for channel in channels {
            match ctx.presence(&ChannelId::from(channel.as_str())).await {
                Ok(present) if present.is_empty() => {}
                Ok(present) => {
                    return Err(format!(
                        "sessions {present:?} still present in {channel:?} after every client left"
                    ));
                }
                Err(e) => return Err(format!("presence of {channel:?} does not answer: {e}")),
            }
        }
        let bytes = self.history.bytes();
        let max = history_limits().max_total_bytes;
        if bytes > max {
            return Err(format!(
                "the history holds {bytes} bytes, more than its bound of {max}"
            ));
        }
        self.edge.shutdown();
        Ok(())
    }
}

/// Reads a client's frames until its socket ends, checking them and recording what the
/// harness needs (ids, epochs and offsets).
async fn read(
    slot: usize,
    mut stream: SplitStream<WebSocketStream<DuplexStream>>,
    seen: Arc<Mutex<Seen>>,
    streams: Streams,
    problems: Problems,
) {
    let problem = |p: String| lock(&problems).push(format!("connection {slot}: {p}"));
    while let Some(Ok(msg)) = stream.next().await {
        let WsMessage::Text(text) = msg else {
            if let WsMessage::Binary(_) = msg {
                problem("the node sent a binary frame".to_owned());
            }
            continue;
        };
        let frame = match ServerFrame::decode(text.as_str()) {
            Ok(f) => f,
            Err(e) => {
                problem(format!("undecodable frame {text:?}: {e}"));
                continue;
            }
        };
        if trace() {
            eprintln!("  {slot} <- {text}");
        }
        let mut s = lock(&seen);
        s.frames += 1;
        if s.frames == 1 {
            match &frame {
                ServerFrame::Welcome {
                    connection, session, ..
                } => s.ids = Some((connection.clone(), session.clone())),
                other => problem(format!("first frame is not a welcome: {other:?}")),
            }
            continue;
        }
        let at = |stream: &str, epoch: &str, off: u64| {
            let mut known = lock(&streams);
            let o = known.streams.entry(stream.to_owned()).or_insert_with(|| Offset {
                epoch: epoch.to_owned(),
                off,
            });
            if o.epoch != epoch {
                *o = Offset {
                    epoch: epoch.to_owned(),
                    off,
                };
            } else {
                o.off = o.off.max(off);
            }
        };
        match &frame {
            ServerFrame::Welcome { .. } => problem("a second welcome".to_owned()),
            ServerFrame::Msg {
                app,
                seq,
                data,
                stream,
                epoch,
                off,
                ..
            } => {
                if *seq != s.seq + 1 {
                    problem(format!("msg seq {seq} after {}", s.seq));
                }
                s.seq = *seq;
                if let (Some(stream), Some(epoch), Some(off)) = (stream, epoch, off) {
                    at(stream, epoch, *off);
                    let key = (stream.clone(), epoch.clone(), *off);
                    let mut known = lock(&streams);
                    let first = known
                        .logged
                        .entry(key)
                        .or_insert_with(|| (app.clone(), data.clone()));
                    if (&first.0, &first.1) != (app, data) {
                        problem(format!(
                            "{stream} {epoch} {off} is {app} {data} here, {} {} before",
                            first.0, first.1
                        ));
                    }
                }
            }
            ServerFrame::Skip { stream, epoch, off } => at(stream, epoch, *off),
            ServerFrame::Ack { id } => {
                let max = lock(&streams).max_id;
                if *id > max {
                    problem(format!("ack of {id}, but no client sent an id above {max}"));
                }
            }
            _ => {}
        }
    }
}

fn tab_id(tab: Tab) -> String {
    match tab {
        Tab::A => "tab-a".to_owned(),
        Tab::B => "tab-b".to_owned(),
        Tab::Empty => String::new(),
        Tab::Long => "t".repeat(65),
        Tab::Bad => "tab a/ü".to_owned(),
    }
}

fn app_id(app: App) -> ApplicationId {
    match app {
        App::Rooms => "rooms",
        App::Plain => "plain",
        App::Unknown => "nope",
        App::Empty => "",
    }
    .into()
}

fn channel_name(channel: Channel) -> String {
    match channel {
        Channel::Room => "room".to_owned(),
        Channel::Lobby => "p:lobby".to_owned(),
        Channel::Other => "p:other".to_owned(),
        Channel::Empty => String::new(),
        // Few distinct names: the end of the input checks them all.
        Channel::Numbered(n) => format!("room{}", n % 8),
    }
}

fn json_value(j: Json) -> Value {
    match j {
        Json::Null => Value::Null,
        Json::Bool(b) => json!(b),
        Json::Int(i) => json!(i),
        Json::Float(bits) => json!(f64::from_bits(bits)),
        Json::Text(n) => json!("x".repeat(usize::from(n))),
        Json::List(n) => json!((0..n).collect::<Vec<u8>>()),
        Json::Op(n) => json!({"op": "o".repeat(usize::from(n))}),
        Json::Deep(n) => {
            let mut v = json!(0);
            for _ in 0..n {
                v = json!([v]);
            }
            v
        }
    }
}

const TAGS: &[&str] = &["hello", "resume", "msg", "rpc", "welcome", "ack", ""];
const KEYS: &[&str] = &[
    "v", "tab", "streams", "epoch", "off", "app", "data", "_", "id", "name", "args", "last_seq",
];

fn raw_text(frags: &[Frag]) -> String {
    let mut bytes = Vec::new();
    for f in frags.iter().take(512) {
        match f {
            Frag::Byte(b) => bytes.push(*b),
            Frag::Open => bytes.push(b'{'),
            Frag::Close => bytes.push(b'}'),
            Frag::OpenList => bytes.push(b'['),
            Frag::CloseList => bytes.push(b']'),
            Frag::Comma => bytes.push(b','),
            Frag::Colon => bytes.push(b':'),
            Frag::KeyT => bytes.extend_from_slice(b"\"t\":"),
            Frag::Tag(n) => {
                let tag = TAGS[usize::from(*n) % TAGS.len()];
                bytes.extend_from_slice(format!("\"{tag}\"").as_bytes());
            }
            Frag::Key(n) => {
                let key = KEYS[usize::from(*n) % KEYS.len()];
                bytes.extend_from_slice(format!("\"{key}\":").as_bytes());
            }
            Frag::Number(n) => bytes.extend_from_slice(n.to_string().as_bytes()),
            Frag::Rooms => bytes.extend_from_slice(b"\"rooms\""),
            Frag::RoomStream => bytes.extend_from_slice(format!("\"c:room@{MEMBER}\"").as_bytes()),
            Frag::Surrogate => bytes.extend_from_slice(br#""\ud800""#),
            Frag::Null => bytes.extend_from_slice(b"null"),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by this target: an application wrapped by `thywill_rpc::with_rpc` lost its
    /// presence (and its `cluster_member_status` and `tracker_event` hooks), because
    /// `WithRpc` did not forward `tracks_presence`.
    #[test]
    fn with_rpc_keeps_presence() {
        let wrapped = thywill_rpc::with_rpc(Rooms { registry: registry() }, registry());
        let app: &dyn DynApplication = &wrapped;
        assert!(app.tracks_presence(&ChannelId::from("p:lobby")));
    }
}

/// A diagnostic, not run by default: runs every input of the working corpus
/// (`corpus/node/`, else the seeds) six times over, without sanitizers, printing the
/// process's resident memory after each round; it must stay flat (it does: about 6.5 MiB over
/// 10,000 inputs). `cargo test --release --lib rss -- --ignored --nocapture`.
#[cfg(test)]
mod rss_probe {
    /// Resident set size in KiB.
    fn rss_kib() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(0)
            * 4
    }

    fn inputs(dir: &std::path::Path) -> Vec<Vec<u8>> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    #[ignore = "a diagnostic: prints the memory after rounds over the corpus"]
    fn rss_stays_flat_over_the_corpus() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = inputs(&root.join("corpus/node"));
        if files.is_empty() {
            files = inputs(&root.join("seeds/node"));
        }
        let mut first = 0;
        for round in 0..6 {
            let t = std::time::Instant::now();
            for f in &files {
                super::check(f);
            }
            let rss = rss_kib();
            eprintln!(
                "round {round}: {} inputs in {:?}, rss {rss} KiB",
                files.len(),
                t.elapsed()
            );
            if round == 0 {
                first = rss;
            }
        }
        assert!(rss_kib() < first * 2, "resident memory doubled over the rounds");
    }
}
