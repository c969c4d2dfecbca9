//! A Redis command connection shared by the stores of this crate (sessions, channels): one
//! fred client that reconnects by itself, every command bounded by a timeout; and the checks
//! of the settings every store has (url, prefix, command timeout; resources too).

use std::time::Duration;

use fred::prelude::{Client, ClientLike};
use fred::types::{ClusterHash, CustomCommand, FromValue, Value};

use crate::Error;
use crate::connect::{Connector, Target};
use crate::error::FredResult;

/// `{id}`: a Redis Cluster hash tag, so that every key built around `id` lands on one slot
/// (Redis hashes only what is between the first `{` and the next `}`). An id that would make an
/// empty tag (empty, or starting with `}`) gets a `~` before it, since an empty tag would hash
/// the whole key instead.
pub(crate) fn hash_tag(id: &str) -> String {
    if id.is_empty() || id.starts_with('}') {
        format!("{{~{id}}}")
    } else {
        format!("{{{id}}}")
    }
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

/// Defines the setters every store's configuration has — `with_url`, `with_ca_file`, `with_prefix` (its doc
/// given) and `with_command_timeout` — on a struct with `target`, `prefix` and `command_timeout`
/// fields. Used inside the struct's `impl` block.
macro_rules! store_setters {
    ($prefix_doc:literal) => {
        /// The Redis server: a URL as in the [crate docs](crate#redis-urls).
        pub fn with_url(mut self, url: impl Into<String>) -> Result<Self, Error> {
            self.target = self.target.with_url(url)?;
            Ok(self)
        }

        /// Trusts only the CA certificates in this PEM file for a `rediss://` URL (the file is
        /// read now; the URL must be set first).
        pub fn with_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Result<Self, Error> {
            self.target = self.target.with_ca_file(path)?;
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
    pub(crate) async fn connect(target: &Target, timeout: Duration) -> Result<Self, Error> {
        let connector = Connector::for_store(target, timeout)?;
        let client = connector.client()?;
        connector.init(&client, "connect").await?;
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
            .redis()
    }

    /// Closes the connection.
    pub(crate) async fn quit(&self) {
        let _ = tokio::time::timeout(self.timeout, self.client.quit()).await;
    }
}
