//! The application's authentication hook at the handshake: identities reach every hook,
//! refusals are answered before the upgrade and register nothing.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use thywill_core::protocol::ServerFrame;
use thywill_core::{
    AppContext, Application, ApplicationId, Client, DisconnectReason, DynApplication, Identity, Message,
    Refusal,
};
use thywill_testkit::{WsClient, WsError};
use thywill_transport::{Authenticator, RequestParts, TransportConfig};
use tokio::sync::mpsc;

use crate::support::Fixture;

/// Tells who each connection is: its identity in `connection` (sent to the client),
/// `received` (echoed back) and `disconnection` (reported to the test).
struct WhoAmI {
    gone: mpsc::Sender<Option<Identity>>,
}

fn user(client: &Client) -> Value {
    client
        .identity()
        .map_or(Value::Null, |i| json!({"user": i.user, "data": i.data}))
}

impl Application for WhoAmI {
    async fn connection(&self, ctx: &AppContext, client: &Client) {
        let _ = ctx
            .send_to_connection(
                &client.connection,
                json!({"hook": "connection", "who": user(client)}),
            )
            .await;
    }

    async fn received(&self, ctx: &AppContext, client: &Client, _message: Message) {
        let _ = ctx
            .send_to_connection(
                &client.connection,
                json!({"hook": "received", "who": user(client)}),
            )
            .await;
    }

    async fn disconnection(&self, _ctx: &AppContext, client: &Client, _reason: DisconnectReason) {
        let _ = self.gone.try_send(client.identity().cloned());
    }
}

/// `Authorization: Bearer good` (or `?token=good` in the query) is user `u1`; `Bearer anon`
/// is let in without identity; `Bearer banned` is refused with 403; anything else, or
/// nothing, with 401.
fn bearer() -> Authenticator {
    Authenticator::new(|parts: &RequestParts| {
        let header = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let query = parts
            .uri
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")))
            .map(str::to_owned);
        async move {
            match header.or(query).as_deref() {
                Some("good") => Ok(Some(Identity::new("u1").with_data(json!({"role": "admin"})))),
                Some("anon") => Ok(None),
                Some("banned") => Err(Refusal::forbidden("banned")),
                Some(_) => Err(Refusal::unauthorized("bad token")),
                None => Err(Refusal::unauthorized("no token")),
            }
        }
    })
}

async fn node(config: TransportConfig) -> anyhow::Result<(Fixture, mpsc::Receiver<Option<Identity>>)> {
    let (gone, gone_rx) = mpsc::channel(8);
    let apps: Vec<(ApplicationId, Arc<dyn DynApplication>)> = vec![("who".into(), Arc::new(WhoAmI { gone }))];
    let fx = Fixture::start_apps(config.with_base_path("/t")?, None, apps).await?;
    Ok((fx, gone_rx))
}

async fn next_data(c: &mut WsClient) -> anyhow::Result<Value> {
    match c.recv().await? {
        ServerFrame::Msg { data, .. } => Ok(data),
        other => anyhow::bail!("expected a message, got {other:?}"),
    }
}

/// The HTTP status a refused handshake was answered with.
fn refused_status(result: Result<WsClient, WsError>) -> anyhow::Result<u16> {
    let err = match result {
        Ok(_) => anyhow::bail!("the handshake was accepted"),
        Err(WsError::Other(e)) => e,
        Err(e) => anyhow::bail!("unexpected error {e}"),
    };
    match err.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
        Some(tokio_tungstenite::tungstenite::Error::Http(response)) => Ok(response.status().as_u16()),
        _ => anyhow::bail!("not an HTTP refusal: {err:#}"),
    }
}

#[tokio::test]
async fn a_good_token_is_the_identity_in_every_hook() -> anyhow::Result<()> {
    let (fx, mut gone) = node(TransportConfig::default().with_authenticator(bearer())).await?;
    let mut c = WsClient::connect_with_headers(&fx.ws_url(), &[("authorization", "Bearer good")]).await?;
    let who = json!({"user": "u1", "data": {"role": "admin"}});
    assert_eq!(
        next_data(&mut c).await?,
        json!({"hook": "connection", "who": who})
    );
    c.send("who", json!("hi")).await?;
    assert_eq!(next_data(&mut c).await?, json!({"hook": "received", "who": who}));
    assert_eq!(fx.edge.connection_count(), 1);
    c.close().await;
    let left = tokio::time::timeout(thywill_testkit::TIMEOUT, gone.recv()).await?;
    assert_eq!(
        left,
        Some(Some(Identity::new("u1").with_data(json!({"role": "admin"}))))
    );
    Ok(())
}

#[tokio::test]
async fn the_hook_sees_the_query() -> anyhow::Result<()> {
    let (fx, _gone) = node(TransportConfig::default().with_authenticator(bearer())).await?;
    let mut c = WsClient::connect(&format!("{}?token=good", fx.ws_url())).await?;
    assert_eq!(next_data(&mut c).await?["who"]["user"], json!("u1"));
    Ok(())
}

