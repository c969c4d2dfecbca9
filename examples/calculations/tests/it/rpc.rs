//! The original's test: the four functions and an unknown name, over a real WebSocket.

use serde_json::{Value, json};
use thywill::RpcErrorCode;
use thywill::protocol::ServerFrame;
use thywill_testkit::WsClient;

use crate::fixture::Fixture;

async fn call(
    c: &mut WsClient,
    id: u64,
    name: &str,
    args: Value,
) -> anyhow::Result<Result<Value, RpcErrorCode>> {
    c.rpc(example_calculations::APP_ID, id, name, args).await?;
    match c.recv().await? {
        ServerFrame::RpcOk { id: got, result, .. } if got == id => Ok(Ok(result)),
        ServerFrame::RpcErr { id: got, code, .. } if got == id => Ok(Err(code)),
        other => anyhow::bail!("unexpected frame {other:?}"),
    }
}

#[tokio::test]
async fn the_originals_five_cases() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let mut c = WsClient::connect(&f.ws_url()).await?;
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
        call(&mut c, 5, "not a function", json!([])).await?,
        Err(RpcErrorCode::NoFunction)
    );
    Ok(())
}

#[tokio::test]
async fn invalid_calculations_answer_null_and_bad_input_bad_arguments() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let mut c = WsClient::connect(&f.ws_url()).await?;
    assert_eq!(
        call(&mut c, 1, "powers.squareRoot", json!([-4])).await?,
        Ok(Value::Null)
    );
    assert_eq!(
        call(&mut c, 2, "powers.square", json!([1e200])).await?,
        Ok(Value::Null)
    );
    assert_eq!(
        call(&mut c, 3, "powers.square", json!(["x"])).await?,
        Err(RpcErrorCode::BadArguments)
    );
    assert_eq!(
        call(&mut c, 4, "multiplicative.multiplyByTwo", json!([2.5])).await?,
        Ok(json!(5.0))
    );
    Ok(())
}
