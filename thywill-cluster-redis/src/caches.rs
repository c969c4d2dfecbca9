//! [`RedisCaches`]: named, bounded LRU caches in Redis, shared by the members of a cluster.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fred::types::{ClusterHash, Value};
use thywill_core::cache::{CacheLimits, CacheManager, check_name, not_created};
use thywill_core::{CoreError, CoreResult};

use crate::Error;
use crate::store::Commands;

/// Stores a value and evicts the least recently used entries over the limits; returns how many
/// went.
///
/// KEYS[1]: the values (hash); KEYS[2]: the order (sorted set, score = last use); KEYS[3]: the
/// meta hash (`t` the last use given out, `b` the bytes of every key and value). ARGV[1]: the
/// key; ARGV[2]: the value; ARGV[3]: entries kept; ARGV[4]: bytes kept.
///
/// The caller refuses an entry larger than ARGV[4] before it gets here, so the new entry (the
/// most recently used) is never evicted. When the values are gone (a flush, an eviction by
/// Redis), the order and the byte count start again from nothing.
const SET: &str = r"
local key = ARGV[1]
local max_entries = tonumber(ARGV[3])
local max_bytes = tonumber(ARGV[4])
local bytes = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  bytes = tonumber(redis.call('HGET', KEYS[3], 'b') or '0')
  local old = redis.call('HGET', KEYS[1], key)
  if old then
    bytes = bytes - #key - #old
  end
else
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[1], key, ARGV[2])
bytes = bytes + #key + #ARGV[2]
local tick = redis.call('HINCRBY', KEYS[3], 't', 1)
redis.call('ZADD', KEYS[2], tick, key)
local n = redis.call('HLEN', KEYS[1])
local evicted = 0
while n > max_entries or bytes > max_bytes do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not oldest or oldest == key then
    break
  end
  local v = redis.call('HGET', KEYS[1], oldest)
  if v then
    bytes = bytes - #oldest - #v
    redis.call('HDEL', KEYS[1], oldest)
    n = n - 1
    evicted = evicted + 1
  end
  redis.call('ZREM', KEYS[2], oldest)
end
redis.call('HSET', KEYS[3], 'b', bytes)
return evicted
";

/// Reads a value and makes it the most recently used. KEYS as [`SET`]; ARGV[1]: the key.
const GET: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then
  local tick = redis.call('HINCRBY', KEYS[3], 't', 1)
  redis.call('ZADD', KEYS[2], tick, ARGV[1])
end
return v
";

/// Removes a key; 1 if it was there. KEYS as [`SET`]; ARGV[1]: the key.
const REMOVE: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if not v then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'b', -(#ARGV[1] + #v))
return 1
";

/// Settings of [`RedisCaches`].
#[derive(Clone, Debug)]
pub struct RedisCachesConfig {
    target: crate::connect::Target,
    prefix: String,
    command_timeout: Duration,
}

impl Default for RedisCachesConfig {
    /// `redis://127.0.0.1:6379`, prefix `thywill:cache:`, 2 s per command.
    fn default() -> Self {
        Self {
            target: crate::connect::Target::default(),
            prefix: "thywill:cache:".into(),
            command_timeout: Duration::from_secs(2),
        }
    }
}

impl RedisCachesConfig {
    /// The Redis server: a URL as in the [crate docs](crate#redis-urls).
    pub fn with_url(mut self, url: impl Into<String>) -> Result<Self, Error> {
        self.target = self.target.with_url(url)?;
        Ok(self)
    }

    /// Trusts only the CA certificates in this PEM file for a `rediss://` URL (the file is read
    /// now; the URL must be set first).
    pub fn with_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Result<Self, Error> {
        self.target = self.target.with_ca_file(path)?;
        Ok(self)
    }

    /// Prefix of every key (default `thywill:cache:`); no whitespace and no braces (the
    /// cache's name is the keys' hash tag). See [`RedisCaches`] for the keys.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Result<Self, Error> {
        let prefix = prefix.into();
        crate::store::check_prefix(&prefix)?;
        if prefix.contains(['{', '}']) {
            return Err(Error::Config {
                setting: "prefix",
                reason: "must not contain braces: the cache's name is the keys' hash tag".into(),
            });
        }
        self.prefix = prefix;
        Ok(self)
    }

    /// Bound of every Redis command (default 2 s).
    pub fn with_command_timeout(mut self, timeout: Duration) -> Result<Self, Error> {
        crate::store::check_timeout(timeout)?;
        self.command_timeout = timeout;
        Ok(self)
    }

    /// The keys of a cache: values, order, meta.
    fn keys(&self, name: &str) -> [Value; 3] {
        let base = format!("{}{{{name}}}", self.prefix);
        [
            Value::from(format!("{base}:v")),
            Value::from(format!("{base}:o")),
            Value::from(format!("{base}:m")),
        ]
    }
}

