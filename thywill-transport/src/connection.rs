//! One WebSocket connection: a single task that reads client frames, writes queued server
//! frames, keeps the connection alive with pings and closes it with a documented code.

use std::sync::Arc;
use std::time::Instant;

use futures_util::{FutureExt, SinkExt, StreamExt};
use thywill_core::protocol::{self, ClientFrame, ErrorCode, ProtocolError, ServerFrame, close};
use thywill_core::{ConnectionId, Message, RpcError, RpcErrorCode, SessionId};
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::Instrument;

use crate::node::{ConnHandle, Encoded, Node, Queued, client};
use crate::socket::{Socket, WsError, WsMessage};
use crate::streams::Replayed;

/// Concurrent RPC calls per connection; further calls wait (reading pauses).
const MAX_PENDING_RPC: usize = 64;

/// Runs a connection to its end. `cookie` is the handshake's `Cookie` header.
pub(crate) async fn run(node: Node, mut ws: impl Socket, cookie: Option<String>) {
    // Counted until it ends, so that a node shutting down waits for its connections to close.
    let _live = Live::new(&node);
    let conn = node.new_connection_id();
    let session = match node.sessions() {
        // Plain mode: the session is the connection.
        None => SessionId::from(conn.as_str()),
        Some(sessions) => match sessions.resolve(cookie.as_deref()).await {
            Ok(id) => id,
            Err(refusal) => {
                tracing::info!(connection = %conn, reason = refusal.reason(), "session refused");
                let _ = ws
                    .send(crate::socket::close(close::SESSION_REFUSED, refusal.reason()))
                    .await;
                let _ = tokio::time::timeout(CLOSING_TIME, SinkExt::close(&mut ws)).await;
                return;
            }
        },
    };
    let span =
        tracing::info_span!("connection", member = %node.member(), connection = %conn, session = %session);
    serve(node, ws, conn, session).instrument(span).await;
}

/// Runs `work`; a panic in it is caught, counted and logged (with `what` it was), and gives
/// `None`.
pub(crate) async fn unwinding<T>(
    metrics: &crate::metrics::Metrics,
    what: &'static str,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(done) => Some(done),
        Err(panic) => {
            metrics.panics.inc();
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(what, panic = %text, "panic caught");
            None
        }
    }
}

/// Why a connection ended: the close code sent to the client (0: none, the socket is gone)
/// and a reason for logs and metrics.
type Ending = (u16, &'static str);

async fn serve(node: Node, mut ws: impl Socket, conn: ConnectionId, session: SessionId) {
    let cfg = &node.inner.config;
    let metrics = node.inner.metrics.clone();
    let (handle, rx, killed) = ConnHandle::new(metrics.clone(), cfg.outbound_queue, cfg.max_outbound_bytes);
    let handle = Arc::new(handle);
    let mut shutdown = node.inner.shutdown.subscribe();
    if *shutdown.borrow_and_update() {
        let _ = ws
            .send(crate::socket::close(close::GOING_AWAY, "shutting down"))
            .await;
        return;
    }
    // From here on the connection is registered: whatever happens in between, a panic
    // included, it is forgotten, disconnected from the tracker and its hooks run below.
    node.inner.register(&conn, &session, handle.clone());
    metrics.connections.inc();
    let me = client(&node, &conn, &session);
    let mut task = Task {
        node: &node,
        handle: &handle,
        conn: &conn,
        session: &session,
        rx,
        killed,
        shutdown,
        inbound: Inbound::default(),
    };
    let ending = unwinding(&metrics, "connection task", task.run(&mut ws, &me))
        .await
        .unwrap_or((close::INTERNAL_ERROR, "internal error"));
    task.end(&mut ws, ending).await;

    tracing::debug!(reason = ending.1, code = ending.0, "disconnected");
    metrics.connections.dec();
    metrics
        .closed
        .get_or_create(&crate::metrics::ReasonLabel {
            reason: ending.1.to_owned(),
        })
        .inc();
    node.inner.forget_connection(&conn);
    let tracker = node.inner.tracker.clone();
    if let Some(Err(e)) = unwinding(&metrics, "tracker", tracker.disconnected(&me)).await {
        tracing::warn!(error = %e, "tracker did not record the disconnection");
    }
    for (app, ctx) in node.inner.apps.values() {
        unwinding(&metrics, "disconnection hook", app.disconnection(ctx, &me)).await;
    }
}

/// The state of one connection task.
struct Task<'a> {
    node: &'a Node,
    handle: &'a Arc<ConnHandle>,
    conn: &'a ConnectionId,
    session: &'a SessionId,
    rx: mpsc::Receiver<Queued>,
    killed: watch::Receiver<Option<u16>>,
    shutdown: watch::Receiver<bool>,
    inbound: Inbound,
}

