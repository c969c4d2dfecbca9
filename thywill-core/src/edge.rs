//! Where the node runtime meets the edge that serves its WebSockets: two crates that do not
//! depend on each other (`thywill-node`, `thywill-transport`) talk through these traits and
//! types only.
//!
//! ```text
//!   edge (HTTP, WebSocket, TLS)                       node (routing, hooks, history)
//!   ──────────────────────────                       ──────────────────────────────
//!   Gateway::open(Opening) ──────────────────────────▶ registers the connection
//!        ◀──────────────────────── Box<dyn Attached> (its Client; start; finish)
//!   IO task: reads ─▶ Pipe (bounded inbox) ─────────▶ worker (while it has work): hooks, RPC, history
//!   IO task: writes ◀─ Pipe (one replay chunk) ◀───── worker: replays
//!   IO task: writes ◀─ its bounded queue ◀─ Outbound::push / push_control / close ◀─ routing
//! ```
//!
//! - [`Gateway`] is the node as the edge sees it: it opens connections, names the member and
//!   its applications, says whether the node is healthy, and contributes its metrics.
//! - [`Outbound`] is a connection as the node sees it, implemented by the edge: a bounded
//!   queue that never waits (a full queue closes the connection with 4008), numbering message
//!   frames under the lock that enqueues them, so that sequence order is queue order.
//! - [`Pipe`] carries client frames from the edge's IO task to the node's worker through a
//!   bounded inbox (in frames and bytes), and replay chunks the other way, one at a time: a
//!   replay is written by the IO side after the frames queued before it, never through the
//!   bounded queue. It also tells the IO side when the worker has finished (and the tab's
//!   mark it saved), so the edge can send a last `ack` before closing.
//! - The worker runs only while it has work: with nothing to handle it *parks* (its task
//!   ends; the node keeps its state). The pipe decides, under its lock, who starts it again:
//!   [`Pipe::try_send`], [`Pipe::push_held`] and [`Pipe::close`] tell the IO side when the
//!   worker is parked, and the IO side then calls [`Attached::start`] (which starts a worker
//!   only if none runs). So an idle connection holds no worker task, and at most one worker
//!   of a connection runs at a time.
//! - [`SharedFrame`] is a message encoded once for every connection it goes to; each
//!   connection splices its own sequence number in when it writes the frame.
//!
//! Per frame, the node calls one [`Outbound`] method per connection and nothing else crosses
//! a trait object; the [`Pipe`] is a concrete type both sides share through one `Arc` built per
//! connection.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use serde::Serialize;

use crate::protocol::{ClientFrame, ServerFrame};
use crate::{
    ApplicationId, BoxFuture, Client, ConnectionId, DisconnectReason, Identity, MemberId, Message, Offset,
    SessionId,
};

/// The node as the edge sees it. Implemented by the node runtime (`thywill-node`); the edge
/// (`thywill-transport`) holds it as an `Arc<dyn Gateway>` and calls it once per connection,
/// never per frame.
pub trait Gateway: Send + Sync + 'static {
    /// The local member.
    fn member(&self) -> &MemberId;

    /// The applications served (named in every `welcome`).
    fn applications(&self) -> &[ApplicationId];

    /// A new connection id, unique in the cluster (the edge logs with it from the start).
    fn new_connection_id(&self) -> ConnectionId;

    /// Registers a connection whose handshake the edge accepted: from here on the node routes
    /// to it through `opening.outbound`, and it is recorded in the client tracker and
    /// subscribed to its session's channels before this completes (so that a client that has
    /// its `welcome` receives what is sent to those channels). The edge then writes the
    /// `welcome`, calls [`Attached::start`] and, whatever ends the connection, a panic
    /// included, [`Attached::finish`].
    fn open(&self, opening: Opening) -> BoxFuture<'_, Box<dyn Attached>>;

    /// Open connections registered with the node.
    fn connection_count(&self) -> usize;

    /// Whether the node can serve new clients (its cluster link works, it is not stopping).
    fn is_ready(&self) -> bool;

    /// Stops the node: sends are refused from now on. The edge calls it when it starts to
    /// drain; it closes its connections itself.
    fn shutdown(&self);

    /// Appends the node's metrics to `out` in the OpenMetrics text format, without the final
    /// `# EOF` (the edge adds its own metrics and the end).
    fn encode_metrics(&self, out: &mut String);
}

