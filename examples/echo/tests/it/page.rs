//! The page, its assets and the client library are served with the right types.

use crate::{Served, get};

#[tokio::test]
async fn client_library_is_served_as_javascript() -> anyhow::Result<()> {
    let served = Served::start().await?;
    let r = get(served.addr, "/echo/thywill/thywill.js").await?;
    assert_eq!(r.status, 200);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/javascript"), "content type {ct:?}");
    assert!(r.body.contains("Thywill"), "not the client library");

    let r = get(served.addr, "/echo/thywill/thywill.d.ts").await?;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("declare namespace Thywill"));
    served.stop().await
}

#[tokio::test]
async fn page_and_assets_are_served() -> anyhow::Result<()> {
    let served = Served::start().await?;
    let page = get(served.addr, "/echo/").await?;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap_or_default()
            .starts_with("text/html")
    );
    for needle in [
        "<title>Thywill: Echo Application</title>",
        r#"id="echo-wrapper""#,
        r#"id="sender""#,
        r#"id="echo-output""#,
        r#"id="instructions""#,
        r#"id="status""#,
        // One script bundle (client library and echo.js) and one style bundle.
        r#"<script src="/echo/js/"#,
        r#".min.js" data-base="/echo" defer></script>"#,
        r#"<link rel="stylesheet" href="/echo/css/"#,
    ] {
        assert!(page.body.contains(needle), "page lacks {needle}");
    }
    assert_eq!(
        page.body.matches("<script").count(),
        1,
        "one script bundle, no inline scripts"
    );

    let js = get(served.addr, "/echo/js/echo.js").await?;
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type")
            .unwrap_or_default()
            .starts_with("text/javascript")
    );
    let css = get(served.addr, "/echo/css/echo.css").await?;
    assert_eq!(css.status, 200);
    assert!(
        css.header("content-type")
            .unwrap_or_default()
            .starts_with("text/css")
    );
    served.stop().await
}

#[tokio::test]
async fn echoes_over_the_protocol() -> anyhow::Result<()> {
    let served = Served::start().await?;
    let url = format!("ws://{}/echo/ws", served.addr);
    let mut c = thywill_testkit::WsClient::connect(&url).await?;
    c.send("echo", "test".into()).await?;
    let reply = c.recv().await?;
    let thywill::protocol::ServerFrame::Msg { app, data, meta, .. } = reply else {
        panic!("expected the echo, got {reply:?}");
    };
    assert_eq!(app.as_str(), "echo");
    assert_eq!(data, "test");
    assert!(meta.is_empty(), "metadata {meta:?}");
    c.close().await;
    served.stop().await
}
