//! A protocol-v1 client that implements the client side of recovery, as
//! `docs/PROTOCOL.md` ("Recovery after a reconnect") describes it and `thywill.js` does it in
//! browsers: a stable tab id, a position `{epoch, last}` per stream, messages held across a
//! gap and a `resume` when the gap stays open for 250 ms, `skip` frames counted as seen,
//! `continuity_lost` handled, a draining member's `reconnect` delay honoured, and ids on sent
//! messages, kept until acknowledged and resent after a reconnect.
//!
//! [`Streams`] is the ordering logic alone (no IO, unit-tested below); [`ReliableClient`]
//! drives it over a WebSocket ([`crate::WsClient`]), and tells the test what it delivered,
//! in order, and what it had to do to get there ([`Counters`], [`ConnEvent`]).
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! use thywill_testkit::reliable::ReliableClient;
//! let mut c = ReliableClient::connect("ws://127.0.0.1:1234/draw/ws").await?;
//! c.ready().await?; // the connection hooks ran: subscribed
//! c.send("draw", serde_json::json!({"segments": []})).await;
//! c.drop_connection(); // the network drops
//! c.reconnect(Some("ws://127.0.0.1:1235/draw/ws")).await?; // hello {tab, streams}
//! c.until(thywill_testkit::TIMEOUT, |c| c.delivered().len() >= 10).await?;
//! # Ok(()) }
//! ```
//!
//! Unlike the browser client this one never gives up on a gap: it asks again every second,
//! so a gap the server does not fill shows as a test timeout with the stream's state, not as a
//! silently skipped message.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use thywill_core::protocol::{ClientFrame, ServerFrame, VERSION};
use thywill_core::{Metadata, Offset};
use tokio::time::Instant;

use crate::ws::{WsClient, WsError};

/// How long a gap may stay open before the client asks for a replay.
pub const GAP_WAIT: Duration = Duration::from_millis(250);
/// How often the client asks again while a gap stays open.
pub const RESUME_RETRY: Duration = Duration::from_millis(1000);
/// Most messages kept, unacknowledged or waiting for a connection.
pub const MAX_KEPT: usize = 1000;

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// What a stream frame carries besides its offset.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// A message to deliver.
    Msg {
        /// Its application.
        app: String,
        /// Its data.
        data: Value,
        /// Its metadata.
        meta: Metadata,
    },
    /// A message this connection was excluded from: it only takes its place in order.
    Skip,
}

/// A message handed to the application, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivered {
    /// Its stream (`None` for a message that belongs to no stream).
    pub stream: Option<String>,
    /// Its epoch (empty without a stream).
    pub epoch: String,
    /// Its offset (0 without a stream).
    pub off: u64,
    /// Its application.
    pub app: String,
    /// Its data.
    pub data: Value,
    /// When it was delivered, in microseconds since the Unix epoch.
    pub at_us: u64,
}

/// A loss the client was told of (or found): messages of `stream` before `next` in `epoch`
/// that it will never deliver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    /// The stream.
    pub stream: String,
    /// The epoch the stream continues in.
    pub epoch: String,
    /// The offset it continues from.
    pub next: u64,
}

/// What the ordering did, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrderCounts {
    /// Stream messages delivered.
    pub delivered: u64,
    /// `skip` frames that took their place in order.
    pub skipped: u64,
    /// Frames (messages or skips) dropped because their offset was delivered already.
    pub duplicates_dropped: u64,
    /// Frames dropped because they came from another epoch than the stream's.
    pub epoch_mismatches: u64,
    /// Frames held at least once across a gap.
    pub held: u64,
    /// Losses reported (see [`Loss`]).
    pub losses: u64,
}

#[derive(Debug)]
struct StreamState {
    /// The epoch; empty means no position (the next message is a starting point).
    epoch: String,
    /// The offset of the last delivered (or skipped) message.
    last: u64,
    /// Frames that arrived ahead of a gap, by offset.
    held: BTreeMap<u64, Item>,
    /// A frame of another epoch came: a replay was asked for.
    mismatch: bool,
    /// When to ask for a replay (if one is still needed then).
    ask_at: Option<Instant>,
    /// Requests sent without progress.
    asks: u32,
}

impl StreamState {
    fn needs_replay(&self) -> bool {
        !self.held.is_empty() || self.mismatch
    }

    /// Plans or cancels the replay request after a change.
    fn settle(&mut self, now: Instant) {
        if !self.needs_replay() {
            self.ask_at = None;
            self.asks = 0;
        } else if self.ask_at.is_none() {
            self.ask_at = Some(now + GAP_WAIT);
        }
    }
}

/// Where a client is in one stream ([`Streams::snapshot`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSnapshot {
    /// The epoch (empty: no position; the next message is a starting point).
    pub epoch: String,
    /// The offset of the last delivered (or skipped) message.
    pub off: u64,
    /// Frames held until the gap before them fills.
    pub held: usize,
}

/// What [`Streams::receive`] made of a server frame.
#[derive(Debug)]
pub enum Received {
    /// A frame of the ordering: what it delivered now (possibly nothing).
    Delivered(Vec<Delivered>),
    /// Any other frame, given back.
    Other(ServerFrame),
}

