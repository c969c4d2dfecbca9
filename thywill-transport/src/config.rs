//! Typed configuration of the transport.

use std::time::Duration;

use crate::TransportError;

/// Which browser origins may open a WebSocket.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum AllowedOrigins {
    /// Only pages served by this service: the `Origin` header's host must equal the request's
    /// `Host` header (the default). Requests without `Origin` (non-browser clients) pass.
    #[default]
    SameHost,
    /// Only these origins, such as `https://example.com` (requests without `Origin` pass).
    List(Vec<String>),
    /// Any origin. Do not use on the internet.
    Any,
}

/// Which `Host` header values a node answers (every route: pages, resources, WebSocket).
/// A request naming another host gets 421 Misdirected Request: a page of a foreign site
/// whose name was made to resolve to this node (DNS rebinding) cannot use it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum AllowedHosts {
    /// A node listening on a loopback address answers only loopback names (`localhost`,
    /// `127.0.0.1` and the rest of `127.0.0.0/8`, `[::1]`), with any port, and any name in
    /// requests that came through a proxy on the same host (they carry `X-Forwarded-For`,
    /// which a page cannot add to a WebSocket handshake; `/metrics` never counts it); a node
    /// listening on another address answers any host. Configure [`AllowedHosts::List`] on the
    /// internet.
    #[default]
    Default,
    /// Only these host names (compared without the port, case-insensitively), such as
    /// `example.com`.
    List(Vec<String>),
    /// Any host.
    Any,
}

/// Who may read `<base>/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MetricsAccess {
    /// No metrics route.
    Off,
    /// Only requests from loopback addresses (the default): a proxy in front of the node
    /// makes the route unreachable from outside.
    #[default]
    Loopback,
    /// Anyone who can reach the node.
    Public,
}

/// Configuration of a node's transport. Build with [`TransportConfig::default`] and the
/// `with_*` methods, which validate their input.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    pub(crate) base_path: String,
    pub(crate) max_message_size: usize,
    pub(crate) outbound_queue: usize,
    pub(crate) keepalive_interval: Duration,
    pub(crate) keepalive_timeout: Duration,
    pub(crate) max_bad_frames: u32,
    pub(crate) origins: AllowedOrigins,
    pub(crate) metrics: MetricsAccess,
    pub(crate) rate_per_sec: u32,
    pub(crate) rate_burst: u32,
    pub(crate) max_connections: usize,
    pub(crate) drain_jitter: Duration,
    pub(crate) handshake_timeout: Duration,
    /// The application's authentication hook, run on every WebSocket handshake.
    pub(crate) authenticator: Option<crate::Authenticator>,
    /// Whether an authenticated connection's session is its user's (`user:<id>`).
    pub(crate) session_from_identity: bool,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_sockets: usize,
    pub(crate) max_outbound_bytes: usize,
    pub(crate) allowed_hosts: AllowedHosts,
    pub(crate) replay: bool,
    pub(crate) append_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            base_path: String::from("/"),
            max_message_size: 64 * 1024,
            outbound_queue: 1024,
            keepalive_interval: Duration::from_secs(15),
            keepalive_timeout: Duration::from_secs(40),
            max_bad_frames: 16,
            origins: AllowedOrigins::default(),
            metrics: MetricsAccess::default(),
            rate_per_sec: 200,
            rate_burst: 400,
            max_connections: 100_000,
            drain_jitter: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(10),
            authenticator: None,
            session_from_identity: false,
            idle_timeout: Duration::from_secs(60),
            max_sockets: 101_000,
            max_outbound_bytes: 4 * 1024 * 1024,
            allowed_hosts: AllowedHosts::default(),
            replay: true,
            append_timeout: Duration::from_secs(10),
        }
    }
}

impl TransportConfig {
    /// The path prefix everything is served under, such as `/echo` (default `/`).
    pub fn with_base_path(mut self, base: impl AsRef<str>) -> Result<Self, TransportError> {
        let b = base.as_ref().trim_matches('/');
        if b.split('/').any(|seg| {
            seg.is_empty() && !b.is_empty()
                || (!seg.is_empty() && seg.bytes().all(|c| c == b'.'))
                || !seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        }) {
            return Err(TransportError::Config {
                key: "base_path",
                message: format!("{:?} is not a path of plain segments", base.as_ref()),
            });
        }
        self.base_path = if b.is_empty() { "/".into() } else { format!("/{b}") };
        Ok(self)
    }

