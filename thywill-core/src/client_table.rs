//! [`ClientTable`]: the table a [`ClientTracker`](crate::ClientTracker) keeps, indexed so that
//! its lookups cost the same with a thousand or a million tracked connections.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

use crate::{Client, ConnectionId, MemberClients, MemberId, SessionId};

/// The hasher of the connection index: foldhash, seeded at random per table. A connection id
/// is made by the member that accepted the connection (`<member>-<n>-<64 random bits>`,
/// `Node::new_connection_id`) and reaches other members' tables only through the cluster's
/// own tracker tasks; no client chooses one, so nobody can pick ids that collide (hash
/// flooding), and the lookup on the path of every send to a connection need not pay SipHash.
type ConnectionHasher = foldhash::fast::RandomState;

/// The hasher of the session index: std's keyed SipHash ([`std::hash::RandomState`]). A
/// session id can come from a cookie or from a user's identity (`user:<name>`), chosen by
/// whoever connects: this index keeps the hasher that resists hash flooding.
type SessionHasher = std::hash::RandomState;

/// Who is connected where: each member's connections with their sessions, plus two indexes
/// kept in step with every change — connection → members holding it, and session → its
/// connections — so that [`member_of`](Self::member_of) and
/// [`connections_of_session`](Self::connections_of_session), on the path of every send to a
/// connection or a session, do not scan the table.
///
/// The answers are those of a scan in member order: [`member_of`](Self::member_of) is the
/// first member (by id) holding the connection (a connection id is held by one member, except
/// for the moment it moves to another and the first has not yet reported it gone), and
/// [`connections_of_session`](Self::connections_of_session) lists by member, then connection.
///
/// A member's entry stays (possibly empty) once it has been written, until
/// [`remove_member`](Self::remove_member).
///
/// A lookup touches the index's control bytes and one bucket, which holds the answer inline:
/// the member of a connection (the others holding it, in the moment it moves between members,
/// are kept in a second map), or the (member, connection) pairs of a session with up to two
/// connections (more are kept in a set beside it). The connection index hashes with a fast
/// seeded hash (connection ids are made by the members, never by clients), the session index
/// with std's SipHash (session ids may be chosen by clients). What a lookup still reads beyond
/// that bucket is the key's string, to confirm the match, and for
/// [`connections_of_session`](Self::connections_of_session) the ids it returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTable {
    members: BTreeMap<MemberId, MemberClients>,
    by_connection: ConnectionIndex,
    by_session: HashMap<SessionId, Few<(MemberId, ConnectionId)>, SessionHasher>,
}