impl Task<'_> {
    /// Welcomes the client, then reads, writes and pings until the connection ends.
    async fn run(&mut self, ws: &mut impl Socket, me: &thywill_core::Client) -> Ending {
        let node = self.node;
        let cfg = &node.inner.config;
        let metrics = &node.inner.metrics;
        let welcome = ServerFrame::Welcome {
            v: protocol::VERSION,
            connection: self.conn.clone(),
            session: self.session.clone(),
            member: node.member().clone(),
            apps: node.applications(),
        };
        // Registered and subscribed before the welcome: a client that has its welcome already
        // receives what is sent to its session's channels. Frames queued meanwhile follow the
        // welcome.
        if let Err(e) = node.inner.tracker.connected(me).await {
            tracing::warn!(error = %e, "tracker did not record the connection");
        }
        node.inner.subscribe_to_session_channels(me).await;
        if ws.send(WsMessage::text(welcome.encode())).await.is_err() {
            return (0, "write failed");
        }
        tracing::debug!("connected");
        metrics.opened.inc();
        for (app, ctx) in node.inner.apps.values() {
            app.connection(ctx, me).await;
        }

        let rpc_slots = Arc::new(Semaphore::new(MAX_PENDING_RPC));
        let mut bad_frames = 0u32;
        let mut bucket = TokenBucket::new(cfg.rate_per_sec, cfg.rate_burst);
        let mut last_heard = Instant::now();
        let mut ping = tokio::time::interval(cfg.keepalive_interval);
        ping.tick().await;
        let ack_timer = tokio::time::sleep(ACK_DELAY);
        tokio::pin!(ack_timer);
        let mut written = 0usize;
        loop {
            tokio::select! {
                // Reads come before writes: a connection with a full queue still hears its
                // client (pongs, messages); client frames are rate-limited (a burst of at most
                // `rate_burst`, below the queue's bound), so writes cannot starve.
                biased;
                _ = self.shutdown.changed() => return (close::GOING_AWAY, "server shutting down"),
                _ = self.killed.changed() => return killed_reason(&self.killed),
                frame = ws.next() => {
                    last_heard = Instant::now();
                    let msg = match frame {
                        None => return (0, "closed by client"),
                        Some(Err(e)) => return read_error(&e),
                        Some(Ok(msg)) => msg,
                    };
                    // Every frame counts against the rate limit, control frames included:
                    // a ping flood costs the client its connection, not us memory.
                    if !bucket.take() {
                        tracing::info!("rate limit exceeded");
                        return (close::RATE_LIMITED, "rate limit exceeded");
                    }
                    let text = match &msg {
                        WsMessage::Close(_) => return (0, "closed by client"),
                        WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => continue,
                        WsMessage::Binary(_) => {
                            tracing::info!("binary frame refused");
                            return (close::UNSUPPORTED_DATA, "binary frames are not accepted");
                        }
                        WsMessage::Text(t) => t.as_str(),
                    };
                    metrics.bytes_in.inc_by(text.len() as u64);
                    match ClientFrame::decode(text, cfg.max_message_size) {
                        Ok(frame @ (ClientFrame::Hello { .. } | ClientFrame::Resume { .. })) => {
                            bad_frames = 0;
                            let streams = match frame {
                                ClientFrame::Hello { v, tab, streams, .. } => {
                                    if v != protocol::VERSION {
                                        self.handle.push_control(self.conn, ServerFrame::Error {
                                            code: ErrorCode::UnsupportedVersion,
                                            message: format!("server speaks protocol version {}", protocol::VERSION),
                                            app: None,
                                        });
                                    }
                                    if let Some(tab) = tab {
                                        Box::pin(self.inbound.set_tab(node, self.handle, self.session, tab)).await;
                                    }
                                    streams
                                }
                                ClientFrame::Resume { streams } => streams,
                                // The arm's pattern admits no other frame.
                                _ => continue,
                            };
                            if let Err(end) = Box::pin(self.replay(ws, streams)).await {
                                return end;
                            }
                        }
                        Ok(frame) => {
                            bad_frames = 0;
                            if let ClientFrame::Msg { id: Some(id), .. } = &frame {
                                let new = self.inbound.admit(*id);
                                // Duplicates are acknowledged again: the client still has them.
                                if !self.inbound.ack_due {
                                    self.inbound.ack_due = true;
                                    ack_timer.as_mut().reset(tokio::time::Instant::now() + ACK_DELAY);
                                }
                                if !new {
                                    tracing::debug!(id, "duplicate client message dropped");
                                    metrics.duplicates_dropped.inc();
                                    continue;
                                }
                            }
                            handle_frame(node, self.handle, self.conn, self.session, frame, &rpc_slots).await;
                            // Reads go first, but a client whose own frames fill its queue
                            // (answers, skips) is written to before it is read again.
                            while self.rx.len() > cfg.outbound_queue / 2 {
                                let Ok(frame) = self.rx.try_recv() else { break };
                                let write = ws.send(WsMessage::text(self.taken(frame)));
                                if let Err(end) = bounded(write, &mut self.killed, &mut self.shutdown, cfg.keepalive_timeout).await {
                                    return end;
                                }
                            }
                        }
                        Err(ProtocolError::TooBig { size, limit }) => {
                            tracing::info!(size, limit, "message too big");
                            return (close::MESSAGE_TOO_BIG, "message too big");
                        }
                        Err(e) => {
                            bad_frames += 1;
                            tracing::info!(error = %e, count = bad_frames, "malformed frame");
                            self.handle.push_control(self.conn, ServerFrame::Error {
                                code: ErrorCode::BadFrame,
                                message: e.to_string(),
                                app: None,
                            });
                            if bad_frames > cfg.max_bad_frames {
                                return (close::TOO_MANY_BAD_FRAMES, "too many malformed frames");
                            }
                        }
                    }
                }
                // Timers before writes: a connection busy writing still pings (and a
                // client that only answers pings is still heard) and acknowledges.
                () = &mut ack_timer, if self.inbound.ack_due => {
                    self.inbound.ack_due = false;
                    send_ack(node, self.handle, self.conn, self.inbound.key.clone(), self.inbound.mark);
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > cfg.keepalive_timeout {
                        tracing::info!("keepalive timeout");
                        return (close::KEEPALIVE_TIMEOUT, "keepalive timeout");
                    }
                    let write = ws.send(WsMessage::Ping(Default::default()));
                    if let Err(end) = bounded(write, &mut self.killed, &mut self.shutdown, cfg.keepalive_timeout).await {
                        return end;
                    }
                }
                out = self.rx.recv() => match out {
                    Some(frame) => {
                        let text = self.taken(frame);
                        written += text.len();
                        let write = ws.send(WsMessage::text(text));
                        if let Err(end) = bounded(write, &mut self.killed, &mut self.shutdown, cfg.keepalive_timeout).await {
                            return end;
                        }
                        if written >= FAIR_SHARE {
                            // Other connections (the sender of what this one writes among
                            // them) get their turn: fairness in bytes, not in frames.
                            written = 0;
                            tokio::task::yield_now().await;
                        }
                    }
                    None => return (close::INTERNAL_ERROR, "queue closed"),
                },

            }
        }
    }

    /// A frame taken off the queue: its text, its bytes no longer counted.
    fn taken(&self, frame: Queued) -> String {
        taken(self.handle, frame)
    }

    /// Answers `hello` / `resume`: the streams' missed messages, read and written in bounded
    /// chunks (after the frames queued before each chunk, keeping sequence numbers in
    /// order), within [`REPLAY_TIME`] in all.
    async fn replay(
        &mut self,
        ws: &mut impl Socket,
        streams: std::collections::BTreeMap<String, thywill_core::Offset>,
    ) -> Result<(), Ending> {
        let node = self.node;
        let limit = node.inner.config.keepalive_timeout;
        let (lost, mut resumes) = node.inner.resumes(self.conn, self.session, streams);
        let deadline = tokio::time::Instant::now() + REPLAY_TIME;
        if !lost.is_empty() {
            let write = Box::pin(write_chunk(ws, &mut self.rx, self.handle, lost));
            bounded(write, &mut self.killed, &mut self.shutdown, limit).await?;
        }
        let tab = self.inbound.tab.clone();
        for resume in &mut resumes {
            while !resume.done {
                let read = node.inner.chunk(resume, tab.as_deref());
                let Ok(items) = tokio::time::timeout_at(deadline, read).await else {
                    tracing::warn!("replay took too long: the rest is left to the client's next resume");
                    return Ok(());
                };
                let write = Box::pin(write_chunk(ws, &mut self.rx, self.handle, items));
                bounded(write, &mut self.killed, &mut self.shutdown, limit).await?;
            }
        }
        Ok(())
    }

    /// Saves the tab's mark and closes the socket politely (bounded) with `ending`.
    async fn end(&mut self, ws: &mut impl Socket, ending: Ending) {
        // The tab's mark before anything else: a client told to reconnect must find it on
        // whichever member it reaches next (and is then told, with a last `ack`, that nothing
        // needs resending).
        let mut acked = None;
        if let Some(key) = &self.inbound.key
            && self.inbound.mark > 0
            && save_mark(self.node, key, self.inbound.mark).await
        {
            acked = Some(self.inbound.mark);
        }
        if ending.0 != 0 {
            // Bounded: a client that does not read gets no more than two seconds of our time.
            let cfg = &self.node.inner.config;
            let closing = Box::pin(close_with(ws, &mut self.rx, cfg, ending, acked));
            let _ = tokio::time::timeout(CLOSING_TIME, closing).await;
        }
    }
}

