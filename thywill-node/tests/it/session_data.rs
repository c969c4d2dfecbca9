//! Session data of applications: typed, in the session store, shared by the members, kept
//! apart per application, bounded in size; the signed-cookie sessions keep working.

use std::sync::Arc;

use serde_json::{Value, json};
use thywill_core::MemorySessionStore;
use thywill_core::{
    ApplicationId, CoreError, CoreResult, MAX_APP_SESSION_DATA, SessionData, SessionId, SessionStore,
};
use thywill_transport::{SessionConfig, Sessions, TransportConfig};

use crate::cluster::{Cluster, cmd};
use crate::support::Fixture;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_keeps_data_in_the_session_on_every_member() -> anyhow::Result<()> {
    let c = Cluster::start(&["alpha", "beta"]).await?;
    let (s, cookie) = c.session().await?;
    let (other, other_cookie) = c.session().await?;
    let mut on_alpha = c.connect(0, &cookie).await?;

    assert_eq!(
        cmd(&mut on_alpha, json!({"op": "data_get"})).await?["data"],
        Value::Null
    );
    let value = json!({"name": "ann", "count": 3, "tags": [], "deep": {"x": 1.5}});
    cmd(&mut on_alpha, json!({"op": "data_set", "value": value})).await?;
    on_alpha.close().await;

    // The user comes back on the other member: the data is there.
    let mut on_beta = c.connect(1, &cookie).await?;
    assert_eq!(cmd(&mut on_beta, json!({"op": "data_get"})).await?["data"], value);
    // Another session has its own.
    let mut stranger = c.connect(0, &other_cookie).await?;
    assert_eq!(
        cmd(&mut stranger, json!({"op": "data_get"})).await?["data"],
        Value::Null
    );

    // Another application's data in the same session is its own: neither sees nor
    // overwrites the other's.
    let notes = c.members[1]
        .node
        .context(&ApplicationId::from("notes"))
        .ok_or_else(|| anyhow::anyhow!("no notes application"))?;
    assert_eq!(notes.session_data::<Value>(&s).await?, None);
    notes.set_session_data(&s, "a note").await?;
    assert_eq!(notes.session_data::<String>(&s).await?.as_deref(), Some("a note"));
    assert_eq!(cmd(&mut on_beta, json!({"op": "data_get"})).await?["data"], value);
    cmd(&mut on_beta, json!({"op": "data_set", "value": "rooms' own"})).await?;
    assert_eq!(notes.session_data::<String>(&s).await?.as_deref(), Some("a note"));
    // A type the data does not decode as is an error, not a panic nor a silent `None`.
    assert!(matches!(
        notes.session_data::<u32>(&s).await,
        Err(CoreError::Codec(_))
    ));

    // Removed: gone for this application only.
    cmd(&mut on_beta, json!({"op": "data_remove"})).await?;
    assert_eq!(
        cmd(&mut on_beta, json!({"op": "data_get"})).await?["data"],
        Value::Null
    );
    assert_eq!(notes.session_data::<String>(&s).await?.as_deref(), Some("a note"));
    assert_eq!(notes.session_data::<String>(&other).await?, None);

    // The signed-cookie sessions are untouched: the session's own data is as created, and a
    // new tab is accepted by the handshake.
    assert_eq!(c.sessions.store().load(&s).await?, Some(Default::default()));
    let mut again = c.connect(0, &cookie).await?;
    assert_eq!(
        cmd(&mut again, json!({"op": "data_get"})).await?["data"],
        Value::Null
    );
    assert_eq!(notes.session_data::<String>(&s).await?.as_deref(), Some("a note"));

    // A session that does not exist (any more) takes no data.
    let gone = SessionId::from("never-issued");
    assert!(matches!(
        notes.set_session_data(&gone, &1).await,
        Err(CoreError::NotFound(_))
    ));
    assert_eq!(notes.session_data::<u32>(&gone).await?, None);
    c.sessions.store().remove(&s).await?;
    assert_eq!(notes.session_data::<String>(&s).await?, None);
    Ok(())
}

/// A memory store that lets other tasks run between reading an application's data and the
/// caller's next step: every concurrent read-modify-write interleaves with the others.
struct Yielding(MemorySessionStore);

