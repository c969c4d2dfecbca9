//! The [`Cluster`] trait: members of one cluster sending typed tasks to each other.
//!
//! A backend (single-member, Redis, HTTP, or your own) implements [`Cluster`] with plain
//! `async fn`s (the node holds it as its object-safe twin [`DynCluster`]); the node
//! registers a [`ClusterEvents`] handler that receives tasks and member up/down events.
//! Tasks are serde types named by [`Task::NAME`] and carried as bincode bytes
//! ([`ClusterTask`]), so backends move opaque bytes and never see application types.

use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{BoxFuture, CoreError, CoreResult, MemberId};

/// Status of a member as seen from the local member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// Heard from recently.
    Up,
    /// Not heard from within the timeout.
    Down,
    /// Not heard from since start: no event is emitted for the transition out of this state
    /// to `Down` (a member missing at start was never up).
    Unknown,
}

/// A typed cluster task: a serde type with a stable name.
pub trait Task: Serialize + DeserializeOwned + Send + 'static {
    /// The task's name on the wire, such as `thywill.deliver`.
    const NAME: &'static str;

    /// Encodes the task for [`Cluster::send_to`] and friends.
    fn to_task(&self) -> CoreResult<ClusterTask> {
        ClusterTask::encode(Self::NAME, self)
    }
}

/// A named task with its bincode-encoded payload: what backends carry between members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterTask {
    /// The task's name ([`Task::NAME`]).
    pub name: String,
    /// The bincode-encoded payload.
    pub payload: Vec<u8>,
}

fn codec() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// The one binary codec of member-to-member traffic (bincode, standard configuration), for
/// backends that put their own envelopes around [`ClusterTask`]s. Swap it here, and every
/// backend follows.
pub mod codec {
    use serde::{Serialize, de::DeserializeOwned};

    use crate::{CoreError, CoreResult};

    /// Encodes a value.
    pub fn encode<T: Serialize>(value: &T) -> CoreResult<Vec<u8>> {
        bincode::serde::encode_to_vec(value, super::codec()).map_err(|e| CoreError::Codec(e.to_string()))
    }

    /// Decodes a value written by [`encode`]; trailing bytes are ignored.
    pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> CoreResult<T> {
        bincode::serde::decode_from_slice(bytes, super::codec())
            .map(|(v, _)| v)
            .map_err(|e| CoreError::Codec(e.to_string()))
    }
}

impl ClusterTask {
    /// Encodes a value under a task name.
    pub fn encode<T: Serialize>(name: &str, value: &T) -> CoreResult<Self> {
        let payload =
            bincode::serde::encode_to_vec(value, codec()).map_err(|e| CoreError::Codec(e.to_string()))?;
        Ok(Self {
            name: name.to_owned(),
            payload,
        })
    }

    /// Decodes the payload as `T` if the name is `T::NAME`; `None` if it is another task.
    pub fn decode<T: Task>(&self) -> Option<CoreResult<T>> {
        if self.name != T::NAME {
            return None;
        }
        Some(
            bincode::serde::decode_from_slice(&self.payload, codec())
                .map(|(v, _)| v)
                .map_err(|e| CoreError::Codec(e.to_string())),
        )
    }

    /// Encodes the whole task (name and payload) to bytes for a backend's wire.
    pub fn to_bytes(&self) -> CoreResult<Vec<u8>> {
        codec::encode(self)
    }

    /// Decodes a task written by [`ClusterTask::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> CoreResult<Self> {
        codec::decode(bytes)
    }
}

/// Something a member can be interested in: the traffic of one channel.
///
/// The node declares its interest in a topic ([`Cluster::interest`]) while one of its
/// connections is subscribed to the channel, and sends the channel's messages to the
/// interested members only ([`Cluster::send_to_interested`]). A backend treats a topic as an
/// opaque name, safe to embed in a broker's channel or subject name: `c:` and the channel id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Topic(String);

impl Topic {
    /// The topic of a channel's messages.
    pub fn channel(channel: &crate::ChannelId) -> Self {
        Self(format!("c:{channel}"))
    }

