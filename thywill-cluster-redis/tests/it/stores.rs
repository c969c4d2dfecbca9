//! The stores' conformance suites (`thywill_testkit::store_conformance`) against a real
//! `redis-server`: the same checks the in-memory defaults pass in `thywill-transport`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use thywill_cluster_redis::{
    RedisChannels, RedisChannelsConfig, RedisHistory, RedisHistoryConfig, RedisResources,
    RedisResourcesConfig, RedisSessions, RedisSessionsConfig,
};
use thywill_core::{DynChannelManager, DynHistory, DynResourceManager, DynSessionStore};
use thywill_testkit::redis::RedisServer;
use thywill_testkit::store_conformance;

/// A key prefix of its own for each store a suite asks for.
fn prefix(kind: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("conformance:{kind}:{}:", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[tokio::test]
async fn redis_history_conforms() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let url = redis.url();
    store_conformance::history(|limits| {
        let url = url.clone();
        async move {
            let h = RedisHistory::connect(
                RedisHistoryConfig::default()
                    .with_url(url)?
                    .with_prefix(prefix("history"))?
                    .with_limits(limits)?,
            )
            .await?;
            Ok(Arc::new(h) as Arc<dyn DynHistory>)
        }
    })
    .await
}

#[tokio::test]
async fn redis_channels_conform() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    store_conformance::channels(|| async {
        let c = RedisChannels::connect(
            RedisChannelsConfig::default()
                .with_url(redis.url())?
                .with_prefix(prefix("channels"))?,
        )
        .await?;
        Ok(Arc::new(c) as Arc<dyn DynChannelManager>)
    })
    .await
}

#[tokio::test]
async fn redis_sessions_conform() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    store_conformance::sessions(
        || async {
            let s = RedisSessions::connect(
                RedisSessionsConfig::default()
                    .with_url(redis.url())?
                    .with_prefix(prefix("sessions"))?,
            )
            .await?;
            Ok(Arc::new(s) as Arc<dyn DynSessionStore>)
        },
        true,
    )
    .await
}

#[tokio::test]
async fn redis_resources_conform() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    store_conformance::resources(|| async {
        let r = RedisResources::connect(
            RedisResourcesConfig::default()
                .with_url(redis.url())?
                .with_prefix(prefix("resources"))?,
        )
        .await?;
        Ok(Arc::new(r) as Arc<dyn DynResourceManager>)
    })
    .await
}