impl SessionStore for Yielding {
    fn is_shared(&self) -> bool {
        self.0.is_shared()
    }
    async fn load(&self, id: &SessionId) -> CoreResult<Option<SessionData>> {
        self.0.load(id).await
    }
    async fn store(&self, id: &SessionId, data: SessionData) -> CoreResult<()> {
        self.0.store(id, data).await
    }
    async fn remove(&self, id: &SessionId) -> CoreResult<()> {
        self.0.remove(id).await
    }
    async fn load_app_data(&self, id: &SessionId, app: &ApplicationId) -> CoreResult<Option<String>> {
        let loaded = self.0.load_app_data(id, app).await;
        tokio::task::yield_now().await;
        loaded
    }
    async fn store_app_data(
        &self,
        id: &SessionId,
        app: &ApplicationId,
        data: Option<String>,
    ) -> CoreResult<()> {
        self.0.store_app_data(id, app, data).await
    }
    async fn replace_app_data(
        &self,
        id: &SessionId,
        app: &ApplicationId,
        current: Option<String>,
        data: Option<String>,
    ) -> CoreResult<bool> {
        self.0.replace_app_data(id, app, current, data).await
    }
}

#[tokio::test]
async fn concurrent_updates_all_count() -> anyhow::Result<()> {
    let sessions = Sessions::new(
        SessionConfig::new([5u8; 32])?,
        Arc::new(Yielding(MemorySessionStore::new())),
    );
    let fx = Fixture::start_with(
        TransportConfig::default().with_base_path("/t")?,
        Some(sessions.clone()),
    )
    .await?;
    let s = sessions.create().await?;
    let ctx = fx
        .node
        .context(&ApplicationId::from("echo"))
        .ok_or_else(|| anyhow::anyhow!("no echo application"))?;
    // Ten updates at once, each reading before any writes: only compare-and-set keeps them
    // all.
    let mut updates = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (ctx, s) = (ctx.clone(), s.clone());
        updates.spawn(async move {
            ctx.update_session_data(&s, |n: Option<u64>| Some(n.unwrap_or(0) + 1))
                .await
        });
    }
    let mut seen = Vec::new();
    while let Some(done) = updates.join_next().await {
        seen.push(done??.unwrap_or_default());
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=10).collect::<Vec<u64>>(),
        "each update saw its own count"
    );
    assert_eq!(ctx.session_data::<u64>(&s).await?, Some(10));

    // Returning `None` deletes; an update past the limit is refused and changes nothing.
    assert_eq!(ctx.update_session_data(&s, |_: Option<u64>| None).await?, None);
    assert_eq!(ctx.session_data::<u64>(&s).await?, None);
    let big = "x".repeat(MAX_APP_SESSION_DATA);
    assert!(matches!(
        ctx.update_session_data(&s, |_: Option<String>| Some(big.clone()))
            .await,
        Err(CoreError::Invalid(_))
    ));
    assert_eq!(ctx.session_data::<String>(&s).await?, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_data_is_bounded() -> anyhow::Result<()> {
    let c = Cluster::start(&["alpha"]).await?;
    let (_, cookie) = c.session().await?;
    let mut tab = c.connect(0, &cookie).await?;
    // A JSON string is its characters and two quotes: this one is exactly the limit.
    let largest = "x".repeat(MAX_APP_SESSION_DATA - 2);
    cmd(&mut tab, json!({"op": "data_set", "value": largest})).await?;
    let over = format!("{largest}y");
    let refused = cmd(&mut tab, json!({"op": "data_set", "value": over})).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains(&format!(
            "{} bytes, above the limit of {MAX_APP_SESSION_DATA}",
            MAX_APP_SESSION_DATA + 1
        )),
        "{message}"
    );
    // What was stored stays.
    assert_eq!(
        cmd(&mut tab, json!({"op": "data_get"})).await?["data"],
        json!(largest)
    );
    Ok(())
}

#[tokio::test]
async fn without_sessions_there_is_no_session_data() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    let ctx = fx
        .node
        .context(&ApplicationId::from("echo"))
        .ok_or_else(|| anyhow::anyhow!("no echo application"))?;
    let s = SessionId::from("a-connection");
    assert!(matches!(
        ctx.session_data::<Value>(&s).await,
        Err(CoreError::Unavailable(_))
    ));
    assert!(matches!(
        ctx.set_session_data(&s, &1).await,
        Err(CoreError::Unavailable(_))
    ));
    Ok(())
}
