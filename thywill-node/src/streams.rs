//! Replayable streams: how the node numbers messages to channels and sessions in its
//! [`History`](thywill_core::History), and how it answers a client's `hello` / `resume` with
//! what it missed (see `docs/PROTOCOL.md`, "Recovery after a reconnect").

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thywill_core::edge::SharedFrame;
use thywill_core::protocol::ServerFrame;
use thywill_core::{
    ApplicationId, ChannelId, ConnectionId, CoreError, CoreResult, ErrorKind, Message, Offset, ReadLimit,
    SessionId, Target,
};

use crate::node::Inner;

/// Where a message sits in a replayable stream, as the client sees it: the stream's wire
/// name (`c:<channel>`, `s:<session>`, plus `@<member>` when the history is not shared) and
/// its offset there.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct At {
    pub(crate) stream: String,
    pub(crate) offset: Offset,
}

/// How a `Deliver` task's message is numbered.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Numbering {
    /// Not a stream message.
    None,
    /// Numbered by the sender in the shared history.
    Numbered(At),
    /// To be numbered by the receiving member in its own history under this stream.
    Local(String),
}

/// What a logged entry holds (as JSON): the application, the message and the tabs excluded
/// from it.
#[derive(Serialize, Deserialize)]
pub(crate) struct Logged<'a> {
    app: ApplicationId,
    message: Cow<'a, Message>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    excluded: Vec<String>,
}

pub(crate) fn log_payload(
    app: &ApplicationId,
    message: &Message,
    excluded: Vec<String>,
) -> CoreResult<String> {
    let logged = Logged {
        app: app.clone(),
        message: Cow::Borrowed(message),
        excluded,
    };
    serde_json::to_string(&logged).map_err(|e| CoreError::Codec(e.to_string()))
}

/// What a replay sends, in order: control frames (`continuity_lost`, `skip`) and logged
/// messages, encoded here and numbered by the edge when it writes them.
pub(crate) use thywill_core::edge::ReplayItem as Replayed;

/// A stream a connection is catching up on.
pub(crate) struct Resume {
    /// The stream's wire name.
    stream: String,
    /// Its name in the history.
    base: String,
    /// The last offset written to the client so far.
    after: Offset,
    /// Whether the replay reached the stream's end.
    pub(crate) done: bool,
}

/// Most streams a client may name in one `hello` or `resume`.
pub(crate) const MAX_RESUME_STREAMS: usize = 256;

impl Inner {
    /// The wire name of a stream: a shared history's streams are the same on every member;
    /// a per-member history's are named after the member.
    pub(crate) fn wire_stream(&self, base: &str) -> String {
        if self.history.is_shared() {
            base.to_owned()
        } else {
            format!("{base}@{}", self.member)
        }
    }

    /// The replayable stream of a target, when replay is on: `c:<channel>`, or `s:<session>`
    /// when sessions outlive connections.
    pub(crate) fn stream_of(&self, target: &Target) -> Option<String> {
        if !self.config.replay {
            return None;
        }
        match target {
            Target::Channel { channel, .. } => Some(format!("c:{channel}")),
            Target::Session(session) if self.session_store.is_some() => Some(format!("s:{session}")),
            _ => None,
        }
    }

