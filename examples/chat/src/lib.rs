//! The Chat application: visitors are paired into one-on-one chats. Pairs are **sessions**, not
//! connections, so every tab of one browser shares the chat, on whichever member each tab is
//! connected to; a partner who leaves and comes back finds the chat where it was.
//!
//! How it works (the original's design, on thywill-rs's components):
//!
//! - A session with no chat waits in the [`WaitingPool`] (a Redis set in a cluster, memory
//!   otherwise). A session that arrives takes a random waiting one — or, if none waits, waits
//!   itself, in one atomic step, so two arrivals on two members cannot both wait (the
//!   original's race) — that is still connected somewhere (asked of the cluster-wide client
//!   tracker) and not already chatting; the two are
//!   added to a channel named after them ([`channel_id`]) through the channel manager, which
//!   subscribes every connection of both sessions, now and when they reconnect later.
//! - Messages go to the channel, so both partners (every tab) see them, the sender included.
//! - A kick clears the channel; the partner is told `kicked` and either may look for a new
//!   partner (`findPartner`).
//! - When a session's last connection closes (or the member holding it dies: the designated
//!   handler of that member takes over), its partner is told `disconnected`; when the session
//!   connects again, `reconnected`.
//!
//! - Per-user state lives in the session's data ([`Profile`], through
//!   [`AppContext::session_data`]): how many messages the user has sent, shown on the page. With
//!   sessions in Redis it follows the user to whichever member the browser reconnects to.
//!
//! Messages from the page: `{"action": "message", "message": text}`, `{"action": "kick"}`,
//! `{"action": "findPartner"}`, `{"action": "stats"}`. Messages to the page:
//! `{"action": "startChat", "channelId": id}`, `{"action": "message", "message": text}`,
//! `{"action": "kicked"}`, `{"action": "disconnected"}`, `{"action": "reconnected"}`,
//! `{"action": "stats", "sent": n}` (the answer to `stats`, to the asking connection only).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use fred::prelude::{Builder as RedisBuilder, ClientLike, ReconnectPolicy};
use fred::types::{ClusterHash, CustomCommand, Value as RedisValue};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use thywill::DisconnectReason;
use thywill::config::Backend;
use thywill::core::{BoxFuture, CoreError, CoreResult};
use thywill::resources::embed;
use thywill::{
    AppContext, Application, Builder, ChannelId, Client, Entry, Manifest, MemberClients, MemberId, Message,
    ResourceKind, SessionConfig, SessionId, Thywill,
};

/// Application id.
pub const APP_ID: &str = "chat";
/// Base path the example is served under.
pub const BASE: &str = "/chat";
/// Default port (the original's).
pub const DEFAULT_PORT: u16 = 10087;
/// Longest chat message accepted, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2_000;
/// Prefix of the example's Redis keys (sessions, channels, waiting pool).
pub const REDIS_PREFIX: &str = "thywill:chat:";

/// The sessions waiting for a partner.
pub trait WaitingPool: Send + Sync + 'static {
    /// In one atomic step: removes and returns a random waiting session other than `session`
    /// or, when there is none, adds `session`. Two sessions arriving at once (on two members)
    /// therefore cannot both end up waiting.
    fn pop_or_wait(&self, session: &SessionId) -> BoxFuture<'_, CoreResult<Option<SessionId>>>;
    /// Adds a session.
    fn add(&self, session: &SessionId) -> BoxFuture<'_, CoreResult<()>>;
    /// Removes a session.
    fn remove(&self, session: &SessionId) -> BoxFuture<'_, CoreResult<()>>;
}

/// A waiting pool in memory: for a single member.
#[derive(Debug, Default)]
pub struct MemoryPool {
    waiting: Mutex<HashSet<SessionId>>,
}

impl MemoryPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<SessionId>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl WaitingPool for MemoryPool {
    fn pop_or_wait(&self, session: &SessionId) -> BoxFuture<'_, CoreResult<Option<SessionId>>> {
        let mut w = self.lock();
        // A HashSet's order is random per process, like SPOP's choice.
        let taken = w.iter().find(|s| *s != session).cloned();
        match &taken {
            Some(s) => {
                w.remove(s);
            }
            None => {
                w.insert(session.clone());
            }
        }
        Box::pin(std::future::ready(Ok(taken)))
    }
    fn add(&self, session: &SessionId) -> BoxFuture<'_, CoreResult<()>> {
        self.lock().insert(session.clone());
        Box::pin(std::future::ready(Ok(())))
    }
    fn remove(&self, session: &SessionId) -> BoxFuture<'_, CoreResult<()>> {
        self.lock().remove(session);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A waiting pool in a Redis set (`SADD` / `SPOP` / `SREM`), shared by the members of a
