//! A thywill-rs [`Cluster`] backend over Redis pub/sub, built on `fred`.
//!
//! Every member subscribes to three channels under a configurable prefix:
//!
//! | channel | carries |
//! |---|---|
//! | `<prefix>member:<id>` | tasks addressed to that member ([`Cluster::send_to`]) |
//! | `<prefix>all` | broadcasts ([`Cluster::send_to_others`], [`Cluster::send_to_all`]); the originator ignores its own |
//! | `<prefix>heartbeat` | heartbeats |
//!
//! and, while it is interested in a topic ([`Cluster::interest`]: a channel one of its
//! connections is subscribed to), to `<prefix>topic:<topic>`, which carries that topic's traffic
//! ([`Cluster::send_to_interested`]); with
//! [`with_sharded_pubsub`](RedisClusterConfig::with_sharded_pubsub), over sharded pub/sub
//! (`SSUBSCRIBE`/`SPUBLISH`, Redis 7). A member thus receives and decodes only the channel
//! traffic some local connection waits for. `interest(topic, true)` returns once Redis has
//! confirmed the subscription, so whatever is published to the topic afterwards reaches it.
//!
//! Tasks are published by one client (one connection, so Redis keeps them in order), heartbeats
//! by another, so that a burst of tasks does not delay them; one subscriber client receives
//! everything and re-subscribes after a reconnection (`resubscribe_loop`). Every
//! client has a reconnect policy: after a Redis restart the member resumes on its own.
//!
//! **Membership.** Every member publishes a heartbeat every `interval` (200 ms) from its own
//! task. A member first heard is reported up; one not heard for `timeout` (500 ms) is reported
//! down, with `designated` set on the member that is its designated handler; it is reported up
//! again when its heartbeats resume (or at once if it came back as a new process). A member
//! never heard since start goes from unknown to down silently. While the local member's own link
//! to Redis is broken (it does not hear its own heartbeat) it reports itself unhealthy
//! ([`Cluster::is_healthy`]) and does not declare others down: it cannot tell.
//!
//! **Order and loss.** Redis pub/sub is at-most-once: a message published while a subscriber
//! is disconnected is lost. Every (sender, receiver) pair therefore numbers its traffic
//! ([`thywill_core::cluster::Outbound`]), and heartbeats carry the last number each receiver
//! should have; a receiver that finds a hole reports it through [`ClusterEvents::gap`] and counts
//! it in [`RedisCluster::gaps`]. Nothing is lost without being reported. Order per sender is
//! kept: one queue and one publishing connection per member.
//!
//! Topic traffic is published once for however many members subscribe, so the sender cannot
//! number it per receiver. Redis loses pub/sub messages only in ways one side sees: the
//! subscriber's connection drops (and is made again), the subscriber falls behind its local
//! buffer, or a publication fails at the sender. The first two make the receiver report a gap
//! from every other member (while it is interested in any topic); the sender counts the third
//! in its heartbeats (`topic_lost`), and every interested receiver reports the increase as a
//! gap from it. [`Cluster::stats`] counts every task received from another member, topics
//! included (`received`, `received_bytes`), and the topics of interest (`topics`).
//!
//! ```no_run
//! # async fn run() -> Result<(), thywill_cluster_redis::Error> {
//! use thywill_cluster_redis::{RedisCluster, RedisClusterConfig};
//!
//! let cluster = RedisCluster::new(
//!     RedisClusterConfig::default()
//!         .with_url("redis://127.0.0.1:6379")?
//!         .with_members(["alpha", "beta", "gamma"])?
//!         .with_local("alpha")?,
//! )?;
//! # let _ = cluster; Ok(()) }
//! ```
//!
//! The crate also holds Redis-backed stores shared by the members: [`RedisSessions`],
//! [`RedisChannels`], [`RedisResources`], [`RedisHistory`] (the replay logs that let a
//! client recover what it missed after reconnecting to any member) and [`RedisCaches`] (the
//! applications' named LRU caches, one copy shared by every member).
//!
//! A node takes the cluster and its stores as one bundle, [`RedisBackend`]: the cluster (with the
//! cluster-wide client tracker, which the node builder wires), the shared history, channels
//! and sessions, installed by one builder call (`Thywill::builder().backend(backend)`).