/// The per-stream ordering of a client: delivers each stream in order and once, holds what
/// comes early, says when to ask for a replay. No IO; time is passed in.
///
/// Its rules are `thywill.js`'s: both run the shared vectors of
/// `thywill-transport/client/vectors/recovery.json` (frames in at virtual times, deliveries,
/// losses and replay requests expected), the Rust side in this module's tests.
#[derive(Debug, Default)]
pub struct Streams {
    streams: BTreeMap<String, StreamState>,
    counts: OrderCounts,
    losses: Vec<Loss>,
}

impl Streams {
    /// An empty state: no stream known.
    pub fn new() -> Self {
        Self::default()
    }

    /// What was counted so far.
    pub fn counts(&self) -> OrderCounts {
        self.counts
    }

    /// The losses reported so far, in order.
    pub fn losses(&self) -> &[Loss] {
        &self.losses
    }

    /// The position of `stream`: its epoch and last delivered offset.
    pub fn position(&self, stream: &str) -> Option<Offset> {
        self.streams.get(stream).map(|s| Offset {
            epoch: s.epoch.clone(),
            off: s.last,
        })
    }

    /// Every stream known, by name.
    pub fn snapshot(&self) -> BTreeMap<String, StreamSnapshot> {
        self.streams
            .iter()
            .map(|(name, s)| {
                (
                    name.clone(),
                    StreamSnapshot {
                        epoch: s.epoch.clone(),
                        off: s.last,
                        held: s.held.len(),
                    },
                )
            })
            .collect()
    }

    /// A server frame, as the ordering takes it: a `msg` with a usable stream position
    /// (`stream` and `epoch` not empty, `off` at least 1) or a `skip` is ordered
    /// ([`Streams::frame`]), a `msg` without one is delivered as it came, `continuity_lost`
    /// moves its stream on ([`Streams::continuity_lost`]); a `skip` without a usable
    /// position is ignored. Returns what is delivered now, or gives back any other frame.
    pub fn receive(&mut self, frame: ServerFrame, now: Instant) -> Received {
        let usable =
            |stream: &str, epoch: &str, off: u64| !stream.is_empty() && !epoch.is_empty() && off >= 1;
        match frame {
            ServerFrame::Msg {
                app,
                data,
                meta,
                stream: Some(stream),
                epoch: Some(epoch),
                off: Some(off),
                ..
            } if usable(&stream, &epoch, off) => {
                let item = Item::Msg {
                    app: app.to_string(),
                    data,
                    meta,
                };
                Received::Delivered(self.frame(&stream, &epoch, off, item, now))
            }
            ServerFrame::Msg { app, data, .. } => Received::Delivered(vec![Delivered {
                stream: None,
                epoch: String::new(),
                off: 0,
                app: app.to_string(),
                data,
                at_us: now_us(),
            }]),
            ServerFrame::Skip { stream, epoch, off } if usable(&stream, &epoch, off) => {
                Received::Delivered(self.frame(&stream, &epoch, off, Item::Skip, now))
            }
            ServerFrame::Skip { .. } => Received::Delivered(Vec::new()),
            ServerFrame::ContinuityLost { stream, epoch, next } => {
                Received::Delivered(self.continuity_lost(&stream, &epoch, next, now))
            }
            other => Received::Other(other),
        }
    }

    /// Frames held across gaps now, in all streams.
    pub fn held_now(&self) -> usize {
        self.streams.values().map(|s| s.held.len()).sum()
    }

