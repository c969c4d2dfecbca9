//! `RedisHistory` against a real `redis-server`: numbering, replay, the entry and age bounds,
//! epochs, members sharing one log, a Redis restart, and client message marks.

use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use thywill_cluster_redis::{RedisHistory, RedisHistoryConfig};
use thywill_core::{Entry, History, HistoryLimits, Offset, ReadLimit, Replay};

/// Reads without a chunk bound.
const ALL: ReadLimit = ReadLimit {
    max_entries: usize::MAX,
    max_bytes: usize::MAX,
};
use thywill_testkit::redis::RedisServer;

async fn connect(redis: &RedisServer, limits: HistoryLimits) -> anyhow::Result<RedisHistory> {
    Ok(RedisHistory::connect(
        RedisHistoryConfig::default()
            .with_url(redis.url())?
            .with_prefix("test:history:")?
            .with_limits(limits)?,
    )
    .await?)
}

fn limits(max_entries: usize, max_age: Duration) -> HistoryLimits {
    HistoryLimits {
        max_entries,
        max_age,
        ..HistoryLimits::default()
    }
}

fn at(epoch: &str, off: u64) -> Offset {
    Offset {
        epoch: epoch.to_owned(),
        off,
    }
}

fn offs(r: &Replay) -> Vec<u64> {
    r.entries.iter().map(|e| e.off).collect()
}

#[tokio::test]
async fn appends_are_numbered_and_the_tail_is_replayed_in_order() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let h = connect(&redis, HistoryLimits::default()).await?;
    assert!(h.is_shared());

    // A stream never written has no log.
    let none = h.read_after("c:room", &at("", 0), ALL).await?;
    assert_eq!(
        none,
        Replay {
            epoch: String::new(),
            continuous: false,
            entries: vec![],
            last: 0
        }
    );

    // Payloads are opaque text: spaces, newlines, any UTF-8, even empty.
    let payloads = [
        r#"{"text": "a b  c"}"#.to_owned(),
        "line one\nline two\r\n\ttabbed ".to_owned(),
        "ünïcödé ✓ 日本 🎉".to_owned(),
        String::new(),
    ];
    let mut offsets = Vec::new();
    for p in &payloads {
        offsets.push(h.append("c:room", rand::random(), p.clone()).await?);
    }
    let epoch = offsets[0].epoch.clone();
    ensure!(
        epoch.len() == 16 && epoch.chars().all(|c| c.is_ascii_hexdigit()),
        "epoch {epoch:?}"
    );
    assert!(offsets.iter().all(|o| o.epoch == epoch), "one epoch: {offsets:?}");
    assert_eq!(offsets.iter().map(|o| o.off).collect::<Vec<_>>(), [1, 2, 3, 4]);

    // Exactly the tail after the client's offset, in order, payloads intact.
    let r = h.read_after("c:room", &at(&epoch, 1), ALL).await?;
    assert_eq!(
        r,
        Replay {
            epoch: epoch.clone(),
            continuous: true,
            entries: (2..=4)
                .map(|off| Entry {
                    off,
                    payload: payloads[off as usize - 1].clone()
                })
                .collect(),
            last: 4,
        }
    );
    let all = h.read_after("c:room", &at(&epoch, 0), ALL).await?;
    assert!(all.continuous);
    assert_eq!(
        all.entries.iter().map(|e| &e.payload).collect::<Vec<_>>(),
        payloads.iter().collect::<Vec<_>>()
    );

    // Up to date (or ahead): continuous, nothing to replay.
    for off in [4, 9] {
        let r = h.read_after("c:room", &at(&epoch, off), ALL).await?;
        assert!(r.continuous && r.entries.is_empty() && r.last == 4, "{r:?}");
    }

    // Streams are independent.
    let other = h.append("s:abc", rand::random(), "x".into()).await?;
    assert_eq!(other.off, 1);
    assert_ne!(other.epoch, epoch);
    assert_eq!(h.read_after("c:room", &at(&epoch, 3), ALL).await?.last, 4);
    h.quit().await;
    Ok(())
}

#[tokio::test]
async fn trimmed_offsets_are_not_continuous() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let h = connect(&redis, limits(3, Duration::from_secs(60))).await?;
    let mut epoch = String::new();
    for n in 1..=10u64 {
        let o = h.append("c:t", rand::random(), format!("m{n}")).await?;
        assert_eq!(o.off, n);
        epoch = o.epoch;
    }
    // Kept: 8, 9, 10. A client at 7 misses nothing.
    let r = h.read_after("c:t", &at(&epoch, 7), ALL).await?;
    assert!(r.continuous, "{r:?}");
    assert_eq!(offs(&r), [8, 9, 10]);
    // A client at 5 lost 6 and 7: told so, and given what is kept.
    let r = h.read_after("c:t", &at(&epoch, 5), ALL).await?;
    assert!(!r.continuous, "{r:?}");
    assert_eq!(offs(&r), [8, 9, 10]);
    assert_eq!(r.entries[0].payload, "m8");
    assert_eq!((r.epoch.as_str(), r.last), (epoch.as_str(), 10));
    let r = h.read_after("c:t", &at(&epoch, 8), ALL).await?;
    assert!(r.continuous);
    assert_eq!(offs(&r), [9, 10]);
    h.quit().await;
    Ok(())
}

