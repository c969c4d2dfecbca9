//! `cargo xtask bench cluster`: a client on member A sends strokes to the Draw application,
//! which broadcasts them to a client on member B: messages per second and p50/p99 latency
//! (send on A to receipt on B) for a single member (A = B), two members over Redis and two
//! members over HTTP.
//!
//! Members are release `example-draw` processes on loopback ports (Redis: a `redis-server`
//! started here); the clients are this process. The sender keeps `--inflight` strokes in
//! flight; per-sender order means strokes arrive in the order sent, so each receipt is matched
//! with the oldest stroke in flight.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;

use super::echo::{WAIT, Ws, frame_type, millis, percentile, spawn_server};
use crate::flags::Args;
use crate::sys;
use crate::{binary, cmd};

/// The options of `bench cluster`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Options {
    secs: u64,
    warmup: u64,
    inflight: usize,
}

pub(crate) fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut args = Args::new(args.iter().cloned());
    let opts = Options {
        secs: args.value_or("--secs", 5)?,
        warmup: args.value_or("--warmup", 1)?,
        inflight: args.value_or("--inflight", 32)?,
    };
    args.finish()?;
    if opts.secs == 0 || opts.inflight == 0 {
        bail!("--secs and --inflight must be at least 1");
    }
    Ok(opts)
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let opts = parse(args)?;
    super::release_binary("example-draw")?;
    super::block_on_interruptible(bench(&opts))
}

/// How the two members are linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Backend {
    Single,
    Redis,
    Http,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Single => "single member",
            Backend::Redis => "redis (2 members)",
            Backend::Http => "http (2 members)",
        }
    }
}

/// What one backend achieved.
#[derive(Debug)]
struct Results {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    count: usize,
}

async fn bench(opts: &Options) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "bench cluster: client on A -> draw application -> client on B, {} s after {} s warm-up, {} in flight, {cpus} CPUs",
        opts.secs, opts.warmup, opts.inflight
    );
    let mut rows = Vec::new();
    for backend in [Backend::Single, Backend::Redis, Backend::Http] {
        let r = measure(backend, opts)
            .await
            .with_context(|| format!("benchmark over {}", backend.name()))?;
        println!(
            "  {:<20} {:>10.0} msg/s   p50 {:>10}   p99 {:>10}   ({} messages)",
            backend.name(),
            r.per_sec,
            millis(r.p50),
            millis(r.p99),
            r.count
        );
        rows.push((backend, r));
    }
    println!("\n| backend | messages/s | p50 | p99 |\n|---|---|---|---|");
    for (b, r) in &rows {
        println!(
            "| {} | {:.0} | {} | {} |",
            b.name(),
            r.per_sec,
            millis(r.p50),
            millis(r.p99)
        );
    }
    Ok(())
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `redis-server` on a free loopback port (no persistence) and waits for `PING`.
pub(super) async fn start_redis() -> anyhow::Result<(Child, String)> {
    let port = free_port()?;
    let mut c = tokio::process::Command::from(cmd("redis-server"));
    c.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .process_group(0)
    .kill_on_drop(true);
    let child = c
        .spawn()
        .context("cannot start redis-server (`bash scripts/install-test-deps.sh` installs it)")?;
    let deadline = Instant::now() + WAIT;
    loop {
        let ping = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
            s.write_all(b"PING\r\n").await.ok()?;
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf).await.ok()?;
            (&buf == b"+PONG\r\n").then_some(())
        };
        if timeout(Duration::from_secs(1), ping)
            .await
            .ok()
            .flatten()
            .is_some()
        {
            return Ok((child, format!("redis://127.0.0.1:{port}")));
        }
        if Instant::now() >= deadline {
            bail!("redis-server did not answer within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts the members; returns the processes and the WebSocket URLs of A and B.
pub(super) async fn start(backend: Backend) -> anyhow::Result<(Vec<Child>, String, String)> {
    let draw = binary("example-draw", true);
    let member = |id: &str, extra: &[String]| {
        let mut c = cmd(&draw);
        c.args(["--port", "0", "--member", id])
            .args(extra)
            .env("RUST_LOG", "warn");
        c
    };
    let ws = |addr: SocketAddr| format!("ws://{addr}/draw/ws");
    match backend {
        Backend::Single => {
            let (child, addr) = spawn_server(member("alpha", &[]), "draw").await?;
            Ok((vec![child], ws(addr), ws(addr)))
        }
        Backend::Redis => {
            let (redis, url) = start_redis().await?;
            let extra: Vec<String> = [
                "--cluster",
                "redis",
                "--redis-url",
                &url,
                "--cluster-members",
                "alpha,beta",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let (a, addr_a) = spawn_server(member("alpha", &extra), "draw alpha").await?;
            let (b, addr_b) = spawn_server(member("beta", &extra), "draw beta").await?;
            Ok((vec![a, b, redis], ws(addr_a), ws(addr_b)))
        }
        Backend::Http => {
            let (pa, pb) = (free_port()?, free_port()?);
            let list = format!("alpha=127.0.0.1:{pa},beta=127.0.0.1:{pb}");
            let extra = |port: u16| -> Vec<String> {
                vec![
                    "--cluster".into(),
                    "http".into(),
                    "--cluster-members".into(),
                    list.clone(),
                    "--cluster-port".into(),
                    port.to_string(),
                ]
            };
            let (a, addr_a) = spawn_server(member("alpha", &extra(pa)), "draw alpha").await?;
            let (b, addr_b) = spawn_server(member("beta", &extra(pb)), "draw beta").await?;
            Ok((vec![a, b], ws(addr_a), ws(addr_b)))
        }
    }
}

async fn connect(url: &str) -> anyhow::Result<Ws> {
    let (mut ws, _) = timeout(
        WAIT,
        tokio_tungstenite::connect_async_with_config(url, None, true),
    )
    .await
    .context("connect timed out")??;
    match timeout(WAIT, ws.next()).await.context("no welcome frame")? {
        Some(Ok(Message::Text(text))) if frame_type(&text).as_deref() == Some("welcome") => Ok(ws),
        other => bail!("expected a welcome frame, got {other:?}"),
    }
}

fn stroke(id: u64) -> Message {
    Message::text(format!(
        r#"{{"t":"msg","app":"draw","data":{{"segments":[{{"x":1,"y":2}},{{"x":3,"y":4}}],"id":{id}}},"_":{{}}}}"#
    ))
}

/// The stroke id in a server frame, if it is a draw message.
fn stroke_id(text: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    if v.get("t")?.as_str()? != "msg" {
        return None;
    }
    v.get("data")?.get("id")?.as_u64()
}

async fn next_id(ws: &mut Ws, wait: Duration) -> anyhow::Result<Option<u64>> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, ws.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => bail!("the receiving connection closed"),
            Ok(Some(m)) => {
                if let Message::Text(text) = m?
                    && let Some(id) = stroke_id(&text)
                {
                    return Ok(Some(id));
                }
            }
        }
    }
}