#[tokio::test]
async fn forged_and_missing_tokens_are_refused_with_401_before_the_upgrade() -> anyhow::Result<()> {
    let (fx, _gone) = node(TransportConfig::default().with_authenticator(bearer())).await?;
    let forged = WsClient::connect_with_headers(&fx.ws_url(), &[("authorization", "Bearer forged")]).await;
    assert_eq!(refused_status(forged)?, 401);
    let missing = WsClient::connect(&fx.ws_url()).await;
    assert_eq!(refused_status(missing)?, 401);
    let banned = WsClient::connect_with_headers(&fx.ws_url(), &[("authorization", "Bearer banned")]).await;
    assert_eq!(refused_status(banned)?, 403);
    // Nothing was registered, and no socket was counted as a connection.
    assert_eq!(fx.edge.connection_count(), 0);
    // A good token still gets in afterwards.
    let mut c = WsClient::connect_with_headers(&fx.ws_url(), &[("authorization", "Bearer good")]).await?;
    assert_eq!(next_data(&mut c).await?["who"]["user"], json!("u1"));
    assert_eq!(fx.edge.connection_count(), 1);
    Ok(())
}

#[tokio::test]
async fn a_hook_may_let_a_client_in_without_identity() -> anyhow::Result<()> {
    let (fx, _gone) = node(TransportConfig::default().with_authenticator(bearer())).await?;
    let mut c = WsClient::connect_with_headers(&fx.ws_url(), &[("authorization", "Bearer anon")]).await?;
    assert_eq!(
        next_data(&mut c).await?,
        json!({"hook": "connection", "who": null})
    );
    // Without a hook, every client is anonymous.
    let (plain, _gone) = node(TransportConfig::default()).await?;
    let mut c = WsClient::connect(&plain.ws_url()).await?;
    assert_eq!(
        next_data(&mut c).await?,
        json!({"hook": "connection", "who": null})
    );
    Ok(())
}

#[tokio::test]
async fn a_hook_slower_than_the_handshake_timeout_refuses_with_503() -> anyhow::Result<()> {
    let stuck = Authenticator::new(|_parts: &RequestParts| std::future::pending());
    let config = TransportConfig::default()
        .with_handshake_timeout(Duration::from_millis(200))?
        .with_authenticator(stuck);
    let (fx, _gone) = node(config).await?;
    assert_eq!(refused_status(WsClient::connect(&fx.ws_url()).await)?, 503);
    assert_eq!(fx.edge.connection_count(), 0);
    Ok(())
}

/// Served by warp's own server (warp upgrades the socket), the hook runs the same way.
#[tokio::test]
async fn the_hook_runs_behind_warps_own_server() -> anyhow::Result<()> {
    let (fx, _gone) = node(TransportConfig::default().with_authenticator(bearer())).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(warp::serve(fx.edge.routes()).incoming(listener).run());
    let url = format!("ws://{addr}/t/ws");
    assert_eq!(refused_status(WsClient::connect(&url).await)?, 401);
    assert_eq!(fx.edge.connection_count(), 0);
    let mut c = WsClient::connect_with_headers(&url, &[("authorization", "Bearer good")]).await?;
    assert_eq!(next_data(&mut c).await?["who"]["user"], json!("u1"));
    Ok(())
}

/// With `session_from_identity`, every tab of a user is one session `user:<id>`: sending to
/// it reaches them all; another user, or an anonymous client, has a session of its own.
#[tokio::test]
async fn the_identity_can_be_the_session() -> anyhow::Result<()> {
    let config = TransportConfig::default()
        .with_authenticator(bearer())
        .with_session_from_identity(true);
    let (fx, _gone) = node(config).await?;
    let good = [("authorization", "Bearer good")];
    let mut tab1 = WsClient::connect_with_headers(&fx.ws_url(), &good).await?;
    let mut tab2 = WsClient::connect_with_headers(&fx.ws_url(), &good).await?;
    let mut anon = WsClient::connect_with_headers(&fx.ws_url(), &[("authorization", "Bearer anon")]).await?;
    for c in [&mut tab1, &mut tab2, &mut anon] {
        next_data(c).await?; // the `connection` hook's message
    }
    let session = |c: &WsClient| match &c.welcome {
        ServerFrame::Welcome { session, .. } => Some(session.clone()),
        _ => None,
    };
    assert_eq!(session(&tab1), Some("user:u1".into()));
    assert_eq!(session(&tab2), Some("user:u1".into()));
    assert_ne!(session(&anon), Some("user:u1".into()));
    let ctx = fx
        .node
        .context(&"who".into())
        .ok_or_else(|| anyhow::anyhow!("no app"))?;
    ctx.send_to_session(&"user:u1".into(), json!("to every tab"))
        .await?;
    assert_eq!(next_data(&mut tab1).await?, json!("to every tab"));
    assert_eq!(next_data(&mut tab2).await?, json!("to every tab"));
    assert!(anon.recv_within(Duration::from_millis(100)).await.is_err());
    Ok(())
}
