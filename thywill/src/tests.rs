//! What `Builder::build` refuses: parts of a backend that cannot work together on several
//! members, each refusal saying what to add, and the same node built once it is added.

use std::sync::Arc;

use thywill_core::{
    ClusterEvents, ClusterTask, CoreResult, MemberStatus, Offset, ReadLimit, Replay, SessionData,
};

use super::*;

const SECRET: &str = "a test secret of at least thirty-two bytes";

/// Two members, `alpha` (local) and `beta`, that never talk: enough to be built and started.
/// Keeps the node's event handler, and reports the tasks it is given to send.
#[derive(Default)]
struct Pair {
    events: Arc<std::sync::Mutex<Option<Arc<dyn ClusterEvents>>>>,
    sent: Option<tokio::sync::mpsc::Sender<(MemberId, String)>>,
}

impl Pair {
    fn sent(&self, to: &MemberId, task: &ClusterTask) {
        if let Some(tx) = &self.sent {
            let _ = tx.try_send((to.clone(), task.name.clone()));
        }
    }
}

impl Cluster for Pair {
    fn local_member(&self) -> &MemberId {
        static ALPHA: std::sync::OnceLock<MemberId> = std::sync::OnceLock::new();
        ALPHA.get_or_init(|| MemberId::from("alpha"))
    }
    fn members(&self) -> Vec<MemberId> {
        vec!["alpha".into(), "beta".into()]
    }
    fn status(&self, member: &MemberId) -> MemberStatus {
        if member.as_str() == "alpha" {
            MemberStatus::Up
        } else {
            MemberStatus::Unknown
        }
    }
    async fn start(&self, events: Arc<dyn ClusterEvents>) -> CoreResult<()> {
        *self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(events);
        Ok(())
    }
    async fn send_to(&self, to: &MemberId, task: ClusterTask) -> CoreResult<()> {
        self.sent(to, &task);
        Ok(())
    }
    async fn send_to_others(&self, task: ClusterTask) -> CoreResult<()> {
        self.sent(&"beta".into(), &task);
        Ok(())
    }
    async fn send_to_all(&self, _: ClusterTask) -> CoreResult<()> {
        Ok(())
    }
}

fn pair() -> BackendParts {
    BackendParts::new("pair", Pair::default())
}

/// A store that says it is shared (memory underneath: one process is enough here).
struct Shared<T>(T);

impl SessionStore for Shared<MemorySessionStore> {
    fn is_shared(&self) -> bool {
        true
    }
    async fn load(&self, id: &SessionId) -> CoreResult<Option<SessionData>> {
        SessionStore::load(&self.0, id).await
    }
    async fn store(&self, id: &SessionId, data: SessionData) -> CoreResult<()> {
        SessionStore::store(&self.0, id, data).await
    }
    async fn remove(&self, id: &SessionId) -> CoreResult<()> {
        SessionStore::remove(&self.0, id).await
    }
}

impl ChannelManager for Shared<MemoryChannels> {
    fn is_shared(&self) -> bool {
        true
    }
    async fn add_sessions(&self, channel: &ChannelId, sessions: &[SessionId]) -> CoreResult<Vec<SessionId>> {
        ChannelManager::add_sessions(&self.0, channel, sessions).await
    }
    async fn remove_sessions(
        &self,
        channel: &ChannelId,
        sessions: &[SessionId],
    ) -> CoreResult<Vec<SessionId>> {
        ChannelManager::remove_sessions(&self.0, channel, sessions).await
    }
    async fn clear(&self, channel: &ChannelId) -> CoreResult<Vec<SessionId>> {
        ChannelManager::clear(&self.0, channel).await
    }
    async fn sessions(&self, channel: &ChannelId) -> CoreResult<Vec<SessionId>> {
        ChannelManager::sessions(&self.0, channel).await
    }
    async fn channels_of(&self, session: &SessionId) -> CoreResult<Vec<ChannelId>> {
        ChannelManager::channels_of(&self.0, session).await
    }
}

