//! The Axum App in headless Chromium: a user signs in through the app's own login form and
//! the live page (thywill, mounted under `/live`) greets them and shows what is sent to them
//! in every tab; a tampered cookie is refused before any socket opens, and the page says so.

use std::net::SocketAddr;

use anyhow::Context as _;
use example_axum_app::{APP_ID, AxumApp, COOKIE, Tokens};
use serde_json::json;
use thywill_testkit::browser::Browser;
use thywill_testkit::served;

/// The app on a loopback port, serving until the test ends.
async fn start() -> anyhow::Result<(AxumApp, SocketAddr)> {
    let opts = example_support::Options::parse(["--port", "0"].map(String::from), 0)?;
    let app = example_axum_app::build(&opts, Tokens::random()).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let serving = app.clone();
    tokio::spawn(async move {
        if let Err(e) = serving.serve(listener, std::future::pending()).await {
            eprintln!("serve failed: {e:#}");
        }
    });
    Ok((app, addr))
}

/// Signs in as `user` through the app's home page and login form; the browser lands on the
/// live page, connected and greeted.
async fn sign_in(b: &Browser, addr: SocketAddr, user: &str, name: &str) -> anyhow::Result<()> {
    b.goto(&format!("http://{addr}/")).await?;
    b.type_into("#login input[name=user]", user).await?;
    b.type_into("#login input[name=password]", &format!("{user}-password"))
        .await?;
    b.click("#login button").await?;
    connected_as(b, name).await
}

/// Waits until the current tab's live page is connected and greets `name`.
async fn connected_as(b: &Browser, name: &str) -> anyhow::Result<()> {
    b.wait_text("#status", "Connected").await?;
    b.wait_text("#who", &format!("Hello, {name}!"))
        .await
        .context("the page does not greet the signed-in user")?;
    b.wait_js("return !document.querySelector('#sender textarea').disabled && document.getElementById('refused').hidden;")
        .await
}

/// Waits until the newest notice of the current tab is `text` from `from`.
async fn newest_notice(b: &Browser, from: &str, text: &str) -> anyhow::Result<()> {
    b.wait_js(&format!(
        "const n = document.querySelector('#notices .notice-message');
         return n !== null && n.querySelector('.from').textContent === {} && n.querySelector('.text').textContent === {};",
        json!(from),
        json!(text)
    ))
    .await
    .with_context(|| format!("no notice {text:?} from {from}"))
}

#[tokio::test]
async fn a_user_signed_in_by_the_app_hears_what_is_sent_to_them_in_every_tab() -> anyhow::Result<()> {
    served::require_browser()?;
    let (app, addr) = start().await?;
    let b = served::start_browser().await?;
    sign_in(&b, addr, "alice", "Alice").await?;
    assert_eq!(b.client().title().await?, "Thywill: Axum App Application");
    let first = b.client().window().await?;

    // A second tab of the same browser: the same cookie, the same user.
    let second = b.client().new_window(true).await?.handle;
    b.client().switch_to_window(second.clone()).await?;
    b.goto(&format!("http://{addr}/live/")).await?;
    connected_as(&b, "Alice").await?;
    assert_eq!(app.node().connection_count(), 2);

    // From the server, addressed to the user: both tabs show it.
    let ctx = app.node().context(APP_ID).context("no notices app")?;
    ctx.send_to_user(
        "alice",
        json!({"kind": "notice", "from": "system", "fromName": "System", "text": "for alice"}),
    )
    .await?;
    newest_notice(&b, "System", "for alice").await?;
    b.client().switch_to_window(first.clone()).await?;
    newest_notice(&b, "System", "for alice").await?;

    // From the page, over the socket, to the user's own tabs (the "to" box holds her id).
    b.type_into("#sender textarea", "note to self").await?;
    b.click("#sender button").await?;
    newest_notice(&b, "Alice", "note to self").await?;
    b.client().switch_to_window(second).await?;
    newest_notice(&b, "Alice", "note to self").await?;

    b.screenshot(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("axum-app.png"))
        .await?;
    b.close().await?;
    Ok(())
}

/// `thywill_connections_opened_total` of the app's node.
fn opened(app: &AxumApp) -> anyhow::Result<u64> {
    app.node()
        .metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("thywill_connections_opened_total "))
        .and_then(|v| v.trim().parse().ok())
        .context("no thywill_connections_opened_total")
}

#[tokio::test]
async fn a_tampered_cookie_is_refused_before_the_socket_opens() -> anyhow::Result<()> {
    served::require_browser()?;
    let (app, addr) = start().await?;
    let b = served::start_browser().await?;
    sign_in(&b, addr, "alice", "Alice").await?;
    assert_eq!(opened(&app)?, 1);

    // Claim to be bob under alice's signature (the cookie is HttpOnly: WebDriver rewrites it).
    let mut cookie = b.client().get_named_cookie(COOKIE).await?;
    let forged = cookie.value().replacen("v1.alice.", "v1.bob.", 1);
    assert_ne!(forged, cookie.value());
    cookie.set_value(forged);
    b.client().delete_cookie(COOKIE).await?;
    b.client().add_cookie(cookie).await?;

    let refusals = app.refusals();
    b.goto(&format!("http://{addr}/live/")).await?;
    b.wait_js(
        "return !document.getElementById('refused').hidden
             && document.getElementById('status').textContent === 'Disconnected'
             && document.getElementById('who').textContent === ''
             && Thywill.connectionId === null && !Thywill.isConnected;",
    )
    .await
    .context("the page does not show the refusal")?;
    assert!(app.refusals() > refusals, "the hook did not refuse");
    // The socket never opened: no connection beyond the first page's.
    assert_eq!(opened(&app)?, 1);
    b.wait_js("return document.querySelector('#sender textarea').disabled;")
        .await?;

    // Without the cookie at all: refused the same way. Signing in again repairs it.
    b.client().delete_cookie(COOKIE).await?;
    b.goto(&format!("http://{addr}/live/")).await?;
    b.wait_js("return !document.getElementById('refused').hidden && !Thywill.isConnected;")
        .await?;
    assert_eq!(opened(&app)?, 1);
    sign_in(&b, addr, "bob", "Bob").await?;
    assert_eq!(opened(&app)?, 2);
    b.close().await?;
    Ok(())
}