    /// The topic's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Counters a backend keeps about its link (all zero by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Times the backend's connection was re-established (for example to Redis).
    pub reconnects: u64,
    /// Member-to-member messages detected as lost (sequence gaps).
    pub gaps: u64,
    /// Tasks sent.
    pub sent: u64,
    /// Tasks received from other members (whatever their path: addressed to this member,
    /// broadcast, or sent to a topic it is interested in): what a member pays for the cluster's
    /// traffic, the figure interest routing keeps low.
    pub received: u64,
    /// Bytes of the tasks counted in `received` (names and payloads).
    pub received_bytes: u64,
    /// Topics this member is interested in now ([`Cluster::interest`]).
    pub topics: u64,
}

impl ClusterStats {
    /// Stats with these counters.
    pub fn new(reconnects: u64, gaps: u64, sent: u64, received: u64) -> Self {
        Self {
            reconnects,
            gaps,
            sent,
            received,
            received_bytes: 0,
            topics: 0,
        }
    }

    /// The same counters, with the bytes received.
    pub fn with_received_bytes(mut self, bytes: u64) -> Self {
        self.received_bytes = bytes;
        self
    }

    /// The same counters, with the number of topics of interest.
    pub fn with_topics(mut self, topics: u64) -> Self {
        self.topics = topics;
        self
    }
}

/// Receives what a [`Cluster`] backend observes. Registered by the node at start.
pub trait ClusterEvents: Send + Sync + 'static {
    /// A task arrived from `from` (which may be the local member, for `send_to_all`).
    fn task(&self, from: MemberId, task: ClusterTask);
    /// `member` came up (or back up).
    fn member_up(&self, member: MemberId);
    /// `member` went down. `designated` is whether the local member is its designated handler.
    fn member_down(&self, member: MemberId, designated: bool);
    /// The backend detected lost member-to-member traffic (a gap in sequence numbers).
    fn gap(&self, from: MemberId, missing: u64) {
        let _ = (from, missing);
    }
}

