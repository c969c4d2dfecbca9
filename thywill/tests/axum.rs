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

/// A page with the client library, stored at the base path `/live`.
const PAGE: &str = "<!doctype html><title>live</title><script src=\"/live/thywill/thywill.js\"></script>";

/// A node with the base path `/live`, signed-cookie sessions and a page at `/live/`, built
/// from `config`.
async fn live_node(config: TransportConfig) -> anyhow::Result<Thywill> {
    Ok(Thywill::builder()
        .transport(config.with_base_path("/live")?)
        .sessions(thywill::SessionConfig::new([7u8; 32])?)
        .resource(thywill::Resource::new("/live/", PAGE).with_kind(thywill::ResourceKind::Html))
        .application("echo", Echo)
        .build()
        .await?)
}

/// Serves `app` with axum on a loopback port (with `ConnectInfo`), until `stop` completes;
/// the handle ends when axum's graceful shutdown has.
async fn serve_app(
    node: &Thywill,
    app: axum::Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(node.shutdown_on(stop));
    Ok((addr, tokio::spawn(async move { served.await })))
}

/// The status a WebSocket upgrade request for `path` is answered with (101 when it upgrades).
async fn upgrade_status(addr: SocketAddr, path: &str) -> anyhow::Result<u16> {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await?;
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await?;
            anyhow::ensure!(
                n > 0,
                "closed before an answer: {:?}",
                String::from_utf8_lossy(&out)
            );
            out.extend_from_slice(&buf[..n]);
        }
        anyhow::Ok(String::from_utf8_lossy(&out).into_owned())
    };
    let text = tokio::time::timeout(WAIT, exchange)
        .await
        .context("upgrade timed out")??;
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line in {text:?}"))
}

/// The session cookie (`name=value`) a page response sets.
fn session_cookie(page: &str) -> anyhow::Result<String> {
    let line = page
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .with_context(|| format!("no session cookie: {page}"))?;
    let value = line.split_once(':').map_or("", |(_, v)| v).trim();
    Ok(value.split(';').next().unwrap_or_default().to_owned())
}

/// A WebSocket to the node under `/live` at `addr`, with the session its page gives.
async fn connect_live(addr: SocketAddr) -> anyhow::Result<WsClient> {
    let (status, page) = get(addr, "/live/").await?;
    anyhow::ensure!(status == 200, "the page: {page}");
    let cookie = session_cookie(&page)?;
    Ok(WsClient::connect_with_cookie(&format!("ws://{addr}/live/ws"), &cookie).await?)
}

/// Checks a node mounted under `/live` at `addr`: the app page with its session cookie for
/// `/live`, the client library, the loopback-only metrics, a WebSocket round trip, the app's
/// own route.
async fn check_mounted(node: &Thywill, addr: SocketAddr) -> anyhow::Result<()> {
    let (status, page) = get(addr, "/live/").await?;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("/live/thywill/thywill.js"), "{page}");
    let cookie = page
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .with_context(|| format!("no session cookie: {page}"))?;
    assert!(cookie.contains("Path=/live"), "{cookie}");
    let cookie = session_cookie(&page)?;

    let (status, script) = get(addr, "/live/thywill/thywill.js").await?;
    assert_eq!(status, 200, "{script}");
    assert!(script.contains("javascript"), "{script}");

    let (status, text) = get(addr, "/live/metrics").await?;
    assert_eq!(status, 200, "metrics through the mount: {text}");

    let (status, text) = get(addr, "/hello").await?;
    assert_eq!(status, 200, "{text}");
    let (status, _) = get(addr, "/live/no-such-thing").await?;
    assert_eq!(status, 404);

    let mut client = WsClient::connect_with_cookie(&format!("ws://{addr}/live/ws"), &cookie).await?;
    client.send("echo", json!({"nested": true})).await?;
    match recv(&mut client).await? {
        ServerFrame::Msg { data, .. } => assert_eq!(data, json!({"nested": true})),
        other => anyhow::bail!("expected the echo, got {other:?}"),
    }
    assert_eq!(node.edge().connection_count(), 1);
    client.close().await;
    Ok(())
}

