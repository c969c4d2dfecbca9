//! A thywill-rs [`Cluster`] backend over direct HTTP between members: each member runs a small
//! warp server and reaches the others with reqwest.
//!
//! | route | what |
//! |---|---|
//! | `GET /alive` | `200`, body `<member id>\n<incarnation>`: the up-check |
//! | `POST /task` | a batch of tasks from one sender (bincode), authenticated by signed headers; `200` once handled |
//!
//! **Membership.** Every member checks every other one every `interval` (200 ms) with a
//! `request_timeout` (500 ms); `consecutive_failed_checks` (2) failures in a row make an up
//! member down (reported, with `designated` set on its designated handler) and an unknown one
//! down silently; a success makes it up (reported). A member that comes back as a new process
//! (a new incarnation in `/alive`) faster than that is reported down and up again.
//!
//! **Order and loss.** One bounded queue and one sending task per destination keep the order
//! of a sender's tasks; queued tasks travel in batches (at most 256 tasks and
//! [`max_body`](HttpClusterConfig::with_max_body) bytes), one request at a time, retried twice
//! while the destination is up. Tasks are numbered per (sender, receiver) pair
//! ([`thywill_core::cluster::Outbound`]): a receiver reports a hole through
//! [`ClusterEvents::gap`] (counted in [`HttpCluster::gaps`]) when the next batch arrives, and
//! drops duplicates of retried requests.
//!
//! **Interest.** Members tell each other which topics they are interested in
//! ([`Cluster::interest`]: the channels some local connection is subscribed to), and
//! [`Cluster::send_to_interested`] queues a topic's task only for the members interested in it.
//! The announcements are tasks of their own (`thywill.http.interest`, taken by the backend,
//! never handed to the node), on the same numbered queues: each change to every other member;
//! the whole set to a member seen up (or back as a new incarnation); the whole set again to a
//! member that asks for it, which it does when it finds a gap in this member's traffic (a
//! change may have been among the lost). Until a member's whole set has arrived, and from a gap
//! until it arrives again, every topic's tasks go to it: a member never misses a topic for
//! want of knowing. `interest` returns once every member that is up has acknowledged the
//! change (its task request answered `200` after it was handled), so a task sent to the
//! topic afterwards, by any member, reaches this one; a member that does not acknowledge within
//! a few request timeouts makes it fail (`Unavailable`), and the node declares it again.
//! [`Cluster::stats`] counts the tasks handed to the node (`received`, `received_bytes`) and
//! the topics of interest (`topics`).
//!
//! **Authentication** (a shared secret is required, see [`HttpClusterConfig::with_secret`]).
//! Every task request carries signed headers (the sender, its incarnation, the receiver
//! incarnation it addresses, a request number, a timestamp, and the body's length and SHA-256;
//! the receiver's member id is signed too), see the `auth` module. A receiver answers, in this
//! order and before it reads the body unless said otherwise:
//!
//! | status | when |
//! |---|---|
//! | `403` | an `Origin`, `Sec-Fetch-Site` or `Sec-Fetch-Mode` header: a browser sent it (any route) |
//! | `415` | a content type other than `application/octet-stream` |
//! | `503` | stopping, or [`max_concurrent_requests`](HttpClusterConfig::with_max_concurrent_requests) (64) task requests already in hand |
//! | `401` | a signed header missing or malformed, a wrong signature, a timestamp more than 5 s old or 1 s ahead ([`with_clock_window`](HttpClusterConfig::with_clock_window)), or a replay (below) |
//! | `403` | a sender that is not another configured member (with a valid signature) |
//! | `409` | addressed to another incarnation of the receiver; the answer's `x-thywill-to-incarnation` header gives the current one, and the sender signs its retry for it |
//! | `413` | a `Content-Length` above [`max_body`](HttpClusterConfig::with_max_body) (4 MiB) |
//! | `408` | the body did not arrive within [`body_timeout`](HttpClusterConfig::with_body_timeout) (5 s) |
//! | `401` | the body does not match its signed SHA-256 |
//! | `400` | a body shorter or longer than declared, undecodable, or naming another sender |
//!
//! **Replay.** Each incarnation of a member is identified by its start time in unix ms,
//! strictly increasing across restarts (and across members built in one process). A receiver
//! keeps, per sender, the newest incarnation it has seen and the highest request number
//! admitted in it, and refuses (401) a request from an older incarnation or with a number at or
//! below that one: a request is admitted at most once, and a sender's restart does not make its
//! captured requests valid again. Every attempt of a retry takes a new number, and a sender has
//! one request at a time in flight to each receiver, so its numbers arrive in order (an attempt
//! that arrives after its own retry is refused; the retry carried the same tasks). The receiver's
//! own restart loses that record, but each request names the receiver incarnation it was
//! signed for, and a new incarnation refuses (409) requests signed for an earlier one; the
//! timestamp window bounds, besides, how long any captured request stays usable at all (5 s).
//! Incarnations follow the clock: a member whose clock was set back by more than the time
//! between two of its starts is refused by peers that saw the earlier start, until they
//! restart. Keep clocks synchronised (NTP slews them).
//!
//! Traffic is plain HTTP (integrity by the signature, no confidentiality): run it on a private
//! network (or loopback).
//!
//! ```no_run
//! # async fn run() -> Result<(), thywill_cluster_http::Error> {
//! use thywill_cluster_http::{HttpCluster, HttpClusterConfig};
//!
//! let cluster = HttpCluster::new(
//!     HttpClusterConfig::default()
//!         .with_members_str("alpha=127.0.0.1:20091,beta=127.0.0.1:20092")?
//!         .with_local("alpha")?,
//! )?;
//! # let _ = cluster; Ok(()) }
//! ```
//!
//! A node installs it as one bundle, [`HttpBackend`] (`Thywill::builder().backend(backend)`),
//! which the node builder gives the cluster-wide client tracker.

