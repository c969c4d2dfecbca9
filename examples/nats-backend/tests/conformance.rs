//! The framework's cluster conformance suite (`thywill_testkit::conformance`, the one the Redis
//! and HTTP backends pass), run against the NATS backend over a real `nats-server`.

use std::sync::Arc;
use std::time::Duration;

use thywill_core::Cluster;
use thywill_nats_example::{NatsCluster, NatsClusterConfig};
use thywill_testkit::conformance::{self, Options, Spec};
use thywill_testkit::nats::NatsServer;

/// Builds one member of the cluster described by `spec` on the NATS server at `url`.
fn member(url: &str, spec: &Spec) -> anyhow::Result<Arc<dyn Cluster>> {
    let config = NatsClusterConfig::default()
        .with_url(url)?
        .with_cluster(spec.cluster.clone())?
        .with_members(spec.members.clone())?
        .with_local(spec.local.clone())?;
    Ok(Arc::new(NatsCluster::new(config)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_backend_conforms() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let url = nats.url();
    // timeout (500 ms) + one interval (200 ms), plus scheduling slack for a loaded machine, as
    // for Redis.
    let opts = Options::clustered(Duration::from_millis(700 + 250));
    conformance::run(opts, |spec: Spec| {
        let url = url.clone();
        async move { member(&url, &spec) }
    })
    .await
}