    /// A description of every stream (epoch, last, held offsets, pending request), for failure
    /// messages.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (name, s) in &self.streams {
            let held: Vec<u64> = s.held.keys().copied().take(8).collect();
            out.push_str(&format!(
                "{name}: epoch {:?} last {} held {} {held:?}{} mismatch {} asks {}; ",
                s.epoch,
                s.last,
                s.held.len(),
                if s.held.len() > 8 { "…" } else { "" },
                s.mismatch,
                s.asks
            ));
        }
        out
    }

    /// A `msg` or `skip` frame of `stream` at `epoch`/`off`: returns the messages now
    /// delivered, in order (skips are not returned).
    pub fn frame(&mut self, stream: &str, epoch: &str, off: u64, item: Item, now: Instant) -> Vec<Delivered> {
        let mut out = Vec::new();
        let st = match self.streams.get_mut(stream) {
            Some(st) => st,
            None => {
                // A stream not seen before: this message is its starting point.
                self.streams.insert(
                    stream.to_owned(),
                    StreamState {
                        epoch: epoch.to_owned(),
                        last: off.saturating_sub(1),
                        held: BTreeMap::new(),
                        mismatch: false,
                        ask_at: None,
                        asks: 0,
                    },
                );
                self.streams.get_mut(stream).expect("just inserted")
            }
        };
        if st.epoch.is_empty() {
            // No position (the server's log was gone): a new starting point.
            st.epoch = epoch.to_owned();
            st.last = off.saturating_sub(1);
            st.mismatch = false;
        }
        if st.epoch != epoch {
            // Another log: drop it and ask where to continue, now unless a request is planned.
            self.counts.epoch_mismatches += 1;
            st.mismatch = true;
            if st.ask_at.is_none() {
                st.ask_at = Some(now);
            }
            return out;
        }
        if off <= st.last {
            self.counts.duplicates_dropped += 1;
            return out;
        }
        if off == st.last + 1 {
            st.asks = 0;
            st.last = off;
            Self::emit(&mut self.counts, &mut out, stream, epoch, off, item);
            Self::drain(&mut self.counts, &mut out, stream, st);
            st.settle(now);
            return out;
        }
        match st.held.entry(off) {
            // Held already: this copy is a duplicate, and the first one stays (as in thywill.js).
            std::collections::btree_map::Entry::Occupied(_) => self.counts.duplicates_dropped += 1,
            std::collections::btree_map::Entry::Vacant(place) => {
                place.insert(item);
                self.counts.held += 1;
            }
        }
        st.settle(now);
        out
    }

    /// A `continuity_lost` frame: the messages of `stream` before `next` in `epoch` will not
    /// be replayed. What was held from before `next` (or from an old epoch) is delivered (nobody
    /// can send it again); then the stream continues at `next`.
    pub fn continuity_lost(&mut self, stream: &str, epoch: &str, next: u64, now: Instant) -> Vec<Delivered> {
        let mut out = Vec::new();
        let next = next.max(1);
        let loss = Loss {
            stream: stream.to_owned(),
            epoch: epoch.to_owned(),
            next,
        };
        let Some(st) = self.streams.get_mut(stream) else {
            self.streams.insert(
                stream.to_owned(),
                StreamState {
                    epoch: epoch.to_owned(),
                    last: next - 1,
                    held: BTreeMap::new(),
                    mismatch: false,
                    ask_at: None,
                    asks: 0,
                },
            );
            self.counts.losses += 1;
            self.losses.push(loss);
            return out;
        };
        if st.epoch == epoch {
            // Same log: only what lies between the position and `next` is lost, if anything.
            if next > st.last + 1 {
                self.counts.losses += 1;
                self.losses.push(loss);
                Self::flush_held(&mut self.counts, &mut out, stream, st, next);
                st.last = next - 1;
            }
        } else {
            self.counts.losses += 1;
            self.losses.push(loss);
            Self::flush_held(&mut self.counts, &mut out, stream, st, u64::MAX);
            st.epoch = epoch.to_owned();
            st.last = next - 1;
        }
        st.mismatch = false;
        st.asks = 0;
        Self::drain(&mut self.counts, &mut out, stream, st);
        st.ask_at = None;
        st.settle(now);
        out
    }

    /// The replay requests due at `now`: `{stream: {epoch, off}}` of the streams whose gap (or
    /// epoch change) is still open when their wait ends; the next request of each is planned
    /// [`RESUME_RETRY`] later.
    pub fn due(&mut self, now: Instant) -> BTreeMap<String, Offset> {
        let mut out = BTreeMap::new();
        for (name, st) in &mut self.streams {
            match st.ask_at {
                Some(at) if at <= now => {
                    if st.needs_replay() {
                        out.insert(
                            name.clone(),
                            Offset {
                                epoch: st.epoch.clone(),
                                off: st.last,
                            },
                        );
                        st.asks += 1;
                        st.ask_at = Some(now + RESUME_RETRY);
                    } else {
                        st.ask_at = None;
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// When the next replay request may be due.
    pub fn next_due(&self) -> Option<Instant> {
        self.streams.values().filter_map(|s| s.ask_at).min()
    }

    /// The connection closed: no request is sent until the next `hello`.
    pub fn stop_asks(&mut self) {
        for st in self.streams.values_mut() {
            st.ask_at = None;
        }
    }

    /// A `hello` named every position (and so asked for every open gap): ask again
    /// [`RESUME_RETRY`] later for those still open then.
    pub fn restart_asks(&mut self, now: Instant) {
        for st in self.streams.values_mut() {
            st.asks = 0;
            st.ask_at = st.needs_replay().then_some(now + RESUME_RETRY);
        }
    }

    /// The positions to name in `hello`: the streams that have one.
    pub fn positions(&self) -> BTreeMap<String, Offset> {
        self.streams
            .iter()
            .filter(|(_, s)| !s.epoch.is_empty())
            .map(|(name, s)| {
                (
                    name.clone(),
                    Offset {
                        epoch: s.epoch.clone(),
                        off: s.last,
                    },
                )
            })
            .collect()
    }

    fn emit(
        counts: &mut OrderCounts,
        out: &mut Vec<Delivered>,
        stream: &str,
        epoch: &str,
        off: u64,
        item: Item,
    ) {
        match item {
            Item::Skip => counts.skipped += 1,
            Item::Msg { app, data, .. } => {
                counts.delivered += 1;
                out.push(Delivered {
                    stream: Some(stream.to_owned()),
                    epoch: epoch.to_owned(),
                    off,
                    app,
                    data,
                    at_us: now_us(),
                });
            }
        }
    }

    /// Delivers the held frames that follow the position without a gap.
    fn drain(counts: &mut OrderCounts, out: &mut Vec<Delivered>, stream: &str, st: &mut StreamState) {
        while let Some(item) = st.held.remove(&(st.last + 1)) {
            st.last += 1;
            let epoch = st.epoch.clone();
            Self::emit(counts, out, stream, &epoch, st.last, item);
        }
    }

    /// Delivers, in order, the held frames below `below`, past the gaps between them.
    fn flush_held(
        counts: &mut OrderCounts,
        out: &mut Vec<Delivered>,
        stream: &str,
        st: &mut StreamState,
        below: u64,
    ) {
        let offsets: Vec<u64> = st.held.range(..below).map(|(o, _)| *o).collect();
        let epoch = st.epoch.clone();
        for off in offsets {
            if let Some(item) = st.held.remove(&off) {
                st.last = st.last.max(off);
                Self::emit(counts, out, stream, &epoch, off, item);
            }
        }
    }
}

/// A change of the client's connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnEvent {
    /// Connected (the welcome came, `hello` was sent).
    Connected {
        /// When, in microseconds since the Unix epoch.
        at_us: u64,
        /// The URL.
        url: String,
        /// The member named by the welcome.
        member: String,
    },
    /// The connection ended.
    Disconnected {
        /// When, in microseconds since the Unix epoch.
        at_us: u64,
        /// The server's close code, when it sent one.
        code: Option<u16>,
        /// Whether the test dropped it ([`ReliableClient::drop_connection`]).
        dropped: bool,
    },
}

/// What the client counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// The ordering's counts.
    pub order: OrderCounts,
    /// Messages without a stream, delivered as they came.
    pub unordered: u64,
    /// `continuity_lost` frames received.
    pub continuity_lost: u64,
    /// `resume` frames sent.
    pub resumes_sent: u64,
    /// Connections opened after the first one.
    pub reconnects: u64,
    /// Messages sent again after a reconnect (unacknowledged ones and those kept while
    /// disconnected).
    pub resent: u64,
    /// Kept messages dropped beyond [`MAX_KEPT`].
    pub dropped_unsent: u64,
    /// The highest acknowledged message id.
    pub acked: u64,
    /// `error` frames received.
    pub errors: u64,
    /// `reconnect` frames received (a draining member's hint; the next automatic
    /// reconnection waits the delay it names).
    pub reconnect_hints: u64,
}

#[derive(Debug)]
struct Outgoing {
    id: u64,
    text: String,
}

/// A reliable client (see the module docs). Every wait is bounded.
#[derive(Debug)]
pub struct ReliableClient {
    tab: String,
    url: String,
    ws: Option<WsClient>,
    member: String,
    streams: Streams,
    delivered: Vec<Delivered>,
    outbox: VecDeque<Outgoing>,
    sent_count: usize,
    next_id: u64,
    next_rpc: u64,
    replied: u64,
    counters: Counters,
    events: Vec<ConnEvent>,
    auto: Vec<String>,
    auto_next: usize,
    retry_at: Option<Instant>,
    attempts: u32,
    /// The delay of the last `reconnect` frame, for the next automatic reconnection.
    hint: Option<Duration>,
    last_error: Option<String>,
}

/// Longest `reconnect` delay honoured.
const MAX_HINT: Duration = Duration::from_secs(30);

/// A random-enough tab id: 16 hex digits.
fn new_tab_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    h.write_u64(now_us());
    format!("{:016x}", h.finish())
}

impl ReliableClient {
    /// Connects to `url` with a new tab id.
    pub async fn connect(url: &str) -> Result<Self, WsError> {
        Self::connect_with_tab(url, &new_tab_id()).await
    }

    /// Connects to `url` as tab `tab`.
    pub async fn connect_with_tab(url: &str, tab: &str) -> Result<Self, WsError> {
        let mut c = ReliableClient {
            tab: tab.to_owned(),
            url: url.to_owned(),
            ws: None,
            member: String::new(),
            streams: Streams::new(),
            delivered: Vec::new(),
            outbox: VecDeque::new(),
            sent_count: 0,
            next_id: 1,
            next_rpc: 1,
            replied: 0,
            counters: Counters::default(),
            events: Vec::new(),
            auto: Vec::new(),
            auto_next: 0,
            retry_at: None,
            attempts: 0,
            hint: None,
            last_error: None,
        };
        c.open(url).await?;
        Ok(c)
    }

    /// Reconnects by itself when the connection ends, to `urls` in turn (starting after the
    /// one that failed), after a short backoff. Without it, a closed connection stays closed
    /// until [`ReliableClient::reconnect`].
    pub fn auto_reconnect(&mut self, urls: Vec<String>) {
        self.auto_next = urls.iter().position(|u| *u == self.url).map_or(0, |i| i + 1);
        self.auto = urls;
    }

    /// The tab id.
    pub fn tab(&self) -> &str {
        &self.tab
    }

    /// The URL of the current (or last) connection.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The member named by the last welcome.
    pub fn member(&self) -> &str {
        &self.member
    }

    /// Whether a connection is open.
    pub fn is_connected(&self) -> bool {
        self.ws.is_some()
    }

    /// What was delivered, in order (since the last [`ReliableClient::take_delivered`]).
    pub fn delivered(&self) -> &[Delivered] {
        &self.delivered
    }

    /// Takes what was delivered so far.
    pub fn take_delivered(&mut self) -> Vec<Delivered> {
        std::mem::take(&mut self.delivered)
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        Counters {
            order: self.streams.counts(),
            ..self.counters
        }
    }

    /// Connection changes, in order.
    pub fn events(&self) -> &[ConnEvent] {
        &self.events
    }

    /// The ordering state (positions, losses).
    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    /// Messages kept until acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.outbox.len()
    }

    /// Sends an application message with the next id; it is kept until acknowledged (and
    /// sent after the next welcome when disconnected). Returns its id.
    pub async fn send(&mut self, app: &str, data: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let text = ClientFrame::Msg {
            app: app.into(),
            data,
            meta: Metadata::new(),
            id: Some(id),
        }
        .encode();
        self.outbox.push_back(Outgoing { id, text });
        if self.outbox.len() > MAX_KEPT {
            self.outbox.pop_front();
            self.counters.dropped_unsent += 1;
            self.sent_count = self.sent_count.saturating_sub(1);
        }
        self.flush().await;
        id
    }

    /// Sends the kept messages not yet sent on this connection, in id order.
    async fn flush(&mut self) {
        while self.sent_count < self.outbox.len() {
            let Some(ws) = self.ws.as_mut() else { return };
            let text = self.outbox[self.sent_count].text.clone();
            match ws.send_text(text).await {
                Ok(()) => self.sent_count += 1,
                Err(e) => {
                    self.lost(None, &e.to_string());
                    return;
                }
            }
        }
    }

    /// Closes the socket at once, without a close frame, as a network drop would; the
    /// client keeps its positions and unacknowledged messages.
    pub fn drop_connection(&mut self) {
        if self.ws.take().is_some() {
            self.disconnected(None, true);
        }
    }

    /// Opens a new connection to `url` (or the last URL) with `hello {tab, streams}`, after
    /// dropping the current one if any, then resends what was not acknowledged.
    pub async fn reconnect(&mut self, url: Option<&str>) -> Result<(), WsError> {
        self.drop_connection();
        let url = url.map_or_else(|| self.url.clone(), str::to_owned);
        self.open(&url).await
    }

    async fn open(&mut self, url: &str) -> Result<(), WsError> {
        let mut ws = WsClient::connect(url).await?;
        let hello = ClientFrame::Hello {
            v: VERSION,
            last_seq: None,
            tab: Some(self.tab.clone()),
            streams: self.streams.positions(),
        };
        ws.send_text(hello.encode()).await?;
        if let ServerFrame::Welcome { member, .. } = &ws.welcome {
            self.member = member.to_string();
        }
        if !self.events.is_empty() {
            self.counters.reconnects += 1;
        }
        self.events.push(ConnEvent::Connected {
            at_us: now_us(),
            url: url.to_owned(),
            member: self.member.clone(),
        });
        self.url = url.to_owned();
        self.ws = Some(ws);
        self.retry_at = None;
        self.attempts = 0;
        self.hint = None;
        // The hello asked for every open gap: ask again only if they stay open.
        self.streams.restart_asks(Instant::now());
        // Unacknowledged messages first, then those kept while disconnected, in id order.
        if self.counters.reconnects > 0 {
            self.counters.resent += self.outbox.len() as u64;
        }
        self.sent_count = 0;
        self.flush().await;
        Ok(())
    }

    /// The connection ended (`code` from the server's close frame, if any).
    fn lost(&mut self, code: Option<u16>, why: &str) {
        if self.ws.take().is_some() {
            self.last_error = Some(why.to_owned());
            self.disconnected(code, false);
        }
    }

    fn disconnected(&mut self, code: Option<u16>, dropped: bool) {
        self.events.push(ConnEvent::Disconnected {
            at_us: now_us(),
            code,
            dropped,
        });
        self.sent_count = 0;
        self.streams.stop_asks();
        if !self.auto.is_empty() && !dropped {
            self.attempts = 0;
            // A draining member named the delay (jittered, to spread its clients); as
            // `thywill.js`, the first attempt waits that long instead of the backoff.
            let wait = self.hint.take().unwrap_or_else(|| self.backoff());
            self.retry_at = Some(Instant::now() + wait);
        }
    }

    /// The wait before the next reconnection attempt: 20–120 ms, doubling per failed attempt
    /// up to a second.
    fn backoff(&self) -> Duration {
        let jitter = u64::from_str_radix(&self.tab[..4.min(self.tab.len())], 16).unwrap_or(0) % 100;
        let base = 20u64.saturating_mul(1 << self.attempts.min(5));
        Duration::from_millis((base + jitter).min(1000))
    }

    /// Tries the next automatic reconnection.
    async fn try_reconnect(&mut self) {
        if self.auto.is_empty() {
            return;
        }
        let url = self.auto[self.auto_next % self.auto.len()].clone();
        self.auto_next = (self.auto_next + 1) % self.auto.len();
        match self.open(&url).await {
            Ok(()) => {}
            Err(e) => {
                self.last_error = Some(format!("reconnecting to {url}: {e}"));
                self.attempts += 1;
                self.retry_at = Some(Instant::now() + self.backoff());
            }
        }
    }

    /// Sends the replay requests that are due.
    async fn ask(&mut self) {
        if self.ws.is_none() {
            return;
        }
        let due = self.streams.due(Instant::now());
        if due.is_empty() {
            return;
        }
        let text = ClientFrame::Resume { streams: due }.encode();
        if let Some(ws) = self.ws.as_mut() {
            match ws.send_text(text).await {
                Ok(()) => self.counters.resumes_sent += 1,
                Err(e) => self.lost(None, &e.to_string()),
            }
        }
    }

    /// Reads and handles frames, sends due replay requests and reconnects (when automatic)
    /// until `deadline`. Errs when the connection is closed and does not reconnect by itself.
    pub async fn pump_until(&mut self, deadline: Instant) -> Result<(), WsError> {
        loop {
            if self.ws.is_none() {
                let Some(at) = self.retry_at else {
                    return Err(WsError::Closed(None));
                };
                if at > deadline {
                    tokio::time::sleep_until(deadline).await;
                    return Ok(());
                }
                tokio::time::sleep_until(at).await;
                self.try_reconnect().await;
                continue;
            }
            self.ask().await;
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            let wake = self.streams.next_due().map_or(deadline, |d| d.min(deadline));
            let Some(ws) = self.ws.as_mut() else { continue };
            match ws.recv_within(wake.saturating_duration_since(now)).await {
                Ok(frame) => self.handle(frame),
                Err(WsError::Timeout) => {}
                Err(WsError::Closed(c)) => {
                    let code = c.as_ref().map(|(code, _)| *code);
                    self.lost(code, &format!("closed: {c:?}"));
                }
                Err(e) => self.lost(None, &e.to_string()),
            }
        }
    }

    /// [`ReliableClient::pump_until`] for `wait`.
    pub async fn pump(&mut self, wait: Duration) -> Result<(), WsError> {
        self.pump_until(Instant::now() + wait).await
    }

    /// Pumps until `done(self)` holds, within `wait`; the error says where the streams stand.
    pub async fn until(&mut self, wait: Duration, done: impl Fn(&Self) -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + wait;
        while !done(self) {
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "tab {}: not done within {wait:?}: {} delivered, counters {:?}, streams {}, last error {:?}",
                    self.tab,
                    self.delivered.len(),
                    self.counters(),
                    self.streams.describe(),
                    self.last_error
                );
            }
            let step = (Instant::now() + Duration::from_millis(50)).min(deadline);
            self.pump_until(step)
                .await
                .map_err(|e| anyhow::anyhow!("tab {}: {e}", self.tab))?;
        }
        Ok(())
    }

    /// Waits until the server has processed every frame sent before (the connection hooks
    /// included, so the connection is subscribed to its channels): an RPC to a function that
    /// does not exist, whose answer comes in order.
    pub async fn ready(&mut self) -> anyhow::Result<()> {
        let app = match &self.ws {
            Some(WsClient {
                welcome: ServerFrame::Welcome { apps, .. },
                ..
            }) => apps.first().map(ToString::to_string).unwrap_or_default(),
            _ => anyhow::bail!("not connected"),
        };
        let id = self.next_rpc;
        self.next_rpc += 1;
        let text = ClientFrame::Rpc {
            app: app.as_str().into(),
            id,
            name: "thywill.testkit.ready".into(),
            args: Value::Null,
        }
        .encode();
        if let Some(ws) = self.ws.as_mut() {
            ws.send_text(text).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        self.until(crate::TIMEOUT, |c| c.replied >= id).await
    }

    fn handle(&mut self, frame: ServerFrame) {
        if matches!(frame, ServerFrame::ContinuityLost { .. }) {
            self.counters.continuity_lost += 1;
        }
        let frame = match self.streams.receive(frame, Instant::now()) {
            Received::Delivered(out) => {
                self.counters.unordered += out.iter().filter(|d| d.stream.is_none()).count() as u64;
                self.delivered.extend(out);
                return;
            }
            Received::Other(frame) => frame,
        };
        match frame {
            ServerFrame::Ack { id } => {
                self.counters.acked = self.counters.acked.max(id);
                let mut count = 0;
                while self.outbox.front().is_some_and(|m| m.id <= id) {
                    self.outbox.pop_front();
                    count += 1;
                }
                self.sent_count = self.sent_count.saturating_sub(count);
            }
            ServerFrame::RpcOk { id, .. } | ServerFrame::RpcErr { id, .. } => {
                self.replied = self.replied.max(id);
            }
            ServerFrame::Error { code, message, .. } => {
                self.counters.errors += 1;
                self.last_error = Some(format!("{code:?}: {message}"));
            }
            ServerFrame::Reconnect { after_ms } => {
                // The close (1001) follows; the automatic reconnection waits this long.
                self.counters.reconnect_hints += 1;
                self.hint = Some(Duration::from_millis(after_ms).min(MAX_HINT));
            }
            ServerFrame::Welcome { .. }
            | ServerFrame::Load { .. }
            | ServerFrame::Msg { .. }
            | ServerFrame::Skip { .. }
            | ServerFrame::ContinuityLost { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(n: u64) -> Item {
        Item::Msg {
            app: "draw".into(),
            data: json!({ "n": n }),
            meta: Metadata::new(),
        }
    }

    fn ns(out: &[Delivered]) -> Vec<u64> {
        out.iter().map(|d| d.data["n"].as_u64().unwrap_or(0)).collect()
    }

    const S: &str = "c:draw";

    #[test]
    fn in_order_messages_are_delivered_and_duplicates_dropped() {
        let t = Instant::now();
        let mut s = Streams::new();
        // The first message of an unknown stream is its starting point.
        assert_eq!(ns(&s.frame(S, "e1", 5, msg(5), t)), [5]);
        assert_eq!(ns(&s.frame(S, "e1", 6, msg(6), t)), [6]);
        assert!(s.frame(S, "e1", 6, msg(6), t).is_empty());
        assert!(s.frame(S, "e1", 3, msg(3), t).is_empty());
        assert_eq!(s.counts().duplicates_dropped, 2);
        assert_eq!(
            s.positions().get(S),
            Some(&Offset {
                epoch: "e1".into(),
                off: 6
            })
        );
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn a_gap_holds_messages_and_asks_after_250_ms() {
        let t = Instant::now();
        let mut s = Streams::new();
        s.frame(S, "e1", 1, msg(1), t);
        assert!(s.frame(S, "e1", 3, msg(3), t).is_empty());
        assert!(s.frame(S, "e1", 4, msg(4), t).is_empty());
        assert_eq!(s.held_now(), 2);
        assert_eq!(s.next_due(), Some(t + GAP_WAIT));
        assert!(s.due(t + Duration::from_millis(249)).is_empty());
        let due = s.due(t + GAP_WAIT);
        assert_eq!(
            due.get(S),
            Some(&Offset {
                epoch: "e1".into(),
                off: 1
            })
        );
        // Asked: the next request waits a second.
        assert_eq!(s.next_due(), Some(t + GAP_WAIT + RESUME_RETRY));
        // The replay fills the gap: everything held follows, in order; the copies are dropped.
        assert_eq!(ns(&s.frame(S, "e1", 2, msg(2), t)), [2, 3, 4]);
        assert!(s.frame(S, "e1", 3, msg(3), t).is_empty());
        assert_eq!(s.next_due(), None);
        assert_eq!(s.counts().delivered, 4);
        assert_eq!(s.counts().held, 2);
    }

    #[test]
    fn a_gap_filled_in_time_asks_nothing() {
        let t = Instant::now();
        let mut s = Streams::new();
        s.frame(S, "e1", 1, msg(1), t);
        s.frame(S, "e1", 3, msg(3), t);
        assert_eq!(ns(&s.frame(S, "e1", 2, msg(2), t)), [2, 3]);
        assert!(s.due(t + Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn skips_count_as_seen_and_are_not_delivered() {
        let t = Instant::now();
        let mut s = Streams::new();
        s.frame(S, "e1", 1, msg(1), t);
        s.frame(S, "e1", 3, msg(3), t);
        assert_eq!(ns(&s.frame(S, "e1", 2, Item::Skip, t)), [3]);
        assert!(s.frame(S, "e1", 4, Item::Skip, t).is_empty());
        assert_eq!(ns(&s.frame(S, "e1", 5, msg(5), t)), [5]);
        assert_eq!(s.counts().skipped, 2);
        // A skip of a delivered offset is a duplicate.
        assert!(s.frame(S, "e1", 5, Item::Skip, t).is_empty());
        assert_eq!(s.counts().duplicates_dropped, 1);
    }

    #[test]
    fn another_epoch_is_dropped_and_asked_for_at_once() {
        let t = Instant::now();
        let mut s = Streams::new();
        s.frame(S, "e1", 1, msg(1), t);
        assert!(s.frame(S, "e2", 1, msg(1), t).is_empty());
        assert_eq!(s.counts().epoch_mismatches, 1);
        let due = s.due(t);
        assert_eq!(
            due.get(S),
            Some(&Offset {
                epoch: "e1".into(),
                off: 1
            })
        );
        // The server answers: continuity lost, continue at 1 in e2; then the replay.
        assert!(s.continuity_lost(S, "e2", 1, t).is_empty());
        assert_eq!(s.counts().losses, 1);
        assert_eq!(ns(&s.frame(S, "e2", 1, msg(1), t)), [1]);
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn continuity_lost_flushes_what_was_held_before_next() {
        let t = Instant::now();
        let mut s = Streams::new();
        s.frame(S, "e1", 1, msg(1), t);
        s.frame(S, "e1", 4, msg(4), t);
        s.frame(S, "e1", 7, msg(7), t);
        // 2..=5 trimmed from the log: 4 is delivered (nobody can send it again), then 6 on.
        assert_eq!(ns(&s.continuity_lost(S, "e1", 6, t)), [4]);
        assert_eq!(s.losses()[0].next, 6);
        assert_eq!(ns(&s.frame(S, "e1", 6, msg(6), t)), [6, 7]);
        // Same epoch, nothing between the position and next: no loss.
        assert!(s.continuity_lost(S, "e1", 8, t).is_empty());
        assert_eq!(s.counts().losses, 1);
    }

    #[test]
    fn continuity_lost_without_a_log_starts_over_with_the_next_message() {
        let t = Instant::now();
        let mut s = Streams::new();
        s.frame("c:draw@gamma", "e1", 9, msg(9), t);
        // Another member's per-member stream: the server says epoch "" and next 1.
        s.continuity_lost("c:draw@gamma", "", 1, t);
        assert!(!s.positions().contains_key("c:draw@gamma"));
        assert_eq!(ns(&s.frame("c:draw@gamma", "e7", 3, msg(3), t)), [3]);
    }

    #[test]
    fn asks_stop_on_disconnect_and_restart_after_hello() {
        let t = Instant::now();
        let mut s = Streams::new();
        s.frame(S, "e1", 1, msg(1), t);
        s.frame(S, "e1", 3, msg(3), t);
        s.stop_asks();
        assert_eq!(s.next_due(), None);
        s.restart_asks(t);
        assert_eq!(s.next_due(), Some(t + RESUME_RETRY));
        assert_eq!(
            s.positions().get(S),
            Some(&Offset {
                epoch: "e1".into(),
                off: 1
            })
        );
    }
}

/// The shared recovery vectors (`thywill-transport/client/vectors/recovery.json`, whose
/// header says how to read them), run against [`Streams`] as the client's IO would drive it:
/// replay requests sent when due, `hello` naming the positions, asks stopped while
/// disconnected and restarted after `hello`. `thywill.js` runs the same file
/// (`client/test/vectors.test.js`).
#[cfg(test)]
mod vectors {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    const VECTORS: &str = include_str!("../../thywill-transport/client/vectors/recovery.json");

    #[derive(Deserialize)]
    struct File {
        vectors: Vec<Vector>,
    }

    #[derive(Deserialize)]
    struct Vector {
        name: String,
        steps: Vec<Step>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Step {
        at: u64,
        frame: Option<Value>,
        #[serde(default)]
        drop: bool,
        #[serde(default)]
        connect: bool,
        #[serde(default)]
        events: Vec<Value>,
        #[serde(default)]
        sent: Vec<Value>,
        streams: Option<Value>,
    }

    /// A client's ordering on a virtual clock, and what it did during the current step.
    struct Run {
        streams: Streams,
        t0: Instant,
        sent: Vec<Value>,
        losses_seen: usize,
    }

    impl Run {
        fn ms(&self, at: Instant) -> u64 {
            at.saturating_duration_since(self.t0).as_millis() as u64
        }

        /// Fires the replay requests due up to `to`, each at its time, as timers would.
        fn advance(&mut self, to: Instant) {
            while let Some(due) = self.streams.next_due().filter(|d| *d <= to) {
                for (stream, at) in self.streams.due(due) {
                    let sent = json!({
                        "at": self.ms(due),
                        "resume": {"stream": stream, "epoch": at.epoch, "off": at.off}
                    });
                    self.sent.push(sent);
                }
            }
        }

        /// The losses reported since the last call, then `delivered`, as the vectors write
        /// events.
        fn events(&mut self, delivered: Vec<Delivered>) -> Vec<Value> {
            let losses = &self.streams.losses()[self.losses_seen..];
            self.losses_seen = self.streams.losses().len();
            let lost = losses
                .iter()
                .map(|l| json!({"lost": {"stream": l.stream, "epoch": l.epoch, "next": l.next}}));
            let delivered = delivered
                .into_iter()
                .map(|d| json!({"deliver": {"app": d.app, "data": d.data}}));
            lost.chain(delivered).collect()
        }
    }

    fn run(vector: &Vector) -> anyhow::Result<()> {
        let t0 = Instant::now();
        let mut r = Run {
            streams: Streams::new(),
            t0,
            sent: Vec::new(),
            losses_seen: 0,
        };
        let mut connected = true;
        for (n, step) in vector.steps.iter().enumerate() {
            let where_ = format!("{}: step {n} ({step:?})", vector.name);
            let now = t0 + Duration::from_millis(step.at);
            r.sent.clear();
            r.advance(now);
            let mut delivered = Vec::new();
            if let Some(frame) = &step.frame {
                let frame: ServerFrame = serde_json::from_value(frame.clone())?;
                delivered = match r.streams.receive(frame, now) {
                    Received::Delivered(out) => out,
                    Received::Other(f) => anyhow::bail!("{where_}: not a frame of the ordering: {f:?}"),
                };
                // A message of another epoch asks at once.
                r.advance(now);
            } else if step.drop {
                anyhow::ensure!(connected, "{where_}: dropped while disconnected");
                r.streams.stop_asks();
                connected = false;
            } else if step.connect {
                anyhow::ensure!(!connected, "{where_}: connect while connected");
                r.sent
                    .push(json!({"at": step.at, "hello": r.streams.positions()}));
                r.streams.restart_asks(now);
                connected = true;
            }
            let events = r.events(delivered);
            anyhow::ensure!(
                events == step.events,
                "{where_}: events {events:?}, expected {:?}",
                step.events
            );
            anyhow::ensure!(
                r.sent == step.sent,
                "{where_}: frames sent {:?}, expected {:?}",
                r.sent,
                step.sent
            );
            if let Some(expected) = &step.streams {
                let snapshot: serde_json::Map<String, Value> = r
                    .streams
                    .snapshot()
                    .into_iter()
                    .map(|(name, s)| (name, json!({"epoch": s.epoch, "off": s.off, "held": s.held})))
                    .collect();
                let snapshot = Value::Object(snapshot);
                anyhow::ensure!(
                    snapshot == *expected,
                    "{where_}: streams {snapshot}, expected {expected}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn the_rust_client_follows_the_shared_recovery_vectors() -> anyhow::Result<()> {
        let file: File = serde_json::from_str(VECTORS)?;
        anyhow::ensure!(file.vectors.len() >= 10, "only {} vectors", file.vectors.len());
        let failures: Vec<String> = file
            .vectors
            .iter()
            .filter_map(|v| run(v).err().map(|e| format!("{e:#}")))
            .collect();
        anyhow::ensure!(
            failures.is_empty(),
            "{} of {} vectors fail:\n{}",
            failures.len(),
            file.vectors.len(),
            failures.join("\n")
        );
        Ok(())
    }
}
