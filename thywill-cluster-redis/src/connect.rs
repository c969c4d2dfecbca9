//! Building the Redis connections: every client of this crate (the cluster's publishers and
//! subscriber, each store's command connection, the resources' invalidation subscriber) is made
//! here, from a URL and an optional CA file, so that one place decides the topology, TLS,
//! timeouts and the reconnect policy.
//!
//! | URL | topology |
//! |---|---|
//! | `redis://[user:password@]host:port[/db]` | one server |
//! | `rediss://…` | one server over TLS (rustls with ring) |
//! | `redis-cluster://host:port[?node=host:port&node=…]` | a Redis Cluster, discovered from any listed node |
//! | `redis-sentinel://host:port[/db]?sentinelServiceName=name[&node=host:port…]` | the primary a set of sentinels names, followed through failovers |
//!
//! `rediss-cluster://` and `rediss-sentinel://` are the TLS forms. Without a CA file the
//! system's root certificates are trusted; with one (`with_ca_file` on every configuration),
//! only the CAs it holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::{Builder, Client, ClientLike, ConnectionConfig, PerformanceConfig, ReconnectPolicy};
use fred::types::config::{Config, ServerConfig, TlsConfig, TlsConnector};

use crate::Error;
use crate::error::FredResult;

/// How long a client may take to connect: twice the command timeout.
fn connect_bound(timeout: Duration) -> Duration {
    timeout * 2
}

/// The URL schemes that mean TLS.
fn uses_tls(url: &str) -> bool {
    let scheme = url.split("://").next().unwrap_or_default().to_ascii_lowercase();
    scheme.starts_with("rediss") || scheme.starts_with("valkeys")
}

/// Parses a URL (and loads the CA file, when given) into the client's configuration. A TLS
/// URL without a CA file gets the system's roots only with `roots` (loading them takes a while:
/// settings are checked without them, connections made with them).
pub(crate) fn parse(url: &str, ca_file: Option<&Path>, roots: bool) -> Result<Config, Error> {
    let tls = uses_tls(url);
    // Parsed as its plain form, so that the client does not load the system's roots here.
    let plain = match url.split_once("://") {
        Some((scheme, rest)) if tls => {
            let (name, topology) = scheme.split_at(scheme.find('-').unwrap_or(scheme.len()));
            format!("{}{topology}://{rest}", &name[..name.len() - 1])
        }
        _ => url.to_owned(),
    };
    let mut config = Config::from_url(&plain).map_err(|e| Error::Config {
        setting: "url",
        reason: e.to_string(),
    })?;
    if tls && ca_file.is_none() && roots {
        config.tls = Some(TlsConnector::default_rustls().redis()?.into());
    }
    if let ServerConfig::Sentinel { service_name, .. } = &config.server
        && service_name.is_empty()
    {
        return Err(Error::Config {
            setting: "url",
            reason: "a redis-sentinel:// URL needs sentinelServiceName=<primary's name>".into(),
        });
    }
    match ca_file {
        None => {}
        Some(_) if !uses_tls(url) => {
            return Err(Error::Config {
                setting: "ca_file",
                reason: format!(
                    "a CA file is for TLS: use a rediss:// URL (not {})",
                    url.split("://").next().unwrap_or_default()
                ),
            });
        }
        Some(path) => config.tls = Some(tls_with_ca(path)?),
    }
    Ok(config)
}

/// Whether `url` names a Redis Cluster (`redis-cluster://`, `rediss-cluster://`).
pub(crate) fn is_cluster_url(url: &str) -> bool {
    parse(url, None, false).is_ok_and(|c| matches!(c.server, ServerConfig::Clustered { .. }))
}

/// A rustls client configuration (ring, as everywhere in the workspace) trusting only the CAs
/// in the PEM file at `path`.
fn tls_with_ca(path: &Path) -> Result<TlsConfig, Error> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    let bad = |reason: String| Error::Config {
        setting: "ca_file",
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| bad(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(bad(format!("{}: no PEM certificate in it", path.display())));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(config).into())
}

/// Where Redis is and how to trust it: what every store's and the cluster's configuration
/// holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) ca_file: Option<PathBuf>,
}

impl Default for Target {
    /// `redis://127.0.0.1:6379`, no CA file.
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            ca_file: None,
        }
    }
}

impl Target {
    /// The same URL, trusting the CAs in `path` (checked now: the file is read).
    pub(crate) fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        parse(&self.url, Some(&path), false)?;
        self.ca_file = Some(path);
        Ok(self)
    }

    /// Whether the URL names a topology that fails over to a replica (Redis Cluster, Sentinel):
    /// writes a primary acknowledged may then be missing on its successor.
    pub(crate) fn fails_over(&self) -> bool {
        parse(&self.url, None, false).is_ok_and(|c| {
            matches!(
                c.server,
                ServerConfig::Clustered { .. } | ServerConfig::Sentinel { .. }
            )
        })
    }

    /// Replaces the URL, keeping the CA file (checked against the new URL).
    pub(crate) fn with_url(self, url: impl Into<String>) -> Result<Self, Error> {
        let url = url.into();
        parse(&url, self.ca_file.as_deref(), false)?;
        Ok(Self { url, ..self })
    }
}