/// cluster: `<prefix>application:queue`, as in the original.
pub struct RedisPool {
    client: fred::prelude::Client,
    key: String,
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPool").field("key", &self.key).finish()
    }
}

/// Bound of every Redis command of the pool.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

impl RedisPool {
    /// Connects to `url`; the set is `<prefix>application:queue`.
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let mut b = RedisBuilder::from_config(fred::types::config::Config::from_url(url)?);
        b.set_policy(ReconnectPolicy::new_exponential(0, 50, 1_000, 2));
        let client = b.build()?;
        tokio::time::timeout(REDIS_TIMEOUT * 2, client.init())
            .await
            .context("connecting to Redis timed out")??;
        Ok(Self {
            client,
            key: format!("{prefix}application:queue"),
        })
    }

    async fn run<R: fred::types::FromValue>(
        &self,
        name: &'static str,
        args: Vec<RedisValue>,
    ) -> CoreResult<R> {
        self.run_keyed(name, ClusterHash::FirstKey, args).await
    }

    async fn run_keyed<R: fred::types::FromValue>(
        &self,
        name: &'static str,
        hash: ClusterHash,
        args: Vec<RedisValue>,
    ) -> CoreResult<R> {
        let cmd = CustomCommand::new_static(name, hash, false);
        tokio::time::timeout(REDIS_TIMEOUT, self.client.custom(cmd, args))
            .await
            .map_err(|_| CoreError::Unavailable(format!("redis {name} timed out")))?
            .map_err(|e| CoreError::component("chat-pool", e))
    }

    fn args(&self, session: &SessionId) -> Vec<RedisValue> {
        vec![
            RedisValue::from(self.key.as_str()),
            RedisValue::from(session.as_str()),
        ]
    }
}

/// `pop_or_wait` in Redis: KEYS[1] the set, ARGV[1] the arriving session. Pops a random
/// member other than the session (put back if it was the session itself), else adds it.
const POP_OR_WAIT: &str = r"
local other = redis.call('SPOP', KEYS[1])
if other == ARGV[1] then
  other = redis.call('SPOP', KEYS[1])
end
if other then return other end
redis.call('SADD', KEYS[1], ARGV[1])
return false
";

impl WaitingPool for RedisPool {
    fn pop_or_wait(&self, session: &SessionId) -> BoxFuture<'_, CoreResult<Option<SessionId>>> {
        let mut args = vec![RedisValue::from(POP_OR_WAIT), RedisValue::from(1)];
        args.extend(self.args(session));
        Box::pin(async move {
            let popped: Option<String> = self.run_keyed("EVAL", ClusterHash::Offset(2), args).await?;
            Ok(popped.map(SessionId::from))
        })
    }
    fn add(&self, session: &SessionId) -> BoxFuture<'_, CoreResult<()>> {
        let args = self.args(session);
        Box::pin(async move { self.run::<RedisValue>("SADD", args).await.map(|_| ()) })
    }
    fn remove(&self, session: &SessionId) -> BoxFuture<'_, CoreResult<()>> {
        let args = self.args(session);
        Box::pin(async move { self.run::<RedisValue>("SREM", args).await.map(|_| ()) })
    }
}

/// The channel of the chat between two sessions: the hex SHA-256 (first 32 digits) of their
/// ids, sorted and joined with a comma (the original used MD5 of the same string).
pub fn channel_id(a: &SessionId, b: &SessionId) -> ChannelId {
    let mut pair = [a.as_str(), b.as_str()];
    pair.sort_unstable();
    let digest = Sha256::digest(pair.join(",").as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    ChannelId::from(hex)
}

/// What the chat remembers of a user, in the session's data (see [`AppContext::session_data`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Chat messages the user has sent, over every chat and tab of the session (counted with
    /// [`AppContext::update_session_data`], so tabs sending at once on two members all count).
    pub sent: u64,
}

