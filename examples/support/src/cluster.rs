//! The cluster backend chosen on the command line, and cluster events printed as JSON lines.
//!
//! | `--cluster` | backend |
//! |---|---|
//! | `none` (default) | one member ([`thywill::LocalCluster`]) |
//! | `redis` | [`thywill_cluster_redis::RedisCluster`] on `--redis-url`; members from `--cluster-members` (ids; default `alpha,beta,gamma,delta`, plus the local member) |
//! | `http` | [`thywill_cluster_http::HttpCluster`]; `--cluster-members alpha=127.0.0.1:P1,beta=127.0.0.1:P2,...` |
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
use thywill::core::{BoxFuture, ClusterEvents, ClusterTask, CoreResult, MemberStatus};
use thywill::{Builder, Cluster, MemberId};
use thywill_cluster_http::{HttpCluster, HttpClusterConfig};
use thywill_cluster_redis::{RedisCluster, RedisClusterConfig};

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
struct Printed(Arc<dyn Cluster>);

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
    fn start(&self, events: Arc<dyn ClusterEvents>) -> BoxFuture<'_, CoreResult<()>> {
        let printer = Arc::new(Printer {
            local: self.0.local_member().clone(),
            next: events,
        });
        self.0.start(printer)
    }
    fn stop(&self) -> BoxFuture<'_, CoreResult<()>> {
        self.0.stop()
    }
    fn send_to(&self, member: &MemberId, task: ClusterTask) -> BoxFuture<'_, CoreResult<()>> {
        self.0.send_to(member, task)
    }
    fn send_to_others(&self, task: ClusterTask) -> BoxFuture<'_, CoreResult<()>> {
        self.0.send_to_others(task)
    }
    fn send_to_all(&self, task: ClusterTask) -> BoxFuture<'_, CoreResult<()>> {
        self.0.send_to_all(task)
    }
    fn is_healthy(&self) -> bool {
        self.0.is_healthy()
    }
    fn designated_handler(&self, failed: &MemberId) -> Option<MemberId> {
        self.0.designated_handler(failed)
    }
}

/// Member ids of a Redis cluster when `--cluster-members` is not given.
const DEFAULT_REDIS_MEMBERS: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

/// Builds the backend chosen by `opts` (`None` for a single member). `app` names the default
/// Redis channel prefix `thywill:<app>:cluster:`.
pub fn backend(opts: &Options, app: &str) -> anyhow::Result<Option<Arc<dyn Cluster>>> {
    let local = MemberId::from(opts.member.as_str());
    match opts.cluster {
        ClusterKind::None => Ok(None),
        ClusterKind::Redis => {
            let mut members: Vec<MemberId> = match &opts.cluster_members {
                Some(list) => list
                    .split(',')
                    .map(|m| m.split('=').next().unwrap_or_default().trim())
                    .filter(|m| !m.is_empty())
                    .map(MemberId::from)
                    .collect(),
                None => DEFAULT_REDIS_MEMBERS.iter().map(|m| MemberId::from(*m)).collect(),
            };
            if !members.contains(&local) {
                members.push(local.clone());
            }
            let mut config = RedisClusterConfig::default()
                .with_url(
                    opts.redis_url
                        .clone()
                        .unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
                )?
                .with_prefix(
                    opts.redis_prefix
                        .clone()
                        .unwrap_or_else(|| format!("thywill:{app}:cluster:")),
                )?
                .with_members(members)?
                .with_local(local)?;
            if let Some((interval, timeout)) = heartbeat(opts) {
                config = config.with_heartbeat(interval, timeout)?;
            }
            Ok(Some(Arc::new(RedisCluster::new(config)?)))
        }
        ClusterKind::Http => {
            let list = opts
                .cluster_members
                .as_deref()
                .context("--cluster http needs --cluster-members alpha=127.0.0.1:P1,beta=...")?;
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
            let mut config = HttpClusterConfig::default()
                .with_members(members)?
                .with_local(local.clone())?;
            if let Some(port) = opts.cluster_port {
                let ip = config.address_of(&local).map_or(opts.host, |a| a.ip());
                config = config.with_listen(SocketAddr::new(ip, port));
            }
            if let Some(secret) = &opts.cluster_secret {
                config = config.with_secret(secret.as_bytes().to_vec())?;
            }
            if let Some((interval, timeout)) = heartbeat(opts) {
                config = config.with_up_check(interval, timeout, 2)?;
            }
            Ok(Some(Arc::new(HttpCluster::new(config)?)))
        }
    }
}

fn heartbeat(opts: &Options) -> Option<(Duration, Duration)> {
    if opts.heartbeat_interval_ms.is_none() && opts.heartbeat_timeout_ms.is_none() {
        return None;
    }
    Some((
        Duration::from_millis(opts.heartbeat_interval_ms.unwrap_or(200)),
        Duration::from_millis(opts.heartbeat_timeout_ms.unwrap_or(500)),
    ))
}

/// Configures `builder` for the cluster chosen by `opts`: the member id, and for Redis or HTTP
/// the backend (its events printed, see the module docs) with a cluster-wide client tracker.
/// Returns the backend too, to watch its health ([`watch_health`]).
pub fn apply(
    builder: Builder,
    opts: &Options,
    app: &str,
) -> anyhow::Result<(Builder, Option<Arc<dyn Cluster>>)> {
    let builder = builder.member(opts.member.as_str());
    let Some(backend) = backend(opts, app)? else {
        return Ok((builder, None));
    };
    let printed: Arc<dyn Cluster> = Arc::new(Printed(backend.clone()));
    let (cluster, tracker) = thywill::transport::tracker::tracked_arc(printed);
    Ok((builder.cluster(cluster).tracker(tracker), Some(backend)))
}

/// Prints a `health` line whenever the backend's health changes (checked every 50 ms).
pub fn watch_health(cluster: Arc<dyn Cluster>) {
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
            "--port 100 --member beta --cluster http --cluster-members alpha=127.0.0.1:99,beta=127.0.0.1:100",
        )?;
        let c = backend(&o, "draw")?.context("a backend")?;
        assert_eq!(c.members(), vec![MemberId::from("alpha"), MemberId::from("beta")]);
        let o = opts(
            "--port 100 --member beta --cluster http --cluster-members alpha=127.0.0.1:5,gamma=127.0.0.1:6",
        )?;
        assert!(backend(&o, "draw").is_err(), "the local member must be listed");
        Ok(())
    }

    #[test]
    fn redis_members_default_to_the_original_four() -> anyhow::Result<()> {
        let o = opts("--member epsilon --cluster redis --redis-url redis://127.0.0.1:1")?;
        let c = backend(&o, "draw")?.context("a backend")?;
        assert_eq!(c.members().len(), 5);
        assert!(backend(&opts("--cluster none")?, "draw")?.is_none());
        Ok(())
    }
}
