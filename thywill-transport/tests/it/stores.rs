//! The stores' conformance suites (`thywill_testkit::store_conformance`) against the in-memory
//! defaults: the same checks the Redis stores pass in `thywill-cluster-redis`.

use std::sync::Arc;

use thywill_core::LocalHistory;
use thywill_core::{DynChannelManager, DynClientTracker, DynHistory, DynResourceManager, DynSessionStore};
use thywill_core::{MemoryChannels, MemoryResources, MemorySessionStore, MemoryTracker};
use thywill_testkit::store_conformance;

#[tokio::test]
async fn local_history_conforms() -> anyhow::Result<()> {
    store_conformance::history(|limits| async move {
        Ok(Arc::new(LocalHistory::new(limits)) as Arc<dyn DynHistory>)
    })
    .await
}

#[tokio::test]
async fn memory_channels_conform() -> anyhow::Result<()> {
    store_conformance::channels(|| async {
        Ok(Arc::new(MemoryChannels::new()) as Arc<dyn DynChannelManager>)
    })
    .await
}

#[tokio::test]
async fn memory_sessions_conform() -> anyhow::Result<()> {
    store_conformance::sessions(
        || async { Ok(Arc::new(MemorySessionStore::new()) as Arc<dyn DynSessionStore>) },
        true,
    )
    .await
}

#[tokio::test]
async fn memory_tracker_conforms() -> anyhow::Result<()> {
    store_conformance::tracker(|| async { Ok(Arc::new(MemoryTracker::new()) as Arc<dyn DynClientTracker>) })
        .await
}

#[tokio::test]
async fn memory_resources_conform() -> anyhow::Result<()> {
    store_conformance::resources(|| async {
        Ok(Arc::new(MemoryResources::new()) as Arc<dyn DynResourceManager>)
    })
    .await
}