fn hello() -> axum::Router {
    axum::Router::new().route("/hello", axum::routing::get(|| async { "hello from axum" }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_nested_with_nest_service_serves_its_page_script_and_socket() -> anyhow::Result<()> {
    let node = live_node(TransportConfig::default()).await?;
    let app = hello().nest_service("/live", node.service());
    let (addr, _served) = serve_app(&node, app, std::future::pending()).await?;
    check_mounted(&node, addr).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_nested_with_nest_serves_its_page_script_and_socket() -> anyhow::Result<()> {
    let node = live_node(TransportConfig::default()).await?;
    let live = axum::Router::new().fallback_service(node.service());
    // axum 0.8's `nest` does not route `/live/` (the page) to the nested router: that one
    // path is routed to the service directly.
    let app = hello()
        .nest("/live", live)
        .route_service("/live/", node.service());
    let (addr, _served) = serve_app(&node, app, std::future::pending()).await?;
    check_mounted(&node, addr).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_answers_the_nodes_routes_and_passes_the_rest_on() -> anyhow::Result<()> {
    let node = live_node(TransportConfig::default()).await?;
    // The app's own route under the node's base path is not the node's: it passes through.
    let app = hello()
        .route("/live/api", axum::routing::get(|| async { "the app's api" }))
        .layer(node.layer());
    let (addr, _served) = serve_app(&node, app, std::future::pending()).await?;
    let (status, text) = get(addr, "/live/api").await?;
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("the app's api"), "{text}");
    check_mounted(&node, addr).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_cap_refuses_upgrades_with_503_through_axum() -> anyhow::Result<()> {
    let node = live_node(TransportConfig::default().with_max_sockets(1)?).await?;
    let app = hello().nest_service("/live", node.service());
    let (addr, _served) = serve_app(&node, app, std::future::pending()).await?;
    let first = connect_live(addr).await?;
    assert_eq!(upgrade_status(addr, "/live/ws").await?, 503);
    // Plain requests are not sockets of the node's: still answered.
    assert_eq!(get(addr, "/live/alive").await?.0, 200);
    first.close().await;
    // The place is given back when the connection ends.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match upgrade_status(addr, "/live/ws").await? {
            101 => break,
            status if tokio::time::Instant::now() < deadline => {
                assert_eq!(status, 503);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            status => anyhow::bail!("the place was not given back: {status}"),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_timeout_bounds_the_upgrade_through_axum() -> anyhow::Result<()> {
    let node = Thywill::builder()
        .transport(
            TransportConfig::default()
                .with_base_path("/live")?
                .with_handshake_timeout(Duration::from_millis(300))?,
        )
        .authenticate(|_| std::future::pending())
        .application("echo", Echo)
        .build()
        .await?;
    let app = hello().nest_service("/live", node.service());
    let (addr, _served) = serve_app(&node, app, std::future::pending()).await?;
    let started = tokio::time::Instant::now();
    assert_eq!(upgrade_status(addr, "/live/ws").await?, 503);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(node.edge().connection_count(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axums_graceful_shutdown_drains_the_nodes_connections() -> anyhow::Result<()> {
    let node = live_node(TransportConfig::default()).await?;
    let app = hello().nest_service("/live", node.service());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, served) = serve_app(&node, app, async move {
        let _ = stopped.await;
    })
    .await?;
    let mut open = connect_live(addr).await?;
    let _ = stop.send(());
    // The client is told to reconnect elsewhere, then the socket closes with 1001.
    let code = tokio::time::timeout(WAIT, open.closed())
        .await
        .context("no drain close")??;
    assert_eq!(code, Some(1001));
    tokio::time::timeout(WAIT, served)
        .await
        .context("axum's shutdown did not complete")???;
    assert!(
        tokio::time::timeout(WAIT, node.drained()).await?,
        "connections left"
    );
    assert_eq!(node.edge().connection_count(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_axum_app_on_the_nodes_own_accept_loop_serves_until_the_signal() -> anyhow::Result<()> {
    let node = live_node(TransportConfig::default()).await?;
    let app = hello().nest_service("/live", node.service());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = {
        let node = node.clone();
        tokio::spawn(async move {
            node.serve_router_with_shutdown(listener, app, async move {
                let _ = stopped.await;
            })
            .await;
        })
    };
    check_mounted(&node, addr).await?;
    let mut open = connect_live(addr).await?;
    let _ = stop.send(());
    let code = tokio::time::timeout(WAIT, open.closed())
        .await
        .context("no drain close")??;
    assert_eq!(code, Some(1001));
    tokio::time::timeout(WAIT, serving)
        .await
        .context("serving did not end after the signal")??;
    assert_eq!(node.edge().connection_count(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_shutdown_drains_on_the_signal_and_returns() -> anyhow::Result<()> {
    let node = live_node(TransportConfig::default()).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = {
        let node = node.clone();
        tokio::spawn(async move {
            node.serve_with_shutdown(listener, async move {
                let _ = stopped.await;
            })
            .await;
        })
    };
    let mut open = connect_live(addr).await?;
    open.send("echo", json!("before")).await?;
    assert!(matches!(recv(&mut open).await?, ServerFrame::Msg { .. }));
    let _ = stop.send(());
    let code = tokio::time::timeout(WAIT, open.closed())
        .await
        .context("no drain close")??;
    assert_eq!(code, Some(1001));
    tokio::time::timeout(WAIT, serving)
        .await
        .context("serve_with_shutdown did not return after the signal")??;
    assert!(node.edge().is_shutting_down());
    assert_eq!(node.edge().connection_count(), 0);
    Ok(())
}
