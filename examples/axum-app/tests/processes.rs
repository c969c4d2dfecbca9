//! Two Axum App members as real processes over a real redis-server: a user signed in on one
//! member is known by name on the other (the cluster-wide tracker carries the user id), and a
//! notice sent to that user from the other member reaches every tab of the user, on both.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use thywill::protocol::ServerFrame;
use thywill_testkit::process::Process;
use thywill_testkit::redis::RedisServer;
use thywill_testkit::{TIMEOUT, WsClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const APP: &str = env!("CARGO_BIN_EXE_example-axum-app");
/// The key of the app's tokens, the same on both members (at least 32 bytes).
const SECRET: &str = "a test token key of at least thirty-two bytes";

/// Starts member `id` of the cluster `alpha,beta`; returns it and its address (`host:port`).
async fn member(redis: &RedisServer, id: &str) -> anyhow::Result<(Process, String)> {
    let mut cmd = std::process::Command::new(APP);
    cmd.args([
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
    ])
    .env(example_axum_app::SECRET_ENV, SECRET);
    let mut p = Process::spawn_command(cmd)?;
    let url = p.listening_url().await?;
    let host = url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .context("an http URL")?
        .to_owned();
    Ok((p, host))
}

/// Waits for `p`'s cluster event saying `other` is up (it may have come before the
/// `listening:` line).
async fn sees_up(p: &mut Process, other: &str) -> anyhow::Result<()> {
    let needle = format!("\"member\":\"{other}\"");
    let up = |l: &str| l.contains("\"event\":\"member_up\"") && l.contains(&needle);
    if p.seen().iter().any(|l| up(l)) {
        return Ok(());
    }
    p.wait_line(up).await.map(|_| ())
}

/// One HTTP/1.1 exchange with `host`: the status and the body.
async fn http(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(host).await?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).await?;
        s.write_all(body.as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        anyhow::Ok(out)
    };
    let out = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .context("HTTP timed out")??;
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {out:?}"))?;
    Ok((status, out))
}

/// Signs `user` in through `host`'s login form; returns the cookie (`name=value`).
async fn login(host: &str, user: &str) -> anyhow::Result<String> {
    let form = format!("user={user}&password={user}-password");
    let (status, out) = http(
        host,
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        &form,
    )
    .await?;
    anyhow::ensure!(status == 303, "login answered {status}: {out}");
    out.lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .context("no cookie")
}

/// A tab of the user with `cookie` on `host`, greeted.
async fn tab(host: &str, cookie: &str) -> anyhow::Result<WsClient> {
    let mut c = WsClient::connect_with_cookie(&format!("ws://{host}/live/ws"), cookie).await?;
    let hello = data(&mut c).await?;
    anyhow::ensure!(hello["kind"] == "hello", "{hello}");
    Ok(c)
}

async fn data(c: &mut WsClient) -> anyhow::Result<Value> {
    match c.recv_within(TIMEOUT).await? {
        ServerFrame::Msg { data, .. } => Ok(data),
        other => bail!("expected a message, got {other:?}"),
    }
}

/// Polls `host`'s `/api/online` (bounded) until it lists `users`.
async fn online(host: &str, cookie: &str, users: Value) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (status, out) = http(host, "GET", "/api/online", &[("cookie", cookie)], "").await?;
        let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        if status == 200 && serde_json::from_str::<Value>(body).ok() == Some(json!({"users": users})) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{host} never listed {users} online; last: {status} {body}");
        }
        // Polling a condition with a deadline: the tracker's announcement has no other sign.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_sent_on_one_member_reaches_the_users_tabs_on_both() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let (mut alpha, on_alpha) = member(&redis, "alpha").await?;
    let (mut beta, on_beta) = member(&redis, "beta").await?;
    sees_up(&mut alpha, "beta").await?;
    sees_up(&mut beta, "alpha").await?;

    // Alice signs in on alpha; her token is good on beta too (one key).
    let alice = login(&on_alpha, "alice").await?;
    let mut on_a = tab(&on_alpha, &alice).await?;
    // Beta knows her by name: the tracker carried her user id, not just her connection.
    let bob = login(&on_beta, "bob").await?;
    online(&on_beta, &bob, json!(["alice"])).await?;
    let mut on_b = tab(&on_beta, &alice).await?;
    let mut bobs = tab(&on_beta, &bob).await?;
    online(&on_alpha, &alice, json!(["alice", "bob"])).await?;

    // Bob, on beta, sends alice a notice over his socket: both her tabs get it.
    bobs.send("notices", json!({"to": "alice", "text": "from beta"}))
        .await?;
    let expected = json!({"kind": "notice", "from": "bob", "fromName": "Bob", "text": "from beta"});
    assert_eq!(data(&mut on_a).await?, expected, "alice's tab on alpha");
    assert_eq!(data(&mut on_b).await?, expected, "alice's tab on beta");

    // Through beta's own API (the app's code, not a socket): the same.
    let (status, out) = http(
        &on_beta,
        "POST",
        "/api/notices",
        &[("cookie", &bob), ("content-type", "application/json")],
        r#"{"to":"alice","text":"from beta's API"}"#,
    )
    .await?;
    assert_eq!(status, 202, "{out}");
    assert_eq!(data(&mut on_a).await?["text"], "from beta's API");
    assert_eq!(data(&mut on_b).await?["text"], "from beta's API");

    // Her tab on alpha closes; the one on beta goes on hearing her notices.
    on_a.close().await;
    on_b.send("notices", json!({"to": "alice", "text": "still here"}))
        .await?;
    assert_eq!(data(&mut on_b).await?["text"], "still here");

    assert!(alpha.terminate().await, "alpha exits on SIGTERM");
    assert!(beta.terminate().await, "beta exits on SIGTERM");
    Ok(())
}
