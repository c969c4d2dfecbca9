//! thywill's metrics registered in the application's own Prometheus registry, with the
//! `<base>/metrics` route turned off: one real connection and one message show in it.

use std::time::Duration;

use serde_json::json;
use thywill::core::protocol::ServerFrame;
use thywill::prometheus_client::encoding::text::encode;
use thywill::prometheus_client::registry::Registry;
use thywill::{AppContext, Application, Client, Message, MetricsAccess, Thywill};
use thywill_testkit::WsClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Echo;

impl Application for Echo {
    async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
        let _ = ctx.send_to_connection(&client.connection, message).await;
    }
}

/// The value of the sample named exactly `sample` (name and labels) in a text exposition.
fn sample(page: &str, sample: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

/// The status line of `GET path` on `addr`.
async fn status_of(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut answer)).await??;
    Ok(answer.lines().next().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_go_into_the_applications_registry() -> anyhow::Result<()> {
    let thywill = Thywill::builder()
        .base_path("/m")?
        .metrics(MetricsAccess::Off)
        .application("echo", Echo)
        .build()
        .await?;
    let (addr, serving) = thywill.bind(([127, 0, 0, 1], 0).into()).await?;
    tokio::spawn(serving);
    let mut registry = Registry::default();
    thywill.register_metrics(&mut registry);
    let page = || -> anyhow::Result<String> {
        let mut page = String::new();
        encode(&mut page, &registry)?;
        Ok(page)
    };
    assert_eq!(sample(&page()?, "thywill_connections"), Some(0.0));

    let mut c = WsClient::connect(&format!("ws://{addr}/m/ws")).await?;
    c.send("echo", json!({"text": "hello"})).await?;
    match c.recv_within(Duration::from_secs(5)).await? {
        ServerFrame::Msg { data, .. } => assert_eq!(data, json!({"text": "hello"})),
        other => anyhow::bail!("not a msg: {other:?}"),
    }

    let page = page()?;
    assert_eq!(sample(&page, "thywill_connections"), Some(1.0), "{page}");
    assert_eq!(
        sample(&page, "thywill_connections_opened_total"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, r#"thywill_messages_in_total{app="echo"}"#),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, r#"thywill_messages_out_total{app="echo"}"#),
        Some(1.0),
        "{page}"
    );
    assert!(
        sample(&page, "thywill_bytes_in_total").is_some_and(|b| b > 0.0),
        "{page}"
    );
    // The cluster figures are read at encoding time (the in-process cluster is healthy).
    assert_eq!(sample(&page, "thywill_cluster_healthy"), Some(1.0), "{page}");
    assert_eq!(
        sample(&page, r#"thywill_cluster_member_up{member="alpha"}"#),
        Some(1.0),
        "{page}"
    );
    // The same figures as thywill's own page, which is not served.
    assert_eq!(
        sample(
            &thywill.metrics_text(),
            r#"thywill_messages_in_total{app="echo"}"#
        ),
        Some(1.0)
    );
    assert_eq!(status_of(addr, "/m/metrics").await?, "HTTP/1.1 404 Not Found");
    thywill.shutdown();
    Ok(())
}
