//! A connection's worker: its application work, on a task of its own while it has work.
//!
//! The edge's IO task reads client frames and hands them over through the connection's
//! [`Pipe`] (a bounded inbox); the worker runs the `connection` hooks, then one client frame
//! at a time, in the order read (`received`, RPC dispatch, `hello`/`resume`: the tab's mark
//! and the history reads of replays), and at the end saves the tab's mark. It never touches
//! the socket: replies go to the edge's bounded queue ([`Outbound`]), replays to the IO side
//! through the pipe, a chunk at a time, which writes each after the frames queued before it.
//!
//! The worker's task exists only while there is work: once the hooks ran, and again once no
//! frame came for [`LINGER`] (and no acknowledgement is due), it *parks*: its state (the
//! tab, its mark, the RPC slots: [`Kept`]) goes back to the connection and the task ends
//! ([`Pipe::park`]). The next frame, or the close, has the edge start a worker again
//! ([`Attached::start`], which [`Pipe::claim`] makes idempotent): an idle connection holds
//! no task of its own beyond its IO task.
//!
//! Also the node's side of [`Gateway::open`]: it registers a connection and gives the edge
//! its [`Attached`] handle, which starts the worker and, at the end, forgets the connection
//! and runs the `disconnection` hooks.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use futures_util::FutureExt;
use thywill_core::edge::{Attached, Gateway, Opening, Outbound, Pipe};
use thywill_core::protocol::{self, ClientFrame, ErrorCode, ServerFrame};
use thywill_core::{
    ApplicationId, BoxFuture, Client, ConnectionId, DisconnectReason, MemberId, Message, RpcError,
    RpcErrorCode, SessionId,
};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::node::{Local, Node, client};
use crate::streams::Replayed;

/// Concurrent RPC calls per connection; further calls wait (the worker pauses, and the IO
/// side stops reading once the inbox is full).
const MAX_PENDING_RPC: usize = 64;

/// Runs `work`; a panic in it is caught, counted and logged (with `what` it was), and gives
/// `None`. (Not an `async fn`: that would keep `work` in its state twice, once as its argument
/// and once inside `catch_unwind`.)
pub(crate) fn unwinding<'a, T>(
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

/// How long a worker with nothing to do waits for another frame before it parks: between
/// `LINGER` and twice as long after its last frame (one timer, re-armed only when it fires).
/// A connection that sends more often than that pays no task spawn per message; one that
/// falls silent holds no task after a few seconds.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// What a connection's worker keeps from one task to the next: stored in the connection while
/// the worker is parked.
#[derive(Default)]
struct Kept {
    inbound: Inbound,
    /// Created on the connection's first RPC call.
    rpc_slots: Option<Arc<Semaphore>>,
}

/// The application side of a connection: its hooks, RPC dispatch, the tab's mark, replays.
/// Runs on a task of its own while it has work, one client frame at a time, in order.
struct Worker {
    node: Node,
    local: Arc<Local>,
    me: Client,
    pipe: Arc<Pipe>,
    inbound: Inbound,
    rpc_slots: Option<Arc<Semaphore>>,
    /// Where `inbound` and `rpc_slots` wait while the worker is parked.
    kept: Arc<Mutex<Kept>>,
}

/// How a worker's [`Worker::work`] ended.
enum Done {
    /// It parked: the next frame or the close starts another worker.
    Parked,
    /// The IO side closed the pipe and the inbox is empty.
    Closed,
}

impl Worker {
    /// Runs the `connection` hooks (when `first`), then handles frames until it parks, or the
    /// IO side closes the inbox (the frames already in it are handled), or a hook panics; in
    /// the last two cases it then saves the tab's mark and tells the IO side, through the
    /// pipe, that it finished (with the mark if it was saved).
    ///
    /// `running` counts the task and, whatever ends the worker but parking (the task dropped
    /// before it ran included), has the IO side hear of it.
    async fn run(mut self, first: bool, mut running: Running) {
        let metrics = self.node.inner.metrics.clone();
        // After a panic too: the tab's mark is saved, then the IO side sees the worker end
        // with its inbox open and closes with 1011.
        if let Some(Done::Parked) = unwinding(&metrics, "connection hook", self.work(first)).await {
            running.parked = true;
            return;
        }
        let saved = match self.inbound.key.as_ref() {
            Some(key) => {
                let mark = self.inbound.mark;
                (mark > 0 && save_mark(&self.node, key, mark).await).then_some(mark)
            }
            None => None,
        };
        running.pipe.finish(saved);
    }

    /// Parks the worker if it still has nothing to do: its state goes back to the connection
    /// first, then the pipe decides; `false` (state taken back) if a frame or the close came.
    fn park(&mut self) -> bool {
        let lock = || self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        *lock() = Kept {
            inbound: std::mem::take(&mut self.inbound),
            rpc_slots: self.rpc_slots.take(),
        };
        if self.pipe.park() {
            return true;
        }
        let kept = std::mem::take(&mut *lock());
        self.inbound = kept.inbound;
        self.rpc_slots = kept.rpc_slots;
        false
    }

