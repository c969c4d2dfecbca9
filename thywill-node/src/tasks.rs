//! The task router: every cluster task the node receives reaches the one handler registered
//! for its name.
//!
//! Handlers are typed: [`TaskRouter::on`] takes a function of the decoded task, and the router
//! decodes the payload before calling it. A task whose name has no handler, or whose payload
//! does not decode, is logged (`warn`, with the sender) and dropped; it never panics and never
//! disturbs the tasks after it. The node's handlers are registered once, at start, in
//! [`node_tasks`]: adding a task kind is one line there.
//!
//! Applications' own tasks travel as one internal kind, [`AppTaskEnvelope`]
//! (`thywill.app`), which carries the application id; its handler passes them to that
//! application's `task` hook (see [`thywill_core::AppTask`]).
//!
//! The client tracker's `thywill.tracker` tasks are the one exception: the tracker is a
//! wrapper around the cluster backend (`thywill_tracking::tracked`), not part of the node, and
//! takes its tasks before the node's events see them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use thywill_core::cluster::codec;
use thywill_core::{ClusterTask, CoreError, MemberId, Task};

use crate::node::Inner;

/// The node's handlers, one per task kind.
pub(crate) fn node_tasks() -> TaskRouter<Inner> {
    TaskRouter::new()
        .on(Inner::on_deliver)
        .on(Inner::on_subscription)
        .on(Inner::on_channel_sessions)
        .on(Inner::on_presence)
        .on(Inner::on_app_task)
        .on(Inner::on_cache_invalidation)
}

type Handler<C> = Box<dyn Fn(&C, MemberId, &[u8]) -> Result<(), CoreError> + Send + Sync>;

/// Handlers by task name, over a context `C` (the node).
pub(crate) struct TaskRouter<C> {
    handlers: HashMap<&'static str, Handler<C>>,
}

impl<C> std::fmt::Debug for TaskRouter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.handlers.keys().copied().collect();
        names.sort_unstable();
        f.debug_struct("TaskRouter").field("tasks", &names).finish()
    }
}

/// What became of a task.
#[derive(Debug)]
pub(crate) enum Routed {
    /// Its handler ran.
    Handled,
    /// No handler has its name: dropped.
    Unknown,
    /// Its payload did not decode as its name's type: dropped.
    Undecodable,
}

impl Routed {
    /// The metrics label of a dropped task.
    pub(crate) fn dropped(&self) -> Option<&'static str> {
        match self {
            Routed::Handled => None,
            Routed::Unknown => Some("unknown"),
            Routed::Undecodable => Some("undecodable"),
        }
    }
}

impl<C: 'static> TaskRouter<C> {
    /// A router with no handler.
    pub(crate) fn new() -> Self {
        Self {
            handlers: HashMap::new(),
        }
    }

    /// Registers the handler of task `T` (by [`Task::NAME`]).
    ///
    /// # Panics
    ///
    /// If `T::NAME` has a handler already: two kinds sharing a name is a bug of the code that
    /// registers them, found at start.
    pub(crate) fn on<T: Task>(mut self, handle: impl Fn(&C, MemberId, T) + Send + Sync + 'static) -> Self {
        let handler: Handler<C> = Box::new(move |cx, from, payload| {
            let task: T = codec::decode(payload)?;
            handle(cx, from, task);
            Ok(())
        });
        let previous = self.handlers.insert(T::NAME, handler);
        assert!(
            previous.is_none(),
            "two handlers registered for cluster task {:?}",
            T::NAME
        );
        self
    }

    /// Whether a task named `name` has a handler.
    #[cfg(test)]
    pub(crate) fn handles(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }

    /// Hands a task from `from` to its handler; logs and drops it if it has none or its
    /// payload does not decode.
    pub(crate) fn route(&self, cx: &C, from: MemberId, task: &ClusterTask) -> Routed {
        let Some(handle) = self.handlers.get(task.name.as_str()) else {
            tracing::warn!(%from, task = %task.name, "cluster task with no handler: dropped");
            return Routed::Unknown;
        };
        match handle(cx, from.clone(), &task.payload) {
            Ok(()) => Routed::Handled,
            Err(error) => {
                tracing::warn!(%from, task = %task.name, %error, "cluster task that does not decode: dropped");
                Routed::Undecodable
            }
        }
    }
}

/// Cluster task: an application's own task, for the same application on the receiving
/// member.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AppTaskEnvelope {
    /// The application id.
    pub(crate) app: String,
    /// The application task's name.
    pub(crate) name: String,
    /// Its payload, as the application encoded it.
    pub(crate) payload: Vec<u8>,
}

impl Task for AppTaskEnvelope {
    const NAME: &'static str = "thywill.app";
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Hello {
        n: u32,
    }

    impl Task for Hello {
        const NAME: &'static str = "test.hello";
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Bye(String);

    impl Task for Bye {
        const NAME: &'static str = "test.bye";
    }

    /// Records what its handlers were given.
    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl Seen {
        fn push(&self, line: String) {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(line);
        }

        fn lines(&self) -> Vec<String> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        }
    }

    fn router() -> TaskRouter<Seen> {
        TaskRouter::new()
            .on(|seen: &Seen, from, t: Hello| seen.push(format!("hello {} from {from}", t.n)))
            .on(|seen: &Seen, from, t: Bye| seen.push(format!("bye {} from {from}", t.0)))
    }

    #[test]
    fn each_task_reaches_the_handler_of_its_name() -> Result<(), CoreError> {
        let (r, seen) = (router(), Seen::default());
        assert!(r.handles("test.hello") && r.handles("test.bye"));
        let a = MemberId::from("alpha");
        assert!(matches!(
            r.route(&seen, a.clone(), &Hello { n: 3 }.to_task()?),
            Routed::Handled
        ));
        assert!(matches!(
            r.route(&seen, a, &Bye("x".into()).to_task()?),
            Routed::Handled
        ));
        assert_eq!(seen.lines(), ["hello 3 from alpha", "bye x from alpha"]);
        Ok(())
    }

    #[test]
    fn unknown_names_and_bad_payloads_are_dropped_and_nothing_else_changes() -> Result<(), CoreError> {
        let (r, seen) = (router(), Seen::default());
        let b = MemberId::from("beta");
        let unknown = ClusterTask::encode("test.nobody", &1u8)?;
        assert_eq!(r.route(&seen, b.clone(), &unknown).dropped(), Some("unknown"));
        // Hello's name over bytes that are not a Hello (a u32 varint cut short).
        let bad = ClusterTask {
            name: Hello::NAME.into(),
            payload: vec![0xfc],
        };
        let routed = r.route(&seen, b.clone(), &bad);
        assert_eq!(routed.dropped(), Some("undecodable"));
        assert!(seen.lines().is_empty());
        // The router goes on routing.
        r.route(&seen, b, &Hello { n: 1 }.to_task()?);
        assert_eq!(seen.lines(), ["hello 1 from beta"]);
        Ok(())
    }

    #[test]
    #[should_panic(expected = "two handlers registered for cluster task \"test.hello\"")]
    fn a_name_registered_twice_is_refused_at_start() {
        let _ = router().on(|_: &Seen, _, _: Hello| {});
    }

    #[test]
    fn the_node_registers_every_internal_task_kind() {
        let r = node_tasks();
        for name in [
            "thywill.deliver",
            "thywill.subscription",
            "thywill.channel-sessions",
            "thywill.presence",
            "thywill.app",
        ] {
            assert!(r.handles(name), "{name}");
        }
    }
}
