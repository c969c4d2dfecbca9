//! [`NatsBackend`]: the NATS backend as one bundle.

use std::sync::Arc;

use thywill_core::{Backend, BackendParts, Cluster, CoreResult};

use crate::{NatsCluster, NatsClusterConfig};

/// The NATS backend as one bundle, installed by one builder call
/// (`Thywill::builder().backend(NatsBackend::new(config)?)`): a [`NatsCluster`], with the
/// framework's cluster-wide client tracker (which the node builder wires over it).
///
/// It shares no store: replay histories stay on each member (a client recovers what it missed
/// on the member it was connected to), and a node with sessions on refuses to start on more
/// than one member until it is given a shared session store and channel manager.
///
/// ```no_run
/// # fn run() -> Result<(), thywill_nats_example::Error> {
/// use thywill_nats_example::{NatsBackend, NatsClusterConfig};
///
/// let backend = NatsBackend::new(
///     NatsClusterConfig::default()
///         .with_url("nats://127.0.0.1:4222")?
///         .with_members(["alpha", "beta", "gamma"])?
///         .with_local("alpha")?,
/// );
/// // Thywill::builder().backend(backend)
/// # let _ = backend; Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct NatsBackend {
    cluster: Arc<NatsCluster>,
}

impl NatsBackend {
    /// The backend with these settings; it connects when the node is built.
    pub fn new(config: NatsClusterConfig) -> Self {
        Self {
            cluster: Arc::new(NatsCluster::new(config)),
        }
    }

    /// The cluster (to watch its gaps or health).
    pub fn cluster(&self) -> &Arc<NatsCluster> {
        &self.cluster
    }
}

impl Backend for NatsBackend {
    async fn connect(self) -> CoreResult<BackendParts> {
        let cluster: Arc<dyn Cluster> = self.cluster;
        Ok(BackendParts::from_arc("nats", cluster))
    }
}
