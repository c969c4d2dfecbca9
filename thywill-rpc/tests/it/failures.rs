//! Calls that fail: each with its stable code, and none of them hurting the connection.

use serde_json::json;
use thywill::RpcErrorCode;
use thywill::protocol::{ErrorCode, ServerFrame};

use crate::calls::call;
use crate::fixture::Fixture;

#[tokio::test]
async fn malformed_requests_are_refused_and_the_connection_lives_on() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let mut c = f.client().await?;
    for bad in [
        r#"{"t":"rpc","app":"calc","id":"x","name":"powers.square","args":[1]}"#,
        r#"{"t":"rpc","app":"calc","name":"powers.square"}"#,
        r#"{"t":"rpc","app":"calc","id":1,"name":5}"#,
        r#"{"t":"rpc","app":"calc","id":-1,"name":"powers.square"}"#,
        r#"{"t":"rpc","id":1,"name":"powers.square"}"#,
        r#"{"t":"rpc","app":"calc","id":1,"name":"powers.square","args":[1],"extra":true}"#,
        "null",
    ] {
        c.send_text(bad).await?;
        match c.recv().await? {
            ServerFrame::Error {
                code: ErrorCode::BadFrame,
                ..
            } => {}
            other => anyhow::bail!("{bad}: unexpected {other:?}"),
        }
    }
    // Missing data, prototype names, unknown applications: answered, never crashing.
    assert_eq!(
        call(&mut c, 1, "constructor.constructor", json!(null))
            .await?
            .err()
            .map(|e| e.0),
        Some(RpcErrorCode::NoFunction)
    );
    assert_eq!(
        call(&mut c, 2, "toString", json!({})).await?.err().map(|e| e.0),
        Some(RpcErrorCode::NoFunction)
    );
    c.rpc("nowhere", 3, "powers.square", json!([1])).await?;
    assert!(matches!(
        c.recv().await?,
        ServerFrame::RpcErr {
            id: 3,
            code: RpcErrorCode::NoFunction,
            ..
        }
    ));
    c.rpc("plain", 4, "powers.square", json!([1])).await?;
    assert!(matches!(
        c.recv().await?,
        ServerFrame::RpcErr {
            id: 4,
            code: RpcErrorCode::NoFunction,
            ..
        }
    ));
    assert_eq!(
        call(&mut c, 5, "powers.square", json!([4])).await?,
        Ok(json!(16.0))
    );
    Ok(())
}

#[tokio::test]
async fn wrong_argument_types_answer_bad_arguments() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let mut c = f.client().await?;
    let cases = [
        ("powers.square", json!(["ten"]), "invalid type: string"),
        ("powers.square", json!([1, 2]), "invalid length 2"),
        ("powers.square", json!([]), "invalid length 0"),
        ("powers.square", json!({"x": 1}), "invalid type: map"),
        ("multiplicative.divideByTwo", json!(null), "invalid type: null"),
        (
            "text.concat",
            json!(["a", "b", 300]),
            "invalid value: integer `300`",
        ),
        ("text.concat", json!(["a", "b"]), "invalid length 2"),
    ];
    for (id, (name, args, needle)) in cases.into_iter().enumerate() {
        let got = call(&mut c, id as u64, name, args.clone()).await?;
        match got {
            Err((RpcErrorCode::BadArguments, message)) if message.contains(needle) => {}
            other => anyhow::bail!("{name}({args}): expected ba with {needle:?}, got {other:?}"),
        }
    }
    assert_eq!(
        call(&mut c, 99, "powers.square", json!([5])).await?,
        Ok(json!(25.0))
    );
    Ok(())
}

#[tokio::test]
async fn the_permission_hook_refuses_per_caller_and_per_name() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let mut refused = f.client().await?;
    let mut allowed = f.client().await?;
    f.block(&refused);
    assert_eq!(
        call(&mut refused, 1, "powers.square", json!([2]))
            .await?
            .err()
            .map(|e| e.0),
        Some(RpcErrorCode::NoPermission)
    );
    // Nothing is revealed about which names exist.
    assert_eq!(
        call(&mut refused, 2, "no.such", json!([2]))
            .await?
            .err()
            .map(|e| e.0),
        Some(RpcErrorCode::NoPermission)
    );
    assert_eq!(
        call(&mut allowed, 1, "powers.square", json!([2])).await?,
        Ok(json!(4.0))
    );
    assert_eq!(
        call(&mut allowed, 2, "admin.reset", json!([]))
            .await?
            .err()
            .map(|e| e.0),
        Some(RpcErrorCode::NoPermission)
    );
    Ok(())
}

#[tokio::test]
async fn failing_and_panicking_functions_answer_handler_error() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let mut c = f.client().await?;
    assert_eq!(
        call(&mut c, 1, "text.parse", json!(["twelve"])).await?,
        Err((
            RpcErrorCode::HandlerError,
            "invalid digit found in string".to_owned()
        ))
    );
    assert_eq!(
        call(&mut c, 2, "fail.panic", json!([1]))
            .await?
            .err()
            .map(|e| e.0),
        Some(RpcErrorCode::HandlerError)
    );
    // The connection and the node are unharmed.
    assert_eq!(
        call(&mut c, 3, "powers.square", json!([3])).await?,
        Ok(json!(9.0))
    );
    let mut other = f.client().await?;
    assert_eq!(
        call(&mut other, 1, "powers.square", json!([6])).await?,
        Ok(json!(36.0))
    );
    Ok(())
}

#[tokio::test]
async fn a_slow_function_hits_its_timeout() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let mut c = f.client().await?;
    let started = tokio::time::Instant::now();
    let got = call(&mut c, 1, "slow.limited", json!([])).await?;
    assert_eq!(
        got.as_ref().err().map(|e| e.0),
        Some(RpcErrorCode::Timeout),
        "{got:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        call(&mut c, 2, "powers.square", json!([3])).await?,
        Ok(json!(9.0))
    );
    Ok(())
}
