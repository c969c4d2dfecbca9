//! The stream of rows: its shape, and a timer that belongs to the connection and always stops.

use std::time::Duration;

use serde_json::json;
use thywill::protocol::{LoadKind, ServerFrame};
use thywill_testkit::{WsClient, WsError};

use crate::fixture::{eventually, fast_app, start};

/// The next row for the tabular app, skipping other frames (such as `load`).
async fn next_row(ws: &mut WsClient) -> anyhow::Result<Vec<u64>> {
    loop {
        if let ServerFrame::Msg { app, data, .. } = ws.recv().await? {
            assert_eq!(app.as_str(), example_tabular::APP_ID);
            let row: Vec<u64> = serde_json::from_value(data)?;
            return Ok(row);
        }
    }
}

/// Asserts that no row arrives within `window` (well over the longest interval).
async fn no_row_within(ws: &mut WsClient, window: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + window;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.recv_within(left).await {
            Err(WsError::Timeout) => return Ok(()),
            Ok(ServerFrame::Msg { data, .. }) => anyhow::bail!("a row arrived after stop: {data}"),
            Ok(_) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[tokio::test]
async fn rows_of_five_numbers_below_20000() -> anyhow::Result<()> {
    let served = start(fast_app()).await?;
    let mut ws = WsClient::connect(&served.ws_url()).await?;
    ws.send(example_tabular::APP_ID, json!("start")).await?;
    for _ in 0..3 {
        let row = next_row(&mut ws).await?;
        assert_eq!(row.len(), example_tabular::COLUMNS);
        assert!(
            row.iter().all(|v| *v < u64::from(example_tabular::MAX_VALUE)),
            "{row:?}"
        );
    }
    ws.send(example_tabular::APP_ID, json!("stop")).await?;
    ws.close().await;
    Ok(())
}

#[tokio::test]
async fn a_second_start_keeps_one_timer_and_stop_stops_it() -> anyhow::Result<()> {
    let served = start(fast_app()).await?;
    let mut ws = WsClient::connect(&served.ws_url()).await?;
    ws.send(example_tabular::APP_ID, json!("start")).await?;
    next_row(&mut ws).await?;
    ws.send(example_tabular::APP_ID, json!("start")).await?;
    next_row(&mut ws).await?;
    next_row(&mut ws).await?;
    assert_eq!(
        served.app.running(),
        1,
        "a second start must not start a second timer"
    );

    ws.send(example_tabular::APP_ID, json!("stop")).await?;
    eventually("the timer stopping", || served.app.running() == 0).await?;
    // Rows sent before the stop was handled may still be in flight; after that, silence for
    // ten times the longest interval.
    no_row_within(&mut ws, Duration::from_millis(400)).await?;

    // Start works again after a stop.
    ws.send(example_tabular::APP_ID, json!("start")).await?;
    next_row(&mut ws).await?;
    assert_eq!(served.app.running(), 1);
    ws.send(example_tabular::APP_ID, json!("stop")).await?;
    eventually("the timer stopping", || served.app.running() == 0).await?;
    ws.close().await;
    Ok(())
}

#[tokio::test]
async fn a_disconnect_stops_the_timer() -> anyhow::Result<()> {
    let served = start(fast_app()).await?;
    let mut ws = WsClient::connect(&served.ws_url()).await?;
    ws.send(example_tabular::APP_ID, json!("start")).await?;
    ws.send(example_tabular::APP_ID, json!("start")).await?;
    next_row(&mut ws).await?;
    assert_eq!(served.app.running(), 1);
    ws.close().await;
    eventually("the timer stopping after the disconnect", || {
        served.app.running() == 0
    })
    .await?;

    // Two connections have a timer each, and stopping one leaves the other running.
    let mut a = WsClient::connect(&served.ws_url()).await?;
    let mut b = WsClient::connect(&served.ws_url()).await?;
    a.send(example_tabular::APP_ID, json!("start")).await?;
    b.send(example_tabular::APP_ID, json!("start")).await?;
    next_row(&mut a).await?;
    next_row(&mut b).await?;
    assert_eq!(served.app.running(), 2);
    a.send(example_tabular::APP_ID, json!("stop")).await?;
    eventually("a's timer stopping", || served.app.running() == 1).await?;
    next_row(&mut b).await?;
    a.close().await;
    b.close().await;
    eventually("every timer stopping", || served.app.running() == 0).await?;
    Ok(())
}

#[tokio::test]
async fn the_totals_feature_is_exposed_after_a_few_rows() -> anyhow::Result<()> {
    let served = start(fast_app()).await?;
    let mut ws = WsClient::connect(&served.ws_url()).await?;
    ws.send(example_tabular::APP_ID, json!("start")).await?;
    let mut rows = 0;
    let load = loop {
        match ws.recv().await? {
            ServerFrame::Msg { .. } => rows += 1,
            ServerFrame::Load { kind, path } => break (kind, path),
            _ => {}
        }
    };
    assert_eq!(rows, 3, "unlocked after the third row");
    assert_eq!(
        load,
        (LoadKind::Script, example_tabular::TOTALS_SCRIPT.to_owned())
    );
    ws.send(example_tabular::APP_ID, json!("stop")).await?;
    ws.close().await;
    Ok(())
}
