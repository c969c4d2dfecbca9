//! [`PreparedStore`]: a [`ResourceManager`] wrapper that sends everything stored through the
//! [`Pipeline`] (minified, ETag, precompressed variants), so that resources an application adds
//! while running are served exactly like the bootstrap set.

use std::sync::Arc;

use thywill_core::{CoreError, CoreResult, DynResourceManager, Resource, ResourceManager, attr};

use crate::Pipeline;

/// The content codings variants are made in.
const CODINGS: [&str; 2] = ["br", "gzip"];

/// Wraps any resource store: `store` minifies scripts and styles (a syntax error is an error
/// naming file, line and column), sets the ETag and stores brotli and gzip variants;
/// `remove` removes the variants too. Loads go straight to the inner store.
///
/// Minification and compression run on tokio's blocking pool (on the calling thread outside
/// a tokio runtime): stores of large scripts take a few milliseconds (release) to a few
/// hundred (debug builds), during which the runtime's worker threads keep serving.
#[derive(Clone)]
pub struct PreparedStore {
    inner: Arc<dyn DynResourceManager>,
    pipeline: Pipeline,
}

impl std::fmt::Debug for PreparedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedStore")
            .field("pipeline", &self.pipeline)
            .finish_non_exhaustive()
    }
}

impl PreparedStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn DynResourceManager>, pipeline: Pipeline) -> Self {
        Self { inner, pipeline }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn DynResourceManager> {
        &self.inner
    }

    /// The pipeline resources go through.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }
}

impl ResourceManager for PreparedStore {
    async fn store(&self, resource: Resource) -> CoreResult<()> {
        // A variant stored directly (another member's pipeline output) passes as is.
        if resource.attribute(attr::CONTENT_ENCODING).is_some() {
            return self.inner.store(resource).await;
        }
        let pipeline = self.pipeline.clone();
        let (main, variants) = crate::blocking::run(move || {
            pipeline
                .prepare(resource)
                .map(|prepared| pipeline.finish(prepared))
        })
        .await?
        .map_err(CoreError::from)?;
        for coding in CODINGS {
            if !variants
                .iter()
                .any(|v| v.attribute(attr::CONTENT_ENCODING) == Some(coding))
            {
                self.inner
                    .remove(&Resource::variant_key(&main.client_path, coding))
                    .await?;
            }
        }
        // Variants first: a reader that sees the new resource finds its variants.
        for v in variants {
            self.inner.store(v).await?;
        }
        self.inner.store(main).await
    }

    async fn load(&self, client_path: &str) -> CoreResult<Option<Resource>> {
        self.inner.load(client_path).await
    }

    async fn remove(&self, client_path: &str) -> CoreResult<()> {
        self.inner.remove(client_path).await?;
        for coding in CODINGS {
            self.inner
                .remove(&Resource::variant_key(client_path, coding))
                .await?;
        }
        Ok(())
    }

    async fn bootstrap(&self) -> CoreResult<Vec<Resource>> {
        self.inner.bootstrap().await
    }
}