/// A frame taken off a connection's queue: its text, its bytes no longer counted.
fn taken(handle: &ConnHandle, frame: Queued) -> String {
    handle.dequeued(frame.len());
    let text = frame.into_text();
    handle.metrics.bytes_out.inc_by(text.len() as u64);
    text
}

/// Writes a chunk of a replay: the frames queued before it first, then its own.
async fn write_chunk(
    ws: &mut impl Socket,
    rx: &mut mpsc::Receiver<Queued>,
    handle: &ConnHandle,
    items: Vec<Replayed>,
) -> Result<(), WsError> {
    if items.is_empty() {
        return Ok(());
    }
    let msgs = items.iter().filter(|i| matches!(i, Replayed::Msg(..))).count() as u64;
    let (mut seq, queued) = handle.reserve(msgs);
    for _ in 0..queued {
        let Ok(frame) = rx.try_recv() else { break };
        ws.feed(WsMessage::text(taken(handle, frame))).await?;
    }
    for item in items {
        let text = match item {
            Replayed::Frame(f) => f.encode(),
            Replayed::Msg(app, message, at) => {
                let text = Encoded::replayed(&app, &message, &at, seq);
                seq += 1;
                text
            }
        };
        handle.metrics.bytes_out.inc_by(text.len() as u64);
        ws.feed(WsMessage::text(text)).await?;
    }
    ws.flush().await
}

