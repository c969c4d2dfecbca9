//! [`NatsHistory`]: the replay history in NATS JetStream, shared by the members.
//!
//! Each history stream (`c:<channel>`, `s:<session>`) is a JetStream stream of its own,
//! `THYWILL_<cluster>_<hex of the name>` on the subject `thywill.<cluster>.history.<hex>`, so that
//! JetStream's own numbering is the history's: a stream's sequence numbers grow by exactly one per
//! message and go on growing after old messages are trimmed, and its bounds are the history's
//! limits ([`HistoryLimits`]: entries, bytes and age per stream). The epoch of a log is its
//! JetStream stream's creation time: a stream lost and made again is a new epoch. An append
//! carries its key as `Nats-Msg-Id`, so a retried append within the duplicate window (two
//! minutes) returns the first offset. The received marks of browser tabs are one more stream,
//! `THYWILL_<cluster>_MARKS`, keeping the last message of each tab's subject
//! (`thywill.<cluster>.marks.<hex of the tab>`), raised by compare-and-set on the subject's last
//! sequence (what JetStream's key-value store does, written out: the client's key-value API
//! expects a newer server than Debian's 2.9).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use thywill_core::{CoreResult, Entry, History, HistoryLimits, Offset, ReadLimit, Replay};

use crate::{Error, lock};

/// How long JetStream remembers an append's key, to answer a retry with the first offset.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Most streams whose epoch is remembered (forgotten all at once past it).
const KNOWN_STREAMS: usize = 4096;
/// Attempts of one compare-and-set of a mark before giving up.
const MARK_ATTEMPTS: usize = 16;