mod auth;
mod backend;
mod config;
mod error;
#[cfg(test)]
mod tests_security;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use thywill_core::cluster::{Arrival, Inbound, Outbound, Stamp, local_is_designated};
use thywill_core::{
    Cluster, ClusterEvents, ClusterTask, CoreError, CoreResult, MemberId, MemberStatus, Topic,
};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::{Filter, Reply};

pub use backend::HttpBackend;
pub use config::{HttpClusterConfig, parse_members};
pub use error::Error;

/// Most tasks in one request.
const BATCH: usize = 256;
/// Room left in a request body for the batch's own fields.
const BATCH_OVERHEAD: u64 = 1024;
/// Encoded size of one task in a batch, at most (its name, payload, stamp and their lengths).
fn task_size(task: &ClusterTask) -> u64 {
    (task.name.len() + task.payload.len() + 48) as u64
}

/// The name of the backend's own interest announcements (taken by the receiving backend).
const INTEREST_TASK: &str = "thywill.http.interest";

/// An interest announcement (see the crate docs).
#[derive(Debug, Serialize, Deserialize)]
enum Interest {
    /// The sender's whole set of topics: replaces what the receiver knew.
    All(Vec<Topic>),
    /// The sender took (or dropped) one topic.
    Change { topic: Topic, on: bool },
    /// The sender asks for the receiver's whole set.
    Resend,
}

/// What a member knows of another member's interest.
#[derive(Debug)]
struct View {
    /// The incarnation the set is of.
    epoch: u64,
    /// Its topics; `None` until its whole set arrived (or since a gap): every topic's tasks go
    /// to it meanwhile.
    topics: Option<HashSet<Topic>>,
}

/// The incarnation last drawn in this process.
static LAST_INCARNATION: AtomicU64 = AtomicU64::new(0);

/// A new incarnation: the time in unix ms, and above any drawn before in this process (so that
/// a member restarted within one millisecond still gets a higher one).
fn new_incarnation() -> u64 {
    let now = auth::now_ms().max(1);
    let prev = LAST_INCARNATION
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or(0);
    now.max(prev.saturating_add(1))
}

