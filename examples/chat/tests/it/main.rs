//! Protocol-level tests of the Chat example on one member (sessions, channels and the waiting
//! pool in memory): browsers are played by protocol clients holding session cookies. Plus the
//! Redis waiting pool's atomic pairing, against a real redis-server.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use thywill::protocol::ServerFrame;
use thywill_testkit::{TIMEOUT, WsClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A served single member.
struct Served {
    node: thywill::Thywill,
    addr: SocketAddr,
}

async fn serve() -> anyhow::Result<Served> {
    let opts = example_support::Options::parse(["--port".to_owned(), "0".to_owned()], 0)?;
    let node = example_chat::build(opts.clone(), None).await?;
    anyhow::ensure!(node.cluster().members().len() == 1, "a single member");
    let (addr, serving) = node.bind(opts.addr()).await?;
    tokio::spawn(serving);
    Ok(Served { node, addr })
}

/// Loads the page like a new browser and returns its session cookie (`name=value`) and the page.
async fn browser(addr: SocketAddr) -> anyhow::Result<(String, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET /chat/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut page = String::new();
    tokio::time::timeout(TIMEOUT, s.read_to_string(&mut page)).await??;
    let cookie = page
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("set-cookie").then(|| v.trim().to_owned())
        })
        .context("the page set no session cookie")?;
    let cookie = cookie.split(';').next().unwrap_or_default().to_owned();
    Ok((cookie, page))
}

/// A tab: a protocol client with the session cookie.
async fn tab(addr: SocketAddr, cookie: &str) -> anyhow::Result<WsClient> {
    Ok(WsClient::connect_with_cookie(&format!("ws://{addr}/chat/ws"), cookie).await?)
}

/// The next chat message's data.
async fn next(c: &mut WsClient) -> anyhow::Result<Value> {
    loop {
        match c.recv().await {
            Ok(ServerFrame::Msg { app, data, .. }) if app.as_str() == "chat" => return Ok(data),
            Ok(_) => continue,
            Err(e) => bail!("no chat message: {e}"),
        }
    }
}

async fn expect(c: &mut WsClient, want: Value) -> anyhow::Result<()> {
    let got = next(c).await?;
    anyhow::ensure!(got == want, "expected {want}, got {got}");
    Ok(())
}