/// The ending a kill asks for.
fn killed_reason(killed: &watch::Receiver<Option<u16>>) -> Ending {
    let code = (*killed.borrow()).unwrap_or(close::INTERNAL_ERROR);
    (
        code,
        if code == close::SLOW_CONSUMER {
            "slow consumer"
        } else {
            "closed by server"
        },
    )
}

/// The ending a failed read asks for: 1009 for a frame over the size limit, 1007 for text
/// that is not UTF-8, 1002 for other violations of the WebSocket protocol; no close frame
/// when the socket itself failed.
fn read_error(e: &WsError) -> Ending {
    use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError as WsProtocol};
    match ws_error(e) {
        Some(WsError::Capacity(CapacityError::MessageTooLong { .. })) => {
            tracing::info!(error = %e, "message too big");
            (close::MESSAGE_TOO_BIG, "message too big")
        }
        Some(WsError::Utf8(_)) => {
            tracing::info!(error = %e, "text frame is not UTF-8");
            (close::INVALID_PAYLOAD, "invalid UTF-8")
        }
        Some(WsError::Protocol(WsProtocol::ResetWithoutClosingHandshake)) => (0, "closed by client"),
        Some(WsError::Protocol(p)) => {
            tracing::info!(error = %p, "websocket protocol violation");
            (close::PROTOCOL_ERROR, "protocol violation")
        }
        _ => {
            tracing::debug!(error = %e, "read failed");
            (0, "read failed")
        }
    }
}

