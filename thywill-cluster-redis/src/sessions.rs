//! [`RedisSessions`]: a [`SessionStore`] in Redis, shared by the members of a cluster, with a
//! rolling expiry.

use std::sync::Arc;
use std::time::Duration;

use fred::types::{ClusterHash, Value};
use thywill_core::{ApplicationId, CoreError, CoreResult, SessionData, SessionId, SessionStore};

use crate::Error;
use crate::store::Commands;

/// Settings of a [`RedisSessions`] store.
#[derive(Clone, Debug)]
pub struct RedisSessionsConfig {
    target: crate::connect::Target,
    prefix: String,
    ttl: Duration,
    command_timeout: Duration,
}

impl Default for RedisSessionsConfig {
    fn default() -> Self {
        Self {
            target: crate::connect::Target::default(),
            prefix: "thywill:".into(),
            ttl: Duration::from_secs(24 * 60 * 60),
            command_timeout: Duration::from_secs(2),
        }
    }
}

impl RedisSessionsConfig {
    crate::store::store_setters!(
        "Prefix of every key (default `thywill:`); a session is stored at `<prefix>session:{<id>}`."
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
        format!("{}session:{}", self.prefix, crate::store::hash_tag(id.as_str()))
    }

    /// The hash of the applications' data in a session.
    fn apps_key(&self, id: &SessionId) -> String {
        format!(
            "{}session-apps:{}",
            self.prefix,
            crate::store::hash_tag(id.as_str())
        )
    }
}

/// Compare and set of one application's data in an existing session, renewing both: -1 when
/// the session does not exist, 0 when the data is not (any more) what was expected, 1 when
/// it was replaced.
/// KEYS[1]: the session; KEYS[2]: its applications' hash; ARGV[1]: the expiry in seconds;
/// ARGV[2]: the application; ARGV[3]: 'absent' or 'equal' (to ARGV[4]); ARGV[5]: 'set' (to
/// ARGV[6]) or 'del'.
const REPLACE_APP: &str = r"
if redis.call('EXPIRE', KEYS[1], ARGV[1]) == 0 then
  return -1
end
redis.call('EXPIRE', KEYS[2], ARGV[1])
local now = redis.call('HGET', KEYS[2], ARGV[2])
if ARGV[3] == 'absent' then
  if now then return 0 end
elseif now ~= ARGV[4] then
  return 0
end
if ARGV[5] == 'set' then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[6])
  redis.call('EXPIRE', KEYS[2], ARGV[1])
else
  redis.call('HDEL', KEYS[2], ARGV[2])
end
return 1
";

/// Loads a session and renews it with its applications' data.
/// KEYS[1]: the session; KEYS[2]: its applications' hash; ARGV[1]: the expiry in seconds.
const LOAD: &str = r"
local data = redis.call('GETEX', KEYS[1], 'EX', ARGV[1])
if data then
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
return data
";

/// Stores a session and renews its applications' data.
/// KEYS[1]: the session; KEYS[2]: its applications' hash; ARGV[1]: the expiry in seconds;
/// ARGV[2]: the session's data.
const STORE: &str = r"
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
";

/// One application's data in a session, renewing both (nil when the session does not exist).
/// KEYS[1]: the session; KEYS[2]: its applications' hash; ARGV[1]: the expiry in seconds;
/// ARGV[2]: the application.
const LOAD_APP: &str = r"
if redis.call('EXPIRE', KEYS[1], ARGV[1]) == 0 then
  return false
end
redis.call('EXPIRE', KEYS[2], ARGV[1])
return redis.call('HGET', KEYS[2], ARGV[2])
";

/// Sets (ARGV[3] = 'set', ARGV[4] the data) or deletes (ARGV[3] = 'del') one application's
/// data in an existing session, renewing both; 0 when the session does not exist.
/// KEYS[1]: the session; KEYS[2]: its applications' hash; ARGV[1]: the expiry in seconds;
/// ARGV[2]: the application.
const STORE_APP: &str = r"
if redis.call('EXPIRE', KEYS[1], ARGV[1]) == 0 then
  return 0
end
if ARGV[3] == 'set' then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
else
  redis.call('HDEL', KEYS[2], ARGV[2])
end
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
";

