//! [`RedisBackend`]: the Redis backend as one bundle — cluster, shared replay history, channels
//! of sessions and sessions (and resources, when asked) — installed by one builder call.

use thywill_core::{Backend, BackendParts, CoreResult, HistoryLimits, MemberId};

use crate::{
    Error, RedisChannels, RedisChannelsConfig, RedisCluster, RedisClusterConfig, RedisHistory,
    RedisHistoryConfig, RedisResources, RedisResourcesConfig, RedisSessions, RedisSessionsConfig,
};

/// Everything a node needs from Redis, installed as one bundle
/// (`Thywill::builder().backend(RedisBackend::new(url)?…)`): when the node starts it connects
///
/// | part | type | keys / channels (prefix `p`, default `thywill:`) |
/// |---|---|---|
/// | cluster | [`RedisCluster`], with the cluster-wide client tracker | `<p>cluster:…` |
/// | replay history | [`RedisHistory`] (shared: clients recover on any member) | `<p>history:…` |
/// | channels of sessions | [`RedisChannels`] | `<p>{channels}:channelsessionids:…`, `<p>{channels}:sessionchannelids:…` |
/// | sessions | [`RedisSessions`] | `<p>session:{<id>}`, `<p>session-apps:{<id>}` |
/// | resources (only with [`with_resources`](Self::with_resources)) | [`RedisResources`] | `<p>resource:…` |
///
/// all on the same Redis server (or Redis Cluster, or Sentinel-watched primary: see the
/// [crate docs](crate#redis-urls)). Every member of one cluster is given the same URL and prefix.
///
/// ```no_run
/// # fn run() -> Result<(), thywill_cluster_redis::Error> {
/// use thywill_cluster_redis::RedisBackend;
///
/// let backend = RedisBackend::new("redis://127.0.0.1:6379")?
///     .with_members(["alpha", "beta", "gamma"])?
///     .with_local("alpha")?
///     .with_prefix("thywill:chat:")?;
/// // Thywill::builder().backend(backend)
/// # let _ = backend; Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct RedisBackend {
    cluster: RedisClusterConfig,
    history: Option<RedisHistoryConfig>,
    sessions: RedisSessionsConfig,
    channels: RedisChannelsConfig,
    resources: Option<RedisResourcesConfig>,
}

impl RedisBackend {
    /// Every part on the Redis server at `url` (`redis://[user:password@]host:port[/db]`), keys
    /// and channels under `thywill:`, a single member `alpha` until
    /// [`with_members`](Self::with_members).
    pub fn new(url: impl Into<String>) -> Result<Self, Error> {
        let url = url.into();
        Self {
            cluster: RedisClusterConfig::default(),
            history: Some(RedisHistoryConfig::default()),
            sessions: RedisSessionsConfig::default(),
            channels: RedisChannelsConfig::default(),
            resources: None,
        }
        .with_url(url)?
        .with_prefix("thywill:")
    }

