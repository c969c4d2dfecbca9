//! One WebSocket connection's IO side: the edge's half of a connection.
//!
//! - The **IO side** (the connection's own task, here) reads client frames, writes queued
//!   server frames and replay chunks, and keeps the connection alive with pings. It never
//!   awaits application code, RPC or the history: a hook waiting on an unreachable store
//!   cannot keep it from hearing its client's pongs.
//! - The **worker** (the node's, a task of its own while it has work) does the connection's
//!   application work: the `connection` hooks, then one client frame at a time, in the order
//!   read. With nothing to do it parks (its task ends); when the pipe says so, the IO side
//!   starts it again ([`Attached::start`](thywill_core::edge::Attached::start)) after handing
//!   it a frame or closing the pipe.
//!
//! The IO side hands decoded frames to the worker through the connection's [`Pipe`], a
//! bounded inbox ([`INBOX_FRAMES`](thywill_core::edge::INBOX_FRAMES) frames,
//! [`INBOX_BYTES`](thywill_core::edge::INBOX_BYTES) bytes). When the inbox is full, the
//! IO side holds the frame it read and stops reading the socket (TCP pushes back on the
//! client; nothing read is dropped), keeps writing and pinging, and suspends the keepalive
//! deadline until the worker takes the held frame: the server being behind is not the client's
//! fault. Replays go the other way, a chunk at a time, read by the worker and written here.
//!
//! The node pushes frames to the connection's bounded queue through [`Out`], the edge's
//! [`Outbound`]: enqueueing never waits, a full queue closes the connection with 4008, and
//! sequence numbers are assigned under the lock that enqueues.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use futures_util::{FutureExt, SinkExt, StreamExt};
use thywill_core::edge::{Attached, Held, Opening, Outbound, Pipe, ReplayItem, SharedFrame};
use thywill_core::protocol::{self, ClientFrame, ErrorCode, ProtocolError, ServerFrame, close};
use thywill_core::{ConnectionId, DisconnectReason, SessionId};
use tracing::Instrument;

use crate::Edge;
use crate::socket::{Socket, WRITE_BATCH, WsError, WsMessage};

/// What the edge knows of a connection from its handshake.
#[derive(Debug, Default)]
pub(crate) struct Handshake {
    /// The `Cookie` header (every one, joined).
    pub(crate) cookie: Option<String>,
    /// The client's socket address, when known.
    pub(crate) peer: Option<SocketAddr>,
    /// The `Origin` header.
    pub(crate) origin: Option<String>,
    /// Who the connection belongs to, as the authentication hook said.
    pub(crate) identity: Option<thywill_core::Identity>,
}

/// Runs a connection to its end.
///
/// The socket is borrowed, not moved in: a socket moved from one future's state into another's
/// would take its room in both (an idle connection is mostly these futures' states, see
/// docs/PERFORMANCE.md).
///
/// The handshake comes boxed: an `async fn` keeps its arguments for its whole life, and this
/// one passes through three (the upgrade task, this, `serve`), so each keeps a pointer rather
/// than a copy.
pub(crate) async fn run(edge: Edge, ws: &mut impl Socket, hs: Box<Handshake>) {
    // Counted until it ends, so that an edge shutting down waits for its connections to close.
    let _live = Live::new(&edge);
    let conn = edge.inner.node.new_connection_id();
    let user_session = hs
        .identity
        .as_ref()
        .filter(|_| edge.inner.config.session_from_identity)
        .map(|identity| SessionId::of_user(&identity.user));
    let session = match (user_session, edge.sessions()) {
        // The user's session, when so configured.
        (Some(session), _) => session,
        // Plain mode: the session is the connection.
        (None, None) => SessionId::from(conn.as_str()),
        (None, Some(sessions)) => match sessions.resolve(hs.cookie.as_deref()).await {
            Ok(id) => id,
            Err(refusal) => {
                tracing::info!(connection = %conn, reason = refusal.reason(), "session refused");
                let _ = ws
                    .send(crate::socket::close(close::SESSION_REFUSED, refusal.reason()))
                    .await;
                let _ = tokio::time::timeout(CLOSING_TIME, SinkExt::close(ws)).await;
                return;
            }
        },
    };
    let span =
        tracing::info_span!("connection", member = %edge.member(), connection = %conn, session = %session);
    serve(&edge, ws, conn, session, hs).instrument(span).await;
}

