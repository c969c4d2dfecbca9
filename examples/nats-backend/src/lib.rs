//! A thywill-rs cluster backend over [NATS](https://nats.io), written outside the framework's
//! crates the way a user would write one: it depends on `thywill-core` (the component author's
//! API) and the `async-nats` client, implements [`Cluster`], and exports one
//! [`Backend`](thywill_core::Backend) bundle, [`NatsBackend`], which a node installs with one
//! builder call:
//!
//! ```no_run
//! # fn run() -> Result<(), thywill_nats_example::Error> {
//! use thywill_nats_example::{NatsBackend, NatsClusterConfig};
//!
//! let backend = NatsBackend::new(
//!     NatsClusterConfig::default()
//!         .with_url("nats://127.0.0.1:4222")?
//!         .with_cluster("draw")?
//!         .with_members(["alpha", "beta", "gamma"])?
//!         .with_local("alpha")?,
//! );
//! // thywill::Thywill::builder().backend(backend)
//! # let _ = backend; Ok(()) }
//! ```
//!
//! **Subjects.** Each member listens on one subject, `thywill.<cluster>.member.<id>`, which
//! carries everything addressed to it: tasks ([`Cluster::send_to`]; a broadcast is published
//! once to each other member) and the other members' heartbeats. One subscription is one
//! ordered stream: a sender's tasks and heartbeats reach a receiver in the order it published
//! them, which the per-sender order and the loss accounting below rely on (two subscriptions,
//! one for broadcasts, would each keep their own order but not their order between them).
//!
//! **Membership.** Every member publishes a heartbeat every `interval` (200 ms) to every member,
//! itself included. A member first heard is reported up; one not heard for `timeout` (500 ms)
//! is reported down, with `designated` set on its designated handler
//! ([`Cluster::designated_handler`], the core's ring order); it is reported up again when its
//! heartbeats resume (down and up at once if it came back as a new process). A member never
//! heard since start goes from unknown to down silently. While the member does not hear its
//! own heartbeat (its link to NATS is broken) it reports itself unhealthy
//! ([`Cluster::is_healthy`]) and declares nobody down: it cannot tell.
//!
//! **Order and loss.** Core NATS is at-most-once: a message published while a subscriber is
//! disconnected, or beyond its subscription's capacity, is lost. Every (sender, receiver) pair
//! therefore numbers its traffic with the core's [`Outbound`] stamps; each heartbeat carries the
//! last number published to its receiver, and the receiver's [`Inbound`] finds the holes:
//! reported through [`ClusterEvents::gap`] and counted in [`NatsCluster::gaps`]. One bounded
//! queue and one publishing task per member keep a sender's order.
//!
//! The connection reconnects by itself (at most one heartbeat interval between attempts) and
//! re-subscribes; [`Cluster::stats`] counts the reconnections.
//!
//! **A shared history.** [`NatsHistory`] keeps the replay logs in JetStream, shared by the
//! members (each history stream a JetStream stream, whose sequence numbers are the offsets);
//! [`NatsBackend::with_jetstream_history`] adds it to the bundle. It passes the framework's
//! `History` conformance suite against Debian's `nats-server` 2.9.

