//! The Tabular application: Start / Stop a stream of rows of five random numbers, one every
//! 1–4 s, rendered newest first by an [Alpine.js](https://alpinejs.dev) page.
//!
//! - The stream's timer belongs to the connection: a second Start while it runs is ignored,
//!   Stop and a disconnect always stop it (the original leaked a timer on a second Start).
//! - The page is assembled by the resource pipeline: a page template, one minified script
//!   bundle (client library, the application, Alpine.js vendored as a `.min.js`), one CSS
//!   bundle, and the main view inlined as a client template.
//! - Progressive exposure: after a few rows the server unlocks a "totals" feature, telling the
//!   page to load `js/totals.js`, which loads its own stylesheet and client template. Those
//!   three files are not part of the page's bootstrap set.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use thywill::DisconnectReason;
use thywill::resources::embed;
use thywill::{
    AppContext, Application, Builder, Client, ConnectionId, Entry, Manifest, Message, ResourceKind,
};
use tokio::task::AbortHandle;

/// Application id.
pub const APP_ID: &str = "tabular";
/// Base path the example is served under.
pub const BASE: &str = "/tabular";
/// Default port (the original's).
pub const DEFAULT_PORT: u16 = 10093;
/// Client path of the script the server exposes when the totals feature unlocks.
pub const TOTALS_SCRIPT: &str = "/tabular/js/totals.js";

/// Number of cells in a row.
pub const COLUMNS: usize = 5;
/// Cell values are below this.
pub const MAX_VALUE: u32 = 20_000;

/// A connection's stream: its generation (to tell a newer timer from an older one) and the
/// handle that stops it.
#[derive(Debug)]
struct Stream {
    generation: u64,
    abort: AbortHandle,
}

#[derive(Debug, Default)]
struct Streams {
    by_connection: Mutex<HashMap<ConnectionId, Stream>>,
    generations: AtomicU64,
}

impl Streams {
    fn stop(&self, connection: &ConnectionId) -> bool {
        let removed = self
            .by_connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(connection);
        match removed {
            Some(s) => {
                s.abort.abort();
                true
            }
            None => false,
        }
    }

    /// Forgets a stream that ended by itself, unless a newer one replaced it.
    fn ended(&self, connection: &ConnectionId, generation: u64) {
        let mut map = self.by_connection.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(connection).is_some_and(|s| s.generation == generation) {
            map.remove(connection);
        }
    }
}

/// Sends each connection that pressed Start a row of [`COLUMNS`] numbers below [`MAX_VALUE`]
/// at once and then after every random interval, until Stop or disconnect.
#[derive(Debug, Clone)]
pub struct Tabular {
    streams: Arc<Streams>,
    interval: Range<Duration>,
    unlock_after: u64,
}

impl Default for Tabular {
    fn default() -> Self {
        Self::new()
    }
}

impl Tabular {
    /// Rows every 1 to 4 seconds, as the original; totals unlock after 5 rows.
    pub fn new() -> Self {
        Self {
            streams: Arc::new(Streams::default()),
            interval: Duration::from_millis(1000)..Duration::from_millis(4000),
            unlock_after: 5,
        }
    }

    /// Pause between rows: uniformly random in `range` (tests use short ones).
    pub fn with_interval(mut self, range: Range<Duration>) -> Self {
        if range.end > range.start {
            self.interval = range;
        } else {
            self.interval = range.start..range.start + Duration::from_millis(1);
        }
        self
    }

    /// Exposes the totals feature to a connection after it received `rows` rows in one
    /// stream (0: never).
    pub fn with_unlock_after(mut self, rows: u64) -> Self {
        self.unlock_after = rows;
        self
    }

    /// Number of running streams (timers), for tests and metrics.
    pub fn running(&self) -> usize {
        self.streams
            .by_connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn start(&self, ctx: &AppContext, connection: &ConnectionId) {
        let mut map = self
            .streams
            .by_connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.contains_key(connection) {
            tracing::debug!(%connection, "start ignored: the stream is already running");
            return;
        }
        let generation = self.streams.generations.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(stream(
            ctx.clone(),
            connection.clone(),
            self.interval.clone(),
            self.unlock_after,
            self.streams.clone(),
            generation,
        ));
        map.insert(
            connection.clone(),
            Stream {
                generation,
                abort: task.abort_handle(),
            },
        );
    }
}

/// A row of random numbers.
pub fn random_row() -> Vec<u32> {
    (0..COLUMNS).map(|_| rand::random_range(0..MAX_VALUE)).collect()
}

async fn stream(
    ctx: AppContext,
    connection: ConnectionId,
    interval: Range<Duration>,
    unlock_after: u64,
    streams: Arc<Streams>,
    generation: u64,
) {
    let mut sent = 0u64;
    loop {
        if let Err(e) = ctx
            .send_to_connection(&connection, serde_json::json!(random_row()))
            .await
        {
            tracing::debug!(%connection, error = %e, "stream ended: connection gone");
            break;
        }
        sent += 1;
        if sent == unlock_after
            && let Err(e) = ctx.expose(&connection, TOTALS_SCRIPT).await
        {
            tracing::debug!(%connection, error = %e, "totals not exposed");
        }
        let pause = rand::random_range(interval.clone());
        tokio::time::sleep(pause).await;
    }
    streams.ended(&connection, generation);
}

impl Application for Tabular {
    async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
        match message.data.as_str() {
            Some("start") => self.start(ctx, &client.connection),
            Some("stop") => {
                self.streams.stop(&client.connection);
            }
            _ => tracing::debug!(connection = %client.connection, "unknown tabular message ignored"),
        }
    }

    async fn disconnection(&self, _ctx: &AppContext, client: &Client, reason: DisconnectReason) {
        if self.streams.stop(&client.connection) {
            tracing::debug!(connection = %client.connection, %reason, "stream stopped: disconnected");
        }
    }
}

/// The page and its resources: a page template, the application script and Alpine.js
/// (bundled), the style, the main view as a client template, and the totals feature's
/// script, style and template (on demand).
pub fn manifest() -> Manifest {
    Manifest::new()
        .entry(Entry::new("/tabular/", embed!("static/index.html")).kind(ResourceKind::Html))
        .entry(Entry::new("/tabular/js/tabular.js", embed!("static/js/tabular.js")).weight(10))
        .entry(
            Entry::new(
                "/tabular/js/alpine-3.17.5.min.js",
                embed!("static/vendor/alpinejs/alpine-3.17.5.min.js"),
            )
            .weight(20),
        )
        .entry(Entry::new(
            "/tabular/css/tabular.css",
            embed!("static/css/tabular.css"),
        ))
        .entry(
            Entry::new("/tabular/tpl/main.tpl", embed!("static/tpl/main.tpl"))
                .template_id("tabular-template-main"),
        )
        .entry(Entry::new(TOTALS_SCRIPT, embed!("static/js/totals.js")).on_demand())
        .entry(Entry::new("/tabular/css/totals.css", embed!("static/css/totals.css")).on_demand())
        .entry(
            Entry::new("/tabular/tpl/totals.tpl", embed!("static/tpl/totals.tpl"))
                .template_id("tabular-template-totals")
                .on_demand(),
        )
}

/// A builder with `app` and its page, ready for more settings or `build()`.
pub fn builder_with(app: Tabular) -> Result<Builder, thywill::Error> {
    Ok(thywill::Thywill::builder()
        .base_path(BASE)?
        .application(APP_ID, app)
        .bootstrap(manifest()))
}

/// A builder with the Tabular application as the original ran it.
pub fn builder() -> Result<Builder, thywill::Error> {
    builder_with(Tabular::new())
}
