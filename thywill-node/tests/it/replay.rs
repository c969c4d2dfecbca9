//! Recovery after a reconnect (docs/PROTOCOL.md): stream offsets, replay on `hello` and
//! `resume`, `continuity_lost`, `skip` frames for excluded senders, and client message ids
//! acknowledged and processed once per tab. Frames are checked raw, as the server sends them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use thywill_core::LocalHistory;
use thywill_core::protocol::{ClientFrame, ServerFrame};
use thywill_core::{CoreResult, History, HistoryLimits, Metadata, Offset, ReadLimit, Replay};

use crate::cluster::{Cluster, Tab, cmd};

/// One in-memory history shared by every member, as the Redis one is.
pub(crate) struct SharedMemory(pub(crate) Arc<LocalHistory>);

impl History for SharedMemory {
    fn is_shared(&self) -> bool {
        true
    }
    async fn append(&self, stream: &str, key: u64, payload: String) -> CoreResult<Offset> {
        self.0.append(stream, key, payload).await
    }
    async fn read_after(&self, stream: &str, after: &Offset, limit: ReadLimit) -> CoreResult<Replay> {
        self.0.read_after(stream, after, limit).await
    }
    async fn received_mark(&self, tab: &str) -> CoreResult<u64> {
        self.0.received_mark(tab).await
    }
    async fn set_received_mark(&self, tab: &str, id: u64) -> CoreResult<()> {
        self.0.set_received_mark(tab, id).await
    }
}

async fn shared_cluster(ids: &[&str]) -> anyhow::Result<Cluster> {
    let shared = Arc::new(LocalHistory::default());
    Cluster::start_with_history(
        ids,
        Arc::new(move || Arc::new(SharedMemory(shared.clone())) as Arc<dyn thywill_core::DynHistory>),
    )
    .await
}

/// A stream frame as the client sees it.
#[derive(Debug, PartialEq)]
enum Got {
    Msg { stream: String, off: u64, said: Value },
    Skip { stream: String, off: u64 },
    Lost { stream: String, next: u64 },
}

async fn hello(t: &mut Tab, tab: &str, streams: &[(&str, &Offset)]) -> anyhow::Result<()> {
    let streams: BTreeMap<String, Offset> = streams
        .iter()
        .map(|(s, o)| ((*s).to_owned(), (*o).clone()))
        .collect();
    let f = ClientFrame::Hello {
        v: 1,
        last_seq: None,
        tab: Some(tab.to_owned()),
        streams,
    };
    t.ws.send_text(f.encode()).await?;
    Ok(())
}

/// The next `n` stream frames (other frames are skipped), checking that every message
/// carries an epoch equal to `epoch` when given.
async fn stream_frames(t: &mut Tab, n: usize, epoch: Option<&str>) -> anyhow::Result<Vec<Got>> {
    let mut out = Vec::new();
    while out.len() < n {
        match t.ws.recv().await? {
            ServerFrame::Msg {
                stream: Some(stream),
                epoch: e,
                off: Some(off),
                data,
                ..
            } => {
                if let Some(want) = epoch {
                    anyhow::ensure!(e.as_deref() == Some(want), "epoch {e:?}, want {want}");
                }
                out.push(Got::Msg {
                    stream,
                    off,
                    said: data["said"].clone(),
                });
            }
            ServerFrame::Skip { stream, off, .. } => out.push(Got::Skip { stream, off }),
            ServerFrame::ContinuityLost { stream, next, .. } => out.push(Got::Lost { stream, next }),
            _ => {}
        }
    }
    Ok(out)
}

/// The epoch and offset of the next stream message.
async fn position(t: &mut Tab) -> anyhow::Result<Offset> {
    loop {
        if let ServerFrame::Msg {
            epoch: Some(epoch),
            off: Some(off),
            ..
        } = t.ws.recv().await?
        {
            return Ok(Offset { epoch, off });
        }
    }
}

fn msg(stream: &str, off: u64, said: &str) -> Got {
    Got::Msg {
        stream: stream.into(),
        off,
        said: json!(said),
    }
}