    /// Runs a history call until it succeeds, retrying with backoff while the history is
    /// unreachable (a Redis restart: errors of kind `Unavailable`, and component errors the
    /// store did not classify), within the append timeout; an error that no retry can mend
    /// (`Invalid`, `Codec`, `NotFound`, `ShuttingDown`) at once, the last one at the deadline.
    pub(crate) async fn retrying<T, F>(&self, stream: &str, mut attempt: impl FnMut() -> F) -> CoreResult<T>
    where
        F: std::future::Future<Output = CoreResult<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.config.append_timeout;
        let mut pause = std::time::Duration::from_millis(20);
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let error = match tokio::time::timeout(remaining, attempt()).await {
                Ok(Ok(done)) => return Ok(done),
                Ok(Err(e)) if may_pass_later(&e) => e,
                Ok(Err(e)) => return Err(e),
                Err(_) => CoreError::Unavailable("the history did not answer in time".into()),
            };
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(error);
            }
            tracing::debug!(stream, error = %error, "history unreachable; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(500));
        }
    }

    /// Logs a stream message (see [`Inner::retrying`]).
    pub(crate) async fn append(&self, base: &str, payload: String) -> CoreResult<At> {
        // The same key on every attempt: a retry of an append that did happen is not logged twice.
        let key: u64 = rand::random();
        match self
            .retrying(base, || self.history.append(base, key, payload.clone()))
            .await
        {
            Ok(offset) => Ok(At {
                stream: self.wire_stream(base),
                offset,
            }),
            Err(error) => {
                self.metrics.history_failures.inc();
                tracing::warn!(stream = base, error = %error, "message not logged: not sent");
                Err(error)
            }
        }
    }

    /// Reads a chunk of a stream's history after an offset (see [`Inner::retrying`]).
    pub(crate) async fn read_after(
        &self,
        base: &str,
        after: &Offset,
        limit: ReadLimit,
    ) -> Option<thywill_core::Replay> {
        self.retrying(base, || self.history.read_after(base, after, limit))
            .await
            .ok()
    }

    /// Numbers a message of a per-member stream in this member's history, which answers at
    /// once (it is in memory); `None` if it does not.
    pub(crate) fn append_now(
        &self,
        base: &str,
        app: &ApplicationId,
        message: &Message,
        exclude: &[ConnectionId],
    ) -> Option<At> {
        use futures_util::FutureExt;
        let payload = log_payload(app, message, self.tabs_of(exclude)).ok()?;
        match self.history.append(base, rand::random(), payload).now_or_never() {
            Some(Ok(offset)) => Some(At {
                stream: self.wire_stream(base),
                offset,
            }),
            Some(Err(e)) => {
                tracing::warn!(stream = base, error = %e, "message not logged");
                None
            }
            None => {
                tracing::warn!(
                    stream = base,
                    "a per-member history must answer at once: message not logged"
                );
                None
            }
        }
    }

    /// The tabs of local connections among `conns`.
    pub(crate) fn tabs_of(&self, conns: &[ConnectionId]) -> Vec<String> {
        conns
            .iter()
            .filter_map(|c| self.local(c).and_then(|h| h.tab()))
            .collect()
    }

    /// Which of `streams` (offsets a client saw) a connection resumes: each stream it may read
    /// — a channel it is subscribed to, its own session — whose history is here; and the
    /// `continuity_lost` frames of streams numbered by another member's own history (only it
    /// could replay them).
    pub(crate) fn resumes(
        &self,
        conn: &ConnectionId,
        session: &SessionId,
        streams: BTreeMap<String, Offset>,
    ) -> (Vec<Replayed>, Vec<Resume>) {
        let mut lost = Vec::new();
        let mut resumes = Vec::new();
        let suffix = format!("@{}", self.member);
        for (stream, after) in streams.into_iter().take(MAX_RESUME_STREAMS) {
            let base = if self.history.is_shared() {
                Some(stream.as_str())
            } else {
                stream.strip_suffix(&suffix)
            };
            let Some(base) = base else {
                if !after.epoch.is_empty() {
                    self.metrics.continuity_lost.inc();
                    lost.push(Replayed::Frame(ServerFrame::ContinuityLost {
                        stream,
                        epoch: String::new(),
                        next: 1,
                    }));
                }
                continue;
            };
            let readable = if let Some(channel) = base.strip_prefix("c:") {
                self.subs_read().is_subscribed(conn, &ChannelId::from(channel))
            } else if let Some(s) = base.strip_prefix("s:") {
                s == session.as_str()
            } else {
                false
            };
            if !readable {
                tracing::debug!(%stream, "resume of a stream the connection does not read ignored");
                continue;
            }
            resumes.push(Resume {
                base: base.to_owned(),
                stream,
                after,
                done: false,
            });
        }
        (lost, resumes)
    }

    /// The next chunk of a stream's replay (at most [`ReadLimit::default`]): a
    /// `continuity_lost` frame when the gap is no longer in the history, then the logged
    /// messages after the offset (or `skip` frames for those `tab` was excluded from). Marks
    /// the resume done when it reached the stream's end.
    pub(crate) async fn chunk(&self, resume: &mut Resume, tab: Option<&str>) -> Vec<Replayed> {
        let mut out = Vec::new();
        let stream = &resume.stream;
        let Some(replay) = self
            .read_after(&resume.base, &resume.after, ReadLimit::default())
            .await
        else {
            // Not a loss: the client asks again (on its next gap or reconnect).
            tracing::warn!(%stream, "history not readable: no replay");
            resume.done = true;
            return out;
        };
        if !replay.continuous {
            let next = replay
                .entries
                .first()
                .map_or(replay.last.saturating_add(1), |e| e.off);
            tracing::info!(%stream, client_epoch = %resume.after.epoch, client_off = resume.after.off, epoch = %replay.epoch, next, "continuity lost");
            self.metrics.continuity_lost.inc();
            out.push(Replayed::Frame(ServerFrame::ContinuityLost {
                stream: stream.clone(),
                epoch: replay.epoch.clone(),
                next,
            }));
        }
        match replay.entries.last() {
            Some(last) if last.off < replay.last => {
                resume.after = Offset {
                    epoch: replay.epoch.clone(),
                    off: last.off,
                };
            }
            _ => resume.done = true,
        }
        for entry in replay.entries {
            let offset = Offset {
                epoch: replay.epoch.clone(),
                off: entry.off,
            };
            let logged: Logged = match serde_json::from_str(&entry.payload) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(%stream, off = entry.off, error = %e, "undecodable history entry skipped");
                    out.push(Replayed::Frame(ServerFrame::Skip {
                        stream: stream.clone(),
                        epoch: offset.epoch,
                        off: offset.off,
                    }));
                    continue;
                }
            };
            if tab.is_some_and(|t| logged.excluded.iter().any(|x| x == t)) {
                out.push(Replayed::Frame(ServerFrame::Skip {
                    stream: stream.clone(),
                    epoch: offset.epoch,
                    off: offset.off,
                }));
            } else {
                self.metrics.replayed.inc();
                out.push(Replayed::Msg(SharedFrame::new(
                    &logged.app,
                    &logged.message,
                    Some((stream.as_str(), &offset)),
                )));
            }
        }
        out
    }
}

/// Whether a history call that failed with `e` may succeed when tried again: the history was
/// unreachable, or its store reported a failure without saying what kind (a history written
/// before errors had kinds keeps being retried, as it always was).
fn may_pass_later(e: &CoreError) -> bool {
    matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Component)
}
