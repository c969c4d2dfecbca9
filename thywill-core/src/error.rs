//! The core error type, used at the trait seams between components.

use std::error::Error as StdError;

/// A boxed error of any component, kept as the [source](std::error::Error::source) of a
/// [`CoreError::Component`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What kind of failure a [`CoreError`] is: what a caller decides by (retry, report, give up),
/// never by its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The addressed connection, session, channel or member is not known.
    NotFound,
    /// The target exists but cannot be reached now (member down, queue closed, connection to a
    /// store lost): trying again later may succeed.
    Unavailable,
    /// A value could not be encoded or decoded.
    Codec,
    /// An argument or a setting was refused.
    Invalid,
    /// The node is shutting down.
    ShuttingDown,
    /// A component failed otherwise.
    Component,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotFound => "not found",
            Self::Unavailable => "unavailable",
            Self::Codec => "codec",
            Self::Invalid => "invalid",
            Self::ShuttingDown => "shutting down",
            Self::Component => "component",
        })
    }
}

/// Errors crossing the component traits of thywill-core.
///
/// Every error has a [`kind`](CoreError::kind): callers decide by it (an
/// [`ErrorKind::Unavailable`] error may succeed when retried), never by the message. Component
/// crates have their own error enums and convert into this one at the seam with
/// [`CoreError::component`] or [`CoreError::new`], which keep their error as the
/// [source](std::error::Error::source) (so its chain, down to the IO error, stays
/// inspectable) and choose the kind.
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
    /// A component failed; `source` says why, `kind` what kind of failure it is.
    ///
    /// Its message is the component's name and the source's message (for logs, which print
    /// only the message); the source is also [`source`](std::error::Error::source).
    #[error("{component}: {source}")]
    Component {
        /// The failing component (for example `cluster-redis`).
        component: &'static str,
        /// What kind of failure (default [`ErrorKind::Component`]).
        kind: ErrorKind,
        /// The component's own error.
        source: BoxError,
    },
}

impl CoreError {
    /// A failure of `component` (of kind [`ErrorKind::Component`]), keeping `err` as its
    /// source. A `String` or `&str` converts too (a message without a source of its own).
    pub fn component(component: &'static str, err: impl Into<BoxError>) -> Self {
        Self::new(ErrorKind::Component, component, err)
    }

    /// A failure of `component` of this kind, keeping `err` as its source: for example a
    /// store's lost connection is [`ErrorKind::Unavailable`].
    pub fn new(kind: ErrorKind, component: &'static str, err: impl Into<BoxError>) -> Self {
        Self::Component {
            component,
            kind,
            source: err.into(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::Codec(_) => ErrorKind::Codec,
            Self::Invalid(_) => ErrorKind::Invalid,
            Self::ShuttingDown => ErrorKind::ShuttingDown,
            Self::Component { kind, .. } => *kind,
        }
    }

    /// Whether trying again later may succeed (the kind is [`ErrorKind::Unavailable`]).
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Unavailable
    }

    /// The failing component's name, for a [`CoreError::Component`].
    pub fn component_name(&self) -> Option<&'static str> {
        match self {
            Self::Component { component, .. } => Some(component),
            _ => None,
        }
    }
}

/// `Result` with [`CoreError`].
pub type CoreResult<T> = Result<T, CoreError>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the store is gone")]
    struct Gone(#[source] std::io::Error);

    #[test]
    fn kinds_of_the_plain_variants() {
        assert_eq!(CoreError::NotFound("x".into()).kind(), ErrorKind::NotFound);
        assert_eq!(CoreError::Unavailable("x".into()).kind(), ErrorKind::Unavailable);
        assert_eq!(CoreError::Codec("x".into()).kind(), ErrorKind::Codec);
        assert_eq!(CoreError::Invalid("x".into()).kind(), ErrorKind::Invalid);
        assert_eq!(CoreError::ShuttingDown.kind(), ErrorKind::ShuttingDown);
        assert!(CoreError::Unavailable("x".into()).is_retryable());
        assert!(!CoreError::Invalid("x".into()).is_retryable());
    }

    #[test]
    fn a_component_error_keeps_its_kind_and_source_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let e = CoreError::new(ErrorKind::Unavailable, "store", Gone(io));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());
        assert_eq!(e.component_name(), Some("store"));
        assert_eq!(e.to_string(), "store: the store is gone");
        let source = e.source().expect("the component's error is the source");
        assert!(source.downcast_ref::<Gone>().is_some(), "{source:?}");
        let io = source.source().and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(
            io.map(std::io::Error::kind),
            Some(std::io::ErrorKind::ConnectionReset)
        );
    }

    #[test]
    fn messages_convert_and_default_to_the_component_kind() {
        let e = CoreError::component("templates", "no such template");
        assert_eq!(e.kind(), ErrorKind::Component);
        assert!(!e.is_retryable());
        assert_eq!(e.to_string(), "templates: no such template");
        assert_eq!(
            e.source().map(ToString::to_string).as_deref(),
            Some("no such template")
        );
        let e = CoreError::component("chat", format!("pool {}", 3));
        assert_eq!(e.to_string(), "chat: pool 3");
    }
}
