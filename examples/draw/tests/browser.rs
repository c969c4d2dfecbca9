//! Browser test of the Draw page: headless Chromium shows the page of member alpha in one tab
//! and of member beta in another (two nodes in this process, clustered over HTTP); a stroke
//! drawn with pointer events on alpha's canvas appears on beta's.

use std::sync::Arc;

use anyhow::{Context, bail};
use thywill::Cluster;
use thywill_testkit::TIMEOUT;
use thywill_testkit::browser::Browser;
use thywill_testkit::served;

/// A served member.
struct Served {
    node: thywill::Thywill,
    url: String,
    backend: Arc<dyn Cluster>,
    serving: tokio::task::JoinHandle<()>,
}

async fn member(id: &str, web: u16, list: &str) -> anyhow::Result<Served> {
    let args = format!(
        "--port {web} --member {id} --cluster http --cluster-members {list} --cluster-secret a-browser-test-secret-long-enough"
    );
    let opts = example_support::Options::parse(args.split_whitespace().map(String::from), web)?;
    let builder = example_support::cluster::apply(example_draw::builder()?, &opts, "draw")?;
    let node = builder.build().await?;
    let backend = node.cluster().clone();
    let (addr, serving) = node.bind(opts.addr()).await?;
    Ok(Served {
        node,
        url: format!("http://{addr}/draw/"),
        backend,
        serving: tokio::spawn(serving),
    })
}

/// Draws a stroke through the canvas's pointer events, in page coordinates of the canvas.
const DRAW: &str = r#"
const c = document.getElementById('canvas');
const r = c.getBoundingClientRect();
const at = (type, x, y) => c.dispatchEvent(new PointerEvent(type, {
  bubbles: true, pointerId: 1, pointerType: 'mouse', isPrimary: true, button: 0, buttons: 1,
  clientX: r.left + x, clientY: r.top + y }));
at('pointerdown', 40, 40);
at('pointermove', 120, 80);
at('pointermove', 200, 150);
at('pointermove', 300, 200);
at('pointerup', 300, 200);
return c.dataset.drawn;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stroke_drawn_on_alpha_appears_on_beta() -> anyhow::Result<()> {
    served::require_browser()?;
    let ports: Vec<u16> = (0..4).map(|_| thywill_testkit::free_port()).collect();
    let list = format!("alpha=127.0.0.1:{},beta=127.0.0.1:{}", ports[2], ports[3]);
    let alpha = member("alpha", ports[0], &list).await?;
    let beta = member("beta", ports[1], &list).await?;
    served::wait_up(&*alpha.backend, "beta").await?;
    served::wait_up(&*beta.backend, "alpha").await?;

    let b = Browser::start().await?;
    b.goto(&beta.url).await?;
    b.wait_text("#status", "Connected").await?;
    b.wait_text("#title", "Thywill: Draw Application").await?;
    b.wait_js(
        "const c = document.querySelector('#draw-wrapper canvas#canvas'); \
         return c !== null && c.width === 500 && c.height === 300 && \
         document.getElementById('instructions').textContent.length > 0 && \
         document.title === 'Thywill: Draw Application';",
    )
    .await?;
    let beta_tab = b.client().window().await?;

    let alpha_tab = b.client().new_window(true).await?.handle;
    b.client().switch_to_window(alpha_tab).await?;
    b.goto(&alpha.url).await?;
    b.wait_text("#status", "Connected").await?;
    let drawn = b.client().execute(DRAW, Vec::new()).await?;
    if drawn != serde_json::json!("1") {
        bail!("the stroke was not sent from alpha's page: data-drawn = {drawn}");
    }
    b.wait_js("return document.getElementById('canvas').dataset.strokes === '1';")
        .await?;

    b.client().switch_to_window(beta_tab).await?;
    b.wait_js(
        "const c = document.getElementById('canvas'); \
         return c.dataset.received === '1' && window.drawStrokes.length === 1 && \
         window.drawStrokes[0].points.length === 4 && window.drawStrokes[0].points[3].x === 300;",
    )
    .await
    .context("beta's page did not show alpha's stroke")?;
    // Pixels were drawn along the stroke on beta's canvas.
    b.wait_js(
        "const d = document.getElementById('canvas').getContext('2d').getImageData(300, 200, 1, 1).data; \
         return d[3] > 0;",
    )
    .await?;
    b.close().await?;

    for m in [alpha, beta] {
        m.node.shutdown();
        tokio::time::timeout(TIMEOUT, m.serving)
            .await
            .context("node did not stop")??;
        m.backend.stop().await?;
    }
    Ok(())
}
