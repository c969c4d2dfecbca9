//! Browser tests of the Tabular page: headless Chromium (through chromedriver) runs the real
//! page, with minification on, against an in-process node: the stream of rows, its Start and
//! Stop buttons, and progressive exposure (the server-told totals feature, and resources the
//! page asks for or the server exposes while running).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use example_tabular::Tabular;
use thywill::{ConnectionId, Resource};
use thywill_testkit::TIMEOUT;
use thywill_testkit::browser::Browser;
use thywill_testkit::served;

/// A served node; `stop` shuts it down.
struct Served {
    node: thywill::Thywill,
    addr: SocketAddr,
    app: Tabular,
    serving: tokio::task::JoinHandle<()>,
}

impl Served {
    async fn start(app: Tabular) -> anyhow::Result<Served> {
        let node = example_tabular::builder_with(app.clone())?.build().await?;
        let (addr, serving) = node.bind(([127, 0, 0, 1], 0).into()).await?;
        Ok(Served {
            node,
            addr,
            app,
            serving: tokio::spawn(serving),
        })
    }

    fn url(&self) -> String {
        format!("http://{}/tabular/", self.addr)
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.node.shutdown();
        tokio::time::timeout(TIMEOUT, self.serving)
            .await
            .context("the node did not stop serving")??;
        Ok(())
    }
}

/// Data rows on the page (the header row excluded).
const ROWS: &str = "document.querySelectorAll('ul.table > li.row:not(.row-header)')";

