//! Operating a member for real (issue "running it for real"): start-up refuses invalid
//! configuration naming the key, and readiness follows the Redis link.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use thywill_testkit::TIMEOUT;
use thywill_testkit::process::Process;
use thywill_testkit::redis::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DRAW: &str = env!("CARGO_BIN_EXE_example-draw");

/// The status code of `GET url` (plain HTTP/1.1).
async fn status(url: &str) -> anyhow::Result<u16> {
    Ok(get(url).await?.0)
}

/// The status code and body of `GET url`.
async fn get(url: &str) -> anyhow::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").context("http URL")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut s = tokio::net::TcpStream::connect(host).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    tokio::time::timeout(TIMEOUT, s.read_to_string(&mut out)).await??;
    let code = out
        .split_whitespace()
        .nth(1)
        .context("no status line")?
        .parse()
        .context("bad status")?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

/// Polls `url` until it answers `want`, within the test timeout.
async fn until_status(url: &str, want: u16) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let got = status(url).await.unwrap_or(0);
        if got == want {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{url} answered {got}, not {want}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn invalid_configuration_fails_start_up_naming_the_key() -> anyhow::Result<()> {
    let cases = [
        ("THYWILL_LIMITS__OUTBOUND_QUEUE", "0", "limits.outbound_queue"),
        ("THYWILL_CLUSTER__BACKEND", "carrier-pigeon", "cluster.backend"),
        ("THYWILL_SESSION__SECRET", "too short", "session.secret"),
        ("THYWILL_PORT", "not-a-port", "port"),
    ];
    for (var, value, key) in cases {
        let out = tokio::task::spawn_blocking(move || {
            Command::new(DRAW)
                .args(["--host", "127.0.0.1"])
                .env(var, value)
                .stdin(Stdio::null())
                .output()
        });
        let out = tokio::time::timeout(TIMEOUT, out).await???;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={value} must fail start-up");
        assert!(stderr.contains(&format!("`{key}`")), "{var}={value}: {stderr}");
    }
    Ok(())
}

#[tokio::test]
async fn readiness_is_false_while_redis_is_down_and_true_again_after() -> anyhow::Result<()> {
    let mut redis = RedisServer::start().await?;
    let mut member = Process::spawn(
        DRAW,
        [
            "--port",
            "0",
            "--member",
            "alpha",
            "--cluster",
            "redis",
            "--cluster-members",
            "alpha",
            "--redis-url",
            &redis.url(),
            "--heartbeat-interval",
            "50",
            "--heartbeat-timeout",
            "200",
        ],
    )?;
    let page = member.listening_url().await?;
    let ready = page.replace("/draw/", "/draw/ready");
    let alive = page.replace("/draw/", "/draw/alive");
    until_status(&ready, 200).await?;
    redis.stop();
    until_status(&ready, 503).await?;
    assert_eq!(status(&alive).await?, 200, "liveness does not depend on Redis");
    redis.restart().await?;
    until_status(&ready, 200).await?;
    // The reconnection shows in the metrics (served to loopback clients).
    let (code, metrics) = get(&page.replace("/draw/", "/draw/metrics")).await?;
    assert_eq!(code, 200);
    let reconnects: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("thywill_cluster_reconnects "))
        .context("no thywill_cluster_reconnects in the metrics")?
        .trim()
        .parse()?;
    assert!(reconnects >= 1.0, "{metrics}");
    assert!(member.terminate().await, "the member exits by itself on SIGTERM");
    Ok(())
}
