//! `with_rpc` forwards every hook of the application it wraps.

use std::sync::Mutex;

use thywill::{AppContext, Application, ChannelId, Client, Message, SessionId};
use thywill_rpc::{Registry, with_rpc};

/// Fails when `trait Application` (in thywill-core) gains a method that `WithRpc` does not
/// implement: a wrapper that falls back to a default silently drops the application's hook
/// (as `tracks_presence` once did: a wrapped application lost presence).
#[test]
fn with_rpc_implements_every_method_of_application() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let Ok(core) = std::fs::read_to_string(root.join("thywill-core/src/application.rs")) else {
        // Outside the workspace (a packaged crate): nothing to compare with.
        return Ok(());
    };
    let wrapper = std::fs::read_to_string(root.join("thywill-rpc/src/app.rs"))?;
    let body = |text: &str, start: &str| -> anyhow::Result<String> {
        let at = text
            .find(start)
            .ok_or_else(|| anyhow::anyhow!("`{start}` not found"))?;
        // Up to the first line that closes the block at the start's indentation.
        let rest = &text[at..];
        let end = rest.find("\n}\n").unwrap_or(rest.len());
        Ok(rest[..end].to_owned())
    };
    let methods = |block: &str| -> Vec<String> {
        block
            .lines()
            .filter_map(|l| {
                let l = l.trim_start();
                let l = l.strip_prefix("async ").unwrap_or(l);
                l.strip_prefix("fn ")
                    .and_then(|rest| rest.split(['(', '<']).next())
                    .map(str::to_owned)
            })
            .collect()
    };
    let required = methods(&body(&core, "pub trait Application")?);
    let forwarded = methods(&body(
        &wrapper,
        "impl<A: Application> Application for WithRpc<A>",
    )?);
    anyhow::ensure!(
        required.len() >= 10,
        "found only {required:?} in trait Application"
    );
    let missing: Vec<&String> = required.iter().filter(|m| !forwarded.contains(m)).collect();
    anyhow::ensure!(missing.is_empty(), "WithRpc does not forward {missing:?}");
    Ok(())
}

/// An application that records what it was asked.
#[derive(Default)]
struct Recording {
    asked: Mutex<Vec<String>>,
}

impl Application for Recording {
    async fn received(&self, _: &AppContext, _: &Client, _: Message) {}

    fn tracks_presence(&self, channel: &ChannelId) -> bool {
        self.asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(channel.to_string());
        channel.as_str() == "room"
    }
}

#[test]
fn a_wrapped_application_keeps_its_presence() -> anyhow::Result<()> {
    let registry = Registry::builder().function("f.one", |x: u32| x).build()?;
    let wrapped = with_rpc(Recording::default(), registry);
    assert!(wrapped.tracks_presence(&ChannelId::from("room")));
    assert!(!wrapped.tracks_presence(&ChannelId::from("hall")));
    assert_eq!(
        *wrapped
            .inner()
            .asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        ["room", "hall"]
    );
    assert!(wrapped.rpc().is_some());
    Ok(())
}

/// A client interface that refuses everything: enough for a context handed to hooks.
struct Nowhere(thywill::MemberId);

impl thywill::core::ClientInterface for Nowhere {
    fn member(&self) -> &thywill::MemberId {
        &self.0
    }

    fn send(
        &self,
        _: &thywill::ApplicationId,
        _: thywill::core::Target,
        _: Message,
    ) -> thywill::core::BoxFuture<'_, thywill::core::CoreResult<()>> {
        Box::pin(async { Err(thywill::CoreError::Unavailable("nowhere".into())) })
    }

    fn subscribe(
        &self,
        _: Vec<thywill::ConnectionId>,
        _: Vec<ChannelId>,
    ) -> thywill::core::BoxFuture<'_, thywill::core::CoreResult<()>> {
        Box::pin(async { Err(thywill::CoreError::Unavailable("nowhere".into())) })
    }

    fn unsubscribe(
        &self,
        _: Vec<thywill::ConnectionId>,
        _: Vec<ChannelId>,
    ) -> thywill::core::BoxFuture<'_, thywill::core::CoreResult<()>> {
        Box::pin(async { Err(thywill::CoreError::Unavailable("nowhere".into())) })
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Note(String);

impl thywill::Task for Note {
    const NAME: &'static str = "test.note";
}

/// Records the application tasks it receives.
#[derive(Default)]
struct TaskRecording {
    tasks: Mutex<Vec<String>>,
}

impl Application for TaskRecording {
    async fn received(&self, _: &AppContext, _: &Client, _: Message) {}

    async fn task(&self, _: &AppContext, from: &thywill::MemberId, task: thywill::AppTask) {
        let text = match task.decode::<Note>() {
            Some(Ok(Note(text))) => text,
            other => format!("not a note: {:?}", other.map(|r| r.map(|n| n.0))),
        };
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(format!("{from}: {text}"));
    }
}

/// Records the channel membership events it is given.
#[derive(Default)]
struct Membership {
    events: Mutex<Vec<String>>,
}

impl Membership {
    fn record(&self, what: &str, channel: &ChannelId, sessions: &[SessionId]) {
        let sessions: Vec<&str> = sessions.iter().map(SessionId::as_str).collect();
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(format!("{what} {channel} {}", sessions.join(",")));
    }
}

impl Application for Membership {
    async fn received(&self, _: &AppContext, _: &Client, _: Message) {}

    async fn sessions_added(&self, _: &AppContext, channel: &ChannelId, sessions: &[SessionId]) {
        self.record("added", channel, sessions);
    }

    async fn sessions_removed(&self, _: &AppContext, channel: &ChannelId, sessions: &[SessionId]) {
        self.record("removed", channel, sessions);
    }
}

#[tokio::test]
async fn a_wrapped_application_hears_of_channel_membership() -> anyhow::Result<()> {
    let registry = Registry::builder().function("f.one", |x: u32| x).build()?;
    let wrapped = with_rpc(Membership::default(), registry);
    let ctx = AppContext::new("app".into(), std::sync::Arc::new(Nowhere("alpha".into())));
    let room = ChannelId::from("room");
    wrapped
        .sessions_added(&ctx, &room, &["s1".into(), "s2".into()])
        .await;
    wrapped.sessions_removed(&ctx, &room, &["s2".into()]).await;
    assert_eq!(
        *wrapped
            .inner()
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        ["added room s1,s2", "removed room s2"]
    );
    Ok(())
}

#[tokio::test]
async fn a_wrapped_application_receives_its_tasks() -> anyhow::Result<()> {
    let registry = Registry::builder().function("f.one", |x: u32| x).build()?;
    let wrapped = std::sync::Arc::new(with_rpc(TaskRecording::default(), registry));
    let ctx = AppContext::new("notes".into(), std::sync::Arc::new(Nowhere("alpha".into())));
    let from = thywill::MemberId::from("beta");
    // As the node calls it: through the object-safe twin.
    let app: std::sync::Arc<dyn thywill::core::DynApplication> = wrapped.clone();
    app.task(&ctx, &from, thywill::AppTask::encode(&Note("hello".into()))?)
        .await;
    Application::task(
        wrapped.as_ref(),
        &ctx,
        &from,
        thywill::AppTask::encode(&Note("again".into()))?,
    )
    .await;
    assert_eq!(
        *wrapped
            .inner()
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        ["beta: hello", "beta: again"]
    );
    Ok(())
}
