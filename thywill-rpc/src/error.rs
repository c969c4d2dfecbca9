//! Errors of building a [`Registry`](crate::Registry).
//!
//! Errors of *calls* are [`RpcError`](thywill_core::RpcError)s with stable codes; they are
//! sent to the browser and never panic or close the connection.

use std::time::Duration;

/// A registry could not be built: the builder was given an invalid setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcBuildError {
    /// A function name is not a dotted list of identifiers, such as `powers.square`.
    #[error("invalid function name {name:?}: expected dotted identifiers such as `powers.square`")]
    InvalidName {
        /// The refused name.
        name: String,
    },
    /// Two functions were registered under one name.
    #[error("function `{name}` is registered twice")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// A timeout was set for a function that is not registered.
    #[error("timeout set for unknown function `{name}`")]
    UnknownFunction {
        /// The name.
        name: String,
    },
    /// A timeout of zero (every call would time out).
    #[error("timeout of {timeout:?} for {scope}: timeouts must be greater than zero")]
    ZeroTimeout {
        /// `default` or the function's name.
        scope: String,
        /// The refused value.
        timeout: Duration,
    },
    /// A TypeScript interface name that is not an identifier.
    #[error("invalid TypeScript interface name {name:?}")]
    InvalidTypeName {
        /// The refused name.
        name: String,
    },
}
