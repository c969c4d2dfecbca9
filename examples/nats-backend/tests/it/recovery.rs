//! What the conformance suite does not cover: a NATS restart (the link breaks and comes back)
//! and garbage published on a member's subject.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use thywill_core::{Cluster, MemberId, MemberStatus, Task};
use thywill_nats_example::NatsCluster;
use thywill_testkit::TIMEOUT;
use thywill_testkit::conformance::{Event, Probe, Recorder, Spec};
use thywill_testkit::nats::NatsServer;

fn spec(cluster: &str, local: &str) -> Spec {
    Spec {
        cluster: cluster.into(),
        members: vec!["alpha".into(), "beta".into()],
        local: local.into(),
    }
}

fn probe(label: &str, n: u64) -> anyhow::Result<thywill_core::ClusterTask> {
    Ok(Probe {
        label: label.into(),
        n,
    }
    .to_task()?)
}

/// Polls `cond` until it holds, within the test timeout (health and status have no change
/// notification).
async fn until(what: &str, cond: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            bail!("not {what} within {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn pair(url: &str, cluster: &str) -> anyhow::Result<[(Arc<NatsCluster>, Arc<Recorder>); 2]> {
    let mut out = Vec::new();
    for local in ["alpha", "beta"] {
        let m = crate::member(url, &spec(cluster, local))?;
        let rec = Recorder::new();
        m.start(rec.clone()).await?;
        out.push((m, rec));
    }
    let [a, b]: [(Arc<NatsCluster>, Arc<Recorder>); 2] =
        out.try_into().map_err(|_| anyhow::anyhow!("two members"))?;
    until("both up", || {
        a.0.status(&"beta".into()) == MemberStatus::Up && b.0.status(&"alpha".into()) == MemberStatus::Up
    })
    .await?;
    Ok([a, b])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_is_survived_and_nothing_is_lost_unreported() -> anyhow::Result<()> {
    let mut nats = NatsServer::start().await?;
    let [(alpha, _), (beta, on_beta)] = pair(&nats.url(), "restart").await?;
    let to_beta = MemberId::from("beta");
    alpha.send_to(&to_beta, probe("before", 0)?).await?;
    on_beta
        .wait_event(TIMEOUT, "the probe before", |e| matches!(e, Event::Task { .. }))
        .await?;

    nats.stop();
    until("alpha unhealthy", || !alpha.is_healthy()).await?;
    until("beta unhealthy", || !beta.is_healthy()).await?;
    const DURING: u64 = 5;
    for n in 1..=DURING {
        alpha.send_to(&to_beta, probe("during", n)?).await?;
    }
    nats.restart().await?;
    until("alpha healthy again", || alpha.is_healthy()).await?;
    until("beta healthy again", || beta.is_healthy()).await?;
    alpha.send_to(&to_beta, probe("after", 0)?).await?;
    on_beta
        .wait_until(TIMEOUT, "the probe after", |_| {
            on_beta
                .probes()
                .iter()
                .any(|(_, p)| p.label == "after")
                .then_some(())
        })
        .await?;
    // Each task sent during the outage arrived, or was counted lost, once the next heartbeat
    // told beta what alpha had sent (the client may have kept some across the reconnection).
    let arrived = on_beta
        .probes()
        .iter()
        .filter(|(_, p)| p.label == "during")
        .count() as u64;
    eprintln!("recovery: {arrived} of the {DURING} tasks sent during the outage arrived");
    on_beta
        .wait_until(TIMEOUT, "the outage accounted for", |events| {
            let lost: u64 = events
                .iter()
                .filter_map(|(_, e)| match e {
                    Event::Gap(from, n) if from.as_str() == "alpha" => Some(*n),
                    _ => None,
                })
                .sum();
            (arrived + lost == DURING).then_some(())
        })
        .await
        .with_context(|| format!("{arrived} of {DURING} arrived, gaps {}", beta.gaps()))?;
    ensure!(beta.gaps() == DURING - arrived, "gaps counted: {}", beta.gaps());
    ensure!(
        !on_beta.events().iter().any(|(_, e)| matches!(e, Event::Down(..))),
        "a member whose own link is broken declares nobody down"
    );
    ensure!(alpha.stats().reconnects >= 1, "the reconnection is counted");
    alpha.stop().await?;
    beta.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_a_member_subject_is_dropped_and_tasks_still_flow() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let [(alpha, _), (beta, on_beta)] = pair(&nats.url(), "garbage").await?;
    let raw = async_nats::connect(nats.url()).await?;
    let subject = beta.config().subject_of(&"beta".into());
    for garbage in [&b""[..], b"\xff\xff\xff\xff", b"\x00\x05alpha", &[0x01; 64]] {
        raw.publish(subject.clone(), bytes::Bytes::copy_from_slice(garbage))
            .await?;
    }
    raw.flush().await?;
    alpha.send_to(&"beta".into(), probe("still", 1)?).await?;
    on_beta
        .wait_until(TIMEOUT, "the probe after the garbage", |_| {
            on_beta
                .probes()
                .iter()
                .any(|(f, p)| f.as_str() == "alpha" && p.label == "still")
                .then_some(())
        })
        .await?;
    ensure!(on_beta.probes().len() == 1, "only the real task was delivered");
    ensure!(beta.is_healthy() && beta.gaps() == 0);
    alpha.stop().await?;
    beta.stop().await?;
    Ok(())
}