async fn row_count(b: &Browser) -> anyhow::Result<u64> {
    let v = b
        .client()
        .execute(&format!("return {ROWS}.length;"), Vec::new())
        .await?;
    v.as_u64().context("row count is not a number")
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            bail!("{what} did not happen within {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[tokio::test]
async fn rows_stream_newest_first_and_stop() -> anyhow::Result<()> {
    let served = Served::start(
        Tabular::new()
            .with_interval(Duration::from_millis(50)..Duration::from_millis(100))
            .with_unlock_after(0),
    )
    .await?;
    let b = served::start_browser().await?;
    b.goto(&served.url()).await?;
    assert_eq!(b.client().title().await?, "Thywill: Tabular Application");
    b.wait_text(".status", "Connected").await?;
    b.wait_text(".tabular-wrapper .title", "Thywill: Tabular Application")
        .await?;
    let header = b.text("ul.table > li.row.row-header").await?;
    let cells: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(cells, ["Alpha", "Beta", "Gamma", "Delta", "Epsilon"]);
    b.wait_js("return document.querySelector('button.start').disabled === false && document.querySelector('button.stop').disabled === true;")
        .await?;

    b.click("button.start").await?;
    b.wait_js(&format!("return {ROWS}.length >= 3;")).await?;
    b.wait_js("return document.querySelector('button.start').disabled && !document.querySelector('button.stop').disabled;")
        .await?;
    // Five numeric cells per row, and the newest row on top.
    b.wait_js(&format!(
        "const rows = Array.from({ROWS}); return rows.every(r => r.querySelectorAll('span').length === 5 \
         && Array.from(r.querySelectorAll('span')).every(s => /^\\d+$/.test(s.textContent)));"
    ))
    .await?;
    b.wait_js(
        "const s = Alpine.store('tabular'); const first = document.querySelector('ul.table > li.row:not(.row-header)'); \
         return s.rows[0].id > s.rows[1].id && first.textContent.replace(/\\s+/g, '') === s.rows[0].values.join('');",
    )
    .await?;

    b.click("button.stop").await?;
    eventually("the server timer stopping", || served.app.running() == 0).await?;
    b.wait_js("return !document.querySelector('button.start').disabled && document.querySelector('button.stop').disabled;")
        .await?;
    // Rows that were in flight when Stop was pressed have arrived by now (the server has no
    // timer); none follow.
    let settled = row_count(&b).await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(row_count(&b).await?, settled, "no rows after Stop");

    // Start again, then close the browser: the disconnect stops the server's timer.
    b.click("button.start").await?;
    eventually("the server timer starting", || served.app.running() == 1).await?;
    b.close().await?;
    eventually("the server timer stopping on disconnect", || {
        served.app.running() == 0
    })
    .await?;
    served.stop().await
}

#[tokio::test]
async fn the_server_exposes_the_totals_feature() -> anyhow::Result<()> {
    let served = Served::start(
        Tabular::new()
            .with_interval(Duration::from_millis(30)..Duration::from_millis(60))
            .with_unlock_after(3),
    )
    .await?;
    let b = served::start_browser().await?;
    b.goto(&served.url()).await?;
    b.wait_text(".status", "Connected").await?;
    // Not part of the page until the server says so.
    b.wait_js("return document.querySelector('.totals') === null && document.getElementById('tabular-template-totals') === null;")
        .await?;
    b.click("button.start").await?;
    // totals.js (told by the server) loads its stylesheet and template (asked by the page).
    b.wait_js("return document.querySelectorAll('.totals .sum').length === 5;")
        .await?;
    b.wait_js(
        "return document.querySelector('link[rel=stylesheet][href$=\"/tabular/css/totals.css\"]') !== null;",
    )
    .await?;
    b.wait_js("return document.getElementById('tabular-template-totals').type === 'text/template';")
        .await?;
    b.wait_js("return getComputedStyle(document.querySelector('.totals')).display === 'flex';")
        .await?;
    b.click("button.stop").await?;
    eventually("the server timer stopping", || served.app.running() == 0).await?;
    // The sums shown are the column sums of the rows shown.
    b.wait_js(&format!(
        "const sums = [0,0,0,0,0]; Array.from({ROWS}).forEach(r => Array.from(r.querySelectorAll('span')).forEach((s, i) => sums[i] += Number(s.textContent))); \
         return Array.from(document.querySelectorAll('.totals .sum')).map(s => Number(s.textContent)).join() === sums.join();"
    ))
    .await?;
    b.close().await?;
    served.stop().await
}

#[tokio::test]
async fn resources_added_while_running_load_on_demand() -> anyhow::Result<()> {
    let served = Served::start(Tabular::new().with_unlock_after(0)).await?;
    // Stored while running: minified and served like the bootstrap set.
    let resources = served.node.resources();
    resources
        .store(Resource::new(
            "/tabular/js/asked.js",
            "// asked for by the page\nfunction askedFeature() {\n  var answer = 40 + 2;\n  return answer;\n}\nwindow.asked = askedFeature();\n",
        ))
        .await?;
    resources
        .store(Resource::new(
            "/tabular/js/told.js",
            "/* exposed by the server */\nwindow.told = (window.told || 0) + 1;\n",
        ))
        .await?;
    resources
        .store(Resource::new(
            "/tabular/css/told.css",
            ".tabular-wrapper .title { letter-spacing: 7px; }\n",
        ))
        .await?;
    resources
        .store(
            Resource::new("/tabular/tpl/told.tpl", "<em>told {{ x }}</em>").with_template_id("told-template"),
        )
        .await?;

    let b = served::start_browser().await?;
    b.goto(&served.url()).await?;
    b.wait_text(".status", "Connected").await?;

    // The page asks.
    b.client()
        .execute(
            "Thywill.loadScript('/tabular/js/asked.js'); return true;",
            Vec::new(),
        )
        .await?;
    b.wait_js("return window.asked === 42;").await?;
    // Loading again reuses the first load.
    b.wait_js("return document.querySelectorAll('script[src$=\"/tabular/js/asked.js\"]').length === 1;")
        .await?;
    b.client()
        .execute(
            "Thywill.loadScript('/tabular/js/asked.js'); window.loadedAgain = true; return true;",
            Vec::new(),
        )
        .await?;
    b.wait_js("return window.loadedAgain && document.querySelectorAll('script[src$=\"/tabular/js/asked.js\"]').length === 1;")
        .await?;
    // A missing resource rejects.
    b.client()
        .execute(
            "window.missing = 'pending'; Thywill.loadScript('/tabular/js/missing.js').then(() => window.missing = 'loaded', () => window.missing = 'rejected'); return true;",
            Vec::new(),
        )
        .await?;
    b.wait_js("return window.missing === 'rejected';").await?;

    // The server tells: a script, a stylesheet and a template, to this page's connection.
    let connection = b
        .client()
        .execute("return Thywill.connectionId;", Vec::new())
        .await?;
    let connection = ConnectionId::from(connection.as_str().context("no connection id")?);
    let ctx = served
        .node
        .context(example_tabular::APP_ID)
        .context("no tabular context")?;
    b.client()
        .execute(
            "window.loadedEvents = []; Thywill.on('loaded', (kind, path) => window.loadedEvents.push(kind + ' ' + path)); return true;",
            Vec::new(),
        )
        .await?;
    ctx.expose(&connection, "/tabular/js/told.js").await?;
    ctx.expose(&connection, "/tabular/css/told.css").await?;
    ctx.expose(&connection, "/tabular/tpl/told.tpl").await?;
    ctx.expose(&connection, "/tabular/js/told.js").await?;
    b.wait_js("return window.told === 1;").await?;
    b.wait_js(
        "return getComputedStyle(document.querySelector('.tabular-wrapper .title')).letterSpacing === '7px';",
    )
    .await?;
    b.wait_js("const t = document.getElementById('told-template'); return t !== null && t.type === 'text/template' && t.textContent === '<em>told {{ x }}</em>';")
        .await?;
    b.wait_js(
        "return ['script /tabular/js/told.js', 'stylesheet /tabular/css/told.css', 'template /tabular/tpl/told.tpl'].every(e => window.loadedEvents.includes(e));",
    )
    .await?;
    // Told twice, run once.
    b.wait_js("return window.told === 1;").await?;

    b.close().await?;
    served.stop().await
}
