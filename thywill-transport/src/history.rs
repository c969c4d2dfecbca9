//! [`LocalHistory`]: the in-memory [`History`] of one member, the default.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use thywill_core::{BoxFuture, CoreResult, Entry, History, HistoryLimits, Offset, Replay};

/// Most tabs whose received marks are kept; the least recently updated go first.
const MAX_MARKS: usize = 100_000;

/// Replay logs kept in this process: bounded per stream by [`HistoryLimits`], idle streams
/// forgotten after `max_age`. Every log starts a new random epoch (in a new process, or when a
/// forgotten stream is used again), so a client that comes back after the member restarted is
/// told `continuity_lost` rather than given offsets of another log.
///
/// Not shared: in a cluster without a shared history, each member numbers and replays the
/// messages it sent itself (the node names such streams after the member).
pub struct LocalHistory {
    limits: HistoryLimits,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    streams: HashMap<String, Log>,
    marks: HashMap<String, (u64, Instant)>,
    appends: u64,
}

struct Log {
    epoch: String,
    last: u64,
    entries: VecDeque<(u64, Instant, String)>,
    touched: Instant,
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

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn trim(&self, log: &mut Log, now: Instant) {
        while log.entries.len() > self.limits.max_entries {
            log.entries.pop_front();
        }
        while log
            .entries
            .front()
            .is_some_and(|(_, at, _)| now.duration_since(*at) > self.limits.max_age)
        {
            log.entries.pop_front();
        }
    }

    /// Forgets streams idle for longer than `max_age` (their entries are all too old anyway)
    /// and the oldest marks beyond the bound; run every 1024 appends.
    fn sweep(&self, state: &mut State, now: Instant) {
        let max_age = self.limits.max_age;
        state
            .streams
            .retain(|_, log| now.duration_since(log.touched) <= max_age);
        if state.marks.len() > MAX_MARKS {
            let mut ages: Vec<Instant> = state.marks.values().map(|(_, at)| *at).collect();
            ages.sort_unstable();
            let cut = ages[state.marks.len() - MAX_MARKS];
            state.marks.retain(|_, (_, at)| *at >= cut);
        }
    }
}

impl History for LocalHistory {
    fn is_shared(&self) -> bool {
        false
    }

    fn append(&self, stream: &str, _key: u64, payload: String) -> BoxFuture<'_, CoreResult<Offset>> {
        // In memory an append cannot half-fail, so there is no retry to recognise.
        let now = Instant::now();
        let mut state = self.state();
        state.appends += 1;
        if state.appends % 1024 == 0 {
            self.sweep(&mut state, now);
        }
        let log = state.streams.entry(stream.to_owned()).or_insert_with(|| Log {
            epoch: format!("{:016x}", rand::random::<u64>()),
            last: 0,
            entries: VecDeque::new(),
            touched: now,
        });
        log.last += 1;
        log.touched = now;
        let off = log.last;
        log.entries.push_back((off, now, payload));
        self.trim(log, now);
        let offset = Offset {
            epoch: log.epoch.clone(),
            off,
        };
        Box::pin(std::future::ready(Ok(offset)))
    }

    fn read_after<'a>(&'a self, stream: &'a str, after: &'a Offset) -> BoxFuture<'a, CoreResult<Replay>> {
        let now = Instant::now();
        let mut state = self.state();
        let replay = match state.streams.get_mut(stream) {
            // Never written here, or forgotten after `max_age` idle: no log.
            None => Replay {
                epoch: String::new(),
                continuous: false,
                entries: Vec::new(),
                last: 0,
            },
            Some(log) => {
                self.trim(log, now);
                let same = after.epoch == log.epoch;
                let first = log.entries.front().map_or(log.last + 1, |(o, _, _)| *o);
                let continuous = same && (after.off >= log.last || first <= after.off + 1);
                let from = if continuous { after.off + 1 } else { 0 };
                let entries = log
                    .entries
                    .iter()
                    .filter(|(o, _, _)| *o >= from)
                    .map(|(off, _, payload)| Entry {
                        off: *off,
                        payload: payload.clone(),
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
        Box::pin(std::future::ready(Ok(replay)))
    }

    fn received_mark<'a>(&'a self, tab: &'a str) -> BoxFuture<'a, CoreResult<u64>> {
        let mark = self.state().marks.get(tab).map_or(0, |(id, _)| *id);
        Box::pin(std::future::ready(Ok(mark)))
    }

    fn set_received_mark<'a>(&'a self, tab: &'a str, id: u64) -> BoxFuture<'a, CoreResult<()>> {
        let now = Instant::now();
        let mut state = self.state();
        let mark = state.marks.entry(tab.to_owned()).or_insert((0, now));
        *mark = (mark.0.max(id), now);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn offsets(r: &Replay) -> Vec<u64> {
        r.entries.iter().map(|e| e.off).collect()
    }

    #[tokio::test]
    async fn numbers_streams_apart_and_replays_the_tail() -> CoreResult<()> {
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
        let r = h.read_after("c:a", &after).await?;
        assert!(r.continuous);
        assert_eq!(offsets(&r), [3, 4, 5]);
        assert_eq!(r.entries[0].payload, "m3");
        assert_eq!(r.last, 5);
        let caught_up = h.read_after("c:a", &Offset { off: 5, ..after }).await?;
        assert!(caught_up.continuous && caught_up.entries.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn a_trimmed_gap_or_another_epoch_is_not_continuous() -> CoreResult<()> {
        let h = LocalHistory::new(HistoryLimits {
            max_entries: 3,
            max_age: Duration::from_secs(60),
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
            )
            .await?;
        assert!(r.continuous);
        assert_eq!(offsets(&r), [4, 5, 6]);
        let other = Offset {
            epoch: "0000".into(),
            off: 5,
        };
        let r = h.read_after("s:x", &other).await?;
        assert!(!r.continuous);
        assert_eq!(offsets(&r), [4, 5, 6]);
        let r = h.read_after("s:never", &other).await?;
        assert!(!r.continuous && r.entries.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn entries_older_than_the_age_bound_are_gone() -> CoreResult<()> {
        let h = LocalHistory::new(HistoryLimits {
            max_entries: 100,
            max_age: Duration::from_millis(50),
        });
        let first = h.append("c:a", 0, "old".into()).await?;
        // The age bound is the behaviour under test: let the clock pass it.
        tokio::time::sleep(Duration::from_millis(80)).await;
        h.append("c:a", 0, "new".into()).await?;
        let r = h.read_after("c:a", &Offset { off: 0, ..first }).await?;
        assert!(!r.continuous);
        assert_eq!(offsets(&r), [2]);
        Ok(())
    }

    #[tokio::test]
    async fn marks_only_rise() -> CoreResult<()> {
        let h = LocalHistory::default();
        assert_eq!(h.received_mark("t").await?, 0);
        h.set_received_mark("t", 7).await?;
        h.set_received_mark("t", 3).await?;
        assert_eq!(h.received_mark("t").await?, 7);
        Ok(())
    }
}