/// A connection the edge accepted, as given to [`Gateway::open`].
#[derive(Clone)]
#[non_exhaustive]
pub struct Opening {
    /// Its id ([`Gateway::new_connection_id`]).
    pub connection: ConnectionId,
    /// The session it is bound to (the connection's own id in plain mode).
    pub session: SessionId,
    /// The client's socket address, when the edge knows it.
    pub peer: Option<SocketAddr>,
    /// The handshake's `Origin` header, if any.
    pub origin: Option<String>,
    /// Where the node pushes the connection's frames.
    pub outbound: Arc<dyn Outbound>,
    /// Client frames to the worker, replays from it.
    pub pipe: Arc<Pipe>,
    /// Who the connection belongs to, as the authentication hook said at the handshake.
    pub identity: Option<Identity>,
}

impl Opening {
    /// A connection `connection` of `session`, reached through `outbound` and `pipe`.
    pub fn new(
        connection: ConnectionId,
        session: SessionId,
        outbound: Arc<dyn Outbound>,
        pipe: Arc<Pipe>,
    ) -> Self {
        Self {
            connection,
            session,
            peer: None,
            origin: None,
            outbound,
            pipe,
            identity: None,
        }
    }

    /// With the identity the authentication hook gave.
    pub fn with_identity(mut self, identity: Option<Identity>) -> Self {
        self.identity = identity;
        self
    }

    /// With the client's socket address.
    pub fn with_peer(mut self, peer: Option<SocketAddr>) -> Self {
        self.peer = peer;
        self
    }

    /// With the handshake's `Origin` header.
    pub fn with_origin(mut self, origin: Option<String>) -> Self {
        self.origin = origin;
        self
    }
}

impl std::fmt::Debug for Opening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opening")
            .field("connection", &self.connection)
            .field("session", &self.session)
            .field("peer", &self.peer)
            .field("origin", &self.origin)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// A connection registered with the node ([`Gateway::open`]), held by the edge's connection
/// task.
pub trait Attached: Send + Sync {
    /// The client, as applications see it.
    fn client(&self) -> &Client;

    /// Ensures the connection's worker runs: the applications' `connection` hooks (the first
    /// time only), then the client frames of the [`Pipe`], one at a time, in order. Called
    /// once the `welcome` is written, and again whenever the pipe says the worker is parked
    /// ([`Pipe::try_send`], [`Pipe::push_held`], [`Pipe::close`]).
    ///
    /// Idempotent: a worker is started only if none runs ([`Pipe::claim`] decides, under the
    /// pipe's lock) and the worker has not finished. A worker with nothing to do (the inbox
    /// empty, no acknowledgement due) parks ([`Pipe::park`]): its task ends and its state
    /// stays with the connection until it is started again. After [`Pipe::close`], the worker
    /// started handles what is left in the inbox, saves the tab's mark and finishes
    /// ([`Pipe::finish`]).
    fn start(&self);

    /// The connection ended (the edge closed the pipe and the socket): the node forgets it,
    /// tells the tracker, waits for the worker to finish the frames already read and runs the
    /// applications' `disconnection` hooks with `reason`.
    fn finish(self: Box<Self>, reason: DisconnectReason) -> BoxFuture<'static, ()>;
}

/// A connection as the node sees it: implemented by the edge. Methods never wait.
pub trait Outbound: Send + Sync + 'static {
    /// Queues a message frame with the connection's next sequence number, assigned under the
    /// lock that enqueues it (sequence order is queue order). False when the connection is
    /// closing, or when the queue is full in frames or bytes: the connection is then closed
    /// as a slow consumer (4008).
    fn push(&self, frame: &Arc<SharedFrame>) -> bool;

    /// Queues a frame that carries no sequence number (RPC replies, acks, errors, presence
    /// control); false like [`Outbound::push`].
    fn push_control(&self, frame: ServerFrame) -> bool;

    /// Closes the connection with `code` (its IO side stops and closes the socket).
    fn close(&self, code: u16);
}

