//! The single-member, in-memory defaults, next to the traits they implement: a cluster of one
//! ([`LocalCluster`]), the member's own client table ([`MemoryTracker`]), channels of sessions
//! ([`MemoryChannels`]), sessions ([`MemorySessionStore`]), resources ([`MemoryResources`]) and
//! the replay history ([`LocalHistory`]), bundled as [`LocalBackend`]: what a node uses when
//! nothing else is configured. (The named caches' default, [`MemoryCaches`](crate::MemoryCaches),
//! lives beside its trait in [`cache`](crate::cache).)
//!
//! They do no IO and start nothing: every operation completes when first polled. Each member
//! holds its own (`is_shared` is false), so a cluster of several members needs shared stores
//! (the facade's builder refuses the combinations that cannot work).

mod history;

pub use history::LocalHistory;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::{
    ApplicationId, ChannelId, ChannelManager, Client, ClientTable, ClientTracker, Cluster, ClusterEvents,
    ClusterTask, ConnectionId, CoreError, CoreResult, MemberClients, MemberId, MemberStatus, Resource,
    ResourceManager, SessionData, SessionId, SessionStore,
};

/// The single-member backend, as one bundle: a [`LocalCluster`], the member's own client table
/// ([`Tracking::Local`](crate::Tracking::Local)), and channels, sessions, resources and
/// replay history in memory ([`LocalHistory`] with its default limits). What a node uses
/// when no backend is installed.
#[derive(Clone, Debug)]
pub struct LocalBackend {
    member: MemberId,
}

impl LocalBackend {
    /// A single member called `member`.
    pub fn new(member: impl Into<MemberId>) -> Self {
        Self {
            member: member.into(),
        }
    }

    /// The member.
    pub fn member(&self) -> &MemberId {
        &self.member
    }
}

impl crate::Backend for LocalBackend {
    async fn connect(self) -> CoreResult<crate::BackendParts> {
        Ok(crate::BackendParts::new("local", LocalCluster::new(self.member))
            .with_tracking(crate::Tracking::Local)
            .with_history(LocalHistory::default())
            .with_channels(MemoryChannels::new())
            .with_session_store(MemorySessionStore::new())
            .with_resources(MemoryResources::new()))
    }
}

/// A cluster of exactly one member: tasks sent to the local member are handled locally,
/// `send_to_others` goes nowhere.
pub struct LocalCluster {
    member: MemberId,
    events: RwLock<Option<Arc<dyn ClusterEvents>>>,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("member", &self.member)
            .finish()
    }
}

impl LocalCluster {
    /// A single-member cluster whose member is called `member`.
    pub fn new(member: impl Into<MemberId>) -> Self {
        Self {
            member: member.into(),
            events: RwLock::new(None),
        }
    }

    fn deliver(&self, task: ClusterTask) {
        let events = self.events.read().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(events) = events {
            events.task(self.member.clone(), task);
        }
    }
}

impl Cluster for LocalCluster {
    fn local_member(&self) -> &MemberId {
        &self.member
    }
    fn members(&self) -> Vec<MemberId> {
        vec![self.member.clone()]
    }
    fn status(&self, member: &MemberId) -> MemberStatus {
        if *member == self.member {
            MemberStatus::Up
        } else {
            MemberStatus::Unknown
        }
    }
    async fn start(&self, events: Arc<dyn ClusterEvents>) -> CoreResult<()> {
        *self.events.write().unwrap_or_else(PoisonError::into_inner) = Some(events);
        Ok(())
    }
    async fn send_to(&self, member: &MemberId, task: ClusterTask) -> CoreResult<()> {
        if *member == self.member {
            self.deliver(task);
            Ok(())
        } else {
            Err(CoreError::NotFound(format!("member {member}")))
        }
    }
    async fn send_to_others(&self, _task: ClusterTask) -> CoreResult<()> {
        Ok(())
    }
    // send_to_all: the default (the local member, and no others).
}

