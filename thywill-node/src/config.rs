//! Typed configuration of the node runtime.

use std::time::Duration;

use crate::NodeError;

/// Configuration of a node. Build with [`NodeConfig::default`] and the `with_*` methods,
/// which validate their input. (The facade takes these settings from its `TransportConfig`.)
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub(crate) replay: bool,
    pub(crate) append_timeout: Duration,
    pub(crate) interest_linger: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            replay: true,
            append_timeout: Duration::from_secs(10),
            interest_linger: Duration::from_secs(5),
        }
    }
}

impl NodeConfig {
    /// Whether messages sent to channels and sessions are numbered and logged in the node's
    /// [`History`](thywill_core::History) so that reconnecting clients recover what they
    /// missed (default on; see `docs/PROTOCOL.md`, "Recovery after a reconnect").
    pub fn with_replay(mut self, on: bool) -> Self {
        self.replay = on;
        self
    }

    /// How long sending a stream message keeps retrying to log it while the history is
    /// unreachable (for example during a Redis restart) before the send fails (default 10 s).
    pub fn with_append_timeout(mut self, timeout: Duration) -> Result<Self, NodeError> {
        if timeout.is_zero() {
            return Err(NodeError::Config {
                key: "append_timeout",
                message: "must be positive".into(),
            });
        }
        self.append_timeout = timeout;
        Ok(self)
    }

    /// How long the member stays interested in a channel's traffic after its last local
    /// subscriber left (default 5 s; see `ARCHITECTURE.md`, "Interest routing"): a connection
    /// that leaves and comes back within it costs the cluster backend no unsubscription and
    /// resubscription.
    pub fn with_interest_linger(mut self, linger: Duration) -> Self {
        self.interest_linger = linger;
        self
    }

    /// How long interest outlives a channel's last local subscriber
    /// ([`Self::with_interest_linger`]).
    pub fn interest_linger(&self) -> Duration {
        self.interest_linger
    }

    /// Whether channel and session messages are logged for replay ([`Self::with_replay`]).
    pub fn replay(&self) -> bool {
        self.replay
    }

    /// How long a stream message may wait for the history ([`Self::with_append_timeout`]).
    pub fn append_timeout(&self) -> Duration {
        self.append_timeout
    }
}
