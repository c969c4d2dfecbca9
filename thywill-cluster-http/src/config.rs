//! [`HttpClusterConfig`]: typed, validated settings of the HTTP backend.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use thywill_core::MemberId;

use crate::Error;

/// Settings of an [`HttpCluster`](crate::HttpCluster) member.
///
/// ```
/// use thywill_cluster_http::HttpClusterConfig;
///
/// let config = HttpClusterConfig::default()
///     .with_members_str("alpha=127.0.0.1:20091,beta=127.0.0.1:20092")?
///     .with_local("beta")?;
/// assert_eq!(config.listen().port(), 20092);
///
/// // A shared secret is always required, on loopback too.
/// assert!(config.clone().validate().is_err());
/// assert!(config.with_secret(b"0123456789abcdef0123456789abcdef".to_vec())?.validate().is_ok());
/// # Ok::<(), thywill_cluster_http::Error>(())
/// ```
#[derive(Clone)]
pub struct HttpClusterConfig {
    pub(crate) members: Vec<(MemberId, SocketAddr)>,
    pub(crate) local: MemberId,
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) secret: Option<Vec<u8>>,
    pub(crate) interval: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) consecutive_failed_checks: u32,
    pub(crate) task_request_timeout: Duration,
    pub(crate) queue_capacity: usize,
    pub(crate) max_age: Duration,
    pub(crate) max_ahead: Duration,
    pub(crate) max_body: u64,
    pub(crate) body_timeout: Duration,
    pub(crate) head_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_concurrent_requests: usize,
}

impl std::fmt::Debug for HttpClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClusterConfig")
            .field("members", &self.members)
            .field("local", &self.local)
            .field("listen", &self.listen)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("interval", &self.interval)
            .field("request_timeout", &self.request_timeout)
            .field("consecutive_failed_checks", &self.consecutive_failed_checks)
            .field("task_request_timeout", &self.task_request_timeout)
            .field("max_age", &self.max_age)
            .field("max_ahead", &self.max_ahead)
            .field("max_body", &self.max_body)
            .field("body_timeout", &self.body_timeout)
            .field("head_timeout", &self.head_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .finish_non_exhaustive()
    }
}

impl Default for HttpClusterConfig {
    /// A single member `alpha` on 127.0.0.1:20091; up-checks every 200 ms with a 500 ms request
    /// timeout, down after 2 consecutive failures; task requests time out after 500 ms; **no
    /// secret** (required: [`validate`](Self::validate) refuses the configuration until
    /// [`with_secret`](Self::with_secret)); 16 384 queued tasks per destination; request
    /// timestamps at most 5 s old and 1 s ahead; bodies of at most 4 MiB, read within 5 s; at
    /// most 64 task requests handled at once.
    fn default() -> Self {
        Self {
            members: vec![(MemberId::from("alpha"), SocketAddr::from(([127, 0, 0, 1], 20091)))],
            local: MemberId::from("alpha"),
            listen: None,
            secret: None,
            interval: Duration::from_millis(200),
            request_timeout: Duration::from_millis(500),
            consecutive_failed_checks: 2,
            task_request_timeout: Duration::from_millis(500),
            queue_capacity: 16_384,
            max_age: Duration::from_secs(5),
            max_ahead: Duration::from_secs(1),
            max_body: 4 * 1024 * 1024,
            body_timeout: Duration::from_secs(5),
            head_timeout: Duration::from_secs(10),
            max_connections: 256,
            max_concurrent_requests: 64,
        }
    }
}

fn invalid(what: &'static str, why: impl Into<String>) -> Error {
    Error::Config {
        setting: what,
        reason: why.into(),
    }
}

