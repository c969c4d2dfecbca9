//! Health route, keepalive and graceful shutdown.

use std::time::Duration;

use thywill_core::protocol::close;
use thywill_testkit::WsClient;
use thywill_transport::TransportConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::Fixture;

async fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    tokio::time::timeout(thywill_testkit::TIMEOUT, s.read_to_string(&mut out)).await??;
    Ok(out)
}

#[tokio::test]
async fn alive_answers_json_and_unknown_paths_404() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    let r = http_get(fx.addr, "/t/alive").await?;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let body = r.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body)?;
    assert_eq!(v["alive"], true);
    assert_eq!(v["member"], "alpha");
    let js = http_get(fx.addr, "/t/thywill/thywill.js").await?;
    assert!(js.starts_with("HTTP/1.1 200"), "{js}");
    assert!(js.to_ascii_lowercase().contains("content-type: text/javascript"));
    let missing = http_get(fx.addr, "/t/nothing-here").await?;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    Ok(())
}

#[tokio::test]
async fn shutdown_closes_clients_with_1001_and_stops_serving() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    let mut a = WsClient::connect(&fx.ws_url()).await?;
    let mut b = WsClient::connect(&fx.ws_url()).await?;
    fx.node.shutdown();
    assert_eq!(a.closed().await?, Some(close::GOING_AWAY));
    assert_eq!(b.closed().await?, Some(close::GOING_AWAY));
    tokio::time::timeout(thywill_testkit::TIMEOUT, fx.serving).await??;
    Ok(())
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_keepalive_timeout() -> anyhow::Result<()> {
    let cfg = TransportConfig::default()
        .with_base_path("/t")?
        .with_keepalive(Duration::from_millis(50), Duration::from_millis(200))?;
    let fx = Fixture::start(cfg).await?;
    // Never read: the client library cannot answer the server's pings.
    let silent = WsClient::connect(&fx.ws_url()).await?;
    fx.until("the connection to open", |n| n.connection_count() == 1).await?;
    fx.until("the silent connection to be dropped", |n| n.connection_count() == 0)
        .await?;
    drop(silent);
    Ok(())
}
