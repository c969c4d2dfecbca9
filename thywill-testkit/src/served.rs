//! Helpers for tests of served nodes and their pages: a headless browser that is required
//! (a clear error naming the install script when Chromium or chromedriver is missing), and a
//! bounded wait until a cluster backend sees another member up.

use std::time::Duration;

use anyhow::bail;
use thywill_core::{DynCluster, MemberId, MemberStatus};

use crate::browser::{self, Browser};

/// Fails with a message naming `scripts/install-test-deps.sh` unless Chromium and chromedriver
/// are installed (call it before starting servers, to fail fast).
pub fn require_browser() -> anyhow::Result<()> {
    if !browser::available() {
        bail!("chromium and chromedriver are needed for browser tests: run scripts/install-test-deps.sh");
    }
    Ok(())
}

/// [`require_browser`], then [`Browser::start`].
pub async fn start_browser() -> anyhow::Result<Browser> {
    require_browser()?;
    Browser::start().await
}

/// Waits (within [`crate::TIMEOUT`]) until `cluster` reports `member` up.
pub async fn wait_up(cluster: &dyn DynCluster, member: &str) -> anyhow::Result<()> {
    let id = MemberId::from(member);
    let deadline = tokio::time::Instant::now() + crate::TIMEOUT;
    while cluster.status(&id) != MemberStatus::Up {
        if tokio::time::Instant::now() >= deadline {
            bail!("{member} not up");
        }
        // Polling a condition with a deadline (status has no change notification).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