/// In-memory [`ClientTracker`]: the table of one member, or of a cluster when fed by
/// announcements.
#[derive(Debug, Default)]
pub struct MemoryTracker {
    /// Indexed: lookups cost the same whatever the number of connections.
    table: RwLock<ClientTable>,
}

impl MemoryTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ClientTable> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ClientTable> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ClientTracker for MemoryTracker {
    async fn connected(&self, client: &Client) -> CoreResult<()> {
        self.write().insert_client(client);
        Ok(())
    }
    async fn disconnected(&self, client: &Client) -> CoreResult<()> {
        self.write().remove(&client.member, &client.connection);
        Ok(())
    }
    async fn member_of(&self, connection: &ConnectionId) -> CoreResult<Option<MemberId>> {
        Ok(self.read().member_of(connection))
    }
    async fn connections_of_session(&self, session: &SessionId) -> CoreResult<Vec<(ConnectionId, MemberId)>> {
        Ok(self.read().connections_of_session(session))
    }
    async fn for_each_connection_of_session(
        &self,
        session: &SessionId,
        visit: &mut (dyn FnMut(&ConnectionId, &MemberId) + Send),
    ) -> CoreResult<()> {
        for (connection, member) in self.read().session_connections(session) {
            visit(connection, member);
        }
        Ok(())
    }
    async fn snapshot(&self) -> CoreResult<BTreeMap<MemberId, MemberClients>> {
        Ok(self.read().members().clone())
    }
    async fn purge_member(&self, member: &MemberId) -> CoreResult<MemberClients> {
        Ok(self.write().remove_member(member).unwrap_or_default())
    }
    async fn client_of(&self, connection: &ConnectionId) -> CoreResult<Option<Client>> {
        Ok(self.read().client_of(connection))
    }
}

/// In-memory [`SessionStore`], bounded in time and count: a session no connection has used
/// since it was created (an anonymous page load) is forgotten after
/// [`MemorySessionStore::with_limits`]' `unused_ttl` (default 10 minutes), a used one after
/// `ttl` without use (default 24 hours); past `max_sessions` (default 200,000) the oldest
/// unused sessions go first, then the least recently used.
#[derive(Debug)]
pub struct MemorySessionStore {
    limits: SessionLimits,
    sessions: Mutex<Held>,
}

/// The bounds of a [`MemorySessionStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// How long a session that was stored but never loaded again is kept.
    pub unused_ttl: std::time::Duration,
    /// How long a session is kept after its last load or store.
    pub ttl: std::time::Duration,
    /// Most sessions held.
    pub max_sessions: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            unused_ttl: std::time::Duration::from_secs(10 * 60),
            ttl: std::time::Duration::from_secs(24 * 60 * 60),
            max_sessions: 200_000,
        }
    }
}

#[derive(Debug, Default)]
struct Held {
    map: HashMap<SessionId, HeldSession>,
    ops: u64,
}

#[derive(Debug)]
struct HeldSession {
    data: SessionData,
    /// Each application's data (JSON text), beside `data`.
    apps: HashMap<ApplicationId, String>,
    touched: std::time::Instant,
    used: bool,
}

impl Held {
    fn expired(limits: &SessionLimits, s: &HeldSession, now: std::time::Instant) -> bool {
        let ttl = if s.used { limits.ttl } else { limits.unused_ttl };
        now.duration_since(s.touched) > ttl
    }

    /// Drops expired sessions, then (over the bound) the oldest unused, then the least
    /// recently used.
    fn sweep(&mut self, limits: &SessionLimits, now: std::time::Instant) {
        self.map.retain(|_, s| !Self::expired(limits, s, now));
        if self.map.len() > limits.max_sessions {
            let mut order: Vec<(bool, std::time::Instant, SessionId)> = self
                .map
                .iter()
                .map(|(id, s)| (s.used, s.touched, id.clone()))
                .collect();
            order.sort_unstable();
            let excess = self.map.len() - limits.max_sessions;
            for (_, _, id) in order.into_iter().take(excess) {
                self.map.remove(&id);
            }
        }
    }

