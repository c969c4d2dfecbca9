//! The framework's `History` conformance suite (`thywill_testkit::store_conformance`, the one
//! the in-memory and Redis histories pass), run against the JetStream history.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use thywill_core::DynHistory;
use thywill_nats_example::NatsHistory;
use thywill_testkit::nats::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jetstream_history_conforms() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let url = nats.url();
    let scenario = AtomicU64::new(0);
    thywill_testkit::store_conformance::history(|limits| {
        // A cluster of its own per scenario: its own streams and marks.
        let cluster = format!("h{}", scenario.fetch_add(1, Ordering::Relaxed));
        let url = url.clone();
        async move {
            let h: Arc<dyn DynHistory> = Arc::new(NatsHistory::connect(&url, &cluster, limits, true).await?);
            Ok(h)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_brings_the_shared_history_when_asked() -> anyhow::Result<()> {
    use thywill_core::{Backend, HistoryLimits};
    use thywill_nats_example::{NatsBackend, NatsClusterConfig};

    let nats = NatsServer::start().await?;
    let config = NatsClusterConfig::default()
        .with_url(nats.url())?
        .with_cluster("bundle")?;
    let plain = NatsBackend::new(config.clone()).connect().await?;
    anyhow::ensure!(plain.history().is_none(), "the cluster alone by default");
    let parts = NatsBackend::new(config)
        .with_jetstream_history(HistoryLimits::default(), true)
        .connect()
        .await?;
    let history = parts
        .history()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no history"))?;
    anyhow::ensure!(history.is_shared(), "shared by the members");
    let at = history.append("c:draw", 1, "stroke".into()).await?;
    anyhow::ensure!(at.off == 1, "{at:?}");
    Ok(())
}
