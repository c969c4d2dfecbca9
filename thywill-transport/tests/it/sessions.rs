//! Sessions: issued with the page, shared with ordinary routes, required by the handshake.

use std::sync::Arc;

use thywill_core::MemorySessionStore;
use thywill_core::SessionId;
use thywill_core::protocol::{ServerFrame, close};
use thywill_testkit::WsClient;
use thywill_transport::{SessionConfig, Sessions, TransportConfig};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use warp::Filter;

use crate::support::{Fixture, http_get};

async fn fixture() -> anyhow::Result<(Fixture, SessionConfig)> {
    let config = SessionConfig::new([42u8; 32])?;
    let sessions = Sessions::new(config.clone(), Arc::new(MemorySessionStore::new()));
    let fx = Fixture::start_with(TransportConfig::default().with_base_path("/t")?, Some(sessions)).await?;
    Ok((fx, config))
}

/// Loads the page and returns the `name=value` of the session cookie it sets.
async fn page_cookie(fx: &Fixture) -> anyhow::Result<String> {
    let page = http_get(fx.addr, "/t/", "").await?;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let line = page
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .ok_or_else(|| anyhow::anyhow!("no set-cookie in {page}"))?;
    assert!(line.contains("HttpOnly") && line.contains("Path=/t"), "{line}");
    let value = line.split_once(':').map(|(_, v)| v.trim()).unwrap_or_default();
    Ok(value.split(';').next().unwrap_or_default().to_owned())
}

async fn connect_with_cookie(fx: &Fixture, cookie: &str) -> anyhow::Result<(u16, Option<SessionId>)> {
    let mut req = fx.ws_url().into_client_request()?;
    req.headers_mut().insert("cookie", cookie.parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    use futures_util::StreamExt;
    let first = tokio::time::timeout(thywill_testkit::TIMEOUT, ws.next()).await?;
    match first {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
            match ServerFrame::decode(t.as_str())? {
                ServerFrame::Welcome { session, .. } => Ok((0, Some(session))),
                other => anyhow::bail!("unexpected {other:?}"),
            }
        }
        Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f)))) => Ok((u16::from(f.code), None)),
        other => anyhow::bail!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn the_page_issues_a_session_that_every_tab_and_route_shares() -> anyhow::Result<()> {
    let (fx, _) = fixture().await?;
    let cookie = page_cookie(&fx).await?;
    let (_, a) = connect_with_cookie(&fx, &cookie).await?;
    let (_, b) = connect_with_cookie(&fx, &cookie).await?;
    assert!(a.is_some());
    assert_eq!(a, b, "two tabs of one browser share the session");
    // A page load with a valid cookie keeps the session (no new cookie).
    let again = http_get(fx.addr, "/t/", &format!("Cookie: {cookie}\r\n")).await?;
    assert!(!again.to_ascii_lowercase().contains("set-cookie"), "{again}");
    // Ordinary warp routes see the same session.
    let route = warp::path("whoami")
        .and(fx.edge.session())
        .map(|s: Option<SessionId>| s.map(|s| s.to_string()).unwrap_or_default());
    let seen = warp::test::request()
        .path("/whoami")
        .header("cookie", &cookie)
        .reply(&route)
        .await;
    assert_eq!(
        Some(String::from_utf8_lossy(seen.body()).into_owned()),
        a.map(|s| s.to_string())
    );
    Ok(())
}

#[tokio::test]
async fn missing_forged_and_unknown_sessions_are_refused_with_4401() -> anyhow::Result<()> {
    let (fx, config) = fixture().await?;
    match WsClient::connect(&fx.ws_url()).await {
        Err(thywill_testkit::WsError::Closed(Some((code, reason)))) => {
            assert_eq!(code, close::SESSION_REFUSED);
            assert_eq!(reason, "no session cookie");
        }
        other => panic!("{other:?}"),
    }
    let cookie = page_cookie(&fx).await?;
    let forged = cookie.replace('a', "b");
    let forged = if forged == cookie {
        format!("{cookie}0")
    } else {
        forged
    };
    assert_eq!(
        connect_with_cookie(&fx, &forged).await?,
        (close::SESSION_REFUSED, None)
    );
    let unknown = format!("thywill.sid={}", config.sign(&SessionId::from("never-stored")));
    assert_eq!(
        connect_with_cookie(&fx, &unknown).await?,
        (close::SESSION_REFUSED, None)
    );
    Ok(())
}