impl History for Shared<LocalHistory> {
    fn is_shared(&self) -> bool {
        true
    }
    async fn append(&self, stream: &str, key: u64, payload: String) -> CoreResult<Offset> {
        History::append(&self.0, stream, key, payload).await
    }
    async fn read_after(&self, stream: &str, after: &Offset, limit: ReadLimit) -> CoreResult<Replay> {
        History::read_after(&self.0, stream, after, limit).await
    }
    async fn received_mark(&self, tab: &str) -> CoreResult<u64> {
        History::received_mark(&self.0, tab).await
    }
    async fn set_received_mark(&self, tab: &str, id: u64) -> CoreResult<()> {
        History::set_received_mark(&self.0, tab, id).await
    }
}

/// A pair with every store shared, as a backend such as Redis has them.
fn shared_pair() -> BackendParts {
    pair()
        .with_session_store(Shared(MemorySessionStore::new()))
        .with_channels(Shared(MemoryChannels::new()))
        .with_history(Shared(LocalHistory::default()))
}

fn sessions() -> Result<SessionConfig, Error> {
    Ok(SessionConfig::new(SECRET)?)
}

/// The refusal `build` gives, with its message.
async fn refusal(builder: Builder) -> Result<(Inconsistency, String), Error> {
    match builder.build().await {
        Ok(node) => {
            node.shutdown();
            Err(Error::Core(CoreError::Invalid("the node was built".into())))
        }
        Err(e) => match e.inconsistency() {
            Some(kind) => Ok((kind, e.to_string())),
            None => Err(e),
        },
    }
}

/// Builds and shuts the node down: it was accepted.
async fn accepted(builder: Builder) -> Result<Thywill, Error> {
    let node = builder.build().await?;
    node.shutdown();
    Ok(node)
}

#[tokio::test]
async fn sessions_in_each_members_own_store_are_refused_on_several_members() -> Result<(), Error> {
    let (kind, message) = refusal(Thywill::builder().backend(pair()).sessions(sessions()?)).await?;
    assert_eq!(kind, Inconsistency::SessionsNotShared);
    assert!(
        message.contains("`pair` backend has 2 members") && message.contains(".session_store("),
        "says what to add: {message}"
    );
    // A shared store is not enough while channels of sessions stay per member.
    let (kind, message) = refusal(
        Thywill::builder()
            .backend(pair())
            .sessions(sessions()?)
            .session_store(Shared(MemorySessionStore::new())),
    )
    .await?;
    assert_eq!(kind, Inconsistency::ChannelsNotShared);
    assert!(message.contains(".channels("), "says what to add: {message}");
    // With both, as the message says, the node is built.
    accepted(
        Thywill::builder()
            .backend(pair())
            .sessions(sessions()?)
            .session_store(Shared(MemorySessionStore::new()))
            .channels(Shared(MemoryChannels::new())),
    )
    .await?;
    // A backend that has both needs nothing more.
    accepted(Thywill::builder().backend(shared_pair()).sessions(sessions()?)).await?;
    Ok(())
}

#[tokio::test]
async fn a_memory_store_replacing_the_backends_is_refused() -> Result<(), Error> {
    let (kind, _) = refusal(
        Thywill::builder()
            .backend(shared_pair())
            .sessions(sessions()?)
            .session_store(MemorySessionStore::new()),
    )
    .await?;
    assert_eq!(kind, Inconsistency::SessionsNotShared);
    Ok(())
}

#[tokio::test]
async fn a_random_secret_per_member_is_refused_on_several_members() -> Result<(), Error> {
    // A session store without `sessions(config)` draws a random secret on each member.
    let (kind, message) = refusal(
        Thywill::builder()
            .backend(shared_pair())
            .session_store(Shared(MemorySessionStore::new())),
    )
    .await?;
    assert_eq!(kind, Inconsistency::SecretNotShared);
    assert!(
        message.contains(".sessions(SessionConfig::new(secret))"),
        "{message}"
    );
    // So is one asked for explicitly.
    let (kind, _) = refusal(
        Thywill::builder()
            .backend(shared_pair())
            .sessions(SessionConfig::random()),
    )
    .await?;
    assert_eq!(kind, Inconsistency::SecretNotShared);
    // One member may draw its own.
    accepted(Thywill::builder().sessions(SessionConfig::random())).await?;
    Ok(())
}