async fn say(t: &mut Tab, text: &str) -> anyhow::Result<()> {
    cmd(t, json!({"op": "say", "channel": "room", "text": text})).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_back_on_the_same_member_gets_what_it_missed_in_order() -> anyhow::Result<()> {
    let c = Cluster::start(&["alpha"]).await?;
    let (_, cookie) = c.session().await?;
    let (_, speaker_cookie) = c.session().await?;
    let mut speaker = c.connect(0, &speaker_cookie).await?;
    let mut tab = c.connect(0, &cookie).await?;
    hello(&mut tab, "tab1", &[]).await?;
    cmd(&mut tab, json!({"op": "add", "channel": "room"})).await?;
    say(&mut speaker, "one").await?;
    let first = position(&mut tab).await?;
    assert_eq!(first.off, 1);
    say(&mut speaker, "two").await?;
    let seen = position(&mut tab).await?;
    assert_eq!(seen.off, 2);
    tab.close().await;

    for text in ["three", "four", "five"] {
        say(&mut speaker, text).await?;
    }
    let mut back = c.connect(0, &cookie).await?;
    hello(&mut back, "tab1", &[("c:room@alpha", &seen)]).await?;
    let s = "c:room@alpha";
    assert_eq!(
        stream_frames(&mut back, 3, Some(&seen.epoch)).await?,
        [msg(s, 3, "three"), msg(s, 4, "four"), msg(s, 5, "five")]
    );
    say(&mut speaker, "six").await?;
    assert_eq!(stream_frames(&mut back, 1, None).await?, [msg(s, 6, "six")]);

    // Asking again (a gap the client thinks it saw) replays from there; duplicates are the
    // client's to drop.
    let f = ClientFrame::Resume {
        streams: [(
            s.to_owned(),
            Offset {
                off: 4,
                ..seen.clone()
            },
        )]
        .into(),
    };
    back.ws.send_text(f.encode()).await?;
    assert_eq!(
        stream_frames(&mut back, 2, None).await?,
        [msg(s, 5, "five"), msg(s, 6, "six")]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_beyond_the_history_or_from_another_epoch_is_reported_as_lost() -> anyhow::Result<()> {
    let limits = HistoryLimits {
        max_entries: 3,
        max_age: Duration::from_secs(60),
        ..HistoryLimits::default()
    };
    let c = Cluster::start_with_history(
        &["alpha"],
        Arc::new(move || Arc::new(LocalHistory::new(limits)) as Arc<dyn thywill_core::DynHistory>),
    )
    .await?;
    let (_, cookie) = c.session().await?;
    let (_, speaker_cookie) = c.session().await?;
    let mut speaker = c.connect(0, &speaker_cookie).await?;
    let mut tab = c.connect(0, &cookie).await?;
    cmd(&mut tab, json!({"op": "add", "channel": "room"})).await?;
    say(&mut speaker, "m1").await?;
    let seen = position(&mut tab).await?;
    tab.close().await;
    for i in 2..=7 {
        say(&mut speaker, &format!("m{i}")).await?;
    }

    let s = "c:room@alpha";
    let mut back = c.connect(0, &cookie).await?;
    hello(&mut back, "t", &[(s, &seen)]).await?;
    assert_eq!(
        stream_frames(&mut back, 4, None).await?,
        [
            Got::Lost {
                stream: s.into(),
                next: 5
            },
            msg(s, 5, "m5"),
            msg(s, 6, "m6"),
            msg(s, 7, "m7")
        ]
    );

    // An epoch the member does not have (its history was lost, say by a restart).
    let stale = Offset {
        epoch: "0123456789abcdef".into(),
        off: 6,
    };
    let mut again = c.connect(0, &cookie).await?;
    hello(&mut again, "t", &[(s, &stale)]).await?;
    let frames = stream_frames(&mut again, 4, None).await?;
    assert_eq!(
        frames[0],
        Got::Lost {
            stream: s.into(),
            next: 5
        }
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_shared_history_a_client_recovers_on_another_member() -> anyhow::Result<()> {
    let c = shared_cluster(&["alpha", "beta"]).await?;
    let (_, cookie) = c.session().await?;
    let (_, speaker_cookie) = c.session().await?;
    let mut speaker = c.connect(1, &speaker_cookie).await?;
    let mut tab = c.connect(0, &cookie).await?;
    cmd(&mut tab, json!({"op": "add", "channel": "room"})).await?;
    say(&mut speaker, "before").await?;
    let seen = position(&mut tab).await?;
    // Alpha crashes: its client comes back on beta.
    c.kill(0);
    for text in ["while", "away"] {
        say(&mut speaker, text).await?;
    }
    let mut back = c.connect(1, &cookie).await?;
    hello(&mut back, "t", &[("c:room", &seen)]).await?;
    assert_eq!(
        stream_frames(&mut back, 2, Some(&seen.epoch)).await?,
        [msg("c:room", 2, "while"), msg("c:room", 3, "away")]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_members_own_stream_cannot_be_resumed_and_says_so() -> anyhow::Result<()> {
    let c = Cluster::start(&["alpha", "beta"]).await?;
    let (_, cookie) = c.session().await?;
    let (_, speaker_cookie) = c.session().await?;
    let mut speaker = c.connect(1, &speaker_cookie).await?;
    let mut tab = c.connect(0, &cookie).await?;
    cmd(&mut tab, json!({"op": "add", "channel": "room"})).await?;
    say(&mut speaker, "hi").await?;
    // Numbered by alpha, the member that delivered it.
    let seen = position(&mut tab).await?;
    let mut other = c.connect(1, &cookie).await?;
    hello(&mut other, "t", &[("c:room@alpha", &seen)]).await?;
    assert_eq!(
        stream_frames(&mut other, 1, None).await?,
        [Got::Lost {
            stream: "c:room@alpha".into(),
            next: 1
        }]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excluded_sender_gets_skips_live_and_in_replays() -> anyhow::Result<()> {
    let c = shared_cluster(&["alpha"]).await?;
    let (_, cookie) = c.session().await?;
    let (_, other_cookie) = c.session().await?;
    let mut me = c.connect(0, &cookie).await?;
    hello(&mut me, "me", &[]).await?;
    let mut other = c.connect(0, &other_cookie).await?;
    cmd(&mut me, json!({"op": "add", "channel": "room"})).await?;
    cmd(&mut other, json!({"op": "add", "channel": "room"})).await?;
    // Sent without waiting for the answers: the frames are read raw below.
    let room =
        |text: &str, others: bool| json!({"op": "say", "channel": "room", "text": text, "others": others});
    other.ws.send("rooms", room("theirs", false)).await?;
    let first = position(&mut me).await?;
    me.ws.send("rooms", room("mine", true)).await?;
    assert_eq!(
        stream_frames(&mut me, 1, None).await?,
        [Got::Skip {
            stream: "c:room".into(),
            off: 2
        }]
    );
    // In offset order once sorted: `me` saw "theirs" before sending "mine", but `other` may
    // not have yet; two sends numbered 1 and 2 by the shared history are then pushed by two
    // tasks, in either order (the client holds a message until the gap before it fills).
    let mut theirs = stream_frames(&mut other, 2, None).await?;
    theirs.sort_by_key(|g| match g {
        Got::Msg { off, .. } | Got::Skip { off, .. } => *off,
        Got::Lost { next, .. } => *next,
    });
    assert_eq!(theirs, [msg("c:room", 1, "theirs"), msg("c:room", 2, "mine")]);

    // Back from before both: the replay skips what the tab was excluded from.
    me.close().await;
    let mut back = c.connect(0, &cookie).await?;
    hello(&mut back, "me", &[("c:room", &Offset { off: 0, ..first })]).await?;
    assert_eq!(
        stream_frames(&mut back, 2, None).await?,
        [
            msg("c:room", 1, "theirs"),
            Got::Skip {
                stream: "c:room".into(),
                off: 2
            }
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_connection_does_not_read_is_not_replayed() -> anyhow::Result<()> {
    let c = shared_cluster(&["alpha"]).await?;
    let (_, cookie) = c.session().await?;
    let (_, speaker_cookie) = c.session().await?;
    let mut speaker = c.connect(0, &speaker_cookie).await?;
    cmd(&mut speaker, json!({"op": "add", "channel": "secret"})).await?;
    speaker
        .ws
        .send("rooms", json!({"op": "say", "channel": "secret", "text": "x"}))
        .await?;
    let seen = position(&mut speaker).await?;
    let mut snoop = c.connect(0, &cookie).await?;
    hello(&mut snoop, "snoop", &[("c:secret", &Offset { off: 0, ..seen })]).await?;
    // A command round trip after the hello: frames are handled in order, so a replay would
    // have come first.
    snoop.ws.send("rooms", json!({"op": "channels"})).await?;
    loop {
        match snoop.ws.recv().await? {
            ServerFrame::Msg { stream: Some(s), .. } => anyhow::bail!("replayed {s} to a stranger"),
            ServerFrame::Msg { data, .. } if data["done"] == "channels" => break,
            _ => {}
        }
    }
    Ok(())
}

/// A `msg` frame of the rooms application with a client id.
fn with_id(id: u64, op: &str) -> String {
    ClientFrame::Msg {
        app: "rooms".into(),
        data: json!({"op": op}),
        meta: Metadata::new(),
        id: Some(id),
    }
    .encode()
}

/// The next rooms answer (its op) and acknowledgement, in arrival order.
async fn answers_and_acks(t: &mut Tab, n: usize) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    while out.len() < n {
        match t.ws.recv().await? {
            ServerFrame::Msg { data, .. } => {
                out.push(format!("answer {}", data["done"].as_str().unwrap_or("?")))
            }
            ServerFrame::Ack { id } => out.push(format!("ack {id}")),
            _ => {}
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_client_messages_are_acknowledged_and_processed_once_on_any_member() -> anyhow::Result<()> {
    let c = shared_cluster(&["alpha", "beta"]).await?;
    let (_, cookie) = c.session().await?;
    let mut tab = c.connect(0, &cookie).await?;
    hello(&mut tab, "tab9", &[]).await?;
    tab.ws.send_text(with_id(1, "first")).await?;
    tab.ws.send_text(with_id(2, "second")).await?;
    // Acknowledgements are coalesced (usually one covers both): read up to "ack 2".
    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some("ack 2") {
        got.extend(answers_and_acks(&mut tab, 1).await?);
    }
    got.retain(|g| g.starts_with("answer"));
    assert_eq!(got, ["answer first", "answer second"]);
    // A duplicate on the same connection is dropped, and acknowledged again.
    tab.ws.send_text(with_id(2, "second")).await?;
    assert_eq!(answers_and_acks(&mut tab, 1).await?, ["ack 2"]);
    tab.close().await;

    // The tab resends what it is unsure of, on the other member: only the new one runs.
    let mut back = c.connect(1, &cookie).await?;
    hello(&mut back, "tab9", &[]).await?;
    back.ws.send_text(with_id(2, "second")).await?;
    back.ws.send_text(with_id(3, "third")).await?;
    assert_eq!(answers_and_acks(&mut back, 2).await?, ["answer third", "ack 3"]);
    Ok(())
}
