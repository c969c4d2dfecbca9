//! [`RedisResources`]: a [`ResourceManager`] shared by the members of a cluster through Redis.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::{Client, ClientLike, EventInterface, PubsubInterface};
use fred::types::{ClusterHash, CustomCommand, Value};
use serde::{Deserialize, Serialize};
use thywill_core::{CoreResult, Resource, ResourceKind, ResourceManager};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::error::FredResult;
use crate::{Error, decode, encode};

/// Settings of a [`RedisResources`] store.
#[derive(Clone, Debug)]
pub struct RedisResourcesConfig {
    target: crate::connect::Target,
    prefix: String,
    cache_capacity: usize,
    command_timeout: Duration,
}

impl Default for RedisResourcesConfig {
    fn default() -> Self {
        Self {
            target: crate::connect::Target::default(),
            prefix: "thywill:".into(),
            cache_capacity: 100,
            command_timeout: Duration::from_secs(2),
        }
    }
}

impl RedisResourcesConfig {
    crate::store::store_setters!(
        "Prefix of every key and channel (default `thywill:`), so that services can share a Redis server."
    );

    /// Resources each member keeps in its local cache (default 100; 0 turns the cache off).
    pub fn with_cache_capacity(mut self, capacity: usize) -> Result<Self, Error> {
        self.cache_capacity = capacity;
        Ok(self)
    }

    fn key(&self, client_path: &str) -> String {
        format!("{}resource:{client_path}", self.prefix)
    }

    fn bootstrap_key(&self) -> String {
        format!("{}resources:bootstrap", self.prefix)
    }

    fn invalidate_channel(&self) -> String {
        format!("{}resources:invalidate", self.prefix)
    }
}

/// A resource as stored in Redis.
#[derive(Serialize, Deserialize)]
struct Record {
    kind: ResourceKind,
    body: Vec<u8>,
    weight: i32,
    bootstrap: bool,
    template_id: Option<String>,
    origin: Option<String>,
    attributes: BTreeMap<String, String>,
}

/// An invalidation on the wire: who changed which path.
#[derive(Serialize, Deserialize)]
struct Invalidation {
    from: u64,
    path: String,
}

/// Least-recently-used cache of resources by client path.
#[derive(Default)]
struct Lru {
    capacity: usize,
    tick: u64,
    entries: HashMap<String, (Resource, u64)>,
    order: BTreeMap<u64, String>,
}

impl Lru {
    fn get(&mut self, path: &str) -> Option<Resource> {
        self.tick += 1;
        let tick = self.tick;
        let (r, used) = self.entries.get_mut(path)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, path.to_owned());
        Some(r.clone())
    }

    fn put(&mut self, r: Resource) {
        if self.capacity == 0 {
            return;
        }
        self.remove(&r.client_path);
        self.tick += 1;
        self.order.insert(self.tick, r.client_path.clone());
        self.entries.insert(r.client_path.clone(), (r, self.tick));
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }

    fn remove(&mut self, path: &str) {
        if let Some((_, used)) = self.entries.remove(path) {
            self.order.remove(&used);
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }
}

struct Inner {
    config: RedisResourcesConfig,
    client: Client,
    subscriber: SubscriberClient,
    /// Tells this store's invalidations from other members'.
    id: u64,
    cache: Mutex<Lru>,
    /// Bumped by every invalidation received: a load that saw it change does not cache.
    generation: AtomicU64,
}

