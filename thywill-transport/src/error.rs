//! The transport's error type.

/// Errors of the edge: its configuration, its listeners, its start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A configuration value is invalid; `key` names it.
    #[error("invalid configuration `{key}`: {message}")]
    Config {
        /// The configuration key.
        key: &'static str,
        /// Why it is invalid.
        message: String,
    },
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The IO error.
        source: std::io::Error,
    },
    /// A component failed during start-up.
    #[error(transparent)]
    Core(#[from] thywill_core::CoreError),
}
