//! Conformance suites of the stores behind a node: [`History`](thywill_core::History), [`ChannelManager`](thywill_core::ChannelManager),
//! [`SessionStore`](thywill_core::SessionStore), [`ClientTracker`](thywill_core::ClientTracker) and [`ResourceManager`](thywill_core::ResourceManager). Like the cluster's
//! ([`crate::conformance`]) and the caches' ([`crate::cache_conformance`]), each suite is a
//! function taking a constructor, so every implementation — the in-memory defaults in
//! `thywill-transport` and the Redis stores in `thywill-cluster-redis` — passes the very same
//! checks:
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use thywill_core::DynChannelManager;
//! # fn memory() -> Arc<dyn DynChannelManager> { todo!() }
//!
//! thywill_testkit::store_conformance::channels(|| async { Ok(memory()) }).await
//! # }
//! ```
//!
//! Each scenario asks for a fresh store: a shared one (Redis) gives each its own key prefix.
//! The first failure names its scenario.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use anyhow::{Context, ensure};
use thywill_core::{
    ChannelId, Client, ConnectionId, CoreError, DynChannelManager, DynClientTracker, DynHistory,
    DynResourceManager, DynSessionStore, HistoryLimits, MemberId, Offset, ReadLimit, Resource, SessionData,
    SessionId,
};

/// Reads without a chunk bound.
const ALL: ReadLimit = ReadLimit {
    max_entries: usize::MAX,
    max_bytes: usize::MAX,
};

fn at(epoch: &str, off: u64) -> Offset {
    Offset {
        epoch: epoch.to_owned(),
        off,
    }
}

fn offs(entries: &[thywill_core::Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.off).collect()
}

/// The [`History`](thywill_core::History) suite: numbering, idempotent appends, replays in bounded chunks, offsets
/// past the end and of foreign epochs, trimming by entries, concurrent appends, and client
/// message marks. `make` builds a history with the given limits.
pub async fn history<F, Fut>(make: F) -> anyhow::Result<()>
where
    F: Fn(HistoryLimits) -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<dyn DynHistory>>>,
{
    let defaults = HistoryLimits::default();
    numbering_and_replay(make(defaults).await?)
        .await
        .context("history: numbering and replay")?;
    retried_appends_keep_their_offset(make(defaults).await?)
        .await
        .context("history: a retried append keeps its offset")?;
    replays_come_in_bounded_chunks(make(defaults).await?)
        .await
        .context("history: replays come in bounded chunks")?;
    absurd_and_foreign_offsets(make(defaults).await?)
        .await
        .context("history: absurd and foreign offsets")?;
    let few = HistoryLimits {
        max_entries: 3,
        ..defaults
    };
    trimmed_entries_break_continuity(make(few).await?)
        .await
        .context("history: trimmed entries break continuity")?;
    concurrent_appends_are_numbered_without_gaps(make(defaults).await?)
        .await
        .context("history: concurrent appends")?;
    marks_only_rise(make(defaults).await?)
        .await
        .context("history: marks only rise")?;
    Ok(())
}

async fn numbering_and_replay(h: Arc<dyn DynHistory>) -> anyhow::Result<()> {
    let none = h.read_after("c:room", &at("", 0), ALL).await?;
    ensure!(
        none.entries.is_empty() && none.last == 0,
        "a stream never written: {none:?}"
    );
    let mut epoch = String::new();
    for n in 1..=5u64 {
        let o = h.append("c:room", n, format!("m{n}")).await?;
        ensure!(o.off == n, "append {n} got {o:?}");
        if n == 1 {
            epoch = o.epoch.clone();
        }
        ensure!(o.epoch == epoch, "one epoch for one log: {o:?} after {epoch}");
    }
    let r = h.read_after("c:room", &at(&epoch, 2), ALL).await?;
    ensure!(r.continuous && r.epoch == epoch && r.last == 5, "{r:?}");
    ensure!(offs(&r.entries) == [3, 4, 5], "{r:?}");
    ensure!(r.entries[0].payload == "m3", "payloads as appended: {r:?}");
    let other = h.read_after("c:other", &at("", 0), ALL).await?;
    ensure!(other.entries.is_empty(), "streams are independent: {other:?}");
    Ok(())
}

async fn retried_appends_keep_their_offset(h: Arc<dyn DynHistory>) -> anyhow::Result<()> {
    if !h.is_shared() {
        // Only a store whose appends can half-fail (its answer lost) is retried: see
        // `History::append`.
        return Ok(());
    }
    let first = h.append("s:one", 77, "a".into()).await?;
    let again = h.append("s:one", 77, "a".into()).await?;
    ensure!(first == again, "{first:?} then {again:?}");
    let next = h.append("s:one", 78, "b".into()).await?;
    ensure!(next.off == first.off + 1, "{next:?} after {first:?}");
    let r = h.read_after("s:one", &at(&first.epoch, 0), ALL).await?;
    ensure!(offs(&r.entries) == [1, 2], "logged once: {r:?}");
    Ok(())
}

