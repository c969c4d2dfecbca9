//! The tracker lookups on the path of every send, against the number of tracked connections:
//! `connections_of_session` (a send to a session) and `member_of` (a send to a connection),
//! on [`MemoryTracker`] called through [`DynClientTracker`] as the node calls it, with
//! `--small` (default 1,000) and `--large` (default 100,000) tracked connections: synthetic
//! entries spread over eight members, two connections (tabs) per session. The cluster-wide
//! tracker keeps the same [`thywill_core::ClientTable`] behind one more read lock. A scan of the
//! table, which is what both trackers did before they were indexed, is timed beside them.
//!
//! Run by `cargo xtask bench lookup` (a release build). Prints nanoseconds per lookup and the
//! ratio large / small, for lookups of random entries (at 100,000 connections most of them
//! miss the CPU caches: the index is a few MB, the ids' strings are scattered on the heap) and
//! of a hot set of 500 entries spread over the table (the lookups' own cost, which the hash
//! indexes keep flat).
//!
//! Baseline rows, measured in the same run over the same picks: a plain
//! `std::collections::HashMap<Arc<str>, u64>` holding as many keys of the same shape (the
//! session ids, the connection ids), looked up at random, "one at a time" (each lookup's key
//! depends on the previous lookup's value, so that the processor cannot overlap their cache
//! misses — as in a send, where hundreds of instructions and atomic operations separate two
//! lookups) and "overlapping" (a tight loop of independent lookups, whose misses the processor
//! overlaps). Any hash lookup pays what those rows grow by between the two sizes (the
//! machine's caches and TLB); the growth column (`large - small`, in ns) and the
//! `ours / baseline` lines show how much of a lookup's growth is the tracker's own.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use thywill_core::{
    Client, ConnectionId, DynClientTracker, MemberClients, MemberId, MemoryTracker, SessionId,
};

/// Members the synthetic connections are spread over.
const MEMBERS: usize = 8;
/// Connections per session (tabs).
const TABS: usize = 2;
/// Sessions / connections of the "hot set" rows: spread over the table, the same number at
/// every size, so that those rows show the lookups' own cost once the CPU caches hold what is
/// looked up (the random rows show the cost when they do not).
const HOT: usize = 500;
/// Timed passes over the lookups; the fastest counts (the others met other work on the machine).
const PASSES: usize = 5;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut small, mut large, mut lookups) = (1_000usize, 100_000usize, 200_000usize);
    while let Some(a) = args.next() {
        let mut value = || -> Result<usize, Box<dyn std::error::Error>> {
            Ok(args.next().ok_or(format!("{a} needs a value"))?.parse()?)
        };
        match a.as_str() {
            "--small" => small = value()?,
            "--large" => large = value()?,
            "--lookups" => lookups = value()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if small == 0 || large == 0 || lookups == 0 {
        return Err("--small, --large and --lookups must be at least 1".into());
    }
    println!(
        "bench lookup: MemoryTracker through DynClientTracker, {small} and {large} tracked connections \
         ({MEMBERS} members, {TABS} per session), {lookups} lookups of random sessions / connections, \
         fastest of {PASSES} passes; the machine is shared with other work: compare the ratios"
    );
    let a = measure(small, lookups)?;
    let b = measure(large, lookups)?;
    println!();
    println!(
        "{:<44} {:>12} {:>12} {:>14} {:>14}",
        "lookup (ns each)",
        format!("{small} conns"),
        format!("{large} conns"),
        "large / small",
        "large - small"
    );
    for (name, x, y) in [
        ("connections_of_session, random", a.session, b.session),
        ("member_of, random", a.member, b.member),
        ("connections_of_session, hot set", a.session_hot, b.session_hot),
        ("member_of, hot set", a.member_hot, b.member_hot),
        ("connections_of_session (scan)", a.session_scan, b.session_scan),
        ("member_of (scan)", a.member_scan, b.member_scan),
        (
            "baseline map, sessions, one at a time",
            a.plain_session,
            b.plain_session,
        ),
        (
            "baseline map, conns, one at a time",
            a.plain_member,
            b.plain_member,
        ),
        (
            "baseline map, sessions, overlapping",
            a.plain_session_ind,
            b.plain_session_ind,
        ),
        (
            "baseline map, conns, overlapping",
            a.plain_member_ind,
            b.plain_member_ind,
        ),
    ] {
        println!(
            "{name:<44} {:>12.0} {:>12.0} {:>13.2}x {:>14.0}",
            ns(x),
            ns(y),
            ns(y) / ns(x).max(1e-9),
            ns(y) - ns(x)
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
            "connections_of_session / baseline",
            a.session,
            a.plain_session,
            b.session,
            b.plain_session,
        ),
        (
            "member_of / baseline",
            a.member,
            a.plain_member,
            b.member,
            b.plain_member,
        ),
    ] {
        println!(
            "{name:<44} {:>11.2}x {:>11.2}x",
            ns(ours_a) / ns(base_a).max(1e-9),
            ns(ours_b) / ns(base_b).max(1e-9)
        );
    }
    Ok(())
}

/// Nanoseconds per lookup of each kind, at one table size.
struct Costs {
    session: Duration,
    member: Duration,
    session_hot: Duration,
    member_hot: Duration,
    session_scan: Duration,
    member_scan: Duration,
    /// The baseline: a plain `HashMap<Arc<str>, u64>` over as many session ids, looked up one
    /// at a time.
    plain_session: Duration,
    /// The baseline over as many connection ids, one at a time.
    plain_member: Duration,
    /// The session baseline, lookups free to overlap.
    plain_session_ind: Duration,
    /// The connection baseline, lookups free to overlap.
    plain_member_ind: Duration,
}

fn ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

/// Polls a future that must be ready at once (the in-memory tracker never waits).
fn ready<T>(f: impl Future<Output = T>) -> T {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("the in-memory tracker never waits"),
    }
}

