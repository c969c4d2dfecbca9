//! Typed configuration of a node, from a TOML file, the environment and command-line
//! overrides, with errors that name the offending key.
//!
//! Precedence, lowest first:
//!
//! 1. defaults ([`Config::default`]);
//! 2. the TOML file, if one is given;
//! 3. environment variables `THYWILL_<KEY>`, sections separated by a double underscore:
//!    `THYWILL_PORT=10081`, `THYWILL_CLUSTER__BACKEND=redis`,
//!    `THYWILL_CLUSTER__REDIS_URL=redis://10.0.0.5:6379`, `THYWILL_SESSION__SECRET=…`;
//! 4. explicit overrides (typically command-line flags), as `("cluster.backend", "redis")`.
//!
//! The library never reads the environment itself: pass `std::env::vars()` to
//! [`Config::load`].
//!
//! ```toml
//! host = "127.0.0.1"
//! port = 10087
//! member = "alpha"
//! base_path = "/chat"
//!
//! [limits]
//! max_message_size = 65536
//! outbound_queue = 1024
//!
//! [cluster]                         # one bundle: cluster, history, channels, sessions
//! backend = "redis"                 # none | redis | http
//! members = ["alpha", "beta"]       # http: ["alpha=10.0.0.1:20087", …]
//! redis_url = "redis://127.0.0.1:6379"
//! # rediss://…, redis-cluster://…, redis-sentinel://…; redis_ca_file = "/etc/thywill/redis-ca.pem"
//!
//! [session]
//! secret = "at least 32 bytes of secret, shared by every member"
//!
//! [replay]                          # recovery of missed messages after reconnects
//! max_entries = 10000               # per stream
//! max_age_ms = 300000
//! # enabled = false; prefix = "thywill:chat:history:" (Redis)
//!
//! [cache]                           # the applications' named caches
//! backend = "redis"                 # memory (default) | redis
//! # redis_url (default: cluster.redis_url); prefix = "thywill:chat:cache:"
//!
//! [tls]
//! cert = "/etc/thywill/cert.pem"
//! key = "/etc/thywill/key.pem"
//! redirect_port = 80
//!
//! [log]
//! format = "json"                   # pretty | json
//! filter = "info,thywill_transport=debug"
//!
//! [process]                         # started as root (ports 80/443): switch once bound
//! user = "thywill"                  # name or numeric id
//! group = "thywill"                 # default: the user's primary group
//! # allow_root = true               # serving as root is refused without it
//!
//! metrics = "loopback"              # off | loopback | public
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::{Builder, Error, MetricsAccess, SessionConfig, Thywill, TlsConfig, TransportConfig};

/// An invalid configuration value; `key` names it (dotted, such as `cluster.redis_url`).
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration `{key}`: {message}")]
pub struct ConfigError {
    /// The dotted key.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self {
            key: key.into(),
            message: message.to_string(),
        }
    }
}

/// Limits of the transport.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest client message in bytes (close 1009 above it).
    pub max_message_size: usize,
    /// Outbound frames queued per connection before it is cut off as a slow consumer.
    pub outbound_queue: usize,
    /// Ping interval in milliseconds.
    pub keepalive_interval_ms: u64,
    /// Silence after which a connection counts as dead, in milliseconds.
    pub keepalive_timeout_ms: u64,
    /// Malformed frames tolerated before closing with 4000.
    pub max_bad_frames: u32,
    /// Client frames per second per connection (close 4429 above it).
    pub rate_per_sec: u32,
    /// Burst allowance of the rate limit.
    pub rate_burst: u32,
    /// Most WebSocket connections of this member.
    pub max_connections: usize,
    /// Time for a socket's first byte, a TLS handshake and a request's headers, in
    /// milliseconds.
    pub handshake_timeout_ms: u64,
    /// Longest time without a byte either way between HTTP exchanges, in milliseconds.
    pub idle_timeout_ms: u64,
    /// Most TCP connections of this member's listener at any stage (closed at once above).
    pub max_sockets: usize,
    /// Bytes of frames queued per connection before it is cut off as a slow consumer (4008).
    pub max_outbound_bytes: usize,
    /// Host names requests may name (`Host`); empty: loopback names on a loopback listener,
    /// any name otherwise. `["*"]`: any.
    #[serde(deserialize_with = "string_or_list")]
    pub allowed_hosts: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: 64 * 1024,
            outbound_queue: 1024,
            keepalive_interval_ms: 15_000,
            keepalive_timeout_ms: 40_000,
            max_bad_frames: 16,
            rate_per_sec: 200,
            rate_burst: 400,
            max_connections: 100_000,
            handshake_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_sockets: 101_000,
            max_outbound_bytes: 4 * 1024 * 1024,
            allowed_hosts: Vec::new(),
        }
    }
}

