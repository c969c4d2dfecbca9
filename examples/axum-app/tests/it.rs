//! The Axum App in-process, over real sockets: its own login issues the cookie its thywill
//! node accepts; a missing or forged cookie is refused with 401 before the upgrade; a notice
//! to a user reaches every connection of that user and no other.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use example_axum_app::{AxumApp, COOKIE, Tokens};
use serde_json::{Value, json};
use thywill::core::protocol::ServerFrame;
use thywill_testkit::{WsClient, WsError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);

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

/// One HTTP/1.1 exchange: the status, the headers' text and the body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<(u16, String, String)> {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(body.as_bytes()).await?;
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).await?;
        anyhow::Ok(String::from_utf8_lossy(&out).into_owned())
    };
    let text = tokio::time::timeout(WAIT, exchange)
        .await
        .context("HTTP exchange timed out")??;
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line in {head:?}"))?;
    Ok((status, head.to_owned(), body.to_owned()))
}

/// Signs in through the app's login form; returns the `Cookie` header value it set.
async fn login(addr: SocketAddr, user: &str) -> anyhow::Result<String> {
    let form = format!("user={user}&password={user}-password");
    let (status, head, _) = http(
        addr,
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        &form,
    )
    .await?;
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("location: /live/"), "{head}");
    let set = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .context("no Set-Cookie")?;
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax"), "{set}");
    let pair = set.split(';').next().context("empty Set-Cookie")?;
    assert!(pair.starts_with(&format!("{COOKIE}=v1.{user}.")), "{pair}");
    Ok(pair.to_owned())
}

fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}/live/ws")
}

/// The next application message's data.
async fn next_data(c: &mut WsClient) -> anyhow::Result<Value> {
    match c.recv_within(WAIT).await? {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_own_login_opens_the_live_connection_and_a_forged_cookie_does_not() -> anyhow::Result<()> {
    let (app, addr) = start().await?;

    // The app's own pages and API.
    let (status, _, body) = http(addr, "GET", "/", &[], "").await?;
    assert_eq!(status, 200);
    assert!(body.contains("id=\"login\""), "{body}");
    let (status, _, _) = http(
        addr,
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        "user=alice&password=wrong",
    )
    .await?;
    assert_eq!(status, 401, "a wrong password");
    let (status, _, body) = http(addr, "GET", "/api/me", &[], "").await?;
    assert_eq!(status, 401, "{body}");

    let cookie = login(addr, "alice").await?;
    let (status, _, body) = http(addr, "GET", "/api/me", &[("cookie", &cookie)], "").await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body)?,
        json!({"user": "alice", "name": "Alice"})
    );
    let (_, _, body) = http(addr, "GET", "/", &[("cookie", &cookie)], "").await?;
    assert!(body.contains("Signed in as Alice."), "{body}");

    // The live page is thywill's, under /live.
    let (status, _, body) = http(addr, "GET", "/live/", &[], "").await?;
    assert_eq!(status, 200);
    assert!(body.contains("Thywill: Axum App Application"), "{body}");

    // The cookie is the identity: the notices app greets the user.
    let mut c = WsClient::connect_with_cookie(&ws_url(addr), &cookie).await?;
    assert_eq!(
        next_data(&mut c).await?,
        json!({"kind": "hello", "user": "alice", "name": "Alice", "member": "alpha"})
    );
    assert_eq!(app.refusals(), 0);

    // Missing, forged (another user under alice's signature) and expired: 401, nothing opened.
    let forged = cookie.replacen("v1.alice.", "v1.bob.", 1);
    let expired = format!("{COOKIE}={}", app.tokens().issue("alice", 1));
    for (what, result) in [
        ("missing", WsClient::connect(&ws_url(addr)).await),
        (
            "forged",
            WsClient::connect_with_cookie(&ws_url(addr), &forged).await,
        ),
        (
            "expired",
            WsClient::connect_with_cookie(&ws_url(addr), &expired).await,
        ),
    ] {
        assert_eq!(refused_status(result)?, 401, "{what} cookie");
    }
    assert_eq!(app.refusals(), 3);
    assert_eq!(app.node().connection_count(), 1, "only alice's connection");
    let (status, _, _) = http(addr, "GET", "/api/me", &[("cookie", &forged)], "").await?;
    assert_eq!(status, 401, "the app's own API refuses the forged cookie too");

    // Signing out clears the cookie.
    let (status, head, _) = http(addr, "POST", "/logout", &[("cookie", &cookie)], "").await?;
    assert_eq!(status, 303);
    assert!(
        head.contains(&format!("set-cookie: {COOKIE}=; ")) && head.contains("Max-Age=0"),
        "{head}"
    );
    c.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_to_a_user_reaches_every_connection_of_that_user_only() -> anyhow::Result<()> {
    let (_app, addr) = start().await?;
    let alice = login(addr, "alice").await?;
    let bob = login(addr, "bob").await?;
    let mut tabs = Vec::new();
    for _ in 0..2 {
        let mut tab = WsClient::connect_with_cookie(&ws_url(addr), &alice).await?;
        assert_eq!(next_data(&mut tab).await?["kind"], "hello");
        tabs.push(tab);
    }
    let mut bobs = WsClient::connect_with_cookie(&ws_url(addr), &bob).await?;
    assert_eq!(next_data(&mut bobs).await?["user"], "bob");
    let (status, _, body) = http(addr, "GET", "/api/online", &[("cookie", &bob)], "").await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body)?,
        json!({"users": ["alice", "bob"]})
    );

    // Over the socket: bob sends alice a notice.
    bobs.send("notices", json!({"to": "alice", "text": "hello alice"}))
        .await?;
    let expected = json!({"kind": "notice", "from": "bob", "fromName": "Bob", "text": "hello alice"});
    for tab in &mut tabs {
        assert_eq!(next_data(tab).await?, expected);
    }

    // Through the app's own API: alice sends bob one. It is the next thing bob hears: the
    // notice to alice did not reach him.
    let (status, _, body) = http(
        addr,
        "POST",
        "/api/notices",
        &[("cookie", &alice), ("content-type", "application/json")],
        r#"{"to":"bob","text":"from the API"}"#,
    )
    .await?;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        next_data(&mut bobs).await?,
        json!({"kind": "notice", "from": "alice", "fromName": "Alice", "text": "from the API"})
    );
    let (status, _, _) = http(
        addr,
        "POST",
        "/api/notices",
        &[("content-type", "application/json")],
        r#"{"to":"bob","text":"anonymous"}"#,
    )
    .await?;
    assert_eq!(status, 401, "the API needs a sign-in");

    // Nor did bob's reach alice's tabs: the next thing they hear is the next notice to alice.
    bobs.send("notices", json!({"to": "alice", "text": "second"}))
        .await?;
    for tab in &mut tabs {
        assert_eq!(next_data(tab).await?["text"], "second");
    }
    Ok(())
}