/// The WebSocket error behind `e`: itself, or the one an adapted socket (warp's) wrapped in
/// an I/O error.
fn ws_error(e: &WsError) -> Option<&WsError> {
    let WsError::Io(io) = e else {
        return Some(e);
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = io.get_ref().map(|inner| inner as _);
    while let Some(err) = source {
        if let Some(ws) = err.downcast_ref::<WsError>() {
            return Some(ws);
        }
        source = err.source();
    }
    None
}

/// Bytes a connection task writes before it lets other tasks run.
const FAIR_SHARE: usize = 64 * 1024;

/// How long answering one `hello` or `resume` may take in all: the streams not replayed by
/// then are left for the client to ask again.
const REPLAY_TIME: std::time::Duration = std::time::Duration::from_secs(30);

async fn handle_frame(
    node: &Node,
    handle: &Arc<ConnHandle>,
    conn: &ConnectionId,
    session: &SessionId,
    frame: ClientFrame,
    rpc_slots: &Arc<Semaphore>,
) {
    match frame {
        // Handled by the connection loop, which writes replays itself.
        ClientFrame::Hello { .. } | ClientFrame::Resume { .. } => {}
        ClientFrame::Msg { app, data, meta, .. } => match node.inner.apps.get(&app) {
            Some((a, ctx)) => {
                if let Some(c) = node.inner.app_counters.get(&app) {
                    c.messages_in.inc();
                }
                let me = client(node, conn, session);
                a.received(ctx, &me, Message { data, meta }).await;
            }
            None => {
                tracing::info!(%app, "message for unknown application");
                handle.push_control(
                    conn,
                    ServerFrame::Error {
                        code: ErrorCode::UnknownApp,
                        message: format!("no application `{app}` here"),
                        app: Some(app),
                    },
                );
            }
        },
        ClientFrame::Rpc { app, id, name, args } => {
            let Some((a, ctx)) = node.inner.apps.get(&app) else {
                tracing::info!(%app, "rpc for unknown application");
                handle.push_control(
                    conn,
                    ServerFrame::RpcErr {
                        app: app.clone(),
                        id,
                        code: RpcErrorCode::NoFunction,
                        message: format!("no application `{app}` here"),
                    },
                );
                return;
            };
            let Ok(permit) = rpc_slots.clone().acquire_owned().await else {
                return;
            };
            let a = a.clone();
            let ctx = ctx.clone();
            let handle = handle.clone();
            let conn = conn.clone();
            let me = client(node, &conn, session);
            let metrics = node.inner.metrics.clone();
            tokio::spawn(
                async move {
                    let started = Instant::now();
                    let result = match a.rpc() {
                        Some(h) => h.call_in(&ctx, &me, &name, args).await,
                        None => Err(RpcError::new(
                            RpcErrorCode::NoFunction,
                            format!("application `{app}` has no remote procedures"),
                        )),
                    };
                    metrics
                        .rpc_seconds
                        .get_or_create(&crate::metrics::AppLabel { app: app.to_string() })
                        .observe(started.elapsed().as_secs_f64());
                    let outcome = match &result {
                        Ok(_) => "ok",
                        Err(e) => e.code.as_str(),
                    };
                    metrics
                        .rpc_calls
                        .get_or_create(&crate::metrics::OutcomeLabel {
                            outcome: outcome.into(),
                        })
                        .inc();
                    let frame = match result {
                        Ok(result) => ServerFrame::RpcOk { app, id, result },
                        Err(e) => {
                            tracing::debug!(function = %name, code = e.code.as_str(), "rpc failed");
                            ServerFrame::RpcErr {
                                app,
                                id,
                                code: e.code,
                                message: e.message,
                            }
                        }
                    };
                    handle.push_control(&conn, frame);
                    drop(permit);
                }
                .in_current_span(),
            );
        }
    }
}

/// How long an acknowledgement of client messages waits to cover later ones too.
const ACK_DELAY: std::time::Duration = std::time::Duration::from_millis(25);

/// Longest tab id accepted in `hello`.
const MAX_TAB_LEN: usize = 64;

/// What the connection knows of its client's messages: the tab, the key its mark is kept
/// under and the highest id processed.
#[derive(Default)]
struct Inbound {
    tab: Option<String>,
    key: Option<String>,
    mark: u64,
    ack_due: bool,
}

impl Inbound {
    /// Takes the tab named by `hello` and its received mark (which may come from a previous
    /// connection, on any member when the history is shared).
    ///
    /// The mark is kept per session and tab: a client of another session that names the same
    /// tab id gets a mark of its own, so it cannot make the tab's messages look processed.
    /// (In plain mode every connection is its own session; the tab's mark is then shared by
    /// whoever knows the tab id, which `thywill.js` draws at random, 64 bits.) A `hello` naming
    /// another tab starts from that tab's mark.
    async fn set_tab(&mut self, node: &Node, handle: &ConnHandle, session: &SessionId, tab: String) {
        if tab.is_empty()
            || tab.len() > MAX_TAB_LEN
            || !tab
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            tracing::info!("invalid tab id ignored");
            return;
        }
        let key = match node.sessions() {
            Some(_) => format!("{session}/{tab}"),
            None => tab.clone(),
        };
        if self.tab.as_deref() != Some(tab.as_str()) {
            // Another tab: the previous one's mark is not this one's.
            if let Some(old) = &self.key
                && self.mark > 0
            {
                save_mark(node, old, self.mark).await;
            }
            self.mark = 0;
            self.ack_due = false;
        }
        match node.inner.history.received_mark(&key).await {
            Ok(mark) => self.mark = self.mark.max(mark),
            Err(e) => tracing::warn!(error = %e, "received mark of the tab not loaded"),
        }
        self.key = Some(key);
        *handle
            .tab
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tab.clone());
        self.tab = Some(tab);
    }

    /// Whether a client message id is new (and records it).
    fn admit(&mut self, id: u64) -> bool {
        if self.tab.is_some() && id <= self.mark {
            return false;
        }
        self.mark = self.mark.max(id);
        true
    }
}

