//! The backend on other Redis topologies, each a set of real processes from
//! `thywill_testkit::redis`: a Redis Cluster (three primaries, one replica each), a primary and
//! replica watched by three sentinels, and a TLS-only server.
//!
//! Through a failover (a killed cluster primary, a sentinel failover) member-to-member traffic
//! arrives once and in order or is reported as a gap, and the shared replay history gives a
//! following reader every acknowledged entry once and in order or tells it that continuity was
//! lost: never silence.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, ensure};
use thywill_cluster_redis::{
    RedisCaches, RedisCachesConfig, RedisChannels, RedisChannelsConfig, RedisCluster, RedisClusterConfig,
    RedisHistory, RedisHistoryConfig, RedisResources, RedisResourcesConfig, RedisSessions,
    RedisSessionsConfig,
};
use thywill_core::{
    Cluster, DynCacheManager, DynChannelManager, DynHistory, DynResourceManager, DynSessionStore, ErrorKind,
    History, MemberId, MemberStatus, Offset, ReadLimit, Task,
};
use thywill_testkit::conformance::{self, Event, Options, Probe, Recorder, Spec};
use thywill_testkit::redis::{RedisClusterServers, RedisSentinels, RedisTls};
use thywill_testkit::{TIMEOUT, cache_conformance, store_conformance};

