//! The error type of the Redis backend.

use thywill_core::CoreError;

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

impl From<Error> for CoreError {
    fn from(e: Error) -> Self {
        CoreError::component("cluster-redis", e)
    }
}
