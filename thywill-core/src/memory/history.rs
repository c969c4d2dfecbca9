//! [`LocalHistory`]: the in-memory [`History`] of one member, the default.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::{CoreResult, Entry, History, HistoryLimits, Offset, ReadLimit, Replay};

/// Most tabs whose received marks are kept; the least recently updated go first.
const MAX_MARKS: usize = 100_000;

/// How long a tab's received mark outlives its last update.
const MARK_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Appends and mark updates between two sweeps of idle streams and old marks.
const SWEEP_EVERY: u64 = 1024;

/// Replay logs kept in this process: bounded per stream by [`HistoryLimits`] (entries, bytes,
/// age) and in all streams together by its total bytes (the oldest entry of any stream goes
/// first); idle streams are forgotten after `max_age`. Every log starts a new random epoch (in
/// a new process, or when a forgotten stream is used again), so a client that comes back
/// after the member restarted is told `continuity_lost` rather than given offsets of another
/// log.
///
/// Not shared: in a cluster without a shared history, each member numbers and replays the
/// messages it sent itself (the node names such streams after the member).
pub struct LocalHistory {
    limits: HistoryLimits,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    streams: HashMap<Arc<str>, Log>,
    /// The first entry of every non-empty log, by global append order: the oldest entry of
    /// all is the first of this set.
    fronts: BTreeSet<(u64, Arc<str>)>,
    /// Payload bytes of every log.
    bytes: usize,
    marks: HashMap<String, (u64, Instant)>,
    /// Appends and mark updates so far (sweeps run every [`SWEEP_EVERY`]).
    ops: u64,
    /// Global append counter.
    seq: u64,
}

struct Log {
    epoch: String,
    last: u64,
    entries: VecDeque<Item>,
    bytes: usize,
    touched: Instant,
}

struct Item {
    off: u64,
    at: Instant,
    /// Global append order.
    seq: u64,
    payload: String,
}

impl State {
    /// Drops the first entry of a log, keeping `fronts` and the byte counts right.
    fn pop_front(&mut self, name: &Arc<str>) {
        let Some(log) = self.streams.get_mut(name) else {
            return;
        };
        let Some(item) = log.entries.pop_front() else {
            return;
        };
        log.bytes -= item.payload.len();
        self.bytes -= item.payload.len();
        self.fronts.remove(&(item.seq, name.clone()));
        if let Some(next) = log.entries.front() {
            self.fronts.insert((next.seq, name.clone()));
        }
    }

    /// Trims a log to the per-stream bounds.
    fn trim(&mut self, name: &Arc<str>, limits: &HistoryLimits, now: Instant) {
        loop {
            let Some(log) = self.streams.get(name) else {
                return;
            };
            let over = log.entries.len() > limits.max_entries
                || log.bytes > limits.max_stream_bytes
                || log
                    .entries
                    .front()
                    .is_some_and(|i| now.duration_since(i.at) > limits.max_age);
            if !over {
                return;
            }
            self.pop_front(name);
        }
    }

    /// Drops the oldest entries of all logs while the total is over its bound.
    fn trim_total(&mut self, max: usize) {
        while self.bytes > max {
            let Some((_, name)) = self.fronts.first().cloned() else {
                return;
            };
            self.pop_front(&name);
        }
    }

    /// Removes a whole log.
    fn remove(&mut self, name: &Arc<str>) {
        if let Some(log) = self.streams.remove(name) {
            self.bytes -= log.bytes;
            if let Some(front) = log.entries.front() {
                self.fronts.remove(&(front.seq, name.clone()));
            }
        }
    }

    /// Forgets streams idle for longer than `max_age` (their entries are all too old
    /// anyway), marks older than [`MARK_TTL`] and the oldest marks beyond [`MAX_MARKS`].
    fn sweep(&mut self, max_age: Duration, now: Instant) {
        let idle: Vec<Arc<str>> = self
            .streams
            .iter()
            .filter(|(_, log)| now.duration_since(log.touched) > max_age)
            .map(|(name, _)| name.clone())
            .collect();
        for name in idle {
            self.remove(&name);
        }
        self.marks
            .retain(|_, (_, at)| now.duration_since(*at) <= MARK_TTL);
        if self.marks.len() > MAX_MARKS {
            let mut ages: Vec<Instant> = self.marks.values().map(|(_, at)| *at).collect();
            ages.sort_unstable();
            let cut = ages[self.marks.len() - MAX_MARKS];
            self.marks.retain(|_, (_, at)| *at >= cut);
        }
    }

