//! Three members over a real `nats-server`, with the backend of `examples/nats-backend` (written
//! outside the framework) that Draw installs for `--cluster nats`: a stroke drawn on one member
//! reaches the clients of the two others; a killed member is reported down, to its designated
//! handler too, and up again when it is back.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use thywill_testkit::nats::NatsServer;
use thywill_testkit::{TIMEOUT, WsClient};

use crate::{
    Member, all_up, connect, kill_and_detect, next_stroke, restart_and_detect, stroke, stroke_reaches,
};

async fn cluster(nats: &NatsServer) -> anyhow::Result<Vec<Member>> {
    let args: Vec<String> = [
        "--cluster",
        "nats",
        "--nats-url",
        &nats.url(),
        "--cluster-members",
        "alpha,beta,gamma",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut members = Vec::new();
    for id in ["alpha", "beta", "gamma"] {
        members.push(crate::start_member(id, thywill_testkit::free_port(), &args).await?);
    }
    all_up(&mut members).await?;
    Ok(members)
}

/// Waits for the stroke `id` on `client`, passing over earlier ones.
async fn receives(client: &mut WsClient, id: u64) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            bail!("stroke {id} did not arrive within {TIMEOUT:?}");
        }
        let data = next_stroke(client, left).await?;
        if data["id"].as_u64().context("stroke without id")? == id {
            return Ok(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strokes_cross_members_over_nats_and_members_fail_and_return() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let mut members = cluster(&nats).await?;
    let mut on_alpha = connect(&members[0].ws(crate::BASE)).await?;
    let mut on_beta = connect(&members[1].ws(crate::BASE)).await?;
    let mut on_gamma = connect(&members[2].ws(crate::BASE)).await?;
    // Each client is in the draw channel once a stroke reached it.
    stroke_reaches(&mut on_alpha, &mut on_beta, 1).await?;
    stroke_reaches(&mut on_alpha, &mut on_gamma, 100).await?;

    // A stroke drawn on alpha reaches the clients on beta and gamma, not its sender.
    on_alpha
        .send("draw", stroke(1000))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    receives(&mut on_beta, 1000).await.context("on beta")?;
    receives(&mut on_gamma, 1000).await.context("on gamma")?;
    ensure!(
        next_stroke(&mut on_alpha, Duration::from_millis(200))
            .await
            .is_err(),
        "the sender does not get its own stroke back"
    );

    // gamma dies: alpha (next in ring order after gamma) is its designated handler.
    kill_and_detect(&mut members, 2, "alpha").await?;
    restart_and_detect(&mut members, 2).await?;
    let mut on_gamma = connect(&members[2].ws(crate::BASE)).await?;
    stroke_reaches(&mut on_beta, &mut on_gamma, 2000).await?;
    for m in &mut members {
        ensure!(m.proc.is_running(), "{} exited", m.id);
    }
    Ok(())
}
