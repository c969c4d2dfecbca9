//! [`RedisClusterConfig`]: typed, validated settings of the Redis backend.

use std::collections::HashSet;
use std::time::Duration;

use thywill_core::{MemberId, Topic};

use crate::Error;

/// Settings of a [`RedisCluster`](crate::RedisCluster) member.
///
/// ```
/// use std::time::Duration;
/// use thywill_cluster_redis::RedisClusterConfig;
///
/// let config = RedisClusterConfig::default()
///     .with_url("redis://127.0.0.1:6379")?
///     .with_prefix("thywill:draw:cluster:")?
///     .with_members(["alpha", "beta", "gamma"])?
///     .with_local("beta")?
///     .with_heartbeat(Duration::from_millis(200), Duration::from_millis(500))?;
/// assert_eq!(config.channel_of(&"beta".into()), "thywill:draw:cluster:member:beta");
/// # Ok::<(), thywill_cluster_redis::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RedisClusterConfig {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) members: Vec<MemberId>,
    pub(crate) local: MemberId,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) queue_capacity: usize,
    pub(crate) command_timeout: Duration,
    /// Topic traffic over sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`).
    pub(crate) sharded_pubsub: bool,
}

impl Default for RedisClusterConfig {
    /// `redis://127.0.0.1:6379`, prefix `thywill:cluster:`, a single member `alpha`,
    /// heartbeat every 200 ms with a 500 ms timeout, outbound queue of 65 536 tasks, Redis
    /// command timeout 2 s.
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "thywill:cluster:".into(),
            members: vec![MemberId::from("alpha")],
            local: MemberId::from("alpha"),
            heartbeat_interval: Duration::from_millis(200),
            heartbeat_timeout: Duration::from_millis(500),
            queue_capacity: 65_536,
            command_timeout: Duration::from_secs(2),
            sharded_pubsub: false,
        }
    }
}

fn invalid(what: &'static str, why: impl Into<String>) -> Error {
    Error::Config {
        setting: what,
        reason: why.into(),
    }
}

impl RedisClusterConfig {
    /// The Redis server, as a `redis://[user:password@]host:port[/db]` URL.
    pub fn with_url(mut self, url: impl Into<String>) -> Result<Self, Error> {
        let url = url.into();
        crate::store::check_url(&url)?;
        self.url = url;
        Ok(self)
    }

