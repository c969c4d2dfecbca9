//! The edge's metrics in the Prometheus (OpenMetrics) text format, served at
//! `<base>/metrics` followed by the node's ([`Gateway::encode_metrics`]).
//!
//! One [`Metrics`] per edge, registered in its own registry (no global state): sockets,
//! connections, bytes and the connections' outbound queues. What the node routes, runs and
//! replays, and the cluster's figures, are the node's.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use thywill_core::edge::Gateway;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub(crate) reason: String,
}

/// The counters of one edge.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) connections: Gauge,
    pub(crate) opened: Counter,
    pub(crate) closed: Family<ReasonLabel, Counter>,
    pub(crate) bytes_in: Counter,
    pub(crate) bytes_out: Counter,
    pub(crate) queue_drops: Counter,
    pub(crate) slow_consumers: Counter,
    pub(crate) sockets: Gauge,
    pub(crate) sockets_refused: Counter,
    pub(crate) accept_errors: Counter,
    pub(crate) panics: Counter,
}

impl Metrics {
    pub(crate) fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("thywill");
        let m = Metrics {
            connections: Gauge::default(),
            opened: Counter::default(),
            closed: Family::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            queue_drops: Counter::default(),
            slow_consumers: Counter::default(),
            sockets: Gauge::default(),
            sockets_refused: Counter::default(),
            accept_errors: Counter::default(),
            panics: Counter::default(),
            registry: Registry::default(),
        };
        m.register_families(&mut registry);
        Arc::new(Metrics { registry, ..m })
    }

    /// Registers the edge's metrics (clones sharing their values) in `registry`.
    fn register_families(&self, registry: &mut Registry) {
        registry.register(
            "connections",
            "Open WebSocket connections",
            self.connections.clone(),
        );
        registry.register(
            "sockets",
            "Open TCP connections of the node's own listeners (HTTP and WebSocket)",
            self.sockets.clone(),
        );
        registry.register(
            "sockets_refused",
            "TCP connections closed at once because the socket cap was reached",
            self.sockets_refused.clone(),
        );
        registry.register(
            "accept_errors",
            "Failed accepts (such as running out of file descriptors)",
            self.accept_errors.clone(),
        );
        registry.register(
            "io_panics",
            "Panics caught in connection IO tasks (the node counts those of application code)",
            self.panics.clone(),
        );
        registry.register(
            "connections_opened",
            "WebSocket connections opened",
            self.opened.clone(),
        );
        registry.register(
            "connections_closed",
            "WebSocket connections closed, by reason",
            self.closed.clone(),
        );
        registry.register(
            "bytes_in",
            "Bytes of text frames received from clients",
            self.bytes_in.clone(),
        );
        registry.register(
            "bytes_out",
            "Bytes of frames written to clients",
            self.bytes_out.clone(),
        );
        registry.register(
            "outbound_queue_drops",
            "Frames refused by a full outbound queue",
            self.queue_drops.clone(),
        );
        registry.register(
            "slow_consumers",
            "Connections cut off as slow consumers",
            self.slow_consumers.clone(),
        );
    }

    /// Registers the edge's metrics in an application's `registry`, under the `thywill_`
    /// prefix (see [`Edge::register_metrics`](crate::Edge::register_metrics)).
    pub(crate) fn register(&self, registry: &mut Registry) {
        self.register_families(registry.sub_registry_with_prefix("thywill"));
    }

    /// Renders the text exposition: the edge's metrics, then the node's.
    pub(crate) fn render(&self, node: &dyn Gateway) -> String {
        let mut out = String::new();
        let encoded = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        node.encode_metrics(&mut out);
        if encoded
            .and_then(|()| prometheus_client::encoding::text::encode_eof(&mut out))
            .is_err()
        {
            tracing::error!("metrics encoding failed");
        }
        out
    }
}
