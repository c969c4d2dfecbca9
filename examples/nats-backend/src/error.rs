//! The error type of the NATS backend.

use thywill_core::CoreError;

/// Errors of the NATS cluster backend.
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
    /// The NATS server could not be reached.
    #[error("nats: cannot connect to {url}: {source}")]
    Connect {
        /// The server's URL.
        url: String,
        /// The cause.
        source: async_nats::ConnectError,
    },
    /// The member's subject could not be subscribed to.
    #[error("nats: cannot subscribe to {subject}: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// The cause.
        source: async_nats::SubscribeError,
    },
    /// The NATS server did not confirm the member's subscription.
    #[error("nats: the subscription was not confirmed: {0}")]
    Flush(#[source] async_nats::client::FlushError),
    /// A JetStream request (of the history) failed.
    #[error("nats jetstream: {what}: {message}")]
    JetStream {
        /// What was asked.
        what: &'static str,
        /// Why it failed.
        message: String,
    },
    /// The NATS server did not answer in time.
    #[error("nats: {0} timed out")]
    Timeout(&'static str),
    /// A message could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),
}

impl From<Error> for CoreError {
    fn from(e: Error) -> Self {
        CoreError::component("cluster-nats", e)
    }
}
