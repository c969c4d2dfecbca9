//! The Display application's messages, as the original's test checked them, on two members in
//! this process (clustered through the in-memory hub of the testkit).

use anyhow::bail;
use serde_json::{Value, json};
use thywill::protocol::ServerFrame;
use thywill::{MemberId, Thywill, tracked};
use thywill_testkit::WsClient;
use thywill_testkit::hub::Hub;

async fn member(hub: &Hub, id: &str) -> anyhow::Result<(Thywill, String)> {
    let members = [MemberId::from("alpha"), MemberId::from("beta")];
    let (cluster, tracker) = tracked(hub.member(id));
    let node = example_display::builder()?
        .bootstrap(example_display::script(&members)?)
        .cluster(cluster)
        .tracker(tracker)
        .build()
        .await?;
    let (addr, serving) = node.bind(([127, 0, 0, 1], 0).into()).await?;
    tokio::spawn(serving);
    Ok((node, format!("ws://{addr}/display/ws")))
}

async fn next(c: &mut WsClient) -> anyhow::Result<Value> {
    loop {
        match c.recv().await {
            Ok(ServerFrame::Msg { app, data, .. }) if app.as_str() == "display" => return Ok(data),
            Ok(_) => continue,
            Err(e) => bail!("no display message: {e}"),
        }
    }
}

/// The next message satisfying `pred`, skipping others.
async fn next_where(c: &mut WsClient, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    loop {
        let d = next(c).await?;
        if pred(&d) {
            return Ok(d);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_disconnections_are_shown_on_every_member() -> anyhow::Result<()> {
    let hub = Hub::new(["alpha", "beta"]);
    let (alpha, alpha_url) = member(&hub, "alpha").await?;
    let (beta, beta_url) = member(&hub, "beta").await?;

    // The first two messages: the connection list (every member, this connection included),
    // then this connection's own announcement.
    let mut on_alpha = WsClient::connect(&alpha_url).await?;
    let me = on_alpha.connection.to_string();
    let list = next(&mut on_alpha).await?;
    assert_eq!(list["type"], "connectionList");
    assert!(list["connections"]["beta"].is_array(), "{list}");
    assert_eq!(list["connections"]["alpha"], json!([me]));
    assert_eq!(
        next(&mut on_alpha).await?,
        json!({"type": "connection", "connectionId": me, "clusterMemberId": "alpha"})
    );

    // Announcements from different members travel independently: wait (bounded) until beta's
    // tracker has alpha's connection, so that the list beta sends below must contain it.
    let beta_ctx = beta
        .context("display")
        .ok_or_else(|| anyhow::anyhow!("no display context"))?;
    let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
    while !beta_ctx.is_connected(&me.as_str().into()).await.unwrap_or(false) {
        if tokio::time::Instant::now() > deadline {
            bail!("beta never learned of alpha's connection");
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // A connection to beta: alpha's client sees beta's announcement, and alpha's own remark.
    let mut on_beta = WsClient::connect(&beta_url).await?;
    let other = on_beta.connection.to_string();
    next_where(&mut on_alpha, |d| {
        *d == json!({"type": "connection", "connectionId": other, "clusterMemberId": "beta"})
    })
    .await?;
    let remark = format!("{other} connected to beta.");
    next_where(&mut on_alpha, |d| {
        d["type"] == "text" && d["text"] == remark && d["clusterMemberId"] == "alpha"
    })
    .await?;
    let list = next(&mut on_beta).await?;
    assert_eq!(
        list["connections"]["alpha"],
        json!([me]),
        "beta knows alpha's connection: {list}"
    );

    // Alpha's client leaves: beta's client sees it.
    on_alpha.close().await;
    next_where(&mut on_beta, |d| {
        *d == json!({"type": "disconnection", "connectionId": me, "clusterMemberId": "alpha"})
    })
    .await?;

    // Alpha dies: beta, its designated handler, sends the connections it held.
    let mut again = WsClient::connect(&alpha_url).await?;
    let lost = again.connection.to_string();
    next_where(&mut on_beta, |d| {
        d["type"] == "connection" && d["connectionId"] == lost
    })
    .await?;
    hub.kill("alpha");
    next_where(&mut on_beta, |d| {
        d["type"] == "text" && d["text"] == "alpha is down."
    })
    .await?;
    let dropped = next_where(&mut on_beta, |d| d["type"] == "disconnectionList").await?;
    assert_eq!(
        dropped,
        json!({"type": "disconnectionList", "connections": {"alpha": [lost]}})
    );
    let _ = again.recv_within(std::time::Duration::from_millis(1)).await;
    alpha.shutdown();
    beta.shutdown();
    Ok(())
}
