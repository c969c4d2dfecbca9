//! Cluster-wide invalidation of the node's caches.
//!
//! Applications reach the node's [`CacheManager`] through [`Invalidating`], which passes every
//! call on and, when the manager holds one copy per member ([`CacheManager::is_shared`]
//! false), tells the other members of every write with a `thywill.cache` task: a `set`,
//! `remove`, `clear` or `destroy` here evicts the key (or the whole cache) from every other
//! member's copy ([`on_cache_task`]). Where member-to-member traffic may have been lost (a gap,
//! a member back up), every local copy is dropped ([`on_link_loss`]): a miss costs a
//! recomputation, a stale value would be wrong.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thywill_core::cache::{CacheLimits, CacheManager, DynCacheManager};
use thywill_core::{CoreResult, DynCluster, MemberId, Task};

/// Cluster task: drop the local copy of a key (of the whole cache when `key` is `None`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Invalidate {
    cache: String,
    key: Option<String>,
}

impl Task for Invalidate {
    const NAME: &'static str = "thywill.cache";
}

/// The node's cache manager as applications see it: writes are invalidated on the other
/// members.
pub(crate) struct Invalidating {
    caches: Arc<dyn DynCacheManager>,
    cluster: Arc<dyn DynCluster>,
}

impl Invalidating {
    pub(crate) fn new(caches: Arc<dyn DynCacheManager>, cluster: Arc<dyn DynCluster>) -> Self {
        Self { caches, cluster }
    }

    /// Tells the other members to drop their copies of `key` (every key when `None`). A task
    /// that could not be sent is an error: the write happened here, but other members may
    /// keep a stale value until their copy is evicted.
    async fn invalidate(&self, cache: &str, key: Option<&str>) -> CoreResult<()> {
        if self.caches.is_shared() || self.cluster.members().len() < 2 {
            return Ok(());
        }
        let task = Invalidate {
            cache: cache.to_owned(),
            key: key.map(str::to_owned),
        }
        .to_task()?;
        self.cluster.send_to_others(task).await.inspect_err(|e| {
            tracing::warn!(cache, error = %e, "cache invalidation not sent to the other members");
        })
    }
}

impl CacheManager for Invalidating {
    fn is_shared(&self) -> bool {
        self.caches.is_shared()
    }

    async fn create(&self, name: &str, limits: CacheLimits) -> CoreResult<()> {
        self.caches.create(name, limits).await
    }

    fn limits(&self, name: &str) -> Option<CacheLimits> {
        self.caches.limits(name)
    }

    async fn destroy(&self, name: &str) -> CoreResult<()> {
        self.caches.destroy(name).await?;
        self.invalidate(name, None).await
    }

    async fn get(&self, name: &str, key: &str) -> CoreResult<Option<Vec<u8>>> {
        self.caches.get(name, key).await
    }

    async fn set(&self, name: &str, key: &str, value: Vec<u8>) -> CoreResult<()> {
        self.caches.set(name, key, value).await?;
        self.invalidate(name, Some(key)).await
    }

    async fn remove(&self, name: &str, key: &str) -> CoreResult<bool> {
        let removed = self.caches.remove(name, key).await?;
        // Another member may hold the key even where this one did not.
        self.invalidate(name, Some(key)).await?;
        Ok(removed)
    }

    async fn clear(&self, name: &str) -> CoreResult<()> {
        self.caches.clear(name).await?;
        self.invalidate(name, None).await
    }

    async fn len(&self, name: &str) -> CoreResult<usize> {
        self.caches.len(name).await
    }

    fn evict(&self, name: &str, key: Option<&str>) {
        self.caches.evict(name, key);
    }

    fn evict_all(&self) {
        self.caches.evict_all();
    }
}

/// Handles a `thywill.cache` task from `from`: drops the local copy it names.
pub(crate) fn on_cache_task(caches: &dyn DynCacheManager, from: &MemberId, task: CoreResult<Invalidate>) {
    match task {
        Ok(Invalidate { cache, key }) => {
            tracing::trace!(%from, cache, key = ?key, "cache key invalidated by another member");
            caches.evict(&cache, key.as_deref());
        }
        Err(e) => tracing::warn!(%from, error = %e, "bad cache invalidation task"),
    }
}

/// News of writes on other members may have been lost (`why`): every local copy goes.
pub(crate) fn on_link_loss(caches: &dyn DynCacheManager, member: &MemberId, why: &'static str) {
    if !caches.is_shared() {
        tracing::debug!(%member, why, "local cache copies dropped");
        caches.evict_all();
    }
}
