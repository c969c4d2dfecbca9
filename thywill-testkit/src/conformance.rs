//! The conformance suite every [`Cluster`](thywill_core::Cluster) backend passes: send semantics, per-sender order,
//! designated handler, member down/up detection time, and a member missing at start.
//!
//! The suite is a function taking a constructor, so each backend runs the very same checks:
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use thywill_testkit::conformance::{self, Options, Spec};
//!
//! conformance::run(Options::single_member(), |spec: Spec| async move {
//!     # let cluster: Arc<dyn thywill_core::DynCluster> = todo!();
//!     // build (do not start) the member `spec.local` of a cluster of `spec.members`
//!     Ok(cluster)
//! })
//! .await
//! # }
//! ```
//!
//! It lives here, in the test-support crate, rather than in `thywill-core` behind a feature:
//! the suite needs a runtime and timers (which the core must not depend on), and every backend
//! already has this crate as a dev-dependency.
//!
//! Members of one scenario run in this process; each scenario uses a fresh cluster whose
//! [`Spec::cluster`] name is unique, so a backend can keep scenarios apart (a Redis key prefix,
//! a set of ports). A member is "killed" with [`Cluster::stop`](thywill_core::Cluster::stop) and "restarted" by building a
//! new instance of the same member and starting it.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};
use thywill_core::{ClusterEvents, ClusterTask, DynCluster, MemberId, MemberStatus, Task, Topic};
use tokio::sync::watch;

/// What the constructor is asked to build.
#[derive(Clone, Debug)]
pub struct Spec {
    /// A name unique to the scenario's cluster (for prefixes, port tables).
    pub cluster: String,
    /// Every member, in ring order.
    pub members: Vec<MemberId>,
    /// The member to build.
    pub local: MemberId,
}

/// How the suite is run against a backend.
#[derive(Clone, Debug)]
pub struct Options {
    /// Largest cluster the backend supports (1 for the single-member cluster).
    pub max_members: usize,
    /// A stopped member must be reported down within this time (timeout + one interval for
    /// a heartbeat backend, plus a little scheduling slack).
    pub detection_bound: Duration,
    /// How long to wait for members to see each other up at start.
    pub startup_bound: Duration,
}

impl Options {
    /// Options for a single-member backend.
    pub fn single_member() -> Self {
        Self {
            max_members: 1,
            detection_bound: Duration::from_secs(1),
            startup_bound: crate::TIMEOUT,
        }
    }

    /// Options for a multi-member backend with this detection bound.
    pub fn clustered(detection_bound: Duration) -> Self {
        Self {
            max_members: usize::MAX,
            detection_bound,
            startup_bound: crate::TIMEOUT,
        }
    }
}

/// One event a member observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A task arrived.
    Task {
        /// Sender.
        from: MemberId,
        /// The task.
        task: ClusterTask,
    },
    /// A member came up.
    Up(MemberId),
    /// A member went down; whether the observer is its designated handler.
    Down(MemberId, bool),
    /// Lost traffic from a member.
    Gap(MemberId, u64),
}

/// Records every event of one member, with the time it was seen; waits are bounded.
#[derive(Debug)]
pub struct Recorder {
    events: Mutex<Vec<(Instant, Event)>>,
    changed: watch::Sender<usize>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            events: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
        }
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn push(&self, e: Event) {
        let mut v = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        v.push((Instant::now(), e));
        let n = v.len();
        drop(v);
        self.changed.send_replace(n);
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<(Instant, Event)> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits until the recorded events satisfy `pred` (called on the whole list), within `wait`.
    pub async fn wait_until<T>(
        &self,
        wait: Duration,
        what: &str,
        mut pred: impl FnMut(&[(Instant, Event)]) -> Option<T>,
    ) -> anyhow::Result<T> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Judge a copy: the predicate may read the recorder again.
            let v = self.events();
            if let Some(t) = pred(&v) {
                return Ok(t);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => bail!("recorder closed while waiting for {what}"),
                Err(_) => bail!("no {what} within {wait:?}; events: {:?}", self.summary()),
            }
        }
    }

    /// Waits for an event matching `pred`; returns when it was seen.
    pub async fn wait_event(
        &self,
        wait: Duration,
        what: &str,
        pred: impl Fn(&Event) -> bool,
    ) -> anyhow::Result<Instant> {
        self.wait_until(wait, what, |v| v.iter().find(|(_, e)| pred(e)).map(|(t, _)| *t))
            .await
    }

    /// The probe tasks received, in order, with their senders.
    pub fn probes(&self) -> Vec<(MemberId, Probe)> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Task { from, task } => task
                    .decode::<Probe>()
                    .and_then(Result::ok)
                    .map(|p| (from.clone(), p)),
                _ => None,
            })
            .collect()
    }

    fn summary(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .take(20)
            .map(|(_, e)| match e {
                Event::Task { from, task } => format!("task {} from {from}", task.name),
                other => format!("{other:?}"),
            })
            .collect()
    }
}

