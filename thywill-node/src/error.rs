//! The node's error type.

/// Errors of starting a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A configuration value is invalid; `key` names it.
    #[error("invalid configuration `{key}`: {message}")]
    Config {
        /// The configuration key.
        key: &'static str,
        /// Why it is invalid.
        message: String,
    },
    /// Two applications were registered under one id.
    #[error("application id `{0}` is registered twice")]
    DuplicateApplication(String),
    /// A component failed during start-up.
    #[error(transparent)]
    Core(#[from] thywill_core::CoreError),
}
