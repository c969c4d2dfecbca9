//! The browser client's own unit tests (`client/test/*.test.js`), run with Node (installed by
//! `scripts/install-test-deps.sh`): recovery after reconnects, acknowledgements and resends,
//! with a fake WebSocket and a virtual clock; the shared recovery vectors
//! (`client/vectors/recovery.json`, which the Rust test client runs too); the `Message` helpers.
//! They run against the built classic script, `client/thywill.js`.

use std::time::Duration;

#[tokio::test]
async fn the_client_library_passes_its_unit_tests() -> anyhow::Result<()> {
    run_node(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/client/test/recovery.test.js"
    ))
    .await
}

#[tokio::test]
async fn the_client_library_follows_the_shared_recovery_vectors() -> anyhow::Result<()> {
    run_node(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/client/test/vectors.test.js"
    ))
    .await
}

#[tokio::test]
async fn the_message_helpers_pass_their_unit_tests() -> anyhow::Result<()> {
    run_node(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/client/test/message.test.js"
    ))
    .await
}

/// Runs one test file with Node; it must exit 0 and print `all passed`.
async fn run_node(file: &str) -> anyhow::Result<()> {
    let run = tokio::process::Command::new("node")
        .arg(file)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .map_err(|_| anyhow::anyhow!("node did not finish within 60 s"))?
        .map_err(|e| anyhow::anyhow!("cannot run node (scripts/install-test-deps.sh installs it): {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success() && stdout.contains("all passed"),
        "client tests failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