impl ClientTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every member's entries.
    pub fn members(&self) -> &BTreeMap<MemberId, MemberClients> {
        &self.members
    }

    /// One member's entries.
    pub fn member(&self, member: &MemberId) -> Option<&MemberClients> {
        self.members.get(member)
    }

    /// How many connections are tracked, over all members.
    pub fn len(&self) -> usize {
        self.members.values().map(|m| m.connections.len()).sum()
    }

    /// Whether no connection is tracked.
    pub fn is_empty(&self) -> bool {
        self.by_connection.first.is_empty()
    }

    /// Records `client` on its member with its user ([`tracked_user`](crate::tracked_user));
    /// returns the session it had there before.
    pub fn insert_client(&mut self, client: &Client) -> Option<SessionId> {
        self.insert_with_user(
            &client.member,
            client.connection.clone(),
            client.session.clone(),
            crate::tracked_user(client).map(str::to_owned),
        )
    }

    /// Records `connection` (of `session`, of `user` if known) on `member`; returns the
    /// session it had there before.
    pub fn insert_with_user(
        &mut self,
        member: &MemberId,
        connection: ConnectionId,
        session: SessionId,
        user: Option<String>,
    ) -> Option<SessionId> {
        let previous = self.insert(member, connection.clone(), session);
        let users = &mut self.members.entry(member.clone()).or_default().users;
        match user {
            Some(u) => users.insert(connection, u),
            None => users.remove(&connection),
        };
        previous
    }

    /// Records `connection` (of `session`) on `member`, without a user; returns the session it
    /// had there before.
    pub fn insert(
        &mut self,
        member: &MemberId,
        connection: ConnectionId,
        session: SessionId,
    ) -> Option<SessionId> {
        let entry = self.members.entry(member.clone()).or_default();
        entry.users.remove(&connection);
        let previous = entry.connections.insert(connection.clone(), session.clone());
        if let Some(old) = &previous {
            if *old == session {
                return previous;
            }
            unlink(&mut self.by_session, old, &(member.clone(), connection.clone()));
        } else {
            self.by_connection.link(connection.clone(), member.clone());
        }
        link(&mut self.by_session, session, (member.clone(), connection));
        previous
    }

    /// Forgets `connection` on `member`; returns its session, if it was there.
    pub fn remove(&mut self, member: &MemberId, connection: &ConnectionId) -> Option<SessionId> {
        let entry = self.members.get_mut(member)?;
        entry.users.remove(connection);
        let session = entry.connections.remove(connection)?;
        self.unindex(member, connection, &session);
        Some(session)
    }

    /// Replaces everything known of `member` with `connections` (a snapshot of its table,
    /// without users); returns what was known before.
    pub fn replace_member(
        &mut self,
        member: &MemberId,
        connections: BTreeMap<ConnectionId, SessionId>,
    ) -> BTreeMap<ConnectionId, SessionId> {
        let fresh = MemberClients {
            connections,
            users: BTreeMap::new(),
        };
        self.replace_member_clients(member, fresh).connections
    }

    /// Replaces everything known of `member` with `clients` (a snapshot of its table, with
    /// users); returns what was known before.
    pub fn replace_member_clients(&mut self, member: &MemberId, mut clients: MemberClients) -> MemberClients {
        // A user only for a connection that is there.
        clients.users.retain(|c, _| clients.connections.contains_key(c));
        let old = std::mem::take(self.members.entry(member.clone()).or_default());
        for (c, s) in &old.connections {
            self.unindex(member, c, s);
        }
        for (c, s) in &clients.connections {
            self.by_connection.link(c.clone(), member.clone());
            link(&mut self.by_session, s.clone(), (member.clone(), c.clone()));
        }
        *self.members.entry(member.clone()).or_default() = clients;
        old
    }

    /// Removes `member` and its entries; returns them.
    pub fn remove_member(&mut self, member: &MemberId) -> Option<MemberClients> {
        let removed = self.members.remove(member)?;
        for (c, s) in &removed.connections {
            self.unindex(member, c, s);
        }
        Some(removed)
    }

    /// The member holding `connection` (the first by id, should two hold it).
    pub fn member_of(&self, connection: &ConnectionId) -> Option<MemberId> {
        self.by_connection.first.get(connection).cloned()
    }

    /// The client holding `connection` (on the member [`member_of`](Self::member_of) names),
    /// with its user ([`MemberClients::client`]).
    pub fn client_of(&self, connection: &ConnectionId) -> Option<Client> {
        let member = self.member_of(connection)?;
        self.members.get(&member)?.client(&member, connection)
    }

    /// Every connection of `session` with the member holding it, by member then connection.
    pub fn connections_of_session(&self, session: &SessionId) -> Vec<(ConnectionId, MemberId)> {
        self.session_connections(session)
            .map(|(c, m)| (c.clone(), m.clone()))
            .collect()
    }

    /// [`connections_of_session`](Self::connections_of_session) without allocating or cloning:
    /// the same pairs, in the same order, borrowed from the table.
    pub fn session_connections(
        &self,
        session: &SessionId,
    ) -> impl Iterator<Item = (&ConnectionId, &MemberId)> + '_ {
        self.by_session
            .get(session)
            .into_iter()
            .flat_map(Few::iter)
            .map(|(m, c)| (c, m))
    }

    /// Whether both indexes say exactly what the table says (a full scan: for tests).
    pub fn is_consistent(&self) -> bool {
        let mut rebuilt = ClientTable::default();
        for (m, mc) in &self.members {
            for (c, s) in &mc.connections {
                rebuilt.by_connection.link(c.clone(), m.clone());
                link(&mut rebuilt.by_session, s.clone(), (m.clone(), c.clone()));
            }
        }
        rebuilt.by_connection == self.by_connection && rebuilt.by_session == self.by_session
    }

    fn unindex(&mut self, member: &MemberId, connection: &ConnectionId, session: &SessionId) {
        self.by_connection.unlink(connection, member);
        unlink(
            &mut self.by_session,
            session,
            &(member.clone(), connection.clone()),
        );
    }
}

