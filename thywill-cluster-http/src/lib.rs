//! A thywill-rs [`Cluster`] backend over direct HTTP between members: each member runs a small
//! warp server and reaches the others with reqwest.
//!
//! | route | what |
//! |---|---|
//! | `GET /alive` | `200`, body `<member id>\n<epoch>`: the up-check |
//! | `POST /task` | a batch of tasks from one sender (bincode), authenticated; `200` once handled, `401` if the signature is missing, wrong or stale |
//!
//! **Membership.** Every member checks every other one every `interval` (200 ms) with a
//! `request_timeout` (500 ms); `consecutive_failed_checks` (2) failures in a row make an up
//! member down (reported, with `designated` set on its designated handler) and an unknown one
//! down silently; a success makes it up (reported). A member that comes back as a new process
//! (a new epoch in `/alive`) faster than that is reported down and up again.
//!
//! **Order and loss.** One bounded queue and one sending task per destination keep the order
//! of a sender's tasks; queued tasks travel in batches, one request at a time, retried twice
//! while the destination is up. Tasks are numbered per (sender, receiver) pair
//! ([`thywill_core::cluster::Outbound`]): a receiver reports a hole through
//! [`ClusterEvents::gap`] (counted in [`HttpCluster::gaps`]) when the next batch arrives, and
//! drops duplicates of retried requests.
//!
//! **Authentication.** With a shared secret, every task request carries
//! `x-thywill-auth: <unix ms>.<hex HMAC-SHA256(secret, "<unix ms>." + body)>`; the receiver
//! rejects a missing or wrong signature and one older than the allowed clock skew (30 s) with
//! 401. The configuration refuses to run without a secret when any member listens beyond
//! loopback. Traffic is plain HTTP: run it on a private network (or loopback).
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
//! // hand it to the node builder: Thywill::builder().cluster(cluster)
//! # let _ = cluster; Ok(()) }
//! ```

mod auth;
mod config;
mod error;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thywill_core::cluster::{Arrival, Inbound, Outbound, Stamp, local_is_designated, new_epoch};
use thywill_core::{
    BoxFuture, Cluster, ClusterEvents, ClusterTask, CoreError, CoreResult, MemberId, MemberStatus,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use warp::Filter;
use warp::http::StatusCode;

pub use config::{HttpClusterConfig, parse_members};
pub use error::Error;

/// Most tasks in one request.
const BATCH: usize = 256;
/// Largest request body accepted.
const MAX_BODY: u64 = 32 * 1024 * 1024;
/// Header carrying the signature.
const AUTH_HEADER: &str = "x-thywill-auth";

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
    epoch: u64,
    events: RwLock<Option<Arc<dyn ClusterEvents>>>,
    peers: Mutex<HashMap<MemberId, Peer>>,
    queues: Mutex<Queues>,
    inbound: Mutex<Inbound>,
    gaps: AtomicU64,
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
        let epoch = new_epoch(rand::random());
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
                epoch,
                events: RwLock::new(None),
                peers: Mutex::new(peers),
                queues: Mutex::new(Queues {
                    seq: Outbound::default(),
                    tx: HashMap::new(),
                }),
                inbound: Mutex::new(Inbound::new(epoch)),
                gaps: AtomicU64::new(0),
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

    /// This incarnation's epoch.
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
            .pool_idle_timeout(Duration::from_secs(30))
            .connect_timeout(sh.config.request_timeout)
            .build()?;
        let mut stop = sh.stop.subscribe();
        let server = warp::serve(routes(sh.clone()))
            .incoming(listener)
            .graceful(async move {
                let _ = stop.changed().await;
            });
        let mut tasks = vec![tokio::spawn(server.run())];
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
        let mut q = lock(&self.shared.queues);
        let Queues { seq, tx } = &mut *q;
        let tx = tx
            .get(member)
            .ok_or_else(|| CoreError::Unavailable("http cluster not started".into()))?;
        let permit = tx.try_reserve().map_err(|e| match e {
            mpsc::error::TrySendError::Full(()) => CoreError::Unavailable(format!("queue to {member} full")),
            mpsc::error::TrySendError::Closed(()) => CoreError::Unavailable("http cluster stopped".into()),
        })?;
        permit.send((seq.next(member), task));
        Ok(())
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

    /// Handles one task request; returns the status to answer.
    fn receive(&self, auth: Option<&str>, body: &[u8]) -> StatusCode {
        if self.stopped.load(Ordering::Relaxed) {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        if let Some(secret) = &self.config.secret
            && let Err(why) = auth::verify(secret, auth, body, self.config.max_clock_skew)
        {
            tracing::warn!(reason = why, "cluster task request refused");
            return StatusCode::UNAUTHORIZED;
        }
        let batch: Batch = match decode(body) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable cluster task request");
                return StatusCode::BAD_REQUEST;
            }
        };
        if !self.config.members.iter().any(|(m, _)| *m == batch.from) || batch.from == self.config.local {
            tracing::warn!(from = %batch.from, "cluster task request from a member not configured");
            return StatusCode::FORBIDDEN;
        }
        let ev = self.events();
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
                    if let Some(ev) = &ev {
                        ev.gap(batch.from.clone(), missing);
                    }
                }
                Arrival::InOrder | Arrival::Untracked => {}
            }
            if let Some(ev) = &ev {
                ev.task(batch.from.clone(), task);
            }
        }
        StatusCode::OK
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

