//! [`RedisChannels`]: a [`ChannelManager`] in Redis, shared by the members of a cluster.

use std::sync::Arc;
use std::time::Duration;

use fred::types::{ClusterHash, Value};
use thywill_core::{ChannelId, ChannelManager, CoreResult, SessionId};

use crate::Error;
use crate::store::Commands;

/// Adds (`SADD`) or removes (`SREM`) sessions, both ways, atomically, and returns the
/// sessions whose membership changed (in the order given, each once).
/// KEYS[1]: the channel's set; ARGV[1]: the command; ARGV[2]: the prefix of sessions' sets;
/// ARGV[3]: the channel id; ARGV[4..]: the sessions.
const CHANGE: &str = r"
local changed = {}
for i = 4, #ARGV do
  if redis.call(ARGV[1], KEYS[1], ARGV[i]) == 1 then
    changed[#changed + 1] = ARGV[i]
  end
  redis.call(ARGV[1], ARGV[2] .. ARGV[i], ARGV[3])
end
return changed
";

/// Empties a channel, both ways, atomically, and returns its sessions.
/// KEYS[1]: the channel's set; ARGV[1]: the prefix of sessions' sets; ARGV[2]: the channel id.
const CLEAR: &str = r"
local sessions = redis.call('SMEMBERS', KEYS[1])
for _, s in ipairs(sessions) do
  redis.call('SREM', ARGV[1] .. s, ARGV[2])
end
redis.call('DEL', KEYS[1])
return sessions
";

/// Settings of a [`RedisChannels`] manager.
#[derive(Clone, Debug)]
pub struct RedisChannelsConfig {
    target: crate::connect::Target,
    prefix: String,
    command_timeout: Duration,
}

impl Default for RedisChannelsConfig {
    fn default() -> Self {
        Self {
            target: crate::connect::Target::default(),
            prefix: "thywill:".into(),
            command_timeout: Duration::from_secs(2),
        }
    }
}

impl RedisChannelsConfig {
    crate::store::store_setters!("Prefix of every key (default `thywill:`).");

    fn channel_key(&self, channel: &ChannelId) -> String {
        format!("{}{{channels}}:channelsessionids:{channel}", self.prefix)
    }

    fn session_prefix(&self) -> String {
        format!("{}{{channels}}:sessionchannelids:", self.prefix)
    }

    fn session_key(&self, session: &SessionId) -> String {
        format!("{}{session}", self.session_prefix())
    }
}

/// Channels of sessions in Redis, with two-way indexes (the original's keys, under one hash tag):
///
/// | key | holds |
/// |---|---|
/// | `<prefix>{channels}:channelsessionids:<channel>` | set of the channel's session ids |
/// | `<prefix>{channels}:sessionchannelids:<session>` | set of the session's channel ids |
///
/// Changes update both sets in one Lua script, so the indexes never disagree. The sets have no
/// expiry: an application removes sessions it no longer wants (for example when a chat ends).
/// The scripts build the session keys themselves; the shared hash tag `{channels}` keeps every
/// key of the index on one slot, so the scripts also run on Redis Cluster (where the whole index
/// then lives on one node).
///
/// ```no_run
/// # async fn run() -> Result<(), thywill_cluster_redis::Error> {
/// use thywill_cluster_redis::{RedisChannels, RedisChannelsConfig};
///
/// let channels = RedisChannels::connect(
///     RedisChannelsConfig::default()
///         .with_url("redis://127.0.0.1:6379")?
///         .with_prefix("thywill:chat:channel:")?,
/// )
/// .await?;
/// // Thywill::builder().channels(channels)
/// # let _ = channels; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisChannels {
    config: RedisChannelsConfig,
    redis: Arc<Commands>,
}

impl std::fmt::Debug for RedisChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisChannels")
            .field("prefix", &self.config.prefix)
            .finish()
    }
}

impl RedisChannels {
    /// Connects (one connection, which reconnects by itself).
    pub async fn connect(config: RedisChannelsConfig) -> Result<Self, Error> {
        let redis = Commands::connect(&config.target, config.command_timeout).await?;
        Ok(Self {
            config,
            redis: Arc::new(redis),
        })
    }

    /// Closes the connection.
    pub async fn quit(&self) {
        self.redis.quit().await;
    }

