//! `Thywill::router()` mounted in a real axum app (feature `axum`): the app's own routes still
//! answer, WebSockets open through axum's server with the node's checks, and `/metrics`
//! knows the client's address from axum's `ConnectInfo`.
//!
//! Run with `cargo nextest run -p thywill --features axum --test axum`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use thywill::core::protocol::ServerFrame;
use thywill::{AppContext, Application, Client, Message, Thywill, TransportConfig};
use thywill_testkit::WsClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends every message back to the connection it came from.
struct Echo;

impl Application for Echo {
    async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
        let _ = ctx.send_to_connection(&client.connection, message).await;
    }
}

const WAIT: Duration = Duration::from_secs(10);

/// An axum app with its own `/hello` route and the node merged in, served on a loopback port.
async fn serve() -> anyhow::Result<(Thywill, SocketAddr)> {
    serve_with(TransportConfig::default()).await
}

/// [`serve`] with `config` (its base path replaced by `/live`).
async fn serve_with(config: TransportConfig) -> anyhow::Result<(Thywill, SocketAddr)> {
    let node = Thywill::builder()
        .transport(config.with_base_path("/live")?)
        .application("echo", Echo)
        .build()
        .await?;
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hello from axum" }))
        .merge(node.router());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
        if let Err(e) = served {
            eprintln!("axum::serve failed: {e}");
        }
    });
    Ok((node, addr))
}

/// A plain HTTP/1.1 GET: the status code and the whole response.
async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        tcp.write_all(head.as_bytes()).await?;
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).await?;
        anyhow::Ok(String::from_utf8_lossy(&out).into_owned())
    };
    let text = tokio::time::timeout(WAIT, exchange)
        .await
        .context("GET timed out")??;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line in {text:?}"))?;
    Ok((status, text))
}

async fn recv(client: &mut WsClient) -> anyhow::Result<ServerFrame> {
    Ok(client.recv_within(WAIT).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_merged_into_an_axum_app_serves_websockets_beside_the_apps_routes() -> anyhow::Result<()> {
    let (node, addr) = serve().await?;
    let url = format!("ws://{addr}/live/ws");

    let mut client = WsClient::connect(&url).await?;
    // `connect` read the welcome.
    let ServerFrame::Welcome { apps, .. } = &client.welcome else {
        anyhow::bail!("the first frame is not a welcome");
    };
    assert!(apps.iter().any(|a| a.as_str() == "echo"), "{apps:?}");
    client.send("echo", json!({"ping": 1})).await?;
    match recv(&mut client).await? {
        ServerFrame::Msg { app, data, .. } => {
            assert_eq!(app.as_str(), "echo");
            assert_eq!(data, json!({"ping": 1}));
        }
        other => anyhow::bail!("expected the echo, got {other:?}"),
    }
    assert_eq!(node.edge().connection_count(), 1);

    let (status, text) = get(addr, "/hello").await?;
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("hello from axum"), "{text}");

    let (status, text) = get(addr, "/live/alive").await?;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"alive\":true"), "{text}");

    let (status, text) = get(addr, "/live/thywill/thywill.js").await?;
    assert_eq!(status, 200, "{text}");

    // Loopback-only by default: answered, because the router read axum's ConnectInfo.
    let (status, text) = get(addr, "/live/metrics").await?;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("thywill_"), "{text}");

    let (status, _) = get(addr, "/live/no-such-thing").await?;
    assert_eq!(status, 404);
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_is_refused_through_axum() -> anyhow::Result<()> {
    let (node, addr) = serve().await?;
    let url = format!("ws://{addr}/live/ws");
    let refused = WsClient::connect_with_origin(&url, Some("http://evil.example")).await;
    assert!(refused.is_err(), "a foreign origin was let in");
    let same = WsClient::connect_with_origin(&url, Some(&format!("http://{addr}"))).await?;
    assert!(matches!(same.welcome, ServerFrame::Welcome { .. }));
    assert_eq!(node.edge().connection_count(), 1);
    same.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_refuses_new_websockets_through_axum() -> anyhow::Result<()> {
    let (node, addr) = serve().await?;
    let url = format!("ws://{addr}/live/ws");
    let mut open = WsClient::connect(&url).await?;
    assert!(matches!(open.welcome, ServerFrame::Welcome { .. }));
    node.shutdown();
    // The open connection is told to go away (1001); new ones are refused (503).
    let code = tokio::time::timeout(WAIT, open.closed())
        .await
        .context("no close")??;
    assert_eq!(code, Some(1001));
    assert!(
        WsClient::connect(&url).await.is_err(),
        "a draining node took a WebSocket"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_holds_through_axum() -> anyhow::Result<()> {
    let (node, addr) = serve_with(TransportConfig::default().with_max_connections(1)?).await?;
    let url = format!("ws://{addr}/live/ws");
    let first = WsClient::connect(&url).await?;
    assert!(
        WsClient::connect(&url).await.is_err(),
        "a second connection over the limit of 1"
    );
    assert_eq!(node.edge().connection_count(), 1);
    first.close().await;
    Ok(())
}