impl ClusterEvents for Recorder {
    fn task(&self, from: MemberId, task: ClusterTask) {
        self.push(Event::Task { from, task });
    }
    fn member_up(&self, member: MemberId) {
        self.push(Event::Up(member));
    }
    fn member_down(&self, member: MemberId, designated: bool) {
        self.push(Event::Down(member, designated));
    }
    fn gap(&self, from: MemberId, missing: u64) {
        self.push(Event::Gap(from, missing));
    }
}

/// The task the suite sends: a label and a number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// What kind of send produced it.
    pub label: String,
    /// A sequence number chosen by the sender.
    pub n: u64,
}

impl Task for Probe {
    const NAME: &'static str = "conformance.probe";
}

fn probe(label: &str, n: u64) -> anyhow::Result<ClusterTask> {
    Ok(Probe {
        label: label.to_owned(),
        n,
    }
    .to_task()?)
}

/// One started member of a scenario.
struct Member {
    id: MemberId,
    cluster: Arc<dyn DynCluster>,
    rec: Arc<Recorder>,
}

struct Scenario<'a, F> {
    make: &'a F,
    opts: &'a Options,
    name: String,
    members: Vec<MemberId>,
}

impl<F, Fut> Scenario<'_, F>
where
    F: Fn(Spec) -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<dyn DynCluster>>>,
{
    async fn start(&self, local: &MemberId) -> anyhow::Result<Member> {
        let cluster = (self.make)(Spec {
            cluster: self.name.clone(),
            members: self.members.clone(),
            local: local.clone(),
        })
        .await
        .with_context(|| format!("building member {local}"))?;
        let rec = Recorder::new();
        ensure!(cluster.local_member() == local, "local_member() is not {local}");
        cluster
            .start(rec.clone())
            .await
            .with_context(|| format!("starting {local}"))?;
        Ok(Member {
            id: local.clone(),
            cluster,
            rec,
        })
    }

    /// Starts the listed members and waits until each sees the others up.
    async fn start_all(&self, ids: &[MemberId]) -> anyhow::Result<Vec<Member>> {
        let mut out = Vec::new();
        for id in ids {
            out.push(self.start(id).await?);
        }
        for m in &out {
            for other in ids.iter().filter(|o| **o != m.id) {
                wait_status(m, other, MemberStatus::Up, self.opts.startup_bound).await?;
            }
        }
        Ok(out)
    }
}

async fn wait_status(m: &Member, of: &MemberId, want: MemberStatus, wait: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if m.cluster.status(of) == want {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{}: status of {of} is {:?}, not {want:?}, after {wait:?}",
                m.id,
                m.cluster.status(of)
            );
        }
        // Polling a condition with a deadline (status has no change notification).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn ids(n: usize) -> Vec<MemberId> {
    ["alpha", "beta", "gamma", "delta"]
        .into_iter()
        .take(n)
        .map(MemberId::from)
        .collect()
}

fn unique(name: &str) -> String {
    format!("{name}-{:08x}", rand_u32())
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() as u32
}

/// Runs the whole suite against a backend. `make` builds (does not start) one member.
pub async fn run<F, Fut>(opts: Options, make: F) -> anyhow::Result<()>
where
    F: Fn(Spec) -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<dyn DynCluster>>>,
{
    send_semantics(&opts, &make).await.context("send semantics")?;
    designated_handler(&opts, &make)
        .await
        .context("designated handler")?;
    if opts.max_members >= 2 {
        per_sender_order(&opts, &make).await.context("per-sender order")?;
        down_up_detection(&opts, &make)
            .await
            .context("down/up detection")?;
        missing_at_start(&opts, &make)
            .await
            .context("member missing at start")?;
    }
    Ok(())
}