/// Runs `work`; a panic in it is caught, counted and logged (with `what` it was), and gives
/// `None`. (Not an `async fn`: that would keep `work` in its state twice, once as its argument
/// and once inside `catch_unwind`.)
fn unwinding<'a, T>(
    metrics: &'a crate::metrics::Metrics,
    what: &'static str,
    work: impl std::future::Future<Output = T> + 'a,
) -> impl std::future::Future<Output = Option<T>> + 'a {
    std::panic::AssertUnwindSafe(work)
        .catch_unwind()
        .map(move |done| match done {
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
        })
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy)]
struct Ending {
    /// The close code sent to the client (0: none, the socket is gone).
    code: u16,
    /// For logs and the `connections_closed` metric.
    label: &'static str,
    /// For the applications' `disconnection` hooks.
    reason: DisconnectReason,
}

impl Ending {
    const fn new(code: u16, label: &'static str, reason: DisconnectReason) -> Self {
        Self { code, label, reason }
    }

    const CLOSED_BY_CLIENT: Self = Self::new(0, "closed by client", DisconnectReason::ClosedByClient);
    const SHUTDOWN: Self = Self::new(
        close::GOING_AWAY,
        "server shutting down",
        DisconnectReason::Shutdown,
    );
    const INTERNAL: Self = Self::new(
        close::INTERNAL_ERROR,
        "internal error",
        DisconnectReason::InternalError,
    );
    const WRITE_FAILED: Self = Self::new(0, "write failed", DisconnectReason::ConnectionLost);
    const SLOW_CONSUMER: Self = Self::new(
        close::SLOW_CONSUMER,
        "slow consumer",
        DisconnectReason::SlowConsumer,
    );
    const PROTOCOL: Self = Self::new(
        close::PROTOCOL_ERROR,
        "protocol violation",
        DisconnectReason::ProtocolError,
    );
}

async fn serve(
    edge: &Edge,
    ws: &mut impl Socket,
    conn: ConnectionId,
    session: SessionId,
    hs: Box<Handshake>,
) {
    // Out of its box through a call: the box is freed now, not when `serve` returns.
    let Handshake {
        peer,
        origin,
        identity,
        ..
    } = unboxed(hs);
    let cfg = &edge.inner.config;
    let metrics = edge.inner.metrics.clone();
    let out = Arc::new(Out::new(
        conn.clone(),
        metrics.clone(),
        cfg.outbound_queue,
        cfg.max_outbound_bytes,
    ));
    let mut shutdown = edge.inner.shutdown.subscribe();
    if *shutdown.borrow_and_update() {
        let _ = ws
            .send(crate::socket::close(close::GOING_AWAY, "shutting down"))
            .await;
        return;
    }
    // One wait for the shutdown for the connection's life (not one per pass of its loop: each
    // would join and leave the edge-wide list of waiters).
    let shutdown: Stopping = Box::pin(async move {
        let _ = shutdown.changed().await;
    });
    let pipe = Arc::new(Pipe::new(cfg.max_message_size));
    let opening = Opening::new(conn, session, out.clone(), pipe.clone())
        .with_peer(peer)
        .with_origin(origin)
        .with_identity(identity);
    // From here on the connection is registered with the node: whatever happens next, a
    // panic included, `finish` forgets it and runs its hooks.
    let attached = edge.inner.node.open(opening).await;
    metrics.connections.inc();
    let mut io = Io {
        edge,
        out: &out,
        attached: attached.as_ref(),
        shutdown,
        pipe,
        started: false,
    };
    let ending = unwinding(&metrics, "connection task", io.run(ws))
        .await
        .unwrap_or(Ending::INTERNAL);
    io.end(ws, ending).await;
    // Nothing more is written: what the worker still sends is dropped, not queued.
    out.shut();
    drop(io);

    tracing::debug!(reason = ending.label, code = ending.code, "disconnected");
    metrics.connections.dec();
    metrics
        .closed
        .get_or_create(&crate::metrics::ReasonLabel {
            reason: ending.label.to_owned(),
        })
        .inc();
    attached.finish(ending.reason).await;
}

