//! One member, no cluster: a stroke reaches every other page but not its sender, and invalid
//! strokes are dropped.

use std::time::Duration;

use anyhow::ensure;
use serde_json::json;

use crate::{connect, next_stroke, stroke_reaches};

#[tokio::test]
async fn strokes_reach_the_other_pages_only() -> anyhow::Result<()> {
    let port = thywill_testkit::free_port();
    let alpha = crate::start_member("alpha", port, &[]).await?;
    let mut a = connect(&alpha.ws(crate::BASE)).await?;
    let mut b = connect(&alpha.ws(crate::BASE)).await?;
    let mut c = connect(&alpha.ws(crate::BASE)).await?;
    // Both others are in the channel once a stroke reached each (their connection hooks
    // subscribe them just after their welcome).
    let first = stroke_reaches(&mut a, &mut c, 1).await?;
    let id = stroke_reaches(&mut a, &mut b, first + 1).await?;
    // The original's wire check: an empty stroke is passed on as is.
    a.send("draw", json!({"segments": []}))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Invalid ones are dropped: the next valid stroke is what arrives.
    a.send("draw", json!({"segments": "not an array"}))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    a.send("draw", json!({"segments": [{"x": "1"}]}))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    a.send("draw", crate::stroke(id + 100))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut got = Vec::new();
    while got.last().and_then(|v: &serde_json::Value| v["id"].as_u64()) != Some(id + 100) {
        got.push(next_stroke(&mut b, thywill_testkit::TIMEOUT).await?);
    }
    ensure!(
        got.iter().any(|v| *v == json!({"segments": []})),
        "the empty stroke did not arrive: {got:?}"
    );
    ensure!(
        got.iter().all(|v| v["segments"].is_array()),
        "an invalid stroke got through: {got:?}"
    );
    // The sender never gets its own strokes back.
    ensure!(
        next_stroke(&mut a, Duration::from_millis(300)).await.is_err(),
        "the sender got its own stroke"
    );
    Ok(())
}