/// Interest routing, for a backend that routes by interest (not part of [`run`]: a backend
/// keeping the defaults of [`Cluster::interest`](thywill_core::Cluster::interest) broadcasts,
/// which is correct too). With three members:
///
/// - what is sent to a topic after a member's `interest(topic, true)` returned reaches it, each
///   task once and in the order sent, and never reaches a member that is not interested (nor
///   the sender): its [`ClusterStats::received`](thywill_core::ClusterStats::received) does
///   not move;
/// - after `interest(topic, false)` returned, nothing more arrives (the provided backends are
///   strict; the trait allows a while);
/// - the stats count the received tasks and the topics of interest.
pub async fn interest_routing<F, Fut>(opts: &Options, make: &F) -> anyhow::Result<()>
where
    F: Fn(Spec) -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<dyn DynCluster>>>,
{
    let sc = Scenario {
        make,
        opts,
        name: unique("interest"),
        members: ids(3),
    };
    let ms = sc.start_all(&sc.members).await?;
    let (a, b, c) = (&ms[0], &ms[1], &ms[2]);
    let topic = Topic::channel(&"room".into());
    let label_count = |m: &Member, label: &str| {
        m.rec
            .probes()
            .into_iter()
            .filter(|(_, p)| p.label == label)
            .count()
    };
    // A backend may send every topic to a member whose interest it does not know yet (the
    // HTTP backend, until the member's set arrives): each member declares and withdraws
    // another topic first, which it returns from once the others know of it.
    let warm = Topic::channel(&"warm-up".into());
    for m in &ms {
        m.cluster.interest(&warm, true).await?;
        m.cluster.interest(&warm, false).await?;
    }
    let c_before = c.cluster.stats().received;
    b.cluster
        .interest(&topic, true)
        .await
        .context("declaring interest")?;
    ensure!(
        b.cluster.stats().topics == 1,
        "stats().topics is {}, not 1",
        b.cluster.stats().topics
    );
    let b_before = b.cluster.stats().received;
    const N: u64 = 50;
    for n in 0..N {
        a.cluster.send_to_interested(&topic, probe("topic", n)?).await?;
    }
    // The marks travel on the member path: per-sender order does not promise they follow the
    // topic traffic, so what must have arrived is waited for, and what must not is checked
    // after everything else arrived.
    a.cluster.send_to(&c.id, probe("mark", 0)?).await?;
    b.rec
        .wait_until(crate::TIMEOUT, "every topic task", |v| {
            (v.iter()
                .filter(|(_, e)| matches!(e, Event::Task { task, .. } if task.name == Probe::NAME))
                .count() as u64
                >= N)
                .then_some(())
        })
        .await?;
    c.rec
        .wait_event(crate::TIMEOUT, "the mark", |e| matches!(e, Event::Task { .. }))
        .await?;
    let got: Vec<u64> = b.rec.probes().into_iter().map(|(_, p)| p.n).collect();
    ensure!(
        got == (0..N).collect::<Vec<_>>(),
        "the interested member received {got:?}"
    );
    ensure!(
        b.cluster.stats().received >= b_before + N,
        "stats().received of the interested member counts {} after {b_before}",
        b.cluster.stats().received
    );

    // The interested member sends to the topic too: the others interested get it, not itself.
    a.cluster.interest(&topic, true).await?;
    b.cluster.send_to_interested(&topic, probe("from-b", 0)?).await?;
    a.rec
        .wait_event(
            crate::TIMEOUT,
            "b's topic task",
            |e| matches!(e, Event::Task { from, .. } if *from == b.id),
        )
        .await?;

    // Withdrawn: nothing more reaches b.
    b.cluster
        .interest(&topic, false)
        .await
        .context("withdrawing interest")?;
    ensure!(
        b.cluster.stats().topics == 0,
        "stats().topics is not 0 after withdrawing"
    );
    for n in 0..10 {
        a.cluster.send_to_interested(&topic, probe("after", n)?).await?;
    }
    a.cluster.send_to(&b.id, probe("mark", 1)?).await?;
    b.rec
        .wait_event(crate::TIMEOUT, "the second mark", |e| matches!(e, Event::Task { task, .. } if task.decode::<Probe>().and_then(Result::ok).is_some_and(|p| p.label == "mark")))
        .await?;
    // One more round trip to b: anything sent before it has had time to arrive.
    let settle = b.rec.events().len();
    a.cluster.send_to(&b.id, probe("mark", 2)?).await?;
    b.rec
        .wait_until(crate::TIMEOUT, "the third mark", |v| {
            (v.len() > settle).then_some(())
        })
        .await?;
    ensure!(
        label_count(b, "after") == 0,
        "b received topic tasks after withdrawing"
    );
    ensure!(label_count(b, "from-b") == 0, "b received its own topic task");
    ensure!(
        label_count(a, "topic") == 0,
        "the sender received its own topic tasks"
    );
    ensure!(
        label_count(c, "topic") + label_count(c, "after") + label_count(c, "from-b") == 0,
        "a member without interest received topic tasks"
    );
    ensure!(
        c.cluster.stats().received <= c_before + 1,
        "the member without interest counted {} tasks received, more than its mark",
        c.cluster.stats().received - c_before
    );
    for m in &ms {
        m.cluster.stop().await?;
    }
    Ok(())
}

