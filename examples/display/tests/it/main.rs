//! The Display application's messages, as the original's test checked them, on two members in
//! this process (clustered through the in-memory hub of the testkit).

use anyhow::bail;
use serde_json::{Value, json};
use thywill::protocol::ServerFrame;
use thywill::{BackendParts, MemberId, Thywill};
use thywill_testkit::WsClient;
use thywill_testkit::hub::Hub;

async fn member(hub: &Hub, id: &str) -> anyhow::Result<(Thywill, String)> {
    member_with(hub, id, example_display::Display::default()).await
}

async fn member_with(
    hub: &Hub,
    id: &str,
    display: example_display::Display,
) -> anyhow::Result<(Thywill, String)> {
    let members = [MemberId::from("alpha"), MemberId::from("beta")];
    let node = example_display::builder_with(display)?
        .bootstrap(example_display::script(&members)?)
        .backend(BackendParts::new("hub", hub.member(id)))
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

/// The next message satisfying `pred`, skipping others, within the testkit's timeout in all
/// (members keep talking: connection counts arrive every second).
async fn next_where(c: &mut WsClient, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
    loop {
        let d = tokio::time::timeout_at(deadline, next(c))
            .await
            .map_err(|_| anyhow::anyhow!("the awaited display message never came"))??;
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

    // The first message: the connection list (every member, this connection included).
    let mut on_alpha = WsClient::connect(&alpha_url).await?;
    let me = on_alpha.connection.to_string();
    let list = next(&mut on_alpha).await?;
    assert_eq!(list["type"], "connectionList");
    assert!(list["connections"]["beta"].is_array(), "{list}");
    assert_eq!(list["connections"]["alpha"], json!([me]));
    // Then this connection's own announcement, from alpha; beta's tracker remark on it ("…
    // connected to alpha.") travels on its own and may come first.
    let own = json!({"type": "connection", "connectionId": me, "clusterMemberId": "alpha"});
    let d = next_where(&mut on_alpha, |d| {
        d["type"] != "text" || d["clusterMemberId"] != "beta"
    })
    .await?;
    assert_eq!(d, own);

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
    // Two members speak here, in no set order: beta announces its connection, and alpha's
    // tracker hook remarks on it.
    let announcement = json!({"type": "connection", "connectionId": other, "clusterMemberId": "beta"});
    let remark = format!("{other} connected to beta.");
    let (mut announced, mut remarked) = (false, false);
    let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
    while !(announced && remarked) {
        let d = tokio::time::timeout_at(deadline, next(&mut on_alpha))
            .await
            .map_err(|_| anyhow::anyhow!("announced {announced}, remarked {remarked}"))??;
        announced |= d == announcement;
        remarked |= d["type"] == "text" && d["text"] == remark && d["clusterMemberId"] == "alpha";
    }
    // Beta's list of connections comes first from beta, but alpha's remark on the new
    // connection may reach the client before it (two members, no set order).
    let list = next_where(&mut on_beta, |d| d["type"] == "connectionList").await?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_ask_each_other_for_their_connection_counts() -> anyhow::Result<()> {
    let hub = Hub::new(["alpha", "beta"]);
    let every = std::time::Duration::from_millis(50);
    let display = || example_display::Display::default().asking_every(every);
    let (alpha, alpha_url) = member_with(&hub, "alpha", display()).await?;
    let (beta, _) = member_with(&hub, "beta", display()).await?;
    let mut on_alpha = WsClient::connect(&alpha_url).await?;
    // Around the ring of two: beta asks alpha (which holds this one connection), alpha asks
    // beta (none).
    next_where(&mut on_alpha, |d| {
        *d == json!({"type": "connectionCount", "clusterMemberId": "beta", "member": "alpha", "connections": 1})
    })
    .await?;
    next_where(&mut on_alpha, |d| {
        *d == json!({"type": "connectionCount", "clusterMemberId": "alpha", "member": "beta", "connections": 0})
    })
    .await?;
    // beta dies: alpha's ask is refused, and the page is told why.
    hub.kill("beta");
    let refused = next_where(&mut on_alpha, |d| {
        d["type"] == "connectionCount" && d["member"] == "beta" && d.get("error").is_some()
    })
    .await?;
    assert_eq!(refused["clusterMemberId"], "alpha");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("beta is not up")),
        "{refused}"
    );
    alpha.shutdown();
    beta.shutdown();
    Ok(())
}