    /// Largest accepted client message in bytes (default 64 KiB); larger ones close the
    /// connection with code 1009.
    pub fn with_max_message_size(mut self, bytes: usize) -> Result<Self, TransportError> {
        if bytes < 256 {
            return Err(TransportError::Config {
                key: "max_message_size",
                message: format!("{bytes} is below the minimum of 256 bytes"),
            });
        }
        self.max_message_size = bytes;
        Ok(self)
    }

    /// Frames queued for one connection before it counts as a slow consumer (default 1024).
    pub fn with_outbound_queue(mut self, frames: usize) -> Result<Self, TransportError> {
        if frames == 0 {
            return Err(TransportError::Config {
                key: "outbound_queue",
                message: "must be at least 1".into(),
            });
        }
        self.outbound_queue = frames;
        Ok(self)
    }

    /// Ping interval and the silence after which a connection counts as dead
    /// (defaults 15 s and 40 s).
    pub fn with_keepalive(mut self, interval: Duration, timeout: Duration) -> Result<Self, TransportError> {
        if interval.is_zero() || timeout <= interval {
            return Err(TransportError::Config {
                key: "keepalive",
                message: format!("need 0 < interval ({interval:?}) < timeout ({timeout:?})"),
            });
        }
        self.keepalive_interval = interval;
        self.keepalive_timeout = timeout;
        Ok(self)
    }

    /// Malformed frames tolerated (each answered with an error frame) before the connection is
    /// closed with code 4000 (default 16).
    pub fn with_max_bad_frames(mut self, n: u32) -> Self {
        self.max_bad_frames = n;
        self
    }

    /// Which origins may connect (default: same host only).
    pub fn with_allowed_origins(mut self, origins: AllowedOrigins) -> Self {
        self.origins = origins;
        self
    }

    /// Per-connection rate limit on client frames: a token bucket refilled at `per_sec` with room
    /// for `burst`; a client above it is closed with 4429 (defaults 200/s, burst 400).
    pub fn with_rate_limit(mut self, per_sec: u32, burst: u32) -> Result<Self, TransportError> {
        if per_sec == 0 || burst == 0 {
            return Err(TransportError::Config {
                key: "rate_limit",
                message: "rate and burst must be at least 1".into(),
            });
        }
        self.rate_per_sec = per_sec;
        self.rate_burst = burst;
        Ok(self)
    }

    /// Most WebSocket connections this node holds; further handshakes get 503
    /// (default 100,000).
    pub fn with_max_connections(mut self, n: usize) -> Result<Self, TransportError> {
        if n == 0 {
            return Err(TransportError::Config {
                key: "max_connections",
                message: "must be at least 1".into(),
            });
        }
        self.max_connections = n;
        Ok(self)
    }

    /// On shutdown, each client is told to reconnect after a random delay up to this bound,
    /// so that a draining member's clients do not all land on the others at once (default 2 s).
    pub fn with_drain_jitter(mut self, jitter: Duration) -> Self {
        self.drain_jitter = jitter;
        self
    }