/// An application message encoded once for many connections: only the sequence number
/// differs between their frames, and it is spliced in when a connection writes the frame.
#[derive(Debug)]
pub struct SharedFrame {
    /// `{"t":"msg","app":<app>,"seq":`
    head: String,
    /// `,"data":<data>,"_":<meta>}` (and the stream position)
    tail: String,
}

/// Appends the JSON text of a value made of strings, numbers and JSON values (which cannot
/// fail to serialise, and serialise to UTF-8).
fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"null");
    }
}

impl SharedFrame {
    /// The `msg` frame of `message` from `app`; `position` is its stream's wire name and its
    /// offset there, for a message of a replayable stream.
    pub fn new(app: &ApplicationId, message: &Message, position: Option<(&str, &Offset)>) -> Self {
        // Written in place: two buffers, no intermediate strings.
        let mut head = Vec::with_capacity(32 + app.as_str().len());
        head.extend_from_slice(br#"{"t":"msg","app":"#);
        write_json(&mut head, app.as_str());
        head.extend_from_slice(br#","seq":"#);
        let mut tail = Vec::with_capacity(64);
        tail.extend_from_slice(br#","data":"#);
        write_json(&mut tail, &message.data);
        tail.extend_from_slice(br#","_":"#);
        write_json(&mut tail, &message.meta);
        if let Some((stream, offset)) = position {
            tail.extend_from_slice(br#","stream":"#);
            write_json(&mut tail, stream);
            tail.extend_from_slice(br#","epoch":"#);
            write_json(&mut tail, &offset.epoch);
            tail.extend_from_slice(br#","off":"#);
            write_json(&mut tail, &offset.off);
        }
        tail.push(b'}');
        Self {
            head: String::from_utf8(head).unwrap_or_default(),
            tail: String::from_utf8(tail).unwrap_or_default(),
        }
    }

    /// The frame's length in bytes, counting the longest sequence number (what it costs a
    /// connection's byte bound).
    pub fn len(&self) -> usize {
        self.head.len() + 20 + self.tail.len()
    }

    /// Never empty: a frame has at least its type and application.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The frame's text with sequence number `seq`.
    pub fn frame(&self, seq: u64) -> String {
        use std::fmt::Write;
        let mut f = String::with_capacity(self.len());
        f.push_str(&self.head);
        let _ = write!(f, "{seq}");
        f.push_str(&self.tail);
        f
    }
}

/// One item of a replay chunk ([`Pipe::put`]), written by the edge in order.
#[derive(Debug)]
pub enum ReplayItem {
    /// A control frame (`continuity_lost`, `skip`).
    Frame(ServerFrame),
    /// A logged message: written with the next sequence number the edge reserves for it.
    Msg(SharedFrame),
}

/// Client frames read but not yet taken by the worker, at most.
pub const INBOX_FRAMES: usize = 32;

/// Bytes of client frames read but not yet handled by the worker, at most (or one frame of
/// the configured maximum message size, if that is larger).
pub const INBOX_BYTES: usize = 256 * 1024;

/// What passes between a connection's IO side (the edge) and its worker (the node): client
/// frames one way, in a bounded inbox ([`INBOX_FRAMES`] frames, [`INBOX_BYTES`] bytes), replay
/// chunks the other, one at a time (the worker waits for each to be written before it reads
/// the next), and the worker's end. Holds no buffer while idle.
///
/// It also knows whether the worker runs: the worker [parks](Pipe::park) when it has nothing
/// to do, and the next frame or the close tells the IO side to [start](Attached::start) it
/// again ([`Pipe::claim`] lets only one worker run at a time).
///
/// When the inbox is full the IO side keeps the frame it read ([`Held`]) and stops reading
/// until [`Pipe::poll_room`] says it fits: nothing read is dropped, and TCP pushes back on the
/// client.
pub struct Pipe {
    state: Mutex<PipeState>,
    /// The inbox's bound in bytes.
    max_bytes: usize,
}

impl std::fmt::Debug for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("Pipe")
            .field("frames", &state.inbox.len())
            .field("bytes", &state.bytes)
            .field("closed", &state.closed)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct PipeState {
    /// Frames for the worker, each with what it costs the byte bound.
    inbox: VecDeque<(ClientFrame, usize)>,
    /// Bytes of the frames in the inbox and of the one being handled.
    bytes: usize,
    /// The IO side waits for room.
    waiting: bool,
    /// The IO side ended: no more frames (those in the inbox are still handled), no more
    /// replay chunks.
    closed: bool,
    /// A replay chunk to write.
    chunk: Option<Vec<ReplayItem>>,
    /// The IO side wrote the last chunk handed to it.
    written: bool,
    /// The worker finished, with the tab's mark it saved (if it saved one).
    finished: Option<Option<u64>>,
    /// A worker was started once ([`Pipe::claim`]).
    started: bool,
    /// A worker runs: claimed and not parked.
    running: bool,
    /// The IO side, waiting for room, a replay chunk or the worker's end.
    io: Option<Waker>,
    /// The worker, waiting for a frame or for its chunk to be written.
    worker: Option<Waker>,
}

/// Keeps the waker of the task polling, replacing an older one only when it would not wake
/// the same task.
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// A frame read while the inbox was full (boxed: rarely there), and what it costs.
#[derive(Debug)]
pub struct Held {
    frame: Box<ClientFrame>,
    cost: usize,
}

impl Held {
    /// What the frame costs the inbox's byte bound.
    pub fn cost(&self) -> usize {
        self.cost
    }
}

impl Pipe {
    /// A pipe whose inbox holds at least one frame of `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Self {
        Self {
            state: Mutex::default(),
            max_bytes: INBOX_BYTES.max(max_message_size),
        }
    }

    fn state(&self) -> MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fits(&self, state: &PipeState, cost: usize) -> bool {
        state.inbox.len() < INBOX_FRAMES && state.bytes + cost <= self.max_bytes
    }

    fn wake_worker(mut state: MutexGuard<'_, PipeState>) {
        let waker = state.worker.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn wake_io(mut state: MutexGuard<'_, PipeState>) {
        let waker = state.io.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Whether the worker is parked (started once, not running, not finished): whoever put
    /// work in the pipe must start it ([`Attached::start`]).
    fn parked(state: &PipeState) -> bool {
        state.started && !state.running && state.finished.is_none()
    }

    /// IO side: puts a frame read as `len` bytes in the inbox if there is room (then `true`
    /// when the worker is parked: start it with [`Attached::start`]); gives it back if not.
    pub fn try_send(&self, frame: ClientFrame, len: usize) -> Result<bool, Held> {
        // A frame larger than the bound (never, with the default limits) takes all of it.
        let cost = len.clamp(1, self.max_bytes);
        let mut state = self.state();
        if !self.fits(&state, cost) {
            return Err(Held {
                frame: Box::new(frame),
                cost,
            });
        }
        state.bytes += cost;
        state.inbox.push_back((frame, cost));
        let parked = Self::parked(&state);
        Self::wake_worker(state);
        Ok(parked)
    }

    /// IO side: ready when a frame of `cost` fits in the inbox (then give it with
    /// [`Pipe::push_held`]).
    pub fn poll_room(&self, cx: &mut Context<'_>, cost: usize) -> Poll<()> {
        let mut state = self.state();
        if self.fits(&state, cost) {
            state.waiting = false;
            Poll::Ready(())
        } else {
            state.waiting = true;
            register(&mut state.io, cx);
            Poll::Pending
        }
    }

    /// IO side: completes when a frame of `cost` fits in the inbox.
    pub async fn room(&self, cost: usize) {
        std::future::poll_fn(|cx| self.poll_room(cx, cost)).await;
    }

    /// IO side: puts a held frame in the inbox, which has room ([`Pipe::poll_room`]: only
    /// the IO side adds frames); `true` when the worker is parked: start it with
    /// [`Attached::start`].
    #[must_use = "a parked worker must be started (`Attached::start`)"]
    pub fn push_held(&self, held: Held) -> bool {
        let mut state = self.state();
        state.bytes += held.cost;
        state.inbox.push_back((*held.frame, held.cost));
        let parked = Self::parked(&state);
        Self::wake_worker(state);
        parked
    }

    /// IO side: completes with the next replay chunk to write ([`Pipe::poll_chunk`]).
    pub async fn chunk(&self) -> Vec<ReplayItem> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// IO side: the next replay chunk to write; call [`Pipe::written`] once it is written.
    pub fn poll_chunk(&self, cx: &mut Context<'_>) -> Poll<Vec<ReplayItem>> {
        let mut state = self.state();
        match state.chunk.take() {
            Some(chunk) => Poll::Ready(chunk),
            None => {
                register(&mut state.io, cx);
                Poll::Pending
            }
        }
    }

    /// IO side: the chunk taken last is written.
    pub fn written(&self) {
        let mut state = self.state();
        state.written = true;
        Self::wake_worker(state);
    }

    /// IO side: ready once the worker has finished, with the tab's mark it saved, if any.
    pub fn poll_finished(&self, cx: &mut Context<'_>) -> Poll<Option<u64>> {
        let mut state = self.state();
        match state.finished {
            Some(mark) => Poll::Ready(mark),
            None => {
                register(&mut state.io, cx);
                Poll::Pending
            }
        }
    }

    /// IO side (or the node's [`Attached::finish`], once the IO side ended): completes once
    /// the worker has finished (see [`Pipe::poll_finished`]).
    pub async fn finished(&self) -> Option<u64> {
        std::future::poll_fn(|cx| self.poll_finished(cx)).await
    }

    /// IO side: the connection ends. The worker handles the frames in the inbox, then stops;
    /// a chunk not yet taken is dropped, and the worker is told no more are written. `true`
    /// when the worker is parked: start it ([`Attached::start`]) so that it finishes (saves
    /// the tab's mark, [`Pipe::finish`]).
    #[must_use = "a parked worker must be started (`Attached::start`) to finish"]
    pub fn close(&self) -> bool {
        let mut state = self.state();
        state.closed = true;
        state.chunk = None;
        let parked = Self::parked(&state);
        Self::wake_worker(state);
        parked
    }

    /// Node side ([`Attached::start`]): claims the right to run the worker. `Some(first)` when
    /// the caller must start one (`first`: no worker ran before, so the `connection` hooks are
    /// due); `None` when one runs already or the worker has finished.
    pub fn claim(&self) -> Option<bool> {
        let mut state = self.state();
        if state.running || state.finished.is_some() {
            return None;
        }
        state.running = true;
        let first = !state.started;
        state.started = true;
        Some(first)
    }

    /// Worker: it has nothing to do and parks (its task ends) if the inbox is empty and the
    /// pipe open; `false` if there is work after all (a frame, or the close): it goes on.
    /// Whatever the worker keeps must be stored where the next worker finds it *before* this
    /// is called: from here on, the next frame starts another worker.
    pub fn park(&self) -> bool {
        let mut state = self.state();
        if !state.inbox.is_empty() || state.closed || !state.running {
            return false;
        }
        state.running = false;
        state.worker = None;
        true
    }

    /// Worker: the next frame and its cost; `None` once the IO side closed the pipe and the
    /// inbox is empty.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<(ClientFrame, usize)>> {
        let mut state = self.state();
        match state.inbox.pop_front() {
            Some(work) => Poll::Ready(Some(work)),
            None if state.closed => Poll::Ready(None),
            None => {
                register(&mut state.worker, cx);
                Poll::Pending
            }
        }
    }

    /// Worker: the next frame (see [`Pipe::poll_next`]).
    pub async fn next(&self) -> Option<(ClientFrame, usize)> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Worker: a frame of `cost` was handled; its bytes are free again.
    pub fn handled(&self, cost: usize) {
        let mut state = self.state();
        state.bytes = state.bytes.saturating_sub(cost);
        if state.waiting {
            Self::wake_io(state);
        }
    }

    /// Worker: hands a replay chunk to the IO side and waits until it is written; false if it
    /// writes no more replays (the connection is ending), or still has a chunk (one the
    /// worker gave up waiting for).
    pub async fn put(&self, chunk: Vec<ReplayItem>) -> bool {
        {
            let mut state = self.state();
            if state.closed || state.chunk.is_some() {
                return false;
            }
            state.chunk = Some(chunk);
            state.written = false;
            Self::wake_io(state);
        }
        std::future::poll_fn(|cx| {
            let mut state = self.state();
            if state.written {
                state.written = false;
                Poll::Ready(true)
            } else if state.closed {
                Poll::Ready(false)
            } else {
                register(&mut state.worker, cx);
                Poll::Pending
            }
        })
        .await
    }

    /// Worker: it has finished, with the tab's mark it saved (if it saved one). The first
    /// call counts; no worker is started after it.
    pub fn finish(&self, mark: Option<u64>) {
        let mut state = self.state();
        if state.finished.is_none() {
            state.finished = Some(mark);
        }
        state.running = false;
        Self::wake_io(state);
    }

    /// Whether a worker was ever started ([`Pipe::claim`]): if so, [`Pipe::finished`]
    /// completes once the pipe is closed and the worker has handled what was left.
    pub fn was_started(&self) -> bool {
        self.state().started
    }

    /// Whether a worker runs (claimed, not parked nor finished).
    pub fn is_running(&self) -> bool {
        self.state().running
    }

    /// Whether the worker has finished.
    pub fn is_finished(&self) -> bool {
        self.state().finished.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::protocol::ClientFrame;

    fn frame() -> ClientFrame {
        ClientFrame::Resume {
            streams: Default::default(),
        }
    }

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    fn next(pipe: &Pipe) -> Poll<Option<(ClientFrame, usize)>> {
        pipe.poll_next(&mut cx())
    }

    #[test]
    fn the_inbox_is_bounded_in_bytes_until_frames_are_handled() {
        let pipe = Pipe::new(1024);
        let third = INBOX_BYTES / 3;
        for _ in 0..3 {
            assert!(pipe.try_send(frame(), third).is_ok());
        }
        let Err(held) = pipe.try_send(frame(), third) else {
            panic!("a fourth third of the byte bound was admitted");
        };
        // Taken by the worker, not yet handled: its bytes still count.
        let Poll::Ready(Some((_, cost))) = next(&pipe) else {
            panic!("no frame for the worker");
        };
        assert!(
            pipe.poll_room(&mut cx(), held.cost()).is_pending(),
            "room before a frame was handled"
        );
        pipe.handled(cost);
        assert!(
            pipe.poll_room(&mut cx(), held.cost()).is_ready(),
            "no room after a frame was handled"
        );
        assert!(!pipe.push_held(held), "no worker was ever started: none to start");
        // Closed: the frames read are still handled, then the worker stops.
        assert!(!pipe.close());
        for _ in 0..3 {
            assert!(matches!(next(&pipe), Poll::Ready(Some(_))));
        }
        assert!(matches!(next(&pipe), Poll::Ready(None)));
    }

    #[test]
    fn the_inbox_is_bounded_in_frames_and_takes_a_message_of_any_allowed_size() {
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
    fn a_replay_chunk_is_written_or_dropped_when_the_connection_ends() {
        let pipe = Pipe::new(1024);
        let chunk = || vec![ReplayItem::Frame(ServerFrame::Ack { id: 1 })];
        let mut put = Box::pin(pipe.put(chunk()));
        assert!(put.as_mut().poll(&mut cx()).is_pending(), "not written yet");
        let Poll::Ready(items) = pipe.poll_chunk(&mut cx()) else {
            panic!("no chunk for the IO side");
        };
        assert_eq!(items.len(), 1);
        pipe.written();
        assert_eq!(put.as_mut().poll(&mut cx()), Poll::Ready(true));
        drop(put);
        // The connection ends with a chunk not yet taken: the worker is told.
        let mut put = Box::pin(pipe.put(chunk()));
        assert!(put.as_mut().poll(&mut cx()).is_pending());
        let _ = pipe.close();
        assert_eq!(put.as_mut().poll(&mut cx()), Poll::Ready(false));
        assert!(pipe.poll_chunk(&mut cx()).is_pending(), "the chunk was dropped");
        // The worker's end, and the mark it saved, reach the IO side once.
        assert!(pipe.poll_finished(&mut cx()).is_pending());
        pipe.finish(Some(7));
        pipe.finish(None);
        assert_eq!(pipe.poll_finished(&mut cx()), Poll::Ready(Some(7)));
    }

    #[test]
    fn a_parked_worker_is_started_again_by_the_next_frame_or_the_close_and_only_once() {
        let pipe = Pipe::new(1024);
        // Not started yet: a frame read before the welcome waits for the first start.
        assert_eq!(pipe.try_send(frame(), 1).ok(), Some(false));
        assert_eq!(pipe.claim(), Some(true), "the first worker runs the hooks");
        assert_eq!(pipe.claim(), None, "one worker at a time");
        assert!(!pipe.park(), "a frame waits: no parking");
        assert!(matches!(next(&pipe), Poll::Ready(Some(_))));
        assert!(pipe.park());
        assert!(!pipe.is_running());
        // The next frame says the worker is parked, however many arrive before it starts.
        assert_eq!(pipe.try_send(frame(), 1).ok(), Some(true));
        assert_eq!(pipe.try_send(frame(), 1).ok(), Some(true));
        assert_eq!(pipe.claim(), Some(false), "no hooks the second time");
        assert_eq!(pipe.claim(), None);
        assert_eq!(
            pipe.try_send(frame(), 1).ok(),
            Some(false),
            "running: nothing to start"
        );
        for _ in 0..3 {
            assert!(matches!(next(&pipe), Poll::Ready(Some(_))));
        }
        assert!(pipe.park());
        // Closed while parked: a worker is started to finish, and none after it.
        assert!(pipe.close());
        assert_eq!(pipe.claim(), Some(false));
        assert!(!pipe.park(), "closed: the worker finishes instead");
        assert!(matches!(next(&pipe), Poll::Ready(None)));
        pipe.finish(Some(3));
        assert!(!pipe.is_running());
        assert_eq!(pipe.claim(), None, "finished: never started again");
        assert!(!pipe.close());
        assert_eq!(pipe.poll_finished(&mut cx()), Poll::Ready(Some(3)));
    }

    #[test]
    fn a_message_encoded_once_decodes_as_the_frame_per_connection() {
        let app = ApplicationId::from("dr\"aw");
        let message = Message::new(serde_json::json!({"segments": [{"x": 1, "y": 2.5}], "t": "é\n"}))
            .with_meta("k", "v");
        let encoded = SharedFrame::new(&app, &message, None);
        for seq in [1, 42, u64::MAX] {
            let frame = ServerFrame::decode(&encoded.frame(seq)).ok();
            let want = ServerFrame::Msg {
                app: app.clone(),
                seq,
                data: message.data.clone(),
                meta: message.meta.clone(),
                stream: None,
                epoch: None,
                off: None,
            };
            assert_eq!(frame, Some(want));
        }
        // With its stream's position.
        let offset = Offset {
            epoch: "e\"1".into(),
            off: 7,
        };
        let encoded = SharedFrame::new(&app, &message, Some(("c:dr\"aw", &offset)));
        let want = ServerFrame::Msg {
            app: app.clone(),
            seq: 3,
            data: message.data.clone(),
            meta: message.meta.clone(),
            stream: Some("c:dr\"aw".into()),
            epoch: Some("e\"1".into()),
            off: Some(7),
        };
        assert_eq!(ServerFrame::decode(&encoded.frame(3)).ok(), Some(want));
    }
}