#[tokio::test]
async fn entries_older_than_max_age_are_not_replayed() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let max_age = Duration::from_millis(300);
    let h = connect(&redis, limits(100, max_age)).await?;
    let first = h.append("c:age", rand::random(), "old".into()).await?;
    // The behaviour under test is the clock: wait for the first entry to age out.
    tokio::time::sleep(max_age + Duration::from_millis(200)).await;
    let second = h.append("c:age", rand::random(), "new".into()).await?;
    assert_eq!((second.epoch.as_str(), second.off), (first.epoch.as_str(), 2));

    // Still in the list, but too old: the client at 0 lost 1.
    let r = h.read_after("c:age", &at(&first.epoch, 0), ALL).await?;
    assert!(!r.continuous, "{r:?}");
    assert_eq!(offs(&r), [2]);
    assert_eq!(r.last, 2);
    // The client at 1 misses nothing.
    let r = h.read_after("c:age", &at(&first.epoch, 1), ALL).await?;
    assert!(r.continuous, "{r:?}");
    assert_eq!(offs(&r), [2]);

    // Once everything aged out (and the list expired): nothing to replay, but the epoch and
    // the numbering are kept.
    tokio::time::sleep(max_age + Duration::from_millis(200)).await;
    let r = h.read_after("c:age", &at(&first.epoch, 1), ALL).await?;
    assert_eq!(
        r,
        Replay {
            epoch: first.epoch.clone(),
            continuous: false,
            entries: vec![],
            last: 2
        }
    );
    let r = h.read_after("c:age", &at(&first.epoch, 2), ALL).await?;
    assert!(r.continuous && r.entries.is_empty());
    let third = h.append("c:age", rand::random(), "again".into()).await?;
    assert_eq!((third.epoch.as_str(), third.off), (first.epoch.as_str(), 3));
    let r = h.read_after("c:age", &at(&first.epoch, 2), ALL).await?;
    assert!(r.continuous);
    assert_eq!(offs(&r), [3]);
    h.quit().await;
    Ok(())
}

