//! What every thywill-rs example shares: its configuration, logging, the cluster backend
//! ([`cluster`]), and serving a node until Ctrl-C (or SIGTERM), then shutting it down
//! gracefully.
//!
//! Configuration comes from [`thywill::config::Config`], lowest precedence first: defaults, the
//! TOML file named by `--config FILE`, `THYWILL_*` environment variables (for example
//! `THYWILL_LIMITS__OUTBOUND_QUEUE=256`, `THYWILL_LOG__FORMAT=json`), then the command-line
//! flags below. An invalid value stops start-up with an error naming its key.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, bail};
use thywill::Thywill;
use thywill::config::Config;

pub mod cluster;

pub use cluster::ClusterKind;

/// The stylesheet shared by the example pages (body font, title, connection-state colours),
/// as a manifest entry at `<base>/css/example.css` with weight -10: it comes first in the page's
/// CSS bundle, so the page's own rules follow it and win.
pub fn example_css(base: &str) -> thywill::Entry {
    thywill::Entry::new(
        format!("{base}/css/example.css"),
        thywill::resources::embed!("static/example.css"),
    )
    .weight(-10)
}

/// Options every example accepts.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address to listen on (default 127.0.0.1: loopback only).
    pub host: IpAddr,
    /// Port to listen on (0 picks a free port).
    pub port: u16,
    /// This member's id.
    pub member: String,
    /// Cluster backend (`--cluster none|redis|http`, default none: a single member).
    pub cluster: ClusterKind,
    /// Redis server for `--cluster redis` (`--redis-url`, default `redis://127.0.0.1:6379`).
    pub redis_url: Option<String>,
    /// Channel prefix for `--cluster redis` (`--redis-prefix`, default `thywill:<app>:cluster:`).
    pub redis_prefix: Option<String>,
    /// Members (`--cluster-members`): `alpha=127.0.0.1:P1,beta=...` for HTTP (each member's
    /// web or cluster address, see [`cluster`]); ids alone suffice for Redis.
    pub cluster_members: Option<String>,
    /// Port of the local HTTP cluster server (`--cluster-port`, default web port + 10000).
    pub cluster_port: Option<u16>,
    /// Shared secret of the HTTP cluster (`--cluster-secret`, or `THYWILL_CLUSTER_SECRET`).
    pub cluster_secret: Option<String>,
    /// Heartbeat interval / up-check interval in ms (`--heartbeat-interval`, default 200).
    pub heartbeat_interval_ms: Option<u64>,
    /// Heartbeat timeout / up-check request timeout in ms (`--heartbeat-timeout`, default 500).
    pub heartbeat_timeout_ms: Option<u64>,
    /// The configuration file (`--config FILE`).
    pub config_file: Option<PathBuf>,
    /// The resolved configuration: defaults < file < environment < flags.
    pub config: Config,
}

impl Options {
    /// Parses `--host H --port P --member M` from the process arguments.
    pub fn from_args(default_port: u16) -> anyhow::Result<Self> {
        Self::parse(std::env::args().skip(1), default_port)
    }

