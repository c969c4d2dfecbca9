//! The cluster-wide client tracker: an application on member alpha sends to a connection and
//! to a session held by member beta, and a member that comes up later learns who is connected
//! from a snapshot. Two nodes in this process, clustered over HTTP.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use serde_json::json;
use thywill::{AppContext, Application, Client, ConnectionId, DynCluster, Message, SessionId};
use thywill_testkit::WsClient;
use thywill_testkit::served;

/// Relays `{"to": connection, "text": ...}` to that connection, `{"session": s, ...}` to a
/// session.
struct Relay;

impl Application for Relay {
    async fn received(&self, ctx: &AppContext, _client: &Client, message: Message) {
        let text = message.data["text"].clone();
        let r = if let Some(to) = message.data["to"].as_str() {
            ctx.send_to_connection(&ConnectionId::from(to), text).await
        } else if let Some(s) = message.data["session"].as_str() {
            ctx.send_to_session(&SessionId::from(s), text).await
        } else {
            Ok(())
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "relay failed");
        }
    }
}

struct Node {
    node: thywill::Thywill,
    ws: String,
    backend: Arc<dyn DynCluster>,
}

async fn node(id: &str, list: &str) -> anyhow::Result<Node> {
    let args = format!(
        "--port 0 --member {id} --cluster http --cluster-members {list} --cluster-secret a-tracker-test-secret-long-enough"
    );
    let opts = example_support::Options::parse(args.split_whitespace().map(String::from), 0)?;
    let builder = thywill::Thywill::builder()
        .base_path("/relay")?
        .application("relay", Relay);
    let builder = example_support::cluster::apply(builder, &opts, "relay")?;
    let node = builder.build().await?;
    let backend = node.cluster().clone();
    let (addr, serving) = node.bind(opts.addr()).await?;
    tokio::spawn(serving);
    Ok(Node {
        node,
        ws: format!("ws://{addr}/relay/ws"),
        backend,
    })
}

async fn connect(url: &str) -> anyhow::Result<WsClient> {
    WsClient::connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))
}

/// Sends `request` from `from` until `to` receives `text` (the target is known to the sender's
/// member once the tracker announcement or snapshot has arrived).
async fn relayed(
    from: &mut WsClient,
    to: &mut WsClient,
    request: serde_json::Value,
    text: &str,
) -> anyhow::Result<()> {
    for _ in 0..40 {
        from.send("relay", request.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        match to.recv_within(Duration::from_millis(250)).await {
            Ok(thywill::protocol::ServerFrame::Msg { data, .. }) if data == json!(text) => return Ok(()),
            Ok(other) => bail!("unexpected frame {other:?}"),
            Err(thywill_testkit::WsError::Timeout) => continue,
            Err(e) => bail!("{e}"),
        }
    }
    bail!("{text:?} never arrived")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_connections_and_sessions_on_other_members() -> anyhow::Result<()> {
    let (pa, pb) = (thywill_testkit::free_port(), thywill_testkit::free_port());
    let list = format!("alpha=127.0.0.1:{pa},beta=127.0.0.1:{pb}");
    let alpha = node("alpha", &list).await?;
    // A client connects to alpha before beta exists: beta learns of it from alpha's snapshot.
    let mut on_alpha = connect(&alpha.ws).await?;
    let beta = node("beta", &list).await?;
    served::wait_up(&*alpha.backend, "beta").await?;
    served::wait_up(&*beta.backend, "alpha").await?;
    let mut on_beta = connect(&beta.ws).await?;

    // alpha -> a connection on beta (announced when it connected).
    let to_beta = json!({"to": on_beta.connection.as_str(), "text": "to beta"});
    relayed(&mut on_alpha, &mut on_beta, to_beta, "to beta").await?;
    // beta -> a connection on alpha (known from the snapshot).
    let to_alpha = json!({"to": on_alpha.connection.as_str(), "text": "to alpha"});
    relayed(&mut on_beta, &mut on_alpha, to_alpha, "to alpha").await?;
    // alpha -> a session on beta (plain mode: the session is the connection).
    let to_session = json!({"session": on_beta.connection.as_str(), "text": "to session"});
    relayed(&mut on_alpha, &mut on_beta, to_session, "to session").await?;

    for n in [alpha, beta] {
        n.node.shutdown();
        n.backend.stop().await?;
    }
    Ok(())
}
