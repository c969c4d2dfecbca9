//! Bad input gets a clear error or close code and never hurts other clients.

use futures_util::SinkExt;
use serde_json::json;
use thywill_core::protocol::{ErrorCode, ServerFrame, close};
use thywill_testkit::{WsClient, WsError};
use thywill_transport::TransportConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::Fixture;

async fn assert_echo_works(c: &mut WsClient) -> anyhow::Result<()> {
    c.send("echo", json!("still here")).await?;
    match c.recv().await? {
        ServerFrame::Msg { data, .. } => assert_eq!(data, json!("still here")),
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn unknown_application_gets_an_error_frame_and_the_connection_stays_usable() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    c.send("nope", json!(1)).await?;
    match c.recv().await? {
        ServerFrame::Error { code, app, .. } => {
            assert_eq!(code, ErrorCode::UnknownApp);
            assert_eq!(app.map(|a| a.to_string()).as_deref(), Some("nope"));
        }
        other => panic!("{other:?}"),
    }
    assert_echo_works(&mut c).await
}

#[tokio::test]
async fn malformed_frames_get_bad_frame_errors_and_others_are_unaffected() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    let mut bystander = WsClient::connect(&fx.ws_url()).await?;
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    for bad in [
        "{not json",
        r#"{"t":"msg","app":42,"data":1}"#,
        r#"{"t":"rpc","app":"echo","id":"x","name":1}"#,
        r#"{"t":"unknown"}"#,
        r#"[]"#,
    ] {
        c.send_text(bad).await?;
        match c.recv().await? {
            ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::BadFrame, "{bad}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert_echo_works(&mut c).await?;
    assert_echo_works(&mut bystander).await
}

#[tokio::test]
async fn a_stream_of_malformed_frames_is_closed_with_4000() -> anyhow::Result<()> {
    let cfg = TransportConfig::default()
        .with_base_path("/t")?
        .with_max_bad_frames(3);
    let fx = Fixture::start(cfg).await?;
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    for _ in 0..10 {
        if c.send_text("garbage").await.is_err() {
            break;
        }
    }
    assert_eq!(c.closed().await?, Some(close::TOO_MANY_BAD_FRAMES));
    Ok(())
}

#[tokio::test]
async fn oversize_frames_close_with_1009() -> anyhow::Result<()> {
    let cfg = TransportConfig::default()
        .with_base_path("/t")?
        .with_max_message_size(1024)?;
    let fx = Fixture::start(cfg).await?;
    let mut bystander = WsClient::connect(&fx.ws_url()).await?;
    // Just over the limit (checked by the protocol decoder) and far over it (refused by the
    // WebSocket layer before the whole frame is buffered).
    for size in [1100usize, 100_000] {
        let mut c = WsClient::connect(&fx.ws_url()).await?;
        let text = format!(r#"{{"t":"msg","app":"echo","data":"{}"}}"#, "x".repeat(size));
        let _ = c.send_text(text).await;
        assert_eq!(c.closed().await?, Some(close::MESSAGE_TOO_BIG), "size {size}");
    }
    assert_echo_works(&mut bystander).await
}

#[tokio::test]
async fn binary_frames_close_with_1003() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    c.raw().send(WsMessage::binary(vec![1u8, 2, 3])).await?;
    assert_eq!(c.closed().await?, Some(close::UNSUPPORTED_DATA));
    Ok(())
}

#[tokio::test]
async fn a_foreign_origin_is_refused_and_the_same_host_accepted() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    let refused = WsClient::connect_with_origin(&fx.ws_url(), Some("http://evil.example")).await;
    match refused {
        Err(WsError::Other(e)) => assert!(format!("{e:#}").contains("403"), "{e:#}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let own = format!("http://{}", fx.addr);
    let mut c = WsClient::connect_with_origin(&fx.ws_url(), Some(&own)).await?;
    assert_echo_works(&mut c).await
}

/// A node whose outbound queues hold 8 frames, and two clients of it.
async fn small_queue_and_two_clients() -> anyhow::Result<(Fixture, WsClient, WsClient)> {
    let cfg = TransportConfig::default()
        .with_base_path("/t")?
        .with_outbound_queue(8)?;
    let fx = Fixture::start(cfg).await?;
    let other = WsClient::connect(&fx.ws_url()).await?;
    let slow = WsClient::connect(&fx.ws_url()).await?;
    Ok((fx, other, slow))
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_with_4008_without_stalling_others() -> anyhow::Result<()> {
    let (fx, mut other, mut slow) = small_queue_and_two_clients().await?;
    // Ask for far more than socket buffers hold, then do not read.
    slow.send("echo", json!({"flood": 20_000, "size": 2048})).await?;
    fx.until("the slow consumer to be cut off", |n| n.connection_count() == 1)
        .await?;
    assert_echo_works(&mut other).await?;
    assert_eq!(slow.closed().await?, Some(close::SLOW_CONSUMER));
    Ok(())
}

/// A client that stops reading while messages trickle in fills the socket buffers first:
/// the write blocks, and the queue overflows behind it. The server must still cut it off,
/// without the client ever reading again.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_even_while_a_write_blocks() -> anyhow::Result<()> {
    let (fx, mut other, mut slow) = small_queue_and_two_clients().await?;
    slow.send("echo", json!({"flood": 100_000, "size": 16_384, "pause_ms": 1}))
        .await?;
    fx.until("the stalled client to be cut off", |n| n.connection_count() == 1)
        .await?;
    assert_echo_works(&mut other).await?;
    drop(slow); // it never read
    Ok(())
}

#[tokio::test]
async fn a_flooding_client_is_closed_with_4429_and_others_carry_on() -> anyhow::Result<()> {
    let cfg = TransportConfig::default()
        .with_base_path("/t")?
        .with_rate_limit(5, 10)?;
    let fx = Fixture::start(cfg).await?;
    let mut other = WsClient::connect(&fx.ws_url()).await?;
    let mut flood = WsClient::connect(&fx.ws_url()).await?;
    for i in 0..100 {
        if flood.send("nope", json!(i)).await.is_err() {
            break;
        }
    }
    assert_eq!(flood.closed().await?, Some(close::RATE_LIMITED));
    assert_echo_works(&mut other).await
}

#[tokio::test]
async fn handshakes_beyond_the_connection_limit_are_refused() -> anyhow::Result<()> {
    let cfg = TransportConfig::default()
        .with_base_path("/t")?
        .with_max_connections(2)?;
    let fx = Fixture::start(cfg).await?;
    let mut a = WsClient::connect(&fx.ws_url()).await?;
    let _b = WsClient::connect(&fx.ws_url()).await?;
    match WsClient::connect(&fx.ws_url()).await {
        Err(WsError::Other(e)) => assert!(format!("{e:#}").contains("503"), "{e:#}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_echo_works(&mut a).await
}
