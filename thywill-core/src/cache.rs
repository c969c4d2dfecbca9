//! Named, bounded LRU caches: the [`CacheManager`] trait, the application's [`Cache`] handle,
//! and the in-memory default [`MemoryCaches`] (over [`Lru`]).
//!
//! A node has one cache manager. Applications create named caches with [`CacheLimits`]
//! (entries **and** bytes) through [`AppContext::create_cache`](crate::AppContext::create_cache)
//! and use them through a [`Cache`]: values are bytes, or any serde type (stored as JSON).
//! When a cache is over either bound, the least recently used entries go; a value that could
//! never fit ([`CacheLimits::max_bytes`] counts key and value) is refused.
//!
//! **Across the cluster.** A manager whose values are held by each member
//! ([`CacheManager::is_shared`] false, such as [`MemoryCaches`]) is kept coherent by the node:
//! every `set`, `remove`, `clear` and `destroy` on one member makes every other member drop the
//! key (or the whole cache) with [`CacheManager::evict`], and a member that may have missed
//! such news (lost member-to-member traffic, a member back up) drops everything with
//! [`CacheManager::evict_all`]. A shared manager (Redis) has one copy of every value, so there
//! is nothing to invalidate.
//!
//! Component authors implement [`CacheManager`] (with `async fn`); the node stores it as
//! `Arc<dyn DynCacheManager>`, the object-safe form implemented for every `CacheManager`.
//!
//! ```
//! # async fn run() -> thywill_core::CoreResult<()> {
//! use std::sync::Arc;
//! use thywill_core::cache::{Cache, CacheLimits, CacheManager, MemoryCaches};
//!
//! let caches = Arc::new(MemoryCaches::new());
//! caches.create("squares", CacheLimits::new(2, 1024)?).await?;
//! let squares = Cache::new("squares", caches);
//! squares.set("2", &4).await?;
//! squares.set("3", &9).await?;
//! assert_eq!(squares.get::<u32>("2").await?, Some(4)); // "2" is now the most recently used
//! squares.set("4", &16).await?; // over two entries: "3" goes
//! assert_eq!(squares.get::<u32>("3").await?, None);
//! assert_eq!(squares.len().await?, 2);
//! # Ok(()) }
//! # // Memory caches never wait: one poll runs the example to the end.
//! # use std::future::Future;
//! # let mut run = std::pin::pin!(run());
//! # let waker = std::task::Waker::noop();
//! # let done = run.as_mut().poll(&mut std::task::Context::from_waker(waker));
//! # assert!(matches!(done, std::task::Poll::Ready(Ok(()))));
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{BoxFuture, CoreError, CoreResult};

/// Longest cache name, in bytes.
pub const MAX_NAME_LEN: usize = 200;

/// Checks a cache name: 1 to [`MAX_NAME_LEN`] bytes, no whitespace, no control character, no
/// `{` or `}` (a shared store may put the name in a Redis hash tag).
pub fn check_name(name: &str) -> CoreResult<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(CoreError::Invalid(format!(
            "a cache name has 1 to {MAX_NAME_LEN} bytes, not {}",
            name.len()
        )));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '{' || c == '}')
    {
        return Err(CoreError::Invalid(format!(
            "cache name {name:?} has whitespace, a control character or a brace"
        )));
    }
    Ok(())
}

/// The bounds of one cache: whichever is reached first evicts the least recently used entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// Entries kept at most.
    pub max_entries: usize,
    /// Bytes kept at most: the sum of every entry's key and value lengths. A value whose entry
    /// alone is larger is refused.
    pub max_bytes: usize,
}

impl CacheLimits {
    /// Limits of `max_entries` entries and `max_bytes` bytes; both must be positive.
    pub fn new(max_entries: usize, max_bytes: usize) -> CoreResult<Self> {
        if max_entries == 0 || max_bytes == 0 {
            return Err(CoreError::Invalid(
                "a cache holds at least one entry and one byte".into(),
            ));
        }
        Ok(Self {
            max_entries,
            max_bytes,
        })
    }