/// Pairs sessions into chats; see the [crate docs](crate).
#[derive(Clone)]
pub struct Chat {
    pool: Arc<dyn WaitingPool>,
    /// Sessions whose partners were told "disconnected" by this member and that have not
    /// come back: two tabs closing at once must not produce two notices.
    away: Arc<std::sync::Mutex<std::collections::HashSet<SessionId>>>,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat").finish_non_exhaustive()
    }
}

/// Most waiting sessions looked at for one pairing (the rest stay for later).
const MAX_CANDIDATES: usize = 100;

impl Chat {
    /// A chat application with this waiting pool.
    pub fn new(pool: impl WaitingPool) -> Self {
        Self {
            pool: Arc::new(pool),
            away: Arc::default(),
        }
    }

    async fn send(ctx: &AppContext, session: &SessionId, data: Value) {
        if let Err(e) = ctx.send_to_session(session, data).await {
            tracing::debug!(%session, error = %e, "not sent");
        }
    }

    /// The session's chat, if it has one.
    async fn chat_of(ctx: &AppContext, session: &SessionId) -> Option<ChannelId> {
        match ctx.session_channels(session).await {
            Ok(channels) => channels.into_iter().next(),
            Err(e) => {
                tracing::warn!(%session, error = %e, "channels of the session not loaded");
                None
            }
        }
    }

    /// The other sessions of a chat.
    async fn partners(ctx: &AppContext, channel: &ChannelId, session: &SessionId) -> Vec<SessionId> {
        ctx.channel_sessions(channel)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s != session)
            .collect()
    }

    /// Pairs `session` with a waiting session, or makes it wait.
    async fn find_partner(&self, ctx: &AppContext, session: &SessionId) {
        if let Err(e) = self.pool.remove(session).await {
            tracing::warn!(error = %e, "waiting pool unavailable");
            return;
        }
        for _ in 0..MAX_CANDIDATES {
            let other = match self.pool.pop_or_wait(session).await {
                Ok(Some(other)) => other,
                // Nobody was waiting: this session waits now.
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "waiting pool unavailable");
                    return;
                }
            };
            // A waiting session that left, or was paired meanwhile, is dropped from the pool.
            let connected = ctx.is_session_connected(&other).await.unwrap_or(false);
            if connected && Self::chat_of(ctx, &other).await.is_none() {
                self.pair(ctx, session, &other).await;
                return;
            }
        }
        // Only stale sessions looked at: wait (the rest of the pool is looked at later).
        if let Err(e) = self.pool.add(session).await {
            tracing::warn!(error = %e, "waiting pool unavailable");
        }
    }

    async fn pair(&self, ctx: &AppContext, a: &SessionId, b: &SessionId) {
        let channel = channel_id(a, b);
        if let Err(e) = ctx.add_sessions(&channel, &[a.clone(), b.clone()]).await {
            tracing::warn!(error = %e, "chat not started");
            return;
        }
        tracing::info!(%channel, "chat started");
        for s in [a, b] {
            Self::send(
                ctx,
                s,
                json!({"action": "startChat", "channelId": channel.as_str()}),
            )
            .await;
        }
    }

    /// The user's profile (a default one when none was stored or the store failed).
    async fn profile(ctx: &AppContext, session: &SessionId) -> Profile {
        match ctx.session_data::<Profile>(session).await {
            Ok(profile) => profile.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(%session, error = %e, "profile not loaded");
                Profile::default()
            }
        }
    }

    /// Counts a message the user sent.
    async fn count_sent(ctx: &AppContext, session: &SessionId) {
        let counted = ctx
            .update_session_data(session, |profile: Option<Profile>| {
                let mut profile = profile.unwrap_or_default();
                profile.sent += 1;
                Some(profile)
            })
            .await;
        if let Err(e) = counted {
            tracing::warn!(%session, error = %e, "profile not stored");
        }
    }

    /// `session` has no connection left anywhere: its partner is told, or it stops waiting.
    async fn gone(&self, ctx: &AppContext, session: &SessionId) {
        match Self::chat_of(ctx, session).await {
            Some(channel) => {
                for other in Self::partners(ctx, &channel, session).await {
                    Self::send(ctx, &other, json!({"action": "disconnected"})).await;
                }
            }
            None => {
                let _ = self.pool.remove(session).await;
            }
        }
    }
}

