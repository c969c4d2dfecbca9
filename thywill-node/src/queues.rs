//! The node's two internal queues fed from synchronous cluster callbacks, both bounded, each
//! with its policy when full:
//!
//! - [`Outbox`]: presence tasks for other members. Past its bound a task is dropped and the
//!   outbox remembers it overflowed; its sender then asks every other member for its presence
//!   and pushes its own whole snapshot, which replaces whatever deltas were lost.
//! - [`HookQueue`]: the applications' tracker, channel-membership and cluster hooks. Past its
//!   bound a tracker or membership event is dropped (counted in
//!   `thywill_hooks_dropped_total`, logged); a member's status change is never dropped — it
//!   waits for room in a task of its own (there are at most a few per member).

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

/// Presence tasks waiting to be sent: at most this many.
pub(crate) const OUTBOX_BOUND: usize = 16 * 1024;

/// Hooks waiting to run: at most this many.
pub(crate) const HOOKS_BOUND: usize = 64 * 1024;

/// A bounded queue that never waits and remembers when it had to drop.
#[derive(Debug)]
pub(crate) struct Outbox<T> {
    tx: mpsc::Sender<T>,
    overflowed: AtomicBool,
}

impl<T> Outbox<T> {
    /// The outbox and the receiving end of its queue.
    pub(crate) fn new(bound: usize) -> (Self, mpsc::Receiver<T>) {
        let (tx, rx) = mpsc::channel(bound);
        (
            Self {
                tx,
                overflowed: AtomicBool::new(false),
            },
            rx,
        )
    }

    /// Queues `item`; when the queue is full, drops it and remembers the overflow.
    pub(crate) fn push(&self, item: T) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(item)
            && !self.overflowed.swap(true, Ordering::AcqRel)
        {
            tracing::warn!("presence outbox full: tasks dropped until a full resynchronisation");
        }
    }

    /// Whether items were dropped since the last call (and forgets it).
    pub(crate) fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, Ordering::AcqRel)
    }
}

/// A bounded queue of hooks: see the module docs for what it drops.
#[derive(Debug)]
pub(crate) struct HookQueue<T> {
    tx: mpsc::Sender<T>,
}

impl<T> Clone for HookQueue<T> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

impl<T: Send + 'static> HookQueue<T> {
    /// The queue and its receiving end.
    pub(crate) fn new(bound: usize) -> (Self, mpsc::Receiver<T>) {
        let (tx, rx) = mpsc::channel(bound);
        (Self { tx }, rx)
    }

    /// Queues a hook that may be dropped when the queue is full; returns whether it was
    /// queued.
    pub(crate) fn push_or_drop(&self, hook: T) -> bool {
        match self.tx.try_send(hook) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => false,
            // The hook task is gone: the node is stopping.
            Err(mpsc::error::TrySendError::Closed(_)) => true,
        }
    }

    /// Queues a hook that must run: when the queue is full, a task waits for room (needs a
    /// runtime, which every caller — a cluster backend's task — has).
    pub(crate) fn push_always(&self, hook: T) {
        if let Err(mpsc::error::TrySendError::Full(hook)) = self.tx.try_send(hook) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(hook).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_outbox_drops_and_remembers_it_once() {
        let (outbox, mut rx) = Outbox::new(2);
        for n in 0..5 {
            outbox.push(n);
        }
        assert!(outbox.take_overflow());
        assert!(!outbox.take_overflow(), "forgotten once taken");
        assert_eq!(rx.recv().await, Some(0));
        assert_eq!(rx.recv().await, Some(1));
        assert!(rx.try_recv().is_err(), "bounded: the rest was dropped");
    }

    #[tokio::test]
    async fn hooks_that_must_run_wait_for_room_and_the_others_are_dropped() {
        let (queue, mut rx) = HookQueue::new(1);
        assert!(queue.push_or_drop("tracker 1"));
        assert!(!queue.push_or_drop("tracker 2"), "full: dropped");
        queue.push_always("member down");
        assert_eq!(rx.recv().await, Some("tracker 1"));
        let waited = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await;
        assert_eq!(waited.ok().flatten(), Some("member down"));
    }
}
