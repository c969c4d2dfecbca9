//! Application tasks between members (clustered through the in-memory hub): to one member, to
//! the others, to all; each application receives only its own; what cannot be handled (an
//! unknown task name, a payload that does not decode, an application not served, a hook that
//! panics, a hook that falls behind its bounded queue) is dropped without harm to what follows;
//! a member that is down is an error.

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use thywill_core::LocalHistory;
use thywill_core::{
    AppContext, AppTask, Application, ApplicationId, Client, Cluster, ClusterTask, CoreError, DynApplication,
    MemberId, Message, Task,
};
use thywill_core::{MemoryChannels, MemoryTracker};
use thywill_node::{Node, NodeConfig, NodeParts};
use thywill_testkit::TIMEOUT;
use thywill_testkit::hub::{Hub, HubMember};
use tokio::sync::Notify;

/// An application's task.
#[derive(Debug, Serialize, Deserialize)]
struct Note {
    text: String,
}

impl Task for Note {
    const NAME: &'static str = "test.note";
}

/// Another version of [`Note`] (same name, another shape): what a member running other code
/// would send.
#[derive(Debug, Serialize, Deserialize)]
struct NoteV2 {
    text: Vec<u32>,
}

impl Task for NoteV2 {
    const NAME: &'static str = "test.note";
}

/// A task that makes the receiving hook panic.
#[derive(Debug, Serialize, Deserialize)]
struct Boom;

impl Task for Boom {
    const NAME: &'static str = "test.boom";
}

/// What every application instance received, one line each:
/// `"<member>/<app> <- <from>: <what>"`, and a signal on every line.
#[derive(Default)]
struct Seen {
    lines: Mutex<Vec<String>>,
    changed: Notify,
}

impl Seen {
    fn push(&self, line: String) {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
        self.changed.notify_waiters();
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The lines of one application instance (`"<member>/<app>"`), without the prefix.
    fn of(&self, instance: &str) -> Vec<String> {
        let prefix = format!("{instance} <- ");
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    /// Waits (bounded) until `instance` has received `n` tasks; returns them.
    async fn wait(&self, instance: &str, n: usize) -> anyhow::Result<Vec<String>> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let changed = self.changed.notified();
            let got = self.of(instance);
            if got.len() >= n {
                return Ok(got);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                anyhow::bail!(
                    "{instance} received {got:?}, not {n} tasks; everything: {:?}",
                    self.lines()
                );
            }
        }
    }
}

/// Records each task it receives in [`Seen`].
struct Notes {
    name: &'static str,
    seen: Arc<Seen>,
}

impl Application for Notes {
    async fn received(&self, _: &AppContext, _: &Client, _: Message) {}

    async fn task(&self, ctx: &AppContext, from: &MemberId, task: AppTask) {
        if task.decode::<Boom>().is_some() {
            panic!("the application was asked to panic in its task hook");
        }
        let what = match task.decode::<Note>() {
            Some(Ok(note)) => note.text,
            Some(Err(e)) => format!(
                "undecodable {}: {}",
                task.name(),
                matches!(e, CoreError::Codec(_))
            ),
            None => format!("unknown {}", task.name()),
        };
        self.seen
            .push(format!("{}/{} <- {from}: {what}", ctx.member(), self.name));
    }
}

/// One member: its node and its backend (to send raw cluster tasks).
struct Member {
    node: Node,
    cluster: Arc<HubMember>,
}

impl Member {
    fn ctx(&self, app: &str) -> anyhow::Result<AppContext> {
        self.node
            .context(&ApplicationId::from(app))
            .ok_or_else(|| anyhow::anyhow!("no application {app}"))
    }

    fn dropped(&self, reason: &str) -> u64 {
        self.metric(&format!(
            "thywill_cluster_tasks_dropped_total{{reason=\"{reason}\"}}"
        ))
    }

    /// The value of a metric line (0 if absent).
    fn metric(&self, name: &str) -> u64 {
        let wanted = format!("{name} ");
        self.node
            .metrics_text()
            .lines()
            .find_map(|l| l.strip_prefix(&wanted).and_then(|n| n.trim().parse().ok()))
            .unwrap_or(0)
    }
}

/// Records its tasks like [`Notes`], each once `gate` has a permit for it.
struct Gated {
    gate: Arc<tokio::sync::Semaphore>,
    seen: Arc<Seen>,
}

