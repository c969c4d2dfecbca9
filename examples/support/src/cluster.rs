//! The cluster backend chosen on the command line, and cluster events printed as JSON lines.
//!
//! | `--cluster` | backend |
//! |---|---|
//! | `none` (default) | one member ([`thywill::LocalBackend`]) |
//! | `redis` | [`thywill::RedisBackend`] on `--redis-url` (cluster, shared replay history, sessions, channels of sessions); members from `--cluster-members` (ids; default `alpha,beta,gamma,delta`, plus the local member) |
//! | `http` | [`thywill::HttpBackend`]; `--cluster-members alpha=127.0.0.1:P1,beta=127.0.0.1:P2,...` |
//!
//! The flags are configuration overrides: a `--config` file's `[cluster]` section selects the
//! same bundles ([`thywill::config::Config::backend`]).
//!
//! For HTTP the list may give each member's **web** address (as `cargo xtask run-example` does)
//! or its **cluster** address: when the local member's listed port equals its `--port`, the
//! list is taken as web addresses and every member's cluster port is its web port + 10000.
//! `--cluster-port` overrides the port the local cluster server binds.
//!
//! A clustered member prints one JSON line per cluster event on stdout, which operators and the
//! multi-process tests read:
//!
//! ```text
//! {"event":"member_up","local":"alpha","member":"beta","at_ms":1700000000000}
//! {"event":"member_down","local":"alpha","member":"gamma","designated":true,"at_ms":...}
//! {"event":"gap","local":"alpha","member":"beta","missing":3,"at_ms":...}
//! {"event":"health","local":"alpha","healthy":false,"at_ms":...}
//! ```

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use thywill::config::SelectedBackend;
use thywill::core::{ClusterEvents, ClusterTask, CoreResult, MemberStatus, Topic};
use thywill::{Backend, BackendParts, Builder, Cluster, MemberId};

use crate::Options;

/// Which cluster backend to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClusterKind {
    /// A single member.
    #[default]
    None,
    /// Redis pub/sub.
    Redis,
    /// Direct HTTP between members.
    Http,
}

impl FromStr for ClusterKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "redis" => Ok(Self::Redis),
            "http" => Ok(Self::Http),
            other => bail!("--cluster: {other:?} is not none, redis or http"),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Prints one event line: `{"event": <event>, "local": <local>, ...fields, "at_ms": now}`.
pub fn print_event(event: &str, local: &MemberId, mut fields: serde_json::Map<String, serde_json::Value>) {
    fields.insert("event".into(), event.into());
    fields.insert("local".into(), local.as_str().into());
    fields.insert("at_ms".into(), now_ms().into());
    println!("{}", serde_json::Value::Object(fields));
}

fn fields(pairs: &[(&str, serde_json::Value)]) -> serde_json::Map<String, serde_json::Value> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

/// Passes events on after printing membership changes and gaps.
struct Printer {
    local: MemberId,
    next: Arc<dyn ClusterEvents>,
}

impl ClusterEvents for Printer {
    fn task(&self, from: MemberId, task: ClusterTask) {
        self.next.task(from, task);
    }
    fn member_up(&self, member: MemberId) {
        print_event(
            "member_up",
            &self.local,
            fields(&[("member", member.as_str().into())]),
        );
        self.next.member_up(member);
    }
    fn member_down(&self, member: MemberId, designated: bool) {
        print_event(
            "member_down",
            &self.local,
            fields(&[
                ("member", member.as_str().into()),
                ("designated", designated.into()),
            ]),
        );
        self.next.member_down(member, designated);
    }
    fn gap(&self, from: MemberId, missing: u64) {
        print_event(
            "gap",
            &self.local,
            fields(&[("member", from.as_str().into()), ("missing", missing.into())]),
        );
        self.next.gap(from, missing);
    }
}

/// A backend whose events are printed (see the module docs).
struct Printed(Arc<dyn thywill::DynCluster>);