/// Connection → the members holding it. The first (smallest id) is kept in `first`, whose
/// bucket is then as small as a plain map's (the connection's id and the member's: 32 bytes);
/// the others, during the moment a connection moves from one member to another, in `others`
/// beside it (never empty, never holding the first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ConnectionIndex {
    first: HashMap<ConnectionId, MemberId, ConnectionHasher>,
    others: HashMap<ConnectionId, BTreeSet<MemberId>, ConnectionHasher>,
}

impl ConnectionIndex {
    fn link(&mut self, connection: ConnectionId, member: MemberId) {
        match self.first.entry(connection) {
            Entry::Vacant(v) => {
                v.insert(member);
            }
            Entry::Occupied(mut o) => {
                if *o.get() == member {
                    return;
                }
                let other = if member < *o.get() {
                    std::mem::replace(o.get_mut(), member)
                } else {
                    member
                };
                self.others.entry(o.key().clone()).or_default().insert(other);
            }
        }
    }

    fn unlink(&mut self, connection: &ConnectionId, member: &MemberId) {
        let Some(first) = self.first.get_mut(connection) else {
            return;
        };
        let others = self.others.get_mut(connection);
        if first == member {
            match others.and_then(|o| o.pop_first().map(|next| (next, o.is_empty()))) {
                Some((next, emptied)) => {
                    *first = next;
                    if emptied {
                        self.others.remove(connection);
                    }
                }
                None => {
                    self.first.remove(connection);
                }
            }
        } else if let Some(o) = others
            && o.remove(member)
            && o.is_empty()
        {
            self.others.remove(connection);
        }
    }
}

/// A small ordered set, never empty: one or two elements inline, in the index's bucket (the
/// usual cases: a session with one or two tabs), a `BTreeSet` from three on. Each size has one form (`One` holds 1, `Two` 2 in order, `Many` at least
/// 3), so two sets with the same elements compare equal.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Few<T: Ord> {
    One(T),
    /// Two distinct elements, the smaller first.
    Two(T, T),
    /// Three or more.
    Many(BTreeSet<T>),
}

impl<T: Ord + Clone> Few<T> {
    fn insert(&mut self, value: T) {
        match self {
            Few::One(one) if *one == value => {}
            Few::One(one) if value < *one => *self = Few::Two(value, one.clone()),
            Few::One(one) => *self = Few::Two(one.clone(), value),
            Few::Two(a, b) if *a == value || *b == value => {}
            Few::Two(a, b) => *self = Few::Many(BTreeSet::from([a.clone(), b.clone(), value])),
            Few::Many(set) => {
                set.insert(value);
            }
        }
    }