/// The value in `b`, its box freed.
#[expect(
    clippy::boxed_local,
    reason = "taking the box is the point: it is freed on return"
)]
fn unboxed<T>(b: Box<T>) -> T {
    *b
}

/// The IO side of a connection: reads, writes, pings. Never awaits application code.
struct Io<'a> {
    edge: &'a Edge,
    /// The connection's outbound queue, as the node pushes to it.
    out: &'a Arc<Out>,
    /// The connection as the node keeps it.
    attached: &'a dyn Attached,
    /// Completes when the edge shuts down.
    shutdown: Stopping,
    /// Client frames to the worker, replay chunks from it, the worker's end.
    pipe: Arc<Pipe>,
    /// Whether the worker was started.
    started: bool,
}

impl Io<'_> {
    /// Welcomes the client, starts the worker, then reads, writes and pings until the
    /// connection ends.
    async fn run(&mut self, ws: &mut impl Socket) -> Ending {
        let edge = self.edge;
        let cfg = &edge.inner.config;
        let metrics = &edge.inner.metrics;
        let me = self.attached.client();
        // Registered with the tracker and subscribed to its session's channels already (by
        // `open`): a client that has its welcome receives what is sent to those channels.
        // Frames queued meanwhile follow the welcome.
        // Encoded in a statement of its own: the frame is not kept in the task's state.
        let welcome = ServerFrame::Welcome {
            v: protocol::VERSION,
            connection: me.connection.clone(),
            session: me.session.clone(),
            member: me.member.clone(),
            apps: edge.inner.node.applications().to_vec(),
        }
        .encode();
        if ws.send(WsMessage::text(welcome)).await.is_err() {
            return Ending::WRITE_FAILED;
        }
        tracing::debug!("connected");
        metrics.opened.inc();
        // The worker runs the `connection` hooks first: every client frame is handled after
        // them.
        self.attached.start();
        self.started = true;
        let pipe = self.pipe.clone();
        // The read side is polled only when its own waker fired (or it last gave a frame).
        let gate = ReadGate::new();

        let mut bad_frames = 0u32;
        let mut bucket = TokenBucket::new(cfg.rate_per_sec, cfg.rate_burst);
        let mut last_heard = Instant::now();
        let mut ping = tokio::time::interval(cfg.keepalive_interval);
        ping.tick().await;
        // A frame read while the inbox was full: no more reads until the worker takes it.
        let mut held: Option<Held> = None;
        let mut written = 0usize;
        loop {
            tokio::select! {
                // Reads come before writes: a connection with a full queue still hears its
                // client (pongs, messages); client frames are rate-limited (a burst of at most
                // `rate_burst`, below the queue's bound), so writes cannot starve.
                biased;
                () = self.shutdown.as_mut() => return Ending::SHUTDOWN,
                code = self.out.killed() => return killed_reason(code),
                // The worker ended with the inbox open: a hook panicked.
                _ = pipe.finished() => return Ending::INTERNAL,
                frame = gate.next(ws), if held.is_none() => {
                    // One clock read per frame: the keepalive's and the rate limit's.
                    let now = Instant::now();
                    last_heard = now;
                    let msg = match frame {
                        None => return Ending::CLOSED_BY_CLIENT,
                        Some(Err(e)) => return read_error(&e),
                        Some(Ok(msg)) => msg,
                    };
                    // Every frame counts against the rate limit, control frames included:
                    // a ping flood costs the client its connection, not us memory.
                    if !bucket.take(now) {
                        tracing::info!("rate limit exceeded");
                        return Ending::new(close::RATE_LIMITED, "rate limit exceeded", DisconnectReason::RateLimited);
                    }
                    let text = match &msg {
                        WsMessage::Close(_) => return Ending::CLOSED_BY_CLIENT,
                        WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => continue,
                        WsMessage::Binary(_) => {
                            tracing::info!("binary frame refused");
                            return Ending::new(close::UNSUPPORTED_DATA, "binary frames are not accepted", DisconnectReason::ProtocolError);
                        }
                        WsMessage::Text(t) => t.as_str(),
                    };
                    metrics.bytes_in.inc_by(text.len() as u64);
                    match ClientFrame::decode(text, cfg.max_message_size) {
                        Ok(frame) => {
                            bad_frames = 0;
                            match pipe.try_send(frame, text.len()) {
                                // The worker parked (it had nothing to do): start it again.
                                Ok(parked) => {
                                    if parked {
                                        self.attached.start();
                                    }
                                }
                                Err(full) => held = Some(full),
                            }
                        }
                        Err(ProtocolError::TooBig { size, limit }) => {
                            tracing::info!(size, limit, "message too big");
                            return Ending::new(close::MESSAGE_TOO_BIG, "message too big", DisconnectReason::ProtocolError);
                        }
                        Err(e) => {
                            bad_frames += 1;
                            tracing::info!(error = %e, count = bad_frames, "malformed frame");
                            self.out.push_control(ServerFrame::Error {
                                code: ErrorCode::BadFrame,
                                message: e.to_string(),
                                app: None,
                            });
                            if bad_frames > cfg.max_bad_frames {
                                return Ending::new(close::TOO_MANY_BAD_FRAMES, "too many malformed frames", DisconnectReason::ProtocolError);
                            }
                        }
                    }
                    // Reads go first, but a client whose own frames fill its queue (answers,
                    // skips) is written to before it is read again.
                    while self.out.len() > cfg.outbound_queue / 2 {
                        let Some(frame) = self.out.pop() else { break };
                        let write = ws.send(WsMessage::text(taken(self.out, frame)));
                        if let Err(end) = bounded(write, self.out, &mut self.shutdown, cfg.keepalive_timeout).await {
                            return end;
                        }
                    }
                }
                () = pipe.room(held.as_ref().map_or(0, Held::cost)), if held.is_some() => {
                    if let Some(held) = held.take()
                        && pipe.push_held(held)
                    {
                        self.attached.start();
                    }
                    // The server caught up: the client's keepalive deadline runs again from now.
                    last_heard = Instant::now();
                }
                // Timers before writes: a connection busy writing still pings (and a client
                // that only answers pings is still heard).
                _ = ping.tick() => {
                    // Not while a frame is held: the client's pongs wait behind it unread, and
                    // the server, not the client, is behind.
                    if held.is_none() && last_heard.elapsed() > cfg.keepalive_timeout {
                        tracing::info!("keepalive timeout");
                        return Ending::new(close::KEEPALIVE_TIMEOUT, "keepalive timeout", DisconnectReason::KeepaliveTimeout);
                    }
                    let write = ws.send(WsMessage::Ping(Default::default()));
                    if let Err(end) = bounded(write, self.out, &mut self.shutdown, cfg.keepalive_timeout).await {
                        return end;
                    }
                }
                items = pipe.chunk() => {
                    let write = Box::pin(write_chunk(ws, self.out, items));
                    if let Err(end) = bounded(write, self.out, &mut self.shutdown, cfg.keepalive_timeout).await {
                        return end;
                    }
                    pipe.written();
                }
                frame = self.out.next() => {
                    {
                        let write = write_batch(ws, self.out, frame, &mut written);
                        if let Err(end) = bounded(write, self.out, &mut self.shutdown, cfg.keepalive_timeout).await {
                            return end;
                        }
                        if written >= FAIR_SHARE {
                            // Other connections (the sender of what this one writes among
                            // them) get their turn: fairness in bytes, not in frames.
                            written = 0;
                            tokio::task::yield_now().await;
                        }
                    }
                }
            }
        }
    }

    /// Ends the connection: the worker gets no more frames and no replay is written; the
    /// worker saves the tab's mark (awaited, bounded, when a close frame is to be sent), then
    /// the socket is closed politely (bounded) with `ending`.
    async fn end(&mut self, ws: &mut impl Socket, ending: Ending) {
        // A parked worker is started to finish: it saves the tab's mark.
        if self.pipe.close() {
            self.attached.start();
        }
        if ending.code == 0 {
            return;
        }
        // The tab's mark before the close: a client told to reconnect must find it on
        // whichever member it reaches next (and is then told, with a last `ack`, that nothing
        // needs resending).
        let mut acked = None;
        if self.started {
            match tokio::time::timeout(CLOSING_TIME, self.pipe.finished()).await {
                Ok(saved) => acked = saved,
                Err(_) => {
                    tracing::warn!("the connection's work did not finish in time: closing without a last ack")
                }
            }
        }
        // Bounded: a client that does not read gets no more than two seconds of our time.
        let cfg = &self.edge.inner.config;
        let closing = Box::pin(close_with(ws, self.out, cfg, ending, acked));
        let _ = tokio::time::timeout(CLOSING_TIME, closing).await;
    }
}