/// A cluster of members (processes) that route tasks to one another: what a cluster backend
/// implements. The node stores it as [`DynCluster`]; write plain `async fn`s:
///
/// ```
/// use std::sync::Arc;
/// use thywill_core::{Cluster, ClusterEvents, ClusterTask, CoreError, CoreResult, MemberId, MemberStatus};
///
/// /// A cluster of one member that drops every task (a real backend carries them).
/// struct Alone(MemberId);
///
/// impl Cluster for Alone {
///     fn local_member(&self) -> &MemberId {
///         &self.0
///     }
///     fn members(&self) -> Vec<MemberId> {
///         vec![self.0.clone()]
///     }
///     fn status(&self, member: &MemberId) -> MemberStatus {
///         if *member == self.0 { MemberStatus::Up } else { MemberStatus::Unknown }
///     }
///     async fn start(&self, _events: Arc<dyn ClusterEvents>) -> CoreResult<()> {
///         Ok(())
///     }
///     async fn send_to(&self, member: &MemberId, _task: ClusterTask) -> CoreResult<()> {
///         if *member == self.0 { Ok(()) } else { Err(CoreError::NotFound(format!("member {member}"))) }
///     }
///     async fn send_to_others(&self, _task: ClusterTask) -> CoreResult<()> {
///         Ok(())
///     }
///     // send_to_all, stop, is_healthy, stats, designated_handler, interest and
///     // send_to_interested (a broadcast) have defaults.
/// }
///
/// let cluster: Arc<dyn thywill_core::DynCluster> = Arc::new(Alone("alpha".into()));
/// assert_eq!(cluster.members().len(), 1);
/// ```
pub trait Cluster: Send + Sync + 'static {
    /// The local member's id.
    fn local_member(&self) -> &MemberId;

    /// Every configured member, the local one included, in ring order.
    fn members(&self) -> Vec<MemberId>;

    /// The status of a member as seen from here. The local member is always `Up`.
    fn status(&self, member: &MemberId) -> MemberStatus;

    /// Starts the backend (connections, heartbeats) and registers the event handler.
    fn start(&self, events: Arc<dyn ClusterEvents>) -> impl Future<Output = CoreResult<()>> + Send;

    /// Stops heartbeats and closes connections. The default does nothing.
    fn stop(&self) -> impl Future<Output = CoreResult<()>> + Send {
        async { Ok(()) }
    }

    /// Sends a task to one member (the local member included).
    ///
    /// **Order.** Tasks from one member reach another in the order their sends ran. A send runs
    /// when its future is first polled, not when the method is called (the node awaits each
    /// send before it makes the next, so its order of calls is its order of sends): a backend
    /// may queue the task on the first poll and return, as the Redis and HTTP backends do, or
    /// deliver it before returning; it must not let a later send overtake an earlier one. A
    /// future dropped before its first poll sends nothing. The same holds for
    /// [`send_to_others`](Cluster::send_to_others) and [`send_to_all`](Cluster::send_to_all),
    /// across all three.
    fn send_to(&self, member: &MemberId, task: ClusterTask) -> impl Future<Output = CoreResult<()>> + Send;

    /// Sends a task to every member but the local one.
    fn send_to_others(&self, task: ClusterTask) -> impl Future<Output = CoreResult<()>> + Send;

    /// Sends a task to every member, the local one included. The default sends it to the local
    /// member ([`send_to`](Cluster::send_to)) and to the others
    /// ([`send_to_others`](Cluster::send_to_others)), both even if one fails (the first error is
    /// returned); a backend with a cheaper way overrides it.
    fn send_to_all(&self, task: ClusterTask) -> impl Future<Output = CoreResult<()>> + Send {
        async move {
            let local = self.send_to(self.local_member(), task.clone()).await;
            let others = self.send_to_others(task).await;
            local.and(others)
        }
    }

    /// Declares (`on`) or withdraws the local member's interest in `topic`. The node declares
    /// it when the first local connection subscribes to a channel, withdraws it some time
    /// after the last one left, and never calls it for one topic concurrently.
    ///
    /// **Contract.** When `interest(topic, true)` has returned `Ok`, every task that any
    /// member sends to `topic` ([`send_to_interested`](Cluster::send_to_interested)) from then
    /// on reaches this member, or its loss is reported ([`ClusterEvents::gap`]) as for any
    /// other task: a send that *happens after* the return (the sender heard of it, directly or
    /// not) is covered; a send racing with the call may or may not arrive (the node closes that
    /// window itself, see `ARCHITECTURE.md`, "Interest routing"). After `interest(topic,
    /// false)` the member may go on receiving the topic's tasks for a while; it ignores them.
    /// Declaring twice is the same as once. An `Err` leaves the interest undecided: the node
    /// tries again.
    ///
    /// The default does nothing, and [`send_to_interested`](Cluster::send_to_interested)'s
    /// default sends to every other member: a backend that does not route by interest
    /// broadcasts, as before.
    fn interest(&self, topic: &Topic, on: bool) -> impl Future<Output = CoreResult<()>> + Send {
        let _ = (topic, on);
        async { Ok(()) }
    }

    /// Sends a task to every other member interested in `topic` (see
    /// [`interest`](Cluster::interest)); members that are not may receive it too. The local
    /// member never receives it (the node delivers locally itself).
    ///
    /// **Order.** Tasks a member sends to one topic reach each receiver in the order sent. Their
    /// order relative to the sender's other sends (to members, to others, to other topics) is
    /// kept by the provided backends over one link (Redis pub/sub on one server, HTTP) but is
    /// not promised: a backend may carry topics on other paths (sharded pub/sub on a Redis
    /// Cluster). The default sends to every other member
    /// ([`send_to_others`](Cluster::send_to_others)).
    fn send_to_interested(
        &self,
        topic: &Topic,
        task: ClusterTask,
    ) -> impl Future<Output = CoreResult<()>> + Send {
        let _ = topic;
        self.send_to_others(task)
    }

    /// Whether the cluster link works (false while, say, Redis is unreachable).
    fn is_healthy(&self) -> bool {
        true
    }

    /// Counters of the backend, for metrics and health pages.
    fn stats(&self) -> ClusterStats {
        ClusterStats::default()
    }

    /// The member that handles the failure of `failed`: the next member that is up, in ring
    /// order after `failed`. `None` if no other member is up.
    fn designated_handler(&self, failed: &MemberId) -> Option<MemberId> {
        designated_handler(&self.members(), failed, |m| self.status(m) == MemberStatus::Up)
    }
}