impl Cluster for Printed {
    fn local_member(&self) -> &MemberId {
        self.0.local_member()
    }
    fn members(&self) -> Vec<MemberId> {
        self.0.members()
    }
    fn status(&self, member: &MemberId) -> MemberStatus {
        self.0.status(member)
    }
    async fn start(&self, events: Arc<dyn ClusterEvents>) -> CoreResult<()> {
        let printer = Arc::new(Printer {
            local: self.0.local_member().clone(),
            next: events,
        });
        self.0.start(printer).await
    }
    async fn stop(&self) -> CoreResult<()> {
        self.0.stop().await
    }
    async fn send_to(&self, member: &MemberId, task: ClusterTask) -> CoreResult<()> {
        self.0.send_to(member, task).await
    }
    async fn send_to_others(&self, task: ClusterTask) -> CoreResult<()> {
        self.0.send_to_others(task).await
    }
    async fn send_to_all(&self, task: ClusterTask) -> CoreResult<()> {
        self.0.send_to_all(task).await
    }
    async fn interest(&self, topic: &Topic, on: bool) -> CoreResult<()> {
        self.0.interest(topic, on).await
    }
    async fn send_to_interested(&self, topic: &Topic, task: ClusterTask) -> CoreResult<()> {
        self.0.send_to_interested(topic, task).await
    }
    fn is_healthy(&self) -> bool {
        self.0.is_healthy()
    }
    fn stats(&self) -> thywill::core::ClusterStats {
        self.0.stats()
    }
    fn designated_handler(&self, failed: &MemberId) -> Option<MemberId> {
        self.0.designated_handler(failed)
    }
}

/// Member ids of a Redis cluster when `--cluster-members` is not given.
const DEFAULT_REDIS_MEMBERS: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The cluster flags as configuration overrides (see [`thywill::config`]).
pub(crate) fn overrides(opts: &Options) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    let backend = match opts.cluster {
        ClusterKind::None => return Ok(out),
        ClusterKind::Redis => "redis",
        ClusterKind::Http => "http",
    };
    out.push(("cluster.backend", backend.into()));
    if let Some(url) = &opts.redis_url {
        out.push(("cluster.redis_url", quoted(url)));
    }
    if let Some(prefix) = &opts.redis_prefix {
        out.push(("cluster.prefix", quoted(prefix)));
    }
    if let Some(secret) = &opts.cluster_secret {
        out.push(("cluster.secret", quoted(secret)));
    }
    if let Some(ms) = opts.heartbeat_interval_ms {
        out.push(("cluster.heartbeat_interval_ms", ms.to_string()));
    }
    if let Some(ms) = opts.heartbeat_timeout_ms {
        out.push(("cluster.heartbeat_timeout_ms", ms.to_string()));
    }
    match opts.cluster {
        ClusterKind::Redis => {
            let members = opts
                .cluster_members
                .clone()
                .unwrap_or_else(|| DEFAULT_REDIS_MEMBERS.join(","));
            out.push(("cluster.members", quoted(&members)));
        }
        ClusterKind::Http => {
            let Some(list) = opts.cluster_members.as_deref() else {
                return Ok(out);
            };
            let local = MemberId::from(opts.member.as_str());
            let mut members = thywill_cluster_http::parse_members(list)?;
            let listed = members
                .iter()
                .find(|(m, _)| *m == local)
                .map(|(_, a)| *a)
                .with_context(|| format!("--cluster-members does not list the local member {local}"))?;
            if listed.port() == opts.port {
                // Web addresses: each member's cluster server is on its web port + 10000.
                for (m, a) in &mut members {
                    let port = a
                        .port()
                        .checked_add(10_000)
                        .with_context(|| format!("{m}: web port {} + 10000 overflows", a.port()))?;
                    a.set_port(port);
                }
            }
            let list: Vec<String> = members.iter().map(|(m, a)| format!("{m}={a}")).collect();
            out.push(("cluster.members", quoted(&list.join(","))));
            if let Some(port) = opts.cluster_port {
                let ip = members
                    .iter()
                    .find(|(m, _)| *m == local)
                    .map_or(opts.host, |(_, a)| a.ip());
                out.push(("cluster.listen", quoted(&SocketAddr::new(ip, port).to_string())));
            }
        }
        ClusterKind::None => {}
    }
    Ok(out)
}

