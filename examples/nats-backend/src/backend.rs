//! [`NatsBackend`]: the NATS backend as one bundle.

use std::sync::Arc;

use thywill_core::{Backend, BackendParts, CoreResult, DynCluster, HistoryLimits};

use crate::{NatsCluster, NatsClusterConfig, NatsHistory};

/// The NATS backend as one bundle, installed by one builder call
/// (`Thywill::builder().backend(NatsBackend::new(config)?)`): a [`NatsCluster`], with the
/// framework's cluster-wide client tracker (which the node builder wires over it).
///
/// By default it shares no store: replay histories stay on each member (a client recovers what
/// it missed on the member it was connected to). [`with_jetstream_history`](Self::with_jetstream_history)
/// adds a [`NatsHistory`] in JetStream shared by the members, so that a client recovers on any
/// member. A node with sessions on refuses to start on more than one member until it is given a
/// shared session store and channel manager.
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
    /// The shared history's limits and storage (in memory: true), when asked for.
    history: Option<(HistoryLimits, bool)>,
}

impl NatsBackend {
    /// The backend with these settings; it connects when the node is built.
    pub fn new(config: NatsClusterConfig) -> Self {
        Self {
            cluster: Arc::new(NatsCluster::new(config)),
            history: None,
        }
    }

    /// Adds the replay history in JetStream ([`NatsHistory`], on the same server and under the
    /// same cluster name), shared by the members, with these limits per stream; kept in files
    /// (`memory`: false, surviving a server restart) or in the server's memory. The server must
    /// run with JetStream on (`nats-server --jetstream`).
    pub fn with_jetstream_history(mut self, limits: HistoryLimits, memory: bool) -> Self {
        self.history = Some((limits, memory));
        self
    }

    /// The cluster (to watch its gaps or health).
    pub fn cluster(&self) -> &Arc<NatsCluster> {
        &self.cluster
    }
}

impl Backend for NatsBackend {
    async fn connect(self) -> CoreResult<BackendParts> {
        let history = match self.history {
            Some((limits, memory)) => {
                let config = self.cluster.config();
                Some(NatsHistory::connect(config.url(), config.cluster(), limits, memory).await?)
            }
            None => None,
        };
        let cluster: Arc<dyn DynCluster> = self.cluster;
        let parts = BackendParts::from_arc("nats", cluster);
        Ok(match history {
            Some(h) => parts.with_history(h),
            None => parts,
        })
    }
}