/// A batch of tasks on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct Batch {
    from: MemberId,
    epoch: u64,
    items: Vec<(Stamp, ClusterTask)>,
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, Error> {
    thywill_core::cluster::codec::encode(v).map_err(|e| Error::Codec(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, Error> {
    thywill_core::cluster::codec::decode(b).map_err(|e| Error::Codec(e.to_string()))
}

#[derive(Clone, Copy, Debug)]
struct Peer {
    status: MemberStatus,
    epoch: u64,
}

struct Queues {
    seq: Outbound,
    tx: HashMap<MemberId, mpsc::Sender<(Stamp, ClusterTask)>>,
}

struct Shared {
    config: HttpClusterConfig,
    secret: Vec<u8>,
    /// This incarnation (start time, unix ms); the epoch of sequence stamps too.
    epoch: u64,
    /// The last request number signed.
    next_seq: AtomicU64,
    /// Per sender: the newest incarnation seen and the highest request number admitted in it.
    admitted: Mutex<HashMap<MemberId, (u64, u64)>>,
    /// Task requests in hand.
    slots: Arc<Semaphore>,
    events: RwLock<Option<Arc<dyn ClusterEvents>>>,
    peers: Mutex<HashMap<MemberId, Peer>>,
    queues: Mutex<Queues>,
    inbound: Mutex<Inbound>,
    gaps: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    received_bytes: AtomicU64,
    /// The local member's topics of interest.
    topics: Mutex<HashSet<Topic>>,
    /// What each other member's interest is known to be.
    views: Mutex<HashMap<MemberId, View>>,
    /// Per receiver: the last stamp of a batch it acknowledged.
    acked: Mutex<HashMap<MemberId, Stamp>>,
    /// Bumped on every acknowledgement (woken waiters of `interest` look again).
    acks: watch::Sender<u64>,
    stopped: AtomicBool,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    bound: Mutex<Option<SocketAddr>>,
}

/// A member of a cluster linked by direct HTTP. See the [crate docs](crate).
pub struct HttpCluster {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HttpCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCluster")
            .field("config", &self.shared.config)
            .field("gaps", &self.gaps())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl HttpCluster {
    /// A member with this configuration (validated); listens in [`Cluster::start`].
    pub fn new(config: HttpClusterConfig) -> Result<Self, Error> {
        let config = config.validate()?;
        let secret = config.secret.clone().ok_or(Error::MissingSecret)?;
        let epoch = new_incarnation();
        let peers = config
            .members
            .iter()
            .filter(|(m, _)| *m != config.local)
            .map(|(m, _)| {
                (
                    m.clone(),
                    Peer {
                        status: MemberStatus::Unknown,
                        epoch: 0,
                    },
                )
            })
            .collect();
        Ok(Self {
            shared: Arc::new(Shared {
                secret,
                epoch,
                next_seq: AtomicU64::new(0),
                admitted: Mutex::new(HashMap::new()),
                slots: Arc::new(Semaphore::new(config.max_concurrent_requests)),
                events: RwLock::new(None),
                peers: Mutex::new(peers),
                queues: Mutex::new(Queues {
                    seq: Outbound::default(),
                    tx: HashMap::new(),
                }),
                inbound: Mutex::new(Inbound::new(epoch)),
                gaps: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                received: AtomicU64::new(0),
                received_bytes: AtomicU64::new(0),
                topics: Mutex::new(HashSet::new()),
                views: Mutex::new(HashMap::new()),
                acked: Mutex::new(HashMap::new()),
                acks: watch::channel(0).0,
                stopped: AtomicBool::new(false),
                stop: watch::channel(false).0,
                tasks: Mutex::new(Vec::new()),
                bound: Mutex::new(None),
                config,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &HttpClusterConfig {
        &self.shared.config
    }

    /// Number of member-to-member tasks detected lost since start.
    pub fn gaps(&self) -> u64 {
        self.shared.gaps.load(Ordering::Relaxed)
    }

    /// This incarnation: its start time in unix ms, strictly increasing across restarts (the
    /// epoch of its sequence stamps, and what `/alive` answers).
    pub fn epoch(&self) -> u64 {
        self.shared.epoch
    }

    /// The address the cluster server is bound to, once started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *lock(&self.shared.bound)
    }

    async fn launch(&self, events: Arc<dyn ClusterEvents>) -> Result<(), Error> {
        let sh = &self.shared;
        *sh.events.write().unwrap_or_else(PoisonError::into_inner) = Some(events);
        let listen = sh.config.listen();
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| Error::Listen { addr: listen, source })?;
        *lock(&sh.bound) = listener.local_addr().ok();
        let client = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            // Below the server's idle bound, so that the client closes an idle connection
            // before the server does (never sending on one being closed).
            .pool_idle_timeout(Duration::from_secs(5))
            .connect_timeout(sh.config.request_timeout)
            .build()?;
        let server = serve(sh.clone(), listener);
        let mut tasks = vec![tokio::spawn(server)];
        for (member, addr) in sh.config.members.iter().filter(|(m, _)| *m != sh.config.local) {
            let (tx, rx) = mpsc::channel(sh.config.queue_capacity);
            lock(&sh.queues).tx.insert(member.clone(), tx);
            tasks.push(tokio::spawn(send_loop(
                sh.clone(),
                client.clone(),
                member.clone(),
                *addr,
                rx,
            )));
            tasks.push(tokio::spawn(check_loop(
                sh.clone(),
                client.clone(),
                member.clone(),
                *addr,
            )));
        }
        *lock(&sh.tasks) = tasks;
        tracing::info!(member = %sh.config.local, %listen, epoch = sh.epoch, "http cluster member started");
        Ok(())
    }

    fn enqueue(&self, member: &MemberId, task: ClusterTask) -> CoreResult<()> {
        self.shared.enqueue(member, task).map(drop)
    }

    /// Declares or withdraws interest (see the crate docs) and waits for the acknowledgement
    /// of every member that is up.
    async fn announce_interest(&self, topic: &Topic, on: bool) -> CoreResult<()> {
        let sh = &self.shared;
        {
            let mut topics = lock(&sh.topics);
            let changed = if on {
                topics.insert(topic.clone())
            } else {
                topics.remove(topic)
            };
            if !changed {
                // Announced before; a declaration that failed was taken back, so this one is
                // known to every member up.
                return Ok(());
            }
        }
        let result = self.announce_change(topic, on).await;
        if result.is_err() && on {
            // Undecided: taken back, so that the node's next attempt announces it again.
            lock(&sh.topics).remove(topic);
        }
        result
    }

    async fn announce_change(&self, topic: &Topic, on: bool) -> CoreResult<()> {
        let sh = &self.shared;
        let task = ClusterTask::encode(
            INTEREST_TASK,
            &Interest::Change {
                topic: topic.clone(),
                on,
            },
        )?;
        let mut waits = Vec::new();
        for (m, _) in sh.config.members.iter().filter(|(m, _)| *m != sh.config.local) {
            match sh.enqueue(m, task.clone()) {
                Ok(stamp) if stamp.seq > 0 => waits.push((m.clone(), stamp)),
                // Its incarnation is not known yet: it gets the whole set once it is.
                Ok(_) => {}
                Err(e) if sh.status(m) == MemberStatus::Up => return Err(e),
                Err(_) => {}
            }
        }
        let deadline =
            tokio::time::Instant::now() + sh.config.task_request_timeout * 3 + Duration::from_secs(1);
        let mut acks = sh.acks.subscribe();
        loop {
            let waiting: Vec<&MemberId> = waits
                .iter()
                .filter(|(m, stamp)| !sh.has_acknowledged(m, *stamp))
                .map(|(m, _)| m)
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CoreError::Unavailable(format!(
                    "interest in {topic} not acknowledged by {waiting:?}"
                )));
            }
            // Woken by acknowledgements; a member going down is seen at the next look.
            let _ = tokio::time::timeout(Duration::from_millis(50), acks.changed()).await;
        }
    }

    fn deliver_local(&self, task: ClusterTask) {
        if let Some(ev) = self.shared.events() {
            ev.task(self.shared.config.local.clone(), task);
        }
    }
}

impl Drop for HttpCluster {
    fn drop(&mut self) {
        self.shared.halt();
    }
}

impl Shared {
    /// Queues a task for `member`; returns its stamp.
    fn enqueue(&self, member: &MemberId, task: ClusterTask) -> CoreResult<Stamp> {
        let mut q = lock(&self.queues);
        let Queues { seq, tx } = &mut *q;
        let tx = tx
            .get(member)
            .ok_or_else(|| CoreError::Unavailable("http cluster not started".into()))?;
        let permit = tx.try_reserve().map_err(|e| match e {
            mpsc::error::TrySendError::Full(()) => CoreError::Unavailable(format!("queue to {member} full")),
            mpsc::error::TrySendError::Closed(()) => CoreError::Unavailable("http cluster stopped".into()),
        })?;
        let stamp = seq.next(member);
        permit.send((stamp, task));
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(stamp)
    }

    /// Whether `member` acknowledged the task stamped `stamp`, or no longer needs to: it is not
    /// up, or it is another incarnation now (which is sent the whole set).
    fn has_acknowledged(&self, member: &MemberId, stamp: Stamp) -> bool {
        if self.status(member) != MemberStatus::Up
            || lock(&self.peers)
                .get(member)
                .is_some_and(|p| p.epoch != stamp.receiver_epoch)
        {
            return true;
        }
        lock(&self.acked)
            .get(member)
            .is_some_and(|a| a.receiver_epoch == stamp.receiver_epoch && a.seq >= stamp.seq)
    }

    /// Sends the local member's whole set of topics to `member`.
    fn send_interest(&self, member: &MemberId) {
        let all: Vec<Topic> = lock(&self.topics).iter().cloned().collect();
        match ClusterTask::encode(INTEREST_TASK, &Interest::All(all)) {
            Ok(task) => {
                if let Err(e) = self.enqueue(member, task) {
                    tracing::warn!(%member, error = %e, "interest not sent");
                }
            }
            Err(e) => tracing::warn!(error = %e, "interest not encoded"),
        }
    }

    /// An interest announcement from `from` (incarnation `epoch`).
    fn on_interest(&self, from: &MemberId, epoch: u64, task: &ClusterTask) {
        let interest: Interest = match decode(&task.payload) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(%from, error = %e, "undecodable interest announcement dropped");
                return;
            }
        };
        let mut views = lock(&self.views);
        let view = views.entry(from.clone()).or_insert(View { epoch, topics: None });
        match interest {
            Interest::All(topics) => view.topics = Some(topics.into_iter().collect()),
            Interest::Change { topic, on } => {
                if let Some(topics) = &mut view.topics {
                    if on {
                        topics.insert(topic);
                    } else {
                        topics.remove(&topic);
                    }
                }
            }
            Interest::Resend => {
                drop(views);
                self.send_interest(from);
            }
        }
    }

    /// The other members to send a task of `topic` to.
    fn interested(&self, topic: &Topic) -> Vec<MemberId> {
        let views = lock(&self.views);
        self.config
            .members
            .iter()
            .map(|(m, _)| m)
            .filter(|m| **m != self.config.local)
            .filter(|m| {
                views
                    .get(*m)
                    .and_then(|v| v.topics.as_ref())
                    .is_none_or(|t| t.contains(topic))
            })
            .cloned()
            .collect()
    }

    fn events(&self) -> Option<Arc<dyn ClusterEvents>> {
        self.events.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn halt(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.stop.send_replace(true);
        lock(&self.queues).tx.clear();
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }

    fn status(&self, member: &MemberId) -> MemberStatus {
        if *member == self.config.local {
            return MemberStatus::Up;
        }
        lock(&self.peers)
            .get(member)
            .map(|p| p.status)
            .unwrap_or(MemberStatus::Unknown)
    }

    fn is_designated(&self, peers: &HashMap<MemberId, Peer>, failed: &MemberId) -> bool {
        let ring: Vec<MemberId> = self.config.members.iter().map(|(m, _)| m.clone()).collect();
        local_is_designated(&ring, &self.config.local, failed, |m| {
            peers.get(m).is_some_and(|p| p.status == MemberStatus::Up)
        })
    }

    /// Admits a request at most once: refuses one from an incarnation older than the newest
    /// seen from its sender, or with a request number at or below the last admitted in it.
    fn admit(&self, from: &MemberId, incarnation: u64, seq: u64) -> Result<(), &'static str> {
        let mut admitted = lock(&self.admitted);
        match admitted.get(from).copied() {
            Some((newest, _)) if incarnation < newest => Err("replay: superseded sender incarnation"),
            Some((newest, last)) if incarnation == newest && seq <= last => Err(STALE_NUMBER),
            _ => {
                admitted.insert(from.clone(), (incarnation, seq));
                Ok(())
            }
        }
    }

    /// Hands the tasks of an authenticated batch to the application.
    fn deliver(&self, batch: Batch) {
        let ev = self.events();
        {
            let mut views = lock(&self.views);
            let view = views.entry(batch.from.clone()).or_insert(View {
                epoch: batch.epoch,
                topics: None,
            });
            if view.epoch != batch.epoch {
                // Another incarnation: its interest is unknown until its whole set arrives.
                *view = View {
                    epoch: batch.epoch,
                    topics: None,
                };
            }
        }
        for (stamp, task) in batch.items {
            let arrival = lock(&self.inbound).arrive(&batch.from, batch.epoch, stamp);
            match arrival {
                Arrival::Stale => {
                    tracing::debug!(from = %batch.from, seq = stamp.seq, "duplicate task dropped");
                    continue;
                }
                Arrival::Gap(missing) => {
                    self.gaps.fetch_add(missing, Ordering::Relaxed);
                    tracing::warn!(from = %batch.from, missing, "cluster tasks lost (sequence gap)");
                    // An interest change may have been among the lost: every topic goes to the
                    // sender until its whole set arrives again.
                    if let Some(view) = lock(&self.views).get_mut(&batch.from) {
                        view.topics = None;
                    }
                    match ClusterTask::encode(INTEREST_TASK, &Interest::Resend) {
                        Ok(resend) => {
                            if let Err(e) = self.enqueue(&batch.from, resend) {
                                tracing::warn!(from = %batch.from, error = %e, "interest not asked for again");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "interest request not encoded"),
                    }
                    if let Some(ev) = &ev {
                        ev.gap(batch.from.clone(), missing);
                    }
                }
                Arrival::InOrder | Arrival::Untracked => {}
            }
            if task.name == INTEREST_TASK {
                self.on_interest(&batch.from, batch.epoch, &task);
                continue;
            }
            self.received.fetch_add(1, Ordering::Relaxed);
            self.received_bytes.fetch_add(task_size(&task), Ordering::Relaxed);
            if let Some(ev) = &ev {
                ev.task(batch.from.clone(), task);
            }
        }
    }

    /// Result of one up-check of `member`.
    fn checked(&self, member: &MemberId, result: Option<u64>, failures: &mut u32) {
        let mut emit_down = None;
        let mut emit_up = false;
        let mut learned = None;
        {
            let mut peers = lock(&self.peers);
            let Some(mut p) = peers.get(member).copied() else {
                return;
            };
            match result {
                Some(epoch) => {
                    *failures = 0;
                    if p.epoch != epoch {
                        learned = Some(epoch);
                        if p.status == MemberStatus::Up && p.epoch != 0 {
                            p.status = MemberStatus::Down;
                            peers.insert(member.clone(), p);
                            emit_down = Some(self.is_designated(&peers, member));
                        }
                        p.epoch = epoch;
                    }
                    if p.status != MemberStatus::Up {
                        p.status = MemberStatus::Up;
                        emit_up = true;
                    }
                }
                None => {
                    *failures = failures.saturating_add(1);
                    if *failures >= self.config.consecutive_failed_checks && p.status != MemberStatus::Down {
                        let was_up = p.status == MemberStatus::Up;
                        p.status = MemberStatus::Down;
                        if was_up {
                            peers.insert(member.clone(), p);
                            emit_down = Some(self.is_designated(&peers, member));
                        }
                    }
                }
            }
            peers.insert(member.clone(), p);
        }
        if let Some(epoch) = learned {
            lock(&self.queues).seq.learn_epoch(member, epoch);
            // A new incarnation: its interest is unknown until its whole set arrives, and it
            // knows nothing of this member's: the whole set, first of everything it is sent.
            {
                let mut views = lock(&self.views);
                // Its set may have arrived already (its batches can precede this up-check).
                if views.get(member).is_none_or(|v| v.epoch != epoch) {
                    views.insert(member.clone(), View { epoch, topics: None });
                }
            }
            self.send_interest(member);
        }
        let ev = self.events();
        if let Some(designated) = emit_down {
            tracing::warn!(%member, designated, "cluster member down");
            if let Some(ev) = &ev {
                ev.member_down(member.clone(), designated);
            }
        }
        if emit_up {
            tracing::info!(%member, "cluster member up");
            if let Some(ev) = &ev {
                ev.member_up(member.clone());
            }
        }
    }
}

/// A plain-text answer.
fn answer(status: StatusCode, text: &'static str) -> warp::reply::Response {
    warp::reply::with_status(text, status).into_response()
}

/// A refusal, logged.
/// Why a request of the current sender incarnation is refused as a replay.
const STALE_NUMBER: &str = "replay: request number already used";

fn refuse(status: StatusCode, reason: &str, peer: Option<SocketAddr>) -> warp::reply::Response {
    tracing::warn!(status = status.as_u16(), reason, peer = ?peer, "cluster request refused");
    answer(status, "Refused.")
}

/// Why a request looks like a browser's: members never send these headers.
fn from_browser(headers: &HeaderMap) -> Option<&'static str> {
    ["origin", "sec-fetch-site", "sec-fetch-mode"]
        .into_iter()
        .find(|h| headers.contains_key(*h))
}

/// The peer address of a request, as a request extension.
#[derive(Clone, Copy, Debug)]
struct RemoteAddr(SocketAddr);

/// The cluster server: HTTP/1.1 (what members speak), at most `max_connections` sockets, each
/// closed when it sends no complete request head within `head_timeout` (a socket that says
/// nothing included), until the member stops.
async fn serve(sh: Arc<Shared>, listener: tokio::net::TcpListener) {
    let service = warp::service(routes(sh.clone()));
    let head_timeout = sh.config.head_timeout;
    let slots = Arc::new(tokio::sync::Semaphore::new(sh.config.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = sh.stop.subscribe();
    let mut refused_at: Option<std::time::Instant> = None;
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster server: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if refused_at.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                refused_at = Some(std::time::Instant::now());
                tracing::warn!(%peer, "cluster server: too many connections, closing");
            }
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let service = service.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(RemoteAddr(peer));
                let mut service = service.clone();
                tower_service::Service::call(&mut service, req)
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(head_timeout)
                .max_buf_size(64 * 1024);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(tcp), svc);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "cluster server connection ended");
            }
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}

fn routes(sh: Arc<Shared>) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<RemoteAddr>().map(|p: Option<RemoteAddr>| p.map(|p| p.0)))
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  headers: HeaderMap,
                  peer: Option<SocketAddr>,
                  body| {
                let sh = sh.clone();
                async move {
                    if let Some(header) = from_browser(&headers) {
                        return refuse(StatusCode::FORBIDDEN, header, peer);
                    }
                    match (method, path.as_str()) {
                        (Method::GET, "/alive") => {
                            if sh.stopped.load(Ordering::Relaxed) {
                                return answer(StatusCode::SERVICE_UNAVAILABLE, "Stopped.");
                            }
                            format!("{}\n{}", sh.config.local, sh.epoch).into_response()
                        }
                        (Method::POST, "/task") => task_request(&sh, &headers, peer, body).await,
                        _ => answer(StatusCode::NOT_FOUND, "Invalid."),
                    }
                }
            },
        )
        .boxed()
}

