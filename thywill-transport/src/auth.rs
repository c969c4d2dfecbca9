//! The application's authentication hook, run on a WebSocket handshake before the upgrade.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use thywill_core::{BoxFuture, Identity, Refusal};
use warp::http::request::Parts;

/// The parts of the upgrade request an authentication hook sees (`http::request::Parts`):
/// method, URI with its query, headers with their cookies.
pub type RequestParts = Parts;

/// What an authentication hook answers: the connection's identity (`None`: let it in
/// anonymously), or a refusal answered before the upgrade.
pub type AuthResult = Result<Option<Identity>, Refusal>;

type Hook = dyn Fn(&Parts) -> BoxFuture<'static, AuthResult> + Send + Sync;

/// An application's authentication hook ([`TransportConfig::with_authenticator`]): an async
/// function of the upgrade request's parts (method, URI with its query, headers with their
/// cookies). Its future owns what it needs of the parts (clone the header it reads), so it
/// may outlive the borrow.
///
/// [`TransportConfig::with_authenticator`]: crate::TransportConfig::with_authenticator
#[derive(Clone)]
pub struct Authenticator(Arc<Hook>);

impl Authenticator {
    /// Wraps `hook`.
    pub fn new<F, Fut>(hook: F) -> Self
    where
        F: Fn(&Parts) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = AuthResult> + Send + 'static,
    {
        Self(Arc::new(move |parts: &Parts| -> BoxFuture<'static, AuthResult> {
            Box::pin(hook(parts))
        }))
    }

    /// Runs the hook on `parts` within `timeout`: a hook that takes longer, or panics, refuses
    /// with 503 (the client may retry).
    pub(crate) async fn authenticate(&self, parts: &Parts, timeout: Duration) -> AuthResult {
        let running = std::panic::AssertUnwindSafe((self.0)(parts)).catch_unwind();
        match tokio::time::timeout(timeout, running).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_panic)) => {
                tracing::error!("the authentication hook panicked");
                Err(Refusal::unavailable("authentication failed"))
            }
            Err(_elapsed) => {
                tracing::warn!(
                    ?timeout,
                    "the authentication hook took longer than the handshake timeout"
                );
                Err(Refusal::unavailable("authentication timed out"))
            }
        }
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator(..)")
    }
}