    /// Parses options from an argument list.
    pub fn parse(args: impl IntoIterator<Item = String>, default_port: u16) -> anyhow::Result<Self> {
        let mut o = Options {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: default_port,
            member: "alpha".into(),
            cluster: ClusterKind::None,
            redis_url: None,
            redis_prefix: None,
            cluster_members: None,
            cluster_port: None,
            cluster_secret: std::env::var("THYWILL_CLUSTER_SECRET")
                .ok()
                .filter(|s| !s.is_empty()),
            heartbeat_interval_ms: None,
            heartbeat_timeout_ms: None,
            config_file: None,
            config: Config::default(),
        };
        let mut args = args.into_iter();
        let mut given: Vec<&'static str> = Vec::new();
        while let Some(a) = args.next() {
            let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
            if let Some(flag) = ["--host", "--port", "--member"].into_iter().find(|f| *f == a) {
                given.push(flag);
            }
            match a.as_str() {
                "--config" => o.config_file = Some(PathBuf::from(value("--config")?)),
                "--host" => o.host = value("--host")?.parse().context("--host: not an IP address")?,
                "--port" => o.port = value("--port")?.parse().context("--port: not a port number")?,
                "--member" => o.member = value("--member")?,
                "--cluster" => o.cluster = value("--cluster")?.parse()?,
                "--redis-url" => o.redis_url = Some(value("--redis-url")?),
                "--redis-prefix" => o.redis_prefix = Some(value("--redis-prefix")?),
                "--cluster-members" => o.cluster_members = Some(value("--cluster-members")?),
                "--cluster-port" => {
                    o.cluster_port = Some(
                        value("--cluster-port")?
                            .parse()
                            .context("--cluster-port: not a port number")?,
                    )
                }
                "--cluster-secret" => o.cluster_secret = Some(value("--cluster-secret")?),
                "--heartbeat-interval" => {
                    o.heartbeat_interval_ms = Some(
                        value("--heartbeat-interval")?
                            .parse()
                            .context("--heartbeat-interval: milliseconds")?,
                    )
                }
                "--heartbeat-timeout" => {
                    o.heartbeat_timeout_ms = Some(
                        value("--heartbeat-timeout")?
                            .parse()
                            .context("--heartbeat-timeout: milliseconds")?,
                    )
                }
                "-h" | "--help" => {
                    println!(
                        "options: --config FILE --host IP (default 127.0.0.1) --port PORT --member ID\n\
                         \x20        --cluster none|redis|http --redis-url URL --redis-prefix P\n\
                         \x20        --cluster-members alpha=127.0.0.1:P1,beta=... --cluster-port P\n\
                         \x20        --cluster-secret S (or THYWILL_CLUSTER_SECRET)\n\
                         \x20        --heartbeat-interval MS --heartbeat-timeout MS"
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown option {other:?}"),
            }
        }
        o.config = o.resolve(&given)?;
        // The file and the environment may set what no flag did.
        if !given.contains(&"--host") {
            o.host = o.config.host;
        }
        if !given.contains(&"--port") {
            o.port = o.config.port;
        }
        if !given.contains(&"--member") {
            o.member = o.config.member.clone();
        }
        Ok(o)
    }

    /// Loads the configuration with the flags as the highest-precedence overrides.
    fn resolve(&self, given: &[&str]) -> anyhow::Result<Config> {
        let mut overrides: Vec<(&str, String)> = Vec::new();
        if given.contains(&"--host") {
            overrides.push(("host", self.host.to_string()));
        }
        if given.contains(&"--port") {
            overrides.push(("port", self.port.to_string()));
        }
        if given.contains(&"--member") {
            overrides.push(("member", format!("\"{}\"", self.member)));
        }
        for (key, value) in cluster::overrides(self)? {
            overrides.push((key, value));
        }
        // The example's own port sits below the file and the environment.
        let defaults = [("port", self.port.to_string())];
        // THYWILL_CLUSTER_SECRET (one underscore) is read as `--cluster-secret` above.
        let env = std::env::vars().filter(|(k, _)| k != "THYWILL_CLUSTER_SECRET");
        Ok(Config::load_with_defaults(
            &defaults,
            self.config_file.as_deref(),
            env,
            &overrides,
        )?)
    }

    /// Installs logging as configured (`[log]`: pretty or JSON; `RUST_LOG` wins for the filter).
    pub fn init_logging(&self) {
        let mut config = self.config.clone();
        if let Ok(filter) = std::env::var("RUST_LOG") {
            config.log.filter = filter;
        }
        config.init_logging();
    }

    /// Applies the configuration's transport settings (limits, metrics access) and sessions to
    /// `builder`, keeping the example's base path.
    pub fn configure(&self, builder: thywill::Builder) -> anyhow::Result<thywill::Builder> {
        let base = builder.transport_config().base_path().to_owned();
        let mut builder = builder
            .member(self.member.as_str())
            .transport(self.config.transport(Some(&base))?);
        if let Some(sessions) = self.config.session_config()? {
            builder = builder.sessions(sessions);
        }
        Ok(builder)
    }

    /// The socket address to bind.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Binds (HTTPS when `[tls]` is configured), prints `listening: <url>` on stdout, and serves
/// until Ctrl-C or SIGTERM.
pub async fn serve(node: Thywill, opts: &Options, page_path: &str) -> anyhow::Result<()> {
    let mut config = opts.config.clone();
    config.host = opts.host;
    config.port = opts.port;
    let (url, serving) = config.serve(&node, page_path).await?;
    println!("listening: {url}");
    let stopper = node.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: shutting down");
        stopper.shutdown();
    });
    serving.await;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM (logged): for examples that serve with a server of their
/// own (axum's) rather than [`serve`].
pub async fn shutdown_signal() {
    wait_for_signal().await;
    tracing::info!("signal received: shutting down");
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() -> anyhow::Result<()> {
        let o = Options::parse(["--port", "0", "--member", "beta"].map(String::from), 10081)?;
        assert_eq!((o.port, o.member.as_str()), (0, "beta"));
        assert!(o.host.is_loopback());
        assert!(Options::parse(["--bogus"].map(String::from), 1).is_err());
        assert!(Options::parse(["--port", "x"].map(String::from), 1).is_err());
        let o = Options::parse(
            [
                "--cluster",
                "http",
                "--cluster-members",
                "alpha=127.0.0.1:1",
                "--cluster-port",
                "9",
                "--cluster-secret",
                "a test secret of enough bytes",
            ]
            .map(String::from),
            1,
        )?;
        assert_eq!((o.cluster, o.cluster_port), (ClusterKind::Http, Some(9)));
        assert!(Options::parse(["--cluster", "zookeeper"].map(String::from), 1).is_err());
        Ok(())
    }
}
