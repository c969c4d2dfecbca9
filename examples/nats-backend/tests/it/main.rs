//! Integration tests of the NATS backend against a real `nats-server` on a free loopback port.

mod conformance;
mod history;
mod recovery;

use std::sync::Arc;

use thywill_core::DynCluster;
use thywill_nats_example::{NatsCluster, NatsClusterConfig};
use thywill_testkit::conformance::Spec;

/// Builds one member of the cluster described by `spec` on the NATS server at `url`.
pub fn member(url: &str, spec: &Spec) -> anyhow::Result<Arc<NatsCluster>> {
    let config = NatsClusterConfig::default()
        .with_url(url)?
        .with_cluster(spec.cluster.clone())?
        .with_members(spec.members.clone())?
        .with_local(spec.local.clone())?;
    Ok(Arc::new(NatsCluster::new(config)))
}

/// [`member`] as the conformance suite takes it.
pub fn dyn_member(url: &str, spec: &Spec) -> anyhow::Result<Arc<dyn DynCluster>> {
    let m: Arc<dyn DynCluster> = member(url, spec)?;
    Ok(m)
}
