//! The [`History`] trait: bounded replay logs of message streams, so that a client that
//! reconnects (to the same member or another one) receives what it missed.
//!
//! A **stream** is a named sequence of server→client messages: `c:<channel>` for messages sent
//! to a channel, `s:<session>` for messages sent to a session. [`History::append`] gives each
//! message an [`Offset`]: an **epoch** (which log) and a number that grows by exactly one per
//! message, so that a client can tell a gap from a duplicate. A reconnecting client names the
//! last offset it saw per stream and the node asks [`History::read_after`] for the rest.
//!
//! The log is bounded in entries, bytes and age ([`HistoryLimits`]); when the client's gap no longer
//! lies inside it — or the epoch changed because the log itself was lost — the read says so
//! ([`Replay::continuous`] is false) and the client is told `continuity_lost` instead of being
//! left to believe it has everything.
//!
//! The same trait keeps the **high-water marks** of client message ids (per browser tab), so a
//! message resent after a reconnect is processed once even on another member.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{BoxFuture, CoreResult};

/// Where a message sits in its stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Offset {
    /// The log's epoch: a new epoch starts when a log starts empty (first use, or its store
    /// lost it), so offsets of different epochs are never compared.
    pub epoch: String,
    /// The message's number in the epoch: 1 for the first, then one more per message.
    pub off: u64,
}

/// One logged message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its number in the epoch.
    pub off: u64,
    /// The payload given to [`History::append`].
    pub payload: String,
}

/// The answer of [`History::read_after`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replay {
    /// The stream's current epoch (empty when the stream has no log at all).
    pub epoch: String,
    /// Whether `entries` follow the requested offset without a gap (same epoch, nothing
    /// trimmed between). When false, the client lost messages it can never get back.
    pub continuous: bool,
    /// The entries after the requested offset (or, when not continuous, the oldest entries
    /// still kept in the current epoch), in order, at most the read's [`ReadLimit`].
    pub entries: Vec<Entry>,
    /// The stream's last offset in `epoch` (0 when empty): a client that is told of lost
    /// continuity and given no entries resumes after it.
    pub last: u64,
}

/// Bounds of every stream's log: whichever bound is reached first trims the oldest entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Entries kept per stream.
    pub max_entries: usize,
    /// How long an entry stays replayable.
    pub max_age: Duration,
    /// Payload bytes kept per stream.
    pub max_stream_bytes: usize,
    /// Payload bytes kept in all streams together, where the implementation holds them
    /// itself (an in-memory log; a shared store bounds its own memory).
    pub max_total_bytes: usize,
}

impl Default for HistoryLimits {
    /// 10,000 entries, 8 MiB and 5 minutes per stream; 64 MiB in all.
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_age: Duration::from_secs(300),
            max_stream_bytes: 8 * 1024 * 1024,
            max_total_bytes: 64 * 1024 * 1024,
        }
    }
}

/// How much one [`History::read_after`] returns at most, so that a replay is read and written
/// in bounded chunks, never held whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimit {
    /// Entries per read.
    pub max_entries: usize,
    /// Payload bytes per read; a read returns at least one entry when there is one, whatever
    /// its size.
    pub max_bytes: usize,
}

impl Default for ReadLimit {
    /// 256 entries or 256 KiB.
    fn default() -> Self {
        Self {
            max_entries: 256,
            max_bytes: 256 * 1024,
        }
    }
}

impl ReadLimit {
    /// How many of `sizes` (payload lengths, oldest first) one read returns: at least one
    /// when there is one.
    pub fn take(&self, sizes: impl IntoIterator<Item = usize>) -> usize {
        let mut bytes = 0usize;
        let mut n = 0usize;
        for size in sizes {
            if n >= self.max_entries.max(1) || (n > 0 && bytes.saturating_add(size) > self.max_bytes) {
                break;
            }
            bytes = bytes.saturating_add(size);
            n += 1;
        }
        n
    }
}