/// A frame taken off a connection's queue ([`Out::pop`]): its text, counted as written.
fn taken(handle: &Out, frame: Queued) -> String {
    let text = frame.into_text();
    handle.metrics.bytes_out.inc_by(text.len() as u64);
    text
}

/// Writes `first` and the frames queued behind it, up to [`WRITE_BATCH`] bytes, with one flush:
/// one system call for a burst rather than one per frame. Counts the bytes in `written`.
///
/// Polled by hand rather than an `async fn` awaiting `feed` and `flush`: its state (a frame and
/// a count) is what the connection's task keeps while a write waits, for every connection.
fn write_batch<'a, S: Socket>(
    ws: &'a mut S,
    handle: &'a Out,
    first: Queued,
    written: &'a mut usize,
) -> impl Future<Output = Result<(), WsError>> + 'a {
    let mut batch = 0;
    let mut next = Some(first);
    std::future::poll_fn(move |cx| {
        while let Some(frame) = next.take() {
            if ws.poll_ready_unpin(cx)?.is_pending() {
                next = Some(frame);
                return Poll::Pending;
            }
            let text = taken(handle, frame);
            batch += text.len();
            ws.start_send_unpin(WsMessage::text(text))?;
            next = if batch < WRITE_BATCH { handle.pop() } else { None };
        }
        std::task::ready!(ws.poll_flush_unpin(cx))?;
        *written += std::mem::take(&mut batch);
        Poll::Ready(Ok(()))
    })
}