fn prefix(kind: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("topology:{kind}:{}:", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_suite_passes_on_a_redis_cluster() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let cluster = RedisClusterServers::start().await?;
    eprintln!("a six-node cluster started in {:?}", started.elapsed());
    let url = cluster.url();
    ensure!(RedisClusterConfig::default().with_url(&url)?.is_cluster());

    store_conformance::history(|limits| {
        let url = url.clone();
        async move {
            let h = RedisHistory::connect(
                RedisHistoryConfig::default()
                    .with_url(url)?
                    .with_prefix(prefix("history"))?
                    .with_limits(limits)?,
            )
            .await?;
            Ok(Arc::new(h) as Arc<dyn DynHistory>)
        }
    })
    .await
    .context("history")?;
    store_conformance::channels(|| async {
        let c = RedisChannels::connect(
            RedisChannelsConfig::default()
                .with_url(&url)?
                .with_prefix(prefix("channels"))?,
        )
        .await?;
        Ok(Arc::new(c) as Arc<dyn DynChannelManager>)
    })
    .await
    .context("channels")?;
    store_conformance::sessions(
        || async {
            let s = RedisSessions::connect(
                RedisSessionsConfig::default()
                    .with_url(&url)?
                    .with_prefix(prefix("sessions"))?,
            )
            .await?;
            Ok(Arc::new(s) as Arc<dyn DynSessionStore>)
        },
        true,
    )
    .await
    .context("sessions")?;
    store_conformance::resources(|| async {
        let r = RedisResources::connect(
            RedisResourcesConfig::default()
                .with_url(&url)?
                .with_prefix(prefix("resources"))?,
        )
        .await?;
        Ok(Arc::new(r) as Arc<dyn DynResourceManager>)
    })
    .await
    .context("resources")?;
    cache_conformance::run(|| async {
        let c = RedisCaches::connect(
            RedisCachesConfig::default()
                .with_url(&url)?
                .with_prefix(prefix("caches"))?,
        )
        .await?;
        Ok(Arc::new(c) as Arc<dyn DynCacheManager>)
    })
    .await
    .context("caches")?;
    let opts = Options::clustered(Duration::from_millis(700 + 250));
    conformance::run(opts, |spec: Spec| {
        let url = url.clone();
        async move { crate::member(&url, &spec) }
    })
    .await
    .context("cluster conformance")
}

/// What a reader following the history saw, in order.
#[derive(Clone, Debug, PartialEq)]
enum Read {
    Entry(u64),
    /// The history said the reader's continuity was lost.
    Lost,
}

/// Traffic on `url` (two members and a shared history) while `fail` runs, and the checks.
async fn traffic_through(
    url: &str,
    fail: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let members = ["alpha", "beta"];
    let cluster_prefix = prefix("cluster");
    let build = |local: &str| -> anyhow::Result<RedisCluster> {
        Ok(RedisCluster::new(
            RedisClusterConfig::default()
                .with_url(url)?
                .with_prefix(cluster_prefix.as_str())?
                .with_members(members)?
                .with_local(local)?,
        )?)
    };
    let (a, b) = (Arc::new(build("alpha")?), Arc::new(build("beta")?));
    let (ra, rb) = (Recorder::new(), Recorder::new());
    a.start(ra.clone()).await?;
    b.start(rb.clone()).await?;
    let (alpha, beta) = (MemberId::from("alpha"), MemberId::from("beta"));
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while a.status(&beta) != MemberStatus::Up || b.status(&alpha) != MemberStatus::Up {
        ensure!(tokio::time::Instant::now() < deadline, "members not up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let history_config = RedisHistoryConfig::default()
        .with_url(url)?
        .with_prefix(prefix("history"))?;
    let writer = RedisHistory::connect(history_config.clone()).await?;
    let reader = RedisHistory::connect(history_config).await?;
    let stream = "failover";

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<(u64, Offset)>::new()));
    let sent = Arc::new(Mutex::new(Vec::<u64>::new()));
    let write = {
        let (stop, acked, sent, a, beta) =
            (stop.clone(), acked.clone(), sent.clone(), a.clone(), beta.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let probe = Probe { label: "f".into(), n }.to_task()?;
                if a.send_to(&beta, probe).await.is_ok() {
                    sent.lock().unwrap_or_else(|e| e.into_inner()).push(n);
                }
                // As the node does: an unavailable history is retried with the same key.
                let give_up = tokio::time::Instant::now() + TIMEOUT * 2;
                loop {
                    match History::append(&writer, stream, n, n.to_string()).await {
                        Ok(off) => {
                            acked.lock().unwrap_or_else(|e| e.into_inner()).push((n, off));
                            break;
                        }
                        Err(e)
                            if e.kind() == ErrorKind::Unavailable
                                && tokio::time::Instant::now() < give_up =>
                        {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) => anyhow::bail!("append {n}: {e}"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            anyhow::Ok(n)
        })
    };
    let reads = Arc::new(Mutex::new(Vec::<Read>::new()));
    let cursor = Arc::new(Mutex::new(Offset {
        epoch: String::new(),
        off: 0,
    }));
    let read_once = {
        let (reads, cursor) = (reads.clone(), cursor.clone());
        let reader = Arc::new(reader);
        move || {
            let (reads, cursor, reader) = (reads.clone(), cursor.clone(), reader.clone());
            async move {
                loop {
                    let at = cursor.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    let replay = match History::read_after(&*reader, stream, &at, ReadLimit::default()).await
                    {
                        Ok(r) => r,
                        // Unavailable during the failover: read again later.
                        Err(e) if e.kind() == ErrorKind::Unavailable => return Ok(()),
                        Err(e) => anyhow::bail!("read: {e}"),
                    };
                    let mut log = reads.lock().unwrap_or_else(|e| e.into_inner());
                    // A reader that saw nothing yet joins whatever is there: not a loss.
                    if !replay.continuous && !at.epoch.is_empty() {
                        log.push(Read::Lost);
                    }
                    let mut next = Offset {
                        epoch: replay.epoch.clone(),
                        off: if replay.continuous { at.off } else { replay.last },
                    };
                    for e in &replay.entries {
                        log.push(Read::Entry(e.payload.parse()?));
                        next.off = e.off;
                    }
                    let done = replay.entries.is_empty();
                    *cursor.lock().unwrap_or_else(|e| e.into_inner()) = next;
                    if done {
                        return anyhow::Ok(());
                    }
                }
            }
        }
    };
    let follow = {
        let (stop, read_once) = (stop.clone(), read_once.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                read_once().await?;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            anyhow::Ok(())
        })
    };

    let count = || acked.lock().unwrap_or_else(|e| e.into_inner()).len();
    let wait_acked = async |n: usize| -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + TIMEOUT * 3;
        while count() < n {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "only {} appends acknowledged (waiting for {n})",
                count()
            );
            ensure!(!write.is_finished(), "the writer stopped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    };
    wait_acked(50).await?;
    let failing = std::time::Instant::now();
    fail.await?;
    let before = count();
    eprintln!(
        "failed over in {:?}, {before} appends acknowledged",
        failing.elapsed()
    );
    // Traffic resumes: 100 more appends after the failover.
    wait_acked(before + 100).await?;
    stop.store(true, Ordering::Relaxed);
    let last = tokio::time::timeout(TIMEOUT * 3, write).await???;
    tokio::time::timeout(TIMEOUT, follow).await???;

    // The history: the reader catches up with the last acknowledged append.
    let acked = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (_, final_offset) = acked.last().cloned().context("nothing acknowledged")?;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        read_once().await?;
        let at = cursor.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if at.epoch == final_offset.epoch && at.off >= final_offset.off {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the reader did not catch up: {at:?} {final_offset:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reads = reads.lock().unwrap_or_else(|e| e.into_inner()).clone();
    check_history(&acked, &reads)?;
    let epochs: std::collections::BTreeSet<&str> = acked.iter().map(|(_, o)| o.epoch.as_str()).collect();

    // Member to member: once, in order, or reported.
    let last_probe = last + 1;
    let deadline = tokio::time::Instant::now() + TIMEOUT * 2;
    loop {
        // The member may be still catching up with its peer's status: retry the last probe.
        if a.send_to(
            &beta,
            Probe {
                label: "f".into(),
                n: last_probe,
            }
            .to_task()?,
        )
        .await
        .is_ok()
        {
            sent.lock().unwrap_or_else(|e| e.into_inner()).push(last_probe);
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "alpha cannot send any more"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rb2 = rb.clone();
    rb.wait_until(TIMEOUT, "the last probe", move |_| {
        rb2.probes().iter().any(|(_, p)| p.n == last_probe).then_some(())
    })
    .await?;
    let received: Vec<u64> = rb.probes().iter().map(|(_, p)| p.n).collect();
    ensure!(
        received.windows(2).all(|w| w[0] < w[1]),
        "probes out of order or twice: {received:?}"
    );
    let sent = sent.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let missing = sent.iter().filter(|n| !received.contains(n)).count() as u64;
    let reported: u64 = rb
        .events()
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Gap(from, n) if *from == alpha => Some(*n),
            _ => None,
        })
        .sum();
    ensure!(
        missing <= reported,
        "{missing} probes missing, only {reported} reported lost (sent {})",
        sent.len()
    );
    eprintln!(
        "through the failover: {} of {} probes received, {reported} reported lost; {} appends in {} epoch(s), \
         the reader saw {} entries and {} continuity loss(es)",
        received.len(),
        sent.len(),
        acked.len(),
        epochs.len(),
        reads.iter().filter(|r| matches!(r, Read::Entry(_))).count(),
        reads.iter().filter(|r| **r == Read::Lost).count(),
    );
    let stop_all: [Arc<RedisCluster>; 2] = [a, b];
    for m in stop_all {
        let m: Arc<dyn thywill_core::DynCluster> = m;
        m.stop().await?;
    }
    Ok(())
}

/// Every acknowledged append is read once and in order, or a loss is reported where it would
/// have been read.
fn check_history(acked: &[(u64, Offset)], reads: &[Read]) -> anyhow::Result<()> {
    // Within each stretch between losses: strictly increasing.
    for stretch in reads.split(|r| *r == Read::Lost) {
        let ns: Vec<u64> = stretch
            .iter()
            .filter_map(|r| match r {
                Read::Entry(n) => Some(*n),
                Read::Lost => None,
            })
            .collect();
        ensure!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "entries out of order or twice: {ns:?}"
        );
    }
    for (n, off) in acked {
        if reads.contains(&Read::Entry(*n)) {
            continue;
        }
        // Not read: a loss must be reported after the last entry before it was read.
        let before = reads
            .iter()
            .rposition(|r| matches!(r, Read::Entry(m) if m < n))
            .map_or(0, |i| i + 1);
        let after = reads
            .iter()
            .skip(before)
            .position(|r| matches!(r, Read::Entry(m) if m > n))
            .map_or(reads.len(), |i| before + i);
        ensure!(
            reads[before..after].contains(&Read::Lost),
            "append {n} ({off:?}) acknowledged, never read, and no loss reported"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_primary_killed_mid_traffic_loses_nothing_silently() -> anyhow::Result<()> {
    let mut cluster = RedisClusterServers::start().await?;
    let url = cluster.url();
    // The primary that holds the history's stream.
    let primary = cluster.primary_of("{failover}").await?;
    let fail = async {
        let promoted = cluster.fail_over(primary).await?;
        eprintln!("primary {primary} killed, replica {promoted} promoted");
        anyhow::Ok(())
    };
    traffic_through(&url, fail).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_mid_traffic_loses_nothing_silently() -> anyhow::Result<()> {
    let mut sentinels = RedisSentinels::start().await?;
    let url = sentinels.url();
    let fail = async {
        let promoted = sentinels.fail_over().await?;
        eprintln!("the sentinels promoted {promoted}");
        anyhow::Ok(())
    };
    traffic_through(&url, fail).await
}

#[tokio::test]
async fn tls_with_the_right_ca_connects_and_a_wrong_ca_is_refused() -> anyhow::Result<()> {
    let tls = RedisTls::start().await?;
    let sessions = RedisSessions::connect(
        RedisSessionsConfig::default()
            .with_url(tls.url())?
            .with_ca_file(tls.ca_file())?
            .with_prefix(prefix("tls"))?,
    )
    .await?;
    let id = thywill_core::SessionId::from("tls-session");
    let data = thywill_core::SessionData::default();
    thywill_core::SessionStore::store(&sessions, &id, data.clone()).await?;
    ensure!(thywill_core::SessionStore::load(&sessions, &id).await? == Some(data));

    let refused = RedisSessions::connect(
        RedisSessionsConfig::default()
            .with_url(tls.url())?
            .with_ca_file(tls.wrong_ca_file())?
            .with_command_timeout(Duration::from_secs(1))?,
    )
    .await;
    let err = refused
        .err()
        .context("a server the CA does not vouch for was accepted")?;
    let text = err.to_string();
    ensure!(err.kind() == ErrorKind::Invalid, "{text}: retrying will not help");
    ensure!(
        matches!(err, thywill_cluster_redis::Error::Tls(_))
            && text.contains("TLS")
            && text.contains("UnknownIssuer"),
        "unclear refusal: {text}"
    );
    eprintln!("wrong CA refused: {text}");

    // Plain text to the TLS port is not a way around it.
    let plain = tls.url().replacen("rediss://", "redis://", 1);
    let spoken = RedisSessions::connect(
        RedisSessionsConfig::default()
            .with_url(plain)?
            .with_command_timeout(Duration::from_secs(1))?,
    )
    .await;
    ensure!(spoken.is_err(), "plain text reached a TLS-only server");
    Ok(())
}