/// Replay logs of streams and high-water marks of client message ids: what a history
/// implements (with plain `async fn`s); the node stores it as [`DynHistory`].
///
/// Implementations: an in-memory log per member ([`LocalHistory`](crate::LocalHistory)) and a
/// Redis log shared by every member (`thywill-cluster-redis`'s `RedisHistory`), which lets a
/// client recover on any member after the one it was connected to crashed.
pub trait History: Send + Sync + 'static {
    /// Whether every member of the cluster reads the same logs. When false, offsets are only
    /// meaningful on the member that assigned them, and the node names its streams after
    /// itself.
    fn is_shared(&self) -> bool;

    /// Appends a payload to a stream and returns its offset. Appends to one stream are
    /// numbered in the order they complete.
    ///
    /// `key` identifies the message (a random number): in a shared history, appending again
    /// with the same key — a retry after an attempt whose answer was lost — returns the first
    /// offset instead of logging the message twice (for at least a minute). A history whose
    /// appends cannot half-fail (one in memory) is never retried and may ignore the key.
    fn append(
        &self,
        stream: &str,
        key: u64,
        payload: String,
    ) -> impl Future<Output = CoreResult<Offset>> + Send;

    /// The entries of `stream` after `after` (an offset the client saw), oldest first, at most
    /// `limit` of them: the caller reads on after the last entry returned until it reaches
    /// [`Replay::last`].
    ///
    /// An `after.off` beyond the log's last offset in the same epoch (which no client was
    /// given) is answered like a caught-up client: continuous, no entries. Offsets are
    /// client input: implementations must not overflow on any `u64`.
    fn read_after(
        &self,
        stream: &str,
        after: &Offset,
        limit: ReadLimit,
    ) -> impl Future<Output = CoreResult<Replay>> + Send;

    /// The highest client message id processed for a tab (0 when none is known).
    fn received_mark(&self, tab: &str) -> impl Future<Output = CoreResult<u64>> + Send;

    /// Records that messages of a tab up to `id` were processed; never lowers the mark.
    fn set_received_mark(&self, tab: &str, id: u64) -> impl Future<Output = CoreResult<()>> + Send;
}

/// Object-safe form of [`History`], implemented for every `History`: what the node stores
/// (`Arc<dyn DynHistory>`). Implement [`History`], never this.
pub trait DynHistory: Send + Sync + 'static {
    /// See [`History::is_shared`].
    fn is_shared(&self) -> bool;
    /// See [`History::append`].
    fn append<'a>(&'a self, stream: &'a str, key: u64, payload: String) -> BoxFuture<'a, CoreResult<Offset>>;
    /// See [`History::read_after`].
    fn read_after<'a>(
        &'a self,
        stream: &'a str,
        after: &'a Offset,
        limit: ReadLimit,
    ) -> BoxFuture<'a, CoreResult<Replay>>;
    /// See [`History::received_mark`].
    fn received_mark<'a>(&'a self, tab: &'a str) -> BoxFuture<'a, CoreResult<u64>>;
    /// See [`History::set_received_mark`].
    fn set_received_mark<'a>(&'a self, tab: &'a str, id: u64) -> BoxFuture<'a, CoreResult<()>>;
}

impl<H: History> DynHistory for H {
    fn is_shared(&self) -> bool {
        History::is_shared(self)
    }
    fn append<'a>(&'a self, stream: &'a str, key: u64, payload: String) -> BoxFuture<'a, CoreResult<Offset>> {
        Box::pin(History::append(self, stream, key, payload))
    }
    fn read_after<'a>(
        &'a self,
        stream: &'a str,
        after: &'a Offset,
        limit: ReadLimit,
    ) -> BoxFuture<'a, CoreResult<Replay>> {
        Box::pin(History::read_after(self, stream, after, limit))
    }
    fn received_mark<'a>(&'a self, tab: &'a str) -> BoxFuture<'a, CoreResult<u64>> {
        Box::pin(History::received_mark(self, tab))
    }
    fn set_received_mark<'a>(&'a self, tab: &'a str, id: u64) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(History::set_received_mark(self, tab, id))
    }
}