/// Handles one `POST /task`: everything the headers allow is checked before the body is read
/// (see the crate docs for the order and the answers).
async fn task_request<S, B>(
    sh: &Shared,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    body: S,
) -> warp::reply::Response
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !content_type.is_some_and(|t| t.eq_ignore_ascii_case(auth::CONTENT_TYPE)) {
        return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "content type", peer);
    }
    if sh.stopped.load(Ordering::Relaxed) {
        return answer(StatusCode::SERVICE_UNAVAILABLE, "Stopped.");
    }
    let Ok(_slot) = sh.slots.clone().try_acquire_owned() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "too many requests at once", peer);
    };
    let cfg = &sh.config;
    let claims = match auth::verify(
        &sh.secret,
        headers,
        cfg.local.as_str(),
        auth::now_ms(),
        cfg.max_age,
        cfg.max_ahead,
    ) {
        Ok(c) => c,
        Err(why) => return refuse(StatusCode::UNAUTHORIZED, why, peer),
    };
    let from = MemberId::from(claims.from.as_str());
    if from == cfg.local || !cfg.members.iter().any(|(m, _)| *m == from) {
        return refuse(
            StatusCode::FORBIDDEN,
            "sender is not another configured member",
            peer,
        );
    }
    if claims.to_incarnation != sh.epoch {
        tracing::debug!(%from, addressed = claims.to_incarnation, "task request for another incarnation");
        return warp::reply::with_header(
            answer(StatusCode::CONFLICT, "Another incarnation."),
            auth::TO_INCARNATION,
            sh.epoch.to_string(),
        )
        .into_response();
    }
    if claims.length > cfg.max_body {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "body above the limit", peer);
    }
    if let Err(why) = sh.admit(&from, claims.incarnation, claims.seq) {
        let mut r = refuse(StatusCode::UNAUTHORIZED, why, peer);
        if why == STALE_NUMBER {
            // Validly signed by the member itself, with a number below one admitted already
            // (an attempt that was delayed in the network and overtaken): it may sign the
            // same tasks again with a fresh number. A replayer cannot.
            r.headers_mut()
                .insert(auth::STALE, warp::http::HeaderValue::from_static("1"));
        }
        return r;
    }
    let bytes = match tokio::time::timeout(cfg.body_timeout, read_body(body, claims.length)).await {
        Err(_) => return refuse(StatusCode::REQUEST_TIMEOUT, "body not received in time", peer),
        Ok(Err(why)) => return refuse(StatusCode::BAD_REQUEST, why, peer),
        Ok(Ok(b)) => b,
    };
    if auth::digest(&bytes) != claims.body_sha256 {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "body does not match its signed digest",
            peer,
        );
    }
    let batch: Batch = match decode(&bytes) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "undecodable cluster task request");
            return answer(StatusCode::BAD_REQUEST, "Refused.");
        }
    };
    if batch.from != from || batch.epoch != claims.incarnation {
        return refuse(StatusCode::BAD_REQUEST, "batch names another sender", peer);
    }
    sh.deliver(batch);
    answer(StatusCode::OK, "Acknowledged.")
}

