//! CPU-heavy work (minification, compression) off the async runtime's worker threads.

use thywill_core::CoreError;

/// Runs `work` on tokio's blocking pool when called inside a tokio runtime, so that the
/// runtime's worker threads keep serving other tasks meanwhile; on the calling thread when
/// there is no runtime. A panic in `work` resumes in the caller, as it would inline; work
/// cancelled because the runtime is shutting down is [`CoreError::ShuttingDown`].
pub(crate) async fn run<T, F>(work: F) -> Result<T, CoreError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return Ok(work());
    };
    match handle.spawn_blocking(work).await {
        Ok(done) => Ok(done),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(CoreError::ShuttingDown),
    }
}