/// Object-safe form of [`Cluster`], implemented for every `Cluster`.
///
/// The node (and [`BackendParts`](crate::BackendParts)) stores the cluster as
/// `Arc<dyn DynCluster>`; backends implement [`Cluster`], never this.
pub trait DynCluster: Send + Sync + 'static {
    /// See [`Cluster::local_member`].
    fn local_member(&self) -> &MemberId;
    /// See [`Cluster::members`].
    fn members(&self) -> Vec<MemberId>;
    /// See [`Cluster::status`].
    fn status(&self, member: &MemberId) -> MemberStatus;
    /// See [`Cluster::start`].
    fn start(&self, events: Arc<dyn ClusterEvents>) -> BoxFuture<'_, CoreResult<()>>;
    /// See [`Cluster::stop`].
    fn stop(&self) -> BoxFuture<'_, CoreResult<()>>;
    /// See [`Cluster::send_to`].
    fn send_to<'a>(&'a self, member: &'a MemberId, task: ClusterTask) -> BoxFuture<'a, CoreResult<()>>;
    /// See [`Cluster::send_to_others`].
    fn send_to_others(&self, task: ClusterTask) -> BoxFuture<'_, CoreResult<()>>;
    /// See [`Cluster::send_to_all`].
    fn send_to_all(&self, task: ClusterTask) -> BoxFuture<'_, CoreResult<()>>;
    /// See [`Cluster::interest`].
    fn interest<'a>(&'a self, topic: &'a Topic, on: bool) -> BoxFuture<'a, CoreResult<()>>;
    /// See [`Cluster::send_to_interested`].
    fn send_to_interested<'a>(&'a self, topic: &'a Topic, task: ClusterTask)
    -> BoxFuture<'a, CoreResult<()>>;
    /// See [`Cluster::is_healthy`].
    fn is_healthy(&self) -> bool;
    /// See [`Cluster::stats`].
    fn stats(&self) -> ClusterStats;
    /// See [`Cluster::designated_handler`].
    fn designated_handler(&self, failed: &MemberId) -> Option<MemberId>;
}

impl<C: Cluster> DynCluster for C {
    fn local_member(&self) -> &MemberId {
        Cluster::local_member(self)
    }
    fn members(&self) -> Vec<MemberId> {
        Cluster::members(self)
    }
    fn status(&self, member: &MemberId) -> MemberStatus {
        Cluster::status(self, member)
    }
    fn start(&self, events: Arc<dyn ClusterEvents>) -> BoxFuture<'_, CoreResult<()>> {
        Box::pin(Cluster::start(self, events))
    }
    fn stop(&self) -> BoxFuture<'_, CoreResult<()>> {
        Box::pin(Cluster::stop(self))
    }
    fn send_to<'a>(&'a self, member: &'a MemberId, task: ClusterTask) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(Cluster::send_to(self, member, task))
    }
    fn send_to_others(&self, task: ClusterTask) -> BoxFuture<'_, CoreResult<()>> {
        Box::pin(Cluster::send_to_others(self, task))
    }
    fn send_to_all(&self, task: ClusterTask) -> BoxFuture<'_, CoreResult<()>> {
        Box::pin(Cluster::send_to_all(self, task))
    }
    fn interest<'a>(&'a self, topic: &'a Topic, on: bool) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(Cluster::interest(self, topic, on))
    }
    fn send_to_interested<'a>(
        &'a self,
        topic: &'a Topic,
        task: ClusterTask,
    ) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(Cluster::send_to_interested(self, topic, task))
    }
    fn is_healthy(&self) -> bool {
        Cluster::is_healthy(self)
    }
    fn stats(&self) -> ClusterStats {
        Cluster::stats(self)
    }
    fn designated_handler(&self, failed: &MemberId) -> Option<MemberId> {
        Cluster::designated_handler(self, failed)
    }
}

/// Ring-order designated handler: the first member after `failed` (wrapping) for which `is_up`.
pub fn designated_handler(
    members: &[MemberId],
    failed: &MemberId,
    is_up: impl Fn(&MemberId) -> bool,
) -> Option<MemberId> {
    let start = members.iter().position(|m| m == failed)?;
    (1..members.len())
        .map(|i| &members[(start + i) % members.len()])
        .find(|m| *m != failed && is_up(m))
        .cloned()
}

/// Whether `local` is the designated handler of `failed`: [`designated_handler`] with `local`
/// counted up whatever `is_up` says of it (a member is up to itself).
pub fn local_is_designated(
    members: &[MemberId],
    local: &MemberId,
    failed: &MemberId,
    is_up: impl Fn(&MemberId) -> bool,
) -> bool {
    designated_handler(members, failed, |m| m == local || is_up(m)).as_ref() == Some(local)
}