fn js_error(what: &'static str, e: impl std::fmt::Display) -> Error {
    Error::JetStream {
        what,
        message: e.to_string(),
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The history of one cluster in NATS JetStream, shared by its members.
///
/// Each history stream (`c:<channel>`, `s:<session>`) is a JetStream stream of its own, whose
/// sequence numbers are the offsets and whose creation time is the epoch; its bounds are the
/// history's limits. An append's key is its `Nats-Msg-Id` (a retried append within two minutes
/// returns the first offset). Marks are raised by compare-and-set on the last sequence of the
/// tab's subject in one more stream.
///
/// JetStream streams are not deleted when their messages age out: one stays on the server for
/// every channel and session ever written to (empty once `max_age` passed). An operator of a
/// long-running cluster with many sessions removes idle ones (`nats stream rm`).
pub struct NatsHistory {
    client: async_nats::Client,
    /// The client's connection count when the epochs below were learnt.
    connects: AtomicU64,
    js: jetstream::Context,
    cluster: String,
    limits: HistoryLimits,
    storage: stream::StorageType,
    marks: stream::Stream,
    /// The epoch of each stream this member appended to, by history stream name.
    epochs: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for NatsHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsHistory")
            .field("cluster", &self.cluster)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl NatsHistory {
    /// Connects to the NATS server at `url` (JetStream enabled) for the history of the cluster
    /// `cluster` (one subject token), with these limits per stream, kept in files
    /// (`memory`: false) or in the server's memory.
    pub async fn connect(
        url: &str,
        cluster: &str,
        limits: HistoryLimits,
        memory: bool,
    ) -> Result<Self, Error> {
        // The cluster's name is checked as the cluster's configuration checks it.
        let config = crate::NatsClusterConfig::default()
            .with_url(url)?
            .with_cluster(cluster)?;
        let client = tokio::time::timeout(config.command_timeout * 2, async_nats::connect(url))
            .await
            .map_err(|_| Error::Timeout("connect"))?
            .map_err(|source| Error::Connect {
                url: url.to_owned(),
                source,
            })?;
        let js = jetstream::new(client.clone());
        let storage = if memory {
            stream::StorageType::Memory
        } else {
            stream::StorageType::File
        };
        let marks = js
            .get_or_create_stream(stream::Config {
                name: format!("THYWILL_{cluster}_MARKS"),
                subjects: vec![format!("thywill.{cluster}.marks.>")],
                max_messages_per_subject: 1,
                storage,
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(|e| js_error("marks stream", e))?;
        Ok(Self {
            connects: AtomicU64::new(client.statistics().connects.load(Ordering::Relaxed)),
            client,
            js,
            cluster: cluster.to_owned(),
            limits,
            storage,
            marks,
            epochs: Mutex::new(HashMap::new()),
        })
    }

    fn names(&self, stream: &str) -> (String, String) {
        let h = hex(stream);
        (
            format!("THYWILL_{}_{h}", self.cluster),
            format!("thywill.{}.history.{h}", self.cluster),
        )
    }

    fn epoch_of(info: &stream::Info) -> String {
        info.created.unix_timestamp_nanos().to_string()
    }

    /// The stream's epoch, making the stream if it does not exist.
    async fn ensure(&self, stream: &str) -> Result<String, Error> {
        // After a reconnection a stream may have been lost and made again (by another member):
        // its epoch is read again.
        let connects = self.connects();
        if self.connects.swap(connects, Ordering::Relaxed) != connects {
            lock(&self.epochs).clear();
        }
        if let Some(epoch) = lock(&self.epochs).get(stream) {
            return Ok(epoch.clone());
        }
        let (name, subject) = self.names(stream);
        let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let mut s = self
            .js
            .get_or_create_stream(stream::Config {
                name,
                subjects: vec![subject],
                max_messages: to_i64(self.limits.max_entries.max(1)),
                max_bytes: to_i64(self.limits.max_stream_bytes.max(1)),
                max_age: self.limits.max_age,
                storage: self.storage,
                discard: stream::DiscardPolicy::Old,
                duplicate_window: DUPLICATE_WINDOW.min(self.limits.max_age),
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(|e| js_error("stream", e))?;
        let epoch = Self::epoch_of(s.info().await.map_err(|e| js_error("stream info", e))?);
        let mut epochs = lock(&self.epochs);
        if epochs.len() >= KNOWN_STREAMS {
            epochs.clear();
        }
        epochs.insert(stream.to_owned(), epoch.clone());
        Ok(epoch)
    }

    async fn publish(&self, stream: &str, key: u64, payload: &Bytes) -> Result<u64, Error> {
        let (_, subject) = self.names(stream);
        let message = PublishMessage::build()
            .payload(payload.clone())
            .message_id(key.to_string());
        let ack = self
            .js
            .send_publish(subject, message)
            .await
            .map_err(|e| js_error("append", e))?
            .await
            .map_err(|e| js_error("append", e))?;
        Ok(ack.sequence)
    }

    fn connects(&self) -> u64 {
        self.client.statistics().connects.load(Ordering::Relaxed)
    }

    /// See [`History::append`].
    pub async fn append_entry(&self, stream: &str, key: u64, payload: String) -> Result<Offset, Error> {
        let payload = Bytes::from(payload);
        let mut epoch = self.ensure(stream).await?;
        let seen = self.connects.load(Ordering::Relaxed);
        let off = match self.publish(stream, key, &payload).await {
            Ok(off) => off,
            Err(e) => {
                // The stream may have been lost (a server that kept it in memory restarted):
                // made again, it is a new epoch.
                tracing::debug!(stream, error = %e, "append failed: the stream is made again");
                lock(&self.epochs).remove(stream);
                epoch = self.ensure(stream).await?;
                self.publish(stream, key, &payload).await?
            }
        };
        if self.connects() != seen {
            // Reconnected while appending: the stream may be a new one, whose epoch is read.
            epoch = self.ensure(stream).await?;
        }
        Ok(Offset { epoch, off })
    }

    /// See [`History::read_after`].
    pub async fn read_entries(
        &self,
        stream: &str,
        after: &Offset,
        limit: ReadLimit,
    ) -> Result<Replay, Error> {
        let (name, _) = self.names(stream);
        let mut s = match self.js.get_stream(&name).await {
            Ok(s) => s,
            Err(e) => {
                if let jetstream::context::GetStreamErrorKind::JetStream(j) = e.kind()
                    && j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                {
                    // Never written, or lost: no log.
                    return Ok(Replay {
                        epoch: String::new(),
                        continuous: false,
                        entries: Vec::new(),
                        last: 0,
                    });
                }
                return Err(js_error("stream", e));
            }
        };
        let info = s.info().await.map_err(|e| js_error("stream info", e))?;
        let epoch = Self::epoch_of(info);
        let last = info.state.last_sequence;
        let first = if info.state.messages == 0 {
            last.saturating_add(1)
        } else {
            info.state.first_sequence
        };
        // Client input: any u64, so no unchecked arithmetic.
        let next = after.off.saturating_add(1);
        let continuous = after.epoch == epoch && (after.off >= last || first <= next);
        let mut seq = if continuous { next } else { first };
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        while seq <= last && entries.len() < limit.max_entries.max(1) {
            let message = match s.direct_get(seq).await {
                Ok(m) => m,
                // Trimmed since the stream's state was read.
                Err(e) if matches!(e.kind(), stream::DirectGetErrorKind::NotFound) => {
                    seq = seq.saturating_add(1);
                    continue;
                }
                Err(e) => return Err(js_error("read", e)),
            };
            let size = message.payload.len();
            if !entries.is_empty() && bytes.saturating_add(size) > limit.max_bytes {
                break;
            }
            bytes = bytes.saturating_add(size);
            match String::from_utf8(message.payload.to_vec()) {
                Ok(payload) => entries.push(Entry { off: seq, payload }),
                Err(_) => tracing::warn!(stream, seq, "history entry not UTF-8 skipped"),
            }
            seq = seq.saturating_add(1);
        }
        Ok(Replay {
            epoch,
            continuous,
            entries,
            last,
        })
    }

    fn mark_subject(&self, tab: &str) -> String {
        format!("thywill.{}.marks.{}", self.cluster, hex(tab))
    }

    /// A tab's mark and the sequence of the message holding it (0, 0 when it has none).
    async fn current_mark(&self, subject: &str) -> Result<(u64, u64), Error> {
        match self.marks.direct_get_last_for_subject(subject).await {
            Ok(m) => {
                let mark = std::str::from_utf8(&m.payload)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                Ok((mark, m.sequence))
            }
            Err(e) if matches!(e.kind(), stream::DirectGetErrorKind::NotFound) => Ok((0, 0)),
            Err(e) => Err(js_error("mark", e)),
        }
    }

    /// See [`History::received_mark`].
    pub async fn mark(&self, tab: &str) -> Result<u64, Error> {
        Ok(self.current_mark(&self.mark_subject(tab)).await?.0)
    }

    /// See [`History::set_received_mark`]: compare-and-set on the tab's last message, so that
    /// concurrent members never lower a mark.
    pub async fn raise_mark(&self, tab: &str, id: u64) -> Result<(), Error> {
        let subject = self.mark_subject(tab);
        for _ in 0..MARK_ATTEMPTS {
            let (now, seq) = self.current_mark(&subject).await?;
            if now >= id && seq != 0 {
                return Ok(());
            }
            let message = PublishMessage::build()
                .payload(Bytes::from(id.to_string()))
                .expected_last_subject_sequence(seq);
            let sent = self
                .js
                .send_publish(subject.clone(), message)
                .await
                .map_err(|e| js_error("mark", e))?;
            match sent.await {
                Ok(_) => return Ok(()),
                // Another member wrote first: read again.
                Err(e) => tracing::debug!(tab, error = %e, "mark raced: retrying"),
            }
        }
        Err(js_error("mark", "too many concurrent updates"))
    }
}

impl History for NatsHistory {
    fn is_shared(&self) -> bool {
        true
    }

    async fn append(&self, stream: &str, key: u64, payload: String) -> CoreResult<Offset> {
        Ok(self.append_entry(stream, key, payload).await?)
    }

    async fn read_after(&self, stream: &str, after: &Offset, limit: ReadLimit) -> CoreResult<Replay> {
        Ok(self.read_entries(stream, after, limit).await?)
    }

    async fn received_mark(&self, tab: &str) -> CoreResult<u64> {
        Ok(self.mark(tab).await?)
    }

    async fn set_received_mark(&self, tab: &str, id: u64) -> CoreResult<()> {
        Ok(self.raise_mark(tab, id).await?)
    }
}
