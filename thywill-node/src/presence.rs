//! Local channel subscriptions and cluster-wide presence, as pure bookkeeping (no IO): the node
//! holds one [`Subs`] under a lock and carries out the [`Effect`]s each change returns, still
//! under that lock, so that every subscriber sees presence changes in the order they happened.
//!
//! **Presence.** For a channel some application tracks, a session is *present* while at least
//! one of its connections is subscribed to the channel on any member. Each member counts its
//! own subscribed connections per session and announces the first and the last
//! ([`PresenceTask::Here`], [`PresenceTask::Gone`]); every member keeps, per channel and
//! session, the set of members where the session is present. A member that goes down is
//! removed from every set at once, and its sessions that vanish leave. When a member comes up
//! (or lost traffic from it is detected) its contribution is asked for and replaced wholesale
//! ([`PresenceTask::Snapshot`]).
//!
//! **Fan-out.** A channel's set of local subscribers holds each connection's outbound queue
//! beside its id, so that a message to the channel is pushed to every subscriber by walking
//! the set ([`Subs::fan_out`]): no id is cloned and no connection is looked up per delivery.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use thywill_core::edge::Outbound;
use thywill_core::{ChannelId, ConnectionId, MemberId, SessionId, Task};

use crate::node::{ConnMap, ConnSet};

/// A local connection's outbound queue (the edge's), as the subscriber sets keep it.
pub(crate) type Out = Arc<dyn Outbound>;

/// Cluster task of presence.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PresenceTask {
    /// The sender now has a connection of `session` subscribed to `channel`.
    Here { channel: String, session: String },
    /// The sender no longer has a connection of `session` subscribed to `channel`.
    Gone { channel: String, session: String },
    /// Every (channel, session) present on the sender: replaces what the receiver knew of it.
    Snapshot { entries: Vec<(String, String)> },
    /// The sender asks for the receiver's snapshot.
    SnapshotRequest,
}

impl Task for PresenceTask {
    const NAME: &'static str = "thywill.presence";
}

/// Something the node must do after a change, in this order.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Announce to the other members.
    Announce(PresenceTask),
    /// Send presence data (`{"presence": ...}`) to local connections, from every application
    /// tracking the channel.
    Notify {
        channel: ChannelId,
        to: Vec<ConnectionId>,
        data: Value,
    },
}

fn join(channel: &ChannelId, session: &SessionId) -> Value {
    json!({"presence": "join", "channel": channel.as_str(), "session": session.as_str()})
}

fn leave(channel: &ChannelId, session: &SessionId) -> Value {
    json!({"presence": "leave", "channel": channel.as_str(), "session": session.as_str()})
}

/// One local connection's subscriptions.
struct ConnSubs {
    session: SessionId,
    channels: HashSet<ChannelId>,
    /// Its outbound queue, copied into the sets of the channels it subscribes to.
    out: Out,
}

/// Local subscriptions (channel → connections, connection → channels, session → connections)
/// and the cluster-wide presence of tracked channels.
pub(crate) struct Subs {
    local: MemberId,
    tracked: Box<dyn Fn(&ChannelId) -> bool + Send + Sync>,
    /// Channel → its local subscribers, each with its outbound queue.
    channels: HashMap<ChannelId, ConnMap<Out>>,
    conns: ConnMap<ConnSubs>,
    sessions: HashMap<SessionId, ConnSet>,
    /// Tracked channel → session → local subscribed connections.
    counts: HashMap<ChannelId, HashMap<SessionId, usize>>,
    /// Tracked channel → session → members where it is present.
    present: HashMap<ChannelId, BTreeMap<SessionId, BTreeSet<MemberId>>>,
    /// Channels that gained their first local subscriber or lost their last since
    /// [`Subs::take_flips`] (the node's interest follows them).
    flips: Vec<ChannelId>,
}