/// The sequence stamp one member-to-member message carries for one receiver.
///
/// Backends number the traffic of every (sender, receiver) pair so that a receiver can tell a
/// gap (lost messages) from normal order, see [`Outbound`] and [`Inbound`]. A stamp is only
/// meaningful under the receiver incarnation (`receiver_epoch`) the sender knew of when it sent;
/// `receiver_epoch == 0` means the sender did not know the receiver yet (untracked).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// The epoch of the receiver (a random number each member draws when it starts).
    pub receiver_epoch: u64,
    /// The sequence number, from 1, per sender incarnation and receiver incarnation.
    pub seq: u64,
}

/// A random, non-zero epoch that identifies one incarnation (process start) of a member.
pub fn new_epoch(random: u64) -> u64 {
    random.max(1)
}

/// Sender side of per-receiver sequence numbers.
///
/// The backend tells it each receiver's epoch as soon as it learns it (from a heartbeat or an
/// up-check); numbering restarts at 1 whenever a receiver's epoch changes. Pure bookkeeping, no
/// IO: the backend holds it under its own lock together with its outbound queue, so that
/// sequence order is queue order.
#[derive(Debug, Default)]
pub struct Outbound {
    peers: std::collections::HashMap<MemberId, Stamp>,
}

impl Outbound {
    /// Records the current epoch of `member`; a new epoch restarts the numbering.
    pub fn learn_epoch(&mut self, member: &MemberId, epoch: u64) {
        let e = self.peers.entry(member.clone()).or_default();
        if e.receiver_epoch != epoch {
            *e = Stamp {
                receiver_epoch: epoch,
                seq: 0,
            };
        }
    }

    /// The stamp for the next message to `member` (untracked while its epoch is unknown).
    pub fn next(&mut self, member: &MemberId) -> Stamp {
        match self.peers.get_mut(member) {
            Some(e) if e.receiver_epoch != 0 => {
                e.seq += 1;
                *e
            }
            _ => Stamp::default(),
        }
    }

    /// The stamp of the last message numbered for `member`, if any.
    pub fn last(&self, member: &MemberId) -> Option<Stamp> {
        self.peers.get(member).copied().filter(|s| s.receiver_epoch != 0)
    }
}

/// What [`Inbound::arrive`] concluded about one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The next message in sequence.
    InOrder,
    /// In sequence after `missing` messages that never arrived.
    Gap(u64),
    /// At or below the last sequence number seen: a duplicate (a retried request) or a message
    /// already counted as missing.
    Stale,
    /// Not numbered for this receiver incarnation (sent before the sender knew it).
    Untracked,
}

/// Receiver side of per-sender sequence numbers: detects gaps.
#[derive(Debug)]
pub struct Inbound {
    epoch: u64,
    senders: std::collections::HashMap<MemberId, (u64, u64)>,
}

impl Inbound {
    /// Tracks arrivals for the local incarnation `epoch`.
    pub fn new(epoch: u64) -> Self {
        Self {
            epoch,
            senders: std::collections::HashMap::new(),
        }
    }