impl HttpClusterConfig {
    /// Every member with the address of its cluster server, in ring order (which decides
    /// designated handlers). If the local member is not among them the first one becomes local.
    pub fn with_members<I, M>(mut self, members: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (M, SocketAddr)>,
        M: Into<MemberId>,
    {
        let members: Vec<(MemberId, SocketAddr)> = members.into_iter().map(|(m, a)| (m.into(), a)).collect();
        if members.is_empty() {
            return Err(invalid("members", "at least one member"));
        }
        let mut ids = HashSet::new();
        let mut addrs = HashSet::new();
        for (m, a) in &members {
            if m.as_str().is_empty()
                || m.as_str()
                    .chars()
                    .any(|c| c.is_whitespace() || c == '=' || c == ',')
            {
                return Err(invalid("members", format!("bad member id {:?}", m.as_str())));
            }
            if !ids.insert(m.clone()) {
                return Err(invalid("members", format!("{m} listed twice")));
            }
            if !addrs.insert(*a) {
                return Err(invalid("members", format!("address {a} listed twice")));
            }
            if a.port() == 0 {
                return Err(invalid("members", format!("{m}: port 0")));
            }
        }
        if !members.iter().any(|(m, _)| *m == self.local) {
            self.local = members[0].0.clone();
        }
        self.members = members;
        Ok(self)
    }

    /// Members from text: `alpha=127.0.0.1:20091,beta=127.0.0.1:20092`.
    pub fn with_members_str(self, list: &str) -> Result<Self, Error> {
        let members = parse_members(list)?;
        self.with_members(members)
    }

    /// The local member; must be one of the members.
    pub fn with_local(mut self, local: impl Into<MemberId>) -> Result<Self, Error> {
        let local = local.into();
        if !self.members.iter().any(|(m, _)| *m == local) {
            return Err(invalid("local", format!("{local} is not among the members")));
        }
        self.local = local;
        Ok(self)
    }

    /// The address the local cluster server binds (default: the local member's address). Use
    /// it to listen on all interfaces (`0.0.0.0:port`) behind an advertised address.
    pub fn with_listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// The shared secret that authenticates member traffic (HMAC-SHA256 over the request's
    /// headers, which carry the body's length and SHA-256), at least 16 bytes, the same on every
    /// member. Required: a configuration without one does not [`validate`](Self::validate).
    pub fn with_secret(mut self, secret: impl Into<Vec<u8>>) -> Result<Self, Error> {
        let secret = secret.into();
        if secret.len() < 16 {
            return Err(invalid("secret", "at least 16 bytes"));
        }
        self.secret = Some(secret);
        Ok(self)
    }

    /// Up-checks: period, timeout of one check, and how many failures in a row make a member
    /// down (defaults 200 ms, 500 ms, 2).
    pub fn with_up_check(
        mut self,
        interval: Duration,
        request_timeout: Duration,
        consecutive_failed_checks: u32,
    ) -> Result<Self, Error> {
        if interval < Duration::from_millis(5) {
            return Err(invalid("up_check", "interval below 5 ms"));
        }
        if request_timeout.is_zero() {
            return Err(invalid("up_check", "request timeout must be positive"));
        }
        if consecutive_failed_checks == 0 {
            return Err(invalid(
                "up_check",
                "consecutive failed checks must be at least 1",
            ));
        }
        self.interval = interval;
        self.request_timeout = request_timeout;
        self.consecutive_failed_checks = consecutive_failed_checks;
        Ok(self)
    }

    /// Timeout of one task request (default 500 ms).
    pub fn with_task_request_timeout(mut self, timeout: Duration) -> Result<Self, Error> {
        if timeout.is_zero() {
            return Err(invalid("task_request_timeout", "must be positive"));
        }
        self.task_request_timeout = timeout;
        Ok(self)
    }

    /// Capacity of each destination's outbound queue (default 16 384); a full queue makes sends
    /// fail with `Unavailable`.
    pub fn with_queue_capacity(mut self, capacity: usize) -> Result<Self, Error> {
        if capacity == 0 {
            return Err(invalid("queue_capacity", "must be positive"));
        }
        self.queue_capacity = capacity;
        Ok(self)
    }

    /// How far a task request's signed timestamp may lie in the past (`max_age`, default 5 s)
    /// and in the future (`max_ahead`, default 1 s) of the receiver's clock; older or later
    /// requests are refused with 401. The members' clocks must agree within these bounds
    /// (less the transit time): keep them synchronised (NTP).
    pub fn with_clock_window(mut self, max_age: Duration, max_ahead: Duration) -> Result<Self, Error> {
        if max_age < Duration::from_millis(100) {
            return Err(invalid("clock_window", "max_age below 100 ms"));
        }
        if max_age > Duration::from_secs(60) || max_ahead > Duration::from_secs(60) {
            return Err(invalid("clock_window", "at most 60 s either way"));
        }
        self.max_age = max_age;
        self.max_ahead = max_ahead;
        Ok(self)
    }

    /// Largest task request body accepted, in bytes (default 4 MiB): a larger declared
    /// `Content-Length` is refused with 413 before the body is read. Senders split their
    /// batches to fit their own limit, so set the same one on every member; a single task that
    /// does not fit is dropped (and reported as a gap by its receiver).
    pub fn with_max_body(mut self, bytes: u64) -> Result<Self, Error> {
        if bytes < 1024 {
            return Err(invalid("max_body", "at least 1024 bytes"));
        }
        self.max_body = bytes;
        Ok(self)
    }

    /// How long the body of an authenticated task request may take to arrive (default 5 s);
    /// past it the request is answered 408.
    pub fn with_body_timeout(mut self, timeout: Duration) -> Result<Self, Error> {
        if timeout.is_zero() {
            return Err(invalid("body_timeout", "must be positive"));
        }
        self.body_timeout = timeout;
        Ok(self)
    }

    /// How long a connection to the cluster server may take to send a complete request head,
    /// its first or its next (a keep-alive connection waiting counts), before it is closed
    /// (default 10 s; members close their idle connections after 5 s). A socket that sends
    /// nothing is closed after it.
    pub fn with_head_timeout(mut self, timeout: Duration) -> Result<Self, Error> {
        if timeout.is_zero() {
            return Err(invalid("head_timeout", "must be positive"));
        }
        self.head_timeout = timeout;
        Ok(self)
    }

    /// Most connections the cluster server holds at once (default 256); one more is closed as
    /// soon as it is accepted.
    pub fn with_max_connections(mut self, connections: usize) -> Result<Self, Error> {
        if connections == 0 {
            return Err(invalid("max_connections", "must be positive"));
        }
        self.max_connections = connections;
        Ok(self)
    }

    /// Most task requests handled at once (default 64); a request beyond that is answered 503
    /// at once. With [`with_max_body`](Self::with_max_body) it bounds the memory held by
    /// request bodies (64 × 4 MiB by default).
    pub fn with_max_concurrent_requests(mut self, requests: usize) -> Result<Self, Error> {
        if requests == 0 {
            return Err(invalid("max_concurrent_requests", "must be positive"));
        }
        self.max_concurrent_requests = requests;
        Ok(self)
    }

    /// The members and their addresses, in ring order.
    pub fn members(&self) -> &[(MemberId, SocketAddr)] {
        &self.members
    }

    /// The local member.
    pub fn local(&self) -> &MemberId {
        &self.local
    }

    /// The address the local server binds.
    pub fn listen(&self) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| self.address_of(&self.local).unwrap_or(([127, 0, 0, 1], 0).into()))
    }

    /// A member's address.
    pub fn address_of(&self, member: &MemberId) -> Option<SocketAddr> {
        self.members.iter().find(|(m, _)| m == member).map(|(_, a)| *a)
    }

    /// Whether a secret is set.
    pub fn has_secret(&self) -> bool {
        self.secret.is_some()
    }

    /// Checks the whole configuration: the local member is listed and a secret is set
    /// ([`Error::MissingSecret`] otherwise: without one, anyone who reaches the cluster port
    /// could hand the member forged tasks, and loopback is reachable by every local user and,
    /// through a browser, by web pages).
    pub fn validate(self) -> Result<Self, Error> {
        if !self.members.iter().any(|(m, _)| *m == self.local) {
            return Err(invalid(
                "local",
                format!("{} is not among the members", self.local),
            ));
        }
        if self.secret.is_none() {
            return Err(Error::MissingSecret);
        }
        Ok(self)
    }
}