    async fn change(
        &self,
        command: &str,
        channel: &ChannelId,
        sessions: &[SessionId],
    ) -> Result<Vec<SessionId>, Error> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec![
            Value::from(CHANGE),
            Value::from(1),
            Value::from(self.config.channel_key(channel)),
            Value::from(command),
            Value::from(self.config.session_prefix()),
            Value::from(channel.as_str()),
        ];
        args.extend(sessions.iter().map(|s| Value::from(s.as_str())));
        let changed: Vec<String> = self.redis.run("EVAL", ClusterHash::Offset(2), args).await?;
        Ok(changed.into_iter().map(SessionId::from).collect())
    }

    async fn clear(&self, channel: &ChannelId) -> Result<Vec<SessionId>, Error> {
        let args = vec![
            Value::from(CLEAR),
            Value::from(1),
            Value::from(self.config.channel_key(channel)),
            Value::from(self.config.session_prefix()),
            Value::from(channel.as_str()),
        ];
        let removed: Vec<String> = self.redis.run("EVAL", ClusterHash::Offset(2), args).await?;
        Ok(removed.into_iter().map(SessionId::from).collect())
    }

    async fn members(&self, key: String) -> Result<Vec<String>, Error> {
        let mut m: Vec<String> = self
            .redis
            .run("SMEMBERS", ClusterHash::FirstKey, vec![Value::from(key)])
            .await?;
        m.sort();
        Ok(m)
    }
}

impl ChannelManager for RedisChannels {
    /// Yes: every member given the same Redis and prefix reads the same keys.
    fn is_shared(&self) -> bool {
        true
    }
    async fn add_sessions(&self, channel: &ChannelId, sessions: &[SessionId]) -> CoreResult<Vec<SessionId>> {
        Ok(self.change("SADD", channel, sessions).await?)
    }

    async fn remove_sessions(
        &self,
        channel: &ChannelId,
        sessions: &[SessionId],
    ) -> CoreResult<Vec<SessionId>> {
        Ok(self.change("SREM", channel, sessions).await?)
    }

    async fn clear(&self, channel: &ChannelId) -> CoreResult<Vec<SessionId>> {
        Ok(self.clear(channel).await?)
    }

    async fn sessions(&self, channel: &ChannelId) -> CoreResult<Vec<SessionId>> {
        let key = self.config.channel_key(channel);
        Ok(self
            .members(key)
            .await?
            .into_iter()
            .map(SessionId::from)
            .collect())
    }

    async fn channels_of(&self, session: &SessionId) -> CoreResult<Vec<ChannelId>> {
        let key = self.config.session_key(session);
        Ok(self
            .members(key)
            .await?
            .into_iter()
            .map(ChannelId::from)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use thywill_testkit::redis::RedisServer;

    use super::*;

    #[tokio::test]
    async fn two_way_indexes_are_kept_in_redis() -> anyhow::Result<()> {
        let redis = RedisServer::start().await?;
        let config = RedisChannelsConfig::default()
            .with_url(redis.url())?
            .with_prefix("t:ch:")?;
        let alpha = RedisChannels::connect(config.clone()).await?;
        let beta = RedisChannels::connect(config).await?;
        let (room, hall) = (ChannelId::from("room"), ChannelId::from("hall"));
        let (a, b) = (SessionId::from("a"), SessionId::from("b"));

        assert_eq!(
            alpha
                .add_sessions(&room, &[a.clone(), b.clone(), a.clone()])
                .await?,
            [a.clone(), b.clone()]
        );
        alpha.add_sessions(&hall, std::slice::from_ref(&a)).await?;
        assert!(alpha.add_sessions(&hall, &[]).await?.is_empty());
        // Only sessions new to the channel are reported.
        assert_eq!(
            beta.add_sessions(&room, &[b.clone(), SessionId::from("c")])
                .await?,
            vec![SessionId::from("c")]
        );
        assert_eq!(
            beta.remove_sessions(&room, &[SessionId::from("c"), SessionId::from("x")])
                .await?,
            vec![SessionId::from("c")]
        );
        assert_eq!(beta.sessions(&room).await?, vec![a.clone(), b.clone()]);
        assert_eq!(beta.channels_of(&a).await?, vec![hall.clone(), room.clone()]);
        // The original's key layout.
        let raw: Vec<String> = alpha
            .redis
            .run(
                "SMEMBERS",
                ClusterHash::FirstKey,
                vec![Value::from("t:ch:{channels}:sessionchannelids:b")],
            )
            .await?;
        assert_eq!(raw, ["room"]);

        assert_eq!(
            beta.remove_sessions(&room, std::slice::from_ref(&a)).await?,
            vec![a.clone()]
        );
        assert_eq!(alpha.channels_of(&a).await?, vec![hall.clone()]);
        assert_eq!(alpha.sessions(&room).await?, vec![b.clone()]);

        let mut cleared = beta.clear(&hall).await?;
        cleared.sort();
        assert_eq!(cleared, vec![a.clone()]);
        assert!(alpha.channels_of(&a).await?.is_empty());
        assert!(alpha.sessions(&hall).await?.is_empty());
        assert!(beta.clear(&hall).await?.is_empty());
        alpha.quit().await;
        beta.quit().await;
        Ok(())
    }
}