    async fn work(&mut self, first: bool) -> Done {
        if first {
            for (app, ctx) in self.node.inner.apps.values() {
                app.connection(ctx, &self.me).await;
            }
            // A connection that has not sent anything yet holds no worker.
            if self.park() {
                return Done::Parked;
            }
        }
        // Only while an acknowledgement is due.
        let mut ack_timer = None;
        // Re-armed when it fires after a frame was handled: no timer work per frame.
        let mut linger = Box::pin(tokio::time::sleep(LINGER));
        let mut busy = false;
        loop {
            tokio::select! {
                biased;
                () = expiry(&mut ack_timer), if self.inbound.ack_due => {
                    self.inbound.ack_due = false;
                    ack_timer = None;
                    send_ack(&self.node, &self.local.out, self.inbound.key.clone(), self.inbound.mark);
                }
                () = linger.as_mut() => {
                    if !busy && !self.inbound.ack_due && self.park() {
                        return Done::Parked;
                    }
                    busy = false;
                    linger.as_mut().reset(tokio::time::Instant::now() + LINGER);
                }
                work = self.pipe.next() => {
                    let Some((frame, cost)) = work else { return Done::Closed };
                    busy = true;
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
        let streams = match frame {
            ClientFrame::Hello { v, tab, streams, .. } => {
                if v != protocol::VERSION {
                    self.local.out.push_control(ServerFrame::Error {
                        code: ErrorCode::UnsupportedVersion,
                        message: format!("server speaks protocol version {}", protocol::VERSION),
                        app: None,
                    });
                }
                if let Some(tab) = tab {
                    Box::pin(self.inbound.set_tab(node, &self.local, &self.me.session, tab)).await;
                }
                streams
            }
            ClientFrame::Resume { streams } => streams,
            other => {
                handle_frame(node, &self.local.out, &self.me, other, &mut self.rpc_slots).await;
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
        match tokio::time::timeout_at(deadline, self.pipe.put(items)).await {
            Ok(written) => written,
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

/// How long answering one `hello` or `resume` may take in all: the streams not replayed by
/// then are left for the client to ask again.
const REPLAY_TIME: std::time::Duration = std::time::Duration::from_secs(30);

async fn handle_frame(
    node: &Node,
    handle: &Arc<dyn Outbound>,
    // The connection's client (with its identity), as the hooks see it.
    me: &Client,
    frame: ClientFrame,
    // Created on the first call.
    rpc_slots: &mut Option<Arc<Semaphore>>,
) {
    match frame {
        // Handled by the worker, which has replays written.
        ClientFrame::Hello { .. } | ClientFrame::Resume { .. } => {}
        ClientFrame::Msg { app, data, meta, .. } => match node.inner.apps.get(&app) {
            Some((a, ctx)) => {
                if let Some(c) = node.inner.app_counters.get(&app) {
                    c.messages_in.inc();
                }
                a.received(ctx, me, Message { data, meta }).await;
            }
            None => {
                tracing::info!(%app, "message for unknown application");
                handle.push_control(ServerFrame::Error {
                    code: ErrorCode::UnknownApp,
                    message: format!("no application `{app}` here"),
                    app: Some(app),
                });
            }
        },
        ClientFrame::Rpc { app, id, name, args } => {
            let Some((a, ctx)) = node.inner.apps.get(&app) else {
                tracing::info!(%app, "rpc for unknown application");
                handle.push_control(ServerFrame::RpcErr {
                    app: app.clone(),
                    id,
                    code: RpcErrorCode::NoFunction,
                    message: format!("no application `{app}` here"),
                });
                return;
            };
            let slots = rpc_slots.get_or_insert_with(|| Arc::new(Semaphore::new(MAX_PENDING_RPC)));
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let a = a.clone();
            let ctx = ctx.clone();
            let handle = handle.clone();
            let me = me.clone();
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
                    handle.push_control(frame);
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
    async fn set_tab(&mut self, node: &Node, local: &Local, session: &SessionId, tab: String) {
        if tab.is_empty()
            || tab.len() > MAX_TAB_LEN
            || !tab
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            tracing::info!("invalid tab id ignored");
            return;
        }
        let key = match node.session_store() {
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
        *local.tab.lock().unwrap_or_else(PoisonError::into_inner) = Some(tab.clone());
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
fn send_ack(node: &Node, handle: &Arc<dyn Outbound>, key: Option<String>, mark: u64) {
    let node = node.clone();
    let handle = handle.clone();
    tokio::spawn(
        async move {
            // Not saved, not acknowledged: the client resends, and a member that lost the
            // mark may process the message twice.
            if let Some(key) = &key
                && !save_mark(&node, key, mark).await
            {
                return;
            }
            handle.push_control(ServerFrame::Ack { id: mark });
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

/// How long saving a tab's mark may take (the edge waits as long for the worker before it
/// closes a connection without a last `ack`).
const CLOSING_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// A worker's task, counted in the node's metrics while it runs. Unless it parked, tells the
/// IO side that the worker finished when dropped: also when the worker's task is cancelled or
/// panics past its own guard (the IO side would otherwise wait for it until its closing time).
struct Running {
    pipe: Arc<Pipe>,
    metrics: Arc<crate::metrics::Metrics>,
    parked: bool,
}

impl Running {
    fn new(pipe: Arc<Pipe>, metrics: Arc<crate::metrics::Metrics>) -> Self {
        metrics.connection_workers.inc();
        Self {
            pipe,
            metrics,
            parked: false,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.metrics.connection_workers.dec();
        if !self.parked {
            // The first call counts: after `run`'s own, this one changes nothing.
            self.pipe.finish(None);
        }
    }
}

/// A connection registered with the node, held by the edge's connection task.
struct Connection {
    node: Node,
    me: Client,
    local: Arc<Local>,
    pipe: Arc<Pipe>,
    /// What the worker keeps while it is parked.
    kept: Arc<Mutex<Kept>>,
}

impl Attached for Connection {
    fn client(&self) -> &Client {
        &self.me
    }

    fn start(&self) {
        // Only if no worker runs (nor finished): the pipe decides, under its lock.
        let Some(first) = self.pipe.claim() else { return };
        // The previous worker stored its state before it parked.
        let kept = std::mem::take(&mut *self.kept.lock().unwrap_or_else(PoisonError::into_inner));
        let worker = Worker {
            node: self.node.clone(),
            local: self.local.clone(),
            me: self.me.clone(),
            pipe: self.pipe.clone(),
            inbound: kept.inbound,
            rpc_slots: kept.rpc_slots,
            kept: self.kept.clone(),
        };
        let running = Running::new(self.pipe.clone(), self.node.inner.metrics.clone());
        // In the connection's span (the edge's task calls this from within it).
        let work = worker.run(first, running);
        // What a connection's worker costs while it runs (see docs/PERFORMANCE.md).
        tracing::trace!(bytes = std::mem::size_of_val(&work), "connection worker state");
        // Not joined (a `JoinHandle` would keep the task's memory after it parked): `finish`
        // waits for the worker's end through the pipe.
        drop(tokio::spawn(work.in_current_span()));
    }

    fn finish(self: Box<Self>, reason: DisconnectReason) -> BoxFuture<'static, ()> {
        Box::pin(
            async move {
                let Connection { node, me, pipe, .. } = *self;
                let metrics = node.inner.metrics.clone();
                node.inner.forget_connection(&me.connection);
                let tracker = node.inner.tracker.clone();
                if let Some(Err(e)) = unwinding(&metrics, "tracker", tracker.disconnected(&me)).await {
                    tracing::warn!(error = %e, "tracker did not record the disconnection");
                }
                // The worker finishes the frames read before the end (the edge started one
                // when it closed the pipe, if it was parked); the disconnection hooks come
                // after every other hook of the connection.
                if pipe.was_started() {
                    pipe.finished().await;
                }
                for (app, ctx) in node.inner.apps.values() {
                    unwinding(
                        &metrics,
                        "disconnection hook",
                        app.disconnection(ctx, &me, reason),
                    )
                    .await;
                }
                node.inner.drop_state(&me.connection);
            }
            .in_current_span(),
        )
    }
}

impl Node {
    /// Registers a connection the edge accepted (see [`Gateway::open`]): routed to from now
    /// on, then recorded in the tracker and subscribed to its session's channels.
    async fn open_connection(&self, opening: Opening) -> Box<dyn Attached> {
        let me = client(self, &opening.connection, &opening.session).with_identity(opening.identity);
        let local = Arc::new(Local::new(opening.outbound));
        // From here on the connection is registered: whatever happens next, a panic included,
        // the edge calls `finish`, which forgets it and runs its hooks.
        self.inner.register(&me.connection, &me.session, local.clone());
        let inner = &self.inner;
        let registered = async {
            if let Err(e) = inner.tracker.connected(&me).await {
                tracing::warn!(error = %e, "tracker did not record the connection");
            }
            inner.subscribe_to_session_channels(&me).await;
        };
        unwinding(&inner.metrics, "connection opening", registered).await;
        Box::new(Connection {
            node: self.clone(),
            me,
            local,
            pipe: opening.pipe,
            kept: Arc::default(),
        })
    }
}

impl Gateway for Node {
    fn member(&self) -> &MemberId {
        Node::member(self)
    }

    fn applications(&self) -> &[ApplicationId] {
        Node::applications(self)
    }

    fn new_connection_id(&self) -> ConnectionId {
        Node::new_connection_id(self)
    }

    fn open(&self, opening: Opening) -> BoxFuture<'_, Box<dyn Attached>> {
        Box::pin(self.open_connection(opening))
    }

    fn connection_count(&self) -> usize {
        Node::connection_count(self)
    }

    fn is_ready(&self) -> bool {
        Node::is_ready(self)
    }

    fn shutdown(&self) {
        Node::shutdown(self);
    }

    fn encode_metrics(&self, out: &mut String) {
        self.inner.metrics.encode(self.inner.cluster.as_ref(), out);
    }
}