    /// The prefix of every channel name (default `thywill:cluster:`); members of one cluster
    /// share it, different clusters on one Redis use different prefixes.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Result<Self, Error> {
        let prefix = prefix.into();
        if prefix.is_empty() || prefix.chars().any(char::is_whitespace) {
            return Err(invalid("prefix", "must be non-empty, without whitespace"));
        }
        self.prefix = prefix;
        Ok(self)
    }

    /// Every member of the cluster, in ring order (which decides designated handlers). If the
    /// local member is not among them, [`with_local`](Self::with_local) must name one that is.
    pub fn with_members<I, M>(mut self, members: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = M>,
        M: Into<MemberId>,
    {
        let members: Vec<MemberId> = members.into_iter().map(Into::into).collect();
        if members.is_empty() {
            return Err(invalid("members", "at least one member"));
        }
        let mut seen = HashSet::new();
        for m in &members {
            if m.as_str().is_empty() || m.as_str().chars().any(char::is_whitespace) {
                return Err(invalid("members", format!("bad member id {:?}", m.as_str())));
            }
            if !seen.insert(m.clone()) {
                return Err(invalid("members", format!("{m} listed twice")));
            }
        }
        if !members.contains(&self.local) {
            self.local = members[0].clone();
        }
        self.members = members;
        Ok(self)
    }

    /// The local member; must be one of the members.
    pub fn with_local(mut self, local: impl Into<MemberId>) -> Result<Self, Error> {
        let local = local.into();
        if !self.members.contains(&local) {
            return Err(invalid("local", format!("{local} is not among the members")));
        }
        self.local = local;
        Ok(self)
    }

    /// Heartbeat period and the silence after which a member is down (defaults 200 ms and
    /// 500 ms). The timeout must exceed the interval.
    pub fn with_heartbeat(mut self, interval: Duration, timeout: Duration) -> Result<Self, Error> {
        if interval < Duration::from_millis(5) {
            return Err(invalid("heartbeat", "interval below 5 ms"));
        }
        if timeout <= interval {
            return Err(invalid("heartbeat", "timeout must exceed the interval"));
        }
        self.heartbeat_interval = interval;
        self.heartbeat_timeout = timeout;
        Ok(self)
    }

    /// Capacity of the outbound task queue (default 65 536); a full queue makes sends fail
    /// with `Unavailable` instead of growing memory without bound.
    pub fn with_queue_capacity(mut self, capacity: usize) -> Result<Self, Error> {
        if capacity == 0 {
            return Err(invalid("queue_capacity", "must be positive"));
        }
        self.queue_capacity = capacity;
        Ok(self)
    }

    /// How long one Redis command (a publish) may take, reconnection included, before it
    /// counts as failed (default 2 s).
    pub fn with_command_timeout(mut self, timeout: Duration) -> Result<Self, Error> {
        if timeout.is_zero() {
            return Err(invalid("command_timeout", "must be positive"));
        }
        self.command_timeout = timeout;
        Ok(self)
    }

    /// Whether topic traffic (a channel's messages, sent to the members interested in it)
    /// travels over sharded pub/sub — `SPUBLISH` / `SSUBSCRIBE`, Redis 7 and later — rather
    /// than plain `PUBLISH` / `SUBSCRIBE` (default off). On a Redis Cluster, sharded pub/sub
    /// keeps each topic's traffic on the shard that owns its channel instead of copying every
    /// message to every node. Member-to-member traffic and heartbeats stay on plain pub/sub.
    pub fn with_sharded_pubsub(mut self, on: bool) -> Self {
        self.sharded_pubsub = on;
        self
    }

    /// Whether topic traffic uses sharded pub/sub ([`Self::with_sharded_pubsub`]).
    pub fn sharded_pubsub(&self) -> bool {
        self.sharded_pubsub
    }

    /// `<prefix>topic:<topic>`: the channel of one topic's traffic, subscribed by the members
    /// interested in it.
    pub fn topic_channel(&self, topic: &Topic) -> String {
        format!("{}topic:{topic}", self.prefix)
    }

    /// The Redis URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The channel prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The members, in ring order.
    pub fn members(&self) -> &[MemberId] {
        &self.members
    }

    /// The local member.
    pub fn local(&self) -> &MemberId {
        &self.local
    }

    /// Heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// Heartbeat timeout.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout
    }

    /// `<prefix>member:<id>`: the channel of tasks addressed to one member.
    pub fn channel_of(&self, member: &MemberId) -> String {
        format!("{}member:{member}", self.prefix)
    }

    /// `<prefix>all`: the broadcast channel.
    pub fn all_channel(&self) -> String {
        format!("{}all", self.prefix)
    }

    /// `<prefix>heartbeat`: the heartbeat channel.
    pub fn heartbeat_channel(&self) -> String {
        format!("{}heartbeat", self.prefix)
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if !self.members.contains(&self.local) {
            return Err(invalid(
                "local",
                format!("{} is not among the members", self.local),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_settings() {
        let c = RedisClusterConfig::default();
        assert!(c.clone().with_url("not a url").is_err());
        // No TLS in this build: an encrypted URL is refused, never spoken to in plain text.
        assert!(c.clone().with_url("rediss://127.0.0.1:6380").is_err());
        assert!(c.clone().with_url("REDISS://127.0.0.1:6380").is_err());
        assert!(c.clone().with_url("redis://127.0.0.1:6379").is_ok());
        assert!(c.clone().with_prefix("").is_err());
        assert!(c.clone().with_members(Vec::<MemberId>::new()).is_err());
        assert!(c.clone().with_members(["a", "a"]).is_err());
        assert!(
            c.clone()
                .with_members(["a", "b"])
                .and_then(|c| c.with_local("z"))
                .is_err()
        );
        assert!(
            c.clone()
                .with_heartbeat(Duration::from_millis(200), Duration::from_millis(100))
                .is_err()
        );
        let ok = c.with_members(["a", "b"]).and_then(|c| c.with_local("b"));
        assert!(ok.is_ok_and(|c| c.local().as_str() == "b" && c.validate().is_ok()));
    }
}