    /// Refuses an entry that could never fit.
    pub fn check_entry(&self, key: &str, value_len: usize) -> CoreResult<()> {
        let size = key.len().saturating_add(value_len);
        if size > self.max_bytes {
            return Err(CoreError::Invalid(format!(
                "a cache entry of {size} bytes (key and value) exceeds the cache's bound of {} bytes",
                self.max_bytes
            )));
        }
        Ok(())
    }
}

impl Default for CacheLimits {
    /// 1,000 entries, 1 MiB.
    fn default() -> Self {
        Self {
            max_entries: 1_000,
            max_bytes: 1024 * 1024,
        }
    }
}

/// Where a node's named caches live (memory, Redis, ...). Implement this one; the node stores it
/// as [`DynCacheManager`].
///
/// Every operation on a cache that was not [created](CacheManager::create) on this member fails
/// with [`CoreError::NotFound`].
pub trait CacheManager: Send + Sync + 'static {
    /// Whether every member reads the same values (a shared store). When false, each member
    /// holds its own copies and the node invalidates them across the cluster (see the
    /// [module docs](self)).
    fn is_shared(&self) -> bool;

    /// Creates the cache `name` with `limits`, or sets the limits of the existing one (a
    /// smaller bound evicts at once, or at the next write of a shared store).
    fn create(&self, name: &str, limits: CacheLimits) -> impl Future<Output = CoreResult<()>> + Send;

    /// The limits of the cache `name`, if it was created on this member.
    fn limits(&self, name: &str) -> Option<CacheLimits>;

    /// Removes every value of the cache and forgets the cache on this member.
    fn destroy(&self, name: &str) -> impl Future<Output = CoreResult<()>> + Send;

    /// The value under `key`, which becomes the most recently used.
    fn get(&self, name: &str, key: &str) -> impl Future<Output = CoreResult<Option<Vec<u8>>>> + Send;

    /// Stores a value under `key` (the most recently used), evicting the least recently used
    /// entries over the limits. An entry larger than [`CacheLimits::max_bytes`] is refused with
    /// [`CoreError::Invalid`].
    fn set(&self, name: &str, key: &str, value: Vec<u8>) -> impl Future<Output = CoreResult<()>> + Send;

    /// Removes `key`; whether it was there.
    fn remove(&self, name: &str, key: &str) -> impl Future<Output = CoreResult<bool>> + Send;

    /// Removes every entry.
    fn clear(&self, name: &str) -> impl Future<Output = CoreResult<()>> + Send;

    /// Number of entries.
    fn len(&self, name: &str) -> impl Future<Output = CoreResult<usize>> + Send;

    /// Drops this member's copy of `key` (every key when `None`) without telling anyone: what
    /// another member's write asks of a store that is not shared. The default does nothing
    /// (a shared store holds no copies).
    fn evict(&self, name: &str, key: Option<&str>) {
        let _ = (name, key);
    }

    /// Drops this member's copies of every cache (news of writes elsewhere may have been lost).
    /// The default does nothing.
    fn evict_all(&self) {}
}

/// Object-safe form of [`CacheManager`], implemented for every `CacheManager`.
///
/// The node stores the cache manager as `Arc<dyn DynCacheManager>`; authors never implement
/// this.
pub trait DynCacheManager: Send + Sync + 'static {
    /// See [`CacheManager::is_shared`].
    fn is_shared(&self) -> bool;
    /// See [`CacheManager::create`].
    fn create<'a>(&'a self, name: &'a str, limits: CacheLimits) -> BoxFuture<'a, CoreResult<()>>;
    /// See [`CacheManager::limits`].
    fn limits(&self, name: &str) -> Option<CacheLimits>;
    /// See [`CacheManager::destroy`].
    fn destroy<'a>(&'a self, name: &'a str) -> BoxFuture<'a, CoreResult<()>>;
    /// See [`CacheManager::get`].
    fn get<'a>(&'a self, name: &'a str, key: &'a str) -> BoxFuture<'a, CoreResult<Option<Vec<u8>>>>;
    /// See [`CacheManager::set`].
    fn set<'a>(&'a self, name: &'a str, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, CoreResult<()>>;
    /// See [`CacheManager::remove`].
    fn remove<'a>(&'a self, name: &'a str, key: &'a str) -> BoxFuture<'a, CoreResult<bool>>;
    /// See [`CacheManager::clear`].
    fn clear<'a>(&'a self, name: &'a str) -> BoxFuture<'a, CoreResult<()>>;
    /// See [`CacheManager::len`].
    fn len<'a>(&'a self, name: &'a str) -> BoxFuture<'a, CoreResult<usize>>;
    /// See [`CacheManager::evict`].
    fn evict(&self, name: &str, key: Option<&str>);
    /// See [`CacheManager::evict_all`].
    fn evict_all(&self);
}

