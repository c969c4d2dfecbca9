//! The Draw application: a shared scribble canvas. Every stroke a browser draws is broadcast
//! to every other browser, on whichever cluster member it is connected to; pages drop strokes
//! 30 s after drawing them ([`STROKE_LIFETIME`], or [`Draw::stroke_lifetime`]: the page's
//! script is a template rendered with it at start-up).
//!
//! The server checks that a message is `{"segments": [{"x": number, "y": number}, ...]}` (at
//! most [`MAX_POINTS`] points; other fields pass through untouched) and drops anything else
//! with a warning: the original rebroadcast any object that had a `segments` array.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use thywill::resources::{ScriptValues, embed};
use thywill::{
    AppContext, Application, Builder, ChannelId, Client, Entry, Manifest, MemberClients, MemberId, Message,
    ResourceKind,
};

/// Application id.
pub const APP_ID: &str = "draw";
/// Base path the example is served under.
pub const BASE: &str = "/draw";
/// Default port (the original's).
pub const DEFAULT_PORT: u16 = 10083;
/// The channel every connection joins.
pub const CHANNEL: &str = "draw";
/// Most points in one stroke.
pub const MAX_POINTS: usize = 2_000;
/// How long pages show a stroke (the original's 30 s).
pub const STROKE_LIFETIME: Duration = Duration::from_secs(30);

/// Called on the designated handler when a member goes down, with the number of connections
/// the member held.
pub type MemberDownHook = Arc<dyn Fn(&MemberId, usize) + Send + Sync>;

/// Broadcasts valid strokes to every other connection subscribed to [`CHANNEL`].
#[derive(Clone)]
pub struct Draw {
    on_member_down: Option<MemberDownHook>,
    stroke_lifetime: Duration,
}

impl Default for Draw {
    fn default() -> Self {
        Self {
            on_member_down: None,
            stroke_lifetime: STROKE_LIFETIME,
        }
    }
}

impl std::fmt::Debug for Draw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Draw")
            .field("stroke_lifetime", &self.stroke_lifetime)
            .finish_non_exhaustive()
    }
}

impl Draw {
    /// Calls `hook` when this member is told (as designated handler) that a member went down.
    pub fn on_member_down(mut self, hook: impl Fn(&MemberId, usize) + Send + Sync + 'static) -> Self {
        self.on_member_down = Some(Arc::new(hook));
        self
    }

    /// How long pages show a stroke (default [`STROKE_LIFETIME`]); at least 1 ms.
    pub fn stroke_lifetime(mut self, lifetime: Duration) -> Self {
        self.stroke_lifetime = lifetime.max(Duration::from_millis(1));
        self
    }
}

/// Why a stroke was refused.
pub fn check_stroke(data: &Value) -> Result<(), &'static str> {
    let segments = data
        .get("segments")
        .and_then(Value::as_array)
        .ok_or("segments is not an array")?;
    if segments.len() > MAX_POINTS {
        return Err("too many points");
    }
    let is_point = |p: &Value| {
        ["x", "y"]
            .iter()
            .all(|k| p.get(k).and_then(Value::as_f64).is_some_and(f64::is_finite))
    };
    if segments.iter().all(is_point) {
        Ok(())
    } else {
        Err("a segment is not a point {x, y}")
    }
}

impl Application for Draw {
    async fn connection(&self, ctx: &AppContext, client: &Client) {
        if let Err(e) = ctx.subscribe(&client.connection, &ChannelId::from(CHANNEL)).await {
            tracing::warn!(connection = %client.connection, error = %e, "not subscribed to the draw channel");
        }
    }

    async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
        if let Err(why) = check_stroke(&message.data) {
            tracing::warn!(connection = %client.connection, reason = why, "stroke dropped");
            return;
        }
        let channel = ChannelId::from(CHANNEL);
        if let Err(e) = ctx
            .send_to_channel(&channel, message, std::slice::from_ref(&client.connection))
            .await
        {
            tracing::warn!(connection = %client.connection, error = %e, "stroke not broadcast");
        }
    }

    async fn cluster_member_down(&self, _ctx: &AppContext, member: &MemberId, clients: &MemberClients) {
        tracing::warn!(%member, connections = clients.connections.len(), "cluster member down: its strokes stay drawn");
        if let Some(hook) = &self.on_member_down {
            hook(member, clients.connections.len());
        }
    }
}

/// The page (a template with the bootstrap slots), its script and its style, for strokes
/// shown [`STROKE_LIFETIME`].
pub fn manifest() -> Result<Manifest, thywill::Error> {
    manifest_for(&Draw::default())
}

/// The page, its script and its style for this application: the script is a template
/// rendered at start-up with the application id and the stroke lifetime.
pub fn manifest_for(app: &Draw) -> Result<Manifest, thywill::Error> {
    let lifetime_ms = u64::try_from(app.stroke_lifetime.as_millis()).unwrap_or(u64::MAX);
    let values = ScriptValues::new()
        .application(APP_ID)
        .value("stroke_lifetime_ms", lifetime_ms)?;
    Ok(Manifest::new()
        .entry(Entry::new("/draw/", embed!("static/index.html")).kind(ResourceKind::Html))
        .entry(
            Entry::new("/draw/js/draw.js", embed!("static/draw.js"))
                .weight(10)
                .rendered(values),
        )
        .entry(example_support::example_css("/draw"))
        .entry(Entry::new("/draw/css/draw.css", embed!("static/draw.css"))))
}

/// A builder with the draw application and its page.
pub fn builder() -> Result<Builder, thywill::Error> {
    builder_with(Draw::default())
}

/// A builder with this draw application and its page.
pub fn builder_with(app: Draw) -> Result<Builder, thywill::Error> {
    let manifest = manifest_for(&app)?;
    Ok(thywill::Thywill::builder()
        .base_path(BASE)?
        .application(APP_ID, app)
        .bootstrap(manifest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strokes_are_checked() {
        assert_eq!(check_stroke(&json!({"segments": []})), Ok(()));
        assert_eq!(
            check_stroke(&json!({"segments": [{"x": 1, "y": 2.5}], "id": 3})),
            Ok(())
        );
        assert!(check_stroke(&json!({"segments": "no"})).is_err());
        assert!(check_stroke(&json!({"other": []})).is_err());
        assert!(check_stroke(&json!("text")).is_err());
        assert!(check_stroke(&json!({"segments": [{"x": 1}]})).is_err());
        assert!(check_stroke(&json!({"segments": [{"x": "1", "y": 2}]})).is_err());
        let many: Vec<Value> = (0..=MAX_POINTS).map(|i| json!({"x": i, "y": i})).collect();
        assert!(check_stroke(&json!({ "segments": many })).is_err());
    }
}