    /// Time allowed for a TLS handshake and for a request's headers (the WebSocket handshake
    /// included) before the socket is dropped (default 10 s).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Result<Self, TransportError> {
        if timeout.is_zero() {
            return Err(TransportError::Config {
                key: "handshake_timeout",
                message: "must be above zero".into(),
            });
        }
        self.handshake_timeout = timeout;
        Ok(self)
    }

    /// Authenticates every WebSocket handshake with `authenticator` before the upgrade: its
    /// identity is on the connection's `Client`; its refusal is answered with the refusal's
    /// HTTP status (401, 403) and no connection is opened. A hook that takes longer than the
    /// handshake timeout (or panics) refuses with 503. Without one (the default) every
    /// handshake that passes the other checks opens a connection with no identity.
    pub fn with_authenticator(mut self, authenticator: crate::Authenticator) -> Self {
        self.authenticator = Some(authenticator);
        self
    }

    /// With `true`, a connection the authentication hook gave an identity is bound to the
    /// session `user:<user id>` instead of its cookie's (or its own, in plain mode): every tab
    /// of a user, on any member, is one session, so sending to the session reaches them all
    /// and session data and channels of sessions follow the user. Connections without an
    /// identity keep the usual session. Default `false`.
    pub fn with_session_from_identity(mut self, on: bool) -> Self {
        self.session_from_identity = on;
        self
    }

    /// Longest a socket of the node's own listener may go without a byte read or written
    /// between HTTP exchanges (HTTP/1 keep-alive, HTTP/2) before it is closed (default 60 s).
    /// A WebSocket is kept alive by its keepalive instead.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Result<Self, TransportError> {
        if timeout.is_zero() {
            return Err(TransportError::Config {
                key: "idle_timeout",
                message: "must be above zero".into(),
            });
        }
        self.idle_timeout = timeout;
        Ok(self)
    }

    /// Most TCP connections the node's own listener holds at once, whatever stage they are at
    /// (before a request, HTTP, WebSocket); one more is closed as soon as it is accepted
    /// (default 101,000).
    pub fn with_max_sockets(mut self, n: usize) -> Result<Self, TransportError> {
        if n == 0 {
            return Err(TransportError::Config {
                key: "max_sockets",
                message: "must be at least 1".into(),
            });
        }
        self.max_sockets = n;
        Ok(self)
    }

    /// Bytes of frames queued for one connection before it counts as a slow consumer and is
    /// closed with 4008 (default 4 MiB). Frames to many connections are shared, not copied,
    /// but each connection is charged their full size.
    pub fn with_max_outbound_bytes(mut self, bytes: usize) -> Result<Self, TransportError> {
        if bytes < 1024 {
            return Err(TransportError::Config {
                key: "max_outbound_bytes",
                message: format!("{bytes} is below the minimum of 1024 bytes"),
            });
        }
        self.max_outbound_bytes = bytes;
        Ok(self)
    }

    /// Which `Host` names requests may carry (default: see [`AllowedHosts::Default`]).
    pub fn with_allowed_hosts(mut self, hosts: AllowedHosts) -> Self {
        self.allowed_hosts = hosts;
        self
    }

    /// Whether messages sent to channels and sessions are numbered and logged in the node's
    /// [`History`](thywill_core::History) (a node setting, which the facade passes on) so that reconnecting clients recover what they
    /// missed (default on; see `docs/PROTOCOL.md`, "Recovery after a reconnect").
    pub fn with_replay(mut self, on: bool) -> Self {
        self.replay = on;
        self
    }

    /// How long sending a stream message keeps retrying to log it while the history is
    /// unreachable (for example during a Redis restart) before the send fails (default 10 s).
    pub fn with_append_timeout(mut self, timeout: Duration) -> Result<Self, TransportError> {
        if timeout.is_zero() {
            return Err(TransportError::Config {
                key: "append_timeout",
                message: "must be positive".into(),
            });
        }
        self.append_timeout = timeout;
        Ok(self)
    }

    /// Who may read `<base>/metrics` (default: loopback only).
    pub fn with_metrics(mut self, access: MetricsAccess) -> Self {
        self.metrics = access;
        self
    }

    /// Whether channel and session messages are logged for replay ([`Self::with_replay`]).
    pub fn replay(&self) -> bool {
        self.replay
    }

    /// How long a stream message may wait for the history ([`Self::with_append_timeout`]).
    pub fn append_timeout(&self) -> Duration {
        self.append_timeout
    }

    /// The base path, always starting with `/` and without a trailing `/` (except the root).
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// The configured maximum message size.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// `base` joined with `rest` (which must not start with `/`).
    pub fn path(&self, rest: &str) -> String {
        if self.base_path == "/" {
            format!("/{rest}")
        } else {
            format!("{}/{rest}", self.base_path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_path_is_normalised_and_validated() -> Result<(), TransportError> {
        let c = TransportConfig::default().with_base_path("/echo/")?;
        assert_eq!(c.base_path(), "/echo");
        assert_eq!(c.path("ws"), "/echo/ws");
        let root = TransportConfig::default().with_base_path("")?;
        assert_eq!(root.path("ws"), "/ws");
        assert!(TransportConfig::default().with_base_path("/a b").is_err());
        assert!(TransportConfig::default().with_base_path("/a//b").is_err());
        for dots in ["..", "/a/../b", ".", "/...", "/a/."] {
            assert!(TransportConfig::default().with_base_path(dots).is_err(), "{dots}");
        }
        assert!(TransportConfig::default().with_base_path("/a.b/c..d").is_ok());
        assert!(TransportConfig::default().with_max_message_size(10).is_err());
        Ok(())
    }
}
