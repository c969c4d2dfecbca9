//! `cargo xtask bench idle-axum`: resident memory per idle connection of thywill served by its
//! own accept loop (the echo example, `/echo/ws`) beside thywill mounted in an axum app (the
//! axum-app example, `/live/ws`, through `Thywill::router()` and axum's server), in one run.
//!
//! Each server is a release process on a loopback port, started afresh for each of `--rounds`
//! rounds (interleaved); `--idle` connections are opened ([`echo::open`]'s batches), each
//! through the whole protocol handshake (the welcome frame). On the axum app every connection
//! carries the cookie of one user signed in through the app's own `/login` (so each is
//! authenticated, with an identity, in that user's session). The figure is the server's
//! `VmRSS` after minus before, divided by the connections: the table shows the medians.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::echo::{self, Kind, WAIT, Ws};
use crate::flags::Args;
use crate::{cmd, sys};

/// The options of `bench idle-axum`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Options {
    idle: usize,
    rounds: usize,
}

pub(crate) fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut args = Args::new(args.iter().cloned());
    let opts = Options {
        idle: args.value_or("--idle", 5_000)?,
        rounds: args.value_or("--rounds", 3)?,
    };
    args.finish()?;
    if opts.idle == 0 || opts.rounds == 0 {
        bail!("--idle and --rounds must be at least 1");
    }
    Ok(opts)
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let opts = parse(args)?;
    super::ensure_open_files(opts.idle as u64 + 256, "the idle connections (lower --idle)")?;
    for name in Server::ALL.map(Server::binary) {
        super::release_binary(name)?;
    }
    super::block_on_interruptible(bench(&opts))
}

/// The two ways of serving thywill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    /// The node's own accept loop (`Thywill::bind`): the echo example.
    Own,
    /// Mounted in axum (`Thywill::router()` under `axum::serve`): the axum-app example.
    Axum,
}

impl Server {
    const ALL: [Server; 2] = [Server::Own, Server::Axum];

    fn binary(self) -> &'static str {
        match self {
            Self::Own => "example-echo",
            Self::Axum => "example-axum-app",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Own => "thywill, own accept loop (echo)",
            Self::Axum => "thywill in axum (axum-app)",
        }
    }

    /// The base path thywill is served under.
    fn base(self) -> &'static str {
        match self {
            Self::Own => "/echo",
            Self::Axum => "/live",
        }
    }
}

async fn bench(opts: &Options) -> anyhow::Result<()> {
    println!(
        "idle memory per connection, {} connections, {} rounds (medians); {}",
        opts.idle,
        opts.rounds,
        echo::SHARED
    );
    let mut per_conn: Vec<Vec<f64>> = vec![Vec::new(); Server::ALL.len()];
    for round in 1..=opts.rounds {
        println!("round {round}:");
        for (i, server) in Server::ALL.into_iter().enumerate() {
            per_conn[i].push(measure(server, opts.idle).await?);
        }
    }
    let medians: Vec<f64> = per_conn.into_iter().map(echo::median).collect();
    println!("\n| server | idle RSS/conn | vs own accept loop |\n|---|---|---|");
    for (server, kib) in Server::ALL.iter().zip(&medians) {
        println!(
            "| {} | {:.1} KiB | {} |",
            server.name(),
            kib,
            echo::ratio(*kib, medians[0])
        );
    }
    Ok(())
}

/// Starts `server`, opens `idle` connections, returns its KiB of resident memory per
/// connection, stops it.
async fn measure(server: Server, idle: usize) -> anyhow::Result<f64> {
    let mut c = cmd(super::release_binary(server.binary())?);
    c.args(["--port", "0", "--member", "alpha"])
        .env("RUST_LOG", "warn");
    let (mut child, addr) = echo::spawn_server(c, server.name()).await?;
    let pid = child.id().context("the server exited at once")?;
    let cookie = match server {
        Server::Own => None,
        Server::Axum => Some(login(addr).await?),
    };
    let url = format!("ws://{addr}{}/ws", server.base());
    let before = sys::rss_kib(pid)?;
    let started = Instant::now();
    let conns = open(&url, cookie.as_deref(), idle).await?;
    wait_for_connections(addr, server.base(), |n| n >= idle as u64).await?;
    let after = sys::rss_kib(pid)?;
    let kib = after.saturating_sub(before) as f64 / idle as f64;
    println!(
        "  {}: {idle} connections in {:.1} s; VmRSS {before} KiB -> {after} KiB: {kib:.1} KiB per connection",
        server.name(),
        started.elapsed().as_secs_f64()
    );
    drop(conns);
    let status = sys::stop(&mut child, Duration::from_secs(10)).await?;
    if !status.success() && status.code().is_some() {
        eprintln!("{}: server exited with {status}", server.name());
    }
    Ok(kib)
}

/// One HTTP/1.0 exchange on `addr`: the whole response.
async fn http(addr: SocketAddr, request: String) -> anyhow::Result<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        anyhow::Ok(response)
    };
    timeout(WAIT, exchange).await.context("no HTTP answer")?
}

/// Signs in to the axum app as alice through its own login form; returns the cookie.
async fn login(addr: SocketAddr) -> anyhow::Result<String> {
    let form = "user=alice&password=alice-password";
    let response = http(
        addr,
        format!(
            "POST /login HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    )
    .await?;
    response
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie")
                .then(|| value.trim().split(';').next().unwrap_or_default().to_owned())
        })
        .with_context(|| format!("/login set no cookie: {response}"))
}

/// Opens `count` connections (100 at a time), each with `cookie` if given, through the
/// welcome frame.
async fn open(url: &str, cookie: Option<&str>, count: usize) -> anyhow::Result<Vec<Ws>> {
    let mut conns = Vec::with_capacity(count);
    while conns.len() < count {
        let mut batch = JoinSet::new();
        for _ in 0..100.min(count - conns.len()) {
            let (url, cookie) = (url.to_owned(), cookie.map(str::to_owned));
            batch.spawn(async move {
                let mut request = url.into_client_request()?;
                if let Some(cookie) = cookie {
                    request.headers_mut().insert("cookie", cookie.parse()?);
                }
                let (mut ws, _) = timeout(
                    WAIT,
                    tokio_tungstenite::connect_async_with_config(request, None, true),
                )
                .await
                .context("connect timed out")??;
                Kind::Thywill.handshake(&mut ws).await?;
                anyhow::Ok(ws)
            });
        }
        while let Some(ws) = batch.join_next().await {
            conns.push(ws?.with_context(|| format!("connection {} of {count} failed", conns.len() + 1))?);
        }
    }
    Ok(conns)
}

/// Polls `<base>/alive` until its connection count satisfies `done`.
async fn wait_for_connections(
    addr: SocketAddr,
    base: &str,
    done: impl Fn(u64) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let response = http(
            addr,
            format!("GET {base}/alive HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"),
        )
        .await?;
        let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        let value: serde_json::Value = serde_json::from_str(body).context("alive: not JSON")?;
        let n = value
            .get("connections")
            .and_then(serde_json::Value::as_u64)
            .context("alive: no connection count")?;
        if done(n) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{base}/alive still reports {n} connections after {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() -> anyhow::Result<()> {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            parse(&[])?,
            Options {
                idle: 5_000,
                rounds: 3
            }
        );
        assert_eq!(
            parse(&args("--idle 100 --rounds 1"))?,
            Options { idle: 100, rounds: 1 }
        );
        assert!(parse(&args("--idle 0")).is_err());
        assert!(parse(&args("--bogus")).is_err());
        Ok(())
    }
}
