//! The error type of the Redis backend.

use thywill_core::{CoreError, ErrorKind};

/// Errors of the Redis cluster backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting was refused.
    #[error("invalid {setting}: {reason}")]
    Config {
        /// Which setting.
        setting: &'static str,
        /// Why.
        reason: String,
    },
    /// The Redis client failed.
    #[error("redis: {0}")]
    Redis(RedisError),
    /// A TLS connection to Redis could not be made (a certificate the CA file does not vouch
    /// for, a server without TLS on that port, ...).
    #[error("redis TLS connection failed (does the CA file vouch for the server's certificate?): {0}")]
    Tls(RedisError),
    /// Redis did not answer in time.
    #[error("redis: {0} timed out")]
    Timeout(&'static str),
    /// A message could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),
}

/// What the Redis client reported, kept opaque: its message is the [`Display`](std::fmt::Display)
/// form, its classification is [`Error::kind`]. The client's own error type is not part of this
/// crate's API.
#[derive(Debug)]
pub struct RedisError(fred::error::Error);

impl std::fmt::Display for RedisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for RedisError {}

impl From<fred::error::Error> for RedisError {
    fn from(e: fred::error::Error) -> Self {
        Self(e)
    }
}

impl RedisError {
    fn kind(&self) -> ErrorKind {
        use fred::error::ErrorKind as Fred;
        let e = &self.0;
        match e.kind() {
            Fred::IO
            | Fred::Canceled
            | Fred::Timeout
            | Fred::Backpressure
            | Fred::Routing
            | Fred::Cluster => ErrorKind::Unavailable,
            Fred::Config | Fred::Url | Fred::InvalidArgument | Fred::InvalidCommand | Fred::Tls => {
                ErrorKind::Invalid
            }
            Fred::Parse | Fred::Protocol => ErrorKind::Codec,
            _ if TRANSIENT_REPLIES
                .iter()
                .chain(&CLIENT_CONNECTION_FAILURES)
                .any(|p| e.details().starts_with(p)) =>
            {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Component,
        }
    }
}

/// Turns the Redis client's results into this crate's, without a public `From` impl.
pub(crate) trait FredResult<T> {
    /// The result, its error wrapped in [`Error::Redis`].
    fn redis(self) -> Result<T, Error>;
}

impl<T> FredResult<T> for Result<T, fred::error::Error> {
    fn redis(self) -> Result<T, Error> {
        self.map_err(|e| Error::Redis(RedisError(e)))
    }
}

/// Prefixes of Redis error replies that say "not now" (loading its data after a restart, busy
/// running a script, a primary down, ...): the command may succeed when sent again.
const TRANSIENT_REPLIES: [&str; 8] = [
    "LOADING",
    "BUSY",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MASTERDOWN",
    "READONLY",
    "MISCONF",
    "NOREPLICAS",
];

/// What the Redis client reports, without an error kind of its own, when a command could not be
/// written because the connection kept failing.
const CLIENT_CONNECTION_FAILURES: [&str; 1] = ["Too many failed write attempts"];

impl Error {
    /// What kind of failure this is, for callers that decide by it: a lost or refused
    /// connection, a timeout, a cancelled command (the client was reconnecting) and Redis's
    /// transient replies (`LOADING` while it restarts, `BUSY`, ...) are
    /// [`Unavailable`](ErrorKind::Unavailable) — retrying may succeed; a refused setting (or TLS
    /// configuration) is [`Invalid`](ErrorKind::Invalid).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config { .. } => ErrorKind::Invalid,
            Self::Timeout(_) => ErrorKind::Unavailable,
            Self::Codec(_) => ErrorKind::Codec,
            // A certificate the CA file does not vouch for stays refused however often retried.
            Self::Tls(e) if e.0.details().contains("Certificate") => ErrorKind::Invalid,
            Self::Redis(e) | Self::Tls(e) => e.kind(),
        }
    }
}

/// Keeps the error as the source, with its [`kind`](Error::kind).
impl From<Error> for CoreError {
    fn from(e: Error) -> Self {
        CoreError::new(e.kind(), "cluster-redis", e)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use fred::error::{Error as FredError, ErrorKind as Fred};

    use super::*;

    fn redis(e: FredError) -> Error {
        Error::Redis(RedisError(e))
    }

    #[test]
    fn a_redis_error_keeps_its_source_chain_and_kind() {
        let lost: CoreError = redis(FredError::new(Fred::IO, "connection reset by peer")).into();
        assert_eq!(lost.kind(), ErrorKind::Unavailable);
        assert!(lost.is_retryable());
        assert_eq!(lost.component_name(), Some("cluster-redis"));
        let ours = lost.source().and_then(|s| s.downcast_ref::<Error>());
        assert!(matches!(ours, Some(Error::Redis(_))), "{ours:?}");
        assert!(lost.to_string().contains("connection reset by peer"), "{lost}");
    }

    #[test]
    fn kinds_follow_the_condition() {
        let kind = |e: Error| CoreError::from(e).kind();
        assert_eq!(kind(Error::Timeout("append")), ErrorKind::Unavailable);
        assert_eq!(
            kind(redis(FredError::new(
                Fred::Unknown,
                "LOADING Redis is loading the dataset in memory"
            ))),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind(redis(FredError::new(
                Fred::Unknown,
                "Too many failed write attempts."
            ))),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind(redis(FredError::new(Fred::Unknown, "ERR Error running script"))),
            ErrorKind::Component
        );
        assert_eq!(
            kind(redis(FredError::new(Fred::InvalidArgument, "WRONGTYPE"))),
            ErrorKind::Invalid
        );
        assert_eq!(
            kind(Error::Config {
                setting: "prefix",
                reason: "empty".into()
            }),
            ErrorKind::Invalid
        );
        assert_eq!(kind(Error::Codec("bad frame".into())), ErrorKind::Codec);
        let untrusted = FredError::new(Fred::IO, "InvalidCertificate(UnknownIssuer)");
        assert_eq!(kind(Error::Tls(RedisError(untrusted))), ErrorKind::Invalid);
        let refused = FredError::new(Fred::IO, "Connection refused");
        assert_eq!(kind(Error::Tls(RedisError(refused))), ErrorKind::Unavailable);
    }
}
