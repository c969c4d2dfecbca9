//! Interest routing: the node receives a channel's traffic from the other members only while
//! one of its connections is subscribed to the channel.
//!
//! - **Declared with the first subscriber, withdrawn after the last.** [`Subs`](crate::presence::Subs)
//!   reports the channels whose local subscribers appeared or vanished; the node declares its
//!   interest in the channel's [`Topic`] to the cluster ([`DynCluster::interest`]) before a
//!   local subscription call returns (a subscription asked for by another member's task is
//!   declared by the keeper task, woken at once), and withdraws it once the channel has had no
//!   local subscriber for the linger ([`NodeConfig::with_interest_linger`](crate::NodeConfig::with_interest_linger)),
//!   so a connection that comes and goes does not make the backend subscribe and unsubscribe
//!   each time. Calls to the cluster are serialised ([`Interests::serial`]): a withdrawal and a
//!   declaration of one channel never race. With a history each member keeps for itself and
//!   replay on, interest is never withdrawn: the member's log of the channel must stay whole
//!   for the clients that resume from it.
//! - **The race with a subscription asked of another member.** A member B that subscribes
//!   connections on member A (a `thywill.subscription` or `thywill.channel-sessions` task) and
//!   then sends to the channel must reach them, as it did when every member received everything
//!   (B's tasks reach A in order). A has not declared its interest yet when B sends, so B also
//!   sends each message of the channel *directly* to the members it asked, for
//!   [`GRACE`] after asking ([`Interests::asked`], [`Interests::copies`]): the direct copy
//!   travels behind the subscription task. Such a message names the members given a copy and
//!   carries a random id; a member given a copy takes the first of its two arrivals and drops
//!   the other ([`Interests::first_time`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use thywill_core::{ChannelId, CoreResult, DynCluster, MemberId, Topic};

/// How long after asking a member to subscribe connections to a channel a sender also sends
/// the channel's messages straight to it: far longer than the member takes to declare its
/// interest (one task and one subscription round trip).
pub(crate) const GRACE: Duration = Duration::from_secs(5);

/// Most channels with members recently asked; past it, every channel's messages are copied to
/// every other member for [`GRACE`] (correct, only dearer).
const MAX_ASKED: usize = 65_536;

/// Ids of copied messages remembered per sender, to drop the second arrival.
const SEEN_PER_SENDER: usize = 4096;

/// The local interest in one channel.
#[derive(Debug)]
struct Want {
    /// The cluster confirmed the declaration (and no withdrawal has begun since).
    declared: bool,
    /// Since when the channel has had no local subscriber (`None` while it has one).
    idle_since: Option<Instant>,
}

/// Ids of messages received with a copy, of one sender (the newest [`SEEN_PER_SENDER`]).
#[derive(Debug, Default)]
struct Seen {
    order: VecDeque<u64>,
    ids: HashSet<u64>,
}

/// The node's interest bookkeeping (see the module docs).
#[derive(Debug)]
pub(crate) struct Interests {
    /// Whether interest is routed at all (a cluster of several members).
    pub(crate) routed: bool,
    /// Whether interest may be withdrawn (see the module docs).
    withdraws: bool,
    linger: Duration,
    wants: Mutex<HashMap<ChannelId, Want>>,
    /// Held across every call to the cluster's `interest`.
    pub(crate) serial: tokio::sync::Mutex<()>,
    /// Wakes the keeper task (a declaration for a task handler, which cannot await).
    pub(crate) wake: std::sync::Arc<tokio::sync::Notify>,
    /// Channel → members asked to subscribe connections to it, until when.
    asked: Mutex<Asked>,
    seen: Mutex<HashMap<MemberId, Seen>>,
}