/// Reads a body of exactly `length` bytes (already checked against the limit).
async fn read_body<S, B>(body: S, length: u64) -> Result<Vec<u8>, &'static str>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let length = usize::try_from(length).map_err(|_| "body too long")?;
    let mut body = std::pin::pin!(body);
    // Grown as bytes arrive: a slow sender does not make the full length resident up front.
    let mut bytes = Vec::with_capacity(length.min(64 * 1024));
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| "body not received")?;
        if bytes.len() + chunk.remaining() > length {
            return Err("body longer than declared");
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            bytes.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    if bytes.len() != length {
        return Err("body shorter than declared");
    }
    Ok(bytes)
}

async fn send_loop(
    sh: Arc<Shared>,
    client: reqwest::Client,
    member: MemberId,
    addr: SocketAddr,
    mut rx: mpsc::Receiver<(Stamp, ClusterTask)>,
) {
    let url = format!("http://{addr}/task");
    let mut stop = sh.stop.subscribe();
    let limit = sh.config.max_body.saturating_sub(BATCH_OVERHEAD);
    // The receiver's incarnation as its last 409 told it, with what the up-checks knew then:
    // it stands until an up-check learns something newer.
    let mut told: Option<(u64, u64)> = None;
    let mut pending = None;
    loop {
        let first = match pending.take() {
            Some(m) => m,
            None => tokio::select! {
                _ = stop.changed() => break,
                m = rx.recv() => match m { Some(m) => m, None => break },
            },
        };
        let mut size = task_size(&first.1);
        if size > limit {
            // Its number is spent: the receiver reports the gap with the next batch.
            tracing::warn!(to = %member, task = %first.1.name, size, "cluster task above the body limit dropped");
            continue;
        }
        let mut items = vec![first];
        while items.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => {
                    let s = task_size(&m.1);
                    if size + s > limit {
                        pending = Some(m);
                        break;
                    }
                    size += s;
                    items.push(m);
                }
                Err(_) => break,
            }
        }
        let count = items.len();
        let last_stamp = items.last().map(|(stamp, _)| *stamp);
        let batch = Batch {
            from: sh.config.local.clone(),
            epoch: sh.epoch,
            items,
        };
        let body = match encode(&batch) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::warn!(error = %e, "task batch not encoded");
                continue;
            }
        };
        let body_sha256 = auth::digest(&body);
        let mut attempt = 0u32;
        let mut redirects = 0u32;
        loop {
            attempt += 1;
            let known = lock(&sh.peers).get(&member).map_or(0, |p| p.epoch);
            let to_incarnation = match told {
                Some((then, current)) if then == known => current,
                _ => known,
            };
            let claims = auth::Claims {
                from: sh.config.local.as_str().to_owned(),
                incarnation: sh.epoch,
                to_incarnation,
                seq: sh.next_seq.fetch_add(1, Ordering::Relaxed) + 1,
                timestamp: auth::now_ms(),
                length: body.len() as u64,
                body_sha256: body_sha256.clone(),
            };
            let mut req = client
                .post(&url)
                .timeout(sh.config.task_request_timeout)
                .body(body.clone());
            for (k, v) in auth::headers(&sh.secret, &claims, member.as_str()) {
                req = req.header(k, v);
            }
            let outcome = match req.send().await {
                Ok(r) if r.status() == reqwest::StatusCode::OK => Ok(()),
                Ok(r) if r.status() == reqwest::StatusCode::CONFLICT => {
                    let current = r
                        .headers()
                        .get(auth::TO_INCARNATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                    if current != 0 && current != to_incarnation && redirects < 2 {
                        // Signed for an incarnation the receiver no longer is (or not yet known):
                        // sign again for the current one, at once.
                        told = Some((known, current));
                        redirects += 1;
                        attempt -= 1;
                        continue;
                    }
                    Err((Some(r.status()), format!("status {}", r.status())))
                }
                Ok(r)
                    if r.status() == reqwest::StatusCode::UNAUTHORIZED
                        && r.headers().contains_key(auth::STALE)
                        && redirects < 2 =>
                {
                    // Overtaken by an earlier attempt delivered late: sign again with a new
                    // number, at once.
                    redirects += 1;
                    attempt -= 1;
                    continue;
                }
                Ok(r) => Err((Some(r.status()), format!("status {}", r.status()))),
                Err(e) => Err((None, e.to_string())),
            };
            match outcome {
                Ok(()) => {
                    if let Some(stamp) = last_stamp.filter(|s| s.seq > 0) {
                        lock(&sh.acked).insert(member.clone(), stamp);
                        sh.acks.send_modify(|n| *n = n.wrapping_add(1));
                    }
                    break;
                }
                Err((status, why)) => {
                    let up = sh.status(&member) == MemberStatus::Up;
                    // Refusals that a retry of the same batch would meet again.
                    let refused = status
                        .is_some_and(|s| s.is_client_error() && s != reqwest::StatusCode::REQUEST_TIMEOUT);
                    if attempt >= 3 || !up || refused {
                        // The numbers are spent: the receiver reports the gap with the next batch.
                        tracing::warn!(to = %member, tasks = count, error = %why, "cluster tasks dropped");
                        break;
                    }
                    tracing::debug!(to = %member, attempt, error = %why, "task request failed: retrying");
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))) => {}
                    }
                }
            }
        }
    }
}