impl std::fmt::Debug for Subs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subs")
            .field("local", &self.local)
            .field("channels", &self.channels.len())
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl Subs {
    /// Empty state for member `local`; `tracked` says which channels have presence.
    pub(crate) fn new(local: MemberId, tracked: impl Fn(&ChannelId) -> bool + Send + Sync + 'static) -> Self {
        Self {
            local,
            tracked: Box::new(tracked),
            channels: HashMap::new(),
            conns: ConnMap::default(),
            sessions: HashMap::new(),
            counts: HashMap::new(),
            present: HashMap::new(),
            flips: Vec::new(),
        }
    }

    /// Whether a channel has a local subscriber.
    pub(crate) fn has_subscribers(&self, channel: &ChannelId) -> bool {
        self.channels.contains_key(channel)
    }

    /// The channels that gained their first local subscriber or lost their last since the
    /// last call (a channel may appear more than once: ask [`Subs::has_subscribers`]).
    pub(crate) fn take_flips(&mut self) -> Vec<ChannelId> {
        std::mem::take(&mut self.flips)
    }

    /// Records a local connection of `session`, with its outbound queue.
    pub(crate) fn register(&mut self, conn: &ConnectionId, session: &SessionId, out: Out) {
        self.conns.entry(conn.clone()).or_insert_with(|| ConnSubs {
            session: session.clone(),
            channels: HashSet::new(),
            out,
        });
        self.sessions
            .entry(session.clone())
            .or_default()
            .insert(conn.clone());
    }

    /// Every local connection with its session and the channels it is subscribed to.
    pub(crate) fn all_connections(&self) -> Vec<(ConnectionId, SessionId, Vec<ChannelId>)> {
        self.conns
            .iter()
            .map(|(c, s)| (c.clone(), s.session.clone(), s.channels.iter().cloned().collect()))
            .collect()
    }

    /// The local connections of a session.
    pub(crate) fn connections_of(&self, session: &SessionId) -> Vec<ConnectionId> {
        self.sessions
            .get(session)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether a local connection is subscribed to a channel.
    pub(crate) fn is_subscribed(&self, conn: &ConnectionId, channel: &ChannelId) -> bool {
        self.channels.get(channel).is_some_and(|s| s.contains_key(conn))
    }

    /// The local subscribers of a channel, but `exclude`.
    pub(crate) fn subscribers(&self, channel: &ChannelId, exclude: &[ConnectionId]) -> Vec<ConnectionId> {
        self.channels
            .get(channel)
            .map(|s| s.keys().filter(|c| !exclude.contains(c)).cloned().collect())
            .unwrap_or_default()
    }

    /// The outbound queue of a local connection (registered, not yet forgotten).
    pub(crate) fn out(&self, conn: &ConnectionId) -> Option<&dyn Outbound> {
        self.conns.get(conn).map(|c| c.out.as_ref())
    }

    /// Pushes to every local subscriber of `channel`: `push` for each one not in `exclude`
    /// (no id cloned, no connection looked up: the set holds the queues), after `skip` for
    /// each one in it (once, however often it is named). Returns how many `push` calls
    /// returned true (frames queued).
    ///
    /// Called under the node's lock of the subscriptions: a push never waits (a full queue
    /// refuses the frame and closes its connection), so the lock is held for one pass over
    /// the set.
    pub(crate) fn fan_out(
        &self,
        channel: &ChannelId,
        exclude: &[ConnectionId],
        mut push: impl FnMut(&dyn Outbound) -> bool,
        mut skip: impl FnMut(&dyn Outbound),
    ) -> usize {
        let Some(set) = self.channels.get(channel) else {
            return 0;
        };
        // The excluded subscribers, by the address of their entry in the set: one lookup per
        // excluded id, then a pointer compare per subscriber rather than an id compare.
        let mut excluded: Vec<*const ConnectionId> = Vec::new();
        for conn in exclude {
            if let Some((key, out)) = set.get_key_value(conn) {
                let key = std::ptr::from_ref(key);
                if !excluded.contains(&key) {
                    excluded.push(key);
                    skip(out.as_ref());
                }
            }
        }
        if excluded.is_empty() {
            return set.values().filter(|out| push(out.as_ref())).count();
        }
        set.iter()
            .filter(|(key, out)| !excluded.contains(&std::ptr::from_ref(*key)) && push(out.as_ref()))
            .count()
    }

    /// The sessions present in a tracked channel, cluster-wide.
    pub(crate) fn present(&self, channel: &ChannelId) -> Vec<SessionId> {
        self.present
            .get(channel)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every (channel, session) present on the local member.
    pub(crate) fn local_snapshot(&self) -> Vec<(String, String)> {
        self.counts
            .iter()
            .flat_map(|(ch, m)| m.keys().map(move |s| (ch.to_string(), s.to_string())))
            .collect()
    }

    /// Adds `member` to the holders of `session` in `channel`; a join if it was absent.
    fn add_holder(
        &mut self,
        channel: &ChannelId,
        session: &SessionId,
        member: &MemberId,
        fx: &mut Vec<Effect>,
    ) {
        let holders = self
            .present
            .entry(channel.clone())
            .or_default()
            .entry(session.clone())
            .or_default();
        let was_absent = holders.is_empty();
        holders.insert(member.clone());
        if was_absent {
            fx.push(Effect::Notify {
                channel: channel.clone(),
                to: self.subscribers(channel, &[]),
                data: join(channel, session),
            });
        }
    }

    /// Removes `member` from the holders of `session` in `channel`; a leave if none is left.
    fn remove_holder(
        &mut self,
        channel: &ChannelId,
        session: &SessionId,
        member: &MemberId,
        fx: &mut Vec<Effect>,
    ) {
        let Some(sessions) = self.present.get_mut(channel) else {
            return;
        };
        let Some(holders) = sessions.get_mut(session) else {
            return;
        };
        if !holders.remove(member) || !holders.is_empty() {
            return;
        }
        sessions.remove(session);
        if sessions.is_empty() {
            self.present.remove(channel);
        }
        fx.push(Effect::Notify {
            channel: channel.clone(),
            to: self.subscribers(channel, &[]),
            data: leave(channel, session),
        });
    }

    /// Subscribes (or unsubscribes) local connections to channels; unknown connections are
    /// skipped. Returns the effects.
    pub(crate) fn subscribe(
        &mut self,
        subscribe: bool,
        conns: &[ConnectionId],
        channels: &[ChannelId],
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        for conn in conns {
            for ch in channels {
                if subscribe {
                    self.add(conn, ch, &mut fx);
                } else {
                    self.remove(conn, ch, &mut fx);
                }
            }
        }
        fx
    }

    fn add(&mut self, conn: &ConnectionId, channel: &ChannelId, fx: &mut Vec<Effect>) {
        let Some(cs) = self.conns.get_mut(conn) else {
            return;
        };
        if !cs.channels.insert(channel.clone()) {
            return;
        }
        let session = cs.session.clone();
        let out = cs.out.clone();
        let subscribers = self.channels.entry(channel.clone()).or_default();
        if subscribers.is_empty() {
            self.flips.push(channel.clone());
        }
        subscribers.insert(conn.clone(), out);
        if !(self.tracked)(channel) {
            return;
        }
        let count = self
            .counts
            .entry(channel.clone())
            .or_default()
            .entry(session.clone())
            .or_default();
        *count += 1;
        if *count == 1 {
            fx.push(Effect::Announce(PresenceTask::Here {
                channel: channel.to_string(),
                session: session.to_string(),
            }));
            let local = self.local.clone();
            // The join goes to the others; the new subscriber gets the whole state below.
            let before = fx.len();
            self.add_holder(channel, &session, &local, fx);
            if let Some(Effect::Notify { to, .. }) = fx.get_mut(before) {
                to.retain(|c| c != conn);
            }
        }
        fx.push(Effect::Notify {
            channel: channel.clone(),
            to: vec![conn.clone()],
            data: json!({"presence": "state", "channel": channel.as_str(), "sessions": self.present(channel)}),
        });
    }

    fn remove(&mut self, conn: &ConnectionId, channel: &ChannelId, fx: &mut Vec<Effect>) {
        let Some(cs) = self.conns.get_mut(conn) else {
            return;
        };
        if !cs.channels.remove(channel) {
            return;
        }
        let session = cs.session.clone();
        if let Some(set) = self.channels.get_mut(channel) {
            set.remove(conn);
            if set.is_empty() {
                self.channels.remove(channel);
                self.flips.push(channel.clone());
            }
        }
        let Some(counts) = self.counts.get_mut(channel) else {
            return;
        };
        let Some(count) = counts.get_mut(&session) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        counts.remove(&session);
        if counts.is_empty() {
            self.counts.remove(channel);
        }
        fx.push(Effect::Announce(PresenceTask::Gone {
            channel: channel.to_string(),
            session: session.to_string(),
        }));
        let local = self.local.clone();
        self.remove_holder(channel, &session, &local, fx);
    }

    /// Forgets a local connection: unsubscribes it from everything.
    pub(crate) fn forget(&mut self, conn: &ConnectionId) -> Vec<Effect> {
        let Some(cs) = self.conns.get(conn) else {
            return Vec::new();
        };
        let channels: Vec<ChannelId> = cs.channels.iter().cloned().collect();
        let session = cs.session.clone();
        let fx = self.subscribe(false, std::slice::from_ref(conn), &channels);
        self.conns.remove(conn);
        if let Some(set) = self.sessions.get_mut(&session) {
            set.remove(conn);
            if set.is_empty() {
                self.sessions.remove(&session);
            }
        }
        fx
    }

    /// Applies a presence task from another member.
    pub(crate) fn remote(&mut self, from: &MemberId, task: PresenceTask) -> Vec<Effect> {
        let mut fx = Vec::new();
        match task {
            PresenceTask::Here { channel, session } => {
                self.add_holder(&channel.into(), &session.into(), from, &mut fx);
            }
            PresenceTask::Gone { channel, session } => {
                self.remove_holder(&channel.into(), &session.into(), from, &mut fx);
            }
            PresenceTask::Snapshot { entries } => {
                let fresh: BTreeSet<(ChannelId, SessionId)> =
                    entries.into_iter().map(|(c, s)| (c.into(), s.into())).collect();
                for (ch, s) in self.held_by(from) {
                    if !fresh.contains(&(ch.clone(), s.clone())) {
                        self.remove_holder(&ch, &s, from, &mut fx);
                    }
                }
                for (ch, s) in &fresh {
                    self.add_holder(ch, s, from, &mut fx);
                }
            }
            PresenceTask::SnapshotRequest => {}
        }
        fx
    }

    fn held_by(&self, member: &MemberId) -> Vec<(ChannelId, SessionId)> {
        self.present
            .iter()
            .flat_map(|(ch, m)| {
                m.iter()
                    .filter(|(_, holders)| holders.contains(member))
                    .map(move |(s, _)| (ch.clone(), s.clone()))
            })
            .collect()
    }

    /// A member went down: it holds nothing any more.
    pub(crate) fn purge(&mut self, member: &MemberId) -> Vec<Effect> {
        let mut fx = Vec::new();
        for (ch, s) in self.held_by(member) {
            self.remove_holder(&ch, &s, member, &mut fx);
        }
        fx
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Mutex, PoisonError};

    use thywill_core::edge::SharedFrame;
    use thywill_core::protocol::ServerFrame;

    use super::*;

    /// An outbound queue that records what it is given; refuses everything once `closed`.
    #[derive(Default)]
    struct Sink {
        closed: AtomicBool,
        msgs: AtomicUsize,
        controls: Mutex<Vec<String>>,
    }

    impl Outbound for Sink {
        fn push(&self, _frame: &Arc<SharedFrame>) -> bool {
            if self.closed.load(Ordering::Relaxed) {
                return false;
            }
            self.msgs.fetch_add(1, Ordering::Relaxed);
            true
        }

        fn push_control(&self, frame: ServerFrame) -> bool {
            self.controls_mut().push(frame.encode());
            !self.closed.load(Ordering::Relaxed)
        }

        fn close(&self, _code: u16) {
            self.closed.store(true, Ordering::Relaxed);
        }
    }

    impl Sink {
        fn controls_mut(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
            self.controls.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    fn sink() -> Out {
        Arc::new(Sink::default())
    }

    fn ids<T: From<&'static str>>(v: &[&'static str]) -> Vec<T> {
        v.iter().map(|s| T::from(*s)).collect()
    }

    fn notified(fx: &[Effect]) -> Vec<(String, Vec<ConnectionId>)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Notify { to, data, .. } => {
                    let mut to = to.clone();
                    to.sort();
                    Some((data["presence"].as_str().unwrap_or_default().to_owned(), to))
                }
                Effect::Announce(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_session_is_present_while_one_of_its_connections_is_subscribed() {
        let mut subs = Subs::new("alpha".into(), |c: &ChannelId| c.as_str() == "room");
        let room = ChannelId::from("room");
        subs.register(&"c1".into(), &"s1".into(), sink());
        subs.register(&"c2".into(), &"s1".into(), sink());
        subs.register(&"c3".into(), &"s2".into(), sink());

        let fx = subs.subscribe(true, &ids(&["c1"]), std::slice::from_ref(&room));
        assert!(matches!(fx[0], Effect::Announce(PresenceTask::Here { .. })));
        assert_eq!(
            notified(&fx),
            vec![("join".into(), vec![]), ("state".into(), ids(&["c1"]))]
        );
        // A second connection of the same session: no announcement, no join.
        let fx = subs.subscribe(true, &ids(&["c2"]), std::slice::from_ref(&room));
        assert_eq!(notified(&fx), vec![("state".into(), ids(&["c2"]))]);
        let fx = subs.subscribe(true, &ids(&["c3"]), std::slice::from_ref(&room));
        assert_eq!(
            notified(&fx),
            vec![
                ("join".into(), ids(&["c1", "c2"])),
                ("state".into(), ids(&["c3"]))
            ]
        );
        assert_eq!(subs.present(&room), ids::<SessionId>(&["s1", "s2"]));

        // Another member holds s3; then it goes down: s3 leaves.
        let fx = subs.remote(
            &"beta".into(),
            PresenceTask::Here {
                channel: "room".into(),
                session: "s3".into(),
            },
        );
        assert_eq!(notified(&fx), vec![("join".into(), ids(&["c1", "c2", "c3"]))]);
        let fx = subs.purge(&"beta".into());
        assert_eq!(notified(&fx), vec![("leave".into(), ids(&["c1", "c2", "c3"]))]);

        // s1 stays while c2 is subscribed, leaves with it.
        assert!(notified(&subs.forget(&"c1".into())).is_empty());
        let fx = subs.forget(&"c2".into());
        assert!(matches!(fx[0], Effect::Announce(PresenceTask::Gone { .. })));
        assert_eq!(notified(&fx), vec![("leave".into(), ids(&["c3"]))]);
        assert_eq!(subs.present(&room), ids::<SessionId>(&["s2"]));
        assert_eq!(subs.local_snapshot(), vec![("room".to_owned(), "s2".to_owned())]);
        assert!(subs.connections_of(&"s1".into()).is_empty());
    }

    #[test]
    fn snapshots_replace_a_members_contribution_and_untracked_channels_have_none() {
        let mut subs = Subs::new("alpha".into(), |c: &ChannelId| c.as_str() != "quiet");
        subs.register(&"c1".into(), &"s1".into(), sink());
        assert!(subs.subscribe(true, &ids(&["c1"]), &ids(&["quiet"])).is_empty());
        assert_eq!(
            subs.subscribers(&"quiet".into(), &[]),
            ids::<ConnectionId>(&["c1"])
        );
        let beta = MemberId::from("beta");
        let snap = |entries: &[(&str, &str)]| PresenceTask::Snapshot {
            entries: entries
                .iter()
                .map(|(c, s)| ((*c).to_owned(), (*s).to_owned()))
                .collect(),
        };
        subs.remote(&beta, snap(&[("room", "a"), ("room", "b")]));
        assert_eq!(subs.present(&"room".into()), ids::<SessionId>(&["a", "b"]));
        subs.remote(&beta, snap(&[("room", "b"), ("hall", "c")]));
        assert_eq!(subs.present(&"room".into()), ids::<SessionId>(&["b"]));
        assert_eq!(subs.present(&"hall".into()), ids::<SessionId>(&["c"]));
        subs.purge(&beta);
        assert!(subs.present(&"room".into()).is_empty() && subs.present(&"hall".into()).is_empty());
    }

    #[test]
    fn a_fan_out_pushes_to_each_subscriber_once_and_skips_the_excluded() {
        let mut subs = Subs::new("alpha".into(), |_: &ChannelId| false);
        let room = ChannelId::from("room");
        let sinks: Vec<Arc<Sink>> = (0..4).map(|_| Arc::new(Sink::default())).collect();
        for (i, s) in sinks.iter().enumerate() {
            subs.register(&format!("c{i}").into(), &"s".into(), s.clone());
        }
        // c3 is registered but not subscribed.
        subs.subscribe(true, &ids(&["c0", "c1", "c2"]), std::slice::from_ref(&room));
        let frame = Arc::new(SharedFrame::new(
            &"app".into(),
            &thywill_core::Message::new(json!(1)),
            None,
        ));
        let fan_out = |subs: &Subs, exclude: &[ConnectionId]| {
            subs.fan_out(
                &room,
                exclude,
                |out| out.push(&frame),
                |out| {
                    out.push_control(ServerFrame::Skip {
                        stream: "c:room".into(),
                        epoch: "e".into(),
                        off: 1,
                    });
                },
            )
        };
        let counts = |sinks: &[Arc<Sink>]| -> Vec<(usize, usize)> {
            sinks
                .iter()
                .map(|s| (s.msgs.load(Ordering::Relaxed), s.controls_mut().len()))
                .collect()
        };

        assert_eq!(fan_out(&subs, &[]), 3);
        assert_eq!(counts(&sinks), vec![(1, 0), (1, 0), (1, 0), (0, 0)]);
        // c1 named twice and c3 (not a subscriber): c1 gets one skip, c3 nothing.
        assert_eq!(fan_out(&subs, &ids(&["c1", "c3", "c1"])), 2);
        assert_eq!(counts(&sinks), vec![(2, 0), (1, 1), (2, 0), (0, 0)]);
        assert!(sinks[1].controls_mut()[0].contains(r#""t":"skip""#));
        // A closing connection refuses the frame: not counted, the others still get theirs.
        sinks[0].close(4008);
        assert_eq!(fan_out(&subs, &[]), 2);
        assert_eq!(counts(&sinks), vec![(2, 0), (2, 1), (3, 0), (0, 0)]);
        // Forgotten or unsubscribed: out of the set.
        subs.forget(&"c0".into());
        subs.subscribe(false, &ids(&["c2"]), std::slice::from_ref(&room));
        assert_eq!(fan_out(&subs, &[]), 1);
        assert_eq!(counts(&sinks), vec![(2, 0), (3, 1), (3, 0), (0, 0)]);
        assert!(subs.out(&"c0".into()).is_none() && subs.out(&"c2".into()).is_some());
        assert_eq!(fan_out(&subs, &ids(&["c1"])), 0);
        assert_eq!(subs.fan_out(&"none".into(), &[], |_| true, |_| {}), 0);
    }
}
