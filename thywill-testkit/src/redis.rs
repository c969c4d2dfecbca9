//! A real `redis-server` on a free loopback port for tests: no persistence (unless started with
//! [`RedisServer::start_persistent`]), killed on drop, restartable on the same port (to test
//! reconnection).
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! let mut redis = thywill_testkit::redis::RedisServer::start().await?;
//! let url = redis.url(); // redis://127.0.0.1:<port>
//! redis.restart().await?; // same port, empty data
//!
//! let mut kept = thywill_testkit::redis::RedisServer::start_persistent().await?;
//! kept.restart().await?; // same port, same data (append-only file, fsync on every write)
//! # let _ = url; Ok(()) }
//! ```

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;

use crate::process::{Daemon, Probe};

/// The `redis-server` binary used (`/usr/bin/redis-server` on Debian, else from `PATH`).
pub fn redis_server_binary() -> String {
    let debian = "/usr/bin/redis-server";
    if std::path::Path::new(debian).is_file() {
        debian.to_owned()
    } else {
        "redis-server".to_owned()
    }
}

/// A `redis-server` child process bound to 127.0.0.1 on its own port.
#[derive(Debug)]
pub struct RedisServer {
    daemon: Daemon,
    /// The data directory of a persistent server (removed on drop).
    dir: Option<PathBuf>,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers `PING`.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(crate::free_port()).await
    }

    /// Starts a server on `port` and waits until it answers `PING`.
    pub async fn start_on(port: u16) -> anyhow::Result<Self> {
        let mut s = Self {
            daemon: Daemon::new("redis-server", port, PING),
            dir: None,
        };
        s.spawn().await?;
        Ok(s)
    }

    /// Starts a server that keeps its data across [`RedisServer::restart`] (and `kill -9`): an
    /// append-only file synced on every write, in a temporary directory removed on drop.
    pub async fn start_persistent() -> anyhow::Result<Self> {
        let port = crate::free_port();
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "thywill-redis-{}-{port}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut s = Self {
            daemon: Daemon::new("redis-server", port, PING),
            dir: Some(dir),
        };
        s.spawn().await?;
        Ok(s)
    }

    /// Whether the server keeps its data across restarts.
    pub fn is_persistent(&self) -> bool {
        self.dir.is_some()
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let port = self.port().to_string();
        let mut args = vec!["--port", &port, "--bind", "127.0.0.1", "--save", ""];
        let dir = self.dir.as_ref().map(|d| d.to_string_lossy().into_owned());
        match &dir {
            None => args.extend(["--appendonly", "no"]),
            Some(dir) => args.extend(["--dir", dir, "--appendonly", "yes", "--appendfsync", "always"]),
        }
        let mut cmd = Command::new(redis_server_binary());
        cmd.args(&args);
        self.daemon.start(cmd).await
    }

    /// Whether the server answers `PING` now (bounded by one second).
    pub async fn ping(&self) -> bool {
        self.daemon.answers().await
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.daemon.port()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port())
    }

    /// Whether the child process runs.
    pub fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    /// Kills the server (SIGKILL) and reaps it. Clients see the connection drop.
    pub fn stop(&mut self) {
        self.daemon.stop();
    }

    /// Stops the server and starts it again on the same port: with empty data, or with the
    /// data it had for a persistent server.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn().await
    }
}

/// A `redis-cli` binary beside the server (`/usr/bin/redis-cli` on Debian, else from `PATH`).
pub fn redis_cli_binary() -> String {
    let debian = "/usr/bin/redis-cli";
    if std::path::Path::new(debian).is_file() {
        debian.to_owned()
    } else {
        "redis-cli".to_owned()
    }
}

