//! An in-memory cluster of several members in one process, for fast tests of what runs above
//! the cluster (tracker, channels, presence, applications): tasks travel through one ordered
//! queue per receiving member, and the test decides when a member dies.
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! use thywill_testkit::hub::Hub;
//! let hub = Hub::new(["alpha", "beta"]);
//! let alpha = hub.member("alpha"); // a `Cluster`: give it to a node
//! # let _ = alpha;
//! hub.kill("beta"); // alpha is told that beta went down (it is the designated handler)
//! # Ok(()) }
//! ```
//!
//! Members report each other up as soon as both have started; a killed member stops receiving
//! and sending, and every live member is told it went down (with `designated` set on its
//! designated handler, ring order). Starting a killed member again brings it back up.
//!
//! Interest routing ([`Cluster::interest`], [`Cluster::send_to_interested`]) is kept in the
//! hub itself: a declaration takes effect before `interest` returns, and a task sent to a topic
//! is queued for the members interested in it at that moment only. [`Hub::received`] counts
//! the tasks each member received, whatever their path.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use thywill_core::cluster::designated_handler;
use thywill_core::{
    Cluster, ClusterEvents, ClusterStats, ClusterTask, CoreError, CoreResult, MemberId, MemberStatus, Topic,
};
use tokio::sync::mpsc;

/// What a member's queue carries.
enum Delivery {
    Task(MemberId, ClusterTask),
    Up(MemberId),
    Down(MemberId, bool),
}

struct Slot {
    queue: mpsc::UnboundedSender<Delivery>,
}

#[derive(Default)]
struct State {
    /// Started (live) members and their queues.
    live: HashMap<MemberId, Slot>,
    /// Links whose sends fail (from, to): a member that cannot reach another.
    failing: HashSet<(MemberId, MemberId)>,
    /// The topics each live member is interested in.
    interest: HashMap<MemberId, HashSet<Topic>>,
    /// Tasks queued for each member since the hub was made, and those sent to a topic.
    received: HashMap<MemberId, (u64, u64)>,
}

/// The shared medium of an in-memory cluster. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    members: Vec<MemberId>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("members", &self.members).finish()
    }
}

