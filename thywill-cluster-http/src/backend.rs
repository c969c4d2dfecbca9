//! [`HttpBackend`]: the HTTP backend as one bundle.

use std::sync::Arc;

use thywill_core::{Backend, BackendParts, CoreResult, DynCluster};

use crate::{Error, HttpCluster, HttpClusterConfig};

/// The HTTP backend as one bundle (`Thywill::builder().backend(HttpBackend::new(config)?)`): an
/// [`HttpCluster`] with the cluster-wide client tracker (which the node builder wires).
///
/// It shares no store: replay histories stay on each member (a client recovers what it missed
/// on the member it was connected to), and a node with sessions on refuses to start on more
/// than one member until it is given a shared session store and channel manager (such as
/// `thywill-cluster-redis`'s `RedisSessions` and `RedisChannels`, through the builder's
/// `session_store` and `channels`).
///
/// ```no_run
/// # fn run() -> Result<(), thywill_cluster_http::Error> {
/// use thywill_cluster_http::{HttpBackend, HttpClusterConfig};
///
/// let backend = HttpBackend::new(
///     HttpClusterConfig::default()
///         .with_members_str("alpha=127.0.0.1:20091,beta=127.0.0.1:20092")?
///         .with_local("alpha")?
///         .with_secret(b"a cluster secret of at least 32 bytes".to_vec())?,
/// )?;
/// // Thywill::builder().backend(backend)
/// # let _ = backend; Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct HttpBackend {
    cluster: Arc<HttpCluster>,
}

impl HttpBackend {
    /// The backend with these settings (see [`HttpCluster::new`]).
    pub fn new(config: HttpClusterConfig) -> Result<Self, Error> {
        Ok(Self {
            cluster: Arc::new(HttpCluster::new(config)?),
        })
    }

    /// The cluster (to watch its gaps or health).
    pub fn cluster(&self) -> &Arc<HttpCluster> {
        &self.cluster
    }
}

impl Backend for HttpBackend {
    async fn connect(self) -> CoreResult<BackendParts> {
        let cluster: Arc<dyn DynCluster> = self.cluster;
        Ok(BackendParts::from_arc("http", cluster))
    }
}
