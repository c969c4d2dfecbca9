//! Two Chat members configured only by a TOML file each (`[cluster] backend = "redis"`, a session
//! secret), as real processes on a real redis-server, behind a round-robin TCP balancer (no
//! sticky sessions): a page comes from one member and its socket lands on the other, where the
//! session cookie is accepted and channels of sessions work — the configuration file installs
//! the whole Redis bundle (cluster, shared history, channels of sessions and sessions).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use thywill::protocol::ServerFrame;
use thywill_testkit::process::Process;
use thywill_testkit::redis::RedisServer;
use thywill_testkit::{TIMEOUT, WsClient, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHAT: &str = env!("CARGO_BIN_EXE_example-chat");

/// A round-robin TCP balancer on a loopback port: the n-th connection it accepts goes to
/// member `n % members`, whole (bytes copied both ways). Stops on drop.
struct RoundRobin {
    addr: SocketAddr,
    /// The member index each accepted connection went to, in order.
    routed: Arc<Mutex<Vec<usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RoundRobin {
    async fn start(members: Vec<SocketAddr>) -> anyhow::Result<RoundRobin> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let routed = Arc::new(Mutex::new(Vec::new()));
        let log = routed.clone();
        let task = tokio::spawn(async move {
            let mut pipes = tokio::task::JoinSet::new();
            let mut next = 0usize;
            while let Ok((mut inbound, _)) = listener.accept().await {
                let member = members[next % members.len()];
                log.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(next % members.len());
                next += 1;
                pipes.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(member).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(RoundRobin { addr, routed, task })
    }

    fn routed(&self) -> Vec<usize> {
        self.routed.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        // Ends the accept loop and, with its JoinSet, every pipe.
        self.task.abort();
    }
}

/// A directory of the test's files, removed on drop.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes member `id`'s configuration file: everything the member knows.
fn config_file(dir: &Path, id: &str, port: u16, redis: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"host = "127.0.0.1"
port = {port}
member = "{id}"

[cluster]
backend = "redis"
members = ["alpha", "beta"]
redis_url = "{redis}"
heartbeat_interval_ms = 100
heartbeat_timeout_ms = 300

[session]
secret = "a balanced test secret, the same on every member"
"#
        ),
    )?;
    Ok(path)
}

/// Starts the chat with `--config file` and nothing else; returns it once it listens and has
/// seen `other` up.
async fn member(file: &Path, other: &str) -> anyhow::Result<Process> {
    let mut p = Process::spawn(CHAT, [std::ffi::OsStr::new("--config"), file.as_os_str()])?;
    p.listening_url().await?;
    let up = |l: &str| l.contains(r#""event":"member_up""#) && l.contains(&format!(r#""member":"{other}""#));
    if !p.seen().iter().any(|l| up(l)) {
        p.wait_line(up).await?;
    }
    Ok(p)
}

/// Loads the page through `addr` like a new browser; returns its session cookie (`name=value`).
async fn page(addr: SocketAddr) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET /chat/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut page = String::new();
    tokio::time::timeout(TIMEOUT, s.read_to_string(&mut page)).await??;
    anyhow::ensure!(page.starts_with("HTTP/1.1 200"), "the page: {page}");
    let cookie = page
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("set-cookie").then(|| v.trim().to_owned())
        })
        .context("the page set no session cookie")?;
    Ok(cookie.split(';').next().unwrap_or_default().to_owned())
}

/// A tab through `addr` holding `cookie`: refused (4401) unless the member it lands on
/// knows the session.
async fn tab(addr: SocketAddr, cookie: &str) -> anyhow::Result<WsClient> {
    WsClient::connect_with_cookie(&format!("ws://{addr}/chat/ws"), cookie)
        .await
        .context("the socket was refused")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_channels_of_sessions_work_behind_a_round_robin_balancer() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let dir = Dir(std::env::temp_dir().join(format!("chat-balanced-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let ports = [free_port(), free_port()];
    let alpha_file = config_file(&dir.0, "alpha", ports[0], &redis.url())?;
    let beta_file = config_file(&dir.0, "beta", ports[1], &redis.url())?;
    let (alpha, beta) = tokio::try_join!(member(&alpha_file, "beta"), member(&beta_file, "alpha"))?;
    let lb = RoundRobin::start(
        ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect(),
    )
    .await?;

    // Ann's page comes from alpha (its cookie issued there); her socket lands on beta.
    let ann_cookie = page(lb.addr).await?;
    let mut ann = tab(lb.addr, &ann_cookie).await?;
    // Bob's too.
    let bob_cookie = page(lb.addr).await?;
    let mut bob = tab(lb.addr, &bob_cookie).await?;
    assert_ne!(ann_cookie, bob_cookie);
    assert_eq!(lb.routed(), [0, 1, 0, 1], "pages on alpha, sockets on beta");

    // Beta knows both sessions: they are paired in one channel of sessions.
    let start = next(&mut ann).await?;
    assert_eq!(start["action"], "startChat");
    assert_eq!(next(&mut bob).await?, start);

    // A second tab of Ann's lands on alpha: her session is back in the chat's channel there.
    let mut ann2 = tab(lb.addr, &ann_cookie).await?;
    assert_eq!(lb.routed(), [0, 1, 0, 1, 0]);
    assert_eq!(
        next(&mut ann2).await?,
        json!({"action": "startChat", "channelId": start["channelId"]})
    );

    // A message to the channel of sessions reaches every tab, on either member.
    bob.send(
        "chat",
        json!({"action": "message", "message": "across the balancer"}),
    )
    .await?;
    let said = json!({"action": "message", "message": "across the balancer"});
    for (who, c) in [
        ("ann", &mut ann),
        ("bob", &mut bob),
        ("ann's second tab", &mut ann2),
    ] {
        assert_eq!(next(c).await.with_context(|| who.to_owned())?, said, "{who}");
    }
    drop((alpha, beta));
    Ok(())
}