/// Sessions in Redis: one string key per session, `<prefix>session:{<id>}`, holding the session's
/// data as JSON, with an expiry renewed on every load and store (`GETEX` / `SET ... EX`; Redis
/// 6.2 or later). Every member of a cluster given the same Redis and prefix shares the sessions,
/// so a browser keeps its session whichever member it reaches.
///
/// The data applications keep in a session (`AppContext::session_data`) is a hash beside it,
/// `<prefix>session-apps:{<id>}`, one field per application holding its JSON, written with
/// `HSET` / `HDEL` (so applications never overwrite each other's) and renewed with the session
/// (each access is one Lua script over both keys; the session id in braces is their hash tag,
/// so on Redis Cluster both sit on one slot).
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
        let redis = Commands::connect(&config.target, config.command_timeout).await?;
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

    /// Runs one of this store's scripts over a session's two keys.
    async fn script<R: fred::types::FromValue>(
        &self,
        script: &'static str,
        id: &SessionId,
        args: impl IntoIterator<Item = Value>,
    ) -> Result<R, Error> {
        let mut all = vec![
            Value::from(script),
            Value::from(2),
            Value::from(self.config.key(id)),
            Value::from(self.config.apps_key(id)),
            self.ttl_secs(),
        ];
        all.extend(args);
        self.redis.run("EVAL", ClusterHash::Offset(2), all).await
    }

    async fn load(&self, id: &SessionId) -> Result<Option<SessionData>, Error> {
        let json: Option<String> = self.script(LOAD, id, []).await?;
        match json {
            None => Ok(None),
            Some(j) => serde_json::from_str(&j)
                .map(Some)
                .map_err(|e| Error::Codec(format!("session {id}: {e}"))),
        }
    }

    async fn store(&self, id: &SessionId, data: &SessionData) -> Result<(), Error> {
        let json = serde_json::to_string(data).map_err(|e| Error::Codec(e.to_string()))?;
        let _: Value = self.script(STORE, id, [Value::from(json)]).await?;
        Ok(())
    }

    async fn remove(&self, id: &SessionId) -> Result<(), Error> {
        let _: Value = self
            .redis
            .run(
                "DEL",
                ClusterHash::FirstKey,
                vec![
                    Value::from(self.config.key(id)),
                    Value::from(self.config.apps_key(id)),
                ],
            )
            .await?;
        Ok(())
    }

    async fn load_app(&self, id: &SessionId, app: &ApplicationId) -> Result<Option<String>, Error> {
        self.script(LOAD_APP, id, [Value::from(app.as_str())]).await
    }

    /// Whether the session exists (and so the data was stored or deleted).
    async fn store_app(
        &self,
        id: &SessionId,
        app: &ApplicationId,
        data: Option<String>,
    ) -> Result<bool, Error> {
        let args = match data {
            Some(d) => vec![Value::from(app.as_str()), Value::from("set"), Value::from(d)],
            None => vec![Value::from(app.as_str()), Value::from("del")],
        };
        let stored: i64 = self.script(STORE_APP, id, args).await?;
        Ok(stored == 1)
    }

    /// `None` when the session does not exist, else whether the data was replaced.
    async fn replace_app(
        &self,
        id: &SessionId,
        app: &ApplicationId,
        current: Option<String>,
        data: Option<String>,
    ) -> Result<Option<bool>, Error> {
        let (expect, expected) = match current {
            Some(c) => ("equal", c),
            None => ("absent", String::new()),
        };
        let (write, written) = match data {
            Some(d) => ("set", d),
            None => ("del", String::new()),
        };
        let args = [
            Value::from(app.as_str()),
            Value::from(expect),
            Value::from(expected),
            Value::from(write),
            Value::from(written),
        ];
        let replaced: i64 = self.script(REPLACE_APP, id, args).await?;
        Ok((replaced >= 0).then_some(replaced == 1))
    }
}

impl SessionStore for RedisSessions {
    /// Yes: every member given the same Redis and prefix reads the same keys.
    fn is_shared(&self) -> bool {
        true
    }
    async fn load(&self, id: &SessionId) -> CoreResult<Option<SessionData>> {
        Ok(self.load(id).await?)
    }

    async fn store(&self, id: &SessionId, data: SessionData) -> CoreResult<()> {
        Ok(self.store(id, &data).await?)
    }

