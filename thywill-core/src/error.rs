//! The core error type, used at the trait seams between components.

/// Errors crossing the component traits of thywill-core.
///
/// Component crates have their own error enums and convert into this one at the seam.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The addressed connection, session, channel or member is not known.
    #[error("not found: {0}")]
    NotFound(String),
    /// The target exists but cannot be reached now (member down, queue closed).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A value could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),
    /// An argument was refused (the message says which and why).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The node is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// A component failed; the message says which and why.
    #[error("{component}: {message}")]
    Component {
        /// The failing component (for example `cluster-redis`).
        component: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl CoreError {
    /// Builds a [`CoreError::Component`] from any displayable error.
    pub fn component(component: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Component {
            component,
            message: err.to_string(),
        }
    }
}

/// `Result` with [`CoreError`].
pub type CoreResult<T> = Result<T, CoreError>;