impl<C: CacheManager> DynCacheManager for C {
    fn is_shared(&self) -> bool {
        CacheManager::is_shared(self)
    }
    fn create<'a>(&'a self, name: &'a str, limits: CacheLimits) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(CacheManager::create(self, name, limits))
    }
    fn limits(&self, name: &str) -> Option<CacheLimits> {
        CacheManager::limits(self, name)
    }
    fn destroy<'a>(&'a self, name: &'a str) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(CacheManager::destroy(self, name))
    }
    fn get<'a>(&'a self, name: &'a str, key: &'a str) -> BoxFuture<'a, CoreResult<Option<Vec<u8>>>> {
        Box::pin(CacheManager::get(self, name, key))
    }
    fn set<'a>(&'a self, name: &'a str, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(CacheManager::set(self, name, key, value))
    }
    fn remove<'a>(&'a self, name: &'a str, key: &'a str) -> BoxFuture<'a, CoreResult<bool>> {
        Box::pin(CacheManager::remove(self, name, key))
    }
    fn clear<'a>(&'a self, name: &'a str) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(CacheManager::clear(self, name))
    }
    fn len<'a>(&'a self, name: &'a str) -> BoxFuture<'a, CoreResult<usize>> {
        Box::pin(CacheManager::len(self, name))
    }
    fn evict(&self, name: &str, key: Option<&str>) {
        CacheManager::evict(self, name, key)
    }
    fn evict_all(&self) {
        CacheManager::evict_all(self)
    }
}

/// One named cache, as an application uses it: cheap to clone.
///
/// Get one from [`AppContext::create_cache`](crate::AppContext::create_cache) or
/// [`AppContext::cache`](crate::AppContext::cache). Typed values are stored as JSON.
#[derive(Clone)]
pub struct Cache {
    name: Arc<str>,
    manager: Arc<dyn DynCacheManager>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.name)
            .field("limits", &self.manager.limits(&self.name))
            .finish()
    }
}

impl Cache {
    /// The cache `name` of `manager` (which must have created it for operations to succeed).
    pub fn new(name: impl Into<Arc<str>>, manager: Arc<dyn DynCacheManager>) -> Self {
        Self {
            name: name.into(),
            manager,
        }
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cache's limits on this member (`None` once destroyed here).
    pub fn limits(&self) -> Option<CacheLimits> {
        self.manager.limits(&self.name)
    }

    /// The bytes under `key`.
    pub async fn get_bytes(&self, key: &str) -> CoreResult<Option<Vec<u8>>> {
        self.manager.get(&self.name, key).await
    }

    /// Stores bytes under `key`.
    pub async fn set_bytes(&self, key: &str, value: impl Into<Vec<u8>>) -> CoreResult<()> {
        self.manager.set(&self.name, key, value.into()).await
    }

    /// The value under `key`, decoded from JSON; a value that is not a `T` is a
    /// [`CoreError::Codec`].
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> CoreResult<Option<T>> {
        match self.get_bytes(key).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| CoreError::Codec(format!("cache {} key {key:?}: {e}", self.name))),
        }
    }

    /// Stores a value under `key`, as JSON.
    pub async fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> CoreResult<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| CoreError::Codec(e.to_string()))?;
        self.set_bytes(key, bytes).await
    }

    /// Removes `key`; whether it was there.
    pub async fn remove(&self, key: &str) -> CoreResult<bool> {
        self.manager.remove(&self.name, key).await
    }

    /// Removes every entry.
    pub async fn clear(&self) -> CoreResult<()> {
        self.manager.clear(&self.name).await
    }

    /// Number of entries.
    pub async fn len(&self) -> CoreResult<usize> {
        self.manager.len(&self.name).await
    }

    /// Whether the cache is empty.
    pub async fn is_empty(&self) -> CoreResult<bool> {
        Ok(self.len().await? == 0)
    }
}