async fn replays_come_in_bounded_chunks(h: Arc<dyn DynHistory>) -> anyhow::Result<()> {
    let mut epoch = String::new();
    for n in 1..=10u64 {
        epoch = h.append("c:big", n, "x".repeat(100)).await?.epoch;
    }
    let limit = ReadLimit {
        max_entries: 4,
        max_bytes: usize::MAX,
    };
    let mut after = 0;
    let mut chunks = 0;
    let mut seen = Vec::new();
    while after < 10 {
        let r = h.read_after("c:big", &at(&epoch, after), limit).await?;
        ensure!(
            r.continuous && !r.entries.is_empty() && r.entries.len() <= 4,
            "{r:?}"
        );
        seen.extend(offs(&r.entries));
        after = r.entries.last().map_or(after, |e| e.off);
        chunks += 1;
        ensure!(chunks <= 10, "reading on never reaches the end");
    }
    ensure!(
        seen == (1..=10).collect::<Vec<_>>() && chunks == 3,
        "{seen:?} in {chunks} chunks"
    );
    let bytes = ReadLimit {
        max_entries: usize::MAX,
        max_bytes: 250,
    };
    let r = h.read_after("c:big", &at(&epoch, 0), bytes).await?;
    ensure!(r.entries.len() == 2, "250 bytes hold two entries of 100: {r:?}");
    let tiny = ReadLimit {
        max_entries: usize::MAX,
        max_bytes: 1,
    };
    let r = h.read_after("c:big", &at(&epoch, 0), tiny).await?;
    ensure!(r.entries.len() == 1, "at least one entry per read: {r:?}");
    Ok(())
}

async fn absurd_and_foreign_offsets(h: Arc<dyn DynHistory>) -> anyhow::Result<()> {
    let o = h.append("c:x", 1, "one".into()).await?;
    h.append("c:x", 2, "two".into()).await?;
    let past = h.read_after("c:x", &at(&o.epoch, u64::MAX), ALL).await?;
    ensure!(
        past.continuous && past.entries.is_empty(),
        "beyond the end: {past:?}"
    );
    let foreign = h.read_after("c:x", &at("not-an-epoch", 1), ALL).await?;
    ensure!(
        !foreign.continuous,
        "a foreign epoch is not continuous: {foreign:?}"
    );
    ensure!(
        offs(&foreign.entries) == [1, 2],
        "the oldest entries kept: {foreign:?}"
    );
    let foreign_max = h.read_after("c:x", &at("", u64::MAX), ALL).await?;
    ensure!(!foreign_max.continuous, "{foreign_max:?}");
    ensure!(h.received_mark("tab-never-seen").await? == 0);
    h.set_received_mark("tab-max", u64::MAX).await?;
    ensure!(h.received_mark("tab-max").await? == u64::MAX);
    Ok(())
}

async fn trimmed_entries_break_continuity(h: Arc<dyn DynHistory>) -> anyhow::Result<()> {
    let mut epoch = String::new();
    for n in 1..=6u64 {
        epoch = h.append("c:small", n, format!("m{n}")).await?.epoch;
    }
    let r = h.read_after("c:small", &at(&epoch, 1), ALL).await?;
    ensure!(!r.continuous, "entries 2 and 3 were trimmed: {r:?}");
    ensure!(
        offs(&r.entries) == [4, 5, 6] && r.last == 6,
        "the three kept: {r:?}"
    );
    let r = h.read_after("c:small", &at(&epoch, 3), ALL).await?;
    ensure!(
        r.continuous && offs(&r.entries) == [4, 5, 6],
        "nothing lost after 3: {r:?}"
    );
    Ok(())
}

async fn concurrent_appends_are_numbered_without_gaps(h: Arc<dyn DynHistory>) -> anyhow::Result<()> {
    let tasks: Vec<_> = (1..=64u64)
        .map(|n| {
            let h = h.clone();
            tokio::spawn(async move { h.append("c:busy", n, format!("m{n}")).await })
        })
        .collect();
    let mut numbers = BTreeSet::new();
    for t in tasks {
        numbers.insert(t.await??.off);
    }
    ensure!(numbers == (1..=64).collect(), "{numbers:?}");
    Ok(())
}

