//! The cost of a send through the node against the number of tracked connections: an
//! application's `send_to_session` and `send_to_connection` to clients on other members, at
//! `--small` (default 1,000) and `--large` (default 100,000) tracked connections.
//!
//! The node runs as an application sees it ([`thywill_node::Node`] with the in-memory tracker,
//! channel manager and history); the tracker is fed with synthetic remote entries (spread over
//! seven other members, two connections per session), and the cluster backend is a sink that
//! counts the `deliver` tasks it is given. So a send does what it does in a cluster, short of
//! the network: the tracker lookup, grouping by member, encoding the message once and the
//! task per member.
//!
//! Run by `cargo xtask bench send` (a release build). Prints nanoseconds per send and the
//! ratio large / small, for sends to random sessions / connections and to a hot set of 500.
//!
//! Baseline rows, measured in the same run over the same picks: a plain
//! `std::collections::HashMap<Arc<str>, u64>` holding as many keys of the same shape (the
//! session ids, the connection ids), looked up at random, "one at a time" (each lookup's key
//! depends on the previous lookup's value, so that the processor cannot overlap their cache
//! misses — as in a send, where hundreds of instructions and atomic operations separate two
//! lookups) and "overlapping" (a tight loop of independent lookups, whose misses the processor
//! overlaps). Any hash lookup pays what those rows grow by between the two sizes (the
//! machine's caches and TLB); the growth column (`large - small`, in ns) and the
//! `ours / baseline` lines show how much of a send's growth is the framework's own. The rows "its tracker
//! lookup" time the tracker's part of a send alone, called as the node calls it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use thywill_core::{
    AppContext, Application, ApplicationId, Client, Cluster, ClusterEvents, ClusterTask, ConnectionId,
    CoreResult, DynApplication, DynClientTracker, MemberId, MemberStatus, MemoryTracker, Message, SessionId,
};
use thywill_node::{Node, NodeConfig, NodeParts};

/// Members: the local one and seven others holding the synthetic connections.
const MEMBERS: usize = 8;
/// Connections per session (tabs).
const TABS: usize = 2;
/// Sessions / connections of the "hot set" rows.
const HOT: usize = 500;
/// Timed passes; the fastest counts (the others met other work on the machine).
const PASSES: usize = 5;

/// A cluster whose other members swallow what they are sent (counted).
struct Sink {
    members: Vec<MemberId>,
    sent: AtomicU64,
}