/// Runs `redis-cli -p <port> <args>` (plain TCP on loopback) and returns its standard output;
/// bounded by [`crate::TIMEOUT`].
pub async fn cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::new(redis_cli_binary());
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(crate::TIMEOUT, cmd.output())
        .await
        .with_context(|| format!("redis-cli -p {port} {args:?} timed out"))?
        .context("running redis-cli (install it: scripts/install-test-deps.sh)")?;
    anyhow::ensure!(
        out.status.success(),
        "redis-cli -p {port} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A fresh temporary directory for one fixture (removed by the fixture on drop).
fn fixture_dir(what: &str) -> anyhow::Result<PathBuf> {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "thywill-{what}-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Polls `check` every 50 ms until it returns `Ok(true)`, within `wait`; the last error (or
/// `what`) when it never does.
async fn until(
    what: &str,
    wait: std::time::Duration,
    mut check: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let last = match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => None,
            Err(e) => Some(e),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(match last {
                Some(e) => e.context(format!("{what}: not within {wait:?}")),
                None => anyhow::anyhow!("{what}: not within {wait:?}"),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A Redis Cluster on loopback: three primaries with one replica each (six `redis-server`s
/// with `--cluster-enabled yes`, joined by `redis-cli --cluster create`), a node timeout of
/// 1 s so that a killed primary's replica takes over within a few seconds. Every process is
/// killed on drop (a panicking test included).
///
/// ```no_run
/// # async fn t() -> anyhow::Result<()> {
/// let mut cluster = thywill_testkit::redis::RedisClusterServers::start().await?;
/// let url = cluster.url(); // redis-cluster://127.0.0.1:<port>?node=…
/// let primary = cluster.primary_of("some-key").await?;
/// let promoted = cluster.fail_over(primary).await?; // kills it, waits for its replica
/// # let _ = (url, promoted); Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisClusterServers {
    nodes: Vec<Daemon>,
    dir: PathBuf,
}

impl RedisClusterServers {
    /// The cluster's node timeout.
    pub const NODE_TIMEOUT_MS: u64 = 1000;

    /// Starts six nodes in parallel, creates the cluster and waits until every node reports
    /// `cluster_state:ok` and each primary has its replica.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = fixture_dir("redis-cluster")?;
        let mut this = Self {
            nodes: (0..6)
                .map(|_| Daemon::new("redis-server", crate::free_port(), PING))
                .collect(),
            dir,
        };
        let dir = this.dir.to_string_lossy().into_owned();
        let starts = this.nodes.iter_mut().map(|node| {
            let port = node.port().to_string();
            let bus = crate::free_port().to_string();
            let mut cmd = Command::new(redis_server_binary());
            cmd.args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus,
                "--cluster-config-file",
                &format!("nodes-{port}.conf"),
                "--cluster-node-timeout",
                &Self::NODE_TIMEOUT_MS.to_string(),
                // A replica takes over however long ago it last heard its primary.
                "--cluster-replica-validity-factor",
                "0",
                // Replicas sync at once (Redis waits 5 s for more replicas by default).
                "--repl-diskless-sync-delay",
                "0",
                "--dir",
                &dir,
                "--save",
                "",
                "--appendonly",
                "no",
            ]);
            node.start(cmd)
        });
        futures_util::future::try_join_all(starts).await?;
        let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
        create.extend(this.ports().iter().map(|p| format!("127.0.0.1:{p}")));
        create.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
        let create: Vec<&str> = create.iter().map(String::as_str).collect();
        cli(this.nodes[0].port(), &create).await?;
        this.wait_healthy(3).await?;
        Ok(this)
    }

    /// Every node's port (the first three were created primaries).
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(Daemon::port).collect()
    }

    /// `redis-cluster://127.0.0.1:<p1>?node=127.0.0.1:<p2>&…`, listing every node.
    pub fn url(&self) -> String {
        let ports = self.ports();
        let nodes: Vec<String> = ports[1..].iter().map(|p| format!("node=127.0.0.1:{p}")).collect();
        format!("redis-cluster://127.0.0.1:{}?{}", ports[0], nodes.join("&"))
    }

    /// Waits until every running node reports `cluster_state:ok` and `primaries` primaries
    /// each have a connected replica whose link is up (bounded by [`crate::TIMEOUT`] × 2).
    pub async fn wait_healthy(&mut self, primaries: usize) -> anyhow::Result<()> {
        let running: Vec<u16> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.is_running().then_some(n.port()))
            .collect();
        until("cluster_state:ok on every node", crate::TIMEOUT * 2, async || {
            for port in &running {
                if !cli(*port, &["cluster", "info"])
                    .await?
                    .contains("cluster_state:ok")
                {
                    return Ok(false);
                }
            }
            let mut synced = 0;
            for port in &running {
                let info = cli(*port, &["info", "replication"]).await?;
                if info.contains("role:slave") && info.contains("master_link_status:up") {
                    synced += 1;
                }
            }
            Ok(synced >= primaries)
        })
        .await
    }

    /// The port of the primary serving `key`'s slot now.
    pub async fn primary_of(&self, key: &str) -> anyhow::Result<u16> {
        let port = self.nodes.first().context("no node")?.port();
        let mut errors = Vec::new();
        for node in &self.nodes {
            let any = node.port();
            match self.primary_via(any, key).await {
                Ok(p) => return Ok(p),
                Err(e) => errors.push(e.to_string()),
            }
        }
        anyhow::bail!("no node of the cluster (first {port}) answered: {errors:?}")
    }

    async fn primary_via(&self, port: u16, key: &str) -> anyhow::Result<u16> {
        let slot: u16 = cli(port, &["cluster", "keyslot", key]).await?.trim().parse()?;
        let nodes = cli(port, &["cluster", "nodes"]).await?;
        for line in nodes.lines() {
            // <id> <ip:port@bus> <flags> <primary> <ping> <pong> <epoch> <link> <slot>...
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let serves = f[8..].iter().any(|range| {
                let mut ends = range.split('-').filter_map(|n| n.parse::<u16>().ok());
                match (ends.next(), ends.next()) {
                    (Some(a), Some(b)) => (a..=b).contains(&slot),
                    (Some(a), None) => a == slot,
                    _ => false,
                }
            });
            if serves {
                let addr = f[1].split('@').next().unwrap_or_default();
                return addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .context("malformed CLUSTER NODES address");
            }
        }
        anyhow::bail!("no primary serves slot {slot} (per node {port})")
    }

    /// Kills (SIGKILL) the node on `port`.
    pub fn kill(&mut self, port: u16) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.port() == port) {
            n.stop();
        }
    }

    /// Kills the primary on `port` and waits until its replica serves its slots and the
    /// cluster is `ok` again; returns the new primary's port.
    pub async fn fail_over(&mut self, port: u16) -> anyhow::Result<u16> {
        let probe_key = self.key_on(port).await?;
        self.kill(port);
        let mut promoted = 0;
        let alive: Vec<u16> = self.ports().into_iter().filter(|p| *p != port).collect();
        until("a replica promoted", crate::TIMEOUT * 2, async || {
            for p in &alive {
                if let Ok(now) = self.primary_via(*p, &probe_key).await
                    && now != port
                {
                    promoted = now;
                    return Ok(cli(*p, &["cluster", "info"]).await?.contains("cluster_state:ok"));
                }
            }
            Ok(false)
        })
        .await?;
        Ok(promoted)
    }

    /// A key whose slot the primary on `port` serves.
    async fn key_on(&self, port: u16) -> anyhow::Result<String> {
        for i in 0..10_000 {
            let key = format!("probe{i}");
            if self.primary_of(&key).await? == port {
                return Ok(key);
            }
        }
        anyhow::bail!("no key found on the primary {port}")
    }
}

