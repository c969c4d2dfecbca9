//! The error type of the HTTP backend.

use thywill_core::CoreError;

/// Errors of the HTTP cluster backend.
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
    /// No shared secret is configured: the HTTP backend never runs without one.
    #[error(
        "the HTTP cluster backend needs a shared secret (at least 16 bytes, the same on every member): \
         set it with HttpClusterConfig::with_secret, `[cluster] secret` / THYWILL_CLUSTER__SECRET in a \
         thywill configuration, or --cluster-secret / THYWILL_CLUSTER_SECRET for the examples"
    )]
    MissingSecret,
    /// The cluster server could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The HTTP client failed.
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
    /// A message could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),
}

impl From<Error> for CoreError {
    fn from(e: Error) -> Self {
        CoreError::component("cluster-http", e)
    }
}