/// Named LRU caches in Redis, shared by every member given the same Redis and prefix
/// ([`CacheManager::is_shared`] is true: one copy of every value, so the node has nothing to
/// invalidate, and a write on one member is read at once on every other).
///
/// | key | holds |
/// |---|---|
/// | `<prefix>{<name>}:v` | hash: the values, by key |
/// | `<prefix>{<name>}:o` | sorted set: the keys, scored by last use |
/// | `<prefix>{<name>}:m` | hash: `t` the last use given out, `b` the bytes of every key and value |
///
/// Every read and write is one Lua script over the three keys of one cache, which share the
/// cache's name as their hash tag (one slot, so Redis Cluster can run it): a `set` stores the
/// value and evicts the least recently used entries while the cache is over its entries or
/// bytes; a `get` marks the key used. The limits are this member's (given to
/// [`CacheManager::create`]) and apply at each write: members sharing a cache should give the
/// same. Values are bytes, stored as they are; nothing expires by age, and a cache's keys stay
/// until it is cleared or destroyed.
///
/// ```no_run
/// # async fn run() -> Result<(), thywill_cluster_redis::Error> {
/// use thywill_cluster_redis::{RedisCaches, RedisCachesConfig};
///
/// let caches = RedisCaches::connect(
///     RedisCachesConfig::default()
///         .with_url("redis://127.0.0.1:6379")?
///         .with_prefix("thywill:calculations:cache:")?,
/// )
/// .await?;
/// // hand it to the node builder: Thywill::builder().caches(caches)
/// # let _ = caches; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisCaches {
    config: RedisCachesConfig,
    redis: Arc<Commands>,
    limits: Arc<Mutex<HashMap<String, CacheLimits>>>,
}

impl std::fmt::Debug for RedisCaches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCaches")
            .field("prefix", &self.config.prefix)
            .field(
                "caches",
                &self.limits.lock().unwrap_or_else(PoisonError::into_inner).len(),
            )
            .finish()
    }
}

/// A count as Redis takes it.
fn count(n: usize) -> Value {
    Value::from(i64::try_from(n).unwrap_or(i64::MAX))
}

impl RedisCaches {
    /// Connects (one connection, which reconnects by itself).
    pub async fn connect(config: RedisCachesConfig) -> Result<Self, Error> {
        let redis = Commands::connect(&config.target, config.command_timeout).await?;
        Ok(Self {
            config,
            redis: Arc::new(redis),
            limits: Arc::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RedisCachesConfig {
        &self.config
    }

    /// Closes the connection.
    pub async fn quit(&self) {
        self.redis.quit().await;
    }

    fn created(&self, name: &str) -> CoreResult<CacheLimits> {
        CacheManager::limits(self, name).ok_or_else(|| not_created(name))
    }

    /// Runs one of the scripts over the keys of `name`.
    async fn script<R: fred::types::FromValue>(
        &self,
        script: &'static str,
        name: &str,
        args: Vec<Value>,
    ) -> Result<R, Error> {
        let mut all = vec![Value::from(script), Value::from(3)];
        all.extend(self.config.keys(name));
        all.extend(args);
        self.redis.run("EVAL", ClusterHash::Offset(2), all).await
    }
}

impl CacheManager for RedisCaches {
    fn is_shared(&self) -> bool {
        true
    }

    async fn create(&self, name: &str, limits: CacheLimits) -> CoreResult<()> {
        check_name(name)?;
        self.limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), limits);
        Ok(())
    }

    fn limits(&self, name: &str) -> Option<CacheLimits> {
        self.limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .copied()
    }

    async fn destroy(&self, name: &str) -> CoreResult<()> {
        self.clear(name).await?;
        self.limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        Ok(())
    }

    async fn get(&self, name: &str, key: &str) -> CoreResult<Option<Vec<u8>>> {
        self.created(name)?;
        let value: Option<Vec<u8>> = self.script(GET, name, vec![Value::from(key)]).await?;
        Ok(value)
    }

    async fn set(&self, name: &str, key: &str, value: Vec<u8>) -> CoreResult<()> {
        let limits = self.created(name)?;
        limits.check_entry(key, value.len())?;
        let args = vec![
            Value::from(key),
            Value::from(fred::bytes::Bytes::from(value)),
            count(limits.max_entries),
            count(limits.max_bytes),
        ];
        let evicted: i64 = self.script(SET, name, args).await?;
        if evicted > 0 {
            tracing::trace!(cache = name, evicted, "least recently used entries evicted");
        }
        Ok(())
    }

    async fn remove(&self, name: &str, key: &str) -> CoreResult<bool> {
        self.created(name)?;
        let removed: i64 = self.script(REMOVE, name, vec![Value::from(key)]).await?;
        Ok(removed == 1)
    }

    async fn clear(&self, name: &str) -> CoreResult<()> {
        self.created(name)?;
        let keys = self.config.keys(name).to_vec();
        let _: i64 = self
            .redis
            .run("DEL", ClusterHash::FirstKey, keys)
            .await
            .map_err(CoreError::from)?;
        Ok(())
    }

    async fn len(&self, name: &str) -> CoreResult<usize> {
        self.created(name)?;
        let [values, _, _] = self.config.keys(name);
        let n: i64 = self
            .redis
            .run("HLEN", ClusterHash::FirstKey, vec![values])
            .await?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}