#[tokio::test]
async fn a_per_member_history_is_refused_where_recovery_is_on_any_member() -> Result<(), Error> {
    // The backend shares its history, so clients recover on any member; replacing it with a
    // per-member one breaks that.
    let (kind, message) = refusal(
        Thywill::builder()
            .backend(shared_pair())
            .history(LocalHistory::default()),
    )
    .await?;
    assert_eq!(kind, Inconsistency::HistoryNotShared);
    assert!(
        message.contains("add a shared history") && message.contains("Recovery::SameMember"),
        "says what to add: {message}"
    );
    // Asked for explicitly on a backend without a shared history: refused too.
    let (kind, _) = refusal(Thywill::builder().backend(pair()).recovery(Recovery::AnyMember)).await?;
    assert_eq!(kind, Inconsistency::HistoryNotShared);
    // Accepted: recovery on the same member only, or replay off, or the backend's own history.
    accepted(
        Thywill::builder()
            .backend(shared_pair())
            .history(LocalHistory::default())
            .recovery(Recovery::SameMember),
    )
    .await?;
    accepted(
        Thywill::builder()
            .transport(TransportConfig::default().with_replay(false))
            .backend(pair())
            .recovery(Recovery::AnyMember),
    )
    .await?;
    accepted(Thywill::builder().backend(shared_pair())).await?;
    accepted(Thywill::builder().backend(pair())).await?;
    Ok(())
}

#[tokio::test]
async fn a_cluster_tracking_clients_per_member_is_refused() -> Result<(), Error> {
    let (kind, message) = refusal(Thywill::builder().backend(pair().with_tracking(Tracking::Local))).await?;
    assert_eq!(kind, Inconsistency::NoClusterTracker);
    assert!(
        message.contains("Tracking::ClusterWide"),
        "says what to add: {message}"
    );
    Ok(())
}

#[tokio::test]
async fn the_builder_wires_the_cluster_wide_tracker_over_the_backend() -> Result<(), Error> {
    let (tx, mut sent) = tokio::sync::mpsc::channel(16);
    let cluster = Pair {
        sent: Some(tx),
        ..Pair::default()
    };
    let events = cluster.events.clone();
    let node = Thywill::builder()
        .backend(BackendParts::new("pair", cluster))
        .build()
        .await?;
    assert_eq!(node.member().as_str(), "alpha");
    assert_eq!(node.cluster().members().len(), 2);
    // beta comes up: the cluster-wide tracker sends it this member's table and asks for its own.
    let handler = events
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
        .ok_or_else(|| CoreError::Invalid("the cluster was not started".into()))?;
    handler.member_up("beta".into());
    let mut tracker_tasks = 0;
    while tracker_tasks < 2 {
        let (to, task) = tokio::time::timeout(std::time::Duration::from_secs(10), sent.recv())
            .await
            .map_err(|_| CoreError::Unavailable("no tracker task within 10 s".into()))?
            .ok_or_else(|| CoreError::Unavailable("the cluster is gone".into()))?;
        if task == "thywill.tracker" {
            assert_eq!(to.as_str(), "beta");
            tracker_tasks += 1;
        }
    }
    node.shutdown();
    // The single-member default keeps everything in memory, sessions included.
    let node = accepted(Thywill::builder().member("solo").sessions(sessions()?)).await?;
    assert_eq!(node.cluster().members(), vec![MemberId::from("solo")]);
    assert!(node.session_store().is_some_and(|s| !s.is_shared()));
    Ok(())
}