    async fn remove(&self, id: &SessionId) -> CoreResult<()> {
        Ok(self.remove(id).await?)
    }
    async fn load_app_data(&self, id: &SessionId, app: &ApplicationId) -> CoreResult<Option<String>> {
        Ok(self.load_app(id, app).await?)
    }

    async fn store_app_data(
        &self,
        id: &SessionId,
        app: &ApplicationId,
        data: Option<String>,
    ) -> CoreResult<()> {
        if self.store_app(id, app, data).await? {
            Ok(())
        } else {
            Err(CoreError::NotFound(format!("session {id}")))
        }
    }

    async fn replace_app_data(
        &self,
        id: &SessionId,
        app: &ApplicationId,
        current: Option<String>,
        data: Option<String>,
    ) -> CoreResult<bool> {
        self.replace_app(id, app, current, data)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("session {id}")))
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
        assert_eq!(SessionStore::load(&beta, &id).await?, Some(data.clone()));
        assert_eq!(SessionStore::load(&beta, &"other".into()).await?, None);

        // Applications' data: beside the session's, one entry each, shared by the members.
        let (chat, draw) = (ApplicationId::from("chat"), ApplicationId::from("draw"));
        alpha
            .store_app_data(&id, &chat, Some(r#"{"n":1}"#.into()))
            .await?;
        beta.store_app_data(&id, &draw, Some("[]".into())).await?;
        assert_eq!(
            beta.load_app_data(&id, &chat).await?.as_deref(),
            Some(r#"{"n":1}"#)
        );
        assert_eq!(alpha.load_app_data(&id, &draw).await?.as_deref(), Some("[]"));
        SessionStore::store(&beta, &id, data.clone()).await?;
        assert_eq!(
            alpha.load_app_data(&id, &chat).await?.as_deref(),
            Some(r#"{"n":1}"#)
        );
        beta.store_app_data(&id, &draw, None).await?;
        assert_eq!(alpha.load_app_data(&id, &draw).await?, None);
        // Compare and set, across members.
        assert!(!alpha.replace_app_data(&id, &chat, None, Some("2".into())).await?);
        assert!(
            !alpha
                .replace_app_data(&id, &chat, Some("0".into()), Some("2".into()))
                .await?
        );
        assert!(
            beta.replace_app_data(&id, &chat, Some(r#"{"n":1}"#.into()), Some(r#"{"n":2}"#.into()))
                .await?
        );
        assert_eq!(
            alpha.load_app_data(&id, &chat).await?.as_deref(),
            Some(r#"{"n":2}"#)
        );
        assert!(
            alpha
                .replace_app_data(&id, &draw, None, Some("[1]".into()))
                .await?
        );
        assert!(
            beta.replace_app_data(&id, &draw, Some("[1]".into()), None)
                .await?
        );
        assert_eq!(alpha.load_app_data(&id, &draw).await?, None);
        assert!(matches!(
            alpha
                .replace_app_data(&"unknown".into(), &chat, None, Some("1".into()))
                .await,
            Err(CoreError::NotFound(_))
        ));
        assert_eq!(SessionStore::load(&alpha, &id).await?, Some(data.clone()));
        let unknown = SessionId::from("unknown");
        assert!(matches!(
            alpha.store_app_data(&unknown, &chat, Some("1".into())).await,
            Err(CoreError::NotFound(_))
        ));
        assert_eq!(alpha.load_app_data(&unknown, &chat).await?, None);

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
                    vec![Value::from("t:s:session:{abc}")],
                )
                .await?;
            if exists == 0 {
                break;
            }
            anyhow::ensure!(tokio::time::Instant::now() < gone, "the session did not expire");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(SessionStore::load(&beta, &id).await?, None);
        // The applications' data expired with it.
        let apps: i64 = alpha
            .redis
            .run(
                "EXISTS",
                ClusterHash::FirstKey,
                vec![Value::from("t:s:session-apps:{abc}")],
            )
            .await?;
        assert_eq!(apps, 0);
        SessionStore::store(&alpha, &id, SessionData::new()).await?;
        alpha.store_app_data(&id, &chat, Some("2".into())).await?;
        SessionStore::remove(&beta, &id).await?;
        assert_eq!(SessionStore::load(&alpha, &id).await?, None);
        assert_eq!(alpha.load_app_data(&id, &chat).await?, None);
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
