//! [`NatsClusterConfig`]: typed, validated settings of the NATS backend.

use std::collections::HashSet;
use std::time::Duration;

use thywill_core::MemberId;

use crate::Error;

/// Settings of a [`NatsCluster`](crate::NatsCluster) member.
///
/// ```
/// use std::time::Duration;
/// use thywill_nats_example::NatsClusterConfig;
///
/// let config = NatsClusterConfig::default()
///     .with_url("nats://127.0.0.1:4222")?
///     .with_cluster("draw")?
///     .with_members(["alpha", "beta", "gamma"])?
///     .with_local("beta")?
///     .with_heartbeat(Duration::from_millis(200), Duration::from_millis(500))?;
/// assert_eq!(config.subject_of(&"beta".into()), "thywill.draw.member.beta");
/// # Ok::<(), thywill_nats_example::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct NatsClusterConfig {
    pub(crate) url: String,
    pub(crate) cluster: String,
    pub(crate) members: Vec<MemberId>,
    pub(crate) local: MemberId,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) queue_capacity: usize,
    pub(crate) subscription_capacity: usize,
    pub(crate) command_timeout: Duration,
}

impl Default for NatsClusterConfig {
    /// `nats://127.0.0.1:4222`, cluster `thywill`, a single member `alpha`, heartbeat every
    /// 200 ms with a 500 ms timeout, outbound queue of 65 536 tasks, 65 536 messages waiting
    /// in the subscription, connect and publish timeout 2 s.
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            cluster: "thywill".into(),
            members: vec![MemberId::from("alpha")],
            local: MemberId::from("alpha"),
            heartbeat_interval: Duration::from_millis(200),
            heartbeat_timeout: Duration::from_millis(500),
            queue_capacity: 65_536,
            subscription_capacity: 65_536,
            command_timeout: Duration::from_secs(2),
        }
    }
}

fn invalid(what: &'static str, why: impl Into<String>) -> Error {
    Error::Config {
        setting: what,
        reason: why.into(),
    }
}

/// Whether `s` can be one token of a NATS subject: not empty, no `.`, no wildcard, no
/// whitespace or control character.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control())
}

impl NatsClusterConfig {
    /// The NATS server, as a `nats://host:port` URL (`tls://` for TLS).
    pub fn with_url(mut self, url: impl Into<String>) -> Result<Self, Error> {
        let url = url.into();
        let rest = ["nats://", "tls://"]
            .iter()
            .find_map(|scheme| url.strip_prefix(scheme))
            .ok_or_else(|| invalid("url", format!("{url:?} is not a nats:// or tls:// URL")))?;
        if rest.is_empty() || rest.chars().any(char::is_whitespace) {
            return Err(invalid("url", format!("{url:?} names no server")));
        }
        self.url = url;
        Ok(self)
    }

    /// The cluster's name, one subject token (default `thywill`): its members' subjects are
    /// `thywill.<cluster>.member.<id>`. Clusters on one NATS server use different names.
    pub fn with_cluster(mut self, cluster: impl Into<String>) -> Result<Self, Error> {
        let cluster = cluster.into();
        if !is_token(&cluster) {
            return Err(invalid(
                "cluster",
                format!("{cluster:?} is not one subject token (no `.`, `*`, `>` or whitespace)"),
            ));
        }
        self.cluster = cluster;
        Ok(self)
    }

