//! Calls pending when the server stops.

use serde_json::json;
use thywill::protocol::{ServerFrame, close};
use thywill_testkit::WsError;

use crate::fixture::{APP, Fixture};

/// The server side of "disconnected": the connection closes with 1001 (going away) and the
/// pending call gets no reply; the browser library then rejects it with `dc` (covered by the
/// Calculations example's browser test).
#[tokio::test]
async fn a_call_pending_while_the_server_stops_gets_no_reply_and_the_socket_closes() -> anyhow::Result<()> {
    let mut f = Fixture::start().await?;
    let mut c = f.client().await?;
    c.rpc(APP, 7, "slow.forever", json!([])).await?;
    tokio::time::timeout(thywill_testkit::TIMEOUT, f.started.recv())
        .await?
        .ok_or_else(|| anyhow::anyhow!("the slow function never started"))?;
    f.node.shutdown();
    loop {
        match c.recv().await {
            Ok(ServerFrame::RpcOk { id, .. } | ServerFrame::RpcErr { id, .. }) => {
                anyhow::bail!("call {id} was answered while the server stopped")
            }
            Ok(_) => continue,
            Err(WsError::Closed(frame)) => {
                assert_eq!(frame.map(|(code, _)| code), Some(close::GOING_AWAY));
                break;
            }
            Err(e) => anyhow::bail!("unexpected {e}"),
        }
    }
    Ok(())
}
