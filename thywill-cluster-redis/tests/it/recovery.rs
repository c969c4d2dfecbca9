//! Redis restarts under a running cluster: members report themselves unhealthy, reconnect and
//! resubscribe by themselves, and whatever was lost is reported as a gap.

use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use thywill_cluster_redis::{RedisCluster, RedisClusterConfig};
use thywill_core::{Cluster, MemberId, MemberStatus, Task};
use thywill_testkit::conformance::{Event, Probe, Recorder};
use thywill_testkit::redis::RedisServer;

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
    while !cond() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_survived_and_losses_are_reported() -> anyhow::Result<()> {
    let mut redis = RedisServer::start().await?;
    let members = ["alpha", "beta"];
    let build = |local: &str| -> anyhow::Result<RedisCluster> {
        Ok(RedisCluster::new(
            RedisClusterConfig::default()
                .with_url(redis.url())?
                .with_prefix("test:recovery:")?
                .with_members(members)?
                .with_local(local)?,
        )?)
    };
    let (a, b) = (build("alpha")?, build("beta")?);
    let (ra, rb) = (Recorder::new(), Recorder::new());
    a.start(ra.clone()).await?;
    b.start(rb.clone()).await?;
    let beta = MemberId::from("beta");
    let alpha = MemberId::from("alpha");
    wait_for("members up", || {
        a.status(&beta) == MemberStatus::Up && b.status(&alpha) == MemberStatus::Up
    })
    .await?;

    let probe = |n: u64| Probe { label: "r".into(), n }.to_task();
    a.send_to(&beta, probe(1)?).await?;
    rb.wait_event(thywill_testkit::TIMEOUT, "first probe", |e| {
        matches!(e, Event::Task { .. })
    })
    .await?;

    redis.stop();
    wait_for("alpha unhealthy", || !a.is_healthy()).await?;
    // Sent while Redis is down: each either arrives after the restart or is reported lost.
    const DURING: u64 = 20;
    for n in 2..2 + DURING {
        let _ = a.send_to(&beta, probe(n)?).await;
    }
    redis.restart().await?;
    wait_for("alpha healthy again", || a.is_healthy()).await?;
    wait_for("beta healthy again", || b.is_healthy()).await?;
    let last = 2 + DURING;
    a.send_to(&beta, probe(last)?).await?;
    let rb2 = rb.clone();
    rb.wait_until(
        thywill_testkit::TIMEOUT,
        "the probe sent after the restart",
        move |_| rb2.probes().iter().any(|(_, p)| p.n == last).then_some(()),
    )
    .await?;
    let received = rb.probes().len() as u64;
    let reported: u64 = rb
        .events()
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Gap(from, n) if *from == alpha => Some(*n),
            _ => None,
        })
        .sum();
    ensure!(
        received + reported >= last,
        "received {received} + reported lost {reported} < sent {last}"
    );
    ensure!(
        b.gaps() == reported,
        "gaps() {} disagrees with the events {reported}",
        b.gaps()
    );
    // Membership survived: nobody was declared down while the link was broken.
    ensure!(
        !ra.events().iter().any(|(_, e)| matches!(e, Event::Down(..))),
        "alpha declared someone down"
    );
    ensure!(a.status(&beta) == MemberStatus::Up && b.status(&alpha) == MemberStatus::Up);
    eprintln!("redis restart: {received} of {last} received, {reported} reported lost");
    let (a, b): (
        Arc<dyn thywill_core::DynCluster>,
        Arc<dyn thywill_core::DynCluster>,
    ) = (Arc::new(a), Arc::new(b));
    a.stop().await?;
    b.stop().await?;
    Ok(())
}
