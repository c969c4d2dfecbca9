//! [`RedisSessions`]: a [`SessionStore`] in Redis, shared by the members of a cluster, with a
//! rolling expiry.

use std::sync::Arc;
use std::time::Duration;

use fred::types::{ClusterHash, Value};
use thywill_core::{BoxFuture, CoreResult, SessionData, SessionId, SessionStore};

use crate::Error;
use crate::store::Commands;

/// Settings of a [`RedisSessions`] store.
#[derive(Clone, Debug)]
pub struct RedisSessionsConfig {
    url: String,
    prefix: String,
    ttl: Duration,
    command_timeout: Duration,
}

impl Default for RedisSessionsConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "thywill:".into(),
            ttl: Duration::from_secs(24 * 60 * 60),
            command_timeout: Duration::from_secs(2),
        }
    }
}

impl RedisSessionsConfig {
    crate::store::store_setters!(
        "Prefix of every key (default `thywill:`); a session is stored at `<prefix>session:<id>`."
    );

    /// How long a session lives after it was last stored or loaded (default 24 h; whole
    /// seconds, at least one). The WebSocket handshake loads the session, so a session lives as
    /// long as its browser comes back within this time.
    pub fn with_ttl(mut self, ttl: Duration) -> Result<Self, Error> {
        if ttl.as_secs() == 0 {
            return Err(Error::Config {
                setting: "ttl",
                reason: "must be at least one second".into(),
            });
        }
        self.ttl = ttl;
        Ok(self)
    }

    fn key(&self, id: &SessionId) -> String {
        format!("{}session:{id}", self.prefix)
    }
}

/// Sessions in Redis: one string key per session, `<prefix>session:<id>`, holding the session's
/// data as JSON, with an expiry renewed on every load and store (`GETEX` / `SET ... EX`; Redis
/// 6.2 or later). Every member of a cluster given the same Redis and prefix shares the sessions,
/// so a browser keeps its session whichever member it reaches.
///
/// ```no_run
/// # async fn run() -> Result<(), thywill_cluster_redis::Error> {
/// use thywill_cluster_redis::{RedisSessions, RedisSessionsConfig};
///
/// let store = RedisSessions::connect(
///     RedisSessionsConfig::default()
///         .with_url("redis://127.0.0.1:6379")?
///         .with_prefix("thywill:chat:")?,
/// )
/// .await?;
/// // Thywill::builder().sessions(config).session_store(store)
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisSessions {
    config: RedisSessionsConfig,
    redis: Arc<Commands>,
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessions")
            .field("prefix", &self.config.prefix)
            .field("ttl", &self.config.ttl)
            .finish()
    }
}

impl RedisSessions {
    /// Connects (one connection, which reconnects by itself).
    pub async fn connect(config: RedisSessionsConfig) -> Result<Self, Error> {
        let redis = Commands::connect(&config.url, config.command_timeout).await?;
        Ok(Self {
            config,
            redis: Arc::new(redis),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RedisSessionsConfig {
        &self.config
    }

    /// Closes the connection.
    pub async fn quit(&self) {
        self.redis.quit().await;
    }

    fn ttl_secs(&self) -> Value {
        Value::from(i64::try_from(self.config.ttl.as_secs()).unwrap_or(i64::MAX))
    }

    async fn load(&self, id: &SessionId) -> Result<Option<SessionData>, Error> {
        let json: Option<String> = self
            .redis
            .run(
                "GETEX",
                ClusterHash::FirstKey,
                vec![
                    Value::from(self.config.key(id)),
                    Value::from("EX"),
                    self.ttl_secs(),
                ],
            )
            .await?;
        match json {
            None => Ok(None),
            Some(j) => serde_json::from_str(&j)
                .map(Some)
                .map_err(|e| Error::Codec(format!("session {id}: {e}"))),
        }
    }

    async fn store(&self, id: &SessionId, data: &SessionData) -> Result<(), Error> {
        let json = serde_json::to_string(data).map_err(|e| Error::Codec(e.to_string()))?;
        let _: Value = self
            .redis
            .run(
                "SET",
                ClusterHash::FirstKey,
                vec![
                    Value::from(self.config.key(id)),
                    Value::from(json),
                    Value::from("EX"),
                    self.ttl_secs(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn remove(&self, id: &SessionId) -> Result<(), Error> {
        let _: Value = self
            .redis
            .run(
                "DEL",
                ClusterHash::FirstKey,
                vec![Value::from(self.config.key(id))],
            )
            .await?;
        Ok(())
    }
}

impl SessionStore for RedisSessions {
    /// Yes: every member given the same Redis and prefix reads the same keys.
    fn is_shared(&self) -> bool {
        true
    }
    fn load(&self, id: &SessionId) -> BoxFuture<'_, CoreResult<Option<SessionData>>> {
        let id = id.clone();
        Box::pin(async move { Ok(self.load(&id).await?) })
    }

    fn store(&self, id: &SessionId, data: SessionData) -> BoxFuture<'_, CoreResult<()>> {
        let id = id.clone();
        Box::pin(async move { Ok(self.store(&id, &data).await?) })
    }

    fn remove(&self, id: &SessionId) -> BoxFuture<'_, CoreResult<()>> {
        let id = id.clone();
        Box::pin(async move { Ok(self.remove(&id).await?) })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use thywill_testkit::redis::RedisServer;

    use super::*;

    #[tokio::test]
    async fn sessions_are_shared_and_expire() -> anyhow::Result<()> {
        let redis = RedisServer::start().await?;
        let config = RedisSessionsConfig::default()
            .with_url(redis.url())?
            .with_prefix("t:s:")?
            .with_ttl(Duration::from_secs(1))?;
        let alpha = RedisSessions::connect(config.clone()).await?;
        let beta = RedisSessions::connect(config).await?;
        let id = SessionId::from("abc");
        let mut data = SessionData::new();
        data.insert("user".into(), json!("ann"));
        SessionStore::store(&alpha, &id, data.clone()).await?;
        assert_eq!(SessionStore::load(&beta, &id).await?, Some(data));
        assert_eq!(SessionStore::load(&beta, &"other".into()).await?, None);

        // Loading renews the expiry; a session left alone expires.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
        while tokio::time::Instant::now() < deadline {
            assert!(
                SessionStore::load(&alpha, &id).await?.is_some(),
                "renewed by loads"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Left alone (EXISTS does not renew), it expires.
        let gone = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
        loop {
            let exists: i64 = alpha
                .redis
                .run(
                    "EXISTS",
                    ClusterHash::FirstKey,
                    vec![Value::from("t:s:session:abc")],
                )
                .await?;
            if exists == 0 {
                break;
            }
            anyhow::ensure!(tokio::time::Instant::now() < gone, "the session did not expire");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(SessionStore::load(&beta, &id).await?, None);
        SessionStore::store(&alpha, &id, SessionData::new()).await?;
        SessionStore::remove(&beta, &id).await?;
        assert_eq!(SessionStore::load(&alpha, &id).await?, None);
        assert!(
            RedisSessionsConfig::default()
                .with_ttl(Duration::from_millis(10))
                .is_err()
        );
        alpha.quit().await;
        beta.quit().await;
        Ok(())
    }
}
