//! One WebSocket connection: a single task that reads client frames, writes queued server
//! frames, keeps the connection alive with pings and closes it with a documented code.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use thywill_core::protocol::{self, ClientFrame, ErrorCode, ProtocolError, ServerFrame, close};
use thywill_core::{ConnectionId, Message, RpcError, RpcErrorCode, SessionId};
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::Instrument;

use crate::node::{ConnHandle, Encoded, Node, OutState, client};
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

async fn serve(node: Node, mut ws: impl Socket, conn: ConnectionId, session: SessionId) {
    let cfg = node.inner.config.clone();
    let (tx, mut rx) = mpsc::channel::<String>(cfg.outbound_queue);
    let (kill, mut killed) = watch::channel(None::<u16>);
    let metrics = node.inner.metrics.clone();
    let handle = Arc::new(ConnHandle {
        metrics: metrics.clone(),
        out: Mutex::new(OutState { seq: 0, tx }),
        kill,
        tab: Mutex::new(None),
    });
    let mut shutdown = node.inner.shutdown.subscribe();
    if *shutdown.borrow_and_update() {
        let _ = ws
            .send(crate::socket::close(close::GOING_AWAY, "shutting down"))
            .await;
        return;
    }

    let welcome = ServerFrame::Welcome {
        v: protocol::VERSION,
        connection: conn.clone(),
        session: session.clone(),
        member: node.member().clone(),
        apps: node.applications(),
    };
    // Registered and subscribed before the welcome: a client that has its welcome already
    // receives what is sent to its session's channels. Frames queued meanwhile follow the
    // welcome.
    node.inner.register(&conn, &session, handle.clone());
    let me = client(&node, &conn, &session);
    if let Err(e) = node.inner.tracker.connected(&me).await {
        tracing::warn!(error = %e, "tracker did not record the connection");
    }
    node.inner.subscribe_to_session_channels(&me).await;
    let welcomed = ws.send(WsMessage::text(welcome.encode())).await.is_ok();
    tracing::debug!("connected");
    metrics.opened.inc();
    metrics.connections.inc();
    for (app, ctx) in node.inner.apps.values() {
        app.connection(ctx, &me).await;
    }

    let rpc_slots = Arc::new(Semaphore::new(MAX_PENDING_RPC));
    let mut bad_frames = 0u32;
    let mut bucket = TokenBucket::new(cfg.rate_per_sec, cfg.rate_burst);
    let mut last_heard = Instant::now();
    let mut ping = tokio::time::interval(cfg.keepalive_interval);
    ping.tick().await;
    let mut inbound = Inbound::default();
    let ack_timer = tokio::time::sleep(ACK_DELAY);
    tokio::pin!(ack_timer);
    let reason: (u16, &'static str) = if !welcomed {
        (0, "write failed")
    } else {
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break (close::GOING_AWAY, "server shutting down"),
                _ = killed.changed() => {
                    let code = (*killed.borrow()).unwrap_or(close::INTERNAL_ERROR);
                    break (code, if code == close::SLOW_CONSUMER { "slow consumer" } else { "closed by server" });
                }
                out = rx.recv() => match out {
                    Some(text) => {
                        metrics.bytes_out.inc_by(text.len() as u64);
                        let write = ws.send(WsMessage::text(text));
                        if let Err(end) = bounded(write, &mut killed, &mut shutdown, cfg.keepalive_timeout).await {
                            break end;
                        }
                    }
                    None => break (close::INTERNAL_ERROR, "queue closed"),
                },
                () = &mut ack_timer, if inbound.ack_due => {
                    inbound.ack_due = false;
                    send_ack(&node, &handle, &conn, inbound.tab.clone(), inbound.mark);
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > cfg.keepalive_timeout {
                        tracing::info!("keepalive timeout");
                        break (close::KEEPALIVE_TIMEOUT, "keepalive timeout");
                    }
                    let write = ws.send(WsMessage::Ping(Default::default()));
                    if let Err(end) = bounded(write, &mut killed, &mut shutdown, cfg.keepalive_timeout).await {
                        break end;
                    }
                }
                frame = ws.next() => {
                    last_heard = Instant::now();
                    match frame {
                        None => break (0, "closed by client"),
                        Some(Err(e)) => {
                            if is_too_big(&e) {
                                tracing::info!(error = %e, "message too big");
                                break (close::MESSAGE_TOO_BIG, "message too big");
                            }
                            tracing::debug!(error = %e, "read failed");
                            break (0, "read failed");
                        }
                        Some(Ok(msg)) => {
                            let text = match &msg {
                                WsMessage::Close(_) => break (0, "closed by client"),
                                WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => continue,
                                WsMessage::Binary(_) => {
                                    tracing::info!("binary frame refused");
                                    break (close::UNSUPPORTED_DATA, "binary frames are not accepted");
                                }
                                WsMessage::Text(t) => t.as_str(),
                            };
                            if !bucket.take() {
                                tracing::info!("rate limit exceeded");
                                break (close::RATE_LIMITED, "rate limit exceeded");
                            }
                            metrics.bytes_in.inc_by(text.len() as u64);
                            match ClientFrame::decode(text, cfg.max_message_size) {
                                Ok(frame @ (ClientFrame::Hello { .. } | ClientFrame::Resume { .. })) => {
                                    bad_frames = 0;
                                    let streams = match frame {
                                        ClientFrame::Hello { v, tab, streams, .. } => {
                                            if v != protocol::VERSION {
                                                handle.push_control(&conn, ServerFrame::Error {
                                                    code: ErrorCode::UnsupportedVersion,
                                                    message: format!("server speaks protocol version {}", protocol::VERSION),
                                                    app: None,
                                                });
                                            }
                                            if let Some(tab) = tab {
                                                Box::pin(inbound.set_tab(&node, &handle, tab)).await;
                                            }
                                            streams
                                        }
                                        ClientFrame::Resume { streams } => streams,
                                        // The arm's pattern admits no other frame.
                                        _ => continue,
                                    };
                                    let items = Box::pin(node.inner.replay(&conn, &session, inbound.tab.as_deref(), streams)).await;
                                    let write = Box::pin(write_replay(&mut ws, &mut rx, &handle, items));
                                    if let Err(end) = bounded(write, &mut killed, &mut shutdown, cfg.keepalive_timeout).await {
                                        break end;
                                    }
                                }
                                Ok(frame) => {
                                    bad_frames = 0;
                                    if let ClientFrame::Msg { id: Some(id), .. } = &frame {
                                        let new = inbound.admit(*id);
                                        // Duplicates are acknowledged again: the client still has them.
                                        if !inbound.ack_due {
                                            inbound.ack_due = true;
                                            ack_timer.as_mut().reset(tokio::time::Instant::now() + ACK_DELAY);
                                        }
                                        if !new {
                                            tracing::debug!(id, "duplicate client message dropped");
                                            metrics.duplicates_dropped.inc();
                                            continue;
                                        }
                                    }
                                    handle_frame(&node, &handle, &conn, &session, frame, &rpc_slots).await;
                                }
                                Err(ProtocolError::TooBig { size, limit }) => {
                                    tracing::info!(size, limit, "message too big");
                                    break (close::MESSAGE_TOO_BIG, "message too big");
                                }
                                Err(e) => {
                                    bad_frames += 1;
                                    tracing::info!(error = %e, count = bad_frames, "malformed frame");
                                    handle.push_control(&conn, ServerFrame::Error {
                                        code: ErrorCode::BadFrame,
                                        message: e.to_string(),
                                        app: None,
                                    });
                                    if bad_frames > cfg.max_bad_frames {
                                        break (close::TOO_MANY_BAD_FRAMES, "too many malformed frames");
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };

    // The tab's mark before anything else: a client told to reconnect must find it on
    // whichever member it reaches next (and is then told, with a last `ack`, that nothing
    // needs resending).
    let mut acked = None;
    if let Some(tab) = &inbound.tab
        && inbound.mark > 0
        && save_mark(&node, tab, inbound.mark).await
    {
        acked = Some(inbound.mark);
    }
    if reason.0 != 0 {
        // Bounded: a client that does not read gets no more than two seconds of our time.
        let closing = Box::pin(close_with(&mut ws, &mut rx, &cfg, reason, acked));
        let _ = tokio::time::timeout(CLOSING_TIME, closing).await;
    }
    tracing::debug!(reason = reason.1, code = reason.0, "disconnected");
    metrics.connections.dec();
    metrics
        .closed
        .get_or_create(&crate::metrics::ReasonLabel {
            reason: reason.1.to_owned(),
        })
        .inc();
    node.inner.forget_connection(&conn);
    if let Err(e) = node.inner.tracker.disconnected(&me).await {
        tracing::warn!(error = %e, "tracker did not record the disconnection");
    }
    for (app, ctx) in node.inner.apps.values() {
        app.disconnection(ctx, &me).await;
    }
}

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
            let Some((a, _)) = node.inner.apps.get(&app) else {
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
            let handle = handle.clone();
            let conn = conn.clone();
            let me = client(node, &conn, session);
            let metrics = node.inner.metrics.clone();
            tokio::spawn(
                async move {
                    let started = Instant::now();
                    let result = match a.rpc() {
                        Some(h) => h.call(&me, &name, args).await,
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

/// What the connection knows of its client's messages: the tab and the highest id processed.
#[derive(Default)]
struct Inbound {
    tab: Option<String>,
    mark: u64,
    ack_due: bool,
}

impl Inbound {
    /// Takes the tab named by `hello` and its received mark (which may come from a previous
    /// connection, on any member when the history is shared).
    async fn set_tab(&mut self, node: &Node, handle: &ConnHandle, tab: String) {
        if tab.is_empty()
            || tab.len() > MAX_TAB_LEN
            || !tab
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            tracing::info!("invalid tab id ignored");
            return;
        }
        match node.inner.history.received_mark(&tab).await {
            Ok(mark) => self.mark = self.mark.max(mark),
            Err(e) => tracing::warn!(error = %e, "received mark of the tab not loaded"),
        }
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

/// Records the tab's mark, then acknowledges client messages up to it.
fn send_ack(node: &Node, handle: &Arc<ConnHandle>, conn: &ConnectionId, tab: Option<String>, mark: u64) {
    let node = node.clone();
    let handle = handle.clone();
    let conn = conn.clone();
    tokio::spawn(
        async move {
            // Not saved, not acknowledged: the client resends, and a member that lost the
            // mark may process the message twice.
            if let Some(tab) = &tab
                && !save_mark(&node, tab, mark).await
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

/// Writes a replay: the frames queued before it first (keeping sequence numbers in order),
/// then its frames.
async fn write_replay(
    ws: &mut impl Socket,
    rx: &mut mpsc::Receiver<String>,
    handle: &ConnHandle,
    items: Vec<Replayed>,
) -> Result<(), WsError> {
    if items.is_empty() {
        return Ok(());
    }
    let msgs = items.iter().filter(|i| matches!(i, Replayed::Msg(..))).count() as u64;
    let (mut seq, queued) = handle.reserve(msgs);
    for _ in 0..queued {
        let Ok(text) = rx.try_recv() else { break };
        handle.metrics.bytes_out.inc_by(text.len() as u64);
        ws.feed(WsMessage::text(text)).await?;
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
        _ = killed.changed() => {
            let code = (*killed.borrow()).unwrap_or(close::INTERNAL_ERROR);
            Err((code, if code == close::SLOW_CONSUMER { "slow consumer" } else { "closed by server" }))
        }
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
    rx: &mut mpsc::Receiver<String>,
    cfg: &crate::TransportConfig,
    reason: (u16, &'static str),
    acked: Option<u64>,
) {
    if reason.0 == close::GOING_AWAY {
        while let Ok(text) = rx.try_recv() {
            if ws.feed(WsMessage::text(text)).await.is_err() {
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
}

/// Whether a read failed because a frame or message exceeded the socket's size limits.
fn is_too_big(e: &WsError) -> bool {
    use tokio_tungstenite::tungstenite::error::CapacityError;
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => true,
        // Adapted from warp's socket: only the text is left.
        WsError::Io(io) => {
            let text = io.to_string();
            text.contains("Space limit") || text.contains("too long")
        }
        _ => false,
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