/// Makes the clients of one part (the cluster, or one store), all alike.
pub(crate) struct Connector {
    builder: Builder,
    tls: bool,
    timeout: Duration,
}

impl Connector {
    /// Clients for `target`; every command bounded by `timeout`, reconnecting with `policy`.
    pub(crate) fn new(target: &Target, timeout: Duration, policy: ReconnectPolicy) -> Result<Self, Error> {
        let config = parse(&target.url, target.ca_file.as_deref(), true)?;
        let tls = config.tls.is_some();
        let mut builder = Builder::from_config(config);
        builder
            .set_policy(policy)
            .set_performance_config(PerformanceConfig {
                default_command_timeout: timeout,
                ..PerformanceConfig::default()
            })
            .set_connection_config(ConnectionConfig {
                connection_timeout: timeout,
                internal_command_timeout: timeout,
                ..ConnectionConfig::default()
            });
        Ok(Self {
            builder,
            tls,
            timeout,
        })
    }

    /// The stores' policy: retry forever, 50 ms to 1 s apart.
    pub(crate) fn for_store(target: &Target, timeout: Duration) -> Result<Self, Error> {
        Self::new(target, timeout, ReconnectPolicy::new_exponential(0, 50, 1_000, 2))
    }

    /// Sets the capacity of the clients' event channels (messages received by a subscriber).
    pub(crate) fn with_broadcast_capacity(mut self, capacity: usize) -> Self {
        self.builder
            .with_performance_config(|p| p.broadcast_channel_capacity = capacity);
        self
    }

    /// A command client (not connected yet: see [`Connector::init`]).
    pub(crate) fn client(&self) -> Result<Client, Error> {
        self.builder.build().redis()
    }

    /// A subscriber client (not connected yet: see [`Connector::init`]).
    pub(crate) fn subscriber(&self) -> Result<SubscriberClient, Error> {
        self.builder.build_subscriber_client().redis()
    }

    /// Connects `client`, bounded by twice the command timeout. The first failure is returned
    /// (the reconnect policy applies once connected); with TLS its message says so.
    pub(crate) async fn init(&self, client: &impl ClientLike, what: &'static str) -> Result<(), Error> {
        let connected = tokio::time::timeout(connect_bound(self.timeout), client.init())
            .await
            .map_err(|_| Error::Timeout(what))?;
        match connected {
            Ok(_) => Ok(()),
            Err(e) if self.tls => Err(Error::Tls(crate::error::RedisError::from(e))),
            Err(e) => Err(e).redis(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_topology() -> Result<(), Error> {
        assert!(!is_cluster_url("redis://127.0.0.1:6379"));
        assert!(is_cluster_url(
            "redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001"
        ));
        assert!(is_cluster_url("rediss-cluster://127.0.0.1:7000"));
        let s = parse(
            "redis-sentinel://127.0.0.1:26379?sentinelServiceName=main&node=127.0.0.1:26380",
            None,
            false,
        )?;
        assert!(matches!(s.server, ServerConfig::Sentinel { ref hosts, .. } if hosts.len() == 2));
        assert!(parse("redis-sentinel://127.0.0.1:26379", None, false).is_err());
        assert!(parse("rediss://127.0.0.1:6380", None, true)?.tls.is_some());
        assert!(parse("redis://127.0.0.1:6379", None, true)?.tls.is_none());
        let tls_cluster = parse("rediss-cluster://127.0.0.1:7000?node=127.0.0.1:7001", None, true)?;
        assert!(tls_cluster.tls.is_some() && matches!(tls_cluster.server, ServerConfig::Clustered { .. }));
        assert!(parse("REDISS://127.0.0.1:6380", None, true)?.tls.is_some());
        Ok(())
    }

    #[test]
    fn a_ca_file_needs_tls_and_a_certificate() {
        let missing = Path::new("/nonexistent/ca.pem");
        let plain = parse("redis://127.0.0.1:6379", Some(missing), false);
        assert!(
            matches!(
                plain,
                Err(Error::Config {
                    setting: "ca_file",
                    ..
                })
            ),
            "{plain:?}"
        );
        let absent = parse("rediss://127.0.0.1:6380", Some(missing), false);
        assert!(
            matches!(
                absent,
                Err(Error::Config {
                    setting: "ca_file",
                    ..
                })
            ),
            "{absent:?}"
        );
        let dir = std::env::temp_dir().join(format!("thywill-ca-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let empty = dir.join("empty.pem");
        let _ = std::fs::write(&empty, "not a certificate\n");
        let refused = parse("rediss://127.0.0.1:6380", Some(&empty), false);
        assert!(
            matches!(&refused, Err(Error::Config { reason, .. }) if reason.contains("no PEM certificate")),
            "{refused:?}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