async fn say(c: &mut WsClient, data: Value) -> anyhow::Result<()> {
    Ok(c.send("chat", data).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_keeps_the_originals_structure() -> anyhow::Result<()> {
    let s = serve().await?;
    let (_, page) = browser(s.addr).await?;
    for needle in [
        "<title>Thywill: Chat Application</title>",
        r#"id="chat-wrapper""#,
        r#"<button type="button" class="send-button" disabled>Send</button>"#,
        r#"<button type="button" class="kick-button" disabled>Kick</button>"#,
        r#"id="waiting" class="notice""#,
        "Waiting for a chat partner...",
        "Chat partner kicked.",
        "You have been kicked!",
        r#"<span class="channel-lead">Chatting to: </span>"#,
        r#"id="instructions""#,
    ] {
        assert!(page.contains(needle), "the page lacks {needle}");
    }
    s.node.shutdown();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_paired_chat_leave_return_and_kick() -> anyhow::Result<()> {
    let s = serve().await?;
    let (cookie_a, _) = browser(s.addr).await?;
    let (cookie_b, _) = browser(s.addr).await?;
    assert_ne!(cookie_a, cookie_b);

    // A waits; B arrives: both are told the same chat.
    let mut a = tab(s.addr, &cookie_a).await?;
    let mut b = tab(s.addr, &cookie_b).await?;
    let start_a = next(&mut a).await?;
    let start_b = next(&mut b).await?;
    assert_eq!(start_a["action"], "startChat");
    assert_eq!(start_a, start_b);
    let channel = start_a["channelId"].clone();

    // Messages reach both partners, the sender included.
    say(&mut a, json!({"action": "message", "message": "test"})).await?;
    expect(&mut a, json!({"action": "message", "message": "test"})).await?;
    expect(&mut b, json!({"action": "message", "message": "test"})).await?;
    // Empty messages are refused.
    say(&mut b, json!({"action": "message", "message": "  "})).await?;

    // A second tab of B joins the same chat and hears it.
    let mut b2 = tab(s.addr, &cookie_b).await?;
    expect(&mut b2, json!({"action": "startChat", "channelId": channel})).await?;
    say(&mut b, json!({"action": "message", "message": "both tabs"})).await?;
    for c in [&mut a, &mut b, &mut b2] {
        expect(c, json!({"action": "message", "message": "both tabs"})).await?;
    }

    // B closes one tab: nothing; the last one: A is told. B comes back: A is told, and B is in
    // the chat again at once.
    b2.close().await;
    b.close().await;
    expect(&mut a, json!({"action": "disconnected"})).await?;
    let mut b = tab(s.addr, &cookie_b).await?;
    expect(&mut b, json!({"action": "startChat", "channelId": channel})).await?;
    expect(&mut a, json!({"action": "reconnected"})).await?;
    say(&mut a, json!({"action": "message", "message": "welcome back"})).await?;
    expect(&mut b, json!({"action": "message", "message": "welcome back"})).await?;
    expect(&mut a, json!({"action": "message", "message": "welcome back"})).await?;

    // B kicks A: A is told, B is not; the chat is over for both.
    say(&mut b, json!({"action": "kick"})).await?;
    expect(&mut a, json!({"action": "kicked"})).await?;
    say(&mut a, json!({"action": "message", "message": "anyone?"})).await?;

    // Both look for a partner again: paired anew.
    say(&mut b, json!({"action": "findPartner"})).await?;
    say(&mut a, json!({"action": "findPartner"})).await?;
    expect(&mut a, json!({"action": "startChat", "channelId": channel})).await?;
    // B's first message since the kick is the new chat (not A's "anyone?").
    expect(&mut b, json!({"action": "startChat", "channelId": channel})).await?;
    s.node.shutdown();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_visitor_waits_until_someone_is_free() -> anyhow::Result<()> {
    let s = serve().await?;
    let mut tabs = Vec::new();
    for _ in 0..3 {
        let (cookie, _) = browser(s.addr).await?;
        tabs.push(tab(s.addr, &cookie).await?);
    }
    let first = next(&mut tabs[0]).await?;
    assert_eq!(next(&mut tabs[1]).await?, first);
    // The third waits: nothing arrives until the first pair ends and one looks again.
    match tabs[2].recv_within(std::time::Duration::from_millis(300)).await {
        Err(thywill_testkit::WsError::Timeout) => {}
        other => bail!("the third visitor was told {other:?}"),
    }
    say(&mut tabs[0], json!({"action": "kick"})).await?;
    expect(&mut tabs[1], json!({"action": "kicked"})).await?;
    say(&mut tabs[0], json!({"action": "findPartner"})).await?;
    let start = next(&mut tabs[0]).await?;
    assert_eq!(start["action"], "startChat");
    assert_eq!(next(&mut tabs[2]).await?, start);
    s.node.shutdown();
    Ok(())
}

/// Two sessions arriving at once on two members (two pool connections) are paired: one of
/// them waits and the other takes it, never both waiting (the original's race).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_arrivals_at_once_on_two_members_never_both_wait() -> anyhow::Result<()> {
    use example_chat::{RedisPool, WaitingPool};
    let redis = thywill_testkit::redis::RedisServer::start().await?;
    let alpha = std::sync::Arc::new(RedisPool::connect(&redis.url(), "race:").await?);
    let beta = std::sync::Arc::new(RedisPool::connect(&redis.url(), "race:").await?);
    for round in 0..50 {
        let (a, b) = (
            thywill::SessionId::from(format!("a{round}")),
            thywill::SessionId::from(format!("b{round}")),
        );
        let (pa, pb) = (alpha.clone(), beta.clone());
        let (sa, sb) = (a.clone(), b.clone());
        let ta = tokio::spawn(async move { pa.pop_or_wait(&sa).await });
        let tb = tokio::spawn(async move { pb.pop_or_wait(&sb).await });
        let (ra, rb) = (ta.await??, tb.await??);
        match (ra, rb) {
            (Some(x), None) => anyhow::ensure!(x == b, "round {round}: a took {x}"),
            (None, Some(x)) => anyhow::ensure!(x == a, "round {round}: b took {x}"),
            other => anyhow::bail!("round {round}: not paired: {other:?}"),
        }
    }
    Ok(())
}