/// Recovery of missed messages after reconnects (see `docs/PROTOCOL.md`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplaySettings {
    /// Whether channel and session messages are numbered and logged for replay.
    pub enabled: bool,
    /// Messages kept per stream.
    pub max_entries: usize,
    /// How long a message stays replayable, in milliseconds.
    pub max_age_ms: u64,
    /// Payload bytes kept per stream.
    pub max_stream_bytes: usize,
    /// Payload bytes kept in all streams of a member's in-memory history.
    pub max_total_bytes: usize,
    /// How long sending keeps retrying to log a message while the history is unreachable,
    /// in milliseconds.
    pub append_timeout_ms: u64,
    /// Redis key prefix of the shared history (default `thywill:<app>:history:`).
    pub prefix: Option<String>,
}

impl Default for ReplaySettings {
    fn default() -> Self {
        let limits = thywill_core::HistoryLimits::default();
        Self {
            enabled: true,
            max_entries: limits.max_entries,
            max_age_ms: u64::try_from(limits.max_age.as_millis()).unwrap_or(u64::MAX),
            max_stream_bytes: limits.max_stream_bytes,
            max_total_bytes: limits.max_total_bytes,
            append_timeout_ms: 10_000,
            prefix: None,
        }
    }
}

/// Where the applications' named caches live (see [`crate::AppContext::create_cache`]).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// `memory` (default: each member's own copies, invalidated across the cluster by the
    /// node) or `redis` (one copy in Redis, shared by the members; feature `redis`).
    pub backend: CacheBackend,
    /// Redis URL (default: `cluster.redis_url`).
    pub redis_url: Option<String>,
    /// PEM file of the CAs trusted for a `rediss://` URL (default: `cluster.redis_ca_file` when
    /// `redis_url` is not set).
    pub redis_ca_file: Option<PathBuf>,
    /// Redis key prefix (default `thywill:<app>:cache:`).
    pub prefix: Option<String>,
}

/// Which cache manager.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheBackend {
    /// [`crate::MemoryCaches`].
    #[default]
    Memory,
    /// `RedisCaches` (feature `redis`).
    Redis,
}

/// Which cluster backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// A single member.
    #[default]
    None,
    /// Redis pub/sub (feature `redis`).
    Redis,
    /// Direct HTTP between members (feature `http`).
    Http,
}

/// The backend a configuration selects ([`Config::backend`]): install it with
/// [`Builder::backend`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SelectedBackend {
    /// A single member, everything in memory (`backend = "none"`).
    Local(crate::LocalBackend),
    /// Redis: cluster, shared replay history, channels of sessions and sessions
    /// (`backend = "redis"`).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    Redis(Box<thywill_cluster_redis::RedisBackend>),
    /// Direct HTTP between members (`backend = "http"`).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    Http(thywill_cluster_http::HttpBackend),
}

impl SelectedBackend {
    /// Every member of the cluster, the local one included, in ring order.
    pub fn members(&self) -> Vec<crate::MemberId> {
        match self {
            Self::Local(b) => vec![b.member().clone()],
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.cluster_config().members().to_vec(),
            #[cfg(feature = "http")]
            Self::Http(b) => crate::Cluster::members(&**b.cluster()),
        }
    }
}

impl crate::Backend for SelectedBackend {
    async fn connect(self) -> thywill_core::CoreResult<thywill_core::BackendParts> {
        match self {
            Self::Local(b) => b.connect().await,
            #[cfg(feature = "redis")]
            Self::Redis(b) => (*b).connect().await,
            #[cfg(feature = "http")]
            Self::Http(b) => b.connect().await,
        }
    }
}