    /// Removes `value`; `false` when nothing is left (the caller drops the set).
    fn remove(&mut self, value: &T) -> bool {
        match self {
            Few::One(one) => *one != *value,
            Few::Two(a, b) => {
                if *a == *value {
                    *self = Few::One(b.clone());
                } else if *b == *value {
                    *self = Few::One(a.clone());
                }
                true
            }
            Few::Many(set) => {
                set.remove(value);
                if set.len() == 2
                    && let (Some(a), Some(b)) = (set.pop_first(), set.pop_first())
                {
                    *self = Few::Two(a, b);
                }
                true
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        let (first, second, many) = match self {
            Few::One(one) => (Some(one), None, None),
            Few::Two(a, b) => (Some(a), Some(b), None),
            Few::Many(set) => (None, None, Some(set.iter())),
        };
        first.into_iter().chain(second).chain(many.into_iter().flatten())
    }
}

fn link<K: std::hash::Hash + Eq, T: Ord + Clone, S: BuildHasher>(
    index: &mut HashMap<K, Few<T>, S>,
    key: K,
    value: T,
) {
    match index.entry(key) {
        Entry::Vacant(v) => {
            v.insert(Few::One(value));
        }
        Entry::Occupied(mut o) => o.get_mut().insert(value),
    }
}

fn unlink<K: std::hash::Hash + Eq, T: Ord + Clone, S: BuildHasher>(
    index: &mut HashMap<K, Few<T>, S>,
    key: &K,
    value: &T,
) {
    if let Some(few) = index.get_mut(key)
        && !few.remove(value)
    {
        index.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> MemberId {
        MemberId::from(s)
    }
    fn c(s: &str) -> ConnectionId {
        ConnectionId::from(s)
    }
    fn s(x: &str) -> SessionId {
        SessionId::from(x)
    }

    /// What a scan of the table answers, the reference the indexes must match.
    fn scanned(
        t: &ClientTable,
        conn: &ConnectionId,
        session: &SessionId,
    ) -> (Option<MemberId>, Vec<(ConnectionId, MemberId)>) {
        let member = t
            .members()
            .iter()
            .find(|(_, mc)| mc.connections.contains_key(conn))
            .map(|(id, _)| id.clone());
        let of_session = t
            .members()
            .iter()
            .flat_map(|(id, mc)| {
                mc.connections
                    .iter()
                    .filter(|(_, x)| *x == session)
                    .map(move |(c, _)| (c.clone(), id.clone()))
            })
            .collect();
        (member, of_session)
    }

    fn agrees(t: &ClientTable, conns: &[&str], sessions: &[&str]) {
        assert!(t.is_consistent(), "{t:#?}");
        for conn in conns {
            for session in sessions {
                let (member, of_session) = scanned(t, &c(conn), &s(session));
                assert_eq!(t.member_of(&c(conn)), member, "{conn}");
                assert_eq!(t.connections_of_session(&s(session)), of_session, "{session}");
                let visited: Vec<(ConnectionId, MemberId)> = t
                    .session_connections(&s(session))
                    .map(|(c, m)| (c.clone(), m.clone()))
                    .collect();
                assert_eq!(visited, of_session, "{session}");
            }
        }
    }

    #[test]
    fn connect_and_disconnect() {
        let mut t = ClientTable::new();
        assert_eq!(t.insert(&m("a"), c("c1"), s("s1")), None);
        assert_eq!(t.insert(&m("a"), c("c2"), s("s1")), None);
        assert_eq!(t.insert(&m("b"), c("c3"), s("s1")), None);
        assert_eq!(t.insert(&m("b"), c("c4"), s("s2")), None);
        assert_eq!(t.len(), 4);
        assert_eq!(t.member_of(&c("c3")), Some(m("b")));
        assert_eq!(
            t.connections_of_session(&s("s1")),
            vec![(c("c1"), m("a")), (c("c2"), m("a")), (c("c3"), m("b"))]
        );
        agrees(&t, &["c1", "c2", "c3", "c4", "c5"], &["s1", "s2", "s3"]);

        assert_eq!(t.remove(&m("a"), &c("c1")), Some(s("s1")));
        assert_eq!(t.remove(&m("a"), &c("c1")), None);
        // Not on that member: nothing changes.
        assert_eq!(t.remove(&m("a"), &c("c3")), None);
        assert_eq!(t.member_of(&c("c1")), None);
        agrees(&t, &["c1", "c2", "c3", "c4"], &["s1", "s2"]);

        for (member, conn) in [("a", "c2"), ("b", "c3"), ("b", "c4")] {
            t.remove(&m(member), &c(conn));
        }
        assert!(t.is_empty());
        assert!(t.by_session.is_empty(), "{t:#?}");
        // Members stay, empty, until removed.
        assert_eq!(t.members().len(), 2);
        agrees(&t, &["c2"], &["s1"]);
    }

    #[test]
    fn a_connection_moving_to_another_member() {
        let mut t = ClientTable::new();
        t.insert(&m("b"), c("c1"), s("s1"));
        // It reconnected to `a` before `b` reported it gone: both hold it for a while.
        t.insert(&m("a"), c("c1"), s("s1"));
        assert_eq!(t.member_of(&c("c1")), Some(m("a")));
        assert_eq!(
            t.connections_of_session(&s("s1")),
            vec![(c("c1"), m("a")), (c("c1"), m("b"))]
        );
        agrees(&t, &["c1"], &["s1"]);
        t.remove(&m("b"), &c("c1"));
        assert_eq!(t.member_of(&c("c1")), Some(m("a")));
        agrees(&t, &["c1"], &["s1"]);
        // And back, the other way round.
        t.insert(&m("b"), c("c1"), s("s1"));
        t.remove(&m("a"), &c("c1"));
        assert_eq!(t.member_of(&c("c1")), Some(m("b")));
        assert_eq!(t.connections_of_session(&s("s1")), vec![(c("c1"), m("b"))]);
        agrees(&t, &["c1"], &["s1"]);
    }

    #[test]
    fn a_connection_changing_session() {
        let mut t = ClientTable::new();
        t.insert(&m("a"), c("c1"), s("s1"));
        assert_eq!(t.insert(&m("a"), c("c1"), s("s1")), Some(s("s1")));
        assert_eq!(t.insert(&m("a"), c("c1"), s("s2")), Some(s("s1")));
        assert!(t.connections_of_session(&s("s1")).is_empty());
        assert_eq!(t.connections_of_session(&s("s2")), vec![(c("c1"), m("a"))]);
        agrees(&t, &["c1"], &["s1", "s2"]);
    }

    #[test]
    fn snapshot_replaces_a_member() {
        let mut t = ClientTable::new();
        t.insert(&m("a"), c("c1"), s("s1"));
        t.insert(&m("b"), c("c2"), s("s1"));
        t.insert(&m("b"), c("c3"), s("s2"));
        let fresh = BTreeMap::from([(c("c3"), s("s3")), (c("c4"), s("s1")), (c("c1"), s("s1"))]);
        let old = t.replace_member(&m("b"), fresh.clone());
        assert_eq!(old, BTreeMap::from([(c("c2"), s("s1")), (c("c3"), s("s2"))]));
        assert_eq!(t.member(&m("b")).map(|mc| &mc.connections), Some(&fresh));
        assert_eq!(t.member_of(&c("c2")), None);
        assert!(t.connections_of_session(&s("s2")).is_empty());
        assert_eq!(
            t.connections_of_session(&s("s1")),
            vec![(c("c1"), m("a")), (c("c1"), m("b")), (c("c4"), m("b"))]
        );
        agrees(&t, &["c1", "c2", "c3", "c4"], &["s1", "s2", "s3"]);
        // An empty snapshot empties the member but keeps it.
        t.replace_member(&m("b"), BTreeMap::new());
        assert_eq!(t.member(&m("b")), Some(&MemberClients::default()));
        assert_eq!(t.member_of(&c("c1")), Some(m("a")));
        agrees(&t, &["c1", "c2", "c3", "c4"], &["s1", "s2", "s3"]);
    }

    #[test]
    fn users_follow_their_connections() {
        let mut t = ClientTable::new();
        let alice = crate::Client::new(c("c1"), s("user:alice"), m("a")).with_identity(Some(
            crate::Identity::new("alice").with_data(serde_json::json!(1)),
        ));
        t.insert_client(&alice);
        t.insert(&m("a"), c("c2"), s("s2"));
        // The user id, not the identity's data.
        let known = t.client_of(&c("c1")).map(|cl| cl.identity);
        assert_eq!(known, Some(Some(crate::Identity::new("alice"))));
        assert_eq!(t.client_of(&c("c2")).map(|cl| cl.identity), Some(None));
        // Re-recorded without a user: none.
        t.insert(&m("a"), c("c1"), s("user:alice"));
        assert_eq!(t.client_of(&c("c1")).and_then(|cl| cl.identity), None);
        t.insert_client(&alice);
        t.remove(&m("a"), &c("c1"));
        assert_eq!(t.client_of(&c("c1")), None);
        assert!(t.member(&m("a")).is_some_and(|mc| mc.users.is_empty()));
        // A snapshot's users, only for connections it has.
        let snapshot = MemberClients {
            connections: BTreeMap::from([(c("c3"), s("user:bob"))]),
            users: BTreeMap::from([(c("c3"), "bob".to_owned()), (c("c4"), "eve".to_owned())]),
        };
        t.replace_member_clients(&m("b"), snapshot);
        assert_eq!(
            t.client_of(&c("c3")).and_then(|cl| cl.identity),
            Some(crate::Identity::new("bob"))
        );
        assert_eq!(t.member(&m("b")).map(|mc| mc.users.len()), Some(1));
        assert!(t.is_consistent());
        // An over-long user is not recorded.
        let long = crate::Client::new(c("c5"), s("s5"), m("a")).with_identity(Some(crate::Identity::new(
            "x".repeat(crate::MAX_TRACKED_USER_LEN + 1),
        )));
        t.insert_client(&long);
        assert_eq!(t.client_of(&c("c5")).map(|cl| cl.identity), Some(None));
    }

    #[test]
    fn purge_removes_a_member_and_its_index_entries() {
        let mut t = ClientTable::new();
        t.insert(&m("a"), c("c1"), s("s1"));
        t.insert(&m("b"), c("c2"), s("s1"));
        t.insert(&m("b"), c("c1"), s("s1"));
        let purged = t.remove_member(&m("b"));
        assert_eq!(
            purged.map(|mc| mc.connections),
            Some(BTreeMap::from([(c("c1"), s("s1")), (c("c2"), s("s1"))]))
        );
        assert_eq!(t.remove_member(&m("b")), None);
        assert_eq!(t.member_of(&c("c2")), None);
        assert_eq!(t.member_of(&c("c1")), Some(m("a")));
        assert_eq!(t.connections_of_session(&s("s1")), vec![(c("c1"), m("a"))]);
        agrees(&t, &["c1", "c2"], &["s1"]);
        t.remove_member(&m("a"));
        assert!(t.is_empty() && t.by_session.is_empty() && t.members().is_empty());
    }

    #[test]
    fn few_keeps_one_form_per_size_in_order() {
        let mut f = Few::One(5);
        f.insert(5);
        assert_eq!(f, Few::One(5));
        f.insert(3);
        assert_eq!(f, Few::Two(3, 5));
        f.insert(5);
        assert_eq!(f, Few::Two(3, 5));
        f.insert(4);
        assert_eq!(f, Few::Many(BTreeSet::from([3, 4, 5])));
        assert_eq!(f.iter().copied().collect::<Vec<_>>(), [3, 4, 5]);
        assert!(f.remove(&3));
        assert_eq!(f, Few::Two(4, 5));
        // Not there: nothing changes.
        assert!(f.remove(&9));
        assert_eq!(f, Few::Two(4, 5));
        assert!(f.remove(&4));
        assert_eq!(f, Few::One(5));
        assert!(f.remove(&9));
        assert!(!f.remove(&5), "the last one gone");
        let mut g = Few::One(7);
        g.insert(9);
        assert_eq!(g, Few::Two(7, 9));
        assert!(g.remove(&9));
        assert_eq!(g, Few::One(7));
        assert_eq!(g.iter().copied().collect::<Vec<_>>(), [7]);
    }

    #[test]
    fn random_changes_answer_as_a_scan_does() {
        // Denser than the walk below: sessions with up to a dozen connections and connections
        // on up to four members at once, so that both indexes go through every form of `Few`
        // (one, two, many) and back, through removals, snapshots and member removals. Every
        // answer is checked against a scan after every step.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let conns: Vec<String> = (0..16).map(|i| format!("c{i:02}")).collect();
        let sessions: Vec<String> = (0..3).map(|i| format!("s{i}")).collect();
        let conn_refs: Vec<&str> = conns.iter().map(String::as_str).collect();
        let session_refs: Vec<&str> = sessions.iter().map(String::as_str).collect();
        let mut t = ClientTable::new();
        let (mut two, mut many, mut moving) = (0, 0, 0);
        for step in 0..1_500 {
            let member = m(&format!("m{}", next(4)));
            match next(20) {
                0..=10 => {
                    let conn = c(&conns[next(16) as usize]);
                    let session = s(&sessions[next(3) as usize]);
                    let before = t
                        .member(&member)
                        .and_then(|mc| mc.connections.get(&conn))
                        .cloned();
                    assert_eq!(t.insert(&member, conn, session), before, "step {step}");
                }
                11..=17 => {
                    let conn = c(&conns[next(16) as usize]);
                    let before = t
                        .member(&member)
                        .and_then(|mc| mc.connections.get(&conn))
                        .cloned();
                    assert_eq!(t.remove(&member, &conn), before, "step {step}");
                }
                18 => {
                    let fresh = (0..next(8))
                        .map(|_| (c(&conns[next(16) as usize]), s(&sessions[next(3) as usize])))
                        .collect();
                    t.replace_member(&member, fresh);
                }
                _ => {
                    t.remove_member(&member);
                }
            }
            for few in t.by_session.values() {
                match few {
                    Few::Two(..) => two += 1,
                    Few::Many(..) => many += 1,
                    Few::One(_) => {}
                }
            }
            if !t.by_connection.others.is_empty() {
                moving += 1;
            }
            let held = t.by_connection.first.len()
                + t.by_connection.others.values().map(BTreeSet::len).sum::<usize>();
            assert_eq!(t.len(), held, "step {step}");
            agrees(&t, &conn_refs, &session_refs);
        }
        assert!(
            two > 0 && many > 0 && moving > 0,
            "every form was met: {two} two, {many} many, {moving} moving"
        );
    }

    #[test]
    fn random_changes_keep_the_indexes_consistent() {
        // A deterministic pseudo-random walk over a few members, connections and sessions.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let names = |p: &str, i: u64| format!("{p}{i}");
        let mut t = ClientTable::new();
        for step in 0..2_000 {
            let member = m(&names("m", next(3)));
            match next(10) {
                0..=4 => {
                    t.insert(&member, c(&names("c", next(12))), s(&names("s", next(4))));
                }
                5..=7 => {
                    t.remove(&member, &c(&names("c", next(12))));
                }
                8 => {
                    let fresh = (0..next(5))
                        .map(|_| (c(&names("c", next(12))), s(&names("s", next(4)))))
                        .collect();
                    t.replace_member(&member, fresh);
                }
                _ => {
                    t.remove_member(&member);
                }
            }
            if step % 50 == 0 {
                let conns: Vec<String> = (0..12).map(|i| names("c", i)).collect();
                let sessions: Vec<String> = (0..4).map(|i| names("s", i)).collect();
                let conns: Vec<&str> = conns.iter().map(String::as_str).collect();
                let sessions: Vec<&str> = sessions.iter().map(String::as_str).collect();
                agrees(&t, &conns, &sessions);
            }
            assert!(t.is_consistent(), "step {step}: {t:#?}");
        }
    }
}