fn routes(sh: Arc<Shared>) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    use warp::Reply;
    let alive_sh = sh.clone();
    let alive = warp::path("alive")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            if alive_sh.stopped.load(Ordering::Relaxed) {
                return warp::reply::with_status("Stopped.".to_owned(), StatusCode::SERVICE_UNAVAILABLE)
                    .into_response();
            }
            format!("{}\n{}", alive_sh.config.local, alive_sh.epoch).into_response()
        });
    let task = warp::path("task")
        .and(warp::path::end())
        .and(warp::post())
        .and(warp::header::optional::<String>(AUTH_HEADER))
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::bytes())
        .map(move |auth: Option<String>, body: Bytes| {
            let status = sh.receive(auth.as_deref(), &body);
            let text = if status == StatusCode::OK {
                "Acknowledged."
            } else {
                "Refused."
            };
            warp::reply::with_status(text, status).into_response()
        });
    alive
        .or(task)
        .unify()
        .or(warp::any().map(|| warp::reply::with_status("Invalid.", StatusCode::NOT_FOUND).into_response()))
        .unify()
        .boxed()
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
    loop {
        let first = tokio::select! {
            _ = stop.changed() => break,
            m = rx.recv() => match m { Some(m) => m, None => break },
        };
        let mut items = vec![first];
        while items.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => items.push(m),
                Err(_) => break,
            }
        }
        let count = items.len();
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
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut req = client
                .post(&url)
                .timeout(sh.config.task_request_timeout)
                .header("content-type", "application/octet-stream")
                .body(body.clone());
            if let Some(secret) = &sh.config.secret {
                req = req.header(AUTH_HEADER, auth::sign(secret, &body));
            }
            let outcome = match req.send().await {
                Ok(r) if r.status() == reqwest::StatusCode::OK => Ok(()),
                Ok(r) => Err(format!("status {}", r.status())),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(()) => break,
                Err(why) => {
                    let up = sh.status(&member) == MemberStatus::Up;
                    if attempt >= 3 || !up || why.contains("401") {
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

    fn start(&self, events: Arc<dyn ClusterEvents>) -> BoxFuture<'_, CoreResult<()>> {
        Box::pin(async move { self.launch(events).await.map_err(CoreError::from) })
    }

    fn stop(&self) -> BoxFuture<'_, CoreResult<()>> {
        self.shared.stopped.store(true, Ordering::Relaxed);
        self.shared.stop.send_replace(true);
        lock(&self.shared.queues).tx.clear();
        let tasks: Vec<JoinHandle<()>> = lock(&self.shared.tasks).drain(..).collect();
        Box::pin(async move {
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
        })
    }

    fn send_to(&self, member: &MemberId, task: ClusterTask) -> BoxFuture<'_, CoreResult<()>> {
        let r = if *member == self.shared.config.local {
            self.deliver_local(task);
            Ok(())
        } else if !self.shared.config.members.iter().any(|(m, _)| m == member) {
            Err(CoreError::NotFound(format!("member {member}")))
        } else {
            self.enqueue(member, task)
        };
        Box::pin(std::future::ready(r))
    }

    fn send_to_others(&self, task: ClusterTask) -> BoxFuture<'_, CoreResult<()>> {
        let cfg = &self.shared.config;
        let mut r = Ok(());
        for (m, _) in cfg.members.iter().filter(|(m, _)| *m != cfg.local) {
            if let Err(e) = self.enqueue(m, task.clone()) {
                r = Err(e);
            }
        }
        Box::pin(std::future::ready(r))
    }

    fn send_to_all(&self, task: ClusterTask) -> BoxFuture<'_, CoreResult<()>> {
        self.deliver_local(task.clone());
        self.send_to_others(task)
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