    /// The local epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn entry(&mut self, from: &MemberId, sender_epoch: u64, stamp: Stamp) -> Option<&mut u64> {
        if stamp.receiver_epoch != self.epoch || stamp.seq == 0 {
            return None;
        }
        let e = self.senders.entry(from.clone()).or_insert((sender_epoch, 0));
        if e.0 != sender_epoch {
            // The sender restarted: its numbering starts again at 1.
            *e = (sender_epoch, 0);
        }
        Some(&mut e.1)
    }

    /// Classifies a message from `from` (incarnation `sender_epoch`) carrying `stamp`.
    pub fn arrive(&mut self, from: &MemberId, sender_epoch: u64, stamp: Stamp) -> Arrival {
        let Some(last) = self.entry(from, sender_epoch, stamp) else {
            return Arrival::Untracked;
        };
        if stamp.seq <= *last {
            return Arrival::Stale;
        }
        let missing = stamp.seq - *last - 1;
        *last = stamp.seq;
        if missing == 0 {
            Arrival::InOrder
        } else {
            Arrival::Gap(missing)
        }
    }

    /// The sender states it had sent up to `stamp.seq` (a heartbeat's watermark): returns how
    /// many of those never arrived and counts them as seen.
    pub fn watermark(&mut self, from: &MemberId, sender_epoch: u64, stamp: Stamp) -> u64 {
        let Some(last) = self.entry(from, sender_epoch, stamp) else {
            return 0;
        };
        if stamp.seq <= *last {
            return 0;
        }
        let missing = stamp.seq - *last;
        *last = stamp.seq;
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Hello {
        n: u32,
        who: String,
    }
    impl Task for Hello {
        const NAME: &'static str = "test.hello";
    }

    #[test]
    fn tasks_round_trip_by_name() -> CoreResult<()> {
        let t = Hello {
            n: 7,
            who: "x".into(),
        }
        .to_task()?;
        let bytes = t.to_bytes()?;
        let back = ClusterTask::from_bytes(&bytes)?;
        assert_eq!(
            back.decode::<Hello>().transpose()?,
            Some(Hello {
                n: 7,
                who: "x".into()
            })
        );
        let other = ClusterTask::encode("other", &1u8)?;
        assert!(other.decode::<Hello>().is_none());
        assert!(ClusterTask::from_bytes(&[0xff, 0xff, 0xff]).is_err());
        Ok(())
    }

    #[test]
    fn designated_handler_is_next_up_in_ring_order() {
        let ms: Vec<MemberId> = ["a", "b", "c", "d"].into_iter().map(MemberId::from).collect();
        let up = |m: &MemberId| m.as_str() != "c";
        assert_eq!(designated_handler(&ms, &"b".into(), up), Some("d".into()));
        assert_eq!(designated_handler(&ms, &"d".into(), up), Some("a".into()));
        assert_eq!(designated_handler(&ms, &"a".into(), |_| false), None);
        assert_eq!(designated_handler(&ms, &"zz".into(), up), None);
    }

    #[test]
    fn the_local_member_counts_itself_up() {
        let ms: Vec<MemberId> = ["a", "b", "c"].into_iter().map(MemberId::from).collect();
        let none_up = |_: &MemberId| false;
        assert!(local_is_designated(&ms, &"c".into(), &"b".into(), none_up));
        assert!(!local_is_designated(&ms, &"a".into(), &"b".into(), |m| m
            .as_str()
            == "c"));
        assert!(!local_is_designated(&ms, &"a".into(), &"zz".into(), none_up));
    }

    #[test]
    fn sequence_numbers_detect_gaps_per_receiver_incarnation() {
        let (a, b): (MemberId, MemberId) = ("a".into(), "b".into());
        let mut out = Outbound::default();
        assert_eq!(
            out.next(&b),
            Stamp::default(),
            "untracked until b's epoch is known"
        );
        out.learn_epoch(&b, 7);
        let s1 = out.next(&b);
        let s2 = out.next(&b);
        let s3 = out.next(&b);
        assert_eq!((s1.seq, s2.seq, s3.seq, s3.receiver_epoch), (1, 2, 3, 7));
        let mut inb = Inbound::new(7);
        assert_eq!(inb.arrive(&a, 1, Stamp::default()), Arrival::Untracked);
        assert_eq!(inb.arrive(&a, 1, s1), Arrival::InOrder);
        assert_eq!(inb.arrive(&a, 1, s3), Arrival::Gap(1));
        assert_eq!(inb.arrive(&a, 1, s2), Arrival::Stale);
        // A watermark above what arrived reports the tail that never came.
        assert_eq!(
            inb.watermark(
                &a,
                1,
                Stamp {
                    receiver_epoch: 7,
                    seq: 5
                }
            ),
            2
        );
        assert_eq!(
            inb.watermark(
                &a,
                1,
                Stamp {
                    receiver_epoch: 7,
                    seq: 5
                }
            ),
            0
        );
        // A restarted sender numbers from 1 again.
        assert_eq!(
            inb.arrive(
                &a,
                2,
                Stamp {
                    receiver_epoch: 7,
                    seq: 1
                }
            ),
            Arrival::InOrder
        );
        // Stamps for another incarnation of the receiver are not judged.
        assert_eq!(
            inb.arrive(
                &a,
                2,
                Stamp {
                    receiver_epoch: 8,
                    seq: 9
                }
            ),
            Arrival::Untracked
        );
        // b restarted: numbering restarts.
        out.learn_epoch(&b, 9);
        assert_eq!(
            out.next(&b),
            Stamp {
                receiver_epoch: 9,
                seq: 1
            }
        );
        assert_eq!(
            out.last(&b),
            Some(Stamp {
                receiver_epoch: 9,
                seq: 1
            })
        );
    }
}
