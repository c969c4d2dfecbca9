//! The conformance suite every [`CacheManager`](thywill_core::CacheManager) passes: unknown
//! caches, names, values as bytes and typed, the bounds in entries and bytes (least recently
//! used first, a value too large refused), limits changed, destroy, independent caches, local
//! eviction, and concurrent writers.
//!
//! The suite is a function taking a constructor, run against the in-memory default (in
//! `thywill-transport`'s tests) and Redis (in `thywill-cluster-redis`'s):
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use thywill_core::{DynCacheManager, MemoryCaches};
//! use thywill_testkit::cache_conformance;
//!
//! cache_conformance::run(|| async { Ok(Arc::new(MemoryCaches::new()) as Arc<dyn DynCacheManager>) })
//!     .await
//! # }
//! ```
//!
//! Each scenario asks for a fresh manager: a shared store gives each one its own key prefix.

use std::future::Future;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};
use thywill_core::CoreError;
use thywill_core::cache::{Cache, CacheLimits, DynCacheManager};

fn limits(max_entries: usize, max_bytes: usize) -> anyhow::Result<CacheLimits> {
    Ok(CacheLimits::new(max_entries, max_bytes)?)
}

/// Runs every scenario, each on a manager from `make`; the first failure names its scenario.
pub async fn run<F, Fut>(make: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<dyn DynCacheManager>>>,
{
    unknown_caches_are_not_found(make().await?)
        .await
        .context("unknown caches are not found")?;
    names_are_checked(make().await?)
        .await
        .context("names are checked")?;
    values_round_trip(make().await?)
        .await
        .context("values round trip")?;
    the_least_recently_used_go_first(make().await?)
        .await
        .context("the least recently used go first")?;
    bytes_are_bounded(make().await?)
        .await
        .context("bytes are bounded")?;
    limits_can_change(make().await?)
        .await
        .context("limits can change")?;
    destroy_forgets(make().await?)
        .await
        .context("destroy forgets the cache")?;
    caches_are_independent(make().await?)
        .await
        .context("caches are independent")?;
    typed_values(make().await?).await.context("typed values")?;
    local_eviction(make().await?).await.context("local eviction")?;
    concurrent_writers_stay_bounded(make().await?)
        .await
        .context("concurrent writers stay bounded")?;
    Ok(())
}

async fn unknown_caches_are_not_found(m: Arc<dyn DynCacheManager>) -> anyhow::Result<()> {
    ensure!(m.limits("nope").is_none());
    ensure!(matches!(m.get("nope", "k").await, Err(CoreError::NotFound(_))));
    ensure!(matches!(
        m.set("nope", "k", b"v".to_vec()).await,
        Err(CoreError::NotFound(_))
    ));
    ensure!(matches!(m.len("nope").await, Err(CoreError::NotFound(_))));
    ensure!(matches!(m.remove("nope", "k").await, Err(CoreError::NotFound(_))));
    ensure!(matches!(m.clear("nope").await, Err(CoreError::NotFound(_))));
    Ok(())
}

async fn names_are_checked(m: Arc<dyn DynCacheManager>) -> anyhow::Result<()> {
    for bad in ["", "with space", "a{tag}", "line\nbreak"] {
        let r = m.create(bad, CacheLimits::default()).await;
        ensure!(matches!(r, Err(CoreError::Invalid(_))), "{bad:?} accepted: {r:?}");
    }
    m.create("app.results-1", CacheLimits::default()).await?;
    ensure!(m.limits("app.results-1") == Some(CacheLimits::default()));
    Ok(())
}

async fn values_round_trip(m: Arc<dyn DynCacheManager>) -> anyhow::Result<()> {
    m.create("c", limits(100, 1 << 20)?).await?;
    ensure!(m.len("c").await? == 0);
    ensure!(m.get("c", "k").await?.is_none());
    // Every byte value, an empty value, an empty key, a key of any text.
    let all: Vec<u8> = (0..=255u8).collect();
    m.set("c", "bytes", all.clone()).await?;
    m.set("c", "empty", Vec::new()).await?;
    m.set("c", "", b"empty key".to_vec()).await?;
    m.set("c", "clé {x} \u{1F600}", b"text".to_vec()).await?;
    ensure!(m.get("c", "bytes").await? == Some(all));
    ensure!(m.get("c", "empty").await? == Some(Vec::new()));
    ensure!(m.get("c", "").await? == Some(b"empty key".to_vec()));
    ensure!(m.get("c", "clé {x} \u{1F600}").await? == Some(b"text".to_vec()));
    ensure!(m.len("c").await? == 4);
    // Overwrite.
    m.set("c", "bytes", b"new".to_vec()).await?;
    ensure!(m.get("c", "bytes").await? == Some(b"new".to_vec()));
    ensure!(m.len("c").await? == 4);
    // Remove one, then clear.
    ensure!(m.remove("c", "bytes").await?, "remove says the key was there");
    ensure!(!m.remove("c", "bytes").await?, "a second remove finds nothing");
    ensure!(m.get("c", "bytes").await?.is_none());
    ensure!(m.len("c").await? == 3);
    m.clear("c").await?;
    ensure!(m.len("c").await? == 0);
    ensure!(m.get("c", "empty").await?.is_none());
    // Usable after a clear.
    m.set("c", "again", b"1".to_vec()).await?;
    ensure!(m.get("c", "again").await? == Some(b"1".to_vec()));
    Ok(())
}

async fn the_least_recently_used_go_first(m: Arc<dyn DynCacheManager>) -> anyhow::Result<()> {
    // The original's test: a cache of two, three keys: the first goes.
    m.create("two", limits(2, 1 << 20)?).await?;
    m.set("two", "a", b"1".to_vec()).await?;
    m.set("two", "b", b"2".to_vec()).await?;
    m.set("two", "c", b"3".to_vec()).await?;
    ensure!(
        m.get("two", "a").await?.is_none(),
        "a was the least recently used"
    );
    ensure!(m.len("two").await? == 2);
    // A read makes a key the most recently used.
    ensure!(m.get("two", "b").await?.is_some());
    m.set("two", "d", b"4".to_vec()).await?;
    ensure!(
        m.get("two", "c").await?.is_none(),
        "c was the least recently used"
    );
    ensure!(m.get("two", "b").await? == Some(b"2".to_vec()));
    ensure!(m.get("two", "d").await? == Some(b"4".to_vec()));
    // So does an overwrite.
    m.set("two", "b", b"2'".to_vec()).await?;
    m.set("two", "e", b"5".to_vec()).await?;
    ensure!(
        m.get("two", "d").await?.is_none(),
        "d was the least recently used"
    );
    ensure!(m.get("two", "b").await? == Some(b"2'".to_vec()));
    Ok(())
}

async fn bytes_are_bounded(m: Arc<dyn DynCacheManager>) -> anyhow::Result<()> {
    // Entries count their key and value: "a" + 9 bytes = 10.
    m.create("b", limits(100, 30)?).await?;
    for k in ["a", "b", "c"] {
        m.set("b", k, vec![7; 9]).await?;
    }
    ensure!(m.len("b").await? == 3, "30 bytes fit exactly");
    m.set("b", "d", vec![7; 1]).await?;
    ensure!(m.get("b", "a").await?.is_none(), "over 30 bytes: the oldest goes");
    ensure!(m.len("b").await? == 3);
    // One large value evicts as many as needed.
    m.set("b", "e", vec![7; 25]).await?;
    ensure!(m.len("b").await? == 2, "len {}", m.len("b").await?);
    ensure!(m.get("b", "d").await?.is_some() && m.get("b", "e").await?.is_some());
    // A value that can never fit is refused, and nothing is evicted for it.
    let r = m.set("b", "f", vec![7; 30]).await;
    ensure!(
        matches!(r, Err(CoreError::Invalid(_))),
        "too large accepted: {r:?}"
    );
    ensure!(m.len("b").await? == 2);
    ensure!(m.get("b", "f").await?.is_none());
    // Nor does a too-large overwrite lose the old value.
    let r = m.set("b", "e", vec![7; 40]).await;
    ensure!(
        matches!(r, Err(CoreError::Invalid(_))),
        "too large accepted: {r:?}"
    );
    ensure!(m.get("b", "e").await? == Some(vec![7; 25]));
    Ok(())
}

async fn limits_can_change(m: Arc<dyn DynCacheManager>) -> anyhow::Result<()> {
    m.create("l", limits(10, 1 << 20)?).await?;
    for k in ["a", "b", "c", "d"] {
        m.set("l", k, b"x".to_vec()).await?;
    }
    m.create("l", limits(2, 1 << 20)?).await?;
    ensure!(m.limits("l") == Some(limits(2, 1 << 20)?));
    // A shared store applies the new bound at the next write.
    m.set("l", "e", b"x".to_vec()).await?;
    ensure!(m.len("l").await? == 2, "len {}", m.len("l").await?);
    ensure!(m.get("l", "e").await?.is_some() && m.get("l", "d").await?.is_some());
    Ok(())
}

async fn destroy_forgets(m: Arc<dyn DynCacheManager>) -> anyhow::Result<()> {
    m.create("d", CacheLimits::default()).await?;
    m.set("d", "k", b"v".to_vec()).await?;
    m.destroy("d").await?;
    ensure!(m.limits("d").is_none());
    ensure!(matches!(m.get("d", "k").await, Err(CoreError::NotFound(_))));
    m.create("d", CacheLimits::default()).await?;
    ensure!(
        m.get("d", "k").await?.is_none(),
        "a destroyed cache's values are gone"
    );
    ensure!(m.len("d").await? == 0);
    Ok(())
}

async fn caches_are_independent(m: Arc<dyn DynCacheManager>) -> anyhow::Result<()> {
    m.create("x", limits(1, 1 << 20)?).await?;
    m.create("y", limits(1, 1 << 20)?).await?;
    m.set("x", "k", b"x".to_vec()).await?;
    m.set("y", "k", b"y".to_vec()).await?;
    ensure!(m.get("x", "k").await? == Some(b"x".to_vec()));
    ensure!(m.get("y", "k").await? == Some(b"y".to_vec()));
    m.clear("x").await?;
    ensure!(m.get("y", "k").await? == Some(b"y".to_vec()), "clearing x kept y");
    Ok(())
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Point {
    x: f64,
    label: String,
}

async fn typed_values(m: Arc<dyn DynCacheManager>) -> anyhow::Result<()> {
    m.create("t", CacheLimits::default()).await?;
    let cache = Cache::new("t", m.clone());
    ensure!(cache.name() == "t" && cache.limits() == Some(CacheLimits::default()));
    let p = Point {
        x: 0.1 + 0.2,
        label: "é\"\n".into(),
    };
    cache.set("p", &p).await?;
    ensure!(cache.get::<Point>("p").await? == Some(p));
    cache.set("n", &serde_json::json!(null)).await?;
    ensure!(
        cache.get::<Option<u8>>("n").await? == Some(None),
        "a cached null is a hit"
    );
    let wrong = cache.get::<u64>("p").await;
    ensure!(matches!(wrong, Err(CoreError::Codec(_))), "{wrong:?}");
    ensure!(!cache.is_empty().await? && cache.len().await? == 2);
    ensure!(cache.remove("p").await?);
    cache.clear().await?;
    ensure!(cache.is_empty().await?);
    Ok(())
}

async fn local_eviction(m: Arc<dyn DynCacheManager>) -> anyhow::Result<()> {
    m.create("e", CacheLimits::default()).await?;
    m.create("f", CacheLimits::default()).await?;
    for k in ["a", "b"] {
        m.set("e", k, b"v".to_vec()).await?;
        m.set("f", k, b"v".to_vec()).await?;
    }
    m.evict("e", Some("a"));
    m.evict("unknown", None);
    if m.is_shared() {
        // One copy for every member: nothing local to drop.
        ensure!(m.len("e").await? == 2, "a shared store keeps its values");
        m.evict_all();
        ensure!(m.len("f").await? == 2);
        return Ok(());
    }
    ensure!(m.get("e", "a").await?.is_none() && m.get("e", "b").await?.is_some());
    m.evict("e", None);
    ensure!(m.len("e").await? == 0);
    ensure!(m.len("f").await? == 2, "evicting e kept f");
    m.evict_all();
    ensure!(m.len("f").await? == 0);
    ensure!(m.limits("f").is_some(), "evicted caches stay created");
    Ok(())
}

async fn concurrent_writers_stay_bounded(m: Arc<dyn DynCacheManager>) -> anyhow::Result<()> {
    m.create("w", limits(16, 4096)?).await?;
    let writers = (0..8).map(|w| {
        let m = m.clone();
        async move {
            for i in 0..50 {
                m.set("w", &format!("{w}:{i}"), vec![b'v'; 40]).await?;
                let _ = m.get("w", &format!("{w}:{}", i / 2)).await?;
            }
            anyhow::Ok(())
        }
    });
    for r in futures_util::future::join_all(writers).await {
        r?;
    }
    let n = m.len("w").await?;
    if n > 16 || n == 0 {
        bail!("{n} entries after concurrent writes, bound 16");
    }
    // The last write of each writer is there unless more recent ones pushed it out: at least
    // the most recent write overall survives.
    let mut found = 0;
    for w in 0..8 {
        if m.get("w", &format!("{w}:49")).await?.is_some() {
            found += 1;
        }
    }
    ensure!(found > 0, "no writer's last value survived");
    Ok(())
}
