//! The Echo application: every message a browser sends comes back to it.

use thywill::{AppContext, Application, Builder, Client, Message, Resource, ResourceKind};

/// Application id of the echo application.
pub const APP_ID: &str = "echo";
/// Base path the example is served under.
pub const BASE: &str = "/echo";
/// Default port (the original's).
pub const DEFAULT_PORT: u16 = 10080;

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

/// A builder with the echo application and its page, ready for more settings or `build()`.
pub fn builder() -> Result<Builder, thywill::Error> {
    Ok(thywill::Thywill::builder()
        .base_path(BASE)?
        .application(APP_ID, Echo)
        .resource(Resource::new("/echo/", include_str!("../static/index.html")).with_kind(ResourceKind::Html))
        .resource(Resource::new("/echo/js/echo.js", include_str!("../static/echo.js")))
        .resource(Resource::new("/echo/css/echo.css", include_str!("../static/echo.css"))))
}
