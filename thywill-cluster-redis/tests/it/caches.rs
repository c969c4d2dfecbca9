//! `RedisCaches` against a real `redis-server`: the shared conformance suite, and members that
//! share one copy of every value under keys hash-tagged with the cache's name.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fred::prelude::ClientLike;
use fred::types::{ClusterHash, CustomCommand};
use thywill_cluster_redis::{RedisCaches, RedisCachesConfig};
use thywill_core::cache::CacheLimits;
use thywill_core::{CoreError, DynCacheManager};
use thywill_testkit::cache_conformance;
use thywill_testkit::redis::RedisServer;

/// A raw command, to look at the keys.
fn command(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

/// A raw client of `redis`.
async fn raw(redis: &RedisServer) -> anyhow::Result<fred::prelude::Client> {
    let config = fred::prelude::Config::from_url(&redis.url())?;
    let client = fred::prelude::Builder::from_config(config).build()?;
    client.init().await?;
    Ok(client)
}

async fn connect(redis: &RedisServer, prefix: &str) -> anyhow::Result<RedisCaches> {
    Ok(RedisCaches::connect(
        RedisCachesConfig::default()
            .with_url(redis.url())?
            .with_prefix(prefix)?,
    )
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_caches_conform() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let next = AtomicU64::new(0);
    cache_conformance::run(|| {
        let prefix = format!("test:conformance:{}:", next.fetch_add(1, Ordering::Relaxed));
        let redis = &redis;
        async move { Ok(Arc::new(connect(redis, &prefix).await?) as Arc<dyn DynCacheManager>) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_one_copy_and_one_recency_order() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let alpha = connect(&redis, "test:share:").await?;
    let beta = connect(&redis, "test:share:").await?;
    let two = CacheLimits::new(2, 1024)?;
    alpha.create("results", two).await?;
    beta.create("results", two).await?;

    alpha.set("results", "a", b"1".to_vec()).await?;
    alpha.set("results", "b", b"2".to_vec()).await?;
    // Beta reads alpha's value (one copy) and makes it the most recently used for everyone.
    assert_eq!(beta.get("results", "a").await?, Some(b"1".to_vec()));
    beta.set("results", "c", b"3".to_vec()).await?;
    assert_eq!(
        alpha.get("results", "b").await?,
        None,
        "b was the least recently used"
    );
    assert_eq!(alpha.get("results", "c").await?, Some(b"3".to_vec()));
    assert_eq!(alpha.len("results").await?, 2);

    // Every key of the cache is under the prefix and shares the name as its hash tag.
    let client = raw(&redis).await?;
    let mut keys: Vec<String> = client.custom(command("KEYS"), vec!["test:share:*"]).await?;
    keys.sort();
    assert_eq!(
        keys,
        [
            "test:share:{results}:m",
            "test:share:{results}:o",
            "test:share:{results}:v"
        ]
    );

    // A destroy on one member removes the values for every member; the other keeps its cache.
    alpha.destroy("results").await?;
    assert_eq!(beta.len("results").await?, 0);
    assert!(matches!(
        alpha.get("results", "c").await,
        Err(CoreError::NotFound(_))
    ));
    let left: u64 = client.custom(command("EXISTS"), keys).await?;
    assert_eq!(left, 0);
    client.quit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_lost_by_redis_start_a_fresh_count() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let caches = connect(&redis, "test:lost:").await?;
    caches.create("c", CacheLimits::new(10, 20)?).await?;
    caches.set("c", "a", vec![0; 9]).await?;
    caches.set("c", "b", vec![0; 9]).await?;
    // Redis loses the values (an eviction, a flush) but not the byte count.
    let client = raw(&redis).await?;
    let _: i64 = client.custom(command("DEL"), vec!["test:lost:{c}:v"]).await?;
    caches.set("c", "c", vec![0; 9]).await?;
    caches.set("c", "d", vec![0; 9]).await?;
    assert_eq!(caches.len("c").await?, 2, "the stale count would have evicted c");
    client.quit().await?;
    Ok(())
}