async fn check_loop(sh: Arc<Shared>, client: reqwest::Client, member: MemberId, addr: SocketAddr) {
    let url = format!("http://{addr}/alive");
    let mut stop = sh.stop.subscribe();
    let mut tick = tokio::time::interval(sh.config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        let check = async {
            let r = client
                .get(&url)
                .timeout(sh.config.request_timeout)
                .send()
                .await
                .ok()?;
            if r.status() != reqwest::StatusCode::OK {
                return None;
            }
            let text = r.text().await.ok()?;
            let (id, epoch) = text.split_once('\n')?;
            if id != member.as_str() {
                tracing::warn!(%member, answered = id, "another member answers at this address");
                return None;
            }
            epoch.trim().parse::<u64>().ok()
        };
        let result = tokio::select! {
            _ = stop.changed() => break,
            r = check => r,
        };
        if sh.stopped.load(Ordering::Relaxed) {
            break;
        }
        sh.checked(&member, result, &mut failures);
    }
}

impl Cluster for HttpCluster {
    fn local_member(&self) -> &MemberId {
        &self.shared.config.local
    }

    fn members(&self) -> Vec<MemberId> {
        self.shared
            .config
            .members
            .iter()
            .map(|(m, _)| m.clone())
            .collect()
    }

    fn status(&self, member: &MemberId) -> MemberStatus {
        self.shared.status(member)
    }

