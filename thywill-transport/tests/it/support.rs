//! Test applications and a node fixture.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::json;
use thywill_core::{
    AppContext, Application, ApplicationId, Client, DynApplication, Message, Resource, ResourceKind,
    ResourceManager,
};
use thywill_core::{LocalCluster, MemoryChannels, MemoryResources, MemoryTracker};
use thywill_node::{Node, NodeConfig, NodeParts};
use thywill_transport::{Edge, EdgeParts, Sessions, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Echoes every message; `{"flood": n, "size": s}` answers with `n` messages of `s` bytes,
/// and with `"pause_ms": p` waits `p` ms between them (in a task of its own);
/// `{"panic": true}` panics in the hook (a bug in an application).
pub(crate) struct Echo;

impl Application for Echo {
    async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
        if message.data.get("panic").is_some() {
            panic!("the application was asked to panic");
        }
        if let Some(pause) = message.data.get("pause_ms").and_then(|v| v.as_u64()) {
            let n = message.data.get("flood").and_then(|v| v.as_u64()).unwrap_or(0);
            let size = message.data.get("size").and_then(|v| v.as_u64()).unwrap_or(16) as usize;
            let (ctx, conn, body) = (ctx.clone(), client.connection.clone(), "x".repeat(size));
            tokio::spawn(async move {
                for i in 0..n {
                    if ctx
                        .send_to_connection(&conn, json!({"i": i, "body": body}))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
            });
            return;
        }
        if let Some(n) = message.data.get("flood").and_then(|v| v.as_u64()) {
            let size = message.data.get("size").and_then(|v| v.as_u64()).unwrap_or(16) as usize;
            let body = "x".repeat(size);
            for i in 0..n {
                if ctx
                    .send_to_connection(&client.connection, json!({"i": i, "body": body}))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            return;
        }
        let _ = ctx.send_to_connection(&client.connection, message).await;
    }
}

/// Answers every message with its data upper-cased (strings only).
pub(crate) struct Shout;

impl Application for Shout {
    async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
        let text = message.data.as_str().unwrap_or_default().to_uppercase();
        let _ = ctx.send_to_connection(&client.connection, json!(text)).await;
    }
}

/// A running node, served by its edge on a loopback port.
pub(crate) struct Fixture {
    /// The node runtime: applications, connections, routing.
    pub(crate) node: Node,
    /// Its edge: routes, sockets, sessions, shutdown.
    pub(crate) edge: Edge,
    pub(crate) addr: SocketAddr,
    pub(crate) serving: tokio::task::JoinHandle<()>,
}

impl Fixture {
    pub(crate) async fn start(config: TransportConfig) -> anyhow::Result<Fixture> {
        Self::start_with(config, None).await
    }

    pub(crate) async fn start_with(
        config: TransportConfig,
        sessions: Option<Sessions>,
    ) -> anyhow::Result<Fixture> {
        let applications: Vec<(ApplicationId, Arc<dyn DynApplication>)> =
            vec![("echo".into(), Arc::new(Echo)), ("shout".into(), Arc::new(Shout))];
        Self::start_apps(config, sessions, applications).await
    }

    /// A node running `applications`.
    pub(crate) async fn start_apps(
        config: TransportConfig,
        sessions: Option<Sessions>,
        applications: Vec<(ApplicationId, Arc<dyn DynApplication>)>,
    ) -> anyhow::Result<Fixture> {
        let resources = Arc::new(MemoryResources::new());
        resources
            .store(Resource::new("/t/", "<!doctype html><title>t</title>").with_kind(ResourceKind::Html))
            .await?;
        let node = Node::start(NodeParts {
            config: node_config(&config)?,
            applications,
            cluster: Arc::new(LocalCluster::new("alpha")),
            tracker: Arc::new(MemoryTracker::new()),
            channels: Arc::new(MemoryChannels::new()),
            session_store: sessions.as_ref().map(|s| s.store().clone()),
            history: Arc::new(thywill_core::LocalHistory::default()),
            caches: Arc::new(thywill_core::MemoryCaches::new()),
        })
        .await?;
        let edge = Edge::start(EdgeParts {
            config,
            node: Arc::new(node.clone()),
            resources,
            sessions,
        })
        .await?;
        let (addr, serving) = edge.clone().bind(([127, 0, 0, 1], 0).into()).await?;
        Ok(Fixture {
            node,
            edge,
            addr,
            serving: tokio::spawn(serving),
        })
    }

    pub(crate) async fn default() -> anyhow::Result<Fixture> {
        Self::start(TransportConfig::default().with_base_path("/t")?).await
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}/t/ws", self.addr)
    }

    /// Polls a condition on the served node (its edge: connections, metrics) until it holds,
    /// within the test timeout.
    pub(crate) async fn until(&self, what: &str, cond: impl Fn(&Edge) -> bool) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
        while !cond(&self.edge) {
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("timed out waiting for {what}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

/// The node's settings among the transport's (what the facade does).
pub(crate) fn node_config(config: &TransportConfig) -> anyhow::Result<NodeConfig> {
    Ok(NodeConfig::default()
        .with_replay(config.replay())
        .with_append_timeout(config.append_timeout())?)
}

/// A plain HTTP/1.1 GET with extra header lines; returns the whole response text.
pub(crate) async fn http_get(addr: SocketAddr, path: &str, headers: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = String::new();
    tokio::time::timeout(thywill_testkit::TIMEOUT, s.read_to_string(&mut out)).await??;
    Ok(out)
}
