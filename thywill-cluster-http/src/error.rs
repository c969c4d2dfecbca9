//! The error type of the HTTP backend.

use thywill_core::{CoreError, ErrorKind};

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

impl Error {
    /// What kind of failure this is, for callers that decide by it: a member that cannot be
    /// reached (connection refused or lost, timed out) is [`Unavailable`](ErrorKind::Unavailable)
    /// — retrying may succeed; a refused or missing setting is [`Invalid`](ErrorKind::Invalid).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config { .. } | Self::MissingSecret => ErrorKind::Invalid,
            Self::Codec(_) => ErrorKind::Codec,
            Self::Client(e) if e.is_connect() || e.is_timeout() || e.is_request() => ErrorKind::Unavailable,
            Self::Client(e) if e.is_builder() => ErrorKind::Invalid,
            Self::Listen { .. } | Self::Client(_) => ErrorKind::Component,
        }
    }
}

/// Keeps the error as the source, with its [`kind`](Error::kind).
impl From<Error> for CoreError {
    fn from(e: Error) -> Self {
        CoreError::new(e.kind(), "cluster-http", e)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[tokio::test]
    async fn an_unreachable_member_is_unavailable_with_the_client_error_as_source() -> anyhow::Result<()> {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let refused = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/"))
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await;
        let Err(refused) = refused else {
            anyhow::bail!("a request to a closed port succeeded");
        };
        let err = CoreError::from(Error::Client(refused));
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(err.is_retryable());
        let source = err.source().and_then(|s| s.downcast_ref::<Error>());
        assert!(
            matches!(source, Some(Error::Client(e)) if e.is_connect()),
            "{source:?}"
        );
        assert_eq!(CoreError::from(Error::MissingSecret).kind(), ErrorKind::Invalid);
        assert_eq!(CoreError::from(Error::Codec("x".into())).kind(), ErrorKind::Codec);
        Ok(())
    }
}
