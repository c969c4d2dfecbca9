//! The Calculations application: the browser calls typed server functions by RPC.
//!
//! The application only offers functions; it ignores ordinary messages, as the original did.
//! Its registry is also the source of the TypeScript declarations served at
//! `/calculations/rpc.d.ts`.

use std::convert::Infallible;

use thywill::resources::embed;
use thywill::rpc::Registry;
use thywill::{
    AppContext, Application, Builder, Client, Entry, Manifest, Message, Resource, ResourceKind, RpcHandler,
};

/// Application id of the calculations application.
pub const APP_ID: &str = "calculations";
/// Base path the example is served under.
pub const BASE: &str = "/calculations";
/// Default port (the original's).
pub const DEFAULT_PORT: u16 = 10082;
/// Name of the generated TypeScript interface of the functions.
pub const TYPESCRIPT_INTERFACE: &str = "CalculationsRpc";
/// Where the generated TypeScript declarations are served.
pub const TYPESCRIPT_PATH: &str = "/calculations/rpc.d.ts";

/// A result as sent to the browser: `None` (JSON `null`) when it is not a finite number, such
/// as the square root of a negative number. The page shows "Invalid calculation." for it.
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// The four functions of the original: two synchronous, two asynchronous (the original's
/// callback-style functions).
pub fn registry() -> Result<Registry, thywill::rpc::RpcBuildError> {
    Registry::builder()
        .function("multiplicative.multiplyByTwo", |x: f64| finite(x * 2.0))
        .async_function("multiplicative.divideByTwo", |x: f64| async move {
            Ok::<_, Infallible>(finite(x / 2.0))
        })
        .function("powers.square", |x: f64| finite(x * x))
        .async_function("powers.squareRoot", |x: f64| async move {
            Ok::<_, Infallible>(finite(x.sqrt()))
        })
        .typescript_interface(TYPESCRIPT_INTERFACE)
        .build()
}

/// The calculations application: remote procedures and nothing else.
#[derive(Debug, Clone)]
pub struct Calculations {
    registry: Registry,
}

impl Calculations {
    /// The application with its functions.
    pub fn new() -> Result<Self, thywill::rpc::RpcBuildError> {
        Ok(Self {
            registry: registry()?,
        })
    }

    /// The functions it offers.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Application for Calculations {
    async fn received(&self, _ctx: &AppContext, client: &Client, _message: Message) {
        // This application only uses RPC; calls and their replies never arrive here.
        tracing::debug!(connection = %client.connection, "ignored a message");
    }

    fn rpc(&self) -> Option<&dyn RpcHandler> {
        Some(&self.registry)
    }
}

/// A builder with the calculations application, its page and the TypeScript declarations of
/// its functions, ready for more settings or `build()`.
pub fn builder() -> anyhow::Result<Builder> {
    let app = Calculations::new()?;
    let declarations = app.registry().typescript_declarations();
    Ok(thywill::Thywill::builder()
        .base_path(BASE)?
        .application(APP_ID, app)
        .bootstrap(manifest())
        .resource(Resource::new(TYPESCRIPT_PATH, declarations)))
}

/// The page (a template with the bootstrap slots), its script and its style: served as one
/// page, one minified script bundle (client library first) and one minified CSS bundle.
pub fn manifest() -> Manifest {
    Manifest::new()
        .entry(Entry::new("/calculations/", embed!("static/index.html")).kind(ResourceKind::Html))
        .entry(
            Entry::new(
                "/calculations/js/calculations.js",
                embed!("static/calculations.js"),
            )
            .weight(10),
        )
        .entry(Entry::new(
            "/calculations/css/calculations.css",
            embed!("static/calculations.css"),
        ))
}