mod backend;
mod config;
mod error;
mod history;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use thywill_core::cluster::{Arrival, Inbound, Outbound, Stamp, local_is_designated, new_epoch};
use thywill_core::{
    Cluster, ClusterEvents, ClusterStats, ClusterTask, CoreError, CoreResult, MemberId, MemberStatus,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use backend::NatsBackend;
pub use config::NatsClusterConfig;
pub use error::Error;
pub use history::NatsHistory;

/// How many queued sends the publishing task takes at once.
const BATCH: usize = 256;

/// What travels on a member's subject.
#[derive(Debug, Serialize, Deserialize)]
enum Wire {
    /// A task, numbered for its receiver.
    Task {
        from: MemberId,
        epoch: u64,
        stamp: Stamp,
        task: ClusterTask,
    },
    /// A heartbeat: the sender is up, and had published up to `published` to the receiver.
    Beat {
        from: MemberId,
        epoch: u64,
        published: Stamp,
    },
}

fn encode(wire: &Wire) -> Result<Bytes, Error> {
    thywill_core::cluster::codec::encode(wire)
        .map(Bytes::from)
        .map_err(|e| Error::Codec(e.to_string()))
}

fn decode(bytes: &[u8]) -> Result<Wire, Error> {
    thywill_core::cluster::codec::decode(bytes).map_err(|e| Error::Codec(e.to_string()))
}

/// One task for one receiver, numbered and encoded.
struct Outgoing {
    to: MemberId,
    stamp: Stamp,
    bytes: Bytes,
}

#[derive(Default)]
struct OutState {
    seq: Outbound,
    tx: Option<mpsc::Sender<Vec<Outgoing>>>,
}

#[derive(Clone, Copy, Debug)]
struct Peer {
    status: MemberStatus,
    last_seen: Option<Instant>,
    epoch: u64,
}

struct Link {
    client: async_nats::Client,
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    config: NatsClusterConfig,
    epoch: u64,
    events: RwLock<Option<Arc<dyn ClusterEvents>>>,
    peers: Mutex<HashMap<MemberId, Peer>>,
    out: Mutex<OutState>,
    /// Per receiver: the last stamp handed to the client (well or not), which heartbeats carry.
    published: Mutex<HashMap<MemberId, Stamp>>,
    inbound: Mutex<Inbound>,
    /// When the local member last heard its own heartbeat (its link to NATS works).
    self_seen: Mutex<Option<Instant>>,
    gaps: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    healthy: AtomicBool,
    link: Mutex<Option<Link>>,
    stop: watch::Sender<bool>,
}

/// A member of a cluster linked by NATS. See the [crate docs](crate).
pub struct NatsCluster {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NatsCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsCluster")
            .field("local", &self.shared.config.local)
            .field("members", &self.shared.config.members)
            .field("healthy", &self.shared.healthy.load(Ordering::Relaxed))
            .field("gaps", &self.gaps())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A random number for the epoch, from the standard library's randomly keyed hasher (the core
/// does no IO and this crate needs no random-number crate for it).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

impl NatsCluster {
    /// A member with this configuration; connects in [`Cluster::start`].
    pub fn new(config: NatsClusterConfig) -> Self {
        let epoch = new_epoch(random_u64());
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
        Self {
            shared: Arc::new(Shared {
                epoch,
                events: RwLock::new(None),
                peers: Mutex::new(peers),
                out: Mutex::new(OutState::default()),
                published: Mutex::new(HashMap::new()),
                inbound: Mutex::new(Inbound::new(epoch)),
                self_seen: Mutex::new(None),
                gaps: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                received: AtomicU64::new(0),
                healthy: AtomicBool::new(false),
                link: Mutex::new(None),
                stop: watch::channel(false).0,
                config,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NatsClusterConfig {
        &self.shared.config
    }

    /// Number of member-to-member tasks detected lost since start.
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
        // Retry forever, at most one heartbeat interval apart: the members of one cluster
        // then recover from a NATS restart within about an interval of each other.
        let max_delay = cfg.heartbeat_interval;
        let client = async_nats::ConnectOptions::new()
            .name(format!("thywill {} {}", cfg.cluster, cfg.local))
            .connection_timeout(cfg.command_timeout)
            .subscription_capacity(cfg.subscription_capacity)
            .reconnect_delay_callback(move |attempts| {
                let exp = u32::try_from(attempts).unwrap_or(u32::MAX).min(16);
                Duration::from_millis(10u64.saturating_mul(1 << exp)).min(max_delay)
            })
            .connect(cfg.url.as_str());
        let client = tokio::time::timeout(cfg.command_timeout * 2, client)
            .await
            .map_err(|_| Error::Timeout("connect"))?
            .map_err(|source| Error::Connect {
                url: cfg.url.clone(),
                source,
            })?;
        let subject = cfg.subject_of(&cfg.local);
        let subscriber = client
            .subscribe(subject.clone())
            .await
            .map_err(|source| Error::Subscribe {
                subject: subject.clone(),
                source,
            })?;
        // The subscription is registered with the server before anyone is told we are up.
        tokio::time::timeout(cfg.command_timeout, client.flush())
            .await
            .map_err(|_| Error::Timeout("subscribe"))?
            .map_err(Error::Flush)?;

        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        lock(&sh.out).tx = Some(tx);
        sh.healthy.store(true, Ordering::Relaxed);
        let tasks = vec![
            tokio::spawn(publish_loop(sh.clone(), client.clone(), rx)),
            tokio::spawn(receive_loop(sh.clone(), subscriber)),
            tokio::spawn(heartbeat_loop(sh.clone(), client.clone())),
        ];
        *lock(&sh.link) = Some(Link { client, tasks });
        tracing::info!(member = %cfg.local, epoch = sh.epoch, %subject, "nats cluster member started");
        Ok(())
    }

    /// Numbers `task` for each receiver and queues it, all or nothing: a full queue refuses the
    /// whole send and draws no number.
    fn enqueue(&self, to: &[MemberId], task: ClusterTask) -> CoreResult<()> {
        let sh = &self.shared;
        let mut out = lock(&sh.out);
        let OutState { seq, tx } = &mut *out;
        let tx = tx
            .as_ref()
            .ok_or_else(|| CoreError::Unavailable("nats cluster not started".into()))?;
        let permit = tx.try_reserve().map_err(|e| match e {
            mpsc::error::TrySendError::Full(()) => {
                CoreError::Unavailable("nats cluster outbound queue full".into())
            }
            mpsc::error::TrySendError::Closed(()) => CoreError::Unavailable("nats cluster stopped".into()),
        })?;
        let mut batch = Vec::with_capacity(to.len());
        for m in to {
            let stamp = seq.next(m);
            let wire = Wire::Task {
                from: sh.config.local.clone(),
                epoch: sh.epoch,
                stamp,
                task: task.clone(),
            };
            batch.push(Outgoing {
                to: m.clone(),
                stamp,
                bytes: encode(&wire)?,
            });
        }
        permit.send(batch);
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

    fn halt(&self) -> Option<Link> {
        self.shared.stop.send_replace(true);
        lock(&self.shared.out).tx = None;
        self.shared.healthy.store(false, Ordering::Relaxed);
        let link = lock(&self.shared.link).take();
        if let Some(link) = &link {
            for t in &link.tasks {
                t.abort();
            }
        }
        link
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        self.halt();
    }
}

impl Shared {
    fn events(&self) -> Option<Arc<dyn ClusterEvents>> {
        self.events.read().unwrap_or_else(PoisonError::into_inner).clone()
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

/// Hands queued tasks to the client in queue order, then records what each receiver's next
/// heartbeat must announce. The heartbeats go through the same client after that, so a
/// receiver reads a heartbeat after every task it announces.
async fn publish_loop(sh: Arc<Shared>, client: async_nats::Client, mut rx: mpsc::Receiver<Vec<Outgoing>>) {
    let mut stop = sh.stop.subscribe();
    let bound = sh.config.command_timeout;
    let mut subjects: HashMap<MemberId, String> = HashMap::new();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let got = tokio::select! {
            _ = stop.changed() => break,
            n = rx.recv_many(&mut batch, BATCH) => n,
        };
        if got == 0 {
            break;
        }
        let mut failed = 0usize;
        for o in batch.iter().flatten() {
            let subject = subjects
                .entry(o.to.clone())
                .or_insert_with(|| sh.config.subject_of(&o.to));
            match tokio::time::timeout(bound, client.publish(subject.clone(), o.bytes.clone())).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    failed += 1;
                    tracing::debug!(to = %o.to, error = %e, "nats publish failed");
                }
                Err(_) => failed += 1,
            }
        }
        if failed > 0 {
            tracing::warn!(failed, "nats publish failed: receivers will report a gap");
        }
        // Handed over, well or not: heartbeats now tell receivers to expect these numbers.
        let mut published = lock(&sh.published);
        for o in batch.drain(..).flatten() {
            if o.stamp.seq == 0 {
                continue;
            }
            let e = published.entry(o.to).or_default();
            if e.receiver_epoch != o.stamp.receiver_epoch || e.seq < o.stamp.seq {
                *e = o.stamp;
            }
        }
    }
}

/// Reads the member's subject: tasks (numbered, checked for gaps, delivered) and heartbeats
/// (membership, and the watermark that reveals tasks lost at the tail).
async fn receive_loop(sh: Arc<Shared>, mut subscriber: async_nats::Subscriber) {
    let mut stop = sh.stop.subscribe();
    let local = sh.config.local.clone();
    loop {
        let msg = tokio::select! {
            _ = stop.changed() => break,
            m = subscriber.next() => match m { Some(m) => m, None => break },
        };
        let wire = match decode(&msg.payload) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(subject = %msg.subject, error = %e, "undecodable cluster message dropped");
                continue;
            }
        };
        match wire {
            Wire::Beat { from, epoch, .. } if from == local => {
                if epoch == sh.epoch {
                    *lock(&sh.self_seen) = Some(Instant::now());
                } else {
                    tracing::error!(member = %local, "another process runs as this member");
                }
            }
            Wire::Beat {
                from,
                epoch,
                published,
            } => {
                if !heard(&sh, &from, epoch) {
                    continue;
                }
                // Tasks and heartbeats of one sender come through this one stream in the order
                // it published them, so the check is exact.
                let missing = lock(&sh.inbound).watermark(&from, epoch, published);
                if missing > 0 {
                    sh.report_gap(&from, missing);
                }
            }
            Wire::Task {
                from,
                epoch,
                stamp,
                task,
            } => {
                if from == local || !sh.config.members.contains(&from) {
                    tracing::warn!(%from, "cluster task from a member not configured dropped");
                    continue;
                }
                // The lock is released before any event handler runs.
                let arrival = lock(&sh.inbound).arrive(&from, epoch, stamp);
                match arrival {
                    Arrival::Gap(missing) => sh.report_gap(&from, missing),
                    Arrival::Stale => tracing::debug!(%from, seq = stamp.seq, "late cluster message"),
                    Arrival::InOrder | Arrival::Untracked => {}
                }
                sh.received.fetch_add(1, Ordering::Relaxed);
                if let Some(ev) = sh.events() {
                    ev.task(from, task);
                }
            }
        }
    }
}

/// Publishes the heartbeats and watches the others' (and its own) for timeouts.
async fn heartbeat_loop(sh: Arc<Shared>, client: async_nats::Client) {
    let cfg = sh.config.clone();
    let mut stop = sh.stop.subscribe();
    let mut beat = tokio::time::interval(cfg.heartbeat_interval);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let check_period = (cfg.heartbeat_interval / 4).max(Duration::from_millis(5));
    let mut check = tokio::time::interval(check_period);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut grace_from = started;
    let mut healthy = true;
    let subjects: Vec<(MemberId, String)> = cfg
        .members
        .iter()
        .map(|m| (m.clone(), cfg.subject_of(m)))
        .collect();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = beat.tick() => {
                let mut beats = Vec::with_capacity(subjects.len());
                {
                    let published = lock(&sh.published);
                    for (m, subject) in &subjects {
                        let b = Wire::Beat {
                            from: cfg.local.clone(),
                            epoch: sh.epoch,
                            published: published.get(m).copied().unwrap_or_default(),
                        };
                        match encode(&b) {
                            Ok(bytes) => beats.push((subject.clone(), bytes)),
                            Err(e) => tracing::warn!(error = %e, "heartbeat not encoded"),
                        }
                    }
                }
                // Never let a stalled client hold up the clock: a heartbeat it cannot take
                // within the interval is skipped (the watermark of the next one covers it).
                let c = client.clone();
                let bound = cfg.heartbeat_interval;
                tokio::spawn(async move {
                    for (subject, bytes) in beats {
                        match tokio::time::timeout(bound, c.publish(subject, bytes)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::debug!(error = %e, "heartbeat publish failed"),
                            Err(_) => tracing::debug!("heartbeat publish timed out"),
                        }
                    }
                });
            }
            _ = check.tick() => {
                let now = Instant::now();
                let self_seen = lock(&sh.self_seen).unwrap_or(started);
                let link_ok = client.connection_state() == async_nats::connection::State::Connected;
                let now_healthy = link_ok && now.duration_since(self_seen) <= cfg.heartbeat_timeout;
                if now_healthy != healthy {
                    healthy = now_healthy;
                    sh.healthy.store(healthy, Ordering::Relaxed);
                    if healthy {
                        tracing::info!("nats link restored");
                        // Whoever was up gets a fresh timeout, plus an interval for their own
                        // link to come back: we could not hear them.
                        grace_from = now + cfg.heartbeat_interval;
                        for p in lock(&sh.peers).values_mut() {
                            if p.last_seen.is_some() {
                                p.last_seen = Some(grace_from);
                            }
                        }
                    } else {
                        tracing::warn!("nats link broken: member status frozen until it is back");
                    }
                }
                if healthy {
                    check_timeouts(&sh, now, grace_from.max(started));
                }
            }
        }
    }
}

/// A heartbeat from another member: returns false if it is not a configured member.
fn heard(sh: &Shared, from: &MemberId, epoch: u64) -> bool {
    let mut emit_down = None;
    let mut emit_up = false;
    let mut new_epoch = false;
    {
        let mut peers = lock(&sh.peers);
        let Some(mut p) = peers.get(from).copied() else {
            tracing::debug!(%from, "heartbeat from a member not configured");
            return false;
        };
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
    true
}

fn check_timeouts(sh: &Shared, now: Instant, since: Instant) {
    let timeout = sh.config.heartbeat_timeout;
    let mut downs = Vec::new();
    {
        let mut peers = lock(&sh.peers);
        let mut failed = Vec::new();
        for (id, p) in peers.iter_mut() {
            match (p.status, p.last_seen) {
                (MemberStatus::Up, Some(t)) if now.saturating_duration_since(t) > timeout => {
                    p.status = MemberStatus::Down;
                    failed.push(id.clone());
                }
                (MemberStatus::Unknown, _) if now.saturating_duration_since(since) > timeout => {
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

impl Cluster for NatsCluster {
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
        Ok(self.connect(events).await?)
    }

    async fn stop(&self) -> CoreResult<()> {
        if let Some(link) = self.halt() {
            // Whatever the client still holds goes out before the connection closes.
            let bound = Duration::from_millis(500);
            let _ = tokio::time::timeout(bound, link.client.flush()).await;
            let _ = tokio::time::timeout(bound, link.client.drain()).await;
        }
        tracing::info!(member = %self.shared.config.local, "nats cluster member stopped");
        Ok(())
    }

    async fn send_to(&self, member: &MemberId, task: ClusterTask) -> CoreResult<()> {
        if *member == self.shared.config.local {
            self.deliver_local(task);
            Ok(())
        } else if !self.shared.config.members.contains(member) {
            Err(CoreError::NotFound(format!("member {member}")))
        } else {
            self.enqueue(std::slice::from_ref(member), task)
        }
    }

    async fn send_to_others(&self, task: ClusterTask) -> CoreResult<()> {
        let others = self.others();
        if others.is_empty() {
            return Ok(());
        }
        self.enqueue(&others, task)
    }

    async fn send_to_all(&self, task: ClusterTask) -> CoreResult<()> {
        self.deliver_local(task.clone());
        self.send_to_others(task).await
    }

    fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed)
    }

    fn stats(&self) -> ClusterStats {
        let sh = &self.shared;
        let reconnects = lock(&sh.link).as_ref().map_or(0, |l| {
            l.client
                .statistics()
                .connects
                .load(Ordering::Relaxed)
                .saturating_sub(1)
        });
        ClusterStats::new(
            reconnects,
            sh.gaps.load(Ordering::Relaxed),
            sh.sent.load(Ordering::Relaxed),
            sh.received.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_messages_round_trip_and_garbage_is_refused() -> Result<(), Error> {
        let task = ClusterTask::encode("t", &5u8).map_err(|e| Error::Codec(e.to_string()))?;
        let bytes = encode(&Wire::Task {
            from: "alpha".into(),
            epoch: 3,
            stamp: Stamp {
                receiver_epoch: 1,
                seq: 2,
            },
            task: task.clone(),
        })?;
        match decode(&bytes)? {
            Wire::Task {
                from,
                epoch,
                stamp,
                task: t,
            } => assert_eq!((from.as_str(), epoch, stamp.seq, t), ("alpha", 3, 2, task)),
            other => panic!("decoded {other:?}"),
        }
        assert!(decode(&[0xff; 3]).is_err());
        assert!(decode(&[]).is_err());
        Ok(())
    }
}