/// `send_to` reaches exactly one member (the local one included), `send_to_others` every member
/// but the sender, `send_to_all` every member; an unknown member is an error.
pub async fn send_semantics<F, Fut>(opts: &Options, make: &F) -> anyhow::Result<()>
where
    F: Fn(Spec) -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<dyn DynCluster>>>,
{
    let n = opts.max_members.min(3);
    let sc = Scenario {
        make,
        opts,
        name: unique("send"),
        members: ids(n),
    };
    let ms = sc.start_all(&sc.members).await?;
    let a = &ms[0];
    ensure!(
        a.cluster.members() == sc.members,
        "members() is not the configured ring"
    );
    ensure!(
        a.cluster.status(&a.id) == MemberStatus::Up,
        "the local member is not up"
    );
    ensure!(a.cluster.is_healthy(), "not healthy after start");

    let last = ms.last().map(|m| m.id.clone()).context("no member")?;
    a.cluster.send_to(&a.id, probe("to-self", 1)?).await?;
    a.cluster.send_to(&last, probe("to-last", 2)?).await?;
    a.cluster.send_to_others(probe("others", 3)?).await?;
    a.cluster.send_to_all(probe("all", 4)?).await?;
    ensure!(
        a.cluster
            .send_to(&MemberId::from("nobody"), probe("x", 0)?)
            .await
            .is_err(),
        "send_to an unknown member must fail"
    );
    for m in &ms {
        m.rec
            .wait_until(crate::TIMEOUT, "the `all` probe", |v| {
                v.iter()
                    .any(|(_, e)| matches!(e, Event::Task { task, .. } if task.decode::<Probe>().and_then(Result::ok).is_some_and(|p| p.label == "all")))
                    .then_some(())
            })
            .await
            .with_context(|| format!("on {}", m.id))?;
        // Per-sender order: everything `a` sent before `all` has arrived by now.
        let probes = m.rec.probes();
        ensure!(
            probes.iter().all(|(from, _)| *from == a.id),
            "{}: probe from an unexpected sender",
            m.id
        );
        let got: Vec<String> = probes.into_iter().map(|(_, p)| p.label).collect();
        let mut want: Vec<&str> = Vec::new();
        if m.id == a.id {
            want.push("to-self");
        }
        if m.id == last && m.id != a.id {
            want.push("to-last");
        }
        if m.id != a.id {
            want.push("others");
        }
        want.push("all");
        if m.id == last && m.id == a.id {
            // single member: `to-last` was sent to itself
            want.insert(1, "to-last");
        }
        ensure!(got == want, "{} received {got:?}, expected {want:?}", m.id);
        ensure!(
            !m.rec.events().iter().any(|(_, e)| matches!(e, Event::Gap(..))),
            "{}: gap reported without loss",
            m.id
        );
    }
    for m in &ms {
        m.cluster.stop().await?;
    }
    Ok(())
}

/// The designated handler of a member is the next member up in ring order.
pub async fn designated_handler<F, Fut>(opts: &Options, make: &F) -> anyhow::Result<()>
where
    F: Fn(Spec) -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<dyn DynCluster>>>,
{
    let n = opts.max_members.min(3);
    let sc = Scenario {
        make,
        opts,
        name: unique("designated"),
        members: ids(n),
    };
    let ms = sc.start_all(&sc.members).await?;
    for m in &ms {
        for (i, failed) in sc.members.iter().enumerate() {
            let want = (n > 1).then(|| sc.members[(i + 1) % n].clone());
            let got = m.cluster.designated_handler(failed);
            ensure!(
                got == want,
                "{}: designated handler of {failed} is {got:?}, expected {want:?}",
                m.id
            );
        }
    }
    for m in &ms {
        m.cluster.stop().await?;
    }
    Ok(())
}