/// A bounded least-recently-used map from string keys to bytes, bounded in entries and in
/// bytes (key plus value per entry). No IO, no clock: a building block for components.
///
/// Every operation is `O(log n)`.
#[derive(Clone, Debug)]
pub struct Lru {
    limits: CacheLimits,
    /// Value and last use of every key.
    entries: HashMap<String, (Vec<u8>, u64)>,
    /// Keys by last use, oldest first.
    order: BTreeMap<u64, String>,
    /// The last use given out.
    tick: u64,
    /// Bytes of every key and value held.
    bytes: usize,
}

impl Lru {
    /// An empty map with these limits.
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            bytes: 0,
        }
    }

    /// The limits.
    pub fn limits(&self) -> CacheLimits {
        self.limits
    }

    /// Changes the limits, evicting at once what is over the new ones.
    pub fn set_limits(&mut self, limits: CacheLimits) {
        self.limits = limits;
        self.trim();
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The value under `key`, which becomes the most recently used.
    pub fn get(&mut self, key: &str) -> Option<&[u8]> {
        let tick = self.tick + 1;
        let (_, used) = self.entries.get_mut(key)?;
        self.order.remove(used);
        *used = tick;
        self.tick = tick;
        self.order.insert(tick, key.to_owned());
        self.entries.get(key).map(|(v, _)| v.as_slice())
    }

    /// The value under `key`, leaving the order alone.
    pub fn peek(&self, key: &str) -> Option<&[u8]> {
        self.entries.get(key).map(|(v, _)| v.as_slice())
    }

    /// Stores a value (the most recently used) and evicts the least recently used entries over
    /// the limits. An entry larger than `max_bytes` is refused, and the map left as it was.
    pub fn insert(&mut self, key: &str, value: Vec<u8>) -> CoreResult<()> {
        self.limits.check_entry(key, value.len())?;
        self.remove(key);
        let tick = self.next_tick();
        self.bytes += key.len() + value.len();
        self.entries.insert(key.to_owned(), (value, tick));
        self.order.insert(tick, key.to_owned());
        self.trim();
        Ok(())
    }

    /// Removes `key`; whether it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        match self.entries.remove(key) {
            Some((value, used)) => {
                self.order.remove(&used);
                self.bytes -= key.len() + value.len();
                true
            }
            None => false,
        }
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.bytes = 0;
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held (keys and values).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn trim(&mut self) {
        while self.entries.len() > self.limits.max_entries || self.bytes > self.limits.max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((value, _)) = self.entries.remove(&oldest) {
                self.bytes -= oldest.len() + value.len();
            }
        }
    }
}

/// The default [`CacheManager`]: each member holds its own [`Lru`] per cache, in memory. In a
/// cluster the node evicts a key on every member when one member writes it (see the
/// [module docs](self)).
#[derive(Debug, Default)]
pub struct MemoryCaches {
    caches: Mutex<HashMap<String, Lru>>,
}

impl MemoryCaches {
    /// No cache yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&mut Lru) -> CoreResult<T>) -> CoreResult<T> {
        let mut caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
        let lru = caches.get_mut(name).ok_or_else(|| not_created(name))?;
        f(lru)
    }
}

/// The error of an operation on a cache that was not created.
pub fn not_created(name: &str) -> CoreError {
    CoreError::NotFound(format!("no cache named {name:?} on this member: create it first"))
}

impl CacheManager for MemoryCaches {
    fn is_shared(&self) -> bool {
        false
    }

    async fn create(&self, name: &str, limits: CacheLimits) -> CoreResult<()> {
        check_name(name)?;
        let mut caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
        match caches.get_mut(name) {
            Some(lru) => lru.set_limits(limits),
            None => {
                caches.insert(name.to_owned(), Lru::new(limits));
            }
        }
        Ok(())
    }