    fn tick(&mut self, limits: &SessionLimits, now: std::time::Instant) {
        self.ops += 1;
        if self.ops.is_multiple_of(1024) || self.map.len() > limits.max_sessions {
            self.sweep(limits, now);
        }
    }
}

impl Default for MemorySessionStore {
    fn default() -> Self {
        Self::with_limits(SessionLimits::default())
    }
}

impl MemorySessionStore {
    /// An empty store with the default [`SessionLimits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with these bounds.
    pub fn with_limits(limits: SessionLimits) -> Self {
        Self {
            limits,
            sessions: Mutex::new(Held::default()),
        }
    }

    /// Sessions held now (expired ones included until the next sweep).
    pub fn len(&self) -> usize {
        self.held().map.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SessionStore for MemorySessionStore {
    /// No: each member holds its own.
    fn is_shared(&self) -> bool {
        false
    }
    async fn load(&self, id: &SessionId) -> CoreResult<Option<SessionData>> {
        let now = std::time::Instant::now();
        let mut held = self.held();
        let limits = self.limits;
        let data = match held.map.get_mut(id) {
            Some(s) if !Held::expired(&limits, s, now) => {
                s.touched = now;
                s.used = true;
                Some(s.data.clone())
            }
            Some(_) => {
                held.map.remove(id);
                None
            }
            None => None,
        };
        Ok(data)
    }
    async fn store(&self, id: &SessionId, data: SessionData) -> CoreResult<()> {
        let now = std::time::Instant::now();
        let mut held = self.held();
        let limits = self.limits;
        match held.map.get_mut(id) {
            // Application data stays: it is kept beside the session's data.
            Some(s) if !Held::expired(&limits, s, now) => {
                s.data = data;
                s.touched = now;
            }
            _ => {
                held.map.insert(
                    id.clone(),
                    HeldSession {
                        data,
                        apps: HashMap::new(),
                        touched: now,
                        used: false,
                    },
                );
            }
        }
        held.tick(&limits, now);
        Ok(())
    }
    async fn remove(&self, id: &SessionId) -> CoreResult<()> {
        self.held().map.remove(id);
        Ok(())
    }
    async fn load_app_data(&self, id: &SessionId, app: &ApplicationId) -> CoreResult<Option<String>> {
        let now = std::time::Instant::now();
        let limits = self.limits;
        let mut held = self.held();
        let data = match held.map.get_mut(id) {
            Some(s) if !Held::expired(&limits, s, now) => {
                s.touched = now;
                s.used = true;
                s.apps.get(app).cloned()
            }
            _ => None,
        };
        Ok(data)
    }
    async fn store_app_data(
        &self,
        id: &SessionId,
        app: &ApplicationId,
        data: Option<String>,
    ) -> CoreResult<()> {
        let now = std::time::Instant::now();
        let limits = self.limits;
        let mut held = self.held();
        match held.map.get_mut(id) {
            Some(s) if !Held::expired(&limits, s, now) => {
                s.touched = now;
                s.used = true;
                match data {
                    Some(d) => s.apps.insert(app.clone(), d),
                    None => s.apps.remove(app),
                };
                Ok(())
            }
            _ => Err(CoreError::NotFound(format!("session {id}"))),
        }
    }
    async fn replace_app_data(
        &self,
        id: &SessionId,
        app: &ApplicationId,
        current: Option<String>,
        data: Option<String>,
    ) -> CoreResult<bool> {
        let now = std::time::Instant::now();
        let limits = self.limits;
        let mut held = self.held();
        match held.map.get_mut(id) {
            Some(s) if !Held::expired(&limits, s, now) => {
                s.touched = now;
                s.used = true;
                if s.apps.get(app) == current.as_ref() {
                    match data {
                        Some(d) => s.apps.insert(app.clone(), d),
                        None => s.apps.remove(app),
                    };
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
            _ => Err(CoreError::NotFound(format!("session {id}"))),
        }
    }
}

/// Sessions by channel and channels by session.
type TwoWay = (
    BTreeMap<ChannelId, BTreeSet<SessionId>>,
    BTreeMap<SessionId, BTreeSet<ChannelId>>,
);

/// In-memory [`ChannelManager`] with two-way indexes.
#[derive(Debug, Default)]
pub struct MemoryChannels {
    inner: Mutex<TwoWay>,
}

impl MemoryChannels {
    /// No channels.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ChannelManager for MemoryChannels {
    /// No: each member holds its own.
    fn is_shared(&self) -> bool {
        false
    }
    async fn add_sessions(&self, channel: &ChannelId, sessions: &[SessionId]) -> CoreResult<Vec<SessionId>> {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut added = Vec::new();
        for s in sessions {
            if g.0.entry(channel.clone()).or_default().insert(s.clone()) {
                added.push(s.clone());
            }
            g.1.entry(s.clone()).or_default().insert(channel.clone());
        }
        Ok(added)
    }
    async fn remove_sessions(
        &self,
        channel: &ChannelId,
        sessions: &[SessionId],
    ) -> CoreResult<Vec<SessionId>> {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut removed = Vec::new();
        for s in sessions {
            if g.0.get_mut(channel).is_some_and(|set| set.remove(s)) {
                removed.push(s.clone());
            }
            if g.0.get(channel).is_some_and(BTreeSet::is_empty) {
                g.0.remove(channel);
            }
            if let Some(set) = g.1.get_mut(s) {
                set.remove(channel);
                if set.is_empty() {
                    g.1.remove(s);
                }
            }
        }
        Ok(removed)
    }
    async fn clear(&self, channel: &ChannelId) -> CoreResult<Vec<SessionId>> {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let removed: Vec<SessionId> = g.0.remove(channel).unwrap_or_default().into_iter().collect();
        for s in &removed {
            if let Some(set) = g.1.get_mut(s) {
                set.remove(channel);
                if set.is_empty() {
                    g.1.remove(s);
                }
            }
        }
        Ok(removed)
    }
    async fn sessions(&self, channel: &ChannelId) -> CoreResult<Vec<SessionId>> {
        let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(g.0
            .get(channel)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default())
    }
    async fn channels_of(&self, session: &SessionId) -> CoreResult<Vec<ChannelId>> {
        let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(g.1
            .get(session)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default())
    }
}

/// In-memory [`ResourceManager`].
#[derive(Debug, Default)]
pub struct MemoryResources {
    resources: RwLock<BTreeMap<String, Resource>>,
}

impl MemoryResources {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ResourceManager for MemoryResources {
    async fn store(&self, resource: Resource) -> CoreResult<()> {
        self.resources
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(resource.client_path.clone(), resource);
        Ok(())
    }
    async fn load(&self, client_path: &str) -> CoreResult<Option<Resource>> {
        Ok(self
            .resources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(client_path)
            .cloned())
    }
    async fn remove(&self, client_path: &str) -> CoreResult<()> {
        self.resources
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(client_path);
        Ok(())
    }
    async fn bootstrap(&self) -> CoreResult<Vec<Resource>> {
        let mut v: Vec<Resource> = self
            .resources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|r| r.bootstrap)
            .cloned()
            .collect();
        v.sort_by_key(|r| r.weight);
        Ok(v)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Runs a future of these in-memory stores, which completes when first polled (the core
    /// has no runtime, and needs none to test them).
    pub(crate) fn block<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("an in-memory store's future was not ready"),
        }
    }

    #[test]
    fn unused_sessions_expire_first_and_the_count_is_bounded() -> CoreResult<()> {
        let store = MemorySessionStore::with_limits(SessionLimits {
            unused_ttl: std::time::Duration::from_millis(30),
            ttl: std::time::Duration::from_secs(60),
            max_sessions: 100,
        });
        let used = SessionId::from("used");
        block(store.store(&used, Default::default()))?;
        assert!(block(store.load(&used))?.is_some());
        let anon = SessionId::from("anonymous");
        block(store.store(&anon, Default::default()))?;
        // The bound under test is a time: let it pass.
        std::thread::sleep(std::time::Duration::from_millis(60));
        assert!(block(store.load(&anon))?.is_none(), "an unused session expired");
        assert!(block(store.load(&used))?.is_some(), "a used one did not");
        for i in 0..1000 {
            block(store.store(&SessionId::from(format!("flood{i}")), Default::default()))?;
        }
        assert!(store.len() <= 101, "{} sessions held", store.len());
        assert!(
            block(store.load(&used))?.is_some(),
            "the used session outlived the flood"
        );
        Ok(())
    }

    /// Records the tasks it is given.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(MemberId, String)>>);

    impl ClusterEvents for Recorder {
        fn task(&self, from: MemberId, task: ClusterTask) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((from, task.name));
        }
        fn member_up(&self, _: MemberId) {}
        fn member_down(&self, _: MemberId, _: bool) {}
    }

    #[test]
    fn a_cluster_of_one_sends_to_all_through_the_default() -> CoreResult<()> {
        let cluster = LocalCluster::new("alpha");
        let seen = Arc::new(Recorder::default());
        block(cluster.start(seen.clone()))?;
        block(cluster.send_to_all(ClusterTask::encode("t.all", &1u8)?))?;
        block(cluster.send_to_others(ClusterTask::encode("t.others", &2u8)?))?;
        let err = block(cluster.send_to(&"beta".into(), ClusterTask::encode("t.beta", &3u8)?));
        assert!(matches!(err, Err(CoreError::NotFound(_))), "{err:?}");
        let seen = seen.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(seen, vec![(MemberId::from("alpha"), "t.all".to_owned())]);
        Ok(())
    }

    /// A tracker that keeps the trait's default `for_each_connection_of_session`.
    struct Defaulted(MemoryTracker);

    impl ClientTracker for Defaulted {
        async fn connected(&self, client: &Client) -> CoreResult<()> {
            self.0.connected(client).await
        }
        async fn disconnected(&self, client: &Client) -> CoreResult<()> {
            self.0.disconnected(client).await
        }
        async fn member_of(&self, connection: &ConnectionId) -> CoreResult<Option<MemberId>> {
            self.0.member_of(connection).await
        }
        async fn connections_of_session(
            &self,
            session: &SessionId,
        ) -> CoreResult<Vec<(ConnectionId, MemberId)>> {
            self.0.connections_of_session(session).await
        }
        async fn snapshot(&self) -> CoreResult<BTreeMap<MemberId, MemberClients>> {
            self.0.snapshot().await
        }
        async fn purge_member(&self, member: &MemberId) -> CoreResult<MemberClients> {
            self.0.purge_member(member).await
        }
    }

    #[test]
    fn visiting_a_session_lists_what_connections_of_session_lists() -> CoreResult<()> {
        let own = MemoryTracker::new();
        let defaulted = Defaulted(MemoryTracker::new());
        let trackers: [&dyn crate::DynClientTracker; 2] = [&own, &defaulted];
        for t in trackers {
            for (conn, session, member) in [
                ("c1", "s1", "beta"),
                ("c2", "s1", "alpha"),
                ("c3", "s1", "beta"),
                ("c4", "s2", "alpha"),
                ("c5", "s1", "gamma"),
            ] {
                block(t.connected(&Client::new(conn.into(), session.into(), member.into())))?;
            }
            block(t.disconnected(&Client::new("c3".into(), "s1".into(), "beta".into())))?;
            for session in ["s1", "s2", "s3"] {
                let session = SessionId::from(session);
                let mut visited = Vec::new();
                block(t.for_each_connection_of_session(&session, &mut |c, m| {
                    visited.push((c.clone(), m.clone()));
                }))?;
                assert_eq!(visited, block(t.connections_of_session(&session))?, "{session}");
            }
            let mut visited = Vec::new();
            block(t.for_each_connection_of_session(&"s1".into(), &mut |c, m| {
                visited.push(format!("{m}/{c}"));
            }))?;
            assert_eq!(visited, ["alpha/c2", "beta/c1", "gamma/c5"]);
        }
        Ok(())
    }

    #[test]
    fn tracker_tracks_and_purges() -> CoreResult<()> {
        let t = MemoryTracker::new();
        let c = Client {
            connection: "c1".into(),
            session: "s1".into(),
            member: "alpha".into(),
            identity: None,
        };
        block(t.connected(&c))?;
        assert_eq!(block(t.member_of(&"c1".into()))?, Some("alpha".into()));
        assert_eq!(block(t.connections_of_session(&"s1".into()))?.len(), 1);
        let purged = block(t.purge_member(&"alpha".into()))?;
        assert_eq!(purged.sessions(), vec![SessionId::from("s1")]);
        assert_eq!(block(t.member_of(&"c1".into()))?, None);
        Ok(())
    }

    #[test]
    fn application_data_lives_beside_the_session() -> CoreResult<()> {
        let store = MemorySessionStore::new();
        let (id, app, other) = (
            SessionId::from("s"),
            ApplicationId::from("a"),
            ApplicationId::from("b"),
        );
        assert!(matches!(
            block(store.store_app_data(&id, &app, Some("1".into()))),
            Err(CoreError::NotFound(_))
        ));
        block(store.store(&id, SessionData::new()))?;
        block(store.store_app_data(&id, &app, Some("1".into())))?;
        block(store.store_app_data(&id, &other, Some("2".into())))?;
        let mut data = SessionData::new();
        data.insert("k".into(), serde_json::json!(true));
        block(store.store(&id, data.clone()))?;
        assert_eq!(block(store.load(&id))?, Some(data));
        assert_eq!(block(store.load_app_data(&id, &app))?.as_deref(), Some("1"));
        // Compare and set.
        assert!(!block(store.replace_app_data(&id, &app, None, Some("x".into())))?);
        assert!(!block(store.replace_app_data(
            &id,
            &app,
            Some("0".into()),
            Some("x".into())
        ))?);
        assert!(block(store.replace_app_data(
            &id,
            &app,
            Some("1".into()),
            Some("3".into())
        ))?);
        assert_eq!(block(store.load_app_data(&id, &app))?.as_deref(), Some("3"));
        assert!(block(store.replace_app_data(&id, &app, Some("3".into()), None))?);
        assert!(block(store.replace_app_data(&id, &app, None, Some("4".into())))?);
        block(store.store_app_data(&id, &app, None))?;
        assert_eq!(block(store.load_app_data(&id, &app))?, None);
        assert_eq!(block(store.load_app_data(&id, &other))?.as_deref(), Some("2"));
        block(store.remove(&id))?;
        assert_eq!(block(store.load_app_data(&id, &other))?, None);
        Ok(())
    }

    #[test]
    fn channels_keep_two_way_indexes() -> CoreResult<()> {
        let m = MemoryChannels::new();
        let ch = ChannelId::from("room");
        let (a, b, c) = (SessionId::from("a"), SessionId::from("b"), SessionId::from("c"));
        assert_eq!(
            block(m.add_sessions(&ch, &[a.clone(), b.clone(), a.clone()]))?,
            [a.clone(), b.clone()]
        );
        // Only what changed is reported.
        assert_eq!(
            block(m.add_sessions(&ch, &[b.clone(), c.clone()]))?,
            vec![c.clone()]
        );
        assert_eq!(
            block(m.remove_sessions(&ch, &[c.clone(), c.clone(), "x".into()]))?,
            vec![c.clone()]
        );
        assert!(block(m.remove_sessions(&ch, std::slice::from_ref(&c)))?.is_empty());
        assert!(block(m.channels_of(&c))?.is_empty());
        assert_eq!(block(m.channels_of(&"a".into()))?, vec![ch.clone()]);
        assert_eq!(block(m.clear(&ch))?.len(), 2);
        assert!(block(m.channels_of(&"a".into()))?.is_empty());
        Ok(())
    }
}