    async fn start(&self, events: Arc<dyn ClusterEvents>) -> CoreResult<()> {
        self.launch(events).await.map_err(CoreError::from)
    }

    async fn stop(&self) -> CoreResult<()> {
        self.shared.stopped.store(true, Ordering::Relaxed);
        self.shared.stop.send_replace(true);
        lock(&self.shared.queues).tx.clear();
        let tasks: Vec<JoinHandle<()>> = lock(&self.shared.tasks).drain(..).collect();
        let mut tasks = tasks.into_iter();
        // The first task is the server: let it close its connections (bounded).
        if let Some(server) = tasks.next() {
            let abort = server.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), server)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        for t in tasks {
            t.abort();
        }
        tracing::info!(member = %self.shared.config.local, "http cluster member stopped");
        Ok(())
    }

    async fn send_to(&self, member: &MemberId, task: ClusterTask) -> CoreResult<()> {
        if *member == self.shared.config.local {
            self.deliver_local(task);
            Ok(())
        } else if !self.shared.config.members.iter().any(|(m, _)| m == member) {
            Err(CoreError::NotFound(format!("member {member}")))
        } else {
            self.enqueue(member, task)
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
        self.announce_interest(topic, on).await
    }

    async fn send_to_interested(&self, topic: &Topic, task: ClusterTask) -> CoreResult<()> {
        let mut r = Ok(());
        for m in self.shared.interested(topic) {
            if let Err(e) = self.enqueue(&m, task.clone()) {
                r = Err(e);
            }
        }
        r
    }

    fn stats(&self) -> thywill_core::ClusterStats {
        let sh = &self.shared;
        thywill_core::ClusterStats::new(
            0,
            sh.gaps.load(Ordering::Relaxed),
            sh.sent.load(Ordering::Relaxed),
            sh.received.load(Ordering::Relaxed),
        )
        .with_received_bytes(sh.received_bytes.load(Ordering::Relaxed))
        .with_topics(lock(&sh.topics).len() as u64)
    }
}

impl HttpCluster {
    /// Queues a task for every member but the local one; the last refusal, if any.
    fn enqueue_others(&self, task: ClusterTask) -> CoreResult<()> {
        let cfg = &self.shared.config;
        let mut r = Ok(());
        for (m, _) in cfg.members.iter().filter(|(m, _)| *m != cfg.local) {
            if let Err(e) = self.enqueue(m, task.clone()) {
                r = Err(e);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip() -> Result<(), Error> {
        let b = Batch {
            from: "alpha".into(),
            epoch: 3,
            items: vec![(
                Stamp {
                    receiver_epoch: 1,
                    seq: 2,
                },
                ClusterTask::encode("t", &5u8).map_err(|e| Error::Codec(e.to_string()))?,
            )],
        };
        let back: Batch = decode(&encode(&b)?)?;
        assert_eq!(
            (back.from.as_str(), back.epoch, back.items.len()),
            ("alpha", 3, 1)
        );
        Ok(())
    }
}