impl Application for Gated {
    async fn received(&self, _: &AppContext, _: &Client, _: Message) {}

    async fn task(&self, ctx: &AppContext, from: &MemberId, task: AppTask) {
        let Ok(_permit) = self.gate.acquire().await else {
            return;
        };
        if let Some(Ok(note)) = task.decode::<Note>() {
            self.seen
                .push(format!("{}/gated <- {from}: {}", ctx.member(), note.text));
        }
    }
}

/// Starts member `id` of `hub` serving the applications named `apps` (each a [`Notes`]).
async fn start(hub: &Hub, id: &str, apps: &[&'static str], seen: &Arc<Seen>) -> anyhow::Result<Member> {
    let applications: Vec<(ApplicationId, Arc<dyn DynApplication>)> = apps
        .iter()
        .map(|name| {
            let app: Arc<dyn DynApplication> = Arc::new(Notes {
                name,
                seen: seen.clone(),
            });
            (ApplicationId::from(*name), app)
        })
        .collect();
    start_with(hub, id, applications).await
}

/// Starts member `id` of `hub` serving `applications`.
async fn start_with(
    hub: &Hub,
    id: &str,
    applications: Vec<(ApplicationId, Arc<dyn DynApplication>)>,
) -> anyhow::Result<Member> {
    let cluster = Arc::new(hub.member(id));
    // A node alone, served by no edge: tasks go between members without any client.
    let node = Node::start(NodeParts {
        config: NodeConfig::default(),
        applications,
        cluster: cluster.clone(),
        tracker: Arc::new(MemoryTracker::new()),
        channels: Arc::new(MemoryChannels::new()),
        session_store: None,
        history: Arc::new(LocalHistory::default()),
        caches: Arc::new(thywill_core::MemoryCaches::new()),
    })
    .await?;
    Ok(Member { node, cluster })
}

/// Three members each serving `notes` and `other`.
async fn three(seen: &Arc<Seen>) -> anyhow::Result<(Hub, Vec<Member>)> {
    let hub = Hub::new(["alpha", "beta", "gamma"]);
    let mut members = Vec::new();
    for id in ["alpha", "beta", "gamma"] {
        members.push(start(&hub, id, &["notes", "other"], seen).await?);
    }
    Ok((hub, members))
}

fn note(text: &str) -> Note {
    Note { text: text.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_reaches_one_member_the_others_or_all() -> anyhow::Result<()> {
    let seen = Arc::new(Seen::default());
    let (_hub, m) = three(&seen).await?;
    let alpha = m[0].ctx("notes")?;

    alpha.send_task_to(&"beta".into(), &note("to beta")).await?;
    alpha.send_task_to_others(&note("to the others")).await?;
    alpha.send_task_to_all(&note("to all")).await?;
    // To itself, by name, too.
    alpha.send_task_to(&"alpha".into(), &note("to alpha")).await?;

    // Each member receives what was meant for it, in the order it was sent (tasks from one
    // sender to one member keep their order): had a member received one too many, it would
    // come before "to all".
    assert_eq!(
        seen.wait("beta/notes", 3).await?,
        ["alpha: to beta", "alpha: to the others", "alpha: to all"]
    );
    assert_eq!(
        seen.wait("gamma/notes", 2).await?,
        ["alpha: to the others", "alpha: to all"]
    );
    assert_eq!(
        seen.wait("alpha/notes", 2).await?,
        ["alpha: to all", "alpha: to alpha"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_receives_only_its_own_tasks() -> anyhow::Result<()> {
    let seen = Arc::new(Seen::default());
    let (_hub, m) = three(&seen).await?;
    m[1].ctx("notes")?.send_task_to_all(&note("for notes")).await?;
    m[1].ctx("other")?.send_task_to_all(&note("for other")).await?;
    for member in ["alpha", "beta", "gamma"] {
        // Had `other` received notes' task, it would come first.
        assert_eq!(
            seen.wait(&format!("{member}/other"), 1).await?,
            ["beta: for other"]
        );
        assert_eq!(
            seen.wait(&format!("{member}/notes"), 1).await?,
            ["beta: for notes"]
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_handled_is_dropped_and_the_next_task_still_arrives() -> anyhow::Result<()> {
    let seen = Arc::new(Seen::default());
    let hub = Hub::new(["alpha", "beta"]);
    let alpha = start(&hub, "alpha", &["notes", "solo"], &seen).await?;
    let beta = start(&hub, "beta", &["notes"], &seen).await?;
    let to_beta = MemberId::from("beta");

    // A task name no handler knows, and the application tasks' name over bytes that are not
    // an application task, straight from alpha's backend.
    alpha
        .cluster
        .send_to(&to_beta, ClusterTask::encode("nobody.knows", &42u8)?)
        .await?;
    alpha
        .cluster
        .send_to(
            &to_beta,
            ClusterTask {
                name: "thywill.app".into(),
                payload: vec![0xff; 7],
            },
        )
        .await?;
    // An application beta does not serve.
    alpha.ctx("solo")?.send_task_to(&to_beta, &note("lost")).await?;
    // The right name with another shape: the hook is told it does not decode.
    let notes = alpha.ctx("notes")?;
    notes.send_task_to(&to_beta, &NoteV2 { text: vec![1, 2] }).await?;
    // A hook that panics costs only its own task.
    notes.send_task_to(&to_beta, &Boom).await?;
    notes.send_task_to(&to_beta, &note("still here")).await?;

    assert_eq!(
        seen.wait("beta/notes", 2).await?,
        ["alpha: undecodable test.note: true", "alpha: still here"]
    );
    assert_eq!(beta.dropped("unknown"), 1);
    assert_eq!(beta.dropped("undecodable"), 1);
    assert_eq!(beta.dropped("unknown_app"), 1);
    assert!(
        beta.node.metrics_text().contains("thywill_panics_total 1"),
        "{}",
        beta.node.metrics_text()
    );
    assert!(seen.of("alpha/notes").is_empty() && seen.of("alpha/solo").is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_is_down_or_unknown_is_an_error() -> anyhow::Result<()> {
    let seen = Arc::new(Seen::default());
    let (hub, m) = three(&seen).await?;
    let alpha = m[0].ctx("notes")?;
    hub.kill("gamma");
    let down = alpha.send_task_to(&"gamma".into(), &note("hello?")).await;
    assert!(
        matches!(&down, Err(CoreError::Unavailable(text)) if text.contains("gamma")),
        "{down:?}"
    );
    let unknown = alpha.send_task_to(&"zeta".into(), &note("hello?")).await;
    assert!(matches!(unknown, Err(CoreError::NotFound(_))), "{unknown:?}");
    // The members that are up still get theirs.
    alpha.send_task_to_others(&note("still up")).await?;
    assert_eq!(seen.wait("beta/notes", 1).await?, ["alpha: still up"]);
    // A node that shut down sends nothing.
    m[1].node.shutdown();
    let after = m[1].ctx("notes")?.send_task_to_all(&note("late")).await;
    assert!(matches!(after, Err(CoreError::ShuttingDown)), "{after:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_falls_behind_loses_tasks_past_its_bounded_queue_not_memory() -> anyhow::Result<()> {
    let seen = Arc::new(Seen::default());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let gated = || -> Vec<(ApplicationId, Arc<dyn DynApplication>)> {
        vec![(
            "gated".into(),
            Arc::new(Gated {
                gate: gate.clone(),
                seen: seen.clone(),
            }),
        )]
    };
    let hub = Hub::new(["alpha", "beta"]);
    let alpha = start_with(&hub, "alpha", gated()).await?;
    let beta = start_with(&hub, "beta", gated()).await?;
    let ctx = alpha.ctx("gated")?;
    // beta's hook is stuck while far more tasks arrive than its queue holds.
    const SENT: u64 = 3000;
    for i in 0..SENT {
        ctx.send_task_to(&"beta".into(), &note(&i.to_string())).await?;
    }
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while beta.metric("thywill_cluster_tasks_total{direction=\"in\"}") < SENT {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "beta did not receive the tasks"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let dropped = beta.dropped("queue_full");
    // The queue holds many, not all.
    anyhow::ensure!(dropped > 0 && dropped < SENT - 100, "{dropped} of {SENT} dropped");
    // Unstuck, the hook gets every task that was queued, in the order they were sent.
    gate.add_permits(tokio::sync::Semaphore::MAX_PERMITS);
    let kept = usize::try_from(SENT - dropped)?;
    let got = seen.wait("beta/gated", kept).await?;
    let numbers: Vec<u64> = got
        .iter()
        .map(|l| l.trim_start_matches("alpha: ").parse())
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "out of order: {numbers:?}"
    );
    assert_eq!(numbers.first(), Some(&0));
    Ok(())
}