    /// Every member of the cluster, in ring order (which decides designated handlers); each id
    /// is one subject token. If the local member is not among them,
    /// [`with_local`](Self::with_local) must name one that is.
    pub fn with_members<I, M>(mut self, members: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = M>,
        M: Into<MemberId>,
    {
        let members: Vec<MemberId> = members.into_iter().map(Into::into).collect();
        if members.is_empty() {
            return Err(invalid("members", "at least one member"));
        }
        let mut seen = HashSet::new();
        for m in &members {
            if !is_token(m.as_str()) {
                return Err(invalid(
                    "members",
                    format!("{:?} is not one subject token", m.as_str()),
                ));
            }
            if !seen.insert(m.clone()) {
                return Err(invalid("members", format!("{m} listed twice")));
            }
        }
        if !members.contains(&self.local) {
            self.local = members[0].clone();
        }
        self.members = members;
        Ok(self)
    }

    /// The local member; must be one of the members.
    pub fn with_local(mut self, local: impl Into<MemberId>) -> Result<Self, Error> {
        let local = local.into();
        if !self.members.contains(&local) {
            return Err(invalid("local", format!("{local} is not among the members")));
        }
        self.local = local;
        Ok(self)
    }

    /// Heartbeat period and the silence after which a member is down (defaults 200 ms and
    /// 500 ms). The timeout must exceed the interval.
    pub fn with_heartbeat(mut self, interval: Duration, timeout: Duration) -> Result<Self, Error> {
        if interval < Duration::from_millis(5) {
            return Err(invalid("heartbeat", "interval below 5 ms"));
        }
        if timeout <= interval {
            return Err(invalid("heartbeat", "timeout must exceed the interval"));
        }
        self.heartbeat_interval = interval;
        self.heartbeat_timeout = timeout;
        Ok(self)
    }

    /// Capacity of the outbound task queue (default 65 536); a full queue makes sends fail
    /// with `Unavailable` instead of growing memory without bound.
    pub fn with_queue_capacity(mut self, capacity: usize) -> Result<Self, Error> {
        if capacity == 0 {
            return Err(invalid("queue_capacity", "must be positive"));
        }
        self.queue_capacity = capacity;
        Ok(self)
    }

    /// How many received messages may wait for the member to handle them (default 65 536);
    /// beyond that the client drops them, and the senders' next heartbeats report the gap.
    pub fn with_subscription_capacity(mut self, capacity: usize) -> Result<Self, Error> {
        if capacity == 0 {
            return Err(invalid("subscription_capacity", "must be positive"));
        }
        self.subscription_capacity = capacity;
        Ok(self)
    }

    /// How long connecting, or handing one message to the client, may take (default 2 s).
    pub fn with_command_timeout(mut self, timeout: Duration) -> Result<Self, Error> {
        if timeout.is_zero() {
            return Err(invalid("command_timeout", "must be positive"));
        }
        self.command_timeout = timeout;
        Ok(self)
    }

    /// The NATS URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The members, in ring order.
    pub fn members(&self) -> &[MemberId] {
        &self.members
    }

    /// The local member.
    pub fn local(&self) -> &MemberId {
        &self.local
    }

    /// Heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// Heartbeat timeout.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout
    }

    /// `thywill.<cluster>.member.<id>`: the one subject a member listens on (tasks and
    /// heartbeats addressed to it).
    pub fn subject_of(&self, member: &MemberId) -> String {
        format!("thywill.{}.member.{member}", self.cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_settings() {
        let c = NatsClusterConfig::default();
        assert!(c.clone().with_url("redis://127.0.0.1:6379").is_err());
        assert!(c.clone().with_url("nats://").is_err());
        assert!(c.clone().with_url("nats://127.0.0.1:4222").is_ok());
        for bad in ["", "a.b", "a*", ">", "a b"] {
            assert!(c.clone().with_cluster(bad).is_err(), "cluster {bad:?}");
            assert!(c.clone().with_members([bad]).is_err(), "member {bad:?}");
        }
        assert!(c.clone().with_members(Vec::<MemberId>::new()).is_err());
        assert!(c.clone().with_members(["a", "a"]).is_err());
        assert!(
            c.clone()
                .with_members(["a", "b"])
                .and_then(|c| c.with_local("z"))
                .is_err()
        );
        assert!(
            c.clone()
                .with_heartbeat(Duration::from_millis(200), Duration::from_millis(100))
                .is_err()
        );
        let ok = c.with_members(["a", "b"]).and_then(|c| c.with_local("b"));
        assert!(ok.is_ok_and(
            |c| c.local().as_str() == "b" && c.subject_of(c.local()) == "thywill.thywill.member.b"
        ));
    }
}
