//! Health route, keepalive and graceful shutdown.

use std::time::Duration;

use thywill_core::protocol::close;
use thywill_testkit::WsClient;
use thywill_transport::TransportConfig;

use crate::support::{Fixture, http_get};

#[tokio::test]
async fn alive_answers_json_and_unknown_paths_404() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    let r = http_get(fx.addr, "/t/alive", "").await?;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let body = r.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body)?;
    assert_eq!(v["alive"], true);
    assert_eq!(v["member"], "alpha");
    let js = http_get(fx.addr, "/t/thywill/thywill.js", "").await?;
    assert!(js.starts_with("HTTP/1.1 200"), "{js}");
    assert!(js.to_ascii_lowercase().contains("content-type: text/javascript"));
    let missing = http_get(fx.addr, "/t/nothing-here", "").await?;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    Ok(())
}

#[tokio::test]
async fn shutdown_closes_clients_with_1001_and_stops_serving() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    let mut a = WsClient::connect(&fx.ws_url()).await?;
    let mut b = WsClient::connect(&fx.ws_url()).await?;
    fx.edge.shutdown();
    // Draining: first a reconnect hint with a jittered delay, then the close.
    match a.recv().await? {
        thywill_core::protocol::ServerFrame::Reconnect { after_ms } => assert!(after_ms < 2_000),
        other => panic!("expected a reconnect frame, got {other:?}"),
    }
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
    fx.until("the connection to open", |n| n.connection_count() == 1)
        .await?;
    fx.until("the silent connection to be dropped", |n| {
        n.connection_count() == 0
    })
    .await?;
    drop(silent);
    Ok(())
}

/// Parses Prometheus / OpenMetrics text: `name{labels} value` lines, `#` comments, `# EOF`.
fn parse_metrics(text: &str) -> anyhow::Result<std::collections::HashMap<String, f64>> {
    let mut out = std::collections::HashMap::new();
    let mut saw_eof = false;
    for line in text.lines() {
        if line == "# EOF" {
            saw_eof = true;
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            anyhow::ensure!(
                line.is_empty()
                    || line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("# UNIT "),
                "bad comment line {line:?}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| anyhow::anyhow!("no value in {line:?}"))?;
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        anyhow::ensure!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            anyhow::ensure!(series.ends_with('}'), "unclosed labels in {line:?}");
        }
        out.insert(series.to_owned(), value.parse::<f64>()?);
    }
    anyhow::ensure!(saw_eof, "no # EOF");
    Ok(out)
}

#[tokio::test]
async fn metrics_move_as_clients_connect_send_call_and_leave() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    let before = parse_metrics(&fx.edge.metrics_text())?;
    assert_eq!(before.get("thywill_connections"), Some(&0.0));
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    c.send("echo", serde_json::json!("hi")).await?;
    let _ = c.recv().await?;
    c.rpc("echo", 1, "no.such", serde_json::json!([])).await?;
    let _ = c.recv().await?;
    let during = parse_metrics(&fx.edge.metrics_text())?;
    assert_eq!(during.get("thywill_connections"), Some(&1.0));
    assert_eq!(during.get("thywill_messages_in_total{app=\"echo\"}"), Some(&1.0));
    assert_eq!(during.get("thywill_messages_out_total{app=\"echo\"}"), Some(&1.0));
    assert_eq!(during.get("thywill_rpc_calls_total{outcome=\"nf\"}"), Some(&1.0));
    assert!(during.get("thywill_bytes_in_total").is_some_and(|b| *b > 0.0));
    assert_eq!(
        during.get("thywill_cluster_member_up{member=\"alpha\"}"),
        Some(&1.0)
    );
    c.close().await;
    fx.until("the connection to close", |n| n.connection_count() == 0)
        .await?;
    let after = parse_metrics(&fx.edge.metrics_text())?;
    assert_eq!(after.get("thywill_connections"), Some(&0.0));
    assert_eq!(after.get("thywill_connections_opened_total"), Some(&1.0));
    // Served over HTTP to loopback clients.
    let page = http_get(fx.addr, "/t/metrics", "").await?;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    parse_metrics(page.split("\r\n\r\n").nth(1).unwrap_or_default())?;
    Ok(())
}

#[tokio::test]
async fn readiness_turns_false_while_draining() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    let r = http_get(fx.addr, "/t/ready", "").await?;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(fx.edge.is_ready());
    fx.edge.shutdown();
    assert!(!fx.edge.is_ready());
    Ok(())
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_dropped() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cfg = TransportConfig::default()
        .with_base_path("/t")?
        .with_handshake_timeout(Duration::from_millis(200))?;
    let fx = Fixture::start(cfg).await?;
    let mut s = tokio::net::TcpStream::connect(fx.addr).await?;
    s.write_all(b"GET /t/ws HTTP/1.1\r\nHost: x\r\n").await?;
    // The server closes the socket (end of stream, perhaps after a 408) instead of waiting.
    let mut rest = Vec::new();
    tokio::time::timeout(thywill_testkit::TIMEOUT, s.read_to_end(&mut rest)).await??;
    Ok(())
}

/// The routes also work served by warp's own server (warp upgrades the socket there), with
/// the same limits.
#[tokio::test]
async fn the_routes_work_behind_warps_own_server() -> anyhow::Result<()> {
    use thywill_core::protocol::ServerFrame;
    let fx = Fixture::start(
        TransportConfig::default()
            .with_base_path("/t")?
            .with_max_message_size(1024)?,
    )
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(warp::serve(fx.edge.routes()).incoming(listener).run());
    let url = format!("ws://{addr}/t/ws");
    let mut c = WsClient::connect(&url).await?;
    c.send("echo", serde_json::json!("through warp")).await?;
    match c.recv().await? {
        ServerFrame::Msg { data, .. } => assert_eq!(data, serde_json::json!("through warp")),
        other => anyhow::bail!("unexpected {other:?}"),
    }
    c.send("echo", serde_json::json!("x".repeat(4096))).await?;
    assert_eq!(c.closed().await?, Some(close::MESSAGE_TOO_BIG));
    Ok(())
}