impl Cluster for Sink {
    fn local_member(&self) -> &MemberId {
        &self.members[0]
    }
    fn members(&self) -> Vec<MemberId> {
        self.members.clone()
    }
    fn status(&self, _member: &MemberId) -> MemberStatus {
        MemberStatus::Up
    }
    async fn start(&self, _events: Arc<dyn ClusterEvents>) -> CoreResult<()> {
        Ok(())
    }
    async fn send_to(&self, _member: &MemberId, task: ClusterTask) -> CoreResult<()> {
        std::hint::black_box(task);
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn send_to_others(&self, _task: ClusterTask) -> CoreResult<()> {
        Ok(())
    }
}

/// An application that does nothing by itself: the bench sends through its context.
struct Quiet;

impl Application for Quiet {
    async fn received(&self, _ctx: &AppContext, _client: &Client, _message: Message) {}
}

/// Nanoseconds per send of each kind, at one table size.
struct Costs {
    session: f64,
    connection: f64,
    session_hot: f64,
    connection_hot: f64,
    /// The tracker's part of a send to a session: its connections visited in the table (the
    /// node's call, through `DynClientTracker`), their ids read.
    lookup_session: f64,
    /// The tracker's part of a send to a connection: `member_of`.
    lookup_connection: f64,
    /// The baseline: a plain `HashMap<Arc<str>, u64>` over as many session ids, looked up one
    /// at a time.
    plain_session: f64,
    /// The baseline over as many connection ids, one at a time.
    plain_connection: f64,
    /// The session baseline, lookups free to overlap.
    plain_session_ind: f64,
    /// The connection baseline, lookups free to overlap.
    plain_connection_ind: f64,
    /// Picking a random session out of the bench's list and reading its id, one at a time: the
    /// caller's part of a send's growth, which no index can spare.
    pick_session: f64,
    /// The same for a connection.
    pick_connection: f64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut small, mut large, mut sends) = (1_000usize, 100_000usize, 100_000usize);
    while let Some(a) = args.next() {
        let mut value = || -> Result<usize, Box<dyn std::error::Error>> {
            Ok(args.next().ok_or(format!("{a} needs a value"))?.parse()?)
        };
        match a.as_str() {
            "--small" => small = value()?,
            "--large" => large = value()?,
            "--sends" => sends = value()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if small == 0 || large == 0 || sends == 0 {
        return Err("--small, --large and --sends must be at least 1".into());
    }
    println!(
        "bench send: Node with MemoryTracker, {small} and {large} tracked connections on {} other \
         members ({TABS} per session), {sends} sends of a small message to random sessions / \
         connections, fastest of {PASSES} passes; one thread; the machine is shared with other \
         work: compare the ratios",
        MEMBERS - 1
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let a = runtime.block_on(measure(small, sends))?;
    let b = runtime.block_on(measure(large, sends))?;
    println!();
    println!(
        "{:<44} {:>12} {:>12} {:>14} {:>14}",
        "send (ns each)",
        format!("{small} conns"),
        format!("{large} conns"),
        "large / small",
        "large - small"
    );
    for (name, x, y) in [
        ("send_to_session, random", a.session, b.session),
        ("send_to_connection, random", a.connection, b.connection),
        ("send_to_session, hot set", a.session_hot, b.session_hot),
        ("send_to_connection, hot set", a.connection_hot, b.connection_hot),
        (
            "  its tracker lookup, sessions, random",
            a.lookup_session,
            b.lookup_session,
        ),
        (
            "  its tracker lookup, conns, random",
            a.lookup_connection,
            b.lookup_connection,
        ),
        (
            "baseline map, sessions, one at a time",
            a.plain_session,
            b.plain_session,
        ),
        (
            "baseline map, conns, one at a time",
            a.plain_connection,
            b.plain_connection,
        ),
        (
            "baseline map, sessions, overlapping",
            a.plain_session_ind,
            b.plain_session_ind,
        ),
        (
            "baseline map, conns, overlapping",
            a.plain_connection_ind,
            b.plain_connection_ind,
        ),
        (
            "picking the target's id, sessions",
            a.pick_session,
            b.pick_session,
        ),
        (
            "picking the target's id, conns",
            a.pick_connection,
            b.pick_connection,
        ),
    ] {
        println!(
            "{name:<44} {x:>12.0} {y:>12.0} {:>13.2}x {:>14.0}",
            y / x.max(1e-9),
            y - x
        );
    }
    println!();
    println!(
        "{:<44} {:>12} {:>12}",
        "ours / baseline one at a time (random)",
        format!("{small} conns"),
        format!("{large} conns")
    );
    for (name, ours_a, base_a, ours_b, base_b) in [
        (
            "send_to_session / baseline",
            a.session,
            a.plain_session,
            b.session,
            b.plain_session,
        ),
        (
            "send_to_connection / baseline",
            a.connection,
            a.plain_connection,
            b.connection,
            b.plain_connection,
        ),
    ] {
        println!(
            "{name:<44} {:>11.2}x {:>11.2}x",
            ours_a / base_a.max(1e-9),
            ours_b / base_b.max(1e-9)
        );
    }
    Ok(())
}

/// The member holding synthetic connection `i`: a session's tabs share one.
fn member_of(i: usize) -> usize {
    1 + (i / TABS) % (MEMBERS - 1)
}

async fn measure(n: usize, sends: usize) -> Result<Costs, Box<dyn std::error::Error>> {
    let members: Vec<MemberId> = (0..MEMBERS)
        .map(|m| MemberId::from(format!("member-{m}")))
        .collect();
    let cluster = Arc::new(Sink {
        members: members.clone(),
        sent: AtomicU64::new(0),
    });
    let tracker = Arc::new(MemoryTracker::new());
    let conns: Vec<ConnectionId> = (0..n)
        .map(|i| ConnectionId::from(format!("member-{}-{i:x}-{:016x}", member_of(i), i * 7919)))
        .collect();
    let sessions: Vec<SessionId> = (0..n.div_ceil(TABS))
        .map(|s| SessionId::from(format!("session-{s:016x}")))
        .collect();
    for (i, c) in conns.iter().enumerate() {
        let client = Client::new(
            c.clone(),
            sessions[i / TABS].clone(),
            members[member_of(i)].clone(),
        );
        DynClientTracker::connected(tracker.as_ref(), &client).await?;
    }
    let app = ApplicationId::from("bench");
    let applications: Vec<(ApplicationId, Arc<dyn DynApplication>)> = vec![(app.clone(), Arc::new(Quiet))];
    let node = Node::start(NodeParts {
        config: NodeConfig::default(),
        applications,
        cluster: cluster.clone(),
        tracker: tracker.clone(),
        channels: Arc::new(thywill_core::MemoryChannels::new()),
        session_store: None,
        history: Arc::new(thywill_core::LocalHistory::default()),
        caches: Arc::new(thywill_core::MemoryCaches::new()),
    })
    .await?;
    let ctx = node.context(&app).ok_or("no context for the application")?;
    let message = Message::new(serde_json::json!({"x": 1, "y": 2}));

    // The same pseudo-random picks at every size.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let picks: Vec<usize> = (0..sends)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as usize
        })
        .collect();
    let hot = |len: usize| -> Vec<usize> { (0..HOT.min(len)).map(|k| k * len / HOT.min(len)).collect() };
    let (hot_sessions, hot_conns) = (hot(sessions.len()), hot(conns.len()));

    let before = cluster.sent.load(Ordering::Relaxed);
    let mut session = Duration::MAX;
    let mut connection = Duration::MAX;
    let mut session_hot = Duration::MAX;
    let mut connection_hot = Duration::MAX;
    for _ in 0..PASSES {
        let start = Instant::now();
        for p in &picks {
            ctx.send_to_session(&sessions[p % sessions.len()], message.clone())
                .await?;
        }
        session = session.min(start.elapsed());
        let start = Instant::now();
        for p in &picks {
            ctx.send_to_connection(&conns[p % conns.len()], message.clone())
                .await?;
        }
        connection = connection.min(start.elapsed());
        let start = Instant::now();
        for p in &picks {
            let s = &sessions[hot_sessions[p % hot_sessions.len()]];
            ctx.send_to_session(s, message.clone()).await?;
        }
        session_hot = session_hot.min(start.elapsed());
        let start = Instant::now();
        for p in &picks {
            let c = &conns[hot_conns[p % hot_conns.len()]];
            ctx.send_to_connection(c, message.clone()).await?;
        }
        connection_hot = connection_hot.min(start.elapsed());
    }
    // The tracker's part alone, called as the node calls it.
    let tracker: Arc<dyn DynClientTracker> = tracker;
    let mut lookup_session = Duration::MAX;
    let mut lookup_connection = Duration::MAX;
    for _ in 0..PASSES {
        let start = Instant::now();
        let mut bytes = 0usize;
        for p in &picks {
            tracker
                .for_each_connection_of_session(&sessions[p % sessions.len()], &mut |c, m| {
                    bytes += c.as_str().len() + m.as_str().len();
                })
                .await?;
        }
        std::hint::black_box(bytes);
        lookup_session = lookup_session.min(start.elapsed());
        let start = Instant::now();
        let mut found = 0usize;
        for p in &picks {
            found += usize::from(tracker.member_of(&conns[p % conns.len()]).await?.is_some());
        }
        if found != sends {
            return Err(format!("{found} of {sends} connections found").into());
        }
        lookup_connection = lookup_connection.min(start.elapsed());
    }
    // The baselines: plain maps over keys of the same shape, looked up by the same picks
    // (with clones of the stored keys, as the sends' are).
    let plain = |keys: Vec<Arc<str>>| -> (Vec<Arc<str>>, HashMap<Arc<str>, u64>) {
        let map = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i as u64))
            .collect();
        (keys, map)
    };
    let (plain_sessions, session_map) = plain(sessions.iter().map(|s| Arc::from(s.as_str())).collect());
    let (plain_conns, conn_map) = plain(conns.iter().map(|c| Arc::from(c.as_str())).collect());
    let mut plain_session = Duration::MAX;
    let mut plain_connection = Duration::MAX;
    let mut plain_session_ind = Duration::MAX;
    let mut plain_connection_ind = Duration::MAX;
    type Lookups = fn(&HashMap<Arc<str>, u64>, &[Arc<str>], &[usize]) -> usize;
    for _ in 0..PASSES {
        for (keys, map, best, lookups) in [
            (
                &plain_sessions,
                &session_map,
                &mut plain_session,
                plain_chained as Lookups,
            ),
            (&plain_conns, &conn_map, &mut plain_connection, plain_chained),
            (
                &plain_sessions,
                &session_map,
                &mut plain_session_ind,
                plain_independent,
            ),
            (
                &plain_conns,
                &conn_map,
                &mut plain_connection_ind,
                plain_independent,
            ),
        ] {
            let start = Instant::now();
            std::hint::black_box(lookups(map, keys, &picks));
            *best = (*best).min(start.elapsed());
        }
    }
    let mut pick_session = Duration::MAX;
    let mut pick_connection = Duration::MAX;
    for _ in 0..PASSES {
        let start = Instant::now();
        std::hint::black_box(pick_chained(&sessions, &picks));
        pick_session = pick_session.min(start.elapsed());
        let start = Instant::now();
        std::hint::black_box(pick_chained(&conns, &picks));
        pick_connection = pick_connection.min(start.elapsed());
    }
    // Every send reached the sink: one task per session (its two tabs share a member) or
    // connection.
    let sent = cluster.sent.load(Ordering::Relaxed) - before;
    if sent != (4 * PASSES * sends) as u64 {
        return Err(format!("{sent} tasks sent for {} sends", 4 * PASSES * sends).into());
    }
    node.shutdown();
    let per = |d: Duration| d.as_secs_f64() * 1e9 / sends as f64;
    Ok(Costs {
        session: per(session),
        connection: per(connection),
        session_hot: per(session_hot),
        connection_hot: per(connection_hot),
        lookup_session: per(lookup_session),
        lookup_connection: per(lookup_connection),
        plain_session: per(plain_session),
        plain_connection: per(plain_connection),
        plain_session_ind: per(plain_session_ind),
        plain_connection_ind: per(plain_connection_ind),
        pick_session: per(pick_session),
        pick_connection: per(pick_connection),
    })
}

