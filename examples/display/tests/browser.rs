//! Browser test of the Display page with real member processes clustered over HTTP: the
//! columns show each member's connections; when a member is killed (`kill -9`), the survivor's
//! page receives the dead member's connections in a `disconnectionList` and drops them.

use anyhow::Context;
use thywill_testkit::browser::Browser;
use thywill_testkit::members::{Member, all_up};
use thywill_testkit::served;
use thywill_testkit::{WsClient, free_port};

const DISPLAY: &str = env!("CARGO_BIN_EXE_example-display");

/// Members over HTTP with short up-check settings (100 ms interval, 300 ms timeout).
async fn http_cluster(ids: &[&str]) -> anyhow::Result<Vec<Member>> {
    let list: Vec<String> = ids
        .iter()
        .map(|id| format!("{id}=127.0.0.1:{}", free_port()))
        .collect();
    let args: Vec<String> = [
        "--cluster",
        "http",
        "--cluster-members",
        &list.join(","),
        "--cluster-secret",
        "a display test secret, long enough",
        "--heartbeat-interval",
        "100",
        "--heartbeat-timeout",
        "300",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut members = Vec::new();
    for id in ids {
        members.push(Member::start(DISPLAY, id, free_port(), &args).await?);
    }
    all_up(&mut members).await?;
    Ok(members)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_members_connections_are_dropped_from_the_survivors_page() -> anyhow::Result<()> {
    served::require_browser()?;
    let mut members = http_cluster(&["alpha", "beta"]).await?;
    let b = Browser::start().await?;
    b.goto(&members[0].url("/display/")).await?;
    b.wait_text("#status", "Connected").await?;
    b.wait_text("#title", "Thywill: Display Application").await?;
    b.wait_js(
        "return ['alpha', 'beta'].every(m => { \
           const c = document.querySelector('#displays > div.cluster-member#' + m); \
           return c !== null && c.querySelector('span.name').textContent === m && \
             c.querySelector('ul.messages') !== null && c.querySelector('ul.connections') !== null; });",
    )
    .await?;
    // The page's own connection is in alpha's column.
    b.wait_js("return document.querySelectorAll('div#alpha ul.connections > li').length === 1;")
        .await?;

    // Two clients of beta appear in beta's column.
    let one = WsClient::connect(&members[1].ws("/display")).await?;
    let two = WsClient::connect(&members[1].ws("/display")).await?;
    let ids = [one.connection.to_string(), two.connection.to_string()];
    let shown = format!(
        "const ids = {}; return ids.every(id => \
           [...document.querySelectorAll('div#beta ul.connections > li')].some(li => li.id === id && li.textContent === id));",
        serde_json::json!(ids)
    );
    b.wait_js(&shown)
        .await
        .context("beta's connections are not shown")?;
    // Timestamped chatter: alpha observed them connecting to beta.
    b.wait_js(&format!(
        "return [...document.querySelectorAll('div#alpha ul.messages > li')].some(li => \
           /^\\[\\d\\d:\\d\\d:\\d\\d\\]$/.test(li.querySelector('span.timestamp').textContent) && \
           li.querySelector('span.text').textContent === '{} connected to beta.');",
        ids[0]
    ))
    .await?;

    // The members ask each other for their connection counts (application tasks): alpha asked
    // beta, which holds the two.
    b.wait_js(
        "const li = document.querySelector('#connection-counts > li.connection-count[data-member=\"beta\"]'); \
         return li !== null && li.textContent.startsWith('beta holds 2 connection(s) (asked by alpha');",
    )
    .await
    .context("beta's connection count is not shown")?;

    // beta is killed: alpha (its designated handler) sends its connections, and the page drops
    // them.
    members[1].kill();
    let mut sorted = ids.to_vec();
    sorted.sort();
    b.wait_js(&format!(
        "return (window.displayReceived || []).some(d => d.type === 'disconnectionList' && \
           JSON.stringify([...(d.connections.beta || [])].sort()) === '{}');",
        serde_json::json!(sorted)
    ))
    .await
    .context("no disconnection list")?;
    b.wait_js("return document.querySelectorAll('div#beta ul.connections > li').length === 0;")
        .await
        .context("beta's connections are still shown")?;
    b.wait_js(
        "const texts = [...document.querySelectorAll('div#alpha ul.messages span.text')].map(s => s.textContent); \
         return texts.includes('beta is down.');",
    )
    .await?;
    b.wait_js("return document.querySelectorAll('div#alpha ul.connections > li').length === 1;")
        .await?;
    // And alpha can no longer ask beta.
    b.wait_js(
        "const li = document.querySelector('#connection-counts > li[data-member=\"beta\"]'); \
         return li !== null && li.classList.contains('unreachable') && li.textContent.startsWith('beta could not be asked');",
    )
    .await
    .context("the refused ask is not shown")?;
    b.close().await?;
    anyhow::ensure!(members[0].proc.is_running(), "alpha exited");
    Ok(())
}
