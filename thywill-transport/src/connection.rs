//! One WebSocket connection, in two tasks.
//!
//! - The **IO side** (the connection's own task) reads client frames, writes queued server
//!   frames and replay chunks, and keeps the connection alive with pings. It never awaits
//!   application code, RPC or the history: a hook waiting on an unreachable store cannot keep
//!   it from hearing its client's pongs.
//! - The **worker** (a task of its own) does the connection's application work: the
//!   `connection` hooks, then one client frame at a time, in the order read (`received`, RPC
//!   dispatch, `hello`/`resume`: the tab's mark and the history reads of replays), and at the
//!   end saves the tab's mark.
//!
//! The IO side hands decoded frames to the worker through a bounded inbox ([`INBOX_FRAMES`]
//! frames, [`INBOX_BYTES`] bytes). When the inbox is full, the IO side holds the frame it
//! read and stops reading the socket (TCP pushes back on the client; nothing read is
//! dropped), keeps writing and pinging, and suspends the keepalive deadline until the worker
//! takes the held frame: the server being behind is not the client's fault. Replays go the
//! other way, a chunk at a time, read by the worker and written by the IO side.

use std::sync::Arc;
use std::time::Instant;

use futures_util::task::AtomicWaker;
use futures_util::{FutureExt, SinkExt, StreamExt};
use thywill_core::protocol::{self, ClientFrame, ErrorCode, ProtocolError, ServerFrame, close};
use thywill_core::{Client, ConnectionId, DisconnectReason, Message, RpcError, RpcErrorCode, SessionId};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::Instrument;

use crate::node::{ConnHandle, Encoded, Node, Queued, client};
use crate::socket::{Socket, WsError, WsMessage};
use crate::streams::Replayed;

/// Concurrent RPC calls per connection; further calls wait (the worker pauses, and the IO
/// side stops reading once the inbox is full).
const MAX_PENDING_RPC: usize = 64;

/// Client frames read but not yet taken by the worker, at most.
const INBOX_FRAMES: usize = 32;

/// Bytes of client frames read but not yet handled by the worker, at most (or one frame of
/// the configured `max_message_size`, if that is larger).
const INBOX_BYTES: usize = 256 * 1024;

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
    let pipe = Arc::new(Pipe::new(cfg.max_message_size));
    let worker = Worker {
        node: node.clone(),
        handle: handle.clone(),
        me: me.clone(),
        pipe: pipe.clone(),
        inbound: Inbound::default(),
        rpc_slots: Arc::new(Semaphore::new(MAX_PENDING_RPC)),
    };
    let mut io = Io {
        node: &node,
        handle: &handle,
        conn: &conn,
        rx,
        killed,
        shutdown,
        pipe,
        worker: None,
    };
    let ending = unwinding(&metrics, "connection task", io.run(&mut ws, &me, worker))
        .await
        .unwrap_or(Ending::INTERNAL);
    let worker = io.end(&mut ws, ending).await;
    // Nothing more is written: what the worker still sends is dropped, not queued.
    drop(io);
    drop(ws);

    tracing::debug!(reason = ending.label, code = ending.code, "disconnected");
    metrics.connections.dec();
    metrics
        .closed
        .get_or_create(&crate::metrics::ReasonLabel {
            reason: ending.label.to_owned(),
        })
        .inc();
    node.inner.forget_connection(&conn);
    let tracker = node.inner.tracker.clone();
    if let Some(Err(e)) = unwinding(&metrics, "tracker", tracker.disconnected(&me)).await {
        tracing::warn!(error = %e, "tracker did not record the disconnection");
    }
    // The worker finishes the frames read before the end; the disconnection hooks come after
    // every other hook of the connection.
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    for (app, ctx) in node.inner.apps.values() {
        unwinding(
            &metrics,
            "disconnection hook",
            app.disconnection(ctx, &me, ending.reason),
        )
        .await;
    }
}

