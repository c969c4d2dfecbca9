//! Node metrics in the Prometheus (OpenMetrics) text format, served by the edge at
//! `<base>/metrics` after its own.
//!
//! One [`Metrics`] per node, registered in its own registry (no global state). The node counts
//! what it routes, runs and replays; cluster figures are read from the
//! [`Cluster`](thywill_core::Cluster) when the page is rendered. Sockets, connections and
//! bytes are the edge's.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use thywill_core::{DynCluster, MemberStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AppLabel {
    pub(crate) app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub(crate) reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub(crate) outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MemberLabel {
    pub(crate) member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DirectionLabel {
    pub(crate) direction: String,
}

const MEMBER_UP: &str = "1 if the member is up, 0 if not";
const HEALTHY: &str = "1 while the cluster link works";
const RECONNECTS: &str = "Reconnections of the cluster backend (for example to Redis)";

fn rpc_latency() -> Histogram {
    // 100 µs .. ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The counters of one node.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) messages_in: Family<AppLabel, Counter>,
    pub(crate) messages_out: Family<AppLabel, Counter>,
    pub(crate) rpc_calls: Family<OutcomeLabel, Counter>,
    pub(crate) rpc_seconds: Family<AppLabel, Histogram, fn() -> Histogram>,
    pub(crate) cluster_tasks: Family<DirectionLabel, Counter>,
    pub(crate) cluster_gaps: Counter,
    /// Cluster tasks dropped, by reason (see `crate::tasks`).
    pub(crate) cluster_tasks_dropped: Family<ReasonLabel, Counter>,
    /// Application hooks dropped because the hook queue was full, by kind (see `crate::queues`).
    pub(crate) hooks_dropped: Family<ReasonLabel, Counter>,
    pub(crate) history_failures: Counter,
    pub(crate) replayed: Counter,
    pub(crate) continuity_lost: Counter,
    pub(crate) duplicates_dropped: Counter,
    pub(crate) panics: Counter,
    /// Connection workers running (a connection has one only while it has work).
    pub(crate) connection_workers: Gauge,
    member_up: Family<MemberLabel, Gauge>,
    cluster_healthy: Gauge,
    cluster_reconnects: Gauge,
}

/// The per-application counters, looked up once per application instead of once per message.
#[derive(Clone, Debug)]
pub(crate) struct AppCounters {
    pub(crate) messages_in: Counter,
    pub(crate) messages_out: Counter,
}

impl Metrics {
    /// Counts (and logs) an application hook of `kind` dropped because its queue was full.
    pub(crate) fn hook_dropped(&self, kind: &str) {
        self.hooks_dropped
            .get_or_create(&ReasonLabel {
                reason: kind.to_owned(),
            })
            .inc();
        tracing::warn!(kind, "hook queue full: hook dropped");
    }

    /// Counts a cluster task dropped for `reason`.
    pub(crate) fn task_dropped(&self, reason: &str) {
        self.cluster_tasks_dropped
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Handles on an application's counters (they share state with the registry's).
    pub(crate) fn app_counters(&self, app: &str) -> AppCounters {
        let label = AppLabel { app: app.to_owned() };
        AppCounters {
            messages_in: self.messages_in.get_or_create(&label).clone(),
            messages_out: self.messages_out.get_or_create(&label).clone(),
        }
    }

    pub(crate) fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("thywill");
        let m = Metrics {
            messages_in: Family::default(),
            messages_out: Family::default(),
            rpc_calls: Family::default(),
            rpc_seconds: Family::new_with_constructor(rpc_latency as fn() -> Histogram),
            cluster_tasks: Family::default(),
            cluster_gaps: Counter::default(),
            cluster_tasks_dropped: Family::default(),
            hooks_dropped: Family::default(),
            history_failures: Counter::default(),
            replayed: Counter::default(),
            continuity_lost: Counter::default(),
            duplicates_dropped: Counter::default(),
            panics: Counter::default(),
            connection_workers: Gauge::default(),
            member_up: Family::default(),
            cluster_healthy: Gauge::default(),
            cluster_reconnects: Gauge::default(),
            registry: Registry::default(),
        };
        m.register_families(&mut registry);
        registry.register("cluster_member_up", MEMBER_UP, m.member_up.clone());
        registry.register("cluster_healthy", HEALTHY, m.cluster_healthy.clone());
        registry.register("cluster_reconnects", RECONNECTS, m.cluster_reconnects.clone());
        Arc::new(Metrics { registry, ..m })
    }

    /// Registers the node's counters and histograms (clones sharing their values) in
    /// `registry`: the families of [`Node::register_metrics`](crate::Node::register_metrics)
    /// and of the node's own page, but the cluster figures.
    fn register_families(&self, registry: &mut Registry) {
        registry.register(
            "panics",
            "Panics caught in application hooks, connection workers and RPC calls",
            self.panics.clone(),
        );
        registry.register(
            "connection_workers",
            "Connection workers running: a connection has one only while it has client frames \
             to handle (it parks after a second or two without any)",
            self.connection_workers.clone(),
        );
        registry.register(
            "messages_in",
            "Application messages received from clients",
            self.messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "Application messages queued to clients",
            self.messages_out.clone(),
        );
        registry.register(
            "rpc_calls",
            "RPC calls by outcome (ok or error code)",
            self.rpc_calls.clone(),
        );
        registry.register(
            "rpc_duration_seconds",
            "RPC call latency",
            self.rpc_seconds.clone(),
        );
        registry.register(
            "cluster_tasks",
            "Cluster tasks by direction (in, out)",
            self.cluster_tasks.clone(),
        );
        registry.register(
            "cluster_gaps",
            "Gaps detected in member-to-member traffic",
            self.cluster_gaps.clone(),
        );
        registry.register(
            "cluster_tasks_dropped",
            "Cluster tasks dropped by reason (unknown: no handler for the name; undecodable; \
             unknown_app: an application this member does not serve; queue_full: the \
             application's task queue was full)",
            self.cluster_tasks_dropped.clone(),
        );
        registry.register(
            "hooks_dropped",
            "Application hooks dropped because the node's hook queue was full, by kind (tracker, \
             channel_sessions); a member's status changes are never dropped",
            self.hooks_dropped.clone(),
        );
        registry.register(
            "history_failures",
            "Stream messages not sent because the history could not log them in time",
            self.history_failures.clone(),
        );
        registry.register(
            "replayed_messages",
            "Messages replayed to reconnecting clients",
            self.replayed.clone(),
        );
        registry.register(
            "continuity_lost",
            "Streams a client could not resume (gap no longer in the history)",
            self.continuity_lost.clone(),
        );
        registry.register(
            "duplicate_client_messages",
            "Client messages dropped because their id was processed already",
            self.duplicates_dropped.clone(),
        );
    }

    /// Registers the node's metrics in an application's `registry` (under the `thywill_`
    /// prefix): the counters share their values with the node's, and the cluster figures are
    /// read from `cluster` whenever the registry is encoded.
    pub(crate) fn register(&self, registry: &mut Registry, cluster: Arc<dyn DynCluster>) {
        let registry = registry.sub_registry_with_prefix("thywill");
        self.register_families(registry);
        registry.register_collector(Box::new(ClusterFigures {
            member_up: self.member_up.clone(),
            cluster_healthy: self.cluster_healthy.clone(),
            cluster_reconnects: self.cluster_reconnects.clone(),
            cluster,
        }));
    }

    /// Reads the cluster figures from `cluster`.
    fn refresh(&self, cluster: &dyn DynCluster) {
        refresh(
            &self.member_up,
            &self.cluster_healthy,
            &self.cluster_reconnects,
            cluster,
        );
    }

    /// Renders the text exposition, refreshing the cluster figures first.
    pub(crate) fn render(&self, cluster: &dyn DynCluster) -> String {
        let mut out = String::new();
        self.encode(cluster, &mut out);
        if prometheus_client::encoding::text::encode_eof(&mut out).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }

    /// Appends the metrics to `out` without the final `# EOF`, refreshing the cluster figures
    /// first.
    pub(crate) fn encode(&self, cluster: &dyn DynCluster, out: &mut String) {
        self.refresh(cluster);
        if prometheus_client::encoding::text::encode_registry(out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
    }
}

fn refresh(
    member_up: &Family<MemberLabel, Gauge>,
    healthy: &Gauge,
    reconnects: &Gauge,
    cluster: &dyn DynCluster,
) {
    for member in cluster.members() {
        let up = i64::from(cluster.status(&member) == MemberStatus::Up);
        member_up
            .get_or_create(&MemberLabel {
                member: member.to_string(),
            })
            .set(up);
    }
    healthy.set(i64::from(cluster.is_healthy()));
    let stats = cluster.stats();
    reconnects.set(i64::try_from(stats.reconnects).unwrap_or(i64::MAX));
}

/// The cluster figures in an application's registry, read from the cluster at every encoding.
struct ClusterFigures {
    member_up: Family<MemberLabel, Gauge>,
    cluster_healthy: Gauge,
    cluster_reconnects: Gauge,
    cluster: Arc<dyn DynCluster>,
}

impl std::fmt::Debug for ClusterFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterFigures").finish_non_exhaustive()
    }
}

impl Collector for ClusterFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        refresh(
            &self.member_up,
            &self.cluster_healthy,
            &self.cluster_reconnects,
            self.cluster.as_ref(),
        );
        for (name, help, metric) in [
            (
                "cluster_member_up",
                MEMBER_UP,
                &self.member_up as &dyn EncodeMetric,
            ),
            ("cluster_healthy", HEALTHY, &self.cluster_healthy),
            ("cluster_reconnects", RECONNECTS, &self.cluster_reconnects),
        ] {
            let metric_encoder = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            metric.encode(metric_encoder)?;
        }
        Ok(())
    }
}