/// Cluster settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// The backend.
    pub backend: Backend,
    /// Member ids (Redis) or `id=host:port` cluster addresses (HTTP); a list or a
    /// comma-separated string.
    #[serde(deserialize_with = "string_or_list")]
    pub members: Vec<String>,
    /// Redis URL: `redis://`, `rediss://` (TLS), `redis-cluster://` or `redis-sentinel://` (see
    /// the Redis backend's docs).
    pub redis_url: String,
    /// PEM file of the CAs trusted for a `rediss://` URL (default: the system's roots).
    pub redis_ca_file: Option<PathBuf>,
    /// Redis channel prefix (default `thywill:<app>:cluster:`).
    pub prefix: Option<String>,
    /// Address of the local HTTP cluster server (default: the member's listed address).
    pub listen: Option<SocketAddr>,
    /// Shared secret of HTTP cluster traffic (required with the HTTP backend).
    pub secret: Option<String>,
    /// Heartbeat (Redis) or up-check (HTTP) interval in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Heartbeat timeout (Redis) or up-check request timeout (HTTP) in milliseconds.
    pub heartbeat_timeout_ms: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            backend: Backend::None,
            members: Vec::new(),
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_ca_file: None,
            prefix: None,
            listen: None,
            secret: None,
            heartbeat_interval_ms: 200,
            heartbeat_timeout_ms: 500,
        }
    }
}

/// Session settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// Signing secret (≥ 32 bytes, the same on every member); sessions are off without it.
    pub secret: Option<String>,
    /// Cookie name (default `thywill.sid`).
    pub cookie_name: Option<String>,
    /// Mark the cookie `Secure`.
    pub secure: bool,
}

/// TLS settings: HTTPS and WSS served directly.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Plain-HTTP port that redirects to HTTPS, if any.
    #[serde(default)]
    pub redirect_port: Option<u16>,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines (development).
    #[default]
    Pretty,
    /// One JSON object per line (production).
    Json,
}

/// Logging settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Output format.
    pub format: LogFormat,
    /// `tracing` filter directives, such as `info,thywill_transport=debug`.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: "info".into(),
        }
    }
}

/// Who may read `<base>/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricsSetting {
    /// No metrics route.
    Off,
    /// Loopback clients only.
    #[default]
    Loopback,
    /// Everyone.
    Public,
}

/// Who the process runs as once its listeners are bound (see [`crate::privileges`]).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessSettings {
    /// The user to switch to after binding (a name or a numeric id); the process must have
    /// been started as root, or as this user already.
    pub user: Option<String>,
    /// The group to switch to (a name or a numeric id; default: the user's primary group).
    pub group: Option<String>,
    /// Serve as root when no user is given (default false: [`Config::serve`] refuses).
    pub allow_root: bool,
}

impl ProcessSettings {
    /// The switch these settings ask for.
    pub fn run_as(&self) -> crate::privileges::RunAs {
        crate::privileges::RunAs::from_settings(self.user.as_deref(), self.group.as_deref(), self.allow_root)
    }
}

/// The configuration of one member.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (default 127.0.0.1: loopback only).
    pub host: IpAddr,
    /// Port to listen on.
    pub port: u16,
    /// This member's id.
    pub member: String,
    /// Path prefix of the service (default: the application's own).
    pub base_path: Option<String>,
    /// Transport limits.
    pub limits: Limits,
    /// Cluster.
    pub cluster: ClusterSettings,
    /// Sessions.
    pub session: SessionSettings,
    /// Replay of missed messages.
    pub replay: ReplaySettings,
    /// The applications' named caches.
    pub cache: CacheSettings,
    /// TLS, if served directly.
    pub tls: Option<TlsSettings>,
    /// Logging.
    pub log: LogSettings,
    /// Metrics route access.
    pub metrics: MetricsSetting,
    /// The user and group to run as once bound.
    pub process: ProcessSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 10081,
            member: "alpha".into(),
            base_path: None,
            limits: Limits::default(),
            cluster: ClusterSettings::default(),
            session: SessionSettings::default(),
            replay: ReplaySettings::default(),
            cache: CacheSettings::default(),
            tls: None,
            log: LogSettings::default(),
            metrics: MetricsSetting::default(),
            process: ProcessSettings::default(),
        }
    }
}

fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        Either::Many(v) => v,
    })
}

/// Parses an environment or command-line value as a TOML value (number, boolean, array),
/// else takes it as a string.
fn scalar(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

/// Deep-merges `over` into `base`: tables merge, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), ConfigError> {
    let mut parts = key.split('.').peekable();
    let mut current = table;
    while let Some(part) = parts.next() {
        if part.is_empty() {
            return Err(ConfigError::new(key, "empty key segment"));
        }
        if parts.peek().is_none() {
            current.insert(part.to_owned(), value);
            return Ok(());
        }
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(ConfigError::new(key, format!("`{part}` is not a section"))),
        };
    }
    Ok(())
}