/// A chunk of a replay, from the worker to the IO side, and how the worker learns it was
/// written (boxed: a channel allocates room for 32 items, even one of capacity 1).
type Chunk = (Vec<Replayed>, oneshot::Sender<()>);

/// The IO side of a connection: reads, writes, pings. Never awaits application code.
struct Io<'a> {
    node: &'a Node,
    handle: &'a Arc<ConnHandle>,
    conn: &'a ConnectionId,
    /// The connection's outbound queue.
    rx: mpsc::Receiver<Queued>,
    killed: watch::Receiver<Option<u16>>,
    shutdown: watch::Receiver<bool>,
    /// Client frames to the worker, replay chunks from it.
    pipe: Arc<Pipe>,
    /// The worker, once started: it gives the tab's mark it saved at the end.
    worker: Option<tokio::task::JoinHandle<Option<u64>>>,
}

impl Io<'_> {
    /// Welcomes the client, starts the worker, then reads, writes and pings until the
    /// connection ends.
    async fn run(&mut self, ws: &mut impl Socket, me: &Client, worker: Worker) -> Ending {
        let node = self.node;
        let cfg = &node.inner.config;
        let metrics = &node.inner.metrics;
        let welcome = ServerFrame::Welcome {
            v: protocol::VERSION,
            connection: self.conn.clone(),
            session: me.session.clone(),
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
            return Ending::WRITE_FAILED;
        }
        tracing::debug!("connected");
        metrics.opened.inc();
        // The worker runs the `connection` hooks first: every client frame is handled after
        // them.
        self.worker = Some(tokio::spawn(worker.run().in_current_span()));
        let pipe = self.pipe.clone();

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
                _ = self.shutdown.changed() => return Ending::SHUTDOWN,
                _ = self.killed.changed() => return killed_reason(&self.killed),
                // The worker ended with the inbox open: a hook panicked.
                _ = worker_ended(&mut self.worker) => {
                    self.worker = None;
                    return Ending::INTERNAL;
                }
                frame = ws.next(), if held.is_none() => {
                    last_heard = Instant::now();
                    let msg = match frame {
                        None => return Ending::CLOSED_BY_CLIENT,
                        Some(Err(e)) => return read_error(&e),
                        Some(Ok(msg)) => msg,
                    };
                    // Every frame counts against the rate limit, control frames included:
                    // a ping flood costs the client its connection, not us memory.
                    if !bucket.take() {
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
                            held = pipe.try_send(frame, text.len()).err();
                        }
                        Err(ProtocolError::TooBig { size, limit }) => {
                            tracing::info!(size, limit, "message too big");
                            return Ending::new(close::MESSAGE_TOO_BIG, "message too big", DisconnectReason::ProtocolError);
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
                                return Ending::new(close::TOO_MANY_BAD_FRAMES, "too many malformed frames", DisconnectReason::ProtocolError);
                            }
                        }
                    }
                    // Reads go first, but a client whose own frames fill its queue (answers,
                    // skips) is written to before it is read again.
                    while self.rx.len() > cfg.outbound_queue / 2 {
                        let Ok(frame) = self.rx.try_recv() else { break };
                        let write = ws.send(WsMessage::text(self.taken(frame)));
                        if let Err(end) = bounded(write, &mut self.killed, &mut self.shutdown, cfg.keepalive_timeout).await {
                            return end;
                        }
                    }
                }
                () = pipe.room(held.as_ref().map_or(0, |h| h.cost)), if held.is_some() => {
                    if let Some(held) = held.take() {
                        pipe.push(*held.frame, held.cost);
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
                    if let Err(end) = bounded(write, &mut self.killed, &mut self.shutdown, cfg.keepalive_timeout).await {
                        return end;
                    }
                }
                (items, done) = pipe.chunk() => {
                    let write = Box::pin(write_chunk(ws, &mut self.rx, self.handle, items));
                    if let Err(end) = bounded(write, &mut self.killed, &mut self.shutdown, cfg.keepalive_timeout).await {
                        return end;
                    }
                    let _ = done.send(());
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
                    None => return Ending::INTERNAL,
                },
            }
        }
    }

    /// A frame taken off the queue: its text, its bytes no longer counted.
    fn taken(&self, frame: Queued) -> String {
        taken(self.handle, frame)
    }

    /// Ends the connection: the worker gets no more frames and no replay is written; the
    /// worker saves the tab's mark (awaited, bounded, when a close frame is to be sent), then
    /// the socket is closed politely (bounded) with `ending`. Returns the worker if it is
    /// still running.
    async fn end(
        &mut self,
        ws: &mut impl Socket,
        ending: Ending,
    ) -> Option<tokio::task::JoinHandle<Option<u64>>> {
        self.pipe.close();
        let mut worker = self.worker.take();
        if ending.code == 0 {
            return worker;
        }
        // The tab's mark before the close: a client told to reconnect must find it on
        // whichever member it reaches next (and is then told, with a last `ack`, that nothing
        // needs resending).
        let mut acked = None;
        if let Some(running) = worker.as_mut() {
            match tokio::time::timeout(CLOSING_TIME, running).await {
                Ok(saved) => {
                    acked = saved.ok().flatten();
                    worker = None;
                }
                Err(_) => {
                    tracing::warn!("the connection's work did not finish in time: closing without a last ack")
                }
            }
        }
        // Bounded: a client that does not read gets no more than two seconds of our time.
        let cfg = &self.node.inner.config;
        let closing = Box::pin(close_with(ws, &mut self.rx, cfg, ending, acked));
        let _ = tokio::time::timeout(CLOSING_TIME, closing).await;
        worker
    }
}