fn measure(n: usize, lookups: usize) -> Result<Costs, Box<dyn std::error::Error>> {
    let tracker: Box<dyn DynClientTracker> = Box::new(MemoryTracker::new());
    let members: Vec<MemberId> = (0..MEMBERS)
        .map(|m| MemberId::from(format!("member-{m}")))
        .collect();
    let conns: Vec<ConnectionId> = (0..n)
        .map(|i| ConnectionId::from(format!("conn-{i:09}")))
        .collect();
    let sessions: Vec<SessionId> = (0..n.div_ceil(TABS))
        .map(|s| SessionId::from(format!("session-{s:09}")))
        .collect();
    for (i, c) in conns.iter().enumerate() {
        let client = Client {
            connection: c.clone(),
            session: sessions[i / TABS].clone(),
            member: members[i % MEMBERS].clone(),
            identity: None,
        };
        ready(tracker.connected(&client))?;
    }
    // The same pseudo-random picks at every size.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut picks = Vec::with_capacity(lookups);
    for _ in 0..lookups {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        picks.push(x as usize);
    }
    let time = |f: &mut dyn FnMut() -> usize| -> Duration {
        (0..PASSES)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(f());
                start.elapsed()
            })
            .min()
            .unwrap_or_default()
    };
    let per = |d: Duration, count: usize| d / count as u32;

    let session = time(&mut || {
        picks
            .iter()
            .map(|p| {
                ready(tracker.connections_of_session(&sessions[p % sessions.len()])).map_or(0, |v| v.len())
            })
            .sum()
    });
    let member = time(&mut || {
        picks
            .iter()
            .filter(|p| ready(tracker.member_of(&conns[*p % conns.len()])).is_ok_and(|m| m.is_some()))
            .count()
    });
    let hot = |len: usize| -> Vec<usize> { (0..HOT.min(len)).map(|k| k * len / HOT.min(len)).collect() };
    let (hot_sessions, hot_conns) = (hot(sessions.len()), hot(conns.len()));
    let session_hot = time(&mut || {
        picks
            .iter()
            .map(|p| {
                let s = &sessions[hot_sessions[p % hot_sessions.len()]];
                ready(tracker.connections_of_session(s)).map_or(0, |v| v.len())
            })
            .sum()
    });
    let member_hot = time(&mut || {
        picks
            .iter()
            .filter(|p| {
                let c = &conns[hot_conns[*p % hot_conns.len()]];
                ready(tracker.member_of(c)).is_ok_and(|m| m.is_some())
            })
            .count()
    });
    // The baselines: plain maps over keys of the same shape, looked up by the same picks (with
    // clones of the stored keys, as the tracker rows are).
    let plain = |keys: Vec<Arc<str>>| -> (Vec<Arc<str>>, HashMap<Arc<str>, u64>) {
        let map = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i as u64))
            .collect();
        (keys, map)
    };
    let (plain_sessions, plain_session_map) = plain(sessions.iter().map(|s| Arc::from(s.as_str())).collect());
    let (plain_conns, plain_conn_map) = plain(conns.iter().map(|c| Arc::from(c.as_str())).collect());
    let plain_session = time(&mut || plain_chained(&plain_session_map, &plain_sessions, &picks));
    let plain_member = time(&mut || plain_chained(&plain_conn_map, &plain_conns, &picks));
    let plain_session_ind = time(&mut || plain_independent(&plain_session_map, &plain_sessions, &picks));
    let plain_member_ind = time(&mut || plain_independent(&plain_conn_map, &plain_conns, &picks));
    // The scans walk the whole table: fewer lookups keep them short.
    let table = ready(tracker.snapshot())?;
    let scans = (lookups / n.max(1)).clamp(10, lookups);
    let session_scan = time(&mut || {
        picks[..scans]
            .iter()
            .map(|p| scan_session(&table, &sessions[p % sessions.len()]).len())
            .sum()
    });
    let member_scan = time(&mut || {
        picks[..scans]
            .iter()
            .filter(|p| scan_member(&table, &conns[*p % conns.len()]).is_some())
            .count()
    });
    // Every lookup found what it looked for.
    let found: usize = picks
        .iter()
        .map(|p| ready(tracker.connections_of_session(&sessions[p % sessions.len()])).map_or(0, |v| v.len()))
        .sum();
    if found < lookups {
        return Err(format!("{found} connections found for {lookups} sessions").into());
    }
    Ok(Costs {
        session: per(session, lookups),
        member: per(member, lookups),
        session_hot: per(session_hot, lookups),
        member_hot: per(member_hot, lookups),
        session_scan: per(session_scan, scans),
        member_scan: per(member_scan, scans),
        plain_session: per(plain_session, lookups),
        plain_member: per(plain_member, lookups),
        plain_session_ind: per(plain_session_ind, lookups),
        plain_member_ind: per(plain_member_ind, lookups),
    })
}

/// What `connections_of_session` did before the index: every member, every connection.
fn scan_session(
    table: &BTreeMap<MemberId, MemberClients>,
    session: &SessionId,
) -> Vec<(ConnectionId, MemberId)> {
    table
        .iter()
        .flat_map(|(id, mc)| {
            mc.connections
                .iter()
                .filter(|(_, s)| *s == session)
                .map(move |(c, _)| (c.clone(), id.clone()))
        })
        .collect()
}

/// What `member_of` did before the index.
fn scan_member(table: &BTreeMap<MemberId, MemberClients>, connection: &ConnectionId) -> Option<MemberId> {
    table
        .iter()
        .find(|(_, mc)| mc.connections.contains_key(connection))
        .map(|(id, _)| id.clone())
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