/// Writes a chunk of a replay: the frames queued before it first, then its own.
async fn write_chunk(ws: &mut impl Socket, handle: &Out, items: Vec<ReplayItem>) -> Result<(), WsError> {
    if items.is_empty() {
        return Ok(());
    }
    let msgs = items.iter().filter(|i| matches!(i, ReplayItem::Msg(..))).count() as u64;
    let (mut seq, queued) = handle.reserve(msgs);
    for _ in 0..queued {
        let Some(frame) = handle.pop() else { break };
        ws.feed(WsMessage::text(taken(handle, frame))).await?;
    }
    for item in items {
        let text = match item {
            ReplayItem::Frame(f) => f.encode(),
            ReplayItem::Msg(frame) => {
                let text = frame.frame(seq);
                seq += 1;
                text
            }
        };
        handle.metrics.bytes_out.inc_by(text.len() as u64);
        ws.feed(WsMessage::text(text)).await?;
    }
    ws.flush().await
}

/// The ending a kill with `code` asks for.
fn killed_reason(code: u16) -> Ending {
    match code {
        close::SLOW_CONSUMER => Ending::SLOW_CONSUMER,
        code => Ending::new(code, "closed by server", DisconnectReason::ClosedByServer),
    }
}

/// The ending a failed read asks for: 1009 for a frame over the size limit, 1007 for text
/// that is not UTF-8, 1002 for other violations of the WebSocket protocol; no close frame
/// when the socket itself failed.
fn read_error(e: &WsError) -> Ending {
    use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError as WsProtocol};
    match ws_error(e) {
        Some(WsError::Capacity(CapacityError::MessageTooLong { .. })) => {
            tracing::info!(error = %e, "message too big");
            Ending::new(
                close::MESSAGE_TOO_BIG,
                "message too big",
                DisconnectReason::ProtocolError,
            )
        }
        Some(WsError::Utf8(_)) => {
            tracing::info!(error = %e, "text frame is not UTF-8");
            Ending::new(
                close::INVALID_PAYLOAD,
                "invalid UTF-8",
                DisconnectReason::ProtocolError,
            )
        }
        Some(WsError::Protocol(WsProtocol::ResetWithoutClosingHandshake)) => {
            Ending::new(0, "closed by client", DisconnectReason::ConnectionLost)
        }
        Some(WsError::Protocol(p)) => {
            tracing::info!(error = %p, "websocket protocol violation");
            Ending::PROTOCOL
        }
        _ => {
            tracing::debug!(error = %e, "read failed");
            Ending::new(0, "read failed", DisconnectReason::ConnectionLost)
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

/// A running connection task, counted in the edge's `live` gauge.
struct Live(Edge);

impl Live {
    fn new(edge: &Edge) -> Self {
        edge.inner.live.send_modify(|n| *n += 1);
        Self(edge.clone())
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
///
/// Polled by hand, in the order a biased `select!` would (the write first): every connection's
/// task keeps room for this state, and the deadline's timer is allocated only when a write
/// does not complete at once (most do).
fn bounded<'a, T>(
    mut write: impl Future<Output = Result<T, WsError>> + Unpin + 'a,
    out: &'a Out,
    shutdown: &'a mut Stopping,
    limit: std::time::Duration,
) -> impl Future<Output = Result<(), Ending>> + 'a {
    let mut stalled: Option<Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(written) = write.poll_unpin(cx) {
            return Poll::Ready(written.map(|_| ()).map_err(|_| Ending::WRITE_FAILED));
        }
        if let Poll::Ready(code) = out.poll_killed(cx) {
            return Poll::Ready(Err(killed_reason(code)));
        }
        if shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(Ending::SHUTDOWN));
        }
        let stalled = stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if stalled.as_mut().poll(cx).is_ready() {
            tracing::info!("write stalled: closing slow consumer");
            return Poll::Ready(Err(Ending::SLOW_CONSUMER));
        }
        Poll::Pending
    })
}