#[derive(Debug, Default)]
struct Asked {
    channels: HashMap<ChannelId, Vec<(MemberId, Instant)>>,
    /// Too many channels were asked: until then, every channel's messages are copied.
    everything_until: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Interests {
    pub(crate) fn new(routed: bool, withdraws: bool, linger: Duration) -> Self {
        Self {
            routed,
            withdraws,
            linger,
            wants: Mutex::new(HashMap::new()),
            serial: tokio::sync::Mutex::new(()),
            wake: std::sync::Arc::new(tokio::sync::Notify::new()),
            asked: Mutex::new(Asked::default()),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records channels whose local subscribers appeared or vanished (`subscribed` says which
    /// now has one); returns those whose interest must be declared.
    pub(crate) fn note(
        &self,
        flips: Vec<ChannelId>,
        subscribed: impl Fn(&ChannelId) -> bool,
    ) -> Vec<ChannelId> {
        if !self.routed || flips.is_empty() {
            return Vec::new();
        }
        let now = Instant::now();
        let mut wants = lock(&self.wants);
        let mut declare = Vec::new();
        for channel in flips {
            if subscribed(&channel) {
                let want = wants.entry(channel.clone()).or_insert(Want {
                    declared: false,
                    idle_since: None,
                });
                want.idle_since = None;
                if !want.declared && !declare.contains(&channel) {
                    declare.push(channel);
                }
            } else if let Some(want) = wants.get_mut(&channel) {
                want.idle_since.get_or_insert(now);
            }
        }
        declare
    }

    /// Declares the interest in `channels` that is still wanted and not yet declared, and
    /// returns once the cluster confirmed it; at the first error (logged) the rest is left to
    /// the keeper, so that an unreachable backend delays a subscription by one attempt only.
    pub(crate) async fn declare(&self, cluster: &dyn DynCluster, channels: &[ChannelId]) -> CoreResult<()> {
        if channels.is_empty() {
            return Ok(());
        }
        let _serial = self.serial.lock().await;
        for channel in channels {
            let wanted = lock(&self.wants)
                .get(channel)
                .is_some_and(|w| !w.declared && w.idle_since.is_none());
            if !wanted {
                continue;
            }
            match cluster.interest(&Topic::channel(channel), true).await {
                Ok(()) => {
                    if let Some(w) = lock(&self.wants).get_mut(channel) {
                        w.declared = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(%channel, error = %e, "interest not declared: retried later");
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The keeper's round: declares what is wanted and undeclared (a task handler's
    /// subscriptions, failed declarations), withdraws what lingered idle long enough.
    pub(crate) async fn reconcile(&self, cluster: &dyn DynCluster) {
        let now = Instant::now();
        let (declare, withdraw) = {
            let mut wants = lock(&self.wants);
            // Never declared and idle: nothing to withdraw.
            wants.retain(|_, w| w.declared || w.idle_since.is_none());
            let declare: Vec<ChannelId> = wants
                .iter()
                .filter(|(_, w)| !w.declared && w.idle_since.is_none())
                .map(|(c, _)| c.clone())
                .collect();
            let withdraw: Vec<ChannelId> = if self.withdraws {
                wants
                    .iter()
                    .filter(|(_, w)| w.idle_since.is_some_and(|t| now.duration_since(t) >= self.linger))
                    .map(|(c, _)| c.clone())
                    .collect()
            } else {
                Vec::new()
            };
            (declare, withdraw)
        };
        let _ = self.declare(cluster, &declare).await;
        if withdraw.is_empty() {
            return;
        }
        let _serial = self.serial.lock().await;
        for channel in withdraw {
            {
                let mut wants = lock(&self.wants);
                match wants.get_mut(&channel) {
                    // Still idle: no longer declared from here on, so that a new subscriber
                    // declares it again (after this withdrawal, which holds `serial`).
                    Some(w) if w.idle_since.is_some() => w.declared = false,
                    _ => continue,
                }
            }
            match cluster.interest(&Topic::channel(&channel), false).await {
                Ok(()) => {
                    let mut wants = lock(&self.wants);
                    if wants.get(&channel).is_some_and(|w| w.idle_since.is_some()) {
                        wants.remove(&channel);
                    }
                    tracing::debug!(%channel, "interest withdrawn");
                }
                Err(e) => {
                    // Traffic may go on arriving; it is ignored. Tried again next round.
                    tracing::debug!(%channel, error = %e, "interest not withdrawn");
                    if let Some(w) = lock(&self.wants).get_mut(&channel) {
                        w.declared = true;
                    }
                }
            }
        }
    }

    /// How often the keeper runs at the latest.
    pub(crate) fn period(&self) -> Duration {
        (self.linger / 2).clamp(Duration::from_millis(50), Duration::from_secs(5))
    }

    /// `member` was just asked to subscribe connections to `channels`.
    pub(crate) fn asked(&self, channels: &[ChannelId], members: &[MemberId]) {
        if !self.routed || members.is_empty() {
            return;
        }
        let now = Instant::now();
        let until = now + GRACE;
        let mut asked = lock(&self.asked);
        if asked.channels.len() + channels.len() > MAX_ASKED {
            asked
                .channels
                .retain(|_, ms| ms.iter().any(|(_, until)| *until > now));
            if asked.channels.len() + channels.len() > MAX_ASKED {
                tracing::warn!(
                    "too many channels asked to subscribe at once: every channel's messages copied to every member for a while"
                );
                asked.channels.clear();
                asked.everything_until = Some(until);
                return;
            }
        }
        for channel in channels {
            let ms = asked.channels.entry(channel.clone()).or_default();
            ms.retain(|(m, t)| *t > now && !members.contains(m));
            ms.extend(members.iter().map(|m| (m.clone(), until)));
        }
    }

    /// The members a message to `channel` is also sent to directly (asked recently); `others`
    /// are every other member.
    pub(crate) fn copies(
        &self,
        channel: &ChannelId,
        others: impl FnOnce() -> Vec<MemberId>,
    ) -> Vec<MemberId> {
        if !self.routed {
            return Vec::new();
        }
        let now = Instant::now();
        let mut asked = lock(&self.asked);
        if asked.everything_until.is_some_and(|t| t > now) {
            return others();
        }
        let Some(ms) = asked.channels.get_mut(channel) else {
            return Vec::new();
        };
        ms.retain(|(_, t)| *t > now);
        if ms.is_empty() {
            asked.channels.remove(channel);
            return Vec::new();
        }
        ms.iter().map(|(m, _)| m.clone()).collect()
    }

    /// Whether the message `id` from `from`, sent with a copy, arrives for the first time.
    pub(crate) fn first_time(&self, from: &MemberId, id: u64) -> bool {
        let mut seen = lock(&self.seen);
        let s = seen.entry(from.clone()).or_default();
        if !s.ids.insert(id) {
            return false;
        }
        s.order.push_back(id);
        if s.order.len() > SEEN_PER_SENDER
            && let Some(old) = s.order.pop_front()
        {
            s.ids.remove(&old);
        }
        true
    }

    /// The channels of declared interest (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn declared(&self) -> Vec<ChannelId> {
        let mut v: Vec<ChannelId> = lock(&self.wants)
            .iter()
            .filter(|(_, w)| w.declared)
            .map(|(c, _)| c.clone())
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_last_the_grace_and_second_arrivals_are_dropped() {
        let i = Interests::new(true, true, Duration::from_secs(1));
        let room = ChannelId::from("room");
        assert!(i.copies(&room, Vec::new).is_empty());
        i.asked(std::slice::from_ref(&room), &["beta".into()]);
        i.asked(std::slice::from_ref(&room), &["beta".into(), "gamma".into()]);
        let mut c = i.copies(&room, Vec::new);
        c.sort();
        assert_eq!(c, vec![MemberId::from("beta"), MemberId::from("gamma")]);
        assert!(i.copies(&"hall".into(), Vec::new).is_empty());
        let from = MemberId::from("beta");
        assert!(i.first_time(&from, 7));
        assert!(!i.first_time(&from, 7));
        assert!(i.first_time(&"gamma".into(), 7));
        for n in 0..SEEN_PER_SENDER as u64 + 1 {
            i.first_time(&from, 1000 + n);
        }
        assert!(i.first_time(&from, 7), "the oldest ids are forgotten");
    }

    #[test]
    fn a_channel_is_declared_once_and_idle_only_without_subscribers() {
        let i = Interests::new(true, true, Duration::from_secs(1));
        let room = ChannelId::from("room");
        assert_eq!(i.note(vec![room.clone()], |_| true), vec![room.clone()]);
        i.note(vec![room.clone()], |_| false);
        assert!(lock(&i.wants)[&room].idle_since.is_some());
        assert_eq!(i.note(vec![room.clone()], |_| true), vec![room.clone()]);
        assert!(lock(&i.wants)[&room].idle_since.is_none());
        assert!(i.declared().is_empty());
        let off = Interests::new(false, true, Duration::from_secs(1));
        assert!(off.note(vec![room], |_| true).is_empty());
    }

    /// A cluster recording the interest calls it is given.
    struct Recording(thywill_core::LocalCluster, Mutex<Vec<(String, bool)>>);

    use thywill_core::Cluster;

    impl Cluster for Recording {
        fn local_member(&self) -> &MemberId {
            Cluster::local_member(&self.0)
        }
        fn members(&self) -> Vec<MemberId> {
            Cluster::members(&self.0)
        }
        fn status(&self, member: &MemberId) -> thywill_core::MemberStatus {
            Cluster::status(&self.0, member)
        }
        async fn start(&self, events: std::sync::Arc<dyn thywill_core::ClusterEvents>) -> CoreResult<()> {
            Cluster::start(&self.0, events).await
        }
        async fn send_to(&self, member: &MemberId, task: thywill_core::ClusterTask) -> CoreResult<()> {
            Cluster::send_to(&self.0, member, task).await
        }
        async fn send_to_others(&self, task: thywill_core::ClusterTask) -> CoreResult<()> {
            Cluster::send_to_others(&self.0, task).await
        }
        async fn interest(&self, topic: &Topic, on: bool) -> CoreResult<()> {
            lock(&self.1).push((topic.to_string(), on));
            Ok(())
        }
    }

    #[tokio::test]
    async fn interest_is_withdrawn_after_the_linger_and_kept_by_a_returning_subscriber() -> CoreResult<()> {
        let cluster = Recording(thywill_core::LocalCluster::new("alpha"), Mutex::new(Vec::new()));
        let calls = || lock(&cluster.1).clone();
        let linger = Duration::from_millis(100);
        let i = Interests::new(true, true, linger);
        let room = ChannelId::from("room");
        let declare = i.note(vec![room.clone()], |_| true);
        i.declare(&cluster, &declare).await?;
        assert_eq!(calls(), vec![("c:room".to_owned(), true)]);
        assert_eq!(i.declared(), vec![room.clone()]);

        // Left and back within the linger: nothing to do.
        i.note(vec![room.clone()], |_| false);
        assert!(i.note(vec![room.clone()], |_| true).is_empty());
        i.note(vec![room.clone()], |_| false);
        i.reconcile(&cluster).await;
        assert_eq!(calls().len(), 1, "not withdrawn before the linger");

        tokio::time::sleep(linger).await;
        i.reconcile(&cluster).await;
        assert_eq!(calls()[1], ("c:room".to_owned(), false));
        assert!(i.declared().is_empty());

        // A member whose history is its own never withdraws.
        let keeps = Interests::new(true, false, Duration::ZERO);
        let declare = keeps.note(vec![room.clone()], |_| true);
        keeps.declare(&cluster, &declare).await?;
        keeps.note(vec![room.clone()], |_| false);
        keeps.reconcile(&cluster).await;
        assert_eq!(keeps.declared(), vec![room]);
        assert_eq!(calls().len(), 3);
        Ok(())
    }
}
