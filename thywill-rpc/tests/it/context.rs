//! Functions given the application's context: the caller's session data, as in hooks.

use anyhow::Context;
use serde_json::json;
use thywill::rpc::{Registry, RpcOnly};
use thywill::{AppContext, Client, CoreError, RpcErrorCode, SessionConfig, Thywill};
use thywill_testkit::WsClient;

use crate::calls::call;
use crate::fixture::APP;

#[tokio::test]
async fn a_function_reads_and_writes_the_callers_session_data() -> anyhow::Result<()> {
    let registry = Registry::builder()
        .async_function_with_context(
            "visits.count",
            |ctx: AppContext, caller: Client, (): ()| async move {
                let n = ctx.session_data::<u64>(&caller.session).await?.unwrap_or(0) + 1;
                ctx.set_session_data(&caller.session, &n).await?;
                Ok::<_, CoreError>(n)
            },
        )
        .build()?;
    let node = Thywill::builder()
        .base_path("/t")?
        .sessions(SessionConfig::random())
        .application(APP, RpcOnly(registry.clone()))
        .build()
        .await?;
    let (addr, serving) = node.bind(([127, 0, 0, 1], 0).into()).await?;
    let serving = tokio::spawn(serving);
    let sessions = node.edge().sessions().context("sessions are on")?;
    let (ann, bob) = (sessions.create().await?, sessions.create().await?);
    let url = format!("ws://{addr}/t/ws");
    let cookie = |id| format!("thywill.sid={}", sessions.config().sign(id));

    let mut a = WsClient::connect_with_cookie(&url, &cookie(&ann)).await?;
    assert_eq!(call(&mut a, 1, "visits.count", json!([])).await?, Ok(json!(1)));
    assert_eq!(call(&mut a, 2, "visits.count", json!([])).await?, Ok(json!(2)));
    // Another tab of the session continues the count; another session has its own.
    let mut a2 = WsClient::connect_with_cookie(&url, &cookie(&ann)).await?;
    assert_eq!(call(&mut a2, 3, "visits.count", json!([])).await?, Ok(json!(3)));
    let mut b = WsClient::connect_with_cookie(&url, &cookie(&bob)).await?;
    assert_eq!(call(&mut b, 4, "visits.count", json!([])).await?, Ok(json!(1)));
    // Stored as the application's data, which hooks read the same way.
    let ctx = node.context(APP).context("the application")?;
    assert_eq!(ctx.session_data::<u64>(&ann).await?, Some(3));

    // Without a context (the registry called directly), the function answers `he`.
    let caller = Client {
        connection: "c".into(),
        session: ann.clone(),
        member: node.member().clone(),
        identity: None,
    };
    let e = registry.call(&caller, "visits.count", json!([])).await.err();
    assert_eq!(e.map(|e| e.code), Some(RpcErrorCode::HandlerError));
    assert_eq!(ctx.session_data::<u64>(&ann).await?, Some(3));
    node.shutdown();
    serving.abort();
    Ok(())
}