impl Config {
    /// Loads defaults, then `file` (TOML), then `THYWILL_*` variables from `env`, then
    /// `overrides` (dotted keys), and validates the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[(&str, String)],
    ) -> Result<Config, ConfigError> {
        Self::load_with_defaults(&[], file, env, overrides)
    }

    /// Like [`Config::load`], with application defaults (dotted keys, such as an example's own
    /// port) that sit between the built-in defaults and the file.
    pub fn load_with_defaults(
        defaults: &[(&str, String)],
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[(&str, String)],
    ) -> Result<Config, ConfigError> {
        let mut table = toml::Table::new();
        for (key, value) in defaults {
            set_dotted(&mut table, key, scalar(value))?;
        }
        let from_file = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::new("config", format!("{}: {e}", path.display())))?;
                toml::from_str::<toml::Table>(&text)
                    .map_err(|e| ConfigError::new("config", format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        merge(&mut table, from_file);
        let mut from_env: Vec<(String, String)> = env
            .into_iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix("THYWILL_")?;
                Some((rest.to_ascii_lowercase().replace("__", "."), v))
            })
            .collect();
        from_env.sort();
        for (key, value) in &from_env {
            set_dotted(&mut table, key, scalar(value))?;
        }
        for (key, value) in overrides {
            set_dotted(&mut table, key, scalar(value))?;
        }
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." { "config".to_owned() } else { path };
            ConfigError::new(key, e.into_inner())
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.transport(None)?;
        self.session_config()?;
        if let Some(tls) = &self.tls {
            TlsConfig::from_pem_files(&tls.cert, &tls.key).map_err(|e| ConfigError::new("tls", e))?;
        }
        if self.member.is_empty() {
            return Err(ConfigError::new("member", "must not be empty"));
        }
        for (key, value) in [
            ("process.user", &self.process.user),
            ("process.group", &self.process.group),
        ] {
            if value.as_deref().is_some_and(|v| v.is_empty() || v.contains('\0')) {
                return Err(ConfigError::new(key, "must be a name or a numeric id"));
            }
        }
        match self.cluster.backend {
            Backend::None => {}
            Backend::Redis if !cfg!(feature = "redis") => {
                return Err(ConfigError::new(
                    "cluster.backend",
                    "built without the `redis` feature",
                ));
            }
            Backend::Http if !cfg!(feature = "http") => {
                return Err(ConfigError::new(
                    "cluster.backend",
                    "built without the `http` feature",
                ));
            }
            Backend::Redis | Backend::Http => {
                self.backend("app")?;
            }
        }
        let _checked = self.caches(Builder::default(), "app")?;
        Ok(())
    }

    /// The transport configuration; `default_base` is the application's base path.
    pub fn transport(&self, default_base: Option<&str>) -> Result<TransportConfig, ConfigError> {
        let l = &self.limits;
        let base = self.base_path.as_deref().or(default_base).unwrap_or("/");
        let key = |k: &'static str| move |e: crate::transport::TransportError| ConfigError::new(k, e);
        let config = TransportConfig::default()
            .with_base_path(base)
            .map_err(key("base_path"))?
            .with_max_message_size(l.max_message_size)
            .map_err(key("limits.max_message_size"))?
            .with_outbound_queue(l.outbound_queue)
            .map_err(key("limits.outbound_queue"))?
            .with_keepalive(
                Duration::from_millis(l.keepalive_interval_ms),
                Duration::from_millis(l.keepalive_timeout_ms),
            )
            .map_err(key("limits.keepalive_interval_ms"))?
            .with_max_bad_frames(l.max_bad_frames)
            .with_rate_limit(l.rate_per_sec, l.rate_burst)
            .map_err(key("limits.rate_per_sec"))?
            .with_max_connections(l.max_connections)
            .map_err(key("limits.max_connections"))?
            .with_handshake_timeout(Duration::from_millis(l.handshake_timeout_ms))
            .map_err(key("limits.handshake_timeout_ms"))?
            .with_idle_timeout(Duration::from_millis(l.idle_timeout_ms))
            .map_err(key("limits.idle_timeout_ms"))?
            .with_max_sockets(l.max_sockets)
            .map_err(key("limits.max_sockets"))?
            .with_max_outbound_bytes(l.max_outbound_bytes)
            .map_err(key("limits.max_outbound_bytes"))?
            .with_allowed_hosts(match l.allowed_hosts.as_slice() {
                [] => crate::transport::AllowedHosts::Default,
                [any] if any == "*" => crate::transport::AllowedHosts::Any,
                list => crate::transport::AllowedHosts::List(list.to_vec()),
            })
            .with_replay(self.replay.enabled)
            .with_append_timeout(Duration::from_millis(self.replay.append_timeout_ms))
            .map_err(key("replay.append_timeout_ms"))?
            .with_metrics(match self.metrics {
                MetricsSetting::Off => MetricsAccess::Off,
                MetricsSetting::Loopback => MetricsAccess::Loopback,
                MetricsSetting::Public => MetricsAccess::Public,
            });
        Ok(config)
    }

    /// The session configuration, if a secret is set.
    pub fn session_config(&self) -> Result<Option<SessionConfig>, ConfigError> {
        let Some(secret) = &self.session.secret else {
            return Ok(None);
        };
        let mut c =
            SessionConfig::new(secret.as_bytes()).map_err(|e| ConfigError::new("session.secret", e))?;
        if let Some(name) = &self.session.cookie_name {
            c = c
                .with_cookie_name(name)
                .map_err(|e| ConfigError::new("session.cookie_name", e))?;
        }
        Ok(Some(c.with_secure(self.session.secure)))
    }

    /// The configured backend, as one bundle ([`Builder::backend`]). `app` names the default
    /// prefixes: with `backend = "redis"`, keys and channels under `thywill:<app>:` (cluster
    /// channels `cluster.prefix`, default `thywill:<app>:cluster:`; the shared replay history
    /// `replay.prefix`, default `thywill:<app>:history:`; sessions and channels of sessions
    /// `thywill:<app>:`), every part at `cluster.redis_url`.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub fn backend(&self, app: &str) -> Result<SelectedBackend, ConfigError> {
        let c = &self.cluster;
        let heartbeat = (
            Duration::from_millis(c.heartbeat_interval_ms),
            Duration::from_millis(c.heartbeat_timeout_ms),
        );
        match c.backend {
            Backend::None => Ok(SelectedBackend::Local(crate::LocalBackend::new(
                self.member.as_str(),
            ))),
            #[cfg(feature = "redis")]
            Backend::Redis => {
                use thywill_cluster_redis::RedisBackend;
                let e = |k: &'static str| move |e: thywill_cluster_redis::Error| ConfigError::new(k, e);
                let mut members: Vec<crate::MemberId> = c
                    .members
                    .iter()
                    .map(|m| crate::MemberId::from(m.split('=').next().unwrap_or_default().trim()))
                    .collect();
                let local = crate::MemberId::from(self.member.as_str());
                if !members.contains(&local) {
                    members.push(local.clone());
                }
                let mut backend = RedisBackend::new(c.redis_url.clone()).map_err(e("cluster.redis_url"))?;
                if let Some(ca) = &c.redis_ca_file {
                    backend = backend
                        .with_ca_file(ca.clone())
                        .map_err(e("cluster.redis_ca_file"))?;
                }
                let mut backend = backend
                    .with_prefix(format!("thywill:{app}:"))
                    .map_err(e("cluster.prefix"))?
                    .with_members(members)
                    .map_err(e("cluster.members"))?
                    .with_local(local)
                    .map_err(e("member"))?
                    .with_heartbeat(heartbeat.0, heartbeat.1)
                    .map_err(e("cluster.heartbeat_interval_ms"))?
                    .with_history_limits(self.history_limits()?)
                    .map_err(e("replay.max_entries"))?;
                if let Some(prefix) = &c.prefix {
                    let cluster = backend
                        .cluster_config()
                        .clone()
                        .with_prefix(prefix.clone())
                        .map_err(e("cluster.prefix"))?;
                    backend = backend.with_cluster(cluster);
                }
                if let (Some(prefix), Some(history)) = (&self.replay.prefix, backend.history_config()) {
                    let history = history
                        .clone()
                        .with_prefix(prefix.clone())
                        .map_err(e("replay.prefix"))?;
                    backend = backend.with_history(history);
                }
                Ok(SelectedBackend::Redis(Box::new(backend)))
            }
            #[cfg(feature = "http")]
            Backend::Http => {
                use thywill_cluster_http::{HttpBackend, HttpClusterConfig};
                let e = |k: &'static str| move |e: thywill_cluster_http::Error| ConfigError::new(k, e);
                let members = thywill_cluster_http::parse_members(&c.members.join(","))
                    .map_err(e("cluster.members"))?;
                let mut config = HttpClusterConfig::default()
                    .with_members(members)
                    .map_err(e("cluster.members"))?
                    .with_local(crate::MemberId::from(self.member.as_str()))
                    .map_err(e("member"))?
                    .with_up_check(heartbeat.0, heartbeat.1, 2)
                    .map_err(e("cluster.heartbeat_interval_ms"))?;
                if let Some(listen) = c.listen {
                    config = config.with_listen(listen);
                }
                if let Some(secret) = &c.secret {
                    config = config
                        .with_secret(secret.as_bytes().to_vec())
                        .map_err(e("cluster.secret"))?;
                }
                Ok(SelectedBackend::Http(
                    HttpBackend::new(config).map_err(e("cluster"))?,
                ))
            }
            #[allow(unreachable_patterns)]
            other => Err(ConfigError::new(
                "cluster.backend",
                format!("{other:?} is not compiled in"),
            )),
        }
    }

    /// Applies the configuration to a builder: member, transport, sessions, and the backend
    /// ([`Config::backend`], installed with [`Builder::backend`]; a per-member replay history
    /// with the `[replay]` bounds unless the backend shares one). `base` is the application's
    /// default base path; `app` names the default Redis prefixes.
    pub fn apply(&self, builder: Builder, base: &str, app: &str) -> Result<Builder, ConfigError> {
        let mut builder = builder
            .member(self.member.as_str())
            .transport(self.transport(Some(base))?);
        if let Some(sessions) = self.session_config()? {
            builder = builder.sessions(sessions);
        }
        let builder = self.history(builder.backend(self.backend(app)?))?;
        self.caches(builder, app)
    }

    /// Gives the builder its cache manager as `[cache]` says: memory (the builder's default),
    /// or Redis under `<prefix>` (default `thywill:<app>:cache:`), at `cache.redis_url` or else
    /// `cluster.redis_url`.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub fn caches(&self, builder: Builder, app: &str) -> Result<Builder, ConfigError> {
        match self.cache.backend {
            CacheBackend::Memory => Ok(builder),
            #[cfg(feature = "redis")]
            CacheBackend::Redis => {
                use thywill_cluster_redis::RedisCachesConfig;
                let e = |k: &'static str| move |e: thywill_cluster_redis::Error| ConfigError::new(k, e);
                let (url, url_key, ca, ca_key) = match &self.cache.redis_url {
                    Some(url) => (
                        url.clone(),
                        "cache.redis_url",
                        &self.cache.redis_ca_file,
                        "cache.redis_ca_file",
                    ),
                    None => (
                        self.cluster.redis_url.clone(),
                        "cluster.redis_url",
                        &self.cluster.redis_ca_file,
                        "cluster.redis_ca_file",
                    ),
                };
                let mut config = RedisCachesConfig::default().with_url(url).map_err(e(url_key))?;
                if let Some(ca) = ca {
                    config = config.with_ca_file(ca.clone()).map_err(e(ca_key))?;
                }
                let config = config
                    .with_prefix(
                        self.cache
                            .prefix
                            .clone()
                            .unwrap_or_else(|| format!("thywill:{app}:cache:")),
                    )
                    .map_err(e("cache.prefix"))?;
                Ok(builder.redis_caches(config))
            }
            #[cfg(not(feature = "redis"))]
            CacheBackend::Redis => Err(ConfigError::new(
                "cache.backend",
                "built without the `redis` feature",
            )),
        }
    }

    /// The bounds of the replay history.
    pub fn history_limits(&self) -> Result<thywill_core::HistoryLimits, ConfigError> {
        let r = &self.replay;
        if r.max_entries == 0 {
            return Err(ConfigError::new("replay.max_entries", "must be at least 1"));
        }
        if r.max_age_ms == 0 {
            return Err(ConfigError::new("replay.max_age_ms", "must be positive"));
        }
        if r.max_stream_bytes == 0 {
            return Err(ConfigError::new("replay.max_stream_bytes", "must be positive"));
        }
        if r.max_total_bytes < r.max_stream_bytes {
            return Err(ConfigError::new(
                "replay.max_total_bytes",
                "must be at least replay.max_stream_bytes",
            ));
        }
        Ok(thywill_core::HistoryLimits {
            max_entries: r.max_entries,
            max_age: Duration::from_millis(r.max_age_ms),
            max_stream_bytes: r.max_stream_bytes,
            max_total_bytes: r.max_total_bytes,
        })
    }

    /// Gives the builder a per-member replay history bounded as `[replay]` says, unless the
    /// configured backend shares one (Redis: its bundle has it, see [`Config::backend`]).
    pub fn history(&self, builder: Builder) -> Result<Builder, ConfigError> {
        let limits = self.history_limits()?;
        match self.cluster.backend {
            #[cfg(feature = "redis")]
            Backend::Redis => Ok(builder),
            _ => Ok(builder.history(crate::LocalHistory::new(limits))),
        }
    }

    /// Binds the node as configured (HTTPS with an optional redirect when `tls` is set, else
    /// plain HTTP), then switches to the `[process]` user and group (see
    /// [`crate::privileges`]), and returns the URL of `page` and the future that serves until
    /// [`Thywill::shutdown`]. Fails rather than serve as root, unless `process.allow_root`.
    pub async fn serve(
        &self,
        node: &Thywill,
        page: &str,
    ) -> Result<(String, impl std::future::Future<Output = ()> + Send + 'static), Error> {
        let (url, serving) = self.bind(node, page).await?;
        // Every listener is bound; nothing has been served yet (the future is not polled).
        self.process.run_as().apply()?;
        Ok((url, serving))
    }

    async fn bind(&self, node: &Thywill, page: &str) -> Result<(String, crate::BoxServe), Error> {
        let addr = SocketAddr::new(self.host, self.port);
        match &self.tls {
            None => {
                let (bound, serving) = node.bind(addr).await?;
                Ok((
                    format!("http://{bound}{page}"),
                    Box::pin(serving) as crate::BoxServe,
                ))
            }
            Some(tls) => {
                let config = TlsConfig::from_pem_files(&tls.cert, &tls.key)?;
                let (bound, serving) = node.bind_tls(addr, config).await?;
                let serving: crate::BoxServe = match tls.redirect_port {
                    Some(port) => {
                        let (_, redirect) = node
                            .bind_https_redirect(SocketAddr::new(self.host, port), bound.port())
                            .await?;
                        Box::pin(async move {
                            let redirect = tokio::spawn(redirect);
                            serving.await;
                            let _ = redirect.await;
                        })
                    }
                    None => Box::pin(serving),
                };
                Ok((format!("https://{bound}{page}"), serving))
            }
        }
    }

    /// Installs a global `tracing` subscriber as `log` says (pretty or JSON lines on stderr).
    /// Does nothing if one is installed already.
    pub fn init_logging(&self) {
        let filter = tracing_subscriber::EnvFilter::try_new(&self.log.filter)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        let _ = match self.log.format {
            LogFormat::Pretty => builder.try_init(),
            LogFormat::Json => builder
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .try_init(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_file_env_and_overrides_apply_in_order() -> Result<(), ConfigError> {
        let dir = std::env::temp_dir().join(format!("thywill-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| ConfigError::new("test", e))?;
        let file = dir.join("member.toml");
        std::fs::write(
            &file,
            "port = 1\nmember = \"file\"\n[limits]\noutbound_queue = 7\n[log]\nformat = \"json\"\n",
        )
        .map_err(|e| ConfigError::new("test", e))?;
        let c = Config::load(
            Some(&file),
            env(&[
                ("THYWILL_PORT", "2"),
                ("THYWILL_LIMITS__MAX_MESSAGE_SIZE", "4096"),
                ("OTHER", "x"),
            ]),
            &[("port", "3".into())],
        )?;
        assert_eq!(c.port, 3, "overrides beat the environment");
        assert_eq!(c.member, "file", "the file beats defaults");
        assert_eq!(c.limits.outbound_queue, 7);
        assert_eq!(c.limits.max_message_size, 4096, "the environment beats the file");
        assert_eq!(c.log.format, LogFormat::Json);
        assert!(c.host.is_loopback(), "loopback by default");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("THYWILL_PORT", "seventy")], "port"),
            (
                &[("THYWILL_LIMITS__MAX_MESSAGE_SIZE", "10")],
                "limits.max_message_size",
            ),
            (
                &[("THYWILL_LIMITS__OUTBOUND_QUEUE", "0")],
                "limits.outbound_queue",
            ),
            (
                &[("THYWILL_CLUSTER__BACKEND", "carrier-pigeon")],
                "cluster.backend",
            ),
            (&[("THYWILL_SESSION__SECRET", "short")], "session.secret"),
            (&[("THYWILL_BASE_PATH", "/a b")], "base_path"),
            (&[("THYWILL_HOST", "nowhere")], "host"),
            (&[("THYWILL_LOG__FORMAT", "xml")], "log.format"),
            (&[("THYWILL_CACHE__BACKEND", "disk")], "cache.backend"),
            (
                &[
                    ("THYWILL_CACHE__BACKEND", "redis"),
                    ("THYWILL_CACHE__PREFIX", "a{b}:"),
                ],
                "cache.prefix",
            ),
            (
                &[
                    ("THYWILL_CACHE__BACKEND", "redis"),
                    ("THYWILL_CACHE__REDIS_URL", "redis://plain.example:6379"),
                    ("THYWILL_CACHE__REDIS_CA_FILE", "/nonexistent.pem"),
                ],
                "cache.redis_ca_file",
            ),
            (
                &[
                    ("THYWILL_TLS__CERT", "/nonexistent.pem"),
                    ("THYWILL_TLS__KEY", "/nonexistent.pem"),
                ],
                "tls",
            ),
        ];
        for (vars, key) in cases {
            match Config::load(None, env(vars), &[]) {
                Err(e) => assert_eq!(e.key, *key, "{vars:?}: {e}"),
                Ok(_) => panic!("{vars:?} should be refused"),
            }
        }
        match Config::load(None, env(&[("THYWILL_CLUSTER__NOPE", "1")]), &[]) {
            Err(e) => assert!(e.to_string().contains("nope"), "{e}"),
            Ok(_) => panic!("unknown keys are refused"),
        }
    }

    #[cfg(feature = "redis")]
    #[test]
    fn the_file_selects_the_whole_redis_bundle() -> Result<(), ConfigError> {
        let dir = std::env::temp_dir().join(format!("thywill-config-bundle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| ConfigError::new("test", e))?;
        let file = dir.join("member.toml");
        std::fs::write(
            &file,
            "member = \"beta\"\n[cluster]\nbackend = \"redis\"\nmembers = [\"alpha\", \"beta\"]\n\
             redis_url = \"redis://127.0.0.1:1\"\n[replay]\nmax_entries = 7\n",
        )
        .map_err(|e| ConfigError::new("test", e))?;
        let c = Config::load(Some(&file), env(&[]), &[])?;
        let _ = std::fs::remove_dir_all(&dir);
        let SelectedBackend::Redis(b) = c.backend("chat")? else {
            panic!("backend = \"redis\" selects the Redis bundle");
        };
        assert_eq!(b.cluster_config().members().len(), 2);
        assert_eq!(b.cluster_config().local().as_str(), "beta");
        assert_eq!(b.cluster_config().prefix(), "thywill:chat:cluster:");
        let history = b.history_config().expect("the bundle has the shared history");
        assert_eq!(history.limits().max_entries, 7, "bounded as [replay] says");
        assert_eq!(
            c.backend("chat")?.members(),
            vec![crate::MemberId::from("alpha"), crate::MemberId::from("beta")]
        );
        // `cluster.prefix` still names the cluster's channels alone.
        let c = Config::load(
            None,
            env(&[
                ("THYWILL_CLUSTER__BACKEND", "redis"),
                ("THYWILL_CLUSTER__PREFIX", "mine:"),
            ]),
            &[],
        )?;
        let SelectedBackend::Redis(b) = c.backend("chat")? else {
            panic!("the Redis bundle");
        };
        assert_eq!(b.cluster_config().prefix(), "mine:");
        assert!(matches!(
            Config::default().backend("chat")?,
            SelectedBackend::Local(_)
        ));
        Ok(())
    }

    #[test]
    fn members_accept_a_comma_separated_string() -> Result<(), ConfigError> {
        let c = Config::load(None, env(&[("THYWILL_CLUSTER__MEMBERS", "alpha, beta")]), &[])?;
        assert_eq!(c.cluster.members, vec!["alpha".to_owned(), "beta".to_owned()]);
        Ok(())
    }
}