    /// Counts an operation; sweeps every [`SWEEP_EVERY`].
    fn tick(&mut self, max_age: Duration, now: Instant) {
        self.ops += 1;
        if self.ops.is_multiple_of(SWEEP_EVERY) {
            self.sweep(max_age, now);
        }
    }
}

/// A new log's epoch, 16 hex digits that another log (in another process, or a stream this one
/// forgot) does not share. The core has no random number generator: this hashes the clock and a
/// counter with std's randomly keyed SipHash (its keys are drawn from the OS once per thread).
fn new_epoch() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

impl std::fmt::Debug for LocalHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalHistory")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Default for LocalHistory {
    fn default() -> Self {
        Self::new(HistoryLimits::default())
    }
}

impl LocalHistory {
    /// An empty history with these bounds.
    pub fn new(limits: HistoryLimits) -> Self {
        Self {
            limits,
            state: Mutex::new(State::default()),
        }
    }

    /// The bounds.
    pub fn limits(&self) -> HistoryLimits {
        self.limits
    }

    /// Payload bytes held in all logs (bounded by [`HistoryLimits::max_total_bytes`]).
    pub fn bytes(&self) -> usize {
        self.state().bytes
    }

    /// Tabs whose received marks are held.
    pub fn marks(&self) -> usize {
        self.state().marks.len()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl History for LocalHistory {
    fn is_shared(&self) -> bool {
        false
    }

    async fn append(&self, stream: &str, _key: u64, payload: String) -> CoreResult<Offset> {
        // In memory an append cannot half-fail, so there is no retry to recognise.
        let now = Instant::now();
        let mut state = self.state();
        state.tick(self.limits.max_age, now);
        state.seq += 1;
        let seq = state.seq;
        let name: Arc<str> = match state.streams.get_key_value(stream) {
            Some((name, _)) => name.clone(),
            None => {
                let name: Arc<str> = Arc::from(stream);
                state.streams.insert(
                    name.clone(),
                    Log {
                        epoch: new_epoch(),
                        last: 0,
                        entries: VecDeque::new(),
                        bytes: 0,
                        touched: now,
                    },
                );
                name
            }
        };
        let len = payload.len();
        let (offset, was_empty) = {
            let Some(log) = state.streams.get_mut(&name) else {
                return Err(crate::CoreError::Unavailable("stream vanished".into()));
            };
            log.last += 1;
            log.touched = now;
            let was_empty = log.entries.is_empty();
            log.entries.push_back(Item {
                off: log.last,
                at: now,
                seq,
                payload,
            });
            log.bytes += len;
            (
                Offset {
                    epoch: log.epoch.clone(),
                    off: log.last,
                },
                was_empty,
            )
        };
        state.bytes += len;
        if was_empty {
            state.fronts.insert((seq, name.clone()));
        }
        state.trim(&name, &self.limits, now);
        state.trim_total(self.limits.max_total_bytes);
        Ok(offset)
    }

    async fn read_after(&self, stream: &str, after: &Offset, limit: ReadLimit) -> CoreResult<Replay> {
        let now = Instant::now();
        let mut state = self.state();
        let name = state.streams.get_key_value(stream).map(|(n, _)| n.clone());
        if let Some(name) = &name {
            state.trim(name, &self.limits, now);
        }
        let replay = match name.as_ref().and_then(|n| state.streams.get(n)) {
            // Never written here, or forgotten after `max_age` idle: no log.
            None => Replay {
                epoch: String::new(),
                continuous: false,
                entries: Vec::new(),
                last: 0,
            },
            Some(log) => {
                let same = after.epoch == log.epoch;
                // Client input: any u64, so no unchecked arithmetic.
                let next = after.off.saturating_add(1);
                let first = log.entries.front().map_or(log.last.saturating_add(1), |i| i.off);
                let continuous = same && (after.off >= log.last || first <= next);
                let from = if continuous { next } else { 0 };
                let wanted = log.entries.iter().skip_while(|i| i.off < from);
                let n = limit.take(wanted.clone().map(|i| i.payload.len()));
                let entries = wanted
                    .take(n)
                    .map(|i| Entry {
                        off: i.off,
                        payload: i.payload.clone(),
                    })
                    .collect();
                Replay {
                    epoch: log.epoch.clone(),
                    continuous,
                    entries,
                    last: log.last,
                }
            }
        };
        Ok(replay)
    }

    async fn received_mark(&self, tab: &str) -> CoreResult<u64> {
        let mark = self.state().marks.get(tab).map_or(0, |(id, _)| *id);
        Ok(mark)
    }

    async fn set_received_mark(&self, tab: &str, id: u64) -> CoreResult<()> {
        let now = Instant::now();
        let mut state = self.state();
        state.tick(self.limits.max_age, now);
        let mark = state.marks.entry(tab.to_owned()).or_insert((0, now));
        *mark = (mark.0.max(id), now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::memory::tests::block;

    fn all() -> ReadLimit {
        ReadLimit {
            max_entries: usize::MAX,
            max_bytes: usize::MAX,
        }
    }

    fn offsets(r: &Replay) -> Vec<u64> {
        r.entries.iter().map(|e| e.off).collect()
    }

    #[test]
    fn numbers_streams_apart_and_replays_the_tail() -> CoreResult<()> {
        block(async {
            let h = LocalHistory::default();
            let mut epoch = String::new();
            for i in 1..=5u64 {
                let o = h.append("c:a", 0, format!("m{i}")).await?;
                assert_eq!(o.off, i);
                epoch = o.epoch;
            }
            let b = h.append("c:b", 0, "x".into()).await?;
            assert_eq!(b.off, 1);
            assert_ne!(b.epoch, epoch, "every log has its own epoch");
            let after = Offset { epoch, off: 2 };
            let r = h.read_after("c:a", &after, all()).await?;
            assert!(r.continuous);
            assert_eq!(offsets(&r), [3, 4, 5]);
            assert_eq!(r.entries[0].payload, "m3");
            assert_eq!(r.last, 5);
            let caught_up = h.read_after("c:a", &Offset { off: 5, ..after }, all()).await?;
            assert!(caught_up.continuous && caught_up.entries.is_empty());
            Ok(())
        })
    }

    /// Two histories of one process (a node restarted in place, two nodes in a test) never
    /// share an epoch: a client's offsets from one are never taken as the other's.
    #[test]
    fn histories_of_one_process_draw_distinct_epochs() -> CoreResult<()> {
        block(async {
            let mut epochs = BTreeSet::new();
            for _ in 0..1000 {
                let h = LocalHistory::default();
                epochs.insert(h.append("c:a", 0, "m".into()).await?.epoch);
            }
            assert_eq!(epochs.len(), 1000);
            Ok(())
        })
    }

    #[test]
    fn a_trimmed_gap_or_another_epoch_is_not_continuous() -> CoreResult<()> {
        block(async {
            let h = LocalHistory::new(HistoryLimits {
                max_entries: 3,
                max_age: Duration::from_secs(60),
                ..HistoryLimits::default()
            });
            let mut epoch = String::new();
            for _ in 0..6 {
                epoch = h.append("s:x", 0, "p".into()).await?.epoch;
            }
            let r = h
                .read_after(
                    "s:x",
                    &Offset {
                        epoch: epoch.clone(),
                        off: 1,
                    },
                    all(),
                )
                .await?;
            assert!(!r.continuous);
            assert_eq!(offsets(&r), [4, 5, 6]);
            let r = h
                .read_after(
                    "s:x",
                    &Offset {
                        epoch: epoch.clone(),
                        off: 3,
                    },
                    all(),
                )
                .await?;
            assert!(r.continuous);
            assert_eq!(offsets(&r), [4, 5, 6]);
            let other = Offset {
                epoch: "0000".into(),
                off: 5,
            };
            let r = h.read_after("s:x", &other, all()).await?;
            assert!(!r.continuous);
            assert_eq!(offsets(&r), [4, 5, 6]);
            let r = h.read_after("s:never", &other, all()).await?;
            assert!(!r.continuous && r.entries.is_empty());
            Ok(())
        })
    }

    #[test]
    fn entries_older_than_the_age_bound_are_gone() -> CoreResult<()> {
        block(async {
            let h = LocalHistory::new(HistoryLimits {
                max_entries: 100,
                max_age: Duration::from_millis(50),
                ..HistoryLimits::default()
            });
            let first = h.append("c:a", 0, "old".into()).await?;
            // The age bound is the behaviour under test: let the clock pass it.
            std::thread::sleep(Duration::from_millis(80));
            h.append("c:a", 0, "new".into()).await?;
            let r = h.read_after("c:a", &Offset { off: 0, ..first }, all()).await?;
            assert!(!r.continuous);
            assert_eq!(offsets(&r), [2]);
            Ok(())
        })
    }

    #[test]
    fn an_offset_beyond_the_log_is_answered_without_overflow() -> CoreResult<()> {
        block(async {
            let h = LocalHistory::default();
            let epoch = h.append("c:a", 0, "m".into()).await?.epoch;
            for off in [u64::MAX, u64::MAX - 1, 2, 1] {
                let r = h
                    .read_after(
                        "c:a",
                        &Offset {
                            epoch: epoch.clone(),
                            off,
                        },
                        all(),
                    )
                    .await?;
                assert!(r.continuous && r.entries.is_empty(), "off {off}: {r:?}");
            }
            let foreign = h
                .read_after(
                    "c:a",
                    &Offset {
                        epoch: "x".into(),
                        off: u64::MAX,
                    },
                    all(),
                )
                .await?;
            assert!(!foreign.continuous);
            assert_eq!(offsets(&foreign), [1]);
            Ok(())
        })
    }

    #[test]
    fn reads_come_in_bounded_chunks() -> CoreResult<()> {
        block(async {
            let h = LocalHistory::default();
            let mut epoch = String::new();
            for _ in 0..10 {
                epoch = h.append("c:a", 0, "x".repeat(100)).await?.epoch;
            }
            let by_count = ReadLimit {
                max_entries: 3,
                max_bytes: usize::MAX,
            };
            let r = h
                .read_after(
                    "c:a",
                    &Offset {
                        epoch: epoch.clone(),
                        off: 2,
                    },
                    by_count,
                )
                .await?;
            assert!(r.continuous);
            assert_eq!(offsets(&r), [3, 4, 5]);
            assert_eq!(r.last, 10);
            let by_bytes = ReadLimit {
                max_entries: 100,
                max_bytes: 250,
            };
            let r = h
                .read_after(
                    "c:a",
                    &Offset {
                        epoch: epoch.clone(),
                        off: 5,
                    },
                    by_bytes,
                )
                .await?;
            assert_eq!(offsets(&r), [6, 7]);
            // At least one entry, however small the byte bound.
            let tiny = ReadLimit {
                max_entries: 100,
                max_bytes: 1,
            };
            let r = h.read_after("c:a", &Offset { epoch, off: 9 }, tiny).await?;
            assert_eq!(offsets(&r), [10]);
            Ok(())
        })
    }

    #[test]
    fn bytes_are_bounded_per_stream_and_in_total() -> CoreResult<()> {
        block(async {
            let h = LocalHistory::new(HistoryLimits {
                max_stream_bytes: 1000,
                max_total_bytes: 2500,
                ..HistoryLimits::default()
            });
            let mut a = String::new();
            for _ in 0..20 {
                a = h.append("c:a", 0, "a".repeat(100)).await?.epoch;
            }
            assert_eq!(h.bytes(), 1000, "per stream: the 10 newest entries");
            let r = h
                .read_after(
                    "c:a",
                    &Offset {
                        epoch: a.clone(),
                        off: 0,
                    },
                    all(),
                )
                .await?;
            assert!(!r.continuous);
            assert_eq!(offsets(&r), (11..=20).collect::<Vec<_>>());
            for _ in 0..10 {
                h.append("c:b", 0, "b".repeat(100)).await?;
            }
            for stream in ["c:c", "c:d"] {
                for _ in 0..10 {
                    h.append(stream, 0, "c".repeat(100)).await?;
                }
            }
            assert!(h.bytes() <= 2500, "total bound: {}", h.bytes());
            // The oldest entries overall went first: all of c:a's.
            let r = h.read_after("c:a", &Offset { epoch: a, off: 20 }, all()).await?;
            assert!(r.continuous && r.entries.is_empty());
            let first_b = h
                .read_after(
                    "c:b",
                    &Offset {
                        epoch: String::new(),
                        off: 0,
                    },
                    all(),
                )
                .await?;
            assert_eq!(offsets(&first_b).first(), Some(&6));
            // An entry bigger than the stream's bound is not kept at all.
            h.append("c:big", 0, "x".repeat(5000)).await?;
            assert!(h.bytes() <= 2500);
            Ok(())
        })
    }

    #[test]
    fn marks_are_swept_without_appends() -> CoreResult<()> {
        block(async {
            let h = LocalHistory::default();
            for i in 0..(MAX_MARKS as u64 + 2 * SWEEP_EVERY) {
                h.set_received_mark(&format!("t{i}"), 1).await?;
            }
            assert!(
                h.marks() <= MAX_MARKS + SWEEP_EVERY as usize,
                "{} marks",
                h.marks()
            );
            Ok(())
        })
    }

    #[test]
    fn marks_only_rise() -> CoreResult<()> {
        block(async {
            let h = LocalHistory::default();
            assert_eq!(h.received_mark("t").await?, 0);
            h.set_received_mark("t", 7).await?;
            h.set_received_mark("t", 3).await?;
            assert_eq!(h.received_mark("t").await?, 7);
            Ok(())
        })
    }
}
