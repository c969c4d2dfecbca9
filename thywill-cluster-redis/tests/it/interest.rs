//! Interest routing over a real Redis: plain and sharded pub/sub.

use std::time::Duration;

use thywill_cluster_redis::{RedisCluster, RedisClusterConfig};
use thywill_core::DynCluster;
use thywill_testkit::conformance::{self, Options, Spec};
use thywill_testkit::redis::RedisServer;

fn member(url: &str, spec: &Spec, sharded: bool) -> anyhow::Result<std::sync::Arc<dyn DynCluster>> {
    let config = RedisClusterConfig::default()
        .with_url(url)?
        .with_prefix(format!("test:{}:", spec.cluster))?
        .with_members(spec.members.clone())?
        .with_local(spec.local.clone())?
        .with_sharded_pubsub(sharded);
    Ok(std::sync::Arc::new(RedisCluster::new(config)?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_receives_only_the_topics_it_is_interested_in() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let url = redis.url();
    let opts = Options::clustered(Duration::from_millis(700 + 250));
    for sharded in [false, true] {
        conformance::interest_routing(&opts, &|spec: Spec| {
            let url = url.clone();
            async move { member(&url, &spec, sharded) }
        })
        .await
        .map_err(|e| e.context(format!("sharded pub/sub: {sharded}")))?;
    }
    Ok(())
}
