//! The Calculations application: the browser calls typed server functions by RPC.
//!
//! The application only offers functions; it ignores ordinary messages, as the original did.
//! Its registry is also the source of the TypeScript declarations served at
//! `/calculations/rpc.d.ts`.
//!
//! The two asynchronous functions (the original's callback-style ones, standing for slow work)
//! are memoized in the node's named cache [`RESULTS_CACHE`]: each member keeps its own copies
//! by default, and a result stored on one member evicts that key on the others (or, with
//! `[cache] backend = "redis"`, every member reads one copy in Redis). `memo.isCached` tells
//! whether the member holds a result.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use thywill::resources::embed;
use thywill::rpc::Registry;
use thywill::{
    AppContext, Application, Builder, Cache, CacheLimits, Client, CoreError, Entry, Manifest, Message,
    Resource, ResourceKind, RpcHandler,
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

/// Name of the node's cache of memoized results.
pub const RESULTS_CACHE: &str = "calculations.results";

/// The memo of results: the cache [`RESULTS_CACHE`], once the application's `setup` created
/// it (before that, nothing is memoized). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Memo(Arc<OnceLock<Cache>>);

impl Memo {
    /// The key of `function(x)`: exact for every `f64`.
    fn key(function: &str, x: f64) -> String {
        format!("{function}:{:016x}", x.to_bits())
    }

    /// The memoized result of `function(x)`, or `compute(x)`, memoized. A cache that fails
    /// costs the memo, never the answer.
    async fn result(&self, function: &str, x: f64, compute: impl FnOnce(f64) -> Option<f64>) -> Option<f64> {
        let Some(cache) = self.0.get() else {
            return compute(x);
        };
        let key = Self::key(function, x);
        match cache.get::<Option<f64>>(&key).await {
            Ok(Some(result)) => return result,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "memoized result not read"),
        }
        let result = compute(x);
        if let Err(e) = cache.set(&key, &result).await {
            tracing::warn!(error = %e, "result not memoized");
        }
        result
    }

    /// Whether this member holds the result of `function(x)`.
    pub async fn is_cached(&self, function: &str, x: f64) -> Result<bool, CoreError> {
        match self.0.get() {
            Some(cache) => Ok(cache.get_bytes(&Self::key(function, x)).await?.is_some()),
            None => Ok(false),
        }
    }
}

/// The four functions of the original — two synchronous, two asynchronous (the original's
/// callback-style functions, memoized in `memo`) — and `memo.isCached(function, x)`.
pub fn registry(memo: Memo) -> Result<Registry, thywill::rpc::RpcBuildError> {
    let (halve, root, cached) = (memo.clone(), memo.clone(), memo);
    Registry::builder()
        .function("multiplicative.multiplyByTwo", |x: f64| finite(x * 2.0))
        .async_function("multiplicative.divideByTwo", move |x: f64| {
            let memo = halve.clone();
            async move {
                let result = memo
                    .result("multiplicative.divideByTwo", x, |x| finite(x / 2.0))
                    .await;
                Ok::<_, Infallible>(result)
            }
        })
        .function("powers.square", |x: f64| finite(x * x))
        .async_function("powers.squareRoot", move |x: f64| {
            let memo = root.clone();
            async move {
                let result = memo.result("powers.squareRoot", x, |x| finite(x.sqrt())).await;
                Ok::<_, Infallible>(result)
            }
        })
        .async_function("memo.isCached", move |function: String, x: f64| {
            let memo = cached.clone();
            async move { memo.is_cached(&function, x).await }
        })
        .typescript_interface(TYPESCRIPT_INTERFACE)
        .build()
}

/// The calculations application: remote procedures and nothing else.
#[derive(Debug, Clone)]
pub struct Calculations {
    registry: Registry,
    memo: Memo,
}

impl Calculations {
    /// The application with its functions.
    pub fn new() -> Result<Self, thywill::rpc::RpcBuildError> {
        let memo = Memo::default();
        Ok(Self {
            registry: registry(memo.clone())?,
            memo,
        })
    }

    /// The functions it offers.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Application for Calculations {
    /// Creates the cache of results: 1,000 results, 64 KiB.
    async fn setup(&self, ctx: &AppContext) -> thywill::core::CoreResult<()> {
        let cache = ctx
            .create_cache(RESULTS_CACHE, CacheLimits::new(1_000, 64 * 1024)?)
            .await?;
        let _ = self.memo.0.set(cache);
        Ok(())
    }

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
