//! The Echo application: every message a browser sends comes back to it.

use thywill::resources::embed;
use thywill::{AppContext, Application, Builder, Client, Entry, Manifest, Message, ResourceKind};

/// Application id of the echo application.
pub const APP_ID: &str = "echo";
/// Base path the example is served under.
pub const BASE: &str = "/echo";
/// Default port (the original's).
pub const DEFAULT_PORT: u16 = 10081;

/// Sends every message back to the connection it came from, metadata included.
#[derive(Debug, Default)]
pub struct Echo;

impl Application for Echo {
    async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
        if let Err(e) = ctx.send_to_connection(&client.connection, message).await {
            tracing::warn!(connection = %client.connection, error = %e, "echo reply not sent");
        }
    }
}

/// The page (a template with the bootstrap slots), its script and its style: served as one
/// page, one minified script bundle (client library first) and one minified CSS bundle.
pub fn manifest() -> Manifest {
    Manifest::new()
        .entry(Entry::new("/echo/", embed!("static/index.html")).kind(ResourceKind::Html))
        .entry(Entry::new("/echo/js/echo.js", embed!("static/echo.js")).weight(10))
        .entry(example_support::example_css("/echo"))
        .entry(Entry::new("/echo/css/echo.css", embed!("static/echo.css")))
}

/// A builder with the echo application and its page, ready for more settings or `build()`.
pub fn builder() -> Result<Builder, thywill::Error> {
    Ok(thywill::Thywill::builder()
        .base_path(BASE)?
        .application(APP_ID, Echo)
        .bootstrap(manifest()))
}