impl Inner {
    fn cache(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn invalidate(&self, path: Option<&str>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut cache = self.cache();
        match path {
            Some(p) => cache.remove(p),
            None => cache.clear(),
        }
    }

    async fn bounded<T>(
        &self,
        what: &'static str,
        f: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, Error> {
        tokio::time::timeout(self.config.command_timeout, f)
            .await
            .map_err(|_| Error::Timeout(what))?
            .redis()
    }

    async fn command<R: fred::types::FromValue>(
        &self,
        name: &'static str,
        args: Vec<Value>,
    ) -> Result<R, Error> {
        let cmd = CustomCommand::new_static(name, ClusterHash::FirstKey, false);
        self.bounded(name, self.client.custom(cmd, args)).await
    }

    async fn publish(&self, path: &str) -> Result<(), Error> {
        let bytes = encode(&Invalidation {
            from: self.id,
            path: path.to_owned(),
        })?;
        let _: i64 = self
            .bounded(
                "publish",
                self.client
                    .publish(self.config.invalidate_channel(), bytes.as_slice()),
            )
            .await?;
        Ok(())
    }

    async fn store(&self, r: Resource) -> Result<(), Error> {
        let record = Record {
            kind: r.kind,
            body: r.body.to_vec(),
            weight: r.weight,
            bootstrap: r.bootstrap,
            template_id: r.template_id.clone(),
            origin: r.origin.clone(),
            attributes: r.attributes.clone(),
        };
        let bytes = encode(&record)?;
        let key = self.config.key(&r.client_path);
        let _: Value = self
            .command(
                "SET",
                vec![Value::from(key), Value::from(bytes.into_boxed_slice())],
            )
            .await?;
        let set = if r.bootstrap { "SADD" } else { "SREM" };
        let _: Value = self
            .command(
                set,
                vec![
                    Value::from(self.config.bootstrap_key()),
                    Value::from(r.client_path.as_str()),
                ],
            )
            .await?;
        let path = r.client_path.clone();
        self.cache().put(r);
        self.publish(&path).await
    }

    async fn load(&self, path: &str) -> Result<Option<Resource>, Error> {
        if let Some(hit) = self.cache().get(path) {
            return Ok(Some(hit));
        }
        let seen = self.generation.load(Ordering::SeqCst);
        let bytes: Option<Vec<u8>> = self
            .command("GET", vec![Value::from(self.config.key(path))])
            .await?;
        let Some(bytes) = bytes else { return Ok(None) };
        let record: Record = decode(&bytes)?;
        let mut r = Resource::new(path, record.body)
            .with_kind(record.kind)
            .with_weight(record.weight);
        r.bootstrap = record.bootstrap;
        r.template_id = record.template_id;
        r.origin = record.origin;
        r.attributes = record.attributes;
        let mut cache = self.cache();
        if self.generation.load(Ordering::SeqCst) == seen {
            cache.put(r.clone());
        }
        Ok(Some(r))
    }

    async fn remove(&self, path: &str) -> Result<(), Error> {
        let _: Value = self
            .command("DEL", vec![Value::from(self.config.key(path))])
            .await?;
        let _: Value = self
            .command(
                "SREM",
                vec![Value::from(self.config.bootstrap_key()), Value::from(path)],
            )
            .await?;
        self.cache().remove(path);
        self.publish(path).await
    }

    async fn bootstrap(&self) -> Result<Vec<Resource>, Error> {
        let paths: Vec<String> = self
            .command("SMEMBERS", vec![Value::from(self.config.bootstrap_key())])
            .await?;
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            if let Some(r) = self.load(&p).await?
                && r.bootstrap
            {
                out.push(r);
            }
        }
        out.sort_by(|a, b| {
            a.weight
                .cmp(&b.weight)
                .then_with(|| a.client_path.cmp(&b.client_path))
        });
        Ok(out)
    }
}

/// Listens for invalidations from other members (and clears everything after a reconnect,
/// since invalidations published meanwhile are lost).
async fn listen(
    inner: Arc<Inner>,
    mut messages: broadcast::Receiver<fred::types::Message>,
    mut reconnects: broadcast::Receiver<fred::types::config::Server>,
) {
    let channel = inner.config.invalidate_channel();
    loop {
        tokio::select! {
            m = messages.recv() => match m {
                Ok(m) => {
                    if *m.channel != *channel {
                        continue;
                    }
                    match m.value.as_bytes().map(decode::<Invalidation>) {
                        Some(Ok(inv)) if inv.from != inner.id => inner.invalidate(Some(&inv.path)),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => tracing::warn!(error = %e, "undecodable resource invalidation"),
                        None => tracing::warn!("resource invalidation without a body"),
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "resource invalidations lagged: cache cleared");
                    inner.invalidate(None);
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            r = reconnects.recv() => match r {
                Ok(server) => {
                    tracing::info!(%server, "redis reconnected: resource cache cleared");
                    inner.invalidate(None);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => inner.invalidate(None),
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

/// Resources in Redis, shared by every member, with a local LRU cache invalidated across the
/// cluster by pub/sub.
///
/// | key or channel | holds |
/// |---|---|
/// | `<prefix>resource:<client path>` | one resource (bincode) |
/// | `<prefix>resources:bootstrap` | set of the client paths of bootstrap resources |
/// | `<prefix>resources:invalidate` | pub/sub: a member changed or removed a resource |
///
/// A store or removal on one member writes Redis, updates its own cache and publishes the
/// path; every other member drops that path from its cache, so its next load reads the new
/// value. Invalidations are at-most-once (Redis pub/sub): after the subscriber reconnects, a
/// member clears its whole cache, and a load that raced with an invalidation is not cached.
/// Misses are not cached.
///
/// ```no_run
/// # async fn run() -> Result<(), thywill_cluster_redis::Error> {
/// use thywill_cluster_redis::{RedisResources, RedisResourcesConfig};
///
/// let store = RedisResources::connect(
///     RedisResourcesConfig::default()
///         .with_url("redis://127.0.0.1:6379")?
///         .with_prefix("thywill:draw:")?
///         .with_cache_capacity(100)?,
/// )
/// .await?;
/// // hand it to the node builder: Thywill::builder().resources(store)
/// # let _ = store; Ok(()) }
/// ```
pub struct RedisResources {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RedisResources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisResources")
            .field("prefix", &self.inner.config.prefix)
            .field("cached", &self.cached())
            .finish()
    }
}

impl RedisResources {
    /// Connects (two connections: commands, and the invalidation subscriber; both reconnect
    /// by themselves) and starts listening for invalidations.
    pub async fn connect(config: RedisResourcesConfig) -> Result<Self, Error> {
        let connector = crate::connect::Connector::for_store(&config.target, config.command_timeout)?;
        let client = connector.client()?;
        let subscriber = connector.subscriber()?;
        let bound = config.command_timeout * 2;
        connector.init(&client, "connect").await?;
        connector.init(&subscriber, "connect subscriber").await?;
        let resubscribe = subscriber.manage_subscriptions();
        let messages = subscriber.message_rx();
        let reconnects = subscriber.reconnect_rx();
        tokio::time::timeout(bound, subscriber.subscribe(config.invalidate_channel()))
            .await
            .map_err(|_| Error::Timeout("subscribe"))?
            .redis()?;
        let inner = Arc::new(Inner {
            cache: Mutex::new(Lru {
                capacity: config.cache_capacity,
                ..Lru::default()
            }),
            config,
            client,
            subscriber,
            id: rand::random(),
            generation: AtomicU64::new(0),
        });
        let listener = tokio::spawn(listen(inner.clone(), messages, reconnects));
        Ok(Self {
            inner,
            tasks: vec![resubscribe, listener],
        })
    }

    /// Number of resources in this member's cache.
    pub fn cached(&self) -> usize {
        self.inner.cache().entries.len()
    }

    /// Closes the connections.
    pub async fn quit(&self) {
        for t in &self.tasks {
            t.abort();
        }
        let bound = self.inner.config.command_timeout;
        let _ = tokio::time::timeout(bound, self.inner.subscriber.quit()).await;
        let _ = tokio::time::timeout(bound, self.inner.client.quit()).await;
    }
}

impl Drop for RedisResources {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let inner = self.inner.clone();
            rt.spawn(async move {
                let bound = inner.config.command_timeout;
                let _ = tokio::time::timeout(bound, inner.subscriber.quit()).await;
                let _ = tokio::time::timeout(bound, inner.client.quit()).await;
            });
        }
    }
}

impl ResourceManager for RedisResources {
    async fn store(&self, resource: Resource) -> CoreResult<()> {
        Ok(self.inner.store(resource).await?)
    }

    async fn load(&self, client_path: &str) -> CoreResult<Option<Resource>> {
        Ok(self.inner.load(client_path).await?)
    }

    async fn remove(&self, client_path: &str) -> CoreResult<()> {
        Ok(self.inner.remove(client_path).await?)
    }

    async fn bootstrap(&self) -> CoreResult<Vec<Resource>> {
        Ok(self.inner.bootstrap().await?)
    }
}

#[cfg(test)]
mod tests {
    use thywill_testkit::redis::RedisServer;

    use super::*;

    async fn member(redis: &RedisServer, prefix: &str) -> anyhow::Result<RedisResources> {
        Ok(RedisResources::connect(
            RedisResourcesConfig::default()
                .with_url(redis.url())?
                .with_prefix(prefix)?
                .with_cache_capacity(2)?,
        )
        .await?)
    }

    /// Polls `load` on `store` until `ok` holds, within the testkit's timeout.
    async fn eventually_loads(
        store: &RedisResources,
        path: &str,
        ok: impl Fn(Option<&Resource>) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
        loop {
            let r = store.load(path).await?;
            if ok(r.as_ref()) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("{path} did not reach the expected state; last: {r:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_change_on_one_member_is_seen_by_the_other() -> anyhow::Result<()> {
        let redis = RedisServer::start().await?;
        let alpha = member(&redis, "t:res:").await?;
        let beta = member(&redis, "t:res:").await?;
        let path = "/app/js/a.js";

        let v1 = Resource::new(path, "var a = 1;")
            .with_weight(3)
            .with_template_id("t")
            .with_origin("a.js")
            .with_attribute("etag", "\"1\"")
            .bootstrap();
        alpha.store(v1.clone()).await?;
        // Beta reads it from Redis, all attributes intact, and caches it.
        assert_eq!(beta.load(path).await?, Some(v1.clone()));
        assert_eq!(beta.cached(), 1);
        assert_eq!(beta.load(path).await?, Some(v1));

        // Alpha changes it: beta's cached copy is invalidated and it reads the new one.
        alpha.store(Resource::new(path, "var a = 2;").bootstrap()).await?;
        eventually_loads(&beta, path, |r| r.and_then(Resource::text) == Some("var a = 2;")).await?;

        // Bootstrap listings are shared too, in weight order.
        beta.store(
            Resource::new("/app/js/first.js", "var f;")
                .with_weight(-5)
                .bootstrap(),
        )
        .await?;
        beta.store(Resource::new("/app/js/extra.js", "var e;")).await?;
        let listed: Vec<String> = alpha
            .bootstrap()
            .await?
            .into_iter()
            .map(|r| r.client_path)
            .collect();
        assert_eq!(listed, ["/app/js/first.js", path]);

        // Beta removes it: alpha's copy goes too.
        assert!(alpha.load(path).await?.is_some());
        beta.remove(path).await?;
        eventually_loads(&alpha, path, |r| r.is_none()).await?;
        assert_eq!(alpha.bootstrap().await?.len(), 1);

        // Another prefix is another store.
        let other = member(&redis, "t:other:").await?;
        assert!(other.load("/app/js/first.js").await?.is_none());

        alpha.quit().await;
        beta.quit().await;
        other.quit().await;
        Ok(())
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_a_restart_clears_it() -> anyhow::Result<()> {
        let mut redis = RedisServer::start().await?;
        let alpha = member(&redis, "t:lru:").await?;
        for i in 0..5 {
            alpha
                .store(Resource::new(format!("/p/{i}.txt"), format!("{i}")))
                .await?;
        }
        assert_eq!(alpha.cached(), 2, "capacity 2");
        assert_eq!(
            alpha
                .load("/p/0.txt")
                .await?
                .and_then(|r| r.text().map(str::to_owned))
                .as_deref(),
            Some("0")
        );

        // Redis restarts empty: once the subscriber is back, nothing stale is served.
        redis.restart().await?;
        eventually_loads(&alpha, "/p/4.txt", |r| r.is_none()).await?;
        alpha.quit().await;
        Ok(())
    }

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let mut lru = Lru {
            capacity: 2,
            ..Lru::default()
        };
        lru.put(Resource::new("/a", "a"));
        lru.put(Resource::new("/b", "b"));
        assert!(lru.get("/a").is_some());
        lru.put(Resource::new("/c", "c"));
        assert!(lru.get("/b").is_none(), "b was the least recently used");
        assert!(lru.get("/a").is_some() && lru.get("/c").is_some());
        lru.remove("/a");
        assert_eq!(lru.entries.len(), lru.order.len());
    }
}