/// The configured backend (see [`thywill::config::Config::backend`]). `app` names the default
/// Redis prefixes `thywill:<app>:…`.
pub fn backend(opts: &Options, app: &str) -> anyhow::Result<SelectedBackend> {
    Ok(opts.config.backend(app)?)
}

/// A backend whose cluster events are printed (see the module docs) and whose health is
/// watched ([`watch_health`]).
struct PrintedBackend<B>(B);

/// `backend` with its cluster events printed as JSON lines and its health watched (see the
/// module docs), as [`apply`] does for the backends it selects: for a backend an example
/// installs itself (Draw's `--cluster nats`).
pub fn printed(backend: impl Backend) -> impl Backend {
    PrintedBackend(backend)
}

impl<B: Backend> Backend for PrintedBackend<B> {
    async fn connect(self) -> CoreResult<BackendParts> {
        let parts = self.0.connect().await?;
        watch_health(parts.cluster().clone());
        Ok(parts.map_cluster(|c| Arc::new(Printed(c))))
    }
}

/// Configures `builder` as `opts` say: the member id, transport, sessions, the named caches (`[cache]`), and the backend
/// chosen (one bundle; for Redis or HTTP its events printed and its health watched, see the
/// module docs). The node's cluster is [`thywill::Thywill::cluster`].
pub fn apply(builder: Builder, opts: &Options, app: &str) -> anyhow::Result<Builder> {
    let builder = opts.config.history(opts.configure(builder)?)?;
    let builder = opts.config.caches(builder, app)?;
    Ok(match backend(opts, app)? {
        SelectedBackend::Local(local) => builder.backend(local),
        clustered => builder.backend(PrintedBackend(clustered)),
    })
}

/// Prints a `health` line whenever the backend's health changes (checked every 50 ms).
pub fn watch_health(cluster: Arc<dyn thywill::DynCluster>) {
    tokio::spawn(async move {
        let local = cluster.local_member().clone();
        let mut healthy = cluster.is_healthy();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tick.tick().await;
            let now = cluster.is_healthy();
            if now != healthy {
                healthy = now;
                print_event("health", &local, fields(&[("healthy", healthy.into())]));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &str) -> anyhow::Result<Options> {
        Options::parse(args.split_whitespace().map(String::from), 10083)
    }

    #[test]
    fn http_members_given_as_web_addresses_get_cluster_ports() -> anyhow::Result<()> {
        let o = opts(
            "--port 100 --member beta --cluster http --cluster-members alpha=127.0.0.1:99,beta=127.0.0.1:100 \
             --cluster-secret a-test-secret-of-enough-bytes",
        )?;
        let SelectedBackend::Http(b) = backend(&o, "draw")? else {
            bail!("an HTTP backend");
        };
        assert_eq!(
            b.cluster().members(),
            vec![MemberId::from("alpha"), MemberId::from("beta")]
        );
        let o = opts(
            "--port 100 --member beta --cluster http --cluster-members alpha=127.0.0.1:5,gamma=127.0.0.1:6 \
             --cluster-secret a-test-secret-of-enough-bytes",
        );
        assert!(o.is_err(), "the local member must be listed");
        Ok(())
    }

    #[test]
    fn redis_members_default_to_the_original_four() -> anyhow::Result<()> {
        let o = opts("--member epsilon --cluster redis --redis-url redis://127.0.0.1:1")?;
        let SelectedBackend::Redis(b) = backend(&o, "draw")? else {
            bail!("a Redis backend");
        };
        assert_eq!(b.cluster_config().members().len(), 5);
        assert!(b.history_config().is_some(), "with the shared history");
        assert!(matches!(
            backend(&opts("--cluster none")?, "draw")?,
            SelectedBackend::Local(_)
        ));
        Ok(())
    }
}
