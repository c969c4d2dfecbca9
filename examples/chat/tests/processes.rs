//! Two Chat members as real processes over a real redis-server (sessions, channels, waiting
//! pool and session data in Redis): what the chat remembers of a user, in the session's data,
//! is there when the browser reconnects to the other member.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use thywill::protocol::ServerFrame;
use thywill_testkit::process::Process;
use thywill_testkit::redis::RedisServer;
use thywill_testkit::{TIMEOUT, WsClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHAT: &str = env!("CARGO_BIN_EXE_example-chat");
/// The session secret both members share (at least 32 bytes).
const SECRET: &str = "a test secret of at least thirty-two bytes";

/// Starts member `id` of the cluster `alpha,beta`; returns it and its page URL.
async fn member(redis: &RedisServer, id: &str) -> anyhow::Result<(Process, String)> {
    let mut p = Process::spawn(
        CHAT,
        [
            "--port",
            "0",
            "--member",
            id,
            "--cluster",
            "redis",
            "--cluster-members",
            "alpha,beta",
            "--redis-url",
            &redis.url(),
            "--session-secret",
            SECRET,
        ],
    )?;
    let url = p.listening_url().await?;
    Ok((p, url))
}

/// Loads the page like a new browser; returns its session cookie (`name=value`).
async fn browser(page: &str) -> anyhow::Result<String> {
    let rest = page.strip_prefix("http://").context("http URL")?;
    let (host, _) = rest.split_once('/').context("a path")?;
    let mut s = tokio::net::TcpStream::connect(host).await?;
    s.write_all(format!("GET /chat/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    tokio::time::timeout(TIMEOUT, s.read_to_string(&mut out)).await??;
    let cookie = out
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("set-cookie").then(|| v.trim().to_owned())
        })
        .context("the page set no session cookie")?;
    Ok(cookie.split(';').next().unwrap_or_default().to_owned())
}

/// A tab of the browser with `cookie` on the member serving `page`.
async fn tab(page: &str, cookie: &str) -> anyhow::Result<WsClient> {
    let ws = format!("{}ws", page.replacen("http://", "ws://", 1));
    Ok(WsClient::connect_with_cookie(&ws, cookie).await?)
}

/// The next chat message whose `action` is `action`.
async fn next(c: &mut WsClient, action: &str) -> anyhow::Result<Value> {
    loop {
        match c.recv().await {
            Ok(ServerFrame::Msg { app, data, .. }) if app.as_str() == "chat" && data["action"] == action => {
                return Ok(data);
            }
            Ok(_) => continue,
            Err(e) => bail!("no chat `{action}` message: {e}"),
        }
    }
}

/// Asks the chat how many messages this browser has sent.
async fn sent(c: &mut WsClient) -> anyhow::Result<Value> {
    c.send("chat", json!({"action": "stats"})).await?;
    Ok(next(c, "stats").await?["sent"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_chat_remembers_of_a_user_follows_them_to_the_other_member() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let (mut alpha, on_alpha) = member(&redis, "alpha").await?;
    let (mut beta, on_beta) = member(&redis, "beta").await?;

    // Two browsers, paired on alpha.
    let ann = browser(&on_alpha).await?;
    let bob = browser(&on_alpha).await?;
    let mut a = tab(&on_alpha, &ann).await?;
    let mut b = tab(&on_alpha, &bob).await?;
    let channel = next(&mut a, "startChat").await?["channelId"].clone();
    assert_eq!(next(&mut b, "startChat").await?["channelId"], channel);
    assert_eq!(sent(&mut a).await?, json!(0));

    // Ann sends two messages (one that is refused does not count).
    for text in ["one", "  ", "two"] {
        a.send("chat", json!({"action": "message", "message": text}))
            .await?;
    }
    for text in ["one", "two"] {
        assert_eq!(next(&mut b, "message").await?["message"], text);
    }
    assert_eq!(sent(&mut a).await?, json!(2));
    assert_eq!(sent(&mut b).await?, json!(0));

    // Ann's browser loses its connection and comes back on beta: same chat, same count.
    a.close().await;
    let mut a = tab(&on_beta, &ann).await?;
    assert_eq!(next(&mut a, "startChat").await?["channelId"], channel);
    assert_eq!(sent(&mut a).await?, json!(2));
    a.send("chat", json!({"action": "message", "message": "three"}))
        .await?;
    assert_eq!(next(&mut b, "message").await?["message"], "three");
    assert_eq!(sent(&mut a).await?, json!(3));
    // And back on alpha, a second tab sees the count beta stored.
    let mut a2 = tab(&on_alpha, &ann).await?;
    assert_eq!(sent(&mut a2).await?, json!(3));
    assert_eq!(sent(&mut b).await?, json!(0));

    assert!(alpha.terminate().await, "alpha exits on SIGTERM");
    assert!(beta.terminate().await, "beta exits on SIGTERM");
    Ok(())
}