impl Hub {
    /// A cluster of these members, in ring order; none is started yet.
    pub fn new<I, M>(members: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: Into<MemberId>,
    {
        Self {
            members: members.into_iter().map(Into::into).collect(),
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The member `id`, as a [`Cluster`] to give to a node (a new instance each call: a
    /// restarted member is a new one).
    pub fn member(&self, id: impl Into<MemberId>) -> HubMember {
        HubMember {
            hub: self.clone(),
            local: id.into(),
        }
    }

    /// Whether `id` is live (started and not killed).
    pub fn is_live(&self, id: &MemberId) -> bool {
        self.state().live.contains_key(id)
    }

    /// Makes every send from `from` to `to` fail with an error (or succeed again), as if the
    /// link between them broke; neither is told the other went down.
    pub fn fail_sends(&self, from: impl Into<MemberId>, to: impl Into<MemberId>, failing: bool) {
        let link = (from.into(), to.into());
        let mut st = self.state();
        if failing {
            st.failing.insert(link);
        } else {
            st.failing.remove(&link);
        }
    }

    /// How many tasks from other members were queued for `id` since the hub was made: all of
    /// them, and those sent to a topic ([`Cluster::send_to_interested`]).
    pub fn received(&self, id: &MemberId) -> (u64, u64) {
        self.state().received.get(id).copied().unwrap_or_default()
    }

    /// The topics `id` is interested in now, sorted.
    pub fn interest_of(&self, id: &MemberId) -> Vec<Topic> {
        let mut v: Vec<Topic> = self
            .state()
            .interest
            .get(id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Kills `id` at once: it stops sending and receiving, and every live member is told it
    /// went down.
    pub fn kill(&self, id: impl Into<MemberId>) {
        let id = id.into();
        let mut st = self.state();
        if st.live.remove(&id).is_none() {
            return;
        }
        st.interest.remove(&id);
        let handler = designated_handler(&self.members, &id, |m| st.live.contains_key(m));
        for (m, slot) in &st.live {
            let _ = slot
                .queue
                .send(Delivery::Down(id.clone(), handler.as_ref() == Some(m)));
        }
    }
}

/// One member of a [`Hub`].
pub struct HubMember {
    hub: Hub,
    local: MemberId,
}

impl std::fmt::Debug for HubMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubMember").field("local", &self.local).finish()
    }
}

impl HubMember {
    fn post(&self, to: &MemberId, task: ClusterTask) -> CoreResult<()> {
        self.post_as(to, task, false)
    }

    fn post_as(&self, to: &MemberId, task: ClusterTask, topic: bool) -> CoreResult<()> {
        let mut st = self.hub.state();
        if !st.live.contains_key(&self.local) {
            return Err(CoreError::Unavailable(format!("{} is not running", self.local)));
        }
        if st.failing.contains(&(self.local.clone(), to.clone())) {
            return Err(CoreError::Unavailable(format!("{to} cannot be reached")));
        }
        if let Some(slot) = st.live.get(to) {
            let _ = slot.queue.send(Delivery::Task(self.local.clone(), task));
            if *to != self.local {
                let counts = st.received.entry(to.clone()).or_default();
                counts.0 += 1;
                counts.1 += u64::from(topic);
            }
        }
        Ok(())
    }
}

async fn pump(mut rx: mpsc::UnboundedReceiver<Delivery>, events: Arc<dyn ClusterEvents>) {
    while let Some(d) = rx.recv().await {
        match d {
            Delivery::Task(from, task) => events.task(from, task),
            Delivery::Up(m) => events.member_up(m),
            Delivery::Down(m, designated) => events.member_down(m, designated),
        }
    }
}

impl Cluster for HubMember {
    fn local_member(&self) -> &MemberId {
        &self.local
    }

    fn members(&self) -> Vec<MemberId> {
        self.hub.members.clone()
    }

    fn status(&self, member: &MemberId) -> MemberStatus {
        if *member == self.local || self.hub.is_live(member) {
            MemberStatus::Up
        } else {
            MemberStatus::Down
        }
    }

    async fn start(&self, events: Arc<dyn ClusterEvents>) -> CoreResult<()> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(pump(rx, events));
        let mut st = self.hub.state();
        for (m, slot) in &st.live {
            let _ = slot.queue.send(Delivery::Up(self.local.clone()));
            let _ = tx.send(Delivery::Up(m.clone()));
        }
        st.live.insert(self.local.clone(), Slot { queue: tx });
        Ok(())
    }

    async fn stop(&self) -> CoreResult<()> {
        self.hub.kill(self.local.clone());
        Ok(())
    }

    async fn send_to(&self, member: &MemberId, task: ClusterTask) -> CoreResult<()> {
        if self.hub.members.contains(member) {
            self.post(member, task)
        } else {
            Err(CoreError::NotFound(format!("member {member}")))
        }
    }

    async fn send_to_others(&self, task: ClusterTask) -> CoreResult<()> {
        let mut r = Ok(());
        for m in self.hub.members.iter().filter(|m| **m != self.local) {
            if let Err(e) = self.post(m, task.clone()) {
                r = Err(e);
            }
        }
        r
    }

    async fn interest(&self, topic: &Topic, on: bool) -> CoreResult<()> {
        let mut st = self.hub.state();
        if !st.live.contains_key(&self.local) {
            return Err(CoreError::Unavailable(format!("{} is not running", self.local)));
        }
        let set = st.interest.entry(self.local.clone()).or_default();
        if on {
            set.insert(topic.clone());
        } else {
            set.remove(topic);
        }
        Ok(())
    }

    async fn send_to_interested(&self, topic: &Topic, task: ClusterTask) -> CoreResult<()> {
        let interested: Vec<MemberId> = self
            .hub
            .state()
            .interest
            .iter()
            .filter(|(m, topics)| **m != self.local && topics.contains(topic))
            .map(|(m, _)| m.clone())
            .collect();
        let mut r = Ok(());
        for m in &interested {
            if let Err(e) = self.post_as(m, task.clone(), true) {
                r = Err(e);
            }
        }
        r
    }

    fn stats(&self) -> ClusterStats {
        let st = self.hub.state();
        let (received, _) = st.received.get(&self.local).copied().unwrap_or_default();
        let topics = st.interest.get(&self.local).map_or(0, HashSet::len);
        ClusterStats::new(0, 0, 0, received).with_topics(topics as u64)
    }

    async fn send_to_all(&self, task: ClusterTask) -> CoreResult<()> {
        let mut r = Ok(());
        for m in &self.hub.members {
            if let Err(e) = self.post(m, task.clone()) {
                r = Err(e);
            }
        }
        r
    }
}
