//! Browser tests of the Draw page: headless Chromium shows the page of member alpha in one tab
//! and of member beta in another (two nodes in this process, clustered over HTTP); a stroke
//! drawn with pointer events on alpha's canvas appears on beta's. And strokes expire: gone from
//! every page once their lifetime (30 s, shortened here) is over, shown until then.

use std::sync::Arc;

use anyhow::{Context, bail};
use thywill::DynCluster;
use thywill_testkit::TIMEOUT;
use thywill_testkit::browser::Browser;
use thywill_testkit::served;

/// A served member.
struct Served {
    node: thywill::Thywill,
    url: String,
    backend: Arc<dyn DynCluster>,
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

/// How long strokes live in the expiry test (the page's script is rendered with it).
const LIFETIME: std::time::Duration = std::time::Duration::from_secs(3);

/// Records, on a page, when the canvas first shows a stroke and when it shows none again
/// (`performance.now()` milliseconds): `window.expiry = {shown, gone}`. A mutation observer of
/// the canvas's `data-strokes`, so that timer throttling of background tabs cannot skew it.
const WATCH_EXPIRY: &str = r#"
const c = document.getElementById('canvas');
window.expiry = { shown: null, gone: null };
new MutationObserver(() => {
  const n = Number(c.dataset.strokes || '0');
  if (n > 0 && window.expiry.shown === null) window.expiry.shown = performance.now();
  if (n === 0 && window.expiry.shown !== null && window.expiry.gone === null) window.expiry.gone = performance.now();
}).observe(c, { attributes: true, attributeFilter: ['data-strokes'] });
return true;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strokes_are_shown_for_their_lifetime_then_removed_from_every_page() -> anyhow::Result<()> {
    served::require_browser()?;
    let app = example_draw::Draw::default().stroke_lifetime(LIFETIME);
    let node = example_draw::builder_with(app)?.minify(false).build().await?;
    let (addr, serving) = node.bind(([127, 0, 0, 1], 0).into()).await?;
    let serving = tokio::spawn(serving);
    let url = format!("http://{addr}/draw/");

    let b = Browser::start().await?;
    // The receiving page connects first, then the drawing page.
    b.goto(&url).await?;
    b.wait_text("#status", "Connected").await?;
    b.client().execute(WATCH_EXPIRY, Vec::new()).await?;
    let receiver = b.client().window().await?;
    let drawer = b.client().new_window(true).await?.handle;
    b.client().switch_to_window(drawer.clone()).await?;
    b.goto(&url).await?;
    b.wait_text("#status", "Connected").await?;
    b.client().execute(WATCH_EXPIRY, Vec::new()).await?;
    let drawn = b.client().execute(DRAW, Vec::new()).await?;
    anyhow::ensure!(
        drawn == serde_json::json!("1"),
        "the stroke was not sent: {drawn}"
    );

    // Before its lifetime is over the stroke is on both pages.
    b.client().switch_to_window(receiver.clone()).await?;
    b.wait_js("return document.getElementById('canvas').dataset.received === '1' && window.drawStrokes.length === 1;")
        .await
        .context("the receiving page did not show the stroke")?;
    // Then it is gone from both, no earlier than its lifetime after it was shown (the pages
    // measure it themselves), and not much later (background tabs' timers may fire up to a
    // second late).
    let lifetime_ms = LIFETIME.as_millis() as f64;
    for (tab, name) in [(&receiver, "receiving"), (&drawer, "drawing")] {
        b.client().switch_to_window(tab.clone()).await?;
        b.wait_js("return window.expiry.gone !== null && window.drawStrokes.length === 0;")
            .await
            .with_context(|| format!("the stroke did not expire on the {name} page"))?;
        let shown = b
            .client()
            .execute("return window.expiry.gone - window.expiry.shown;", Vec::new())
            .await?
            .as_f64()
            .context("no expiry time")?;
        assert!(
            shown >= lifetime_ms - 50.0 && shown <= lifetime_ms + 2_500.0,
            "the {name} page showed the stroke for {shown} ms, its lifetime is {lifetime_ms} ms"
        );
    }

    // A page that connects now starts empty (the original kept no history either) and its
    // script carries the configured lifetime, rendered in at start-up.
    b.goto(&url).await?;
    b.wait_text("#status", "Connected").await?;
    b.wait_js("return window.drawStrokes.length === 0;").await?;
    let script = http_get(addr, "/draw/js/draw.js").await?;
    assert!(
        script.contains(&format!("{}", LIFETIME.as_millis())) && !script.contains("{{"),
        "the script was not rendered with the lifetime: {script}"
    );
    b.close().await?;
    node.shutdown();
    tokio::time::timeout(TIMEOUT, serving)
        .await
        .context("node did not stop")??;
    Ok(())
}

/// A plain HTTP/1.1 GET of `path` from `addr`; the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut reply = String::new();
    tokio::time::timeout(TIMEOUT, s.read_to_string(&mut reply)).await??;
    anyhow::ensure!(reply.starts_with("HTTP/1.1 200"), "GET {path}: {reply}");
    Ok(reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}