impl Application for Chat {
    async fn connection(&self, ctx: &AppContext, client: &Client) {
        let session = &client.session;
        self.away
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(session);
        let Some(channel) = Self::chat_of(ctx, session).await else {
            self.find_partner(ctx, session).await;
            return;
        };
        // Back in a chat (the connection is already subscribed to it).
        let start = json!({"action": "startChat", "channelId": channel.as_str()});
        if let Err(e) = ctx.send_to_connection(&client.connection, start).await {
            tracing::debug!(error = %e, "startChat not sent");
        }
        let tabs = ctx.connections_of_session(session).await.unwrap_or_default();
        if tabs.len() <= 1 {
            for other in Self::partners(ctx, &channel, session).await {
                Self::send(ctx, &other, json!({"action": "reconnected"})).await;
            }
        }
    }

    async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
        let session = &client.session;
        match message.data.get("action").and_then(Value::as_str) {
            Some("message") => {
                let Some(text) = message.data.get("message").and_then(Value::as_str) else {
                    return;
                };
                if text.trim().is_empty() || text.chars().count() > MAX_MESSAGE_CHARS {
                    tracing::info!(connection = %client.connection, "chat message refused (empty or too long)");
                    return;
                }
                if let Some(channel) = Self::chat_of(ctx, session).await {
                    let data = json!({"action": "message", "message": text});
                    match ctx.send_to_channel(&channel, data, &[]).await {
                        Ok(()) => Self::count_sent(ctx, session).await,
                        Err(e) => tracing::warn!(error = %e, "chat message not sent"),
                    }
                }
            }
            Some("stats") => {
                let profile = Self::profile(ctx, session).await;
                let stats = json!({"action": "stats", "sent": profile.sent});
                if let Err(e) = ctx.send_to_connection(&client.connection, stats).await {
                    tracing::debug!(error = %e, "stats not sent");
                }
            }
            Some("kick") => {
                let Some(channel) = Self::chat_of(ctx, session).await else {
                    return;
                };
                match ctx.clear_channel(&channel).await {
                    Ok(removed) => {
                        for other in removed.iter().filter(|s| *s != session) {
                            Self::send(ctx, other, json!({"action": "kicked"})).await;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "kick failed"),
                }
            }
            Some("findPartner") => {
                if Self::chat_of(ctx, session).await.is_none() {
                    self.find_partner(ctx, session).await;
                }
            }
            other => tracing::info!(action = ?other, "unknown chat action"),
        }
    }

    async fn disconnection(&self, ctx: &AppContext, client: &Client, _reason: DisconnectReason) {
        if !ctx.is_session_connected(&client.session).await.unwrap_or(false) {
            let first = self
                .away
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(client.session.clone());
            if first {
                self.gone(ctx, &client.session).await;
            }
        }
    }

    async fn cluster_member_down(&self, ctx: &AppContext, member: &MemberId, clients: &MemberClients) {
        tracing::warn!(%member, sessions = clients.sessions().len(), "member down: telling partners of its sessions");
        for session in clients.sessions() {
            if !ctx.is_session_connected(&session).await.unwrap_or(false) {
                self.gone(ctx, &session).await;
            }
        }
    }
}

/// The page (a template with the bootstrap slots), its script and its style.
pub fn manifest() -> Manifest {
    Manifest::new()
        .entry(Entry::new("/chat/", embed!("static/index.html")).kind(ResourceKind::Html))
        .entry(Entry::new("/chat/js/chat.js", embed!("static/chat.js")).weight(10))
        .entry(example_support::example_css("/chat"))
        .entry(Entry::new("/chat/css/chat.css", embed!("static/chat.css")))
}

/// A builder with the chat application (waiting in `pool`) and its page. Sessions must be on
/// ([`Builder::sessions`]): without them every tab is its own session.
pub fn builder(pool: impl WaitingPool) -> Result<Builder, thywill::Error> {
    Ok(Thywill::builder()
        .base_path(BASE)?
        .application(APP_ID, Chat::new(pool))
        .bootstrap(manifest()))
}

