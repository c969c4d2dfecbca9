//! Redis restarts under a running cluster: members report themselves unhealthy, reconnect and
//! resubscribe by themselves, and whatever was lost is reported as a gap.

use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use thywill_cluster_redis::{RedisCluster, RedisClusterConfig};
use thywill_core::{Cluster, MemberId, MemberStatus, Task, Topic};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_traffic_lost_in_a_redis_restart_is_reported_and_the_interest_survives() -> anyhow::Result<()> {
    let mut redis = RedisServer::start().await?;
    for sharded in [false, true] {
        topic_restart(&mut redis, sharded)
            .await
            .map_err(|e| e.context(format!("sharded pub/sub: {sharded}")))?;
    }
    Ok(())
}

async fn topic_restart(redis: &mut RedisServer, sharded: bool) -> anyhow::Result<()> {
    let members = ["alpha", "beta"];
    let url = redis.url();
    let build = |local: &str| -> anyhow::Result<RedisCluster> {
        Ok(RedisCluster::new(
            RedisClusterConfig::default()
                .with_url(url.clone())?
                .with_prefix(format!("test:topic-recovery-{sharded}:"))?
                .with_members(members)?
                .with_local(local)?
                .with_sharded_pubsub(sharded),
        )?)
    };
    let (a, b) = (build("alpha")?, build("beta")?);
    let (ra, rb) = (Recorder::new(), Recorder::new());
    a.start(ra.clone()).await?;
    b.start(rb.clone()).await?;
    let (alpha, beta) = (MemberId::from("alpha"), MemberId::from("beta"));
    wait_for("members up", || {
        a.status(&beta) == MemberStatus::Up && b.status(&alpha) == MemberStatus::Up
    })
    .await?;
    let topic = Topic::channel(&"room".into());
    b.interest(&topic, true).await?;
    let probe = |n: u64| Probe { label: "t".into(), n }.to_task();
    a.send_to_interested(&topic, probe(1)?).await?;
    rb.wait_event(thywill_testkit::TIMEOUT, "first topic probe", |e| {
        matches!(e, Event::Task { .. })
    })
    .await?;

    redis.stop();
    wait_for("alpha unhealthy", || !a.is_healthy()).await?;
    const DURING: u64 = 20;
    for n in 2..2 + DURING {
        let _ = a.send_to_interested(&topic, probe(n)?).await;
    }
    redis.restart().await?;
    wait_for("alpha healthy again", || a.is_healthy()).await?;
    wait_for("beta healthy again", || b.is_healthy()).await?;
    // The subscription was made again by itself: what is sent now arrives.
    let last = 2 + DURING;
    let rb2 = rb.clone();
    let arrived = move || rb2.probes().iter().any(|(_, p)| p.n == last);
    let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
    // Until the resubscription is in place a publication reaches no one: sent again until
    // one arrives (each is a new message; lost ones are reported below).
    while !arrived() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no topic traffic after the restart"
        );
        a.send_to_interested(&topic, probe(last)?).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let during: Vec<u64> = rb
        .probes()
        .iter()
        .map(|(_, p)| p.n)
        .filter(|n| (2..2 + DURING).contains(n))
        .collect();
    let gaps = rb
        .events()
        .iter()
        .filter(|(_, e)| matches!(e, Event::Gap(from, _) if *from == alpha))
        .count();
    ensure!(
        during.len() as u64 == DURING || gaps > 0,
        "{} of {DURING} topic tasks sent during the restart arrived, and no gap was reported",
        during.len()
    );
    ensure!(b.stats().topics == 1, "the interest did not survive");
    eprintln!(
        "redis restart: {} of {DURING} topic tasks arrived, {gaps} gaps reported",
        during.len()
    );
    a.stop().await?;
    b.stop().await?;
    Ok(())
}