/// Tasks from one sender arrive in the order sent, whatever mix of sends produced them, and
/// without gaps.
pub async fn per_sender_order<F, Fut>(opts: &Options, make: &F) -> anyhow::Result<()>
where
    F: Fn(Spec) -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<dyn DynCluster>>>,
{
    let n = opts.max_members.min(3);
    let sc = Scenario {
        make,
        opts,
        name: unique("order"),
        members: ids(n),
    };
    let ms = sc.start_all(&sc.members).await?;
    const COUNT: u64 = 600;
    let (a, b) = (&ms[0], &ms[1]);
    let send_a = async {
        for i in 1..=COUNT {
            match i % 3 {
                0 => a.cluster.send_to(&b.id, probe("a", i)?).await?,
                1 => a.cluster.send_to_others(probe("a", i)?).await?,
                _ => a.cluster.send_to_all(probe("a", i)?).await?,
            }
        }
        anyhow::Ok(())
    };
    let send_b = async {
        for i in 1..=COUNT {
            b.cluster.send_to(&a.id, probe("b", i)?).await?;
        }
        anyhow::Ok(())
    };
    let (ra, rb) = tokio::join!(send_a, send_b);
    ra?;
    rb?;
    let wait = crate::TIMEOUT * 2;
    b.rec
        .wait_until(wait, "all of a's probes on b", |_| {
            (b.rec.probes().iter().filter(|(f, _)| *f == a.id).count() as u64 == COUNT).then_some(())
        })
        .await?;
    a.rec
        .wait_until(wait, "all of b's probes on a", |_| {
            (a.rec.probes().iter().filter(|(f, _)| *f == b.id).count() as u64 == COUNT).then_some(())
        })
        .await?;
    let on_b: Vec<u64> = b
        .rec
        .probes()
        .into_iter()
        .filter(|(f, _)| *f == a.id)
        .map(|(_, p)| p.n)
        .collect();
    ensure!(
        on_b == (1..=COUNT).collect::<Vec<_>>(),
        "b got a's probes out of order"
    );
    let on_a: Vec<u64> = a
        .rec
        .probes()
        .into_iter()
        .filter(|(f, _)| *f == b.id)
        .map(|(_, p)| p.n)
        .collect();
    ensure!(
        on_a == (1..=COUNT).collect::<Vec<_>>(),
        "a got b's probes out of order"
    );
    if let Some(c) = ms.get(2) {
        let want: Vec<u64> = (1..=COUNT).filter(|i| i % 3 != 0).collect();
        c.rec
            .wait_until(wait, "a's broadcasts on c", |_| {
                (c.rec.probes().len() == want.len()).then_some(())
            })
            .await?;
        let on_c: Vec<u64> = c.rec.probes().into_iter().map(|(_, p)| p.n).collect();
        ensure!(on_c == want, "c got a's broadcasts out of order or extra ones");
    }
    for m in &ms {
        ensure!(
            !m.rec.events().iter().any(|(_, e)| matches!(e, Event::Gap(..))),
            "{}: gap reported without loss",
            m.id
        );
        m.cluster.stop().await?;
    }
    Ok(())
}