/// What passes between a connection's IO side and its worker: client frames one way, in a
/// bounded inbox (in frames and bytes), replay chunks the other, one at a time (the worker
/// waits for each to be written before it reads the next). Holds no buffer while idle.
struct Pipe {
    state: std::sync::Mutex<PipeState>,
    /// The IO side, waiting for room in the inbox or for a replay chunk.
    io: AtomicWaker,
    /// The worker, waiting for a frame.
    worker: AtomicWaker,
    /// The inbox's bound in bytes.
    max_bytes: usize,
}

#[derive(Default)]
struct PipeState {
    /// Frames for the worker, each with what it costs the byte bound.
    inbox: std::collections::VecDeque<(ClientFrame, usize)>,
    /// Bytes of the frames in the inbox and of the one being handled.
    bytes: usize,
    /// The IO side waits for room.
    waiting: bool,
    /// The IO side ended: no more frames (those in the inbox are still handled), no more
    /// replay chunks.
    closed: bool,
    /// A replay chunk to write.
    chunk: Option<Chunk>,
}

/// A frame read while the inbox was full (boxed: rarely there), and what it costs.
struct Held {
    frame: Box<ClientFrame>,
    cost: usize,
}

impl Pipe {
    /// A pipe whose inbox holds at least one frame of `max_message_size`.
    fn new(max_message_size: usize) -> Self {
        Self {
            state: std::sync::Mutex::default(),
            io: AtomicWaker::new(),
            worker: AtomicWaker::new(),
            max_bytes: INBOX_BYTES.max(max_message_size),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PipeState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fits(&self, state: &PipeState, cost: usize) -> bool {
        state.inbox.len() < INBOX_FRAMES && state.bytes + cost <= self.max_bytes
    }

    /// IO side: puts a frame read as `len` bytes in the inbox if there is room; gives it back
    /// if not.
    fn try_send(&self, frame: ClientFrame, len: usize) -> Result<(), Held> {
        // A frame larger than the bound (never, with the default limits) takes all of it.
        let cost = len.clamp(1, self.max_bytes);
        if !self.fits(&self.state(), cost) {
            return Err(Held {
                frame: Box::new(frame),
                cost,
            });
        }
        self.push(frame, cost);
        Ok(())
    }

    /// IO side: completes when a frame of `cost` fits in the inbox.
    async fn room(&self, cost: usize) {
        std::future::poll_fn(|cx| {
            self.io.register(cx.waker());
            let mut state = self.state();
            if self.fits(&state, cost) {
                state.waiting = false;
                std::task::Poll::Ready(())
            } else {
                state.waiting = true;
                std::task::Poll::Pending
            }
        })
        .await;
    }

    /// IO side: puts a frame in the inbox (which has room: only the IO side adds frames).
    fn push(&self, frame: ClientFrame, cost: usize) {
        {
            let mut state = self.state();
            state.bytes += cost;
            state.inbox.push_back((frame, cost));
        }
        self.worker.wake();
    }

    /// IO side: the next replay chunk to write.
    async fn chunk(&self) -> Chunk {
        std::future::poll_fn(|cx| {
            self.io.register(cx.waker());
            match self.state().chunk.take() {
                Some(chunk) => std::task::Poll::Ready(chunk),
                None => std::task::Poll::Pending,
            }
        })
        .await
    }

    /// IO side: the connection ends. The worker handles the frames in the inbox, then stops;
    /// a chunk not yet written is dropped, which tells the worker.
    fn close(&self) {
        {
            let mut state = self.state();
            state.closed = true;
            state.chunk = None;
        }
        self.worker.wake();
    }

    /// Worker: the next frame and its cost; `None` once the IO side closed the pipe and the
    /// inbox is empty.
    async fn next(&self) -> Option<(ClientFrame, usize)> {
        std::future::poll_fn(|cx| {
            self.worker.register(cx.waker());
            let mut state = self.state();
            match state.inbox.pop_front() {
                Some(work) => std::task::Poll::Ready(Some(work)),
                None if state.closed => std::task::Poll::Ready(None),
                None => std::task::Poll::Pending,
            }
        })
        .await
    }

    /// Worker: a frame of `cost` was handled; its bytes are free again.
    fn handled(&self, cost: usize) {
        let waiting = {
            let mut state = self.state();
            state.bytes = state.bytes.saturating_sub(cost);
            state.waiting
        };
        if waiting {
            self.io.wake();
        }
    }

    /// Worker: hands a replay chunk to the IO side; false if it writes no more replays, or
    /// still has a chunk (one the worker gave up waiting for).
    fn put(&self, chunk: Chunk) -> bool {
        {
            let mut state = self.state();
            if state.closed || state.chunk.is_some() {
                return false;
            }
            state.chunk = Some(chunk);
        }
        self.io.wake();
        true
    }
}

/// The application side of a connection: its hooks, RPC dispatch, the tab's mark, replays.
/// Runs on a task of its own, one client frame at a time, in order.
struct Worker {
    node: Node,
    handle: Arc<ConnHandle>,
    me: Client,
    pipe: Arc<Pipe>,
    inbound: Inbound,
    rpc_slots: Arc<Semaphore>,
}

impl Worker {
    /// Runs the `connection` hooks, then handles frames until the IO side closes the inbox
    /// (the frames already in it are handled) or a hook panics; then saves the tab's mark.
    /// Gives the mark if it was saved.
    async fn run(mut self) -> Option<u64> {
        let metrics = self.node.inner.metrics.clone();
        // After a panic too: the tab's mark is saved, then the IO side sees the worker end
        // with its inbox open and closes with 1011.
        unwinding(&metrics, "connection hook", self.work()).await;
        let key = self.inbound.key.as_ref()?;
        let mark = self.inbound.mark;
        (mark > 0 && save_mark(&self.node, key, mark).await).then_some(mark)
    }

    async fn work(&mut self) {
        for (app, ctx) in self.node.inner.apps.values() {
            app.connection(ctx, &self.me).await;
        }
        // Only while an acknowledgement is due (an idle connection holds no timer).
        let mut ack_timer = None;
        loop {
            tokio::select! {
                biased;
                () = expiry(&mut ack_timer), if self.inbound.ack_due => {
                    self.inbound.ack_due = false;
                    ack_timer = None;
                    send_ack(&self.node, &self.handle, &self.me.connection, self.inbound.key.clone(), self.inbound.mark);
                }
                work = self.pipe.next() => {
                    let Some((frame, cost)) = work else { return };
                    let mut duplicate = false;
                    let mut admitted = false;
                    if let ClientFrame::Msg { id: Some(id), .. } = &frame {
                        if self.node.is_shutting_down() {
                            // Neither processed nor counted in the tab's mark: no ack covers
                            // it, so the client resends it to the member it reconnects to.
                            tracing::debug!(id, "client message left to the next member: shutting down");
                            self.pipe.handled(cost);
                            continue;
                        }
                        duplicate = !self.inbound.admit(*id);
                        admitted = !duplicate;
                        // Duplicates are acknowledged again: the client still has them.
                        if !self.inbound.ack_due {
                            self.inbound.ack_due = true;
                            ack_timer = Some(Box::pin(tokio::time::sleep(ACK_DELAY)));
                        }
                        if duplicate {
                            tracing::debug!(id, "duplicate client message dropped");
                            self.node.inner.metrics.duplicates_dropped.inc();
                        }
                    }
                    if admitted {
                        // Counted in the mark (the client will not resend it): its sends are
                        // routed even if the node starts shutting down meanwhile.
                        ADMITTED.scope((), Box::pin(self.handle_frame(frame))).await;
                    } else if !duplicate {
                        // Boxed: the worker of an idle connection stays small.
                        Box::pin(self.handle_frame(frame)).await;
                    }
                    // Its bytes count against the inbox until it is handled.
                    self.pipe.handled(cost);
                }
            }
        }
    }

    async fn handle_frame(&mut self, frame: ClientFrame) {
        let node = &self.node;
        let conn = &self.me.connection;
        let streams = match frame {
            ClientFrame::Hello { v, tab, streams, .. } => {
                if v != protocol::VERSION {
                    self.handle.push_control(
                        conn,
                        ServerFrame::Error {
                            code: ErrorCode::UnsupportedVersion,
                            message: format!("server speaks protocol version {}", protocol::VERSION),
                            app: None,
                        },
                    );
                }
                if let Some(tab) = tab {
                    Box::pin(self.inbound.set_tab(node, &self.handle, &self.me.session, tab)).await;
                }
                streams
            }
            ClientFrame::Resume { streams } => streams,
            other => {
                handle_frame(node, &self.handle, conn, &self.me.session, other, &self.rpc_slots).await;
                return;
            }
        };
        Box::pin(self.replay(streams)).await;
    }

    /// Answers `hello` / `resume`: the streams' missed messages, read in bounded chunks and
    /// handed one at a time to the IO side, which writes each after the frames queued before
    /// it (keeping sequence numbers in order); within [`REPLAY_TIME`] in all.
    async fn replay(&self, streams: std::collections::BTreeMap<String, thywill_core::Offset>) {
        let node = &self.node;
        let (lost, mut resumes) = node.inner.resumes(&self.me.connection, &self.me.session, streams);
        let deadline = tokio::time::Instant::now() + REPLAY_TIME;
        if !self.pass(lost, deadline).await {
            return;
        }
        let tab = self.inbound.tab.clone();
        for resume in &mut resumes {
            while !resume.done {
                let read = node.inner.chunk(resume, tab.as_deref());
                let Ok(items) = tokio::time::timeout_at(deadline, read).await else {
                    tracing::warn!("replay took too long: the rest is left to the client's next resume");
                    return;
                };
                if !self.pass(items, deadline).await {
                    return;
                }
            }
        }
    }

    /// Has the IO side write a chunk and waits until it is written; false when the replay
    /// must stop (the connection is ending, or the deadline passed).
    async fn pass(&self, items: Vec<Replayed>, deadline: tokio::time::Instant) -> bool {
        if items.is_empty() {
            return true;
        }
        let (done, written) = oneshot::channel();
        if !self.pipe.put((items, done)) {
            return false;
        }
        match tokio::time::timeout_at(deadline, written).await {
            Ok(written) => written.is_ok(),
            Err(_) => {
                tracing::warn!("replay took too long: the rest is left to the client's next resume");
                false
            }
        }
    }
}

/// Completes when `timer` (if set) expires.
async fn expiry(timer: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>) {
    match timer {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Completes when the worker (if started) has ended.
async fn worker_ended(worker: &mut Option<tokio::task::JoinHandle<Option<u64>>>) {
    match worker {
        Some(running) => {
            let _ = running.await;
        }
        None => std::future::pending().await,
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
    match (*killed.borrow()).unwrap_or(close::INTERNAL_ERROR) {
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
        // Handled by the worker, which has replays written.
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

tokio::task_local! {
    /// Set while the worker handles a client message it counted in the tab's mark. Such a
    /// message is acknowledged whatever happens next, so the client never resends it: the node
    /// routes its sends even once a shutdown has begun (see `Inner::route`). A message that
    /// comes out of the inbox after the shutdown began is not counted, not processed, and
    /// resent by the client to the member it reconnects to. (Sends from tasks the hook spawns
    /// are not covered.)
    pub(crate) static ADMITTED: ();
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
) -> Result<(), Ending> {
    tokio::select! {
        biased;
        written = write => written.map(|_| ()).map_err(|_| Ending::WRITE_FAILED),
        _ = killed.changed() => Err(killed_reason(killed)),
        _ = shutdown.changed() => Err(Ending::SHUTDOWN),
        () = tokio::time::sleep(limit) => {
            tracing::info!("write stalled: closing slow consumer");
            Err(Ending::SLOW_CONSUMER)
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
    if reason.code == close::GOING_AWAY {
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
    use futures_util::FutureExt;
    use thywill_core::protocol::ClientFrame;

    use super::{INBOX_BYTES, INBOX_FRAMES, Pipe, TokenBucket};

    fn frame() -> ClientFrame {
        ClientFrame::Resume {
            streams: Default::default(),
        }
    }

    #[tokio::test]
    async fn the_inbox_is_bounded_in_bytes_until_frames_are_handled() {
        let pipe = Pipe::new(1024);
        let third = INBOX_BYTES / 3;
        for _ in 0..3 {
            assert!(pipe.try_send(frame(), third).is_ok());
        }
        let Err(held) = pipe.try_send(frame(), third) else {
            panic!("a fourth third of the byte bound was admitted");
        };
        // Taken by the worker, not yet handled: its bytes still count.
        let Some(Some((_, cost))) = pipe.next().now_or_never() else {
            panic!("no frame for the worker");
        };
        assert!(
            pipe.room(held.cost).now_or_never().is_none(),
            "room before a frame was handled"
        );
        pipe.handled(cost);
        assert!(
            pipe.room(held.cost).now_or_never().is_some(),
            "no room after a frame was handled"
        );
        pipe.push(*held.frame, held.cost);
        // Closed: the frames read are still handled, then the worker stops.
        pipe.close();
        for _ in 0..3 {
            assert!(matches!(pipe.next().now_or_never(), Some(Some(_))));
        }
        assert!(matches!(pipe.next().now_or_never(), Some(None)));
    }

    #[tokio::test]
    async fn the_inbox_is_bounded_in_frames_and_takes_a_message_of_any_allowed_size() {
        let pipe = Pipe::new(1024);
        for _ in 0..INBOX_FRAMES {
            assert!(pipe.try_send(frame(), 1).is_ok());
        }
        assert!(pipe.try_send(frame(), 1).is_err());
        // A `max_message_size` above the byte bound raises it to one such message.
        let pipe = Pipe::new(4 * INBOX_BYTES);
        assert!(pipe.try_send(frame(), 4 * INBOX_BYTES).is_ok());
        assert!(pipe.try_send(frame(), 1).is_err());
    }

    #[test]
    fn the_bucket_allows_the_burst_then_refuses() {
        let mut b = TokenBucket::new(1, 3);
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
    }
}