/// Records the tab's mark (under `key`), then acknowledges client messages up to it.
fn send_ack(node: &Node, handle: &Arc<ConnHandle>, conn: &ConnectionId, key: Option<String>, mark: u64) {
    let node = node.clone();
    let handle = handle.clone();
    let conn = conn.clone();
    tokio::spawn(
        async move {
            // Not saved, not acknowledged: the client resends, and a member that lost the
            // mark may process the message twice.
            if let Some(key) = &key
                && !save_mark(&node, key, mark).await
            {
                return;
            }
            handle.push_control(&conn, ServerFrame::Ack { id: mark });
        }
        .in_current_span(),
    );
}

/// Records a tab's received mark in the history (bounded); whether it was saved.
async fn save_mark(node: &Node, tab: &str, mark: u64) -> bool {
    let saved = tokio::time::timeout(CLOSING_TIME, node.inner.history.set_received_mark(tab, mark)).await;
    match saved {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "received mark of the tab not saved");
            false
        }
        Err(_) => {
            tracing::warn!("received mark of the tab not saved in time");
            false
        }
    }
}

/// A running connection task, counted in the node's `live` gauge.
struct Live(Node);

impl Live {
    fn new(node: &Node) -> Self {
        node.inner.live.send_modify(|n| *n += 1);
        Self(node.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.inner.live.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// How long closing a connection may take: the frames still queued (on shutdown), the
/// `reconnect` hint, the close frame.
const CLOSING_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs a socket write, but gives up when the connection is killed (a slow consumer's queue
/// overflowed meanwhile), the node shuts down, or the write makes no progress for `limit`
/// (a client that stopped reading): the reason to close with.
async fn bounded<T>(
    write: impl std::future::Future<Output = Result<T, WsError>>,
    killed: &mut watch::Receiver<Option<u16>>,
    shutdown: &mut watch::Receiver<bool>,
    limit: std::time::Duration,
) -> Result<(), (u16, &'static str)> {
    tokio::select! {
        biased;
        written = write => written.map(|_| ()).map_err(|_| (0, "write failed")),
        _ = killed.changed() => Err(killed_reason(killed)),
        _ = shutdown.changed() => Err((close::GOING_AWAY, "server shutting down")),
        () = tokio::time::sleep(limit) => {
            tracing::info!("write stalled: closing slow consumer");
            Err((close::SLOW_CONSUMER, "slow consumer"))
        }
    }
}

/// Closes politely with `reason`: on shutdown the frames still queued, the last `ack` and a
/// `reconnect` hint (with jitter, to spread this member's clients) go first.
async fn close_with(
    ws: &mut impl Socket,
    rx: &mut mpsc::Receiver<Queued>,
    cfg: &crate::TransportConfig,
    reason: Ending,
    acked: Option<u64>,
) {
    if reason.0 == close::GOING_AWAY {
        while let Ok(frame) = rx.try_recv() {
            if ws.feed(WsMessage::text(frame.into_text())).await.is_err() {
                break;
            }
        }
        if let Some(id) = acked {
            let _ = ws.feed(WsMessage::text(ServerFrame::Ack { id }.encode())).await;
        }
        let bound = u64::try_from(cfg.drain_jitter.as_millis()).unwrap_or(u64::MAX);
        let after_ms = if bound == 0 {
            0
        } else {
            rand::random::<u64>() % bound
        };
        let _ = ws
            .feed(WsMessage::text(ServerFrame::Reconnect { after_ms }.encode()))
            .await;
    }
    let _ = ws.send(crate::socket::close(reason.0, reason.1)).await;
    let _ = SinkExt::close(ws).await;
    // The closing handshake: wait (bounded by the caller) for the client's close frame or
    // its end of stream, discarding what it still sends, so that the socket is not reset with
    // unread data and the close frame reaches the client.
    while let Some(Ok(frame)) = ws.next().await {
        if matches!(frame, WsMessage::Close(_)) {
            break;
        }
    }
}

/// A token bucket counting client frames.
struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(per_sec: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_sec: f64::from(per_sec),
            last: Instant::now(),
        }
    }

    /// Takes one token; false when the bucket is empty.
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TokenBucket;

    #[test]
    fn the_bucket_allows_the_burst_then_refuses() {
        let mut b = TokenBucket::new(1, 3);
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
    }
}