mod backend;
mod caches;
mod channels;
mod config;
mod error;
mod history;
mod resources;
mod sessions;
mod store;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use fred::clients::SubscriberClient;
use fred::prelude::{
    Builder, Client, ClientLike, ConnectionConfig, EventInterface, PerformanceConfig, PubsubInterface,
    ReconnectPolicy,
};
use serde::{Deserialize, Serialize};
use thywill_core::cluster::{Arrival, Inbound, Outbound, Stamp, local_is_designated, new_epoch};
use thywill_core::{
    Cluster, ClusterEvents, ClusterTask, CoreError, CoreResult, MemberId, MemberStatus, Topic,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

pub use backend::RedisBackend;
pub use caches::{RedisCaches, RedisCachesConfig};
pub use channels::{RedisChannels, RedisChannelsConfig};
pub use config::RedisClusterConfig;
pub use error::Error;
pub use history::{RedisHistory, RedisHistoryConfig};
pub use resources::{RedisResources, RedisResourcesConfig};
pub use sessions::{RedisSessions, RedisSessionsConfig};

/// How many queued tasks one pipeline publishes at most.
const BATCH: usize = 256;

/// A task on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: MemberId,
    epoch: u64,
    /// One stamp per receiver.
    stamps: Vec<(MemberId, Stamp)>,
    task: ClusterTask,
}

/// A heartbeat on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct Beat {
    from: MemberId,
    epoch: u64,
    /// For each receiver: the last stamp whose publication completed (well or not).
    published: Vec<(MemberId, Stamp)>,
    /// Topic tasks whose publication failed, since the sender started.
    topic_lost: u64,
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, Error> {
    thywill_core::cluster::codec::encode(v).map_err(|e| Error::Codec(e.to_string()))
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, Error> {
    thywill_core::cluster::codec::decode(b).map_err(|e| Error::Codec(e.to_string()))
}

struct Outgoing {
    channel: String,
    bytes: Vec<u8>,
    stamps: Vec<(MemberId, Stamp)>,
    via: Via,
}

/// How a task is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// To a member's channel or to `all`, numbered per receiver.
    Member,
    /// To a topic's channel (plain pub/sub).
    Topic,
    /// To a topic's channel over sharded pub/sub.
    ShardedTopic,
}

#[derive(Default)]
struct OutState {
    seq: Outbound,
    tx: Option<mpsc::Sender<Outgoing>>,
}

#[derive(Clone, Copy, Debug)]
struct Peer {
    status: MemberStatus,
    last_seen: Option<Instant>,
    epoch: u64,
}

struct Link {
    publisher: Client,
    beat_publisher: Client,
    subscriber: SubscriberClient,
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    config: RedisClusterConfig,
    epoch: u64,
    events: RwLock<Option<Arc<dyn ClusterEvents>>>,
    peers: Mutex<HashMap<MemberId, Peer>>,
    out: Mutex<OutState>,
    published: Mutex<HashMap<MemberId, Stamp>>,
    inbound: Mutex<Inbound>,
    gaps: AtomicU64,
    reconnects: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    received_bytes: AtomicU64,
    /// The topics the local member is subscribed to.
    topics: Mutex<HashSet<Topic>>,
    /// Topic tasks whose publication failed (told in heartbeats).
    topic_lost: AtomicU64,
    /// Per sender: its incarnation and the `topic_lost` of its last heartbeat.
    topic_lost_seen: Mutex<HashMap<MemberId, (u64, u64)>>,
    healthy: AtomicBool,
    link: Mutex<Option<Link>>,
    stop: watch::Sender<bool>,
}

