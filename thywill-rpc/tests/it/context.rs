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

/// The identity the application's authentication hook gave is the caller's, in the
/// permission hook and in functions.
#[tokio::test]
async fn the_permission_hook_sees_the_callers_identity() -> anyhow::Result<()> {
    use thywill::{Identity, Refusal};
    let registry = Registry::builder()
        .async_function_with_context("whoami", |_ctx: AppContext, caller: Client, (): ()| async move {
            Ok::<_, CoreError>(caller.identity().map(|i| i.user.clone()))
        })
        .async_function_with_context(
            "admin.reset",
            |_ctx: AppContext, _caller: Client, (): ()| async move { Ok::<_, CoreError>(true) },
        )
        .permission(|caller: &Client, name: &str| {
            !name.starts_with("admin.")
                || caller
                    .identity()
                    .is_some_and(|i| i.data["role"] == json!("admin"))
        })
        .build()?;
    let node = Thywill::builder()
        .base_path("/t")?
        .authenticate(|parts| {
            let token = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            async move {
                match token.as_deref() {
                    Some("Bearer root") => {
                        Ok(Some(Identity::new("root").with_data(json!({"role": "admin"}))))
                    }
                    Some("Bearer u1") => Ok(Some(Identity::new("u1"))),
                    _ => Err(Refusal::unauthorized("who are you?")),
                }
            }
        })
        .application(APP, RpcOnly(registry))
        .build()
        .await?;
    let (addr, serving) = node.bind(([127, 0, 0, 1], 0).into()).await?;
    let serving = tokio::spawn(serving);
    let url = format!("ws://{addr}/t/ws");
    let mut root = WsClient::connect_with_headers(&url, &[("authorization", "Bearer root")]).await?;
    let mut u1 = WsClient::connect_with_headers(&url, &[("authorization", "Bearer u1")]).await?;
    assert_eq!(call(&mut root, 1, "whoami", json!([])).await?, Ok(json!("root")));
    assert_eq!(call(&mut u1, 2, "whoami", json!([])).await?, Ok(json!("u1")));
    assert_eq!(
        call(&mut root, 3, "admin.reset", json!([])).await?,
        Ok(json!(true))
    );
    let refused = call(&mut u1, 4, "admin.reset", json!([])).await?;
    assert_eq!(refused.map_err(|(code, _)| code), Err(RpcErrorCode::NoPermission));
    node.shutdown();
    serving.abort();
    Ok(())
}