/// Closes politely with `reason`: on shutdown the frames still queued, the last `ack` and a
/// `reconnect` hint (with jitter, to spread this member's clients) go first.
async fn close_with(
    ws: &mut impl Socket,
    out: &Out,
    cfg: &crate::TransportConfig,
    reason: Ending,
    acked: Option<u64>,
) {
    if reason.code == close::GOING_AWAY {
        while let Some(frame) = out.pop() {
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
    let _ = ws.send(crate::socket::close(reason.code, reason.label)).await;
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

/// Polls a socket's read side only when it may have something: when the waker it registered
/// fired, or when its last poll gave a frame (more may be buffered). Every other wake-up of the
/// connection's task (a frame queued to write, a timer) then skips the read path, which costs
/// more than it looks: tungstenite zeroes its read buffer before each read attempt, and the
/// attempt goes down the upgraded socket's layers before the readiness check says "not yet".
struct ReadGate {
    state: Arc<GateState>,
    /// Given to the socket's read side: sets `ready`, then wakes the task.
    waker: Waker,
}

struct GateState {
    /// The read side may have something.
    ready: std::sync::atomic::AtomicBool,
    /// The connection's task.
    task: futures_util::task::AtomicWaker,
}

impl std::task::Wake for GateState {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.store(true, std::sync::atomic::Ordering::Release);
        self.task.wake();
    }
}

impl ReadGate {
    fn new() -> Self {
        let state = Arc::new(GateState {
            ready: std::sync::atomic::AtomicBool::new(true),
            task: futures_util::task::AtomicWaker::new(),
        });
        let waker = Waker::from(state.clone());
        Self { state, waker }
    }

    /// The socket's next frame (as `StreamExt::next`), read only when it may have one.
    fn next<'a, S: Socket>(
        &'a self,
        ws: &'a mut S,
    ) -> impl Future<Output = Option<Result<WsMessage, WsError>>> + 'a {
        std::future::poll_fn(move |cx| {
            self.state.task.register(cx.waker());
            if !self.state.ready.swap(false, std::sync::atomic::Ordering::AcqRel) {
                return Poll::Pending;
            }
            match ws.poll_next_unpin(&mut Context::from_waker(&self.waker)) {
                Poll::Ready(item) => {
                    // More frames may be buffered already: the next pass reads again.
                    self.state.ready.store(true, std::sync::atomic::Ordering::Release);
                    Poll::Ready(item)
                }
                Poll::Pending => Poll::Pending,
            }
        })
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

    /// Takes one token at `now`; false when the bucket is empty.
    fn take(&mut self, now: Instant) -> bool {
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

/// A frame waiting in a connection's queue.
pub(crate) enum Queued {
    /// Encoded already (control frames).
    Text(String),
    /// A message frame shared by every connection it goes to, written with this
    /// connection's sequence number.
    Msg(u64, Arc<SharedFrame>),
}

impl Queued {
    /// The frame's length in bytes (what it costs the connection's byte bound).
    fn len(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Msg(_, e) => e.len(),
        }
    }

    /// The frame's text.
    fn into_text(self) -> String {
        match self {
            Self::Text(t) => t,
            Self::Msg(seq, e) => e.frame(seq),
        }
    }
}

/// A connection's shutdown, awaited once for its life.
type Stopping = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The next sequence number and the queue, locked together so that sequence order equals
/// queue order.
struct OutState {
    seq: u64,
    /// The frames to write, in order: no memory while empty (an idle connection).
    queue: VecDeque<Queued>,
    /// The bound of `queue`, in frames.
    max_frames: usize,
    /// Bytes of the frames in the queue, as if each were the connection's own copy.
    bytes: usize,
    /// The bound of `bytes` (a slow consumer past it).
    max_bytes: usize,
    /// Set to a close code to make the IO side close the socket.
    kill: Option<u16>,
    /// The IO side no longer writes: nothing more is queued.
    shut: bool,
    /// The IO side's task, waiting for a frame or a kill.
    waker: Option<Waker>,
}

/// A connection's bounded outbound queue: the edge's [`Outbound`], which the node pushes to,
/// and its kill switch. One lock and one waker: a push wakes the connection's task, nobody
/// else.
pub(crate) struct Out {
    conn: ConnectionId,
    metrics: Arc<crate::metrics::Metrics>,
    out: Mutex<OutState>,
}

impl Out {
    /// A queue of `frames` frames and `max_bytes` bytes at most.
    fn new(
        conn: ConnectionId,
        metrics: Arc<crate::metrics::Metrics>,
        frames: usize,
        max_bytes: usize,
    ) -> Self {
        Self {
            conn,
            metrics,
            out: Mutex::new(OutState {
                seq: 0,
                queue: VecDeque::new(),
                max_frames: frames,
                bytes: 0,
                max_bytes,
                kill: None,
                shut: false,
                waker: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, OutState> {
        self.out.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a frame without waiting; a full queue (in frames or bytes) marks the client a
    /// slow consumer. Gives the waker to wake (once the lock is released) when it was queued
    /// or the connection was killed.
    fn enqueue(&self, out: &mut OutState, frame: Queued) -> Result<Option<Waker>, Option<Waker>> {
        if out.shut {
            return Err(None);
        }
        let len = frame.len();
        if out.bytes.saturating_add(len) > out.max_bytes || out.queue.len() >= out.max_frames {
            return Err(self.overflow(out));
        }
        out.queue.push_back(frame);
        out.bytes += len;
        Ok(out.waker.take())
    }

    fn overflow(&self, out: &mut OutState) -> Option<Waker> {
        self.metrics.queue_drops.inc();
        if out.kill.is_some() {
            return None;
        }
        out.kill = Some(close::SLOW_CONSUMER);
        self.metrics.slow_consumers.inc();
        tracing::warn!(connection = %self.conn, "outbound queue full: closing slow consumer");
        out.waker.take()
    }

    /// The IO side: the next frame queued, its bytes no longer counted.
    fn pop(&self) -> Option<Queued> {
        let mut out = self.state();
        let frame = out.queue.pop_front()?;
        out.bytes = out.bytes.saturating_sub(frame.len());
        if out.queue.is_empty() && out.queue.capacity() > IDLE_QUEUE {
            // A burst's worth of slots is not kept by a connection gone quiet.
            out.queue = VecDeque::new();
        }
        Some(frame)
    }

    /// The IO side: how many frames are queued.
    fn len(&self) -> usize {
        self.state().queue.len()
    }

    /// The IO side: completes with the next frame queued.
    fn next(&self) -> impl Future<Output = Queued> + '_ {
        std::future::poll_fn(move |cx| {
            let mut out = self.state();
            match out.queue.pop_front() {
                Some(frame) => {
                    out.bytes = out.bytes.saturating_sub(frame.len());
                    Poll::Ready(frame)
                }
                None => {
                    register(&mut out.waker, cx);
                    Poll::Pending
                }
            }
        })
    }

    /// The IO side: completes with the close code once the connection is killed.
    fn killed(&self) -> impl Future<Output = u16> + '_ {
        std::future::poll_fn(move |cx| self.poll_killed(cx))
    }

    /// The IO side: the close code once the connection is killed; until then the task is
    /// woken when it is.
    fn poll_killed(&self, cx: &Context<'_>) -> Poll<u16> {
        let mut out = self.state();
        match out.kill {
            Some(code) => Poll::Ready(code),
            None => {
                register(&mut out.waker, cx);
                Poll::Pending
            }
        }
    }

    /// The IO side ended: what is queued is dropped, and nothing more is queued.
    fn shut(&self) {
        let mut out = self.state();
        out.shut = true;
        out.queue = VecDeque::new();
        out.bytes = 0;
        out.waker = None;
    }

    /// Reserves `n` sequence numbers for frames the IO side writes itself (replays); returns
    /// the first one and how many frames are queued before them.
    fn reserve(&self, n: u64) -> (u64, usize) {
        let mut out = self.state();
        let first = out.seq + 1;
        out.seq += n;
        (first, out.queue.len())
    }
}

/// Capacity of the outbound queue that a connection keeps once its queue is empty again.
const IDLE_QUEUE: usize = 8;

/// Keeps the waker of the task polling, replacing an older one only when it would not wake
/// the same task.
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// Wakes `waker` (taken under the lock, woken after it is released).
fn wake(waker: Option<Waker>) {
    if let Some(w) = waker {
        w.wake();
    }
}

impl Outbound for Out {
    fn push(&self, frame: &Arc<SharedFrame>) -> bool {
        let mut out = self.state();
        let seq = out.seq + 1;
        let queued = self.enqueue(&mut out, Queued::Msg(seq, frame.clone()));
        if queued.is_ok() {
            out.seq = seq;
        }
        drop(out);
        finish(queued)
    }

    fn push_control(&self, frame: ServerFrame) -> bool {
        // Encoded before the lock is taken.
        let frame = Queued::Text(frame.encode());
        let mut out = self.state();
        let queued = self.enqueue(&mut out, frame);
        drop(out);
        finish(queued)
    }

    fn close(&self, code: u16) {
        let mut out = self.state();
        if out.kill.is_some() {
            return;
        }
        out.kill = Some(code);
        let waker = out.waker.take();
        drop(out);
        wake(waker);
    }
}

/// Wakes the IO side if `queued` says so; whether the frame was queued.
fn finish(queued: Result<Option<Waker>, Option<Waker>>) -> bool {
    match queued {
        Ok(waker) => {
            wake(waker);
            true
        }
        Err(waker) => {
            wake(waker);
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
        let now = std::time::Instant::now();
        assert!(b.take(now) && b.take(now) && b.take(now));
        assert!(!b.take(now));
    }
}
