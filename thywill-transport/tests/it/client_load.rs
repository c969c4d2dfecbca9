//! Resources loaded on demand by the browser client (`load` frames, `Thywill.load`): only
//! plain absolute paths of the page's own origin are loaded. The Node unit tests
//! (`client/test/load.test.js`) check a table of hostile and good paths; a headless Chromium
//! checks that a real `load` frame with `/\host/…` adds no script and runs nothing.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use thywill_core::protocol::LoadKind;
use thywill_core::{
    AppContext, Application, ApplicationId, Client, DynApplication, Message, Resource, ResourceManager,
    Target,
};
use thywill_core::{LocalCluster, MemoryChannels, MemoryResources, MemoryTracker};
use thywill_node::{Node, NodeParts};
use thywill_testkit::browser::Browser;
use thywill_transport::{Edge, EdgeParts, TransportConfig};

#[tokio::test]
async fn the_client_library_loads_only_same_origin_paths() -> anyhow::Result<()> {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/client/test/load.test.js");
    let run = tokio::process::Command::new("node")
        .arg(file)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .map_err(|_| anyhow::anyhow!("node did not finish within 60 s"))?
        .map_err(|e| anyhow::anyhow!("cannot run node (scripts/install-test-deps.sh installs it): {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success() && stdout.contains("all passed"),
        "client load tests failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Sends the connection one `load` frame per `[kind, path]` pair of `{"expose": [...]}`, in
/// order: the server passes paths through as they are, the client must judge them.
struct Exposer;

impl Application for Exposer {
    async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
        let Some(list) = message.data.get("expose").and_then(Value::as_array) else {
            return;
        };
        for pair in list {
            let (Some(kind), Some(path)) = (pair[0].as_str(), pair[1].as_str()) else {
                continue;
            };
            let kind = match kind {
                "stylesheet" => LoadKind::Stylesheet,
                "template" => LoadKind::Template,
                _ => LoadKind::Script,
            };
            let target = Target::Connection(client.connection.clone());
            if let Err(e) = ctx.expose_to(target, kind, path).await {
                tracing::warn!("expose failed: {e}");
            }
        }
    }
}

/// The page records every <script>/<link> added to the document (before any load fails and
/// the client removes it again), and exposes `probe`, an interface of the `exposer` app.
const PAGE: &str = r#"<!doctype html><title>load</title>
<script>
window.added = [];
new MutationObserver(function (records) {
  records.forEach(function (r) {
    r.addedNodes.forEach(function (n) {
      if (n.tagName === 'SCRIPT' || n.tagName === 'LINK') { window.added.push(n.src || n.href); }
    });
  });
}).observe(document.documentElement, { childList: true, subtree: true });
</script>
<script src="/t/thywill/thywill.js"></script>
<script>window.probe = new Thywill.ApplicationInterface('exposer');</script>
"#;

#[tokio::test]
async fn a_load_frame_with_a_backslash_path_adds_no_script_in_chromium() -> anyhow::Result<()> {
    let applications: Vec<(ApplicationId, Arc<dyn DynApplication>)> =
        vec![("exposer".into(), Arc::new(Exposer))];
    let resources = Arc::new(MemoryResources::new());
    resources
        .store(Resource::new("/t/", PAGE).with_kind(thywill_core::ResourceKind::Html))
        .await?;
    resources
        .store(Resource::new("/t/ok.js", "window.okRan = true;"))
        .await?;
    resources
        .store(Resource::new("/t/evil.js", "window.evilRan = true;"))
        .await?;
    resources
        .store(Resource::new("/t/evil.css", "body { color: red; }"))
        .await?;
    let config = TransportConfig::default().with_base_path("/t")?;
    let node = Node::start(NodeParts {
        config: crate::support::node_config(&config)?,
        applications,
        cluster: Arc::new(LocalCluster::new("alpha")),
        tracker: Arc::new(MemoryTracker::new()),
        channels: Arc::new(MemoryChannels::new()),
        session_store: None,
        history: Arc::new(thywill_core::LocalHistory::default()),
        caches: Arc::new(thywill_core::MemoryCaches::new()),
    })
    .await?;
    let edge = Edge::start(EdgeParts {
        config,
        node: Arc::new(node),
        resources,
        sessions: None,
    })
    .await?;
    let (addr, serving) = edge.clone().bind(([127, 0, 0, 1], 0).into()).await?;
    let serving = tokio::spawn(serving);

    let browser = Browser::start().await?;
    browser.goto(&format!("http://{addr}/t/")).await?;
    browser
        .wait_js("return window.Thywill !== undefined && Thywill.isConnected;")
        .await?;
    // The same node under another name is another origin: without the check, the browser
    // would load and run evil.js from it (`/\` reads as `//`, tabs are dropped).
    let other = format!("localhost:{}", addr.port());
    let expose = json!({"expose": [
        ["script", format!("/\\{other}/t/evil.js")],
        ["stylesheet", format!("/\\{other}/t/evil.css")],
        ["script", format!("/\t/{other}/t/evil.js")],
        ["script", format!("//{other}/t/evil.js")],
        // Same origin, loaded last: dynamically added scripts run in insertion order, so
        // once this one ran, an evil.js added before it would have run too.
        ["script", "/t/ok.js"],
    ]});
    browser
        .client()
        .execute(
            "window.added = []; probe.send(arguments[0]); return true;",
            vec![expose],
        )
        .await
        .context("cannot send from the page")?;
    browser.wait_js("return window.okRan === true;").await?;
    let seen = browser
        .client()
        .execute("return [window.added, window.evilRan === true];", Vec::new())
        .await?;
    assert_eq!(
        seen,
        json!([[format!("http://{addr}/t/ok.js")], false]),
        "elements added by load frames, and whether evil.js ran"
    );
    browser.close().await?;
    edge.shutdown();
    tokio::time::timeout(thywill_testkit::TIMEOUT, serving).await??;
    Ok(())
}
