//! Named caches: the in-memory default passes the shared conformance suite, and a write on one
//! member evicts the key from every other member's copy (members in one process, over the hub).

use std::sync::Arc;
use std::time::Duration;

use thywill_core::cache::{Cache, CacheLimits};
use thywill_core::{AppContext, ApplicationId, CoreError, DynCacheManager, MemoryCaches};
use thywill_testkit::cache_conformance;

use crate::cluster::Cluster;

#[tokio::test]
async fn memory_caches_conform() -> anyhow::Result<()> {
    cache_conformance::run(|| async { Ok(Arc::new(MemoryCaches::new()) as Arc<dyn DynCacheManager>) }).await
}

/// Waits (bounded) until `done` holds for the cache.
async fn until<F, Fut>(what: &str, cache: &Cache, done: F) -> anyhow::Result<()>
where
    F: Fn(Cache) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
    while !done(cache.clone()).await? {
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("{what}: not within {:?}", thywill_testkit::TIMEOUT);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn get(cache: &Cache, key: &str) -> anyhow::Result<Option<String>> {
    Ok(cache.get::<String>(key).await?)
}

/// Members up to each other (the node drops its copies when a member comes up, so the test
/// starts after that).
async fn started(ids: &[&str]) -> anyhow::Result<(Cluster, Vec<AppContext>)> {
    let c = Cluster::start(ids).await?;
    for a in ids {
        for b in ids.iter().filter(|b| *b != a) {
            c.logged(&[&format!("{a}: status {b} Up")]).await?;
        }
    }
    let app = ApplicationId::from("rooms");
    let contexts = c
        .members
        .iter()
        .map(|m| m.node.context(&app))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| anyhow::anyhow!("no rooms application"))?;
    Ok((c, contexts))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_member_evicts_the_key_on_every_other() -> anyhow::Result<()> {
    let (_c, ctx) = started(&["alpha", "beta", "gamma"]).await?;
    let mut caches = Vec::new();
    for c in &ctx {
        caches.push(c.create_cache("shared", CacheLimits::default()).await?);
    }
    let other = ctx[0].create_cache("other", CacheLimits::default()).await?;
    let [a, b, g] = [&caches[0], &caches[1], &caches[2]];

    a.set("k1", "alpha's").await?;
    a.set("k2", "alpha's").await?;
    b.set("k3", "beta's").await?;
    other.set("k1", "alpha's other").await?;

    // A set elsewhere evicts the key, and only it.
    g.set("k1", "gamma's").await?;
    until("k1 evicted on alpha", a, |a| async move {
        Ok(get(&a, "k1").await?.is_none())
    })
    .await?;
    assert_eq!(get(a, "k2").await?.as_deref(), Some("alpha's"));
    assert_eq!(get(b, "k3").await?.as_deref(), Some("beta's"));
    assert_eq!(
        get(&other, "k1").await?.as_deref(),
        Some("alpha's other"),
        "another cache keeps its key"
    );

    // A remove evicts it everywhere, even from a member that did not hold it.
    assert!(!b.remove("k2").await?, "beta never held k2");
    until("k2 evicted on alpha", a, |a| async move {
        Ok(get(&a, "k2").await?.is_none())
    })
    .await?;

    // A clear empties every member's copy of that cache.
    a.set("k4", "alpha's").await?;
    g.clear().await?;
    until(
        "alpha's copy cleared",
        a,
        |a| async move { Ok(a.is_empty().await?) },
    )
    .await?;
    until(
        "beta's copy cleared",
        b,
        |b| async move { Ok(b.is_empty().await?) },
    )
    .await?;
    assert_eq!(other.len().await?, 1, "clearing one cache leaves the others");

    // Destroying it on one member clears the others' copies; they keep the cache.
    a.set("k5", "alpha's").await?;
    ctx[1].destroy_cache("shared").await?;
    until("alpha's copy cleared by the destroy", a, |a| async move {
        Ok(a.is_empty().await?)
    })
    .await?;
    assert!(ctx[0].cache("shared").is_ok());
    assert!(matches!(ctx[1].cache("shared"), Err(CoreError::NotFound(_))));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_back_up_finds_every_copy_dropped() -> anyhow::Result<()> {
    let (mut c, ctx) = started(&["alpha", "beta"]).await?;
    let a = ctx[0].create_cache("c", CacheLimits::default()).await?;
    a.set("k", "alpha's").await?;
    // Invalidations beta sent while alpha saw it down would be lost: when beta comes back,
    // alpha drops what it holds.
    c.kill(1);
    c.logged(&["alpha: status beta Down"]).await?;
    assert_eq!(
        get(&a, "k").await?.as_deref(),
        Some("alpha's"),
        "kept while beta is down"
    );
    let beta = c.start_member("beta").await?;
    c.members[1] = beta;
    until("alpha's copies dropped", &a, |a| async move {
        Ok(a.is_empty().await?)
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn caches_are_reached_through_the_context() -> anyhow::Result<()> {
    let (_c, ctx) = started(&["alpha"]).await?;
    assert!(matches!(ctx[0].cache("results"), Err(CoreError::NotFound(_))));
    let too_small = CacheLimits::new(10, 8)?;
    let cache = ctx[0].create_cache("results", too_small).await?;
    let refused = cache.set_bytes("k", vec![0; 8]).await;
    assert!(matches!(refused, Err(CoreError::Invalid(_))), "{refused:?}");
    cache.set_bytes("k", vec![1; 7]).await?;
    assert_eq!(ctx[0].cache("results")?.get_bytes("k").await?, Some(vec![1; 7]));
    assert_eq!(ctx[0].cache("results")?.limits(), Some(too_small));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_invalidation_is_not_sent_says_so() -> anyhow::Result<()> {
    let (c, ctx) = started(&["alpha", "beta"]).await?;
    let a = ctx[0].create_cache("c", CacheLimits::default()).await?;
    let b = ctx[1].create_cache("c", CacheLimits::default()).await?;
    b.set("k", "beta's").await?;
    c.hub.fail_sends("alpha", "beta", true);
    let r = a.set("k", "alpha's").await;
    assert!(matches!(r, Err(CoreError::Unavailable(_))), "{r:?}");
    assert_eq!(
        get(&a, "k").await?.as_deref(),
        Some("alpha's"),
        "the write itself happened"
    );
    assert_eq!(
        get(&b, "k").await?.as_deref(),
        Some("beta's"),
        "beta was not told"
    );
    c.hub.fail_sends("alpha", "beta", false);
    a.set("k", "alpha's again").await?;
    until("k evicted on beta", &b, |b| async move {
        Ok(get(&b, "k").await?.is_none())
    })
    .await?;
    Ok(())
}