/// Builds a chat member as `opts` say. Clustered members share the session secret
/// (`session_secret`, else the configured one): a clustered member without one refuses to
/// start (every member must sign cookies with the same secret, and a published default would
/// let anyone forge them). With `backend = "redis"` the backend's bundle keeps sessions,
/// channels of sessions and the replay history in Redis (keys under [`REDIS_PREFIX`]); the
/// HTTP backend shares no store, so the chat adds Redis sessions and channels itself. A
/// clustered chat keeps its waiting pool in Redis too (at `cluster.redis_url`). A single
/// member keeps everything in memory, with a random secret unless one is configured. Returns
/// the node, not yet listening.
pub async fn build(
    mut opts: example_support::Options,
    session_secret: Option<String>,
) -> anyhow::Result<Thywill> {
    let backend = opts.config.cluster.backend;
    if let Some(secret) = session_secret {
        opts.config.session.secret = Some(secret);
    }
    if backend != Backend::None && opts.config.session.secret.is_none() {
        anyhow::bail!(
            "a clustered chat member needs a session secret of at least {} bytes, the same on every \
             member: --session-secret S, THYWILL_SESSION__SECRET or `[session] secret` in the --config \
             file (`cargo xtask run-example chat --cluster ...` generates one per run)",
            thywill::transport::MIN_SECRET_LEN
        );
    }
    let url = opts.config.cluster.redis_url.clone();
    let builder = if backend == Backend::None {
        builder(MemoryPool::default())?
    } else {
        let pool = RedisPool::connect(&url, REDIS_PREFIX)
            .await
            .with_context(|| format!("the chat's waiting pool needs Redis at {url}"))?;
        builder(pool)?
    };
    let mut builder = example_support::cluster::apply(builder, &opts, APP_ID)?;
    if opts.config.session.secret.is_none() {
        builder = builder.sessions(SessionConfig::random());
    }
    if backend == Backend::Http {
        use thywill::cluster_redis::{
            RedisChannels, RedisChannelsConfig, RedisSessions, RedisSessionsConfig,
        };
        let sessions = RedisSessionsConfig::default()
            .with_url(url.clone())?
            .with_prefix(REDIS_PREFIX)?;
        let channels = RedisChannelsConfig::default()
            .with_url(url)?
            .with_prefix(REDIS_PREFIX)?;
        builder = builder
            .session_store(RedisSessions::connect(sessions).await?)
            .channels(RedisChannels::connect(channels).await?);
    }
    Ok(builder.build().await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_has_one_channel_whichever_comes_first() {
        let (a, b) = (SessionId::from("a"), SessionId::from("b"));
        assert_eq!(channel_id(&a, &b), channel_id(&b, &a));
        assert_eq!(channel_id(&a, &b).as_str().len(), 32);
        assert_ne!(channel_id(&a, &b), channel_id(&a, &SessionId::from("c")));
    }

    #[tokio::test]
    async fn a_clustered_member_needs_a_session_secret() -> anyhow::Result<()> {
        let args = [
            "--port",
            "0",
            "--cluster",
            "redis",
            "--redis-url",
            "redis://127.0.0.1:1",
        ];
        let opts = example_support::Options::parse(args.map(String::from), 0)?;
        anyhow::ensure!(
            opts.config.session.secret.is_none(),
            "THYWILL_SESSION__SECRET is set here"
        );
        let Err(e) = build(opts, None).await else {
            anyhow::bail!("a clustered member started without a session secret");
        };
        anyhow::ensure!(
            e.to_string().contains("--session-secret"),
            "the error says how to set one: {e:#}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn the_memory_pool_pairs_or_makes_wait_in_one_step() -> CoreResult<()> {
        let pool = MemoryPool::default();
        assert_eq!(pool.pop_or_wait(&"a".into()).await?, None, "a waits");
        assert_eq!(
            pool.pop_or_wait(&"a".into()).await?,
            None,
            "a is not its own partner"
        );
        assert_eq!(pool.pop_or_wait(&"b".into()).await?, Some("a".into()));
        pool.add(&"c".into()).await?;
        pool.remove(&"c".into()).await?;
        assert_eq!(pool.pop_or_wait(&"d".into()).await?, None, "d waits");
        Ok(())
    }
}
