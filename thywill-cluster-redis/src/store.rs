//! A Redis command connection shared by the stores of this crate (sessions, channels): one
//! fred client that reconnects by itself, every command bounded by a timeout; and the checks
//! of the settings every store has (url, prefix, command timeout; resources too).

use std::time::Duration;

use fred::prelude::{Builder, Client, ClientLike, ConnectionConfig, PerformanceConfig, ReconnectPolicy};
use fred::types::{ClusterHash, CustomCommand, FromValue, Value};

use crate::Error;

/// Checks a Redis URL. `rediss://` (TLS) is refused: this build's Redis client has no TLS,
/// and would otherwise talk plain text to a server the URL says is encrypted.
pub(crate) fn check_url(url: &str) -> Result<(), Error> {
    if url.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("rediss:/")) {
        return Err(Error::Config {
            setting: "url",
            reason: "rediss:// (TLS) is not supported by this build; reach Redis over a private network \
                     or a TLS tunnel (see SECURITY.md)"
                .into(),
        });
    }
    fred::types::config::Config::from_url(url)
        .map(|_| ())
        .map_err(|e| Error::Config {
            setting: "url",
            reason: e.to_string(),
        })
}

/// Checks a key prefix.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), Error> {
    if prefix.chars().any(char::is_whitespace) {
        return Err(Error::Config {
            setting: "prefix",
            reason: "must not contain whitespace".into(),
        });
    }
    Ok(())
}

/// Checks a command timeout.
pub(crate) fn check_timeout(timeout: Duration) -> Result<(), Error> {
    if timeout.is_zero() {
        return Err(Error::Config {
            setting: "command timeout",
            reason: "must be positive".into(),
        });
    }
    Ok(())
}

/// Defines the setters every store's configuration has — `with_url`, `with_prefix` (its doc
/// given) and `with_command_timeout` — on a struct with `url`, `prefix` and `command_timeout`
/// fields. Used inside the struct's `impl` block.
macro_rules! store_setters {
    ($prefix_doc:literal) => {
        /// The Redis server (`redis://host:port[/db]`).
        pub fn with_url(mut self, url: impl Into<String>) -> Result<Self, Error> {
            let url = url.into();
            $crate::store::check_url(&url)?;
            self.url = url;
            Ok(self)
        }

        #[doc = $prefix_doc]
        pub fn with_prefix(mut self, prefix: impl Into<String>) -> Result<Self, Error> {
            let prefix = prefix.into();
            $crate::store::check_prefix(&prefix)?;
            self.prefix = prefix;
            Ok(self)
        }

        /// Bound of every Redis command (default 2 s).
        pub fn with_command_timeout(mut self, timeout: std::time::Duration) -> Result<Self, Error> {
            $crate::store::check_timeout(timeout)?;
            self.command_timeout = timeout;
            Ok(self)
        }
    };
}
pub(crate) use store_setters;

/// One command connection.
pub(crate) struct Commands {
    client: Client,
    timeout: Duration,
}

impl Commands {
    /// Connects to `url`; every later command is bounded by `timeout`.
    pub(crate) async fn connect(url: &str, timeout: Duration) -> Result<Self, Error> {
        let mut b = Builder::from_config(fred::types::config::Config::from_url(url)?);
        b.set_policy(ReconnectPolicy::new_exponential(0, 50, 1_000, 2))
            .set_performance_config(PerformanceConfig {
                default_command_timeout: timeout,
                ..PerformanceConfig::default()
            })
            .set_connection_config(ConnectionConfig {
                connection_timeout: timeout,
                internal_command_timeout: timeout,
                ..ConnectionConfig::default()
            });
        let client = b.build()?;
        tokio::time::timeout(timeout * 2, client.init())
            .await
            .map_err(|_| Error::Timeout("connect"))??;
        Ok(Self { client, timeout })
    }

    /// Runs one command; `hash` says which argument is the key (for Redis Cluster routing).
    pub(crate) async fn run<R: FromValue>(
        &self,
        name: &'static str,
        hash: ClusterHash,
        args: Vec<Value>,
    ) -> Result<R, Error> {
        let cmd = CustomCommand::new_static(name, hash, false);
        tokio::time::timeout(self.timeout, self.client.custom(cmd, args))
            .await
            .map_err(|_| Error::Timeout(name))?
            .map_err(Error::from)
    }

    /// Closes the connection.
    pub(crate) async fn quit(&self) {
        let _ = tokio::time::timeout(self.timeout, self.client.quit()).await;
    }
}