/// A stopped member is reported down within the bound, with `designated` true on exactly its
/// designated handler; a restarted member is reported up and tasks flow again.
pub async fn down_up_detection<F, Fut>(opts: &Options, make: &F) -> anyhow::Result<()>
where
    F: Fn(Spec) -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<dyn DynCluster>>>,
{
    let n = opts.max_members.min(3);
    let sc = Scenario {
        make,
        opts,
        name: unique("downup"),
        members: ids(n),
    };
    let mut ms = sc.start_all(&sc.members).await?;
    let victim = ms.pop().context("no member")?;
    let designated = ms[0].cluster.designated_handler(&victim.id);
    ensure!(
        designated.as_ref() == Some(&ms[0].id),
        "designated handler of the last member is the first"
    );
    let killed = Instant::now();
    victim.cluster.stop().await?;
    drop(victim);
    let victim_id = sc.members[n - 1].clone();
    for m in &ms {
        let seen = m
            .rec
            .wait_event(
                opts.detection_bound * 4,
                "member down",
                |e| matches!(e, Event::Down(id, _) if *id == victim_id),
            )
            .await
            .with_context(|| format!("on {}", m.id))?;
        let took = seen.saturating_duration_since(killed);
        eprintln!("conformance: {} reported {victim_id} down after {took:?}", m.id);
        ensure!(
            took <= opts.detection_bound,
            "{}: down detected after {took:?}, bound {:?}",
            m.id,
            opts.detection_bound
        );
        let flag = m
            .rec
            .events()
            .iter()
            .find_map(|(_, e)| match e {
                Event::Down(id, d) if *id == victim_id => Some(*d),
                _ => None,
            })
            .unwrap_or(false);
        ensure!(
            flag == (Some(&m.id) == designated.as_ref()),
            "{}: designated flag {flag}",
            m.id
        );
        ensure!(
            m.cluster.status(&victim_id) == MemberStatus::Down,
            "{}: status not Down",
            m.id
        );
        let downs = m
            .rec
            .events()
            .iter()
            .filter(|(_, e)| matches!(e, Event::Down(..)))
            .count();
        ensure!(downs == 1, "{}: {downs} down events, expected 1", m.id);
    }
    // Start it again.
    let back = sc.start(&victim_id).await?;
    for m in &ms {
        m.rec
            .wait_event(
                sc.opts.startup_bound,
                "member up again",
                |e| matches!(e, Event::Up(id) if *id == victim_id),
            )
            .await
            .with_context(|| format!("on {}", m.id))?;
        wait_status(m, &victim_id, MemberStatus::Up, sc.opts.startup_bound).await?;
    }
    for other in ms.iter().map(|m| m.id.clone()) {
        wait_status(&back, &other, MemberStatus::Up, sc.opts.startup_bound).await?;
    }
    back.cluster.send_to(&ms[0].id, probe("back", 1)?).await?;
    ms[0].cluster.send_to(&victim_id, probe("welcome", 1)?).await?;
    ms[0]
        .rec
        .wait_until(crate::TIMEOUT, "a task from the restarted member", |_| {
            ms[0]
                .rec
                .probes()
                .iter()
                .any(|(f, p)| *f == victim_id && p.label == "back")
                .then_some(())
        })
        .await?;
    back.rec
        .wait_until(crate::TIMEOUT, "a task to the restarted member", |_| {
            back.rec
                .probes()
                .iter()
                .any(|(_, p)| p.label == "welcome")
                .then_some(())
        })
        .await?;
    back.cluster.stop().await?;
    for m in &ms {
        m.cluster.stop().await?;
    }
    Ok(())
}

/// A member missing at start goes from unknown to down without a down event; sending to it
/// neither fails loudly nor hangs; when it starts, the others report it up.
pub async fn missing_at_start<F, Fut>(opts: &Options, make: &F) -> anyhow::Result<()>
where
    F: Fn(Spec) -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<dyn DynCluster>>>,
{
    let n = opts.max_members.min(3);
    let sc = Scenario {
        make,
        opts,
        name: unique("missing"),
        members: ids(n),
    };
    let present: Vec<MemberId> = sc.members[..n - 1].to_vec();
    let missing = sc.members[n - 1].clone();
    let ms = sc.start_all(&present).await?;
    for m in &ms {
        wait_status(m, &missing, MemberStatus::Down, opts.detection_bound * 4).await?;
        ensure!(
            !m.rec.events().iter().any(|(_, e)| matches!(e, Event::Down(..))),
            "{}: a member missing at start must not produce a down event",
            m.id
        );
        let sent = tokio::time::timeout(crate::TIMEOUT, m.cluster.send_to(&missing, probe("lost", 1)?)).await;
        ensure!(sent.is_ok(), "{}: send_to a missing member hung", m.id);
    }
    let late = sc.start(&missing).await?;
    for m in &ms {
        m.rec
            .wait_event(
                sc.opts.startup_bound,
                "late member up",
                |e| matches!(e, Event::Up(id) if *id == missing),
            )
            .await
            .with_context(|| format!("on {}", m.id))?;
    }
    late.cluster.stop().await?;
    for m in &ms {
        m.cluster.stop().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_single_member_cluster_conforms() -> anyhow::Result<()> {
        run(Options::single_member(), |spec: Spec| async move {
            let c: Arc<dyn DynCluster> = Arc::new(thywill_core::LocalCluster::new(spec.local));
            Ok(c)
        })
        .await
    }
}