async fn marks_only_rise(h: Arc<dyn DynHistory>) -> anyhow::Result<()> {
    h.set_received_mark("tab-a", 5).await?;
    h.set_received_mark("tab-a", 3).await?;
    ensure!(h.received_mark("tab-a").await? == 5, "a mark never goes down");
    h.set_received_mark("tab-a", 9).await?;
    ensure!(h.received_mark("tab-a").await? == 9);
    ensure!(h.received_mark("tab-b").await? == 0, "tabs are independent");
    Ok(())
}

fn ids<T: From<String>>(names: &[&str]) -> Vec<T> {
    names.iter().map(|n| T::from((*n).to_owned())).collect()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// The [`ChannelManager`](thywill_core::ChannelManager) suite: adding and removing report what changed, both directions of
/// the membership agree, clearing, and channels are independent.
pub async fn channels<F, Fut>(make: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<dyn DynChannelManager>>>,
{
    let m = make().await?;
    let room = ChannelId::from("room");
    let hall = ChannelId::from("hall");
    ensure!(
        m.sessions(&room).await?.is_empty(),
        "a channel never used is empty"
    );
    let added = m.add_sessions(&room, &ids(&["s1", "s2"])).await?;
    ensure!(
        sorted(added.clone()) == ids::<SessionId>(&["s1", "s2"]),
        "added {added:?}"
    );
    let again = m.add_sessions(&room, &ids(&["s2", "s3"])).await?;
    ensure!(again == ids::<SessionId>(&["s3"]), "only s3 is new: {again:?}");
    m.add_sessions(&hall, &ids(&["s1"])).await?;
    let in_room = sorted(m.sessions(&room).await?);
    ensure!(in_room == ids::<SessionId>(&["s1", "s2", "s3"]), "{in_room:?}");
    let of_s1 = sorted(m.channels_of(&"s1".into()).await?);
    ensure!(of_s1 == vec![hall.clone(), room.clone()], "{of_s1:?}");
    let removed = m.remove_sessions(&room, &ids(&["s1", "s9"])).await?;
    ensure!(
        removed == ids::<SessionId>(&["s1"]),
        "s9 was never in it: {removed:?}"
    );
    ensure!(
        m.channels_of(&"s1".into()).await? == vec![hall.clone()],
        "s1 still in the hall"
    );
    let cleared = sorted(m.clear(&room).await?);
    ensure!(cleared == ids::<SessionId>(&["s2", "s3"]), "{cleared:?}");
    ensure!(m.sessions(&room).await?.is_empty(), "cleared");
    ensure!(
        m.channels_of(&"s2".into()).await?.is_empty(),
        "s2 left with the clearing"
    );
    ensure!(
        m.sessions(&hall).await? == ids::<SessionId>(&["s1"]),
        "the hall is untouched"
    );
    ensure!(
        m.clear(&room).await?.is_empty(),
        "clearing an empty channel removes nobody"
    );
    Ok(())
}

fn data(pairs: &[(&str, &str)]) -> SessionData {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
        .collect()
}

/// The [`SessionStore`](thywill_core::SessionStore) suite: sessions round trip, are replaced and removed; with
/// `app_data`, applications' data beside a session: isolated per application, kept when the
/// session is stored again, gone with the session, refused for a session that does not exist.
pub async fn sessions<F, Fut>(make: F, app_data: bool) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<dyn DynSessionStore>>>,
{
    let s = make().await?;
    let id = SessionId::from("session-1");
    ensure!(s.load(&id).await?.is_none(), "unknown sessions load as none");
    s.store(&id, data(&[("user", "ann")])).await?;
    ensure!(s.load(&id).await? == Some(data(&[("user", "ann")])), "round trip");
    s.store(&id, data(&[("user", "bob")])).await?;
    ensure!(s.load(&id).await? == Some(data(&[("user", "bob")])), "replaced");
    s.remove(&id).await?;
    ensure!(s.load(&id).await?.is_none(), "removed");
    s.remove(&id).await.context("removing twice is harmless")?;
    if !app_data {
        return Ok(());
    }
    let (a, b) = (
        thywill_core::ApplicationId::from("a"),
        thywill_core::ApplicationId::from("b"),
    );
    match s.store_app_data(&id, &a, Some("1".into())).await {
        Err(CoreError::NotFound(_)) => {}
        other => anyhow::bail!("app data for a missing session: {other:?}"),
    }
    s.store(&id, SessionData::new()).await?;
    s.store_app_data(&id, &a, Some(r#"{"n":1}"#.into())).await?;
    s.store_app_data(&id, &b, Some(r#"{"n":2}"#.into())).await?;
    ensure!(s.load_app_data(&id, &a).await?.as_deref() == Some(r#"{"n":1}"#));
    ensure!(
        s.load_app_data(&id, &b).await?.as_deref() == Some(r#"{"n":2}"#),
        "isolated"
    );
    s.store(&id, data(&[("user", "cy")])).await?;
    ensure!(
        s.load_app_data(&id, &a).await?.is_some(),
        "storing the session keeps the applications' data"
    );
    s.store_app_data(&id, &a, None).await?;
    ensure!(s.load_app_data(&id, &a).await?.is_none(), "deleted");
    ensure!(
        s.load_app_data(&id, &b).await?.is_some(),
        "the other application's stays"
    );
    s.remove(&id).await?;
    ensure!(s.load_app_data(&id, &b).await?.is_none(), "gone with the session");
    Ok(())
}

fn client(connection: &str, session: &str, member: &str) -> Client {
    Client {
        connection: ConnectionId::from(connection),
        session: SessionId::from(session),
        member: MemberId::from(member),
        identity: None,
    }
}

/// The [`ClientTracker`](thywill_core::ClientTracker) suite, for a tracker told of clients of several members: lookups by
/// connection and by session, the table by member, disconnections, and purging a member.
pub async fn tracker<F, Fut>(make: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<dyn DynClientTracker>>>,
{
    let t = make().await?;
    let clients = [
        client("c1", "s1", "alpha"),
        client("c2", "s1", "beta"),
        client("c3", "s2", "beta"),
    ];
    for c in &clients {
        t.connected(c).await?;
    }
    ensure!(t.member_of(&"c2".into()).await? == Some(MemberId::from("beta")));
    ensure!(t.member_of(&"nobody".into()).await?.is_none());
    let of_s1 = sorted(t.connections_of_session(&"s1".into()).await?);
    ensure!(
        of_s1 == vec![("c1".into(), "alpha".into()), ("c2".into(), "beta".into())],
        "{of_s1:?}"
    );
    let table = t.snapshot().await?;
    ensure!(
        table.get(&MemberId::from("beta")).map(|m| m.connections.len()) == Some(2),
        "{table:?}"
    );
    t.disconnected(&clients[0]).await?;
    ensure!(t.member_of(&"c1".into()).await?.is_none(), "disconnected");
    t.disconnected(&clients[0]).await.context("twice is harmless")?;
    let purged = t.purge_member(&"beta".into()).await?;
    ensure!(
        purged.connections.len() == 2,
        "beta's two connections: {purged:?}"
    );
    ensure!(
        sorted(purged.sessions()) == ids::<SessionId>(&["s1", "s2"]),
        "{purged:?}"
    );
    ensure!(t.member_of(&"c3".into()).await?.is_none(), "purged");
    ensure!(t.connections_of_session(&"s1".into()).await?.is_empty());
    Ok(())
}

/// The [`ResourceManager`](thywill_core::ResourceManager) suite: resources round trip by path (bodies, kinds, attributes),
/// are replaced and removed, and the bootstrap set is the bootstrap resources by weight.
pub async fn resources<F, Fut>(make: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<dyn DynResourceManager>>>,
{
    let r = make().await?;
    ensure!(
        r.load("/app/none.js").await?.is_none(),
        "unknown paths load as none"
    );
    let script = Resource::new("/app/a.js", "let a = 1;")
        .with_kind(thywill_core::ResourceKind::Javascript)
        .with_weight(5)
        .with_attribute("defer", "true")
        .bootstrap();
    r.store(script.clone()).await?;
    let loaded = r.load("/app/a.js").await?.context("stored")?;
    ensure!(
        loaded.body == script.body && loaded.kind == script.kind,
        "{loaded:?}"
    );
    ensure!(
        loaded.attribute("defer") == Some("true") && loaded.weight == 5,
        "{loaded:?}"
    );
    r.store(Resource::new("/app/b.css", "b{}").with_weight(-1).bootstrap())
        .await?;
    r.store(Resource::new("/app/late.js", "later")).await?;
    let boot: Vec<String> = r.bootstrap().await?.into_iter().map(|x| x.client_path).collect();
    ensure!(
        boot == ["/app/b.css", "/app/a.js"],
        "bootstrap resources by weight: {boot:?}"
    );
    r.store(Resource::new("/app/a.js", "let a = 2;")).await?;
    let replaced = r.load("/app/a.js").await?.context("replaced")?;
    ensure!(&*replaced.body == b"let a = 2;", "{replaced:?}");
    r.remove("/app/a.js").await?;
    ensure!(r.load("/app/a.js").await?.is_none(), "removed");
    let big = vec![b'x'; 256 * 1024];
    r.store(Resource::new("/app/big.bin", big.clone())).await?;
    let loaded = r.load("/app/big.bin").await?.context("a large body")?;
    ensure!(*loaded.body == *big, "a large body round trips");
    Ok(())
}