    fn limits(&self, name: &str) -> Option<CacheLimits> {
        self.caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map(Lru::limits)
    }

    async fn destroy(&self, name: &str) -> CoreResult<()> {
        self.caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| not_created(name))
    }

    async fn get(&self, name: &str, key: &str) -> CoreResult<Option<Vec<u8>>> {
        self.with(name, |lru| Ok(lru.get(key).map(<[u8]>::to_vec)))
    }

    async fn set(&self, name: &str, key: &str, value: Vec<u8>) -> CoreResult<()> {
        self.with(name, |lru| lru.insert(key, value))
    }

    async fn remove(&self, name: &str, key: &str) -> CoreResult<bool> {
        self.with(name, |lru| Ok(lru.remove(key)))
    }

    async fn clear(&self, name: &str) -> CoreResult<()> {
        self.with(name, |lru| {
            lru.clear();
            Ok(())
        })
    }

    async fn len(&self, name: &str) -> CoreResult<usize> {
        self.with(name, |lru| Ok(lru.len()))
    }

    fn evict(&self, name: &str, key: Option<&str>) {
        let mut caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lru) = caches.get_mut(name) {
            match key {
                Some(key) => {
                    lru.remove(key);
                }
                None => lru.clear(),
            }
        }
    }

    fn evict_all(&self) {
        let mut caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
        for lru in caches.values_mut() {
            lru.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(entries: usize, bytes: usize) -> CacheLimits {
        CacheLimits {
            max_entries: entries,
            max_bytes: bytes,
        }
    }

    fn check(lru: &Lru) {
        assert_eq!(lru.entries.len(), lru.order.len());
        let bytes: usize = lru.entries.iter().map(|(k, (v, _))| k.len() + v.len()).sum();
        assert_eq!(lru.bytes, bytes);
        assert!(lru.len() <= lru.limits.max_entries && lru.bytes <= lru.limits.max_bytes);
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let mut lru = Lru::new(limits(2, 1000));
        lru.insert("a", b"1".to_vec()).ok();
        lru.insert("b", b"2".to_vec()).ok();
        assert_eq!(lru.get("a"), Some(&b"1"[..]));
        lru.insert("c", b"3".to_vec()).ok();
        assert_eq!(lru.peek("b"), None, "b was the least recently used");
        assert!(lru.peek("a").is_some() && lru.peek("c").is_some());
        check(&lru);
    }

    #[test]
    fn bytes_bound_evicts_and_refuses_what_never_fits() {
        let mut lru = Lru::new(limits(100, 10));
        lru.insert("a", vec![0; 4]).ok(); // 5 bytes
        lru.insert("b", vec![0; 4]).ok(); // 10 bytes
        assert_eq!(lru.len(), 2);
        lru.insert("c", vec![0; 1]).ok(); // 12 > 10: a goes
        assert_eq!(lru.peek("a"), None);
        assert_eq!(lru.bytes(), 7);
        let refused = lru.insert("d", vec![0; 10]);
        assert!(matches!(refused, Err(CoreError::Invalid(_))), "{refused:?}");
        assert_eq!(lru.len(), 2, "a refused value leaves the map as it was");
        // Replacing a key counts its new size only.
        lru.insert("b", vec![0; 9]).ok();
        assert_eq!((lru.len(), lru.bytes()), (1, 10));
        check(&lru);
    }

    #[test]
    fn smaller_limits_trim_at_once() {
        let mut lru = Lru::new(limits(10, 1000));
        for k in ["a", "b", "c", "d"] {
            lru.insert(k, vec![1]).ok();
        }
        lru.set_limits(limits(2, 1000));
        assert_eq!(lru.len(), 2);
        assert!(lru.peek("c").is_some() && lru.peek("d").is_some());
        check(&lru);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("calculations.results").is_ok());
        for bad in ["", "a b", "a{b", "a}b", "a\nb", &"x".repeat(MAX_NAME_LEN + 1)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(CacheLimits::new(0, 1).is_err() && CacheLimits::new(1, 0).is_err());
    }
}