/// A member of a cluster linked by Redis pub/sub. See the [crate docs](crate).
pub struct RedisCluster {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCluster")
            .field("local", &self.shared.config.local)
            .field("members", &self.shared.config.members)
            .field("healthy", &self.is_healthy())
            .field("gaps", &self.gaps())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RedisCluster {
    /// A member with this configuration; connects in [`Cluster::start`].
    pub fn new(config: RedisClusterConfig) -> Result<Self, Error> {
        config.validate()?;
        let epoch = new_epoch(rand::random());
        let peers = config
            .members
            .iter()
            .filter(|m| **m != config.local)
            .map(|m| {
                (
                    m.clone(),
                    Peer {
                        status: MemberStatus::Unknown,
                        last_seen: None,
                        epoch: 0,
                    },
                )
            })
            .collect();
        Ok(Self {
            shared: Arc::new(Shared {
                epoch,
                events: RwLock::new(None),
                peers: Mutex::new(peers),
                out: Mutex::new(OutState::default()),
                published: Mutex::new(HashMap::new()),
                inbound: Mutex::new(Inbound::new(epoch)),
                gaps: AtomicU64::new(0),
                reconnects: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                received: AtomicU64::new(0),
                received_bytes: AtomicU64::new(0),
                topics: Mutex::new(HashSet::new()),
                topic_lost: AtomicU64::new(0),
                topic_lost_seen: Mutex::new(HashMap::new()),
                healthy: AtomicBool::new(false),
                link: Mutex::new(None),
                stop: watch::channel(false).0,
                config,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RedisClusterConfig {
        &self.shared.config
    }

    /// Number of member-to-member messages detected lost since start.
    pub fn gaps(&self) -> u64 {
        self.shared.gaps.load(Ordering::Relaxed)
    }

    /// This incarnation's epoch (random, drawn at construction).
    pub fn epoch(&self) -> u64 {
        self.shared.epoch
    }

    async fn connect(&self, events: Arc<dyn ClusterEvents>) -> Result<(), Error> {
        let sh = &self.shared;
        let cfg = &sh.config;
        *sh.events.write().unwrap_or_else(PoisonError::into_inner) = Some(events);
        let fred_cfg = fred::types::config::Config::from_url(&cfg.url)?;
        // Retry forever, at most one heartbeat interval apart: members of one cluster then
        // recover from a Redis restart within about an interval of each other.
        let max_delay = u32::try_from(cfg.heartbeat_interval.as_millis())
            .unwrap_or(u32::MAX)
            .max(50);
        let policy = ReconnectPolicy::new_exponential(0, 25, max_delay, 2);
        let perf = PerformanceConfig {
            default_command_timeout: cfg.command_timeout,
            broadcast_channel_capacity: 4096,
            ..PerformanceConfig::default()
        };
        let conn = ConnectionConfig {
            connection_timeout: cfg.command_timeout,
            internal_command_timeout: cfg.command_timeout,
            ..ConnectionConfig::default()
        };
        let mut b = Builder::from_config(fred_cfg);
        b.set_policy(policy)
            .set_performance_config(perf)
            .set_connection_config(conn);
        let publisher = b.build()?;
        let beat_publisher = b.build()?;
        let subscriber = b.build_subscriber_client()?;
        let bound = cfg.command_timeout * 2;
        for (name, c) in [
            ("publisher", &publisher),
            ("heartbeat publisher", &beat_publisher),
        ] {
            tokio::time::timeout(bound, c.init())
                .await
                .map_err(|_| Error::Timeout(name))??;
        }
        tokio::time::timeout(bound, subscriber.init())
            .await
            .map_err(|_| Error::Timeout("subscriber"))??;
        let resubscribe = tokio::spawn(resubscribe_loop(sh.clone(), subscriber.clone()));
        let task_rx = subscriber.message_rx();
        let beat_rx = subscriber.message_rx();
        tokio::time::timeout(
            bound,
            subscriber.subscribe(vec![
                cfg.channel_of(&cfg.local),
                cfg.all_channel(),
                cfg.heartbeat_channel(),
            ]),
        )
        .await
        .map_err(|_| Error::Timeout("subscribe"))??;

        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        lock(&sh.out).tx = Some(tx);
        sh.healthy.store(true, Ordering::Relaxed);
        let tasks = vec![
            resubscribe,
            tokio::spawn(publish_loop(sh.clone(), publisher.clone(), rx)),
            tokio::spawn(receive_loop(sh.clone(), task_rx)),
            tokio::spawn(heartbeat_loop(
                sh.clone(),
                beat_publisher.clone(),
                publisher.clone(),
                subscriber.clone(),
                beat_rx,
            )),
        ];
        *lock(&sh.link) = Some(Link {
            publisher,
            beat_publisher,
            subscriber,
            tasks,
        });
        tracing::info!(member = %cfg.local, epoch = sh.epoch, prefix = %cfg.prefix, "redis cluster member started");
        Ok(())
    }

    fn enqueue(&self, channel: String, to: &[MemberId], task: ClusterTask, via: Via) -> CoreResult<()> {
        let sh = &self.shared;
        let mut out = lock(&sh.out);
        let OutState { seq, tx } = &mut *out;
        let tx = tx
            .as_ref()
            .ok_or_else(|| CoreError::Unavailable("redis cluster not started".into()))?;
        // Stamps are drawn only once the queue has room, so that numbers are never skipped
        // for a task that was refused.
        let permit = tx.try_reserve().map_err(|e| match e {
            mpsc::error::TrySendError::Full(()) => {
                CoreError::Unavailable("redis cluster outbound queue full".into())
            }
            mpsc::error::TrySendError::Closed(()) => CoreError::Unavailable("redis cluster stopped".into()),
        })?;
        let stamps: Vec<(MemberId, Stamp)> = to.iter().map(|m| (m.clone(), seq.next(m))).collect();
        let env = Envelope {
            from: sh.config.local.clone(),
            epoch: sh.epoch,
            stamps,
            task,
        };
        let bytes = encode(&env)?;
        permit.send(Outgoing {
            channel,
            bytes,
            stamps: env.stamps,
            via,
        });
        sh.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn deliver_local(&self, task: ClusterTask) {
        if let Some(ev) = self.shared.events() {
            ev.task(self.shared.config.local.clone(), task);
        }
    }

    fn others(&self) -> Vec<MemberId> {
        let cfg = &self.shared.config;
        cfg.members.iter().filter(|m| **m != cfg.local).cloned().collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.shared.stop.send_replace(true);
        if let Some(link) = lock(&self.shared.link).take() {
            for t in link.tasks {
                t.abort();
            }
        }
    }
}

impl Shared {
    fn events(&self) -> Option<Arc<dyn ClusterEvents>> {
        self.events.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Topic traffic may have been lost without a number to show it (see the crate docs):
    /// while the local member is interested in a topic, a gap from every other member.
    fn topic_traffic_lost(&self, why: &str) {
        if lock(&self.topics).is_empty() {
            return;
        }
        tracing::warn!(why, "topic traffic may have been lost");
        for m in self.config.members.iter().filter(|m| **m != self.config.local) {
            self.report_gap(m, 1);
        }
    }

    fn report_gap(&self, from: &MemberId, missing: u64) {
        self.gaps.fetch_add(missing, Ordering::Relaxed);
        tracing::warn!(%from, missing, "cluster traffic lost (sequence gap)");
        if let Some(ev) = self.events() {
            ev.gap(from.clone(), missing);
        }
    }

    /// Whether the local member is the designated handler of `failed`, given `peers`.
    fn is_designated(&self, peers: &HashMap<MemberId, Peer>, failed: &MemberId) -> bool {
        local_is_designated(&self.config.members, &self.config.local, failed, |m| {
            peers.get(m).is_some_and(|p| p.status == MemberStatus::Up)
        })
    }
}

async fn publish_loop(sh: Arc<Shared>, publisher: Client, mut rx: mpsc::Receiver<Outgoing>) {
    let mut stop = sh.stop.subscribe();
    let bound = sh.config.command_timeout + Duration::from_secs(1);
    loop {
        let first = tokio::select! {
            _ = stop.changed() => break,
            m = rx.recv() => match m { Some(m) => m, None => break },
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let pipe = publisher.pipeline();
        let mut queued = true;
        for o in &batch {
            let r: Result<(), _> = if o.via == Via::ShardedTopic {
                pipe.spublish(o.channel.as_str(), o.bytes.as_slice()).await
            } else {
                pipe.publish(o.channel.as_str(), o.bytes.as_slice()).await
            };
            queued &= r.is_ok();
        }
        let is_topic = |o: &Outgoing| o.via != Via::Member;
        let topics_failed = if queued {
            match tokio::time::timeout(bound, pipe.try_all::<i64>()).await {
                Ok(results) => {
                    let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
                    if let Some(e) = errors.first() {
                        tracing::warn!(failed = errors.len(), error = %e, "redis publish failed: receivers will report a gap");
                    }
                    if results.len() == batch.len() {
                        batch
                            .iter()
                            .zip(&results)
                            .filter(|(o, r)| is_topic(o) && r.is_err())
                            .count()
                    } else if errors.is_empty() {
                        0
                    } else {
                        batch.iter().filter(|o| is_topic(o)).count()
                    }
                }
                Err(_) => {
                    tracing::warn!(
                        failed = batch.len(),
                        "redis publish timed out: receivers will report a gap"
                    );
                    batch.iter().filter(|o| is_topic(o)).count()
                }
            }
        } else {
            tracing::warn!(
                failed = batch.len(),
                "redis publish not queued: receivers will report a gap"
            );
            batch.iter().filter(|o| is_topic(o)).count()
        };
        if topics_failed > 0 {
            // Told in the next heartbeats: their receivers report the gap.
            sh.topic_lost.fetch_add(topics_failed as u64, Ordering::Relaxed);
        }
        // Published, well or not: heartbeats now tell receivers to expect these numbers.
        let mut published = lock(&sh.published);
        for o in batch {
            for (m, s) in o.stamps {
                if s.seq == 0 {
                    continue;
                }
                let e = published.entry(m).or_default();
                if e.receiver_epoch != s.receiver_epoch || e.seq < s.seq {
                    *e = s;
                }
            }
        }
    }
}

/// After every reconnection of the subscriber: subscribes to every channel again (the
/// member's, `all`, heartbeats and the topics of interest), then reports the topic traffic that
/// may have been lost meanwhile — once the subscriptions are back, so that nothing published
/// after the report is missed unreported.
async fn resubscribe_loop(sh: Arc<Shared>, subscriber: SubscriberClient) {
    let mut reconnected = subscriber.reconnect_rx();
    while reconnected.recv().await.is_ok() {
        sh.reconnects.fetch_add(1, Ordering::Relaxed);
        tracing::info!("redis subscriber reconnected");
        let bound = sh.config.command_timeout * 2;
        let again = async {
            // Not `resubscribe_all`, which also sends a `PSUBSCRIBE` without patterns (an error).
            let channels: Vec<fred::types::Key> = subscriber
                .tracked_channels()
                .into_iter()
                .map(Into::into)
                .collect();
            subscriber.subscribe(channels).await?;
            for channel in subscriber.tracked_shard_channels() {
                subscriber.ssubscribe(channel).await?;
            }
            // Answered once Redis has processed the subscriptions before it.
            subscriber.ping::<fred::types::Value>(None).await.map(drop)
        };
        match tokio::time::timeout(bound, again).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "redis subscriptions not made again"),
            Err(_) => tracing::warn!("redis subscriptions not made again in time"),
        }
        // Topic traffic published while the subscriber was away is lost unnumbered.
        sh.topic_traffic_lost("the redis subscriber reconnected");
    }
}

fn bytes_of(m: &fred::types::Message) -> Option<&[u8]> {
    m.value.as_bytes()
}

async fn receive_loop(sh: Arc<Shared>, mut rx: broadcast::Receiver<fred::types::Message>) {
    let mut stop = sh.stop.subscribe();
    let beat_channel = sh.config.heartbeat_channel();
    let local = sh.config.local.clone();
    loop {
        let msg = tokio::select! {
            _ = stop.changed() => break,
            m = rx.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(skipped = n, "redis subscriber lagged: gaps will be reported");
                sh.topic_traffic_lost("the redis subscriber lagged");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        let Some(bytes) = bytes_of(&msg) else { continue };
        if *msg.channel == *beat_channel {
            // Watermark: the sender says which numbers we should have by now. Tasks and beats
            // come through this one stream in Redis order, so the check is exact.
            let Ok(beat) = decode::<Beat>(bytes) else { continue };
            if beat.from == local {
                continue;
            }
            if let Some((_, stamp)) = beat.published.iter().find(|(m, _)| *m == local) {
                let missing = lock(&sh.inbound).watermark(&beat.from, beat.epoch, *stamp);
                if missing > 0 {
                    sh.report_gap(&beat.from, missing);
                }
            }
            let topic_lost = {
                let mut seen = lock(&sh.topic_lost_seen);
                let before = seen.insert(beat.from.clone(), (beat.epoch, beat.topic_lost));
                match before {
                    Some((epoch, lost)) if epoch == beat.epoch => beat.topic_lost.saturating_sub(lost),
                    // A new incarnation: counted from here.
                    _ => 0,
                }
            };
            if topic_lost > 0 && !lock(&sh.topics).is_empty() {
                sh.report_gap(&beat.from, topic_lost);
            }
            continue;
        }
        let env = match decode::<Envelope>(bytes) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(channel = %&*msg.channel, error = %e, "undecodable cluster message dropped");
                continue;
            }
        };
        if env.from == local {
            continue; // our own broadcast
        }
        sh.received.fetch_add(1, Ordering::Relaxed);
        sh.received_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let stamp = env
            .stamps
            .iter()
            .find(|(m, _)| *m == local)
            .map(|(_, s)| *s)
            .unwrap_or_default();
        match lock(&sh.inbound).arrive(&env.from, env.epoch, stamp) {
            Arrival::Gap(missing) => sh.report_gap(&env.from, missing),
            Arrival::Stale => tracing::debug!(from = %env.from, seq = stamp.seq, "late cluster message"),
            Arrival::InOrder | Arrival::Untracked => {}
        }
        if let Some(ev) = sh.events() {
            ev.task(env.from, env.task);
        }
    }
}

async fn heartbeat_loop(
    sh: Arc<Shared>,
    beat_publisher: Client,
    publisher: Client,
    subscriber: SubscriberClient,
    mut rx: broadcast::Receiver<fred::types::Message>,
) {
    let cfg = sh.config.clone();
    let mut stop = sh.stop.subscribe();
    let beat_channel = cfg.heartbeat_channel();
    let mut beat = tokio::time::interval(cfg.heartbeat_interval);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let check_period = (cfg.heartbeat_interval / 4).max(Duration::from_millis(5));
    let mut check = tokio::time::interval(check_period);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut self_seen = started;
    let mut grace_from = started;
    let mut healthy = true;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = beat.tick() => {
                let published: Vec<(MemberId, Stamp)> =
                    lock(&sh.published).iter().map(|(m, s)| (m.clone(), *s)).collect();
                let topic_lost = sh.topic_lost.load(Ordering::Relaxed);
                let b = Beat { from: cfg.local.clone(), epoch: sh.epoch, published, topic_lost };
                match encode(&b) {
                    Ok(bytes) => {
                        let p = beat_publisher.clone();
                        let ch = beat_channel.clone();
                        let bound = cfg.heartbeat_timeout;
                        // Never let a stalled publish hold up the clock.
                        tokio::spawn(async move {
                            let r = tokio::time::timeout(bound, p.publish::<i64, _, _>(ch, bytes)).await;
                            if let Ok(Err(e)) = r {
                                tracing::debug!(error = %e, "heartbeat publish failed");
                            }
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "heartbeat not encoded"),
                }
            }
            m = rx.recv() => {
                let m = match m {
                    Ok(m) => m,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                if *m.channel != *beat_channel {
                    continue;
                }
                let Some(Ok(b)) = bytes_of(&m).map(decode::<Beat>) else { continue };
                if b.from == cfg.local {
                    if b.epoch == sh.epoch {
                        self_seen = Instant::now();
                    } else {
                        tracing::error!(member = %cfg.local, "another process runs as this member");
                    }
                    continue;
                }
                heard(&sh, &b.from, b.epoch);
            }
            _ = check.tick() => {
                let now = Instant::now();
                let link_ok = publisher.is_connected() && subscriber.is_connected();
                let now_healthy = link_ok && now.duration_since(self_seen) <= cfg.heartbeat_timeout;
                if now_healthy != healthy {
                    healthy = now_healthy;
                    sh.healthy.store(healthy, Ordering::Relaxed);
                    if healthy {
                        tracing::info!("redis link restored");
                        // Whoever was up gets a fresh timeout, plus an interval for their own
                        // link to come back: we could not hear them.
                        grace_from = now + cfg.heartbeat_interval;
                        for p in lock(&sh.peers).values_mut() {
                            if p.last_seen.is_some() {
                                p.last_seen = Some(grace_from);
                            }
                        }
                    } else {
                        tracing::warn!("redis link broken: member status frozen until it is back");
                    }
                }
                if healthy {
                    check_timeouts(&sh, now, grace_from.max(started));
                }
            }
        }
    }
}

/// A heartbeat from another member.
fn heard(sh: &Shared, from: &MemberId, epoch: u64) {
    let mut emit_down = None;
    let mut emit_up = false;
    let mut new_epoch = false;
    {
        let mut peers = lock(&sh.peers);
        let Some(p) = peers.get(from).copied() else {
            tracing::debug!(%from, "heartbeat from a member not configured");
            return;
        };
        let mut p = p;
        if p.epoch != epoch {
            new_epoch = true;
            if p.status == MemberStatus::Up && p.epoch != 0 {
                // Restarted faster than the timeout: the old incarnation is gone.
                p.status = MemberStatus::Down;
                peers.insert(from.clone(), p);
                emit_down = Some(sh.is_designated(&peers, from));
            }
        }
        p.epoch = epoch;
        p.last_seen = Some(Instant::now());
        if p.status != MemberStatus::Up {
            p.status = MemberStatus::Up;
            emit_up = true;
        }
        peers.insert(from.clone(), p);
    }
    if new_epoch {
        lock(&sh.out).seq.learn_epoch(from, epoch);
    }
    let ev = sh.events();
    if let Some(designated) = emit_down {
        tracing::warn!(member = %from, designated, "cluster member restarted");
        if let Some(ev) = &ev {
            ev.member_down(from.clone(), designated);
        }
    }
    if emit_up {
        tracing::info!(member = %from, "cluster member up");
        if let Some(ev) = &ev {
            ev.member_up(from.clone());
        }
    }
}

fn check_timeouts(sh: &Shared, now: Instant, since: Instant) {
    let timeout = sh.config.heartbeat_timeout;
    let mut downs = Vec::new();
    {
        let mut peers = lock(&sh.peers);
        let mut failed = Vec::new();
        for (id, p) in peers.iter_mut() {
            match (p.status, p.last_seen) {
                (MemberStatus::Up, Some(t)) if now.duration_since(t) > timeout => {
                    p.status = MemberStatus::Down;
                    failed.push(id.clone());
                }
                (MemberStatus::Unknown, _) if now.duration_since(since) > timeout => {
                    // Never heard since start: down, silently.
                    p.status = MemberStatus::Down;
                }
                _ => {}
            }
        }
        // Designated handlers are decided once every failed member is marked down.
        for id in failed {
            let designated = sh.is_designated(&peers, &id);
            downs.push((id, designated));
        }
    }
    let ev = sh.events();
    for (id, designated) in downs {
        tracing::warn!(member = %id, designated, "cluster member down");
        if let Some(ev) = &ev {
            ev.member_down(id, designated);
        }
    }
}

impl RedisCluster {
    /// Subscribes to (or unsubscribes from) a topic's channel, and returns once Redis has
    /// processed it (the subscriber client subscribes again by itself after a reconnection).
    async fn subscribe_topic(
        &self,
        subscriber: &SubscriberClient,
        topic: &Topic,
        on: bool,
    ) -> Result<(), Error> {
        let sh = &self.shared;
        let channel = sh.config.topic_channel(topic);
        let bound = sh.config.command_timeout * 2;
        let call = async {
            match (sh.config.sharded_pubsub, on) {
                (false, true) => subscriber.subscribe(channel).await?,
                (false, false) => subscriber.unsubscribe(channel).await?,
                // The one that fred answers with the server's confirmation.
                (true, true) => return subscriber.ssubscribe(channel).await,
                (true, false) => subscriber.sunsubscribe(channel).await?,
            }
            // fred returns from the others once they are written; Redis answers a connection's
            // commands in order, so the answer to a PING on the same connection confirms them.
            subscriber.ping::<fred::types::Value>(None).await.map(drop)
        };
        tokio::time::timeout(bound, call)
            .await
            .map_err(|_| Error::Timeout(if on { "subscribe" } else { "unsubscribe" }))??;
        let mut topics = lock(&sh.topics);
        if on {
            topics.insert(topic.clone());
        } else {
            topics.remove(topic);
        }
        Ok(())
    }

    /// Queues a task for every member but the local one.
    fn enqueue_others(&self, task: ClusterTask) -> CoreResult<()> {
        let others = self.others();
        if others.is_empty() {
            Ok(())
        } else {
            self.enqueue(self.shared.config.all_channel(), &others, task, Via::Member)
        }
    }
}

impl Cluster for RedisCluster {
    fn local_member(&self) -> &MemberId {
        &self.shared.config.local
    }

    fn members(&self) -> Vec<MemberId> {
        self.shared.config.members.clone()
    }

    fn status(&self, member: &MemberId) -> MemberStatus {
        if *member == self.shared.config.local {
            return MemberStatus::Up;
        }
        lock(&self.shared.peers)
            .get(member)
            .map(|p| p.status)
            .unwrap_or(MemberStatus::Unknown)
    }

    async fn start(&self, events: Arc<dyn ClusterEvents>) -> CoreResult<()> {
        self.connect(events).await.map_err(CoreError::from)
    }

    async fn stop(&self) -> CoreResult<()> {
        self.shared.stop.send_replace(true);
        lock(&self.shared.out).tx = None;
        self.shared.healthy.store(false, Ordering::Relaxed);
        let link = lock(&self.shared.link).take();
        if let Some(link) = link {
            for t in &link.tasks {
                t.abort();
            }
            let bound = Duration::from_millis(500);
            let _ = tokio::time::timeout(bound, link.subscriber.quit()).await;
            let _ = tokio::time::timeout(bound, link.publisher.quit()).await;
            let _ = tokio::time::timeout(bound, link.beat_publisher.quit()).await;
        }
        tracing::info!(member = %self.shared.config.local, "redis cluster member stopped");
        Ok(())
    }

    async fn send_to(&self, member: &MemberId, task: ClusterTask) -> CoreResult<()> {
        if *member == self.shared.config.local {
            self.deliver_local(task);
            Ok(())
        } else if !self.shared.config.members.contains(member) {
            Err(CoreError::NotFound(format!("member {member}")))
        } else {
            self.enqueue(
                self.shared.config.channel_of(member),
                std::slice::from_ref(member),
                task,
                Via::Member,
            )
        }
    }

    async fn send_to_others(&self, task: ClusterTask) -> CoreResult<()> {
        self.enqueue_others(task)
    }

    async fn send_to_all(&self, task: ClusterTask) -> CoreResult<()> {
        self.deliver_local(task.clone());
        self.enqueue_others(task)
    }

    async fn interest(&self, topic: &Topic, on: bool) -> CoreResult<()> {
        let subscriber = lock(&self.shared.link)
            .as_ref()
            .map(|l| l.subscriber.clone())
            .ok_or_else(|| CoreError::Unavailable("redis cluster not started".into()))?;
        self.subscribe_topic(&subscriber, topic, on)
            .await
            .map_err(CoreError::from)
    }

    async fn send_to_interested(&self, topic: &Topic, task: ClusterTask) -> CoreResult<()> {
        if self.shared.config.members.len() < 2 {
            return Ok(());
        }
        let via = if self.shared.config.sharded_pubsub {
            Via::ShardedTopic
        } else {
            Via::Topic
        };
        self.enqueue(self.shared.config.topic_channel(topic), &[], task, via)
    }

    fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed)
    }

    fn stats(&self) -> thywill_core::ClusterStats {
        let sh = &self.shared;
        thywill_core::ClusterStats::new(
            sh.reconnects.load(Ordering::Relaxed),
            sh.gaps.load(Ordering::Relaxed),
            sh.sent.load(Ordering::Relaxed),
            sh.received.load(Ordering::Relaxed),
        )
        .with_received_bytes(sh.received_bytes.load(Ordering::Relaxed))
        .with_topics(lock(&sh.topics).len() as u64)
    }
}