/// Parses `alpha=127.0.0.1:20091,beta=127.0.0.1:20092`.
pub fn parse_members(list: &str) -> Result<Vec<(MemberId, SocketAddr)>, Error> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (id, addr) = item
                .split_once('=')
                .ok_or_else(|| invalid("members", format!("{item:?}: expected id=host:port")))?;
            let addr: SocketAddr = addr
                .trim()
                .parse()
                .map_err(|e| invalid("members", format!("{item:?}: {e}")))?;
            Ok((MemberId::from(id.trim()), addr))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_settings() {
        let c = HttpClusterConfig::default();
        assert!(c.clone().with_members_str("alpha").is_err());
        assert!(c.clone().with_members_str("a=127.0.0.1:1,a=127.0.0.1:2").is_err());
        assert!(c.clone().with_members_str("a=127.0.0.1:1,b=127.0.0.1:1").is_err());
        assert!(c.clone().with_secret(b"short".to_vec()).is_err());
        assert!(
            c.clone()
                .with_up_check(Duration::from_millis(200), Duration::from_millis(500), 0)
                .is_err()
        );
        assert!(c.clone().with_max_body(10).is_err());
        assert!(c.clone().with_body_timeout(Duration::ZERO).is_err());
        assert!(c.clone().with_max_concurrent_requests(0).is_err());
        assert!(
            c.clone()
                .with_clock_window(Duration::from_millis(10), Duration::ZERO)
                .is_err()
        );
        let loopback = c.clone().with_members_str("a=127.0.0.1:1,b=127.0.0.1:2");
        assert!(
            matches!(
                loopback.map(HttpClusterConfig::validate),
                Ok(Err(Error::MissingSecret))
            ),
            "loopback needs a secret too"
        );
        let wide = c.clone().with_listen(([0, 0, 0, 0], 20091).into());
        assert!(
            wide.validate().is_err(),
            "listening on all interfaces needs a secret"
        );
        let secret = c.with_secret(b"0123456789abcdef".to_vec());
        assert!(secret.is_ok_and(|c| c.validate().is_ok()));
    }
}