async fn measure(backend: Backend, opts: &Options) -> anyhow::Result<Results> {
    let (mut children, url_a, url_b) = start(backend).await?;
    let receiver = connect(&url_b).await?;
    let sender = connect(&url_a).await?;
    let (mut tx, mut sender_rx) = sender.split();
    // Read the sender's side too (pings), so that it stays healthy.
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = sender_rx.next().await {} });
    let mut rx = receiver;

    // Until the members see each other (and B's connection has joined the channel), strokes
    // may be dropped: send probes until one arrives, then drain the extra ones.
    let mut id: u64 = 0;
    let mut crossed = false;
    for _ in 0..100 {
        id += 1;
        tx.send(stroke(id)).await?;
        if next_id(&mut rx, Duration::from_millis(200)).await?.is_some() {
            crossed = true;
            break;
        }
    }
    if !crossed {
        bail!("no stroke reached member B");
    }
    while next_id(&mut rx, Duration::from_millis(300)).await?.is_some() {}

    let start = Instant::now();
    let measure_from = start + Duration::from_secs(opts.warmup);
    let end = measure_from + Duration::from_secs(opts.secs);
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut latencies = Vec::new();
    let mut received_in_window = 0usize;
    while Instant::now() < end {
        while in_flight.len() < opts.inflight {
            id += 1;
            tx.send(stroke(id)).await?;
            in_flight.push_back((id, Instant::now()));
        }
        let got = next_id(&mut rx, WAIT)
            .await?
            .with_context(|| format!("no stroke within {WAIT:?}"))?;
        let now = Instant::now();
        // Strokes arrive in the order sent; anything older than `got` was lost.
        while let Some((sent_id, sent_at)) = in_flight.pop_front() {
            if sent_id == got {
                if sent_at >= measure_from {
                    latencies.push(now - sent_at);
                    received_in_window += 1;
                }
                break;
            }
            if sent_id > got {
                in_flight.push_front((sent_id, sent_at));
                break;
            }
        }
    }
    let elapsed = Instant::now().saturating_duration_since(measure_from);
    latencies.sort();
    drain.abort();
    for c in &mut children {
        let _ = sys::stop(c, Duration::from_secs(10)).await;
    }
    Ok(Results {
        per_sec: received_in_window as f64 / elapsed.as_secs_f64().max(1e-9),
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        count: latencies.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_options_and_frames() -> anyhow::Result<()> {
        let o = parse(&args("--secs 3 --inflight 8"))?;
        assert_eq!((o.secs, o.warmup, o.inflight), (3, 1, 8));
        assert!(parse(&args("--secs 0")).is_err());
        let Message::Text(t) = stroke(7) else {
            bail!("not text")
        };
        let v: serde_json::Value = serde_json::from_str(&t)?;
        assert_eq!(v["data"]["id"], 7);
        assert_eq!(
            stroke_id(r#"{"t":"msg","app":"draw","seq":1,"data":{"segments":[],"id":9},"_":{}}"#),
            Some(9)
        );
        assert_eq!(stroke_id(r#"{"t":"welcome"}"#), None);
        Ok(())
    }
}
