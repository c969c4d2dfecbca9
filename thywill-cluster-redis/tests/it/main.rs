//! Integration tests of the Redis backend against a real `redis-server` on a free loopback port.

mod caches;
mod conformance;
mod history;
mod interest;
mod recovery;
mod stores;

use std::sync::Arc;

use thywill_cluster_redis::{RedisCluster, RedisClusterConfig};
use thywill_core::DynCluster;
use thywill_testkit::conformance::Spec;

/// Builds one member of the cluster described by `spec` on the Redis at `url`.
pub fn member(url: &str, spec: &Spec) -> anyhow::Result<Arc<dyn DynCluster>> {
    let config = RedisClusterConfig::default()
        .with_url(url)?
        .with_prefix(format!("test:{}:", spec.cluster))?
        .with_members(spec.members.clone())?
        .with_local(spec.local.clone())?;
    Ok(Arc::new(RedisCluster::new(config)?))
}
