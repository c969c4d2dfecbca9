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

/// Appends until the server answers (it may be coming back), within the test timeout.
async fn append_when_back(h: &NatsHistory, stream: &str, key: u64) -> anyhow::Result<thywill_core::Offset> {
    let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
    loop {
        let attempt = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            h.append_entry(stream, key, format!("m{key}")),
        )
        .await;
        match attempt {
            Ok(Ok(at)) => return Ok(at),
            Ok(Err(_)) | Err(_) if tokio::time::Instant::now() < deadline => {
                // Reconnecting: no event to await from outside the client.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Ok(Err(e)) => anyhow::bail!("append: {e}"),
            Err(_) => anyhow::bail!("append timed out"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_lost_with_the_server_is_a_new_epoch_on_every_member() -> anyhow::Result<()> {
    use thywill_core::HistoryLimits;

    let mut nats = NatsServer::start().await?;
    let url = nats.url();
    // Kept in the server's memory: a restart loses every stream.
    let a = NatsHistory::connect(&url, "lost", HistoryLimits::default(), true).await?;
    let b = NatsHistory::connect(&url, "lost", HistoryLimits::default(), true).await?;
    let before = append_when_back(&a, "c:x", 1).await?;
    anyhow::ensure!(append_when_back(&b, "c:x", 2).await?.epoch == before.epoch);
    nats.restart().await?;
    // b makes the stream again; a, which knew the old epoch, must not hand it out any more.
    let on_b = append_when_back(&b, "c:x", 3).await?;
    let on_a = append_when_back(&a, "c:x", 4).await?;
    anyhow::ensure!(
        on_b.epoch != before.epoch && on_b.off == 1,
        "{on_b:?} after {before:?}"
    );
    anyhow::ensure!(
        on_a.epoch == on_b.epoch && on_a.off == 2,
        "{on_a:?} after {on_b:?}"
    );
    Ok(())
}