#[tokio::test]
async fn another_epoch_is_not_continuous() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let h = connect(&redis, HistoryLimits::default()).await?;
    for n in 0..3 {
        h.append("c:e", rand::random(), format!("m{n}")).await?;
    }
    for client in [at("0123456789abcdef", 1), at("0123456789abcdef", 3), at("", 0)] {
        let r = h.read_after("c:e", &client, ALL).await?;
        assert!(!r.continuous, "{client:?}: {r:?}");
        assert_eq!(offs(&r), [1, 2, 3], "every kept entry of the current epoch");
        assert_eq!(r.last, 3);
        assert_ne!(r.epoch, client.epoch);
    }
    h.quit().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_share_one_gap_free_numbering() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let alpha = Arc::new(connect(&redis, HistoryLimits::default()).await?);
    let beta = Arc::new(connect(&redis, HistoryLimits::default()).await?);
    const PER_MEMBER: u64 = 200;
    let mut tasks = Vec::new();
    for (name, h) in [("alpha", alpha.clone()), ("beta", beta.clone())] {
        for worker in 0..4 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..PER_MEMBER / 4 {
                    got.push(
                        h.append("c:shared", rand::random(), format!("{name} {worker} {i}"))
                            .await?,
                    );
                }
                anyhow::Ok(got)
            }));
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let epoch = all[0].epoch.clone();
    assert!(all.iter().all(|o| o.epoch == epoch), "one epoch");
    let mut numbers: Vec<u64> = all.iter().map(|o| o.off).collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (1..=2 * PER_MEMBER).collect::<Vec<_>>(),
        "gap-free, no duplicates"
    );

    // Either member replays the same log, and each appender's messages keep their order.
    let from_alpha = alpha.read_after("c:shared", &at(&epoch, 0), ALL).await?;
    let from_beta = beta.read_after("c:shared", &at(&epoch, 0), ALL).await?;
    assert_eq!(from_alpha, from_beta);
    assert!(from_alpha.continuous);
    assert_eq!(offs(&from_alpha), (1..=2 * PER_MEMBER).collect::<Vec<_>>());
    for o in &all {
        let e = &from_alpha.entries[o.off as usize - 1];
        assert_eq!(e.off, o.off);
    }
    let mut by_writer = std::collections::HashMap::<String, Vec<u64>>::new();
    for e in &from_alpha.entries {
        let mut parts = e.payload.rsplitn(2, ' ');
        let i: u64 = parts.next().unwrap_or_default().parse()?;
        by_writer
            .entry(parts.next().unwrap_or_default().to_owned())
            .or_default()
            .push(i);
    }
    assert_eq!(by_writer.len(), 8);
    for (writer, seq) in by_writer {
        assert_eq!(seq, (0..PER_MEMBER / 4).collect::<Vec<_>>(), "{writer}");
    }
    alpha.quit().await;
    beta.quit().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_log_starts_a_new_epoch() -> anyhow::Result<()> {
    let mut redis = RedisServer::start().await?;
    let h = connect(&redis, HistoryLimits::default()).await?;
    let mut old = at("", 0);
    for n in 0..3 {
        old = h.append("c:r", rand::random(), format!("m{n}")).await?;
    }
    h.set_received_mark("tab", 5).await?;
    assert_eq!(old.off, 3);

    redis.restart().await?;
    // The connection comes back by itself; the first commands may fail while it does.
    let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
    let fresh = loop {
        match h.append("c:r", rand::random(), "after".into()).await {
            Ok(o) => break o,
            Err(e) => {
                ensure!(
                    tokio::time::Instant::now() < deadline,
                    "no append after the restart: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_ne!(fresh.epoch, old.epoch);
    assert_eq!(fresh.off, 1);
    let r = h.read_after("c:r", &old, ALL).await?;
    assert_eq!(
        r,
        Replay {
            epoch: fresh.epoch.clone(),
            continuous: false,
            entries: vec![Entry {
                off: 1,
                payload: "after".into()
            }],
            last: 1,
        }
    );
    assert_eq!(h.received_mark("tab").await?, 0, "marks went with the data");
    h.quit().await;
    Ok(())
}

#[tokio::test]
async fn marks_only_go_up() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let alpha = connect(&redis, HistoryLimits::default()).await?;
    let beta = connect(&redis, HistoryLimits::default()).await?;
    assert_eq!(alpha.received_mark("tab-1").await?, 0);
    alpha.set_received_mark("tab-1", 7).await?;
    assert_eq!(beta.received_mark("tab-1").await?, 7);
    beta.set_received_mark("tab-1", 3).await?;
    assert_eq!(alpha.received_mark("tab-1").await?, 7, "never lowered");
    beta.set_received_mark("tab-1", 10).await?;
    alpha.set_received_mark("tab-1", 9).await?;
    assert_eq!(alpha.received_mark("tab-1").await?, 10);
    // Compared exactly, not as floating point, across digit counts.
    alpha.set_received_mark("tab-2", 99).await?;
    alpha.set_received_mark("tab-2", 100).await?;
    alpha.set_received_mark("tab-2", u64::MAX - 1).await?;
    alpha.set_received_mark("tab-2", u64::MAX - 2).await?;
    assert_eq!(beta.received_mark("tab-2").await?, u64::MAX - 1);
    alpha.set_received_mark("tab-2", u64::MAX).await?;
    assert_eq!(beta.received_mark("tab-2").await?, u64::MAX);
    assert_eq!(beta.received_mark("tab-1").await?, 10, "tabs are independent");
    alpha.quit().await;
    beta.quit().await;
    Ok(())
}

#[tokio::test]
async fn a_retried_append_keeps_its_first_offset() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let h = connect(&redis, HistoryLimits::default()).await?;
    let first = h.append("c:retry", 42, "once".into()).await?;
    let again = h.append("c:retry", 42, "once".into()).await?;
    ensure!(again == first, "a retry logged twice: {first:?} then {again:?}");
    let next = h.append("c:retry", 43, "next".into()).await?;
    ensure!(next.off == first.off + 1);
    let r = h.read_after("c:retry", &at(&first.epoch, 0), ALL).await?;
    ensure!(offs(&r) == [1, 2], "entries {:?}", offs(&r));
    Ok(())
}

/// While Redis is down a history call fails as `Unavailable` (what the node's retries decide
/// by), with the backend's error and the Redis client's under it as the source chain; once
/// Redis is back the same history works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_redis_is_an_unavailable_error_with_its_source() -> anyhow::Result<()> {
    use std::error::Error as _;
    use thywill_core::{CoreError, ErrorKind};

    let mut redis = RedisServer::start().await?;
    let h = RedisHistory::connect(
        RedisHistoryConfig::default()
            .with_url(redis.url())?
            .with_prefix("test:history:")?
            .with_command_timeout(Duration::from_millis(300))?,
    )
    .await?;
    History::append(&h, "c:r", 1, "before".into()).await?;
    redis.stop();
    let err: CoreError = match History::append(&h, "c:r", 2, "while down".into()).await {
        Ok(o) => anyhow::bail!("an append succeeded without Redis: {o:?}"),
        Err(e) => e,
    };
    ensure!(err.kind() == ErrorKind::Unavailable, "{err} is {:?}", err.kind());
    ensure!(err.component_name() == Some("cluster-redis"), "{err}");
    let backend = err
        .source()
        .and_then(|s| s.downcast_ref::<thywill_cluster_redis::Error>());
    ensure!(
        matches!(
            backend,
            Some(thywill_cluster_redis::Error::Redis(_) | thywill_cluster_redis::Error::Timeout(_))
        ),
        "the backend's error is the source: {backend:?}"
    );
    redis.restart().await?;
    let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
    loop {
        match History::append(&h, "c:r", 3, "after".into()).await {
            Ok(_) => break,
            Err(e) => {
                ensure!(e.is_retryable(), "a reconnecting client fails as retryable: {e}");
                ensure!(
                    tokio::time::Instant::now() < deadline,
                    "no append after the restart: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    h.quit().await;
    Ok(())
}