impl Drop for RedisClusterServers {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A primary, its replica and three `redis-sentinel`s watching it under the name
/// [`RedisSentinels::SERVICE`] (quorum 2, down after 1 s), on loopback. Every process is
/// killed on drop.
///
/// ```no_run
/// # async fn t() -> anyhow::Result<()> {
/// let mut s = thywill_testkit::redis::RedisSentinels::start().await?;
/// let url = s.url(); // redis-sentinel://127.0.0.1:<p>?sentinelServiceName=main&node=…
/// let new_primary = s.fail_over().await?; // SENTINEL FAILOVER, waits for the switch
/// # let _ = (url, new_primary); Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisSentinels {
    servers: Vec<Daemon>,
    sentinels: Vec<Daemon>,
    dir: PathBuf,
}

impl RedisSentinels {
    /// The primary's name at the sentinels.
    pub const SERVICE: &'static str = "main";

    /// Starts the primary, then the replica and the sentinels in parallel; waits until the
    /// replica is in sync and every sentinel knows the replica and the two other sentinels.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = fixture_dir("redis-sentinel")?;
        let mut this = Self {
            servers: (0..2)
                .map(|_| Daemon::new("redis-server", crate::free_port(), PING))
                .collect(),
            sentinels: (0..3)
                .map(|_| Daemon::new("redis-sentinel", crate::free_port(), PING))
                .collect(),
            dir,
        };
        let primary = this.servers[0].port();
        let data = this.dir.to_string_lossy().into_owned();
        let server = |port: u16, replica_of: Option<u16>| {
            let mut cmd = Command::new(redis_server_binary());
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
                .args(["--appendonly", "no", "--repl-diskless-sync-delay", "0"])
                // A replica's sync file goes there, not into the test's working directory.
                .args(["--dir", &data]);
            if let Some(p) = replica_of {
                cmd.args(["--replicaof", "127.0.0.1", &p.to_string()]);
            }
            cmd
        };
        this.servers[0].start(server(primary, None)).await?;
        let mut configs = Vec::new();
        for s in &this.sentinels {
            let path = this.dir.join(format!("sentinel-{}.conf", s.port()));
            std::fs::write(
                &path,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {name} 127.0.0.1 {primary} 2\n\
                     sentinel down-after-milliseconds {name} 1000\n\
                     sentinel failover-timeout {name} 5000\n\
                     sentinel parallel-syncs {name} 1\n",
                    port = s.port(),
                    dir = this.dir.display(),
                    name = Self::SERVICE,
                ),
            )
            .with_context(|| format!("writing {}", path.display()))?;
            configs.push(path);
        }
        let replica_port = this.servers[1].port();
        let (servers, sentinels) = (&mut this.servers, &mut this.sentinels);
        let replica = servers[1].start(server(replica_port, Some(primary)));
        let watchers = sentinels.iter_mut().zip(&configs).map(|(s, conf)| {
            let mut cmd = Command::new(redis_sentinel_binary());
            cmd.arg(conf);
            s.start(cmd)
        });
        let (replica, watchers) = tokio::join!(replica, futures_util::future::try_join_all(watchers));
        replica?;
        watchers?;
        this.wait_settled(primary).await?;
        Ok(this)
    }

    /// `redis-sentinel://127.0.0.1:<s1>?sentinelServiceName=main&node=127.0.0.1:<s2>&…`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.sentinels[1..]
            .iter()
            .map(|s| format!("&node=127.0.0.1:{}", s.port()))
            .collect();
        format!(
            "redis-sentinel://127.0.0.1:{}?sentinelServiceName={}{}",
            self.sentinels[0].port(),
            Self::SERVICE,
            nodes.concat()
        )
    }

    /// The ports of the two servers (the first started as the primary).
    pub fn server_ports(&self) -> Vec<u16> {
        self.servers.iter().map(Daemon::port).collect()
    }

    /// The primary's port according to the first sentinel that answers.
    pub async fn primary(&self) -> anyhow::Result<u16> {
        let mut last = None;
        for s in &self.sentinels {
            match cli(s.port(), &["sentinel", "get-master-addr-by-name", Self::SERVICE]).await {
                Ok(out) => {
                    return out
                        .lines()
                        .nth(1)
                        .and_then(|p| p.trim().parse().ok())
                        .with_context(|| format!("sentinel answered {out:?}"));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no sentinel")))
    }

    async fn wait_settled(&self, primary: u16) -> anyhow::Result<()> {
        let sentinels: Vec<u16> = self.sentinels.iter().map(Daemon::port).collect();
        until("the sentinels settled", crate::TIMEOUT * 2, async || {
            let repl = cli(primary, &["info", "replication"]).await?;
            if !repl.contains("connected_slaves:1") || repl.contains("state=wait_bgsave") {
                return Ok(false);
            }
            for s in &sentinels {
                let at = cli(*s, &["sentinel", "get-master-addr-by-name", Self::SERVICE]).await?;
                let known = cli(*s, &["sentinel", "sentinels", Self::SERVICE]).await?;
                let replicas = cli(*s, &["sentinel", "replicas", Self::SERVICE]).await?;
                let ok = at.lines().nth(1).map(str::trim) == Some(primary.to_string().as_str())
                    && known.matches("runid").count() == 2
                    && replicas.contains("slave")
                    && !replicas.contains("s_down");
                if !ok {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await
    }

    /// Asks a sentinel for a failover (`SENTINEL FAILOVER`) and waits until the sentinels name
    /// the other server, it serves as the primary and the old primary is its replica; returns
    /// the new primary's port.
    pub async fn fail_over(&mut self) -> anyhow::Result<u16> {
        let old = self.primary().await?;
        let new = self
            .server_ports()
            .into_iter()
            .find(|p| *p != old)
            .context("no replica")?;
        cli(self.sentinels[0].port(), &["sentinel", "failover", Self::SERVICE]).await?;
        // Done when the sentinels name the new primary, it serves as one, and the old one has
        // been turned into its replica (until then it may still take writes that the switch
        // then drops).
        until("the failover", crate::TIMEOUT * 2, async || {
            Ok(self.primary().await? == new
                && cli(new, &["role"]).await?.starts_with("master")
                && cli(old, &["role"]).await?.starts_with("slave"))
        })
        .await?;
        Ok(new)
    }

    /// Kills (SIGKILL) the server on `port`.
    pub fn kill_server(&mut self, port: u16) {
        if let Some(s) = self.servers.iter_mut().find(|s| s.port() == port) {
            s.stop();
        }
    }
}

impl Drop for RedisSentinels {
    fn drop(&mut self) {
        for d in self.sentinels.iter_mut().chain(&mut self.servers) {
            d.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `redis-sentinel` binary (`/usr/bin/redis-sentinel` from Debian's `redis-sentinel`
/// package, else from `PATH`).
pub fn redis_sentinel_binary() -> String {
    let debian = "/usr/bin/redis-sentinel";
    if std::path::Path::new(debian).is_file() {
        debian.to_owned()
    } else {
        "redis-sentinel".to_owned()
    }
}

/// A `redis-server` speaking only TLS (`--port 0 --tls-port <port>`), its certificate signed
/// by a CA made for the test (rcgen): [`RedisTls::ca_file`] trusts it,
/// [`RedisTls::wrong_ca_file`] is another CA that does not. Killed on drop.
#[derive(Debug)]
pub struct RedisTls {
    daemon: Daemon,
    dir: PathBuf,
}

impl RedisTls {
    /// Makes the certificates and starts the server; waits until it accepts connections.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = fixture_dir("redis-tls")?;
        let (ca_pem, cert_pem, key_pem) = test_certificates("thywill test CA")?;
        let (wrong_ca, _, _) = test_certificates("another CA")?;
        for (name, pem) in [
            ("ca.pem", &ca_pem),
            ("cert.pem", &cert_pem),
            ("key.pem", &key_pem),
            ("wrong-ca.pem", &wrong_ca),
        ] {
            std::fs::write(dir.join(name), pem).with_context(|| format!("writing {name}"))?;
        }
        // The TLS port accepts TCP before any handshake: that is the readiness probe.
        let mut this = Self {
            daemon: Daemon::new("redis-server", crate::free_port(), ACCEPTS),
            dir,
        };
        let path = |n: &str| this.dir.join(n).to_string_lossy().into_owned();
        let mut cmd = Command::new(redis_server_binary());
        cmd.args(["--port", "0", "--tls-port", &this.daemon.port().to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args([
                "--tls-cert-file",
                &path("cert.pem"),
                "--tls-key-file",
                &path("key.pem"),
            ])
            .args(["--tls-ca-cert-file", &path("ca.pem"), "--tls-auth-clients", "no"]);
        this.daemon.start(cmd).await?;
        Ok(this)
    }

    /// `rediss://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.daemon.port())
    }

    /// The PEM file of the CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The PEM file of a CA that did not.
    pub fn wrong_ca_file(&self) -> PathBuf {
        self.dir.join("wrong-ca.pem")
    }
}

impl Drop for RedisTls {
    fn drop(&mut self) {
        self.daemon.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA and a leaf for `127.0.0.1` and `localhost` signed by it: (CA PEM, leaf PEM, leaf key PEM).
fn test_certificates(ca_name: &str) -> anyhow::Result<(String, String, String)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, ca_name);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?
        .signed_by(&leaf_key, &issuer)?;
    Ok((ca_cert.pem(), leaf.pem(), leaf_key.serialize_pem()))
}

/// Any server: ready once it accepts a TCP connection.
const ACCEPTS: Probe = Probe {
    send: b"",
    expect: b"",
};

/// Redis answers an inline `PING` with `+PONG`.
const PING: Probe = Probe {
    send: b"PING\r\n",
    expect: b"+PONG\r\n",
};

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends one inline command and returns the first line of the reply.
    async fn command(port: u16, cmd: &str) -> anyhow::Result<String> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(format!("{cmd}\r\n").as_bytes()).await?;
        let mut buf = vec![0u8; 256];
        let n = tokio::time::timeout(crate::TIMEOUT, s.read(&mut buf)).await??;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    #[tokio::test]
    async fn a_persistent_server_keeps_its_data_across_restarts_and_a_plain_one_does_not()
    -> anyhow::Result<()> {
        let mut kept = RedisServer::start_persistent().await?;
        let dir = kept.dir.clone().context("a data directory")?;
        assert_eq!(command(kept.port(), "SET k v").await?, "+OK\r\n");
        kept.restart().await?;
        assert_eq!(command(kept.port(), "GET k").await?, "$1\r\nv\r\n");
        drop(kept);
        assert!(!dir.exists(), "the data directory is removed on drop");

        let mut plain = RedisServer::start().await?;
        assert!(!plain.is_persistent());
        assert_eq!(command(plain.port(), "SET k v").await?, "+OK\r\n");
        plain.restart().await?;
        assert_eq!(command(plain.port(), "GET k").await?, "$-1\r\n");
        Ok(())
    }
}