    /// Trusts only the CA certificates in this PEM file for every part's `rediss://` connection
    /// (the file is read now).
    pub fn with_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        self.cluster = self.cluster.with_ca_file(path.clone())?;
        self.history = self.history.map(|h| h.with_ca_file(path.clone())).transpose()?;
        self.sessions = self.sessions.with_ca_file(path.clone())?;
        self.channels = self.channels.with_ca_file(path.clone())?;
        self.resources = self.resources.map(|r| r.with_ca_file(path)).transpose()?;
        Ok(self)
    }

    fn with_url(mut self, url: String) -> Result<Self, Error> {
        self.cluster = self.cluster.with_url(url.clone())?;
        self.history = self.history.map(|h| h.with_url(url.clone())).transpose()?;
        self.sessions = self.sessions.with_url(url.clone())?;
        self.channels = self.channels.with_url(url.clone())?;
        self.resources = self.resources.map(|r| r.with_url(url)).transpose()?;
        Ok(self)
    }

    /// The prefix of every part's keys and channels (see the table above; default `thywill:`):
    /// one per service sharing a Redis server, such as `thywill:chat:`. Sets the prefix of every
    /// part configured so far.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Result<Self, Error> {
        let p = prefix.into();
        self.cluster = self.cluster.with_prefix(format!("{p}cluster:"))?;
        self.history = self
            .history
            .map(|h| h.with_prefix(format!("{p}history:")))
            .transpose()?;
        self.sessions = self.sessions.with_prefix(p.clone())?;
        self.channels = self.channels.with_prefix(p.clone())?;
        self.resources = self.resources.map(|r| r.with_prefix(p)).transpose()?;
        Ok(self)
    }

    /// Every member of the cluster, in ring order (see
    /// [`RedisClusterConfig::with_members`]).
    pub fn with_members<I, M>(mut self, members: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = M>,
        M: Into<MemberId>,
    {
        self.cluster = self.cluster.with_members(members)?;
        Ok(self)
    }

    /// The local member; one of the members.
    pub fn with_local(mut self, local: impl Into<MemberId>) -> Result<Self, Error> {
        self.cluster = self.cluster.with_local(local)?;
        Ok(self)
    }

    /// Heartbeat period and timeout (see [`RedisClusterConfig::with_heartbeat`]).
    pub fn with_heartbeat(
        mut self,
        interval: std::time::Duration,
        timeout: std::time::Duration,
    ) -> Result<Self, Error> {
        self.cluster = self.cluster.with_heartbeat(interval, timeout)?;
        Ok(self)
    }

    /// Bounds of the shared replay history (see [`RedisHistoryConfig::with_limits`]); every
    /// member should use the same.
    pub fn with_history_limits(mut self, limits: HistoryLimits) -> Result<Self, Error> {
        self.history = self.history.map(|h| h.with_limits(limits)).transpose()?;
        Ok(self)
    }

    /// Replaces the cluster's settings (URL, prefix, members, heartbeat, queue).
    pub fn with_cluster(mut self, config: RedisClusterConfig) -> Self {
        self.cluster = config;
        self
    }

    /// Replaces the shared history's settings.
    pub fn with_history(mut self, config: RedisHistoryConfig) -> Self {
        self.history = Some(config);
        self
    }

    /// No shared history: each member logs in memory for itself, so a client recovers what it
    /// missed only on the member it was connected to.
    pub fn without_history(mut self) -> Self {
        self.history = None;
        self
    }

    /// Replaces the session store's settings (such as its TTL).
    pub fn with_sessions(mut self, config: RedisSessionsConfig) -> Self {
        self.sessions = config;
        self
    }

    /// Replaces the channel store's settings.
    pub fn with_channels(mut self, config: RedisChannelsConfig) -> Self {
        self.channels = config;
        self
    }

    /// Keeps resources in Redis too ([`RedisResources`]: stored once, served by every member).
    pub fn with_resources(mut self, config: RedisResourcesConfig) -> Self {
        self.resources = Some(config);
        self
    }

    /// The cluster's settings.
    pub fn cluster_config(&self) -> &RedisClusterConfig {
        &self.cluster
    }

    /// The shared history's settings, unless [`without_history`](Self::without_history).
    pub fn history_config(&self) -> Option<&RedisHistoryConfig> {
        self.history.as_ref()
    }

    /// Connects every part.
    async fn parts(self) -> Result<BackendParts, Error> {
        let cluster = RedisCluster::new(self.cluster)?;
        let mut parts = BackendParts::new("redis", cluster)
            .with_session_store(RedisSessions::connect(self.sessions).await?)
            .with_channels(RedisChannels::connect(self.channels).await?);
        if let Some(history) = self.history {
            parts = parts.with_history(RedisHistory::connect(history).await?);
        }
        if let Some(resources) = self.resources {
            parts = parts.with_resources(RedisResources::connect(resources).await?);
        }
        Ok(parts)
    }
}

impl Backend for RedisBackend {
    async fn connect(self) -> CoreResult<BackendParts> {
        Ok(self.parts().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_prefix_names_every_part() -> Result<(), Error> {
        let b = RedisBackend::new("redis://127.0.0.1:1")?
            .with_members(["alpha", "beta"])?
            .with_local("beta")?
            .with_prefix("thywill:chat:")?;
        assert_eq!(
            b.cluster_config().channel_of(&"beta".into()),
            "thywill:chat:cluster:member:beta"
        );
        assert!(b.history_config().is_some(), "a shared history by default");
        assert!(RedisBackend::new("rediss://127.0.0.1:1").is_ok());
        assert!(
            RedisBackend::new("redis://127.0.0.1:1")?
                .with_ca_file("/nonexistent.pem")
                .is_err()
        );
        assert!(RedisBackend::new("not a url").is_err());
        assert!(b.without_history().history_config().is_none());
        Ok(())
    }
}