/// Looks `picks` up in a plain map, independently: the processor may overlap one lookup's cache
/// misses with the next ones' (a tight loop leaves it free to run ahead).
fn plain_independent(map: &HashMap<Arc<str>, u64>, keys: &[Arc<str>], picks: &[usize]) -> usize {
    picks
        .iter()
        .filter_map(|p| map.get(&keys[p % keys.len()]))
        .fold(0usize, |sum, v| sum.wrapping_add(*v as usize))
}

/// Looks `picks` up in a plain map one at a time: each pick's key depends on the previous
/// lookup's value (through a mask that is zero at run time), so no lookup's memory accesses
/// start before the previous one's ended — as in a send, where hundreds of instructions and
/// atomic operations separate two lookups.
fn plain_chained(map: &HashMap<Arc<str>, u64>, keys: &[Arc<str>], picks: &[usize]) -> usize {
    let mask = std::hint::black_box(0usize);
    let (mut carry, mut sum) = (0usize, 0usize);
    for p in picks {
        let v = map.get(&keys[(p ^ carry) % keys.len()]).copied().unwrap_or(0) as usize;
        carry = v & mask;
        sum = sum.wrapping_add(v);
    }
    sum
}

/// Reads the ids `picks` name one at a time (each pick depending on the previous read, as
/// [`plain_chained`]): what taking a random target out of a list of that many costs, before
/// any send.
fn pick_chained<T: AsRef<str>>(ids: &[T], picks: &[usize]) -> usize {
    let mask = std::hint::black_box(0usize);
    let (mut carry, mut sum) = (0usize, 0usize);
    for p in picks {
        let id = ids[(p ^ carry) % ids.len()].as_ref().as_bytes();
        let v = id.len() + usize::from(id.last().copied().unwrap_or(0));
        carry = v & mask;
        sum = sum.wrapping_add(v);
    }
    sum
}
