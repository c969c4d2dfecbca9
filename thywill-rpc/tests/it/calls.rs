//! Successful calls: the original's cases, several parameters, the caller, correlation.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use thywill::RpcErrorCode;
use thywill::protocol::ServerFrame;
use thywill_testkit::WsClient;

use crate::fixture::{APP, Fixture};

/// Calls a function and returns `Ok(result)` or `Err((code, message))`.
pub(crate) async fn call(
    c: &mut WsClient,
    id: u64,
    name: &str,
    args: Value,
) -> anyhow::Result<Result<Value, (RpcErrorCode, String)>> {
    c.rpc(APP, id, name, args).await?;
    match c.recv().await? {
        ServerFrame::RpcOk { id: got, result, .. } if got == id => Ok(Ok(result)),
        ServerFrame::RpcErr {
            id: got,
            code,
            message,
            ..
        } if got == id => Ok(Err((code, message))),
        other => anyhow::bail!("unexpected frame {other:?}"),
    }
}

fn code<T>(r: Result<T, (RpcErrorCode, String)>) -> Option<RpcErrorCode> {
    r.err().map(|(code, _)| code)
}

#[tokio::test]
async fn the_originals_five_cases() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let mut c = f.client().await?;
    assert_eq!(
        call(&mut c, 1, "multiplicative.multiplyByTwo", json!([10])).await?,
        Ok(json!(20.0))
    );
    assert_eq!(
        call(&mut c, 2, "multiplicative.divideByTwo", json!([10])).await?,
        Ok(json!(5.0))
    );
    assert_eq!(
        call(&mut c, 3, "powers.square", json!([10])).await?,
        Ok(json!(100.0))
    );
    assert_eq!(
        call(&mut c, 4, "powers.squareRoot", json!([100])).await?,
        Ok(json!(10.0))
    );
    assert_eq!(
        code(call(&mut c, 5, "not a function", json!([])).await?),
        Some(RpcErrorCode::NoFunction)
    );
    Ok(())
}

#[tokio::test]
async fn several_parameters_bare_values_and_the_caller() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let mut c = f.client().await?;
    assert_eq!(
        call(&mut c, 1, "text.concat", json!(["ab", "c", 2])).await?,
        Ok(json!("abcabc"))
    );
    assert_eq!(call(&mut c, 2, "powers.square", json!(3)).await?, Ok(json!(9.0)));
    assert_eq!(call(&mut c, 3, "text.parse", json!(["-7"])).await?, Ok(json!(-7)));
    let me = c.connection.to_string();
    assert_eq!(call(&mut c, 4, "who.am_i", json!([])).await?, Ok(json!(me)));
    // NaN has no JSON form: answered as null.
    assert_eq!(
        call(&mut c, 5, "powers.squareRoot", json!([-1])).await?,
        Ok(Value::Null)
    );
    Ok(())
}

#[tokio::test]
async fn rpc_never_reaches_the_received_path() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let mut c = f.client().await?;
    for id in 0..5 {
        let _ = call(&mut c, id, "powers.square", json!([id])).await?;
    }
    let _ = call(&mut c, 9, "missing.function", json!([])).await?;
    assert_eq!(f.received.load(Ordering::SeqCst), 0);
    // An ordinary message does arrive, after the calls: the path works.
    c.send(APP, json!("hello")).await?;
    let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
    while f.received.load(Ordering::SeqCst) == 0 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the message never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(f.received.load(Ordering::SeqCst), 1);
    Ok(())
}

#[tokio::test]
async fn concurrent_calls_answered_out_of_order_are_correlated() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(f.client().await?);
    }
    let mut tasks = Vec::new();
    for (n, mut c) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            const CALLS: u64 = 40;
            // Earlier calls sleep longer, so replies come back roughly in reverse.
            for id in 1..=CALLS {
                let ms = (CALLS - id) * 5;
                c.rpc(APP, id, "sleep.echo", json!([ms, id * 1000 + n as u64]))
                    .await?;
            }
            let mut replies = HashMap::new();
            let mut order = Vec::new();
            while replies.len() < CALLS as usize {
                match c.recv().await? {
                    ServerFrame::RpcOk { id, result, .. } => {
                        order.push(id);
                        anyhow::ensure!(replies.insert(id, result).is_none(), "two replies for call {id}");
                    }
                    other => anyhow::bail!("unexpected frame {other:?}"),
                }
            }
            for id in 1..=CALLS {
                anyhow::ensure!(
                    replies.get(&id) == Some(&json!(id * 1000 + n as u64)),
                    "call {id} got a wrong reply"
                );
            }
            anyhow::ensure!(
                order.first() != Some(&1),
                "replies came back in sending order: {order:?}"
            );
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}
