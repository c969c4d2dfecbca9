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
    Redis(#[from] fred::error::Error),
    /// Redis did not answer in time.
    #[error("redis: {0} timed out")]
    Timeout(&'static str),
    /// A message could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),
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
    /// [`Unavailable`](ErrorKind::Unavailable) — retrying may succeed; a refused setting is
    /// [`Invalid`](ErrorKind::Invalid).
    pub fn kind(&self) -> ErrorKind {
        use fred::error::ErrorKind as Fred;
        match self {
            Self::Config { .. } => ErrorKind::Invalid,
            Self::Timeout(_) => ErrorKind::Unavailable,
            Self::Codec(_) => ErrorKind::Codec,
            Self::Redis(e) => match e.kind() {
                Fred::IO
                | Fred::Canceled
                | Fred::Timeout
                | Fred::Backpressure
                | Fred::Routing
                | Fred::Cluster => ErrorKind::Unavailable,
                Fred::Config | Fred::Url | Fred::InvalidArgument | Fred::InvalidCommand => ErrorKind::Invalid,
                Fred::Parse | Fred::Protocol => ErrorKind::Codec,
                _ if TRANSIENT_REPLIES
                    .iter()
                    .chain(&CLIENT_CONNECTION_FAILURES)
                    .any(|p| e.details().starts_with(p)) =>
                {
                    ErrorKind::Unavailable
                }
                _ => ErrorKind::Component,
            },
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

    #[test]
    fn a_redis_error_keeps_its_source_chain_and_kind() {
        let lost: CoreError = Error::Redis(FredError::new(Fred::IO, "connection reset by peer")).into();
        assert_eq!(lost.kind(), ErrorKind::Unavailable);
        assert!(lost.is_retryable());
        assert_eq!(lost.component_name(), Some("cluster-redis"));
        let ours = lost.source().and_then(|s| s.downcast_ref::<Error>());
        assert!(matches!(ours, Some(Error::Redis(_))), "{ours:?}");
        let fred = lost
            .source()
            .and_then(|s| s.source())
            .and_then(|s| s.downcast_ref::<FredError>());
        assert_eq!(fred.map(FredError::kind), Some(&Fred::IO));
        assert!(lost.to_string().contains("connection reset by peer"), "{lost}");
    }

    #[test]
    fn kinds_follow_the_condition() {
        let kind = |e: Error| CoreError::from(e).kind();
        assert_eq!(kind(Error::Timeout("append")), ErrorKind::Unavailable);
        assert_eq!(
            kind(Error::Redis(FredError::new(
                Fred::Unknown,
                "LOADING Redis is loading the dataset in memory"
            ))),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind(Error::Redis(FredError::new(
                Fred::Unknown,
                "Too many failed write attempts."
            ))),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind(Error::Redis(FredError::new(
                Fred::Unknown,
                "ERR Error running script"
            ))),
            ErrorKind::Component
        );
        assert_eq!(
            kind(Error::Redis(FredError::new(Fred::InvalidArgument, "WRONGTYPE"))),
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
    }
}
